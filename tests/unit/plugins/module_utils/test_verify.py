"""Where domains are after an evacuation and around a restore: the decisions the playbooks used to make in Jinja."""

import pytest

from ansible_collections.virtops.migration.plugins.module_utils._evacuation.verify import (
    evacuation_problems,
    restore_plan,
    restore_problems,
)


def dom(name, state="running", persistent=True):
    return dict(name=name, state=state, persistent=persistent)


def facts(**hosts):
    return dict((host, dict(domains=list(domains))) for host, domains in hosts.items())


def rec(name, status, destination=None, state="running"):
    return dict(domain=name, status=status, destination=destination, state=state)


# --- after an evacuation ---------------------------------------------------------------

def test_a_clean_evacuation_has_no_problems():
    after = facts(hv1=[dom("keep", "running")], hv2=[dom("a")], hv3=[dom("b", "shutoff")])
    records = [rec("a", "moved", "hv2"), rec("b", "moved", "hv3", state="shutoff"), rec("keep", "skipped")]
    assert evacuation_problems("hv1", records, after) == []


@pytest.mark.parametrize("after, record, problems", [
    # still defined on the source (whatever its state), and also fine on the destination
    (facts(hv1=[dom("a", "shutoff")], hv2=[dom("a")]), rec("a", "moved", "hv2"), ["a is still defined on hv1"]),
    (facts(hv1=[], hv2=[]), rec("a", "moved", "hv2"), ["a is not on hv2"]),
    # a destination without facts holds nothing
    (facts(hv1=[]), rec("a", "moved", "hv9"), ["a is not on hv9"]),
    (facts(hv1=[], hv2=[dom("a", "shutoff")]), rec("a", "moved", "hv2"), ["a is shutoff on hv2"]),
    # a shut-off domain moved cold may arrive shut off, but must be persistent
    (facts(hv1=[], hv2=[dom("a", "shutoff")]), rec("a", "moved", "hv2", state="shutoff"), []),
    (facts(hv1=[], hv2=[dom("a", persistent=False)]), rec("a", "moved", "hv2"), ["a is not persistent on hv2"]),
    (facts(hv1=[dom("s", "running")]), rec("s", "shut_down"), ["s still runs here"]),
    (facts(hv1=[dom("s", "shutoff")]), rec("s", "shut_down"), []),
    (facts(hv1=[]), rec("s", "shut_down"), []),
    (facts(hv1=[dom("f")]), rec("f", "failed", "hv2"), []),
    # a copy left active on a third host (running there too, or paused); shut off there is fine
    (facts(hv1=[], hv2=[dom("a")], hv3=[dom("a", "paused", persistent=False)]), rec("a", "moved", "hv2"),
     ["a is also paused on hv3"]),
    (facts(hv1=[], hv2=[dom("a")], hv3=[dict(dom("a"), uuid="u1")]), dict(rec("a", "moved", "hv2"), uuid="u1"),
     ["a is also running on hv3"]),
    (facts(hv1=[], hv2=[dom("a")], hv3=[dom("a", "shutoff")]), rec("a", "moved", "hv2"), []),
    # another domain that only shares the name
    (facts(hv1=[], hv2=[dom("a")], hv3=[dict(dom("a"), uuid="u2")]), dict(rec("a", "moved", "hv2"), uuid="u1"), []),
])
def test_evacuation_problems(after, record, problems):
    assert evacuation_problems("hv1", [record], after) == problems


# --- restore ---------------------------------------------------------------------------

def journal(*records):
    return dict(domains=dict((r["domain"], r) for r in records))


def test_restore_plan_moves_back_from_the_one_host_that_holds_it():
    now = facts(hv1=[dom("s", "shutoff"), dom("t", "shutoff", persistent=False)],
                hv2=[dom("b"), dom("c"), dom("gone", "shutoff", persistent=False)],
                hv3=[dom("a", "paused"), dom("c", "shutoff")])
    plan = restore_plan("hv1", journal(rec("c", "moved"), rec("a", "moved"), rec("b", "moved"), rec("gone", "moved"),
                                       rec("s", "shut_down"), rec("t", "shut_down"), rec("x", "failed")), now)
    assert plan["moves"] == [dict(domain="a", **{"from": "hv3", "state": "paused"}),
                             dict(domain="b", **{"from": "hv2", "state": "running"})]
    assert plan["starts"] == ["s"]
    assert plan["problems"] == ["c is on several hosts: hv2, hv3", "gone was not found on any hypervisor"]


def test_restore_plan_of_a_domain_already_back_does_nothing():
    assert restore_plan("hv1", journal(rec("a", "moved")), facts(hv1=[dom("a")], hv2=[])) == dict(
        moves=[], starts=[], problems=[])
    assert restore_plan("hv1", None, facts(hv1=[])) == dict(moves=[], starts=[], problems=[])


