# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""An evacuation plan's result: the moves, per-destination totals and the summary lines.

``plan`` is the planner's state (placement._Planner) once every step has run.
"""

from __future__ import annotations

from ansible_collections.virtops.migration.plugins.module_utils._planning.inputs import COLD, INACTIVE_STATES, LIVE, MAX_NAMES, SHUTDOWN
from ansible_collections.virtops.migration.plugins.module_utils._planning.reasons import counted, fmt, host_names


def plan_result(plan, total):
    """The planner's result, as the module returns it; ``total`` is the predicted makespan."""
    bound = plan.sent_mib / plan.budget
    plan.moves.sort(key=lambda m: m["order"])
    plan.skipped.sort(key=lambda s: s["domain"])
    plan.unplaceable.sort(key=lambda u: u["domain"])
    stays_running = [s["domain"] for s in plan.skipped if s["state"] not in INACTIVE_STATES]
    can_empty = not plan.unplaceable and not stays_running
    destinations = {}
    for move in plan.moves:
        if move["destination"] is None:
            continue
        dest = plan.destinations[move["destination"]]
        entry = destinations.setdefault(dest.name, dict(
            moves=0, memory_mib=0, vcpus=0,
            memory_free_after_mib=round(dest.mem_cap - dest.mem_used, 1),
            vcpus_free_after=round(dest.cpu_cap - dest.cpu_used, 1)))
        entry["moves"] += 1
        entry["memory_mib"] += move["memory_mib"]
        entry["vcpus"] += move["vcpus"]
    result = dict(
        changed=False,
        source=plan.source,
        can_empty=can_empty,
        moves=plan.moves,
        skipped_domains=plan.skipped,
        unplaceable=plan.unplaceable,
        destinations=destinations,
        predicted_total_seconds=round(total, 1),
        bound_seconds=round(bound, 1),
        bandwidth_budget_mib_s=round(plan.budget, 1),
    )
    result["summary"] = summary_lines(plan, result, stays_running)
    return result


def summary_lines(plan, result, stays_running):
    """The plan for people, in a few sentences: what moves how, how long, what was assumed."""
    moves = result["moves"]
    by_mode = dict((mode, sum(1 for m in moves if m["mode"] == mode)) for mode in (LIVE, COLD, SHUTDOWN))
    lines = []
    head = "%s %s: %d domains - %d live, %d cold, %d shut down in place, %d skipped, %d unplaceable" % (
        plan.source, "can be emptied" if result["can_empty"] else "cannot be emptied", len(plan.domains),
        by_mode[LIVE], by_mode[COLD], by_mode[SHUTDOWN], len(result["skipped_domains"]), len(result["unplaceable"]))
    lines.append(head + ".")
    if result["unplaceable"]:
        lines.append("Unplaceable: %s." % host_names([u["domain"] for u in result["unplaceable"]]))
    if stays_running:
        lines.append("Skipped by policy and still running on the source: %s." % host_names(stays_running))
    if moves:
        lines.append("Predicted %s s in total (no faster than %s s: %s MiB over %s MiB/s); %s, at most %d per "
                     "source and %d per destination at a time." % (
                         fmt(result["predicted_total_seconds"]), fmt(result["bound_seconds"]),
                         fmt(round(plan.sent_mib)), fmt(plan.budget),
                         counted(len(result["destinations"]), "destination"),
                         plan.opts.max_parallel_per_source, plan.opts.max_parallel_per_destination))
    escalated = [m for m in moves if m.get("escalation")]
    if escalated:
        lines.append("Escalations predicted: %s." % ", ".join(
            "%s (%s)" % (m["domain"], m["escalation"]) for m in escalated[:MAX_NAMES])
            + ("" if len(escalated) <= MAX_NAMES else " and %d more" % (len(escalated) - MAX_NAMES)))
    worst = max((m for m in moves if m["mode"] == LIVE), key=lambda m: (m["predicted_downtime_ms"], m["domain"]),
                default=None)
    if worst is not None:
        lines.append("Longest live downtime: %d ms (%s)." % (worst["predicted_downtime_ms"], worst["domain"]))
    assumed = []
    if plan.budget_assumed:
        assumed.append("the source's bandwidth was not measured: %s MiB/s assumed" % fmt(plan.budget))
    unmeasured = sum(1 for m in moves if m["mode"] == LIVE and m["state"] != "paused"
                     and plan.by_name[m["domain"]].dirty_rate is None)
    if unmeasured:
        assumed.append("dirty rate not measured for %s: %s MiB/s assumed" % (
            counted(unmeasured, "domain"), fmt(plan.opts.assumed_dirty_rate_mib_s)))
    if plan.unknown_excluded:
        assumed.append("exclude names hosts not in the inventory: %s" % host_names(plan.unknown_excluded))
    if assumed:
        lines.append("Note: %s." % "; ".join(assumed))
    return lines
