# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The per-VM escalation ladder of a live migration, decided from job statistics alone.

The ladder, in order:

1. pre-copy at ``max_downtime``;
2. when pre-copy stalls (the bytes left at the start of an iteration stop shrinking for
   ``stall_iterations`` iterations), raise the permitted downtime to the next of
   ``max_downtime_steps`` (straight to the first step that the measured bandwidth says
   is enough, when there is one);
3. auto-converge: QEMU's own vCPU throttling. QEMU fixes its capabilities when a
   migration starts, so it is enabled from the start when ``auto_converge`` is set and
   QEMU engages it by itself once the guest dirties memory faster than it can be sent;
   the controller records when that happened and, while the throttle still rises, waits
   for it before going further;
4. post-copy, when permitted (``postcopy: permit``), once the rungs above are used up and
   pre-copy still stalls; ``postcopy: after_first_pass`` switches right after the first
   pass instead;
5. at ``timeout``, ``timeout_action``: abort (the domain stays on the source), switch to
   post-copy, or pause the guest so the rest is sent while it does not run.

Once in post-copy the migration cannot be aborted. If it stops making progress for
POSTCOPY_STALL_S seconds (a broken link, a dead peer), the controller pauses it
(VIR_DOMAIN_ABORT_JOB_POSTCOPY) so that libvirt reports the failure and the migration can
be resumed later, instead of hanging until TCP gives up.

