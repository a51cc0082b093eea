# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""How a finished move ends up in the journal: moved, shut down, retried, re-placed or failed.

``engine.Evacuation`` owns an ``Outcomes`` and hands it each move whose handle has finished
(``conclude``). A failure is classified first (``classify``): a fatal one is never retried,
one a destination refused may be re-placed elsewhere, a post-copy one only finishes on its
destination, a transient one is worth another attempt; whatever happens, a domain that ran
is not left shut off. ``Outcomes`` keeps the attempts of this run per domain and
destination, and when a retry may start.
"""

from __future__ import annotations

from ansible_collections.virtops.migration.plugins.module_utils._evacuation.journal import utc_now
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.record import (
    FAILED,
    IN_FLIGHT,
    MOVED,
    PENDING,
    SHUT_DOWN,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.request import (
    ACTIVE_STATES,
    LIVE,
    SHUTDOWN,
)
from ansible_collections.virtops.migration.plugins.module_utils._facts.maintenance import REFUSAL
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import (
    DomainStateError,
    MigrationFailed,
    ParameterError,
    PostcopyFailed,
    PrecheckFailed,
)

FATAL = "fatal"          # the move itself is wrong: no retry anywhere
BLOCKED = "blocked"      # this destination cannot take it: no retry there, maybe elsewhere
POSTCOPY = "postcopy"    # half-way on the destination: only that destination can finish it
TRANSIENT = "transient"  # worth another attempt
ABORTED_JOB = "aborted"  # the evacuation's abort cancelled it


def classify(error, aborting=False):
    """What kind of failure ``error`` is, for what may follow it (FATAL ... ABORTED_JOB)."""
    if isinstance(error, PostcopyFailed):
        return POSTCOPY
    if aborting and isinstance(error, MigrationFailed):
        return ABORTED_JOB
    if isinstance(error, PrecheckFailed):
        return BLOCKED
    if isinstance(error, MigrationFailed) and REFUSAL in error.msg:
        # The destination's maintenance hook refused it at the start: it was marked after the plan.
        return BLOCKED
    if isinstance(error, (ParameterError, DomainStateError)):
        return FATAL
    return TRANSIENT


class Outcomes(object):
    """Concludes finished moves for the evacuation that owns it.

    ``settler`` is the evacuation's (settle.Settler); ``note(record, text)``, ``warn(text)`` and
    ``mark_changed()`` (this run changed something) are the evacuation's; ``clock`` its clock.
    """

    def __init__(self, request, journal, executor, settler, clock, note, warn, mark_changed):
        self.request = request
        self.journal = journal
        self.executor = executor
        self.settler = settler
        self.clock = clock
        self.note = note
        self.warn = warn
        self.mark_changed = mark_changed
        self.tried = {}            # name -> {destination: attempts in this run}
        self.not_before = {}       # name -> clock value before which a retry does not start

    def conclude(self, handle, aborting):
        """Record how the move of ``handle`` ended (``aborting``: the evacuation is aborting)."""
        record = handle.record
        seconds = round(self.clock() - handle.started_clock, 2)
        record["finished_at"] = utc_now()
        handle.last_progress = record.get("progress") or {}
        record["progress"] = None
        entry = dict(destination=handle.destination, mode=handle.mode, at=record.get("started_at"), seconds=seconds,
                     ok=handle.error is None, error=handle.error.msg if handle.error is not None else None,
                     adopted=handle.adopted)
        record.setdefault("history", []).append(entry)
        for warning in handle.warnings:
            self.note(record, warning)
        if handle.adopted:
            self.settler.conclude_unwatched(record, self.executor.locate(record))
            entry["ok"] = record["status"] == MOVED
            return
        if handle.error is None:
            self.succeeded(record, handle, seconds)
            return
        self.failed_attempt(record, handle, aborting)

    def succeeded(self, record, handle, seconds):
        """A move that worked: moved or shut down, as the journal records it."""
        result = handle.result or {}
        record["seconds"] = seconds
        record["error"] = None
        if handle.mode == SHUTDOWN:
            record.move_to(SHUT_DOWN)
            record["operation"] = "shutdown"
            self.note(record, "shut down in place (%s), as its do_not_migrate policy says" % result.get("how", "graceful"))
            self.mark_changed()
            return
        record["destination"] = handle.destination
        arrived = ((result.get("state") or {}).get("destination") or {}).get("state")
        if not self.settler.resumed(record, handle.destination, arrived):
            return
        record.move_to(MOVED)
        record["postcopy_to"] = None
        record["operation"] = result.get("operation")
        if result.get("operation") == "none":
            self.note(record, "already on %s: nothing to do (%s)" % (handle.destination, result.get("reason")))
        else:
            self.mark_changed()
            self.journal.note_moved_in_run()
        record["completed_by"] = result.get("completed_by")
        record["escalations"] = result.get("escalations") or []
        timings = result.get("timings") or {}
        transferred = result.get("transferred") or {}
        record["downtime_ms"] = timings.get("downtime_ms")
        record["total_ms"] = timings.get("total_ms")
        # The destination's completed statistics leave out what a disk copy sent: keep the larger count.
        sent = [v for v in (transferred.get("total_bytes"), getattr(handle, "last_progress", {}).get("processed_bytes"))
                if v is not None]
        record["bytes_sent"] = max(sent) if sent else None
        record["memory_bytes"] = transferred.get("memory_total_bytes")
        record["average_mib_s"] = result.get("average_bandwidth_mib_s")
        if result.get("cold"):
            record["cold"] = result["cold"]
        if record.get("state") in ACTIVE_STATES and arrived not in (None,) + ACTIVE_STATES:
            # A cold move resumed after an interruption found it shut off: it ran before, so it runs again.
            for note in self.executor.start_on(record, handle.destination):
                self.note(record, note)

    def failed_attempt(self, record, handle, aborting):
        """A move that failed: retried, re-placed or failed, as ``on_failure`` says; never left shut off."""
        name = record["domain"]
        error = handle.error
        kind = classify(error, aborting)
        record["error"] = error.msg
        if kind == POSTCOPY:
            record["postcopy_to"] = handle.destination
        if isinstance(error, MigrationFailed) or handle.mode != LIVE:
            if self.settler.unknown(record, self.executor.locate(record)):
                return
            for note in self.executor.ensure_running(record, handle):
                self.note(record, note)
        if kind == ABORTED_JOB:
            record.move_to(PENDING)
            self.note(record, "its migration to %s was aborted by the evacuation's abort; it stays on the source"
                      % handle.destination)
            return
        if aborting and kind != POSTCOPY:
            record.move_to(FAILED)
            return
        policy = self.request.on_failure
        tries_here = self.tried.get(name, {}).get(handle.destination, 0)
        if policy != "leave" and kind in (TRANSIENT, POSTCOPY) and tries_here <= self.request.retries:
            record.move_to(PENDING)
            self.not_before[name] = self.clock() + self.request.retry_delay
            self.note(record, "attempt %d to %s failed; retrying in %d s: %s" % (
                tries_here, handle.destination, self.request.retry_delay, error.msg))
            return
        if policy == "replace" and kind in (TRANSIENT, BLOCKED) and handle.mode != SHUTDOWN:
            replacement = self.replacement_for(record)
            if replacement is not None:
                self.note(record, "re-placed on %s after %s failed: %s" % (replacement, handle.destination, error.msg))
                record["destination"] = replacement
                record.move_to(PENDING)
                return
        record.move_to(FAILED)
        self.warn("%s was not moved: %s" % (name, error.msg))

    def replacement_for(self, record):
        """Another host of ``replacement_hosts`` that can take the domain now, or None."""
        name = record["domain"]
        tried = set(self.tried.get(name, {}))
        committed = {}
        for other in self.journal.domains.values():
            if other["status"] in (PENDING, IN_FLIGHT) and other["domain"] != name and other.get("destination"):
                committed[other["destination"]] = committed.get(other["destination"], 0) + (other.get("memory_mib") or 0)
        for host in self.request.replacement_hosts:
            if host in tried or host == self.request.source:
                continue
            ok, why = self.executor.can_take(record, host, committed.get(host, 0))
            if ok:
                return host
            self.note(record, "not re-placed on %s: %s" % (host, why))
        return None
