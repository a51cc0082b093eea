"""The evacuation planner (_placement.py): placement, policies, pre-checks, schedule, input.

Every plan produced here goes through check_plan(), which verifies from the input alone -
not from the planner's own bookkeeping - that every domain of the source is accounted for
exactly once, that no destination is over capacity or holds two members of an
anti-affinity group, that no move goes where it may not, and that the schedule keeps the
concurrency limits and the bandwidth budget and is never faster than the physical bound.
"""

import copy
import json
import random

import pytest

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import ParameterError, VirtopsError
from ansible_collections.virtops.migration.plugins.module_utils._planning.inputs import MAX_NAMES
from ansible_collections.virtops.migration.plugins.module_utils._planning.placement import (
    DEFAULT_BANDWIDTH_MIB_S,
    PlanOptions,
    plan_evacuation,
)
from ansible_collections.virtops.migration.plugins.module_utils._planning.run import EVACUATION_PLAN_ARGUMENT_SPEC, run_evacuation_plan

GIB = 1024
INACTIVE = ("shutoff", "crashed")


# --- building input ----------------------------------------------------------------

def dom(name, memory=4 * GIB, vcpus=2, state="running", group=None, policy=None, **extra):
    out = dict(name=name, uuid="uuid-" + name, state=state, persistent=True, memory_mib=memory, vcpus=vcpus,
               dirty_rate_mib_s=20.0, shared_storage=True, local_disk_bytes=0, blockers=[],
               labels=dict(anti_affinity=group, do_not_migrate=policy))
    out.update(extra)
    return out


def host(*domains, memory=64 * GIB, vcpus=16, maintenance=False, bandwidth=1000):
    return dict(memory_total_mib=memory, memory_committable_mib=memory, vcpus_total=vcpus, maintenance=maintenance,
                migration_bandwidth_mib_s=bandwidth, domains=list(domains))


def check(verdict, name, destination, source="hv1", **extra):
    out = dict(domain=name, source=source, destination=destination, verdict=verdict, reasons=[],
               predicted_seconds=None, predicted_downtime_ms=None, converges=None, escalation=None)
    out.update(extra)
    return out


def plan(hosts, source="hv1", prechecks=None, **options):
    result = plan_evacuation(source, hosts, prechecks, PlanOptions(**options))
    check_plan(result, hosts, source, prechecks, PlanOptions(**options))
    return result


def where(result, name):
    for move in result["moves"]:
        if move["domain"] == name:
            return move
    return None


def unplaceable(result, name):
    for item in result["unplaceable"]:
        if item["domain"] == name:
            return item
    return None


# --- the independent checks --------------------------------------------------------

