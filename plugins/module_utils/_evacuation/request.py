# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The evacuate module's options and the moves it is given, validated before anything is opened.

EvacuationRequest checks the parameters and the planner's moves, and derives from them
the migrate engine's parameters of each move (its MigrationRequest) and the ladder.
"""

from __future__ import annotations

import math

from ansible_collections.virtops.migration.plugins.module_utils._facts.labels import label_problem
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    CONNECTION_ARGUMENT_SPEC,
    ConnectionSettings,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import ParameterError
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.uri import migration_uri, validate_host
from ansible_collections.virtops.migration.plugins.module_utils._migration.ladder import Ladder
from ansible_collections.virtops.migration.plugins.module_utils._migration.request import MigrationRequest
from ansible_collections.virtops.migration.plugins.module_utils._option_spec import (
    argument_spec,
    check_bounds,
    with_defaults,
)
from ansible_collections.virtops.migration.plugins.module_utils._options import (
    ADDRESSES,
    BOUNDS,
    CONCURRENCY,
    EVACUATION_ID,
    JOURNAL,
    LADDER,
    MIGRATION,
    SOURCE,
    STORAGE,
)
from ansible_collections.virtops.migration.plugins.module_utils._planning.inputs import (
    COLD,
    LIVE,
    SHUTDOWN,
)


MODES = (LIVE, COLD, SHUTDOWN)
ON_FAILURE = ("retry", "replace", "leave")
ACTIVE_STATES = ("running", "paused", "blocked")
# An interrupted run ended without a result; the next run resumes it.
INTERRUPTED = "interrupted"


# The evacuation's own options, then those of every move, as _options declares them for the
# migrate module; an evacuation copies disks that are not shared unless told otherwise.
EVACUATE_ARGUMENT_SPEC = argument_spec(
    LADDER, MIGRATION, STORAGE["copy_storage"].but(default="all"), CONCURRENCY, ADDRESSES, SOURCE, EVACUATION_ID,
    JOURNAL,
    moves=dict(type="list", elements="dict", default=[]),
    skipped=dict(type="list", elements="dict", default=[]),
    settle_only=dict(type="bool", default=False),
    retries=dict(type="int", default=1),
    retry_delay=dict(type="int", default=5),
    on_failure=dict(type="str", default="retry", choices=list(ON_FAILURE)),
    replacement_hosts=dict(type="list", elements="str", default=[]),
    use_planned_bandwidth=dict(type="bool", default=False),
    source_throughput_mib_s=dict(type="float"),
    run_tag=dict(type="str"),
)
# The options every move passes on to the migrate engine.
_MIGRATE_KEYS = tuple(LADDER) + tuple(MIGRATION) + tuple(STORAGE)


def _number(move, key, where, default=None, positive=False, integer=False):
    """A move's number: finite, not negative (``positive``: above zero), ``integer`` when it must be whole."""
    value = move.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 \
            or (positive and value == 0) or (integer and value != int(value)):
        raise ParameterError("%s: %s must be %s, not %r" % (
            where, key, "a whole number" if integer else "a number above 0" if positive else "a number, 0 or more",
            value))
    return value


