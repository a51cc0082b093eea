"""Benchmark: a rolling upgrade's fleet-wide schedule, computed once (virtops.migration.upgrade_plan).

Generates seeded fleets in the shape host_info reports them (hosts of 256-768 GiB, running
domains of 1-64 GiB, a tenth in anti-affinity groups, 1 in 100 with a do_not_migrate policy,
QEMU 7.2 with machine type pc-q35-7.2; a share of the hosts already at 10.0), then times
plan_upgrade() and prints, per case: CPU seconds, waves, hosts upgraded and blocked, domains
moved, moves per moved domain, how many move twice, and the predicted total time.

The comparison row "today" is the playbook's former way: evacuate each host, then move its
domains back, re-planning every host from the whole fleet - every running domain moves twice,
and planning costs one plan_evacuation() per host over the fleet (timed here on a prefix of
the hosts and scaled linearly to the fleet, so the quadratic total is shown, not run).

Usage: .venv/bin/python bench/bench_upgrade.py [--hosts N] [--domains N] [--seed N] [--json FILE]
Needs no lab and no libvirt. Targets (issue 14): 5,000 hosts / 30,000 domains under 30 s of
planning, at most 1.2 moves per domain.
"""

import argparse
import importlib
import json
import os
import random
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
from ansible_collections.virtops.migration.plugins.module_utils._planning.upgrade import (  # noqa: E402
    UPGRADE_PLAN_ARGUMENT_SPEC,
    plan_upgrade,
)

GIB = 1024
FLAVORS = [(1 * GIB, 1), (2 * GIB, 1), (4 * GIB, 2), (8 * GIB, 4), (16 * GIB, 8), (32 * GIB, 8), (64 * GIB, 16)]
FLAVOR_WEIGHTS = [10, 20, 30, 20, 12, 6, 2]
HOST_SHAPES = [(256 * GIB, 64), (512 * GIB, 96), (768 * GIB, 128)]
OLD = {"x86_64": {"machines": ["pc-q35-7.2", "q35"]}}
NEW = {"x86_64": {"machines": ["pc-q35-7.2", "pc-q35-10.0", "q35"]}}


def generate(hosts, domains, seed, upgraded_share=0.0, fill=0.55):
    """A fleet whose running domains fill about ``fill`` of its memory."""
    rng = random.Random(seed)
    fleet = {}
    names = ["hv%05d" % i for i in range(hosts)]
    for name in names:
        memory, vcpus = rng.choice(HOST_SHAPES)
        new = rng.random() < upgraded_share
        fleet[name] = dict(memory_total_mib=memory, memory_committable_mib=memory - 8 * GIB, vcpus_total=vcpus,
                           maintenance=False, qemu_version="10.0.0" if new else "7.2.0", guests=NEW if new else OLD,
                           domains=[])
    groups = ["group-%04d" % i for i in range(max(domains // 40, 1))]
    free = dict((name, fleet[name]["memory_committable_mib"] * fill) for name in names)
    for index in range(domains):
        memory, vcpus = rng.choices(FLAVORS, FLAVOR_WEIGHTS)[0]
        labels = {}
        if rng.random() < 0.1:
            labels["anti_affinity"] = rng.choice(groups)
        if rng.random() < 0.01:
            labels["do_not_migrate"] = rng.choice(["cold", "shutdown"])
        for _attempt in range(20):
            name = rng.choice(names)
            if free[name] >= memory:
                break
        free[name] -= memory
        fleet[name]["domains"].append(dict(name="vm%06d" % index, state="running", persistent=True, memory_mib=memory,
                                           vcpus=vcpus, machine="pc-q35-7.2", arch="x86_64", labels=labels))
    return fleet


def params(fleet, **changes):
    out = dict((key, entry.get("default")) for key, entry in UPGRADE_PLAN_ARGUMENT_SPEC.items())
    out.update(hosts=fleet, bandwidth_mib_s=1100.0, **changes)
    return out


def schedule_row(label, fleet, **changes):
    started = time.process_time()
    out = plan_upgrade(fleet, params(fleet, **changes))
    cpu = time.process_time() - started
    totals = out["totals"]
    return dict(case=label, cpu_s=round(cpu, 2), waves=totals["waves"], upgraded=totals["to_upgrade"],
                blocked=totals["blocked"], moved=totals["domains_moved"], moves_per_domain=totals["moves_per_moved_domain"],
                moved_twice=totals["moved_twice"], predicted_h=round(totals["predicted_total_seconds"] / 3600.0, 1))


def today_row(fleet, sample):
    """One plan_evacuation() over the whole fleet per host, as the per-host playbook did; sampled."""
    names = sorted(fleet)
    opts = PlanOptions()
    started = time.process_time()
    for name in names[:sample]:
        plan_evacuation(name, fleet, None, opts)
    per_host = (time.process_time() - started) / sample
    running = sum(1 for facts in fleet.values() for dom in facts["domains"] if dom["state"] == "running")
    return dict(case="today: evacuate + restore, per host", cpu_s=round(per_host * len(names) * 2, 1),
                waves=len(names), upgraded=len(names), blocked=0, moved=running, moves_per_domain=2.0,
                moved_twice=running, predicted_h=None, note="planning CPU extrapolated from %d hosts x 2 passes"
                                                            % sample)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=5000)
    parser.add_argument("--domains", type=int, default=30000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = []
    started = time.process_time()
    fleet = generate(args.hosts, args.domains, args.seed)
    generated = time.process_time() - started
    rows.append(today_row(fleet, sample=min(50, args.hosts)))
    for wave in (1, 10, 50, 250):
        rows.append(schedule_row("schedule, %d host(s) per wave" % wave, fleet, max_hosts_per_wave=wave))
    mixed = generate(args.hosts, args.domains, args.seed, upgraded_share=0.2)
    rows.append(schedule_row("schedule, 20% already upgraded, 50/wave", mixed, target_qemu_version="10.0.0",
                             max_hosts_per_wave=50))
    tight = generate(args.hosts, args.domains * 2, args.seed, fill=0.95)
    rows.append(schedule_row("schedule, tight fleet (2x domains), 50/wave", tight, max_hosts_per_wave=50,
                             continue_on_blocked=True))
    print("%d hosts, %d domains (generated in %.1f s of CPU)" % (args.hosts, args.domains, generated))
    header = ("case", "CPU s", "waves", "upgraded", "blocked", "moved", "moves/dom", "twice", "predicted h")
    print("%-44s %8s %6s %8s %7s %7s %9s %7s %10s" % header)
    for row in rows:
        print("%-44s %8s %6s %8s %7s %7s %9s %7s %10s" % (
            row["case"], row["cpu_s"], row["waves"], row["upgraded"], row["blocked"], row["moved"],
            row["moves_per_domain"], row["moved_twice"], "-" if row["predicted_h"] is None else row["predicted_h"]))
    print("(python %s; %d CPUs; load average %s; 'today' planning CPU: %s)" % (
        sys.version.split()[0], os.cpu_count(), " ".join("%.2f" % x for x in os.getloadavg()), rows[0]["note"]))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
