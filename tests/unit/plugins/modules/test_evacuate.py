"""The evacuate module end to end against fake libvirt hosts (fake_libvirt.py): the real migrate engine,
real worker threads, a real journal file, check mode, idempotence, abort and the lock.

What these cannot prove (the lab tests do): real libvirt's behaviour, and timings.
"""

import json
import os
import sys
import threading
import time

import pytest

from ansible.module_utils.common import warnings as ansible_warnings
from ansible.module_utils.testing import patch_module_args

pytest.importorskip("libvirt")
import libvirt  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from fake_libvirt import Scenario, World  # noqa: E402

from ansible_collections.virtops.migration.plugins.module_utils._evacuation import engine as _engine  # noqa: E402
from ansible_collections.virtops.migration.plugins.module_utils._evacuation import libvirt_executor as _executor  # noqa: E402
from ansible_collections.virtops.migration.plugins.module_utils._migration import live as _live  # noqa: E402
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.journal import JournalStore  # noqa: E402
from ansible_collections.virtops.migration.plugins.modules import evacuate  # noqa: E402

UUIDS = ["00000000-0000-0000-0000-0000000000a%d" % i for i in range(4)]


@pytest.fixture
def run(monkeypatch, capsys, tmp_path):
    def runner(world, moves, check_mode=False, **args):
        monkeypatch.setattr(_executor, "open_hypervisor", world.open)
        monkeypatch.setattr(_engine, "TICK_S", 0.01)
        monkeypatch.setattr(_live, "POLL_S", 0.01)
        monkeypatch.setattr(_live, "FIRST_POLL_S", 0.01)
        module_args = dict(evacuation_id="ev-unit", source="hv1", moves=moves, journal_dir=str(tmp_path),
                           migration_addresses={"hv2": "198.18.1.12"}, retry_delay=0)
        module_args.update(args)
        if check_mode:
            module_args["_ansible_check_mode"] = True
        with patch_module_args(module_args):
            with pytest.raises(SystemExit) as exit_info:
                evacuate.main()
        # Warnings live in a module-level buffer that a real module process throws away.
        ansible_warnings._global_warnings.clear()
        out = json.loads(capsys.readouterr().out)
        out["rc"] = exit_info.value.code
        return out
    return runner


def plan_moves(count):
    return [dict(domain="ev-%d" % i, uuid=UUIDS[i], destination="hv2", mode="live", order=i + 1, wave=i + 1,
                 exclusive=False, memory_mib=256, local_disk_mib=0, state="running", bandwidth_mib_s=50.0)
            for i in range(count)]


def placement(world):
    out = {}
    for conn in (world.hv1, world.hv2):
        for dom in conn.domains.values():
            out.setdefault(dom.name(), []).append((conn.hostname, dom.st, dom.persistent))
    return out


def test_evacuate_then_again_then_check_mode(run, tmp_path):
    world = World()
    for i in range(3):
        world.hv1.add("ev-%d" % i, UUIDS[i])
    first = run(world, plan_moves(3))
    assert first["rc"] == 0, first.get("msg")
    assert first["changed"] and first["result"] == "completed"
    assert [d["status"] for d in first["domains"]] == ["moved"] * 3
    assert placement(world) == dict(("ev-%d" % i, [("hv2", libvirt.VIR_DOMAIN_RUNNING, True)]) for i in range(3))
    # the memory stream went to the migration address
    assert all(m["params"].get("migrate_uri") == "tcp://198.18.1.12" for m in world.migrations)
    assert len(world.migrations) == 3
    with open(os.path.join(str(tmp_path), "ev-unit.json")) as handle:
        journal = json.load(handle)
    assert journal["result"] == "completed" and journal["totals"]["moved"] == 3
    assert first["journal"] == os.path.join(str(tmp_path), "ev-unit.json")
    assert first["domains"][0]["downtime_ms"] == 42 and first["domains"][0]["completed_by"] == "precopy"

    again = run(world, [])
    assert again["rc"] == 0 and not again["changed"] and again["result"] == "completed"
    stale = run(world, plan_moves(3))
    assert stale["rc"] == 0 and not stale["changed"] and len(world.migrations) == 3

    check = run(world, plan_moves(3), check_mode=True)
    assert check["rc"] == 0 and not check["changed"] and check["would_move"] == []


def test_check_mode_writes_nothing(run, tmp_path):
    world = World()
    world.hv1.add("ev-0", UUIDS[0])
    check = run(world, plan_moves(1), check_mode=True)
    assert check["rc"] == 0 and check["changed"] and check["would_move"][0]["domain"] == "ev-0"
    assert os.listdir(str(tmp_path)) == [] and world.migrations == []


def test_a_failing_migration_is_retried_then_reported_and_stays_on_the_source(run):
    world = World(Scenario(fail="unable to connect to the migration port"))
    world.hv1.add("ev-0", UUIDS[0])
    out = run(world, plan_moves(1), retries=1)
    assert out["rc"] == 1 and out["result"] == "failed"
    assert "ev-0" in " ".join(out["summary"]) and "FAILED" in " ".join(out["summary"])
    record = out["domains"][0]
    assert record["status"] == "failed" and record["attempts"] == 2
    assert placement(world) == {"ev-0": [("hv1", libvirt.VIR_DOMAIN_RUNNING, True)]}


def test_abort_file_aborts_the_running_precopy(run, tmp_path):
    world = World(Scenario(complete=lambda job: False))   # pre-copy that never converges by itself
    for i in range(2):
        world.hv1.add("ev-%d" % i, UUIDS[i])
    store = JournalStore(str(tmp_path), "ev-unit")

    def request_abort():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if os.path.exists(store.path) and json.load(open(store.path))["totals"].get("in_flight"):
                break
            time.sleep(0.02)
        time.sleep(0.2)
        store.request_abort("test")

    aborter = threading.Thread(target=request_abort)
    aborter.start()
    out = run(world, plan_moves(2), max_parallel_per_source=1, timeout=60)
    aborter.join()
    assert out["rc"] == 1 and out["result"] == "aborted"
    assert [d["status"] for d in out["domains"]] == ["pending", "pending"]
    assert "abort" in world.hv1.domains[UUIDS[0]].calls
    # both still run on the source, nowhere else; the second never started
    assert placement(world) == {"ev-0": [("hv1", libvirt.VIR_DOMAIN_RUNNING, True)],
                                "ev-1": [("hv1", libvirt.VIR_DOMAIN_RUNNING, True)]}
    assert len(world.migrations) == 1
    assert not store.abort_requested()


def test_another_evacuation_on_the_host_is_refused(run, tmp_path):
    world = World()
    world.hv1.add("ev-0", UUIDS[0])
    holder = JournalStore(str(tmp_path), "someone-else")
    assert holder.try_lock() is None
    try:
        out = run(world, plan_moves(1))
    finally:
        holder.unlock()
    assert out["rc"] == 1 and "another evacuation (someone-else" in out["msg"] and world.migrations == []
