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
from ansible_collections.virtops.migration.plugins.module_utils._options import BOUNDS, DO_NOT_MIGRATE_POLICIES

GLOB_CHARACTERS = frozenset("*?[")

# The labels a domain may have, from its libvirt metadata or the inventory:
#   anti_affinity   a group name: no two domains of a group on one host
#   do_not_migrate  true or a policy (skip, shutdown, cold): how the domain leaves, if at all
#   priority        a whole number, 0 when unset: higher moves first
#   max_downtime    milliseconds the domain may be paused at the switch-over, at most: its live
#                   migration never allows more (the escalation ladder stops below it)
LABEL_KEYS = ("anti_affinity", "do_not_migrate", "priority", "max_downtime")
LABEL_BOUNDS = dict(priority=(-1000, 1000), max_downtime=BOUNDS["max_downtime"])


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


def label_problem(key, value, name=None):
    """What is wrong with one label's value (a sentence), or None when the planner can use it.

    ``name`` is what the sentence calls the value (the label's key unless given: a move's
    ``max_downtime_ms`` carries the ``max_downtime`` label under another name)."""
    if value is None:
        return None
    name = name or key
    if key == "anti_affinity":
        if not isinstance(value, str) or not value.strip():
            return "%s must be a group name (a non-empty string) or null, not %r" % (name, value)
    elif key == "do_not_migrate":
        if value is not True and value not in DO_NOT_MIGRATE_POLICIES:
            return "%s must be null, true or one of %s, not %r" % (name, ", ".join(DO_NOT_MIGRATE_POLICIES), value)
    else:
        low, high = LABEL_BOUNDS[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return "%s must be a whole number from %d to %d, or null, not %r" % (name, low, high, value)
    return None


def check_inventory_labels(inventory_labels):
    """Refuse inventory labels the planner could not use, naming the domain (or pattern) and the key."""
    for key, labels in inventory_labels.items():
        if not isinstance(labels, dict) or set(labels) - set(LABEL_KEYS):
            raise ParameterError("labels of %s must be a dictionary with the keys %s, not %r"
                                 % (key, ", ".join(LABEL_KEYS), labels))
        for name in LABEL_KEYS:
            problem = label_problem(name, labels.get(name))
            if problem is not None:
                raise ParameterError("labels of %s: %s" % (key, problem))


def merge_labels(from_metadata, from_inventory):
    """The domain's labels, where each came from, and what is wrong with them.

    The inventory's labels win over the metadata's, key by key (a null in the inventory
    leaves the metadata's value). Returns (labels, sources, problems): ``sources`` names
    ``inventory`` or ``metadata`` for each label that is set; ``problems`` are the
    metadata's values the planner could not use (the inventory's were refused before).
    """
    labels = dict.fromkeys(LABEL_KEYS)
    sources = {}
    for origin, given in (("metadata", from_metadata or {}), ("inventory", from_inventory or {})):
        for key, value in given.items():
            if value is not None:
                labels[key] = value
                sources[key] = origin
    problems = []
    for key in LABEL_KEYS:
        problem = label_problem(key, labels[key])
        if problem is not None:
            problems.append("%s: %s" % (sources[key], problem))
    return labels, sources, problems
