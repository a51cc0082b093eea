"""Inventory labels: by name or pattern, refused when the planner could not use them, merged over metadata."""

import pytest

from ansible_collections.virtops.migration.plugins.module_utils._facts.host_facts import parse_policy
from ansible_collections.virtops.migration.plugins.module_utils._facts.labels import (
    check_inventory_labels,
    inventory_labels_for,
    merge_labels,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import ParameterError


def test_policy_from_metadata_and_inventory_labels_win():
    metadata = ("<vo:policy xmlns:vo='urn:virtops:migration:1'><vo:anti_affinity>db</vo:anti_affinity>"
                "<vo:do_not_migrate>skip</vo:do_not_migrate><vo:priority>-5</vo:priority></vo:policy>")
    labels = parse_policy(metadata)
    assert labels == {"anti_affinity": "db", "do_not_migrate": "skip", "priority": -5, "max_downtime": None}
    merged, sources, problems = merge_labels(labels, {"do_not_migrate": "cold", "anti_affinity": None,
                                                      "max_downtime": 200})
    assert merged == {"anti_affinity": "db", "do_not_migrate": "cold", "priority": -5, "max_downtime": 200}
    assert sources == {"anti_affinity": "metadata", "do_not_migrate": "inventory", "priority": "metadata",
                       "max_downtime": "inventory"}
    assert problems == []
    problems = merge_labels(labels, {"do_not_migrate": "delete"})[2]
    assert problems == ["inventory: do_not_migrate must be null, true or one of skip, cold, shutdown, not 'delete'"]
    assert parse_policy(None) == {"anti_affinity": None, "do_not_migrate": None, "priority": None,
                                  "max_downtime": None}


def test_metadata_numbers_that_are_not_whole_numbers_are_problems_of_the_facts():
    metadata = ("<vo:policy xmlns:vo='urn:virtops:migration:1'><vo:priority>high</vo:priority>"
                "<vo:max_downtime>0</vo:max_downtime></vo:policy>")
    labels, sources, problems = merge_labels(parse_policy(metadata), None)
    assert labels["priority"] == "high" and labels["max_downtime"] == 0
    assert problems == ["metadata: priority must be a whole number from -1000 to 1000, or null, not 'high'",
                        "metadata: max_downtime must be a whole number from 1 to 600000, or null, not 0"]


def test_inventory_labels_by_name_then_by_the_first_matching_pattern():
    inventory = {"db-*": {"anti_affinity": "db"}, "db-[0-9]*": {"do_not_migrate": "cold"},
                 "db-legacy": {"do_not_migrate": "shutdown"}}
    assert inventory_labels_for("db-legacy", inventory) == {"do_not_migrate": "shutdown"}
    assert inventory_labels_for("db-1", inventory) == {"anti_affinity": "db"}
    assert inventory_labels_for("web1", inventory) is None
    assert inventory_labels_for("web1", None) is None
    # A name that merely looks like part of a pattern is not one.
    assert inventory_labels_for("db-", {"db-": {"anti_affinity": "x"}}) == {"anti_affinity": "x"}


@pytest.mark.parametrize("labels, message", [
    ({"web1": "skip"}, "labels of web1 must be a dictionary"),
    ({"web1": {"affinity": "a"}}, "labels of web1 must be a dictionary"),
    ({"web1": {"anti_affinity": 3}}, "anti_affinity must be a group name"),
    ({"web1": {"anti_affinity": " "}}, "anti_affinity must be a group name"),
    ({"web*": {"do_not_migrate": "delete"}}, "labels of web*: do_not_migrate must be null, true or one of"),
    ({"web1": {"do_not_migrate": False}}, "do_not_migrate must be null, true or one of"),
    ({"web1": {"priority": "high"}}, "labels of web1: priority must be a whole number from -1000 to 1000"),
    ({"web1": {"priority": 1.5}}, "priority must be a whole number"),
    ({"web1": {"priority": True}}, "priority must be a whole number"),
    ({"web1": {"priority": 1001}}, "priority must be a whole number from -1000 to 1000"),
    ({"db*": {"max_downtime": 0}}, "labels of db*: max_downtime must be a whole number from 1 to 600000"),
    ({"db*": {"max_downtime": "50ms"}}, "max_downtime must be a whole number"),
])
def test_bad_inventory_labels_are_refused(labels, message):
    with pytest.raises(ParameterError) as err:
        check_inventory_labels(labels)
    assert message in err.value.msg


def test_good_inventory_labels_pass():
    check_inventory_labels({"db-*": {"anti_affinity": "db", "do_not_migrate": None, "max_downtime": 100},
                            "batch1": {"do_not_migrate": True, "priority": -10}, "web1": {}, "db1": {"priority": None}})
