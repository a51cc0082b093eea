# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The moves of an evacuation on libvirt: each in a thread of its own, with its own connections.

A migration runs the migrate module's engine (``_migration.task.MigrateTask``), so each climbs
its own escalation ladder; a shutdown in place asks the guest, then forces it if allowed.
``LibvirtMoves`` belongs to the LibvirtExecutor that starts it (libvirt_executor.py): it opens
connections, finds the source's domain and reads its job through that executor's callables.
"""

from __future__ import annotations

import threading
import weakref

from ansible_collections.virtops.migration.plugins.module_utils._evacuation.executor import MoveHandle
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.bounded import BoundedCalls
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import (
    PAUSED,
    PAUSED_POSTCOPY,
    RUNNING,
    RUNNING_POSTCOPY,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain_ops import shut_down, state_of
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import (
    LibvirtError,
    MigrationFailed,
    NotFound,
    OperationInvalid,
    VirtopsError,
)
from ansible_collections.virtops.migration.plugins.module_utils._migration.request import MigrationRequest
from ansible_collections.virtops.migration.plugins.module_utils._migration.task import MigrateTask
from ansible_collections.virtops.migration.plugins.module_utils._planning.inputs import (
    COLD,
    SHUTDOWN,
)


MIB = 1024 * 1024
# How long the evacuation's loop waits for one move's job statistics or abort: a move whose QEMU
# stopped answering must not hold the others (its own migrate engine gives up on it in time).
STEER_WAIT_S = 2.0


class LibvirtMoves(object):
    """Starts and watches the moves; ``connect(uri)`` opens a connection of the move's own,
    ``source_domain(record)`` and ``job(dom)`` read the source, ``source_name`` names it."""

    def __init__(self, request, settings, connect, source_domain, job, source_name):
        self.request = request
        self.settings = settings
        self.connect = connect
        self.source_domain = source_domain
        self.job = job
        self.source_name = source_name
        self._steer = weakref.WeakKeyDictionary()   # MoveHandle -> its BoundedCalls

    def _steering(self, handle):
        if handle not in self._steer:
            self._steer[handle] = BoundedCalls(STEER_WAIT_S)
        return self._steer[handle]

    def start(self, record, destination):
        handle = MoveHandle(record, destination, record["mode"])
        target = self._shutdown if record["mode"] == SHUTDOWN else self._migrate
        handle.thread = threading.Thread(target=target, args=(handle,), name="evacuate-%s" % record["domain"])
        handle.thread.daemon = True
        handle.thread.start()
        return handle

    def _migrate(self, handle):
        src = dst = None
        try:
            record = handle.record
            dest_uri = self.settings.remote(handle.destination)
            request = MigrationRequest.from_params(self.request.migrate_params(record, handle.destination), dest_uri)
            src = self.connect(self.settings.uri)
            dst = self.connect(dest_uri)
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
            src = self.connect(self.settings.uri)
            dom = src.domain(record.get("uuid") or record["domain"])
            state = state_of(dom, src.name) if dom is not None else None
            if state is None or not state.active:
                handle.result = dict(how="already shut off")
                return
            how = shut_down(dom, src.name, record["domain"], self.request.params["shutdown_timeout"],
                            self.request.params["force"])
            if how is None:
                raise MigrationFailed("%s did not shut down within %d s (shutdown_timeout); it still runs on the source "
                                      "(set force=true to power it off)" % (record["domain"],
                                                                            self.request.params["shutdown_timeout"]))
            handle.result = dict(how=how)
        except VirtopsError as err:
            handle.error = err
        finally:
            if src is not None:
                src.close()
            handle.done = True

    def progress(self, handle):
        dom = self.source_domain(handle.record)
        if dom is None:
            return None
        try:
            snap = self._steering(handle)("reading the job statistics", self.job, dom)
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
        dom = self.source_domain(handle.record)
        if dom is None:
            return "gone"
        state = state_of(dom, self.source_name)
        if state is not None and ((state.state == PAUSED and state.reason == PAUSED_POSTCOPY)
                                  or (state.state == RUNNING and state.reason == RUNNING_POSTCOPY)):
            return "postcopy"
        try:
            self._steering(handle)("aborting the migration of %s" % handle.record["domain"], dom.abortJob)
        except (NotFound, OperationInvalid):
            return "no_job"
        except LibvirtError as err:
            if "post-copy" in (err.libvirt_message or "") or "postcopy" in (err.libvirt_message or ""):
                return "postcopy"
            return "refused"
        return "requested"