def test_restore_plan_without_moving_back_only_starts_what_was_shut_down_in_place():
    now = facts(hv1=[dom("s", "shutoff")], hv2=[dom("b")])
    plan = restore_plan("hv1", journal(rec("b", "moved"), rec("s", "shut_down")), now, move_back=False)
    assert plan == dict(moves=[], starts=["s"], problems=[])


def test_a_domain_shut_down_in_place_is_not_started_while_it_may_run_elsewhere():
    # Started by hand on hv2 since: starting it on hv1 too would run it twice.
    now = facts(hv1=[dom("s", "shutoff")], hv2=[dom("s")])
    plan = restore_plan("hv1", journal(rec("s", "shut_down")), now)
    assert plan["starts"] == [] and plan["problems"] == ["s runs on hv2: not started again on hv1"]
    # A hypervisor that did not answer could be running it.
    plan = restore_plan("hv1", journal(rec("s", "shut_down")), facts(hv1=[dom("s", "shutoff")]), silent=["hv3"])
    assert plan["starts"] == [] and "hv3 did not answer" in plan["problems"][0]


def test_restore_problems():
    plan = dict(moves=[dict(domain="a"), dict(domain="b"), dict(domain="c")], starts=["s"], problems=["x: lost"])
    now = facts(hv1=[dom("a"), dom("b", "shutoff"), dom("s")], hv2=[dom("a", "shutoff", persistent=False)],
                hv3=[dom("c")])
    moved = [dict(item=dict(domain="a"), failed=False), dict(item=dict(domain="c"), failed=True, msg="refused"),
             dict(item=dict(domain="b"), failed=True)]
    started = dict(started=["s"], problems=["u is not defined on hv1", "v not started on hv1: it runs on hv2"])
    assert restore_problems("hv1", plan, now, moved, started) == [
        "x: lost", "c: refused", "b: failed", "u is not defined on hv1", "v not started on hv1: it runs on hv2",
        "b is shut off on hv1", "c is not on hv1", "c is still on hv3 (running)"]
    # The start task itself failed (its connection, say): that is said, and where each domain is.
    assert restore_problems("hv1", dict(starts=["s"]), facts(hv1=[dom("s", "shutoff")]), (),
                            dict(failed=True, msg="cannot reach hv1")) == [
        "the domains shut down in place were not started: cannot reach hv1", "s is shut off on hv1"]
    assert restore_problems("hv1", dict(moves=[dict(domain="a")]), facts(hv1=[dom("a")], hv2=[])) == []


def test_failures_name_each_failed_domain_with_its_error():
    from ansible_collections.virtops.migration.plugins.module_utils._evacuation.verify import failures
    records = [dict(rec("a", "moved", "hv2"), error=None), dict(rec("b", "failed", "hv2"), error="refused")]
    assert failures(records) == ["b failed: refused."]


def test_a_domain_that_ran_and_is_paused_where_it_went_is_not_done():
    # Issue 11, hole 4: the verification accepted "paused" as done.
    records = [dict(domain="a", status="moved", destination="hv2", state="running")]
    facts = {"hv1": {"domains": []}, "hv2": {"domains": [dict(name="a", state="paused", persistent=True)]}}
    assert evacuation_problems("hv1", records, facts) == ["a is paused on hv2"]
    paused_before = [dict(records[0], state="paused")]
    assert evacuation_problems("hv1", paused_before, facts) == []


def test_an_emptied_source_holds_no_other_domain_transient_ones_included():
    # Issue 11, hole 3: another evacuation moved "guest" onto hv2 while hv2 was being emptied; before the fix
    # hv2's verification looked only at what its own run moved, and called hv2 emptied.
    records = [dict(domain="a", status="moved", destination="hv3", state="running"),
               dict(domain="s", status="shut_down", state="running"),
               dict(domain="k", status="skipped", state="running")]
    facts = {"hv2": {"domains": [dom("guest", persistent=False), dom("s", state="shutoff"), dom("k"),
                                 dom("left", state="shutoff")]},
             "hv3": {"domains": [dom("a")]}}
    assert evacuation_problems("hv2", records, facts) == []
    assert evacuation_problems("hv2", records, facts, empty=True) == [
        "guest is still on hv2 (running, transient), and this evacuation did not move it",
        "left is still on hv2 (shutoff), and this evacuation did not move it"]
    # Emptied of the domains of a pattern only: those it does not match may stay.
    assert evacuation_problems("hv2", records, facts, empty_pattern="^g") == [
        "guest is still on hv2 (running, transient), and this evacuation did not move it"]
    assert evacuation_problems("hv2", records, facts, empty_pattern="^x") == []
