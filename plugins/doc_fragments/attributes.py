# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):
    """Descriptions of the attributes every module declares (virtops.migration.attributes)."""

    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
  diff_mode:
    description: Returns details on what has changed (or would change in check mode) in diff mode.
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
      - This assumes that the system controlled by the module has not changed in a relevant way.
"""

    # For *_info modules, together with the standard fragment.
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    support: N/A
    details:
      - This action does not modify state.
  idempotent:
    support: full
    details:
      - This action does not modify state.
"""

    # For modules that only compute from their input on the control node (planning, verification).
    CONTROL_NODE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - The module only reads its input and changes nothing; check mode returns the same result.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - Always returns C(changed=false).
"""

    # For the modules of the action group (meta/runtime.yml), together with the standard fragment.
    ACTION_GROUP = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/virtops.migration.migration) in C(module_defaults) to set the connection options once.
    support: full
    membership:
      - virtops.migration.migration
"""

    # For the modules whose action plugin does all the work on the control node.
    CONTROLLER_ACTION = r"""
options: {}
attributes:
  action:
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on the controller.
    support: full
    details:
      - All of it runs on the controller.
"""
