"""Benchmark: planning one host's evacuation in a large generated inventory.

Generates (seeded, so every run plans the same inventory) 10,000 hosts holding 200,000
domains in the shape host_info reports them, then times
virtops.migration's plan_evacuation() for a host with about 20 domains and one with
about 200, each the median of several runs (wall and CPU time). Generation is timed separately: it stands
for host_info and is not part of planning.

Rows:
- plan/20, plan/200: no pre-checks, every destination allowed (the planner scans the
  inventory through its heap of destinations);
- plan/200+prechecks: 50 pre-checked candidate destinations per domain (10,000 pre-checks,
  a tenth of them block), unchecked pairs denied;
- plan/200 full: every other host already full, so no domain fits and each one's reasons
  are collected over the whole inventory;
- big VMs among small hosts, 64 GiB (and 16 GiB for contrast): nine hosts in ten are small
  (48 GiB) and nearly empty - the largest share of free capacity, but no room for a 64 GiB
  domain - and one in ten is big (768 GiB) and half full. The source holds 20 such domains.
  A heap ordered by share alone passed over most of the fleet for each one (the adversarial
  case of issue 13: 2.6 s at 10,000 hosts).

Usage: .venv/bin/python bench/bench_plan.py [--hosts N] [--domains N] [--runs N] [--seed N] [--json FILE]
Needs no lab and no libvirt. Target: planning well under a second.
"""

import argparse
import copy
import importlib
import json
import os
import random
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "unit"))
importlib.import_module("conftest")  # links the checkout as ansible_collections.virtops.migration

from ansible_collections.virtops.migration.plugins.module_utils._planning.placement import (  # noqa: E402
    PlanOptions,
    plan_evacuation,
)

GIB = 1024
# (memory MiB, vCPUs): the flavors the generated domains draw from.
FLAVORS = [(1 * GIB, 1), (2 * GIB, 1), (4 * GIB, 2), (8 * GIB, 4), (16 * GIB, 8), (32 * GIB, 8), (64 * GIB, 16)]
FLAVOR_WEIGHTS = [10, 20, 30, 20, 12, 6, 2]
HOST_SHAPES = [(256 * GIB, 64), (512 * GIB, 96), (768 * GIB, 128)]
SMALL_HOST = "hv00001"
LARGE_HOST = "hv00000"


def generate(hosts=10000, domains=200000, seed=7, large=200, small=20):
    """hosts -> facts; LARGE_HOST holds ``large`` small domains, SMALL_HOST ``small``."""
    rng = random.Random(seed)
    names = ["hv%05d" % i for i in range(hosts)]
    inventory = {}
    for name in names:
        memory, vcpus = rng.choice(HOST_SHAPES)
        inventory[name] = dict(
            memory_total_mib=memory,
            memory_committable_mib=memory - 8 * GIB,
            vcpus_total=vcpus,
            maintenance=rng.random() < 0.02,
            migration_bandwidth_mib_s=rng.choice([1100, 2200, 4400]),
            domains=[],
        )
    inventory[LARGE_HOST]["maintenance"] = False
    inventory[SMALL_HOST]["maintenance"] = False
    inventory[LARGE_HOST]["memory_total_mib"] = inventory[LARGE_HOST]["memory_committable_mib"] = 2048 * GIB
    inventory[LARGE_HOST]["vcpus_total"] = 512
    groups = ["group-%04d" % i for i in range(5000)]

    def domain(index, flavor=None):
        memory, vcpus = flavor or rng.choices(FLAVORS, FLAVOR_WEIGHTS)[0]
        state = rng.choices(["running", "shutoff", "paused"], [85, 12, 3])[0]
        shared = rng.random() < 0.8
        labels = {}
        if rng.random() < 0.1:
            labels["anti_affinity"] = rng.choice(groups)
        if rng.random() < 0.01:
            labels["do_not_migrate"] = rng.choice(["skip", "cold", "shutdown"])
        return dict(
            name="vm%06d" % index,
            uuid="00000000-0000-4000-8000-%012d" % index,
            state=state,
            persistent=True,
            memory_mib=memory,
            vcpus=vcpus,
            dirty_rate_mib_s=round(rng.uniform(0, 80), 1) if rng.random() < 0.7 else None,
            shared_storage=shared,
            local_disk_bytes=0 if shared else rng.choice([10, 20, 40]) * 1024 ** 3,
            blockers=["hostdev 0000:3b:00.0"] if rng.random() < 0.01 else [],
            labels=labels,
        )

    index = 0
    for dummy in range(large):
        inventory[LARGE_HOST]["domains"].append(domain(index, rng.choice(FLAVORS[:4])))
        index += 1
    for dummy in range(small):
        inventory[SMALL_HOST]["domains"].append(domain(index))
        index += 1
    others = names[2:]
    while index < domains:
        inventory[rng.choice(others)]["domains"].append(domain(index))
        index += 1
    return inventory


