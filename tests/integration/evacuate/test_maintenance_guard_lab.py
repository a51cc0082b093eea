"""A host in maintenance takes no guest in, even from a plan made before it was marked (issue 11).

The hypervisor role installs a libvirt hook on every host (roles/hypervisor/files/
virtops-maintenance): while the maintenance marker is there, libvirt refuses every incoming live
migration but of the domains a restore brings back. These tests check it on the lab:

1. the migrate module, as a user runs it, to a marked host: refused before anything moves, the
   guest runs on as it did; once the host takes that guest back (maintenance, state=returning),
   the same migration goes through;
2. two hosts evacuating each other at once, from two ansible-playbook runs started together (two
   operators): whichever plans sent a guest to the other host, no guest ends on a host whose run
   says it is empty, none is ever lost or duplicated (an independent watcher polls virsh on every
   host), and each run's verdict is what virsh shows.

Outcomes come from virsh on every host, never from the collection's code.
"""

import json
import time

import pytest

from conftest import (assert_intact_after_live_migration, connection_survives, heartbeats, labctl, run_module, ssh,
                      wait_for)
from evacuate_helpers import (
    MAINTENANCE,
    MAINTENANCE_REASON,
    clean_host_state,
    failure_messages,
    guest,
    journal,
    maintenance,
    start_playbook,
)
from migrate_helpers import MIGRATION_ADDRESSES, migrate
from watch import Watcher, placement_of

MAINTENANCE_MODULE = "virtops.migration.maintenance"
# What the host's hook says when it refuses (libvirt carries it to the source's error).
REFUSAL = "is in maintenance and takes no incoming migration"
GUARD_GUEST = "mg-guard"
CROSSED = {"hv1": ["mg-a1", "mg-a2"], "hv2": ["mg-b1", "mg-b2"]}
# Makes hv3 the fullest host, so that each plan sends guests to the other host under evacuation.
FILLER = "mg-filler"
IDS = dict(hv1="mg-evac-hv1", hv2="mg-evac-hv2")


def placement():
    """{guest: (running hosts, persistent hosts)} of this file's guests, from virsh on every host."""
    return placement_of(lambda name: name.startswith("mg-"))


def remove_guests():
    for name in [GUARD_GUEST, FILLER] + [n for names in CROSSED.values() for n in names]:
        labctl("guest", "remove", name, check=False)


@pytest.fixture
def clean(lab):
    proc = ssh("hv1", "virsh -c qemu+tls://hv2/system -q list --all >/dev/null", check=False, timeout=60)
    if proc.returncode != 0:
        pytest.fail("the lab hosts are not prepared for migration (playbooks/prepare_hosts.yml): %s" % proc.stderr)
    remove_guests()
    clean_host_state(list(IDS.values()))
    yield
    remove_guests()
    clean_host_state(list(IDS.values()))
    for host in ("hv1", "hv2", "hv3"):
        ssh(host, "test -e {0} || rm -f {0}.returning".format(MAINTENANCE), check=False)


def test_a_host_in_maintenance_refuses_incoming_migrations_but_of_the_guests_it_takes_back(clean):
    guest("hv1", GUARD_GUEST, memory=128, disk="none")
    wait_for(lambda: heartbeats("hv1", GUARD_GUEST), 120, "%s to boot" % GUARD_GUEST)
    marked = run_module("hv2", MAINTENANCE_MODULE, dict(reason=MAINTENANCE_REASON))
    assert marked.get("changed") and not marked.get("failed"), marked
    args = dict(name=GUARD_GUEST, destination="hv2", migration_address=MIGRATION_ADDRESSES["hv2"], timeout=120)
    try:
        with connection_survives(GUARD_GUEST, "hv1"):
            refused, seconds = migrate("hv1", **args)
        print("refused in %.1f s: %s" % (seconds, refused.get("msg", "")[:400]))
        assert refused.get("failed") and REFUSAL in refused.get("msg", ""), refused
        assert "Traceback" not in refused.get("msg", "") + (refused.get("module_stderr") or "")
        assert placement()[GUARD_GUEST] == (["hv1"], ["hv1"]), placement()
        assert ssh("hv1", "virsh -q domstate %s" % GUARD_GUEST).stdout.strip() == "running"

        taking = run_module("hv2", MAINTENANCE_MODULE, dict(state="returning", returning_domains=[GUARD_GUEST]))
        assert taking.get("changed") and taking.get("returning") == [GUARD_GUEST], taking
        assert ssh("hv2", "cat %s.returning" % MAINTENANCE).stdout.split() == [GUARD_GUEST]
        with connection_survives(GUARD_GUEST, "hv2") as seen:
            moved, seconds = migrate("hv1", **args)
        assert not moved.get("failed"), moved.get("msg")
        print("taken back in %.1f s; client-observed downtime %s ms" % (seconds, seen["downtime_ms"]))
        assert placement()[GUARD_GUEST] == (["hv2"], ["hv2"]), placement()
        assert_intact_after_live_migration("hv2", GUARD_GUEST)
    finally:
        cleared = run_module("hv2", MAINTENANCE_MODULE, dict(state="absent"))
    assert not cleared.get("failed"), cleared
    assert maintenance("hv2") is None
    assert ssh("hv2", "test -e %s.returning" % MAINTENANCE, check=False).returncode == 1


