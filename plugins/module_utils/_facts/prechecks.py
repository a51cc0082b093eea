# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""Every reason a migration would fail, found before anything moves.

One check is one function returning a Check (name, verdict ok/warn/block, detail). The
migrate module runs the checks that concern its one move; the precheck module runs all
of them for every domain against every candidate destination, with measured bandwidth
and dirty rates feeding the prediction.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import LibvirtError, ParameterError, call, lookup
from ansible_collections.virtops.migration.plugins.module_utils._facts.host_facts import migration_blockers, parse_capabilities
from ansible_collections.virtops.migration.plugins.module_utils._migration.ladder import QEMU_DEFAULT_DOWNTIME_MS, Ladder
from ansible_collections.virtops.migration.plugins.module_utils._option_spec import argument_spec, check_bounds
from ansible_collections.virtops.migration.plugins.module_utils._options import (
    ADDRESSES,
    BOUNDS,
    CAPACITY,
    DOMAINS,
    LADDER,
    MODE,
    STORAGE,
)
from ansible_collections.virtops.migration.plugins.module_utils._planning.prediction import predict_migration
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.storage import LOCAL, SHARED, plan_storage

OK, WARN, BLOCK, SKIPPED = "ok", "warn", "block", "skipped"
_RANK = {SKIPPED: 0, OK: 0, WARN: 1, BLOCK: 2}


def check(name, verdict, detail):
    return {"name": name, "verdict": verdict, "detail": detail}


def verdict_of(checks):
    """The worst verdict of a list of checks (ok when all passed or were skipped)."""
    worst = OK
    for item in checks:
        if _RANK[item["verdict"]] > _RANK[worst]:
            worst = item["verdict"]
    return worst


def reasons_of(checks):
    return [item["detail"] for item in checks if item["verdict"] in (WARN, BLOCK)]


def _version_tuple(text):
    return tuple(int(part) for part in text.split("."))


# --- the checks --------------------------------------------------------------------


def cpu(dst, desc, src):
    """The domain's CPU compared by the destination's own libvirt (compareHypervisorCPU)."""
    cpu_xml = desc.cpu_xml
    what = "the domain's CPU (%s)" % (desc.cpu_mode or "hypervisor default")
    if desc.cpu_mode in ("host-passthrough", "maximum", "host-model") and desc.virt_type == "kvm":
        # The guest sees (about) the source's CPU as KVM offers it, which is libvirt's
        # host-model CPU there - not the raw host CPU of the capabilities, which no
        # hypervisor offers in full.
        cpu_xml = host_model_cpu_xml(call("reading the domain capabilities of %s" % src.name,
                                          src.conn.getDomainCapabilities, None, desc.arch, desc.machine, "kvm", 0))
        what = "the CPU KVM gives the domain on %s (%s)" % (src.name, desc.cpu_mode)
    if not cpu_xml:
        return check("cpu", SKIPPED, "not checked: the definition has no CPU model")
    try:
        compatible, reason = dst.compare_cpu(cpu_xml, desc.arch, desc.machine, desc.virt_type)
    except LibvirtError as err:
        return check("cpu", WARN, "could not compare %s on %s: %s" % (what, dst.name, err.msg))
    if compatible:
        return check("cpu", OK, "%s accepted by libvirt on %s" % (what, dst.name))
    return check("cpu", BLOCK, "%s is not available on %s: %s" % (what, dst.name, reason or "incompatible"))


def host_model_cpu_xml(domain_capabilities):
    """The host-model CPU of domain capabilities as a custom CPU definition, or None."""
    mode = ET.fromstring(domain_capabilities).find("./cpu/mode[@name='host-model']")
    if mode is None or mode.get("supported") != "yes" or mode.find("./model") is None:
        return None
    cpu = ET.Element("cpu", mode="custom", match="exact")
    ET.SubElement(cpu, "model", fallback="forbid").text = mode.findtext("./model")
    if mode.find("./vendor") is not None:
        ET.SubElement(cpu, "vendor").text = mode.findtext("./vendor")
    for feature in mode.findall("./feature"):
        ET.SubElement(cpu, "feature", policy=feature.get("policy", "require"), name=feature.get("name"))
    return ET.tostring(cpu, encoding="unicode")


