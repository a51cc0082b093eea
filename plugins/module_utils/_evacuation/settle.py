"""Settling what an interrupted run of an evacuation left in flight, before anything new starts.

A run that was killed (or lost its controller) leaves journal entries in flight, or unknown
when a host did not answer. ``Settling.settle_interrupted`` asks the executor where each such
domain is now - one read of every host that could hold it - and:

- a migration libvirt still runs is adopted and waited for, not started twice;
- one that finished is recorded as moved (defined on the destination if the source had let
  go first, resumed if it arrived paused);
- one that did not is pending again, with the domain restarted where it was if it ran;
- when a host that could hold the domain did not answer, nothing is started or defined: the
  entry stays unknown for a later run.

It is a part of ``engine.Evacuation`` (its state: the journal, the executor, the notes), kept
in a file of its own.
"""

from __future__ import annotations

from ansible_collections.virtops.migration.plugins.module_utils._evacuation.journal import utc_now
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.record import (
    FAILED,
    IN_FLIGHT,
    MOVED,
    PENDING,
    SHUT_DOWN,
    UNKNOWN,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.request import (
    ACTIVE_STATES,
    SHUTDOWN,
)


class Settling(object):
    """The settling steps of ``engine.Evacuation``; they use its journal, executor, clock and notes."""

    def settle_interrupted(self):
        """In-flight entries of a run that ended without finishing them."""
        for record in self.journal.in_status(IN_FLIGHT, UNKNOWN):
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
            self.changed = True
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
