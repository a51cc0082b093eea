# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""How long migrations take, predicted without libvirt.

- predict_migration(): one live migration - pre-copy rounds at a bandwidth, and each rung
  of the escalation ladder (the migrate module's, in the same order) with what it predicts.
- predict_cold(): a cold move - shut down (when running), copy the local disks, define.

An evacuation's schedule (which move starts when, under the concurrency limits and one
shared bandwidth budget) is in schedule.py, beside the rule the evacuation obeys.

Units: memory and disks in MiB, bandwidth and dirty rates in MiB/s, times in seconds,
downtimes in milliseconds.

The physical limits the model keeps: a migration never takes less than what it sends
divided by its bandwidth; pre-copy converges only while the guest dirties memory slower
than it is sent; migrations that run together never use more than the budget, so an
evacuation never finishes faster than everything it sends divided by the budget.
"""

from __future__ import annotations

from ansible_collections.virtops.migration.plugins.module_utils._migration.escalation import (
    MAX_THROTTLE,
    PROGRESS_RATIO,
    STEP_AUTO_CONVERGE,
    STEP_DOWNTIME,
    STEP_PAUSE,
    STEP_POSTCOPY,
    STEP_PRECOPY,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import ParameterError
from ansible_collections.virtops.migration.plugins.module_utils._migration.ladder import Ladder

# Connecting, starting QEMU on the destination, and (after the switch-over) persisting the
# definition there and undefining it on the source.
DEFAULT_SETUP_SECONDS = 2.0
# Pre-copy rounds after which a migration that still has not converged is called stalled.
DEFAULT_MAX_ROUNDS = 30
# QEMU's auto-converge: it throttles the vCPUs once the guest dirties more than half of
# what is sent (throttle-trigger-threshold 50), starting at 20 % and adding 10 % per round
# (cpu-throttle-initial, cpu-throttle-increment), up to MAX_THROTTLE.
THROTTLE_TRIGGER = 0.5
THROTTLE_INITIAL = 20
THROTTLE_INCREMENT = 10
# The switch-over to post-copy stops the guest only to send the device state.
POSTCOPY_SWITCH_MS = 50

# The ladder's steps in the order they are climbed; escalation names are these.
LADDER_ORDER = (STEP_PRECOPY, STEP_DOWNTIME, STEP_AUTO_CONVERGE, STEP_POSTCOPY, STEP_PAUSE)


def ladder_rank(step):
    """Position of a step in LADDER_ORDER (None, meaning plain pre-copy, ranks first)."""
    if step is None:
        return 0
    return LADDER_ORDER.index(step)


def _rung(step, value, converges, seconds=None, downtime_ms=None, rounds=0, throttle_pct=0, reason=""):
    return dict(step=step, value=value, converges=converges,
                seconds=None if seconds is None else round(seconds, 3),
                downtime_ms=None if downtime_ms is None else int(round(downtime_ms)),
                rounds=rounds, throttle_pct=throttle_pct, reason=reason)


def precopy_rounds(memory_mib, dirty_rate_mib_s, bandwidth_mib_s, max_downtime_ms,
                   max_rounds=DEFAULT_MAX_ROUNDS, throttle=False, stall_rounds=None):
    """Simulate pre-copy: each round sends what the guest dirtied during the round before.

    It converges once what is left can be sent within ``max_downtime_ms`` (the guest is
    then stopped and the rest sent: that is the downtime). It does not converge when the
    dirty rate is at least the bandwidth (nothing shrinks), or after ``max_rounds`` rounds.
    ``throttle`` models auto-converge (QEMU slowing the vCPUs down, see THROTTLE_*).
    With ``stall_rounds``, it also gives up as the migrate module's controller does when a
    higher rung is left: after that many rounds in a row that do not bring what is left
    below PROGRESS_RATIO of the least seen.

    Returns (converges, seconds, downtime_ms, rounds, throttle_pct, pending_mib); the
    seconds exclude set-up, and when it does not converge they are those of the rounds
    simulated and ``pending_mib`` what was still dirty.
    """
    limit_s = max_downtime_ms / 1000.0
    pending = float(memory_mib)
    elapsed = 0.0
    rounds = 0
    pct = 0
    least = pending
    stalled = 0
    while pending / bandwidth_mib_s > limit_s:
        if rounds >= max_rounds:
            return False, elapsed, None, rounds, pct, pending
        round_s = pending / bandwidth_mib_s
        elapsed += round_s
        rounds += 1
        rate = dirty_rate_mib_s * (100 - pct) / 100.0
        if throttle and rounds >= 2 and rate > THROTTLE_TRIGGER * bandwidth_mib_s and pct < MAX_THROTTLE:
            pct = THROTTLE_INITIAL if pct == 0 else min(MAX_THROTTLE, pct + THROTTLE_INCREMENT)
            rate = dirty_rate_mib_s * (100 - pct) / 100.0
        dirtied = min(float(memory_mib), rate * round_s)
        if dirtied >= pending and pct >= MAX_THROTTLE or (not throttle and dirtied >= pending):
            return False, elapsed, None, rounds, pct, dirtied
        if stall_rounds and rounds >= 2:
            if dirtied < least * PROGRESS_RATIO:
                least = dirtied
                stalled = 0
            else:
                stalled += 1
                if stalled >= stall_rounds and dirtied / bandwidth_mib_s > limit_s:
                    return False, elapsed, None, rounds, pct, dirtied
        pending = dirtied
    stop_s = pending / bandwidth_mib_s
    return True, elapsed + stop_s, stop_s * 1000.0, rounds, pct, 0.0


def _precopy_rung(step, downtime_ms, memory, dirty, bandwidth, lead_s, timeout_s, max_rounds, throttle=False,
                  stall_rounds=None):
    ok, seconds, downtime, rounds, pct, pending = precopy_rounds(
        memory, dirty, bandwidth, downtime_ms, max_rounds=max_rounds, throttle=throttle, stall_rounds=stall_rounds)
    if not ok:
        if dirty >= bandwidth and not throttle:
            why = "the guest dirties %.0f MiB/s, at least the %.0f MiB/s sent" % (dirty, bandwidth)
        elif rounds < max_rounds and not throttle:
            why = "stalls at %.0f MiB after %d rounds (the guest dirties %.0f MiB/s of the %.0f MiB/s sent)" % (
                pending, rounds, dirty, bandwidth)
        else:
            why = "%.0f MiB still dirty after %d rounds at %.0f MiB/s" % (pending, rounds, bandwidth)
        return _rung(step, downtime_ms, False, rounds=rounds, throttle_pct=pct, reason=why)
    total = lead_s + seconds
    if total > timeout_s:
        return _rung(step, downtime_ms, False, rounds=rounds, throttle_pct=pct,
                     reason="would take %.0f s, beyond the completion timeout of %.0f s" % (total, timeout_s))
    why = "converges in %d rounds with %d ms downtime" % (rounds, int(round(downtime)))
    if pct:
        why += ", vCPUs throttled up to %d %%" % pct
    return _rung(step, downtime_ms, True, total, downtime, rounds, pct, why)


def _switch_rung(step, memory, dirty, bandwidth, lead_s, passes, at_s=None):
    """Post-copy or pause after ``passes`` pre-copy rounds (or at ``at_s``, the timeout)."""
    pending = float(memory)
    elapsed = 0.0
    for _round in range(passes):
        round_s = pending / bandwidth
        elapsed += round_s
        pending = min(float(memory), dirty * round_s)
    if at_s is not None:
        elapsed = max(elapsed, at_s - lead_s)
    rest_s = pending / bandwidth
    total = lead_s + elapsed + rest_s
    if step == STEP_POSTCOPY:
        return _rung(step, None, True, total, min(POSTCOPY_SWITCH_MS, rest_s * 1000.0), passes, 0,
                     "switches to post-copy after %.0f s; the guest runs on the destination, slowed by page "
                     "faults, while the last %.0f MiB follow" % (lead_s + elapsed, pending))
    return _rung(step, None, True, total, rest_s * 1000.0, passes, 0,
                 "pauses the guest after %.0f s to send the last %.0f MiB" % (lead_s + elapsed, pending))


def predict_migration(memory_mib, dirty_rate_mib_s, bandwidth_mib_s, disk_mib=0.0, ladder=None,
                      setup_seconds=DEFAULT_SETUP_SECONDS, max_rounds=DEFAULT_MAX_ROUNDS):
    """Predict one live migration, rung by rung of ``ladder`` (a Ladder).

    ``disk_mib`` are local disks copied first (block mirror), before memory pre-copy.
    Returns a dict: ``converges``; ``escalation`` (None when plain pre-copy is enough, else
    the first rung that converges: max_downtime, auto_converge, postcopy or pause);
    ``seconds`` and ``downtime_ms`` of that rung (None when none converges);
    ``bound_seconds`` (what must be sent divided by the bandwidth: no migration is faster);
    ``rungs`` (each rung tried, with what it predicts) and ``reason``.
    """
    if bandwidth_mib_s is None or bandwidth_mib_s <= 0:
        raise ParameterError("bandwidth must be positive, not %r" % (bandwidth_mib_s,))
    ladder = ladder or Ladder()
    memory = float(memory_mib)
    dirty = float(dirty_rate_mib_s or 0.0)
    lead_s = float(setup_seconds) + float(disk_mib) / bandwidth_mib_s
    timeout_s = float(ladder.effective_timeout(memory + float(disk_mib)))
    args = (memory, dirty, bandwidth_mib_s, lead_s, timeout_s)

    rungs = []
    first_pass_only = ladder.postcopy == "after_first_pass"
    if first_pass_only:
        rungs.append(_precopy_rung(STEP_PRECOPY, ladder.start_downtime, *args, max_rounds=1))
    else:
        # (step, downtime) of the pre-copy rungs; a stalled one gives way to the next, if any.
        plain = [(STEP_PRECOPY, ladder.start_downtime)] + [(STEP_DOWNTIME, ms) for ms in ladder.max_downtime_steps]
        for index, (step, downtime_ms) in enumerate(plain):
            higher = index + 1 < len(plain) or ladder.auto_converge or ladder.postcopy != "never"
            rungs.append(_precopy_rung(step, downtime_ms, *args, max_rounds=max_rounds,
                                       stall_rounds=ladder.stall_iterations if higher else None))
        if ladder.auto_converge:
            rungs.append(_precopy_rung(STEP_AUTO_CONVERGE, ladder.highest_downtime, *args,
                                       max_rounds=max_rounds, throttle=True))
    if ladder.postcopy != "never":
        passes = 1 if first_pass_only else 1 + ladder.stall_iterations
        rungs.append(_switch_rung(STEP_POSTCOPY, memory, dirty, bandwidth_mib_s, lead_s, passes))
    elif ladder.timeout_action in (STEP_POSTCOPY, STEP_PAUSE):
        step = STEP_POSTCOPY if ladder.timeout_action == "postcopy" else STEP_PAUSE
        rungs.append(_switch_rung(step, memory, dirty, bandwidth_mib_s, lead_s, 1 + ladder.stall_iterations,
                                  at_s=timeout_s))

    bound = (memory + float(disk_mib)) / bandwidth_mib_s
    chosen = next((r for r in rungs if r["converges"]), None)
    if chosen is None:
        return dict(converges=False, escalation=None, seconds=None, downtime_ms=None,
                    bandwidth_mib_s=bandwidth_mib_s, bound_seconds=round(bound, 3), rungs=rungs,
                    reason="; ".join("%s: %s" % (r["step"], r["reason"]) for r in rungs))
    escalation = None if chosen["step"] == STEP_PRECOPY else chosen["step"]
    return dict(converges=True, escalation=escalation, seconds=chosen["seconds"],
                downtime_ms=chosen["downtime_ms"], bandwidth_mib_s=bandwidth_mib_s,
                bound_seconds=round(bound, 3), rungs=rungs, reason=chosen["reason"])


def predict_cold(disk_mib, bandwidth_mib_s, running, setup_seconds=DEFAULT_SETUP_SECONDS, shutdown_seconds=30.0):
    """A cold move: shut down (when ``running``), copy ``disk_mib`` of local disks, define.

    Returns (seconds, downtime_ms): the downtime runs from the shutdown request until the
    domain is started on the destination (its boot not counted); 0 for a shut-off domain.
    """
    copy_s = float(disk_mib) / bandwidth_mib_s if disk_mib else 0.0
    seconds = float(setup_seconds) + copy_s + (float(shutdown_seconds) if running else 0.0)
    return seconds, (seconds * 1000.0 if running else 0.0)
