"""The playbooks' and roles' safety steps, read from their YAML and evaluated with Ansible's templating (issue 11).

What these cannot prove (the lab does): that the tasks run as read on a real host.
"""

import glob
import os
import sys

import yaml

sys.path.insert(0, os.path.dirname(__file__))
from templating import templating  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def tasks(path):
    with open(os.path.join(REPO, path)) as handle:
        return yaml.safe_load(handle)


def named(items, name):
    return next(index for index, task in enumerate(items) if task["name"] == name)


def holds(condition, variables):
    conditions = condition if isinstance(condition, list) else [condition]
    with templating(variables) as evaluate:
        return all(evaluate(str(c), conditional=True) for c in conditions)


def test_the_rolling_upgrade_reboots_only_an_empty_host():
    # Issue 11, hole 6: the reboot step did not check that the host was empty (transient domains included).
    steps = tasks("playbooks/tasks/upgrade.yml")
    reboot = named(steps, "Reboot the host")
    listing = named(steps, "List the domains that run here (transient ones included) before rebooting")
    refusal = named(steps, "Refuse to reboot a host that still runs a domain")
    assert listing < refusal < reboot
    # 'virsh list' without --all lists every active domain, persistent or transient - and only those.
    assert steps[listing]["ansible.builtin.command"]["argv"][-2:] == ["list", "--name"]
    assert "--all" not in steps[listing]["ansible.builtin.command"]["argv"]
    when = steps[refusal]["when"]
    running = dict(rolling_upgrade_reboot=True, rolling_upgrade_running=dict(stdout_lines=["transient-1", ""]))
    empty = dict(rolling_upgrade_reboot=True, rolling_upgrade_running=dict(stdout_lines=[""]))
    assert holds(when, running) and not holds(when, empty)


def test_no_role_or_playbook_hands_a_variable_to_a_shell_inside_quotes():
    # Issue 11: hypervisor_images_pool reached "sh -c '... {{ x | quote }} ...'", where quote's own quotes end
    # the outer ones, so $(...) in it ran as root. Every virsh call of that role now takes argv.
    for path in glob.glob(os.path.join(REPO, "roles", "*", "tasks", "*.yml")) + \
            glob.glob(os.path.join(REPO, "playbooks", "**", "*.yml"), recursive=True):
        with open(path) as handle:
            text = handle.read()
        assert "sh -c" not in text, path
    for task in tasks("roles/hypervisor/tasks/images_pool.yml"):
        command = task["ansible.builtin.command"]
        assert set(command) == {"argv"} and "{{ hypervisor_images_pool }}" in command["argv"]
