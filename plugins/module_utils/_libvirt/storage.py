# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""Which of a domain's disks are shared with the destination and which must be copied.

Plain Python: the caller passes the source host's mount table (/proc/self/mountinfo),
read where the module runs, which is the source host. The rules follow libvirt's own
safety check for live migration: network disks and files on a shared file system count
as shared; read-only, shareable and empty disks are never copied.
"""

from __future__ import annotations

import posixpath
import re

# File system types libvirt treats as shared between hosts (virFileIsSharedFS).
SHARED_FS_TYPES = frozenset((
    "nfs", "nfs4", "gfs2", "gfs", "ocfs2", "afs", "smb", "smb3", "cifs", "ceph", "gpfs",
    "fuse.quobyte", "quobyte", "acfs", "fuse.glusterfs", "glusterfs", "beegfs", "virtiofs",
))

SHARED = "shared"
LOCAL = "local"
SKIPPED = "skipped"


def _unescape(field):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text):
    """[(mount point, file system type)] from /proc/self/mountinfo text."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields or len(fields) < 5:
            continue
        sep = fields.index("-")
        if sep + 1 >= len(fields):
            continue
        mounts.append((_unescape(fields[4]), fields[sep + 1]))
    return mounts


def filesystem_of(path, mounts):
    """The type of the file system holding ``path`` (the last, longest matching mount)."""
    best = None
    best_len = -1
    path = posixpath.normpath(path)
    for mount_point, fstype in mounts:
        mp = posixpath.normpath(mount_point)
        if path == mp or path.startswith(mp.rstrip("/") + "/"):
            if len(mp) >= best_len:
                best, best_len = fstype, len(mp)
    return best


class DiskPlacement(object):
    """How one disk gets to the destination."""

    def __init__(self, disk, kind, reason):
        self.disk = disk
        self.kind = kind
        self.reason = reason

    def as_dict(self):
        return dict(target=self.disk.target, source=self.disk.source, type=self.disk.type, placement=self.kind,
                    reason=self.reason)


def place_disk(disk, mounts):
    """Classify a disk as SHARED, LOCAL (must be copied) or SKIPPED, with the reason."""
    if not disk.has_source:
        return DiskPlacement(disk, SKIPPED, "no medium")
    if disk.readonly:
        return DiskPlacement(disk, SKIPPED, "read-only: must exist at the same path on the destination")
    if disk.shareable:
        return DiskPlacement(disk, SHARED, "marked shareable")
    if disk.type == "network":
        return DiskPlacement(disk, SHARED, "network disk (%s)" % (disk.protocol or "unknown protocol"))
    if disk.type in ("file", "block", "dir"):
        fstype = filesystem_of(disk.source, mounts) if disk.source.startswith("/") else None
        if fstype in SHARED_FS_TYPES:
            return DiskPlacement(disk, SHARED, "on a shared file system (%s)" % fstype)
        return DiskPlacement(disk, LOCAL, "on local storage (%s)" % (fstype or "unknown file system"))
    return DiskPlacement(disk, LOCAL, "%s disk, assumed local" % disk.type)


class StoragePlan(object):
    """Disk placements for a migration, what libvirt must copy, and what blocks it."""

    def __init__(self, placements, copy_storage):
        self.placements = placements
        self.copy_storage = copy_storage
        # Targets whose copy goes into a volume that already existed on the destination
        # (filled in by the destination pre-check; such volumes are never deleted).
        self.existing = set()

    @property
    def local(self):
        return [p for p in self.placements if p.kind == LOCAL]

    @property
    def copy_targets(self):
        """Target devices libvirt copies (VIR_MIGRATE_PARAM_MIGRATE_DISKS)."""
        if self.copy_storage == "none":
            return []
        return [p.disk.target for p in self.local]

    @property
    def blockers(self):
        if self.copy_storage != "none":
            return []
        return [
            "disk %s (%s) is %s and copy_storage is none: set copy_storage to all (or incremental) "
            "to copy it, or move it to shared storage" % (p.disk.target, p.disk.source, p.reason)
            for p in self.local
        ]

    def as_list(self):
        return [p.as_dict() for p in self.placements]


def plan_storage(disks, mounts, copy_storage):
    return StoragePlan([place_disk(d, mounts) for d in disks], copy_storage)
