# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""A live migration: virDomainMigrateToURI3 in a worker thread, steered up its escalation ladder.

The migration is peer-to-peer (the source libvirtd drives it, so it completes even if this
process goes away). JobRunner polls the job statistics and applies what the escalation
controller decides; LiveMigration judges the outcome - success, a failed pre-copy (the domain
stays on the source), or a failed post-copy (resumed when possible).

A strategy works on a MigrateTask through its public interface: the request, both hosts and
the domain's handles on them (``src``/``dst``, ``src_dom``/``dst_dom``), ``refresh()``,
``where_now()``, ``finish()``, ``persistent_definition()``, ``persist_on_destination()``,
``warn()`` and ``started``.
"""

from __future__ import annotations

import threading
import time

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.bindings import (
    flags,
    libvirt,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.bounded import BoundedCalls
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import (
    PAUSED,
    RUNNING,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain_ops import state_of
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import (
    LibvirtError,
    MigrationFailed,
    NotFound,
    OperationInvalid,
    PostcopyFailed,
    Unanswered,
    Unsupported,
    call,
    lookup,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.jobstats import (
    JobSnapshot,
    describe_progress,
    summarize,
)
from ansible_collections.virtops.migration.plugins.module_utils._migration.escalation import (
    ABORT,
    PAUSE_POSTCOPY,
    SET_DOWNTIME,
    STEP_ABORT,
    START_POSTCOPY,
    SUSPEND,
    Action,
    EscalationController,
)


# Job polling: fast until the job shows up (to apply max_downtime early), then steady.
FIRST_POLL_S = 0.05
POLL_S = 0.2
# After pausing a stalled post-copy migration, how long to wait for libvirt to end the call.
POSTCOPY_SETTLE_S = 30.0
# After the timeout's action (outside post-copy), how long to wait for libvirt to end the call.
GIVE_UP_AFTER_S = 120
# Post-copy recovery: retry interval, overall limit, and the pause before judging an attempt.
RESUME_RETRY_S = 5.0
RESUME_WAIT_S = 180
RESUME_SETTLE_S = 2.0
# Steering calls (job statistics, downtime, post-copy, abort) are waited for at most CALL_WAIT_S
# (see BoundedCalls); when libvirt has answered none for UNANSWERED_LIMIT_S, the module stops waiting.
CALL_WAIT_S = 10.0
UNANSWERED_LIMIT_S = 120.0


class JobRunner(object):
    """virDomainMigrateToURI3 in a worker thread, its job polled and steered from here."""

    def __init__(self, task, dom, uri, params, flag_value, controller):
        self.task = task
        self.dom = dom
        self.uri = uri
        self.params = params
        self.flags = flag_value
        self.controller = controller
        self.error = None
        self.finished = False
        self.last = None
        self.elapsed = 0.0
        self.poll_warned = False
        # Set when the module stopped waiting for a paused post-copy migration that libvirt
        # still holds open (its peer unreachable): the job is left to libvirt.
        self.abandoned = False
        self.paused_at = None
        self.steer = BoundedCalls(CALL_WAIT_S)
        self.unanswered_warned = False

    def _migrate(self):
        try:
            call("migrating to %s" % self.uri, self.dom.migrateToURI3, self.uri, self.params, self.flags)
        except LibvirtError as err:
            self.error = err
        else:
            self.finished = True

    def run(self):
        for action in self.controller.before_start():
            self._apply(action, None)
        worker = threading.Thread(target=self._migrate, name="virDomainMigrateToURI3")
        worker.daemon = True
        start = time.monotonic()
        worker.start()
        interval = FIRST_POLL_S
        while True:
            worker.join(interval)
            if not worker.is_alive():
                break
            self.elapsed = time.monotonic() - start
            if self.paused_at is not None and self.elapsed - self.paused_at > POSTCOPY_SETTLE_S:
                self.abandoned = True
                self.error = MigrationFailed("post-copy made no progress and was paused; libvirt still holds the "
                                             "migration job open")
                break
            stuck = self.steer.stuck_for()
            if stuck > UNANSWERED_LIMIT_S:
                self.abandoned = True
                self.error = MigrationFailed(
                    "libvirt has not answered for %d s (%s): the domain's QEMU or libvirtd stopped responding; the "
                    "migration may still be running in libvirtd" % (stuck, self.steer.pending))
                break
            limit = self.controller.policy.timeout
            if limit is not None and self.controller.phase != "postcopy" and self.elapsed > limit + GIVE_UP_AFTER_S:
                # The timeout's action was taken, yet libvirt has not ended the call: stop waiting for it.
                self.abandoned = True
                self.error = MigrationFailed("libvirt did not end the migration within %d s after the timeout; "
                                             "it may still be running in libvirtd" % GIVE_UP_AFTER_S)
                break
            snap = self._poll()
            if snap is None or not snap.active:
                continue
            interval = POLL_S
            self.last = snap
            for action in self.controller.observe(snap, self.elapsed):
                self._apply(action, snap)
        if not self.abandoned:
            self.elapsed = time.monotonic() - start
        if not self.finished and self.error is None:
            self.error = MigrationFailed("the migration call ended without a result (see the module's stderr)")
        return self.error

    def _poll(self):
        try:
            return JobSnapshot(self.steer("reading the migration job's statistics", self.dom.jobStats, 0))
        except (NotFound, OperationInvalid):
            return None  # the job (or the source domain) is gone: the worker is about to return
        except Unanswered as err:
            if not self.unanswered_warned:
                self.unanswered_warned = True
                self.task.warn("%s; the module goes on waiting (its timeout still acts, and it stops waiting after %d "
                               "s without an answer)" % (err.msg, UNANSWERED_LIMIT_S))
            return None
        except LibvirtError as err:
            if not self.poll_warned:
                self.poll_warned = True
                self.task.warn("cannot read the migration job's statistics: %s" % err.msg)
            return None

    def _apply(self, action, snap):
        dom, steer = self.dom, self.steer
        try:
            if action.kind == SET_DOWNTIME:
                steer("setting max downtime to %d ms" % action.value, dom.migrateSetMaxDowntime, action.value, 0)
            elif action.kind == START_POSTCOPY:
                steer("switching to post-copy", dom.migrateStartPostCopy, 0)
            elif action.kind == SUSPEND:
                steer("pausing the guest", dom.suspend)
            elif action.kind == ABORT:
                steer("aborting the migration", dom.abortJob)
            elif action.kind == PAUSE_POSTCOPY:
                pause = getattr(libvirt, "VIR_DOMAIN_ABORT_JOB_POSTCOPY", None)
                if pause is None:
                    raise Unsupported("pausing a post-copy migration needs libvirt 8.5 or later")
                steer("pausing the stalled post-copy migration", dom.abortJobFlags, pause)
        except LibvirtError as err:
            self.controller.failed(action)
            if action.step is not None:
                self.task.warn("%s (%s) failed: %s" % (action.step, action.reason, err.msg))
            if action.kind in (START_POSTCOPY, SUSPEND) and self.controller.timed_out:
                # The timeout's own action failed: fall back to aborting (the guest stays on the source).
                self._apply(Action(ABORT, None, STEP_ABORT, "fallback: %s failed at the timeout" % action.step), snap)
            return
        self.controller.applied(action, self.elapsed, snap)
        if action.kind == PAUSE_POSTCOPY:
            self.paused_at = self.elapsed


class LiveMigration(object):
    """A live (pre-copy, escalating) migration of a running or paused domain."""

    def __init__(self, task, plan):
        self.task = task
        self.plan = plan

    def run(self):
        task, plan = self.task, self.plan
        controller = EscalationController(plan.policy(live=True))
        src_state = state_of(task.src_dom, task.src.name)
        was_running = src_state.state == RUNNING
        definition = task.persistent_definition(src_state) if task.request.persistent else None
        runner = JobRunner(task, task.src_dom, str(task.dst.uri), plan.params, plan.flags, controller)
        error = runner.run()
        result = dict(escalations=controller.escalations)
        if error is not None:
            if controller.phase in ("postcopy", "postcopy_paused"):
                return self.resume_after_failure(error, controller, runner, definition)
            # Read once: a host that does not answer costs RECONNECT_WAIT_S at each read.
            states = task.read_each()
            if any(state is not None and state.postcopy_failed for state in states):
                return self.resume_after_failure(error, controller, runner, definition)
            self._fail_precopy(error, controller, runner, was_running, states)
        result.update(self._success(controller, runner, was_running, definition))
        return result

    def _success(self, controller, runner, was_running, definition):
        task = self.task
        task.dst_dom = task.dst.domain(task.src_dom.UUIDString())
        if definition is not None and task.dst_dom is not None:
            task.persist_on_destination(definition, "the live migration")
        completed = None
        if task.dst_dom is not None:
            completed = lookup("reading the completed job statistics on %s" % task.dst.name,
                               task.dst_dom.jobStats, libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        out = summarize(completed, runner.last)
        out["timings"]["migration_s"] = round(runner.elapsed, 3)
        out["timings"]["module_s"] = round(time.monotonic() - task.started, 3)
        out["completed_by"] = controller.completed_by
        if controller.phase == "paused" and was_running and task.dst_dom is not None:
            dst_state = state_of(task.dst_dom, task.dst.name)
            if dst_state is not None and dst_state.state == PAUSED:
                call("resuming the guest on %s after the paused migration" % task.dst.name, task.dst_dom.resume)
        return out

    def _fail_precopy(self, error, controller, runner, was_running, states):
        """``states``: both hosts' states, read by read_each() after the failure. A host that could
        not be read is None there, and nothing below acts on it (None is "unknown")."""
        task = self.task
        src_state, dst_state = states
        notes = []
        if src_state is not None and src_state.state == PAUSED and controller.phase == "paused" and was_running:
            call("resuming the guest on %s" % task.src.name, task.src_dom.resume)
            notes.append("resumed the guest on %s (the module had paused it at the timeout)" % task.src.name)
        if dst_state is not None and src_state is not None and src_state.active and dst_state.incoming_migration:
            call("removing the half-migrated domain from %s" % task.dst.name, task.dst_dom.destroy)
            notes.append("removed the incoming domain left on %s" % task.dst.name)
        aborted = any(e["step"] == "abort" for e in controller.escalations)
        progress = describe_progress(runner.last) if runner.last is not None else "no progress recorded"
        what = "aborted at the timeout (%s s, timeout_action=abort)" % self.plan.timeout if aborted else "failed"
        where, where_text = task.where_now(task.read_each(again=True) if notes else states)
        msg = "live migration of %s from %s to %s %s after %.1f s (%s): %s. Where the domain is now: %s." % (
            task.request.name, task.src.name, task.dst.name, what, runner.elapsed, progress, error.msg,
            where_text)
        if notes:
            msg += " " + "; ".join(notes) + "."
        raise MigrationFailed(msg, changed=bool(notes), where=where, escalations=controller.escalations,
                              **summarize(None, runner.last))

    def resume_after_failure(self, error, controller=None, runner=None, definition=None):
        """A post-copy migration failed: try to resume it (libvirt >= 8.5), else report how.

        libvirt may report an error for a resume that in fact completed, or refuse one while
        it still handles the failure, so the outcome is judged from both hosts' states.
        """
        task = self.task
        escalations = controller.escalations if controller is not None else []
        resume_flag = getattr(libvirt, "VIR_MIGRATE_POSTCOPY_RESUME", None)
        src_state, dst_state = task.refresh()
        started = time.monotonic()
        if not task.request.postcopy_resume:
            attempt = "not attempted (postcopy_resume=false)"
        elif runner is not None and runner.abandoned:
            attempt = ("not attempted: libvirt on %s still holds the failed migration job open (the peer or the link "
                       "is still unreachable)" % task.src.name)
        elif resume_flag is None:
            attempt = "not possible: this libvirt has no post-copy recovery (needs 8.5 or later)"
        elif src_state is None or dst_state is None:
            attempt = "not possible: one side no longer holds the domain"
        else:
            if task.request.persistent and definition is None:
                definition = lookup("reading the definition of the domain on %s" % task.src.name,
                                    task.persistent_definition, src_state)
            attempt = self._resume(resume_flag)
        if self._recovered():
            why = error.msg if error is not None else "in an earlier run"
            escalations.append(dict(step="postcopy_resume", at_s=round(time.monotonic() - task.started, 2),
                                    iteration=None, remaining_bytes=None, value=None,
                                    reason="post-copy failed (%s); resumed" % why))
            task.warn("the post-copy migration failed (%s) and was resumed" % why)
            out = dict(escalations=escalations, completed_by="postcopy_resume")
            leftover = self._leftover_steps()
            if leftover:
                out["finished"] = task.finish(leftover, definition)["finished"]
            completed = None
            if task.dst_dom is not None:
                completed = lookup("reading the completed job statistics", task.dst_dom.jobStats,
                                   libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
            out.update(summarize(completed, runner.last if runner else None))
            out["timings"]["migration_s"] = round(time.monotonic() - started + (runner.elapsed if runner else 0), 3)
            out["timings"]["module_s"] = round(time.monotonic() - task.started, 3)
            return out
        desturi = str(task.dst.uri)
        where, where_text = task.where_now()
        msg = ("post-copy migration of %s from %s to %s failed%s. The guest had already switched to %s before all "
               "its memory was copied, so it cannot run on either host until the migration is resumed. Where the "
               "domain is now: %s. Resume attempt: %s. To recover once both hosts and the link between them are "
               "back: re-run this task (it resumes a failed post-copy migration), or on %s run "
               "'virsh migrate --live --p2p --postcopy --postcopy-resume --tls %s %s'." % (
                   task.request.name, task.src.name, task.dst.name, ": %s" % error.msg if error else "",
                   task.dst.name, where_text, attempt, task.src.name, task.request.name, desturi))
        raise PostcopyFailed(msg, changed=True, where=where, escalations=escalations)

    def _resume(self, resume_flag):
        """Try the resume until it works or RESUME_WAIT_S passes; describe the outcome.

        libvirt refuses a resume until both sides have noticed the failure (the destination
        may notice only once the link is back), and may report an error for a resume that then
        completes; so the outcome is judged from both hosts' states after each attempt, and
        attempts are repeated every RESUME_RETRY_S while the source still waits for recovery.
        Each call runs in a worker thread: one still running at the deadline is left to libvirt.
        """
        names = list(self.plan.flag_names)
        if "POSTCOPY" not in names:
            names.append("POSTCOPY")
        value = flags("VIR_MIGRATE_", names) | resume_flag
        deadline = time.monotonic() + RESUME_WAIT_S
        while True:
            finished, err = self._resume_once(value, deadline)
            if not finished:
                return ("still running after %d s; libvirt goes on with it, re-run this task later to see the "
                        "outcome" % RESUME_WAIT_S)
            time.sleep(RESUME_SETTLE_S)
            if self._recovered():
                return "succeeded" if err is None else "succeeded (libvirt reported: %s)" % err.msg
            outcome = "failed: %s" % (err.msg if err is not None else "the guest is still not running on the destination")
            src_state = state_of(self.task.src_dom, self.task.src.name)
            waiting = src_state is not None and (src_state.postcopy_failed or src_state.postcopy_running)
            if not waiting or time.monotonic() + RESUME_RETRY_S >= deadline:
                return outcome
            time.sleep(RESUME_RETRY_S)

    def _resume_once(self, value, deadline):
        """(whether the call returned before ``deadline``, its LibvirtError or None)."""
        task = self.task
        box = {}

        def resume():
            try:
                call("resuming the post-copy migration", task.src_dom.migrateToURI3, str(task.dst.uri),
                     self.plan.params, value)
            except LibvirtError as err:
                box["error"] = err

        worker = threading.Thread(target=resume, name="post-copy resume")
        worker.daemon = True
        worker.start()
        worker.join(max(1.0, deadline - time.monotonic()))
        return not worker.is_alive(), box.get("error")

    def _recovered(self):
        """The guest runs on the destination, the post-copy done, and no longer runs on the source."""
        src_state, dst_state = self.task.refresh()
        return bool(dst_state is not None and dst_state.active and not dst_state.postcopy_failed
                    and not dst_state.incoming_migration and (src_state is None or not src_state.active))

    def _leftover_steps(self):
        """After a recovered post-copy: what persist_dest/undefine_source libvirt did not do."""
        task = self.task
        if not task.request.persistent:
            return []
        src_state, dst_state = task.refresh()
        steps = []
        if dst_state is not None and not dst_state.persistent:
            steps.append("persist_destination")
        if src_state is not None:
            steps.append("undefine_source")
        return steps
