from ansible_collections.virtops.migration.plugins.module_utils._libvirt.jobstats import (
    JOB_COMPLETED,
    JOB_UNBOUNDED,
    JobSnapshot,
    describe_progress,
    summarize,
)

MIB = 1024 * 1024

# As libvirt reports them on the destination after a peer-to-peer migration (virsh domjobinfo --completed).
COMPLETED = {
    "type": JOB_COMPLETED, "operation": 4, "time_elapsed": 1412, "time_elapsed_net": 1400, "downtime": 41,
    "downtime_net": 30, "setup_time": 12, "data_total": 268 * MIB, "data_processed": 140 * MIB,
    "data_remaining": 0, "memory_total": 268 * MIB, "memory_processed": 140 * MIB, "memory_remaining": 0,
    "memory_constant": 30000, "memory_normal": 35000, "memory_normal_bytes": 35000 * 4096,
    "memory_bps": 120 * MIB, "memory_dirty_rate": 0, "memory_page_size": 4096, "memory_iteration": 3,
    "memory_postcopy_requests": 0,
}


def test_summary_of_completed_stats():
    out = summarize(COMPLETED)
    assert out["statistics_source"] == "completed job statistics"
    assert out["timings"] == {"total_ms": 1412, "downtime_ms": 41, "setup_ms": 12}
    assert out["transferred"]["memory_bytes"] == 140 * MIB
    assert out["transferred"]["total_bytes"] == 140 * MIB
    assert out["transferred"]["disk_bytes"] is None
    assert out["iterations"] == 3
    assert out["average_bandwidth_mib_s"] == round(140 / 1.4, 1)


def test_completed_stats_win_over_last_poll_but_fill_gaps():
    last = JobSnapshot({"type": JOB_UNBOUNDED, "time_elapsed": 1300, "memory_processed": 130 * MIB,
                        "disk_processed": 5 * MIB, "memory_iteration": 2, "auto_converge_throttle": 30})
    out = summarize(COMPLETED, last)
    assert out["iterations"] == 3
    assert out["transferred"]["disk_bytes"] == 5 * MIB
    assert out["auto_converge_throttle"] == 30


def test_summary_from_last_poll_only():
    last = JobSnapshot({"type": JOB_UNBOUNDED, "time_elapsed": 2000, "memory_processed": 100 * MIB,
                        "disk_processed": 100 * MIB, "memory_iteration": 4})
    out = summarize(None, last)
    assert out["statistics_source"] == "last poll on the source"
    assert out["transferred"]["total_bytes"] == 200 * MIB
    assert out["average_bandwidth_mib_s"] == 100.0
    assert out["timings"]["downtime_ms"] is None


def test_summary_of_nothing():
    out = summarize(None, None)
    assert out["statistics_source"] == "none"
    assert out["average_bandwidth_mib_s"] is None


def test_snapshot_properties():
    s = JobSnapshot({"type": JOB_UNBOUNDED, "memory_remaining": 10 * MIB, "disk_remaining": 5 * MIB,
                     "memory_dirty_rate": 256, "memory_page_size": 4096, "memory_iteration": 7,
                     "memory_bps": 50 * MIB, "auto_converge_throttle": 40})
    assert s.active
    assert s.remaining == 15 * MIB
    assert s.dirty_rate_bps == MIB
    assert s.iteration == 7
    text = describe_progress(s)
    assert "iteration 7" in text and "15.0 MiB remaining" in text and "throttled 40%" in text
    assert not JobSnapshot({"type": JOB_COMPLETED}).active
    assert JobSnapshot({}).remaining == 0
