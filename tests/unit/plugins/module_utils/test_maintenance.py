"""The maintenance marker: set, removed, idempotent, and refused while another evacuation runs on the host."""

import json
import os
import subprocess

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.virtops.migration.plugins.module_utils._evacuation.journal import JournalStore
from ansible_collections.virtops.migration.plugins.module_utils._facts import maintenance as marker
from ansible_collections.virtops.migration.plugins.modules import maintenance


@pytest.fixture
def paths(tmp_path, monkeypatch):
    path = tmp_path / "state" / "maintenance"
    monkeypatch.setattr(marker, "MAINTENANCE_FILE", str(path))
    return path, tmp_path / "journals"


def run(capsys, journals, **args):
    args.setdefault("journal_dir", str(journals))
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            maintenance.main()
    return json.loads(capsys.readouterr().out)


def test_marks_the_host_once_and_says_what_it_wrote(capsys, paths):
    path, journals = paths
    out = run(capsys, journals, evacuation_id="ev1", reason="evacuation", _ansible_diff=True)
    assert out["changed"] and out["maintenance"] and not out["marked_before"]
    assert path.read_text() == "evacuation (evacuation ev1)\n"
    assert out["diff"]["before"] == "" and out["diff"]["after"] == "evacuation (evacuation ev1)\n"
    again = run(capsys, journals, evacuation_id="ev1", reason="evacuation")
    assert not again["changed"] and again["marked_before"] and again["reason_before"] == "evacuation (evacuation ev1)"


def test_without_a_reason_the_marker_says_maintenance(capsys, paths):
    path, journals = paths
    run(capsys, journals)
    assert path.read_text() == "maintenance\n"


def test_check_mode_writes_nothing(capsys, paths):
    path, journals = paths
    out = run(capsys, journals, reason="firmware", _ansible_check_mode=True)
    assert out["changed"] and not path.exists()
    path.parent.mkdir()
    path.write_text("firmware\n")
    out = run(capsys, journals, state="absent", _ansible_check_mode=True)
    assert out["changed"] and path.exists()


def test_takes_the_mark_away_once(capsys, paths):
    path, journals = paths
    path.parent.mkdir()
    path.write_text("firmware\n")
    out = run(capsys, journals, state="absent")
    assert out["changed"] and not out["maintenance"] and out["reason_before"] == "firmware" and not path.exists()
    assert not run(capsys, journals, state="absent")["changed"]


def test_refused_while_another_evacuation_runs_and_the_marker_is_left_as_it_is(capsys, paths):
    path, journals = paths
    path.parent.mkdir()
    path.write_text("evacuation (evacuation ev-first)\n")
    running = JournalStore(str(journals), "ev-first")
    assert running.try_lock() is None
    try:
        out = run(capsys, journals, evacuation_id="ev-second", reason="evacuation")
        assert out["failed"] and "evacuation ev-first is running on this host" in out["msg"]
        out = run(capsys, journals, state="absent")
        assert out["failed"] and "ev-first" in out["msg"]
        assert path.read_text() == "evacuation (evacuation ev-first)\n"
        # The running evacuation itself (resumed) may mark its host.
        assert not run(capsys, journals, evacuation_id="ev-first", reason="evacuation").get("failed")
    finally:
        running.unlock()
    # Once it has ended, the host can be marked again, or taken out of maintenance.
    assert run(capsys, journals, evacuation_id="ev-second", reason="evacuation")["changed"]


def test_a_lock_left_by_a_killed_run_does_not_refuse(capsys, paths):
    path, journals = paths
    journals.mkdir()
    (journals / ".lock").write_text("")
    (journals / ".running").write_text(json.dumps(dict(evacuation_id="ev-old", pid=1)))
    assert run(capsys, journals, evacuation_id="ev-new")["changed"]
    assert path.read_text() == "maintenance (evacuation ev-new)\n"


@pytest.mark.parametrize("args, message", [
    (dict(reason="two\nlines"), "one line"),
    (dict(reason="x" * 501), "at most 500"),
    (dict(evacuation_id="../etc"), "evacuation_id must be"),
    (dict(state="maybe"), "state"),
])
def test_bad_input_is_refused_and_changes_nothing(capsys, paths, args, message):
    path, journals = paths
    out = run(capsys, journals, **args)
    assert out["failed"] and message in out["msg"].lower() and "Traceback" not in out["msg"]
    assert not path.exists() and not journals.exists()


