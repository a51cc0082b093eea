#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: domain_start
short_description: Start shut-off domains on a hypervisor once no other hypervisor runs them
version_added: 0.1.0
description:
  - Starts, on the hypervisor it runs on, each domain of O(domains) that is defined there and shut off - for example
    the domains an evacuation shut down in place, when the host comes back (M(virtops.migration.restore_plan) returns
    them as RV(virtops.migration.restore_plan#module:starts)).
  - Before it starts anything it asks every hypervisor of O(peers) whether it runs the domain. A domain is started
    only when every peer answered and none runs it; when a peer does not answer, it could be running it, so nothing is
    started and RV(problems) says why. A domain that already runs on this host is left as it is.
  - A domain that cannot be started is named in RV(problems) and the others are still tried; the module itself does
    not fail for them, so that the verification after it reports everything together.
author:
  - virtops.migration contributors (!UNKNOWN)
extends_documentation_fragment:
  - virtops.migration.connection
  - virtops.migration.attributes
  - virtops.migration.attributes.action_group
attributes:
  check_mode:
    support: full
    details:
      - Asks the peers and says which domains it would start, and starts none.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - A domain that runs already is left as it is, so a second run changes nothing.
options:
  domains:
    description: The names of the domains to start on this hypervisor.
    type: list
    elements: str
    required: true
  peers:
    description:
      - The other hypervisors that could hold the domains (host names or addresses, reached over O(transport)). Each
        must answer, and run none of them, before one is started.
    type: list
    elements: str
    default: []
seealso:
  - module: virtops.migration.restore_plan
  - module: virtops.migration.evacuation_verify
"""

EXAMPLES = r"""
- name: Start again the domains the evacuation of hv1 shut down in place
  virtops.migration.domain_start:
    domains: "{{ restore.starts }}"
    peers: "{{ groups['hypervisors'] | difference([inventory_hostname]) }}"
  register: restarted
"""

RETURN = r"""
started:
  description: The domains started (in check mode, those that would be).
  returned: always
  type: list
  elements: str
  sample: [batch1]
running:
  description: The domains of O(domains) that already ran on this host, left as they were.
  returned: always
  type: list
  elements: str
  sample: []
problems:
  description: The domains not started, each with the reason.
  returned: always
  type: list
  elements: str
  sample: ["batch2 not started on hv1: hv3 (cannot reach hv3 port 16514: No route to host) did not answer, and could be running it"]
"""

from ansible_collections.virtops.migration.plugins.module_utils._evacuation.start_again import DOMAIN_START_MODULE
from ansible_collections.virtops.migration.plugins.module_utils._module import run_module


def main():
    run_module(DOMAIN_START_MODULE)


if __name__ == "__main__":
    main()
