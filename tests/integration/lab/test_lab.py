"""The lab: real hypervisor hosts on one machine, checked from outside.

These tests run in file order: the first brings the lab up from nothing;
test_lab_down.py, run after this file, proves that `down` leaves nothing.
"""

import json
import os
import re
import statistics
import subprocess
import time

import pytest

from conftest import (ADDRESSES, HYPERVISORS, INVENTORY, REPO, EchoProbe, domains, lab_leftovers, lab_status, labctl,
                      ssh, wait_for)

ANSIBLE = os.path.join(REPO, ".venv", "bin", "ansible")
HOSTS = tuple(ADDRESSES)


# The lab's own tests need libvirt on the hypervisors: they run on "installed"
# hosts (libvirt and QEMU as Debian installs them, not configured). The last test
# here brings up stock hosts, on which the roles install everything.
def test_up_from_nothing():
    labctl("down")
    assert lab_leftovers() == []
    started = time.monotonic()
    labctl("up", "--installed")
    print("lab up from nothing (caches warm or cold as found): %.1f s" % (time.monotonic() - started))
    status = lab_status()
    assert status["up"]
    assert [h["name"] for h in status["hosts"] if h["running"]] == list(HOSTS)
    assert status["accel"]["linux_guest"] in ("kvm", "tcg")


def test_up_again_changes_nothing():
    before = {h["name"]: h["init_pid"] for h in lab_status()["hosts"]}
    started = time.monotonic()
    labctl("up", "--installed")
    assert time.monotonic() - started < 30
    assert {h["name"]: h["init_pid"] for h in lab_status()["hosts"]} == before


def test_every_host_answers_ssh_as_itself_with_its_own_libvirt():
    identities = {}
    for host in HOSTS:
        out = ssh(host, "hostname; cat /etc/machine-id; systemctl is-system-running; "
                        "virsh -c qemu:///system capabilities | sed -n 's:.*<uuid>\\(.*\\)</uuid>.*:\\1:p' | head -1; "
                        "virsh -c qemu:///system hostname").stdout.split()
        hostname, machine_id, system_state, libvirt_uuid, libvirt_hostname = out
        assert hostname == host and libvirt_hostname == host + ".lab.test"
        assert system_state == "running", "%s: systemd reports %s" % (host, system_state)
        identities[host] = (machine_id, libvirt_uuid)
    # Two hosts sharing a libvirt host UUID could not migrate to each other.
    assert len({uuid for machine_id, uuid in identities.values()}) == len(HOSTS)
    assert len({machine_id for machine_id, uuid in identities.values()}) == len(HOSTS)


def test_hosts_run_systemd_and_libvirt_under_it():
    for host in HYPERVISORS:
        out = ssh(host, "ps -o comm= -p 1; systemctl is-active libvirtd.socket ssh.service").stdout.split()
        assert out == ["systemd", "active", "active"]