def check_plan(result, hosts, source, prechecks, opts):
    names = [d["name"] for d in hosts[source]["domains"]]
    moved = [m["domain"] for m in result["moves"]]
    skipped = [s["domain"] for s in result["skipped_domains"]]
    refused = [u["domain"] for u in result["unplaceable"]]
    # Never silent: every domain of the source in exactly one list, nothing else there.
    assert sorted(moved + skipped + refused) == sorted(names)
    assert all(item["reasons"] and all(isinstance(r, str) for r in item["reasons"]) for item in result["unplaceable"])
    assert result["changed"] is False
    by_name = dict((d["name"], d) for d in hosts[source]["domains"])

    # Destinations: allowed, within capacity, anti-affinity kept.
    blocked = set()
    checked = set()
    for item in prechecks or []:
        if item["source"] == source:
            checked.add((item["domain"], item["destination"]))
            if item["verdict"] == "block":
                blocked.add((item["domain"], item["destination"]))
    any_for_source = any(item["source"] == source for item in prechecks or [])
    allow_unchecked = opts.unchecked_pairs == "allow" or (opts.unchecked_pairs == "auto" and not any_for_source)
    load = {}
    for name, facts in hosts.items():
        mem = cpu = 0
        for d in facts["domains"]:
            if d["state"] not in INACTIVE or (opts.count_shutoff_domains and d.get("persistent", True)):
                mem += d["memory_mib"]
                cpu += d["vcpus"]
        groups = dict()
        for d in facts["domains"]:
            group = (d.get("labels") or {}).get("anti_affinity")
            if group:
                groups[group] = groups.get(group, 0) + 1
        load[name] = [mem, cpu, groups]
    for move in result["moves"]:
        d = by_name[move["domain"]]
        dest = move["destination"]
        if move["mode"] == "shutdown":
            assert dest is None
            assert d["state"] not in INACTIVE
            continue
        assert dest in hosts and dest != source
        assert not hosts[dest].get("maintenance")
        assert dest not in opts.exclude
        assert (d["name"], dest) not in blocked and (d.get("uuid"), dest) not in blocked
        if not allow_unchecked:
            assert (d["name"], dest) in checked or (d.get("uuid"), dest) in checked
        if move["mode"] == "live":
            assert d["state"] in ("running", "paused", "blocked") and not d.get("blockers")
        else:
            assert d.get("persistent", True)
        if d["state"] not in INACTIVE or opts.count_shutoff_domains:
            load[dest][0] += d["memory_mib"]
            load[dest][1] += d["vcpus"]
        group = (d.get("labels") or {}).get("anti_affinity")
        if group:
            load[dest][2][group] = load[dest][2].get(group, 0) + 1
    for name in set(m["destination"] for m in result["moves"] if m["destination"]):
        facts = hosts[name]
        mem, cpu, groups = load[name]
        original_mem, original_cpu = 0, 0
        for d in facts["domains"]:
            if d["state"] not in INACTIVE or (opts.count_shutoff_domains and d.get("persistent", True)):
                original_mem += d["memory_mib"]
                original_cpu += d["vcpus"]
        mem_cap = facts["memory_committable_mib"] * opts.memory_overcommit - opts.reserved_memory_mib
        cpu_cap = facts["vcpus_total"] * opts.vcpu_overcommit
        # What the plan adds fits (a destination may already be over capacity on its own).
        assert mem - original_mem <= 0 or mem <= mem_cap + 1e-6
        assert cpu - original_cpu <= 0 or cpu <= cpu_cap + 1e-6
        new_groups = set((by_name[m["domain"]].get("labels") or {}).get("anti_affinity")
                         for m in result["moves"] if m["destination"] == name)
        for group in new_groups - {None}:
            assert groups[group] == 1, "anti-affinity group %s twice on %s" % (group, name)

    # Nothing spuriously unplaceable: capacity only shrinks and groups only grow as a plan
    # proceeds, so a domain refused for destination reasons fits nowhere allowed at the end.
    for item in result["unplaceable"]:
        if item["reasons"][0].startswith(("live migration", "state ", "transient")):
            continue  # about the domain itself
        d = by_name[item["domain"]]
        group = (d.get("labels") or {}).get("anti_affinity")
        counts = d["state"] not in INACTIVE or opts.count_shutoff_domains
        for name, facts in hosts.items():
            if name == source or facts.get("maintenance") or name in opts.exclude:
                continue
            if (d["name"], name) in blocked or (d.get("uuid"), name) in blocked:
                continue
            if not allow_unchecked and (d["name"], name) not in checked and (d.get("uuid"), name) not in checked:
                continue
            if group and load[name][2].get(group):
                continue
            mem_cap = facts["memory_committable_mib"] * opts.memory_overcommit - opts.reserved_memory_mib
            cpu_cap = facts["vcpus_total"] * opts.vcpu_overcommit
            if mem_cap <= 0 or cpu_cap <= 0:
                continue
            if counts and (load[name][0] + d["memory_mib"] > mem_cap or load[name][1] + d["vcpus"] > cpu_cap):
                continue
            converging = [c for c in prechecks or [] if c["source"] == source and c["destination"] == name
                          and c["domain"] in (d["name"], d.get("uuid")) and c.get("converges") is False
                          and c.get("escalation") is None]
            assert converging, "%s was refused but fits on %s" % (d["name"], name)

    # Schedule: limits, budget, bound.
    budget = result["bandwidth_budget_mib_s"]
    migrations = [m for m in result["moves"] if m["mode"] != "shutdown"]
    for probe in migrations:
        t = probe["start_offset_s"]
        running = [m for m in migrations if m["start_offset_s"] <= t < m["finish_offset_s"]]
        assert len(running) <= opts.max_parallel_per_source
        per_dest = {}
        for m in running:
            per_dest[m["destination"]] = per_dest.get(m["destination"], 0) + 1
        assert max(per_dest.values()) <= opts.max_parallel_per_destination
        assert sum(m["bandwidth_mib_s"] for m in running) <= budget + 0.1 * len(running)
        if probe["exclusive"]:
            assert running == [probe]
    for move in result["moves"]:
        assert move["finish_offset_s"] == pytest.approx(move["start_offset_s"] + move["predicted_seconds"], abs=0.11)
        if move["mode"] == "shutdown":
            assert move["start_offset_s"] >= max([m["finish_offset_s"] for m in migrations] or [0]) - 0.05
    assert [m["order"] for m in result["moves"]] == list(range(1, len(result["moves"]) + 1))
    sent = sum((m["memory_mib"] if m["mode"] == "live" else 0) + m["local_disk_mib"] for m in migrations)
    assert result["bound_seconds"] == pytest.approx(sent / budget, abs=0.06)
    # Never faster than everything sent over the source's bandwidth.
    assert result["predicted_total_seconds"] >= result["bound_seconds"] - 1e-9
    assert result["predicted_total_seconds"] >= max([m["finish_offset_s"] for m in result["moves"]] or [0]) - 0.05

    # can_empty: nothing unplaceable, no skipped domain left running.
    still_running = [s for s in result["skipped_domains"] if s["state"] not in INACTIVE]
    assert result["can_empty"] == (not result["unplaceable"] and not still_running)
    assert result["summary"] and all(isinstance(line, str) for line in result["summary"])
    json.dumps(result)  # plain data only


# --- capacity ----------------------------------------------------------------------

def test_everything_moves_live_to_the_least_loaded_host():
    hosts = dict(hv1=host(dom("a"), dom("b")), hv2=host(dom("x", 32 * GIB)), hv3=host(dom("y", 8 * GIB)))
    result = plan(hosts)
    assert result["can_empty"]
    assert [m["mode"] for m in result["moves"]] == ["live", "live"]
    # Least loaded first: hv3 (8 GiB used) takes one, then the shares tie-break.
    assert set(m["destination"] for m in result["moves"]) <= {"hv2", "hv3"}
    assert where(result, "a")["destination"] == "hv3"


def test_capacity_counts_the_other_moves_of_the_same_plan():
    # hv2 has room for one 16 GiB domain, not two; hv3 is smaller but has room for one.
    hosts = dict(hv1=host(dom("a", 16 * GIB), dom("b", 16 * GIB), dom("c", 16 * GIB)),
                 hv2=host(dom("x", 40 * GIB), memory=64 * GIB), hv3=host(memory=20 * GIB))
    result = plan(hosts)
    targets = sorted(m["destination"] for m in result["moves"])
    assert targets == ["hv2", "hv3"]
    item = result["unplaceable"][0]
    assert any("not enough memory for 16384 MiB on 2 destinations" in r for r in item["reasons"])
    assert not result["can_empty"]


def test_vcpus_with_overcommit():
    hosts = dict(hv1=host(dom("a", 1 * GIB, vcpus=8)), hv2=host(memory=64 * GIB, vcpus=4))
    assert unplaceable(plan(hosts, vcpu_overcommit=1.0), "a")
    assert where(plan(hosts, vcpu_overcommit=2.0), "a")["destination"] == "hv2"
    reasons = unplaceable(plan(hosts, vcpu_overcommit=1.0), "a")["reasons"]
    assert any("not enough vCPUs for 8 on 1 destination (the most free: 4 vCPUs on hv2)" in r for r in reasons)


def test_memory_overcommit_and_reserved_memory():
    hosts = dict(hv1=host(dom("a", 10 * GIB)), hv2=host(memory=12 * GIB))
    assert where(plan(hosts), "a")["destination"] == "hv2"
    assert unplaceable(plan(hosts, reserved_memory_mib=4 * GIB), "a")
    assert where(plan(hosts, reserved_memory_mib=4 * GIB, memory_overcommit=1.5), "a")["destination"] == "hv2"


