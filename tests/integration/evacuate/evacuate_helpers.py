"""Helpers for the evacuation's lab tests: the playbooks run as a user runs them (the watcher
that polls virsh on every host while they run is tests/integration/watch.py's).

Outcomes are checked with virsh on each host over SSH, never with the collection's code.
"""

import json
import os
import signal
import subprocess
import time

from conftest import (
    HYPERVISORS,
    INVENTORY,
    REPO,
    ansible_env,
    labctl,
    ssh,
)
from watch import jobs_command, placement_of

ANSIBLE_PLAYBOOK = os.path.join(REPO, ".venv", "bin", "ansible-playbook")
JOURNAL_DIR = "/var/lib/virtops-migration/evacuations"
MAINTENANCE = "/var/lib/virtops-migration/maintenance"
PREFIX = "ev-"
# An iperf3 port of its own: other engineers' pre-checks use 5201.
IPERF3_PORT = 5211


def playbook_argv(name, extra, check=False):
    argv = [ANSIBLE_PLAYBOOK, "-i", INVENTORY, os.path.join(REPO, "playbooks", name), "-e", json.dumps(extra)]
    if check:
        argv.append("--check")
    return argv


def run_playbook(name, extra, check=False, timeout=1800):
    """Run a playbook with the JSON callback; return (rc, report dict, wall seconds)."""
    started = time.monotonic()
    proc = subprocess.run(playbook_argv(name, extra, check), stdin=subprocess.DEVNULL, capture_output=True, text=True, env=ansible_env(),
                          timeout=timeout, check=False)
    wall = time.monotonic() - started
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("ansible-playbook printed no JSON (rc %d): %s%s" % (
            proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:]))
    return proc.returncode, report, wall


def start_playbook(name, extra):
    """Start a playbook in a process group of its own (so that a test can kill it)."""
    return subprocess.Popen(playbook_argv(name, extra), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ansible_env(), start_new_session=True)


def descendants(pid):
    """Every process below ``pid``, from /proc (Ansible's workers run in sessions of their own)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_playbook(proc):
    """SIGKILL a playbook started by start_playbook, with its worker processes."""
    tree = descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.communicate(timeout=60)


def task_results(report, task_name, host):
    """Every result of the tasks named ``task_name`` for ``host``, in run order."""
    out = []
    for play in report["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"] == task_name and host in task["hosts"]:
                out.append(task["hosts"][host])
    return out


def failure_messages(report):
    msgs = []
    for play in report["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                if result.get("failed") and not result.get("ignore_errors"):
                    msgs.append("%s %s: %s" % (host, task["task"]["name"], result.get("msg")))
                    # A loop's message only says that items failed: name theirs too.
                    msgs += ["  item %s: %s" % (item.get("item"), item.get("msg"))
                             for item in result.get("results") or [] if item.get("failed")]
    return msgs


def stats(report, host):
    return report["stats"].get(host, {})


def journal(host, evacuation_id):
    out = ssh(host, "cat %s/%s.json 2>/dev/null || true" % (JOURNAL_DIR, evacuation_id), check=False).stdout
    return json.loads(out) if out.strip() else None


def maintenance(host):
    return ssh(host, "cat %s 2>/dev/null || true" % MAINTENANCE, check=False).stdout.strip() or None


def placement():
    """{guest: (running hosts, persistent hosts)} over every hypervisor, listed at the same instant."""
    return placement_of(lambda name: name.startswith(PREFIX))


# Names of our running guests on a host that have a job (a migration) under way, as virsh sees it.
VIRSH_JOBS = jobs_command(PREFIX)


def wait_for_migrations_to_end(host, timeout=300):
    """Waits until no guest on ``host`` has a job. A killed evacuation leaves the migrations libvirt had
    started running (peer-to-peer: the source's libvirtd drives them); until they end, a guest is on two
    hosts for a moment and the hosts cannot all be listed at the instant it switches over."""
    deadline = time.monotonic() + timeout
    while True:
        busy = ssh(host, VIRSH_JOBS, timeout=60).stdout.split()
        if not busy:
            return
        if time.monotonic() > deadline:
            raise AssertionError("migrations still under way on %s after %d s: %s" % (host, timeout, busy))
        time.sleep(1)


def ensure_images_pools():
    """A transient storage pool for /var/lib/libvirt/images on each host that has none: libvirt creates a
    copied local disk only inside a pool. Returns the hosts where one was made."""
    made = []
    for host in HYPERVISORS:
        had = ssh(host, "for p in $(virsh -q pool-list --all --name); do virsh pool-dumpxml $p | "
                        "grep -q '<path>/var/lib/libvirt/images</path>' && echo yes; done; true").stdout
        if "yes" not in had:
            ssh(host, "virsh pool-create-as ev-test-images dir --target /var/lib/libvirt/images")
            made.append(host)
    return made


def remove_images_pools(hosts):
    for host in hosts:
        ssh(host, "virsh pool-destroy ev-test-images", check=False)


MAINTENANCE_REASON = "virtops evacuate lab test"


def clean_host_state(evacuation_ids):
    """Remove our journals, abort requests and the maintenance marker our tests set (no one else's)."""
    for host in HYPERVISORS:
        files = " ".join("%s/%s.*" % (JOURNAL_DIR, i) for i in evacuation_ids)
        ssh(host, "rm -f %s; grep -qs '%s' %s && rm -f %s; true" % (files, MAINTENANCE_REASON, MAINTENANCE,
                                                                    MAINTENANCE), check=False)


def guest(host, name, **options):
    argv = ["guest", "define", host, name]
    for key, value in options.items():
        if key == "label":
            for label in value:
                argv += ["--label", label]
        else:
            argv += ["--" + key.replace("_", "-"), str(value)]
    argv.append("--start")
    labctl(*argv)
    return name


def guest_diagnostics(host, name):
    """What a person needs when a guest stopped showing signs of life on ``host``."""
    return ssh(host, "virsh domstate --reason {0}; virsh domjobinfo {0} 2>&1 | head -n 4; "
                     "virsh qemu-monitor-command --hmp {0} 'info status' 2>&1; "
                     "ls -l /var/log/libvirt/qemu/{0}.serial.log; tail -c 300 /var/log/libvirt/qemu/{0}.serial.log"
               .format(name), check=False, timeout=60).stdout
