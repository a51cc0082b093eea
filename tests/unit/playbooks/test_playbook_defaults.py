"""Each playbook variable's default is declared once (playbooks/vars/argument_specs.yml), not repeated in the
playbooks: tasks/check_vars.yml gives every declared variable its value before a task reads it.

A playbook may still write ``<declared variable> | default(omit)`` (a module keeps its own default) and the
few defaults below, each for a reason given with it.
"""

import os
import re

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
DECLARATION = os.path.join(REPO, "playbooks", "vars", "argument_specs.yml")
with open(DECLARATION) as handle:
    SPECS = yaml.safe_load(handle)["virtops_playbook_argument_specs"]
DECLARED = dict(item for section in SPECS.values() for item in section.items())

# (file, variable, the default's text): why it stays.
ALLOWED = {
    # Used before the variables are checked: a play's hosts (and the localhost play that checks the host
    # named), written once per playbook - the same as the declared default.
    ("playbooks/evacuate_host.yml", "evacuate_group", "'hypervisors'"): "a play's hosts",
    ("playbooks/restore_host.yml", "evacuate_group", "'hypervisors'"): "a play's hosts",
    ("playbooks/rolling_upgrade.yml", "evacuate_group", "'hypervisors'"): "a play's hosts",
    ("playbooks/precheck.yml", "evacuate_group", "'hypervisors'"): "a play's hosts",
    ("playbooks/rolling_upgrade.yml", "rolling_upgrade_group", "evacuate_group | default('hypervisors')"): "a play's hosts",
    ("playbooks/rolling_upgrade.yml", "rolling_upgrade_batch", "1"): "the play's serial, before any task runs",
    ("playbooks/evacuate_host.yml", "evacuate_host", "[]"): "a play's hosts: no host when it is not named",
    ("playbooks/restore_host.yml", "restore_host", "[]"): "a play's hosts: no host when it is not named",
    ("playbooks/precheck.yml", "precheck_host", "[]"): "a play's hosts: no host when it is not named",
    # Not the option's default but what the run found: unset means "every domain" (the filter lets all through),
    # "every candidate destination", "what was measured", a path under the host's journal directory.
    ("playbooks/tasks/evacuate.yml", "evacuate_domains",
     "evacuate_facts[inventory_hostname].domains | map(attribute='name')"): "every domain of the host",
    ("playbooks/tasks/evacuate.yml", "evacuate_domain_pattern", "'.*'"): "a filter that lets every domain through",
    ("playbooks/tasks/evacuate.yml", "evacuate_report_dir", "evacuate_local_dir"): "the host's journal directory",
    ("playbooks/tasks/evacuate_run.yml", "evacuate_on_failure",
     "'replace' if evacuate_replacement_hosts | default(evacuate_candidates | default([])) else 'retry'"): (
         "replace when there is a host to replace with"),
    ("playbooks/tasks/evacuate_run.yml", "evacuate_replacement_hosts", "evacuate_candidates | default([])"): (
        "every candidate destination"),
    ("playbooks/tasks/evacuate_run.yml", "evacuate_source_throughput_mib_s", "evacuate_measured_mib_s | default(none)"): (
        "what was measured"),
}
USE = re.compile(r"\b(%s)\s*\|\s*default\(" % "|".join(sorted(DECLARED, key=len, reverse=True)))


def argument(text, start):
    """The text of the call's argument that starts at ``start`` (after its opening parenthesis)."""
    depth = 1
    for index in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        if depth == 0:
            return " ".join(text[start:index].split())
    raise AssertionError("unbalanced parentheses")


def defaults_written():
    found = []
    for folder, _dirs, files in os.walk(os.path.join(REPO, "playbooks")):
        for name in sorted(files):
            if not name.endswith((".yml", ".yaml")):
                continue
            path = os.path.join(folder, name)
            with open(path) as handle:
                text = handle.read()
            for match in USE.finditer(text):
                found.append((os.path.relpath(path, REPO), match.group(1), argument(text, match.end())))
    return found


def test_no_declared_variable_has_its_default_written_in_a_playbook():
    written = [found for found in defaults_written() if found[2] != "omit"]
    assert [found for found in written if found not in ALLOWED] == []
    # Each allowed default is still there (else drop it from ALLOWED).
    assert set(written) == set(ALLOWED)


def test_the_defaults_written_before_the_check_are_the_declared_ones():
    assert DECLARED["evacuate_group"]["default"] == "hypervisors"
    for (_path, variable, text), _why in ALLOWED.items():
        if "default" in DECLARED[variable] and text.startswith("'"):
            assert yaml.safe_load(text) == DECLARED[variable]["default"], variable


def test_the_check_finds_a_default_written_again():
    text = "x: \"{{ evacuate_progress_interval | default(5) }}\"\ny: \"{{ evacuate_timeout | default(omit) }}\""
    assert [(m.group(1), argument(text, m.end())) for m in USE.finditer(text)] == [
        ("evacuate_progress_interval", "5"), ("evacuate_timeout", "omit")]
