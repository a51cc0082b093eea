# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The labels the inventory gives domains: which entry (a name or a pattern) a domain gets,
what the planner accepts as labels, and how they combine with those of the domain's metadata.
"""

from __future__ import annotations

import fnmatch

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import ParameterError
from ansible_collections.virtops.migration.plugins.module_utils._options import DO_NOT_MIGRATE_POLICIES

GLOB_CHARACTERS = frozenset("*?[")


def inventory_labels_for(name, inventory_labels):
    """The inventory's labels of domain ``name``: its own entry, else the first pattern that matches it.

    Keys with ``*``, ``?`` or ``[`` are shell-style patterns (``db-*``), tried in the order given.
    """
    inventory_labels = inventory_labels or {}
    if name in inventory_labels:
        return inventory_labels[name]
    for key, labels in inventory_labels.items():
        if GLOB_CHARACTERS & set(key) and fnmatch.fnmatchcase(name, key):
            return labels
    return None


def check_inventory_labels(inventory_labels):
    """Refuse inventory labels the planner could not use, naming the domain (or pattern) and the key."""
    for key, labels in inventory_labels.items():
        if not isinstance(labels, dict) or set(labels) - {"anti_affinity", "do_not_migrate"}:
            raise ParameterError("labels of %s must be a dictionary with the keys anti_affinity and do_not_migrate, "
                                 "not %r" % (key, labels))
        group = labels.get("anti_affinity")
        if group is not None and (not isinstance(group, str) or not group.strip()):
            raise ParameterError("labels of %s: anti_affinity must be a group name (a non-empty string) or null, "
                                 "not %r" % (key, group))
        policy = labels.get("do_not_migrate")
        if policy is not None and policy is not True and policy not in DO_NOT_MIGRATE_POLICIES:
            raise ParameterError("labels of %s: do_not_migrate must be null, true or one of %s, not %r"
                                 % (key, ", ".join(DO_NOT_MIGRATE_POLICIES), policy))


def merge_labels(from_metadata, from_inventory):
    """Inventory labels win over metadata; an unknown do-not-migrate policy is an error in the facts."""
    labels = dict(from_metadata)
    labels.update({k: v for k, v in (from_inventory or {}).items() if v is not None})
    problems = []
    if labels.get("do_not_migrate") not in (None, True) + DO_NOT_MIGRATE_POLICIES:
        problems.append("unknown do_not_migrate policy %r (one of %s)" % (
            labels["do_not_migrate"], ", ".join(DO_NOT_MIGRATE_POLICIES)))
    return labels, problems
