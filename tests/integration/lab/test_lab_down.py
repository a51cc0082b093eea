"""`down` leaves nothing of the lab on the machine, whatever state the lab was in.

Runs after test_lab.py (pytest takes the files of a folder in name order).
"""

import os

from conftest import STATE_DIR, lab_leftovers, labctl


def test_down_leaves_nothing_behind():
    labctl("down")
    assert lab_leftovers() == []
    labctl("down")
    assert lab_leftovers() == []


def test_down_cleans_up_after_a_failed_up():
    env = dict(os.environ, VIRTOPS_LAB_FAIL_AT="boot", VIRTOPS_LAB_KEEP_FAILED="1")
    failed = labctl("up", check=False, env=env)
    assert failed.returncode != 0 and "VIRTOPS_LAB_FAIL_AT" in failed.stderr
    assert lab_leftovers() != []
    labctl("down")
    assert lab_leftovers() == []


def test_down_cleans_up_after_the_state_file_is_lost():
    # As after a test run killed half-way: containers running, the record gone.
    labctl("up")
    os.unlink(os.path.join(STATE_DIR, "state.json"))
    labctl("down")
    assert lab_leftovers() == []
