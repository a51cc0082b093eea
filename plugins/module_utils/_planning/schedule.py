# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""When a move may start: the schedule rule the planner predicts with and the evacuation obeys.

A move starts when a source slot and a slot on its destination are free; one held back
by its destination (or by a retry delay) does not hold back those after it; an exclusive
move runs alone; shutdowns in place start once no migration is left.

Step 5 of an evacuation plan is here too: simulate() runs timed jobs through that rule
and one shared bandwidth budget, schedule_moves() predicts each placed move's start and
finish with it, and finish_shutdowns() puts the shutdowns in place last.
"""

from __future__ import annotations

import heapq

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import PlanningError
from ansible_collections.virtops.migration.plugins.module_utils._planning.inputs import COLD, LIVE, SHUTDOWN
from ansible_collections.virtops.migration.plugins.module_utils._planning.modes import dirty_rate, ladder_of, new_move, sends
from ansible_collections.virtops.migration.plugins.module_utils._planning.prediction import ladder_rank, predict_cold, predict_migration


class Slot(object):
    """What the scheduler needs to know of a move: waiting or running."""

    def __init__(self, name, destination, mode, exclusive=False, not_before=None):
        self.name = name
        self.destination = destination
        self.mode = mode
        self.exclusive = exclusive
        self.not_before = not_before

    def __repr__(self):
        return "Slot(%s -> %s, %s%s)" % (self.name, self.destination, self.mode, ", exclusive" if self.exclusive else "")


class Job(Slot):
    """One move to time: a Slot with its duration.

    ``duration(bandwidth)`` gives its seconds at a bandwidth share. ``sends`` is False for
    a move that sends nothing (a definition only): it takes a slot but no bandwidth.
    ``exclusive`` marks a migration that converges only with the whole budget: it starts
    when nothing else runs, and nothing starts beside it. Jobs of a higher ``priority``
    are offered a slot first.
    """

    def __init__(self, key, destination, duration, sends=True, exclusive=False, mode=LIVE, priority=0):
        super(Job, self).__init__(key, destination, mode, exclusive)
        self.duration = duration
        self.sends = sends
        self.priority = priority

    @property
    def key(self):
        return self.name


def startable(queue, running, per_source, per_destination, now, admit=None):
    """The moves of ``queue`` (in start order) to start now, beside ``running``.

    As the planner's schedule: a move starts when a source slot and a slot on its
    destination are free; one held back by its destination (or by a retry delay) does
    not hold back those after it; an exclusive move starts only when nothing runs, and
    nothing starts beside it; shutdowns in place start once no migration is left.
    ``admit(slot, active)``, when given, may hold back a move that passed those limits
    (the planner's bandwidth budget); a move it admits starts.
    """
    active = list(running)
    if any(slot.exclusive for slot in active):
        return []
    migrations_left = any(slot.mode != SHUTDOWN for slot in list(queue) + active)
    per_dest = {}
    for slot in active:
        if slot.destination is not None:
            per_dest[slot.destination] = per_dest.get(slot.destination, 0) + 1
    chosen = []
    for slot in queue:
        if len(active) >= per_source:
            break
        if slot.not_before is not None and slot.not_before > now:
            continue
        if slot.mode == SHUTDOWN:
            if migrations_left:
                continue
        elif per_dest.get(slot.destination, 0) >= per_destination:
            continue
        if slot.exclusive:
            if not active and (admit is None or admit(slot, active)):
                chosen.append(slot)
            break
        if admit is not None and not admit(slot, active):
            continue
        chosen.append(slot)
        active.append(slot)
        if slot.destination is not None:
            per_dest[slot.destination] = per_dest.get(slot.destination, 0) + 1
    return chosen


class _Budget(object):
    """The bandwidth budget shared by the jobs that run together (simulate's admission rule).

    A job's share is fixed when it starts: the free budget divided by the number of jobs
    that could run beside it (free source slots, waiting jobs that send), so the jobs
    running together never exceed the budget and each gets at least
    budget / min(max_per_source, jobs that send). An exclusive job gets all of it.
    """

    EPS = 1e-9

    def __init__(self, budget_mib_s, max_per_source, jobs):
        self.total = budget_mib_s
        self.max_per_source = max_per_source
        self.used = 0.0
        self.waiting_senders = sum(1 for job in jobs if job.sends and not job.exclusive)
        self.share = {}

    def admit(self, job, active):
        if not job.sends:
            share = 0.0
        elif job.exclusive:
            share = self.total
        else:
            free = self.total - self.used
            if free <= self.EPS * self.total:
                return False
            share = free / min(self.max_per_source - len(active), self.waiting_senders)
            self.waiting_senders -= 1
        self.used += share
        self.share[job.key] = share
        return True

    def release(self, job):
        self.used -= self.share[job.key]
        if self.used < self.EPS:
            self.used = 0.0


def simulate(jobs, budget_mib_s, max_per_source, max_per_destination):
    """Run ``jobs`` (in priority order) through startable() and the bandwidth budget.

    Higher priority first, and within a priority exclusive jobs first. Jobs start by the
    evacuation's own rule (startable), and each gets its share of the budget when it
    starts (_Budget).

    Returns {key: dict(order, wave, start, finish, bandwidth)}; ``wave`` numbers the
    instants at which jobs start.
    """
    waiting = sorted(jobs, key=lambda j: (-j.priority, not j.exclusive))  # stable: otherwise as given
    budget = _Budget(budget_mib_s, max_per_source, waiting)
    running = []  # heap of (finish, order, job)
    now = 0.0
    order = 0
    wave = 0
    out = {}
    while waiting or running:
        chosen = startable(waiting, [entry[2] for entry in running], max_per_source, max_per_destination,
                           now, admit=budget.admit)
        if chosen:
            wave += 1
        for job in chosen:
            waiting.remove(job)
            share = budget.share[job.key]
            order += 1
            seconds = float(job.duration(share))
            heapq.heappush(running, (now + seconds, order, job))
            out[job.key] = dict(order=order, wave=wave, start=now, finish=now + seconds, bandwidth=share)
        if not running:
            raise PlanningError("the schedule is stuck with %d jobs waiting (a bug in the planner)" % len(waiting))
        now = running[0][0]
        while running and running[0][0] <= now + _Budget.EPS:
            budget.release(heapq.heappop(running)[2])
    return out


def _duration_of(plan, details, dom, mode, dest):
    """The job's duration at a bandwidth share; each call notes its prediction in ``details``."""
    opts = plan.opts
    check = (plan.prechecks.get(dom.name) or {}).get(dest)

    ladder = ladder_of(dom, opts)

    def duration(share):
        if mode == LIVE:
            pred = predict_migration(dom.memory, dirty_rate(dom, opts), share, dom.disk_mib,
                                     ladder, opts.setup_seconds)
            if not pred["converges"]:
                # Only exclusive jobs, predicted here before they get the whole budget.
                pred = predict_migration(dom.memory, dirty_rate(dom, opts), plan.budget, dom.disk_mib,
                                         ladder, opts.setup_seconds)
            seconds, downtime, escalation = pred["seconds"], pred["downtime_ms"], pred["escalation"]
            # A pre-check predicted this pair at its own measured bandwidth: never promise better.
            if check is not None:
                if check.get("predicted_seconds") is not None:
                    seconds = max(seconds, check["predicted_seconds"])
                if check.get("predicted_downtime_ms") is not None:
                    downtime = max(downtime, int(round(check["predicted_downtime_ms"])))
                if ladder_rank(check.get("escalation")) > ladder_rank(escalation):
                    escalation = check["escalation"]
        else:
            seconds, downtime = predict_cold(dom.disk_mib, share or plan.budget, dom.active,
                                             opts.setup_seconds, opts.shutdown_seconds)
            downtime = int(round(downtime))
            escalation = None
        details[dom.name] = (seconds, downtime, escalation)
        return seconds
    return duration


def schedule_moves(plan, placed):
    """Time the ``placed`` moves (simulate) and add them to ``plan.moves``.

    Higher priority first (the domains' priority labels), then exclusive migrations, then
    longest first, under the concurrency limits and the shared bandwidth budget. ``plan`` is the planner's state (placement._Planner).
    Returns the makespan and the MiB sent.
    """
    opts = plan.opts
    details = {}
    # Longest first (at the least share), which keeps the tail of the schedule short.
    ordered = []
    for dom, mode, why, exclusive, dest in placed:
        sending = sends(dom, mode)
        job = Job(dom.name, dest, _duration_of(plan, details, dom, mode, dest), sends=sending, exclusive=exclusive,
                  mode=mode, priority=dom.priority)
        nominal = job.duration(plan.budget / max(1, opts.max_parallel_per_source)) if sending else 0.0
        ordered.append((-nominal, dom.name, job))
    ordered.sort(key=lambda item: item[:2])
    jobs = [item[2] for item in ordered]
    slots = simulate(jobs, plan.budget, opts.max_parallel_per_source, opts.max_parallel_per_destination)
    sent_mib = 0.0
    for dom, mode, why, exclusive, dest in placed:
        slot = slots[dom.name]
        seconds, downtime, escalation = details[dom.name]  # from the run at its share
        move = new_move(dom, mode, dest, why)
        move.update(order=slot["order"], wave=slot["wave"], start_offset_s=round(slot["start"], 1),
                    finish_offset_s=round(slot["finish"], 1), predicted_seconds=round(seconds, 1),
                    predicted_downtime_ms=downtime, bandwidth_mib_s=round(slot["bandwidth"], 1),
                    escalation=escalation, exclusive=exclusive)
        check = (plan.prechecks.get(dom.name) or {}).get(dest)
        if check is not None and check["verdict"] == "warn":
            move["warnings"].extend("pre-check: %s" % r for r in (check.get("reasons") or []))
        if mode == LIVE and dom.max_downtime is not None and downtime is not None and downtime > dom.max_downtime:
            move["warnings"].append("the pre-check predicted %d ms of downtime, above its max_downtime label of %d ms: "
                                    "the migration may not converge within it" % (downtime, dom.max_downtime))
        if mode == COLD and dom.blockers:
            move["warnings"].append("devices that block live migration (%s) must exist on %s to start it there"
                                    % (", ".join(dom.blockers), dest))
        if sends(dom, mode):
            sent_mib += (dom.memory if mode == LIVE else 0.0) + dom.disk_mib
        plan.moves.append(move)
    makespan = max([s["finish"] for s in slots.values()] or [0.0])
    return makespan, sent_mib


def finish_shutdowns(moves, makespan, shutdown_seconds):
    """Domains shut down by policy go last: an aborted evacuation leaves them running."""
    last_wave = max([m["wave"] for m in moves if m["mode"] != SHUTDOWN] or [0])
    order = max([m["order"] for m in moves if m["mode"] != SHUTDOWN] or [0])
    end = makespan
    for move in sorted((m for m in moves if m["mode"] == SHUTDOWN), key=lambda m: m["domain"]):
        order += 1
        move.update(order=order, wave=last_wave + 1, start_offset_s=round(makespan, 1),
                    finish_offset_s=round(makespan + shutdown_seconds, 1),
                    predicted_seconds=round(shutdown_seconds, 1), predicted_downtime_ms=None,
                    bandwidth_mib_s=0.0, escalation=None, exclusive=False)
        end = makespan + shutdown_seconds
    return end