def machine(desc, emulator, dst_caps, dst_name):
    """Machine type, accelerator and emulator of the domain offered by the destination."""
    offered = dst_caps["guests"].get(desc.arch)
    if offered is None:
        return check("machine", BLOCK, "%s runs no %s guests" % (dst_name, desc.arch))
    problems = []
    if desc.machine and desc.machine not in offered["machines"]:
        problems.append("machine type %s is not offered by %s" % (desc.machine, dst_name))
    if desc.virt_type and desc.virt_type not in offered["domain_types"]:
        problems.append("%s guests cannot run on %s (it offers %s)" % (
            desc.virt_type, dst_name, ", ".join(offered["domain_types"]) or "none"))
    if emulator and offered["emulator"] and emulator != offered["emulator"]:
        problems.append("the domain's emulator %s is not %s's (%s)" % (emulator, dst_name, offered["emulator"]))
    if problems:
        return check("machine", BLOCK, "; ".join(problems))
    return check("machine", OK, "%s %s on %s offered by %s" % (desc.virt_type, desc.machine, desc.arch, dst_name))


def versions(src_versions, dst_versions, dst_name):
    """Migrating to an older QEMU is not supported upstream; an older libvirt is a warning."""
    src_qemu, dst_qemu = src_versions["qemu"], dst_versions["qemu"]
    if _version_tuple(dst_qemu) < _version_tuple(src_qemu):
        return check("versions", BLOCK, "%s runs QEMU %s, older than this host's %s" % (dst_name, dst_qemu, src_qemu))
    if _version_tuple(dst_versions["libvirt"]) < _version_tuple(src_versions["libvirt"]):
        return check("versions", WARN, "%s runs libvirt %s, older than this host's %s" % (
            dst_name, dst_versions["libvirt"], src_versions["libvirt"]))
    return check("versions", OK, "%s: libvirt %s, QEMU %s" % (dst_name, dst_versions["libvirt"], dst_qemu))


def devices(domain_xml, mode):
    found = migration_blockers(domain_xml)
    if not found:
        return check("devices", OK, "no device ties the domain to this host")
    if mode == "cold":
        return check("devices", WARN, "moved cold with devices that must exist on the destination: %s"
                     % ", ".join(found))
    return check("devices", BLOCK, "cannot migrate live with %s" % ", ".join(found))


def storage(dst, desc, mounts, copy_storage):
    """(StoragePlan, checks): each disk shared, copyable into a pool or volume there, or a blocker."""
    plan = plan_storage(desc.disks, mounts, copy_storage)
    found = []
    for placement in plan.placements:
        disk = placement.disk
        label = "disk %s (%s)" % (disk.target, disk.source or "empty")
        pool = None
        if placement.kind == LOCAL and copy_storage != "none" and disk.source:
            # What the destination's pool lists may be stale (a disk deleted behind libvirt's back): rescan it.
            pool = dst.refresh_pool_for_directory(os.path.dirname(disk.source))
        if placement.kind == SHARED:
            found.append(check("storage", OK, "%s: %s" % (label, placement.reason)))
        elif placement.kind != LOCAL:
            found.append(check("storage", OK, "%s: %s" % (label, placement.reason)))
        elif copy_storage == "none":
            found.append(check("storage", BLOCK, plan.blockers[plan.local.index(placement)]))
        elif dst.volume_exists(disk.source):
            plan.existing.add(disk.target)
            found.append(check("storage", OK, "%s: local, copied into the existing volume on %s" % (label, dst.name)))
        else:
            directory = os.path.dirname(disk.source)
            if pool is not None:
                found.append(check("storage", OK, "%s: local, copied; libvirt creates it in pool %s on %s" % (
                    label, pool, dst.name)))
            else:
                found.append(check("storage", BLOCK, "%s is local and must be copied, but %s has no storage pool "
                                   "for %s, so libvirt cannot create the disk there (define a directory pool for "
                                   "it on the destination)" % (label, dst.name, directory)))
    return plan, found


def free_memory(dst, memory_kib):
    free = lookup("reading free memory on %s" % dst.name, dst.conn.getFreeMemory)
    need = memory_kib * 1024
    if free is None or not need:
        return check("memory_free", SKIPPED, "free memory of %s unknown" % dst.name)
    if free >= need:
        return check("memory_free", OK, "%d MiB needed, %d MiB free on %s" % (need >> 20, free >> 20, dst.name))
    return check("memory_free", WARN, "%s has less free memory (%d MiB) than the domain has (%d MiB)" % (
        dst.name, free >> 20, need >> 20))


