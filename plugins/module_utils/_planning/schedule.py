# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""When a move may start: the schedule rule the planner predicts with and the evacuation obeys.

A move starts when a source slot and a slot on its destination are free; one held back
by its destination (or by a retry delay) does not hold back those after it; an exclusive
move runs alone; shutdowns in place start once no migration is left.
"""

from __future__ import annotations

from ansible_collections.virtops.migration.plugins.module_utils._planning.inputs import SHUTDOWN


class Slot(object):
    """What the scheduler needs to know of a move: waiting or running."""

    def __init__(self, name, destination, mode, exclusive=False, not_before=None):
        self.name = name
        self.destination = destination
        self.mode = mode
        self.exclusive = exclusive
        self.not_before = not_before

    def __repr__(self):
        return "Slot(%s -> %s, %s%s)" % (self.name, self.destination, self.mode, ", exclusive" if self.exclusive else "")


def startable(queue, running, per_source, per_destination, now):
    """The moves of ``queue`` (in start order) to start now, beside ``running``.

    As the planner's schedule: a move starts when a source slot and a slot on its
    destination are free; one held back by its destination (or by a retry delay) does
    not hold back those after it; an exclusive move starts only when nothing runs, and
    nothing starts beside it; shutdowns in place start once no migration is left.
    """
    active = list(running)
    if any(slot.exclusive for slot in active):
        return []
    migrations_left = any(slot.mode != SHUTDOWN for slot in list(queue) + active)
    per_dest = {}
    for slot in active:
        if slot.destination is not None:
            per_dest[slot.destination] = per_dest.get(slot.destination, 0) + 1
    chosen = []
    for slot in queue:
        if len(active) >= per_source:
            break
        if slot.not_before is not None and slot.not_before > now:
            continue
        if slot.mode == SHUTDOWN:
            if migrations_left:
                continue
        elif per_dest.get(slot.destination, 0) >= per_destination:
            continue
        if slot.exclusive:
            if not active:
                chosen.append(slot)
            break
        chosen.append(slot)
        active.append(slot)
        if slot.destination is not None:
            per_dest[slot.destination] = per_dest.get(slot.destination, 0) + 1
    return chosen
