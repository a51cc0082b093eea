"""Two hypervisor generations side by side, as in a rolling upgrade: QEMU 7.2 (debian12) and 10.0 (debian13).

Needs a prepared lab with hypervisors of both releases, for example
    lab/labctl up --releases "hv3=debian13" && ansible-playbook -i inventories/lab/hosts.yml playbooks/prepare_hosts.yml
and is skipped on a lab of one generation.
"""

import pytest

from conftest import (assert_intact_after_live_migration, connection_survives, heartbeats, lab_status, labctl,
                      run_module, ssh, wait_for, where)


@pytest.fixture(scope="module")
def generations(lab):
    by_release = {}
    for host in lab_status()["hosts"]:
        if host["group"] == "hypervisors" and host["running"]:
            by_release.setdefault(host["release"], []).append(host)
    if not by_release.get("debian12") or not by_release.get("debian13"):
        pytest.skip("the lab runs one hypervisor generation (%s): bring it up with --releases hv3=debian13"
                    % ", ".join(sorted(r or "?" for r in by_release)))
    old, new = by_release["debian12"][0], by_release["debian13"][0]
    print("old generation: %s (libvirt %s, QEMU %s); new: %s (libvirt %s, QEMU %s)" % (
        old["name"], old["libvirt"], old["qemu"], new["name"], new["libvirt"], new["qemu"]))
    return old["name"], new["name"]


def migration_address(host):
    return next(h["migration_address"] for h in lab_status()["hosts"] if h["name"] == host)


def assert_runs_on_exactly(name, host):
    """virsh on every hypervisor: the guest runs on ``host`` alone and is persistent there alone."""
    running, persistent = where(name)
    assert running == [host] and persistent == [host], "%s runs on %s, persistent on %s" % (name, running, persistent)


@pytest.fixture
def guest():
    made = []

    def define(host, name, *options):
        labctl("guest", "define", host, name, "--memory", "192", "--start", *options)
        made.append(name)
        wait_for(lambda: heartbeats(host, name), 90, "%s to boot on %s" % (name, host))
        return name

    yield define
    for name in made:
        labctl("guest", "remove", name, check=False)


def machine_of(host, name):
    return ssh(host, "virsh dumpxml %s | sed -n \"s/.*machine='\\([^']*\\)'.*/\\1/p\" | head -1" % name).stdout.strip()


def test_live_migration_from_the_old_generation_to_the_new_works(generations, guest):
    old, new = generations
    # An idle guest: QEMU 7.2 under TCG corrupts dirtying guests in plain virsh migrations too
    # (lab/README.md, "Known defects"), which would hide what this test is about.
    name = guest(old, "gen-forward")
    machine = machine_of(old, name)
    checked = run_module(old, "virtops.migration.precheck", {
        "destinations": [new], "domains": [name], "migration_addresses": {new: migration_address(new)},
        "measure_bandwidth": False, "dirty_rate_seconds": 0})
    assert not checked.get("failed"), checked.get("msg")
    assert checked["results"][0]["verdict"] in ("ok", "warn"), checked["results"][0]["reasons"]
    last = max(heartbeats(old, name))
    with connection_survives(name, new) as client:
        result = run_module(old, "virtops.migration.migrate", {
            "name": name, "destination": new, "migration_address": migration_address(new)})
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] and result["mode"] == "live"
    assert_runs_on_exactly(name, new)
    # It keeps its old machine type, which the new QEMU still offers, and runs on.
    assert machine_of(new, name) == machine
    wait_for(lambda: max(heartbeats(new, name) or [-1]) > last, 60, "%s's heartbeat on %s" % (name, new))
    assert not assert_intact_after_live_migration(new, name), "an idle guest panicked after its migration"
    print("%s (%s) moved %s -> %s: downtime %s ms (client-observed %s ms)" % (
        name, machine, old, new, result["timings"]["downtime_ms"], client["downtime_ms"]))


def test_live_migration_from_the_new_generation_to_the_old_is_refused_before_anything_moves(generations, guest):
    old, new = generations
    name = guest(new, "gen-backward")
    machine = machine_of(new, name)
    checked = run_module(new, "virtops.migration.precheck", {
        "destinations": [old], "domains": [name], "migration_addresses": {old: migration_address(old)},
        "measure_bandwidth": False, "dirty_rate_seconds": 0})
    assert not checked.get("failed"), checked.get("msg")
    item = checked["results"][0]
    assert item["verdict"] == "block", item
    reasons = " ".join(c["detail"] for c in item["checks"] if c["verdict"] == "block")
    assert "machine type %s is not offered by %s" % (machine, old) in reasons, reasons
    assert_runs_on_exactly(name, new)
    last = max(heartbeats(new, name))
    result = run_module(new, "virtops.migration.migrate", {
        "name": name, "destination": old, "migration_address": migration_address(old)})
    assert result.get("failed") and not result.get("changed"), result
    print("%s (%s) refused %s -> %s: %s | migrate: %s" % (name, machine, new, old, reasons, result["msg"]))
    # Nothing moved, and the guest ran on throughout.
    assert_runs_on_exactly(name, new)
    wait_for(lambda: max(heartbeats(new, name) or [-1]) > last, 30, "%s's heartbeat on %s" % (name, new))
