"""Benchmark: virtops.migration.migrate against a plain `virsh migrate` with the same flags.

On the lab (prepared hosts), one idle guest is moved back and forth between two hosts,
in turn by virsh, by virsh with the hand-over, and by the module, with the same flags
(--live --p2p --tls --persistent --undefinesource --abort-on-error). Reported:

- end to end, from the control node: `ansible HOST -m virtops.migration.migrate` against
  `ssh HOST virsh migrate ...` (wall seconds), and their ratio;
- on the host: the module's own time (timings.module_s: pre-checks, the migration and
  reading the results) against virsh's run time, and their ratio;
- the migration job itself as libvirt measured it (total and downtime, completed job
  statistics on the destination) for both, so one can see that the job is the same;
- beside QEMU's downtime, the downtime a client of the guest saw: the longest gap between
  answers on one TCP connection to the guest's echo service, held through each migration
  (lab/virtops_lab/echo.py, a message every 10 ms).

The third tool, `virsh migrate --suspend` followed by `virsh resume` on the destination, is a
hand-over: the guest arrives paused and runs again only once the source has let go (one way to
keep a guest from running on two hosts when libvirt's source gives up a Finish call that the
destination still completes; issue 11). Against plain virsh it tells what that costs in downtime.

With --dirty-mib N the guest keeps rewriting N MiB (as fast as it can) instead of idling.

Usage: .venv/bin/python bench/migrate_bench.py [--rounds N] [--hosts hv1 hv2] [--memory MiB] [--dirty-mib N]
Results go to bench/results/migrate-TIMESTAMP.json (not committed).
"""

import argparse
import json
import os
import re
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

from conftest import EchoProbe, guest_address, heartbeats, lab_status, ssh, wait_for  # noqa: E402
from migrate_helpers import guest, link_collection, migrate, remove_guest, tls_ready, unique  # noqa: E402

VIRSH_FLAGS = "--live --p2p --tls --persistent --undefinesource --abort-on-error"


def completed_job(host, name):
    """Time elapsed and downtime (ms) from `virsh domjobinfo --completed` on the destination."""
    out = ssh(host, "virsh domjobinfo --completed %s" % name).stdout
    values = {}
    for key, label in (("total_ms", "Time elapsed"), ("downtime_ms", "Total downtime")):
        match = re.search(r"^%s:\s+(\d+)\s+ms" % label, out, re.M)
        values[key] = int(match.group(1)) if match else None
    return values


def virsh_migrate(src, dst, name, hand_over=False):
    """``hand_over``: as the module does it - arrive paused (--suspend), then resume on the destination."""
    move = "virsh migrate %s %s qemu+tls://%s/system >/dev/null" % (
        VIRSH_FLAGS + (" --suspend" if hand_over else ""), name, dst)
    if hand_over:
        move += " && virsh -c qemu+tls://%s/system resume %s >/dev/null" % (dst, name)
    script = 's=$(date +%%s.%%N); %s; rc=$?; e=$(date +%%s.%%N); echo "$rc $s $e"' % move
    started = time.monotonic()
    out = ssh(src, script, timeout=600).stdout.split()
    wall = time.monotonic() - started
    rc, begin, end = int(out[0]), float(out[1]), float(out[2])
    if rc != 0:
        raise SystemExit("virsh migrate from %s to %s failed" % (src, dst))
    job = completed_job(dst, name)
    return dict(tool="virsh+resume" if hand_over else "virsh", src=src, dst=dst, wall_s=wall, on_host_s=end - begin,
                **job)


def virsh_hand_over(src, dst, name):
    return virsh_migrate(src, dst, name, hand_over=True)


def module_migrate(src, dst, name):
    result, wall = migrate(src, name=name, destination=dst)
    if result.get("failed") or not result.get("changed"):
        raise SystemExit("the module did not migrate %s from %s to %s: %s" % (name, src, dst, result.get("msg")))
    return dict(tool="module", src=src, dst=dst, wall_s=wall, on_host_s=result["timings"]["module_s"],
                total_ms=result["timings"]["total_ms"], downtime_ms=result["timings"]["downtime_ms"],
                flags=result["plan"]["flags"])


def with_client(move, src, dst, name):
    """Run one migration while a client holds a TCP connection to the guest; add what the client saw."""
    probe = EchoProbe(guest_address(name)).start()
    try:
        run = move(src, dst, name)
    finally:
        seen = probe.stop(settle=10.0)
    run.update(client_downtime_ms=seen["longest_gap_ms"],
               client_connection="survived" if seen["error"] is None and seen["answered"] == seen["sent"]
               else "broken: %s" % seen["error"])
    return run


def median(runs, key):
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds (in each, every tool moves the guest once each way)")
    parser.add_argument("--hosts", nargs=2, default=["hv1", "hv2"])
    parser.add_argument("--memory", type=int, default=256, help="guest memory, MiB")
    parser.add_argument("--dirty-mib", type=int, default=0, help="MiB the guest keeps rewriting (0: idle)")
    args = parser.parse_args()

    if not lab_status()["up"]:
        raise SystemExit("the lab is not up (lab/labctl up)")
    link_collection()
    ok, why = tls_ready()
    if not ok:
        raise SystemExit("the hosts are not prepared for migration (playbooks/prepare_hosts.yml): %s" % why)

    a, b = args.hosts
    name = guest(a, unique("bench"), memory=args.memory, dirty_mib=args.dirty_mib, dirty_rate=0)
    runs = []
    try:
        wait_for(lambda: heartbeats(a, name), 60, "the guest to boot")
        # Warm-up: one move each way, not counted (first TLS handshakes, page cache).
        runs_warm = [virsh_migrate(a, b, name), module_migrate(b, a, name)]
        tools = (virsh_migrate, virsh_hand_over, module_migrate)
        for _round in range(args.rounds):
            # The guest goes A -> B -> A ... : each tool moves it once each way per round.
            for index in range(2 * len(tools)):
                here, there = (a, b) if index % 2 == 0 else (b, a)
                runs.append(with_client(tools[index % len(tools)], here, there, name))
    finally:
        remove_guest(name)

    def medians(tool):
        mine = [r for r in runs if r["tool"] == tool]
        return dict(runs=len(mine), wall_s=median(mine, "wall_s"), on_host_s=median(mine, "on_host_s"),
                    job_total_ms=median(mine, "total_ms"), downtime_ms=median(mine, "downtime_ms"),
                    client_downtime_ms=median(mine, "client_downtime_ms"))

    summary = dict(
        guest_memory_mib=args.memory,
        guest_dirty_mib=args.dirty_mib,
        client_connections_broken=[(r["tool"], r["client_connection"]) for r in runs
                                   if r["client_connection"] != "survived"],
        virsh_flags=VIRSH_FLAGS,
        module_flags=[r for r in runs if r["tool"] == "module"][0]["flags"],
        virsh=medians("virsh"),
        hand_over=medians("virsh+resume"),
        module=medians("module"),
    )
    summary["ratio_end_to_end"] = round(summary["module"]["wall_s"] / summary["virsh"]["wall_s"], 2)
    summary["ratio_on_host"] = round(summary["module"]["on_host_s"] / summary["virsh"]["on_host_s"], 2)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    path = os.path.join(HERE, "results", "migrate-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    with open(path, "w") as handle:
        json.dump(dict(summary=summary, runs=runs, warm_up=runs_warm), handle, indent=2)
    print(json.dumps(summary, indent=2))
    print("runs: %s" % path)


if __name__ == "__main__":
    main()
