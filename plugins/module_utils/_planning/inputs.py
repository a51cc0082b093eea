# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The planner's input: its options and the inventory's facts, validated and indexed
(the options are declared in spec.py).

Pure Python, no libvirt. Malformed input raises ParameterError naming the host, domain and
field; the destinations are indexed in one pass over their domains, the only part of a
plan that grows with the inventory.
"""

from __future__ import annotations

import math

from ansible_collections.virtops.migration.plugins.module_utils._facts.labels import label_problem
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import ParameterError
from ansible_collections.virtops.migration.plugins.module_utils._migration.ladder import Ladder
from ansible_collections.virtops.migration.plugins.module_utils._option_spec import check_bounds
from ansible_collections.virtops.migration.plugins.module_utils._options import (
    BOUNDS,
    DO_NOT_MIGRATE_POLICIES as POLICIES,
)
from ansible_collections.virtops.migration.plugins.module_utils._planning.prediction import LADDER_ORDER
from ansible_collections.virtops.migration.plugins.module_utils._planning.spec import (
    EVACUATION_PLAN_ARGUMENT_SPEC,
    LIVE_FALLBACKS,
    PLAN_INPUTS,
    UNCHECKED_PAIRS,
    VERDICTS,
)


MIB = 1024 * 1024
# Assumed when the source's bandwidth was not measured and no budget is given: about what
# one 1 Gbit/s link carries. Deliberately low: an unmeasured plan should not promise speed.
DEFAULT_BANDWIDTH_MIB_S = 112.0
# At most this many host names are listed per reason of an unplaceable domain.
MAX_NAMES = 5

# libvirt's domain states (virDomainState), as host_info reports them ("unknown" for a state
# newer than the code that read it).
DOMAIN_STATES = ("nostate", "running", "blocked", "paused", "shutdown", "shutoff", "crashed", "pmsuspended",
                 "unknown")
LIVE_STATES = frozenset(("running", "blocked", "paused"))
INACTIVE_STATES = frozenset(("shutoff", "crashed"))
_VERDICT_RANK = dict(ok=0, warn=1, block=2)

LIVE = "live"
COLD = "cold"
SHUTDOWN = "shutdown"


def focus(hosts, source, domains=None, dirty_rates=None, bandwidth_mib_s=None):
    """The facts to plan with: the source's domains narrowed to ``domains`` (names or UUIDs; all when None),
    with the dirty rates measured since the facts were read, and the source's measured bandwidth.

    Anything malformed is left as it is, for the validation to name.
    """
    src = hosts.get(source) if isinstance(hosts, dict) else None
    if not isinstance(src, dict) or (domains is None and not dirty_rates and bandwidth_mib_s is None):
        return hosts
    src = dict(src)
    own = src.get("domains")
    if isinstance(own, list):
        if domains is not None:
            wanted = set(domains)
            own = [d for d in own if not isinstance(d, dict) or d.get("name") in wanted or d.get("uuid") in wanted]
        rates = dirty_rates or {}
        src["domains"] = [dict(d, dirty_rate_mib_s=rates[d.get("name")]) if isinstance(d, dict) and d.get("name") in rates
                          else d for d in own]
    if bandwidth_mib_s is not None:
        src["migration_bandwidth_mib_s"] = bandwidth_mib_s
    return dict(hosts, **{source: src})


# --- input validation ----------------------------------------------------------------

def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def checked_number(where, key, value, allow_zero=True, optional=False):
    if value is None and optional:
        return None
    if not _is_number(value) or value < 0 or (value == 0 and not allow_zero) or math.isnan(value):
        want = "a number >= 0" if allow_zero else "a number > 0"
        raise ParameterError("%s: %s must be %s, not %r" % (where, key, want, value))
    return value


def _bool(where, key, value, default=None):
    if value is None and default is not None:
        return default
    if not isinstance(value, bool):
        raise ParameterError("%s: %s must be true or false, not %r" % (where, key, value))
    return value


def _text(where, key, value, optional=False):
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise ParameterError("%s: %s must be a non-empty string, not %r" % (where, key, value))
    return value


def checked_mapping(where, value):
    if not isinstance(value, dict):
        raise ParameterError("%s must be a dictionary, not %s" % (where, type(value).__name__))
    return value


class PlanOptions(object):
    """The planning options (the module's parameters other than source, hosts, prechecks)."""

    def __init__(self, **params):
        merged = dict((k, v.get("default")) for k, v in EVACUATION_PLAN_ARGUMENT_SPEC.items()
                      if k not in PLAN_INPUTS)
        unknown = sorted(set(params) - set(merged))
        if unknown:
            raise ParameterError("unknown planning options: %s" % ", ".join(unknown))
        merged.update((k, v) for k, v in params.items() if v is not None)
        where = "options"
        for key in ("memory_overcommit", "vcpu_overcommit"):
            checked_number(where, key, merged[key], allow_zero=False)
        checked_number(where, "reserved_memory_mib", merged["reserved_memory_mib"])
        for key in ("max_parallel_per_source", "max_parallel_per_destination"):
            value = merged[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ParameterError("%s must be an integer >= 1, not %r" % (key, value))
        checked_number(where, "bandwidth_budget_mib_s", merged["bandwidth_budget_mib_s"], allow_zero=False, optional=True)
        for key in ("assumed_dirty_rate_mib_s", "setup_seconds", "shutdown_seconds"):
            checked_number(where, key, merged[key])
        ladder = Ladder.from_params(merged)
        for key, choices in (("unchecked_pairs", UNCHECKED_PAIRS), ("do_not_migrate_default", POLICIES),
                             ("live_fallback", LIVE_FALLBACKS)):
            if merged[key] not in choices:
                raise ParameterError("%s must be one of %s, not %r" % (key, ", ".join(choices), merged[key]))
        exclude = merged["exclude"] or []
        if not isinstance(exclude, (list, tuple)) or not all(isinstance(h, str) for h in exclude):
            raise ParameterError("exclude must be a list of host names")
        _bool(where, "count_shutoff_domains", merged["count_shutoff_domains"])
        check_bounds(merged, BOUNDS)
        self.__dict__.update(merged)
        self.exclude = frozenset(exclude)
        self.ladder = ladder

    @classmethod
    def from_params(cls, params):
        keys = [k for k in EVACUATION_PLAN_ARGUMENT_SPEC if k not in PLAN_INPUTS]
        return cls(**dict((k, params.get(k)) for k in keys))


class SourceDomain(object):
    """A domain of the source host, validated in full."""

    __slots__ = ("name", "uuid", "state", "persistent", "memory", "vcpus", "dirty_rate", "shared_storage",
                 "disk_mib", "blockers", "group", "policy", "priority", "max_downtime", "label_sources")

    @property
    def active(self):
        return self.state not in INACTIVE_STATES

    @property
    def identity(self):
        return dict(domain=self.name, uuid=self.uuid)


def source_domain(host, index, raw, default_policy):
    where = "hosts.%s.domains[%d]" % (host, index)
    checked_mapping(where, raw)
    dom = SourceDomain()
    dom.name = _text(where, "name", raw.get("name"))
    where = "hosts.%s.domains[%d] (%s)" % (host, index, dom.name)
    dom.uuid = _text(where, "uuid", raw.get("uuid"), optional=True)
    dom.state = raw.get("state")
    if dom.state not in DOMAIN_STATES:
        raise ParameterError("%s: state must be one of %s, not %r" % (where, ", ".join(DOMAIN_STATES), dom.state))
    dom.persistent = _bool(where, "persistent", raw.get("persistent"), default=True)
    dom.memory = checked_number(where, "memory_mib", raw.get("memory_mib"))
    dom.vcpus = checked_number(where, "vcpus", raw.get("vcpus"))
    dom.dirty_rate = checked_number(where, "dirty_rate_mib_s", raw.get("dirty_rate_mib_s"), optional=True)
    dom.shared_storage = _bool(where, "shared_storage", raw.get("shared_storage"), default=True)
    disk_bytes = raw.get("local_disk_bytes")
    if disk_bytes is None and not dom.shared_storage:
        raise ParameterError("%s: local_disk_bytes is required when shared_storage is false" % where)
    dom.disk_mib = 0.0 if dom.shared_storage else checked_number(where, "local_disk_bytes", disk_bytes) / float(MIB)
    blockers = raw.get("blockers")
    blockers = [] if blockers is None else blockers
    if not isinstance(blockers, list) or not all(isinstance(b, str) for b in blockers):
        raise ParameterError("%s: blockers must be a list of strings" % where)
    dom.blockers = blockers
    labels = raw.get("labels")
    labels = checked_mapping(where + ": labels", {} if labels is None else labels)
    dom.group = _text(where, "labels.anti_affinity", labels.get("anti_affinity"), optional=True)
    policy = labels.get("do_not_migrate")
    if policy is True:
        policy = default_policy
    elif policy is False:
        policy = None
    if policy is not None and policy not in POLICIES:
        raise ParameterError("%s: labels.do_not_migrate must be null, true or one of %s, not %r"
                             % (where, ", ".join(POLICIES), policy))
    dom.policy = policy
    for key in ("priority", "max_downtime"):
        problem = label_problem(key, labels.get(key))
        if problem is not None:
            raise ParameterError("%s: labels.%s" % (where, problem))
    dom.priority = labels.get("priority") or 0
    dom.max_downtime = labels.get("max_downtime")
    dom.label_sources = dict(checked_mapping(where + ": label_sources", raw.get("label_sources") or {}))
    return dom


def host_capacity(committable_mib, vcpus_total, memory_overcommit, vcpu_overcommit, reserved_memory_mib):
    """What a host may give its guests, (memory MiB, vCPUs): the planners' one capacity rule
    (evacuation_plan, upgrade_plan), from its facts and the capacity options."""
    return committable_mib * memory_overcommit - reserved_memory_mib, vcpus_total * vcpu_overcommit


def _bad_host_capacity(name, raw):
    """Raise ParameterError naming what is wrong with a host's memory and CPU facts, if anything."""
    where = "hosts.%s" % name
    total = checked_number(where, "memory_total_mib", raw.get("memory_total_mib"))
    committable = checked_number(where, "memory_committable_mib", raw.get("memory_committable_mib"))
    if committable > total:
        raise ParameterError("%s: memory_committable_mib (%s) exceeds memory_total_mib (%s)"
                             % (where, committable, total))
    checked_number(where, "vcpus_total", raw.get("vcpus_total"))


def host_domains(name, raw):
    domains = raw.get("domains")
    if domains is None:
        return []
    if not isinstance(domains, list):
        raise ParameterError("hosts.%s: domains must be a list" % name)
    return domains


def _bad_destination_domain(host, index, raw):
    """Raise ParameterError naming what is wrong with a destination's domain, if anything."""
    where = "hosts.%s.domains[%d]" % (host, index)
    checked_mapping(where, raw)
    if raw.get("state") not in DOMAIN_STATES:
        raise ParameterError("%s: state must be one of %s, not %r"
                             % (where, ", ".join(DOMAIN_STATES), raw.get("state")))
    _bool(where, "persistent", raw.get("persistent"), default=True)
    checked_number(where, "memory_mib", raw.get("memory_mib"))
    checked_number(where, "vcpus", raw.get("vcpus"))
    labels = raw.get("labels")
    labels = checked_mapping(where + ": labels", {} if labels is None else labels)
    _text(where, "labels.anti_affinity", labels.get("anti_affinity"), optional=True)


class Destination(object):
    """A host that may receive domains: its capacity and what it already holds."""

    __slots__ = ("name", "mem_cap", "cpu_cap", "mem_used", "cpu_used")

    def __init__(self, name, mem_cap, cpu_cap, mem_used, cpu_used):
        self.name = name
        self.mem_cap = mem_cap
        self.cpu_cap = cpu_cap
        self.mem_used = mem_used
        self.cpu_used = cpu_used

    def score(self):
        """Share of the scarcer resource still free; the highest is the least loaded."""
        if self.mem_cap <= 0 or self.cpu_cap <= 0:
            return -1.0
        return min((self.mem_cap - self.mem_used) / self.mem_cap, (self.cpu_cap - self.cpu_used) / self.cpu_cap)


_STATE_SET = frozenset(DOMAIN_STATES)
_NUMBER_TYPES = (int, float)


def note_member(members, host, domain):
    """Remember a member of a group on ``host``: the first by name, whatever the input order."""
    known = members.get(host)
    if host not in members or (domain is not None and (known is None or domain < known)):
        members[host] = domain


def _host_usage(name, domains, count_shutoff, wanted_groups, group_hosts):
    """Memory and vCPUs the domains of one destination use; records members of wanted groups.

    With 200,000 domains in the inventory this loop is most of what a plan costs, so it
    reads each domain once, keeps to the few fields the plan uses, and checks them with
    cheap tests; anything malformed raises and the caller finds and names it. Labels are
    read only when the source has anti-affinity groups.
    """
    mem_used = cpu_used = 0
    states = _STATE_SET
    inactive = INACTIVE_STATES
    for dom in domains:
        state = dom["state"]
        mem = dom["memory_mib"]
        cpus = dom["vcpus"]
        persistent = dom.get("persistent")
        if state not in states or mem < 0 or cpus < 0 or (persistent is not None and persistent.__class__ is not bool):
            raise ValueError()
        if state not in inactive or (count_shutoff and persistent is not False):
            mem_used += mem
            cpu_used += cpus
        if wanted_groups:
            labels = dom.get("labels")
            if labels:
                group = labels.get("anti_affinity")
                if group is not None and group in wanted_groups:
                    note_member(group_hosts[group], name, dom.get("name"))
    if (mem_used.__class__ not in _NUMBER_TYPES or cpu_used.__class__ not in _NUMBER_TYPES
            or math.isnan(mem_used) or math.isnan(cpu_used)):
        raise TypeError()
    return mem_used, cpu_used


def index_destinations(source, hosts, opts, groups):
    """Destinations with their used capacity, and where members of ``groups`` already are.

    One pass over every domain of every candidate destination - the only part of a plan
    that grows with the inventory.
    """
    destinations = {}
    maintenance = []
    excluded = []
    group_hosts = dict((g, {}) for g in groups)
    wanted = frozenset(groups)
    count_shutoff = opts.count_shutoff_domains
    mem_ratio = opts.memory_overcommit
    cpu_ratio = opts.vcpu_overcommit
    reserved = opts.reserved_memory_mib
    for name in sorted(hosts):
        if name == source:
            continue
        raw = hosts[name]
        try:
            in_maintenance = raw.get("maintenance", False)
            total = raw["memory_total_mib"]
            committable = raw["memory_committable_mib"]
            cpus = raw["vcpus_total"]
            domains = raw.get("domains")
            domains = [] if domains is None else domains
            if (in_maintenance.__class__ is not bool or not isinstance(total, _NUMBER_TYPES)
                    or not isinstance(committable, _NUMBER_TYPES) or not isinstance(cpus, _NUMBER_TYPES)
                    or not 0 <= committable <= total or cpus < 0 or not isinstance(domains, list)):
                raise ValueError()
        except (AttributeError, KeyError, TypeError, ValueError):
            # The slow checks name what is wrong.
            where = "hosts.%s" % name
            checked_mapping(where, raw)
            _bool(where, "maintenance", raw.get("maintenance", False))
            _bad_host_capacity(name, raw)
            host_domains(name, raw)
            raise ParameterError("%s is malformed" % where) from None
        if in_maintenance:
            maintenance.append(name)
            continue
        if name in opts.exclude:
            excluded.append(name)
            continue
        mem_used = cpu_used = 0
        if domains:
            try:
                mem_used, cpu_used = _host_usage(name, domains, count_shutoff, wanted, group_hosts)
            except (AttributeError, KeyError, TypeError, ValueError):
                for index, dom in enumerate(domains):
                    _bad_destination_domain(name, index, dom)
                raise ParameterError("hosts.%s.domains is malformed" % name) from None
        mem_cap, cpu_cap = host_capacity(committable, cpus, mem_ratio, cpu_ratio, reserved)
        destinations[name] = Destination(name, mem_cap, cpu_cap, mem_used, cpu_used)
    return destinations, maintenance, excluded, group_hosts


def index_prechecks(source, prechecks, names):
    """{domain name: {destination: the worst pre-check of that pair}} for this source."""
    out = {}
    if prechecks is None:
        return out
    if not isinstance(prechecks, list):
        raise ParameterError("prechecks must be a list")
    for index, raw in enumerate(prechecks):
        where = "prechecks[%d]" % index
        checked_mapping(where, raw)
        for key in ("domain", "source", "destination"):
            _text(where, key, raw.get(key))
        verdict = raw.get("verdict")
        if verdict not in VERDICTS:
            raise ParameterError("%s: verdict must be one of %s, not %r" % (where, ", ".join(VERDICTS), verdict))
        reasons = raw.get("reasons") or []
        if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
            raise ParameterError("%s: reasons must be a list of strings" % where)
        checked_number(where, "predicted_seconds", raw.get("predicted_seconds"), optional=True)
        checked_number(where, "predicted_downtime_ms", raw.get("predicted_downtime_ms"), optional=True)
        if raw.get("converges") is not None:
            _bool(where, "converges", raw.get("converges"))
        escalation = raw.get("escalation")
        if escalation is not None and escalation not in LADDER_ORDER:
            raise ParameterError("%s: escalation must be null or one of %s, not %r"
                                 % (where, ", ".join(LADDER_ORDER), escalation))
        if raw["source"] != source:
            continue  # pre-checks of other hosts' evacuations may come along
        name = names.get(raw["domain"])
        if name is None:
            continue
        pairs = out.setdefault(name, {})
        known = pairs.get(raw["destination"])
        if known is None or _VERDICT_RANK[verdict] > _VERDICT_RANK[known["verdict"]]:
            pairs[raw["destination"]] = raw
    return out
