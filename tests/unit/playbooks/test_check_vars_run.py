"""tasks/check_vars.yml in a real ansible-playbook run on localhost: the declared default applies, the inventory
wins over it, an extra var over both, a bad value stops the play before its next task, and nothing the check sets
is written to the fact cache (a later run's inventory must win).

The collection is found as Ansible finds it in the lab: ANSIBLE_COLLECTIONS_PATH=.tmp/collections (`make collection`,
which tests/unit/conftest.py does too); run from an installed collection (the tarball stage), the tree it is
installed in.
"""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
INSTALLED = os.path.dirname(os.path.dirname(os.path.dirname(REPO)))
COLLECTIONS = (INSTALLED if REPO.endswith(os.path.join("ansible_collections", "virtops", "migration"))
               else os.path.join(REPO, ".tmp", "collections"))
CHECK_VARS = os.path.join(COLLECTIONS, "ansible_collections", "virtops", "migration", "playbooks", "tasks",
                          "check_vars.yml")
PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")

PLAY = """
- name: A play that checks its variables first
  hosts: demo
  gather_facts: false
  tasks:
    - name: Check the variables
      ansible.builtin.include_tasks: %s
      vars:
        check_vars_entries: [evacuate]

    - name: Write what the play sees
      ansible.builtin.copy:
        content: "{{ {'interval': evacuate_progress_interval, 'group': evacuate_group, 'id': evacuate_id,
                      'exclude': evacuate_exclude, 'timeout': evacuate_timeout | default('unset')} | to_json }}"
        dest: "{{ seen }}"
        mode: "0600"
""" % CHECK_VARS


@pytest.fixture
def run(tmp_path):
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "inventory.ini").write_text("demo ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    (tmp_path / "play.yml").write_text(PLAY)
    cache = tmp_path / "facts"
    seen = tmp_path / "seen.json"

    def run(host_vars=None, *extra):
        (tmp_path / "host_vars" / "demo.yml").write_text(json.dumps(host_vars or {}))
        if seen.exists():
            seen.unlink()
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_CACHE_PLUGIN="jsonfile",
                   ANSIBLE_CACHE_PLUGIN_CONNECTION=str(cache), ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
                   ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), ANSIBLE_HOME=str(tmp_path / "home"))
        command = [PLAYBOOK, "-i", str(tmp_path / "inventory.ini"), str(tmp_path / "play.yml"), "-e", "seen=%s" % seen]
        for item in extra:
            command += ["-e", item]
        done = subprocess.run(command, cwd=str(tmp_path), env=env, capture_output=True, text=True, check=False)
        return done, (json.loads(seen.read_text()) if seen.exists() else None), cache

    return run


def test_the_default_applies_and_unset_variables_stay_unset(run):
    done, seen, _cache = run()
    assert done.returncode == 0, done.stdout + done.stderr
    assert seen == dict(interval=5, group="hypervisors", id="evacuate-demo", exclude=[], timeout="unset")


def test_the_inventory_wins_over_the_default_and_an_extra_var_over_both(run):
    done, seen, _cache = run(dict(evacuate_progress_interval=7, evacuate_exclude=["hv3"]))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (seen["interval"], seen["exclude"]) == (7, ["hv3"])
    done, seen, _cache = run(dict(evacuate_progress_interval=7), "evacuate_progress_interval=9")
    assert done.returncode == 0, done.stdout + done.stderr
    assert seen["interval"] in (9, "9")


def test_nothing_the_check_sets_is_cached_for_a_later_run(run):
    done, seen, cache = run(dict(evacuate_progress_interval=7))
    assert done.returncode == 0 and seen["interval"] == 7
    cached = "".join(path.read_text() for path in cache.iterdir()) if cache.exists() else ""
    assert "evacuate_progress_interval" not in cached and "evacuate_group" not in cached
    done, seen, cache = run(dict(evacuate_progress_interval=11))
    assert done.returncode == 0 and seen["interval"] == 11


@pytest.mark.parametrize("extra, said", [
    ("evacuate_progress_interval=0", "evacuate_progress_interval must be a number from 1 to 3600"),
    ("evacuate_exclude=hv3,hv4", "evacuate_exclude must be a list"),
    ("evacuate_on_failure=bogus", "value of evacuate_on_failure must be one of: retry, replace, leave"),
])
def test_a_bad_value_stops_the_play_before_its_next_task(run, extra, said):
    done, seen, _cache = run({}, extra)
    assert done.returncode != 0
    assert seen is None
    assert said in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
