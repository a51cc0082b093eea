"""Migration-time predictions and the schedule simulation (_prediction.py).

The physical limits are asserted directly: no migration faster than what it sends over its
bandwidth, no pre-copy convergence while the guest dirties memory as fast as it is sent,
no schedule faster than everything sent over the budget.
"""

import math
import random

import pytest

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import ParameterError
from ansible_collections.virtops.migration.plugins.module_utils._planning.prediction import (
    MAX_THROTTLE,
    POSTCOPY_SWITCH_MS,
    Ladder,
    ladder_rank,
    precopy_rounds,
    predict_cold,
    predict_migration,
)
from ansible_collections.virtops.migration.plugins.module_utils._planning.schedule import Job, simulate


# --- pre-copy ----------------------------------------------------------------------

def test_idle_guest_converges_after_one_pass():
    pred = predict_migration(4096, 0, 1000, setup_seconds=2.0)
    assert pred["converges"] and pred["escalation"] is None
    assert pred["seconds"] == pytest.approx(2.0 + 4.096)
    assert pred["downtime_ms"] == 0
    assert pred["rungs"][0]["rounds"] == 1


def test_small_guest_fits_in_the_downtime_directly():
    ok, seconds, downtime, rounds, _pct, _pending = precopy_rounds(100, 50, 1000, 300)
    assert ok and rounds == 0
    assert downtime == pytest.approx(100.0)
    assert seconds == pytest.approx(0.1)


def test_geometric_rounds_match_the_closed_form():
    memory, dirty, bandwidth, limit_ms = 8192.0, 250.0, 1000.0, 300
    ratio = dirty / bandwidth
    # Round k (from 0) sends memory * ratio**k; stop once that fits within the limit.
    k = 0
    while memory * ratio ** k / bandwidth > limit_ms / 1000.0:
        k += 1
    sent_rounds = sum(memory * ratio ** i for i in range(k)) / bandwidth
    stop = memory * ratio ** k / bandwidth
    ok, seconds, downtime, rounds, _pct, _pending = precopy_rounds(memory, dirty, bandwidth, limit_ms)
    assert ok and rounds == k
    assert seconds == pytest.approx(sent_rounds + stop)
    assert downtime == pytest.approx(stop * 1000)
    assert downtime <= limit_ms


@pytest.mark.parametrize("dirty", [1000, 1500, 5000])
def test_no_convergence_when_dirty_rate_reaches_bandwidth(dirty):
    pred = predict_migration(8192, dirty, 1000)
    assert not pred["converges"]
    assert pred["seconds"] is None and pred["downtime_ms"] is None and pred["escalation"] is None
    assert "at least the 1000 MiB/s sent" in pred["reason"]


def test_round_cap_stops_a_crawling_precopy():
    # Each round shrinks by only 3 %: converging would take about 100 rounds.
    capped = predict_migration(16384, 970, 1000)
    assert not capped["converges"]
    assert "after 30 rounds" in capped["reason"]
    ok = precopy_rounds(16384, 970, 1000, 300, max_rounds=200)
    assert ok[0] and ok[3] > 30


def test_disk_copy_comes_first_and_adds_its_time():
    without = predict_migration(4096, 0, 500)
    with_disk = predict_migration(4096, 0, 500, disk_mib=10240)
    assert with_disk["seconds"] == pytest.approx(without["seconds"] + 10240 / 500.0)
    assert with_disk["bound_seconds"] == pytest.approx((4096 + 10240) / 500.0)


# --- the ladder --------------------------------------------------------------------

def test_downtime_step_rescues_a_precopy_that_stalls():
    ladder = Ladder(max_downtime=300, max_downtime_steps=[1000, 5000, 20000])
    pred = predict_migration(16384, 900, 1000, ladder=ladder)
    assert pred["converges"] and pred["escalation"] == "max_downtime"
    chosen = next(r for r in pred["rungs"] if r["converges"])
    assert chosen["value"] in (1000, 5000, 20000)
    assert pred["downtime_ms"] <= chosen["value"]
    assert not pred["rungs"][0]["converges"]


def test_auto_converge_throttles_a_guest_dirtying_faster_than_the_link():
    pred = predict_migration(8192, 1500, 1000, ladder=Ladder(auto_converge=True))
    assert pred["converges"] and pred["escalation"] == "auto_converge"
    rung = pred["rungs"][-1]
    assert 20 <= rung["throttle_pct"] <= MAX_THROTTLE
    assert pred["downtime_ms"] <= 300


