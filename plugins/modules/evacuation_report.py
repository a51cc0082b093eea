#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: evacuation_report
short_description: Write an evacuation's report for people and for tools - JSON, a timeline picture, JUnit XML, Prometheus metrics
version_added: 0.1.0
description:
  - Puts together what M(virtops.migration.evacuation_plan), M(virtops.migration.evacuate) and
    M(virtops.migration.evacuation_verify) returned into one report, with the plan's predicted time beside the actual one,
    and writes it in O(dest) in each of O(formats).
  - C(json) (C(ID.report.json)) - the whole report.
  - C(svg) (C(ID.timeline.svg)) - a timeline - one bar per domain from the start of its move to its end, coloured by
    outcome, with its downtime marked at its end and its predicted time drawn as an outline. Any web browser shows it.
  - C(junit) (C(ID.junit.xml)) - one test case per domain, failed when the domain was not moved, shut down or skipped as
    planned, for CI systems (Jenkins, GitLab, AWX's job output).
  - C(prometheus) (C(ID.prom)) - the figures of every move and of the evacuation in Prometheus' text format. Set
    O(prometheus_textfile) to write them where node_exporter's textfile collector reads them.
  - Each file is replaced atomically, and only when its content changed. Nothing is connected to; it runs on the
    control node (delegated to C(localhost)).
author:
  - virtops.migration contributors (!UNKNOWN)
extends_documentation_fragment:
  - virtops.migration.attributes
  - virtops.migration.options.source
  - virtops.migration.options.evacuation_id
  - virtops.migration.options.evacuation_result
attributes:
  check_mode:
    support: full
    details:
      - Returns the report and the file names, and writes nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - A file whose content and mode are already those of the report is left alone.
options:
  source:
    required: true
  evacuation:
    required: true
  plan:
    description: The result of the M(virtops.migration.evacuation_plan) module - its predicted and bound times.
    type: dict
  verification:
    description: The result of the M(virtops.migration.evacuation_verify) module - its RV(virtops.migration.evacuation_verify#module:problems).
    type: dict
  dest:
    description: The directory the files are written in; created (mode C(0700)) when it does not exist.
    type: path
    required: true
  formats:
    description: Which files to write in O(dest).
    type: list
    elements: str
    choices: [json, junit, prometheus, svg]
    default: [json, svg, junit]
  prometheus_textfile:
    description:
      - Also write the Prometheus metrics to this file (mode C(0644), ending in C(.prom)), for example
        C(/var/lib/prometheus/node-exporter/virtops_migration.prom) for node_exporter's textfile collector. One file per
        control node keeps the metrics of the latest evacuation only; name it after the source to keep one per host.
    type: path
  file_mode:
    description: The octal mode of the files in O(dest). The report names hosts and domains, and holds no secret.
    type: str
    default: "0640"
seealso:
  - module: virtops.migration.evacuate
  - module: virtops.migration.evacuation_verify
"""

EXAMPLES = r"""
- name: Write the report next to the journal on the control node
  virtops.migration.evacuation_report:
    source: hv1
    evacuation_id: evacuate-hv1
    evacuation: "{{ evacuation }}"
    plan: "{{ plan }}"
    verification: "{{ verified }}"
    dest: "{{ lookup('env', 'HOME') }}/.virtops-migration/evacuations/hv1"
    formats: [json, svg, junit, prometheus]
  delegate_to: localhost
  register: report

- name: Show it
  ansible.builtin.debug:
    msg: "{{ report.lines }}"
"""

RETURN = r"""
report:
  description: The report (what C(ID.report.json) holds).
  returned: always
  type: dict
  contains:
    result:
      description: The evacuation's result (C(completed), C(partial), C(failed), C(aborted)), C(failed) when it gave none.
      type: str
    error:
      description: The message of the evacuation's failure, or null.
      type: str
    verification_problems:
      description: What the verification found not where it should be.
      type: list
      elements: str
    domains:
      description: The evacuation's records, one per domain (RV(virtops.migration.evacuate#module:domains)).
      type: list
      elements: dict
    totals:
      description: The evacuation's totals (RV(virtops.migration.evacuate#module:totals)).
      type: dict
    prediction:
      description: C(predicted_seconds) (the plan's), C(actual_seconds) (the run's wall time) and C(actual_over_predicted).
      type: dict
  sample:
    result: completed
    prediction: {predicted_seconds: 12.5, actual_seconds: 11.1, actual_over_predicted: 0.89}
files:
  description: The file written (or, in check mode, to be written) for each format.
  returned: always
  type: dict
  sample: {json: /root/.virtops-migration/evacuations/hv1/evacuate-hv1.report.json}
lines:
  description: A summary for people - the evacuation's lines, predicted against actual time, problems, the files.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.virtops.migration.plugins.module_utils._evacuation.report_files import EVACUATION_REPORT_MODULE
from ansible_collections.virtops.migration.plugins.module_utils._module import run_module


def main():
    run_module(EVACUATION_REPORT_MODULE)


if __name__ == "__main__":
    main()
