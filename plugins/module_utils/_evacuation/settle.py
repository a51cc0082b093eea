# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""Settling what an interrupted run of an evacuation left in flight, before anything new starts.

A run that was killed (or lost its controller) leaves journal entries in flight, or unknown
when a host did not answer. The evacuation asks the executor where each such domain is now -
one read of every host that could hold it - and hands it to its ``Settler``:

- a migration libvirt still runs is adopted and waited for, not started twice;
- one that finished is recorded as moved (defined on the destination if the source had let
  go first, resumed if it arrived paused);
- one that did not is pending again, with the domain restarted where it was if it ran;
- when a host that could hold the domain did not answer, nothing is started or defined: the
  entry stays unknown for a later run.

``engine.Evacuation`` owns a Settler and uses it through four methods: ``adopt`` (a migration
still running), ``conclude_unwatched`` (a move nobody watched to its end), ``unknown`` (a host
that could hold the domain did not answer) and ``resumed`` (a domain that arrived paused).
The settler changes only the journal records it is handed; it reports through the
evacuation's ``note``, ``warn`` and ``mark_changed``.
"""

from __future__ import annotations

from ansible_collections.virtops.migration.plugins.module_utils._evacuation.journal import utc_now
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.record import (
    DONE,
    FAILED,
    MOVED,
    PENDING,
    SHUT_DOWN,
    SKIPPED,
    UNKNOWN,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.request import (
    ACTIVE_STATES,
    SHUTDOWN,
)


class Settler(object):
    """Settles the moves of an interrupted run, for the evacuation that owns it.

    ``note(record, text)``, ``warn(text)`` and ``mark_changed()`` (this run changed something)
    are the evacuation's; ``clock`` its clock.
    """

    def __init__(self, request, journal, executor, clock, note, warn, mark_changed):
        self.request = request
        self.journal = journal
        self.executor = executor
        self.clock = clock
        self.note = note
        self.warn = warn
        self.mark_changed = mark_changed

    def adopt(self, record):
        """Watch a migration that an earlier run started and libvirt still runs; returns its handle."""
        self.note(record, "a migration to %s started by an earlier run is still running: waiting for it"
                  % record["destination"])
        handle = self.executor.adopt(record, self.request.job_timeout(record))
        handle.started_clock = self.clock()
        return handle

    def merge_plan(self, running):
        """Merge the plan's moves and skipped domains into the journal; returns the names it lists.

        A move done earlier whose domain runs on the source again is to be done again;
        entries of an earlier run that this plan no longer lists are verified, never acted on.
        ``running``: the moves the evacuation watches already (adopted ones).
        """
        in_plan = set()
        for move in self.request.moves:
            name = move["domain"]
            in_plan.add(name)
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
            if name in in_plan or name in running or record["status"] in DONE:
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
        return in_plan

    def conclude_unwatched(self, record, where):
        """Record where a domain ended up after a move nobody watched to its end.

        Whatever the answer, a domain that ran before is left running somewhere.
        """
        src, dst = where.get("source"), where.get("destination")
        ran = record.get("state") in ACTIVE_STATES
        target = record.get("destination")
        if self.unknown(record, where):
            return
        if (src is not None and src.get("postcopy_failed")) or (dst is not None and dst.get("postcopy_failed")):
            record.move_to(PENDING)
            record["postcopy_to"] = target
            self.note(record, "a post-copy migration to %s failed while no evacuation watched it: it is resumed"
                      % target)
        elif record.get("mode") == SHUTDOWN:
            if src is not None and src["active"]:
                record.move_to(PENDING)
                self.note(record, "its shutdown in place had not completed: asked again")
            else:
                record.move_to(SHUT_DOWN)
                record["finished_at"] = utc_now()
                self.note(record, "shut down in place while no evacuation watched it")
        elif dst is not None and src is None:
            if dst["active"] and not dst.get("persistent") and not self.persist_on(record, target):
                record.move_to(PENDING)
                return
            if ran and not dst["active"]:
                for note in self.executor.start_on(record, target):
                    self.note(record, note)
            elif not self.resumed(record, target, dst.get("state")):
                return
            record.move_to(MOVED)
            record["finished_at"] = utc_now()
            stats = self.executor.completed_stats(record) or {}
            record.update((k, v) for k, v in stats.items() if v is not None)
            self.note(record, "the move to %s completed while no evacuation watched it" % target)
            self.journal.note_moved_in_run()
            self.mark_changed()
        elif src is not None:
            record.move_to(PENDING)
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
            record.move_to(FAILED)
            record["error"] = "the domain is neither on the source nor on %s" % target

    def unknown(self, record, where):
        """Whether a host that could hold the domain did not answer; it is then left alone, as UNKNOWN.

        A domain still running on the source cannot run elsewhere too: that one is not in doubt.
        """
        src = where.get("source")
        if record.get("mode") == SHUTDOWN or not where.get("unknown") \
                or (src is not None and src["active"] and not src.get("postcopy_failed")):
            return False
        record.move_to(UNKNOWN)
        record["error"] = ("where it is now is unknown (%s): nothing was started or defined; re-run once every host "
                           "answers" % "; ".join(where["unknown"]))
        self.note(record, record["error"])
        self.warn("%s: %s" % (record["domain"], record["error"]))
        return True

    def resumed(self, record, host, arrived):
        """A domain that ran arrived paused on ``host`` (timeout_action=pause, a cold move with disks): resume it.

        Whether it now runs as it did; when it could not be resumed, the move is not done: FAILED, with why.
        """
        if record.get("state") != "running" or arrived != "paused":
            return True
        problem = self.executor.resume_on(record, host)
        if problem is None:
            self.note(record, "it arrived paused on %s: resumed it" % host)
            return True
        record.move_to(FAILED)
        record["error"] = "it arrived paused on %s and could not be resumed (%s): not done" % (host, problem)
        self.note(record, record["error"])
        self.warn("%s: %s" % (record["domain"], record["error"]))
        return False

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
