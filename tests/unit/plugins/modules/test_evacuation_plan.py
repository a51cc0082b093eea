"""The evacuation_plan module end to end: parameters in, plan out, through AnsibleModule.

The planning itself is tested in module_utils/test_placement.py; here: the module's
wiring, check mode, failures, that it needs no libvirt, and that its documentation
matches its argument spec and every key it returns.
"""

import json
import os
import subprocess
import sys

import pytest
import yaml

from ansible.module_utils.testing import patch_module_args

from ansible_collections.virtops.migration.plugins.module_utils._planning.spec import EVACUATION_PLAN_ARGUMENT_SPEC
from ansible_collections.virtops.migration.plugins.modules import evacuation_plan

sys.path.insert(0, os.path.dirname(__file__))
from documentation import documentation  # noqa: E402

GIB = 1024


def dom(name, memory=4 * GIB, state="running", **labels):
    return dict(name=name, uuid=None, state=state, persistent=True, memory_mib=memory, vcpus=2, dirty_rate_mib_s=10,
                shared_storage=True, local_disk_bytes=0, blockers=[],
                labels=dict(dict(anti_affinity=None, do_not_migrate=None), **labels))


def host(*domains, maintenance=False):
    return dict(memory_total_mib=65536, memory_committable_mib=60000, vcpus_total=16, maintenance=maintenance,
                migration_bandwidth_mib_s=1000, domains=list(domains))


HOSTS = dict(
    hv1=host(dom("web-1", anti_affinity="web"), dom("web-2", anti_affinity="web"), dom("db", 16 * GIB),
             dom("old", state="shutoff"), dom("lic", do_not_migrate="skip"), dom("batch", do_not_migrate="shutdown")),
    hv2=host(dom("web-0", anti_affinity="web")),
    hv3=host(),
    hv4=host(),
    hv5=host(maintenance=True),
)


@pytest.fixture
def run(capsys):
    def runner(check_mode=False, **args):
        module_args = dict(source="hv1", hosts=HOSTS)
        module_args.update(args)
        if check_mode:
            module_args["_ansible_check_mode"] = True
        with patch_module_args(module_args):
            with pytest.raises(SystemExit) as exit_info:
                evacuation_plan.main()
        out = json.loads(capsys.readouterr().out)
        out["rc"] = exit_info.value.code
        return out
    return runner


def test_plans_and_changes_nothing(run):
    out = run()
    assert out["rc"] == 0 and out["changed"] is False
    assert out["can_empty"] is False  # lic is skipped and keeps running
    modes = dict((m["domain"], (m["mode"], m["destination"])) for m in out["moves"])
    assert modes["batch"] == ("shutdown", None)
    assert modes["old"][0] == "cold"
    assert modes["web-1"][1] != "hv2" and modes["web-2"][1] != "hv2" and modes["web-1"][1] != modes["web-2"][1]
    assert all(m["destination"] != "hv5" for m in out["moves"])
    assert [s["domain"] for s in out["skipped_domains"]] == ["lic"]
    assert out["unplaceable"] == []


def test_check_mode_returns_the_same_plan(run):
    normal = run()
    checked = run(check_mode=True)
    for key in ("moves", "skipped_domains", "unplaceable", "can_empty", "predicted_total_seconds", "summary"):
        assert checked[key] == normal[key]
    assert checked["changed"] is False


def test_options_reach_the_planner(run):
    out = run(max_parallel_per_source=1, bandwidth_budget_mib_s=500.0, exclude=["hv3", "hv4"])
    assert out["bandwidth_budget_mib_s"] == 500
    assert len(out["unplaceable"]) >= 2  # web-1/web-2 cannot share hv2 with web-0
    assert max(m["wave"] for m in out["moves"] if m["mode"] != "shutdown") == len(
        [m for m in out["moves"] if m["mode"] != "shutdown"])


def test_prechecks_are_validated_by_the_argument_spec(run):
    out = run(prechecks=[dict(domain="db", source="hv1", destination="hv3", verdict="perhaps")])
    assert out["rc"] == 1 and "verdict" in out["msg"]


def test_bad_facts_fail_with_the_field_named(run):
    hosts = dict(HOSTS, hv3=dict(HOSTS["hv3"], vcpus_total="lots"))
    out = run(hosts=hosts)
    assert out["rc"] == 1 and out["failed"]
    assert out["msg"] == "hosts.hv3: vcpus_total must be a number >= 0, not 'lots'"


def test_unknown_source_fails(run):
    out = run(source="hv9")
    assert out["rc"] == 1 and out["msg"] == "source 'hv9' is not in hosts"


def test_the_facts_are_not_echoed_back(run):
    # With 10,000 hosts they are tens of megabytes: the invocation carries a summary instead.
    out = run()
    assert out["invocation"]["module_args"]["hosts"] == "(facts of 5 hosts with 7 domains, not echoed)"
    assert out["invocation"]["module_args"]["source"] == "hv1"
    failed = run(source="hv9")
    assert failed["invocation"]["module_args"]["hosts"].startswith("(facts of 5 hosts")


