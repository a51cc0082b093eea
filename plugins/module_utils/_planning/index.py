# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The planner's index of destinations: the least-loaded one that can take a domain, fast.

Placement wants, among the destinations a domain fits, the one with the largest share of
its capacity still free (ties by name). A heap ordered by that share alone pops every
host that ranks higher but lacks the absolute room: a 64 GiB domain in a fleet of mostly
small, empty hosts popped most of the heap for each domain.

The index is a tournament tree over the destinations. Each node holds the best key
(highest free share, then name) below it, and the most free memory and vCPUs of any
destination below it. A search is best-first by key and skips every subtree whose most
free memory or vCPUs is short of the domain's, so the first destination it reaches that
the planner accepts is exactly the one the share heap would have chosen.

The leaves are in the order of free memory when the plan starts, most first. Free memory
only falls while a plan places domains, so the hosts that can hold a domain of M MiB lie
among the first leaves (those that started with M MiB free) and the subtrees beyond them
are skipped whole. A search costs about log(hosts) for each host it has to pass over that
ranks higher but cannot take the domain: those the plan has filled already, those short
of vCPUs in an otherwise roomy subtree, and those the planner refuses (pre-check,
anti-affinity).
"""

from __future__ import annotations

import heapq

# Above any real key (share, name): an empty slot of the tree.
_NO_KEY = (float("inf"), "")
_NONE = float("-inf")
# A destination is skipped only when it is short by more than rounding: the planner's own
# test (used + needed <= capacity) decides every destination the search reaches.
_SLACK = 1e-9


def _free(dest, capacity, used):
    """What a destination has free of one resource; a destination without capacity of either
    takes nothing, whatever the domain (the planner's _fits), so it has nothing free."""
    if dest.mem_cap <= 0 or dest.cpu_cap <= 0:
        return _NONE
    return capacity - used


class DestinationIndex(object):
    """The destinations of one plan; ``update`` after each assignment, ``best`` to choose."""

    def __init__(self, destinations):
        order = sorted(destinations, key=lambda d: (d.mem_used - d.mem_cap, d.cpu_used - d.cpu_cap, d.name))
        size = 1
        while size < len(order):
            size *= 2
        self.size = size
        self.leaves = order
        self.position = dict((dest.name, index) for index, dest in enumerate(order))
        pad = size - len(order)
        self.key = key = [_NO_KEY] * size + [(-dest.score(), dest.name) for dest in order] + [_NO_KEY] * pad
        usable = [dest.mem_cap > 0 and dest.cpu_cap > 0 for dest in order]
        self.memory = memory = [_NONE] * size + [dest.mem_cap - dest.mem_used if ok else _NONE
                                                 for dest, ok in zip(order, usable)] + [_NONE] * pad
        self.vcpus = vcpus = [_NONE] * size + [dest.cpu_cap - dest.cpu_used if ok else _NONE
                                               for dest, ok in zip(order, usable)] + [_NONE] * pad
        for node in range(size - 1, 0, -1):
            left, right = 2 * node, 2 * node + 1
            key[node] = key[left] if key[left] <= key[right] else key[right]
            memory[node] = memory[left] if memory[left] >= memory[right] else memory[right]
            vcpus[node] = vcpus[left] if vcpus[left] >= vcpus[right] else vcpus[right]

    def _set_leaf(self, node, dest):
        self.key[node] = (-dest.score(), dest.name)
        self.memory[node] = _free(dest, dest.mem_cap, dest.mem_used)
        self.vcpus[node] = _free(dest, dest.cpu_cap, dest.cpu_used)

    def _pull(self, node):
        left, right = 2 * node, 2 * node + 1
        key = self.key
        key[node] = key[left] if key[left] <= key[right] else key[right]
        self.memory[node] = max(self.memory[left], self.memory[right])
        self.vcpus[node] = max(self.vcpus[left], self.vcpus[right])

    def update(self, dest):
        """Take in ``dest``'s new load."""
        node = self.size + self.position[dest.name]
        self._set_leaf(node, dest)
        node //= 2
        while node:
            self._pull(node)
            node //= 2

    def best(self, accept, memory=None, vcpus=None):
        """The destination with the best key among those with ``memory`` MiB and ``vcpus`` free
        (None: either need not fit) that ``accept(dest)`` takes; None when there is none."""
        if not self.leaves:
            return None
        need_memory = _NONE if memory is None else memory - _SLACK * (1.0 + abs(memory))
        need_vcpus = _NONE if vcpus is None else vcpus - _SLACK * (1.0 + abs(vcpus))
        key, free_memory, free_vcpus, size = self.key, self.memory, self.vcpus, self.size
        if free_memory[1] < need_memory or free_vcpus[1] < need_vcpus:
            return None
        frontier = [(key[1], 1)]
        while frontier:
            node = heapq.heappop(frontier)[1]
            if node >= size:
                dest = self.leaves[node - size]
                if accept(dest):
                    return dest
                continue
            for child in (2 * node, 2 * node + 1):
                if (key[child] is not _NO_KEY and free_memory[child] >= need_memory
                        and free_vcpus[child] >= need_vcpus):
                    heapq.heappush(frontier, (key[child], child))
        return None
