# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The evacuation's state machine: carry out an evacuation plan's moves, resumably.

Evacuation runs on the source host. It takes the planner's moves, and:

- settles what an interrupted run of the same evacuation left behind (``settle.Settler``:
  the journal says in flight): a migration libvirt still runs is waited for, not started
  twice; one that finished is recorded where it went; one that failed is pending again;
- starts the moves in the plan's order whenever a source slot and a slot on the
  destination are free (``_planning.schedule.startable``; a move that needs the whole bandwidth runs alone;
  shutdowns in place go last), each in a thread of its own that runs the migrate
  module's engine (``_migration.task.MigrateTask``) with its own libvirt connections, so each
  migration climbs its own escalation ladder;
- retries, re-places or leaves a move that failed (``on_failure``), and makes sure a
  domain that ran is never left shut off by a failure (``outcome.Outcomes``);
- writes the journal (``journal``) after each change and about once a second, with the
  progress of the migrations in flight;
- watches for an abort request: it then aborts in-flight pre-copy migrations (the
  domain stays running on the source), lets post-copy ones and cold moves finish (they
  cannot be rolled back without stopping the guest), and starts nothing new.

``Evacuation`` holds that loop, owns the settler and the outcomes, and talks to libvirt only through an executor
(``executor.Executor``: ``LibvirtExecutor`` in the module, fakes in the unit tests), with an injectable clock.
"""

from __future__ import annotations

import os
import time

from ansible_collections.virtops.migration.plugins.module_utils._evacuation.record import (
    DONE,
    FAILED,
    IN_FLIGHT,
    PENDING,
    UNKNOWN,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.journal import (
    ABORTED,
    COMPLETED,
    utc_now,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.report import build_report
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.outcome import Outcomes
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.settle import Settler
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.request import (
    INTERRUPTED,
    SHUTDOWN,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import VirtopsError
from ansible_collections.virtops.migration.plugins.module_utils._planning.schedule import (
    Slot,
    startable,
)


TICK_S = 0.25
SAVE_EVERY_S = 1.0
ABORT_EVERY_S = 1.0


def run_result(journal, scope, aborting, settle_only):
    """How this run ended, for the journal: aborted, interrupted, failed or completed.

    ``scope``: the domains this run was responsible for.
    """
    records = [r for r in journal.ordered() if r["domain"] in scope]
    if aborting:
        return ABORTED
    if settle_only:
        return INTERRUPTED if any(r["status"] in (PENDING, FAILED, UNKNOWN) for r in journal.ordered()) \
            else COMPLETED
    if any(r["status"] not in DONE for r in records):
        return FAILED
    return COMPLETED


class Evacuation(object):
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
        self.scope = set()         # names this run is responsible for
        self.aborting = False
        self.abort_tries = {}      # name -> clock value of the last abort attempt
        self.changed = False
        self.started = None
        self.last_save = None
        self.dirty = False
        self.settler = Settler(request, journal, executor, clock, self.note, self.warn, self.mark_changed)
        self.outcomes = Outcomes(request, journal, executor, self.settler, clock, self.note, self.warn,
                                 self.mark_changed)

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

    def settle_interrupted(self):
        """In-flight entries of a run that ended without finishing them (settle.py)."""
        for record in self.journal.in_status(IN_FLIGHT, UNKNOWN):
            self.scope.add(record["domain"])
            where = self.executor.locate(record)
            if where.get("job"):
                self.running[record["domain"]] = self.settler.adopt(record)
            else:
                self.dirty = True
                self.settler.conclude_unwatched(record, where)

    def merge_plan(self):
        """The plan's moves and skipped domains into the journal (settle.Settler.merge_plan)."""
        self.scope.update(self.settler.merge_plan(self.running))
        self.dirty = True

    # --- the loop ----------------------------------------------------------------------

    def queue(self):
        slots = []
        for record in self.journal.in_status(PENDING):
            name = record["domain"]
            if name not in self.scope or name in self.running:
                continue
            slots.append(Slot(name, record["destination"] if record["mode"] != SHUTDOWN else None, record["mode"],
                              bool(record.get("exclusive")), self.outcomes.not_before.get(name)))
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
        tries = self.outcomes.tried.setdefault(name, {})
        tries[destination] = tries.get(destination, 0) + 1
        record.begin_attempt(utc_now())
        self.outcomes.not_before.pop(name, None)
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
            self.dirty = True
            self.outcomes.conclude(handle, self.aborting)
        except VirtopsError as err:
            record = handle.record
            record["error"] = err.msg
            if record["status"] == IN_FLIGHT:
                record.move_to(UNKNOWN)
            self.note(record, "could not tell where it ended up (%s): left as it is; re-run once every host answers"
                      % err.msg)
            self.warn("%s: %s" % (record["domain"], err.msg))

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
        self.journal.finish_run(run_result(self.journal, self.scope, self.aborting, self.request.settle_only))
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

    def mark_changed(self):
        self.changed = True

    def note(self, record, text):
        record.setdefault("notes", []).append(text)
        self.dirty = True
