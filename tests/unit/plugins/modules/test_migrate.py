"""The migrate module end to end against two fake libvirt hosts (see fake_libvirt.py).

What these prove: the module's decisions, check mode, idempotence, the order of writes,
the escalation loop wired to libvirt calls, and the failure paths' messages and clean-up.
What they cannot prove (the lab tests do): real libvirt and QEMU behaviour.
"""

import json
import os
import sys
import time

import pytest

from ansible.module_utils.testing import patch_module_args

pytest.importorskip("libvirt")
import libvirt  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from fake_libvirt import LOCAL_DISK, FakeConn, Scenario, World, error  # noqa: E402

from ansible_collections.virtops.migration.plugins.module_utils._migration import escalation as _escalation  # noqa: E402
from ansible_collections.virtops.migration.plugins.module_utils._migration import task as _migrate  # noqa: E402
from ansible_collections.virtops.migration.plugins.module_utils._migration import live as _live  # noqa: E402
from ansible_collections.virtops.migration.plugins.module_utils._libvirt import domain_ops as _domain_ops  # noqa: E402
from ansible_collections.virtops.migration.plugins.module_utils import _module  # noqa: E402
from ansible_collections.virtops.migration.plugins.modules import migrate  # noqa: E402

UUID = "0b5e7a4c-1d5e-4f7e-9a3b-2c8d6e1f0a9b"


@pytest.fixture
def run(monkeypatch, capsys):
    def runner(world, check_mode=False, **args):
        monkeypatch.setattr(_migrate, "open_hypervisor", world.open)
        monkeypatch.setattr(_migrate, "local_address_of", lambda host: "127.0.0.1" if host == "localhost" else None)
        monkeypatch.setattr(_live, "POLL_S", 0.01)
        monkeypatch.setattr(_live, "FIRST_POLL_S", 0.01)
        monkeypatch.setattr(_domain_ops, "SHUTDOWN_POLL_S", 0.01)
        monkeypatch.setattr(_live, "RESUME_RETRY_S", 0.01)
        monkeypatch.setattr(_live, "RESUME_WAIT_S", 0.5)
        monkeypatch.setattr(_live, "RESUME_SETTLE_S", 0.01)
        module_args = dict(name="mig-a", destination="hv2")
        module_args.update(args)
        if check_mode:
            module_args["_ansible_check_mode"] = True
        with patch_module_args(module_args):
            with pytest.raises(SystemExit) as exit_info:
                migrate.main()
        out = json.loads(capsys.readouterr().out)
        out["rc"] = exit_info.value.code
        return out
    return runner


def test_live_move_defines_the_domain_on_the_destination_only_after_the_source_let_go(run, monkeypatch):
    world = World()
    world.hv1.add("mig-a", UUID)
    seen = []

    def define(xml):
        # At this moment the source no longer holds the domain: never two persistent definitions.
        seen.append(dict((host, state) for host, state in where(world).items()))
        return FakeConn.defineXML(world.hv2, xml)

    monkeypatch.setattr(world.hv2, "defineXML", define)
    out = run(world)
    assert out["rc"] == 0, out.get("msg")
    assert seen == [{"hv2": (RUNNING, False)}]
    assert where(world) == {"hv2": (RUNNING, True)}


def test_failed_define_after_a_live_move_says_where_the_domain_runs(run, monkeypatch):
    world = World()
    world.hv1.add("mig-a", UUID)

    def refuse(xml):
        raise error(libvirt.VIR_ERR_OPERATION_FAILED, "disk full")

    monkeypatch.setattr(world.hv2, "defineXML", refuse)
    out = run(world)
    assert out["rc"] == 1 and out["changed"]
    assert "disk full" in out["msg"] and "transient" in out["msg"] and "re-run this task" in out["msg"], out["msg"]
    assert where(world) == {"hv2": (RUNNING, False)}
    # The re-run finishes the move: it defines the domain on the destination.
    monkeypatch.undo()
    again = run(world)
    assert again["rc"] == 0 and again["changed"] and again["operation"] == "finish", again
    assert where(world) == {"hv2": (RUNNING, True)}


