# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The machinery that turns option declarations into argument specs and documentation.

An ``Option`` is one option as Ansible's argument spec needs it and as its documentation says
it; ``argument_spec`` builds a module's argument spec from Options (or groups of them) and the
module's own entries, ``fragment`` renders a group as a doc fragment's ``options``, and
``with_defaults`` and ``check_bounds`` complete and check parameters against a spec and a table
of bounds.

The declarations themselves - the options several modules share, and the bounds of every
numeric option - are in _options.py; this module holds no option of its own.
"""

from __future__ import annotations

import copy
import math

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import ParameterError

_SPEC_KEYS = ("type", "elements", "default", "choices", "required", "aliases", "no_log")


class Option(object):
    """One option: what Ansible's argument spec needs and what its documentation says."""

    def __init__(self, name, type, description, default=None, choices=None, elements=None, required=False,
                 aliases=None):
        self.name = name
        self.type = type
        self.description = [description] if isinstance(description, str) else list(description)
        self.default = default
        self.choices = list(choices) if choices is not None else None
        self.elements = elements
        self.required = required
        self.aliases = list(aliases) if aliases else None
        # The declaration this one derives from (``but``), for the spec-provenance test.
        self.origin = self

    def but(self, **changes):
        """This option with another default (or requiredness): the same declaration otherwise."""
        unknown = set(changes) - {"default", "required"}
        if unknown:
            raise TypeError("only default and required may differ between modules, not %s" % ", ".join(sorted(unknown)))
        other = copy.copy(self)
        for key, value in changes.items():
            setattr(other, key, value)
        other.origin = self.origin
        return other

    def spec(self):
        out = dict(type=self.type)
        if self.elements is not None:
            out["elements"] = self.elements
        if self.default is not None:
            out["default"] = copy.deepcopy(self.default)
        if self.choices is not None:
            out["choices"] = list(self.choices)
        if self.required:
            out["required"] = True
        if self.aliases:
            out["aliases"] = list(self.aliases)
        return out

    def doc(self):
        out = dict(description=list(self.description), type=self.type)
        if self.elements is not None:
            out["elements"] = self.elements
        if self.choices is not None:
            out["choices"] = list(self.choices)
        if self.default is not None:
            out["default"] = copy.deepcopy(self.default)
        if self.required:
            out["required"] = True
        if self.aliases:
            out["aliases"] = list(self.aliases)
        return out


def _group(*options):
    return dict((option.name, option) for option in options)


def check_bounds(params, bounds):
    """Refuse any numeric option of ``params`` that is not a finite number within its ``bounds``.

    ``bounds`` maps option names to (minimum, maximum), as _options.BOUNDS does; a list option's
    bounds hold for each of its elements.
    """
    for name, (low, high) in bounds.items():
        value = params.get(name)
        if value is None:
            continue
        for item in (value if isinstance(value, (list, tuple)) else [value]):
            if isinstance(item, bool) or not isinstance(item, (int, float)) or \
                    (isinstance(item, float) and not math.isfinite(item)) or not low <= item <= high:
                raise ParameterError("%s must be a finite number, at least %s and at most %s, not %r" % (name, low, high, item))


def argument_spec(*options, **local):
    """An argument spec: the shared ``options`` (Option objects or groups of them), then ``local`` entries.

    ``local`` holds the options only this module has, as argument spec entries.
    """
    spec = {}
    for item in options:
        for option in (item.values() if isinstance(item, dict) else (item,)):
            if option.name in spec:
                raise TypeError("option %s is declared twice" % option.name)
            spec[option.name] = option.spec()
    for name, entry in local.items():
        if name in spec:
            raise TypeError("option %s is declared twice" % name)
        spec[name] = entry
    return spec


def with_defaults(spec, params):
    """``params`` with every option of ``spec`` that it lacks (or has as None) at its declared default."""
    out = dict(params)
    for name, entry in spec.items():
        if out.get(name) is None and entry.get("default") is not None:
            out[name] = copy.deepcopy(entry["default"])
    return out


def fragment(group):
    """The documentation of a group of options, as a doc fragment's ``options`` mapping."""
    return dict((name, option.doc()) for name, option in group.items())