def test_postcopy_always_finishes_with_a_short_switch():
    pred = predict_migration(8192, 5000, 1000, ladder=Ladder(postcopy="permit"))
    assert pred["converges"] and pred["escalation"] == "postcopy"
    assert pred["downtime_ms"] <= POSTCOPY_SWITCH_MS
    # First pass plus two stalled passes, then the rest (all of memory, dirtied) once more.
    assert pred["seconds"] == pytest.approx(2.0 + 4 * 8.192)


def test_after_first_pass_switches_after_one_pass():
    pred = predict_migration(8192, 100, 1000, ladder=Ladder(postcopy="after_first_pass"))
    assert pred["escalation"] == "postcopy"
    assert pred["seconds"] == pytest.approx(2.0 + 8.192 + 819.2 / 1000, abs=1e-3)
    assert predict_migration(200, 100, 1000, ladder=Ladder(postcopy="after_first_pass"))["escalation"] is None


def test_timeout_pause_is_the_last_rung():
    ladder = Ladder(timeout=120, timeout_action="pause")
    pred = predict_migration(8192, 2000, 1000, ladder=ladder)
    assert pred["escalation"] == "pause"
    assert pred["seconds"] >= 120
    assert pred["downtime_ms"] == pytest.approx(8192, rel=0.01)


def test_a_rung_beyond_the_timeout_does_not_count():
    slow = predict_migration(65536, 0, 100, ladder=Ladder(timeout=300))
    assert not slow["converges"]
    assert "completion timeout of 300 s" in slow["reason"]
    # The default timeout (800 s per GiB, as the migrate module) lets it through.
    assert predict_migration(65536, 0, 100)["converges"]


def test_a_stalling_precopy_gives_way_to_the_next_rung():
    # Each round leaves 95 % of the one before: the migrate module's controller calls that a
    # stall (no drop below 90 %) and climbs to post-copy after two such rounds.
    alone = predict_migration(8192, 950, 1000, ladder=Ladder())
    climbs = predict_migration(8192, 950, 1000, ladder=Ladder(postcopy="permit"))
    assert not alone["converges"]
    assert climbs["escalation"] == "postcopy"
    assert "stalls" in climbs["rungs"][0]["reason"]
    # Enough progress per round: pre-copy goes on and converges even with post-copy permitted.
    assert predict_migration(8192, 500, 1000, ladder=Ladder(postcopy="permit"))["escalation"] is None


def test_ladder_rank_follows_the_controller_order():
    assert ladder_rank(None) < ladder_rank("max_downtime") < ladder_rank("auto_converge") < ladder_rank("postcopy")


def test_bad_bandwidth_is_refused():
    with pytest.raises(ParameterError):
        predict_migration(1024, 0, 0)


def test_random_predictions_respect_the_physical_limits():
    rng = random.Random(1)
    for dummy in range(500):
        memory = rng.choice([0, 256, 1024, 8192, 65536])
        dirty = rng.uniform(0, 3000)
        bandwidth = rng.uniform(10, 5000)
        disk = rng.choice([0, 0, 20480])
        ladder = Ladder(max_downtime_steps=rng.choice([[], [1000, 4000]]), auto_converge=rng.random() < 0.5,
                        postcopy=rng.choice(["never", "permit"]))
        pred = predict_migration(memory, dirty, bandwidth, disk_mib=disk, ladder=ladder, setup_seconds=1.0)
        assert pred["bound_seconds"] == pytest.approx((memory + disk) / bandwidth, abs=1e-3)
        if pred["converges"]:
            # Never faster than what it must send over the link.
            assert pred["seconds"] >= 1.0 + pred["bound_seconds"] - 1e-3
            assert pred["downtime_ms"] >= 0
            # More bandwidth never hurts: it converges, on the same rung or a lower one, and on the
            # same rung no slower. (A lower rung may be slower: pre-copy that just escapes the
            # stall threshold crawls for many rounds where post-copy would have switched.)
            faster = predict_migration(memory, dirty, bandwidth * 2, disk_mib=disk, ladder=ladder, setup_seconds=1.0)
            assert faster["converges"]
            assert ladder_rank(faster["escalation"]) <= ladder_rank(pred["escalation"])
            if faster["escalation"] == pred["escalation"]:
                assert faster["seconds"] <= pred["seconds"] + 1e-6
        elif not ladder.auto_converge and ladder.postcopy == "never" and not ladder.max_downtime_steps:
            # Plain pre-copy: it fails only when the guest dirties (about) as fast as the link sends.
            assert dirty >= bandwidth * 0.85 or memory / bandwidth > 300