def test_needs_no_libvirt():
    # The control node may have no libvirt bindings: import and plan with them blocked.
    code = (
        "import sys; sys.modules['libvirt'] = None\n"
        "from ansible_collections.virtops.migration.plugins.module_utils._planning import placement as _placement\n"
        "from ansible_collections.virtops.migration.plugins.modules import evacuation_plan\n"
        "h = dict(memory_total_mib=8, memory_committable_mib=8, vcpus_total=1, domains=[])\n"
        "print(_placement.plan_evacuation('a', dict(a=h, b=h))['can_empty'])\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


# --- documentation -------------------------------------------------------------------

DOC = documentation(evacuation_plan)
RETURNED_DOC = yaml.safe_load(evacuation_plan.RETURN)
TYPES = dict(str=str, bool=bool, int=int, float=(int, float), list=list, dict=dict)


def compare_options(documented, spec, where):
    assert sorted(documented) == sorted(spec), where
    for name, entry in spec.items():
        doc = documented[name]
        assert doc["type"] == entry["type"], (where, name)
        assert doc.get("default") == entry.get("default"), (where, name)
        assert doc.get("choices") == entry.get("choices"), (where, name)
        assert doc.get("elements") == entry.get("elements"), (where, name)
        assert bool(doc.get("required")) == bool(entry.get("required")), (where, name)
        assert doc.get("description"), (where, name)
        if "options" in entry:
            compare_options(doc["suboptions"], entry["options"], "%s.%s" % (where, name))


def test_documentation_matches_the_argument_spec():
    compare_options(DOC["options"], EVACUATION_PLAN_ARGUMENT_SPEC, "options")
    assert DOC["attributes"]["check_mode"]["support"] == "full"
    assert DOC["attributes"]["diff_mode"]["support"] == "none"
    assert DOC["attributes"]["idempotent"]["support"] == "full"


def test_every_returned_key_is_documented(run):
    out = run(prechecks=[dict(domain="db", source="hv1", destination="hv3", verdict="block", reasons=["cpu"])],
              exclude=["hv4"], unchecked_pairs="allow")
    returned = set(out) - {"rc", "changed", "invocation", "warnings", "deprecations"}
    assert returned == set(RETURNED_DOC), returned ^ set(RETURNED_DOC)
    for key, doc in RETURNED_DOC.items():
        value = out[key]
        assert isinstance(value, TYPES[doc["type"]]), key
        assert doc.get("description") and doc.get("returned")
        if doc["type"] == "list" and doc.get("elements") == "dict":
            assert value, "the test run should return some %s" % key
            for item in value:
                assert set(item) == set(doc["contains"]), (key, set(item) ^ set(doc["contains"]))
                for field, field_doc in doc["contains"].items():
                    assert item[field] is None or isinstance(item[field], TYPES[field_doc["type"]]), (key, field)


def test_the_plan_for_people_lists_every_move_skip_and_unplaceable_domain():
    from ansible_collections.virtops.migration.plugins.module_utils._planning.run import plan_lines
    plan = dict(summary=["hv1 cannot be emptied."],
                moves=[dict(order=1, domain="web1", mode="live", destination="hv2", predicted_seconds=4.1,
                            predicted_downtime_ms=300, escalation=None),
                       dict(order=2, domain="db1", mode="shutdown", destination=None, predicted_seconds=30.0,
                            predicted_downtime_ms=None, escalation="auto_converge")],
                skipped_domains=[dict(domain="batch1", reason="do_not_migrate: skip")],
                unplaceable=[dict(domain="big", reasons=["memory: needs 64 GiB", "cpu"])])
    lines = plan_lines(plan)
    assert lines[0] == "hv1 cannot be emptied."
    assert lines[1].split() == ["1", "web1", "live", "->", "hv2", "4.1", "s", "downtime", "300", "ms"]
    assert lines[2].split()[-2:] == ["escalation:", "auto_converge"] and "-> -" in lines[2]
    assert lines[3:] == ["  skipped: batch1 (do_not_migrate: skip)", "  UNPLACEABLE: big: memory: needs 64 GiB; cpu"]


def test_the_plan_for_people_names_the_labels_that_shaped_a_move_and_where_they_came_from():
    from ansible_collections.virtops.migration.plugins.module_utils._planning.run import plan_lines
    plan = dict(summary=[],
                moves=[dict(order=1, domain="voip1", mode="live", destination="hv2", predicted_seconds=2.0,
                            predicted_downtime_ms=90, escalation=None, priority=10, max_downtime_ms=100,
                            label_sources=dict(priority="inventory", max_downtime="metadata", anti_affinity="inventory")),
                       dict(order=2, domain="web1", mode="live", destination="hv3", predicted_seconds=2.0,
                            predicted_downtime_ms=300, escalation=None, priority=0, max_downtime_ms=None,
                            label_sources={})],
                skipped_domains=[dict(domain="batch1", reason="do_not_migrate: skip",
                                      label_sources=dict(do_not_migrate="metadata"))],
                unplaceable=[])
    lines = plan_lines(plan)
    assert lines[0].endswith("  labels: priority 10 (inventory), max_downtime 100 ms (metadata), "
                             "anti_affinity from the inventory")
    assert "labels" not in lines[1]
    assert lines[2] == "  skipped: batch1 (do_not_migrate: skip; from the metadata)"
