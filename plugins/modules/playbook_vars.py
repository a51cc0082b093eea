#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: playbook_vars
short_description: Check a playbook's variables against their declaration and give each its effective value
version_added: 0.1.0
description:
  - Reads the declaration of the collection's playbook variables (C(playbooks/vars/argument_specs.yml)) - for each
    variable its type, elements, choices, default, bounds and pattern - and checks every declared variable of the
    sections O(entries) that the host has set (by extra vars, inventory, play or task vars, with Ansible's
    precedence).
  - Refuses a string where a list is wanted (Ansible would split C(hv3,hv4) on commas), a value of the wrong type
    or not among the choices (Ansible's own argument spec validator), a number outside its bounds (C(inf) and
    C(nan) included, each element of a list) and a string that does not match its pattern. A refusal fails the
    task with one message naming each variable refused and what it may be, before anything changes.
  - Returns RV(variables), the value of every declared variable that is set (converted to its type) or has a
    default (a default may be a template, evaluated for the host). Variables with no default that are not set are
    left out, so that C(| default(omit)) keeps giving a module its own default.
  - It sets no variable itself. An action other than M(ansible.builtin.set_fact) that returns C(ansible_facts) sets
    host facts, which the fact cache keeps and a later run reads back above its inventory. Hand RV(variables) to
    M(ansible.builtin.set_fact) (not cacheable) as C(playbooks/tasks/check_vars.yml) does; the values then hold
    for this run only, above the inventory and below extra vars.
  - It runs on the controller, as an action plugin, and needs no connection to the host.
author:
  - virtops.migration contributors (!UNKNOWN)
extends_documentation_fragment:
  - virtops.migration.attributes
  - virtops.migration.attributes.controller_action
  - virtops.migration.attributes.control_node
options:
  entries:
    description:
      - The sections of the declaration that apply to the playbook, for example C([evacuate, restore]).
    type: list
    elements: str
    required: true
  declaration:
    description:
      - The declaration - a dictionary of sections, each a dictionary of variables - or the path of a YAML file that
        holds it (under the key C(virtops_playbook_argument_specs), or at its top).
      - Each variable takes C(type), C(elements), C(choices) (as in an argument spec), C(default), C(bounds) (a list
        of the minimum and the maximum of a number) and C(pattern) (a regular expression the string must match
        from its start).
      - Default is the collection's own C(playbooks/vars/argument_specs.yml).
    type: raw
  defaults:
    description:
      - Defaults of this playbook that differ from the declared ones, by variable name (for example
        C(evacuate_id) in C(playbooks/rolling_upgrade.yml)).
    type: dict
    default: {}
seealso:
  - module: ansible.builtin.validate_argument_spec
  - module: ansible.builtin.set_fact
"""

EXAMPLES = r"""
- name: Check the variables of the evacuation and restore playbooks
  virtops.migration.playbook_vars:
    entries: [evacuate, restore]
  register: checked

- name: Give each variable its value for this run (never cached)
  ansible.builtin.set_fact:
    "{{ item.key }}": "{{ item.value }}"  # noqa: var-naming[no-jinja]
  loop: "{{ checked.variables | dict2items }}"
  loop_control:
    label: "{{ item.key }}"

- name: A declaration of one's own
  virtops.migration.playbook_vars:
    entries: [backup]
    declaration:
      backup:
        backup_dir: {type: str, default: /var/backups}
        backup_keep: {type: int, default: 7, bounds: [1, 365]}
        backup_hosts: {type: list, elements: str}
"""

RETURN = r"""
variables:
  description:
    - The effective value of every declared variable of O(entries) that is set or has a default, by name.
  returned: success
  type: dict
  sample: {evacuate_group: hypervisors, evacuate_progress_interval: 5, evacuate_exclude: [hv3]}
defaulted:
  description: The names of the variables in RV(variables) that took their default.
  returned: success
  type: list
  elements: str
  sample: [evacuate_group, evacuate_progress_interval]
problems:
  description: One sentence for each variable refused.
  returned: failure, when variables are refused
  type: list
  elements: str
  sample: ["evacuate_exclude must be a list (for example [hv3, hv4]), not the string \"hv3\""]
"""
