#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: upgrade_plan
short_description: Schedule a rolling upgrade of the whole fleet once - waves of hosts, where each running domain goes, time, blockers
version_added: 0.1.0
description:
  - Computes, before anything moves, in which waves the hypervisors are emptied and upgraded, and where each running
    domain goes, so that most domains move once - onto a host already upgraded - instead of out and back.
  - Only running domains move; a shut-off domain stays defined on its host. A domain goes preferably to a host at
    O(target_qemu_version); only when none has room does it go to one not yet upgraded, and it then moves again in
    that host's wave. A domain never goes from a host at the target to one below it (new to old), nor to a host whose
    QEMU does not offer its machine type. Capacity and anti-affinity are counted as M(virtops.migration.evacuation_plan)
    counts them. A host in maintenance or in O(exclude) receives nothing.
  - A wave holds up to O(max_hosts_per_wave) hosts, those with the least memory to move first; the hosts of one wave
    never receive each other's domains. Its predicted time is that of its busiest source or destination, at
    O(max_parallel_per_source) and O(max_parallel_per_destination) moves at a time, plus O(upgrade_seconds).
  - A host that cannot be emptied - a running domain with C(do_not_migrate=skip), or one that fits nowhere even once
    every other host is upgraded - is reported in RV(blocked), before anything starts.
  - Also says which machine types should stay pinned while the fleet is mixed, and which newer one the upgraded
    hosts offer for later.
  - Runs on the control node from M(virtops.migration.host_info) facts; it needs no libvirt and changes nothing.
author:
  - virtops.migration contributors (!UNKNOWN)
extends_documentation_fragment:
  - virtops.migration.attributes
  - virtops.migration.attributes.control_node
  - virtops.migration.options.facts
  - virtops.migration.options.capacity
  - virtops.migration.options.concurrency
  - virtops.migration.options.planning
options:
  target_qemu_version:
    description:
      - The QEMU version the upgrade brings (for example C(10.0.0)). A host whose C(qemu_version) is at least this is
        already upgraded - a preferred destination, and not emptied.
      - When not set, every host is to be upgraded and none counts as upgraded yet.
    type: str
  max_hosts_per_wave:
    description:
      - Hosts emptied and upgraded together (1 to 10000). More hosts per wave finish sooner; more domains then land on
        hosts not yet upgraded, and move twice.
    type: int
    default: 1
  continue_on_blocked:
    description:
      - When a host is blocked, RV(proceed) is still true - the run upgrades the others, around it. Otherwise only a
        fleet with nothing blocked proceeds.
    type: bool
    default: false
  bandwidth_mib_s:
    description: The throughput of one migration stream, in MiB/s, for the predicted time.
    type: float
    default: 112.0
  upgrade_seconds:
    description: Time to upgrade and verify one emptied host, for the predicted time.
    type: float
    default: 300.0
seealso:
  - module: virtops.migration.evacuation_plan
  - module: virtops.migration.host_info
"""

EXAMPLES = r"""
- name: Schedule the upgrade of every hypervisor to QEMU 10.0
  virtops.migration.upgrade_plan:
    hosts: "{{ host_facts }}"
    target_qemu_version: "10.0.0"
    max_hosts_per_wave: 4
  delegate_to: localhost
  register: schedule

- name: Show it
  ansible.builtin.debug:
    msg: "{{ schedule.lines }}"
"""

RETURN = r"""
can_upgrade:
  description: Whether every host can be upgraded (nothing is blocked).
  returned: success
  type: bool
proceed:
  description: Whether the run may start - O(continue_on_blocked), or nothing blocked.
  returned: success
  type: bool
waves:
  description:
    - The waves in order, each with C(wave) (its number), C(hosts), C(moves) (C(domain), C(source), C(destination),
      C(mode) - C(live) or C(cold) -, C(to_upgraded) - whether the destination is upgraded by then -, C(seconds)),
      C(shut_down_in_place) (domains with C(do_not_migrate=shutdown), shut down during the upgrade) and
      C(predicted_seconds).
  returned: success
  type: list
  elements: dict
blocked:
  description: Each host that cannot be emptied (C(host), C(reasons)).
  returned: success
  type: list
  elements: dict
already_upgraded:
  description: Hosts at O(target_qemu_version) from the start.
  returned: success
  type: list
  elements: str
excluded:
  description: The hosts of O(exclude) that are in O(hosts).
  returned: success
  type: list
  elements: str
totals:
  description:
    - C(hosts), C(already_upgraded), C(to_upgrade), C(blocked), C(waves), C(domains_moved), C(moves),
      C(moves_per_moved_domain), C(moved_twice) and C(predicted_total_seconds) (the waves one after another).
  returned: success
  type: dict
  sample: {hosts: 3, to_upgrade: 3, waves: 3, domains_moved: 6, moves: 6, moves_per_moved_domain: 1.0}
machine_types:
  description: Per machine type of running domains that upgraded hosts offer a newer version of - C(machine), C(newest), C(domains).
  returned: success
  type: list
  elements: dict
lines:
  description: The schedule for a person - a summary, one line per wave, per blocked host, per machine type.
  returned: success
  type: list
  elements: str
"""

from ansible_collections.virtops.migration.plugins.module_utils._planning.upgrade import UPGRADE_PLAN_MODULE
from ansible_collections.virtops.migration.plugins.module_utils._module import run_module


def main():
    run_module(UPGRADE_PLAN_MODULE)


if __name__ == "__main__":
    main()
