"""The playbooks' variables: one declaration (playbooks/vars/argument_specs.yml), checked before anything changes.

Each bad variable below goes through what playbooks/tasks/check_vars.yml does - Ansible's own
ArgumentSpecValidator (what validate_argument_spec runs), then that file's assertions, evaluated
with Ansible's templating - and must be refused with a message that names it (issue 11).
"""

import os
import sys

import pytest
import yaml

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.virtops.migration.plugins.module_utils._evacuation.report_files import FORMATS as REPORT_FORMATS
from ansible_collections.virtops.migration.plugins.module_utils._evacuation import journal as _journal
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.request import ON_FAILURE
from ansible_collections.virtops.migration.plugins.module_utils._migration.ladder import (
    POSTCOPY_CHOICES,
    TIMEOUT_ACTIONS,
)
from ansible_collections.virtops.migration.plugins.module_utils._options import BOUNDS, COPY_STORAGE
from ansible_collections.virtops.migration.plugins.module_utils._planning.inputs import (
    LIVE_FALLBACKS,
    POLICIES,
    UNCHECKED_PAIRS,
)

sys.path.insert(0, os.path.dirname(__file__))
from templating import templating  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def load(path):
    with open(os.path.join(REPO, path)) as handle:
        return yaml.safe_load(handle)


DECLARED = load("playbooks/vars/argument_specs.yml")
SPECS = DECLARED["virtops_playbook_argument_specs"]
CHECKS = dict((task["name"], task) for task in load("playbooks/tasks/check_vars.yml"))


def expression(text):
    """A task's expression, with the vars lookup as the 'vars' mapping it reads (no plugin loader here)."""
    text = text.strip().replace("lookup('ansible.builtin.vars', item.key)", "vars[item.key]")
    return text.replace("lookup('ansible.builtin.vars', item)", "vars[item]")


def refusal(entries, variables):
    """What check_vars.yml says of ``variables`` (None: accepted)."""
    spec = {}
    for entry in entries:
        spec.update(SPECS[entry])
    result = ArgumentSpecValidator(spec).validate(dict((k, v) for k, v in variables.items() if k in spec))
    if result.error_messages:
        return "; ".join(result.error_messages)
    context = dict(DECLARED, check_vars_entries=list(entries), **variables)
    for name in ("Refuse a string where a list is wanted", "Check that the numbers are within their bounds",
                 "Check the strings that must follow a pattern"):
        task = CHECKS[name]
        with templating(dict(context, vars=context)) as evaluate:
            items = evaluate(expression(task["loop"]))
        for item in items:
            with templating(dict(context, vars=context, item=item)) as evaluate:
                when = task.get("when")
                if when and not evaluate(expression(when), conditional=True):
                    continue
                that = task["ansible.builtin.assert"]["that"]
                for condition in (that if isinstance(that, list) else [that]):
                    if not evaluate(expression(condition), conditional=True):
                        return evaluate(expression(task["ansible.builtin.assert"]["fail_msg"]))
    return None


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
    for name, bounds in DECLARED["virtops_playbook_bounds"].items():
        option = name[len("evacuate_"):]
        if name.startswith("evacuate_") and option in BOUNDS:
            assert tuple(bounds) == BOUNDS[option], name
    evacuate = SPECS["evacuate"]
    for name, choices in (("on_failure", ON_FAILURE), ("postcopy", POSTCOPY_CHOICES),
                          ("timeout_action", TIMEOUT_ACTIONS), ("copy_storage", COPY_STORAGE),
                          ("live_fallback", LIVE_FALLBACKS), ("do_not_migrate_default", POLICIES),
                          ("unchecked_pairs", UNCHECKED_PAIRS)):
        assert tuple(evacuate["evacuate_" + name]["choices"]) == tuple(choices), name
    assert DECLARED["virtops_playbook_patterns"]["evacuate_id"] == _journal._ID_RE.pattern
    assert tuple(evacuate["evacuate_report_formats"]["choices"]) == tuple(sorted(REPORT_FORMATS))
    # Every bound and pattern belongs to a declared variable.
    declared = set().union(*SPECS.values())
    assert set(DECLARED["virtops_playbook_bounds"]) <= declared
    assert set(DECLARED["virtops_playbook_patterns"]) <= declared


def test_every_playbook_checks_its_variables_first():
    for path, entries in (("playbooks/evacuate_host.yml", ["evacuate"]),
                          ("playbooks/restore_host.yml", ["evacuate", "restore"]),
                          ("playbooks/rolling_upgrade.yml", ["evacuate", "restore", "rolling_upgrade"])):
        plays = load(path)
        play = [p for p in plays if p.get("hosts") != "localhost"][0]
        first = play["tasks"][0]
        assert first["ansible.builtin.include_tasks"] == "tasks/check_vars.yml", path
        assert first["vars"]["check_vars_entries"] == entries, path
