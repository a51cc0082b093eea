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
of the result is the input contract of evacuation_plan (``hosts`` option).
"""

from __future__ import annotations

import datetime
import fnmatch
import os
import random
import re
import xml.etree.ElementTree as ET

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import ConnectionSettings, open_hypervisor
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import DomainDescription, DomainState
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import LibvirtError, NotFound, ParameterError, call
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.bindings import constant
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.storage import LOCAL, parse_mountinfo, plan_storage
from ansible_collections.virtops.migration.plugins.module_utils._module import EntryPoint
from ansible_collections.virtops.migration.plugins.module_utils._options import DO_NOT_MIGRATE_POLICIES

try:
    from cryptography import x509
    from cryptography.x509.oid import ExtensionOID, NameOID
except ImportError:  # the certificate facts say so instead
    x509 = None

# Where a domain's migration policy lives in its libvirt metadata:
#   <metadata><vo:policy xmlns:vo="urn:virtops:migration:1">
#     <vo:anti_affinity>db</vo:anti_affinity><vo:do_not_migrate>skip</vo:do_not_migrate>
#   </vo:policy></metadata>
METADATA_NS = "urn:virtops:migration:1"

# Where hosts keep the marker that takes them out of placement (evacuate_host.yml writes it).
MAINTENANCE_FILE = "/var/lib/virtops-migration/maintenance"

# Certificates of libvirt's TLS transport and of QEMU's native TLS, Debian/RHEL paths.
DEFAULT_CERTIFICATES = {
    "ca": "/etc/pki/CA/cacert.pem",
    "libvirt_server": "/etc/pki/libvirt/servercert.pem",
    "libvirt_client": "/etc/pki/libvirt/clientcert.pem",
    "qemu_server": "/etc/pki/qemu/server-cert.pem",
    "qemu_client": "/etc/pki/qemu/client-cert.pem",
}

# Revocation lists the tls role installs, where libvirt (for its own certificates, as
# server and client) and QEMU (tls-creds-x509's ca-crl.pem) read them; which certificate
# roles each one covers.
DEFAULT_CRLS = {
    "libvirt": "/etc/pki/CA/cacrl.pem",
    "qemu": "/etc/pki/qemu/ca-crl.pem",
}
CRL_OF_ROLE = {
    "libvirt_server": "libvirt",
    "libvirt_client": "libvirt",
    "qemu_server": "qemu",
    "qemu_client": "qemu",
}

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
    """Labels from the domain's virtops metadata element (as libvirt returns it)."""
    labels = {"anti_affinity": None, "do_not_migrate": None}
    if not metadata_xml:
        return labels
    root = ET.fromstring(metadata_xml)
    for key in labels:
        node = root.find("{%s}%s" % (METADATA_NS, key))
        if node is None:
            node = root.find(key)
        if node is not None and (node.text or "").strip():
            labels[key] = node.text.strip()
    return labels


GLOB_CHARACTERS = frozenset("*?[")


def inventory_labels_for(name, inventory_labels):
    """The inventory's labels of domain ``name``: its own entry, else the first pattern that matches it.

    Keys with ``*``, ``?`` or ``[`` are shell-style patterns (``db-*``), tried in the order given.
    """
    inventory_labels = inventory_labels or {}
    if name in inventory_labels:
        return inventory_labels[name]
    for key, labels in inventory_labels.items():
        if GLOB_CHARACTERS & set(key) and fnmatch.fnmatchcase(name, key):
            return labels
    return None


def check_inventory_labels(inventory_labels):
    """Refuse inventory labels the planner could not use, naming the domain (or pattern) and the key."""
    for key, labels in inventory_labels.items():
        if not isinstance(labels, dict) or set(labels) - {"anti_affinity", "do_not_migrate"}:
            raise ParameterError("labels of %s must be a dictionary with the keys anti_affinity and do_not_migrate, "
                                 "not %r" % (key, labels))
        group = labels.get("anti_affinity")
        if group is not None and (not isinstance(group, str) or not group.strip()):
            raise ParameterError("labels of %s: anti_affinity must be a group name (a non-empty string) or null, "
                                 "not %r" % (key, group))
        policy = labels.get("do_not_migrate")
        if policy is not None and policy is not True and policy not in DO_NOT_MIGRATE_POLICIES:
            raise ParameterError("labels of %s: do_not_migrate must be null, true or one of %s, not %r"
                                 % (key, ", ".join(DO_NOT_MIGRATE_POLICIES), policy))


def merge_labels(from_metadata, from_inventory):
    """Inventory labels win over metadata; an unknown do-not-migrate policy is an error in the facts."""
    labels = dict(from_metadata)
    labels.update({k: v for k, v in (from_inventory or {}).items() if v is not None})
    problems = []
    if labels.get("do_not_migrate") not in (None, True) + DO_NOT_MIGRATE_POLICIES:
        problems.append("unknown do_not_migrate policy %r (one of %s)" % (
            labels["do_not_migrate"], ", ".join(DO_NOT_MIGRATE_POLICIES)))
    return labels, problems


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


