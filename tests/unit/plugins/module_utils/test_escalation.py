from ansible_collections.virtops.migration.plugins.module_utils._migration.escalation import (
    ABORT,
    PAUSE_POSTCOPY,
    POSTCOPY_STALL_S,
    SET_DOWNTIME,
    START_POSTCOPY,
    SUSPEND,
    Action,
    EscalationController,
)
from ansible_collections.virtops.migration.plugins.module_utils._migration.ladder import Ladder
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.jobstats import JOB_UNBOUNDED, JobSnapshot

MIB = 1024 * 1024


def snap(iteration, remaining_mib, bps_mib=50, throttle=0, active=True, sent_mib=None):
    return JobSnapshot(dict(
        type=JOB_UNBOUNDED if active else 0,
        data_processed=int(sent_mib * MIB) if sent_mib is not None else None,
        memory_iteration=iteration,
        data_remaining=int(remaining_mib * MIB),
        memory_bps=int(bps_mib * MIB),
        auto_converge_throttle=throttle,
    ))


def drive(controller, snaps, start=0.0, step=1.0, apply=True):
    """Feed snapshots one second apart; apply every action; return them all."""
    taken = []
    t = start
    for s in snaps:
        for action in controller.observe(s, t):
            taken.append((t, action))
            if apply:
                controller.applied(action, t, s)
        t += step
    return taken


def kinds(taken):
    return [pair[1].kind for pair in taken]


def values(taken, kind=None):
    return [pair[1].value for pair in taken if kind is None or pair[1].kind == kind]


def stalled(n, first=2, remaining=128):
    return [snap(first + i, remaining) for i in range(n)]


def test_converging_migration_needs_no_escalation():
    c = EscalationController(Ladder(max_downtime_steps=[500, 1000]))
    taken = drive(c, [snap(1, 256), snap(2, 60), snap(3, 20), snap(4, 5)])
    assert taken == []
    assert c.escalations == []
    assert c.completed_by == "precopy"


def test_initial_downtime_is_applied_once_and_not_an_escalation():
    c = EscalationController(Ladder(max_downtime=100))
    taken = drive(c, [snap(1, 256), snap(1, 200), snap(2, 10)])
    assert kinds(taken) == [SET_DOWNTIME]
    assert taken[0][1].value == 100
    assert c.downtime == 100
    assert c.escalations == []


def test_initial_downtime_is_offered_before_the_job_starts_and_then_not_again():
    c = EscalationController(Ladder(max_downtime=100))
    before = c.before_start()
    assert before == [Action(SET_DOWNTIME, 100, None)]
    c.applied(before[0], 0.0, None)
    assert c.downtime == 100 and c.escalations == []
    assert kinds(drive(c, [snap(1, 256), snap(2, 10)])) == []
    assert c.before_start() == []


def test_initial_downtime_refused_before_the_job_is_offered_again_once_it_runs():
    c = EscalationController(Ladder(max_downtime=100))
    c.failed(c.before_start()[0])
    taken = drive(c, [snap(1, 256)])
    assert kinds(taken) == [SET_DOWNTIME] and taken[0][1].value == 100


def test_no_initial_downtime_without_max_downtime():
    assert EscalationController(Ladder()).before_start() == []


def test_inactive_job_gives_no_action():
    c = EscalationController(Ladder(max_downtime=100, timeout=1))
    assert c.observe(snap(5, 100, active=False), 10) == []


def test_stall_climbs_downtime_steps_one_at_a_time_when_none_is_enough():
    # 128 MiB left at 50 MiB/s needs ~2560 ms: no step is enough, so one rung each stall.
    c = EscalationController(Ladder(max_downtime_steps=[500, 1000], stall_iterations=2))
    taken = drive(c, [snap(1, 256)] + stalled(8))
    assert values(taken, SET_DOWNTIME) == [500, 1000]
    assert [e["step"] for e in c.escalations] == ["max_downtime", "max_downtime"]
    assert c.escalations[0]["at_s"] > 0 and c.escalations[0]["iteration"] >= 3
    assert "2561 ms" in c.escalations[0]["reason"]
    assert c.completed_by == "max_downtime"


def test_stall_jumps_to_first_sufficient_step():
    c = EscalationController(Ladder(max_downtime_steps=[500, 1000, 3000, 5000], stall_iterations=1))
    taken = drive(c, [snap(1, 256), snap(2, 128), snap(3, 128)])
    assert values(taken) == [3000]


def test_progress_resets_the_stall_counter():
    c = EscalationController(Ladder(max_downtime_steps=[500], stall_iterations=2))
    # Each iteration drops below 90 % of the best seen: progress, no escalation.
    taken = drive(c, [snap(1, 256), snap(2, 200), snap(3, 170), snap(4, 150), snap(5, 130), snap(6, 115)])
    assert taken == []


def test_same_iteration_is_judged_once():
    c = EscalationController(Ladder(max_downtime_steps=[500], stall_iterations=1))
    taken = drive(c, [snap(2, 128)] * 5 + [snap(3, 128)] * 5)
    assert values(taken) == [500]


