# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The playbooks' variables against their one declaration (playbooks/vars/argument_specs.yml).

Private to the collection: the action virtops.migration.playbook_vars runs it. Plain
functions, no Ansible runtime: the unit tests call them directly.
"""

from __future__ import annotations

import json
import math
import re

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

# What a variable's declaration may hold besides what ArgumentSpecValidator reads.
_OWN_KEYS = ("default", "bounds", "pattern", "description")


class DeclarationError(Exception):
    """The declaration itself, or the sections asked for, are wrong."""


def declared(declaration, entries):
    """The variables of the sections ``entries`` of ``declaration``, one dictionary."""
    if not isinstance(declaration, dict):
        raise DeclarationError("the declaration must be a dictionary of sections, not %s" % type(declaration).__name__)
    unknown = [entry for entry in entries if entry not in declaration]
    if unknown:
        raise DeclarationError("no section %s in the declaration (it has %s)" % (
            ", ".join(unknown), ", ".join(sorted(declaration))))
    spec = {}
    for entry in entries:
        spec.update(declaration[entry])
    return spec


def _shown(value):
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def _out_of_bounds(value, low, high):
    numbers = value if isinstance(value, list) else [value]
    for number in numbers:
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            return True
        if math.isnan(number) or not low <= number <= high:
            return True
    return False


def _problem(name, declaration, value):
    """What is wrong with ``value`` of the variable ``name`` (None: nothing), and the value as declared."""
    # Ansible would split a string on commas where a list is wanted: "hv3,hv4" is most likely a mistake.
    if declaration.get("type") == "list" and isinstance(value, str):
        return "%s must be a list (for example [hv3, hv4]), not the string %s" % (name, _shown(value)), None
    validator = ArgumentSpecValidator({name: dict((key, item) for key, item in declaration.items() if key not in _OWN_KEYS)})
    result = validator.validate({name: value})
    if result.error_messages:
        return "; ".join(result.error_messages), None
    converted = result.validated_parameters[name]
    if converted is None:
        return None, None
    if "bounds" in declaration:
        low, high = declaration["bounds"]
        if _out_of_bounds(converted, low, high):
            return "%s must be a number from %s to %s, not %s" % (name, low, high, _shown(value)), None
    if "pattern" in declaration and not re.match(declaration["pattern"], str(converted)):
        return "%s %s does not match %s" % (name, _shown(value), declaration["pattern"]), None
    return None, converted


def check(spec, given):
    """Check ``given`` (the declared variables that are set) against ``spec``.

    Returns (values, problems): the values converted to their declared types, and one sentence
    for each variable that is refused, naming it and what it may be.
    """
    values = {}
    problems = []
    for name in sorted(given):
        if name not in spec:
            continue
        problem, converted = _problem(name, spec[name], given[name])
        if problem:
            problems.append(problem)
        else:
            values[name] = converted
    return values, problems


def defaults(spec, given, overrides=None):
    """The declared default of each variable of ``spec`` that is not in ``given`` (``overrides`` win)."""
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(spec))
    if unknown:
        raise DeclarationError("defaults given for undeclared variables: %s" % ", ".join(unknown))
    chosen = {}
    for name, declaration in spec.items():
        if name in given:
            continue
        if name in overrides:
            chosen[name] = overrides[name]
        elif "default" in declaration:
            chosen[name] = declaration["default"]
    return chosen
