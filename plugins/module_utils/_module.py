# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The AnsibleModule wrapper every module of the collection uses.

It merges the common connection options into the module's argument spec, checks that the
libvirt bindings import, runs the module's one entry point, and turns the collection's
exception family into fail_json. Entry points return a dict that is passed to exit_json;
they never call exit_json or fail_json themselves.
"""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.virtops.migration.plugins.module_utils._connection import CONNECTION_ARGUMENT_SPEC
from ansible_collections.virtops.migration.plugins.module_utils._errors import VirtopsError
from ansible_collections.virtops.migration.plugins.module_utils._libvirt import HAS_LIBVIRT, LIBVIRT_IMPORT_ERROR


class VirtopsModule(object):
    def __init__(self, argument_spec, **kwargs):
        spec = dict(CONNECTION_ARGUMENT_SPEC)
        spec.update(argument_spec)
        self.module = AnsibleModule(argument_spec=spec, **kwargs)

    @property
    def params(self):
        return self.module.params

    @property
    def check_mode(self):
        return self.module.check_mode

    def warn(self, message):
        self.module.warn(message)

    def run(self, entry_point):
        """Call ``entry_point(self)`` and exit with its result, or fail with its error."""
        if not HAS_LIBVIRT:
            self.module.fail_json(msg=missing_required_lib("libvirt-python (Debian: python3-libvirt)"),
                                  exception=LIBVIRT_IMPORT_ERROR)
        try:
            result = entry_point(self)
        except VirtopsError as err:
            self.module.fail_json(msg=err.msg, **err.details)
        self.module.exit_json(**result)
