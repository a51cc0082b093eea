# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The entry point of virtops.migration.evacuate: carry out an evacuation plan.

run_evacuate(module) runs on the source host. It takes the planner's moves, and:

- settles what an interrupted run of the same evacuation left behind (the journal says
  in flight): a migration libvirt still runs is waited for, not started twice; one that
  finished is recorded where it went; one that failed is pending again;
- starts the moves in the plan's order whenever a source slot and a slot on the
  destination are free (``Scheduler``; a move that needs the whole bandwidth runs alone;
  shutdowns in place go last), each in a thread of its own that runs the migrate
  module's engine (``_migrate.MigrateTask``) with its own libvirt connections, so each
  migration climbs its own escalation ladder;
- retries, re-places or leaves a move that failed (``on_failure``), and makes sure a
  domain that ran is never left shut off by a failure;
- writes the journal (``_journal``) after each change and about once a second, with the
  progress of the migrations in flight;
- watches for an abort request: it then aborts in-flight pre-copy migrations (the
  domain stays running on the source), lets post-copy ones and cold moves finish (they
  cannot be rolled back without stopping the guest), and starts nothing new.

``Evacuation`` holds that logic and talks to libvirt only through an executor
(``LibvirtExecutor`` here, fakes in the unit tests), with an injectable clock.
"""

from __future__ import annotations

import os
import threading
import time

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    CONNECTION_ARGUMENT_SPEC,
    ConnectionSettings,
    open_hypervisor,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import (
    PAUSED,
    PAUSED_POSTCOPY,
    RUNNING,
    RUNNING_POSTCOPY,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import (
    DomainStateError,
    LibvirtError,
    MigrationFailed,
    NotFound,
    OperationInvalid,
    ParameterError,
    PostcopyFailed,
    PrecheckFailed,
    VirtopsError,
    call,
    lookup,
)
from ansible_collections.virtops.migration.plugins.module_utils._facts.host_facts import domain_metadata, parse_policy
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.jobstats import JobSnapshot
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.journal import (
    ABORTED,
    COMPLETED,
    DEFAULT_DIRECTORY,
    DONE,
    FAILED,
    IN_FLIGHT,
    MOVED,
    PENDING,
    SHUT_DOWN,
    SKIPPED,
    Journal,
    JournalError,
    JournalStore,
    utc_now,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.bindings import constant
from ansible_collections.virtops.migration.plugins.module_utils._migration.task import MigrateTask, define_where_it_runs, state_of
from ansible_collections.virtops.migration.plugins.module_utils._migration.ladder import Ladder
from ansible_collections.virtops.migration.plugins.module_utils._migration.request import MigrationRequest
from ansible_collections.virtops.migration.plugins.module_utils._options import (
    ADDRESSES,
    CONCURRENCY,
    LADDER,
    MIGRATION,
    SOURCE,
    STORAGE,
    argument_spec,
    with_defaults,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.uri import validate_host
from ansible_collections.virtops.migration.plugins.module_utils._module import EntryPoint

LIVE = "live"
COLD = "cold"
SHUTDOWN = "shutdown"
MODES = (LIVE, COLD, SHUTDOWN)
ON_FAILURE = ("retry", "replace", "leave")
ACTIVE_STATES = ("running", "paused", "blocked")
# An interrupted run ended without a result; the next run resumes it.
INTERRUPTED = "interrupted"

TICK_S = 0.25
SAVE_EVERY_S = 1.0
ABORT_EVERY_S = 1.0
SHUTDOWN_POLL_S = 0.5
MIB = 1024 * 1024

# The evacuation's own options, then those of every move, as _options declares them for the
# migrate module; an evacuation copies disks that are not shared unless told otherwise.
EVACUATE_ARGUMENT_SPEC = argument_spec(
    LADDER, MIGRATION, STORAGE["copy_storage"].but(default="all"), CONCURRENCY, ADDRESSES, SOURCE,
    evacuation_id=dict(type="str", required=True),
    moves=dict(type="list", elements="dict", default=[]),
    skipped=dict(type="list", elements="dict", default=[]),
    settle_only=dict(type="bool", default=False),
    retries=dict(type="int", default=1),
    retry_delay=dict(type="int", default=5),
    on_failure=dict(type="str", default="retry", choices=list(ON_FAILURE)),
    replacement_hosts=dict(type="list", elements="str", default=[]),
    use_planned_bandwidth=dict(type="bool", default=False),
    source_throughput_mib_s=dict(type="float"),
    journal_dir=dict(type="path", default=DEFAULT_DIRECTORY),
    run_tag=dict(type="str"),
)
# The options every move passes on to the migrate engine.
_MIGRATE_KEYS = tuple(LADDER) + tuple(MIGRATION) + tuple(STORAGE)


class EvacuationFailed(VirtopsError):
    """The evacuation ended with domains not moved (failed or aborted); details hold the report."""


# --- the request -----------------------------------------------------------------------

def _number(move, key, where, default=None):
    value = move.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParameterError("%s: %s must be a number, not %r" % (where, key, value))
    return value


class EvacuationRequest(object):
    """The module's parameters, validated before anything is opened or written."""

    def __init__(self, params):
        self.params = params
        self.evacuation_id = params["evacuation_id"]
        self.source = params.get("source")
        if self.source is not None:
            self.source = validate_host(self.source, "source")
        self.settle_only = bool(params.get("settle_only"))
        for key in ("max_parallel_per_source", "max_parallel_per_destination"):
            if params[key] is None or params[key] < 1:
                raise ParameterError("%s must be at least 1, not %r" % (key, params[key]))
        self.per_source = params["max_parallel_per_source"]
        self.per_destination = params["max_parallel_per_destination"]
        if params["retries"] < 0 or params["retry_delay"] < 0:
            raise ParameterError("retries and retry_delay cannot be negative")
        self.retries = params["retries"]
        self.retry_delay = params["retry_delay"]
        self.on_failure = params["on_failure"]
        self.replacement_hosts = [validate_host(h, "replacement_hosts") for h in params["replacement_hosts"]]
        moves = params.get("moves") or []
        if self.on_failure == "replace" and not self.replacement_hosts and moves:
            raise ParameterError("on_failure=replace needs replacement_hosts")
        self.addresses = {}
        for host, address in (params.get("migration_addresses") or {}).items():
            if address in (None, ""):
                continue
            self.addresses[validate_host(host, "migration_addresses key")] = str(address)
        throughput = params.get("source_throughput_mib_s")
        if throughput is not None and throughput <= 0:
            raise ParameterError("source_throughput_mib_s must be positive")
        self.throughput = throughput
        self.moves = self._moves(params.get("moves") or [])
        self.skipped = self._skipped(params.get("skipped") or [])
        if self.settle_only and self.moves:
            raise ParameterError("settle_only runs without moves: it only settles what an interrupted run left")
        # Check the migrate options once, as the migrate module would, with a stand-in move.
        self.migration_request(dict(domain="stand-in", mode=LIVE), "destination.invalid")
        self.ladder = Ladder.from_params(params)

    def _moves(self, moves):
        out = []
        seen = set()
        for index, move in enumerate(moves):
            where = "moves[%d]" % index
            if not isinstance(move, dict):
                raise ParameterError("%s must be a dictionary (a move of the evacuation plan), not %r" % (where, move))
            name = move.get("domain")
            if not isinstance(name, str) or not name.strip():
                raise ParameterError("%s has no domain name" % where)
            where = "moves[%d] (%s)" % (index, name)
            if name in seen:
                raise ParameterError("%s: the domain appears twice in moves" % where)
            seen.add(name)
            mode = move.get("mode")
            if mode not in MODES:
                raise ParameterError("%s: mode must be one of %s, not %r" % (where, ", ".join(MODES), mode))
            destination = move.get("destination")
            if mode == SHUTDOWN:
                destination = None
            else:
                if not isinstance(destination, str) or not destination:
                    raise ParameterError("%s: a %s move needs a destination" % (where, mode))
                destination = validate_host(destination, "%s: destination" % where)
                if self.source is not None and destination == self.source:
                    raise ParameterError("%s: the destination is the source host itself" % where)
            clean = dict(move)
            clean.update(
                domain=name,
                mode=mode,
                destination=destination,
                order=int(_number(move, "order", where, index + 1)),
                exclusive=bool(move.get("exclusive")),
                memory_mib=_number(move, "memory_mib", where, 0),
                local_disk_mib=_number(move, "local_disk_mib", where, 0),
                bandwidth_mib_s=_number(move, "bandwidth_mib_s", where),
            )
            out.append(clean)
        out.sort(key=lambda m: (m["order"], m["domain"]))
        return out

    @staticmethod
    def _skipped(skipped):
        out = []
        for index, item in enumerate(skipped):
            if not isinstance(item, dict) or not isinstance(item.get("domain"), str):
                raise ParameterError("skipped[%d] must be a dictionary with a domain name" % index)
            out.append(item)
        return out

    @property
    def limits(self):
        return dict(max_parallel_per_source=self.per_source, max_parallel_per_destination=self.per_destination,
                    retries=self.retries, on_failure=self.on_failure, replacement_hosts=self.replacement_hosts)

    def migrate_params(self, record, destination):
        """The migrate module's parameters for one move of ``record`` to ``destination``."""
        params = dict((key, self.params.get(key)) for key in _MIGRATE_KEYS)
        params.update(name=record["domain"], destination=destination, mode=record["mode"], persistent=True,
                      migration_address=self.addresses.get(destination), tls_destination=None)
        bandwidth = self.params.get("bandwidth")
        if self.params.get("use_planned_bandwidth") and record.get("bandwidth_mib_s"):
            planned = max(1, int(record["bandwidth_mib_s"] + 0.5))
            bandwidth = planned if bandwidth is None else min(bandwidth, planned)
        params["bandwidth"] = bandwidth
        return params

    def migration_request(self, record, destination, settings=None):
        settings = settings or ConnectionSettings.from_params(with_defaults(CONNECTION_ARGUMENT_SPEC, self.params))
        dest_uri = settings.remote(destination)
        return MigrationRequest.from_params(self.migrate_params(record, destination), dest_uri)

    def job_timeout(self, record):
        """How long a migration may run (the migrate module's rule), for jobs adopted from a killed run."""
        return self.ladder.effective_timeout((record.get("memory_mib") or 0) + (record.get("local_disk_mib") or 0))