class EvacuationRequest(object):
    """The module's parameters, validated before anything is opened or written."""

    def __init__(self, params):
        check_bounds(params, BOUNDS)
        self.params = params
        self.evacuation_id = params["evacuation_id"]
        self.source = params.get("source")
        if self.source is not None:
            self.source = validate_host(self.source, "source")
        self.settle_only = bool(params.get("settle_only"))
        for key in ("max_parallel_per_source", "max_parallel_per_destination"):
            if params[key] is None or params[key] < 1:
                raise ParameterError("%s must be at least 1, not %r" % (key, params[key]))
        self.per_source = params["max_parallel_per_source"]
        self.per_destination = params["max_parallel_per_destination"]
        if params["retries"] < 0 or params["retry_delay"] < 0:
            raise ParameterError("retries and retry_delay cannot be negative")
        self.retries = params["retries"]
        self.retry_delay = params["retry_delay"]
        self.on_failure = params["on_failure"]
        self.replacement_hosts = [validate_host(h, "replacement_hosts") for h in params["replacement_hosts"]]
        moves = params.get("moves") or []
        if self.on_failure == "replace" and not self.replacement_hosts and moves:
            raise ParameterError("on_failure=replace needs replacement_hosts")
        self.addresses = {}
        for host, address in (params.get("migration_addresses") or {}).items():
            if address in (None, ""):
                continue
            # Checked here, as each move would check it: a bad address fails before the journal is written.
            migration_uri(str(address))
            self.addresses[validate_host(host, "migration_addresses key")] = str(address)
        throughput = params.get("source_throughput_mib_s")
        if throughput is not None and throughput <= 0:
            raise ParameterError("source_throughput_mib_s must be positive")
        self.throughput = throughput
        self.moves = self._moves(params.get("moves") or [])
        self.skipped = self._skipped(params.get("skipped") or [])
        if self.settle_only and self.moves:
            raise ParameterError("settle_only runs without moves: it only settles what an interrupted run left")
        # Check the migrate options once, as the migrate module would, with a stand-in move.
        self.migration_request(dict(domain="stand-in", mode=LIVE), "destination.invalid")
        self.ladder = Ladder.from_params(params)

    def _moves(self, moves):
        out = []
        seen = set()
        for index, move in enumerate(moves):
            where = "moves[%d]" % index
            if not isinstance(move, dict):
                raise ParameterError("%s must be a dictionary (a move of the evacuation plan), not %r" % (where, move))
            name = move.get("domain")
            if not isinstance(name, str) or not name.strip():
                raise ParameterError("%s has no domain name" % where)
            where = "moves[%d] (%s)" % (index, name)
            if name in seen:
                raise ParameterError("%s: the domain appears twice in moves" % where)
            seen.add(name)
            mode = move.get("mode")
            if mode not in MODES:
                raise ParameterError("%s: mode must be one of %s, not %r" % (where, ", ".join(MODES), mode))
            destination = move.get("destination")
            if mode == SHUTDOWN:
                destination = None
            else:
                if not isinstance(destination, str) or not destination:
                    raise ParameterError("%s: a %s move needs a destination" % (where, mode))
                destination = validate_host(destination, "%s: destination" % where)
                if self.source is not None and destination == self.source:
                    raise ParameterError("%s: the destination is the source host itself" % where)
            clean = dict(move)
            clean.update(
                domain=name,
                mode=mode,
                destination=destination,
                order=int(_number(move, "order", where, index + 1, integer=True)),
                exclusive=bool(move.get("exclusive")),
                memory_mib=_number(move, "memory_mib", where, 0),
                local_disk_mib=_number(move, "local_disk_mib", where, 0),
                # 0 for a move that sends nothing (a cold move of a domain on shared storage): the plan's own output.
                bandwidth_mib_s=_number(move, "bandwidth_mib_s", where),
            )
            problem = label_problem("max_downtime", move.get("max_downtime_ms"), name="max_downtime_ms")
            if problem is not None:
                raise ParameterError("%s: %s" % (where, problem))
            out.append(clean)
        out.sort(key=lambda m: (m["order"], m["domain"]))
        return out

    @staticmethod
    def _skipped(skipped):
        out = []
        for index, item in enumerate(skipped):
            if not isinstance(item, dict) or not isinstance(item.get("domain"), str):
                raise ParameterError("skipped[%d] must be a dictionary with a domain name" % index)
            out.append(item)
        return out

    @property
    def limits(self):
        return dict(max_parallel_per_source=self.per_source, max_parallel_per_destination=self.per_destination,
                    retries=self.retries, on_failure=self.on_failure, replacement_hosts=self.replacement_hosts)

    def migrate_params(self, record, destination):
        """The migrate module's parameters for one move of ``record`` to ``destination``."""
        params = dict((key, self.params.get(key)) for key in _MIGRATE_KEYS)
        params.update(name=record["domain"], destination=destination, mode=record["mode"], persistent=True,
                      migration_address=self.addresses.get(destination), tls_destination=None)
        bandwidth = self.params.get("bandwidth")
        if self.params.get("use_planned_bandwidth") and record.get("bandwidth_mib_s"):
            planned = max(1, int(record["bandwidth_mib_s"] + 0.5))
            bandwidth = planned if bandwidth is None else min(bandwidth, planned)
        params["bandwidth"] = bandwidth
        if record.get("max_downtime_ms") is not None:
            # The domain's own ceiling (its max_downtime label): no rung of its ladder allows more.
            ladder = self.ladder.capped(record["max_downtime_ms"])
            params.update(max_downtime=ladder.max_downtime, max_downtime_steps=list(ladder.max_downtime_steps))
        return params

    def migration_request(self, record, destination, settings=None):
        settings = settings or ConnectionSettings.from_params(with_defaults(CONNECTION_ARGUMENT_SPEC, self.params))
        dest_uri = settings.remote(destination)
        return MigrationRequest.from_params(self.migrate_params(record, destination), dest_uri)

    def job_timeout(self, record):
        """How long a migration may run (the migrate module's rule), for jobs adopted from a killed run."""
        return self.ladder.effective_timeout((record.get("memory_mib") or 0) + (record.get("local_disk_mib") or 0))