@pytest.mark.parametrize("count, fits", [(True, False), (False, True)])
def test_shut_off_persistent_domains_on_the_destination(count, fits):
    hosts = dict(hv1=host(dom("a", 8 * GIB)), hv2=host(dom("off", 60 * GIB, state="shutoff"), memory=64 * GIB))
    result = plan(hosts, count_shutoff_domains=count)
    assert (where(result, "a") is not None) == fits


def test_a_destination_with_no_capacity_at_all():
    hosts = dict(hv1=host(dom("a")), hv2=host(memory=4 * GIB))
    reasons = unplaceable(plan(hosts, reserved_memory_mib=8 * GIB), "a")["reasons"]
    assert any("no capacity at all" in r and "hv2" in r for r in reasons)


def test_largest_domains_are_placed_first():
    # Room for the big one only if it goes before the small ones fill hv2.
    hosts = dict(hv1=host(dom("small-1", 8 * GIB), dom("small-2", 8 * GIB), dom("big", 40 * GIB)),
                 hv2=host(memory=48 * GIB), hv3=host(memory=16 * GIB))
    result = plan(hosts)
    assert where(result, "big")["destination"] == "hv2"
    assert result["can_empty"]


# --- anti-affinity -----------------------------------------------------------------

def test_anti_affinity_counts_domains_already_on_destinations():
    hosts = dict(hv1=host(dom("db-2", group="db")), hv2=host(dom("db-1", group="db")), hv3=host(dom("x", 62 * GIB)))
    result = plan(hosts)
    assert where(result, "db-2") is None
    reasons = unplaceable(result, "db-2")["reasons"]
    assert "anti-affinity group 'db' already has a member on hv2 (db-1)" in reasons
    assert any("not enough memory" in r and "hv3" in r for r in reasons)


def test_anti_affinity_counts_shut_off_members_too():
    hosts = dict(hv1=host(dom("db-2", group="db")), hv2=host(dom("db-1", group="db", state="shutoff")), hv3=host())
    assert where(plan(hosts, count_shutoff_domains=False), "db-2")["destination"] == "hv3"


def test_anti_affinity_between_domains_of_the_same_plan():
    hosts = dict(hv1=host(dom("web-1", group="web"), dom("web-2", group="web"), dom("web-3", group="web")),
                 hv2=host(), hv3=host())
    result = plan(hosts)
    placed = [m["destination"] for m in result["moves"]]
    assert sorted(placed) == ["hv2", "hv3"]
    (item,) = result["unplaceable"]
    assert any("anti-affinity group 'web'" in r for r in item["reasons"])


def test_other_groups_do_not_interfere():
    hosts = dict(hv1=host(dom("a", group="g1")), hv2=host(dom("b", group="g2")))
    assert where(plan(hosts), "a")["destination"] == "hv2"


# --- maintenance and exclusion -----------------------------------------------------

def test_hosts_in_maintenance_and_excluded_hosts_are_never_destinations():
    hosts = dict(hv1=host(dom("a")), hv2=host(maintenance=True), hv3=host(), hv4=host(memory=128 * GIB))
    result = plan(hosts, exclude=["hv4"])
    assert where(result, "a")["destination"] == "hv3"
    result = plan(hosts, exclude=["hv3", "hv4"])
    reasons = unplaceable(result, "a")["reasons"]
    assert reasons == ["in maintenance: hv2", "excluded: hv3, hv4"]


def test_no_other_host_at_all():
    result = plan(dict(hv1=host(dom("a"))))
    assert unplaceable(result, "a")["reasons"] == ["the inventory has no other host"]
    assert not result["can_empty"]


def test_unknown_excluded_hosts_are_mentioned():
    result = plan(dict(hv1=host(dom("a")), hv2=host()), exclude=["hv-typo"])
    assert any("hv-typo" in line for line in result["summary"])


def test_an_empty_host_can_be_emptied():
    result = plan(dict(hv1=host(), hv2=host()))
    assert result["can_empty"] and result["moves"] == [] and result["predicted_total_seconds"] == 0


# --- do-not-migrate policies ---------------------------------------------------------

def test_policy_skip_keeps_a_running_domain_and_the_host_cannot_be_emptied():
    result = plan(dict(hv1=host(dom("a", policy="skip"), dom("b")), hv2=host()))
    assert result["skipped_domains"] == [dict(domain="a", uuid="uuid-a", policy="skip", state="running",
                                              reason="do_not_migrate: skip - left on the source as it is",
                                              label_sources={})]
    assert where(result, "b")["mode"] == "live"
    assert not result["can_empty"]
    assert any("Skipped by policy and still running on the source: a." == line for line in result["summary"])


def test_policy_skip_of_a_shut_off_domain_does_not_block_emptying():
    result = plan(dict(hv1=host(dom("a", policy="skip", state="shutoff")), hv2=host()))
    assert result["skipped_domains"][0]["policy"] == "skip"
    assert result["can_empty"]


def test_policy_cold_moves_a_running_domain_with_downtime():
    result = plan(dict(hv1=host(dom("a", policy="cold")), hv2=host()), shutdown_seconds=20, setup_seconds=2)
    move = where(result, "a")
    assert move["mode"] == "cold" and move["destination"] == "hv2"
    assert move["reason"].startswith("do_not_migrate: cold")
    assert move["predicted_seconds"] == pytest.approx(22)
    assert move["predicted_downtime_ms"] == 22000


def test_policy_shutdown_shuts_down_in_place_after_every_migration():
    result = plan(dict(hv1=host(dom("a", policy="shutdown"), dom("b"), dom("c")), hv2=host(), hv3=host()),
                  shutdown_seconds=30)
    move = where(result, "a")
    assert move["mode"] == "shutdown" and move["destination"] is None
    assert move["predicted_downtime_ms"] is None
    last = max(m["finish_offset_s"] for m in result["moves"] if m["mode"] == "live")
    assert move["start_offset_s"] == pytest.approx(last, abs=0.05)
    assert move["order"] == 3 and move["wave"] == 2
    assert result["predicted_total_seconds"] == pytest.approx(last + 30, abs=0.1)
    assert result["can_empty"]


def test_policy_shutdown_of_a_shut_off_domain_is_reported_not_dropped():
    result = plan(dict(hv1=host(dom("a", policy="shutdown", state="shutoff")), hv2=host()))
    assert result["skipped_domains"][0]["policy"] == "shutdown"
    assert "already shut off" in result["skipped_domains"][0]["reason"]


