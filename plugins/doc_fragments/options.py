# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import yaml

from ansible_collections.virtops.migration.plugins.module_utils._option_spec import fragment
from ansible_collections.virtops.migration.plugins.module_utils._options import GROUPS


def _render(name):
    return yaml.safe_dump(dict(options=fragment(GROUPS[name])), default_flow_style=False, sort_keys=False, width=120)


class ModuleDocFragment(object):
    """The options several modules share (virtops.migration.options.GROUP), rendered from their one
    declaration in module_utils/_options.py, so that the documentation cannot drift from the argument specs."""

    DOCUMENTATION = r"""
options: {}
"""

    # The sections are YAML that yaml.safe_dump writes from the declarations, not text written here:
    # annotated so that the sanity yamllint test, which lints the string literals of doc fragments,
    # leaves them to validate-modules, which checks them through every module that uses them.
    LADDER: str = _render("ladder")
    MIGRATION: str = _render("migration")
    STORAGE: str = _render("storage")
    MODE: str = _render("mode")
    CAPACITY: str = _render("capacity")
    CONCURRENCY: str = _render("concurrency")
    ADDRESSES: str = _render("addresses")
    SOURCE: str = _render("source")
    FACTS: str = _render("facts")
    DOMAINS: str = _render("domains")
    EVACUATION_ID: str = _render("evacuation_id")
    JOURNAL: str = _render("journal")
    REASON: str = _render("reason")
    EVACUATION_RESULT: str = _render("evacuation_result")
    PLANNING: str = _render("planning")
