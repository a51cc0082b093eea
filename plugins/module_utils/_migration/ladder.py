# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The escalation ladder of a live migration: one type, one validator, one timeout rule.

The same Ladder configures the migrate module's escalation controller (which climbs it
while the migration runs) and the predictor (which predicts, rung by rung, what climbing
it will take), so a plan, a pre-check and a migration always judge the same ladder.
"""

from __future__ import annotations

import math

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import ParameterError

POSTCOPY_CHOICES = ("never", "permit", "after_first_pass")
TIMEOUT_ACTIONS = ("abort", "postcopy", "pause")
# QEMU's default downtime limit, assumed when max_downtime is not set.
QEMU_DEFAULT_DOWNTIME_MS = 300
# QEMU's limit: downtime-limit up to 2000 s.
MAX_DOWNTIME_MS = 2000 * 1000
DEFAULT_STALL_ITERATIONS = 2
MAX_STALL_ITERATIONS = 1000
# Default completion timeout: as OpenStack Nova and KubeVirt, 800 s per GiB to move, at least 300 s.
TIMEOUT_S_PER_GIB = 800
MIN_DEFAULT_TIMEOUT_S = 300


def completion_timeout(timeout, mib_to_move):
    """``timeout`` when set, else 800 s per GiB to move (memory and copied disks), at least 300 s."""
    if timeout is not None:
        return timeout
    return max(MIN_DEFAULT_TIMEOUT_S, int(TIMEOUT_S_PER_GIB * mib_to_move / 1024.0 + 0.5))


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


class Ladder(object):
    """The rungs a live migration may climb, as the options of the same names set them."""

    def __init__(self, max_downtime=None, max_downtime_steps=(), stall_iterations=DEFAULT_STALL_ITERATIONS,
                 auto_converge=False, postcopy="never", timeout=None, timeout_action="abort"):
        self.max_downtime = max_downtime
        self.max_downtime_steps = sorted(max_downtime_steps or ())
        self.stall_iterations = stall_iterations
        self.auto_converge = auto_converge
        self.postcopy = postcopy
        self.timeout = timeout
        self.timeout_action = timeout_action

    KEYS = ("max_downtime", "max_downtime_steps", "stall_iterations", "auto_converge", "postcopy", "timeout",
            "timeout_action")

    @classmethod
    def from_params(cls, params):
        """Validate the ladder options of ``params`` (missing keys take the defaults)."""
        max_downtime = params.get("max_downtime")
        if max_downtime is not None:
            if not _is_number(max_downtime) or max_downtime <= 0:
                raise ParameterError("max_downtime must be a positive number of milliseconds, not %r" % (max_downtime,))
            if max_downtime > MAX_DOWNTIME_MS:
                raise ParameterError("max_downtime must be at most %d ms, not %r" % (MAX_DOWNTIME_MS, max_downtime))
        steps = params.get("max_downtime_steps")
        steps = [] if steps is None else steps
        if not isinstance(steps, (list, tuple)):
            raise ParameterError("max_downtime_steps must be a list of milliseconds, not %r" % (steps,))
        floor = max_downtime or QEMU_DEFAULT_DOWNTIME_MS
        for step in steps:
            if not _is_number(step) or step <= 0 or step > MAX_DOWNTIME_MS:
                raise ParameterError("max_downtime_steps must be positive milliseconds, between 1 and %d ms, not %r"
                                     % (MAX_DOWNTIME_MS, step))
            if step <= floor:
                raise ParameterError(
                    "max_downtime_steps must each be above max_downtime (%d ms%s): step %d ms is not above it"
                    % (floor, "" if max_downtime else ", QEMU's default", step))
        if len(set(steps)) != len(steps):
            raise ParameterError("max_downtime_steps has duplicates: %r" % (list(steps),))
        stall = params.get("stall_iterations")
        stall = DEFAULT_STALL_ITERATIONS if stall is None else stall
        if not isinstance(stall, int) or isinstance(stall, bool) or not 1 <= stall <= MAX_STALL_ITERATIONS:
            raise ParameterError("stall_iterations must be a positive number, at most %d, not %r"
                                 % (MAX_STALL_ITERATIONS, stall))
        timeout = params.get("timeout")
        if timeout is not None and (not _is_number(timeout) or timeout <= 0):
            raise ParameterError("timeout must be a positive number of seconds, not %r" % (timeout,))
        auto_converge = params.get("auto_converge")
        auto_converge = False if auto_converge is None else auto_converge
        if not isinstance(auto_converge, bool):
            raise ParameterError("auto_converge must be true or false, not %r" % (auto_converge,))
        postcopy = params.get("postcopy") or "never"
        timeout_action = params.get("timeout_action") or "abort"
        for key, value, choices in (("postcopy", postcopy, POSTCOPY_CHOICES),
                                    ("timeout_action", timeout_action, TIMEOUT_ACTIONS)):
            if value not in choices:
                raise ParameterError("%s must be one of %s, not %r" % (key, ", ".join(choices), value))
        return cls(max_downtime=max_downtime, max_downtime_steps=steps, stall_iterations=stall,
                   auto_converge=auto_converge, postcopy=postcopy, timeout=timeout, timeout_action=timeout_action)

    def replace(self, **changes):
        """A copy of this ladder with ``changes`` (options of KEYS) in place of its own values."""
        values = dict((key, getattr(self, key)) for key in self.KEYS)
        values.update(changes)
        return Ladder(**values)

    def with_timeout(self, timeout):
        """The same ladder with the completion timeout in force for one migration."""
        return self.replace(timeout=timeout)

    def capped(self, ceiling_ms):
        """The same ladder for a domain that may be paused ``ceiling_ms`` at the most (None: no ceiling).

        No rung allows more: pre-copy starts at the lower of the two, and the steps above the
        ceiling are left out.
        """
        if ceiling_ms is None:
            return self
        return self.replace(max_downtime=ceiling_ms if self.start_downtime > ceiling_ms else self.max_downtime,
                            max_downtime_steps=[s for s in self.max_downtime_steps if s <= ceiling_ms])

    @property
    def start_downtime(self):
        """The downtime limit pre-copy starts at (ms)."""
        return self.max_downtime or QEMU_DEFAULT_DOWNTIME_MS

    @property
    def highest_downtime(self):
        return self.max_downtime_steps[-1] if self.max_downtime_steps else self.start_downtime

    @property
    def postcopy_flag(self):
        """Whether the migration must start with post-copy permitted (VIR_MIGRATE_POSTCOPY)."""
        return self.postcopy != "never" or self.timeout_action == "postcopy"

    def effective_timeout(self, mib_to_move):
        """The completion timeout for a migration that moves ``mib_to_move`` (see completion_timeout)."""
        return completion_timeout(self.timeout, mib_to_move)