@pytest.mark.parametrize("default, expect", [("skip", "skipped"), ("cold", "cold"), ("shutdown", "shutdown")])
def test_label_true_takes_the_default_policy(default, expect):
    result = plan(dict(hv1=host(dom("a", policy=True)), hv2=host()), do_not_migrate_default=default)
    if expect == "skipped":
        assert result["skipped_domains"][0]["domain"] == "a"
    else:
        assert where(result, "a")["mode"] == expect


def test_label_false_means_migrate():
    assert where(plan(dict(hv1=host(dom("a", policy=False)), hv2=host())), "a")["mode"] == "live"


# --- domains that cannot move live -------------------------------------------------

def test_shut_off_domains_move_cold_with_their_local_disks():
    hosts = dict(hv1=host(dom("a", state="shutoff", shared_storage=False, local_disk_bytes=20 * GIB ** 3)),
                 hv2=host())
    move = where(plan(hosts, setup_seconds=2), "a")
    assert move["mode"] == "cold"
    assert move["local_disk_mib"] == 20 * GIB
    assert move["predicted_downtime_ms"] == 0
    assert move["predicted_seconds"] == pytest.approx(2 + 20 * GIB / 1000.0, abs=0.1)
    assert move["bandwidth_mib_s"] == 1000


def test_blockers_make_a_domain_unplaceable_unless_cold_fallback():
    hosts = dict(hv1=host(dom("gpu", blockers=["hostdev 0000:3b:00.0"])), hv2=host())
    item = unplaceable(plan(hosts), "gpu")
    assert item["reasons"] == ["live migration blocked by: hostdev 0000:3b:00.0 (live_fallback=cold would move it cold)"]
    move = where(plan(hosts, live_fallback="cold"), "gpu")
    assert move["mode"] == "cold" and "live_fallback=cold" in move["reason"]
    assert move["warnings"] == ["devices that block live migration (hostdev 0000:3b:00.0) must exist on hv2 to "
                                "start it there"]


def test_a_live_migration_that_cannot_converge():
    hosts = dict(hv1=host(dom("hot", 16 * GIB, dirty_rate_mib_s=3000)), hv2=host())
    reasons = unplaceable(plan(hosts), "hot")["reasons"]
    assert "not to converge at the whole budget of 1000 MiB/s" in reasons[0]
    assert where(plan(hosts, live_fallback="cold"), "hot")["mode"] == "cold"
    move = where(plan(hosts, auto_converge=True), "hot")
    assert move["mode"] == "live" and move["escalation"] == "auto_converge"
    assert any("Escalations predicted: hot (auto_converge)." == line for line in plan(hosts, auto_converge=True)["summary"])


def test_a_migration_that_converges_only_with_the_whole_budget_runs_alone():
    # 700 MiB/s converges at 1000 MiB/s, not at the 500 MiB/s a shared slot gives.
    hosts = dict(hv1=host(dom("hot", 8 * GIB, dirty_rate_mib_s=700), dom("a"), dom("b")),
                 hv2=host(), hv3=host(), hv4=host())
    result = plan(hosts)
    hot = where(result, "hot")
    assert hot["exclusive"] and hot["bandwidth_mib_s"] == 1000 and hot["order"] == 1
    assert where(result, "a")["start_offset_s"] >= hot["finish_offset_s"]


def test_paused_domains_dirty_nothing():
    hosts = dict(hv1=host(dom("p", 8 * GIB, state="paused", dirty_rate_mib_s=5000)), hv2=host())
    move = where(plan(hosts), "p")
    assert move["mode"] == "live" and move["escalation"] is None


@pytest.mark.parametrize("state", ["pmsuspended", "shutdown", "nostate", "unknown"])
def test_states_that_cannot_migrate(state):
    item = unplaceable(plan(dict(hv1=host(dom("a", state=state)), hv2=host())), "a")
    assert "state %s cannot be migrated" % state in item["reasons"][0]


def test_transient_domains_cannot_move_cold():
    hosts = dict(hv1=host(dom("t", persistent=False, policy="cold"), dom("u", persistent=False)), hv2=host(), hv3=host())
    result = plan(hosts)
    assert "transient" in unplaceable(result, "t")["reasons"][0]
    assert where(result, "u")["mode"] == "live"
    hosts = dict(hv1=host(dom("t", persistent=False, blockers=["vfio"])), hv2=host())
    assert "transient" in unplaceable(plan(hosts, live_fallback="cold"), "t")["reasons"][0]


# --- pre-checks ----------------------------------------------------------------------

def test_a_precheck_block_forbids_the_pair_and_its_reasons_carry():
    hosts = dict(hv1=host(dom("a")), hv2=host(), hv3=host(dom("x", 62 * GIB)))
    prechecks = [check("block", "a", "hv2", reasons=["CPU feature avx512f missing"]), check("ok", "a", "hv3")]
    result = plan(hosts, prechecks=prechecks)
    reasons = unplaceable(result, "a")["reasons"]
    assert "hv2: pre-check blocked: CPU feature avx512f missing" in reasons
    assert any("not enough memory" in r and "hv3" in r for r in reasons)


def test_unchecked_pairs_auto_deny_allow():
    hosts = dict(hv1=host(dom("a"), dom("b")), hv2=host(), hv3=host())
    prechecks = [check("ok", "a", "hv2")]
    auto = plan(hosts, prechecks=prechecks)
    assert where(auto, "a")["destination"] == "hv2"
    reasons = unplaceable(auto, "b")["reasons"]
    assert reasons == ["no pre-check for the pair, and unchecked pairs are not allowed (unchecked_pairs): hv2, hv3"]
    allow = plan(hosts, prechecks=prechecks, unchecked_pairs="allow")
    assert allow["can_empty"]
    deny = plan(hosts, unchecked_pairs="deny")
    assert len(deny["unplaceable"]) == 2
    # No pre-check at all: everything allowed.
    assert plan(hosts)["can_empty"]


def test_prechecks_of_other_evacuations_are_ignored():
    hosts = dict(hv1=host(dom("a")), hv2=host(dom("b")), hv3=host())
    prechecks = [check("block", "a", "hv3", source="hv2"), check("ok", "b", "hv3", source="hv2")]
    result = plan(hosts, prechecks=prechecks)
    assert result["can_empty"]  # auto: nothing for hv1, so unchecked pairs are allowed


