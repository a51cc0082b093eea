"""The move record: one type for the planner's move, the journal's entry and the executor's work."""

import json

import pytest

from ansible_collections.virtops.migration.plugins.module_utils._evacuation.journal import Journal
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.record import (
    IN_FLIGHT,
    MOVED,
    PENDING,
    SKIPPED,
    STATUSES,
    TRANSITIONS,
    MoveRecord,
    TransitionError,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import VirtopsError

MOVE = dict(domain="web1", uuid="u-1", destination="hv2", mode="live", order=1, wave=1, exclusive=False,
            memory_mib=512, local_disk_mib=0, state="running", bandwidth_mib_s=50.0, predicted_seconds=3.0)


def test_a_plan_move_becomes_a_pending_record_with_every_field():
    record = MoveRecord.from_plan("web1", MOVE)
    assert record.name == "web1" and record.status == PENDING and not record.done
    assert record["planned_destination"] == record["destination"] == "hv2"
    assert record["attempts"] == 0 and record["history"] == [] and record["notes"] == []
    assert record["memory_mib"] == 512 and record["predicted_seconds"] == 3.0
    # Fresh lists per record: one record's notes are not another's.
    other = MoveRecord.from_plan("web2", MOVE)
    record.note("x")
    assert other["notes"] == []


def test_status_changes_follow_the_transitions():
    record = MoveRecord.from_plan("web1", MOVE)
    record.begin_attempt("2026-12-01T09:00:00+00:00")
    assert record.status == IN_FLIGHT and record["attempts"] == 1 and record["error"] is None
    record.move_to(MOVED)
    assert record.done
    with pytest.raises(TransitionError) as err:
        record.move_to(IN_FLIGHT)
    assert isinstance(err.value, VirtopsError) and "from moved to in_flight" in err.value.msg
    record.move_to(PENDING)  # back on the source: it must go again
    skipped = MoveRecord.skipped_by_policy(dict(domain="db", reason="policy skip"))
    assert skipped.status == SKIPPED and skipped["mode"] is None and skipped["notes"] == ["policy skip"]
    for status in STATUSES:
        with pytest.raises(TransitionError):
            skipped.move_to(status)


def test_every_status_has_its_transitions_declared():
    assert set(TRANSITIONS) == set(STATUSES)
    assert all(targets <= set(STATUSES) for targets in TRANSITIONS.values())


def test_the_journal_reads_records_back_as_move_records():
    journal = Journal.new("ev", "hv1")
    journal.merge_move(MOVE)
    again = Journal.from_json(journal.to_json())
    record = again.record("web1")
    assert isinstance(record, MoveRecord) and record == journal.record("web1")
    assert json.loads(again.to_json())["domains"]["web1"]["status"] == PENDING
    record.begin_attempt("now")
    assert again.in_status(IN_FLIGHT) == [record]