def test_postcopy_permit_comes_after_downtime_steps():
    c = EscalationController(Ladder(max_downtime_steps=[500], postcopy="permit", stall_iterations=1))
    taken = drive(c, [snap(1, 256)] + stalled(6))
    assert kinds(taken) == [SET_DOWNTIME, START_POSTCOPY]
    assert c.phase == "postcopy"
    assert c.completed_by == "postcopy"
    # Once in post-copy, nothing more happens.
    assert drive(c, stalled(3, first=20)) == []


def test_auto_converge_is_recorded_and_waited_for_while_throttle_rises():
    c = EscalationController(Ladder(auto_converge=True, postcopy="permit", stall_iterations=1))
    snaps = [snap(1, 256), snap(2, 128, throttle=20), snap(3, 128, throttle=30), snap(4, 128, throttle=40),
             snap(5, 128, throttle=40), snap(6, 128, throttle=40)]
    taken = drive(c, snaps)
    steps = [e["step"] for e in c.escalations]
    assert steps[0] == "auto_converge"
    assert c.escalations[0]["value"] == 20
    # Post-copy only once the throttle stopped rising.
    assert kinds(taken) == [START_POSTCOPY]
    assert taken[0][0] >= 4.0
    assert c.completed_by == "postcopy"


def test_auto_converge_at_max_throttle_moves_on():
    c = EscalationController(Ladder(auto_converge=True, postcopy="permit", stall_iterations=1))
    taken = drive(c, [snap(1, 256), snap(2, 128, throttle=99), snap(3, 128, throttle=99)])
    assert kinds(taken) == [START_POSTCOPY]


def test_auto_converge_alone_completing_is_reported():
    c = EscalationController(Ladder(auto_converge=True, stall_iterations=2))
    drive(c, [snap(1, 256), snap(2, 128, throttle=20), snap(3, 60, throttle=30), snap(4, 10, throttle=30)])
    assert c.completed_by == "auto_converge"


def test_after_first_pass_switches_at_iteration_two():
    c = EscalationController(Ladder(postcopy="after_first_pass"))
    taken = drive(c, [snap(1, 256), snap(1, 100), snap(2, 128)])
    assert [(t, a.kind) for t, a in taken] == [(2.0, START_POSTCOPY)]
    assert "first" in c.escalations[0]["reason"]


def test_ladder_exhausted_waits_for_timeout_then_aborts():
    c = EscalationController(Ladder(max_downtime_steps=[500], stall_iterations=1, timeout=10))
    taken = drive(c, [snap(1, 256)] + stalled(12))
    assert kinds(taken) == [SET_DOWNTIME, ABORT]
    assert taken[-1][0] == 10.0
    assert c.completed_by == "max_downtime"  # abort never counts as completing


def test_timeout_postcopy():
    c = EscalationController(Ladder(timeout=3, timeout_action="postcopy"))
    taken = drive(c, [snap(1, 256)] + stalled(5))
    assert kinds(taken) == [START_POSTCOPY]
    assert "timeout" in c.escalations[0]["reason"]
    assert c.policy.postcopy_flag


def test_timeout_pause():
    c = EscalationController(Ladder(timeout=2, timeout_action="pause"))
    taken = drive(c, [snap(1, 256)] + stalled(5))
    assert kinds(taken) == [SUSPEND]
    assert c.phase == "paused"
    assert c.completed_by == "pause"


def test_timeout_in_postcopy_does_nothing():
    for action in ("pause", "abort", "postcopy"):
        c = EscalationController(Ladder(postcopy="after_first_pass", timeout=3, timeout_action=action))
        taken = drive(c, [snap(1, 256)] + [snap(2 + i, 128, sent_mib=100 + i) for i in range(6)])
        assert kinds(taken) == [START_POSTCOPY]


def test_stalled_postcopy_is_paused_for_recovery():
    c = EscalationController(Ladder(postcopy="after_first_pass"))
    moving = [snap(2 + i, 128, sent_mib=100 + i) for i in range(5)]
    stuck = [snap(7, 100, sent_mib=105)] * 40
    taken = drive(c, [snap(1, 256)] + moving + stuck)
    assert kinds(taken) == [START_POSTCOPY, PAUSE_POSTCOPY]
    # Paused 30 s after the last byte moved.
    assert taken[1][0] - 5.0 >= POSTCOPY_STALL_S
    assert c.escalations[-1]["step"] == "postcopy_paused"
    assert c.completed_by == "postcopy"


def test_failed_action_is_not_recorded_and_can_be_retried():
    c = EscalationController(Ladder(max_downtime=50))
    actions = c.observe(snap(1, 256), 0.1)
    assert [a.kind for a in actions] == [SET_DOWNTIME]
    c.failed(actions[0])
    assert c.escalations == []
    # An initial downtime that failed is not retried forever.
    assert c.observe(snap(1, 200), 0.2) == []


def test_postcopy_flag():
    assert not Ladder().postcopy_flag
    assert Ladder(postcopy="permit").postcopy_flag
    assert Ladder(timeout_action="postcopy").postcopy_flag