def test_precheck_by_uuid_and_worst_verdict_wins():
    hosts = dict(hv1=host(dom("a")), hv2=host(), hv3=host(memory=8 * GIB))
    prechecks = [check("ok", "uuid-a", "hv2"), check("block", "a", "hv2", reasons=["machine type"]),
                 check("warn", "a", "hv3", reasons=["older QEMU"])]
    move = where(plan(hosts, prechecks=prechecks), "a")
    assert move["destination"] == "hv3"
    assert move["warnings"] == ["pre-check: older QEMU"]


def test_precheck_predictions_are_a_floor():
    hosts = dict(hv1=host(dom("a", dirty_rate_mib_s=0)), hv2=host())
    prechecks = [check("ok", "a", "hv2", predicted_seconds=120.0, predicted_downtime_ms=900.0,
                       escalation="max_downtime", converges=True)]
    move = where(plan(hosts, prechecks=prechecks), "a")
    assert move["predicted_seconds"] == 120.0
    assert move["predicted_downtime_ms"] == 900
    assert move["escalation"] == "max_downtime"


def test_precheck_predicting_no_convergence_forbids_live_there():
    hosts = dict(hv1=host(dom("a")), hv2=host(), hv3=host(memory=8 * GIB))
    prechecks = [check("ok", "a", "hv2", converges=False), check("ok", "a", "hv3", converges=True)]
    assert where(plan(hosts, prechecks=prechecks), "a")["destination"] == "hv3"
    prechecks[1]["converges"] = False
    reasons = unplaceable(plan(hosts, prechecks=prechecks), "a")["reasons"]
    assert reasons == ["pre-check predicts the live migration does not converge, even with the ladder: hv2, hv3"]


def test_many_refusing_destinations_are_summarised():
    hosts = dict(hv1=host(dom("a", 32 * GIB)))
    for i in range(12):
        hosts["hv%02d" % (i + 10)] = host(memory=(8 + i) * GIB)
    reasons = unplaceable(plan(hosts), "a")["reasons"]
    assert reasons == ["not enough memory for 32768 MiB on 12 destinations (the most free: 19456 MiB on hv21): "
                       "hv10, hv11, hv12, hv13, hv14 and 7 more"]
    assert MAX_NAMES == 5


# --- schedule ------------------------------------------------------------------------

def test_concurrency_limits_and_bandwidth_split():
    domains = [dom("vm%02d" % i, 2 * GIB, dirty_rate_mib_s=0) for i in range(10)]
    hosts = dict(hv1=host(*domains), hv2=host(), hv3=host(), hv4=host())
    result = plan(hosts, max_parallel_per_source=3, max_parallel_per_destination=1, bandwidth_budget_mib_s=900)
    first_wave = [m for m in result["moves"] if m["wave"] == 1]
    assert len(first_wave) == 3
    assert all(m["bandwidth_mib_s"] == 300 for m in first_wave)
    assert len(set(m["destination"] for m in first_wave)) == 3
    assert result["bandwidth_budget_mib_s"] == 900


def test_bound_is_memory_and_disks_over_the_budget():
    domains = [dom("vm%d" % i, 4 * GIB, dirty_rate_mib_s=0) for i in range(4)]
    domains.append(dom("off", state="shutoff", shared_storage=False, local_disk_bytes=2 * GIB ** 3))
    result = plan(dict(hv1=host(*domains), hv2=host(), hv3=host()), bandwidth_budget_mib_s=1000)
    assert result["bound_seconds"] == pytest.approx((4 * 4096 + 2048) / 1000.0, abs=0.05)
    assert result["predicted_total_seconds"] >= result["bound_seconds"]


def test_default_budget_when_bandwidth_was_not_measured():
    hosts = dict(hv1=host(dom("a", dirty_rate_mib_s=None), bandwidth=None), hv2=host())
    result = plan(hosts)
    assert result["bandwidth_budget_mib_s"] == DEFAULT_BANDWIDTH_MIB_S
    note = [line for line in result["summary"] if line.startswith("Note:")][0]
    assert "not measured: 112 MiB/s assumed" in note
    assert "dirty rate not measured for 1 domain: 0 MiB/s assumed" in note


def test_summary_reads_well():
    hosts = dict(hv1=host(dom("a"), dom("b", policy="skip")), hv2=host())
    summary = plan(hosts)["summary"]
    assert summary[0] == ("hv1 cannot be emptied: 2 domains - 1 live, 0 cold, 0 shut down in place, 1 skipped, "
                          "0 unplaceable.")
    assert summary[2].startswith("Predicted ")


# --- determinism ---------------------------------------------------------------------

def test_same_input_same_plan_whatever_the_order():
    rng = random.Random(5)
    hosts = random_inventory(rng, n_hosts=8, n_domains=25)
    first = plan(copy.deepcopy(hosts))
    for dummy in range(5):
        shuffled = {}
        names = list(hosts)
        rng.shuffle(names)
        for name in names:
            facts = copy.deepcopy(hosts[name])
            rng.shuffle(facts["domains"])
            shuffled[name] = facts
        assert plan(shuffled) == first


# --- bad input -----------------------------------------------------------------------

def bad(hosts, source="hv1", prechecks=None, **options):
    with pytest.raises(ParameterError) as info:
        plan_evacuation(source, hosts, prechecks, PlanOptions(**options))
    assert isinstance(info.value, VirtopsError)
    return info.value.msg


def test_bad_source():
    assert bad(dict(hv2=host())) == "source 'hv1' is not in hosts"


@pytest.mark.parametrize("field, value, message", [
    ("state", "running-ish", "hosts.hv1.domains[0] (a): state must be one of"),
    ("memory_mib", "4096", "hosts.hv1.domains[0] (a): memory_mib must be a number >= 0, not '4096'"),
    ("memory_mib", -1, "memory_mib must be a number >= 0"),
    ("vcpus", None, "vcpus must be a number >= 0, not None"),
    ("persistent", "yes", "persistent must be true or false"),
    ("blockers", "hostdev", "blockers must be a list of strings"),
    ("labels", [], "labels must be a dictionary"),
    ("dirty_rate_mib_s", "fast", "dirty_rate_mib_s must be a number"),
])
def test_bad_source_domain(field, value, message):
    d = dom("a")
    d[field] = value
    assert message in bad(dict(hv1=host(d), hv2=host()))


