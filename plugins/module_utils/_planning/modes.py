# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""Steps 2 and 3 of an evacuation plan: what each domain of the source needs.

Its mode from its state, its ``do_not_migrate`` label and its blockers (live, cold,
shutdown in place, skipped, or unplaceable with a reason), then whether a live migration
converges at its least bandwidth share - one that converges only with the whole budget
runs alone ("exclusive"). ``plan`` is the planner's state (placement._Planner).
"""

from __future__ import annotations

from ansible_collections.virtops.migration.plugins.module_utils._planning.inputs import COLD, LIVE, LIVE_STATES, SHUTDOWN
from ansible_collections.virtops.migration.plugins.module_utils._planning.prediction import predict_migration
from ansible_collections.virtops.migration.plugins.module_utils._planning.reasons import fmt


def new_move(dom, mode, destination, reason):
    """The plan's record of one move."""
    # Every key is set here, in the order a person reads them; the schedule fills in the rest.
    return dict(dom.identity, destination=destination, mode=mode, reason=reason, order=None, wave=None,
                start_offset_s=None, finish_offset_s=None, predicted_seconds=None, predicted_downtime_ms=None,
                bandwidth_mib_s=None, escalation=None, exclusive=False, state=dom.state, memory_mib=dom.memory,
                vcpus=dom.vcpus, local_disk_mib=round(dom.disk_mib, 1), priority=dom.priority,
                max_downtime_ms=dom.max_downtime, label_sources=dict(dom.label_sources), warnings=[])


def skipped_entry(dom, reason):
    """The plan's record of a domain its do_not_migrate policy leaves on the source."""
    return dict(dom.identity, policy=dom.policy, state=dom.state, reason=reason, label_sources=dict(dom.label_sources))


def ladder_of(dom, opts):
    """The escalation ladder of a live migration of ``dom``: the options', below its max_downtime label."""
    return opts.ladder.capped(dom.max_downtime)


def classify(plan):
    """Split the source's domains into skipped, shut down in place, unplaceable, to place."""
    to_place = []
    for dom in plan.domains:
        policy = dom.policy
        if policy == "skip":
            plan.skipped.append(skipped_entry(dom, "do_not_migrate: skip - left on the source as it is"))
            continue
        if policy == SHUTDOWN:
            if dom.active:
                plan.moves.append(new_move(dom, SHUTDOWN, None,
                                           "do_not_migrate: shutdown - shut down on the source, not moved"))
            else:
                plan.skipped.append(skipped_entry(dom, "do_not_migrate: shutdown - already shut off, left defined "
                                                       "on the source"))
            continue
        if not dom.persistent and (policy == COLD or not dom.active):
            plan.add_unplaceable(dom, ["transient domain: a cold move would lose its definition (define it "
                                       "persistently first)"])
            continue
        if policy == COLD:
            to_place.append((dom, COLD, "do_not_migrate: cold - shut down, moved, started on the destination"
                             if dom.active else "do_not_migrate: cold - shut off, its definition is moved"))
        elif not dom.active:
            to_place.append((dom, COLD, "shut off: its definition%s is moved"
                             % (" and %s MiB of local disks" % fmt(round(dom.disk_mib)) if dom.disk_mib else "")))
        elif dom.state not in LIVE_STATES:
            plan.add_unplaceable(dom, ["state %s cannot be migrated; retry once it is running or shut off"
                                       % dom.state])
        elif dom.blockers:
            why = "live migration blocked by: %s" % ", ".join(dom.blockers)
            if fallback_cold(plan, dom, why):
                to_place.append((dom, COLD, why + " - moved cold instead (live_fallback=cold)"))
        else:
            to_place.append((dom, LIVE, None))
    return to_place


def fallback_cold(plan, dom, why, hint=""):
    """Whether a domain that cannot move live moves cold; if not, it is unplaceable."""
    if plan.opts.live_fallback != COLD:
        plan.add_unplaceable(dom, [why + " (live_fallback=cold would move it cold%s)" % hint])
        return False
    if not dom.persistent:
        plan.add_unplaceable(dom, [why + "; and it is transient: a cold move would lose its definition"])
        return False
    return True


def dirty_rate(dom, opts):
    """The dirty rate a live migration of ``dom`` is predicted at: measured, else assumed."""
    if dom.state == "paused":
        return 0.0
    return dom.dirty_rate if dom.dirty_rate is not None else opts.assumed_dirty_rate_mib_s


def sends(dom, mode):
    """Whether the move of ``dom`` sends data over the source's link (and shares its budget)."""
    return mode == LIVE or dom.disk_mib > 0


def check_convergence(plan, to_place):
    """Live domains predicted not to converge at the least share they could get."""
    senders = sum(1 for dom, mode, _why in to_place if sends(dom, mode))
    least_share = plan.budget / max(1, min(plan.opts.max_parallel_per_source, senders))
    out = []
    for dom, mode, why in to_place:
        exclusive = False
        if mode == LIVE:
            ladder = ladder_of(dom, plan.opts)
            at_least = predict_migration(dom.memory, dirty_rate(dom, plan.opts), least_share, dom.disk_mib,
                                         ladder, plan.opts.setup_seconds)
            if not at_least["converges"]:
                alone = predict_migration(dom.memory, dirty_rate(dom, plan.opts), plan.budget, dom.disk_mib,
                                          ladder, plan.opts.setup_seconds)
                if alone["converges"]:
                    exclusive = True
                else:
                    reason = "live migration predicted not to converge at the whole budget of %s MiB/s%s: %s" % (
                        fmt(plan.budget), "" if dom.max_downtime is None else
                        " within its max_downtime label of %s ms" % fmt(dom.max_downtime), alone["reason"])
                    if not fallback_cold(plan, dom, reason, "; auto_converge or postcopy may make it converge"):
                        continue
                    mode, why = COLD, reason + " - moved cold instead (live_fallback=cold)"
        out.append((dom, mode, why, exclusive))
    return out