def memory_total(memory_kib, dst_load, dst_name):
    """A domain with more memory than the destination has at all can never run there, shut off or not."""
    total_mib = dst_load.get("memory_total_mib")
    need_mib = memory_kib // 1024
    if not total_mib or not need_mib:
        return check("memory_total", SKIPPED, "the memory of %s is unknown" % dst_name)
    if need_mib > total_mib:
        return check("memory_total", BLOCK, "the domain has %d MiB of memory, more than %s has at all (%d MiB): it "
                     "can never run there" % (need_mib, dst_name, total_mib))
    return check("memory_total", OK, "%d MiB of %d MiB on %s" % (need_mib, total_mib, dst_name))


def capacity(domain, dst_load, options, dst_name):
    """Memory and vCPUs of the domain on top of what already runs there, within the overcommit."""
    found = []
    memory_cap = dst_load["memory_total_mib"] * options["memory_overcommit"] - options["reserved_memory_mib"]
    memory_after = dst_load["memory_committed_mib"] + domain["memory_mib"]
    text = "%d MiB of %d MiB committable on %s with it" % (memory_after, memory_cap, dst_name)
    found.append(check("capacity_memory", OK if memory_after <= memory_cap else BLOCK,
                       text if memory_after <= memory_cap else "not enough memory: " + text))
    vcpu_cap = dst_load["vcpus_total"] * options["vcpu_overcommit"]
    vcpus_after = dst_load["vcpus_committed"] + domain["vcpus"]
    text = "%d of %g vCPUs committable on %s with it" % (vcpus_after, vcpu_cap, dst_name)
    found.append(check("capacity_vcpus", OK if vcpus_after <= vcpu_cap else BLOCK,
                       text if vcpus_after <= vcpu_cap else "not enough vCPUs: " + text))
    return found


def certificates(local_certs, dst_facts, dst_name, migration_address, min_days, src_name=None):
    """This host's client certificates, and the destination's QEMU server certificate for the address used.

    A certificate that is revoked (by the CRL on its host) blocks; one that does not name
    its host (``src_name``, ``dst_name``) is a warning: it was issued for another host.
    The destination's libvirt server certificate is checked for real by the TLS connection
    the pre-check opens to it (a failure blocks every pair with libvirt's reason).
    """
    found = []
    for role in ("libvirt_client", "qemu_client"):
        what = "this host's %s certificate" % role
        found.append(_certificate(local_certs.get(role), what, min_days))
        found.extend(_names_host(local_certs.get(role), what, src_name))
    if dst_facts is None:
        found.append(check("certificates", SKIPPED, "%s's QEMU server certificate not checked (give its host_info "
                           "facts in destination_facts)" % dst_name))
        return found
    server = (dst_facts.get("certificates") or {}).get("qemu_server")
    item = _certificate(server, "%s's QEMU server certificate" % dst_name, min_days)
    found.append(item)
    found.extend(_names_host(server, "%s's QEMU server certificate" % dst_name, dst_name))
    if item["verdict"] != BLOCK and migration_address:
        names = set(server.get("dns_names", [])) | set(server.get("ip_addresses", []))
        if migration_address not in names:
            found.append(check("certificates", BLOCK, "%s's QEMU server certificate does not name the migration "
                               "address %s (it names %s): the TLS migration stream would fail verification" % (
                                   dst_name, migration_address, ", ".join(sorted(names)) or "nothing")))
    return found


def _certificate(facts, what, min_days):
    if not facts or not facts.get("present"):
        return check("certificates", BLOCK, "%s is missing%s" % (what, " (%s)" % facts["path"] if facts else ""))
    if facts.get("error"):
        return check("certificates", BLOCK, "%s: %s" % (what, facts["error"]))
    if facts.get("revoked"):
        return check("certificates", BLOCK, "%s (%s, serial %s) is revoked since %s by %s: TLS peers refuse it; "
                     "issue the host new certificates (playbooks/rotate_certificates.yml) or take it out of the "
                     "fleet" % (what, facts["path"], facts.get("serial"), facts.get("revoked_on"), facts.get("crl")))
    if not facts.get("valid_now"):
        return check("certificates", BLOCK, "%s is not valid now (valid %s to %s)" % (
            what, facts["not_before"], facts["not_after"]))
    if facts["days_left"] < min_days:
        return check("certificates", WARN, "%s expires in %.1f days" % (what, facts["days_left"]))
    return check("certificates", OK, "%s valid for %.0f more days" % (what, facts["days_left"]))