def test_bad_labels_and_names():
    assert "labels.do_not_migrate must be null, true or one of skip, cold, shutdown, not 'never'" in bad(
        dict(hv1=host(dom("a", policy="never")), hv2=host()))
    assert "two domains are named 'a'" in bad(dict(hv1=host(dom("a"), dom("a")), hv2=host()))
    d = dom("a")
    del d["name"]
    assert "hosts.hv1.domains[0]: name must be a non-empty string" in bad(dict(hv1=host(d), hv2=host()))
    d = dom("a", shared_storage=False)
    d["local_disk_bytes"] = None
    assert "local_disk_bytes is required when shared_storage is false" in bad(dict(hv1=host(d), hv2=host()))


@pytest.mark.parametrize("field, value, message", [
    ("memory_committable_mib", 1e9, "hosts.hv2: memory_committable_mib (1000000000.0) exceeds memory_total_mib"),
    ("vcpus_total", "many", "hosts.hv2: vcpus_total must be a number >= 0"),
    ("maintenance", "no", "hosts.hv2: maintenance must be true or false"),
    ("domains", {}, "hosts.hv2: domains must be a list"),
])
def test_bad_destination_host(field, value, message):
    h = host()
    h[field] = value
    assert message in bad(dict(hv1=host(dom("a")), hv2=h))


@pytest.mark.parametrize("field, value, message", [
    ("state", "on", "hosts.hv2.domains[1]: state must be one of"),
    ("memory_mib", "big", "hosts.hv2.domains[1]: memory_mib must be a number >= 0"),
    ("vcpus", -2, "hosts.hv2.domains[1]: vcpus must be a number >= 0"),
    ("persistent", 1, "hosts.hv2.domains[1]: persistent must be true or false"),
])
def test_bad_destination_domain(field, value, message):
    d = dom("y")
    d[field] = value
    assert message in bad(dict(hv1=host(dom("a")), hv2=host(dom("x"), d)))


def test_bad_destination_labels_when_they_matter():
    d = dom("y")
    d["labels"] = "db"
    hosts = dict(hv1=host(dom("a", group="db")), hv2=host(d))
    assert "hosts.hv2.domains[0]: labels must be a dictionary" in bad(hosts)


def test_bad_host_entries():
    assert "hosts.hv2 must be a dictionary" in bad(dict(hv1=host(), hv2=["hv2"]))
    assert bad(dict(hv1=host(), hv2=dict(memory_total_mib=1))).startswith("hosts.hv2: memory_committable_mib")
    with pytest.raises(ParameterError, match="hosts must be a dictionary"):
        plan_evacuation("hv1", [], None)


@pytest.mark.parametrize("item, message", [
    (dict(domain="a", source="hv1", destination="hv2", verdict="maybe"), "prechecks[0]: verdict must be one of"),
    (dict(domain="a", source="hv1", verdict="ok"), "prechecks[0]: destination must be a non-empty string"),
    (dict(domain="a", source="hv1", destination="hv2", verdict="ok", reasons="x"), "reasons must be a list"),
    (dict(domain="a", source="hv1", destination="hv2", verdict="ok", escalation="pray"), "escalation must be null"),
    (dict(domain="a", source="hv1", destination="hv2", verdict="ok", predicted_seconds=-1), "predicted_seconds"),
])
def test_bad_prechecks(item, message):
    assert message in bad(dict(hv1=host(dom("a")), hv2=host()), prechecks=[item])


@pytest.mark.parametrize("options, message", [
    (dict(memory_overcommit=0), "memory_overcommit must be a number > 0"),
    (dict(max_parallel_per_source=0), "max_parallel_per_source must be an integer >= 1"),
    (dict(max_parallel_per_destination=1.5), "max_parallel_per_destination must be an integer >= 1"),
    (dict(bandwidth_budget_mib_s=-5), "bandwidth_budget_mib_s must be a number > 0"),
    (dict(max_downtime_steps=[100]), "max_downtime_steps must each be above max_downtime (300 ms)"),
    (dict(unchecked_pairs="sometimes"), "unchecked_pairs must be one of auto, allow, deny"),
    (dict(exclude="hv2"), "exclude must be a list of host names"),
    (dict(colour="blue"), "unknown planning options: colour"),
])
def test_bad_options(options, message):
    with pytest.raises(ParameterError) as info:
        PlanOptions(**options)
    assert message in info.value.msg


def test_module_parameters_with_defaults():
    params = dict((k, v.get("default")) for k, v in EVACUATION_PLAN_ARGUMENT_SPEC.items())
    params.update(source="hv1", hosts=dict(hv1=host(dom("a")), hv2=host()))
    assert run_evacuation_plan(params)["can_empty"]


# --- the property: random inventories --------------------------------------------------

def random_inventory(rng, n_hosts=None, n_domains=None):
    n_hosts = n_hosts or rng.randint(1, 9)
    groups = ["g%d" % i for i in range(rng.randint(1, 4))]
    hosts = {}
    counter = [0]

    def random_domain():
        counter[0] += 1
        state = rng.choice(["running"] * 6 + ["paused", "shutoff", "shutoff", "crashed", "pmsuspended", "blocked"])
        shared = rng.random() < 0.7
        persistent = state in INACTIVE or rng.random() < 0.9
        return dom("vm%03d" % counter[0], memory=rng.choice([512, 1024, 4096, 8192, 16384, 32768]),
                   vcpus=rng.choice([1, 2, 4, 8]), state=state, persistent=persistent,
                   group=rng.choice([None, None, None] + groups),
                   policy=rng.choice([None] * 12 + ["skip", "cold", "shutdown", True, False]),
                   dirty_rate_mib_s=rng.choice([None, 0, 10, 100, 500, 1200, 3000]),
                   shared_storage=shared, local_disk_bytes=0 if shared else rng.choice([1, 10, 40]) * GIB ** 3,
                   blockers=["hostdev"] if rng.random() < 0.05 else [])

    for i in range(n_hosts + 1):
        memory = rng.choice([16, 32, 64, 128]) * GIB
        hosts["hv%d" % (i + 1)] = host(*[random_domain() for dummy in range(rng.randint(0, 6))],
                                       memory=memory, vcpus=rng.choice([4, 8, 16]),
                                       maintenance=i > 0 and rng.random() < 0.1,
                                       bandwidth=rng.choice([None, 100, 1000, 5000]))
        hosts["hv%d" % (i + 1)]["memory_committable_mib"] = memory - rng.choice([0, 2 * GIB])
    source = hosts["hv1"]
    source["domains"] = [random_domain() for dummy in range(n_domains if n_domains is not None else rng.randint(0, 25))]
    return hosts