The controller never calls libvirt: it returns actions, and the caller reports back
which ones it applied (so a failed call is not recorded as an escalation).
"""

from __future__ import annotations

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.jobstats import MIB

SET_DOWNTIME = "set_downtime"
START_POSTCOPY = "start_postcopy"
SUSPEND = "suspend"
ABORT = "abort"
PAUSE_POSTCOPY = "pause_postcopy"

# Names of the steps, as returned in ``escalations[].step`` and ``completed_by``.
STEP_PRECOPY = "precopy"
STEP_DOWNTIME = "max_downtime"
STEP_AUTO_CONVERGE = "auto_converge"
STEP_POSTCOPY = "postcopy"
STEP_PAUSE = "pause"
STEP_ABORT = "abort"
STEP_POSTCOPY_PAUSED = "postcopy_paused"
# Steps that never count as what completed a migration.
NOT_COMPLETING = (STEP_ABORT, STEP_POSTCOPY_PAUSED)

# QEMU's ceiling for auto-converge throttling (max-cpu-throttle default).
MAX_THROTTLE = 99
# An iteration makes progress when the bytes left drop below this share of the best seen.
PROGRESS_RATIO = 0.9
# Seconds without any data sent before a post-copy migration is declared broken.
POSTCOPY_STALL_S = 30


class Action(object):
    """Something the caller should do to the running migration job."""

    def __init__(self, kind, value=None, step=None, reason=""):
        self.kind = kind
        self.value = value
        self.step = step
        self.reason = reason

    def __eq__(self, other):
        return isinstance(other, Action) and (self.kind, self.value, self.step) == (other.kind, other.value, other.step)

    def __repr__(self):
        return "Action(%s, %r, %s)" % (self.kind, self.value, self.step)


class EscalationController(object):
    """Decides, from successive job-statistics snapshots, which rung to climb and when."""

    def __init__(self, policy):
        self.policy = policy  # a Ladder
        self.phase = "precopy"
        self.escalations = []
        self.downtime = policy.start_downtime
        self.initial_downtime_pending = policy.max_downtime is not None
        self.job_seen = False
        self.iteration = 0
        self.best_remaining = None
        self.stalled = 0
        self.throttle_seen = 0
        self.throttle_at_last_check = None
        self.timed_out = False
        self.ladder_exhausted = False
        self.pending = set()
        self.postcopy_progress = None
        self.postcopy_progress_at = None

    # --- decisions -----------------------------------------------------------------

    def before_start(self):
        """Actions to take before the migration job starts: the initial max_downtime, so that no
        instant of the job runs at QEMU's default. libvirt sets it on a running domain outside a
        migration too; where it refuses, observe() offers it again once the job shows up."""
        if not self.initial_downtime_pending:
            return []
        return self._unique([Action(SET_DOWNTIME, self.policy.max_downtime, None, "initial max_downtime")])

    def observe(self, snap, elapsed):
        """Actions to take now, given ``snap`` (JobSnapshot) at ``elapsed`` seconds."""
        if not snap.active:
            return []
        self.job_seen = True
        actions = []
        if self.initial_downtime_pending and SET_DOWNTIME not in self.pending:
            actions.append(Action(SET_DOWNTIME, self.policy.max_downtime, None, "initial max_downtime"))
        self._watch_throttle(snap, elapsed)
        if self.phase == "postcopy":
            # Post-copy cannot be aborted or paused by the timeout: it ends, or it stalls.
            action = self._watch_postcopy(snap, elapsed)
            return self._unique(actions + ([action] if action else []))
        if self.policy.timeout is not None and elapsed >= self.policy.timeout and not self.timed_out:
            self.timed_out = True
            action = self._timeout_action(snap)
            if action is not None:
                actions.append(action)
            return self._unique(actions)
        if self.phase != "precopy" or snap.iteration <= self.iteration:
            return self._unique(actions)
        # A new pre-copy iteration began: judge the one before.
        self.iteration = snap.iteration
        if snap.iteration < 2:
            return self._unique(actions)
        if self.policy.postcopy == "after_first_pass":
            actions.append(Action(START_POSTCOPY, None, STEP_POSTCOPY, "first pre-copy pass done (after_first_pass)"))
            return self._unique(actions)
        remaining = snap.remaining
        if self.best_remaining is None or remaining < self.best_remaining * PROGRESS_RATIO:
            self.best_remaining = remaining
            self.stalled = 0
            return self._unique(actions)
        self.stalled += 1
        if self.stalled < self.policy.stall_iterations:
            return self._unique(actions)
        self.stalled = 0
        action = self._next_rung(snap)
        if action is not None:
            actions.append(action)
        return self._unique(actions)

    def _unique(self, actions):
        out = [a for a in actions if a.kind not in self.pending]
        self.pending.update(a.kind for a in out)
        return out

    def _watch_throttle(self, snap, elapsed):
        if snap.throttle and not self.throttle_seen:
            self._record(STEP_AUTO_CONVERGE, elapsed, snap, snap.throttle,
                         "QEMU began throttling the guest's vCPUs (%d%%): it dirtied memory faster than "
                         "it could be sent" % snap.throttle)
        if snap.throttle > self.throttle_seen:
            self.throttle_seen = snap.throttle

    def _watch_postcopy(self, snap, elapsed):
        sent = snap.data_processed if snap.data_processed is not None else snap.memory_processed
        if sent is None:
            return None
        if self.postcopy_progress is None or sent > self.postcopy_progress:
            self.postcopy_progress, self.postcopy_progress_at = sent, elapsed
            return None
        if elapsed - self.postcopy_progress_at >= POSTCOPY_STALL_S:
            self.postcopy_progress_at = elapsed  # at most one attempt per stall period
            return Action(PAUSE_POSTCOPY, None, STEP_POSTCOPY_PAUSED,
                          "no post-copy progress for %d s: pausing it so that it can be resumed" % POSTCOPY_STALL_S)
        return None

    def _timeout_action(self, snap):
        policy = self.policy
        why = "timeout of %s s reached (%s)" % (policy.timeout, policy.timeout_action)
        if policy.timeout_action == "abort":
            return Action(ABORT, None, STEP_ABORT, why)
        if self.phase != "precopy":
            return None
        if policy.timeout_action == "postcopy":
            return Action(START_POSTCOPY, None, STEP_POSTCOPY, why)
        return Action(SUSPEND, None, STEP_PAUSE, why)

    def needed_downtime(self, snap):
        """The downtime (ms) that would let QEMU finish now, from the measured bandwidth."""
        bps = snap.memory_bps
        if not bps:
            return None
        return int(snap.remaining * 1000.0 / bps) + 1

    def _next_rung(self, snap):
        if self.ladder_exhausted:
            return None
        higher = [s for s in self.policy.max_downtime_steps if s > self.downtime]
        if higher:
            needed = self.needed_downtime(snap)
            enough = [s for s in higher if needed is not None and s >= needed]
            value = enough[0] if enough else higher[0]
            reason = "pre-copy stalled at %s MiB for %d iterations" % (
                round(snap.remaining / MIB, 1), self.policy.stall_iterations)
            if needed is not None:
                reason += "; finishing now needs about %d ms at %s MiB/s" % (needed, round(snap.memory_bps / MIB, 1))
            return Action(SET_DOWNTIME, value, STEP_DOWNTIME, reason)
        if self.policy.auto_converge and snap.throttle < MAX_THROTTLE and snap.throttle != self.throttle_at_last_check:
            # QEMU is still raising the throttle: give it the next iterations.
            self.throttle_at_last_check = snap.throttle
            return None
        if self.policy.postcopy == "permit":
            why = "pre-copy still stalled"
            if self.policy.max_downtime_steps:
                why += " at the highest max_downtime step (%d ms)" % self.downtime
            if self.policy.auto_converge:
                why += " with the vCPUs throttled %d%%" % snap.throttle
            return Action(START_POSTCOPY, None, STEP_POSTCOPY, why)
        self.ladder_exhausted = True
        return None

    # --- feedback from the caller --------------------------------------------------

    def applied(self, action, elapsed, snap):
        """The caller applied ``action`` successfully."""
        self.pending.discard(action.kind)
        if action.kind == SET_DOWNTIME:
            self.downtime = action.value
            if action.step is None:
                self.initial_downtime_pending = False
                return
        elif action.kind == START_POSTCOPY:
            self.phase = "postcopy"
        elif action.kind == SUSPEND:
            self.phase = "paused"
        elif action.kind == ABORT:
            self.phase = "aborting"
        elif action.kind == PAUSE_POSTCOPY:
            self.phase = "postcopy_paused"
        self._record(action.step, elapsed, snap, action.value, action.reason)

    def failed(self, action):
        """The caller could not apply ``action`` (for example the job had just ended)."""
        self.pending.discard(action.kind)
        if action.kind == SET_DOWNTIME and action.step is None and self.job_seen:
            # Refused during the job: not retried. Refused before it: retried once it shows up.
            self.initial_downtime_pending = False

    def _record(self, step, elapsed, snap, value, reason):
        self.escalations.append(dict(
            step=step,
            at_s=round(elapsed, 2),
            iteration=snap.iteration if snap is not None else None,
            remaining_bytes=snap.remaining if snap is not None else None,
            value=value,
            reason=reason,
        ))

    @property
    def completed_by(self):
        """The step that let the migration finish: the last one applied, else pre-copy."""
        steps = [e["step"] for e in self.escalations if e["step"] not in NOT_COMPLETING]
        return steps[-1] if steps else STEP_PRECOPY
