# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The evacuation's executor on libvirt: moves run the migrate engine, each in a thread of its own.

The source is the local libvirt (``uri``), destinations are reached by name. Each move opens
its own connections, so each migration climbs its own escalation ladder. LibvirtExecutor
is the executor.Executor the evacuation talks to: it keeps the connections, says where a
domain is and repairs what a move left (starts, resumes, defines); the moves themselves
run in libvirt_moves.LibvirtMoves.
"""

from __future__ import annotations

import time

from ansible_collections.virtops.migration.plugins.module_utils._evacuation.executor import (
    AdoptedHandle,
    Executor,
)
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.libvirt_moves import LibvirtMoves
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.request import ACTIVE_STATES
from ansible_collections.virtops.migration.plugins.module_utils._facts.host_facts import (
    domain_metadata,
    parse_policy,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.bindings import constant
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import open_hypervisor
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import (
    LibvirtError,
    NotFound,
    OperationInvalid,
    VirtopsError,
    call,
    lookup,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.jobstats import JobSnapshot
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain_ops import (
    persist_where_it_runs,
    start,
    state_of,
)


MIB = 1024 * 1024


class LibvirtExecutor(Executor):
    """Runs moves against libvirt: the source is local (``uri``), destinations by name."""

    def __init__(self, request, settings):
        self.request = request
        self.settings = settings
        self.source = open_hypervisor(settings.uri, settings.connect_timeout)
        self.destinations = {}
        self.unreachable = {}      # host -> why its last connection attempt or call failed
        self.moves = LibvirtMoves(request, settings, self._open, self._source_domain, self._job, self.source.name)

    def _open(self, uri):
        """A connection of its own to ``uri``, for a move's thread."""
        return open_hypervisor(uri, self.settings.connect_timeout)

    def close(self):
        self.source.close()
        for hypervisor in self.destinations.values():
            if hypervisor is not None:
                hypervisor.close()

    def _destination(self, host):
        """The main thread's connection to ``host`` (None when it cannot be reached now; why in ``unreachable``)."""
        if self.destinations.get(host) is None:
            try:
                self.destinations[host] = open_hypervisor(self.settings.remote(host), self.settings.connect_timeout)
            except VirtopsError as err:
                self.unreachable[host] = err.msg
                return None
            self.unreachable.pop(host, None)
        return self.destinations[host]

    def _lost(self, host, err):
        """A destination's connection failed: drop it (the next call reconnects), remember why."""
        hypervisor = self.destinations.pop(host, None)
        if hypervisor is not None:
            hypervisor.close()
        self.unreachable[host] = err.msg

    def _source_domain(self, record):
        return self.source.domain(record.get("uuid") or record["domain"])

    # --- where things are --------------------------------------------------------------

    def locate(self, record):
        """Where the domain is; ``unknown`` lists the hosts that could hold it and did not answer.

        Every host of ``holders`` is asked; one that did not answer, or holds the domain while
        it is not this move's destination, makes the answer incomplete: the caller then starts
        and defines nothing.
        """
        out = dict(source=None, destination=None, job=False, unknown=[])
        dom = self._source_domain(record)
        state = state_of(dom, self.source.name) if dom is not None else None
        if state is not None:
            out["source"] = _where(state)
            out["job"] = self._job(dom) is not None
        for host in holders(record, self.request.source):
            found, why = self._state_on(host, record)
            if why is not None:
                out["unknown"].append("%s did not answer: %s" % (host, why))
            elif host == record.get("destination"):
                out["destination"] = found
            elif found is not None:
                out["unknown"].append("%s holds it too (%s)" % (host, found["state"]))
        return out

    def _state_on(self, host, record):
        """(the domain's state on ``host`` or None, None) - or (None, why) when ``host`` did not answer."""
        dest = self._destination(host)
        if dest is None:
            return None, self.unreachable.get(host) or "unreachable"
        try:
            ddom = dest.domain(record.get("uuid") or record["domain"])
            dstate = state_of(ddom, host) if ddom is not None else None
        except VirtopsError as err:
            self._lost(host, err)
            return None, err.msg
        return (_where(dstate) if dstate is not None else None), None

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
        host = record.get("destination")
        dest = self._destination(host)
        if dest is None:
            return None
        try:
            dom = dest.domain(record.get("uuid") or record["domain"])
            if dom is None:
                return None
            stats = lookup("reading the completed job statistics", dom.jobStats,
                           constant("VIR_DOMAIN_JOB_STATS_COMPLETED", 1))
        except VirtopsError as err:
            # Statistics only: a destination that went away costs them, not the evacuation.
            self._lost(host, err)
            return None
        if not stats:
            return None
        snap = JobSnapshot(stats)
        return dict(downtime_ms=snap.downtime, total_ms=snap.time_elapsed, bytes_sent=snap.data_processed,
                    memory_bytes=snap.memory_total)

    # --- moves (libvirt_moves.py) -------------------------------------------------------

    def start(self, record, destination):
        return self.moves.start(record, destination)

    def progress(self, handle):
        return self.moves.progress(handle)

    def abort(self, handle):
        """Abort a pre-copy migration; say why not when it must finish instead."""
        return self.moves.abort(handle)

    def adopt(self, record, timeout):
        return AdoptedHandle(record, self, time.monotonic() + timeout)

    def ensure_running(self, record, handle):
        """After a failure: a domain that ran before is never left shut off."""
        if record.get("state") not in ACTIVE_STATES:
            return []
        where = self.locate(record)
        src, dst = where["source"], where["destination"]
        notes = []
        if where["unknown"] and not (src is not None and src["active"]):
            notes.append("left as it is: %s (nothing is started while a host that could hold it does not answer)"
                         % "; ".join(where["unknown"]))
        elif (src and src.get("postcopy_failed")) or (dst and dst.get("postcopy_failed")):
            notes.append("post-copy failed: the guest is paused on both hosts until the migration is resumed (re-run "
                         "the evacuation)")
        elif src is not None and not src["active"] and (dst is None or not dst["active"]):
            notes += self.start_on(record, None)
        elif src is None and dst is not None and not dst["active"]:
            notes += self.start_on(record, record.get("destination"))
        return notes

    def persist_on(self, record, host):
        """Define the transient domain running on ``host`` there; None, or what went wrong."""
        return self._act_on(record, host, persist_where_it_runs)

    def _act_on(self, record, host, action):
        """Do ``action(hypervisor, dom)`` to the domain on destination ``host``; None, or what went wrong."""
        hypervisor = self._destination(host)
        if hypervisor is None:
            return "%s is unreachable" % host
        try:
            dom = hypervisor.domain(record.get("uuid") or record["domain"])
            if dom is None:
                return "%s no longer holds it" % host
            action(hypervisor, dom)
        except VirtopsError as err:
            self._lost(host, err)
            return err.msg
        return None

    def start_on(self, record, host):
        """Start a domain that ran before the evacuation, on ``host`` (None: the source)."""
        hypervisor = self.source if host is None else self._destination(host)
        where = "the source" if host is None else host
        if hypervisor is None:
            return ["could not start it on %s: unreachable" % where]
        try:
            dom = hypervisor.domain(record.get("uuid") or record["domain"])
            if dom is None:
                return ["could not start it on %s: not defined there" % where]
            start(dom, record["domain"], where)
        except VirtopsError as err:
            if host is not None:
                self._lost(host, err)
            return ["could not start it on %s: %s" % (where, err.msg)]
        return ["started it on %s (it ran before the evacuation)" % where]

    def resume_on(self, record, host):
        """Resume the domain that arrived paused on ``host``; None, or what went wrong."""
        return self._act_on(record, host, lambda _hypervisor, dom: call(
            "resuming %s on %s" % (record["domain"], host), dom.resume))

    def can_take(self, record, host, committed_mib):
        dest = self._destination(host)
        if dest is None:
            return False, "unreachable"
        try:
            free = lookup("reading the free memory of %s" % host, dest.conn.getFreeMemory)
        except VirtopsError as err:
            self._lost(host, err)
            return False, "unreachable: %s" % err.msg
        need = ((record.get("memory_mib") or 0) + committed_mib) * MIB
        if free is not None and free < need:
            return False, "%d MiB free, %d MiB needed" % (free // MIB, need // MIB)
        try:
            clash = _group_clash(self._source_domain(record), dest, host)
            if clash:
                return False, clash
        except LibvirtError as err:
            # A group that cannot be read is not "no group": the host is not used rather than risk it.
            return False, "its anti-affinity could not be checked there: %s" % err.msg
        return True, None


def holders(record, source):
    """Every host beside ``source`` that could hold the domain: its destination, earlier ones, the planned one."""
    hosts = [record.get("destination")] + [h.get("destination") for h in record.get("history") or []] \
        + [record.get("planned_destination")]
    out = []
    for host in hosts:
        if host and host not in out and host != source:
            out.append(host)
    return out


def anti_affinity_group(dom):
    """The anti-affinity group of ``dom``; None when it has none (or is gone). Other libvirt errors raise."""
    if dom is None:
        return None
    try:
        metadata = domain_metadata(dom)
    except NotFound:
        return None
    return parse_policy(metadata).get("anti_affinity")


def _group_clash(source_dom, dest, host):
    """Why ``host`` (``dest``) breaks the anti-affinity of the source's domain, or None; libvirt errors raise."""
    group = anti_affinity_group(source_dom)
    if group:
        for dom in call("listing the domains of %s" % host, dest.conn.listAllDomains, 0):
            if anti_affinity_group(dom) == group:
                return "anti-affinity group %r already has %s there" % (group, dom.name())
    return None


def _where(state):
    """A DomainState as ``locate`` answers it."""
    return dict(active=state.active, state=state.state_name, persistent=state.persistent,
                postcopy_failed=state.postcopy_failed)
