"""The fleet_facts filter: which hypervisors answered, why the others did not, and whose facts are too old.

Importing the filter imports ansible-core's controller code (ansible.errors), which marks the
process as the controller (ansible.module_utils._internal.is_controller): a module's warnings
would then go to the controller's display instead of its result, and the module tests of the
same run read them there. The flag is put back once the filter is imported (tests/unit/
playbooks/templating.py does the same).
"""

import importlib

import pytest

from ansible.module_utils import _internal


def import_keeping_the_module_context(name):
    was = _internal.is_controller
    try:
        return importlib.import_module(name)
    finally:
        _internal.is_controller = was


AnsibleFilterError = import_keeping_the_module_context("ansible.errors").AnsibleFilterError
_filter = import_keeping_the_module_context("ansible_collections.virtops.migration.plugins.filter.fleet_facts")
FilterModule = _filter.FilterModule
fleet_facts = _filter.fleet_facts

NOW = 1000.0
HOSTVARS = {
    "hv1": dict(virtops_host_info={"domains": []}, virtops_host_info_epoch=NOW - 10, virtops_host_info_error=None),
    "hv2": dict(virtops_host_info={"domains": [{"name": "a"}]}, virtops_host_info_epoch=str(NOW - 300)),
    "hv3": dict(virtops_host_info=None, virtops_host_info_epoch=NOW - 5, virtops_host_info_error="unreachable"),
    "hv4": dict(ansible_host="198.18.0.14"),   # never read
}


def test_sorts_the_hosts_and_keeps_their_order():
    out = fleet_facts(HOSTVARS, ["hv4", "hv3", "hv2", "hv1", "hv9"], now=NOW)
    assert out["facts"] == {"hv2": {"domains": [{"name": "a"}]}, "hv1": {"domains": []}}
    assert out["silent"] == ["hv4", "hv3", "hv9"]
    assert out["reasons"] == {"hv4": "no facts", "hv3": "unreachable", "hv9": "no facts"}
    assert out["stale"] == []    # without max_age nothing is stale


@pytest.mark.parametrize("max_age, stale", [
    (120, ["hv2", "hv4"]),               # hv2 read 300 s ago (its epoch a string, as a fact cache gives it back)
    ("600", ["hv4"]),
    (0, ["hv1", "hv2", "hv3", "hv4"]),   # 0 reads every host again
    (7, ["hv1", "hv2", "hv4"]),
])
def test_stale_hosts_are_those_read_longer_ago_than_max_age_or_never(max_age, stale):
    assert fleet_facts(HOSTVARS, ["hv1", "hv2", "hv3", "hv4"], max_age, now=NOW)["stale"] == stale


@pytest.mark.parametrize("args, message", [
    (([], ["hv1"]), "reads hostvars, not list"),
    ((HOSTVARS, "hv1"), "needs a list of host names"),
    ((HOSTVARS, [1]), "needs a list of host names"),
    ((HOSTVARS, ["hv1"], "two minutes"), "max_age must be a number of seconds"),
])
def test_bad_input_is_a_clear_error(args, message):
    with pytest.raises(AnsibleFilterError, match=message):
        fleet_facts(*args)


def test_the_filter_is_registered_under_its_name():
    assert FilterModule().filters() == {"fleet_facts": fleet_facts}
