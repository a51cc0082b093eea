"""The evacuation_plan action: the plan in the controller's process, from the facts as they are.

It must plan exactly as the module does, check the options as the module's argument spec
does, fail with a clear message (never a traceback) on bad input, take the facts without
templating or copying them when the task names one variable, and not send them back with
the task.

The action plugin itself is exercised in a child process: importing ansible-core's
controller code (ansible.plugins.action) changes how modules report warnings for the rest
of the process, which other unit tests read.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from ansible.module_utils._internal._datatag import AnsibleTagHelper
from ansible.module_utils.testing import patch_module_args
from ansible.module_utils._internal._datatag._tags import Deprecated

from ansible_collections.virtops.migration.plugins.module_utils._planning.run import plan_in_controller
from ansible_collections.virtops.migration.plugins.modules import evacuation_plan

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "modules"))
from test_evacuation_plan import HOSTS  # noqa: E402  (the module's own test input)


def module_result(capsys, **args):
    with patch_module_args(dict(dict(source="hv1", hosts=HOSTS), **args)):
        with pytest.raises(SystemExit):
            evacuation_plan.main()
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("args", [
    dict(),
    dict(max_parallel_per_source=1, bandwidth_budget_mib_s=500.0, exclude=["hv3"]),
    dict(prechecks=[dict(domain="db", source="hv1", destination="hv4", verdict="block", reasons=["cpu"])],
         unchecked_pairs="allow", live_fallback="cold"),
    dict(domains=["db", "web-1"], dirty_rates=dict(db=50.0), source_bandwidth_mib_s=300.0),
])
def test_the_action_plans_exactly_as_the_module(capsys, args):
    expected = module_result(capsys, **args)
    out = plan_in_controller(dict(dict(source="hv1", hosts=HOSTS), **args))
    for key in ("moves", "skipped_domains", "unplaceable", "can_empty", "destinations", "predicted_total_seconds",
                "bound_seconds", "bandwidth_budget_mib_s", "summary", "source", "changed"):
        assert out[key] == expected[key], key
    assert out["invocation"] == expected["invocation"]


@pytest.mark.parametrize("args, message", [
    (dict(colour="red"), "Unsupported parameters for (virtops.migration.evacuation_plan) module: colour"),
    (dict(prechecks=[dict(domain="db", source="hv1", destination="hv3", verdict="perhaps")]), "verdict"),
    (dict(max_parallel_per_source="many"), "max_parallel_per_source"),
    (dict(hosts=None), "missing required arguments: hosts"),
    (dict(hosts=["hv1"]), "hosts must be a dictionary of host facts (host_info), not list"),
    (dict(hosts=dict(HOSTS, hv3=dict(HOSTS["hv3"], vcpus_total="lots"))),
     "hosts.hv3: vcpus_total must be a number >= 0, not 'lots'"),
    (dict(source="hv9"), "source 'hv9' is not in hosts"),
])
def test_bad_input_fails_with_a_message(args, message):
    params = dict(dict(source="hv1", hosts=HOSTS), **args)
    if params["hosts"] is None:
        del params["hosts"]
    out = plan_in_controller(params)
    assert out["failed"] is True and message in out["msg"]
    assert "moves" not in out


def tagged(value):
    """``value`` as ansible-core hands over variables: containers and scalars tagged with an origin."""
    origin = Deprecated(msg="a tag, as variables carry origins and trust")
    if isinstance(value, dict):
        return AnsibleTagHelper.tag(dict((tagged(k), tagged(v)) for k, v in value.items()), [origin])
    if isinstance(value, list):
        return AnsibleTagHelper.tag([tagged(v) for v in value], [origin])
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return AnsibleTagHelper.tag(value, [origin])
    return value


def test_tagged_facts_plan_as_plain_ones():
    facts = tagged(HOSTS)
    assert facts.__class__ is not dict and facts["hv1"]["domains"].__class__ is not list  # tagged, as Ansible gives them
    plain = plan_in_controller(dict(source="hv1", hosts=HOSTS))
    out = plan_in_controller(dict(source="hv1", hosts=facts))
    assert "failed" not in out
    assert out["moves"] == plain["moves"] and out["summary"] == plain["summary"]


CHILD = textwrap.dedent("""
    import sys
    from unittest import mock
    sys.path.insert(0, sys.argv[1])
    from test_evacuation_plan import HOSTS
    from ansible_collections.virtops.migration.plugins.action.evacuation_plan import ActionModule


    class FakeTemplar(object):
        def __init__(self, variables):
            self.available_variables = variables
            self.templated = []

        def template(self, value):
            self.templated.append(value)
            return "templated"


    # One variable holding a dictionary of dictionaries: its value itself, not templated.
    templar = FakeTemplar(dict(evacuate_facts=HOSTS, text="{{ evacuate_facts }}",
                               built=dict(hv1="{{ one_host }}", hv2=HOSTS["hv2"])))
    assert ActionModule.finalize_task_arg("hosts", "{{ evacuate_facts }}", templar, None) is HOSTS
    assert ActionModule.finalize_task_arg("hosts", "{{evacuate_facts}}", templar, None) is HOSTS
    assert templar.templated == []
    # An expression, a variable that is a template or holds templates as hosts, another option: as usual.
    for name, value in (("hosts", "{{ evacuate_facts | combine({}) }}"), ("hosts", "{{ text }}"),
                        ("hosts", "{{ missing }}"), ("hosts", "{{ built }}"), ("source", "{{ evacuate_facts }}")):
        assert ActionModule.finalize_task_arg(name, value, templar, None) == "templated"
    assert len(templar.templated) == 5

    # The plan, and the task sent back without the facts.
    task = mock.MagicMock()
    task.async_val = 0
    task.check_mode = False
    task.args = dict(source="hv1", hosts=HOSTS, exclude=["hv3"])
    action = ActionModule(task, mock.MagicMock(), mock.MagicMock(), loader=None, templar=None, shared_loader_obj=None)
    out = action.run(task_vars={})
    assert out["can_empty"] is False and out["moves"], out
    assert task.args == dict(source="hv1", exclude=["hv3"], hosts="(facts of 5 hosts with 7 domains, not echoed)")
    print("ok")
""")


def test_the_action_takes_one_variable_as_it_is_and_sends_the_task_back_without_the_facts():
    modules = os.path.join(os.path.dirname(os.path.dirname(__file__)), "modules")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run([sys.executable, "-c", CHILD, modules], capture_output=True, text=True, check=False, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