def prechecks_for(inventory, source, per_domain=50, seed=11):
    rng = random.Random(seed)
    candidates = [h for h in sorted(inventory) if h != source]
    out = []
    for dom in inventory[source]["domains"]:
        for dest in rng.sample(candidates, per_domain):
            verdict = rng.choices(["ok", "warn", "block"], [80, 10, 10])[0]
            out.append(dict(domain=dom["name"], source=source, destination=dest, verdict=verdict,
                            reasons=["CPU feature avx512f missing"] if verdict == "block" else [],
                            predicted_seconds=None, predicted_downtime_ms=None, converges=True, escalation=None))
    return out


def fill_up(inventory, source):
    """A copy where every other host's committable memory is already used."""
    full = copy.copy(inventory)
    for name, facts in inventory.items():
        if name == source:
            continue
        facts = dict(facts)
        facts["domains"] = list(facts["domains"]) + [dict(name="filler-" + name, state="running", persistent=True,
                                                          memory_mib=facts["memory_committable_mib"], vcpus=1)]
        full[name] = facts
    return full


def small_hosts_fleet(hosts=10000, vm_gib=64, vms=20):
    """The adversarial fleet for big domains (see the docstring); the source is SMALL_HOST."""
    inventory = {}
    for index in range(hosts):
        big = index % 10 == 0
        memory = 768 * GIB if big else 48 * GIB
        inventory["hv%05d" % index] = dict(
            memory_total_mib=memory, memory_committable_mib=memory, vcpus_total=128, maintenance=False,
            migration_bandwidth_mib_s=1100,
            domains=[dict(name="filler%05d" % index, state="running", persistent=True,
                          memory_mib=384 * GIB if big else 4 * GIB, vcpus=4)])
    inventory[SMALL_HOST] = dict(
        memory_total_mib=2048 * GIB, memory_committable_mib=2048 * GIB, vcpus_total=512, maintenance=False,
        migration_bandwidth_mib_s=1100,
        domains=[dict(name="big%02d" % index, state="running", persistent=True, memory_mib=vm_gib * GIB, vcpus=8,
                      dirty_rate_mib_s=10.0) for index in range(vms)])
    return inventory


def timed(func, runs):
    """Median wall and CPU seconds of ``runs`` calls (CPU time shows what the wall time
    owes to other processes on a shared machine), and the last result."""
    wall = []
    cpu = []
    result = None
    for dummy in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = func()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu), result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--hosts", type=int, default=10000)
    parser.add_argument("--domains", type=int, default=200000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    generation, generation_cpu, inventory = timed(lambda: generate(args.hosts, args.domains, args.seed), 1)
    rows = [("generate %d hosts / %d domains" % (args.hosts, args.domains), generation, generation_cpu, None)]

    opts = PlanOptions()
    deny = PlanOptions(unchecked_pairs="deny")
    prechecks = prechecks_for(inventory, LARGE_HOST)
    full = fill_up(inventory, LARGE_HOST)
    cases = [
        ("plan/20 (%s)" % SMALL_HOST, lambda: plan_evacuation(SMALL_HOST, inventory, None, opts)),
        ("plan/200 (%s)" % LARGE_HOST, lambda: plan_evacuation(LARGE_HOST, inventory, None, opts)),
        ("plan/200 + %d prechecks" % len(prechecks), lambda: plan_evacuation(LARGE_HOST, inventory, prechecks, deny)),
        ("plan/200, inventory full", lambda: plan_evacuation(LARGE_HOST, full, None, opts)),
    ]
    for vm_gib in (16, 64):
        fleet = small_hosts_fleet(args.hosts, vm_gib)
        cases.append(("plan/20 x %d GiB, small hosts" % vm_gib,
                      lambda fleet=fleet: plan_evacuation(SMALL_HOST, fleet, None, opts)))
    for label, func in cases:
        wall, cpu, result = timed(func, args.runs)
        rows.append((label, wall, cpu, result))

    print("%-34s %8s %8s  %s" % ("case", "wall s", "CPU s", "plan"))
    for label, wall, cpu, result in rows:
        plan = ""
        if result is not None:
            plan = "%d moves, %d skipped, %d unplaceable, predicted %s s (bound %s s)" % (
                len(result["moves"]), len(result["skipped_domains"]), len(result["unplaceable"]),
                result["predicted_total_seconds"], result["bound_seconds"])
        print("%-34s %8.3f %8.3f  %s" % (label, wall, cpu, plan))
    print("(medians of %d runs; python %s; %d CPUs; load average %s)" % (
        args.runs, sys.version.split()[0], os.cpu_count() or 0, " ".join("%.1f" % x for x in os.getloadavg())))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump([dict(case=label, wall_s=wall, cpu_s=cpu) for label, wall, cpu, _r in rows], handle, indent=2)


if __name__ == "__main__":
    main()
