#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: maintenance
short_description: Mark the host in maintenance, or take the mark away
version_added: 0.1.0
description:
  - Runs on a hypervisor. Writes or removes the host's maintenance marker, C(/var/lib/virtops-migration/maintenance),
    one line that says why. M(virtops.migration.host_info) reports it, and no plan sends a domain to a host that has
    it (M(virtops.migration.evacuation_plan), M(virtops.migration.upgrade_plan)).
  - The host enforces the marker itself where the role virtops.migration.hypervisor has installed its libvirt
    hook. While the marker is there, the host refuses every incoming live migration, but of the domains a restore
    brings back (O(state=returning)). A plan made from facts read before the host was marked - by another
    evacuation, another controller - then fails its move to this host before anything is copied, and the
    evacuation places the domain elsewhere.
  - Refuses, and changes nothing, while an evacuation other than O(evacuation_id) runs on the host (holds its
    journal's lock in O(journal_dir)) - a second evacuation must not rewrite the first one's marker, nor a restore
    take the host out of maintenance under a running evacuation. Without O(evacuation_id), any running evacuation
    is another one.
author:
  - virtops.migration contributors (!UNKNOWN)
extends_documentation_fragment:
  - virtops.migration.attributes
  - virtops.migration.options.evacuation_id
  - virtops.migration.options.journal
  - virtops.migration.options.reason
attributes:
  check_mode:
    support: full
    details:
      - Says whether the marker would change, and writes nothing.
  diff_mode:
    support: full
    details:
      - Shows the marker's line before and after.
  idempotent:
    support: full
options:
  state:
    description:
      - C(present) marks the host (and forgets the domains it took back before), C(absent) takes the mark away.
      - C(returning) leaves the marker as it is and lets the host take in by live migration the domains named
        in O(returning_domains), and only those - a restore's way to bring its domains back while the host stays
        in maintenance until they are all back. It does nothing on a host that is not marked, which takes every
        migration in.
    type: str
    choices: [present, absent, returning]
    default: present
  returning_domains:
    description:
      - With O(state=returning), the names of the domains the host takes back; they replace the names given
        before. Written beside the marker, in C(/var/lib/virtops-migration/maintenance.returning).
    type: list
    elements: str
    default: []
  evacuation_id:
    required: false
seealso:
  - module: virtops.migration.host_info
  - module: virtops.migration.evacuate
"""

EXAMPLES = r"""
- name: Mark hv3 in maintenance before its firmware update
  virtops.migration.maintenance:
    reason: "firmware update, ticket OPS-1234"
  delegate_to: hv3

- name: Mark the host for the evacuation that empties it (refused while another evacuation runs there)
  virtops.migration.maintenance:
    evacuation_id: evacuate-hv1
    reason: evacuation

- name: Let hv3 take back the two guests a restore moves back to it, while it stays in maintenance
  virtops.migration.maintenance:
    state: returning
    returning_domains: [web1, db1]
    evacuation_id: evacuate-hv3
  delegate_to: hv3

- name: Take hv3 out of maintenance
  virtops.migration.maintenance:
    state: absent
  delegate_to: hv3
"""

RETURN = r"""
maintenance:
  description: Whether the host is marked at the end (in check mode, whether it would be).
  returned: always
  type: bool
marked_before:
  description: Whether the host was marked before the module ran.
  returned: always
  type: bool
reason_before:
  description: The marker's line before, or null when the host was not marked.
  returned: always
  type: str
reason:
  description: The marker's line at the end, or null when the host is not marked.
  returned: always
  type: str
  sample: evacuation (evacuation evacuate-hv1)
returning:
  description: The domains the marked host takes back by live migration (O(state=returning)); empty otherwise.
  returned: always
  type: list
  elements: str
  sample: [web1, db1]
path:
  description: The marker file.
  returned: always
  type: str
  sample: /var/lib/virtops-migration/maintenance
"""

from ansible_collections.virtops.migration.plugins.module_utils._facts.maintenance import MAINTENANCE_MODULE
from ansible_collections.virtops.migration.plugins.module_utils._module import run_module


def main():
    run_module(MAINTENANCE_MODULE)


if __name__ == "__main__":
    main()
