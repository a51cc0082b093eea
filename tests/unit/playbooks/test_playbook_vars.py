"""The playbooks' variables: one declaration (playbooks/vars/argument_specs.yml), checked before anything changes.

Each bad variable below goes through what playbooks/tasks/check_vars.yml does (the action
virtops.migration.playbook_vars: Ansible's own ArgumentSpecValidator, then the bounds and patterns)
and must be refused with a message that names it (issue 11).
"""

import os

import pytest
import yaml

from ansible_collections.virtops.migration.plugins.module_utils._evacuation.report_files import FORMATS as REPORT_FORMATS
from ansible_collections.virtops.migration.plugins.module_utils._evacuation import journal as _journal
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.request import ON_FAILURE
from ansible_collections.virtops.migration.plugins.module_utils._migration.ladder import (
    POSTCOPY_CHOICES,
    TIMEOUT_ACTIONS,
)
from ansible_collections.virtops.migration.plugins.module_utils._options import BOUNDS, COPY_STORAGE
from ansible_collections.virtops.migration.plugins.module_utils._options import DO_NOT_MIGRATE_POLICIES as POLICIES
from ansible_collections.virtops.migration.plugins.module_utils._planning.spec import (
    LIVE_FALLBACKS,
    UNCHECKED_PAIRS,
)
from ansible_collections.virtops.migration.plugins.plugin_utils._playbook_vars import check, declared

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def load(path):
    with open(os.path.join(REPO, path)) as handle:
        return yaml.safe_load(handle)


DECLARED = load("playbooks/vars/argument_specs.yml")
SPECS = DECLARED["virtops_playbook_argument_specs"]


def refusal(entries, variables):
    """What virtops.migration.playbook_vars (tasks/check_vars.yml) says of ``variables`` (None: accepted)."""
    _values, problems = check(declared(SPECS, entries), variables)
    return "; ".join(problems) if problems else None


PLAYBOOK_CASES = [
    (["evacuate"], dict(evacuate_progress_interval=0), "evacuate_progress_interval must be a number from 1"),
    (["evacuate"], dict(evacuate_progress_interval="0"), "evacuate_progress_interval must be a number from 1"),
    (["evacuate"], dict(evacuate_id="../x"), "evacuate_id"),
    (["evacuate"], dict(evacuate_id="a b"), "evacuate_id"),
    (["evacuate"], dict(evacuate_exclude="hv3"), "evacuate_exclude must be a list"),
    (["evacuate"], dict(evacuate_domains="web1,web2"), "evacuate_domains must be a list"),
    (["evacuate"], dict(evacuate_replacement_hosts="hv3"), "evacuate_replacement_hosts must be a list"),
    (["evacuate"], dict(evacuate_timeout=10 ** 18), "evacuate_timeout must be a number from 1 to 604800"),
    (["evacuate"], dict(evacuate_memory_overcommit="inf"), "evacuate_memory_overcommit"),
    (["evacuate"], dict(evacuate_memory_overcommit="nan"), "evacuate_memory_overcommit"),
    (["evacuate"], dict(evacuate_bandwidth_budget_mib_s="inf"), "evacuate_bandwidth_budget_mib_s"),
    (["evacuate"], dict(evacuate_max_parallel_per_source=10 ** 6), "evacuate_max_parallel_per_source"),
    (["evacuate"], dict(evacuate_max_downtime_steps=[500, 10 ** 18]), "evacuate_max_downtime_steps"),
    (["evacuate"], dict(evacuate_on_failure="bogus"), "evacuate_on_failure must be one of"),
    (["evacuate"], dict(evacuate_precheck="maybe"), "evacuate_precheck"),
    (["evacuate"], dict(evacuate_retries=-1), "evacuate_retries"),
    (["evacuate"], dict(evacuate_shutdown_timeout=-1), "evacuate_shutdown_timeout"),
    (["evacuate"], dict(evacuate_domain_labels=["web1"]), "evacuate_domain_labels"),
    (["evacuate"], dict(evacuate_facts_max_age=-1), "evacuate_facts_max_age must be a number from 0"),
    (["evacuate"], dict(evacuate_report_formats=["html"]), "evacuate_report_formats"),
    (["evacuate"], dict(evacuate_report_formats="json"), "evacuate_report_formats must be a list"),
    (["evacuate", "restore"], dict(restore_keep_journal="perhaps"), "restore_keep_journal"),
    (["evacuate", "restore", "rolling_upgrade"], dict(rolling_upgrade_packages="qemu-system-x86,libvirt0"),
     "rolling_upgrade_packages must be a list"),
    (["evacuate", "restore", "rolling_upgrade"], dict(rolling_upgrade_reboot_timeout=0),
     "rolling_upgrade_reboot_timeout"),
]


@pytest.mark.parametrize("entries, variables, message", PLAYBOOK_CASES)
def test_bad_playbook_variables_are_refused(entries, variables, message):
    said = refusal(entries, variables)
    assert said is not None and message in said, said


def test_good_playbook_variables_pass():
    assert refusal(["evacuate"], dict(evacuate_progress_interval=5, evacuate_exclude=["hv3"], evacuate_id="ev-1",
                                      evacuate_max_downtime_steps=[], evacuate_memory_overcommit=1.5)) is None
    # 0 has a meaning here: no dirty-rate sampling before the plan.
    assert refusal(["evacuate"], dict(evacuate_dirty_rate_seconds=0)) is None


def test_the_declaration_agrees_with_the_modules():
    # Bounds of the variables that pass a module option on are that option's bounds.
    for name, declaration in [item for section in SPECS.values() for item in section.items()]:
        option = name[len("evacuate_"):]
        if name.startswith("evacuate_") and option in BOUNDS and "bounds" in declaration:
            assert tuple(declaration["bounds"]) == BOUNDS[option], name
    evacuate = SPECS["evacuate"]
    for name, choices in (("on_failure", ON_FAILURE), ("postcopy", POSTCOPY_CHOICES),
                          ("timeout_action", TIMEOUT_ACTIONS), ("copy_storage", COPY_STORAGE),
                          ("live_fallback", LIVE_FALLBACKS), ("do_not_migrate_default", POLICIES),
                          ("unchecked_pairs", UNCHECKED_PAIRS)):
        assert tuple(evacuate["evacuate_" + name]["choices"]) == tuple(choices), name
    assert evacuate["evacuate_id"]["pattern"] == _journal._ID_RE.pattern
    assert tuple(evacuate["evacuate_report_formats"]["choices"]) == tuple(sorted(REPORT_FORMATS))
    # Every default is what its own declaration accepts.
    for section in SPECS:
        spec = SPECS[section]
        defaults = dict((name, d["default"]) for name, d in spec.items() if "default" in d and "{{" not in str(d["default"]))
        assert check(spec, defaults)[1] == [], section


def test_every_playbook_checks_its_variables_first():
    for path, entries in (("playbooks/evacuate_host.yml", ["evacuate"]),
                          ("playbooks/restore_host.yml", ["evacuate", "restore"]),
                          ("playbooks/rolling_upgrade.yml", ["evacuate", "restore", "rolling_upgrade"])):
        plays = load(path)
        play = [p for p in plays if p.get("hosts") != "localhost"][0]
        first = play["tasks"][0]
        assert first["ansible.builtin.include_tasks"] == "tasks/check_vars.yml", path
        assert first["vars"]["check_vars_entries"] == entries, path
