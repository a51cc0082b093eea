# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The facts a planner needs about one hypervisor and its domains.

The parsing is plain Python over libvirt's XML and the host's files, so that unit tests
call it directly; gather() is the one function that asks an open Hypervisor. The shape
of the result is the input contract of evacuation_plan (``hosts`` option). The inventory's
labels (labels.py), the certificates (certificates.py) and a guest's memory use (memory.py)
have modules of their own; this one puts their facts together with the rest.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET

from ansible_collections.virtops.migration.plugins.module_utils._facts.certificates import DEFAULT_CERTIFICATES, read_certificates
from ansible_collections.virtops.migration.plugins.module_utils._facts.labels import (
    LABEL_BOUNDS,
    LABEL_KEYS,
    check_inventory_labels,
    inventory_labels_for,
    merge_labels,
)
from ansible_collections.virtops.migration.plugins.module_utils._facts.maintenance import read_marker
from ansible_collections.virtops.migration.plugins.module_utils._facts.memory import guest_memory_use
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import ConnectionSettings, open_hypervisor
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import DomainDescription, DomainState
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import LibvirtError, NotFound, call
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.bindings import constant
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.storage import LOCAL, parse_mountinfo, plan_storage
from ansible_collections.virtops.migration.plugins.module_utils._module import EntryPoint

# Where a domain's migration policy lives in its libvirt metadata:
#   <metadata><vo:policy xmlns:vo="urn:virtops:migration:1">
#     <vo:anti_affinity>db</vo:anti_affinity><vo:do_not_migrate>skip</vo:do_not_migrate>
#     <vo:priority>10</vo:priority><vo:max_downtime>200</vo:max_downtime>
#   </vo:policy></metadata>
METADATA_NS = "urn:virtops:migration:1"

# Devices that tie a guest to its host: libvirt refuses (or QEMU cannot) migrate them live.
_BLOCKING_DEVICES = (
    ("./devices/hostdev", "host device passthrough (hostdev)"),
    ("./devices/filesystem[@accessmode='passthrough']", "passthrough filesystem"),
    ("./devices/filesystem/driver[@type='virtiofs']", "virtiofs filesystem"),
    ("./devices/shmem", "shared memory device (ivshmem)"),
    ("./devices/serial[@type='dev']", "serial port on a host device"),
    ("./devices/parallel[@type='dev']", "parallel port on a host device"),
    ("./devices/smartcard[@mode='host']", "host smartcard"),
)


def parse_capabilities(text):
    """Host CPU, NUMA-free totals and the machine types and accelerators per architecture."""
    root = ET.fromstring(text)
    cpu = root.find("./host/cpu")
    guests = {}
    for guest in root.findall("./guest"):
        arch = guest.find("./arch")
        if arch is None or guest.findtext("./os_type") != "hvm":
            continue
        entry = guests.setdefault(arch.get("name"), {"machines": set(), "domain_types": set(), "emulator": None})
        entry["emulator"] = entry["emulator"] or arch.findtext("./emulator")
        for node in arch.findall("./machine") + arch.findall("./domain/machine"):
            if node.text:
                entry["machines"].add(node.text.strip())
            if node.get("canonical"):
                entry["machines"].add(node.get("canonical"))
        for domain in arch.findall("./domain"):
            entry["domain_types"].add(domain.get("type"))
    return {
        "arch": cpu.findtext("./arch") if cpu is not None else None,
        "model": cpu.findtext("./model") if cpu is not None else None,
        "vendor": cpu.findtext("./vendor") if cpu is not None else None,
        "features": sorted(f.get("name") for f in cpu.findall("./feature")) if cpu is not None else [],
        "host_uuid": (root.findtext("./host/uuid") or "").strip(),
        "guests": {
            arch: {"machines": sorted(e["machines"]), "domain_types": sorted(e["domain_types"]), "emulator": e["emulator"]}
            for arch, e in guests.items()
        },
    }


