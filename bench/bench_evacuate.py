"""Benchmark: an evacuation's wall time against its bound, and against the same moves made one at a time
with plain `virsh migrate`.

On the lab (prepared hosts), N small guests are defined on hv1 (named bench-ev-*), then:

1. the source's throughput is measured twice: iperf3 from hv1 to hv2's migration address (plain TCP), and
   the migration throughput of libvirt itself (TLS), from the completed job statistics of the plain virsh
   runs of step 4 (data sent / transfer time, summed over the runs);
2. playbooks/evacuate_host.yml empties hv1 of them (limited to ^bench-ev-; pre-checks on); its module's wall
   time (the evacuation itself) and the playbook's (everything: facts, pre-checks, plan, verification) are kept;
3. playbooks/restore_host.yml moves them back;
4. the same moves (same guests, same destinations, same flags: --live --p2p --tls --persistent
   --undefinesource --abort-on-error, the migration network) are made one at a time with virsh, in one shell
   on hv1, timed there; then moved back with virsh.

The bound of an evacuation is the memory it moves divided by the source's throughput: no evacuation can be
faster. Reported: each wall time, each bound, and the ratios.

Usage: .venv/bin/python bench/bench_evacuate.py [--guests N] [--memory MiB] [--dirty-mib N --dirty-rate R]
       [--shape MBIT]   (token-bucket limit on hv1's migration link during the runs; only when no one else
                         uses the lab)
Results go to bench/results/evacuate-TIMESTAMP.json (not committed).
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration", "evacuate"))

from conftest import heartbeats, lab_status, labctl, ssh, wait_for  # noqa: E402
from evacuate_helpers import (  # noqa: E402
    clean_host_state,
    ensure_images_pools,
    failure_messages,
    guest,
    placement,
    remove_images_pools,
    run_playbook,
)

MIB = 1024 * 1024
ADDRESS = {"hv1": "198.18.1.11", "hv2": "198.18.1.12", "hv3": "198.18.1.13"}
VIRSH_FLAGS = "--live --p2p --tls --persistent --undefinesource --abort-on-error"
EVACUATION_ID = "bench-ev"
IPERF3_PORT = 5212


def iperf3_mib_s(src, dst, seconds=3):
    ssh(dst, "iperf3 --server --one-off --daemon --port %d --bind %s --idle-timeout 30" % (IPERF3_PORT, ADDRESS[dst]))
    time.sleep(0.5)
    out = ssh(src, "iperf3 --json --client %s --port %d --time %d" % (ADDRESS[dst], IPERF3_PORT, seconds),
              timeout=60).stdout
    end = json.loads(out)["end"]
    return round(end["sum_received"]["bits_per_second"] / 8.0 / MIB, 1)


def virsh_moves(src, pairs):
    """Migrate (name, destination) pairs one at a time in one shell on ``src``; per-move seconds on the host."""
    lines = []
    for name, dst in pairs:
        command = "virsh migrate %s %s qemu+tls://%s/system --migrateuri tcp://%s" % (VIRSH_FLAGS, name, dst, ADDRESS[dst])
        lines.append('s=$(date +%%s.%%N); %s >/dev/null || echo "FAILED %s"; e=$(date +%%s.%%N); echo "%s $s $e"' % (
            command, name, name))
    script = "t0=$(date +%s.%N); " + "; ".join(lines) + '; t1=$(date +%s.%N); echo "ALL $t0 $t1"'
    out = ssh(src, script, timeout=3600).stdout
    if "FAILED" in out:
        raise SystemExit("plain virsh migrate failed: %s" % out)
    per = {}
    total = None
    for line in out.splitlines():
        name, begin, end = line.split()
        if name == "ALL":
            total = float(end) - float(begin)
        else:
            per[name] = round(float(end) - float(begin), 2)
    return total, per


def completed_job(host, name):
    out = ssh(host, "virsh domjobinfo --completed %s" % name).stdout
    values = {}
    for key, label in (("total_ms", "Time elapsed"), ("setup_ms", "Setup time"), ("downtime_ms", "Total downtime")):
        match = re.search(r"^%s:\s+(\d+)\s+ms" % label, out, re.M)
        values[key] = int(match.group(1)) if match else None
    match = re.search(r"^Data processed:\s+([\d.]+)\s+(\w+)", out, re.M)
    if match:
        factor = {"B": 1, "KiB": 1024, "MiB": MIB, "GiB": 1024 * MIB}.get(match.group(2), 1)
        values["data_bytes"] = float(match.group(1)) * factor
    return values


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--guests", type=int, default=6)
    parser.add_argument("--memory", type=int, default=256, help="MiB per guest")
    parser.add_argument("--dirty-mib", type=int, default=0)
    parser.add_argument("--dirty-rate", type=int, default=0)
    parser.add_argument("--shape", type=int, default=0, help="Mbit/s on hv1's migration link during the runs")
    args = parser.parse_args()
    if not lab_status()["up"]:
        raise SystemExit("the lab is not up (lab/labctl up)")

    names = ["bench-ev-%d" % i for i in range(args.guests)]
    control = tempfile.mkdtemp(prefix="bench-ev-")
    pools = ensure_images_pools()
    options = dict(memory=args.memory, disk="none")
    if args.dirty_mib:
        options.update(dirty_mib=args.dirty_mib, dirty_rate=args.dirty_rate)
    results = dict(guests=args.guests, memory_mib=args.memory, dirty_mib=args.dirty_mib, dirty_rate=args.dirty_rate,
                   shape_mbit=args.shape or None)
    try:
        for name in names:
            guest("hv1", name, **options)
        for name in names:
            wait_for(lambda n=name: heartbeats("hv1", n), 120, "%s to boot" % name)
        if args.shape:
            labctl("shape", "hv1", args.shape, "--net", "mig")
        results["iperf3_mib_s"] = iperf3_mib_s("hv1", "hv2")

        extra = dict(evacuate_host="hv1", evacuate_id=EVACUATION_ID, evacuate_domain_pattern="^bench-ev-",
                     evacuate_control_dir=control, evacuate_iperf3_port=IPERF3_PORT, evacuate_progress_interval=2)
        rc, report, wall = run_playbook("evacuate_host.yml", extra)
        if rc != 0:
            raise SystemExit("the evacuation failed: %s" % failure_messages(report))
        with open(os.path.join(control, "hv1", EVACUATION_ID + ".report.json")) as handle:
            evac = json.load(handle)
        pairs = [(d["domain"], d["destination"]) for d in sorted(evac["domains"], key=lambda d: d["started_at"])]
        results["evacuation"] = dict(module_wall_s=evac["totals"]["wall_seconds"], playbook_wall_s=round(wall, 1),
                                     mib_sent=evac["totals"]["mib_sent"], moved_mib=evac["totals"]["moved_mib"],
                                     predicted_s=evac["plan"]["predicted_total_seconds"],
                                     per_domain_s=dict((d["domain"], d["seconds"]) for d in evac["domains"]),
                                     destinations=dict(pairs))
        rc, report, _wall = run_playbook("restore_host.yml", dict(restore_host="hv1", evacuate_id=EVACUATION_ID,
                                                                  evacuate_control_dir=control))
        if rc != 0:
            raise SystemExit("the restore failed: %s" % failure_messages(report))

        total, per = virsh_moves("hv1", pairs)
        jobs = dict((name, completed_job(dst, name)) for name, dst in pairs)
        back = {}
        for name, dst in pairs:
            back.setdefault(dst, []).append((name, "hv1"))
        for dst, moves in back.items():
            virsh_moves(dst, moves)
        data = sum(j.get("data_bytes") or 0 for j in jobs.values())
        transfer_s = sum(((j.get("total_ms") or 0) - (j.get("setup_ms") or 0)) / 1000.0 for j in jobs.values())
        results["virsh_sequential"] = dict(wall_s=round(total, 1), per_domain_s=per,
                                           downtime_ms=dict((n, j.get("downtime_ms")) for n, j in jobs.items()))
        results["migration_mib_s"] = round(data / MIB / transfer_s, 1) if transfer_s else None
    finally:
        if args.shape:
            labctl("shape", "hv1", 0, "--net", "mig", check=False)
        for name in names:
            labctl("guest", "remove", name, check=False)
        clean_host_state([EVACUATION_ID])
        remove_images_pools(pools)
        shutil.rmtree(control, ignore_errors=True)

    moved = results["evacuation"]["moved_mib"]
    module_s = results["evacuation"]["module_wall_s"]
    table = []
    for label, rate in (("iperf3 (TCP)", results["iperf3_mib_s"]), ("libvirt migration (TLS)", results["migration_mib_s"])):
        bound = moved / rate if rate else None
        results.setdefault("bounds", {})[label] = dict(mib_s=rate, bound_s=round(bound, 2) if bound else None,
                                                       evacuation_ratio=round(module_s / bound, 2) if bound else None,
                                                       virsh_ratio=round(results["virsh_sequential"]["wall_s"] / bound, 2)
                                                       if bound else None)
        table.append("| %-24s | %8s MiB/s | bound %6.1f s | evacuation %5.2fx | virsh one at a time %5.2fx |" % (
            label, rate, bound, module_s / bound, results["virsh_sequential"]["wall_s"] / bound))
    results["evacuation_vs_virsh"] = round(module_s / results["virsh_sequential"]["wall_s"], 2)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    path = os.path.join(HERE, "results", "evacuate-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    with open(path, "w") as handle:
        json.dump(results, handle, indent=2)
    print("%d guests x %d MiB (%s MiB moved)%s" % (args.guests, args.memory, moved,
                                                   ", hv1 shaped to %d Mbit/s" % args.shape if args.shape else ""))
    print("evacuation (module): %.1f s; playbook end to end: %.1f s; plain virsh one at a time: %.1f s; "
          "evacuation / virsh = %.2f" % (
              module_s, results["evacuation"]["playbook_wall_s"], results["virsh_sequential"]["wall_s"],
              results["evacuation_vs_virsh"]))
    print("\n".join(table))
    print("placement after the run: %s" % placement())
    print("results: %s" % path)


if __name__ == "__main__":
    main()