def warnings(out):
    """Warning texts (ansible-core 2.19 returns them as structured summaries)."""
    texts = []
    for warning in out.get("warnings", []):
        texts.append(warning["event"]["msg"] if isinstance(warning, dict) else warning)
    return texts


def where(world):
    out = {}
    for conn in (world.hv1, world.hv2):
        dom = conn.domains.get(UUID)
        if dom is not None:
            out[conn.hostname] = (dom.st, dom.persistent)
    return out


RUNNING = libvirt.VIR_DOMAIN_RUNNING
SHUTOFF = libvirt.VIR_DOMAIN_SHUTOFF
PAUSED = libvirt.VIR_DOMAIN_PAUSED


def test_four_runs_live(run):
    world = World()
    world.hv1.add("mig-a", UUID)
    check = run(world, check_mode=True)
    assert check["rc"] == 0 and check["changed"] and check["operation"] == "live"
    assert check["plan"]["flags"] == ["PEER2PEER", "LIVE", "ABORT_ON_ERROR", "TLS", "UNDEFINE_SOURCE"]
    assert {c["name"] for c in check["checks"]} >= {"destination_reachable", "domain_present", "cpu", "storage"}
    assert check["diff"]["after"]["destination"]["present"] and not check["diff"]["after"]["source"]["present"]
    assert world.migrations == [] and where(world) == {"hv1": (RUNNING, True)}

    real = run(world)
    assert real["rc"] == 0 and real["changed"] and real["mode"] == "live"
    assert where(world) == {"hv2": (RUNNING, True)}
    assert real["completed_by"] == "precopy" and real["escalations"] == []
    assert real["timings"]["total_ms"] == 1234 and real["timings"]["downtime_ms"] == 42
    assert real["statistics_source"] == "completed job statistics"
    assert real["transferred"]["memory_bytes"] == 300 * 1024 * 1024
    assert real["state"]["destination"]["state"] == "running" and not real["state"]["source"]["present"]
    assert world.migrations[0]["uri"] == "qemu+tls://hv2/system"
    assert not real.get("warnings")

    again = run(world)
    assert again["rc"] == 0 and not again["changed"] and again["operation"] == "none"
    check_again = run(world, check_mode=True)
    assert check_again["rc"] == 0 and not check_again["changed"]
    assert len(world.migrations) == 1


def test_options_reach_libvirt(run):
    world = World()
    world.hv1.add("mig-a", UUID)
    out = run(world, migration_address="198.18.1.12", bandwidth=100, parallel_connections=4, auto_converge=True,
              max_downtime=50)
    assert out["rc"] == 0
    call = world.migrations[0]
    assert call["params"] == {"migrate_uri": "tcp://198.18.1.12", "bandwidth": 100, "parallel.connections": 4}
    assert call["flags"] & libvirt.VIR_MIGRATE_PARALLEL and call["flags"] & libvirt.VIR_MIGRATE_AUTO_CONVERGE
    assert call["flags"] & libvirt.VIR_MIGRATE_PEER2PEER and call["flags"] & libvirt.VIR_MIGRATE_TLS


def test_escalation_makes_it_converge(run):
    # Converges only once the permitted downtime reaches 2000 ms.
    world = World(Scenario(complete=lambda job: job.downtime >= 2000))
    src = world.hv1.add("mig-a", UUID)
    out = run(world, max_downtime=300, max_downtime_steps=[1000, 2000], stall_iterations=1)
    assert out["rc"] == 0, out
    assert [e["step"] for e in out["escalations"]] == ["max_downtime", "max_downtime"]
    assert [e["value"] for e in out["escalations"]] == [1000, 2000]
    assert out["completed_by"] == "max_downtime"
    # The initial limit is set before the job starts; the steps while it runs.
    assert [c for c in src.calls if c[0].startswith("downtime")] == [
        ("downtime before the job", 300), ("downtime", 1000), ("downtime", 2000)]
    assert where(world) == {"hv2": (RUNNING, True)}


