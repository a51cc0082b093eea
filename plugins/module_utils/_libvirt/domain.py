# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""What a domain is and where it stands, as plain data (no libvirt).

DomainState describes a domain on one host (state, reason, persistence); Domain XML is
parsed into DomainDescription (CPU, disks, memory) for the pre-checks.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

# virDomainState values (a stable part of libvirt's ABI) and the names we report.
STATE_NAMES = {
    0: "nostate",
    1: "running",
    2: "blocked",
    3: "paused",
    4: "shutdown",
    5: "shutoff",
    6: "crashed",
    7: "pmsuspended",
}
RUNNING, PAUSED, SHUTOFF = 1, 3, 5
# virDomainPausedReason / virDomainRunningReason values that matter for migration.
PAUSED_MIGRATION = 2
PAUSED_POSTCOPY = 12
PAUSED_POSTCOPY_FAILED = 13
RUNNING_POSTCOPY = 10
RUNNING_POSTCOPY_FAILED = 11
# virDomainPausedReason names worth showing in messages.
PAUSED_REASONS = {1: "by a user", 2: "for migration", 3: "for saving", 4: "for a dump", 5: "I/O error",
                  6: "watchdog", 7: "from snapshot", 8: "shutting down", 9: "snapshot", 10: "crashed",
                  11: "starting up"}


class DomainState(object):
    """A domain as one host sees it."""

    def __init__(self, name, uuid, state, reason, persistent):
        self.name = name
        self.uuid = uuid
        self.state = state
        self.reason = reason
        self.persistent = persistent

    @property
    def active(self):
        return self.state != SHUTOFF

    @property
    def state_name(self):
        return STATE_NAMES.get(self.state, "unknown")

    @property
    def postcopy_failed(self):
        return (self.state == PAUSED and self.reason == PAUSED_POSTCOPY_FAILED) or (
            self.state == RUNNING and self.reason == RUNNING_POSTCOPY_FAILED
        )

    @property
    def postcopy_running(self):
        """In the post-copy phase of a migration (source paused, destination running)."""
        return (self.state == PAUSED and self.reason == PAUSED_POSTCOPY) or (
            self.state == RUNNING and self.reason == RUNNING_POSTCOPY)

    @property
    def incoming_migration(self):
        """Paused on a destination while a migration streams into it."""
        return self.state == PAUSED and self.reason in (PAUSED_MIGRATION, PAUSED_POSTCOPY)

    def describe(self):
        text = self.state_name
        if self.postcopy_failed:
            text += " (post-copy failed)"
        elif self.postcopy_running:
            text += " (post-copy in progress)"
        elif self.state == PAUSED and self.reason in PAUSED_REASONS:
            text += " (%s)" % PAUSED_REASONS[self.reason]
        return "%s, %s" % (text, "persistent" if self.persistent else "transient")

    def as_dict(self):
        return dict(state=self.state_name, persistent=self.persistent, postcopy_failed=self.postcopy_failed)


class Disk(object):
    """One <disk> of a domain."""

    def __init__(self, target, device, disk_type, source=None, protocol=None, readonly=False, shareable=False,
                 cache=None, fmt=None):
        self.target = target
        self.device = device
        self.type = disk_type
        self.source = source
        self.protocol = protocol
        self.readonly = readonly
        self.shareable = shareable
        self.cache = cache
        self.format = fmt

    @property
    def has_source(self):
        return bool(self.source) or self.type == "network"

    def __repr__(self):
        return "Disk(%s, %s, %s)" % (self.target, self.type, self.source)


class DomainDescription(object):
    """The parts of a domain definition the pre-checks look at."""

    def __init__(self, name, uuid, virt_type, arch, machine, memory_kib, cpu_xml, cpu_mode, disks):
        self.name = name
        self.uuid = uuid
        self.virt_type = virt_type
        self.arch = arch
        self.machine = machine
        self.memory_kib = memory_kib
        self.cpu_xml = cpu_xml
        self.cpu_mode = cpu_mode
        self.disks = disks

    @classmethod
    def from_xml(cls, text):
        root = ET.fromstring(text)
        os_type = root.find("./os/type")
        cpu = root.find("./cpu")
        memory = root.find("./memory")
        disks = [_parse_disk(node) for node in root.findall("./devices/disk")]
        cpu_mode = None
        cpu_xml = None
        if cpu is not None:
            cpu_mode = cpu.get("mode", "custom")
            cpu_xml = ET.tostring(cpu, encoding="unicode")
        return cls(
            name=root.findtext("./name"),
            uuid=root.findtext("./uuid"),
            virt_type=root.get("type"),
            arch=os_type.get("arch") if os_type is not None else None,
            machine=os_type.get("machine") if os_type is not None else None,
            memory_kib=_kib(memory),
            cpu_xml=cpu_xml,
            cpu_mode=cpu_mode,
            disks=disks,
        )


_UNIT_KIB = {
    "b": 1.0 / 1024, "bytes": 1.0 / 1024, "k": 1, "kib": 1, "kb": 1000.0 / 1024, "m": 1024, "mib": 1024,
    "mb": 1e6 / 1024, "g": 1024 ** 2, "gib": 1024 ** 2, "gb": 1e9 / 1024, "t": 1024 ** 3, "tib": 1024 ** 3,
}


def _kib(node):
    if node is None or not (node.text or "").strip():
        return 0
    factor = _UNIT_KIB.get((node.get("unit") or "KiB").lower(), 1)
    return int(int(node.text.strip()) * factor)


def _parse_disk(node):
    source = node.find("./source")
    target = node.find("./target")
    driver = node.find("./driver")
    disk_type = node.get("type", "file")
    path = protocol = None
    if source is not None:
        if disk_type == "file":
            path = source.get("file")
        elif disk_type == "block":
            path = source.get("dev")
        elif disk_type == "dir":
            path = source.get("dir")
        elif disk_type == "network":
            protocol = source.get("protocol")
            path = source.get("name")
        elif disk_type == "volume":
            path = "%s/%s" % (source.get("pool"), source.get("volume"))
    return Disk(
        target=target.get("dev") if target is not None else None,
        device=node.get("device", "disk"),
        disk_type=disk_type,
        source=path,
        protocol=protocol,
        readonly=node.find("./readonly") is not None,
        shareable=node.find("./shareable") is not None,
        cache=driver.get("cache") if driver is not None else None,
        fmt=driver.get("type") if driver is not None else None,
    )
