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
                "<vo:do_not_migrate>skip</vo:do_not_migrate></vo:policy>")
    labels = parse_policy(metadata)
    assert labels == {"anti_affinity": "db", "do_not_migrate": "skip"}
    merged, problems = merge_labels(labels, {"do_not_migrate": "cold", "anti_affinity": None})
    assert merged == {"anti_affinity": "db", "do_not_migrate": "cold"} and problems == []
    problems = merge_labels(labels, {"do_not_migrate": "delete"})[1]
    assert "unknown do_not_migrate policy 'delete'" in problems[0]
    assert parse_policy(None) == {"anti_affinity": None, "do_not_migrate": None}


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
])
def test_bad_inventory_labels_are_refused(labels, message):
    with pytest.raises(ParameterError) as err:
        check_inventory_labels(labels)
    assert message in err.value.msg


def test_good_inventory_labels_pass():
    check_inventory_labels({"db-*": {"anti_affinity": "db", "do_not_migrate": None},
                            "batch1": {"do_not_migrate": True}, "web1": {}})