def _names_host(facts, what, host):
    """A warning when a readable certificate does not name ``host`` (a name or an address) at all."""
    if not host or not facts or not facts.get("present") or facts.get("error") or "dns_names" not in facts:
        return []
    names = set(name.lower() for name in facts.get("dns_names", [])) | set(facts.get("ip_addresses", []))
    wanted = host.lower()
    if wanted in names or wanted.split(".")[0] in names:
        return []
    return [check("certificates", WARN, "%s (%s) does not name %s (it names %s): it was issued for another host, "
                  "or before the host was renamed" % (what, facts["path"], host, ", ".join(sorted(names)) or "nothing"))]


def prediction(domain, dirty_rate, bandwidth, ladder, disk_mib, mode):
    """(check, prediction dict or None) from measured bandwidth and dirty rate."""
    if mode == "cold" or domain["state"] == "shutoff":
        return check("prediction", OK, "cold move: no memory to converge"), None
    if not bandwidth:
        return check("prediction", SKIPPED, "not predicted: no measured bandwidth"), None
    # What the first pass sends: the guest's non-zero memory, else its resident memory, when known.
    memory = domain.get("memory_nonzero_mib") or domain.get("memory_resident_mib") or domain["memory_mib"]
    predicted = predict_migration(memory, dirty_rate or 0.0, bandwidth, disk_mib=disk_mib, ladder=ladder)
    basis = "%.0f MiB to send at %.1f MiB/s dirtied over %.1f MiB/s measured" % (memory, dirty_rate or 0.0, bandwidth)
    if dirty_rate is None:
        basis += " (dirty rate not measured)"
    if not predicted["converges"]:
        return check("prediction", BLOCK, "will not converge: %s; %s" % (basis, predicted["reason"])), predicted
    if predicted["escalation"]:
        return check("prediction", WARN, "converges only with %s: %s, %.1f s, %d ms downtime" % (
            predicted["escalation"], basis, predicted["seconds"], predicted["downtime_ms"])), predicted
    return check("prediction", OK, "pre-copy converges: %s, %.1f s, %d ms downtime" % (
        basis, predicted["seconds"], predicted["downtime_ms"])), predicted


def ladder_from(options):
    """The ladder the prediction climbs (validated as the migrate module validates it)."""
    return Ladder.from_params(options)


def load_of(hypervisor):
    """Capacity and commitments of a host, read through its libvirt (possibly remote)."""
    node = call("reading the node information of %s" % hypervisor.name, hypervisor.conn.getInfo)
    memory = vcpus = 0
    for dom in call("listing the domains of %s" % hypervisor.name, hypervisor.conn.listAllDomains, 0):
        info = lookup("reading a domain of %s" % hypervisor.name, dom.info)
        if info and info[0] != 5:  # not shut off
            memory += info[1] // 1024
            vcpus += info[3]
    return {"memory_total_mib": node[1], "vcpus_total": node[2], "memory_committed_mib": memory,
            "vcpus_committed": vcpus}


def versions_of(hypervisor):
    conn = hypervisor.conn
    return {"libvirt": _v(call("reading the libvirt version of %s" % hypervisor.name, conn.getLibVersion)),
            "qemu": _v(call("reading the QEMU version of %s" % hypervisor.name, conn.getVersion))}


def capabilities_of(hypervisor):
    return parse_capabilities(call("reading the capabilities of %s" % hypervisor.name, hypervisor.conn.getCapabilities))


def _v(number):
    return "%d.%d.%d" % (number // 1000000, (number // 1000) % 1000, number % 1000)


# --- the precheck module -------------------------------------------------------------

# Options of the precheck module that the checks read (see plugins/modules/precheck.py): the
# shared ones as _options declares them (copying local disks, predicting at QEMU's default
# downtime unless told otherwise), then those only the pre-check has.
PRECHECK_ARGUMENT_SPEC = argument_spec(
    MODE, STORAGE["copy_storage"].but(default="all"), CAPACITY, ADDRESSES, DOMAINS,
    LADDER["max_downtime"].but(default=QEMU_DEFAULT_DOWNTIME_MS),
    *[option for name, option in LADDER.items() if name != "max_downtime"],
    destinations=dict(type="list", elements="str", required=True),
    destination_facts=dict(type="dict", default={}),
    measure_bandwidth=dict(type="bool", default=True),
    bandwidth_port=dict(type="int", default=5201),
    bandwidth_seconds=dict(type="int", default=3),
    dirty_rate_seconds=dict(type="int", default=2),
    certificate_min_days=dict(type="int", default=14),
)


def validate_options(params):
    """The checks the argument spec cannot express; each number's range is in _options.BOUNDS."""
    if not params["destinations"]:
        raise ParameterError("destinations must name at least one candidate host")
    check_bounds(params, BOUNDS)
    return Ladder.from_params(params)
