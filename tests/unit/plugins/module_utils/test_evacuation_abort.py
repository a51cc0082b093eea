"""Aborting a running evacuation: the request, the wait, and a run no process holds any more."""

import json
import os

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.virtops.migration.plugins.module_utils._evacuation.abort import abort_evacuation
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.journal import Journal, JournalStore
from ansible_collections.virtops.migration.plugins.modules import evacuation_abort


def running(store):
    journal = Journal.new(store.evacuation_id, "hv1")
    journal.begin_run(1234, "tag", {})
    journal.update_totals(1.0)
    store.ensure_directory()
    store.save(journal)
    return journal


class Clock(object):
    """A clock that advances by each sleep; ``on_sleep`` runs at each, as the evacuation would."""

    def __init__(self, on_sleep=None):
        self.now = 0.0
        self.sleeps = 0
        self.on_sleep = on_sleep

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps += 1
        self.now += seconds
        if self.on_sleep:
            self.on_sleep(self.sleeps)


def test_nothing_runs_nothing_changes(tmp_path):
    store = JournalStore(str(tmp_path), "evacuate-hv1")
    out = abort_evacuation(store, "me", 10)
    assert not out["changed"] and not out["requested"] and out["phase"] is None
    assert "nothing to abort" in out["lines"][0] and not os.path.exists(store.abort_path)


def test_a_running_evacuation_is_asked_and_waited_for(tmp_path):
    store = JournalStore(str(tmp_path), "evacuate-hv1")
    journal = running(store)
    runner = JournalStore(str(tmp_path), "evacuate-hv1")
    assert runner.try_lock() is None

    def evacuation_honours_it(sleeps):
        if sleeps == 3:
            assert runner.abort_requested()
            journal.finish_run("aborted")
            journal.update_totals(4.0)
            runner.save(journal)
            runner.unlock()

    clock = Clock(evacuation_honours_it)
    out = abort_evacuation(store, "asked by me", 60, clock=clock, sleep=clock.sleep)
    assert out["requested"] and out["stopped"] and out["result"] == "aborted" and out["waited_seconds"] == 3.0
    assert open(store.abort_path).read() == "asked by me\n"
    assert "stopped after 3.0 s" in out["lines"][1]


def test_a_run_no_process_holds_returns_at_once_and_leaves_the_request(tmp_path):
    store = JournalStore(str(tmp_path), "evacuate-hv1")
    running(store)
    clock = Clock()
    out = abort_evacuation(store, "", 900, clock=clock, sleep=clock.sleep)
    assert out["requested"] and not out["stopped"] and clock.sleeps == 0
    assert os.path.exists(store.abort_path) and "honours it at once" in out["lines"][1]
    assert not os.path.exists(store.owner_path)


def test_an_evacuation_that_does_not_stop_in_time_keeps_the_request(tmp_path):
    store = JournalStore(str(tmp_path), "evacuate-hv1")
    running(store)
    runner = JournalStore(str(tmp_path), "evacuate-hv1")
    assert runner.try_lock() is None
    try:
        clock = Clock()
        out = abort_evacuation(store, "", 5, clock=clock, sleep=clock.sleep)
    finally:
        runner.unlock()
    assert out["requested"] and not out["stopped"] and out["waited_seconds"] == 5.0
    assert "did not stop within 5 s" in out["lines"][1] and os.path.exists(store.abort_path)


def test_check_mode_writes_nothing(tmp_path):
    store = JournalStore(str(tmp_path), "evacuate-hv1")
    running(store)
    out = abort_evacuation(store, "", 5, check_mode=True)
    assert out["changed"] and not out["requested"] and not os.path.exists(store.abort_path)


@pytest.mark.parametrize("args, message", [
    (dict(evacuation_id="../x"), "evacuation_id must be"),
    (dict(wait_timeout=-1), "wait_timeout must be between 0 and 86400"),
    (dict(wait_timeout=10 ** 9), "wait_timeout must be between 0 and 86400"),
])
def test_bad_input_is_refused(capsys, tmp_path, args, message):
    params = dict(evacuation_id="evacuate-hv1", journal_dir=str(tmp_path / "j"))
    params.update(args)
    with patch_module_args(params):
        with pytest.raises(SystemExit):
            evacuation_abort.main()
    out = json.loads(capsys.readouterr().out)
    assert out["failed"] and message in out["msg"].lower() and not (tmp_path / "j").exists()
