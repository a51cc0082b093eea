# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The journal of an evacuation: what happened to each domain, kept on disk as it happens.

The evacuate module keeps one JSON file per evacuation on the source host
(``<journal_dir>/<evacuation_id>.json``), rewritten atomically (write, fsync, rename)
after every change and about once a second while migrations run, so that:

- a person or a playbook can read the progress at any time (``progress`` is a ready line);
- an interrupted evacuation can be resumed: a re-run with the same id reads the journal,
  never moves again what it says was moved (after checking where it is), and waits for a
  migration it says was in flight instead of starting it twice;
- restore_host.yml knows what to move back, and where from.

An abort is requested by creating ``<journal_dir>/<evacuation_id>.abort``; the running
evacuation (or the next one, if none runs) honours it and removes it.

Plain Python (no libvirt, no Ansible), so the unit tests drive it directly.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import re
import tempfile
import time

from ansible_collections.virtops.migration.plugins.module_utils._evacuation.record import (
    DONE,
    FAILED,
    IN_FLIGHT,
    MOVED,
    PENDING,
    SHUT_DOWN,
    SKIPPED,
    STATUSES,
    UNKNOWN,
    MoveRecord,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import VirtopsError
from ansible_collections.virtops.migration.plugins.module_utils._options import JOURNAL_DIRECTORY

FORMAT = 1
DEFAULT_DIRECTORY = JOURNAL_DIRECTORY

# The evacuation's phase and result.
RUNNING = "running"
FINISHED = "finished"
COMPLETED = "completed"
ABORTED = "aborted"

MIB = 1024.0 * 1024.0
# What every journal of this format holds besides its domains, and of which type.
REQUIRED_KEYS = (("evacuation_id", str), ("runs", list), ("phase", str))
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class JournalError(VirtopsError):
    """The journal cannot be read, written or locked; the message says why."""


def validate_id(evacuation_id):
    """An evacuation id names files: letters, digits, '.', '_' and '-' only."""
    if not isinstance(evacuation_id, str) or not _ID_RE.match(evacuation_id) or evacuation_id in (".", ".."):
        raise JournalError("evacuation_id must be 1 to 100 letters, digits, '.', '_' or '-', starting with a letter "
                           "or digit, not %r" % (evacuation_id,))
    return evacuation_id


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


class Journal(object):
    """The journal's data (a dict that is written as JSON) and the operations on it."""

    def __init__(self, data):
        self.data = data
        # Every entry is a MoveRecord, also those read back from JSON.
        for name, record in list(data.get("domains", {}).items()):
            if not isinstance(record, MoveRecord):
                data["domains"][name] = MoveRecord(record)

    @classmethod
    def new(cls, evacuation_id, source):
        return cls(dict(
            format=FORMAT,
            evacuation_id=evacuation_id,
            source=source,
            phase=RUNNING,
            result=None,
            created_at=utc_now(),
            updated_at=utc_now(),
            runs=[],
            abort_requested=False,
            limits={},
            domains={},
            totals={},
            progress="",
        ))

    @classmethod
    def from_json(cls, text, path="the journal"):
        try:
            data = json.loads(text)
        except ValueError as err:
            raise JournalError("%s is not valid JSON (%s): move it away to start a new evacuation" % (path, err))
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("domains"), dict):
            raise JournalError("%s is not an evacuation journal of format %d" % (path, FORMAT))
        missing = [key for key, kind in REQUIRED_KEYS if not isinstance(data.get(key), kind)]
        if missing:
            raise JournalError("%s is incomplete (no valid %s): move it away to start a new evacuation"
                               % (path, ", ".join(missing)))
        for name, record in data["domains"].items():
            if not isinstance(record, dict) or record.get("status") not in STATUSES:
                raise JournalError("%s: the entry of %s has no valid status" % (path, name))
            if record.get("domain") != name:
                raise JournalError("%s: the entry of %s does not name its domain (domain: %r)"
                                   % (path, name, record.get("domain")))
        if not all(isinstance(run, dict) for run in data["runs"]):
            raise JournalError("%s: its runs are not a list of runs" % path)
        return cls(data)

    def to_json(self):
        return json.dumps(self.data, indent=1, sort_keys=True)

    # --- domains ---------------------------------------------------------------------

    @property
    def domains(self):
        return self.data["domains"]

    def record(self, name):
        return self.domains.get(name)

    def in_status(self, *statuses):
        return [r for r in self.ordered() if r["status"] in statuses]

    def ordered(self):
        """Records in the plan's order (records without one last, by name)."""
        return sorted(self.domains.values(), key=lambda r: (r.get("order") is None, r.get("order") or 0, r["domain"]))

    def merge_move(self, move):
        """Take a plan move into the journal; return the record and what the merge did.

        A domain already done (moved, shut down, skipped) keeps its entry: it is never moved
        twice. One in flight keeps its destination until the earlier migration is settled.
        Otherwise the new plan wins (destination, mode, order) and the domain is pending.
        """
        name = move["domain"]
        record = self.record(name)
        if record is None:
            record = self.domains[name] = MoveRecord.from_plan(name, move)
            return record, "new"
        if record["status"] in DONE:
            return record, "done"
        if record["status"] in (IN_FLIGHT, UNKNOWN):
            # Settled first (where is it now?); never re-planned while that is not known.
            return record, record["status"]
        record.replan(move)
        return record, "replanned"

    def merge_skipped(self, skipped):
        name = skipped["domain"]
        record = self.record(name)
        if record is not None and record["status"] != PENDING:
            return record
        record = self.domains[name] = MoveRecord.skipped_by_policy(skipped)
        return record

    # --- runs, abort, result ---------------------------------------------------------

    def begin_run(self, pid, token, limits):
        self.data["phase"] = RUNNING
        self.data["result"] = None
        self.data["abort_requested"] = False
        self.data["limits"] = limits
        self.data["runs"].append(dict(pid=pid, token=token, started_at=utc_now(), finished_at=None, result=None,
                                      moved=0))
        self.data["run_tag"] = token

    def finish_run(self, result):
        self.data["phase"] = FINISHED
        self.data["result"] = result
        run = self.data["runs"][-1] if self.data["runs"] else None
        if run is not None:
            run["finished_at"] = utc_now()
            run["result"] = result

    def note_moved_in_run(self):
        if self.data["runs"]:
            self.data["runs"][-1]["moved"] += 1

    # --- totals and the progress line ------------------------------------------------

    def update_totals(self, elapsed_s):
        """Recompute the totals; ``elapsed_s`` is this run's time so far."""
        counts = dict((status, 0) for status in STATUSES)
        sent = 0.0
        moved_memory = 0.0
        for record in self.domains.values():
            counts[record["status"]] += 1
            if record["status"] == MOVED and record.get("bytes_sent"):
                sent += record["bytes_sent"]
            elif record["status"] == IN_FLIGHT and record.get("progress"):
                sent += record["progress"].get("processed_bytes") or 0
            if record["status"] == MOVED:
                moved_memory += (record.get("memory_mib") or 0.0) + (record.get("local_disk_mib") or 0.0)
        # Bytes sent in this run only, for the throughput: earlier runs had their own clock.
        sent_now = 0.0
        moved_now = 0.0
        run_started = self.data["runs"][-1]["started_at"] if self.data["runs"] else None
        for record in self.domains.values():
            if record.get("started_at") and run_started and record["started_at"] >= run_started:
                if record["status"] == MOVED:
                    sent_now += record.get("bytes_sent") or 0
                    moved_now += (record.get("memory_mib") or 0.0) + (record.get("local_disk_mib") or 0.0)
                elif record["status"] == IN_FLIGHT and record.get("progress"):
                    sent_now += record["progress"].get("processed_bytes") or 0
        totals = dict(
            domains=len(self.domains),
            moved=counts[MOVED],
            in_flight=counts[IN_FLIGHT],
            pending=counts[PENDING],
            failed=counts[FAILED],
            skipped=counts[SKIPPED],
            shut_down=counts[SHUT_DOWN],
            unknown=counts[UNKNOWN],
            mib_sent=round(sent / MIB, 1),
            moved_mib=round(moved_memory, 1),
            moved_mib_this_run=round(moved_now, 1),
            elapsed_s=round(elapsed_s, 1),
            throughput_mib_s=round(sent_now / MIB / elapsed_s, 1) if elapsed_s > 0.5 else None,
        )
        self.data["totals"] = totals
        self.data["updated_at"] = utc_now()
        # For readers that tell a live evacuation from a dead one by the journal's age.
        self.data["updated_epoch"] = round(time.time(), 1)
        self.data["progress"] = self.progress_line()
        return totals

    def progress_line(self):
        totals = self.data["totals"]
        flying = []
        for record in self.in_status(IN_FLIGHT):
            text = "%s->%s" % (record["domain"], record.get("destination") or "-")
            progress = record.get("progress") or {}
            if progress.get("percent") is not None:
                text += " %d%%" % progress["percent"]
            flying.append(text)
        line = "%s s: moved %d/%d, in flight %d%s, failed %d, pending %d" % (
            totals["elapsed_s"], totals["moved"] + totals["shut_down"], totals["domains"] - totals["skipped"],
            totals["in_flight"], " (%s)" % ", ".join(flying) if flying else "", totals["failed"], totals["pending"])
        if totals.get("unknown"):
            line += ", UNKNOWN %d (a host did not answer)" % totals["unknown"]
        line += ", %s MiB sent" % totals["mib_sent"]
        if totals.get("throughput_mib_s") is not None:
            line += ", %s MiB/s" % totals["throughput_mib_s"]
        if self.data.get("abort_requested"):
            line += ", ABORTING"
        if self.data["phase"] == FINISHED:
            line += " - %s" % self.data["result"]
        return line