def test_read_marker(tmp_path):
    path = tmp_path / "m"
    assert marker.read_marker(str(path)) is None
    path.write_text("\n")
    assert marker.read_marker(str(path)) == ""
    path.write_text(" firmware \n")
    assert marker.read_marker(str(path)) == "firmware"


def test_returning_lets_the_marked_host_take_back_only_the_named_domains(capsys, paths):
    path, journals = paths
    run(capsys, journals, evacuation_id="ev1", reason="evacuation")
    out = run(capsys, journals, state="returning", returning_domains=["web1", "db1"], evacuation_id="ev1")
    assert out["changed"] and out["maintenance"] and out["returning"] == ["db1", "web1"]
    assert path.read_text() == "evacuation (evacuation ev1)\n"   # the marker itself is left as it is
    returning = path.parent / "maintenance.returning"
    assert returning.read_text() == "db1\nweb1\n"
    assert not run(capsys, journals, state="returning", returning_domains=["db1", "web1"])["changed"]
    # Marking afresh, or taking the mark away, forgets them.
    run(capsys, journals, state="returning", returning_domains=["web1"])
    assert returning.read_text() == "web1\n"
    out = run(capsys, journals, evacuation_id="ev2", reason="evacuation")
    assert out["changed"] and out["returning"] == [] and not returning.exists()
    run(capsys, journals, state="returning", returning_domains=["web1"])
    out = run(capsys, journals, state="absent")
    assert out["changed"] and not returning.exists() and not path.exists()


def test_returning_on_a_host_that_is_not_marked_writes_nothing(capsys, paths):
    path, journals = paths
    out = run(capsys, journals, state="returning", returning_domains=["web1"])
    assert not out["changed"] and not out["maintenance"] and out["returning"] == []
    assert not path.parent.exists()


@pytest.mark.parametrize("args, message", [
    (dict(returning_domains=["web1"]), "returning_domains is for state=returning only"),
    (dict(state="absent", returning_domains=["web1"]), "returning_domains is for state=returning only"),
    (dict(state="returning", returning_domains=["a/b"]), "returning_domains must be domain names"),
    (dict(state="returning", returning_domains=[""]), "returning_domains must be domain names"),
])
def test_bad_returning_domains_are_refused_and_change_nothing(capsys, paths, args, message):
    path, journals = paths
    path.parent.mkdir()
    path.write_text("firmware\n")
    out = run(capsys, journals, **args)
    assert out["failed"] and message in out["msg"] and "Traceback" not in out["msg"]
    assert path.read_text() == "firmware\n" and not (path.parent / "maintenance.returning").exists()


HOOK = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "roles", "hypervisor", "files",
                    "virtops-maintenance")


def hook(marker_file, *args):
    env = dict(os.environ, VIRTOPS_MAINTENANCE_FILE=str(marker_file))
    return subprocess.run([HOOK] + list(args), input="<domain/>", env=env, capture_output=True, text=True, check=False)


def test_the_hosts_hook_refuses_incoming_migrations_while_marked_but_of_the_returning_domains(tmp_path):
    marker_file = tmp_path / "maintenance"
    assert hook(marker_file, "web1", "migrate", "begin", "-").returncode == 0          # not marked
    marker_file.write_text("evacuation (evacuation ev1)\n")
    refused = hook(marker_file, "web1", "migrate", "begin", "-")
    assert refused.returncode == 1 and refused.stdout == ""
    assert marker.REFUSAL in refused.stderr and "web1" in refused.stderr and "evacuation ev1" in refused.stderr
    for operation in (("web1", "prepare", "begin", "-"), ("web1", "start", "begin", "-"), ("web1", "release", "end", "-")):
        assert hook(marker_file, *operation).returncode == 0       # starting and stopping guests is not refused
    (tmp_path / "maintenance.returning").write_text("db1\nweb1\n")
    taken = hook(marker_file, "web1", "migrate", "begin", "-")
    assert taken.returncode == 0 and taken.stdout == ""   # no output: libvirt keeps the domain's own XML
    assert hook(marker_file, "web", "migrate", "begin", "-").returncode == 1    # whole names only
    assert hook(marker_file, "other", "migrate", "begin", "-").returncode == 1
