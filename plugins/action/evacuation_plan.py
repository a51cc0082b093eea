# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""virtops.migration.evacuation_plan runs here, in the controller's process, not as a module.

A module gets its arguments as JSON in a new process, where AnsibleModule copies and
checks them; with the facts of a large inventory that was most of the task's time (31 of
36 s at 10,000 hosts) for a plan that takes a fraction of a second. The plan only reads
its input, so it runs where the input already is (_planning/run.py: plan_in_controller).

The facts are not templated either when O(hosts) names one variable (C("{{ evacuate_facts }}"))
holding a dictionary of dictionaries: the planner reads that value as it is. Templating would
walk and copy every value of every host for nothing - facts read by modules are data, never
templates. (So a template written inside a host's facts, below its own dictionary, is taken
as text; checking for one costs as much as templating.) Any other expression is templated
as usual. This uses ansible-core's (experimental) hook for
an action's own argument templating; a core without it templates as usual, only slower.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ansible.plugins.action import ActionBase

from ansible_collections.virtops.migration.plugins.module_utils._planning.run import plan_in_controller

_ONE_VARIABLE = re.compile(r"^\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True
    _supports_async = False

    @classmethod
    def finalize_task_arg(cls, name, value, templar, context):
        if name == "hosts" and isinstance(value, str):
            match = _ONE_VARIABLE.match(value)
            if match:
                facts = templar.available_variables.get(match.group(1))
                # Facts as host_info or tasks/host_facts.yml give them: a dictionary of dictionaries. Anything
                # else (a template, hosts given as templates) is templated as usual.
                if isinstance(facts, Mapping) and all(isinstance(host, Mapping) for host in facts.values()):
                    return facts
        return super(ActionModule, cls).finalize_task_arg(name, value, templar, context)

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        result.update(plan_in_controller(self._task.args))
        # The task goes back to the main process with its result: without the facts, or they would be
        # pickled across and walked by the callbacks once more (the invocation says what they were).
        self._task.args = dict(self._task.args, hosts=result.get("invocation", {}).get("module_args", {}).get("hosts"))
        return result
