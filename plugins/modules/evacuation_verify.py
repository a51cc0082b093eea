#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: evacuation_verify
short_description: Verify, from host facts read afterwards, that an evacuation or a restore left each domain where it should be
version_added: 0.1.0
description:
  - Judges where the domains are from the M(virtops.migration.host_info) facts of every hypervisor, read after the moves,
    independently of what the moves reported. It only reads its input, so it runs on the control node (delegated to
    C(localhost)), needs no libvirt, and check mode behaves exactly as a normal run.
  - Exactly one of O(evacuation) and O(restore) is required.
  - After an evacuation (O(evacuation)) - every domain the evacuation moved (status C(moved)) is no longer defined on
    O(source), is on its destination, runs there when it ran before, is persistent there, and is active on no other
    host of O(hosts) (a domain of another UUID that only shares the name does not count); every domain it shut down
    in place is shut off on O(source); a domain that ran before and is paused where it went is not done. With O(empty),
    no other domain is left on O(source); with O(empty_pattern), no other domain whose name it matches.
  - After a restore (O(restore)) - the problems the restore plan found are kept, every failed attempt of O(moved) and
    O(started) is one, and every domain the plan moved back or started is on O(source), not shut off, and held by no
    other host (a transient shut-off leftover does not count).
author:
  - virtops.migration contributors (!UNKNOWN)
extends_documentation_fragment:
  - virtops.migration.attributes
  - virtops.migration.attributes.control_node
  - virtops.migration.options.source
  - virtops.migration.options.facts
  - virtops.migration.options.evacuation_result
options:
  source:
    required: true
  empty:
    description:
      - With O(evacuation) - the evacuation was to empty O(source) of every domain, so every domain still on it is a
        problem, not only those the evacuation moved - one that runs there (transient ones included) or is defined
        there, unless the evacuation shut it down in place or skipped it by its C(do_not_migrate) policy.
    type: bool
    default: false
  empty_pattern:
    description:
      - With O(evacuation) - the evacuation was to empty O(source) of the domains whose names match this regular
        expression (from their start, as Python's C(re.match)), so every such domain still on it is a problem, as
        O(empty) says for every domain. Ignored with O(empty).
    type: str
  restore:
    description:
      - The result of the M(virtops.migration.restore_plan) module - its RV(virtops.migration.restore_plan#module:moves),
        RV(virtops.migration.restore_plan#module:starts) and RV(virtops.migration.restore_plan#module:problems).
    type: dict
  moved:
    description: With O(restore) - the registered C(results) of the task that moved the domains back (each with its C(item)).
    type: list
    elements: dict
  started:
    description:
      - With O(restore) - the registered result of the M(virtops.migration.domain_start) task that started again the
        domains shut down in place (its RV(virtops.migration.domain_start#module:problems), or its C(msg) when it
        failed).
    type: dict
seealso:
  - module: virtops.migration.evacuate
  - module: virtops.migration.restore_plan
  - module: virtops.migration.host_info
"""

EXAMPLES = r"""
- name: Verify that no domain the plan moved is still running or defined on hv1
  virtops.migration.evacuation_verify:
    source: hv1
    evacuation: "{{ evacuation }}"
    hosts: "{{ host_facts }}"
  delegate_to: localhost
  register: verified
"""

RETURN = r"""
problems:
  description: Each domain that is not where it should be, and why; empty when all is well.
  returned: success
  type: list
  elements: str
  sample: ["web1 is not persistent on hv2"]
failures:
  description: With O(evacuation) - one line per domain the evacuation did not move (status C(failed)), with its error.
  returned: success
  type: list
  elements: str
  sample: ["db1 failed: live migration of db1 from hv1 to hv2 failed after 3.0 s."]
"""

from ansible_collections.virtops.migration.plugins.module_utils._evacuation.verify import EVACUATION_VERIFY_MODULE
from ansible_collections.virtops.migration.plugins.module_utils._module import run_module


def main():
    run_module(EVACUATION_VERIFY_MODULE)


if __name__ == "__main__":
    main()
