# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The entry point of virtops.migration.migrate: decide, check, then migrate.

run_migrate(module) validates the input, opens the two libvirt connections, decides what
must happen (_migration_plan.decide), runs the pre-checks, and in check mode stops there.
Otherwise it performs the one decided action and verifies the outcome on both hosts.

A live migration runs virDomainMigrateToURI3 (peer-to-peer: the source libvirtd drives
it, so it completes even if this process goes away) in a worker thread, while this thread
polls the job statistics and applies what the escalation controller decides.
"""

from __future__ import annotations

import threading
import time

from ansible_collections.virtops.migration.plugins.module_utils._facts import prechecks
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    ConnectionSettings,
    local_address_of,
    open_hypervisor,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import (
    PAUSED,
    RUNNING,
    DomainDescription,
    DomainState,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import (
    LibvirtError,
    MigrationFailed,
    NotFound,
    OperationInvalid,
    ParameterError,
    PostcopyFailed,
    PrecheckFailed,
    Unsupported,
    call,
    lookup,
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
from ansible_collections.virtops.migration.plugins.module_utils._migration.ladder import Ladder
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.jobstats import (
    JobSnapshot,
    describe_progress,
    summarize,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.bindings import flags, libvirt
from ansible_collections.virtops.migration.plugins.module_utils._migration.request import (
    COLD,
    FINISH,
    LIVE,
    NONE,
    RESUME_POSTCOPY,
    MIGRATE_ARGUMENT_SPEC,
    MigrationRequest,
    cold_flags,
    decide,
    live_flags,
    migration_params,
)
from ansible_collections.virtops.migration.plugins.module_utils._module import EntryPoint
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.storage import parse_mountinfo, plan_storage

# Job polling: fast until the job shows up (to apply max_downtime early), then steady.
FIRST_POLL_S = 0.05
POLL_S = 0.2
SHUTDOWN_POLL_S = 0.5
# After pausing a stalled post-copy migration, how long to wait for libvirt to end the call.
POSTCOPY_SETTLE_S = 30.0
# After the timeout's action (outside post-copy), how long to wait for libvirt to end the call.
GIVE_UP_AFTER_S = 120
# Post-copy recovery: retry interval, overall limit, and the pause before judging an attempt.
RESUME_RETRY_S = 5.0
RESUME_WAIT_S = 180
RESUME_SETTLE_S = 2.0


def run_migrate(module):
    """Entry point for the migrate module: returns the result dict for exit_json."""
    started = time.monotonic()
    params = module.params
    settings = ConnectionSettings.from_params(params)
    dest_uri = settings.remote(params["destination"])
    request = MigrationRequest.from_params(params, dest_uri)
    if settings.uri.is_local:
        address = local_address_of(dest_uri.host)
        if address is not None:
            raise ParameterError("destination %s is this host (it resolves to %s, an address of this machine): "
                                 "the destination must be another hypervisor" % (dest_uri.host, address))
    elif settings.uri.host == dest_uri.host:
        raise ParameterError("destination %s is the source host itself" % dest_uri.host)
    src = open_hypervisor(settings.uri, settings.connect_timeout)
    try:
        dst = open_hypervisor(dest_uri, settings.connect_timeout)
        try:
            return MigrateTask(request, src, dst, module.check_mode, module.warn, started).run()
        finally:
            dst.close()
    finally:
        src.close()


def state_of(dom, where):
    """DomainState of ``dom`` (None when ``dom`` is None or has just disappeared)."""
    if dom is None:
        return None
    state = lookup("reading the state of the domain on %s" % where, dom.state, 0)
    if state is None:
        return None
    persistent = lookup("reading whether the domain is persistent on %s" % where, dom.isPersistent)
    return DomainState(dom.name(), dom.UUIDString(), state[0], state[1], bool(persistent))


def define_where_it_runs(hypervisor, dom):
    """Make the domain ``dom``, running transient on ``hypervisor``, persistent there as it runs."""
    xml = call("reading the definition of %s on %s" % (dom.name(), hypervisor.name), dom.XMLDesc,
               libvirt.VIR_DOMAIN_XML_SECURE | libvirt.VIR_DOMAIN_XML_MIGRATABLE)
    call("defining %s on %s" % (dom.name(), hypervisor.name), hypervisor.conn.defineXML, xml)


def _state_dict(state, hypervisor):
    out = dict(host=hypervisor.name, present=state is not None)
    if state is not None:
        out.update(state.as_dict())
    return out


class MigrateTask(object):
    """One migrate task: the decision, the checks and the action, for one domain."""

    def __init__(self, request, src, dst, check_mode, warn, started=None):
        self.request = request
        self.src = src
        self.dst = dst
        self.check_mode = check_mode
        self.warn = warn
        self.checks = []
        self.src_dom = None
        self.dst_dom = None
        self.started = started if started is not None else time.monotonic()

    # --- where things stand ----------------------------------------------------------

    def _find(self):
        self.src_dom = self.src.domain(self.request.name)
        key = self.src_dom.UUIDString() if self.src_dom is not None else self.request.name
        self.dst_dom = self.dst.domain(key)
        if self.dst_dom is None and self.src_dom is not None:
            self.dst_dom = self.dst.domain(self.request.name)

    def _states(self):
        return state_of(self.src_dom, self.src.name), state_of(self.dst_dom, self.dst.name)

    def _refresh(self):
        uuid = None
        for dom in (self.src_dom, self.dst_dom):
            if dom is not None:
                uuid = dom.UUIDString()
                break
        key = uuid or self.request.name
        self.src_dom = self.src.domain(key)
        self.dst_dom = self.dst.domain(key)
        return self._states()

    def _where(self):
        src_state, dst_state = self._refresh()
        return dict(source=_state_dict(src_state, self.src), destination=_state_dict(dst_state, self.dst))

    def _where_text(self):
        src_state, dst_state = self._refresh()

        def one(state, hyp):
            return "%s: %s" % (hyp.name, state.describe() if state is not None else "absent")

        return "%s; %s" % (one(src_state, self.src), one(dst_state, self.dst))

    # --- the task --------------------------------------------------------------------

    def run(self):
        if self.src.hostname == self.dst.hostname or (self.src.host_uuid and self.src.host_uuid == self.dst.host_uuid):
            raise ParameterError(
                "destination %s is the source host itself (host name %s, host UUID %s)"
                % (self.dst.uri, self.dst.hostname, self.dst.host_uuid))
        self._find()
        src_state, dst_state = self._states()
        decision = decide(self.request.mode, self.request.persistent, src_state, dst_state,
                          self.src.name, self.dst.name, self.request.name)
        for warning in decision.warnings:
            self.warn(warning)
        uuid = (src_state or dst_state).uuid
        name = (src_state or dst_state).name
        result = dict(
            changed=decision.changes,
            operation=decision.action,
            reason=decision.reason,
            mode=decision.mode,
            domain=dict(name=name, uuid=uuid),
            source=dict(uri=str(self.src.uri), host=self.src.name),
            destination=dict(uri=str(self.dst.uri), host=self.dst.name),
            checks=self.checks,
            escalations=[],
            completed_by=None,
        )
        before = dict(source=_state_dict(src_state, self.src), destination=_state_dict(dst_state, self.dst))
        if decision.action == NONE:
            result["state"] = before
            result["diff"] = dict(before=before, after=before)
            return result
        plan = None
        if decision.action in (LIVE, COLD):
            plan = self._precheck(decision, src_state, dst_state)
            result["plan"] = plan.as_dict()
        if self.check_mode:
            result["state"] = before
            result["diff"] = dict(before=before, after=self._predicted_after(decision, src_state, dst_state))
            return result
        if decision.action == LIVE:
            result.update(LiveMigration(self, plan).run())
        elif decision.action == COLD:
            result.update(ColdMigration(self, plan, src_state).run())
        elif decision.action == RESUME_POSTCOPY:
            result.update(LiveMigration(self, self._resume_plan()).resume_after_failure(None))
        elif decision.action == FINISH:
            result.update(self._finish(decision.steps))
        result["state"] = self._where()
        result["diff"] = dict(before=before, after=result["state"])
        self._verify(decision, result["state"])
        return result

    def _predicted_after(self, decision, src_state, dst_state):
        """Where the domain will be if the decided action succeeds (for check mode's diff)."""
        runs = (src_state or dst_state).active or decision.action == FINISH
        keep_source = not self.request.persistent and src_state is not None and src_state.persistent
        source = dict(host=self.src.name, present=keep_source)
        if keep_source:
            source.update(state="shutoff", persistent=True, postcopy_failed=False)
        destination = dict(host=self.dst.name, present=True, state="running" if runs else "shutoff",
                           persistent=self.request.persistent or bool(dst_state and dst_state.persistent),
                           postcopy_failed=False)
        return dict(source=source, destination=destination)

    def _verify(self, decision, state):
        """Check the outcome on both hosts, independently of what libvirt returned."""
        src, dst = state["source"], state["destination"]
        problems = []
        if not dst["present"]:
            problems.append("the domain is not on %s" % dst["host"])
        if src["present"] and src.get("state") != "shutoff":
            problems.append("the domain is still active on %s (%s)" % (src["host"], src.get("state")))
        if self.request.persistent:
            if src["present"]:
                problems.append("%s still holds a definition of the domain" % src["host"])
            if dst["present"] and not dst.get("persistent"):
                problems.append("the domain is not persistent on %s" % dst["host"])
        for problem in problems:
            self.warn("after the migration: " + problem)

    # --- pre-checks ------------------------------------------------------------------

    def _check(self, name, passed, detail):
        self.checks.append(dict(name=name, passed=passed, detail=detail))
        return passed

    def _precheck(self, decision, src_state, dst_state):
        req = self.request
        self._check("destination_reachable", True, "connected to %s (libvirt %s)" % (
            self.dst.uri, _version(call("reading libvirt's version on %s" % self.dst.name, self.dst.conn.getLibVersion))))
        self._check("domain_present", True, "%s on %s (%s)" % (src_state.name, self.src.name, src_state.describe()))
        xml_flags = libvirt.VIR_DOMAIN_XML_MIGRATABLE
        if not src_state.active:
            xml_flags |= libvirt.VIR_DOMAIN_XML_INACTIVE
        desc = DomainDescription.from_xml(
            call("reading the definition of %s" % src_state.name, self.src_dom.XMLDesc, xml_flags))
        blockers = []
        if decision.mode == "cold":
            if src_state.active and not src_state.persistent:
                blockers.append("the domain is transient on %s: shutting it down would delete it; "
                                "migrate it live instead" % self.src.name)
            elif src_state.state == PAUSED and not req.force:
                blockers.append("the domain is paused on %s: a paused guest cannot shut down gracefully; "
                                "set force=true to power it off" % self.src.name)
            elif src_state.active:
                self._check("shutdown", True, "graceful shutdown within %d s%s" % (
                    req.shutdown_timeout, ", then forced off" if req.force else ", else the task fails"))
        self._check_cpu(desc, blockers)
        storage = self._check_storage(desc, blockers)
        self._check_memory(desc)
        if blockers:
            for blocker in blockers:
                if not any(c["detail"] == blocker for c in self.checks):
                    self._check("blocker", False, blocker)
            raise PrecheckFailed(
                "cannot migrate %s from %s to %s: %s. Nothing was changed." % (
                    src_state.name, self.src.name, self.dst.name, "; ".join(blockers)),
                checks=self.checks, changed=False)
        return _Plan(req, decision.mode, desc, storage, self._bytes_to_move(desc, storage))

    def _record(self, item, blockers):
        """Keep a shared pre-check's outcome (_prechecks) in this module's checks."""
        self._check(item["name"], {"ok": True, "block": False}.get(item["verdict"]), item["detail"])
        if item["verdict"] == "block":
            blockers.append(item["detail"])
        elif item["verdict"] == "warn":
            self.warn(item["detail"])

    def _check_cpu(self, desc, blockers):
        if not self.request.cpu_check:
            self._check("cpu", None, "skipped (cpu_check=false)")
            return
        self._record(prechecks.cpu(self.dst, desc, self.src), blockers)

    def _check_storage(self, desc, blockers):
        mounts = []
        if self.src.uri.is_local:
            try:
                with open("/proc/self/mountinfo") as handle:
                    mounts = parse_mountinfo(handle.read())
            except OSError as err:
                self.warn("cannot read the mount table (%s): file systems of disks are unknown" % err)
        storage, found = prechecks.storage(self.dst, desc, mounts, self.request.copy_storage)
        for item in found:
            self._record(item, blockers)
        return storage

    def _check_memory(self, desc):
        item = prechecks.free_memory(self.dst, desc.memory_kib)
        if item["verdict"] != "skipped":
            self._record(item, [])

    def _bytes_to_move(self, desc, storage):
        total = desc.memory_kib * 1024
        for target in storage.copy_targets:
            info = lookup("reading the size of disk %s" % target, self.src_dom.blockInfo, target)
            if info:
                total += info[1]
        return total

    def _resume_plan(self):
        src_state = state_of(self.src_dom, self.src.name)
        desc = DomainDescription.from_xml(call("reading the definition of %s" % src_state.name,
                                               self.src_dom.XMLDesc, libvirt.VIR_DOMAIN_XML_MIGRATABLE))
        storage = plan_storage(desc.disks, [], "none")
        return _Plan(self.request, "live", desc, storage, desc.memory_kib * 1024)

    # --- finishing a half-done move --------------------------------------------------

    def persistent_definition(self, src_state):
        """The source's definition to make persistent on the destination after the move.

        Its inactive configuration when it has one (``src_state.persistent``: what libvirt's
        PERSIST_DEST would carry, pending edits included), else the running one. Read before the
        migration: once the source has undefined the domain it is gone.
        """
        flags_value = libvirt.VIR_DOMAIN_XML_SECURE | libvirt.VIR_DOMAIN_XML_MIGRATABLE
        if src_state.persistent:
            flags_value |= libvirt.VIR_DOMAIN_XML_INACTIVE
        return call("reading the definition of the domain on %s" % self.src.name, self.src_dom.XMLDesc, flags_value)

    def persist_on_destination(self, xml, what):
        """Define the moved domain on the destination (it runs there as a transient domain).

        The source undefined it when the migration completed, so no moment has two persistent
        definitions. Should this fail, the domain runs on the destination without a persistent
        definition anywhere: say so, and how a re-run finishes it.
        """
        try:
            call("defining the domain on %s" % self.dst.name, self.dst.conn.defineXML, xml)
        except LibvirtError as err:
            raise MigrationFailed(
                "%s moved %s to %s, but defining it there failed: %s. It runs on %s as a transient domain and no "
                "host holds a persistent definition of it: re-run this task to define it there. Where the domain "
                "is now: %s." % (what, self.request.name, self.dst.name, err.msg, self.dst.name, self._where_text()),
                changed=True, where=self._where()) from None

    def _finish(self, steps, xml=None):
        done = []
        if "persist_destination" in steps:
            if xml is None:
                define_where_it_runs(self.dst, self.dst_dom)
            else:
                call("defining the domain on %s" % self.dst.name, self.dst.conn.defineXML, xml)
            done.append("defined the domain on %s" % self.dst.name)
        if "undefine_source" in steps:
            call("undefining the leftover definition on %s" % self.src.name, self.src_dom.undefineFlags,
                 _undefine_flags())
            done.append("undefined the leftover inactive definition on %s" % self.src.name)
        return dict(finished=done)


def _undefine_flags():
    names = ("VIR_DOMAIN_UNDEFINE_MANAGED_SAVE", "VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA",
             "VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA", "VIR_DOMAIN_UNDEFINE_KEEP_NVRAM")
    value = 0
    for name in names:
        value |= getattr(libvirt, name, 0)
    return value


def _version(number):
    return "%d.%d.%d" % (number // 1000000, number // 1000 % 1000, number % 1000)


class _Plan(object):
    """What a migration will do: flags, parameters, disks, timeout."""

    def __init__(self, request, mode, desc, storage, bytes_to_move):
        self.request = request
        self.desc = desc
        self.storage = storage
        self.copy_targets = storage.copy_targets
        self.timeout = request.effective_timeout(bytes_to_move)
        if mode == "cold":
            self.flag_names = cold_flags(request, self.copy_targets)
            self.params = migration_params(request, self.copy_targets, offline=not self.copy_targets)
        else:
            self.flag_names = live_flags(request, self.copy_targets)
            self.params = migration_params(request, self.copy_targets)

    @property
    def flags(self):
        return flags("VIR_MIGRATE_", self.flag_names)

    def policy(self, live=True):
        """The ladder in force: the request's with the timeout; a disk copy (cold) only has the timeout."""
        if not live:
            return Ladder(timeout=self.timeout, timeout_action="abort")
        return self.request.policy.with_timeout(self.timeout)

    def as_dict(self):
        return dict(flags=list(self.flag_names), parameters=dict(self.params), copy_disks=list(self.copy_targets),
                    timeout_s=self.timeout, disks=self.storage.as_list())


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

    def _migrate(self):
        try:
            call("migrating to %s" % self.uri, self.dom.migrateToURI3, self.uri, self.params, self.flags)
        except LibvirtError as err:
            self.error = err
        else:
            self.finished = True

    def run(self):
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
            return JobSnapshot(call("reading the migration job's statistics", self.dom.jobStats, 0))
        except (NotFound, OperationInvalid):
            return None  # the job (or the source domain) is gone: the worker is about to return
        except LibvirtError as err:
            if not self.poll_warned:
                self.poll_warned = True
                self.task.warn("cannot read the migration job's statistics: %s" % err.msg)
            return None

    def _apply(self, action, snap):
        dom = self.dom
        try:
            if action.kind == SET_DOWNTIME:
                call("setting max downtime to %d ms" % action.value, dom.migrateSetMaxDowntime, action.value, 0)
            elif action.kind == START_POSTCOPY:
                call("switching to post-copy", dom.migrateStartPostCopy, 0)
            elif action.kind == SUSPEND:
                call("pausing the guest", dom.suspend)
            elif action.kind == ABORT:
                call("aborting the migration", dom.abortJob)
            elif action.kind == PAUSE_POSTCOPY:
                pause = getattr(libvirt, "VIR_DOMAIN_ABORT_JOB_POSTCOPY", None)
                if pause is None:
                    raise Unsupported("pausing a post-copy migration needs libvirt 8.5 or later")
                call("pausing the stalled post-copy migration", dom.abortJobFlags, pause)
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
            if controller.phase in ("postcopy", "postcopy_paused") or self._postcopy_failed_now():
                return self.resume_after_failure(error, controller, runner, definition)
            self._fail_precopy(error, controller, runner, was_running)
        result.update(self._success(controller, runner, was_running, definition))
        return result

    def _postcopy_failed_now(self):
        src_state, dst_state = self.task._refresh()
        return bool((src_state and src_state.postcopy_failed) or (dst_state and dst_state.postcopy_failed))

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

    def _fail_precopy(self, error, controller, runner, was_running):
        task = self.task
        src_state, dst_state = task._refresh()
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
        msg = "live migration of %s from %s to %s %s after %.1f s (%s): %s. Where the domain is now: %s." % (
            task.request.name, task.src.name, task.dst.name, what, runner.elapsed, progress, error.msg,
            task._where_text())
        if notes:
            msg += " " + "; ".join(notes) + "."
        raise MigrationFailed(msg, changed=bool(notes), where=task._where(), escalations=controller.escalations,
                              **summarize(None, runner.last))

    def resume_after_failure(self, error, controller=None, runner=None, definition=None):
        """A post-copy migration failed: try to resume it (libvirt >= 8.5), else report how.

        libvirt may report an error for a resume that in fact completed, or refuse one while
        it still handles the failure, so the outcome is judged from both hosts' states.
        """
        task = self.task
        escalations = controller.escalations if controller is not None else []
        resume_flag = getattr(libvirt, "VIR_MIGRATE_POSTCOPY_RESUME", None)
        src_state, dst_state = task._refresh()
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
                out["finished"] = task._finish(leftover, definition)["finished"]
            completed = None
            if task.dst_dom is not None:
                completed = lookup("reading the completed job statistics", task.dst_dom.jobStats,
                                   libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
            out.update(summarize(completed, runner.last if runner else None))
            out["timings"]["migration_s"] = round(time.monotonic() - started + (runner.elapsed if runner else 0), 3)
            out["timings"]["module_s"] = round(time.monotonic() - task.started, 3)
            return out
        desturi = str(task.dst.uri)
        tls = " --tls" if task.request.tls else ""
        msg = ("post-copy migration of %s from %s to %s failed%s. The guest had already switched to %s before all "
               "its memory was copied, so it cannot run on either host until the migration is resumed. Where the "
               "domain is now: %s. Resume attempt: %s. To recover once both hosts and the link between them are "
               "back: re-run this task (it resumes a failed post-copy migration), or on %s run "
               "'virsh migrate --live --p2p --postcopy --postcopy-resume%s %s %s'." % (
                   task.request.name, task.src.name, task.dst.name, ": %s" % error.msg if error else "",
                   task.dst.name, task._where_text(), attempt, task.src.name, tls, task.request.name, desturi))
        raise PostcopyFailed(msg, changed=True, where=task._where(), escalations=escalations)

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
        src_state, dst_state = self.task._refresh()
        return bool(dst_state is not None and dst_state.active and not dst_state.postcopy_failed
                    and not dst_state.incoming_migration and (src_state is None or not src_state.active))

    def _leftover_steps(self):
        """After a recovered post-copy: what persist_dest/undefine_source libvirt did not do."""
        task = self.task
        if not task.request.persistent:
            return []
        src_state, dst_state = task._refresh()
        steps = []
        if dst_state is not None and not dst_state.persistent:
            steps.append("persist_destination")
        if src_state is not None:
            steps.append("undefine_source")
        return steps


class ColdMigration(object):
    """Shut down (gracefully), move the definition (copying local disks), start again."""

    def __init__(self, task, plan, src_state):
        self.task = task
        self.plan = plan
        self.src_state = src_state
        self.ran_before = src_state.active

    def run(self):
        task = self.task
        timings = {}
        out = dict(escalations=[], completed_by=None)
        shutdown = "not needed (shut off)"
        if self.ran_before:
            started = time.monotonic()
            shutdown = self._shutdown()
            timings["shutdown_s"] = round(time.monotonic() - started, 3)
        started = time.monotonic()
        runner = None
        definition = None
        if self.plan.copy_targets:
            definition = task.persistent_definition(self.src_state)
            runner = self._move_with_disks()
        else:
            self._move_definition()
        timings["move_s"] = round(time.monotonic() - started, 3)
        task.dst_dom = task.dst.domain(task.src_dom.UUIDString())
        if task.dst_dom is None:
            raise MigrationFailed("the cold migration reported success but %s does not hold the domain; where it "
                                  "is: %s" % (task.dst.name, task._where_text()), changed=True, where=task._where())
        if definition is not None:
            # Before it is settled there: stopping a transient domain would remove it.
            task.persist_on_destination(definition, "the cold migration")
        started = time.monotonic()
        self._settle_on_destination()
        timings["start_s"] = round(time.monotonic() - started, 3)
        if runner is not None:
            completed = lookup("reading the completed job statistics", task.dst_dom.jobStats,
                               libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
            out.update(summarize(completed, runner.last))
        else:
            out.update(summarize(None, None))
        out["timings"].update(timings)
        out["timings"]["module_s"] = round(time.monotonic() - task.started, 3)
        out["cold"] = dict(shutdown=shutdown, started_on_destination=self.ran_before,
                           copied_disks=list(self.plan.copy_targets))
        return out

    def _shutdown(self):
        task, req = self.task, self.task.request
        dom = task.src_dom
        state = state_of(dom, task.src.name)
        if state.state != 3:
            call("asking %s to shut down" % req.name, dom.shutdownFlags, 0)
            deadline = time.monotonic() + req.shutdown_timeout
            while time.monotonic() < deadline:
                state = state_of(dom, task.src.name)
                if state is None or not state.active:
                    return "graceful"
                time.sleep(SHUTDOWN_POLL_S)
            state = state_of(dom, task.src.name)
            if state is None or not state.active:
                return "graceful"
        if not req.force:
            raise MigrationFailed(
                "%s did not shut down within %d s (shutdown_timeout) on %s; nothing was moved. The shutdown request "
                "may still take effect. Set force=true to power it off after the timeout, or a longer "
                "shutdown_timeout. Where the domain is now: %s." % (
                    req.name, req.shutdown_timeout, task.src.name, task._where_text()),
                changed=True, where=task._where())
        call("powering off %s" % req.name, dom.destroy)
        return "forced"

    def _restore_source(self, error, what):
        """The move failed: bring the domain back up on the source if it ran before."""
        task = self.task
        notes = []
        src_state = state_of(task.src_dom, task.src.name)
        if src_state is not None and src_state.active and self.plan.copy_targets:
            call("stopping the paused copy on %s" % task.src.name, task.src_dom.destroy)
        if self.ran_before and src_state is not None:
            try:
                call("starting %s again on %s" % (task.request.name, task.src.name), task.src_dom.create)
                notes.append("started it again on %s" % task.src.name)
            except LibvirtError as err:
                notes.append("could not start it again on %s: %s" % (task.src.name, err.msg))
        notes += self._remove_partial_copies()
        msg = "cold migration of %s from %s to %s failed while %s: %s. %sWhere the domain is now: %s." % (
            task.request.name, task.src.name, task.dst.name, what, error.msg,
            ("; ".join(notes) + ". ") if notes else "", task._where_text())
        raise MigrationFailed(msg, changed=self.ran_before, where=task._where())

    def _remove_partial_copies(self):
        task = self.task
        notes = []
        for placement in self.plan.storage.local:
            disk = placement.disk
            if disk.target not in self.plan.copy_targets or disk.target in self.plan.storage.existing:
                continue
            vol = lookup("looking up %s on %s" % (disk.source, task.dst.name),
                         task.dst.conn.storageVolLookupByPath, disk.source)
            if vol is None:
                continue
            try:
                call("deleting the partial copy %s on %s" % (disk.source, task.dst.name), vol.delete, 0)
                notes.append("deleted the partial copy of %s on %s" % (disk.source, task.dst.name))
            except LibvirtError as err:
                notes.append("the partial copy %s remains on %s (%s)" % (disk.source, task.dst.name, err.msg))
        return notes

    def _move_definition(self):
        task = self.task
        try:
            call("moving the definition to %s" % task.dst.name, task.src_dom.migrateToURI3, str(task.dst.uri),
                 self.plan.params, self.plan.flags)
        except LibvirtError as err:
            self._restore_source(err, "moving the definition (offline migration)")

    def _move_with_disks(self):
        task = self.task
        try:
            call("starting %s paused to copy its disks" % task.request.name, task.src_dom.createWithFlags,
                 libvirt.VIR_DOMAIN_START_PAUSED)
        except LibvirtError as err:
            self._restore_source(err, "starting it paused on the source to copy its disks")
        controller = EscalationController(self.plan.policy(live=False))
        runner = JobRunner(task, task.src_dom, str(task.dst.uri), self.plan.params, self.plan.flags, controller)
        error = runner.run()
        if error is not None:
            self._restore_source(error, "copying its disks")
        return runner

    def _settle_on_destination(self):
        """Start it (or leave it off) on the destination, as it was on the source."""
        task = self.task
        state = state_of(task.dst_dom, task.dst.name)
        try:
            if self.ran_before:
                if state.state == PAUSED:
                    call("resuming %s on %s" % (task.request.name, task.dst.name), task.dst_dom.resume)
                elif not state.active:
                    call("starting %s on %s" % (task.request.name, task.dst.name), task.dst_dom.create)
            elif state.active:
                call("stopping the paused copy on %s" % task.dst.name, task.dst_dom.destroy)
        except LibvirtError as err:
            raise MigrationFailed(
                "%s was moved to %s (defined there, removed from %s) but could not be %s there: %s. Where the "
                "domain is now: %s." % (task.request.name, task.dst.name, task.src.name,
                                        "started" if self.ran_before else "stopped", err.msg, task._where_text()),
                changed=True, where=task._where()) from None


# The migrate module: its entry function and the argument spec it runs with.
MIGRATE_MODULE = EntryPoint(run_migrate, MIGRATE_ARGUMENT_SPEC)
