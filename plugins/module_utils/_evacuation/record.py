# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""A domain's move in an evacuation: one record type, its fields and its status transitions.

The planner's move becomes a MoveRecord when the journal takes it in; the evacuation's
state machine and the executor read and change that same record, and the journal writes
it as JSON. It is a dict (so that it is written, read back and returned as it is), with
every field declared here and every status change checked against TRANSITIONS.
"""

from __future__ import annotations

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import VirtopsError

# Per-domain statuses.
PENDING = "pending"
IN_FLIGHT = "in_flight"
MOVED = "moved"
FAILED = "failed"
SKIPPED = "skipped"
SHUT_DOWN = "shut_down"
# A host that could hold the domain did not answer: nothing is started or defined until all do.
UNKNOWN = "unknown"
STATUSES = (PENDING, IN_FLIGHT, MOVED, FAILED, SKIPPED, SHUT_DOWN, UNKNOWN)
# Statuses after which a domain is never touched again by the same evacuation.
DONE = frozenset((MOVED, SKIPPED, SHUT_DOWN))

# The status changes the evacuation makes, from -> to; any other is a bug.
TRANSITIONS = {
    # replanned (stays pending), started, or left out by a later plan
    PENDING: frozenset((PENDING, IN_FLIGHT, SKIPPED)),
    # the attempt ended: moved or shut down, to be tried again, or given up
    IN_FLIGHT: frozenset((PENDING, MOVED, SHUT_DOWN, FAILED, UNKNOWN)),
    # settled again by a later run, once every host that could hold it answers
    UNKNOWN: frozenset((PENDING, MOVED, SHUT_DOWN, FAILED, UNKNOWN)),
    # a later plan takes it again, or no longer lists it and the source no longer has it
    FAILED: frozenset((PENDING, SKIPPED)),
    # done earlier, but it runs on the source again: the host must be emptied of it again
    MOVED: frozenset((PENDING,)),
    SHUT_DOWN: frozenset((PENDING,)),
    SKIPPED: frozenset(),
}

# Keys of a plan's move that the record keeps (the planner's RETURN documents them).
PLAN_KEYS = ("uuid", "mode", "order", "wave", "exclusive", "memory_mib", "local_disk_mib", "state",
             "predicted_seconds", "predicted_downtime_ms", "escalation", "bandwidth_mib_s", "priority",
             "max_downtime_ms")
# Plan keys whose null means something (no ceiling): a new plan's null replaces an earlier value.
NULLABLE_PLAN_KEYS = ("max_downtime_ms",)
# What the evacuation records of the attempts, at their initial value.
RUN_FIELDS = dict(attempts=0, history=list, started_at=None, finished_at=None, seconds=None, downtime_ms=None,
                  total_ms=None, bytes_sent=None, memory_bytes=None, average_mib_s=None, escalations=list,
                  completed_by=None, operation=None, error=None, notes=list, progress=None,
                  postcopy_to=None)


class TransitionError(VirtopsError):
    """A status change the evacuation's rules do not allow (a bug, reported instead of recorded)."""


class MoveRecord(dict):
    """One domain's entry in the journal."""

    @classmethod
    def from_plan(cls, name, move):
        """The entry of a plan ``move`` (or of a skipped domain, when its mode is None)."""
        record = cls(domain=name, status=PENDING, planned_destination=move.get("destination"),
                     destination=move.get("destination"))
        for key, initial in RUN_FIELDS.items():
            record[key] = initial() if callable(initial) else initial
        for key in PLAN_KEYS:
            record[key] = move.get(key)
        return record

    @classmethod
    def skipped_by_policy(cls, item):
        record = cls.from_plan(item["domain"], dict(uuid=item.get("uuid"), state=item.get("state")))
        record["status"] = SKIPPED
        record["mode"] = None
        record["notes"].append(item.get("reason") or "skipped by its do_not_migrate policy")
        return record

    @property
    def name(self):
        return self["domain"]

    @property
    def status(self):
        return self["status"]

    @property
    def done(self):
        return self["status"] in DONE

    def move_to(self, status):
        """Change the status, as TRANSITIONS allow."""
        if status not in TRANSITIONS.get(self["status"], ()):
            raise TransitionError("%s: the evacuation cannot go from %s to %s" % (self["domain"], self["status"], status))
        self["status"] = status

    def note(self, text):
        self.setdefault("notes", []).append(text)

    def replan(self, move):
        """Take a new plan's ``move`` for a domain that is not done and not in flight."""
        for key in PLAN_KEYS:
            if move.get(key) is not None or key in NULLABLE_PLAN_KEYS:
                self[key] = move.get(key)
        self["planned_destination"] = move.get("destination")
        # A failed post-copy migration is finished only where the other half of its memory is.
        self["destination"] = self.get("postcopy_to") or move.get("destination")
        self.move_to(PENDING)
        self["error"] = None

    def begin_attempt(self, started_at):
        self.move_to(IN_FLIGHT)
        self["attempts"] = (self.get("attempts") or 0) + 1
        self["started_at"] = started_at
        self["finished_at"] = None
        self["progress"] = None
        self["error"] = None
