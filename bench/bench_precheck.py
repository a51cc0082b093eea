"""Benchmark: how long the pre-checks take, per domain and per host pair, on the lab.

Guests are defined on hv1 (idle, TCG); precheck runs on hv1 against one and two
destinations, first with the checks alone (no measurement), then with the measurements
(iperf3 throughput for --bandwidth-seconds, dirty rates for --dirty-seconds). The module
reports no timings of its own, so what is measured is `ansible hv1 -m precheck` end to
end, and the difference between rows gives the cost of a domain and of a destination.

Usage: .venv/bin/python bench/bench_precheck.py [--domains 4] [--runs 3]
Needs the lab up and prepared (make lab-up; playbooks/prepare_hosts.yml).
"""

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))

from conftest import labctl, run_module, ssh  # noqa: E402

MIGRATION = {"hv2": "198.18.1.12", "hv3": "198.18.1.13"}


def timed(domains, destinations, measure, args):
    for host in destinations if measure else []:
        ssh(host, "iperf3 --server --one-off --daemon --port 5201 --bind %s" % MIGRATION[host])
    started = time.monotonic()
    result = run_module("hv1", "virtops.migration.precheck", {
        "destinations": destinations, "domains": domains,
        "migration_addresses": {d: MIGRATION[d] for d in destinations},
        "measure_bandwidth": measure, "bandwidth_seconds": args.bandwidth_seconds,
        "dirty_rate_seconds": args.dirty_seconds if measure else 0})
    elapsed = time.monotonic() - started
    if result.get("failed"):
        raise SystemExit("precheck failed: %s" % result.get("msg"))
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--domains", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--bandwidth-seconds", type=int, default=1)
    parser.add_argument("--dirty-seconds", type=int, default=1)
    args = parser.parse_args()
    names = ["bp-%d" % index for index in range(args.domains)]
    for name in names:
        labctl("guest", "define", "hv1", name, "--memory", "96", "--start")
    try:
        rows = []
        for measure in (False, True):
            for domains, destinations in ((names[:1], ["hv2"]), (names, ["hv2"]), (names, ["hv2", "hv3"])):
                runs = [timed(domains, destinations, measure, args) for attempt in range(args.runs)]
                rows.append((measure, len(domains), len(destinations), statistics.median(runs)))
    finally:
        for name in names:
            labctl("guest", "remove", name)
    print("%-12s %8s %13s %10s %14s" % ("measurements", "domains", "destinations", "wall s", "per pair s"))
    for measure, domains, destinations, seconds in rows:
        per_pair = seconds / (domains * destinations)
        print("%-12s %8d %13d %10.2f %14.3f" % ("on" if measure else "off", domains, destinations, seconds, per_pair))
    base = {(m, d, n): s for m, d, n, s in rows}
    for measure in (False, True):
        per_domain = (base[(measure, args.domains, 1)] - base[(measure, 1, 1)]) / max(args.domains - 1, 1)
        per_destination = base[(measure, args.domains, 2)] - base[(measure, args.domains, 1)]
        print("measurements %-3s: +%.3f s per domain, +%.3f s per destination (%d domains)" % (
            "on" if measure else "off", per_domain, per_destination, args.domains))
    print("load average: %.1f %.1f %.1f (2 cores)" % os.getloadavg())


if __name__ == "__main__":
    main()
