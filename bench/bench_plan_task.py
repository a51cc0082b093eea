"""Benchmark: the evacuation_plan task through ansible-playbook, on generated inventories.

For each size (1,000, 10,000 and 50,000 hosts with 20 domains each, generated as
bench_plan.py does), writes the facts to a JSON file and runs bench/plan_task.yml - the
plan task with the arguments playbooks/tasks/evacuate.yml gives it - through
ansible-playbook on the control node. Prints, per size and case:

- start s: ansible-playbook up to the plan task - loading the generated inventory with its
  facts (bench/inventory_plugins/bench_fleet.py), which stands for gathering them;
- plan task s: the plan task end to end, from its start to its result (the bench_task_times
  callback in bench/callback_plugins);
- playbook s: the whole ansible-playbook run;
- peak RSS MiB: the largest resident set of ansible-playbook and its workers;
- the plan's outcome.

Cases: a host with 20 domains (typical), and the adversarial big-VM fleet of bench_plan.py
(nine hosts in ten small and nearly empty, 20 domains of 64 GiB to place).

Usage: .venv/bin/python bench/bench_plan_task.py [--sizes 1000,10000,50000] [--timeout 600] [--json FILE]
Needs no lab and no libvirt. Run it alone: it uses a core for minutes at 50,000 hosts.
Targets (issue 13): plan task under 2 s at 10,000 hosts, under 10 s at 50,000.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import bench_plan  # noqa: E402  (also links the checkout as the collection)

PLAYBOOK = os.path.join(HERE, "plan_task.yml")


def stop(marker):
    """Kill every process whose command line holds ``marker`` - this run's inventory file, so
    ansible-playbook and its workers (which start sessions of their own), and nothing else."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as handle:
                    mine = marker.encode() in handle.read()
                if mine:
                    os.kill(int(entry), 9)
            except OSError:
                continue


def run_playbook(facts, source, timeout):
    """Run plan_task.yml on ``facts``; returns its task times, wall time, peak RSS and output."""
    with tempfile.TemporaryDirectory(prefix="bench-plan-task-") as tmp:
        facts_file = os.path.join(tmp, "facts.json")
        with open(facts_file, "w") as handle:
            json.dump(facts, handle)
        times_file = os.path.join(tmp, "times.json")
        inventory = os.path.join(tmp, "bench_fleet.yml")
        with open(inventory, "w") as handle:
            json.dump(dict(plugin="bench_fleet", facts=facts_file), handle)
        env = dict(os.environ,
                   ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
                   ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".tmp", "collections"),
                   ANSIBLE_CALLBACK_PLUGINS=os.path.join(HERE, "callback_plugins"),
                   ANSIBLE_INVENTORY_PLUGINS=os.path.join(HERE, "inventory_plugins"),
                   ANSIBLE_INVENTORY_ENABLED="bench_fleet",
                   ANSIBLE_CALLBACKS_ENABLED="bench_task_times",
                   ANSIBLE_LOCALHOST_WARNING="false",
                   ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
                   BENCH_TASK_TIMES=times_file)
        command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), PLAYBOOK, "-i", inventory,
                   "-e", "bench_source=%s" % source]
        start = time.perf_counter()
        start_epoch = time.time()
        first = None
        with open(os.path.join(tmp, "out"), "w+") as out:
            child = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                     start_new_session=True)
            deadline = start + timeout
            status = rusage = None
            while status is None:
                pid, status, rusage = os.wait4(child.pid, os.WNOHANG)
                if pid == 0:
                    status = None
                    if time.perf_counter() > deadline:
                        stop(inventory)
                        child.wait()
                        return dict(timed_out=True, wall=time.perf_counter() - start)
                    time.sleep(0.2)
            child.returncode = os.waitstatus_to_exitcode(status)
            wall = time.perf_counter() - start
            out.seek(0)
            output = out.read()
        tasks = {}
        if os.path.exists(times_file):
            with open(times_file) as handle:
                times = json.load(handle)
            tasks = dict((t["name"], t["seconds"]) for t in times)
            first = min((t["start"] for t in times), default=None)
    return dict(timed_out=False, rc=child.returncode, wall=wall, tasks=tasks, output=output,
                start=(first - start_epoch) if tasks else None,
                peak_rss_mib=rusage.ru_maxrss / 1024.0)


def outcome(output):
    for line in output.splitlines():
        if "can be emptied" in line or "cannot be emptied" in line:
            return line.strip().strip('",')
    return "no plan: " + " | ".join(line.strip() for line in output.splitlines() if "msg" in line or "ERROR" in line)[:200]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--per-host", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds a run may take before it is stopped")
    parser.add_argument("--cases", default="typical,adversarial")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    rows = []
    header = ("hosts", "case", "start s", "plan task s", "playbook s", "peak RSS MiB", "plan")
    print("%-7s %-12s %8s %12s %11s %12s  %s" % header)
    for size in [int(s) for s in args.sizes.split(",")]:
        for case in args.cases.split(","):
            if case == "typical":
                facts = bench_plan.generate(size, size * args.per_host, large=20, small=20)
            else:
                facts = bench_plan.small_hosts_fleet(size, 64)
            run = run_playbook(facts, bench_plan.SMALL_HOST, args.timeout)
            del facts
            if run["timed_out"]:
                row = dict(hosts=size, case=case, timed_out=True, playbook_s=run["wall"])
                print("%-7d %-12s %8s %12s %11.1f %12s  stopped after %d s (--timeout)" % (
                    size, case, "-", "-", run["wall"], "-", args.timeout))
            else:
                row = dict(hosts=size, case=case, start_s=run["start"],
                           plan_task_s=run["tasks"].get("Plan the evacuation"), playbook_s=run["wall"],
                           peak_rss_mib=run["peak_rss_mib"], rc=run["rc"], plan=outcome(run["output"]))
                print("%-7d %-12s %8.2f %12.2f %11.1f %12.0f  %s" % (
                    size, case, row["start_s"] or 0.0, row["plan_task_s"] or 0.0, row["playbook_s"],
                    row["peak_rss_mib"], row["plan"][:90]))
            sys.stdout.flush()
            rows.append(row)
    print("(python %s; %d CPUs; load average %s)" % (
        sys.version.split()[0], os.cpu_count() or 0, " ".join("%.1f" % x for x in os.getloadavg())))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
