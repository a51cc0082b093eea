# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The entry point of virtops.migration.evacuate: lock, load the journal, run the evacuation, report.
"""

from __future__ import annotations

import time

from ansible_collections.virtops.migration.plugins.module_utils._evacuation.engine import Evacuation
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.record import FAILED
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.journal import (
    ABORTED,
    Journal,
    JournalError,
    JournalStore,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.libvirt_executor import LibvirtExecutor
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.report import check_mode_report
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.request import (
    EVACUATE_ARGUMENT_SPEC,
    EvacuationRequest,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import ConnectionSettings
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import (
    ParameterError,
    VirtopsError,
)
from ansible_collections.virtops.migration.plugins.module_utils._module import EntryPoint


class EvacuationFailed(VirtopsError):
    """The evacuation ended with domains not moved (failed or aborted); details hold the report."""


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