def random_options(rng, hosts):
    return dict(
        memory_overcommit=rng.choice([1.0, 1.0, 1.5]),
        vcpu_overcommit=rng.choice([1.0, 4.0]),
        reserved_memory_mib=rng.choice([0, 1024]),
        count_shutoff_domains=rng.random() < 0.7,
        max_parallel_per_source=rng.randint(1, 4),
        max_parallel_per_destination=rng.randint(1, 2),
        bandwidth_budget_mib_s=rng.choice([None, None, 300.0, 2000.0]),
        exclude=rng.sample(sorted(hosts), k=rng.randint(0, 1)),
        do_not_migrate_default=rng.choice(["skip", "cold", "shutdown"]),
        live_fallback=rng.choice(["none", "cold"]),
        unchecked_pairs=rng.choice(["auto", "auto", "allow", "deny"]),
        auto_converge=rng.random() < 0.3,
        postcopy=rng.choice(["never", "never", "permit"]),
        max_downtime_steps=rng.choice([[], [1000, 3000]]),
    )


def random_prechecks(rng, hosts):
    if rng.random() < 0.4:
        return None
    out = []
    for d in hosts["hv1"]["domains"]:
        for dest in hosts:
            if dest != "hv1" and rng.random() < 0.6:
                out.append(check(rng.choice(["ok", "ok", "warn", "block"]), d["name"], dest, reasons=["r"],
                                 converges=rng.choice([None, True, True, False]),
                                 predicted_seconds=rng.choice([None, 5.0, 500.0])))
    return out


def test_random_inventories_keep_every_invariant():
    rng = random.Random(20240601)
    outcomes = dict(moves=0, skipped=0, unplaceable=0, can_empty=0, exclusive=0, escalated=0)
    for dummy in range(400):
        hosts = random_inventory(rng)
        options = random_options(rng, hosts)
        prechecks = random_prechecks(rng, hosts)
        result = plan(hosts, prechecks=prechecks, **options)  # check_plan() asserts the invariants
        assert plan(copy.deepcopy(hosts), prechecks=copy.deepcopy(prechecks), **options) == result
        outcomes["moves"] += len(result["moves"])
        outcomes["skipped"] += len(result["skipped_domains"])
        outcomes["unplaceable"] += len(result["unplaceable"])
        outcomes["can_empty"] += result["can_empty"]
        outcomes["exclusive"] += sum(m["exclusive"] for m in result["moves"])
        outcomes["escalated"] += sum(1 for m in result["moves"] if m["escalation"])
    # The generator reaches every outcome, so the invariants were tested on each.
    assert all(count > 0 for count in outcomes.values()), outcomes


# --- what the playbook used to assemble in Jinja: the source's domains and measurements --------

def test_focus_narrows_the_source_and_adds_what_was_measured():
    from ansible_collections.virtops.migration.plugins.module_utils._planning.inputs import focus
    hosts = dict(hv1=dict(host(dom("a"), dom("b"), dom("c")), migration_bandwidth_mib_s=None), hv2=host(dom("a2")))
    for dom_ in hosts["hv1"]["domains"]:
        dom_["uuid"] = "u-" + dom_["name"]
    out = focus(hosts, "hv1", domains=["a", "u-c"], dirty_rates=dict(a=12.5, c=None, a2=99.0), bandwidth_mib_s=80.0)
    assert [d["name"] for d in out["hv1"]["domains"]] == ["a", "c"]
    assert [d["dirty_rate_mib_s"] for d in out["hv1"]["domains"]] == [12.5, None]
    assert out["hv1"]["migration_bandwidth_mib_s"] == 80.0
    # The other hosts and the input itself are untouched.
    assert out["hv2"] is hosts["hv2"] and len(hosts["hv1"]["domains"]) == 3
    assert focus(hosts, "hv1") is hosts
    assert focus(hosts, "hv9", domains=["a"]) is hosts


def test_the_module_plans_only_the_domains_asked_for():
    params = dict((k, v.get("default")) for k, v in EVACUATION_PLAN_ARGUMENT_SPEC.items())
    params.update(source="hv1", hosts=dict(hv1=host(dom("a"), dom("b")), hv2=host()), domains=["b"],
                  source_bandwidth_mib_s=500.0)
    out = run_evacuation_plan(params)
    assert [m["domain"] for m in out["moves"]] == ["b"] and out["bandwidth_budget_mib_s"] == 500.0


# --- the index of destinations: the same choice as a scan of every destination, cheaper --------

def scan_best(index, accept, memory=None, vcpus=None):
    """The rule the index implements, by brute force: the accepted destination with the highest
    free share (ties by name). ``accept`` (the planner's _allowed) checks the room itself."""
    accepted = [dest for dest in index.leaves if accept(dest)]
    return min(accepted, key=lambda dest: (-dest.score(), dest.name)) if accepted else None


def test_random_inventories_place_exactly_as_a_scan_of_every_destination(monkeypatch):
    from ansible_collections.virtops.migration.plugins.module_utils._planning.index import DestinationIndex
    rng = random.Random(20261201)
    plans = []
    for dummy in range(300):
        # Larger fleets than the invariant test, so the tree has depth, and tight ones, so refusals happen.
        hosts = random_inventory(rng, n_hosts=rng.randint(1, 40), n_domains=rng.randint(0, 40))
        options = random_options(rng, hosts)
        options["unchecked_pairs"] = rng.choice(["auto", "allow"])  # "deny" looks at the pre-checked pairs alone
        prechecks = random_prechecks(rng, hosts)
        plans.append((hosts, options, prechecks, plan(hosts, prechecks=prechecks, **options)))
    monkeypatch.setattr(DestinationIndex, "best", scan_best)
    placed = 0
    for hosts, options, prechecks, indexed in plans:
        assert plan(hosts, prechecks=prechecks, **options) == indexed
        placed += sum(1 for m in indexed["moves"] if m["destination"])
    assert placed > 1000


