# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""A cold migration: shut the domain down (gracefully), move its definition and local disks, start it again.

ColdMigration works on a MigrateTask through its public interface (see live.py).
"""

from __future__ import annotations

import time

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.bindings import libvirt
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import PAUSED
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain_ops import (
    shut_down,
    start,
    state_of,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import (
    LibvirtError,
    MigrationFailed,
    call,
    lookup,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.jobstats import summarize
from ansible_collections.virtops.migration.plugins.module_utils._migration.escalation import EscalationController
from ansible_collections.virtops.migration.plugins.module_utils._migration.live import JobRunner


class ColdMigration(object):
    """Shut down (gracefully), move the definition (copying local disks), start again."""

    def __init__(self, task, plan, src_state):
        self.task = task
        self.plan = plan
        self.src_state = src_state
        self.ran_before = src_state.active

    def run(self):
        task = self.task
        timings = {}
        out = dict(escalations=[], completed_by=None)
        shutdown = "not needed (shut off)"
        if self.ran_before:
            started = time.monotonic()
            shutdown = self._shutdown()
            timings["shutdown_s"] = round(time.monotonic() - started, 3)
        started = time.monotonic()
        runner = None
        definition = None
        if self.plan.copy_targets:
            definition = task.persistent_definition(self.src_state)
            runner = self._move_with_disks()
        else:
            self._move_definition()
        timings["move_s"] = round(time.monotonic() - started, 3)
        task.dst_dom = task.dst.domain(task.src_dom.UUIDString())
        if task.dst_dom is None:
            where, where_text = task.where_now()
            raise MigrationFailed("the cold migration reported success but %s does not hold the domain; where it "
                                  "is: %s" % (task.dst.name, where_text), changed=True, where=where)
        if definition is not None:
            # Before it is settled there: stopping a transient domain would remove it.
            task.persist_on_destination(definition, "the cold migration")
        started = time.monotonic()
        self._settle_on_destination()
        timings["start_s"] = round(time.monotonic() - started, 3)
        if runner is not None:
            completed = lookup("reading the completed job statistics", task.dst_dom.jobStats,
                               libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
            out.update(summarize(completed, runner.last))
        else:
            out.update(summarize(None, None))
        out["timings"].update(timings)
        out["timings"]["module_s"] = round(time.monotonic() - task.started, 3)
        out["cold"] = dict(shutdown=shutdown, started_on_destination=self.ran_before,
                           copied_disks=list(self.plan.copy_targets))
        return out

    def _shutdown(self):
        task, req = self.task, self.task.request
        dom = task.src_dom
        # A paused guest cannot shut down gracefully: only force powers it off.
        paused = state_of(dom, task.src.name).state == PAUSED
        how = shut_down(dom, task.src.name, req.name, req.shutdown_timeout, req.force, graceful=not paused)
        if how is None:
            where, where_text = task.where_now()
            raise MigrationFailed(
                "%s did not shut down within %d s (shutdown_timeout) on %s; nothing was moved. The shutdown request "
                "may still take effect. Set force=true to power it off after the timeout, or a longer "
                "shutdown_timeout. Where the domain is now: %s." % (
                    req.name, req.shutdown_timeout, task.src.name, where_text),
                changed=True, where=where)
        return how

    def _restore_source(self, error, what):
        """The move failed: bring the domain back up on the source if it ran before.

        Unless the destination holds the domain: then the migration got far enough for the
        destination's copy (paused, with the disks it received) to be the one that counts, or
        cannot be ruled out. Its disks are kept and nothing is started on the source.
        """
        task = self.task
        notes = []
        src_state = state_of(task.src_dom, task.src.name)
        if src_state is not None and src_state.active and self.plan.copy_targets:
            call("stopping the paused copy on %s" % task.src.name, task.src_dom.destroy)
        held = self._held_by_destination()
        if held is not None:
            notes.append("%s holds the domain (%s): the disks copied there are kept and it is not started on %s; "
                         "re-run to finish the move" % (task.dst.name, held, task.src.name))
        else:
            if self.ran_before and src_state is not None:
                try:
                    start(task.src_dom, task.request.name, task.src.name)
                    notes.append("started it again on %s" % task.src.name)
                except LibvirtError as err:
                    notes.append("could not start it again on %s: %s" % (task.src.name, err.msg))
            notes += self._remove_partial_copies()
        where, where_text = task.where_now()
        msg = "cold migration of %s from %s to %s failed while %s: %s. %sWhere the domain is now: %s." % (
            task.request.name, task.src.name, task.dst.name, what, error.msg,
            ("; ".join(notes) + ". ") if notes else "", where_text)
        raise MigrationFailed(msg, changed=self.ran_before, where=where)

    def _held_by_destination(self):
        """How the destination holds the domain after a failed move (None: it does not hold it at all)."""
        task = self.task
        try:
            dom = task.dst.domain(task.src_dom.UUIDString())
            state = state_of(dom, task.dst.name)
        except LibvirtError as err:
            return "unknown: %s" % err.msg
        if state is None:
            return None
        return state.state_name

    def _remove_partial_copies(self):
        task = self.task
        notes = []
        for placement in self.plan.storage.local:
            disk = placement.disk
            if disk.target not in self.plan.copy_targets or disk.target in self.plan.storage.existing:
                continue
            vol = lookup("looking up %s on %s" % (disk.source, task.dst.name),
                         task.dst.conn.storageVolLookupByPath, disk.source)
            if vol is None:
                continue
            try:
                call("deleting the partial copy %s on %s" % (disk.source, task.dst.name), vol.delete, 0)
                notes.append("deleted the partial copy of %s on %s" % (disk.source, task.dst.name))
            except LibvirtError as err:
                notes.append("the partial copy %s remains on %s (%s)" % (disk.source, task.dst.name, err.msg))
        return notes

    def _move_definition(self):
        task = self.task
        try:
            call("moving the definition to %s" % task.dst.name, task.src_dom.migrateToURI3, str(task.dst.uri),
                 self.plan.params, self.plan.flags)
        except LibvirtError as err:
            self._restore_source(err, "moving the definition (offline migration)")

    def _move_with_disks(self):
        task = self.task
        try:
            call("starting %s paused to copy its disks" % task.request.name, task.src_dom.createWithFlags,
                 libvirt.VIR_DOMAIN_START_PAUSED)
        except LibvirtError as err:
            self._restore_source(err, "starting it paused on the source to copy its disks")
        controller = EscalationController(self.plan.policy(live=False))
        runner = JobRunner(task, task.src_dom, str(task.dst.uri), self.plan.params, self.plan.flags, controller)
        error = runner.run()
        if error is not None:
            self._restore_source(error, "copying its disks")
        return runner

    def _settle_on_destination(self):
        """Start it (or leave it off) on the destination, as it was on the source."""
        task = self.task
        state = state_of(task.dst_dom, task.dst.name)
        try:
            if self.ran_before:
                if state.state == PAUSED:
                    call("resuming %s on %s" % (task.request.name, task.dst.name), task.dst_dom.resume)
                elif not state.active:
                    start(task.dst_dom, task.request.name, task.dst.name)
            elif state.active:
                call("stopping the paused copy on %s" % task.dst.name, task.dst_dom.destroy)
        except LibvirtError as err:
            where, where_text = task.where_now()
            raise MigrationFailed(
                "%s was moved to %s (defined there, removed from %s) but could not be %s there: %s. Where the "
                "domain is now: %s." % (task.request.name, task.dst.name, task.src.name,
                                        "started" if self.ran_before else "stopped", err.msg, where_text),
                changed=True, where=where) from None