def evacuation(host, port, control):
    return dict(evacuate_host=host, evacuate_id=IDS[host], evacuate_domain_pattern="^mg-", evacuate_control_dir=control,
                evacuate_iperf3_port=port, evacuate_progress_interval=2, evacuate_maintenance_reason=MAINTENANCE_REASON)


def refusals(host):
    """The notes of ``host``'s journal that say a destination's hook refused a move."""
    record = journal(host, IDS[host]) or {}
    return [note for dom in (record.get("domains") or {}).values() for note in dom.get("notes") or [] if REFUSAL in note]


def test_two_hosts_evacuating_each_other_at_once_send_no_guest_to_the_other(clean, tmp_path):
    names = [n for host in sorted(CROSSED) for n in CROSSED[host]]
    guests = dict(CROSSED, hv3=[FILLER])
    for host, on_host in guests.items():
        for name in on_host:
            guest(host, name, memory=640 if name == FILLER else 128, disk="none")
    for host, on_host in guests.items():
        for name in on_host:
            wait_for(lambda h=host, n=name: heartbeats(h, n), 120, "%s to boot on %s" % (name, host))
    watcher = Watcher(names)
    watcher.start()
    started = time.monotonic()
    try:
        # Two operators, each with an iperf3 port of their own on the shared destination.
        runs = dict(hv1=start_playbook("evacuate_host.yml", evacuation("hv1", 5212, str(tmp_path / "hv1"))),
                    hv2=start_playbook("evacuate_host.yml", evacuation("hv2", 5213, str(tmp_path / "hv2"))))
        results = {}
        for host, proc in runs.items():
            out, err = proc.communicate(timeout=1200)
            results[host] = (proc.returncode, out, err)
    finally:
        watcher.stop()
    wall = time.monotonic() - started
    now = placement()
    print("both runs ended after %.0f s; placement: %s; watcher: %d polls" % (
        wall, dict((n, now.get(n)) for n in names), watcher.polls))
    for host in sorted(runs):
        print("%s's run: rc %d; refusals by the other's hook: %s" % (host, results[host][0], refusals(host)))

    assert watcher.polls > 0, watcher.errors[-3:]
    assert not watcher.violations, watcher.violations
    for name in names:
        running, persistent = now.get(name, ([], []))
        assert len(running) == 1 and running == persistent, "%s runs on %s, persistent on %s" % (
            name, running, persistent)
    # Both plans were made from facts read before the other host was marked, and preferred it to
    # the fuller hv3: its hook refused those moves.
    assert refusals("hv1") or refusals("hv2"), "no move was planned to the other host under evacuation"
    for host, (rc, out, err) in sorted(results.items()):
        holds = [n for n in names if now[n][0] == [host]]
        if rc == 0:
            # A run that says its host is empty is right: the other run did not leave it a guest.
            assert holds == [], "%s's run succeeded, yet %s runs there" % (host, holds)
            assert maintenance(host) is not None, "%s's run succeeded and left it out of maintenance" % host
        else:
            report = json.loads(out) if out.strip().startswith("{") else {}
            messages = failure_messages(report) if report else err[-2000:]
            print("%s's run failed: %s" % (host, messages))
            assert holds, "%s's run failed, yet the host is empty: %s" % (host, messages)
    # On this lab both runs can empty their hosts onto hv3 (4 guests of 128 MiB), and both should:
    # each run marks its host before its pre-checks (iperf3, dirty rates), so ~10 s before the
    # other run's first move can start, and a move planned to it is refused and placed on hv3.
    assert all(rc == 0 for rc, _out, _err in results.values()), dict(
        (h, r[0]) for h, r in results.items())
    assert all(now[n][0] == ["hv3"] for n in names), now