# --- the schedule ------------------------------------------------------------------------

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


# --- what a move's failure means ---------------------------------------------------------

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


# --- the evacuation ------------------------------------------------------------------------

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
        self.settle_interrupted()
        if not self.request.settle_only:
            self.merge_plan()
        self.save()
        self.loop()
        return self.finish()

    def settle_interrupted(self):
        """In-flight entries of a run that ended without finishing them."""
        for record in self.journal.in_status(IN_FLIGHT):
            self.scope.add(record["domain"])
            where = self.executor.locate(record)
            if where.get("job"):
                self.note(record, "a migration to %s started by an earlier run is still running: waiting for it"
                          % record["destination"])
                handle = self.executor.adopt(record, self.request.job_timeout(record))
                handle.started_clock = self.clock()
                self.running[record["domain"]] = handle
            else:
                self.conclude_unwatched(record, where)

    def conclude_unwatched(self, record, where):
        """Record where a domain ended up after a move nobody watched to its end.

        Whatever the answer, a domain that ran before is left running somewhere.
        """
        src, dst = where.get("source"), where.get("destination")
        ran = record.get("state") in ACTIVE_STATES
        target = record.get("destination")
        self.dirty = True
        if (src is not None and src.get("postcopy_failed")) or (dst is not None and dst.get("postcopy_failed")):
            record["status"] = PENDING
            self.note(record, "a post-copy migration to %s failed while no evacuation watched it: it is resumed"
                      % target)
        elif record.get("mode") == SHUTDOWN:
            if src is not None and src["active"]:
                record["status"] = PENDING
                self.note(record, "its shutdown in place had not completed: asked again")
            else:
                record["status"] = SHUT_DOWN
                record["finished_at"] = utc_now()
                self.note(record, "shut down in place while no evacuation watched it")
        elif dst is not None and src is None:
            if dst["active"] and not dst.get("persistent") and not self.persist_on(record, target):
                record["status"] = PENDING
                return
            if ran and not dst["active"]:
                for note in self.executor.start_on(record, target):
                    self.note(record, note)
            record["status"] = MOVED
            record["finished_at"] = utc_now()
            stats = self.executor.completed_stats(record) or {}
            record.update((k, v) for k, v in stats.items() if v is not None)
            self.note(record, "the move to %s completed while no evacuation watched it" % target)
            self.journal.note_moved_in_run()
            self.changed = True
        elif src is not None:
            record["status"] = PENDING
            if src["active"]:
                self.note(record, "the move to %s started by an earlier run did not complete; the domain is still "
                          "on the source" % target)
            elif dst is not None:
                self.note(record, "the move to %s was left half-done (both hosts hold the domain): it is finished"
                          % target)
            elif ran:
                for note in self.executor.start_on(record, None):
                    self.note(record, note)
        else:
            record["status"] = FAILED
            record["error"] = "the domain is neither on the source nor on %s" % target

    def persist_on(self, record, host):
        """Define on ``host`` a domain that runs there as a transient one; whether that worked.

        The migrate module defines a live-moved domain on the destination only once the source
        has undefined it (never two persistent definitions); a run that ended in between left it
        transient there.
        """
        problem = self.executor.persist_on(record, host)
        if problem:
            self.note(record, "the move to %s completed while no evacuation watched it, but the domain is not "
                      "defined there and defining it failed (%s): the next run tries again" % (host, problem))
            return False
        self.note(record, "the move to %s completed while no evacuation watched it, before the domain was "
                  "defined there: defined it on %s" % (host, host))
        return True

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
                    record["status"] = PENDING
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
                    record["status"] = SKIPPED
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
                self.conclude(self.running.pop(name))
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
        record["status"] = IN_FLIGHT
        record["attempts"] = (record.get("attempts") or 0) + 1
        record["started_at"] = utc_now()
        record["finished_at"] = None
        record["progress"] = None
        record["error"] = None
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
            progress = self.executor.progress(handle)
            if progress is not None:
                handle.record["progress"] = progress

    # --- outcomes ----------------------------------------------------------------------

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
            record["status"] = SHUT_DOWN
            record["operation"] = "shutdown"
            self.note(record, "shut down in place (%s), as its do_not_migrate policy says" % result.get("how", "graceful"))
            self.changed = True
            return
        record["status"] = MOVED
        record["destination"] = handle.destination
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
        arrived = ((result.get("state") or {}).get("destination") or {}).get("state")
        if record.get("state") in ACTIVE_STATES and arrived not in (None,) + ACTIVE_STATES:
            # A cold move resumed after an interruption found it shut off: it ran before, so it runs again.
            for note in self.executor.start_on(record, handle.destination):
                self.note(record, note)

    def failed_attempt(self, record, handle):
        name = record["domain"]
        error = handle.error
        kind = classify(error, self.aborting)
        record["error"] = error.msg
        if isinstance(error, MigrationFailed) or handle.mode != LIVE:
            for note in self.executor.ensure_running(record, handle):
                self.note(record, note)
        if kind == ABORTED_JOB:
            record["status"] = PENDING
            self.note(record, "its migration to %s was aborted by the evacuation's abort; it stays on the source"
                      % handle.destination)
            return
        if self.aborting and kind != POSTCOPY:
            record["status"] = FAILED
            return
        policy = self.request.on_failure
        tries_here = self.tried.get(name, {}).get(handle.destination, 0)
        if policy != "leave" and kind in (TRANSIENT, POSTCOPY) and tries_here <= self.request.retries:
            record["status"] = PENDING
            self.not_before[name] = self.clock() + self.request.retry_delay
            self.note(record, "attempt %d to %s failed; retrying in %d s: %s" % (
                tries_here, handle.destination, self.request.retry_delay, error.msg))
            return
        if policy == "replace" and kind in (TRANSIENT, BLOCKED) and handle.mode != SHUTDOWN:
            replacement = self.replacement_for(record)
            if replacement is not None:
                self.note(record, "re-placed on %s after %s failed: %s" % (replacement, handle.destination, error.msg))
                record["destination"] = replacement
                record["status"] = PENDING
                return
        record["status"] = FAILED
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
            result = INTERRUPTED if any(r["status"] in (PENDING, FAILED) for r in self.journal.ordered()) \
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


