# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""An evacuation plan: where each domain of a host goes, how, in which order, and how long.

Pure Python, no libvirt: it works on host facts (host_info) and pre-check results
(precheck). plan_evacuation() is the entry point; every domain of the source ends up in
exactly one of ``moves``, ``skipped`` and ``unplaceable`` - never silently dropped.

The steps:

1. validate the input (ParameterError naming the faulty host, domain and field);
2. decide each source domain's mode from its state, its ``do_not_migrate`` label and its
   blockers: live, cold, shutdown (in place), skipped, or unplaceable with a reason;
3. predict each live migration at its least bandwidth share; one that converges only with
   the whole budget runs alone ("exclusive");
4. place: largest domains first, each on the destination that has the largest share of
   its capacity still free (memory or vCPUs, whichever is scarcer), counting the moves
   already placed - a heap of destinations keyed by that share, so a domain costs about
   log(hosts) instead of a scan of every host;
5. schedule (the simulation of _prediction): exclusive migrations first, then longest
   first, under the concurrency limits and the shared bandwidth budget; domains shut down
   by policy go last, once every migration has finished.
"""

from __future__ import annotations

import heapq
import math
from operator import itemgetter

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import ParameterError
from ansible_collections.virtops.migration.plugins.module_utils._migration.ladder import (
    QEMU_DEFAULT_DOWNTIME_MS,
    Ladder,
)
from ansible_collections.virtops.migration.plugins.module_utils._module import EntryPoint
from ansible_collections.virtops.migration.plugins.module_utils._options import (
    CAPACITY,
    CONCURRENCY,
    LADDER,
    SOURCE,
    argument_spec,
)
from ansible_collections.virtops.migration.plugins.module_utils._planning.prediction import (
    DEFAULT_SETUP_SECONDS,
    LADDER_ORDER,
    Job,
    ladder_rank,
    predict_cold,
    predict_migration,
    simulate,
)

MIB = 1024 * 1024
# Assumed when the source's bandwidth was not measured and no budget is given: about what
# one 1 Gbit/s link carries. Deliberately low: an unmeasured plan should not promise speed.
DEFAULT_BANDWIDTH_MIB_S = 112.0
DEFAULT_SHUTDOWN_SECONDS = 30.0
# At most this many host names are listed per reason of an unplaceable domain.
MAX_NAMES = 5

# libvirt's domain states (virDomainState), as host_info reports them ("unknown" for a state
# newer than the code that read it).
DOMAIN_STATES = ("nostate", "running", "blocked", "paused", "shutdown", "shutoff", "crashed", "pmsuspended",
                 "unknown")
LIVE_STATES = frozenset(("running", "blocked", "paused"))
INACTIVE_STATES = frozenset(("shutoff", "crashed"))
POLICIES = ("skip", "cold", "shutdown")
UNCHECKED_PAIRS = ("auto", "allow", "deny")
LIVE_FALLBACKS = ("none", "cold")
VERDICTS = ("ok", "warn", "block")
_VERDICT_RANK = dict(ok=0, warn=1, block=2)

LIVE = "live"
COLD = "cold"
SHUTDOWN = "shutdown"

_PRECHECK_OPTIONS = dict(
    domain=dict(type="str", required=True),
    source=dict(type="str", required=True),
    destination=dict(type="str", required=True),
    verdict=dict(type="str", required=True, choices=list(VERDICTS)),
    reasons=dict(type="list", elements="str", default=[]),
    predicted_seconds=dict(type="float"),
    predicted_downtime_ms=dict(type="float"),
    converges=dict(type="bool"),
    escalation=dict(type="str"),
)

# The module's options: the shared ones as _options declares them (the planner predicts at
# QEMU's default downtime unless told otherwise), then those only the planner has.
EVACUATION_PLAN_ARGUMENT_SPEC = argument_spec(
    LADDER["max_downtime"].but(default=QEMU_DEFAULT_DOWNTIME_MS),
    *[option for name, option in LADDER.items() if name != "max_downtime"],
    CAPACITY, CONCURRENCY, SOURCE["source"].but(required=True),
    hosts=dict(type="dict", required=True),
    prechecks=dict(type="list", elements="dict", default=[], options=_PRECHECK_OPTIONS),
    unchecked_pairs=dict(type="str", default="auto", choices=list(UNCHECKED_PAIRS)),
    exclude=dict(type="list", elements="str", default=[]),
    count_shutoff_domains=dict(type="bool", default=True),
    do_not_migrate_default=dict(type="str", default="skip", choices=list(POLICIES)),
    live_fallback=dict(type="str", default="none", choices=list(LIVE_FALLBACKS)),
    bandwidth_budget_mib_s=dict(type="float"),
    assumed_dirty_rate_mib_s=dict(type="float", default=0.0),
    setup_seconds=dict(type="float", default=DEFAULT_SETUP_SECONDS),
    shutdown_seconds=dict(type="float", default=DEFAULT_SHUTDOWN_SECONDS),
)


# --- input validation ----------------------------------------------------------------

def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(where, key, value, allow_zero=True, optional=False):
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


def _mapping(where, value):
    if not isinstance(value, dict):
        raise ParameterError("%s must be a dictionary, not %s" % (where, type(value).__name__))
    return value


class PlanOptions(object):
    """The planning options (the module's parameters other than source, hosts, prechecks)."""

    def __init__(self, **params):
        merged = dict((k, v.get("default")) for k, v in EVACUATION_PLAN_ARGUMENT_SPEC.items()
                      if k not in ("source", "hosts", "prechecks"))
        unknown = sorted(set(params) - set(merged))
        if unknown:
            raise ParameterError("unknown planning options: %s" % ", ".join(unknown))
        merged.update((k, v) for k, v in params.items() if v is not None)
        where = "options"
        for key in ("memory_overcommit", "vcpu_overcommit"):
            _number(where, key, merged[key], allow_zero=False)
        _number(where, "reserved_memory_mib", merged["reserved_memory_mib"])
        for key in ("max_parallel_per_source", "max_parallel_per_destination"):
            value = merged[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ParameterError("%s must be an integer >= 1, not %r" % (key, value))
        _number(where, "bandwidth_budget_mib_s", merged["bandwidth_budget_mib_s"], allow_zero=False, optional=True)
        for key in ("assumed_dirty_rate_mib_s", "setup_seconds", "shutdown_seconds"):
            _number(where, key, merged[key])
        ladder = Ladder.from_params(merged)
        for key, choices in (("unchecked_pairs", UNCHECKED_PAIRS), ("do_not_migrate_default", POLICIES),
                             ("live_fallback", LIVE_FALLBACKS)):
            if merged[key] not in choices:
                raise ParameterError("%s must be one of %s, not %r" % (key, ", ".join(choices), merged[key]))
        exclude = merged["exclude"] or []
        if not isinstance(exclude, (list, tuple)) or not all(isinstance(h, str) for h in exclude):
            raise ParameterError("exclude must be a list of host names")
        _bool(where, "count_shutoff_domains", merged["count_shutoff_domains"])
        self.__dict__.update(merged)
        self.exclude = frozenset(exclude)
        self.ladder = ladder

    @classmethod
    def from_params(cls, params):
        keys = [k for k in EVACUATION_PLAN_ARGUMENT_SPEC if k not in ("source", "hosts", "prechecks")]
        return cls(**dict((k, params.get(k)) for k in keys))


class SourceDomain(object):
    """A domain of the source host, validated in full."""

    __slots__ = ("name", "uuid", "state", "persistent", "memory", "vcpus", "dirty_rate", "shared_storage",
                 "disk_mib", "blockers", "group", "policy")

    @property
    def active(self):
        return self.state not in INACTIVE_STATES

    @property
    def identity(self):
        return dict(domain=self.name, uuid=self.uuid)


def _source_domain(host, index, raw, default_policy):
    where = "hosts.%s.domains[%d]" % (host, index)
    _mapping(where, raw)
    dom = SourceDomain()
    dom.name = _text(where, "name", raw.get("name"))
    where = "hosts.%s.domains[%d] (%s)" % (host, index, dom.name)
    dom.uuid = _text(where, "uuid", raw.get("uuid"), optional=True)
    dom.state = raw.get("state")
    if dom.state not in DOMAIN_STATES:
        raise ParameterError("%s: state must be one of %s, not %r" % (where, ", ".join(DOMAIN_STATES), dom.state))
    dom.persistent = _bool(where, "persistent", raw.get("persistent"), default=True)
    dom.memory = _number(where, "memory_mib", raw.get("memory_mib"))
    dom.vcpus = _number(where, "vcpus", raw.get("vcpus"))
    dom.dirty_rate = _number(where, "dirty_rate_mib_s", raw.get("dirty_rate_mib_s"), optional=True)
    dom.shared_storage = _bool(where, "shared_storage", raw.get("shared_storage"), default=True)
    disk_bytes = raw.get("local_disk_bytes")
    if disk_bytes is None and not dom.shared_storage:
        raise ParameterError("%s: local_disk_bytes is required when shared_storage is false" % where)
    dom.disk_mib = 0.0 if dom.shared_storage else _number(where, "local_disk_bytes", disk_bytes) / float(MIB)
    blockers = raw.get("blockers")
    blockers = [] if blockers is None else blockers
    if not isinstance(blockers, list) or not all(isinstance(b, str) for b in blockers):
        raise ParameterError("%s: blockers must be a list of strings" % where)
    dom.blockers = blockers
    labels = raw.get("labels")
    labels = _mapping(where + ": labels", {} if labels is None else labels)
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
    return dom


def _host_capacity(name, raw, opts):
    where = "hosts.%s" % name
    total = _number(where, "memory_total_mib", raw.get("memory_total_mib"))
    committable = _number(where, "memory_committable_mib", raw.get("memory_committable_mib"))
    if committable > total:
        raise ParameterError("%s: memory_committable_mib (%s) exceeds memory_total_mib (%s)"
                             % (where, committable, total))
    vcpus = _number(where, "vcpus_total", raw.get("vcpus_total"))
    return (committable * opts.memory_overcommit - opts.reserved_memory_mib, vcpus * opts.vcpu_overcommit)


def _domains(name, raw):
    domains = raw.get("domains")
    if domains is None:
        return []
    if not isinstance(domains, list):
        raise ParameterError("hosts.%s: domains must be a list" % name)
    return domains


def _bad_destination_domain(host, index, raw):
    """Raise ParameterError naming what is wrong with a destination's domain, if anything."""
    where = "hosts.%s.domains[%d]" % (host, index)
    _mapping(where, raw)
    if raw.get("state") not in DOMAIN_STATES:
        raise ParameterError("%s: state must be one of %s, not %r"
                             % (where, ", ".join(DOMAIN_STATES), raw.get("state")))
    _bool(where, "persistent", raw.get("persistent"), default=True)
    _number(where, "memory_mib", raw.get("memory_mib"))
    _number(where, "vcpus", raw.get("vcpus"))
    labels = raw.get("labels")
    labels = _mapping(where + ": labels", {} if labels is None else labels)
    _text(where, "labels.anti_affinity", labels.get("anti_affinity"), optional=True)


class Destination(object):
    """A host that may receive domains: its capacity and what it already holds."""

    __slots__ = ("name", "mem_cap", "cpu_cap", "mem_used", "cpu_used", "version")

    def __init__(self, name, mem_cap, cpu_cap, mem_used, cpu_used):
        self.name = name
        self.mem_cap = mem_cap
        self.cpu_cap = cpu_cap
        self.mem_used = mem_used
        self.cpu_used = cpu_used
        self.version = 0

    def score(self):
        """Share of the scarcer resource still free; the highest is the least loaded."""
        if self.mem_cap <= 0 or self.cpu_cap <= 0:
            return -1.0
        return min((self.mem_cap - self.mem_used) / self.mem_cap, (self.cpu_cap - self.cpu_used) / self.cpu_cap)


_STATE_SET = frozenset(DOMAIN_STATES)
_NUMBER_TYPES = (int, float)


def _note_member(members, host, domain):
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
                    _note_member(group_hosts[group], name, dom.get("name"))
    if (mem_used.__class__ not in _NUMBER_TYPES or cpu_used.__class__ not in _NUMBER_TYPES
            or math.isnan(mem_used) or math.isnan(cpu_used)):
        raise TypeError()
    return mem_used, cpu_used


def _index_destinations(source, hosts, opts, groups):
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
                    or not 0 <= committable <= total or cpus < 0 or domains.__class__ is not list):
                raise ValueError()
        except (AttributeError, KeyError, TypeError, ValueError):
            # The slow checks name what is wrong.
            where = "hosts.%s" % name
            _mapping(where, raw)
            _bool(where, "maintenance", raw.get("maintenance", False))
            _host_capacity(name, raw, opts)
            _domains(name, raw)
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
        destinations[name] = Destination(name, committable * mem_ratio - reserved, cpus * cpu_ratio,
                                         mem_used, cpu_used)
    return destinations, maintenance, excluded, group_hosts


def _index_prechecks(source, prechecks, names):
    """{domain name: {destination: the worst pre-check of that pair}} for this source."""
    out = {}
    if prechecks is None:
        return out
    if not isinstance(prechecks, list):
        raise ParameterError("prechecks must be a list")
    for index, raw in enumerate(prechecks):
        where = "prechecks[%d]" % index
        _mapping(where, raw)
        for key in ("domain", "source", "destination"):
            _text(where, key, raw.get(key))
        verdict = raw.get("verdict")
        if verdict not in VERDICTS:
            raise ParameterError("%s: verdict must be one of %s, not %r" % (where, ", ".join(VERDICTS), verdict))
        reasons = raw.get("reasons") or []
        if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
            raise ParameterError("%s: reasons must be a list of strings" % where)
        _number(where, "predicted_seconds", raw.get("predicted_seconds"), optional=True)
        _number(where, "predicted_downtime_ms", raw.get("predicted_downtime_ms"), optional=True)
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


# --- reasons -------------------------------------------------------------------------

def _names(hosts):
    listed = ", ".join(hosts[:MAX_NAMES])
    if len(hosts) > MAX_NAMES:
        listed += " and %d more" % (len(hosts) - MAX_NAMES)
    return listed


def _count(number, word):
    return "%d %s%s" % (number, word, "" if number == 1 else "s")


class _Refusals(object):
    """Why destinations were refused for one domain, grouped for a person to read."""

    def __init__(self):
        self.blocked = []
        self.unchecked = []
        self.not_live = []
        self.affinity = []
        self.memory = []
        self.vcpus = []
        self.full = []

    def lines(self, dom, maintenance, excluded, destinations):
        out = []
        for host, reasons in self.blocked[:MAX_NAMES]:
            out.append("%s: pre-check blocked: %s" % (host, "; ".join(reasons) or "no reason given"))
        if len(self.blocked) > MAX_NAMES:
            out.append("%s more blocked by pre-checks" % _count(len(self.blocked) - MAX_NAMES, "destination"))
        if self.not_live:
            out.append("pre-check predicts the live migration does not converge, even with the ladder: %s"
                       % _names(self.not_live))
        if self.unchecked:
            out.append("no pre-check for the pair, and unchecked pairs are not allowed (unchecked_pairs): %s"
                       % _names(self.unchecked))
        if self.affinity:
            out.append("anti-affinity group %r already has a member on %s" % (
                dom.group, ", ".join("%s (%s)" % (h, d) for h, d in self.affinity[:MAX_NAMES])
                + ("" if len(self.affinity) <= MAX_NAMES else " and %d more" % (len(self.affinity) - MAX_NAMES))))
        # Destinations come in name order, and max() keeps the first of equals.
        for items, what, unit in ((self.memory, "memory for %s MiB" % _fmt(dom.memory), "MiB"),
                                  (self.vcpus, "vCPUs for %s" % _fmt(dom.vcpus), "vCPUs")):
            if items:
                host, free = max(items, key=itemgetter(1))
                out.append("not enough %s on %s (the most free: %s %s on %s): %s" % (
                    what, _count(len(items), "destination"), _fmt(free), unit, host,
                    _names([name for name, _free in items])))
        if self.full:
            out.append("no capacity at all (after overcommit and reserved memory): %s" % _names(self.full))
        if maintenance:
            out.append("in maintenance: %s" % _names(maintenance))
        if excluded:
            out.append("excluded: %s" % _names(excluded))
        if not destinations and not maintenance and not excluded:
            out.append("the inventory has no other host")
        return out


def _fmt(number):
    return ("%d" % number) if float(number).is_integer() else ("%.1f" % number)


# --- planning ------------------------------------------------------------------------

class _Planner(object):
    def __init__(self, source, hosts, prechecks, opts):
        self.source = source
        self.opts = opts
        _mapping("hosts", hosts)
        if not isinstance(source, str) or source not in hosts:
            raise ParameterError("source %r is not in hosts" % (source,))
        raw = _mapping("hosts.%s" % source, hosts[source])
        measured = _number("hosts.%s" % source, "migration_bandwidth_mib_s", raw.get("migration_bandwidth_mib_s"),
                           allow_zero=False, optional=True)
        self.budget_assumed = opts.bandwidth_budget_mib_s is None and measured is None
        self.budget = float(opts.bandwidth_budget_mib_s or measured or DEFAULT_BANDWIDTH_MIB_S)
        self.domains = []
        names = {}
        for index, item in enumerate(_domains(source, raw)):
            dom = _source_domain(source, index, item, opts.do_not_migrate_default)
            if dom.name in names:
                raise ParameterError("hosts.%s: two domains are named %r" % (source, dom.name))
            names[dom.name] = dom.name
            if dom.uuid:
                names.setdefault(dom.uuid, dom.name)
            self.domains.append(dom)
        self.by_name = dict((d.name, d) for d in self.domains)
        groups = set(d.group for d in self.domains if d.group is not None)
        (self.destinations, self.maintenance, self.excluded,
         self.group_hosts) = _index_destinations(source, hosts, opts, groups)
        self.unknown_excluded = sorted(h for h in opts.exclude if h not in hosts)
        self.prechecks = _index_prechecks(source, prechecks, names)
        if opts.unchecked_pairs == "auto":
            # Unchecked pairs are allowed only when this evacuation was not pre-checked at all.
            self.allow_unchecked = not any(isinstance(p, dict) and p.get("source") == source for p in prechecks)
        else:
            self.allow_unchecked = opts.unchecked_pairs == "allow"
        self.destination_names = sorted(self.destinations)
        self.destination_list = [self.destinations[name] for name in self.destination_names]
        self.moves = []
        self.skipped = []
        self.unplaceable = []
        self.heap = self.mem_heap = self.cpu_heap = None
        self.generation = 0
        self.explained = {}

    # -- step 2: what each domain needs ---------------------------------------------

    def classify(self):
        """Split the source's domains into skipped, shut down in place, unplaceable, to place."""
        to_place = []
        for dom in self.domains:
            policy = dom.policy
            if policy == "skip":
                self.skipped.append(dict(dom.identity, policy="skip", state=dom.state,
                                         reason="do_not_migrate: skip - left on the source as it is"))
                continue
            if policy == SHUTDOWN:
                if dom.active:
                    self.moves.append(self._move(dom, SHUTDOWN, None,
                                                 "do_not_migrate: shutdown - shut down on the source, not moved"))
                else:
                    self.skipped.append(dict(dom.identity, policy=SHUTDOWN, state=dom.state,
                                             reason="do_not_migrate: shutdown - already shut off, left defined "
                                                    "on the source"))
                continue
            if not dom.persistent and (policy == COLD or not dom.active):
                self._unplaceable(dom, ["transient domain: a cold move would lose its definition (define it "
                                        "persistently first)"])
                continue
            if policy == COLD:
                to_place.append((dom, COLD, "do_not_migrate: cold - shut down, moved, started on the destination"
                                 if dom.active else "do_not_migrate: cold - shut off, its definition is moved"))
            elif not dom.active:
                to_place.append((dom, COLD, "shut off: its definition%s is moved"
                                 % (" and %s MiB of local disks" % _fmt(round(dom.disk_mib)) if dom.disk_mib else "")))
            elif dom.state not in LIVE_STATES:
                self._unplaceable(dom, ["state %s cannot be migrated; retry once it is running or shut off"
                                        % dom.state])
            elif dom.blockers:
                why = "live migration blocked by: %s" % ", ".join(dom.blockers)
                if self._fallback_cold(dom, why):
                    to_place.append((dom, COLD, why + " - moved cold instead (live_fallback=cold)"))
            else:
                to_place.append((dom, LIVE, None))
        return to_place

    def _fallback_cold(self, dom, why, hint=""):
        """Whether a domain that cannot move live moves cold; if not, it is unplaceable."""
        if self.opts.live_fallback != COLD:
            self._unplaceable(dom, [why + " (live_fallback=cold would move it cold%s)" % hint])
            return False
        if not dom.persistent:
            self._unplaceable(dom, [why + "; and it is transient: a cold move would lose its definition"])
            return False
        return True

    def dirty_rate(self, dom):
        if dom.state == "paused":
            return 0.0
        return dom.dirty_rate if dom.dirty_rate is not None else self.opts.assumed_dirty_rate_mib_s

    def sends(self, dom, mode):
        return mode == LIVE or dom.disk_mib > 0

    # -- step 3: live migrations that cannot converge -------------------------------

    def check_convergence(self, to_place):
        """Live domains predicted not to converge at the least share they could get."""
        senders = sum(1 for dom, mode, _why in to_place if self.sends(dom, mode))
        least_share = self.budget / max(1, min(self.opts.max_parallel_per_source, senders))
        out = []
        for dom, mode, why in to_place:
            exclusive = False
            if mode == LIVE:
                at_least = predict_migration(dom.memory, self.dirty_rate(dom), least_share, dom.disk_mib,
                                             self.opts.ladder, self.opts.setup_seconds)
                if not at_least["converges"]:
                    alone = predict_migration(dom.memory, self.dirty_rate(dom), self.budget, dom.disk_mib,
                                              self.opts.ladder, self.opts.setup_seconds)
                    if alone["converges"]:
                        exclusive = True
                    else:
                        reason = "live migration predicted not to converge at the whole budget of %s MiB/s: %s" % (
                            _fmt(self.budget), alone["reason"])
                        if not self._fallback_cold(dom, reason, "; auto_converge or postcopy may make it converge"):
                            continue
                        mode, why = COLD, reason + " - moved cold instead (live_fallback=cold)"
            out.append((dom, mode, why, exclusive))
        return out

    # -- step 4: placement ----------------------------------------------------------

    @staticmethod
    def _precheck_refusal(mode, check):
        """Whether a pre-check forbids the pair: "blocked", "not_live" or None."""
        if check["verdict"] == "block":
            return "blocked"
        if mode == LIVE and check.get("converges") is False and check.get("escalation") is None:
            return "not_live"
        return None

    def _fits(self, dom, dest):
        if dest.mem_cap <= 0 or dest.cpu_cap <= 0:
            return False
        return not self._counts(dom) or (dest.mem_used + dom.memory <= dest.mem_cap
                                         and dest.cpu_used + dom.vcpus <= dest.cpu_cap)

    def _allowed(self, dom, mode, dest, pairs):
        """Whether ``dest`` may take ``dom`` now (explain() says why not)."""
        check = pairs.get(dest.name) if pairs else None
        if check is not None:
            if self._precheck_refusal(mode, check) is not None:
                return False
        elif not self.allow_unchecked:
            return False
        if dom.group is not None and dest.name in self.group_hosts[dom.group]:
            return False
        return self._fits(dom, dest)

    def _heaps(self):
        """Destinations by free share (to choose), by free memory and by free vCPUs (to give up early).

        Entries carry the destination's version; an assignment pushes fresh entries and the
        old ones are skipped when they surface.
        """
        if self.heap is None:
            dests = self.destinations.values()
            self.heap = [(-d.score(), d.name, d.version) for d in dests]
            self.mem_heap = [(d.mem_used - d.mem_cap, d.name, d.version) for d in dests]
            self.cpu_heap = [(d.cpu_used - d.cpu_cap, d.name, d.version) for d in dests]
            for heap in (self.heap, self.mem_heap, self.cpu_heap):
                heapq.heapify(heap)
        return self.heap

    def _most_free(self, heap):
        while heap and heap[0][2] != self.destinations[heap[0][1]].version:
            heapq.heappop(heap)
        return -heap[0][0] if heap else 0

    def _counts(self, dom):
        return dom.active or self.opts.count_shutoff_domains

    def choose(self, dom, mode):
        """The least-loaded destination that can take ``dom``, or None."""
        pairs = self.prechecks.get(dom.name)
        if not self.allow_unchecked:
            # Only pre-checked pairs qualify: look at those alone, not at the inventory.
            best = None
            for name in sorted(pairs or ()):
                dest = self.destinations.get(name)
                if dest is None or not self._allowed(dom, mode, dest, pairs):
                    continue
                key = (-dest.score(), dest.name)
                if best is None or key < best[0]:
                    best = (key, dest)
            return best[1] if best else None
        heap = self._heaps()
        if self._counts(dom) and (dom.memory > self._most_free(self.mem_heap)
                                  or dom.vcpus > self._most_free(self.cpu_heap)):
            return None  # no destination has that much memory (or vCPUs) free
        rejected = []
        found = None
        while heap:
            entry = heapq.heappop(heap)
            dest = self.destinations[entry[1]]
            if entry[2] != dest.version:
                continue  # stale: the destination was re-pushed with its new load
            rejected.append(entry)
            if self._allowed(dom, mode, dest, pairs):
                found = dest
                break
        for entry in rejected:
            heapq.heappush(heap, entry)
        return found

    def assign(self, dom, dest):
        if self._counts(dom):
            dest.mem_used += dom.memory
            dest.cpu_used += dom.vcpus
        if dom.group is not None:
            _note_member(self.group_hosts[dom.group], dest.name, dom.name)
        dest.version += 1
        self.generation += 1
        if self.heap is not None:
            heapq.heappush(self.heap, (-dest.score(), dest.name, dest.version))
            heapq.heappush(self.mem_heap, (dest.mem_used - dest.mem_cap, dest.name, dest.version))
            heapq.heappush(self.cpu_heap, (dest.cpu_used - dest.cpu_cap, dest.name, dest.version))

    def explain(self, dom, mode):
        """Why no destination takes ``dom``, grouped by reason (see _Refusals).

        Costs a pass over the destinations, so identical requests are answered once per
        state of the plan: in a full inventory every domain of the same size, group and
        mode is refused for the same reasons.
        """
        pairs = self.prechecks.get(dom.name) or {}
        key = None
        if not pairs:
            key = (self.generation, dom.memory, dom.vcpus, self._counts(dom), dom.group, mode)
            if key in self.explained:
                return self.explained[key]
        refusals = _Refusals()
        refused = set()
        for name in sorted(pairs):
            if name not in self.destinations:
                continue
            why = self._precheck_refusal(mode, pairs[name])
            if why == "blocked":
                refusals.blocked.append((name, pairs[name].get("reasons") or []))
            elif why == "not_live":
                refusals.not_live.append(name)
            if why is not None:
                refused.add(name)
        if self.allow_unchecked:
            candidates = self.destination_list
        else:
            refusals.unchecked = [name for name in self.destination_names if name not in pairs]
            candidates = [self.destinations[name] for name in sorted(pairs)
                          if name in self.destinations and name not in refused]
        if dom.group is not None:
            members = self.group_hosts[dom.group]
            for name in sorted(members):
                if name in self.destinations and name not in refused and (self.allow_unchecked or name in pairs):
                    refusals.affinity.append((name, members[name] or "unnamed domain"))
                    refused.add(name)
        counts = self._counts(dom)
        memory, vcpus = dom.memory, dom.vcpus
        for dest in candidates:
            if dest.mem_cap <= 0 or dest.cpu_cap <= 0:
                if dest.name not in refused:
                    refusals.full.append(dest.name)
            elif counts and dest.mem_used + memory > dest.mem_cap:
                if dest.name not in refused:
                    refusals.memory.append((dest.name, dest.mem_cap - dest.mem_used))
            elif counts and dest.cpu_used + vcpus > dest.cpu_cap:
                if dest.name not in refused:
                    refusals.vcpus.append((dest.name, dest.cpu_cap - dest.cpu_used))
        lines = refusals.lines(dom, self.maintenance, self.excluded, self.destinations)
        if key is not None:
            self.explained[key] = lines
        return lines

    def place(self, candidates):
        placed = []
        # Largest first, so the big domains find room before the small ones fill it.
        for dom, mode, why, exclusive in sorted(candidates, key=lambda c: (-c[0].memory, -c[0].vcpus, c[0].name)):
            dest = self.choose(dom, mode)
            if dest is None:
                self._unplaceable(dom, self.explain(dom, mode))
                continue
            self.assign(dom, dest)
            placed.append((dom, mode, why, exclusive, dest.name))
        return placed

    # -- step 5: schedule -----------------------------------------------------------

    def schedule(self, placed):
        opts = self.opts
        details = {}
        jobs = []

        def duration_of(dom, mode, dest):
            check = (self.prechecks.get(dom.name) or {}).get(dest)

            def duration(share):
                if mode == LIVE:
                    pred = predict_migration(dom.memory, self.dirty_rate(dom), share, dom.disk_mib,
                                             opts.ladder, opts.setup_seconds)
                    if not pred["converges"]:
                        # Only exclusive jobs, predicted here before they get the whole budget.
                        pred = predict_migration(dom.memory, self.dirty_rate(dom), self.budget, dom.disk_mib,
                                                 opts.ladder, opts.setup_seconds)
                    seconds, downtime, escalation = pred["seconds"], pred["downtime_ms"], pred["escalation"]
                    # A pre-check predicted this pair at its own measured bandwidth: never promise better.
                    if check is not None:
                        if check.get("predicted_seconds") is not None:
                            seconds = max(seconds, check["predicted_seconds"])
                        if check.get("predicted_downtime_ms") is not None:
                            downtime = max(downtime, int(round(check["predicted_downtime_ms"])))
                        if ladder_rank(check.get("escalation")) > ladder_rank(escalation):
                            escalation = check["escalation"]
                else:
                    seconds, downtime = predict_cold(dom.disk_mib, share or self.budget, dom.active,
                                                     opts.setup_seconds, opts.shutdown_seconds)
                    downtime = int(round(downtime))
                    escalation = None
                details[dom.name] = (seconds, downtime, escalation)
                return seconds
            return duration

        # Longest first (at the least share), which keeps the tail of the schedule short.
        ordered = []
        for dom, mode, why, exclusive, dest in placed:
            sends = self.sends(dom, mode)
            job = Job(dom.name, dest, duration_of(dom, mode, dest), sends=sends, exclusive=exclusive)
            nominal = job.duration(self.budget / max(1, opts.max_parallel_per_source)) if sends else 0.0
            ordered.append((-nominal, dom.name, job))
        ordered.sort(key=lambda item: item[:2])
        jobs = [item[2] for item in ordered]
        slots = simulate(jobs, self.budget, opts.max_parallel_per_source, opts.max_parallel_per_destination)
        sent_mib = 0.0
        for dom, mode, why, exclusive, dest in placed:
            slot = slots[dom.name]
            seconds, downtime, escalation = details[dom.name]  # from the run at its share
            move = self._move(dom, mode, dest, why)
            move.update(order=slot["order"], wave=slot["wave"], start_offset_s=round(slot["start"], 1),
                        finish_offset_s=round(slot["finish"], 1), predicted_seconds=round(seconds, 1),
                        predicted_downtime_ms=downtime, bandwidth_mib_s=round(slot["bandwidth"], 1),
                        escalation=escalation, exclusive=exclusive)
            check = (self.prechecks.get(dom.name) or {}).get(dest)
            if check is not None and check["verdict"] == "warn":
                move["warnings"].extend("pre-check: %s" % r for r in (check.get("reasons") or []))
            if mode == COLD and dom.blockers:
                move["warnings"].append("devices that block live migration (%s) must exist on %s to start it there"
                                        % (", ".join(dom.blockers), dest))
            if self.sends(dom, mode):
                sent_mib += (dom.memory if mode == LIVE else 0.0) + dom.disk_mib
            self.moves.append(move)
        makespan = max([s["finish"] for s in slots.values()] or [0.0])
        return makespan, sent_mib

    def finish_shutdowns(self, makespan):
        """Domains shut down by policy go last: an aborted evacuation leaves them running."""
        last_wave = max([m["wave"] for m in self.moves if m["mode"] != SHUTDOWN] or [0])
        order = max([m["order"] for m in self.moves if m["mode"] != SHUTDOWN] or [0])
        end = makespan
        for move in sorted((m for m in self.moves if m["mode"] == SHUTDOWN), key=lambda m: m["domain"]):
            order += 1
            move.update(order=order, wave=last_wave + 1, start_offset_s=round(makespan, 1),
                        finish_offset_s=round(makespan + self.opts.shutdown_seconds, 1),
                        predicted_seconds=round(self.opts.shutdown_seconds, 1), predicted_downtime_ms=None,
                        bandwidth_mib_s=0.0, escalation=None, exclusive=False)
            end = makespan + self.opts.shutdown_seconds
        return end

    # -- output ---------------------------------------------------------------------

    def _move(self, dom, mode, destination, reason):
        # Every key is set here, in the order a person reads them; the schedule fills in the rest.
        return dict(dom.identity, destination=destination, mode=mode, reason=reason, order=None, wave=None,
                    start_offset_s=None, finish_offset_s=None, predicted_seconds=None, predicted_downtime_ms=None,
                    bandwidth_mib_s=None, escalation=None, exclusive=False, state=dom.state, memory_mib=dom.memory,
                    vcpus=dom.vcpus, local_disk_mib=round(dom.disk_mib, 1), warnings=[])

    def _unplaceable(self, dom, reasons):
        self.unplaceable.append(dict(dom.identity, state=dom.state, reasons=reasons))

    def run(self):
        to_place = self.classify()
        candidates = self.check_convergence(to_place)
        placed = self.place(candidates)
        makespan, self.sent_mib = self.schedule(placed)
        total = self.finish_shutdowns(makespan)
        bound = self.sent_mib / self.budget
        self.moves.sort(key=lambda m: m["order"])
        self.skipped.sort(key=lambda s: s["domain"])
        self.unplaceable.sort(key=lambda u: u["domain"])
        stays_running = [s["domain"] for s in self.skipped if s["state"] not in INACTIVE_STATES]
        can_empty = not self.unplaceable and not stays_running
        destinations = {}
        for move in self.moves:
            if move["destination"] is None:
                continue
            dest = self.destinations[move["destination"]]
            entry = destinations.setdefault(dest.name, dict(
                moves=0, memory_mib=0, vcpus=0,
                memory_free_after_mib=round(dest.mem_cap - dest.mem_used, 1),
                vcpus_free_after=round(dest.cpu_cap - dest.cpu_used, 1)))
            entry["moves"] += 1
            entry["memory_mib"] += move["memory_mib"]
            entry["vcpus"] += move["vcpus"]
        result = dict(
            changed=False,
            source=self.source,
            can_empty=can_empty,
            moves=self.moves,
            skipped=self.skipped,
            unplaceable=self.unplaceable,
            destinations=destinations,
            predicted_total_seconds=round(total, 1),
            bound_seconds=round(bound, 1),
            bandwidth_budget_mib_s=round(self.budget, 1),
        )
        result["summary"] = self.summary(result, stays_running)
        return result

    def summary(self, result, stays_running):
        moves = result["moves"]
        by_mode = dict((mode, sum(1 for m in moves if m["mode"] == mode)) for mode in (LIVE, COLD, SHUTDOWN))
        lines = []
        head = "%s %s: %d domains - %d live, %d cold, %d shut down in place, %d skipped, %d unplaceable" % (
            self.source, "can be emptied" if result["can_empty"] else "cannot be emptied", len(self.domains),
            by_mode[LIVE], by_mode[COLD], by_mode[SHUTDOWN], len(result["skipped"]), len(result["unplaceable"]))
        lines.append(head + ".")
        if result["unplaceable"]:
            lines.append("Unplaceable: %s." % _names([u["domain"] for u in result["unplaceable"]]))
        if stays_running:
            lines.append("Skipped by policy and still running on the source: %s." % _names(stays_running))
        if moves:
            lines.append("Predicted %s s in total (no faster than %s s: %s MiB over %s MiB/s); %s, at most %d per "
                         "source and %d per destination at a time." % (
                             _fmt(result["predicted_total_seconds"]), _fmt(result["bound_seconds"]),
                             _fmt(round(self.sent_mib)), _fmt(self.budget),
                             _count(len(result["destinations"]), "destination"),
                             self.opts.max_parallel_per_source, self.opts.max_parallel_per_destination))
        escalated = [m for m in moves if m.get("escalation")]
        if escalated:
            lines.append("Escalations predicted: %s." % ", ".join(
                "%s (%s)" % (m["domain"], m["escalation"]) for m in escalated[:MAX_NAMES])
                + ("" if len(escalated) <= MAX_NAMES else " and %d more" % (len(escalated) - MAX_NAMES)))
        worst = max((m for m in moves if m["mode"] == LIVE), key=lambda m: (m["predicted_downtime_ms"], m["domain"]),
                    default=None)
        if worst is not None:
            lines.append("Longest live downtime: %d ms (%s)." % (worst["predicted_downtime_ms"], worst["domain"]))
        assumed = []
        if self.budget_assumed:
            assumed.append("the source's bandwidth was not measured: %s MiB/s assumed" % _fmt(self.budget))
        unmeasured = sum(1 for m in moves if m["mode"] == LIVE and m["state"] != "paused"
                         and self.by_name[m["domain"]].dirty_rate is None)
        if unmeasured:
            assumed.append("dirty rate not measured for %s: %s MiB/s assumed" % (
                _count(unmeasured, "domain"), _fmt(self.opts.assumed_dirty_rate_mib_s)))
        if self.unknown_excluded:
            assumed.append("exclude names hosts not in the inventory: %s" % _names(self.unknown_excluded))
        if assumed:
            lines.append("Note: %s." % "; ".join(assumed))
        return lines


def plan_evacuation(source, hosts, prechecks=None, options=None):
    """Plan the evacuation of ``source``; see the module's RETURN for what comes back.

    ``options`` is a PlanOptions (defaults when None). Raises ParameterError on bad input.
    """
    opts = options if options is not None else PlanOptions()
    return _Planner(source, hosts, prechecks or [], opts).run()


def invocation(params):
    """What the module echoes as its invocation: its parameters, the bulky facts summarised.

    AnsibleModule echoes every parameter back by default; with a large inventory that is
    tens of megabytes of host facts copied, scanned for secrets and serialised once more,
    for nothing.
    """
    args = dict(params)
    hosts = params.get("hosts")
    if isinstance(hosts, dict):
        domains = sum(len(h.get("domains") or []) for h in hosts.values() if isinstance(h, dict))
        args["hosts"] = "(facts of %d hosts with %d domains, not echoed)" % (len(hosts), domains)
    prechecks = params.get("prechecks")
    if isinstance(prechecks, list) and len(prechecks) > 20:
        args["prechecks"] = "(%d pre-check results, not echoed)" % len(prechecks)
    return dict(module_args=args)


def run_evacuation_plan(params):
    """The module's entry point: its parameters in, its result out."""
    opts = PlanOptions.from_params(params)
    return plan_evacuation(params["source"], params["hosts"], params.get("prechecks"), opts)


def _run_module(module):
    return run_evacuation_plan(module.params)


# The evacuation_plan module: it only plans, on the control node, so it opens no connection and
# needs no libvirt; it echoes a summary of its bulky input instead of all of it.
EVACUATION_PLAN_MODULE = EntryPoint(_run_module, EVACUATION_PLAN_ARGUMENT_SPEC, connection=False,
                                    invocation=invocation)
