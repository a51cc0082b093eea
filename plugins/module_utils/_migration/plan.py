# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""What a migration will do (MigrationPlan), and the pre-checks that decide it can (MigrationChecks).

The checks shared with the precheck module (CPU, storage, free memory) come from
_facts.prechecks; a blocker fails the task before anything changed, with every check.
"""

from __future__ import annotations

from ansible_collections.virtops.migration.plugins.module_utils._facts import prechecks
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.bindings import flags, libvirt
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import PAUSED, DomainDescription
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain_ops import state_of
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import PrecheckFailed, call, lookup
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.storage import parse_mountinfo, plan_storage
from ansible_collections.virtops.migration.plugins.module_utils._migration.ladder import Ladder
from ansible_collections.virtops.migration.plugins.module_utils._migration.request import cold_flags, live_flags, migration_params


class MigrationChecks(object):
    """The pre-checks of one migrate task, run before anything changes (and in check mode)."""

    def __init__(self, task):
        self.request = task.request
        self.src = task.src
        self.dst = task.dst
        self.src_dom = task.src_dom
        self.checks = task.checks
        self.warn = task.warn

    def _check(self, name, passed, detail):
        self.checks.append(dict(name=name, passed=passed, detail=detail))
        return passed

    def run(self, decision, src_state, dst_state):
        """Every pre-check of the decided migration; the MigrationPlan, or PrecheckFailed with every blocker."""
        req = self.request
        self._check("destination_reachable", True, "connected to %s (libvirt %s)" % (
            self.dst.uri, _version(call("reading libvirt's version on %s" % self.dst.name, self.dst.conn.getLibVersion))))
        self._check("domain_present", True, "%s on %s (%s)" % (src_state.name, self.src.name, src_state.describe()))
        xml_flags = libvirt.VIR_DOMAIN_XML_MIGRATABLE
        if not src_state.active:
            xml_flags |= libvirt.VIR_DOMAIN_XML_INACTIVE
        desc = DomainDescription.from_xml(
            call("reading the definition of %s" % src_state.name, self.src_dom.XMLDesc, xml_flags))
        blockers = []
        if decision.mode == "cold":
            if src_state.active and not src_state.persistent:
                blockers.append("the domain is transient on %s: shutting it down would delete it; "
                                "migrate it live instead" % self.src.name)
            elif src_state.state == PAUSED and not req.force:
                blockers.append("the domain is paused on %s: a paused guest cannot shut down gracefully; "
                                "set force=true to power it off" % self.src.name)
            elif src_state.active:
                self._check("shutdown", True, "graceful shutdown within %d s%s" % (
                    req.shutdown_timeout, ", then forced off" if req.force else ", else the task fails"))
        self._check_cpu(desc, blockers)
        storage = self._check_storage(desc, blockers)
        self._check_memory(desc)
        if blockers:
            for blocker in blockers:
                if not any(c["detail"] == blocker for c in self.checks):
                    self._check("blocker", False, blocker)
            raise PrecheckFailed(
                "cannot migrate %s from %s to %s: %s. Nothing was changed." % (
                    src_state.name, self.src.name, self.dst.name, "; ".join(blockers)),
                checks=self.checks, changed=False)
        return MigrationPlan(req, decision.mode, desc, storage, self._bytes_to_move(desc, storage))

    def _record(self, item, blockers):
        """Keep a shared pre-check's outcome (_facts.prechecks) in this module's checks."""
        self._check(item["name"], {"ok": True, "block": False}.get(item["verdict"]), item["detail"])
        if item["verdict"] == "block":
            blockers.append(item["detail"])
        elif item["verdict"] == "warn":
            self.warn(item["detail"])

    def _check_cpu(self, desc, blockers):
        if not self.request.cpu_check:
            self._check("cpu", None, "skipped (cpu_check=false)")
            return
        self._record(prechecks.cpu(self.dst, desc, self.src), blockers)

    def _check_storage(self, desc, blockers):
        mounts = []
        if self.src.uri.is_local:
            try:
                with open("/proc/self/mountinfo") as handle:
                    mounts = parse_mountinfo(handle.read())
            except OSError as err:
                self.warn("cannot read the mount table (%s): file systems of disks are unknown" % err)
        storage, found = prechecks.storage(self.dst, desc, mounts, self.request.copy_storage)
        for item in found:
            self._record(item, blockers)
        return storage

    def _check_memory(self, desc):
        item = prechecks.free_memory(self.dst, desc.memory_kib)
        if item["verdict"] != "skipped":
            self._record(item, [])

    def _bytes_to_move(self, desc, storage):
        total = desc.memory_kib * 1024
        for target in storage.copy_targets:
            info = lookup("reading the size of disk %s" % target, self.src_dom.blockInfo, target)
            if info:
                total += info[1]
        return total

    def resume_plan(self):
        """The plan to resume a failed post-copy migration with (live, nothing copied)."""
        src_state = state_of(self.src_dom, self.src.name)
        desc = DomainDescription.from_xml(call("reading the definition of %s" % src_state.name,
                                               self.src_dom.XMLDesc, libvirt.VIR_DOMAIN_XML_MIGRATABLE))
        storage = plan_storage(desc.disks, [], "none")
        return MigrationPlan(self.request, "live", desc, storage, desc.memory_kib * 1024)


def _version(number):
    return "%d.%d.%d" % (number // 1000000, number // 1000 % 1000, number % 1000)


class MigrationPlan(object):
    """What a migration will do: flags, parameters, disks, timeout."""

    def __init__(self, request, mode, desc, storage, bytes_to_move):
        self.request = request
        self.desc = desc
        self.storage = storage
        self.copy_targets = storage.copy_targets
        self.timeout = request.effective_timeout(bytes_to_move)
        if mode == "cold":
            self.flag_names = cold_flags(request, self.copy_targets)
            self.params = migration_params(request, self.copy_targets, offline=not self.copy_targets)
        else:
            self.flag_names = live_flags(request, self.copy_targets)
            self.params = migration_params(request, self.copy_targets)

    @property
    def flags(self):
        return flags("VIR_MIGRATE_", self.flag_names)

    def policy(self, live=True):
        """The ladder in force: the request's with the timeout; a disk copy (cold) only has the timeout."""
        if not live:
            return Ladder(timeout=self.timeout, timeout_action="abort")
        return self.request.policy.with_timeout(self.timeout)

    def as_dict(self):
        return dict(flags=list(self.flag_names), parameters=dict(self.params), copy_disks=list(self.copy_targets),
                    timeout_s=self.timeout, disks=self.storage.as_list())
