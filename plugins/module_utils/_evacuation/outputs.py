# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""An evacuation's report in the forms other tools read: a timeline picture (SVG), JUnit XML
for CI systems, and Prometheus text-format metrics for node_exporter's textfile collector.

Each takes the report the evacuate module returns (``domains``: the journal's records,
``totals``, ``evacuation_id``, ``source``, ``result``) and returns text; writing it is the
caller's business. Plain Python, no libvirt.
"""

from __future__ import annotations

import datetime
import math
from xml.sax.saxutils import escape, quoteattr

# A record's outcome, from its status: what the picture colours and the metrics label.
OUTCOMES = {
    "moved": "moved",
    "shut_down": "shut_down",
    "skipped": "skipped",
    "failed": "failed",
    "pending": "not_done",
    "in_flight": "not_done",
}
COLOURS = {
    "moved": "#2e7d32",
    "shut_down": "#1565c0",
    "skipped": "#9e9e9e",
    "failed": "#c62828",
    "not_done": "#ef6c00",
}


def outcome(record):
    return OUTCOMES.get(record.get("status"), "not_done")


def _instant(text):
    """Seconds since the epoch of an ISO 8601 time as the journal writes it, or None."""
    if not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def _number(value):
    """A finite float, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# --- the timeline picture ---------------------------------------------------------------

ROW = 26
LABEL_WIDTH = 190
PLOT_WIDTH = 640
TOP = 58
BOTTOM = 54


def _bars(report):
    """(domain, outcome, start offset s, duration s or None, downtime ms, predicted s, destination)."""
    records = report.get("domains") or []
    starts = [_instant(r.get("started_at")) for r in records]
    known = [s for s in starts if s is not None]
    origin = min(known) if known else 0.0
    bars = []
    for record, start in zip(records, starts):
        bars.append((record.get("domain") or "?", outcome(record),
                     None if start is None else start - origin, _number(record.get("seconds")),
                     _number(record.get("downtime_ms")), _number(record.get("predicted_seconds")),
                     record.get("destination")))
    return bars


def _tick_step(span):
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if span / step <= 10:
            return step
    return 7200


def timeline_svg(report):
    """One bar per domain from the start of its move to its end, coloured by outcome, with
    the downtime marked at the end of the bar and the predicted time as an outline."""
    bars = _bars(report)
    ends = [row[2] + max(row[3] or 0.0, row[5] or 0.0) for row in bars if row[2] is not None]
    span = max(ends + [1.0])
    scale = PLOT_WIDTH / span
    height = TOP + ROW * max(len(bars), 1) + BOTTOM
    width = LABEL_WIDTH + PLOT_WIDTH + 30
    title = "Evacuation %s of %s: %s" % (report.get("evacuation_id") or "?", report.get("source") or "?",
                                         report.get("result") or "?")
    parts = [
        '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
        'font-family="sans-serif" font-size="12">' % (width, height, width, height),
        '<rect width="100%" height="100%" fill="white"/>',
        '<text x="10" y="22" font-size="15" font-weight="bold">%s</text>' % escape(title),
    ]
    legend_x = LABEL_WIDTH
    for name in ("moved", "shut_down", "skipped", "failed", "not_done"):
        parts.append('<rect x="%d" y="32" width="12" height="12" fill="%s"/>' % (legend_x, COLOURS[name]))
        parts.append('<text x="%d" y="43">%s</text>' % (legend_x + 16, name.replace("_", " ")))
        legend_x += 95
    parts.append('<rect x="%d" y="32" width="12" height="12" fill="none" stroke="#555" stroke-dasharray="3,2"/>'
                 % legend_x)
    parts.append('<text x="%d" y="43">predicted</text>' % (legend_x + 16))
    axis_y = TOP + ROW * max(len(bars), 1) + 6
    step = _tick_step(span)
    tick = 0
    while tick <= span + 1e-9:
        x = LABEL_WIDTH + tick * scale
        parts.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e0e0e0"/>' % (x, TOP - 4, x, axis_y))
        parts.append('<text x="%.1f" y="%d" text-anchor="middle">%s s</text>' % (x, axis_y + 16, tick))
        tick += step
    for row, (name, result, start, duration, downtime_ms, predicted, destination) in enumerate(bars):
        y = TOP + row * ROW
        label = name if not destination or result != "moved" else "%s \u2192 %s" % (name, destination)
        parts.append('<text x="10" y="%d">%s</text>' % (y + 15, escape(label)))
        if start is None:
            parts.append('<text x="%d" y="%d" fill="#777">%s</text>' % (
                LABEL_WIDTH + 4, y + 15, "skipped" if result == "skipped" else "not started"))
            continue
        x = LABEL_WIDTH + start * scale
        if predicted:
            parts.append('<rect x="%.1f" y="%d" width="%.1f" height="18" fill="none" stroke="#555" '
                         'stroke-dasharray="3,2"/>' % (x, y + 2, max(predicted * scale, 1.0)))
        length = max((duration or 0.0) * scale, 2.0)
        tooltip = "%s: %s, %s s%s%s" % (name, result.replace("_", " "), "-" if duration is None else "%.1f" % duration,
                                        "" if predicted is None else " (predicted %.1f s)" % predicted,
                                        "" if downtime_ms is None else ", downtime %d ms" % downtime_ms)
        parts.append('<rect x="%.1f" y="%d" width="%.1f" height="14" fill="%s"><title>%s</title></rect>'
                     % (x, y + 4, length, COLOURS[result], escape(tooltip)))
        if downtime_ms is not None:
            # The guest is paused at the switch-over, at the end of its move.
            mark = max(downtime_ms / 1000.0 * scale, 2.0)
            parts.append('<rect x="%.1f" y="%d" width="%.1f" height="22" fill="black"/>' % (x + length - mark, y, mark))
            parts.append('<text x="%.1f" y="%d" font-size="10">%d ms</text>' % (x + length + 4, y + 15, downtime_ms))
    parts.append('<text x="10" y="%d" font-size="11" fill="#555">Bars: each move from start to end; black: '
                 'the downtime at its switch-over; dashed: the predicted time.</text>' % (height - 10))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


