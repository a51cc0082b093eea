# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The precheck module's run: every domain of this host against every candidate destination.

It measures once what several pairs share (dirty rates of all domains in parallel; the
throughput to each destination) and opens one TLS libvirt connection per destination,
the one the migration itself would use.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ansible_collections.virtops.migration.plugins.module_utils._facts import prechecks as checks
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    ConnectionSettings,
    local_address_of,
    open_hypervisor,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import DomainDescription
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import (
    HypervisorUnreachable,
    ParameterError,
    call,
)
from ansible_collections.virtops.migration.plugins.module_utils._facts.certificates import (
    DEFAULT_CERTIFICATES,
    read_certificates,
)
from ansible_collections.virtops.migration.plugins.module_utils._facts.host_facts import domain_facts
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.bindings import libvirt
from ansible_collections.virtops.migration.plugins.module_utils._module import EntryPoint
from ansible_collections.virtops.migration.plugins.module_utils._facts.measure import (
    MeasurementFailed,
    dirty_rates,
    throughput,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.storage import parse_mountinfo
from ansible_collections.virtops.migration.plugins.module_utils._planning.spec import PRECHECK_OPTIONS
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.uri import validate_host


def run_precheck(module):
    """Entry point of the precheck module."""
    params = module.params
    checks.validate_options(params)
    settings = ConnectionSettings.from_params(params)
    destinations = []
    for name in params["destinations"]:
        uri = settings.remote(name)
        if settings.uri.is_local and local_address_of(uri.host) is not None:
            raise ParameterError("destination %s is this host: candidates must be other hypervisors" % name)
        destinations.append((name, uri))
    for host, address in params["migration_addresses"].items():
        validate_host(address, "migration address of %s" % host)
    with open("/proc/self/mountinfo") as handle:
        mounts = parse_mountinfo(handle.read())
    src = open_hypervisor(settings.uri, settings.connect_timeout)
    try:
        return _Run(module, params, src, mounts).run(destinations, settings.connect_timeout)
    finally:
        src.close()


class _Run(object):
    def __init__(self, module, params, src, mounts):
        self.module = module
        self.params = params
        self.src = src
        self.mounts = mounts
        self.ladder = checks.ladder_from(params)

    def _domains(self):
        conn = self.src.conn
        if self.params["domains"]:
            found = []
            for name in self.params["domains"]:
                dom = self.src.domain(name)
                if dom is None:
                    raise ParameterError("no domain named %r on %s" % (name, self.src.hostname))
                found.append(dom)
            return found
        return call("listing the domains of %s" % self.src.hostname, conn.listAllDomains, 0)

    def run(self, destinations, connect_timeout):
        doms = self._domains()
        facts = {dom.name(): domain_facts(dom, self.mounts) for dom in doms}
        xml = {}
        for dom in doms:
            flags = libvirt.VIR_DOMAIN_XML_MIGRATABLE
            if facts[dom.name()]["state"] == "shutoff":
                flags |= libvirt.VIR_DOMAIN_XML_INACTIVE
            xml[dom.name()] = call("reading the definition of %s" % dom.name(), dom.XMLDesc, flags)
        rates, rate_problems = {}, {}
        running = [dom for dom in doms if facts[dom.name()]["state"] == "running"]
        if running and self.params["dirty_rate_seconds"]:
            rates, rate_problems = dirty_rates(running, self.params["dirty_rate_seconds"])
        for name, problem in sorted(rate_problems.items()):
            self.module.warn("dirty rate of %s not measured: %s" % (name, problem))
        src_versions = checks.versions_of(self.src)
        local_certs = read_certificates(DEFAULT_CERTIFICATES)
        results, bandwidth, reachable = [], {}, 0
        for name, uri in destinations:
            try:
                dst = open_hypervisor(uri, connect_timeout)
            except HypervisorUnreachable as err:
                self.module.warn("%s: %s" % (name, err.msg))
                bandwidth[name] = None
                for dom in doms:
                    results.append(self._result(dom.name(), name, [checks.check("reachable", checks.BLOCK, err.msg)],
                                                None, rates.get(dom.name())))
                continue
            reachable += 1
            try:
                bandwidth[name] = self._bandwidth(name)
                results.extend(self._pairs(doms, facts, xml, rates, dst, name, src_versions,
                                           local_certs, bandwidth[name]))
            finally:
                dst.close()
        if not reachable:
            reasons = sorted({item["reasons"][0] for item in results})
            raise HypervisorUnreachable("no candidate destination could be reached: %s" % "; ".join(reasons),
                                        results=results)
        return {
            "changed": False,
            "source": self.src.hostname,
            "results": results,
            "bandwidth": bandwidth,
            "dirty_rates": {name: rates.get(name) for name in sorted(facts)},
            "summary": _summary(results),
            "for_plan": [dict((key, item[key]) for key in PRECHECK_OPTIONS) for item in results],
        }

    def _bandwidth(self, name):
        if not self.params["measure_bandwidth"]:
            return None
        address = self.params["migration_addresses"].get(name, name)
        try:
            measured = throughput(self.module.module.run_command, address, self.params["bandwidth_port"],
                                  self.params["bandwidth_seconds"])
        except MeasurementFailed as err:
            self.module.warn("bandwidth to %s not measured: %s" % (name, err.msg))
            return None
        return measured["mib_s"]

    def _pairs(self, doms, facts, xml, rates, dst, name, src_versions, local_certs, bandwidth):
        dst_caps = checks.capabilities_of(dst)
        dst_versions = checks.versions_of(dst)
        load = checks.load_of(dst)
        dst_facts = self.params["destination_facts"].get(name)
        address = self.params["migration_addresses"].get(name)
        found = []
        for dom in doms:
            domain = facts[dom.name()]
            mode = self.params["mode"]
            if mode == "auto":
                mode = "live" if domain["state"] in ("running", "paused") else "cold"
            desc = DomainDescription.from_xml(xml[dom.name()])
            emulator = ET.fromstring(xml[dom.name()]).findtext("./devices/emulator")
            plan, storage_checks = checks.storage(dst, desc, self.mounts, self.params["copy_storage"])
            items = [
                checks.check("reachable", checks.OK, "connected to %s over %s" % (name, dst.uri)),
                checks.cpu(dst, desc, self.src),
                checks.machine(desc, emulator, dst_caps, name),
                checks.versions(src_versions, dst_versions, name),
                checks.devices(xml[dom.name()], mode),
            ] + storage_checks + [checks.memory_total(desc.memory_kib, load, name),
                                  checks.free_memory(dst, desc.memory_kib)]
            if domain["state"] != "shutoff":
                items += checks.capacity(domain, load, self.params, name)
            items += checks.certificates(local_certs, dst_facts, name, address, self.params["certificate_min_days"],
                                         src_name=self.src.hostname)
            disk_mib = domain["local_disk_bytes"] / 1048576.0 if plan.copy_targets else 0.0
            predicted_check, predicted = checks.prediction(domain, rates.get(dom.name()), bandwidth, self.ladder,
                                                           disk_mib, mode)
            items.append(predicted_check)
            found.append(self._result(dom.name(), name, items, predicted, rates.get(dom.name()), mode))
        return found

    def _result(self, domain, destination, items, predicted, dirty_rate, mode=None):
        return {
            "domain": domain,
            "source": self.src.hostname,
            "destination": destination,
            "mode": mode,
            "verdict": checks.verdict_of(items),
            "reasons": checks.reasons_of(items),
            "checks": items,
            "dirty_rate_mib_s": dirty_rate,
            "predicted_seconds": predicted["seconds"] if predicted else None,
            "predicted_downtime_ms": predicted["downtime_ms"] if predicted else None,
            "converges": predicted["converges"] if predicted else None,
            "escalation": predicted["escalation"] if predicted else None,
        }


def _summary(results):
    lines = ["%-20s %-10s %-6s %9s  %s" % ("domain", "to", "verdict", "predicted", "reasons")]
    for item in results:
        seconds = "%.1f s" % item["predicted_seconds"] if item["predicted_seconds"] is not None else "-"
        reasons = "; ".join(item["reasons"]) or "-"
        lines.append("%-20s %-10s %-6s %9s  %s" % (item["domain"], item["destination"], item["verdict"], seconds, reasons))
    return lines


# The precheck module: its entry function and the argument spec it runs with.
PRECHECK_MODULE = EntryPoint(run_precheck, checks.PRECHECK_ARGUMENT_SPEC)