def atomic_write(path, text, mode):
    """Replace ``path`` with ``text`` (file mode ``mode``) by write, fsync and rename: a reader sees
    the old content or the new one, never a part, and a crash leaves no half-written file."""
    handle, temporary = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                                         dir=os.path.dirname(path) or ".")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


# In a journal directory: the lock one evacuation at a time holds (whatever its id), and who holds it.
LOCK_NAME = ".lock"
OWNER_NAME = ".running"


def _read_owner(directory):
    try:
        with open(os.path.join(directory, OWNER_NAME)) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def lock_holder(directory):
    """Who holds the evacuation lock of this journal directory now, without taking it: None when
    no process does, else its owner record (evacuation_id, pid, since), with evacuation_id None
    when the record cannot be read. A lock file left by a killed run, with no holder, is None."""
    path = os.path.join(directory, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise JournalError("cannot open %s: %s" % (path, err.strerror))
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno not in (errno.EAGAIN, errno.EACCES):
            raise JournalError("cannot lock %s: %s" % (path, err.strerror))
        return _read_owner(directory) or dict(evacuation_id=None, pid=None)
    finally:
        os.close(fd)
    return None


class JournalStore(object):
    """Where an evacuation's journal, abort request and lock live on the source host."""

    def __init__(self, directory, evacuation_id):
        self.directory = directory
        self.evacuation_id = validate_id(evacuation_id)
        self.path = os.path.join(directory, evacuation_id + ".json")
        self.abort_path = os.path.join(directory, evacuation_id + ".abort")
        # One evacuation at a time per source host, whatever its id.
        self.lock_path = os.path.join(directory, LOCK_NAME)
        self.owner_path = os.path.join(directory, OWNER_NAME)
        self._lock_fd = None

    def ensure_directory(self):
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
        except OSError as err:
            raise JournalError("cannot create the journal directory %s: %s" % (self.directory, err.strerror))

    def load(self):
        """The journal, or None when this evacuation has none yet."""
        try:
            with open(self.path) as handle:
                text = handle.read()
        except OSError as err:
            if err.errno == errno.ENOENT:
                return None
            raise JournalError("cannot read the journal %s: %s" % (self.path, err.strerror))
        return Journal.from_json(text, self.path)

    def save(self, journal):
        """Write atomically: a reader sees the old journal or the new one, never a part."""
        try:
            atomic_write(self.path, journal.to_json() + "\n", 0o600)
        except OSError as err:
            raise JournalError("cannot write the journal %s: %s" % (self.path, err.strerror))

    def abort_requested(self):
        return os.path.exists(self.abort_path)

    def clear_abort(self):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.abort_path)

    def request_abort(self, reason=""):
        self.ensure_directory()
        with open(self.abort_path, "w") as handle:
            handle.write(reason + "\n")

    # --- the lock ----------------------------------------------------------------------

    def try_lock(self):
        """Take the host's evacuation lock; return None, or who holds it (a dict) when busy."""
        self.ensure_directory()
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise JournalError("cannot lock %s: %s" % (self.lock_path, err.strerror))
            return self.owner() or dict(evacuation_id=None, pid=None)
        self._lock_fd = fd
        with open(self.owner_path, "w") as handle:
            json.dump(dict(evacuation_id=self.evacuation_id, pid=os.getpid(), since=utc_now()), handle)
        return None

    def held(self):
        """Whether a process holds the host's evacuation lock now (without taking it, nor naming an owner)."""
        return lock_holder(self.directory) is not None

    def owner(self):
        return _read_owner(self.directory)

    def unlock(self):
        if self._lock_fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.owner_path)
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)
        self._lock_fd = None
