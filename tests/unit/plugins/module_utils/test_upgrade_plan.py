"""The rolling upgrade's schedule: waves, where each running domain goes, blockers, time."""

import pytest

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import ParameterError
from ansible_collections.virtops.migration.plugins.module_utils._planning.upgrade import (
    UPGRADE_PLAN_ARGUMENT_SPEC,
    plan_upgrade,
)

MACHINES_7 = {"x86_64": {"machines": ["pc-q35-7.2", "q35"]}}
MACHINES_10 = {"x86_64": {"machines": ["pc-q35-7.2", "pc-q35-10.0", "q35"]}}


def params(**changes):
    out = dict((key, entry.get("default")) for key, entry in UPGRADE_PLAN_ARGUMENT_SPEC.items())
    out.update(changes)
    return out


def vm(name, memory=1024, vcpus=1, state="running", group=None, policy=None, machine="pc-q35-7.2"):
    return dict(name=name, state=state, memory_mib=memory, vcpus=vcpus, machine=machine, arch="x86_64",
                labels=dict(anti_affinity=group, do_not_migrate=policy))


def host(domains=(), memory=8192, vcpus=8, qemu="7.2.0", machines=None, maintenance=False):
    return dict(memory_committable_mib=memory, vcpus_total=vcpus, qemu_version=qemu, maintenance=maintenance,
                guests=machines or (MACHINES_10 if qemu.startswith("10") else MACHINES_7), domains=list(domains))


def plan(hosts, **changes):
    return plan_upgrade(hosts, params(hosts=hosts, **changes))


def moves_of(out):
    return [(m["domain"], m["source"], m["destination"]) for wave in out["waves"] for m in wave["moves"]]


def test_empty_hosts_go_first_and_the_loaded_one_moves_once_onto_upgraded_hosts():
    hosts = dict(hv1=host([vm("a"), vm("b"), vm("c", state="shutoff")]), hv2=host(), hv3=host())
    out = plan(hosts, target_qemu_version="10.0.0")
    assert out["can_upgrade"] and out["proceed"]
    assert [wave["hosts"] for wave in out["waves"]] == [["hv2"], ["hv3"], ["hv1"]]
    assert all(m["to_upgraded"] for wave in out["waves"] for m in wave["moves"])
    # The shut-off domain stays defined on hv1; the running ones move once.
    assert sorted(d for d, _s, _t in moves_of(out)) == ["a", "b"]
    assert out["totals"]["moves_per_moved_domain"] == 1.0 and out["totals"]["moved_twice"] == 0


def test_already_upgraded_hosts_are_preferred_and_never_emptied():
    hosts = dict(hv1=host([vm("a")]), hv2=host([vm("b")]), hv3=host(qemu="10.0.0"))
    out = plan(hosts, target_qemu_version="10.0.0")
    assert out["already_upgraded"] == ["hv3"]
    assert [wave["hosts"] for wave in out["waves"]] == [["hv1"], ["hv2"]]
    assert moves_of(out)[0] == ("a", "hv1", "hv3")
    assert out["totals"]["moves"] == 2


def test_without_an_upgraded_host_the_first_wave_moves_twice_and_the_count_says_so():
    hosts = dict(hv1=host([vm("a")]), hv2=host([vm("b")]))
    out = plan(hosts)
    assert out["totals"]["moves"] == 3 and out["totals"]["moved_twice"] == 1
    assert not out["waves"][0]["moves"][0]["to_upgraded"] and out["waves"][1]["moves"][0]["to_upgraded"]


def test_never_from_new_to_old_nor_to_a_host_without_the_machine_type():
    hosts = dict(hv1=host([vm("new", machine="pc-q35-10.0")], qemu="7.2.0",
                          machines={"x86_64": {"machines": ["pc-q35-10.0", "pc-q35-7.2"]}}),
                 hv2=host(qemu="7.2.0"))
    out = plan(hosts, target_qemu_version="10.0.0")
    # hv2's QEMU lacks pc-q35-10.0, and nothing is upgraded yet: hv1 cannot be emptied first.
    assert [wave["hosts"] for wave in out["waves"]] == [["hv2"]]
    assert out["blocked"] and out["blocked"][0]["host"] == "hv1" and "no destination" in out["blocked"][0]["reasons"][0]
    assert not out["can_upgrade"] and not out["proceed"]


def test_anti_affinity_and_capacity_are_kept_through_the_waves():
    hosts = dict(hv1=host([vm("db1", 4096, group="db"), vm("db2", 4096, group="db")]), hv2=host(), hv3=host(),
                 hv4=host([vm("big", 8192)]))
    out = plan(hosts, target_qemu_version="10.0.0", max_hosts_per_wave=2)
    where = {}
    for domain, _source, destination in moves_of(out):
        where[domain] = destination
    assert where["db1"] != where["db2"]
    assert all(len(wave["hosts"]) <= 2 for wave in out["waves"]) and out["can_upgrade"]


