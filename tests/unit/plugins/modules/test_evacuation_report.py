"""The evacuation_report module: the report put together, its files written atomically and idempotently."""

import json
import os
import stat

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.virtops.migration.plugins.modules import evacuation_report

EVACUATION = dict(
    evacuation_id="evacuate-hv1", source="hv1", result="partial",
    totals=dict(wall_seconds=11.1, moved=1, failed=1),
    summary=["hv1: evacuation evacuate-hv1 partial in 11.1 s"],
    domains=[dict(domain="web1", status="moved", destination="hv2", mode="live", seconds=4.2, predicted_seconds=5.0,
                  downtime_ms=40, started_at="2026-12-01T10:00:00+00:00"),
             dict(domain="db1", status="failed", destination="hv3", mode="live", seconds=2.0, error="refused",
                  started_at="2026-12-01T10:00:01+00:00")])
PLAN = dict(predicted_total_seconds=12.5, bound_seconds=8.0, bandwidth_budget_mib_s=100.0, summary=["plan"])


@pytest.fixture
def run(capsys):
    def runner(**args):
        with patch_module_args(args):
            with pytest.raises(SystemExit) as exit_info:
                evacuation_report.main()
        out = json.loads(capsys.readouterr().out)
        out["rc"] = exit_info.value.code
        return out
    return runner


def test_writes_every_format_then_changes_nothing(run, tmp_path):
    dest = tmp_path / "reports"
    args = dict(source="hv1", evacuation_id="evacuate-hv1", evacuation=EVACUATION, plan=PLAN,
                verification=dict(problems=["db1 is not on hv3"]), dest=str(dest),
                formats=["json", "svg", "junit", "prometheus"])
    out = run(**args)
    assert out["rc"] == 0 and out["changed"]
    assert sorted(os.listdir(dest)) == ["evacuate-hv1.junit.xml", "evacuate-hv1.prom", "evacuate-hv1.report.json",
                                        "evacuate-hv1.timeline.svg"]
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(dest / "evacuate-hv1.report.json").st_mode) == 0o640
    report = json.loads((dest / "evacuate-hv1.report.json").read_text())
    assert report == out["report"]
    assert report["prediction"] == dict(predicted_seconds=12.5, actual_seconds=11.1, actual_over_predicted=0.89)
    assert report["verification_problems"] == ["db1 is not on hv3"]
    assert 'failures="1"' in (dest / "evacuate-hv1.junit.xml").read_text()
    assert (dest / "evacuate-hv1.timeline.svg").read_text().startswith("<svg")
    assert "virtops_migration_evacuation_completed" in (dest / "evacuate-hv1.prom").read_text()
    assert out["lines"][0] == "hv1: evacuation evacuate-hv1 partial in 11.1 s"
    assert "Planned 12.5 s (bound 8.0 s at 100.0 MiB/s); took 11.1 s, 0.89 of the prediction." in out["lines"]
    assert "VERIFICATION: db1 is not on hv3" in out["lines"]
    again = run(**args)
    assert again["rc"] == 0 and not again["changed"]


def test_the_prometheus_textfile_is_world_readable(run, tmp_path):
    textfile = tmp_path / "virtops_migration.prom"
    out = run(source="hv1", evacuation_id="evacuate-hv1", evacuation=EVACUATION, dest=str(tmp_path / "r"),
              formats=[], prometheus_textfile=str(textfile))
    assert out["rc"] == 0 and out["files"] == dict(prometheus_textfile=str(textfile))
    assert stat.S_IMODE(os.stat(textfile).st_mode) == 0o644
    assert not (tmp_path / "r").exists() or os.listdir(tmp_path / "r") == []


def test_a_failed_evacuation_is_reported_with_its_error(run, tmp_path):
    out = run(source="hv1", evacuation_id="evacuate-hv1", evacuation=dict(failed=True, msg="hv1 did not answer"),
              dest=str(tmp_path))
    assert out["rc"] == 0
    assert out["report"]["result"] == "failed" and out["report"]["error"] == "hv1 did not answer"
    assert out["lines"][0] == "hv1 did not answer"


def test_check_mode_writes_nothing(run, tmp_path):
    out = run(source="hv1", evacuation_id="evacuate-hv1", evacuation=EVACUATION, dest=str(tmp_path / "r"),
              _ansible_check_mode=True)
    assert out["rc"] == 0 and not out["changed"] and not (tmp_path / "r").exists()
    assert out["files"]["json"].endswith("/r/evacuate-hv1.report.json")


@pytest.mark.parametrize("args, message", [
    (dict(evacuation_id="../etc/passwd"), "evacuation_id must be 1 to 100 letters"),
    (dict(evacuation_id=".hidden"), "evacuation_id must be 1 to 100 letters"),
    (dict(file_mode="rw-r-----"), "must be an octal file mode"),
    (dict(file_mode="0999"), "must be an octal file mode"),
    (dict(formats=[]), "there is nothing to write"),
    (dict(formats=["html"]), "value of formats must be one or more of"),
    (dict(prometheus_textfile="/tmp/metrics.txt"), "must end in .prom"),
])
def test_bad_input_changes_nothing(run, tmp_path, args, message):
    params = dict(source="hv1", evacuation_id="evacuate-hv1", evacuation=EVACUATION, dest=str(tmp_path / "r"))
    params.update(args)
    out = run(**params)
    assert out["rc"] == 1 and message in out["msg"]
    assert not (tmp_path / "r").exists()


def test_an_unwritable_destination_is_a_clear_error(run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = run(source="hv1", evacuation_id="evacuate-hv1", evacuation=EVACUATION, dest=str(blocker / "r"))
    assert out["rc"] == 1 and out["msg"].startswith("cannot write the report:")