def test_ansible_reaches_every_host_and_a_module_there_sees_that_hosts_libvirt():
    ping = subprocess.run([ANSIBLE, "-i", INVENTORY, "all", "-m", "ansible.builtin.ping", "-o"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert ping.stdout.count("SUCCESS") == len(HOSTS)
    probe = ("python3 -c \"import libvirt, socket; c = libvirt.open('qemu:///system'); "
             "print(socket.gethostname(), c.getHostname(), len(c.listAllDomains()) >= 0)\"")
    result = subprocess.run([ANSIBLE, "-i", INVENTORY, "hypervisors", "-m", "ansible.builtin.shell", "-a", probe, "-o"],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    for host in HYPERVISORS:
        assert re.search(r"^%s \| CHANGED \| rc=0 \| \(stdout\) %s %s\.lab\.test True$" % (host, host, host),
                         result.stdout, re.M), result.stdout


def test_nothing_routes_out_of_the_lab():
    for host in HOSTS:
        routes = ssh(host, "ip -4 route show; ip -6 route show default").stdout
        assert "default" not in routes
        for line in routes.splitlines():
            assert line.startswith(("198.18.", "fe80::")), line


def test_a_domain_defined_on_one_host_is_seen_only_there():
    labctl("guest", "define", "hv1", "lab-private", "--memory", "128")
    try:
        assert "lab-private" in domains("hv1")
        assert "lab-private" not in domains("hv2") and "lab-private" not in domains("hv3")
    finally:
        labctl("guest", "remove", "lab-private")


def heartbeat(host, name):
    out = ssh(host, "grep -a -o 'virtops-heartbeat [0-9]*' /var/log/libvirt/qemu/%s.serial.log | tail -1" % name,
              check=False).stdout.split()
    return int(out[-1]) if out else -1


@pytest.fixture(scope="module")
def guests():
    """A guest on every hypervisor, one per disk kind, and a firmware-only guest."""
    made = [
        ("hv1", "lab-shared", ["--disk", "shared"]),
        ("hv2", "lab-local", ["--disk", "local"]),
        ("hv3", "lab-diskless", []),
        ("hv1", "lab-firmware", ["--kind", "firmware", "--memory", "64"]),
    ]
    info = {}
    for host, name, extra in made:
        info[name] = json.loads(labctl("guest", "define", host, name, "--start", *extra).stdout)
    yield info
    for name in [entry[1] for entry in made]:
        labctl("guest", "remove", name)


def test_a_guest_runs_on_every_host_with_each_kind_of_disk(guests):
    for name in ("lab-shared", "lab-local", "lab-diskless"):
        host = guests[name]["host"]
        assert domains(host)[name]["state"] == "running"
        first = wait_for(lambda h=host, n=name: heartbeat(h, n) >= 1 and heartbeat(h, n), 90, name + " to boot")
        wait_for(lambda h=host, n=name, f=first: heartbeat(h, n) > f, 30, name + "'s heartbeat to advance")
        print("%s on %s runs under %s" % (name, host, guests[name]["accel"].upper()))
    shared_xml = ssh("hv1", "virsh dumpxml lab-shared").stdout
    assert "protocol='nbd'" in shared_xml and ADDRESSES["storage"] in shared_xml
    assert ssh("hv2", "qemu-img info -U /var/lib/libvirt/images/lab-local.qcow2").returncode == 0


def test_every_linux_guest_has_an_address_on_the_guest_network_and_answers_an_echo(guests):
    listed = dict((g["name"], g["address"]) for g in lab_status()["guests"])
    linux = ("lab-shared", "lab-local", "lab-diskless")
    for name in linux:
        assert listed[name] == guests[name]["address"] and listed[name].startswith("198.18.2."), listed
    assert len(set(listed[name] for name in linux)) == 3 and "lab-firmware" not in listed
    # The control node reaches each one on its own host's bridge, over one TCP connection.
    for name in linux:
        wait_for(lambda n=name: heartbeat(guests[n]["host"], n) >= 1, 90, name + " to boot")
        probe = EchoProbe(listed[name]).start()
        time.sleep(0.5)
        summary = probe.stop()
        assert summary["error"] is None and summary["answered"] == summary["sent"] >= 20, summary
    # The guest network stays inside the machine: no host has an address or a route on it.
    for host in HYPERVISORS:
        assert "198.18.2." not in ssh(host, "ip -4 -o addr show; ip route show").stdout


def test_guests_run_under_the_accelerator_the_lab_reports(guests):
    for name, info in guests.items():
        cmdline = ssh(info["host"], "cat /proc/$(pgrep -f 'guest=%s,' | head -1)/cmdline | tr '\\0' ' '" % name).stdout
        assert "-accel %s" % info["accel"] in cmdline, cmdline[:300]
    if lab_status()["accel"]["kvm_device"]:
        assert guests["lab-firmware"]["accel"] == "kvm"


def dirty_rate(host, name, seconds):
    ssh(host, "virsh domdirtyrate-calc %s --seconds %d" % (name, seconds))
    time.sleep(seconds + 0.5)

    def measured():
        stats = ssh(host, "virsh domstats %s --dirtyrate" % name).stdout
        if "dirtyrate.calc_status=2" in stats:
            return int(re.search(r"dirtyrate.megabytes_per_second=(\d+)", stats).group(1)) + 1e-9
        return None
    return wait_for(measured, 20, "the dirty-rate calculation of " + name)


def test_workload_dirties_memory_at_about_the_rate_asked():
    # QEMU samples pages to estimate the rate: a large working set and a period
    # that rewrites it once keep the sampling error small.
    labctl("guest", "define", "hv2", "lab-dirty", "--memory", "512", "--dirty-mib", "192", "--dirty-rate", "64",
           "--start")
    labctl("guest", "define", "hv2", "lab-idle", "--memory", "512", "--start")
    try:
        wait_for(lambda: heartbeat("hv2", "lab-dirty") >= 2 and heartbeat("hv2", "lab-idle") >= 2, 90, "guests to boot")
        rates = [dirty_rate("hv2", "lab-dirty", 3) for attempt in range(3)]
        idle = dirty_rate("hv2", "lab-idle", 3)
        print("asked 64 MiB/s: measured %s MB/s; idle guest %d MB/s" % ([int(r) for r in rates], idle))
        assert 0.65 * 64 <= statistics.mean(rates) <= 1.35 * 64
        assert idle < 8
    finally:
        labctl("guest", "remove", "lab-dirty")
        labctl("guest", "remove", "lab-idle")


def link_local(host, dev="mig0"):
    return ssh(host, "ip -6 -o addr show dev %s scope link | awk '{print $4}' | cut -d/ -f1" % dev).stdout.strip()


def throughput_mbit(sender, receiver):
    address = link_local(receiver)
    ssh(receiver, "iperf3 -s -1 -D -B %s%%mig0" % address)
    time.sleep(0.5)
    report = json.loads(ssh(sender, "iperf3 -J -t 2 -c %s%%mig0" % address).stdout)
    return report["end"]["sum_received"]["bits_per_second"] / 1e6


def test_shaping_limits_a_hosts_migration_link():
    unshaped = throughput_mbit("hv1", "hv2")
    labctl("shape", "hv1", "100")
    try:
        shaped = throughput_mbit("hv1", "hv2")
    finally:
        labctl("shape", "hv1", "0")
    print("hv1 -> hv2 over the migration network: %.0f Mbit/s unshaped, %.1f Mbit/s shaped to 100" % (unshaped, shaped))
    assert 60 <= shaped <= 110
    assert unshaped > 300


def test_cut_and_heal_a_hosts_migration_link():
    target = "%s%%mig0" % link_local("hv2")
    assert ssh("hv1", "ping -c1 -W2 %s" % target, check=False).returncode == 0
    labctl("cut", "hv2")
    try:
        assert ssh("hv1", "ping -c1 -W2 %s" % target, check=False).returncode != 0
    finally:
        labctl("heal", "hv2")
    wait_for(lambda: ssh("hv1", "ping -c1 -W2 %s" % target, check=False).returncode == 0, 20, "the link to heal")


def test_stop_start_and_kill_a_hosts_libvirt_daemon(guests):
    labctl("libvirtd", "hv3", "stop")
    try:
        assert ssh("hv3", "virsh -c qemu:///system list", check=False).returncode != 0
        # Guests keep running without their daemon, as on a real host.
        assert ssh("hv3", "pgrep -f guest=lab-diskless,", check=False).returncode == 0
    finally:
        labctl("libvirtd", "hv3", "start")
    assert "lab-diskless" in ssh("hv3", "virsh -q list --name").stdout
    pid = ssh("hv3", "systemctl show -p MainPID --value libvirtd").stdout.strip()
    labctl("libvirtd", "hv3", "kill")
    assert ssh("hv3", "kill -0 %s" % pid, check=False).returncode != 0
    # systemd restarts a daemon that died (Restart=on-failure), and it finds its guests again.
    wait_for(lambda: "lab-diskless" in ssh("hv3", "virsh -q list --name", check=False).stdout, 30, "libvirtd back")


def test_exec_runs_a_command_inside_a_host():
    result = labctl("exec", "hv2", "--", "hostname")
    assert result.stdout.strip() == "hv2"


def test_stock_hosts_have_no_hypervisor_and_install_from_the_lab_mirror():
    labctl("up", "--stock")
    status = lab_status()
    assert status["up"] and status["hypervisor_root"] == "stock"
    assert status["mirror"] == "http://198.18.0.1:3142"
    for host in HYPERVISORS:
        out = ssh(host, "systemctl is-system-running; python3 -c 'print(1)'; "
                        "dpkg-query -W -f='${Status}\\n' libvirt-daemon-system qemu-system-x86 2>&1 | "
                        "grep -c 'install ok installed' || true; ip -4 route show default | wc -l").stdout.split()
        assert out == ["running", "1", "0", "0"], (host, out)
    # apt goes through the mirror on the control node, the only way out of the lab.
    out = ssh("hv1", "apt-config dump Acquire::http::Proxy; apt-get update -q >/dev/null && "
                     "apt-get install -q -y --download-only iperf3 >/dev/null && ls /var/cache/apt/archives/iperf3_*.deb "
                     "&& apt-get clean", timeout=300).stdout
    assert 'Acquire::http::Proxy "http://198.18.0.1:3142/";' in out and "iperf3_" in out
    assert ssh("hv1", "python3 -c \"import urllib.request; urllib.request.urlopen('http://example.com/', timeout=5)\"",
               check=False).returncode != 0