def test_the_hosts_of_one_wave_never_receive_each_others_domains():
    hosts = dict(("hv%d" % i, host([vm("v%d" % i)])) for i in range(1, 7))
    out = plan(hosts, max_hosts_per_wave=3)
    for wave in out["waves"]:
        assert not set(m["destination"] for m in wave["moves"]) & set(wave["hosts"])


def test_policies_skip_blocks_shutdown_stays_cold_moves_cold():
    hosts = dict(hv1=host([vm("keep", policy="skip")]), hv2=host([vm("off", policy="shutdown"), vm("c", policy="cold")]),
                 hv3=host())
    out = plan(hosts, target_qemu_version="10.0.0", continue_on_blocked=True)
    assert out["blocked"] == [dict(host="hv1", reasons=["keep must not migrate (do_not_migrate: skip)"])]
    assert not out["can_upgrade"] and out["proceed"]
    wave = [w for w in out["waves"] if "hv2" in w["hosts"]][0]
    assert wave["shut_down_in_place"] == ["off"] and [(m["domain"], m["mode"]) for m in wave["moves"]] == [("c", "cold")]
    assert any(line.startswith("  BLOCKED: hv1") for line in out["lines"])


def test_maintenance_and_excluded_hosts_receive_nothing():
    hosts = dict(hv1=host([vm("a")]), hv2=host(maintenance=True), hv3=host(), hv4=host())
    out = plan(hosts, exclude=["hv4"])
    assert "hv4" not in [h for wave in out["waves"] for h in wave["hosts"]] and out["excluded"] == ["hv4"]
    assert all(m["destination"] not in ("hv2", "hv4") for wave in out["waves"] for m in wave["moves"])


def test_machine_type_advice_names_the_newer_type_the_upgraded_hosts_offer():
    hosts = dict(hv1=host([vm("a")]), hv2=host(qemu="10.0.0"))
    out = plan(hosts, target_qemu_version="10.0.0")
    assert out["machine_types"] == [dict(machine="pc-q35-7.2", newest="pc-q35-10.0", domains=["a"])]
    assert any("keep it pinned" in line for line in out["lines"])


def test_the_predicted_time_adds_the_waves():
    hosts = dict(hv1=host([vm("a", 1120)]), hv2=host(qemu="10.0.0"))
    out = plan(hosts, target_qemu_version="10.0.0", bandwidth_mib_s=112.0, setup_seconds=2.0, upgrade_seconds=100.0,
               max_parallel_per_source=1)
    assert out["waves"][0]["moves"][0]["seconds"] == 12.0
    assert out["totals"]["predicted_total_seconds"] == 112.0


@pytest.mark.parametrize("changes, message", [
    (dict(target_qemu_version="ten"), "target_qemu_version must be a version"),
    (dict(max_hosts_per_wave=0), "max_hosts_per_wave must be a finite number, at least 1 and at most 10000"),
    (dict(max_hosts_per_wave=10 ** 6), "max_hosts_per_wave must be a finite number, at least 1 and at most 10000"),
    (dict(memory_overcommit=float("inf")), "memory_overcommit must be"),
    (dict(memory_overcommit=float("nan")), "memory_overcommit must be a finite number"),
    (dict(bandwidth_mib_s=0.0), "bandwidth_mib_s must be a finite number, at least 0.001"),
    (dict(upgrade_seconds=-1.0), "upgrade_seconds must be a finite number, at least 0"),
    (dict(max_parallel_per_source=0), "max_parallel_per_source must be a finite number, at least 1"),
    (dict(exclude=[3]), "exclude must be a list of host names"),
])
def test_bad_options_are_refused(changes, message):
    with pytest.raises(ParameterError) as err:
        plan(dict(hv1=host()), **changes)
    assert message in err.value.msg


@pytest.mark.parametrize("hosts, message", [
    (dict(hv1="facts"), "hosts.hv1 must be the host_info facts"),
    (dict(hv1=dict(host(), qemu_version=None)), "hosts.hv1.qemu_version must be a version"),
    (dict(hv1=dict(host(), memory_committable_mib=-1)), "hosts.hv1: memory_committable_mib must be a number >= 0"),
    (dict(hv1=host([dict(vm("a"), memory_mib=float("nan"))])), "hosts.hv1.domains[0]: memory_mib must be a number >= 0"),
    (dict(hv1=host([dict(vm("a"), labels=dict(do_not_migrate="delete"))])), "labels.do_not_migrate must be"),
    (dict(hv1=dict(host(), domains="a")), "hosts.hv1.domains must be a list"),
])
def test_bad_facts_are_refused(hosts, message):
    with pytest.raises(ParameterError) as err:
        plan(hosts)
    assert message in err.value.msg
