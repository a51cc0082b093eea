# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: fleet_facts
short_description: The hypervisors' facts the playbooks keep, which of them are too old, and who did not answer
version_added: 0.1.0
description:
  - Reads, for each host of O(hosts), the host facts that the playbooks' facts tasks keep
    (C(playbooks/tasks/read_facts.yml)) - C(virtops_host_info) (what M(virtops.migration.host_info) returned, null
    when the host did not answer), C(virtops_host_info_epoch) (when it was read) and C(virtops_host_info_error)
    (why not) - and sorts the hosts into those that answered and those that did not.
  - With O(max_age), it also lists the hosts whose facts are missing or older than that, which are to be read again.
author:
  - virtops.migration contributors (!UNKNOWN)
positional: hosts, max_age
options:
  _input:
    description: C(hostvars).
    type: dict
    required: true
  hosts:
    description: The hosts to look at, in order.
    type: list
    elements: str
    required: true
  max_age:
    description:
      - Facts read less than this many seconds ago are fresh; V(0) makes every host stale. Without it, RV(_value.stale)
        is empty.
    type: float
"""

EXAMPLES = r"""
- name: The hypervisors to read again
  ansible.builtin.debug:
    msg: "{{ (hostvars | virtops.migration.fleet_facts(groups['hypervisors'], 120)).stale }}"
"""

RETURN = r"""
_value:
  description: What the hosts' facts say.
  type: dict
  contains:
    facts:
      description: "Each host that answered: its facts (C(host name: virtops_host_info))."
      type: dict
    silent:
      description: The hosts that did not answer, or were never read, in the order of O(hosts).
      type: list
      elements: str
    reasons:
      description: "Why each host of RV(_value.silent) has no facts (C(host name: message))."
      type: dict
    stale:
      description: With O(max_age), the hosts whose facts are missing or older, in the order of O(hosts).
      type: list
      elements: str
"""

import time
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError


def fleet_facts(hostvars, hosts, max_age=None, now=None):
    """See DOCUMENTATION; ``now`` (epoch seconds) is for tests."""
    if not isinstance(hostvars, Mapping):
        raise AnsibleFilterError("fleet_facts reads hostvars, not %s" % type(hostvars).__name__)
    if isinstance(hosts, str) or not all(isinstance(host, str) for host in hosts):
        raise AnsibleFilterError("fleet_facts needs a list of host names, not %r" % (hosts,))
    try:
        oldest = None if max_age is None else (time.time() if now is None else now) - float(max_age)
    except (TypeError, ValueError):
        raise AnsibleFilterError("fleet_facts: max_age must be a number of seconds, not %r" % (max_age,)) from None
    out = dict(facts={}, silent=[], reasons={}, stale=[])
    for host in hosts:
        own = hostvars[host] if host in hostvars else {}
        info = own.get("virtops_host_info")
        if info is None:
            out["silent"].append(host)
            out["reasons"][host] = own.get("virtops_host_info_error") or "no facts"
        else:
            out["facts"][host] = info
        if oldest is not None:
            try:
                epoch = float(own.get("virtops_host_info_epoch") or 0)
            except (TypeError, ValueError):
                epoch = 0.0
            if not epoch > oldest:
                out["stale"].append(host)
    return out


class FilterModule(object):
    def filters(self):
        return dict(fleet_facts=fleet_facts)
