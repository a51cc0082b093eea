# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The AnsibleModule wrapper every module of the collection goes through.

Each module's ``main()`` is ``run_module(ENTRY)``, where ENTRY is the EntryPoint declared
beside the module's entry function in module_utils: its argument spec (with the common
connection options merged in unless the module opens no connection), and the function
that runs it. run_module checks that the libvirt bindings import (for modules that need
them), runs the entry function, and turns the collection's exception family into
fail_json. Entry functions return a dict that is passed to exit_json; they never call
exit_json or fail_json themselves.
"""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.bindings import (
    HAS_LIBVIRT,
    LIBVIRT_IMPORT_ERROR,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import CONNECTION_ARGUMENT_SPEC
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import VirtopsError
from ansible_collections.virtops.migration.plugins.module_utils._option_spec import check_bounds
from ansible_collections.virtops.migration.plugins.module_utils._options import BOUNDS


class EntryPoint(object):
    """A module's one entry function and the argument spec it is run with.

    ``connection``: the module talks to libvirt, so it takes the common connection options and
    needs the bindings. ``invocation``: what the module echoes of its parameters, when not all
    of them (a function of the parameters). ``rules``: AnsibleModule's cross-option rules
    (required_if, mutually_exclusive, ...).
    """

    def __init__(self, run, argument_spec, connection=True, invocation=None, **rules):
        self.run = run
        self.own_argument_spec = argument_spec
        self.argument_spec = dict(CONNECTION_ARGUMENT_SPEC, **argument_spec) if connection else dict(argument_spec)
        self.connection = connection
        self.invocation = invocation
        self.rules = rules


class VirtopsModule(object):
    """What an entry function sees of Ansible: parameters, check mode, warnings, run_command."""

    def __init__(self, entry_point):
        self.entry_point = entry_point
        self.module = AnsibleModule(argument_spec=entry_point.argument_spec, supports_check_mode=True,
                                    **entry_point.rules)

    @property
    def params(self):
        return self.module.params

    @property
    def check_mode(self):
        return self.module.check_mode

    def warn(self, message):
        self.module.warn(message)

    def run(self):
        """Call the entry function and exit with its result, or fail with its error."""
        entry = self.entry_point
        extra = {}
        if entry.invocation is not None:
            extra["invocation"] = entry.invocation(self.module.params)
        if entry.connection and not HAS_LIBVIRT:
            self.module.fail_json(msg=missing_required_lib("libvirt-python (Debian: python3-libvirt)"),
                                  exception=LIBVIRT_IMPORT_ERROR, **extra)
        try:
            check_bounds(self.module.params, BOUNDS)
            result = entry.run(self)
        except VirtopsError as err:
            self.module.fail_json(msg=err.msg, **dict(extra, **err.details))
        self.module.exit_json(**dict(extra, **result))


def run_module(entry_point):
    """The whole of every module's main()."""
    VirtopsModule(entry_point).run()