def test_the_initial_max_downtime_is_set_once_the_job_runs_where_libvirt_wants_a_job_first(run, monkeypatch):
    world = World(Scenario(complete=lambda job: job.downtime == 120))
    src = world.hv1.add("mig-a", UUID)
    monkeypatch.setattr(type(src), "downtime_needs_job", True)
    out = run(world, max_downtime=120)
    assert out["rc"] == 0, out
    assert [c for c in src.calls if c[0].startswith("downtime")] == [("downtime", 120)]
    assert where(world) == {"hv2": (RUNNING, True)}


def test_postcopy_rung(run):
    world = World(Scenario(complete=lambda job: False))
    src = world.hv1.add("mig-a", UUID)
    out = run(world, postcopy="permit", stall_iterations=1)
    assert out["rc"] == 0, out
    assert out["completed_by"] == "postcopy" and "postcopy" in src.calls
    assert world.migrations[0]["flags"] & libvirt.VIR_MIGRATE_POSTCOPY


def test_timeout_abort_leaves_domain_on_source(run):
    world = World(Scenario(complete=lambda job: False))
    world.hv1.add("mig-a", UUID)
    out = run(world, timeout=1)
    assert out["rc"] == 1 and out["failed"]
    assert "aborted at the timeout" in out["msg"]
    assert "hv1: running" in out["msg"] and "hv2: absent" in out["msg"]
    assert out["where"]["source"]["state"] == "running" and not out["where"]["destination"]["present"]
    assert out["escalations"][-1]["step"] == "abort"
    assert not out["changed"]
    assert where(world) == {"hv1": (RUNNING, True)}


def test_module_gives_up_when_libvirt_ignores_the_abort(run, monkeypatch):
    monkeypatch.setattr(_live, "GIVE_UP_AFTER_S", 0.3)
    world = World(Scenario(complete=lambda job: False, ignore_abort=True))
    world.hv1.add("mig-a", UUID)
    out = run(world, timeout=1)
    assert out["rc"] == 1 and "did not end the migration" in out["msg"] and "hv1: running" in out["msg"]
    world.scenario.complete = lambda job: True  # let the fake's worker thread end


def test_module_stops_waiting_when_libvirt_stops_answering(run, monkeypatch):
    """A job whose statistics libvirt never returns (its QEMU monitor stopped answering) holds
    neither the loop nor the module: the module warns, stops waiting and says where the domain is."""
    monkeypatch.setattr(_live, "CALL_WAIT_S", 0.05)
    monkeypatch.setattr(_live, "UNANSWERED_LIMIT_S", 0.5)
    world = World(Scenario(complete=lambda job: False))
    world.hv1.add("mig-a", UUID)
    world.scenario.stats_hang = True
    out = run(world)
    world.scenario.stats_hang = False
    world.scenario.complete = lambda job: True  # let the fake's threads end
    assert out["rc"] == 1 and out["failed"], out
    assert "libvirt has not answered for" in out["msg"] and "reading the migration job's statistics" in out["msg"]
    assert "hv1: running" in out["msg"] and out["where"]["source"]["state"] == "running"
    assert any("did not answer within" in w for w in warnings(out)), out.get("warnings")


def test_a_late_steering_call_blocks_the_next_ones_until_it_returns():
    calls = _live.BoundedCalls(0.05)
    release = []

    def slow():
        while not release:
            time.sleep(0.01)
        return "late"

    with pytest.raises(_live.Unanswered, match="did not answer within"):
        calls("reading the statistics", slow)
    assert calls.stuck_for() > 0
    with pytest.raises(_live.Unanswered, match="not tried, libvirt has not yet answered reading the statistics"):
        calls("setting max downtime", lambda: 1)
    release.append(True)
    time.sleep(0.1)
    assert calls.stuck_for() == 0
    assert calls("setting max downtime", lambda: 1) == 1

    def refused():
        raise error(libvirt.VIR_ERR_OPERATION_FAILED, "operation failed: no job")

    with pytest.raises(_live.LibvirtError, match="aborting: operation failed: no job"):
        calls("aborting", refused)


