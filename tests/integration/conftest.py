"""Shared helpers for tests that run on the lab.

They reach hosts the way an operator would (SSH with the lab's key, virsh on
the host), independently of the code under test.
"""

import contextlib
import json
import os
import re
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LABCTL = os.path.join(REPO, "lab", "labctl")
INVENTORY = os.path.join(REPO, "inventories", "lab", "hosts.yml")
STATE_DIR = "/var/lib/virtops-lab"
SSH_KEY = os.path.join(STATE_DIR, "ssh", "id_ed25519")
KNOWN_HOSTS = os.path.join(STATE_DIR, "ssh", "known_hosts")
ADDRESSES = {"hv1": "198.18.0.11", "hv2": "198.18.0.12", "hv3": "198.18.0.13", "storage": "198.18.0.20"}
HYPERVISORS = ("hv1", "hv2", "hv3")

sys.path.insert(0, os.path.join(REPO, "lab"))
from virtops_lab.echo import EchoProbe  # noqa: E402  (the lab's own client, on the control node)


def labctl(*args, check=True, env=None, timeout=600):
    result = subprocess.run([LABCTL] + [str(a) for a in args], stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                            timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError("labctl %s failed (%d): %s%s" % (" ".join(map(str, args)), result.returncode,
                                                              result.stdout, result.stderr))
    return result


def ssh_argv(host, command):
    """The ssh command line that runs a shell command on a lab host, as root, checking its host key."""
    return ["ssh", "-i", SSH_KEY, "-o", "UserKnownHostsFile=" + KNOWN_HOSTS, "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
            "root@" + ADDRESSES[host], command]


def ssh(host, command, check=True, timeout=120):
    """Run a shell command on a lab host over SSH, as root, checking its host key."""
    argv = ssh_argv(host, command)
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError("on %s, %r failed (%d): %s%s" % (host, command, result.returncode, result.stdout,
                                                              result.stderr))
    return result


def heartbeats(host, name):
    """Heartbeat numbers the guest printed on its serial console on ``host``."""
    out = ssh(host, "grep -ao 'virtops-heartbeat [0-9]*' /var/log/libvirt/qemu/%s.serial.log 2>/dev/null | "
                    "tail -n 3 || true" % name, check=False).stdout.split()
    return [int(x) for x in out if x.isdigit()]


def boots(host, name):
    """How many times the guest booted on ``host``, from its serial console log there."""
    out = ssh(host, "grep -ac virtops-guest-up /var/log/libvirt/qemu/%s.serial.log 2>/dev/null || true" % name,
              check=False).stdout.strip()
    return int(out or 0)


def corruptions(host, name):
    """The guest's `virtops-corruption` lines on ``host``: its memory checker found a page it did not write."""
    out = ssh(host, "grep -a 'virtops-corruption' /var/log/libvirt/qemu/%s.serial.log 2>/dev/null | head -n 20 || true"
              % name, check=False).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def tcg_guest_panic(host, name):
    """The guest kernel's panic line in its console log on ``host``, when it runs under TCG; else ''."""
    return ssh(host, "virsh dumpxml {0} | grep -q \"<domain type='qemu'\" && "
                     "grep -a -m1 'Kernel panic' /var/log/libvirt/qemu/{0}.serial.log; true".format(name),
               check=False, timeout=60).stdout.strip()


def assert_intact_after_live_migration(host, name):
    """The guest that live-migrated to ``host`` kept its memory and did not boot again there.

    Except for QEMU's TCG defect on this kind of machine (lab/README.md, "Known defects"): a
    memory-dirtying guest can be corrupted by a live migration, plain `virsh migrate` too, and then
    its kernel panics right after arriving and the guest boots again. A boot after such a panic is
    that defect, and what its memory checker printed before it is printed here; a boot or a
    corruption without a panic fails. Returns whether the guest panicked.
    """
    panic = tcg_guest_panic(host, name)
    found = corruptions(host, name)
    if panic:
        print("%s: guest kernel panic after its live migration to %s (QEMU TCG defect): %s" % (name, host, panic))
        for line in found:
            print("%s on %s, before the panic: %s" % (name, host, line))
        wait_for(lambda: boots(host, name) >= 1, 60, "%s to boot again on %s after its panic" % (name, host))
        assert boots(host, name) == 1, "%s booted again on %s" % (name, host)
        return True
    assert found == [], "%s's memory changed in its live migration to %s: %s" % (name, host, found)
    assert boots(host, name) == 0, "%s booted again on %s" % (name, host)
    return False


def guest_address(name):
    """The guest's address on the lab's guest network, as `labctl status --json` shows it."""
    for guest in lab_status().get("guests", []):
        if guest["name"] == name:
            return guest["address"]
    raise AssertionError("%s has no address on the guest network" % name)


def open_connections(names):
    """{name: probe}: one TCP connection from the control node to each guest's echo service (port 7).

    Each probe sends a short message every 10 ms and records when the answers come back.
    """
    probes = {}
    try:
        for name in names:
            probes[name] = EchoProbe(guest_address(name)).start()
    except BaseException:
        for probe in probes.values():
            probe.stop(settle=0)
        raise
    return probes


def assert_connections_survived(probes, hosts_now):
    """Every message sent came back on the same connection (within 10 s of the end).

    ``hosts_now`` maps each guest to the host it runs on now. A guest that booted again
    there after a kernel panic (QEMU's TCG defect, see assert_intact_after_live_migration)
    lost its connections with its memory: that is printed, not failed. Returns
    {name: client-observed downtime in ms}.
    """
    summaries = dict((name, probe.stop(settle=10.0)) for name, probe in probes.items())
    downtime = {}
    for name, summary in sorted(summaries.items()):
        print("%s: client-observed downtime %s ms (%d messages, %d answered)" % (
            name, summary["longest_gap_ms"], summary["sent"], summary["answered"]))
        ok = summary["error"] is None and summary["answered"] == summary["sent"]
        host = hosts_now[name]
        if not ok and boots(host, name) and tcg_guest_panic(host, name):
            print("%s: its connection ended with its panic on %s (QEMU TCG defect): %s" % (
                name, host, summary["error"]))
            continue
        assert summary["error"] is None, "%s: the client's connection broke: %s" % (name, summary["error"])
        assert summary["answered"] == summary["sent"], "%s: %d of %d messages unanswered" % (
            name, summary["sent"] - summary["answered"], summary["sent"])
        downtime[name] = summary["longest_gap_ms"]
    return downtime


@contextlib.contextmanager
def held_connections(names):
    """Yield open_connections(names); when the block raises, close them at once and re-raise.

    On leaving the block normally they stay open: assert_connections_survived() stops them.
    """
    probes = open_connections(names)
    try:
        yield probes
    except BaseException:
        for probe in probes.values():
            probe.stop(settle=0)
        raise


@contextlib.contextmanager
def connection_survives(name, host_after):
    """Hold one TCP connection to the guest during the block; on leaving it, assert it survived.

    ``host_after`` is where the guest runs when the block ends. Yields a dict that gets the
    client-observed downtime in ms (``downtime_ms``; None when the guest's panic excused it).
    """
    seen = {"downtime_ms": None}
    with held_connections([name]) as probes:
        yield seen
    seen["downtime_ms"] = assert_connections_survived(probes, {name: host_after}).get(name)


def record_guest_memory(host, name):
    """Print what the guest's memory checker and its console say after a live migration to ``host``.

    For tests that never asserted "no reboot" (their guests are driven to forced downtime or
    post-copy): they record corruption lines, panics and boots, and fail on none of them, so
    that they are no flakier than before. Returns (corruption lines, panic line, boots).
    """
    found, panic, booted = corruptions(host, name), tcg_guest_panic(host, name), boots(host, name)
    for line in found:
        print("%s on %s after its live migration: %s" % (name, host, line))
    if panic or booted:
        print("%s on %s after its live migration: %d new boot(s); panic: %s" % (name, host, booted, panic or "none"))
    return found, panic, booted


def domains(host):
    """{name: {"state": ..., "persistent": bool}} as the host's own virsh reports them."""
    found = {}
    listing = ssh(host, "virsh -q list --all --name; echo ---; virsh -q list --all --persistent --name").stdout
    everything, persistent = listing.split("---")
    running = set(ssh(host, "virsh -q list --state-running --name").stdout.split())
    for name in everything.split():
        found[name] = {"state": "running" if name in running else "other", "persistent": name in persistent.split()}
    return found


def where(name, hosts=HYPERVISORS):
    """Hosts on which a domain runs, and hosts on which it is persistent."""
    running, persistent = [], []
    for host in hosts:
        info = domains(host).get(name)
        if info and info["state"] == "running":
            running.append(host)
        if info and info["persistent"]:
            persistent.append(host)
    return running, persistent


# Tables a suite prints at its end, in CI's log whether its tests passed or failed:
# (title, column names, rows), the rows filled in by the tests.
SUMMARY_TABLES = []


def pytest_terminal_summary(terminalreporter):
    for title, columns, rows in SUMMARY_TABLES:
        if not rows:
            continue
        widths = [max(len(str(cell)) for cell in column) for column in zip(columns, *rows)]
        terminalreporter.section(title)
        for row in [columns] + list(rows):
            terminalreporter.write_line(" | ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))


def ansible_env():
    """The environment in which Ansible finds the checkout as virtops.migration and prints JSON."""
    link = os.path.join(REPO, ".tmp", "collections", "ansible_collections", "virtops", "migration")
    if os.path.realpath(link) != os.path.realpath(REPO):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if os.path.islink(link):
            os.unlink(link)
        os.symlink(REPO, link)
    env = dict(os.environ)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".tmp", "collections"),
        ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
    )
    return env


