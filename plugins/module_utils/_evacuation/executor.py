# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The evacuation's executor interface, and the handle of a move in flight.

The state machine (engine.Evacuation) talks to the hypervisors only through an Executor:
LibvirtExecutor (libvirt_executor.py) in the module, a fake in the unit tests.
"""

from __future__ import annotations

import abc
import time

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import MigrationFailed
from ansible_collections.virtops.migration.plugins.module_utils._planning.inputs import LIVE


class Executor(abc.ABC):
    """What the evacuation asks of the hypervisors; LibvirtExecutor does it, the unit tests fake it.

    Records are the journal's MoveRecords; ``where`` answers are dictionaries with ``source``
    and ``destination`` (None, or ``active``, ``state``, ``persistent``, ``postcopy_failed``),
    ``job`` (a migration job runs on the source) and ``unknown`` (why each host that could hold
    the domain and did not answer is in doubt; nothing is started or defined while it is not empty).
    A destination that goes away makes its answers unknown; it never raises through the evacuation.
    """

    @abc.abstractmethod
    def locate(self, record):
        """Where the domain of ``record`` is now, on the source and on its destination."""

    @abc.abstractmethod
    def job_active(self, record):
        """Whether a migration job of the domain still runs on the source."""

    @abc.abstractmethod
    def completed_stats(self, record):
        """The destination's statistics of the completed migration (a dict), or None."""

    @abc.abstractmethod
    def start(self, record, destination):
        """Start the move of ``record`` to ``destination`` (None: shut down in place); a MoveHandle."""

    @abc.abstractmethod
    def adopt(self, record, timeout):
        """A MoveHandle for a migration an earlier run started and libvirt still runs."""

    @abc.abstractmethod
    def progress(self, handle):
        """The progress of a move in flight (a dict), or None."""

    @abc.abstractmethod
    def abort(self, handle):
        """Abort a pre-copy migration: requested, or why not (postcopy, cold, shutdown, gone, no_job, refused)."""

    @abc.abstractmethod
    def ensure_running(self, record, handle):
        """After a failure, start a domain that ran before where it is; notes of what was done."""

    @abc.abstractmethod
    def persist_on(self, record, host):
        """Define on ``host`` the domain running there transient; None, or what went wrong."""

    @abc.abstractmethod
    def start_on(self, record, host):
        """Start a domain that ran before the evacuation on ``host`` (None: the source); notes."""

    @abc.abstractmethod
    def resume_on(self, record, host):
        """Resume the domain paused on ``host``; None, or what went wrong."""

    @abc.abstractmethod
    def can_take(self, record, host, committed_mib):
        """(whether ``host`` can take the domain as a replacement destination, why not)."""

    def close(self):
        """Release what the executor holds."""


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