def test_timeout_pause_resumes_on_destination(run):
    world = World(Scenario(complete=lambda job: False))
    world.hv1.add("mig-a", UUID)
    out = run(world, timeout=1, timeout_action="pause")
    assert out["rc"] == 0, out
    assert out["completed_by"] == "pause"
    assert where(world) == {"hv2": (RUNNING, True)}
    assert "resume" in world.hv2.domains[UUID].calls


def test_precopy_failure_reports_where(run):
    world = World(Scenario(fail="Unable to write to socket: Connection reset by peer"))
    world.hv1.add("mig-a", UUID)
    out = run(world)
    assert out["rc"] == 1
    assert "live migration of mig-a from hv1 to hv2 failed" in out["msg"]
    assert "Connection reset by peer" in out["msg"] and "hv1: running, persistent" in out["msg"]
    assert where(world) == {"hv1": (RUNNING, True)}


def test_postcopy_failure_is_resumed(run):
    world = World(Scenario(complete=lambda job: False, postcopy_fail="migration stream broken"))
    world.hv1.add("mig-a", UUID)
    out = run(world, postcopy="after_first_pass")
    assert out["rc"] == 0, out
    assert out["completed_by"] == "postcopy_resume"
    assert any("post-copy migration failed" in w for w in warnings(out)), out["warnings"]
    resume = world.migrations[-1]["flags"]
    assert resume & libvirt.VIR_MIGRATE_POSTCOPY_RESUME and resume & libvirt.VIR_MIGRATE_POSTCOPY
    assert where(world) == {"hv2": (RUNNING, True)}


def test_postcopy_failure_unrecoverable_says_how_to_recover(run):
    world = World(Scenario(complete=lambda job: False, postcopy_fail="migration stream broken", resume_ok=False))
    world.hv1.add("mig-a", UUID)
    out = run(world, postcopy="after_first_pass")
    assert out["rc"] == 1 and out["changed"]
    assert "post-copy migration of mig-a" in out["msg"] and "cannot run on either host" in out["msg"]
    assert "--postcopy-resume" in out["msg"] and "re-run this task" in out["msg"]
    assert "cannot resume: link still down" in out["msg"]
    assert out["where"]["source"]["postcopy_failed"]
    # A later run (link back) resumes it.
    world.scenario.resume_ok = True
    again = run(world, postcopy="after_first_pass")
    assert again["rc"] == 0 and again["operation"] == "resume_postcopy", again
    assert where(world) == {"hv2": (RUNNING, True)}


def test_stalled_postcopy_is_paused_then_reported(run, monkeypatch):
    monkeypatch.setattr(_escalation, "POSTCOPY_STALL_S", 0.2)
    world = World(Scenario(complete=lambda job: False, postcopy_stall=True, resume_ok=False))
    src = world.hv1.add("mig-a", UUID)
    out = run(world, postcopy="after_first_pass")
    assert out["rc"] == 1 and "abort_postcopy" in src.calls
    assert [e["step"] for e in out["escalations"]] == ["postcopy", "postcopy_paused"]
    assert "post-copy migration of mig-a" in out["msg"] and "cannot resume" in out["msg"]


