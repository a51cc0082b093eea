"""The logic of virtops.migration.playbook_vars: the playbooks' variables against their declaration."""

import pytest

from ansible_collections.virtops.migration.plugins.plugin_utils._playbook_vars import (
    DeclarationError,
    check,
    declared,
    defaults,
)

DECLARATION = dict(
    demo=dict(
        demo_hosts=dict(type="list", elements="str", default=[]),
        demo_interval=dict(type="int", default=5, bounds=[1, 3600]),
        demo_ratio=dict(type="float", bounds=[0.01, 100]),
        demo_steps=dict(type="list", elements="int", bounds=[1, 600000]),
        demo_mode=dict(type="str", choices=["retry", "leave"]),
        demo_id=dict(type="str", pattern="^[a-z][a-z0-9-]*$"),
        demo_flag=dict(type="bool", default=False),
    ),
    other=dict(other_dir=dict(type="str", default="/var/lib/other")),
)
SPEC = declared(DECLARATION, ["demo"])


def effective(given, overrides=None):
    values, problems = check(SPEC, given)
    assert problems == []
    values.update(defaults(SPEC, given, overrides))
    return values


def test_defaults_are_applied_and_unset_variables_without_one_stay_unset():
    assert effective({}) == dict(demo_hosts=[], demo_interval=5, demo_flag=False)


def test_a_set_value_wins_over_the_default_and_is_converted_to_its_type():
    assert effective(dict(demo_interval="60", demo_flag="yes", demo_steps=["500"])) == dict(
        demo_hosts=[], demo_interval=60, demo_flag=True, demo_steps=[500])


def test_a_playbook_default_wins_over_the_declared_one_and_a_set_value_over_both():
    assert effective({}, dict(demo_interval=9))["demo_interval"] == 9
    assert effective(dict(demo_interval=2), dict(demo_interval=9))["demo_interval"] == 2
    with pytest.raises(DeclarationError, match="undeclared"):
        defaults(SPEC, {}, dict(nobody=1))


def test_only_the_sections_asked_for_apply():
    assert "other_dir" not in SPEC
    assert "other_dir" in declared(DECLARATION, ["demo", "other"])
    with pytest.raises(DeclarationError, match="no section nope"):
        declared(DECLARATION, ["nope"])


@pytest.mark.parametrize("given, said", [
    (dict(demo_hosts="hv3,hv4"), 'demo_hosts must be a list (for example [hv3, hv4]), not the string "hv3,hv4"'),
    (dict(demo_interval=0), "demo_interval must be a number from 1 to 3600, not 0"),
    (dict(demo_interval="0"), 'demo_interval must be a number from 1 to 3600, not "0"'),
    (dict(demo_ratio="inf"), "demo_ratio must be a number from 0.01 to 100"),
    (dict(demo_ratio="nan"), "demo_ratio must be a number from 0.01 to 100"),
    (dict(demo_steps=[500, 10 ** 18]), "demo_steps must be a number from 1 to 600000"),
    (dict(demo_mode="bogus"), "value of demo_mode must be one of: retry, leave, got: bogus"),
    (dict(demo_id="../x"), 'demo_id "../x" does not match'),
    (dict(demo_flag="maybe"), "demo_flag"),
])
def test_a_bad_value_is_refused_with_a_message_that_names_it(given, said):
    values, problems = check(SPEC, given)
    assert values == {}
    assert len(problems) == 1 and said in problems[0], problems
    assert "Traceback" not in problems[0] and "File \"" not in problems[0]


def test_every_bad_value_is_named_at_once():
    _values, problems = check(SPEC, dict(demo_hosts="hv3", demo_interval=0, demo_mode="x", demo_flag=True))
    assert [problem.split(" ")[0] for problem in problems] == ["demo_hosts", "demo_interval", "value"]


def test_undeclared_variables_are_not_touched():
    assert check(SPEC, dict(unrelated="x", demo_interval=3)) == (dict(demo_interval=3), [])
