#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: restore_plan
short_description: Decide how to bring back to a hypervisor what its evacuation moved away
version_added: 0.1.0
description:
  - From the journal of an evacuation of O(source) and the M(virtops.migration.host_info) facts of every hypervisor, finds
    where each domain the evacuation moved is now and which domains it shut down in place are still off. It only reads
    its input, so it runs on the control node (delegated to C(localhost)), needs no libvirt, and check mode behaves
    exactly as a normal run.
  - A moved domain is moved back from the one other host that holds it (active there, or defined); one held by several
    hosts, or by none, is a problem. A domain shut down in place is started again when it is still defined and off on
    O(source).
author:
  - virtops.migration contributors (!UNKNOWN)
extends_documentation_fragment:
  - virtops.migration.attributes
  - virtops.migration.attributes.control_node
  - virtops.migration.options.source
  - virtops.migration.options.facts
options:
  source:
    required: true
  journal:
    description:
      - The evacuation's journal (the JSON file M(virtops.migration.evacuate) keeps, read as data). Nothing to do when
        not set.
    type: dict
  move_back:
    description:
      - Whether the domains the evacuation moved away come back. C(false) after a rolling upgrade's evacuation, where
        they stay on the upgraded hosts - only the domains shut down in place start again.
    type: bool
    default: true
  silent_hosts:
    description:
      - The hypervisors that did not give their facts. A domain shut down in place is started again only when none
        did not answer - it could be running on one of them - and none of O(hosts) runs it.
    type: list
    elements: str
    default: []
seealso:
  - module: virtops.migration.evacuate
  - module: virtops.migration.evacuation_verify
"""

EXAMPLES = r"""
- name: Find where each evacuated domain is now
  virtops.migration.restore_plan:
    source: hv1
    journal: "{{ lookup('ansible.builtin.file', 'evacuate-hv1.json') | from_json }}"
    hosts: "{{ host_facts }}"
  delegate_to: localhost
  register: restore
"""

RETURN = r"""
moves:
  description: The domains to move back, in name order.
  returned: success
  type: list
  elements: dict
  contains:
    domain:
      description: Name of the domain.
      type: str
      returned: always
    from:
      description: The host it is on now, to move it back from.
      type: str
      returned: always
    state:
      description: Its state there.
      type: str
      returned: always
  sample: [{domain: web1, from: hv2, state: running}]
starts:
  description: The domains the evacuation shut down in place that are still off on O(source), to start again.
  returned: success
  type: list
  elements: str
  sample: [batch1]
problems:
  description: Domains that cannot be brought back, and why.
  returned: success
  type: list
  elements: str
  sample: ["db1 was not found on any hypervisor"]
"""

from ansible_collections.virtops.migration.plugins.module_utils._evacuation.verify import RESTORE_PLAN_MODULE
from ansible_collections.virtops.migration.plugins.module_utils._module import run_module


def main():
    run_module(RESTORE_PLAN_MODULE)


if __name__ == "__main__":
    main()
