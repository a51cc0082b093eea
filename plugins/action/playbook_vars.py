# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""virtops.migration.playbook_vars: the playbooks' variables checked against their declaration, on the controller.

It reads each declared variable as the host sees it (extra vars, inventory, play vars - Ansible's
precedence), checks it (plugins/plugin_utils/_playbook_vars.py) and returns in RV(variables) the
value of every declared variable that is set or has a default. It does not set them: a fact an
action other than set_fact returns is a host fact, written to the fact cache and read back by a
later run above that run's inventory. tasks/check_vars.yml hands RV(variables) to set_fact.
"""

from __future__ import annotations

import os

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase

from ansible_collections.virtops.migration.plugins.plugin_utils._playbook_vars import (
    DeclarationError,
    check,
    declared,
    defaults,
)

try:
    from ansible.template import trust_as_template
except ImportError:  # ansible-core before 2.19 templates every string
    def trust_as_template(value):
        return value

# The collection's own declaration: playbooks/vars/argument_specs.yml, beside plugins/.
DECLARATION = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           "playbooks", "vars", "argument_specs.yml")
DECLARATION_KEY = "virtops_playbook_argument_specs"

ARGUMENT_SPEC = dict(
    entries=dict(type="list", elements="str", required=True),
    declaration=dict(type="raw"),
    defaults=dict(type="dict", default={}),
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True
    _supports_async = False

    def _declaration(self, given):
        if given is None or isinstance(given, str):
            loaded = self._loader.load_from_file(given or DECLARATION)
            return loaded.get(DECLARATION_KEY, loaded) if isinstance(loaded, dict) else loaded
        return given

    def _render(self, value):
        """A declared default, which may be a template (the collection's own file: trusted)."""
        if isinstance(value, str) and "{{" in value:
            return self._templar.template(trust_as_template(value))
        return value

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        task_vars = task_vars or {}
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        try:
            spec = declared(self._declaration(args["declaration"]), args["entries"])
            given = dict((name, self._templar.template(task_vars[name])) for name in spec if name in task_vars)
            values, problems = check(spec, given)
            if problems:
                result.update(failed=True, problems=problems, msg="The playbook's variables are not as declared "
                              "(playbooks/vars/argument_specs.yml); nothing was changed: %s" % "; ".join(problems))
                return result
            chosen = dict((name, self._render(value)) for name, value in defaults(spec, given, args["defaults"]).items())
            # A default is checked as a set value is (a template's result, the pattern of evacuate_id).
            default_values, problems = check(spec, chosen)
        except (DeclarationError, AnsibleError) as error:
            result.update(failed=True, msg="Cannot check the playbook's variables: %s" % error)
            return result
        if problems:
            result.update(failed=True, problems=problems, msg="A default of the playbook's variables is not as declared; "
                          "nothing was changed: %s" % "; ".join(problems))
            return result
        values.update(default_values)
        result.update(changed=False, variables=values, defaulted=sorted(default_values))
        return result
