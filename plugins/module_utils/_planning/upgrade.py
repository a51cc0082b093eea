# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""A rolling upgrade's schedule for the whole fleet, computed once, before anything moves.

Which hosts go in which wave, where each running domain goes, the predicted time, and what
blocks the upgrade. The rules:

- only running (active) domains move: a shut-off domain stays defined on its host, whose
  new QEMU starts it as well as the old one did;
- a domain goes preferably to a host already at the target version, where it moves once;
  only when none has room does it go to a host not yet upgraded (it then moves again when
  that host's turn comes);
- never from a host at the target to one that is not (new to old), and never to a host whose
  QEMU lacks the domain's machine type;
- capacity and anti-affinity as the evacuation planner counts them; a host in maintenance
  or excluded is no destination;
- a wave holds up to ``max_hosts_per_wave`` hosts, those with the least to move first; the
  hosts of one wave never receive each other's domains.

The scheduler keeps two heaps of destinations by free memory (upgraded, not upgraded) and
one of the hosts still to upgrade by the memory they would move, all with lazy
invalidation, so a fleet costs about (hosts + domains) x log(hosts), not hosts squared.
"""

from __future__ import annotations

import heapq
import re

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import ParameterError
from ansible_collections.virtops.migration.plugins.module_utils._module import EntryPoint
from ansible_collections.virtops.migration.plugins.module_utils._option_spec import argument_spec, check_bounds
from ansible_collections.virtops.migration.plugins.module_utils._options import (
    BOUNDS,
    CAPACITY,
    CONCURRENCY,
    DO_NOT_MIGRATE_POLICIES as POLICIES,
    FACTS,
    PLANNING,
)
from ansible_collections.virtops.migration.plugins.module_utils._planning.inputs import (
    DEFAULT_BANDWIDTH_MIB_S,
    LIVE_STATES,
    checked_number,
    host_capacity,
)

DEFAULT_UPGRADE_SECONDS = 300.0
VERSION_PATTERN = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?$")
# A versioned machine type: pc-q35-7.2, pc-i440fx-10.0, virt-9.2 ...
MACHINE_PATTERN = re.compile(r"^(.*?)-(\d+)\.(\d+)$")

UPGRADE_PLAN_ARGUMENT_SPEC = argument_spec(
    CAPACITY, CONCURRENCY, FACTS, PLANNING,
    target_qemu_version=dict(type="str"),
    max_hosts_per_wave=dict(type="int", default=1),
    continue_on_blocked=dict(type="bool", default=False),
    bandwidth_mib_s=dict(type="float", default=DEFAULT_BANDWIDTH_MIB_S),
    upgrade_seconds=dict(type="float", default=DEFAULT_UPGRADE_SECONDS),
)


def parse_version(where, text):
    match = VERSION_PATTERN.match(text or "") if isinstance(text, str) else None
    if not match:
        raise ParameterError("%s must be a version such as 10.0.0, not %r" % (where, text))
    return tuple(int(part or 0) for part in match.groups())


class _Vm(object):
    __slots__ = ("name", "host", "memory", "vcpus", "group", "policy", "machine", "arch", "moves")

    def __init__(self, name, host, memory, vcpus, group, policy, machine, arch):
        self.name = name
        self.host = host
        self.memory = memory
        self.vcpus = vcpus
        self.group = group
        self.policy = policy
        self.machine = machine
        self.arch = arch
        self.moves = 0


class _Host(object):
    __slots__ = ("name", "mem_cap", "cpu_cap", "mem_used", "cpu_used", "groups", "vms", "upgraded", "machines",
                 "destination", "version", "todo")

    def __init__(self, name, mem_cap, cpu_cap, upgraded, machines, destination):
        self.name = name
        self.mem_cap = mem_cap
        self.cpu_cap = cpu_cap
        self.mem_used = 0.0
        self.cpu_used = 0.0
        self.groups = {}
        self.vms = {}
        self.upgraded = upgraded
        self.machines = machines
        self.destination = destination
        self.version = 0
        self.todo = False

    @property
    def mem_free(self):
        return self.mem_cap - self.mem_used

    def add(self, vm):
        self.vms[vm.name] = vm
        self.mem_used += vm.memory
        self.cpu_used += vm.vcpus
        if vm.group:
            self.groups[vm.group] = self.groups.get(vm.group, 0) + 1
        vm.host = self.name
        self.version += 1

    def remove(self, vm):
        del self.vms[vm.name]
        self.mem_used -= vm.memory
        self.cpu_used -= vm.vcpus
        if vm.group:
            self.groups[vm.group] -= 1
        self.version += 1

    def movable_memory(self):
        return sum(vm.memory for vm in self.vms.values() if vm.policy != "shutdown")

    def takes(self, vm):
        """Whether ``vm`` may run here now: room, anti-affinity, machine type."""
        if vm.memory > self.mem_free + 1e-9 or vm.vcpus > self.cpu_cap - self.cpu_used + 1e-9:
            return False
        if vm.group and self.groups.get(vm.group):
            return False
        offered = self.machines.get(vm.arch)
        return not (vm.machine and offered is not None and vm.machine not in offered)


class _Pool(object):
    """Destinations by free memory, most free first, with lazy invalidation."""

    def __init__(self):
        self.heap = []

    def push(self, host):
        heapq.heappush(self.heap, (-host.mem_free, host.name, host.version, host))

    def find(self, vm, banned):
        """The host with the most free memory that takes ``vm`` (and is not banned), or None."""
        stash = []
        found = None
        while self.heap:
            neg_free, _name, version, host = self.heap[0]
            if version != host.version or not host.destination:
                heapq.heappop(self.heap)
                continue
            if -neg_free + 1e-9 < vm.memory:
                break
            heapq.heappop(self.heap)
            stash.append(host)
            if host.name not in banned and host.takes(vm):
                found = host
                break
        for host in stash:
            self.push(host)
        return found


class _Schedule(object):
    def __init__(self, hosts, params):
        self.params = params
        # Without a target, every host is to be upgraded (the packages' own versions decide).
        self.target = (parse_version("target_qemu_version", params["target_qemu_version"])
                       if params["target_qemu_version"] is not None else None)
        self.hosts = {}
        self.blocked = {}
        exclude = set(params["exclude"] or [])
        for name in sorted(hosts):
            self._add_host(name, hosts[name], name not in exclude)
        # What an upgraded host's QEMU offers: its own machine types (QEMU keeps the old ones) and those of the
        # hosts already at the target, the only ones known of the new version.
        self.target_machines = {}
        for host in self.hosts.values():
            if host.upgraded:
                for arch, machines in host.machines.items():
                    self.target_machines[arch] = self.target_machines.get(arch, frozenset()) | machines
        self.upgraded = _Pool()
        self.old = _Pool()
        for host in self.hosts.values():
            (self.upgraded if host.upgraded else self.old).push(host)

    def _add_host(self, name, raw, eligible):
        where = "hosts.%s" % name
        if not isinstance(raw, dict):
            raise ParameterError("%s must be the host_info facts of that host" % where)
        params = self.params
        committable = checked_number(where, "memory_committable_mib", raw.get("memory_committable_mib"))
        vcpus = checked_number(where, "vcpus_total", raw.get("vcpus_total"))
        version = parse_version(where + ".qemu_version", raw.get("qemu_version"))
        machines = dict((arch, frozenset(entry.get("machines") or []))
                        for arch, entry in (raw.get("guests") or {}).items() if isinstance(entry, dict))
        mem_cap, cpu_cap = host_capacity(committable, vcpus, params["memory_overcommit"], params["vcpu_overcommit"],
                                         params["reserved_memory_mib"])
        host = _Host(name, mem_cap, cpu_cap, self.target is not None and version >= self.target, machines,
                     eligible and not raw.get("maintenance"))
        host.todo = eligible and not host.upgraded
        domains = raw.get("domains") or []
        if not isinstance(domains, list):
            raise ParameterError("%s.domains must be a list" % where)
        for index, dom in enumerate(domains):
            vm = self._vm(name, "%s.domains[%d]" % (where, index), dom)
            if vm is not None:
                host.add(vm)
        self.hosts[name] = host
        stuck = sorted(vm.name for vm in host.vms.values() if vm.policy == "skip")
        if host.todo and stuck:
            self.blocked[name] = ["%s must not migrate (do_not_migrate: skip)" % ", ".join(stuck)]
            host.todo = False

    def _vm(self, host, where, raw):
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise ParameterError("%s must be a domain with a name" % where)
        if raw.get("state") not in LIVE_STATES:
            return None
        labels = raw.get("labels") or {}
        policy = labels.get("do_not_migrate")
        if policy is True:
            policy = self.params["do_not_migrate_default"]
        if policy not in (None, False) + POLICIES:
            raise ParameterError("%s: labels.do_not_migrate must be null, true or one of %s, not %r"
                                 % (where, ", ".join(POLICIES), policy))
        return _Vm(raw["name"], host, checked_number(where, "memory_mib", raw.get("memory_mib")),
                   checked_number(where, "vcpus", raw.get("vcpus")), labels.get("anti_affinity"), policy or None,
                   raw.get("machine"), raw.get("arch"))

    # --- emptying one host --------------------------------------------------------------

    def _empty(self, host, wave):
        """Place every domain of ``host`` that must move; None (and nothing changed) when one has no room."""
        banned = set(wave) | {host.name}
        placed = []
        for vm in sorted(host.vms.values(), key=lambda v: (-v.memory, v.name)):
            if vm.policy == "shutdown":
                continue
            dest = self.upgraded.find(vm, banned)
            if dest is None and not host.upgraded:
                dest = self.old.find(vm, banned)
            if dest is None:
                for vm_back, dest_back in reversed(placed):
                    dest_back.remove(vm_back)
                    (self.upgraded if dest_back.upgraded else self.old).push(dest_back)
                    vm_back.host = host.name
                return None, "%s (%d MiB, %g vCPUs) has no destination with room%s" % (
                    vm.name, vm.memory, vm.vcpus, " outside its anti-affinity group %s" % vm.group if vm.group else "")
            dest.add(vm)
            (self.upgraded if dest.upgraded else self.old).push(dest)
            placed.append((vm, dest))
        return placed, None

    def _queue(self, todo, host):
        heapq.heappush(todo, (host.movable_memory(), host.name, host.version, host))

    def run(self):
        """The waves, in order; hosts that can never be emptied end up in ``blocked``."""
        todo = []
        for host in self.hosts.values():
            if host.todo:
                self._queue(todo, host)
        waves = []
        while todo:
            wave, moves, tried = [], [], {}
            while todo and len(wave) < self.params["max_hosts_per_wave"]:
                _load, _name, version, host = heapq.heappop(todo)
                if not host.todo or host.name in tried:
                    continue
                if version != host.version:
                    # It received domains since it was queued: queue it again by what it holds now.
                    self._queue(todo, host)
                    continue
                placed, why = self._empty(host, [h.name for h in wave])
                if placed is None:
                    tried[host.name] = (host, why)
                    continue
                for vm, dest in placed:
                    host.remove(vm)
                    vm.moves += 1
                    moves.append(dict(domain=vm.name, source=host.name, destination=dest.name,
                                      mode="cold" if vm.policy == "cold" else "live",
                                      to_upgraded=dest.upgraded, seconds=self._seconds(vm)))
                wave.append(host)
            if not wave:
                # Nothing left can be emptied, even with every other host upgraded and empty of it.
                for host, why in tried.values():
                    self.blocked[host.name] = [why]
                    host.todo = False
                break
            for host, _why in tried.values():
                self._queue(todo, host)
            for host in wave:
                # Emptied, upgraded, back: a destination on the new version from now on.
                host.todo = False
                host.upgraded = True
                for arch, machines in self.target_machines.items():
                    host.machines[arch] = host.machines.get(arch, frozenset()) | machines
                host.version += 1
                self.upgraded.push(host)
            waves.append(self._wave(len(waves) + 1, wave, moves))
        return waves

    def _seconds(self, vm):
        params = self.params
        seconds = params["setup_seconds"] + vm.memory / params["bandwidth_mib_s"]
        if vm.policy == "cold":
            seconds += params["shutdown_seconds"]
        return round(seconds, 1)

    def _wave(self, number, hosts, moves):
        params = self.params
        out_of, into = {}, {}
        for move in moves:
            out_of[move["source"]] = out_of.get(move["source"], 0.0) + move["seconds"]
            into[move["destination"]] = into.get(move["destination"], 0.0) + move["seconds"]
        # The wave's hosts are emptied at once: the busiest source or destination sets its pace.
        moving = max([max(out_of.values()) / params["max_parallel_per_source"],
                      max(into.values()) / params["max_parallel_per_destination"]]) if moves else 0.0
        shutdowns = sorted(vm.name for host in hosts for vm in host.vms.values() if vm.policy == "shutdown")
        return dict(wave=number, hosts=[host.name for host in hosts], moves=moves, shut_down_in_place=shutdowns,
                    predicted_seconds=round(moving + params["upgrade_seconds"]
                                            + (params["shutdown_seconds"] if shutdowns else 0.0), 1))


def _check(params):
    # The module wrapper checked the bounds already; plan_upgrade's other callers (the benchmark,
    # the tests) pass parameters that did not go through it.
    check_bounds(params, BOUNDS)
    exclude = params["exclude"] or []
    if not all(isinstance(name, str) for name in exclude):
        raise ParameterError("exclude must be a list of host names")


def machine_advice(hosts, target):
    """Per machine type of a running domain: the newest of its family the upgraded hosts offer."""
    offered = {}
    for raw in hosts.values():
        if target is None or parse_version("qemu_version", raw.get("qemu_version")) < target:
            continue
        for arch, entry in (raw.get("guests") or {}).items():
            for machine in entry.get("machines") or []:
                match = MACHINE_PATTERN.match(machine)
                if match:
                    key = (arch, match.group(1))
                    version = (int(match.group(2)), int(match.group(3)))
                    if version > offered.get(key, ((0, 0), None))[0]:
                        offered[key] = (version, machine)
    advice = {}
    for raw in hosts.values():
        for dom in raw.get("domains") or []:
            match = MACHINE_PATTERN.match(dom.get("machine") or "")
            if not match or dom.get("state") not in LIVE_STATES:
                continue
            newest = offered.get((dom.get("arch"), match.group(1)))
            if newest and newest[0] > (int(match.group(2)), int(match.group(3))):
                entry = advice.setdefault(dom["machine"], dict(machine=dom["machine"], newest=newest[1], domains=[]))
                entry["domains"].append(dom["name"])
    return [dict(entry, domains=sorted(entry["domains"])) for _key, entry in sorted(advice.items())]


def plan_upgrade(hosts, params):
    """The schedule: waves, blockers, totals, machine-type advice and lines for people."""
    _check(params)
    if not isinstance(hosts, dict):
        raise ParameterError("hosts must be the host_info facts of every hypervisor, by name")
    schedule = _Schedule(hosts, params)
    waves = schedule.run()
    blocked = [dict(host=name, reasons=reasons) for name, reasons in sorted(schedule.blocked.items())]
    vms = dict((vm.name, vm) for host in schedule.hosts.values() for vm in host.vms.values())
    moved = [vm for vm in vms.values() if vm.moves]
    moves = sum(vm.moves for vm in moved)
    total = round(sum(wave["predicted_seconds"] for wave in waves), 1)
    upgraded_now = set(name for wave in waves for name in wave["hosts"])
    already = sorted(name for name, host in schedule.hosts.items() if host.upgraded and name not in upgraded_now)
    excluded = sorted(set(params["exclude"] or []) & set(hosts))
    totals = dict(hosts=len(hosts), already_upgraded=len(already), to_upgrade=sum(len(w["hosts"]) for w in waves),
                  blocked=len(blocked), waves=len(waves), domains_moved=len(moved), moves=moves,
                  moves_per_moved_domain=round(moves / len(moved), 2) if moved else 0.0,
                  moved_twice=sum(1 for vm in moved if vm.moves > 1), predicted_total_seconds=total)
    can_upgrade = not blocked
    advice = machine_advice(hosts, schedule.target)
    lines = ["%s: %d waves upgrade %d of %d hosts%s (%d already there%s); %d domains move %d times "
             "(%.2f moves each, %d twice); predicted %s s." % (
                 "The fleet can be upgraded" if can_upgrade else "The fleet CANNOT be upgraded in full",
                 len(waves), totals["to_upgrade"], len(hosts),
                 " to QEMU %s" % params["target_qemu_version"] if params["target_qemu_version"] else "", len(already),
                 ", %d excluded" % len(excluded) if excluded else "", len(moved), moves,
                 totals["moves_per_moved_domain"], totals["moved_twice"], total)]
    for wave in waves:
        onto = sum(1 for move in wave["moves"] if move["to_upgraded"])
        lines.append("  wave %-4d %-30s %3d moves (%d onto upgraded hosts)%s  %s s" % (
            wave["wave"], ", ".join(wave["hosts"]), len(wave["moves"]), onto,
            ", %d shut down in place" % len(wave["shut_down_in_place"]) if wave["shut_down_in_place"] else "",
            wave["predicted_seconds"]))
    for item in blocked:
        lines.append("  BLOCKED: %s: %s" % (item["host"], "; ".join(item["reasons"])))
    for entry in advice:
        lines.append("  machine type %s (%d domains): keep it pinned while the fleet is mixed; %s can be used once "
                     "every host is upgraded and the domains restart" % (entry["machine"], len(entry["domains"]),
                                                                         entry["newest"]))
    return dict(changed=False, can_upgrade=can_upgrade, proceed=can_upgrade or params["continue_on_blocked"],
                waves=waves, blocked=blocked, already_upgraded=already, excluded=excluded, totals=totals,
                machine_types=advice, lines=lines)


def run_upgrade_plan(module):
    return plan_upgrade(module.params["hosts"], module.params)


# On the control node, from facts already read: no connection, no libvirt.
UPGRADE_PLAN_MODULE = EntryPoint(run_upgrade_plan, UPGRADE_PLAN_ARGUMENT_SPEC, connection=False)
