# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The evacuation_report module: an evacuation's report, put together from what the plan, the
evacuation and the verification returned, written in the forms people and tools read.

- report_document(): one document - the evacuation's records and totals, the verification's
  problems, the plan's prediction beside the actual time;
- report_lines(): what the playbook shows at its end;
- run_evacuation_report(): writes the files (JSON, SVG timeline, JUnit XML, Prometheus text)
  atomically, each only when its content changed.

Plain Python on the control node, no libvirt.
"""

from __future__ import annotations

import json
import os
import re

from ansible_collections.virtops.migration.plugins.module_utils._evacuation.outputs import (
    junit_xml,
    prometheus_text,
    timeline_svg,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.journal import JournalError, atomic_write, validate_id
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import ParameterError, VirtopsError
from ansible_collections.virtops.migration.plugins.module_utils._module import EntryPoint
from ansible_collections.virtops.migration.plugins.module_utils._option_spec import argument_spec
from ansible_collections.virtops.migration.plugins.module_utils._options import EVACUATION_ID, EVACUATION_RESULT, SOURCE


def _json(report):
    return json.dumps(report, indent=2, sort_keys=True) + "\n"


# Each format: the file name's suffix after the evacuation id, and its renderer.
FORMATS = {
    "json": (".report.json", _json),
    "svg": (".timeline.svg", timeline_svg),
    "junit": (".junit.xml", junit_xml),
    "prometheus": (".prom", prometheus_text),
}
DEFAULT_FORMATS = ["json", "svg", "junit"]
MODE_PATTERN = re.compile(r"^0?[0-7]{3}$")


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def report_document(evacuation_id, source, evacuation, plan, verification):
    """The report: what the evacuation did, what the verification found, what the plan predicted."""
    totals = dict(evacuation.get("totals") or {})
    predicted = _number(plan.get("predicted_total_seconds"))
    actual = _number(totals.get("wall_seconds"))
    ratio = round(actual / predicted, 2) if predicted and actual is not None else None
    return dict(
        evacuation_id=evacuation_id,
        source=source,
        result=evacuation.get("result") or "failed",
        error=evacuation.get("msg"),
        verification_problems=list(verification.get("problems") or []),
        totals=totals,
        domains=list(evacuation.get("domains") or []),
        summary=list(evacuation.get("summary") or []),
        plan=dict(predicted_total_seconds=predicted, bound_seconds=plan.get("bound_seconds"),
                  bandwidth_budget_mib_s=plan.get("bandwidth_budget_mib_s"), summary=list(plan.get("summary") or [])),
        prediction=dict(predicted_seconds=predicted, actual_seconds=actual, actual_over_predicted=ratio),
    )


def report_lines(report, files):
    """The summary the playbook shows: the evacuation's lines, predicted against actual, problems, files."""
    lines = list(report["summary"]) or [report["error"] or "the evacuation gave no result"]
    plan = report["plan"]
    prediction = report["prediction"]
    if plan["predicted_total_seconds"] is not None:
        line = "Planned %s s (bound %s s at %s MiB/s)" % (
            plan["predicted_total_seconds"], plan["bound_seconds"], plan["bandwidth_budget_mib_s"])
        if prediction["actual_over_predicted"] is not None:
            line += "; took %s s, %s of the prediction" % (prediction["actual_seconds"],
                                                           prediction["actual_over_predicted"])
        lines.append(line + ".")
    lines.extend("VERIFICATION: %s" % problem for problem in report["verification_problems"])
    if files:
        lines.append("Report: %s" % ", ".join(files[name] for name in sorted(files)))
    return lines


def _write(path, content, mode):
    """Replace ``path`` with ``content`` atomically; False when it already holds exactly that."""
    try:
        with open(path, "r", encoding="utf-8") as handle:
            if handle.read() == content and (os.stat(path).st_mode & 0o7777) == mode:
                return False
    except (IOError, OSError, UnicodeDecodeError):
        pass
    atomic_write(path, content, mode)
    return True


def _check(params):
    try:
        validate_id(params["evacuation_id"])
    except JournalError as err:
        raise ParameterError(err.msg) from None
    if not MODE_PATTERN.match(params["file_mode"]):
        raise ParameterError("file_mode %r must be an octal file mode such as 0640" % params["file_mode"])
    if not params["formats"] and not params["prometheus_textfile"]:
        raise ParameterError("formats is empty and prometheus_textfile is not set: there is nothing to write")
    textfile = params["prometheus_textfile"]
    if textfile is not None and not textfile.endswith(".prom"):
        raise ParameterError("prometheus_textfile %r must end in .prom, the only files node_exporter's textfile "
                             "collector reads" % textfile)


def run_evacuation_report(module):
    params = module.params
    _check(params)
    report = report_document(params["evacuation_id"], params["source"], params["evacuation"], params["plan"] or {},
                             params["verification"] or {})
    mode = int(params["file_mode"], 8)
    targets = dict((name, (os.path.join(params["dest"], params["evacuation_id"] + FORMATS[name][0]),
                           FORMATS[name][1], mode)) for name in params["formats"])
    if params["prometheus_textfile"]:
        # node_exporter runs as its own user and must read it; it holds no secret.
        targets["prometheus_textfile"] = (params["prometheus_textfile"], prometheus_text, 0o644)
    files = dict((name, target[0]) for name, target in targets.items())
    changed = False
    if not module.check_mode:
        try:
            if not os.path.isdir(params["dest"]):
                os.makedirs(params["dest"], 0o700)
            for path, render, file_mode in targets.values():
                changed = _write(path, render(report), file_mode) or changed
        except (IOError, OSError) as err:
            raise VirtopsError("cannot write the report: %s" % err)
    return dict(changed=changed, report=report, files=files, lines=report_lines(report, files))


EVACUATION_REPORT_ARGUMENT_SPEC = argument_spec(
    SOURCE["source"].but(required=True), EVACUATION_ID, EVACUATION_RESULT["evacuation"].but(required=True),
    plan=dict(type="dict"),
    verification=dict(type="dict"),
    dest=dict(type="path", required=True),
    formats=dict(type="list", elements="str", choices=sorted(FORMATS), default=DEFAULT_FORMATS),
    prometheus_textfile=dict(type="path"),
    file_mode=dict(type="str", default="0640"),
)

# Runs on the control node from results already returned: no connection, no libvirt.
EVACUATION_REPORT_MODULE = EntryPoint(run_evacuation_report, EVACUATION_REPORT_ARGUMENT_SPEC, connection=False)
