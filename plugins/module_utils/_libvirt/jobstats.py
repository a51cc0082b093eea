# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""libvirt job statistics (virDomainGetJobStats) as plain data, and the migration summary.

The keys are libvirt's VIR_DOMAIN_JOB_* typed-parameter names; times are milliseconds,
sizes bytes, rates bytes per second (memory_dirty_rate is pages per second).
"""

from __future__ import annotations

MIB = 1024 * 1024

# virDomainJobType values.
JOB_NONE, JOB_BOUNDED, JOB_UNBOUNDED, JOB_COMPLETED, JOB_FAILED, JOB_CANCELLED = range(6)


class JobSnapshot(object):
    """One reading of a migration job's statistics."""

    FIELDS = (
        "time_elapsed", "time_remaining", "downtime", "setup_time",
        "data_total", "data_processed", "data_remaining",
        "memory_total", "memory_processed", "memory_remaining", "memory_bps",
        "memory_dirty_rate", "memory_page_size", "memory_iteration", "memory_postcopy_requests",
        "memory_constant", "memory_normal_bytes",
        "disk_total", "disk_processed", "disk_remaining", "disk_bps",
        "auto_converge_throttle",
    )

    def __init__(self, stats):
        self.raw = dict(stats)
        self.type = stats.get("type", JOB_NONE)
        for field in self.FIELDS:
            setattr(self, field, stats.get(field))

    @property
    def active(self):
        return self.type in (JOB_BOUNDED, JOB_UNBOUNDED)

    @property
    def iteration(self):
        return self.memory_iteration or 0

    @property
    def remaining(self):
        """Bytes still to send: data_remaining, else memory plus disk remaining."""
        if self.data_remaining is not None:
            return self.data_remaining
        return (self.memory_remaining or 0) + (self.disk_remaining or 0)

    @property
    def dirty_rate_bps(self):
        """The guest's dirty rate in bytes per second, when QEMU reported it."""
        if self.memory_dirty_rate is None:
            return None
        return self.memory_dirty_rate * (self.memory_page_size or 4096)

    @property
    def throttle(self):
        return self.auto_converge_throttle or 0


def _mib(value):
    return round(value / MIB, 1) if value is not None else None


def summarize(completed, last=None):
    """The documented result keys from completed job statistics.

    ``completed`` is the dict read after the migration (on the destination for a
    peer-to-peer migration), or None when it could not be read; ``last`` is the last
    JobSnapshot polled on the source, used for what ``completed`` lacks.
    """
    stats = dict(last.raw) if last is not None else {}
    source = "none"
    if last is not None:
        source = "last poll on the source"
    if completed:
        stats.update(dict((k, v) for k, v in completed.items() if v is not None))
        source = "completed job statistics"
    snap = JobSnapshot(stats)
    total_ms = snap.time_elapsed
    data = snap.data_processed
    if data is None and (snap.memory_processed is not None or snap.disk_processed is not None):
        data = (snap.memory_processed or 0) + (snap.disk_processed or 0)
    # Average bandwidth over the time data moved, i.e. without the setup phase.
    transfer_ms = None
    if total_ms:
        transfer_ms = total_ms - (snap.setup_time or 0)
        if transfer_ms <= 0:
            transfer_ms = total_ms
    average = None
    if data is not None and transfer_ms:
        average = round(data / MIB / (transfer_ms / 1000.0), 1)
    return dict(
        statistics_source=source,
        timings=dict(total_ms=total_ms, downtime_ms=snap.downtime, setup_ms=snap.setup_time),
        transferred=dict(
            memory_bytes=snap.memory_processed,
            disk_bytes=snap.disk_processed,
            total_bytes=data,
            memory_total_bytes=snap.memory_total,
        ),
        iterations=snap.memory_iteration,
        average_bandwidth_mib_s=average,
        postcopy_requests=snap.memory_postcopy_requests,
        auto_converge_throttle=snap.auto_converge_throttle,
    )


def describe_progress(snap):
    """A short human description of a snapshot, for messages."""
    parts = ["iteration %d" % snap.iteration]
    if snap.remaining is not None:
        parts.append("%s MiB remaining" % _mib(snap.remaining))
    if snap.memory_bps:
        parts.append("%s MiB/s" % _mib(snap.memory_bps))
    if snap.dirty_rate_bps:
        parts.append("guest dirtying %s MiB/s" % _mib(snap.dirty_rate_bps))
    if snap.throttle:
        parts.append("CPU throttled %d%%" % snap.throttle)
    return ", ".join(parts)