def test_postcopy_paused_but_held_by_libvirt_is_reported_without_resume(run, monkeypatch):
    monkeypatch.setattr(_escalation, "POSTCOPY_STALL_S", 0.2)
    monkeypatch.setattr(_live, "POSTCOPY_SETTLE_S", 0.3)
    world = World(Scenario(complete=lambda job: False, postcopy_stall=True, hang_after_pause=True))
    world.hv1.add("mig-a", UUID)
    out = run(world, postcopy="after_first_pass")
    assert out["rc"] == 1 and out["changed"]
    assert "still holds the failed migration job open" in out["msg"]
    assert out["where"]["source"]["postcopy_failed"]
    assert not any(m["flags"] & libvirt.VIR_MIGRATE_POSTCOPY_RESUME for m in world.migrations)
    world.scenario.hang_after_pause = False  # stop the fake's worker thread


def test_cold_running_domain(run):
    world = World()
    src = world.hv1.add("mig-a", UUID)
    check = run(world, check_mode=True, mode="cold")
    assert check["operation"] == "cold"
    assert check["plan"]["flags"] == ["PEER2PEER", "OFFLINE", "PERSIST_DEST", "UNDEFINE_SOURCE", "TLS"]
    assert src.calls == []
    out = run(world, mode="cold")
    assert out["rc"] == 0, out
    assert src.calls[0] == "shutdown"
    assert out["cold"] == {"shutdown": "graceful", "started_on_destination": True, "copied_disks": []}
    assert where(world) == {"hv2": (RUNNING, True)}
    assert not run(world, mode="cold")["changed"]


def test_cold_shut_off_domain_stays_off(run):
    world = World()
    world.hv1.add("mig-a", UUID, state=SHUTOFF)
    out = run(world)
    assert out["rc"] == 0 and out["mode"] == "cold"
    assert out["cold"]["shutdown"] == "not needed (shut off)" and not out["cold"]["started_on_destination"]
    assert where(world) == {"hv2": (SHUTOFF, True)}


def test_cold_shutdown_timeout_without_force_moves_nothing(run):
    world = World(Scenario(shutdown_ok=False))
    world.hv1.add("mig-a", UUID)
    out = run(world, mode="cold", shutdown_timeout=0)
    assert out["rc"] == 1 and "did not shut down" in out["msg"] and "force" in out["msg"]
    assert where(world) == {"hv1": (RUNNING, True)} and world.migrations == []


def test_cold_forced(run):
    world = World(Scenario(shutdown_ok=False))
    src = world.hv1.add("mig-a", UUID)
    out = run(world, mode="cold", shutdown_timeout=0, force=True)
    assert out["rc"] == 0 and out["cold"]["shutdown"] == "forced" and "destroy" in src.calls
    assert where(world) == {"hv2": (RUNNING, True)}


def test_cold_with_local_disk_copies_it_paused(run):
    world = World()
    src = world.hv1.add("mig-a", UUID, disks=LOCAL_DISK)
    out = run(world, mode="cold", copy_storage="all")
    assert out["rc"] == 0, out
    assert "create_paused" in src.calls
    flags = world.migrations[0]["flags"]
    assert flags & libvirt.VIR_MIGRATE_PAUSED and flags & libvirt.VIR_MIGRATE_NON_SHARED_DISK
    assert not flags & libvirt.VIR_MIGRATE_LIVE
    assert world.migrations[0]["params"]["migrate_disks"] == ["vda"]
    assert out["cold"]["copied_disks"] == ["vda"]
    assert where(world) == {"hv2": (RUNNING, True)}


def test_cold_failure_restarts_on_source(run):
    world = World(Scenario(fail="Cannot access storage file"))
    src = world.hv1.add("mig-a", UUID)
    out = run(world, mode="cold")
    assert out["rc"] == 1 and "cold migration of mig-a" in out["msg"] and "started it again on hv1" in out["msg"]
    assert src.calls[-1] == "create"
    assert where(world) == {"hv1": (RUNNING, True)}


