# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""Why a domain cannot be placed, said for people: grouped by reason, a few host names each."""

from __future__ import annotations

from operator import itemgetter

from ansible_collections.virtops.migration.plugins.module_utils._planning.inputs import MAX_NAMES


def host_names(hosts):
    listed = ", ".join(hosts[:MAX_NAMES])
    if len(hosts) > MAX_NAMES:
        listed += " and %d more" % (len(hosts) - MAX_NAMES)
    return listed


def counted(number, word):
    return "%d %s%s" % (number, word, "" if number == 1 else "s")


class Refusals(object):
    """Why destinations were refused for one domain, grouped for a person to read."""

    def __init__(self):
        self.blocked = []
        self.unchecked = []
        self.not_live = []
        self.affinity = []
        self.memory = []
        self.vcpus = []
        self.full = []

    def lines(self, dom, maintenance, excluded, destinations):
        out = []
        for host, reasons in self.blocked[:MAX_NAMES]:
            out.append("%s: pre-check blocked: %s" % (host, "; ".join(reasons) or "no reason given"))
        if len(self.blocked) > MAX_NAMES:
            out.append("%s more blocked by pre-checks" % counted(len(self.blocked) - MAX_NAMES, "destination"))
        if self.not_live:
            out.append("pre-check predicts the live migration does not converge, even with the ladder: %s"
                       % host_names(self.not_live))
        if self.unchecked:
            out.append("no pre-check for the pair, and unchecked pairs are not allowed (unchecked_pairs): %s"
                       % host_names(self.unchecked))
        if self.affinity:
            out.append("anti-affinity group %r already has a member on %s" % (
                dom.group, ", ".join("%s (%s)" % (h, d) for h, d in self.affinity[:MAX_NAMES])
                + ("" if len(self.affinity) <= MAX_NAMES else " and %d more" % (len(self.affinity) - MAX_NAMES))))
        # Destinations come in name order, and max() keeps the first of equals.
        for items, what, unit in ((self.memory, "memory for %s MiB" % fmt(dom.memory), "MiB"),
                                  (self.vcpus, "vCPUs for %s" % fmt(dom.vcpus), "vCPUs")):
            if items:
                host, free = max(items, key=itemgetter(1))
                out.append("not enough %s on %s (the most free: %s %s on %s): %s" % (
                    what, counted(len(items), "destination"), fmt(free), unit, host,
                    host_names([name for name, _free in items])))
        if self.full:
            out.append("no capacity at all (after overcommit and reserved memory): %s" % host_names(self.full))
        if maintenance:
            out.append("in maintenance: %s" % host_names(maintenance))
        if excluded:
            out.append("excluded: %s" % host_names(excluded))
        if not destinations and not maintenance and not excluded:
            out.append("the inventory has no other host")
        return out


def fmt(number):
    return ("%d" % number) if float(number).is_integer() else ("%.1f" % number)