def test_cold_move_times():
    assert predict_cold(0, 1000, running=False, setup_seconds=2) == (2.0, 0.0)
    seconds, downtime = predict_cold(10240, 512, running=True, setup_seconds=2, shutdown_seconds=30)
    assert seconds == pytest.approx(2 + 20 + 30)
    assert downtime == pytest.approx(seconds * 1000)


# --- the schedule ------------------------------------------------------------------

def fixed(mib):
    """A job sending ``mib`` with no overhead: seconds = mib / bandwidth."""
    return lambda bandwidth: mib / bandwidth


def concurrency(slots, key):
    """Most jobs running at once, overall or per ``key``."""
    worst = 0
    for probe in slots.values():
        t = probe["start"]
        running = [s for s in slots.values() if s["start"] <= t < s["finish"] and key(s) == key(probe)]
        worst = max(worst, len(running))
    return worst


def test_budget_is_split_between_concurrent_jobs():
    jobs = [Job("a", "hv2", fixed(1000)), Job("b", "hv3", fixed(1000))]
    slots = simulate(jobs, 1000, max_per_source=2, max_per_destination=1)
    assert slots["a"]["bandwidth"] == slots["b"]["bandwidth"] == 500
    assert slots["a"]["finish"] == slots["b"]["finish"] == pytest.approx(2.0)
    assert slots["a"]["wave"] == slots["b"]["wave"] == 1


def test_a_lone_job_gets_the_whole_budget():
    slots = simulate([Job("a", "hv2", fixed(1000))], 1000, 4, 1)
    assert slots["a"]["bandwidth"] == 1000


def test_destination_limit_serializes_and_others_backfill():
    jobs = [Job("a", "hv2", fixed(1000)), Job("b", "hv2", fixed(1000)), Job("c", "hv3", fixed(1000))]
    slots = simulate(jobs, 900, max_per_source=3, max_per_destination=1)
    assert slots["b"]["start"] == pytest.approx(slots["a"]["finish"])
    assert slots["c"]["start"] == 0  # not held back by b waiting for hv2
    assert concurrency(slots, key=lambda s: None) <= 3


def test_source_limit_holds_at_every_instant():
    rng = random.Random(3)
    jobs = [Job(str(i), "hv%d" % rng.randint(1, 4), fixed(rng.uniform(100, 5000))) for i in range(40)]
    slots = simulate(jobs, 1000, max_per_source=3, max_per_destination=2)
    dests = dict((j.key, j.destination) for j in jobs)
    for slot_key, slot in slots.items():
        slot["dest"] = dests[slot_key]
    assert concurrency(slots, key=lambda s: None) <= 3
    assert concurrency(slots, key=lambda s: s["dest"]) <= 2
    for probe in slots.values():
        t = probe["start"]
        assert sum(s["bandwidth"] for s in slots.values() if s["start"] <= t < s["finish"]) <= 1000 + 1e-6
    total = sum(mib for mib in (j.duration(1.0) for j in jobs))
    makespan = max(s["finish"] for s in slots.values())
    # Never faster than everything sent over the budget.
    assert makespan >= total / 1000 - 1e-9


def test_every_share_is_at_least_the_nominal_one():
    jobs = [Job(str(i), "hv%d" % i, fixed(100 * (i + 1))) for i in range(7)]
    slots = simulate(jobs, 1200, max_per_source=3, max_per_destination=1)
    assert min(s["bandwidth"] for s in slots.values()) >= 1200 / 3 - 1e-9


def test_exclusive_jobs_run_alone_and_first():
    jobs = [Job("a", "hv2", fixed(1000)), Job("big", "hv3", fixed(5000), exclusive=True), Job("b", "hv4", fixed(1000))]
    slots = simulate(jobs, 1000, max_per_source=2, max_per_destination=1)
    assert slots["big"]["start"] == 0 and slots["big"]["bandwidth"] == 1000
    assert slots["a"]["start"] == pytest.approx(slots["big"]["finish"])
    assert slots["b"]["start"] == pytest.approx(slots["big"]["finish"])


def test_jobs_that_send_nothing_take_a_slot_but_no_bandwidth():
    jobs = [Job("def", "hv2", lambda bw: 2.0, sends=False), Job("a", "hv3", fixed(1000))]
    slots = simulate(jobs, 1000, max_per_source=2, max_per_destination=1)
    assert slots["def"]["bandwidth"] == 0
    assert slots["a"]["bandwidth"] == 1000
    assert math.isclose(slots["a"]["finish"], 1.0)