def test_a_cold_move_with_disks_that_fails_after_the_destination_finished_keeps_its_disks(run):
    # Issue 11, hole 8: the destination holds the domain (paused, with the copied disk) when the job reports a
    # failure. Before the fix the module deleted that disk as a "partial copy", from under the only copy left.
    world = World(Scenario(fail_after_arrival="migration confirm: connection reset by peer"))
    world.hv1.add("mig-a", UUID, disks=LOCAL_DISK)
    out = run(world, mode="cold", copy_storage="all")
    assert out["rc"] == 1 and "the disks copied there are kept" in out["msg"]
    assert world.hv2.deleted == [] and world.hv2.volumes == {"/var/lib/libvirt/images/mig-a.qcow2"}
    assert UUID in world.hv2.domains and "create" not in [c for d in world.hv1.domains.values() for c in d.calls]


def test_a_cold_move_with_disks_that_failed_mid_copy_removes_the_partial_copy(run):
    world = World(Scenario(fail="Unable to write to socket"))
    src = world.hv1.add("mig-a", UUID, disks=LOCAL_DISK)
    out = run(world, mode="cold", copy_storage="all")
    assert out["rc"] == 1 and "started it again on hv1" in out["msg"]
    assert world.hv2.deleted == ["/var/lib/libvirt/images/mig-a.qcow2"] and src.st == RUNNING


def test_local_disk_without_copy_storage_is_a_blocker(run):
    world = World()
    world.hv1.add("mig-a", UUID, disks=LOCAL_DISK)
    for check_mode in (True, False):
        out = run(world, check_mode=check_mode)
        assert out["rc"] == 1 and "copy_storage" in out["msg"] and "Nothing was changed" in out["msg"]
        assert any(c["passed"] is False for c in out["checks"])
        # Refused before anything started: where it was found, unchanged.
        assert out["where"]["source"]["state"] == "running" and not out["where"]["destination"]["present"]
    assert world.migrations == []


def test_a_libvirt_error_in_the_checks_still_says_where_the_domain_is(run, monkeypatch):
    world = World()
    world.hv1.add("mig-a", UUID)

    def refuse(*args):
        raise error(libvirt.VIR_ERR_INTERNAL_ERROR, "unexpected failure in the bindings")

    monkeypatch.setattr(world.hv1.domains[UUID], "XMLDesc", refuse)
    out = run(world)
    assert out["rc"] == 1 and "unexpected failure" in out["msg"]
    assert out["where"]["source"]["state"] == "running" and not out["where"]["destination"]["present"]


def test_copy_storage_needs_a_pool_on_the_destination(run):
    world = World(dest_pools=())
    world.hv1.add("mig-a", UUID, disks=LOCAL_DISK)
    out = run(world, copy_storage="all")
    assert out["rc"] == 1 and "no storage pool" in out["msg"] and world.migrations == []


def test_local_disk_copied_live(run):
    world = World()
    world.hv1.add("mig-a", UUID, disks=LOCAL_DISK)
    out = run(world, copy_storage="all", migration_address="198.18.1.12")
    assert out["rc"] == 0, out
    call = world.migrations[0]
    assert call["flags"] & libvirt.VIR_MIGRATE_NON_SHARED_DISK and call["flags"] & libvirt.VIR_MIGRATE_LIVE
    assert call["params"]["migrate_disks"] == ["vda"] and call["params"]["disks_uri"] == "tcp://198.18.1.12"
    # The destination's pool was rescanned first: a stale listing would make libvirt fail on a deleted image.
    assert world.hv2.pool_refreshes >= 1


def test_incompatible_cpu_is_a_blocker(run):
    world = World(dest_cpu_ok=False)
    world.hv1.add("mig-a", UUID)
    out = run(world, check_mode=True)
    assert out["rc"] == 1 and "avx512f" in out["msg"]
    assert world.migrations == []
    out = run(world, cpu_check=False)
    assert out["rc"] == 0


def test_leftover_source_definition_is_finished(run):
    world = World()
    world.hv1.add("mig-a", UUID, state=SHUTOFF)
    world.hv2.add("mig-a", UUID, persistent=False)
    out = run(world)
    assert out["rc"] == 0 and out["operation"] == "finish"
    assert where(world) == {"hv2": (RUNNING, True)}
    assert not run(world)["changed"]


