#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: precheck
short_description: Find every reason a migration would fail before anything moves
version_added: 0.1.0
description:
  - Runs on a hypervisor (the source) and checks each of its domains (or those in O(domains)) against each
    candidate destination in O(destinations), giving a verdict per pair - C(ok), C(warn) or C(block) - with
    every reason.
  - The checks - the destination's libvirt reached over TLS as the migration would reach it; the domain's
    CPU compared by the destination's own libvirt; machine type, accelerator and emulator offered there;
    QEMU and libvirt not older than the source's; memory and vCPUs free within the overcommit, counting
    what already runs there; each disk shared, or copyable into a pool there; devices that cannot move live;
    this host's TLS client certificates and the destination's QEMU server certificate naming the migration
    address (a revoked certificate blocks, naming it; one that does not name its host is a warning); and a
    prediction of the migration's time and downtime from the throughput measured with
    iperf3 to the destination's migration address and the domain's dirty rate measured by QEMU.
  - The throughput measurement needs a one-shot iperf3 server on each destination
    (C(iperf3 -s -1 -B ADDRESS -p PORT)), which a playbook starts right before this task
    (see C(playbooks/precheck.yml)). Without it, the prediction is skipped with a warning.
  - The C(results) list is the O(virtops.migration.evacuation_plan#module:prechecks) input of the planner.
author:
  - virtops.migration contributors (!UNKNOWN)
extends_documentation_fragment:
  - virtops.migration.connection
  - virtops.migration.attributes
  - virtops.migration.attributes.action_group
  - virtops.migration.attributes.info_module
  - virtops.migration.options.mode
  - virtops.migration.options.ladder
  - virtops.migration.options.storage
  - virtops.migration.options.capacity
  - virtops.migration.options.addresses
  - virtops.migration.options.domains
options:
  destinations:
    description: Candidate destination hypervisors, by inventory host name, address or libvirt URI.
    type: list
    elements: str
    required: true
  destination_facts:
    description:
      - The RV(virtops.migration.host_info#module:host_info) result of each destination (keys as in
        O(destinations)), used for its QEMU server certificate.
    type: dict
    default: {}
  copy_storage:
    default: all
  measure_bandwidth:
    description: Measure the throughput to each destination with iperf3.
    type: bool
    default: true
  bandwidth_port:
    description: Port of the destinations' iperf3 servers.
    type: int
    default: 5201
  bandwidth_seconds:
    description: Seconds each throughput measurement lasts (1 to 60).
    type: int
    default: 3
  dirty_rate_seconds:
    description:
      - Seconds over which QEMU measures each running domain's dirty rate (all in parallel); 0 skips it.
      - QEMU samples 512 pages per GiB of guest memory, so one changed sample reads as 2 MiB divided
        by these seconds, and pages the guest kernel rewrites all the time count in full over a short
        window. A longer window gives a steadier rate for small or slowly dirtying guests.
    type: int
    default: 2
  certificate_min_days:
    description: A certificate that expires within this many days gives a warning.
    type: int
    default: 14
  max_downtime:
    default: 300
seealso:
  - module: virtops.migration.migrate
  - module: virtops.migration.host_info
  - module: virtops.migration.evacuation_plan
"""

EXAMPLES = r"""
- name: Check every domain of hv1 against hv2 and hv3
  virtops.migration.precheck:
    destinations: [hv2, hv3]
    migration_addresses:
      hv2: 198.18.1.12
      hv3: 198.18.1.13
    auto_converge: true
  register: checks

- name: Show what blocks
  ansible.builtin.debug:
    msg: "{{ checks.results | selectattr('verdict', 'equalto', 'block') | list }}"
"""

RETURN = r"""
source:
  description: The host name of the source.
  returned: success
  type: str
results:
  description: One entry per domain and destination.
  returned: success
  type: list
  elements: dict
  contains:
    domain:
      description: Domain name.
      type: str
    source:
      description: The source host name.
      type: str
    destination:
      description: The destination as given in O(destinations).
      type: str
    mode:
      description: C(live) or C(cold), the migration checked for (null when the destination was unreachable).
      type: str
    verdict:
      description: C(ok), C(warn) (it can move, with the reasons to know) or C(block) (it would fail).
      type: str
    reasons:
      description: The details of every check that warned or blocked.
      type: list
      elements: str
    checks:
      description: Every check with C(name), C(verdict) (C(ok), C(warn), C(block), C(skipped)) and C(detail).
      type: list
      elements: dict
    dirty_rate_mib_s:
      description: The domain's measured dirty rate (null when not running or not measured).
      type: float
    predicted_seconds:
      description: Predicted migration time, set-up included (null when not predicted or not converging).
      type: float
    predicted_downtime_ms:
      description: Predicted downtime at switch-over.
      type: int
    converges:
      description: Whether the migration is predicted to complete with the escalations allowed (null when not predicted).
      type: bool
    escalation:
      description: The escalation predicted necessary (C(max_downtime), C(auto_converge), C(postcopy), C(pause)), or null.
      type: str
bandwidth:
  description: Measured throughput to each destination's migration address, MiB/s (null when not measured).
  returned: success
  type: dict
dirty_rates:
  description: Measured dirty rate of each domain checked, MiB/s (null when not measured).
  returned: success
  type: dict
for_plan:
  description:
    - The RV(results) as the C(virtops.migration.evacuation_plan) module's O(virtops.migration.evacuation_plan#module:prechecks)
      option takes them - C(domain), C(source), C(destination), C(verdict), C(reasons), C(predicted_seconds),
      C(predicted_downtime_ms), C(converges) and C(escalation) of each.
  returned: success
  type: list
  elements: dict
summary:
  description: A table a person reads - domain, destination, verdict, predicted time, reasons.
  returned: success
  type: list
  elements: str
"""

from ansible_collections.virtops.migration.plugins.module_utils._facts.precheck_run import PRECHECK_MODULE
from ansible_collections.virtops.migration.plugins.module_utils._module import run_module


def main():
    run_module(PRECHECK_MODULE)


if __name__ == "__main__":
    main()
