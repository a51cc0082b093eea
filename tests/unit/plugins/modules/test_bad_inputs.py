"""Bad input, across the modules: a clear message, before anything is opened or changed (issue 11).

Each row is one bad input. The module-level rows run the module's main() against fake libvirt
hosts and check that it failed with the message, without a traceback, and that nothing moved
and no journal was written. The request-level rows call the validation the modules run first.
"""

import json
import math
import os
import sys

import pytest

from ansible.module_utils.common import warnings as ansible_warnings
from ansible.module_utils.testing import patch_module_args

pytest.importorskip("libvirt")

sys.path.insert(0, os.path.dirname(__file__))
from fake_libvirt import World  # noqa: E402

from ansible_collections.virtops.migration.plugins.module_utils._evacuation import libvirt_executor as _executor  # noqa: E402
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.request import (  # noqa: E402
    EVACUATE_ARGUMENT_SPEC,
    EvacuationRequest,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt import uri as _uri  # noqa: E402
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import ParameterError  # noqa: E402
from ansible_collections.virtops.migration.plugins.module_utils._migration import task as _migrate  # noqa: E402
from ansible_collections.virtops.migration.plugins.module_utils._option_spec import check_bounds  # noqa: E402
from ansible_collections.virtops.migration.plugins.module_utils._options import BOUNDS  # noqa: E402
from ansible_collections.virtops.migration.plugins.module_utils._planning.inputs import PlanOptions  # noqa: E402
from ansible_collections.virtops.migration.plugins.modules import evacuate, migrate  # noqa: E402

UUID = "00000000-0000-0000-0000-0000000000a0"
NAN = float("nan")
INF = float("inf")


def move(**over):
    out = dict(domain="ev-0", uuid=UUID, destination="hv2", mode="live", order=1, wave=1, exclusive=False,
               memory_mib=256, local_disk_mib=0, state="running", bandwidth_mib_s=50.0)
    out.update(over)
    return out


# --- the evacuate module: (module arguments, what the message must say) ---------------------------

EVACUATE_CASES = [
    (dict(moves=[move(order=1.7)]), "order must be a whole number"),
    (dict(moves=[move(order=INF)]), "order must be a whole number"),
    (dict(moves=[move(order=NAN)]), "order must be a whole number"),
    (dict(moves=[move(memory_mib=-1)]), "memory_mib must be a number, 0 or more"),
    (dict(moves=[move(memory_mib=NAN)]), "memory_mib must be a number, 0 or more"),
    (dict(moves=[move(local_disk_mib=INF)]), "local_disk_mib must be a number, 0 or more"),
    (dict(moves=[move(bandwidth_mib_s=-5)]), "bandwidth_mib_s must be a number, 0 or more"),
    (dict(moves=[move(bandwidth_mib_s=NAN)]), "bandwidth_mib_s must be a number, 0 or more"),
    (dict(moves=[move(bandwidth_mib_s=float("inf"))]), "bandwidth_mib_s must be a number, 0 or more"),
    # shutdown-only moves are validated like any other: -1 with force would power off at once
    (dict(moves=[move(mode="shutdown", destination=None)], shutdown_timeout=-1, force=True), "shutdown_timeout"),
    (dict(moves=[move()], max_parallel_per_source=10 ** 6), "max_parallel_per_source"),
    (dict(moves=[move()], max_parallel_per_destination=10 ** 6), "max_parallel_per_destination"),
    (dict(moves=[move()], timeout=10 ** 18), "timeout must be a finite number, at least 1 and at most 604800"),
    (dict(moves=[move()], max_downtime=10 ** 18), "max_downtime"),
    (dict(moves=[move()], shutdown_timeout=10 ** 18), "shutdown_timeout"),
    (dict(moves=[move()], retries=10 ** 6), "retries"),
    (dict(moves=[move()], retry_delay=10 ** 18), "retry_delay"),
    (dict(moves=[move()], source_throughput_mib_s=INF), "source_throughput_mib_s"),
    (dict(moves=[move()], connect_timeout=0), "connect_timeout"),
    (dict(moves=[move()], migration_addresses={"hv2": "tcp://198.18.1.12:\u00b2"}), "port"),
    (dict(moves=[move()], migration_addresses={"hv2": "fe80::1%eth0$(reboot)"}), "scope id"),
    (dict(moves=[move()], evacuation_id="../../etc/x"), "evacuation_id"),
]


def run_module(monkeypatch, capsys, module, where, defaults, args):
    """Run ``module``'s main() with ``defaults`` and ``args`` against a fresh fake world; (result, world)."""
    world = World()
    world.hv1.add(defaults.get("name", "ev-0"), UUID)
    monkeypatch.setattr(where, "open_hypervisor", world.open)
    with patch_module_args(dict(defaults, **args)):
        with pytest.raises(SystemExit) as exit_info:
            module.main()
    ansible_warnings._global_warnings.clear()
    out = json.loads(capsys.readouterr().out)
    out["rc"] = exit_info.value.code
    return out, world


@pytest.fixture
def run_evacuate(monkeypatch, capsys, tmp_path):
    journal_dir = tmp_path / "journals"
    defaults = dict(evacuation_id="ev-unit", source="hv1", moves=[], journal_dir=str(journal_dir))
    return lambda args: run_module(monkeypatch, capsys, evacuate, _executor, defaults, args) + (journal_dir,)


@pytest.mark.parametrize("args, message", EVACUATE_CASES)
def test_evacuate_refuses_bad_input_before_anything(run_evacuate, args, message):
    out, world, journal_dir = run_evacuate(args)
    assert out["rc"] == 1 and out.get("failed") and message in out["msg"], out
    assert "Traceback" not in json.dumps(out) and "exception" not in out
    assert world.migrations == [] and world.opened == [] and not journal_dir.exists()
    assert UUID in world.hv1.domains and world.hv1.domains[UUID].calls == []


# --- the migrate module --------------------------------------------------------------------------

MIGRATE_CASES = [
    (dict(destination="qemu+tls://hv2:\u00b2/system"), "port"),
    (dict(destination="qemu+tls://hv2:\u0663\u0664/system"), "port"),
    (dict(migration_address="198.18.1.12:\u00b2"), "migration_address"),
    (dict(migration_address="tcp://198.18.1.12:\u00b9\u00b2"), "port"),
    (dict(migration_address="fe80::1%eth0?x=1"), "scope id"),
    (dict(migration_address="fe80::1%a b"), "scope id"),
    (dict(migration_address="[fe80::1%&()]"), "scope id"),
    (dict(destination="qemu+tls://[fe80::1%$(id)]/system"), "scope id"),
    (dict(bandwidth=-3), "bandwidth"),
    (dict(bandwidth=10 ** 18), "bandwidth"),
    (dict(parallel_connections=10 ** 6), "parallel_connections"),
    (dict(timeout=10 ** 18), "timeout"),
    (dict(stall_iterations=10 ** 9), "stall_iterations"),
    (dict(connect_timeout=10 ** 18), "connect_timeout"),
    (dict(max_downtime_steps=[500, 10 ** 18]), "max_downtime_steps"),
]


@pytest.fixture
def run_migrate(monkeypatch, capsys):
    return lambda args: run_module(monkeypatch, capsys, migrate, _migrate, dict(name="mig-a", destination="hv2"), args)


@pytest.mark.parametrize("args, message", MIGRATE_CASES)
def test_migrate_refuses_bad_input_before_anything(run_migrate, args, message):
    out, world = run_migrate(args)
    assert out["rc"] == 1 and out.get("failed") and message in out["msg"], out
    assert "Traceback" not in json.dumps(out) and "exception" not in out
    assert world.migrations == [] and world.hv1.domains[UUID].calls == []


# --- the planner's options ------------------------------------------------------------------------

PLAN_CASES = [
    (dict(memory_overcommit=INF), "memory_overcommit"),
    (dict(memory_overcommit=NAN), "memory_overcommit"),
    (dict(vcpu_overcommit=INF), "vcpu_overcommit"),
    (dict(bandwidth_budget_mib_s=INF), "bandwidth_budget_mib_s"),
    (dict(bandwidth_budget_mib_s=NAN), "bandwidth_budget_mib_s"),
    (dict(max_parallel_per_source=10 ** 6), "max_parallel_per_source"),
    (dict(shutdown_seconds=10 ** 18), "shutdown_seconds"),
    (dict(setup_seconds=INF), "setup_seconds"),
    (dict(assumed_dirty_rate_mib_s=INF), "assumed_dirty_rate_mib_s"),
    (dict(timeout=10 ** 18), "timeout"),
    (dict(reserved_memory_mib=10 ** 18), "reserved_memory_mib"),
]


@pytest.mark.parametrize("options, message", PLAN_CASES)
def test_the_planner_refuses_bad_options(options, message):
    with pytest.raises(ParameterError) as err:
        PlanOptions(**options)
    assert message in err.value.msg


# --- every bound is enforced, and every default lies within its bounds ----------------------------

def test_every_bound_refuses_what_is_outside_it_and_keeps_what_is_inside():
    for name, (low, high) in BOUNDS.items():
        for bad in (low - 1, high + 1, INF, -INF, NAN, True, "3"):
            with pytest.raises(ParameterError) as err:
                check_bounds({name: bad}, BOUNDS)
            assert name in err.value.msg
        check_bounds({name: low}, BOUNDS)
        check_bounds({name: high}, BOUNDS)
    defaults = dict((k, v.get("default")) for k, v in EVACUATE_ARGUMENT_SPEC.items())
    check_bounds(defaults, BOUNDS)


def test_a_request_built_in_python_is_held_to_the_same_rules():
    params = dict((k, v.get("default")) for k, v in EVACUATE_ARGUMENT_SPEC.items())
    params.update(evacuation_id="ev", source="hv1", moves=[move(order=math.inf)])
    with pytest.raises(ParameterError):
        EvacuationRequest(params)
    with pytest.raises(ParameterError):
        _uri.parse_uri("qemu+tls://hv2:\u00b2/system")


def test_a_move_that_sends_nothing_is_accepted():
    # The planner gives a cold move of a domain on shared storage a bandwidth of 0: nothing to send.
    params = dict((k, v.get("default")) for k, v in EVACUATE_ARGUMENT_SPEC.items())
    params.update(evacuation_id="ev", source="hv1", moves=[move(mode="cold", bandwidth_mib_s=0.0)])
    assert EvacuationRequest(params).moves[0]["bandwidth_mib_s"] == 0.0


def test_a_precheck_that_samples_no_dirty_rate_is_accepted():
    # precheck's documented "0 skips it" (the integration suites pre-check with it).
    check_bounds({"dirty_rate_seconds": 0, "measure_bandwidth": False}, BOUNDS)


BAD_INPUTS = len(EVACUATE_CASES) + len(MIGRATE_CASES) + len(PLAN_CASES)


def test_at_least_35_bad_inputs_are_tried():
    assert BAD_INPUTS >= 35