def test_a_big_domain_passes_over_small_empty_hosts_without_looking_at_them(monkeypatch):
    # Most hosts are small and nearly empty: the largest share free, but not the room for a 64 GiB
    # domain. A few big ones, half full, can take it. The planner asks about the big ones only.
    hosts = dict(("small%03d" % i, host(dom("s%03d" % i, memory=1 * GIB), memory=48 * GIB, vcpus=64))
                 for i in range(500))
    hosts.update(("big%d" % i, host(dom("b%d" % i, memory=(380 + i) * GIB), memory=768 * GIB, vcpus=128))
                 for i in range(5))
    hosts["hv1"] = host(*[dom("vm%02d" % i, memory=64 * GIB, vcpus=8) for i in range(20)], memory=2048 * GIB, vcpus=512)
    asked = []
    from ansible_collections.virtops.migration.plugins.module_utils._planning import placement
    allowed = placement._Planner._allowed

    def counting(self, dom_, mode, dest, pairs):
        asked.append(dest.name)
        return allowed(self, dom_, mode, dest, pairs)
    monkeypatch.setattr(placement._Planner, "_allowed", counting)
    result = plan(hosts)
    assert result["can_empty"] and {m["destination"] for m in result["moves"]} == {"big%d" % i for i in range(5)}
    assert all(name.startswith("big") for name in asked) and len(asked) == 20
    # Spread as before: least loaded first, so the five share the twenty (1,280 GiB) about evenly.
    assert sorted(d["moves"] for d in result["destinations"].values()) == [4, 4, 4, 4, 4]


def test_index_skips_subtrees_without_room_and_keeps_ties_by_name():
    from ansible_collections.virtops.migration.plugins.module_utils._planning.index import DestinationIndex
    from ansible_collections.virtops.migration.plugins.module_utils._planning.inputs import Destination
    dests = [Destination("d%d" % i, mem_cap=100.0, cpu_cap=10.0, mem_used=0.0, cpu_used=0.0) for i in range(7)]
    dests.append(Destination("none", mem_cap=0.0, cpu_cap=10.0, mem_used=0.0, cpu_used=0.0))
    index = DestinationIndex(dests)
    assert index.best(lambda d: True, 50, 1).name == "d0"  # equal shares: the first name
    assert index.best(lambda d: d.name != "d0", 50, 1).name == "d1"
    assert index.best(lambda d: True, 101, 1) is None and index.best(lambda d: True, 1, 11) is None
    dests[0].mem_used = 60.0
    index.update(dests[0])
    assert index.best(lambda d: True, 50, 1).name == "d1"
    assert index.best(lambda d: True, 40, 1).name == "d1"  # d0 fits 40 but has less share free
    for dest in dests[1:7]:
        dest.mem_used = 70.0
        index.update(dest)
    assert index.best(lambda d: True, 40, 1).name == "d0"
    assert index.best(lambda d: True, 41, 1) is None
    # A domain that takes no room (shut off, not counted) is left to accept() alone, even on a host without
    # capacity (the planner's _fits refuses that one).
    assert index.best(lambda d: d.name == "none") is dests[-1]
    assert DestinationIndex([]).best(lambda d: True, 1, 1) is None


def labelled(name, memory=4 * GIB, dirty_rate_mib_s=20.0, **labels):
    out = dom(name, memory, dirty_rate_mib_s=dirty_rate_mib_s)
    out["labels"].update(labels)
    return out


def test_a_higher_priority_moves_first_whatever_its_size():
    hosts = dict(hv1=host(dom("big", 16 * GIB), labelled("small", 1 * GIB, priority=10), labelled("last", 8 * GIB, priority=-1),
                          dom("mid", 8 * GIB)),
                 hv2=host(), hv3=host(), hv4=host())
    result = plan(hosts, max_parallel_per_source=1)
    # Longest first within a priority, as without labels.
    assert [m["domain"] for m in result["moves"]] == ["small", "big", "mid", "last"]
    assert [m["priority"] for m in result["moves"]] == [10, 0, 0, -1]


def test_max_downtime_label_caps_the_ladder_of_its_domain_only():
    # 950 MiB/s at a 1000 MiB/s budget converges only once the downtime may reach the 1000 ms step.
    hosts = dict(hv1=host(labelled("capped", dirty_rate_mib_s=950, max_downtime=300),
                          labelled("roomy", dirty_rate_mib_s=950, max_downtime=2000)),
                 hv2=host(), hv3=host())
    result = plan(hosts, max_downtime_steps=[1000, 5000], live_fallback="cold")
    roomy, capped = where(result, "roomy"), where(result, "capped")
    assert roomy["mode"] == "live" and roomy["max_downtime_ms"] == 2000
    assert roomy["escalation"] == "max_downtime" and roomy["predicted_downtime_ms"] <= 2000
    assert capped["mode"] == "cold" and capped["max_downtime_ms"] == 300
    assert "within its max_downtime label of 300 ms" in capped["reason"]
    unplaced = unplaceable(plan(hosts, max_downtime_steps=[1000, 5000]), "capped")
    assert "within its max_downtime label of 300 ms" in unplaced["reasons"][0]


def test_the_plan_says_where_each_label_came_from():
    source = labelled("a", priority=3)
    source["label_sources"] = {"priority": "inventory"}
    result = plan(dict(hv1=host(source), hv2=host()))
    assert where(result, "a")["label_sources"] == {"priority": "inventory"}


@pytest.mark.parametrize("labels, message", [
    (dict(priority="high"), "labels.priority must be a whole number from -1000 to 1000"),
    (dict(max_downtime=0), "labels.max_downtime must be a whole number from 1 to 600000"),
])
def test_bad_priority_or_max_downtime_labels_are_refused(labels, message):
    with pytest.raises(ParameterError) as err:
        plan(dict(hv1=host(labelled("a", **labels)), hv2=host()))
    assert message in err.value.msg and "(a)" in err.value.msg