def run_module(host, module, args=None, check=False, diff=False, timeout=600):
    """Run a module on a lab host as `ansible HOST -m MODULE` does; return its result dict."""
    argv = [os.path.join(REPO, ".venv", "bin", "ansible"), "-i", INVENTORY, host, "-m", module]
    argv += ["-a", json.dumps(args)] if args else []
    argv += ["--check"] if check else []
    argv += ["--diff"] if diff else []
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=ansible_env(), timeout=timeout, check=False)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("ansible printed no JSON (rc %d): %s%s" % (proc.returncode, proc.stdout, proc.stderr))
    return report["plays"][0]["tasks"][0]["hosts"][host]


def lab_status():
    return json.loads(labctl("status", "--json", check=False).stdout)


def wait_for(predicate, timeout, what, interval=0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


def lab_leftovers():
    """Everything of the lab still on the machine, looked up without the lab's own code."""
    found = []
    found += ["netns " + line.split()[0] for line in subprocess.run(
        ["ip", "netns", "list"], stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True).stdout.splitlines()
        if line.startswith("vo-")]
    found += ["link " + name for name in re.findall(r"^\d+: (vo-[^:@]+)", subprocess.run(
        ["ip", "-o", "link", "show"], stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True).stdout, re.M)]
    with open("/proc/self/mountinfo") as handle:
        found += ["mount " + line.split()[4] for line in handle if line.split()[4].startswith(STATE_DIR)]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                argv = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if ("systemd-nspawn" in argv or "apt-cacher-ng" in argv) and "virtops-lab" in argv:
            found.append("process %s: %s" % (pid, argv[:120]))
    for hierarchy in ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"):
        if os.path.isdir(hierarchy):
            found += ["cgroup %s/%s" % (hierarchy, name) for name in os.listdir(hierarchy) if name.startswith("vo-")]
    if os.path.exists(STATE_DIR):
        found.append("directory " + STATE_DIR)
    return found


@pytest.fixture(scope="session")
def lab():
    """The running lab (brought up when it is not)."""
    if not lab_status()["up"]:
        labctl("up")
    return lab_status()
