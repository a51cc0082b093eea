"""Faults during an evacuate_host.yml run on the lab (issue 11): nothing lost, nothing duplicated.

The source's management network is cut while its moves are in flight, then healed. The management
network carries the controller's SSH to the host and libvirt's own connection from the source to
each destination (qemu+tls://hvN, the control half of a peer-to-peer migration). The migration
streams and the guests' own network are separate links, and are left alone.

Found with this test, and not fixed (issue 11's note): when the cut outlasts libvirt's keepalive on
the source's connection to the destination (qemu.conf keepalive_interval 5 s x keepalive_count 5)
while the migration stream completes, the source's Finish call can reach the destination once the
network is healed, and the destination resumes the guest ("running (migrated)"), while the source,
whose keepalive has already closed that connection, confirms the migration as cancelled and resumes
its own copy ("running (migration canceled)"). The guest then runs on two hosts. The migrate module
and the evacuation report it ("runs on both ...: refusing to guess which one is right") and leave
both copies running. Reproduced 4 of 4 times on the lab (QEMU 7.2, libvirt 9.0). A hand-over
(VIR_MIGRATE_PAUSED, the guest resumed by the module once the source has let go, and the paused
leftover removed) made it pass 3 of 3 times, but left guests paused whenever the module itself was
killed mid-migration (libvirt completes the move and nobody resumes it), so it was not kept. Until the
collection prevents it, the test is an expected failure (strict: it fails the run once it passes),
run by make test-faults only.

Outcomes come from virsh on every host (an independent watcher polls them all; a poll in which the
cut host could not be listed is no evidence either way), the guests' own memory checks, and a
client's TCP connection to each guest - never from the collection's code.
"""

import os
import threading
import time

import pytest

from conftest import (assert_connections_survived, assert_intact_after_live_migration, heartbeats,
                      held_connections, labctl, ssh, wait_for)
from evacuate_helpers import MAINTENANCE_REASON, clean_host_state, failure_messages, guest, journal, run_playbook
from watch import Watcher, jobs_command, placement_of

SOURCE = "hv1"
EVACUATION_ID = "fx-mgmt-cut"
# 256 MiB rewriting 32 MiB at 4 MiB/s over a 100 Mbit/s link (as the faults suite): a first pass
# of ~20 s, long enough to cut the network under it.
GUESTS = {"fx-dirty": dict(memory=256, disk="none", dirty_mib=32, dirty_rate=4),
          "fx-idle": dict(memory=128, disk="none")}
LINK_MBIT = 100
CUT_S = 25


def placement():
    return placement_of(lambda name: name.startswith("fx-"))


@pytest.fixture
def guests(lab):
    proc = ssh(SOURCE, "virsh -c qemu+tls://hv2/system -q list --all >/dev/null", check=False, timeout=60)
    if proc.returncode != 0:
        pytest.fail("the lab hosts are not prepared for migration (playbooks/prepare_hosts.yml): %s" % proc.stderr)
    for name in GUESTS:
        labctl("guest", "remove", name, check=False)
    clean_host_state([EVACUATION_ID])
    for name, options in GUESTS.items():
        guest(SOURCE, name, **options)
    for name in GUESTS:
        wait_for(lambda n=name: heartbeats(SOURCE, n), 120, "%s to boot" % name)
    labctl("shape", SOURCE, LINK_MBIT)
    yield sorted(GUESTS)
    labctl("heal", SOURCE, "--net", "mgmt")
    labctl("shape", SOURCE, 0)
    for name in GUESTS:
        labctl("guest", "remove", name, check=False)
    clean_host_state([EVACUATION_ID])


@pytest.mark.skipif(os.environ.get("VIRTOPS_FAULTS") != "all", reason="make test-faults (VIRTOPS_FAULTS=all) runs it")
@pytest.mark.xfail(strict=True, reason="libvirt resumes the source after a Finish lost to its keepalive, while the "
                                       "destination runs the guest too: split brain, not prevented yet (issue 11)")
def test_the_sources_management_network_cut_mid_evacuation_loses_nothing(guests, tmp_path):
    names = guests
    watcher = Watcher(names)
    watcher.start()
    extra = dict(evacuate_host=SOURCE, evacuate_id=EVACUATION_ID, evacuate_domain_pattern="^fx-",
                 evacuate_control_dir=str(tmp_path), evacuate_iperf3_port=5214, evacuate_progress_interval=2,
                 evacuate_maintenance_reason=MAINTENANCE_REASON)
    cut = {}

    def moving():
        return bool(ssh(SOURCE, jobs_command("fx-"), check=False).stdout.strip())

    def cut_when_moving():
        wait_for(moving, 300, "the evacuation's moves to be under way", interval=1)
        time.sleep(2)
        cut["at"] = time.monotonic()
        labctl("cut", SOURCE, "--net", "mgmt")
        time.sleep(CUT_S)
        labctl("heal", SOURCE, "--net", "mgmt")
        cut["healed"] = time.monotonic()

    injector = threading.Thread(target=cut_when_moving, daemon=True)
    started = time.monotonic()
    with held_connections(names) as clients:
        try:
            injector.start()
            rc, report, wall = run_playbook("evacuate_host.yml", extra, timeout=1200)
            injector.join(timeout=CUT_S + 60)
        finally:
            watcher.stop()
    now = placement()
    record = journal(SOURCE, EVACUATION_ID) or {}
    notes = dict((name, rec.get("notes")) for name, rec in (record.get("domains") or {}).items())
    print("evacuation with the management network cut %d s (from %.0f s after the start): rc %d in %.0f s; "
          "placement %s; watcher %d polls, %d host errors" % (
              CUT_S, cut.get("at", started) - started, rc, wall, now, watcher.polls, len(watcher.errors)))
    for name, text in sorted(notes.items()):
        print("%s: %s" % (name, [n[:300] for n in text or []]))

    assert "healed" in cut, "the management network was never cut: the moves did not start"
    assert not watcher.violations, watcher.violations
    for name in names:
        running, persistent = now.get(name, ([], []))
        assert len(running) == 1 and running == persistent, "%s runs on %s, persistent on %s" % (
            name, running, persistent)
    downtime = assert_connections_survived(clients, dict((n, now[n][0][0]) for n in names))
    print("client-observed downtime (ms): %s" % downtime)
    # The controller waits out the cut on its open SSH connection, the moves libvirt lost with its
    # connection to the destinations are retried, and the run ends with the host empty.
    assert rc == 0, failure_messages(report)
    for name in names:
        assert now[name][0] != [SOURCE], "%s is still on %s" % (name, SOURCE)
        assert_intact_after_live_migration(now[name][0][0], name)
