"""The evacuation_verify and restore_plan modules: their interfaces (the rules are in module_utils/test_verify.py)."""

import json
import os
import subprocess
import sys

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.virtops.migration.plugins.modules import evacuation_verify, restore_plan

FACTS = dict(hv1=dict(domains=[dict(name="s", state="shutoff", persistent=True)]),
             hv2=dict(domains=[dict(name="a", state="running", persistent=True)]))
EVACUATED = dict(failed=True, msg="evacuation failed", domains=[
    dict(domain="a", status="moved", destination="hv2", state="running"),
    dict(domain="b", status="failed", destination="hv2", state="running", error="refused")])


@pytest.fixture
def run(capsys):
    def runner(module, **args):
        with patch_module_args(args):
            with pytest.raises(SystemExit) as exit_info:
                module.main()
        out = json.loads(capsys.readouterr().out)
        out["rc"] = exit_info.value.code
        return out
    return runner


def test_after_an_evacuation(run):
    out = run(evacuation_verify, source="hv1", hosts=FACTS, evacuation=EVACUATED)
    assert out["rc"] == 0 and not out["changed"]
    assert out["problems"] == [] and out["failures"] == ["b failed: refused."]


def test_an_evacuation_of_a_host_without_facts_cannot_be_verified(run):
    out = run(evacuation_verify, source="hv9", hosts=FACTS, evacuation=EVACUATED)
    assert out["rc"] == 1 and "no facts of hv9" in out["msg"]


def test_the_restore_round_trip(run):
    journal = dict(domains=dict(a=dict(domain="a", status="moved"), s=dict(domain="s", status="shut_down")))
    plan = run(restore_plan, source="hv1", hosts=FACTS, journal=journal, _ansible_check_mode=True)
    assert plan["rc"] == 0 and not plan["changed"]
    assert plan["moves"] == [{"domain": "a", "from": "hv2", "state": "running"}] and plan["starts"] == ["s"]
    out = run(evacuation_verify, source="hv1", hosts=FACTS, restore=plan,
              moved=[dict(item=dict(domain="a"), failed=True, msg="refused")], started=dict(started=["s"], problems=[]))
    assert out["problems"] == ["a: refused", "a is not on hv1", "a is still on hv2 (running)", "s is shut off on hv1"]


@pytest.mark.parametrize("args, message", [
    (dict(), "one of the following is required: evacuation, restore"),
    (dict(evacuation=EVACUATED, restore={}), "mutually exclusive: evacuation|restore"),
    (dict(evacuation=EVACUATED, moved=[]), "missing parameter(s) required by 'moved': restore"),
    (dict(restore={}, empty_pattern="^a"), "missing parameter(s) required by 'empty_pattern': evacuation"),
    (dict(evacuation=EVACUATED, empty_pattern="(["), "empty_pattern is not a regular expression"),
])
def test_the_cross_option_rules(run, args, message):
    out = run(evacuation_verify, source="hv1", hosts=FACTS, **args)
    assert out["rc"] == 1 and message in out["msg"], out["msg"]


def test_they_need_no_libvirt():
    # They run on the control node, which may have no libvirt bindings: import and run with them blocked.
    code = (
        "import sys; sys.modules['libvirt'] = None\n"
        "from ansible_collections.virtops.migration.plugins.modules import evacuation_verify, restore_plan\n"
        "from ansible_collections.virtops.migration.plugins.module_utils._evacuation import verify\n"
        "print(verify.restore_plan('a', None, {})['moves'] == [])\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