def parse_host_model(text):
    """The CPU libvirt offers as host-model, from domain capabilities XML (None when not supported)."""
    root = ET.fromstring(text)
    mode = root.find("./cpu/mode[@name='host-model']")
    if mode is None or mode.get("supported") != "yes":
        return None
    model = mode.find("./model")
    return {
        "model": model.text if model is not None else None,
        "features": sorted("%s%s" % ("" if f.get("policy") != "disable" else "-", f.get("name"))
                           for f in mode.findall("./feature")),
    }


def parse_policy(metadata_xml):
    """Labels from the domain's virtops metadata element (as libvirt returns it).

    Numbers (priority, max_downtime) are read as whole numbers; text that is not one is
    kept as it is, for merge_labels to report.
    """
    labels = dict.fromkeys(LABEL_KEYS)
    if not metadata_xml:
        return labels
    root = ET.fromstring(metadata_xml)
    for key in labels:
        node = root.find("{%s}%s" % (METADATA_NS, key))
        if node is None:
            node = root.find(key)
        text = (node.text or "").strip() if node is not None else ""
        if text:
            labels[key] = int(text) if key in LABEL_BOUNDS and re.match(r"^-?[0-9]+$", text) else text
    return labels


def migration_blockers(domain_xml):
    """Reasons the domain cannot migrate live, from its XML (empty when it can)."""
    root = ET.fromstring(domain_xml)
    found = []
    for path, reason in _BLOCKING_DEVICES:
        if root.find(path) is not None:
            found.append(reason)
    return found


def parse_qemu_conf(text):
    """The settings of qemu.conf that matter for migration, as strings (uncommented lines only)."""
    wanted = ("migration_address", "migration_host", "migration_port_min", "migration_port_max",
              "migrate_tls_force", "default_tls_x509_verify", "migrate_tls_x509_verify", "default_tls_x509_cert_dir")
    settings = {}
    for line in text.splitlines():
        match = re.match(r"^\s*([a-z_0-9]+)\s*=\s*(.*?)\s*$", line)
        if match and match.group(1) in wanted:
            settings[match.group(1)] = match.group(2).strip('"')
    return settings


