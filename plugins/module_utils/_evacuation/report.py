# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""What the evacuate module returns: the journal's entries and totals, a summary for people.
"""

from __future__ import annotations

from ansible_collections.virtops.migration.plugins.module_utils._evacuation.journal import Journal
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.record import (
    DONE,
    IN_FLIGHT,
    MOVED,
    SHUT_DOWN,
    SKIPPED,
)
from ansible_collections.virtops.migration.plugins.module_utils._planning.inputs import COLD


def _fmt(value, unit="", digits=1):
    if value is None:
        return "-"
    return ("%." + str(digits) + "f%s") % (value, unit)


def build_report(journal, request, elapsed):
    """The module's result: the journal's entries and totals, a summary for people, the bound."""
    data = journal.data
    totals = dict(data["totals"])
    records = journal.ordered()
    moved_mib = totals.get("moved_mib") or 0.0
    bound = None
    ratio = None
    if request.throughput:
        # This run's wall time against what this run moved (a resumed run did not move it all).
        bound = round((totals.get("moved_mib_this_run") or 0.0) / request.throughput, 2)
        if bound > 0:
            ratio = round(elapsed / bound, 2)
    totals.update(wall_seconds=round(elapsed, 2), bound_seconds=bound, bound_ratio=ratio,
                  source_throughput_mib_s=request.throughput)
    width = max([len(r["domain"]) for r in records] + [6])
    lines = ["%s: evacuation %s %s in %s s - %d moved, %d shut down in place, %d failed, %d pending, %d skipped." % (
        data.get("source") or "source", data["evacuation_id"], data["result"], _fmt(elapsed), totals["moved"],
        totals["shut_down"], totals["failed"], totals["pending"], totals["skipped"])]
    for record in records:
        status = record["status"]
        if status == MOVED:
            escalation = record.get("completed_by") or ("cold" if record.get("mode") == COLD else "-")
            text = "-> %-8s %-5s %7s s (predicted %s s)  downtime %s ms  %s" % (
                record.get("destination"), record.get("mode"), _fmt(record.get("seconds")),
                _fmt(record.get("predicted_seconds")),
                record.get("downtime_ms") if record.get("downtime_ms") is not None else "-", escalation)
        elif status == SHUT_DOWN:
            text = "shut down in place (%s s)" % _fmt(record.get("seconds"))
        elif status == SKIPPED:
            text = "skipped: %s" % ("; ".join(record.get("notes") or []) or "by policy")
        else:
            text = "%s%s" % (status.upper().replace("_", " "), ": %s" % record["error"] if record.get("error") else "")
        lines.append("  %-*s %s" % (width, record["domain"], text))
    line = "Sent %s MiB in %s s (%s MiB/s); moved %s MiB of memory and disks." % (
        totals["mib_sent"], _fmt(elapsed), _fmt(totals.get("throughput_mib_s")), moved_mib)
    if bound is not None:
        line += " Bound at %s MiB/s: %s s; wall time / bound = %s." % (request.throughput, bound, _fmt(ratio, "", 2))
    lines.append(line)
    return dict(
        evacuation_id=data["evacuation_id"],
        source=data.get("source"),
        result=data["result"],
        journal=None,
        domains=records,
        totals=totals,
        summary=lines,
        progress=data.get("progress"),
    )


def check_mode_report(request, journal):
    """What a real run would do, from the journal alone (nothing is opened or written)."""
    preview = Journal.new(request.evacuation_id, request.source) if journal is None else journal
    would = []
    for move in request.moves:
        record = preview.record(move["domain"])
        if record is None or record["status"] not in DONE:
            would.append(dict(domain=move["domain"], destination=move["destination"], mode=move["mode"]))
    in_flight = [r["domain"] for r in preview.in_status(IN_FLIGHT)]
    report = dict(evacuation_id=request.evacuation_id, source=request.source, result=None, journal=None,
                  domains=preview.ordered() if journal is not None else [], totals=preview.data.get("totals") or {},
                  summary=["would start %d moves%s" % (len(would), ", and settle %d left in flight by an interrupted "
                                                                   "run" % len(in_flight) if in_flight else "")],
                  progress=preview.data.get("progress"), would_move=would)
    report["changed"] = bool(would or in_flight)
    return report