# --- the report ------------------------------------------------------------------------------

def _fmt(value, unit="", digits=1):
    if value is None:
        return "-"
    return ("%." + str(digits) + "f%s") % (value, unit)


def build_report(journal, request, elapsed):
    """The module's result: the journal's entries and totals, a summary for people, the bound."""
    data = journal.data
    totals = dict(data["totals"])
    records = journal.ordered()
    moved_mib = totals.get("moved_mib") or 0.0
    bound = None
    ratio = None
    if request.throughput:
        # This run's wall time against what this run moved (a resumed run did not move it all).
        bound = round((totals.get("moved_mib_this_run") or 0.0) / request.throughput, 2)
        if bound > 0:
            ratio = round(elapsed / bound, 2)
    totals.update(wall_seconds=round(elapsed, 2), bound_seconds=bound, bound_ratio=ratio,
                  source_throughput_mib_s=request.throughput)
    width = max([len(r["domain"]) for r in records] + [6])
    lines = ["%s: evacuation %s %s in %s s - %d moved, %d shut down in place, %d failed, %d pending, %d skipped." % (
        data.get("source") or "source", data["evacuation_id"], data["result"], _fmt(elapsed), totals["moved"],
        totals["shut_down"], totals["failed"], totals["pending"], totals["skipped"])]
    for record in records:
        status = record["status"]
        if status == MOVED:
            escalation = record.get("completed_by") or ("cold" if record.get("mode") == COLD else "-")
            text = "-> %-8s %-5s %7s s  downtime %s ms  %s" % (
                record.get("destination"), record.get("mode"), _fmt(record.get("seconds")),
                record.get("downtime_ms") if record.get("downtime_ms") is not None else "-", escalation)
        elif status == SHUT_DOWN:
            text = "shut down in place (%s s)" % _fmt(record.get("seconds"))
        elif status == SKIPPED:
            text = "skipped: %s" % ("; ".join(record.get("notes") or []) or "by policy")
        else:
            text = "%s%s" % (status.upper().replace("_", " "), ": %s" % record["error"] if record.get("error") else "")
        lines.append("  %-*s %s" % (width, record["domain"], text))
    line = "Sent %s MiB in %s s (%s MiB/s); moved %s MiB of memory and disks." % (
        totals["mib_sent"], _fmt(elapsed), _fmt(totals.get("throughput_mib_s")), moved_mib)
    if bound is not None:
        line += " Bound at %s MiB/s: %s s; wall time / bound = %s." % (request.throughput, bound, _fmt(ratio, "", 2))
    lines.append(line)
    return dict(
        evacuation_id=data["evacuation_id"],
        source=data.get("source"),
        result=data["result"],
        journal=None,
        domains=records,
        totals=totals,
        summary=lines,
        progress=data.get("progress"),
    )