@pytest.mark.parametrize("args, message", [
    (dict(bandwidth=-5), "bandwidth"),
    (dict(destination="hv2/system?x"), "destination"),
    (dict(destination="qemu+tls://hv2/system?no_verify=1"), "query"),
    (dict(destination="qemu+tls://hv2:99999/system"), "port"),
    (dict(destination="localhost"), "this host"),
    (dict(destination="qemu+tls://hv1/system", uri="qemu+tls://hv1/system"), "source host itself"),
    (dict(max_downtime_steps=[100]), "max_downtime_steps"),
    (dict(connect_timeout=0), "connect_timeout"),
])
def test_bad_input_fails_before_connecting(run, args, message):
    world = World()
    world.hv1.add("mig-a", UUID)
    out = run(world, **args)
    assert out["rc"] == 1 and message in out["msg"], out
    assert world.opened == [] and world.migrations == []


def test_destination_equal_to_source_by_libvirt_identity(run):
    world = World()
    world.hv1.add("mig-a", UUID)
    world.hv2.hostname = "hv1"
    out = run(world)
    assert out["rc"] == 1 and "source host itself" in out["msg"]


def test_unreachable_destination(run):
    world = World()
    world.hv1.add("mig-a", UUID)
    out = run(world, destination="unreachable")
    assert out["rc"] == 1 and "No route to host" in out["msg"] and not out.get("changed")


def test_unknown_domain(run):
    world = World()
    out = run(world, name="mig-nope")
    assert out["rc"] == 1 and "domain not found" in out["msg"] and "hv1" in out["msg"]


def test_by_uuid(run):
    world = World()
    world.hv1.add("mig-a", UUID)
    out = run(world, name=UUID)
    assert out["rc"] == 0 and out["domain"] == {"name": "mig-a", "uuid": UUID}


def test_missing_libvirt(run, monkeypatch):
    monkeypatch.setattr(_module, "HAS_LIBVIRT", False)
    out = run(World())
    assert out["rc"] == 1 and "libvirt" in out["msg"] and "python3-libvirt" in out["msg"]


class _DroppedConnection(object):
    """A libvirt connection whose daemon went away (killed, then restarted by systemd) while the
    migration ran: every call on it fails from then on, as libvirt's do."""

    def __init__(self, conn):
        self.conn = conn
        self.dropped = False

    def isAlive(self):
        return 0 if self.dropped else 1

    def close(self):
        return 0

    def __getattr__(self, attr):
        if not self.dropped:
            return getattr(self.conn, attr)

        def broken(*_args, **_kwargs):
            raise error(libvirt.VIR_ERR_SYSTEM_ERROR, "Cannot recv data: Input/output error")
        return broken


def _lose_hv2(world, monkeypatch, reopened, drop_on=None):
    """hv2's libvirt connection breaks as the migration of mig-a ends (or, with ``drop_on``, when
    mig-a's method of that name is called on hv1); ``reopened(uri)`` then answers every open of
    hv2. Returns hv2's first connection and the list of hv2's opens."""
    from ansible_collections.virtops.migration.plugins.module_utils._libvirt import connection as _connection
    from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import Hypervisor

    dom = world.hv1.add("mig-a", UUID)
    first = _DroppedConnection(world.hv2)
    opens = []
    plain_open = world.open

    def open_(uri, timeout):
        if "hv2" not in str(uri):
            return plain_open(uri, timeout)
        opens.append(str(uri))
        return Hypervisor(uri, first) if len(opens) == 1 else reopened(uri)

    method = drop_on or "migrateToURI3"
    plain = getattr(dom, method)

    def call_and_lose_the_destination(*args):
        try:
            return plain(*args)
        finally:
            first.dropped = True

    monkeypatch.setattr(dom, method, call_and_lose_the_destination)
    monkeypatch.setattr(world, "open", open_)                  # the task's own opens
    monkeypatch.setattr(_connection, "open_hypervisor", open_)  # Hypervisor.reopen's
    return first, opens


