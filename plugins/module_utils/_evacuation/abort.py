# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The evacuation_abort module: ask a running evacuation to abort, and wait until it has stopped.

The protocol is the journal store's: an abort request file beside the journal, which the
evacuation checks about once a second; the journal's phase turns ``finished`` when it has
stopped. A journal still ``running`` whose lock no process holds belongs to a run that was
killed: the request then stays for the next run, which honours it at once.
"""

from __future__ import annotations

import time

from ansible_collections.virtops.migration.plugins.module_utils._evacuation.journal import (
    FINISHED,
    RUNNING,
    JournalError,
    JournalStore,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import ParameterError, VirtopsError
from ansible_collections.virtops.migration.plugins.module_utils._module import EntryPoint
from ansible_collections.virtops.migration.plugins.module_utils._option_spec import argument_spec
from ansible_collections.virtops.migration.plugins.module_utils._options import EVACUATION_ID, JOURNAL, REASON

MAX_TIMEOUT = 86400
POLL_SECONDS = 1.0


def _state(store):
    journal = store.load()
    if journal is None:
        return None, None, None
    return journal.data.get("phase"), journal.data.get("result"), journal.data.get("progress")


def abort_evacuation(store, reason, timeout, check_mode=False, clock=time.monotonic, sleep=time.sleep):
    """Request the abort and wait for the evacuation to stop; the module's result."""
    phase, result, progress = _state(store)
    base = dict(evacuation_id=store.evacuation_id, abort_file=store.abort_path)
    if phase != RUNNING:
        return dict(base, changed=False, requested=False, stopped=phase == FINISHED, phase=phase, result=result,
                    progress=progress, lines=["No evacuation %s is running on this host (%s): nothing to abort." % (
                        store.evacuation_id, "no journal" if phase is None else "its journal says %s" % phase)])
    if check_mode:
        return dict(base, changed=True, requested=False, stopped=False, phase=phase, result=result, progress=progress,
                    lines=["Would ask evacuation %s to abort." % store.evacuation_id])
    store.request_abort(reason)
    started = clock()
    while True:
        running_process = store.held()
        phase, result, progress = _state(store)
        waited = round(clock() - started, 1)
        if phase != RUNNING:
            lines = [progress or "The journal of evacuation %s is gone." % store.evacuation_id,
                     "Evacuation %s stopped after %s s: in-flight pre-copy moves were aborted (those domains still run "
                     "on this host), post-copy and cold moves finished, nothing new started." % (
                         store.evacuation_id, waited)]
            return dict(base, changed=True, requested=True, stopped=True, phase=phase, result=result,
                        progress=progress, waited_seconds=waited, lines=lines)
        if not running_process:
            lines = [progress, "No process runs evacuation %s (its run was interrupted): the abort request stays in %s, "
                               "and the next run of this evacuation honours it at once, moving nothing new (remove "
                               "the file to cancel it)." % (store.evacuation_id, store.abort_path)]
            return dict(base, changed=True, requested=True, stopped=False, phase=phase, result=result,
                        progress=progress, waited_seconds=waited, lines=lines)
        if waited >= timeout:
            lines = [progress, "Evacuation %s did not stop within %d s (a post-copy or cold move may still be "
                               "finishing): the abort request stays in %s and is honoured as soon as it can be." % (
                                   store.evacuation_id, timeout, store.abort_path)]
            return dict(base, changed=True, requested=True, stopped=False, phase=phase, result=result,
                        progress=progress, waited_seconds=waited, lines=lines)
        sleep(POLL_SECONDS)


def run_evacuation_abort(module):
    params = module.params
    if not 0 <= params["wait_timeout"] <= MAX_TIMEOUT:
        raise ParameterError("wait_timeout must be between 0 and %d seconds, not %d" % (MAX_TIMEOUT, params["wait_timeout"]))
    try:
        store = JournalStore(params["journal_dir"], params["evacuation_id"])
    except JournalError as err:
        raise ParameterError(str(err)) from None
    try:
        return abort_evacuation(store, params["reason"] or "", params["wait_timeout"], module.check_mode)
    except (JournalError, OSError) as err:
        raise VirtopsError("cannot abort evacuation %s: %s" % (params["evacuation_id"], err)) from None


EVACUATION_ABORT_ARGUMENT_SPEC = argument_spec(
    EVACUATION_ID, JOURNAL, REASON,
    wait_timeout=dict(type="int", default=900),
)

# On the source host, from files alone: no libvirt connection.
EVACUATION_ABORT_MODULE = EntryPoint(run_evacuation_abort, EVACUATION_ABORT_ARGUMENT_SPEC, connection=False)