# --- libvirt ---------------------------------------------------------------------------------

class MoveHandle(object):
    """One move in flight: a thread running the migrate engine (or a shutdown in place)."""

    def __init__(self, record, destination, mode):
        self.record = record
        self.destination = destination
        self.mode = mode
        self.result = None
        self.error = None
        self.warnings = []
        self.abort_state = None
        self.adopted = False
        self.started_clock = None
        self.thread = None
        self.done = False

    def warn(self, message):
        self.warnings.append(message)

    def poll(self):
        if self.done:
            return True
        if self.thread is not None and not self.thread.is_alive():
            if self.result is None and self.error is None:
                self.error = MigrationFailed("the worker of this move ended without a result (see the module's stderr)")
            self.done = True
        return self.done


class AdoptedHandle(MoveHandle):
    """A migration libvirt still runs for an earlier, interrupted run: waited for, not restarted."""

    def __init__(self, record, executor, deadline):
        super().__init__(record, record.get("destination"), record.get("mode") or LIVE)
        self.adopted = True
        self.executor = executor
        self.deadline = deadline

    def poll(self):
        if not self.done:
            self.done = not self.executor.job_active(self.record)
            if not self.done and time.monotonic() > self.deadline and self.abort_state is None:
                self.abort_state = self.executor.abort(self)
        return self.done