# --- JUnit XML ---------------------------------------------------------------------------


def junit_xml(report):
    """One test case per domain: passed when moved, shut down or skipped as planned."""
    records = report.get("domains") or []
    name = "evacuation %s of %s" % (report.get("evacuation_id") or "?", report.get("source") or "?")
    failures = sum(1 for r in records if outcome(r) in ("failed", "not_done"))
    skipped = sum(1 for r in records if outcome(r) == "skipped")
    total = _number((report.get("totals") or {}).get("wall_seconds")) or 0.0
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<testsuites name=%s tests="%d" failures="%d" skipped="%d" time="%.3f">' % (
                 quoteattr(name), len(records), failures, skipped, total),
             '  <testsuite name=%s tests="%d" failures="%d" skipped="%d" time="%.3f">' % (
                 quoteattr(name), len(records), failures, skipped, total)]
    for record in records:
        result = outcome(record)
        seconds = _number(record.get("seconds")) or 0.0
        case = '    <testcase classname=%s name=%s time="%.3f"' % (
            quoteattr("virtops.migration.%s" % (report.get("source") or "source")),
            quoteattr(record.get("domain") or "?"), seconds)
        details = "status %s, mode %s, destination %s, %s s (predicted %s s), downtime %s ms" % (
            record.get("status"), record.get("mode"), record.get("destination"), record.get("seconds"),
            record.get("predicted_seconds"), record.get("downtime_ms"))
        if result in ("failed", "not_done"):
            message = record.get("error") or ("not done: %s" % record.get("status"))
            lines.append(case + ">")
            lines.append("      <failure message=%s>%s</failure>" % (quoteattr(message), escape(details)))
            lines.append("    </testcase>")
        elif result == "skipped":
            lines.append(case + ">")
            lines.append("      <skipped message=%s/>" % quoteattr("; ".join(record.get("notes") or []) or "by policy"))
            lines.append("    </testcase>")
        else:
            lines.append(case + ">")
            lines.append("      <system-out>%s</system-out>" % escape(details))
            lines.append("    </testcase>")
    lines += ["  </testsuite>", "</testsuites>"]
    return "\n".join(lines) + "\n"


# --- Prometheus text format --------------------------------------------------------------

METRICS = (
    ("virtops_migration_move_duration_seconds", "Wall time of each domain's move."),
    ("virtops_migration_move_predicted_seconds", "The plan's predicted time of each domain's move."),
    ("virtops_migration_move_downtime_seconds", "Downtime of each live move, as QEMU reported it."),
    ("virtops_migration_move_sent_bytes", "Bytes each move sent."),
    ("virtops_migration_move_outcome", "1 for the outcome each domain's move ended with."),
    ("virtops_migration_evacuation_duration_seconds", "Wall time of the evacuation's last run."),
    ("virtops_migration_evacuation_domains", "Domains of the evacuation by outcome."),
    ("virtops_migration_evacuation_completed", "1 when the evacuation's result is completed, else 0."),
)


def _label(value):
    return '"%s"' % str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels):
    return "{%s}" % ",".join("%s=%s" % (key, _label(value)) for key, value in sorted(labels.items()))


def prometheus_text(report):
    """The evacuation's figures per domain and in total, for node_exporter's textfile collector."""
    evacuation = dict(evacuation=report.get("evacuation_id") or "", source=report.get("source") or "")
    samples = dict((metric, []) for metric, _help in METRICS)
    counts = dict((name, 0) for name in COLOURS)
    for record in report.get("domains") or []:
        result = outcome(record)
        counts[result] += 1
        labels = dict(evacuation, domain=record.get("domain") or "", destination=record.get("destination") or "",
                      mode=record.get("mode") or "")
        for metric, value in (("virtops_migration_move_duration_seconds", _number(record.get("seconds"))),
                              ("virtops_migration_move_predicted_seconds", _number(record.get("predicted_seconds"))),
                              ("virtops_migration_move_sent_bytes", _number(record.get("bytes_sent")))):
            if value is not None:
                samples[metric].append((labels, value))
        downtime = _number(record.get("downtime_ms"))
        if downtime is not None:
            samples["virtops_migration_move_downtime_seconds"].append((labels, downtime / 1000.0))
        samples["virtops_migration_move_outcome"].append((dict(labels, outcome=result), 1))
    wall = _number((report.get("totals") or {}).get("wall_seconds"))
    if wall is not None:
        samples["virtops_migration_evacuation_duration_seconds"].append((evacuation, wall))
    for name, count in sorted(counts.items()):
        samples["virtops_migration_evacuation_domains"].append((dict(evacuation, outcome=name), count))
    samples["virtops_migration_evacuation_completed"].append(
        (evacuation, 1 if report.get("result") == "completed" else 0))
    lines = []
    for metric, help_text in METRICS:
        lines.append("# HELP %s %s" % (metric, help_text))
        lines.append("# TYPE %s gauge" % metric)
        for labels, value in samples[metric]:
            lines.append("%s%s %s" % (metric, _labels(**labels), repr(float(value)) if isinstance(value, float)
                                      else value))
    return "\n".join(lines) + "\n"
