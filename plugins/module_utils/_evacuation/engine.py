# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The evacuation's state machine: carry out an evacuation plan's moves, resumably.

Evacuation runs on the source host. It takes the planner's moves, and:

- settles what an interrupted run of the same evacuation left behind (``settle.Settling``:
  the journal says in flight): a migration libvirt still runs is waited for, not started
  twice; one that finished is recorded where it went; one that failed is pending again;
- starts the moves in the plan's order whenever a source slot and a slot on the
  destination are free (``_planning.schedule.startable``; a move that needs the whole bandwidth runs alone;
  shutdowns in place go last), each in a thread of its own that runs the migrate
  module's engine (``_migration.task.MigrateTask``) with its own libvirt connections, so each
  migration climbs its own escalation ladder;
- retries, re-places or leaves a move that failed (``on_failure``), and makes sure a
  domain that ran is never left shut off by a failure;
- writes the journal (``journal``) after each change and about once a second, with the
  progress of the migrations in flight;
- watches for an abort request: it then aborts in-flight pre-copy migrations (the
  domain stays running on the source), lets post-copy ones and cold moves finish (they
  cannot be rolled back without stopping the guest), and starts nothing new.

``Evacuation`` holds that logic and talks to libvirt only through an executor
(``executor.Executor``: ``LibvirtExecutor`` in the module, fakes in the unit tests), with an injectable clock.
"""

from __future__ import annotations

import os
import time

from ansible_collections.virtops.migration.plugins.module_utils._evacuation.record import (
    DONE,
    FAILED,
    IN_FLIGHT,
    MOVED,
    PENDING,
    SHUT_DOWN,
    SKIPPED,
    UNKNOWN,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.journal import (
    ABORTED,
    COMPLETED,
    utc_now,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.report import build_report
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.settle import Settling
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.request import (
    ACTIVE_STATES,
    INTERRUPTED,
    LIVE,
    SHUTDOWN,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import (
    DomainStateError,
    MigrationFailed,
    ParameterError,
    PostcopyFailed,
    PrecheckFailed,
    VirtopsError,
)
from ansible_collections.virtops.migration.plugins.module_utils._planning.schedule import (
    Slot,
    startable,
)


TICK_S = 0.25
SAVE_EVERY_S = 1.0
ABORT_EVERY_S = 1.0

FATAL = "fatal"          # the move itself is wrong: no retry anywhere
BLOCKED = "blocked"      # this destination cannot take it: no retry there, maybe elsewhere
POSTCOPY = "postcopy"    # half-way on the destination: only that destination can finish it
TRANSIENT = "transient"  # worth another attempt
ABORTED_JOB = "aborted"  # the evacuation's abort cancelled it


def classify(error, aborting=False):
    if isinstance(error, PostcopyFailed):
        return POSTCOPY
    if aborting and isinstance(error, MigrationFailed):
        return ABORTED_JOB
    if isinstance(error, PrecheckFailed):
        return BLOCKED
    if isinstance(error, (ParameterError, DomainStateError)):
        return FATAL
    return TRANSIENT


class Evacuation(Settling):
    """Carries out the moves of ``request`` through ``executor``, keeping ``journal`` in ``store``."""

    def __init__(self, request, journal, store, executor, clock=time.monotonic, sleep=time.sleep, warn=None,
                 token=None, pid=None):
        self.request = request
        self.journal = journal
        self.store = store
        self.executor = executor
        self.clock = clock
        self.sleep = sleep
        self.warn = warn or (lambda message: None)
        self.token = token
        self.pid = pid if pid is not None else os.getpid()
        self.running = {}          # name -> handle
        self.not_before = {}       # name -> clock value before which a retry does not start
        self.tried = {}            # name -> {destination: attempts in this run}
        self.scope = set()         # names this run is responsible for
        self.aborting = False
        self.abort_tries = {}      # name -> clock value of the last abort attempt
        self.changed = False
        self.started = None
        self.last_save = None
        self.dirty = False

    # --- set-up ----------------------------------------------------------------------

    def run(self):
        self.started = self.clock()
        self.journal.begin_run(self.pid, self.token, self.request.limits)
        if self.request.source and not self.journal.data.get("source"):
            self.journal.data["source"] = self.request.source
        self.save()
        try:
            self.settle_interrupted()
            if not self.request.settle_only:
                self.merge_plan()
            self.save()
            self.loop()
        except VirtopsError as err:
            # Only the source's own libvirt gets here (a destination's errors fail its moves): the journal
            # still ends its run, and what is in flight stays so for the next run to settle.
            self.journal.data["error"] = err.msg
            self.journal.finish_run(FAILED)
            self.save()
            raise
        return self.finish()

    def merge_plan(self):
        in_plan = set()
        for move in self.request.moves:
            name = move["domain"]
            in_plan.add(name)
            self.scope.add(name)
            record, what = self.journal.merge_move(move)
            if what == "done" and record["status"] in (MOVED, SHUT_DOWN):
                src = self.executor.locate(record).get("source")
                if src is not None and src["active"]:
                    # Done earlier, and it runs on the source again: the host must be emptied of it again.
                    self.note(record, "the journal says it was %s, but it runs on the source again: done again" % (
                        "moved to %s" % record.get("destination") if record["status"] == MOVED else "shut down"))
                    record.move_to(PENDING)
                    record["destination"] = move["destination"]
                    record["planned_destination"] = move["destination"]
                    record["mode"] = move["mode"]
        for item in self.request.skipped:
            self.journal.merge_skipped(item)
        # Entries of an earlier run that this plan no longer lists: verified, never acted on.
        for record in self.journal.ordered():
            name = record["domain"]
            if name in in_plan or name in self.running or record["status"] in DONE:
                continue
            if record["status"] in (PENDING, FAILED):
                where = self.executor.locate(record)
                if where.get("source") is None:
                    record.move_to(SKIPPED)
                    self.note(record, "no longer on the source and not in this run's plan")
        for record in self.journal.in_status(MOVED):
            if record["domain"] in in_plan:
                continue
            where = self.executor.locate(record)
            dst = where.get("destination")
            record["verified"] = bool(dst is not None and where.get("source") is None)
        self.dirty = True

    # --- the loop ----------------------------------------------------------------------

    def queue(self):
        slots = []
        for record in self.journal.in_status(PENDING):
            name = record["domain"]
            if name not in self.scope or name in self.running:
                continue
            slots.append(Slot(name, record["destination"] if record["mode"] != SHUTDOWN else None, record["mode"],
                              bool(record.get("exclusive")), self.not_before.get(name)))
        return slots

    def running_slots(self):
        return [Slot(name, handle.destination, handle.mode, bool(handle.record.get("exclusive")))
                for name, handle in self.running.items()]

    def loop(self):
        if self.store.abort_requested():
            self.begin_abort()
        while True:
            now = self.clock()
            if not self.aborting and self.store.abort_requested():
                self.begin_abort()
            if self.aborting:
                self.abort_in_flight(now)
            for name in [n for n, h in self.running.items() if h.poll()]:
                self.conclude_contained(self.running.pop(name))
            queue = self.queue()
            if not self.aborting and not self.request.settle_only:
                for slot in startable(queue, self.running_slots(), self.request.per_source,
                                      self.request.per_destination, now):
                    self.start(self.journal.record(slot.name))
            if not self.running and (self.aborting or self.request.settle_only or not self.queue()):
                break
            self.track_progress()
            if self.dirty or self.last_save is None or now - self.last_save >= SAVE_EVERY_S:
                self.save()
            self.sleep(TICK_S)

    def start(self, record):
        name = record["domain"]
        destination = record["destination"] if record["mode"] != SHUTDOWN else None
        tries = self.tried.setdefault(name, {})
        tries[destination] = tries.get(destination, 0) + 1
        record.begin_attempt(utc_now())
        self.not_before.pop(name, None)
        handle = self.executor.start(record, destination)
        handle.started_clock = self.clock()
        self.running[name] = handle
        self.dirty = True
        self.save()

    def track_progress(self):
        for handle in self.running.values():
            if handle.mode == SHUTDOWN:
                continue
            try:
                progress = self.executor.progress(handle)
            except VirtopsError:
                # Progress is for people: a failed read costs one line, never the move.
                continue
            if progress is not None:
                handle.record["progress"] = progress

    # --- outcomes ----------------------------------------------------------------------

    def conclude_contained(self, handle):
        """Conclude one move; an error while doing so fails that move alone, and leaves its domain alone."""
        try:
            self.conclude(handle)
        except VirtopsError as err:
            record = handle.record
            record["error"] = err.msg
            if record["status"] == IN_FLIGHT:
                record.move_to(UNKNOWN)
            self.note(record, "could not tell where it ended up (%s): left as it is; re-run once every host answers"
                      % err.msg)
            self.warn("%s: %s" % (record["domain"], err.msg))

    def conclude(self, handle):
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
        self.dirty = True
        if handle.adopted:
            self.conclude_unwatched(record, self.executor.locate(record))
            entry["ok"] = record["status"] == MOVED
            return
        if handle.error is None:
            self.succeeded(record, handle, seconds)
            return
        self.failed_attempt(record, handle)

    def succeeded(self, record, handle, seconds):
        result = handle.result or {}
        record["seconds"] = seconds
        record["error"] = None
        if handle.mode == SHUTDOWN:
            record.move_to(SHUT_DOWN)
            record["operation"] = "shutdown"
            self.note(record, "shut down in place (%s), as its do_not_migrate policy says" % result.get("how", "graceful"))
            self.changed = True
            return
        record["destination"] = handle.destination
        arrived = ((result.get("state") or {}).get("destination") or {}).get("state")
        if not self.resumed(record, handle.destination, arrived):
            return
        record.move_to(MOVED)
        record["postcopy_to"] = None
        record["operation"] = result.get("operation")
        if result.get("operation") == "none":
            self.note(record, "already on %s: nothing to do (%s)" % (handle.destination, result.get("reason")))
        else:
            self.changed = True
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

    def failed_attempt(self, record, handle):
        name = record["domain"]
        error = handle.error
        kind = classify(error, self.aborting)
        record["error"] = error.msg
        if kind == POSTCOPY:
            record["postcopy_to"] = handle.destination
        if isinstance(error, MigrationFailed) or handle.mode != LIVE:
            if self.unknown(record, self.executor.locate(record)):
                return
            for note in self.executor.ensure_running(record, handle):
                self.note(record, note)
        if kind == ABORTED_JOB:
            record.move_to(PENDING)
            self.note(record, "its migration to %s was aborted by the evacuation's abort; it stays on the source"
                      % handle.destination)
            return
        if self.aborting and kind != POSTCOPY:
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

    # --- abort -------------------------------------------------------------------------

    def begin_abort(self):
        self.aborting = True
        self.journal.data["abort_requested"] = True
        self.journal.data["abort_requested_at"] = utc_now()
        self.warn("abort requested (%s): in-flight pre-copy migrations are aborted, nothing new starts"
                  % self.store.abort_path)
        self.dirty = True

    def abort_in_flight(self, now):
        for name, handle in self.running.items():
            if handle.abort_state in ("postcopy", "cold", "shutdown"):
                continue
            if now - self.abort_tries.get(name, -ABORT_EVERY_S) < ABORT_EVERY_S:
                continue
            self.abort_tries[name] = now
            state = self.executor.abort(handle)
            if state != handle.abort_state:
                handle.abort_state = state
                if state == "postcopy":
                    self.note(handle.record, "not aborted: its migration is in post-copy, which cannot be rolled back; "
                              "it finishes")
                elif state == "cold":
                    self.note(handle.record, "not aborted: a cold move is finished rather than leave the domain stopped")
                elif state == "shutdown":
                    self.note(handle.record, "not aborted: its shutdown in place was already requested")
                self.dirty = True

    # --- the end -----------------------------------------------------------------------

    def finish(self):
        records = [r for r in self.journal.ordered() if r["domain"] in self.scope]
        if self.aborting:
            result = ABORTED
        elif self.request.settle_only:
            result = INTERRUPTED if any(r["status"] in (PENDING, FAILED, UNKNOWN) for r in self.journal.ordered()) \
                else COMPLETED
        elif any(r["status"] not in DONE for r in records):
            result = FAILED
        else:
            result = COMPLETED
        self.journal.finish_run(result)
        elapsed = self.clock() - self.started
        self.journal.update_totals(elapsed)
        self.store.save(self.journal)
        if self.aborting:
            self.store.clear_abort()
        report = build_report(self.journal, self.request, elapsed)
        report["changed"] = self.changed
        return report

    def save(self):
        self.journal.update_totals(self.clock() - self.started if self.started is not None else 0.0)
        self.store.save(self.journal)
        self.last_save = self.clock()
        self.dirty = False

    def note(self, record, text):
        record.setdefault("notes", []).append(text)
        self.dirty = True