def test_a_daemon_restarted_mid_migration_is_reconnected_to_say_where_the_domain_is(run, monkeypatch):
    # Found by the fault suite on the lab: the failure said "looking up domain ... on hv2: Cannot recv
    # data" and nothing about where the domain was.
    from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import Hypervisor

    world = World(Scenario(fail="Cannot write to TLS channel: Input/output error"))
    first, opens = _lose_hv2(world, monkeypatch, lambda uri: Hypervisor(uri, world.hv2))
    out = run(world)
    assert out["rc"] == 1
    assert "Where the domain is now: hv1: running, persistent; hv2: absent" in out["msg"], out["msg"]
    assert out["where"]["source"]["state"] == "running" and not out["where"]["destination"]["present"]
    assert len(opens) == 2 and first.dropped, opens   # opened, dropped, opened again
    assert where(world) == {"hv1": (RUNNING, True)}


def _answers_nothing(uri):
    from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import HypervisorUnreachable
    raise HypervisorUnreachable("libvirt at %s took the connection but answered nothing within 30 s" % uri)


def test_a_destination_that_stops_answering_is_reported_unknown_and_nothing_is_done_to_it(run, monkeypatch):
    # Found by the fault suite on the lab (destination libvirtd SIGSTOPped): keepalive closed the
    # connection, it could not be opened again, and the failure said nothing of where the domain was.
    world = World(Scenario(fail="internal error: connection closed due to keepalive timeout"))
    first, opens = _lose_hv2(world, monkeypatch, _answers_nothing)
    monkeypatch.setattr(_migrate, "RECONNECT_WAIT_S", 0)
    out = run(world)
    assert first.dropped and len(opens) == 2, opens   # opened, then one try to open it again
    assert out["rc"] == 1 and "keepalive timeout" in out["msg"], out["msg"]
    assert "hv1: running, persistent; hv2: unknown (cannot read it: " in out["msg"], out["msg"]
    assert out["where"]["source"]["state"] == "running"
    assert out["where"]["destination"] == dict(host="hv2", present=None, state="unknown",
                                               error=out["where"]["destination"]["error"])
    assert "answered nothing" in out["where"]["destination"]["error"]
    assert where(world) == {"hv1": (RUNNING, True)}


def test_a_host_found_unreadable_is_not_tried_again_after_the_guest_is_resumed(run, monkeypatch):
    # The module paused the guest at the timeout; then the destination stopped answering and the
    # job failed. The guest is resumed on hv1, and the report of where it is reads hv1 again, but
    # not hv2: one more try would cost another RECONNECT_WAIT_S for a host known not to answer.
    world = World(Scenario(complete=lambda job: False))
    first, opens = _lose_hv2(world, monkeypatch, _answers_nothing, drop_on="suspend")
    dom = world.hv1.domains[UUID]
    suspend = dom.suspend

    def suspend_then_fail():
        suspend()
        dom.job.paused = False                      # the job goes on, and then fails
        world.scenario.fail = "internal error: connection closed due to keepalive timeout"

    monkeypatch.setattr(dom, "suspend", suspend_then_fail)
    monkeypatch.setattr(_migrate, "RECONNECT_WAIT_S", 0)
    out = run(world, timeout=1, timeout_action="pause")
    assert out["rc"] == 1 and "keepalive timeout" in out["msg"], out["msg"]
    assert "resumed the guest on hv1" in out["msg"], out["msg"]
    assert "hv1: running, persistent; hv2: unknown (cannot read it: " in out["msg"], out["msg"]
    assert first.dropped and len(opens) == 2, opens   # opened, then one try to open it again, not three
    assert where(world) == {"hv1": (RUNNING, True)}