def _read_text(path):
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def domain_facts(dom, mounts, inventory_labels=None):
    """Facts about one domain, in the evacuation planner's shape, plus what precheck needs."""
    name = dom.name()
    state, reason = call("reading the state of %s" % name, dom.state)
    info = call("reading %s" % name, dom.info)
    persistent = bool(call("reading whether %s is persistent" % name, dom.isPersistent))
    status = DomainState(name, dom.UUIDString(), state, reason, persistent)
    xml = call("reading the definition of %s" % name, dom.XMLDesc, 0)
    description = DomainDescription.from_xml(xml)
    storage = plan_storage(description.disks, mounts, "none")
    local_bytes = 0
    for placement in storage.placements:
        if placement.kind == LOCAL:
            # allocation is what a copy moves for a sparse or qcow2 image (libvirt reads it
            # from the image when the domain is shut off).
            local_bytes += call("reading the size of %s's disk %s" % (name, placement.disk.target),
                                dom.blockInfo, placement.disk.target)[1]
    use = guest_memory_use(name, info[1] // 1024) if status.active else (None, None)
    metadata = domain_metadata(dom)
    labels, sources, problems = merge_labels(parse_policy(metadata), inventory_labels)
    return {
        "name": name,
        "uuid": status.uuid,
        "state": status.state_name,
        "persistent": persistent,
        "autostart": bool(call("reading autostart of %s" % name, dom.autostart)) if persistent else False,
        "memory_mib": info[1] // 1024,
        "memory_resident_mib": use[0],
        "memory_nonzero_mib": use[1],
        "vcpus": info[3],
        "virt_type": description.virt_type,
        "arch": description.arch,
        "machine": description.machine,
        "cpu": {"mode": description.cpu_mode, "xml": description.cpu_xml},
        "disks": storage.as_list(),
        "shared_storage": all(p.kind != LOCAL for p in storage.placements),
        "local_disk_bytes": local_bytes,
        "blockers": migration_blockers(xml),
        "labels": labels,
        "label_sources": sources,
        "label_problems": problems,
        "dirty_rate_mib_s": None,
    }


def domain_metadata(dom):
    """The domain's virtops metadata element, or None when it has none."""
    try:
        return call("reading the migration policy of %s" % dom.name(), dom.metadata,
                    constant("VIR_DOMAIN_METADATA_ELEMENT", 2), METADATA_NS, 0)
    except LibvirtError as err:
        if err.code == constant("VIR_ERR_NO_DOMAIN_METADATA", 80):
            return None
        raise


def gather(hypervisor, reserved_memory_mib=0, inventory_labels=None, certificate_paths=None,
           qemu_conf_path="/etc/libvirt/qemu.conf", mountinfo_path="/proc/self/mountinfo"):
    """Every fact about the host ``hypervisor`` is connected to (run on that host)."""
    conn = hypervisor.conn
    caps = parse_capabilities(call("reading the capabilities of %s" % hypervisor.name, conn.getCapabilities))
    node = call("reading the node information of %s" % hypervisor.name, conn.getInfo)
    memory_total_mib = node[1]
    arch = caps["arch"]
    kvm = "kvm" in caps["guests"].get(arch, {}).get("domain_types", [])
    host_model = None
    if kvm:
        host_model = parse_host_model(call("reading the domain capabilities of %s" % hypervisor.name,
                                           conn.getDomainCapabilities, None, arch, None, "kvm", 0))
    mounts = parse_mountinfo(_read_text(mountinfo_path) or "")
    domains = []
    for dom in call("listing the domains of %s" % hypervisor.name, conn.listAllDomains, 0):
        try:
            domains.append(domain_facts(dom, mounts, inventory_labels_for(dom.name(), inventory_labels)))
        except NotFound:
            # Migrated away or undefined while we read it: it is no longer this host's.
            continue
    domains.sort(key=lambda d: d["name"])
    committed = sum(d["memory_mib"] for d in domains if d["state"] != "shutoff")
    qemu_conf = parse_qemu_conf(_read_text(qemu_conf_path) or "")
    maintenance = read_marker()
    return {
        "hostname": hypervisor.hostname,
        "host_uuid": caps["host_uuid"],
        "cpu": {
            "arch": arch, "model": caps["model"], "vendor": caps["vendor"], "features": caps["features"],
            "host_model": host_model,
        },
        "memory_total_mib": memory_total_mib,
        "memory_committable_mib": max(memory_total_mib - reserved_memory_mib, 0),
        "memory_committed_mib": committed,
        "vcpus_total": node[2],
        "vcpus_committed": sum(d["vcpus"] for d in domains if d["state"] != "shutoff"),
        "libvirt_version": _version(call("reading the libvirt version", conn.getLibVersion)),
        "qemu_version": _version(call("reading the QEMU version", conn.getVersion)),
        "kvm": kvm and os.path.exists("/dev/kvm"),
        "guests": caps["guests"],
        "certificates": read_certificates(certificate_paths or DEFAULT_CERTIFICATES),
        "migration": qemu_conf,
        "maintenance": maintenance is not None,
        "maintenance_reason": maintenance or None,
        "domains": domains,
    }


# The options of the host_info module (beside the common connection options).
HOST_INFO_ARGUMENT_SPEC = dict(
    reserved_memory_mib=dict(type="int", default=0),
    labels=dict(type="dict", default={}),
    certificates=dict(type="dict", default=None),
)


def run_host_info(module):
    """Entry point of the host_info module."""
    params = module.params
    check_inventory_labels(params["labels"])
    settings = ConnectionSettings.from_params(params)
    hypervisor = open_hypervisor(settings.uri, settings.connect_timeout)
    try:
        facts = gather(hypervisor, params["reserved_memory_mib"], params["labels"], params["certificates"])
    finally:
        hypervisor.close()
    return {"changed": False, "host_info": facts}


def _version(number):
    return "%d.%d.%d" % (number // 1000000, (number // 1000) % 1000, number % 1000)


# The host_info module: its entry function and the argument spec it runs with.
HOST_INFO_MODULE = EntryPoint(run_host_info, HOST_INFO_ARGUMENT_SPEC)
