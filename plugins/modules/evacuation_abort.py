#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: evacuation_abort
short_description: Abort a running evacuation of the host and wait until it has stopped
version_added: 0.1.0
description:
  - Runs on the source host of an evacuation (the host being emptied). When the journal of O(evacuation_id) says it
    runs, asks it to abort - in-flight pre-copy migrations are aborted and those domains keep running on the host,
    post-copy migrations and cold moves finish (they cannot be rolled back without stopping the guest), nothing new
    starts - and waits until the journal says it has stopped.
  - When no process runs the evacuation any more (its controller was killed), returns at once - the request stays,
    and the next run of the same evacuation honours it before it moves anything. Remove the request file
    (RV(abort_file)) to cancel it.
  - When nothing runs, changes nothing.
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
      - Says whether it would ask an evacuation to abort, and writes nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - Once the evacuation has stopped, running it again changes nothing.
options:
  wait_timeout:
    description:
      - Seconds to wait for the evacuation to stop (0 to 86400). The request stays when it has not stopped by then.
    type: int
    default: 900
seealso:
  - module: virtops.migration.evacuate
"""

EXAMPLES = r"""
- name: Abort the running evacuation of hv1
  virtops.migration.evacuation_abort:
    evacuation_id: evacuate-hv1
    reason: "abort requested by {{ lookup('ansible.builtin.env', 'USER') }}"
  register: aborted

- name: Show where it stopped
  ansible.builtin.debug:
    msg: "{{ aborted.lines }}"
"""

RETURN = r"""
requested:
  description: Whether an abort was requested (false when nothing ran, and in check mode).
  returned: always
  type: bool
stopped:
  description: Whether the evacuation has stopped (its journal's phase is C(finished)).
  returned: always
  type: bool
phase:
  description: The journal's phase at the end (C(running), C(finished)), or null without a journal.
  returned: always
  type: str
result:
  description: The journal's result (C(aborted) once an abort took effect), or null.
  returned: always
  type: str
progress:
  description: The journal's one-line summary at the end.
  returned: always
  type: str
abort_file:
  description: The request file.
  returned: always
  type: str
  sample: /var/lib/virtops-migration/evacuations/evacuate-hv1.abort
waited_seconds:
  description: How long the module waited for the evacuation to stop.
  returned: when requested
  type: float
lines:
  description: What happened, for a person.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.virtops.migration.plugins.module_utils._evacuation.abort import EVACUATION_ABORT_MODULE
from ansible_collections.virtops.migration.plugins.module_utils._module import run_module


def main():
    run_module(EVACUATION_ABORT_MODULE)


if __name__ == "__main__":
    main()