class LibvirtExecutor(object):
    """Runs moves against libvirt: the source is local (``uri``), destinations by name."""

    def __init__(self, request, settings):
        self.request = request
        self.settings = settings
        self.source = open_hypervisor(settings.uri, settings.connect_timeout)
        self.destinations = {}

    def close(self):
        self.source.close()
        for hypervisor in self.destinations.values():
            if hypervisor is not None:
                hypervisor.close()

    def _destination(self, host):
        """The main thread's connection to ``host`` (None when it cannot be reached now)."""
        if self.destinations.get(host) is None:
            try:
                self.destinations[host] = open_hypervisor(self.settings.remote(host), self.settings.connect_timeout)
            except VirtopsError:
                return None
        return self.destinations[host]

    def _source_domain(self, record):
        return self.source.domain(record.get("uuid") or record["domain"])

    # --- where things are --------------------------------------------------------------

    def locate(self, record):
        out = dict(source=None, destination=None, job=False)
        dom = self._source_domain(record)
        state = state_of(dom, self.source.name) if dom is not None else None
        if state is not None:
            out["source"] = dict(active=state.active, state=state.state_name, persistent=state.persistent,
                                 postcopy_failed=state.postcopy_failed)
            out["job"] = self._job(dom) is not None
        host = record.get("destination")
        if host:
            dest = self._destination(host)
            if dest is not None:
                ddom = dest.domain(record.get("uuid") or record["domain"])
                dstate = state_of(ddom, host) if ddom is not None else None
                if dstate is not None:
                    out["destination"] = dict(active=dstate.active, state=dstate.state_name,
                                              persistent=dstate.persistent, postcopy_failed=dstate.postcopy_failed)
        return out

    def _job(self, dom):
        try:
            snap = JobSnapshot(call("reading the job statistics", dom.jobStats, 0))
        except (NotFound, OperationInvalid):
            return None
        return snap if snap.active else None

    def job_active(self, record):
        dom = self._source_domain(record)
        return dom is not None and self._job(dom) is not None

    def completed_stats(self, record):
        dest = self._destination(record.get("destination"))
        if dest is None:
            return None
        dom = dest.domain(record.get("uuid") or record["domain"])
        if dom is None:
            return None
        stats = lookup("reading the completed job statistics", dom.jobStats,
                       constant("VIR_DOMAIN_JOB_STATS_COMPLETED", 1))
        if not stats:
            return None
        snap = JobSnapshot(stats)
        return dict(downtime_ms=snap.downtime, total_ms=snap.time_elapsed, bytes_sent=snap.data_processed,
                    memory_bytes=snap.memory_total)

    # --- moves -------------------------------------------------------------------------

    def start(self, record, destination):
        handle = MoveHandle(record, destination, record["mode"])
        target = self._shutdown if record["mode"] == SHUTDOWN else self._migrate
        handle.thread = threading.Thread(target=target, args=(handle,), name="evacuate-%s" % record["domain"])
        handle.thread.daemon = True
        handle.thread.start()
        return handle

    def adopt(self, record, timeout):
        return AdoptedHandle(record, self, time.monotonic() + timeout)

    def _migrate(self, handle):
        src = dst = None
        try:
            record = handle.record
            dest_uri = self.settings.remote(handle.destination)
            request = MigrationRequest.from_params(self.request.migrate_params(record, handle.destination), dest_uri)
            src = open_hypervisor(self.settings.uri, self.settings.connect_timeout)
            dst = open_hypervisor(dest_uri, self.settings.connect_timeout)
            handle.result = MigrateTask(request, src, dst, False, handle.warn).run()
        except VirtopsError as err:
            handle.error = err
        finally:
            for hypervisor in (dst, src):
                if hypervisor is not None:
                    hypervisor.close()
            handle.done = True

    def _shutdown(self, handle):
        src = None
        try:
            record = handle.record
            src = open_hypervisor(self.settings.uri, self.settings.connect_timeout)
            dom = src.domain(record.get("uuid") or record["domain"])
            state = state_of(dom, src.name) if dom is not None else None
            if state is None or not state.active:
                handle.result = dict(how="already shut off")
                return
            call("asking %s to shut down" % record["domain"], dom.shutdownFlags, 0)
            deadline = time.monotonic() + self.request.params["shutdown_timeout"]
            while time.monotonic() < deadline:
                state = state_of(dom, src.name)
                if state is None or not state.active:
                    handle.result = dict(how="graceful")
                    return
                time.sleep(SHUTDOWN_POLL_S)
            if not self.request.params["force"]:
                raise MigrationFailed("%s did not shut down within %d s (shutdown_timeout); it still runs on the source "
                                      "(set force=true to power it off)" % (record["domain"],
                                                                            self.request.params["shutdown_timeout"]))
            call("powering off %s" % record["domain"], dom.destroy)
            handle.result = dict(how="forced")
        except VirtopsError as err:
            handle.error = err
        finally:
            if src is not None:
                src.close()
            handle.done = True

    def progress(self, handle):
        dom = self._source_domain(handle.record)
        if dom is None:
            return None
        try:
            snap = self._job(dom)
        except LibvirtError:
            return None
        if snap is None:
            return None
        total = snap.data_total or 0
        remaining = snap.remaining or 0
        percent = None
        if total:
            percent = max(0, min(99, int(100.0 * (total - remaining) / total)))
        return dict(processed_bytes=snap.data_processed or 0, remaining_bytes=remaining, percent=percent,
                    iteration=snap.iteration, mib_s=round((snap.memory_bps or 0) / float(MIB), 1),
                    elapsed_ms=snap.time_elapsed)

    def abort(self, handle):
        """Abort a pre-copy migration; say why not when it must finish instead."""
        if handle.mode == COLD:
            return "cold"
        if handle.mode == SHUTDOWN:
            return "shutdown"
        dom = self._source_domain(handle.record)
        if dom is None:
            return "gone"
        state = state_of(dom, self.source.name)
        if state is not None and ((state.state == PAUSED and state.reason == PAUSED_POSTCOPY)
                                  or (state.state == RUNNING and state.reason == RUNNING_POSTCOPY)):
            return "postcopy"
        try:
            call("aborting the migration of %s" % handle.record["domain"], dom.abortJob)
        except (NotFound, OperationInvalid):
            return "no_job"
        except LibvirtError as err:
            if "post-copy" in (err.libvirt_message or "") or "postcopy" in (err.libvirt_message or ""):
                return "postcopy"
            return "refused"
        return "requested"

    def ensure_running(self, record, handle):
        """After a failure: a domain that ran before is never left shut off."""
        if record.get("state") not in ACTIVE_STATES:
            return []
        where = self.locate(record)
        src, dst = where["source"], where["destination"]
        notes = []
        if (src and src.get("postcopy_failed")) or (dst and dst.get("postcopy_failed")):
            notes.append("post-copy failed: the guest is paused on both hosts until the migration is resumed (re-run "
                         "the evacuation)")
        elif src is not None and not src["active"] and (dst is None or not dst["active"]):
            notes += self.start_on(record, None)
        elif src is None and dst is not None and not dst["active"]:
            notes += self.start_on(record, record.get("destination"))
        return notes

    def persist_on(self, record, host):
        """Define the transient domain running on ``host`` there; None, or what went wrong."""
        hypervisor = self._destination(host)
        if hypervisor is None:
            return "%s is unreachable" % host
        dom = hypervisor.domain(record.get("uuid") or record["domain"])
        if dom is None:
            return "%s no longer holds it" % host
        try:
            define_where_it_runs(hypervisor, dom)
        except LibvirtError as err:
            return err.msg
        return None

    def start_on(self, record, host):
        """Start a domain that ran before the evacuation, on ``host`` (None: the source)."""
        hypervisor = self.source if host is None else self._destination(host)
        where = "the source" if host is None else host
        if hypervisor is None:
            return ["could not start it on %s: unreachable" % where]
        dom = hypervisor.domain(record.get("uuid") or record["domain"])
        if dom is None:
            return ["could not start it on %s: not defined there" % where]
        try:
            call("starting %s on %s" % (record["domain"], where), dom.create)
        except LibvirtError as err:
            return ["could not start it on %s: %s" % (where, err.msg)]
        return ["started it on %s (it ran before the evacuation)" % where]

    def can_take(self, record, host, committed_mib):
        dest = self._destination(host)
        if dest is None:
            return False, "unreachable"
        free = lookup("reading the free memory of %s" % host, dest.conn.getFreeMemory)
        need = ((record.get("memory_mib") or 0) + committed_mib) * MIB
        if free is not None and free < need:
            return False, "%d MiB free, %d MiB needed" % (free // MIB, need // MIB)
        try:
            group = self._group(self._source_domain(record))
            if group:
                for dom in call("listing the domains of %s" % host, dest.conn.listAllDomains, 0):
                    if self._group(dom) == group:
                        return False, "anti-affinity group %r already has %s there" % (group, dom.name())
        except LibvirtError as err:
            # A group that cannot be read is not "no group": the host is not used rather than risk it.
            return False, "its anti-affinity could not be checked there: %s" % err.msg
        return True, None

    @staticmethod
    def _group(dom):
        """The anti-affinity group of ``dom``; None when it has none (or is gone). Other libvirt errors raise."""
        if dom is None:
            return None
        try:
            metadata = domain_metadata(dom)
        except NotFound:
            return None
        return parse_policy(metadata).get("anti_affinity")


# --- the module's entry point -------------------------------------------------------------

def check_mode_report(request, journal):
    """What a real run would do, from the journal alone (nothing is opened or written)."""
    preview = Journal.new(request.evacuation_id, request.source) if journal is None else journal
    would = []
    for move in request.moves:
        record = preview.record(move["domain"])
        if record is None or record["status"] not in DONE:
            would.append(dict(domain=move["domain"], destination=move["destination"], mode=move["mode"]))
    in_flight = [r["domain"] for r in preview.in_status(IN_FLIGHT)]
    report = dict(evacuation_id=request.evacuation_id, source=request.source, result=None, journal=None,
                  domains=preview.ordered() if journal is not None else [], totals=preview.data.get("totals") or {},
                  summary=["would start %d moves%s" % (len(would), ", and settle %d left in flight by an interrupted "
                                                                   "run" % len(in_flight) if in_flight else "")],
                  progress=preview.data.get("progress"), would_move=would)
    report["changed"] = bool(would or in_flight)
    return report


def run_evacuate(module):
    """Entry point for the evacuate module: returns the result dict for exit_json."""
    params = module.params
    try:
        store = JournalStore(params["journal_dir"], params["evacuation_id"])
    except JournalError as err:
        raise ParameterError(str(err)) from None
    request = EvacuationRequest(params)
    settings = ConnectionSettings.from_params(params)
    try:
        if module.check_mode:
            return check_mode_report(request, store.load())
        owner = store.try_lock()
        waited = None
        if owner is not None:
            if owner.get("evacuation_id") != request.evacuation_id:
                raise ParameterError("another evacuation (%s, pid %s) is running on this host: one at a time" % (
                    owner.get("evacuation_id"), owner.get("pid")))
            # The same evacuation still runs (its Ansible run was interrupted): wait for it to end, then report
            # what it did without starting anything new - a re-run resumes from there.
            waited = owner
            while owner is not None:
                time.sleep(1.0)
                owner = store.try_lock()
        try:
            journal = store.load()
            if journal is None:
                journal = Journal.new(request.evacuation_id, request.source)
            elif journal.data.get("source") and request.source and journal.data["source"] != request.source:
                raise ParameterError("the journal %s belongs to an evacuation of %s, not %s" % (
                    store.path, journal.data["source"], request.source))
            if waited is not None:
                request.moves = []
                request.skipped = []
                request.settle_only = True
            executor = LibvirtExecutor(request, settings)
            try:
                evacuation = Evacuation(request, journal, store, executor, warn=module.warn,
                                        token=params.get("run_tag"))
                report = evacuation.run()
            finally:
                executor.close()
        finally:
            store.unlock()
    except JournalError as err:
        raise EvacuationFailed(str(err), changed=False) from None
    report["journal"] = store.path
    if waited is not None:
        report["summary"].insert(0, "An earlier run of this evacuation (pid %s) was still running: waited for it to "
                                    "end; re-run to continue." % waited.get("pid"))
    if report["result"] in (FAILED, ABORTED):
        msg = "evacuation %s of %s %s: %s" % (
            request.evacuation_id, report.get("source") or "the source", report["result"], report["progress"])
        raise EvacuationFailed(msg, **report)
    return report


# The evacuate module: its entry function and the argument spec it runs with.
EVACUATE_MODULE = EntryPoint(run_evacuate, EVACUATE_ARGUMENT_SPEC)