def certificate_facts(pem, now=None):
    """Subject, SAN names and addresses, issuer and validity of a PEM certificate."""
    if x509 is None:
        return {"error": "python cryptography is not installed on this host: certificates not inspected"}
    cert = x509.load_pem_x509_certificate(pem)
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
        names = san.get_values_for_type(x509.DNSName)
        addresses = [str(a) for a in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        names, addresses = [], []
    not_after = _utc(cert, "not_valid_after")
    not_before = _utc(cert, "not_valid_before")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    common_names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return {
        "subject_cn": common_names[0].value if common_names else None,
        "serial": format(cert.serial_number, "x"),
        "issuer": cert.issuer.rfc4514_string(),
        "dns_names": names,
        "ip_addresses": addresses,
        "not_before": not_before.isoformat(),
        "not_after": not_after.isoformat(),
        "days_left": round((not_after - now).total_seconds() / 86400.0, 1),
        "valid_now": not_before <= now <= not_after,
    }


def crl_facts(pem):
    """Issuer, next update and revoked serials (hex, with the revocation date) of a PEM CRL."""
    if x509 is None:
        return {"error": "python cryptography is not installed on this host: revocation not checked"}
    crl = x509.load_pem_x509_crl(pem)
    next_update = _utc(crl, "next_update")
    return {
        "issuer": crl.issuer.rfc4514_string(),
        "next_update": next_update.isoformat() if next_update else None,
        "revoked": dict((format(entry.serial_number, "x"), _utc(entry, "revocation_date").isoformat())
                        for entry in crl),
    }


def _read_pem(path, parse):
    """{"path", "present"} and what ``parse`` makes of the file, or the reason it could not be read."""
    entry = {"path": path, "present": os.path.exists(path)}
    if entry["present"]:
        try:
            with open(path, "rb") as handle:
                entry.update(parse(handle.read()))
        except (OSError, ValueError) as err:
            entry["error"] = "cannot read %s: %s" % (path, err)
    return entry


def read_crls(paths):
    """The CRLs at ``paths`` (by service), each as crl_facts says, or absent/unreadable."""
    return dict((service, _read_pem(path, crl_facts)) for service, path in sorted(paths.items()))


def revocation(cert, crl):
    """Whether ``cert`` (certificate_facts) is revoked by ``crl`` (read_crls' entry): True, False or None."""
    if not crl or not crl.get("present") or crl.get("error") or "serial" not in cert:
        return None
    if crl["issuer"] != cert["issuer"]:
        # Another CA's list says nothing about this certificate.
        return None
    return cert["serial"] in crl["revoked"]


def _utc(cert, name):
    # cryptography 42 added the *_utc properties; Debian 12 ships 38.
    value = getattr(cert, name + "_utc", None)
    if value is None:
        value = getattr(cert, name)
        value = value.replace(tzinfo=datetime.timezone.utc) if value is not None else None
    return value


def read_certificates(paths, crl_paths=None):
    """Each certificate's facts, and whether the CRL of its service (DEFAULT_CRLS) revokes it."""
    crls = read_crls(DEFAULT_CRLS if crl_paths is None else crl_paths)
    found = {}
    for role, path in sorted(paths.items()):
        entry = _read_pem(path, certificate_facts)
        if entry["present"]:
            crl = crls.get(CRL_OF_ROLE.get(role))
            revoked = revocation(entry, crl)
            if revoked is not None:
                entry["revoked"] = revoked
                entry["crl"] = crl["path"]
                if revoked:
                    entry["revoked_on"] = crl["revoked"][entry["serial"]]
        found[role] = entry
    return found


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
    labels, problems = merge_labels(parse_policy(metadata), inventory_labels)
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
        "label_problems": problems,
        "dirty_rate_mib_s": None,
    }


def guest_ram_mapping(smaps_text, memory_kib):
    """(start address, resident KiB) of the guest's RAM in a QEMU process's smaps, or None.

    The guest RAM is the one anonymous mapping whose size is the guest's memory.
    """
    start = None
    for line in smaps_text.splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            start = int(line.split("-", 1)[0], 16)
            size = None
        elif line.startswith("Size:"):
            size = int(line.split()[1])
        elif line.startswith("Rss:") and size == memory_kib and start is not None:
            return start, int(line.split()[1])
    return None


def nonzero_fraction(memory, start, pages, samples=4096, seed=0):
    """Share of non-zero pages among ``samples`` pages drawn (seeded) from a mapping of ``pages`` pages.

    A migration sends a zero page as a marker, nearly free, so the non-zero share of the
    guest's memory is what its first pass really sends.
    """
    draw = random.Random(seed)
    zero = bytes(4096)
    count = samples if pages else 0
    found = 0
    for _index in range(count):
        memory.seek(start + draw.randrange(pages) * 4096)
        found += memory.read(4096) != zero
    return found / float(count) if count else 0.0


def guest_memory_use(name, memory_mib, run_dir="/run/libvirt/qemu"):
    """(resident MiB, non-zero MiB) of a running domain of this host, from its QEMU process; (None, None) if unknown."""
    try:
        with open(os.path.join(run_dir, name + ".pid")) as handle:
            pid = int(handle.read().strip())
        with open("/proc/%d/smaps" % pid) as handle:
            mapping = guest_ram_mapping(handle.read(), memory_mib * 1024)
        if mapping is None:
            return None, None
        with open("/proc/%d/mem" % pid, "rb", buffering=0) as memory:
            share = nonzero_fraction(memory, mapping[0], memory_mib * 256)
    except (OSError, ValueError):
        return None, None
    return mapping[1] // 1024, int(round(share * memory_mib))


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
    maintenance = _read_text(MAINTENANCE_FILE)
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
        "maintenance_reason": (maintenance or "").strip() or None,
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
