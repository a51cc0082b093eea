"""Every module's argument spec comes from the one declaration of each option.

An option that several modules share is declared once in module_utils/_options.py (type,
default, choices, documentation); the modules' specs are built from it and their
documentation comes from the doc fragment that renders it. A module may differ only in the
default, and then says so (and only that) in its own DOCUMENTATION.
"""

import os
import sys

import pytest
import yaml

from ansible_collections.virtops.migration.plugins.module_utils import _option_spec, _options
from ansible_collections.virtops.migration.plugins.module_utils._facts.host_facts import HOST_INFO_MODULE
from ansible_collections.virtops.migration.plugins.module_utils._facts.maintenance import MAINTENANCE_MODULE
from ansible_collections.virtops.migration.plugins.module_utils._facts.precheck_run import PRECHECK_MODULE
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import CONNECTION_ARGUMENT_SPEC
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.run import EVACUATE_MODULE
from ansible_collections.virtops.migration.plugins.module_utils._migration.task import MIGRATE_MODULE
from ansible_collections.virtops.migration.plugins.module_utils._planning.run import EVACUATION_PLAN_MODULE
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.abort import EVACUATION_ABORT_MODULE
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.report_files import EVACUATION_REPORT_MODULE
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.verify import (
    EVACUATION_VERIFY_MODULE,
    RESTORE_PLAN_MODULE,
)
from ansible_collections.virtops.migration.plugins.module_utils._planning.upgrade import UPGRADE_PLAN_MODULE
from ansible_collections.virtops.migration.plugins.modules import (
    evacuate,
    evacuation_abort,
    evacuation_plan,
    evacuation_report,
    evacuation_verify,
    host_info,
    maintenance,
    migrate,
    precheck,
    restore_plan,
    upgrade_plan,
)

sys.path.insert(0, os.path.dirname(__file__))
from documentation import documentation  # noqa: E402

MODULES = dict(
    migrate=(migrate, MIGRATE_MODULE),
    evacuate=(evacuate, EVACUATE_MODULE),
    evacuation_plan=(evacuation_plan, EVACUATION_PLAN_MODULE),
    precheck=(precheck, PRECHECK_MODULE),
    host_info=(host_info, HOST_INFO_MODULE),
    maintenance=(maintenance, MAINTENANCE_MODULE),
    evacuation_verify=(evacuation_verify, EVACUATION_VERIFY_MODULE),
    restore_plan=(restore_plan, RESTORE_PLAN_MODULE),
    evacuation_report=(evacuation_report, EVACUATION_REPORT_MODULE),
    evacuation_abort=(evacuation_abort, EVACUATION_ABORT_MODULE),
    upgrade_plan=(upgrade_plan, UPGRADE_PLAN_MODULE),
)
# Every shared declaration, by option name, with the doc fragment section it is rendered in.
DECLARED = dict((name, (group, option)) for group, options in _options.GROUPS.items() for name, option in options.items())
# host_info shares only the connection options: its reserved_memory_mib is the host's own (what
# it subtracts to report the committable memory), not the planner's reserve on destinations.
LOCAL_ONLY = dict(host_info={"reserved_memory_mib"})


def section(group):
    return "virtops.migration.connection" if group == "connection" else "virtops.migration.options." + group


@pytest.mark.parametrize("name", sorted(MODULES))
def test_shared_options_come_from_their_declaration(name):
    module, entry = MODULES[name]
    own_doc = yaml.safe_load(module.DOCUMENTATION)
    own_options = own_doc.get("options") or {}
    fragments = own_doc.get("extends_documentation_fragment", [])
    for option, spec in entry.argument_spec.items():
        if option not in DECLARED or option in LOCAL_ONLY.get(name, ()):
            continue
        group, declaration = DECLARED[option]
        expected = declaration.spec()
        differs = dict((k, spec.get(k, False if k == "required" else None)) for k in set(spec) | set(expected)
                       if expected.get(k) != spec.get(k))
        # Only the default (or requiredness) may differ, and the module's documentation says so and nothing else.
        assert set(differs) <= {"default", "required"}, (name, option, differs)
        documented = own_options.get(option)
        if differs:
            assert documented == differs, (name, option, documented)
        else:
            assert documented is None, "%s documents %s itself instead of taking the fragment" % (name, option)
        assert section(group) in fragments, (name, option, section(group))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_takes_whole_sections(name):
    """A fragment section documents options the module must then have, all of them."""
    module, entry = MODULES[name]
    fragments = yaml.safe_load(module.DOCUMENTATION).get("extends_documentation_fragment", [])
    for group, options in _options.GROUPS.items():
        if section(group) in fragments:
            assert set(options) <= set(entry.argument_spec), (name, group)


def test_no_option_is_declared_locally_by_two_modules():
    local = {}
    for name, (_module, entry) in MODULES.items():
        for option in entry.argument_spec:
            if option not in DECLARED or option in LOCAL_ONLY.get(name, ()):
                local.setdefault(option, []).append(name)
    assert all(len(m) == 1 for m in local.values()), local


def test_every_shared_declaration_is_shared():
    for option in DECLARED:
        users = [name for name, (_m, entry) in MODULES.items() if option in entry.argument_spec]
        assert len(users) >= 2, (option, users)


def test_the_connection_options_are_the_declared_ones():
    assert CONNECTION_ARGUMENT_SPEC == _option_spec.argument_spec(_options.CONNECTION)
    for name, (_module, entry) in MODULES.items():
        if entry.connection:
            for option in _options.CONNECTION:
                assert entry.argument_spec[option] == CONNECTION_ARGUMENT_SPEC[option], (name, option)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_the_documentation_ansible_doc_shows_matches_the_spec(name):
    module, entry = MODULES[name]
    documented = documentation(module)["options"]
    assert sorted(documented) == sorted(entry.argument_spec), name
    for option, spec in entry.argument_spec.items():
        doc = documented[option]
        assert doc.get("description"), (name, option)
        for key in ("type", "default", "choices", "elements"):
            assert doc.get(key) == spec.get(key), (name, option, key)
        assert bool(doc.get("required")) == bool(spec.get("required")), (name, option)


def test_a_derived_option_keeps_its_origin_and_may_change_only_the_default():
    copy_storage = _options.STORAGE["copy_storage"]
    derived = copy_storage.but(default="all")
    assert derived.origin is copy_storage and derived.description == copy_storage.description
    with pytest.raises(TypeError):
        copy_storage.but(choices=["all"])
    with pytest.raises(TypeError):
        _option_spec.argument_spec(_options.LADDER, max_downtime=dict(type="int"))
