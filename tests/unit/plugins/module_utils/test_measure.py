"""Throughput and dirty-rate measurement: iperf3 report parsing, and the libvirt calls' logic."""

import json

import pytest

from ansible_collections.virtops.migration.plugins.module_utils._facts import measure


def iperf3_report(bits_per_second, seconds=3.0, retransmits=4):
    return json.dumps({"end": {"sum_sent": {"bits_per_second": bits_per_second, "retransmits": retransmits},
                               "sum_received": {"bits_per_second": bits_per_second, "seconds": seconds}}})


def test_iperf3_report_in_mib_per_second():
    found = measure.parse_iperf3(iperf3_report(400e6))
    assert found == {"mib_s": 47.7, "seconds": 3.0, "retransmits": 4}


@pytest.mark.parametrize("text, message", [
    ("not json", "no JSON report"),
    (json.dumps({"error": "unable to connect to server: Connection refused"}), "Connection refused"),
    (json.dumps({"end": {}}), "no received throughput"),
])
def test_iperf3_failures_say_why(text, message):
    with pytest.raises(measure.MeasurementFailed, match=message):
        measure.parse_iperf3(text)


def test_throughput_runs_a_bounded_client_and_reports_errors():
    calls = []

    def run_ok(argv):
        calls.append(argv)
        return 0, iperf3_report(8 * 1024 * 1024 * 100), ""
    assert measure.throughput(run_ok, "198.18.1.12", port=5299, seconds=2)["mib_s"] == 100.0
    assert calls[0][:2] == ["iperf3", "--json"]
    assert calls[0][calls[0].index("--client") + 1] == "198.18.1.12"
    assert calls[0][calls[0].index("--time") + 1] == "2" and "--connect-timeout" in calls[0]

    def run_refused(argv):
        return 1, json.dumps({"error": "unable to connect to server"}), ""
    with pytest.raises(measure.MeasurementFailed, match="cannot measure throughput to 198.18.1.12 port 5201"):
        measure.throughput(run_refused, "198.18.1.12")


class FakeConn(object):
    def __init__(self, stats):
        self.stats = stats

    def domainListGetStats(self, doms, flags, extra):
        return [(doms[0], self.stats[doms[0].name()].pop(0))]


class FakeDomain(object):
    def __init__(self, name, conn, can_measure=True):
        self._name = name
        self._conn = conn
        self.can_measure = can_measure
        self.started = None

    def name(self):
        return self._name

    def connect(self):
        return self._conn

    def startDirtyRateCalc(self, seconds, flags):
        if not self.can_measure:
            raise AttributeError("this libvirt has no dirty-rate API")
        self.started = seconds


def test_dirty_rates_measured_in_parallel_and_polled_until_done(monkeypatch):
    monkeypatch.setattr(measure.time, "sleep", lambda seconds: None)
    conn = FakeConn({
        "busy": [{"dirtyrate.calc_status": 1}, {"dirtyrate.calc_status": 2, "dirtyrate.megabytes_per_second": 64}],
        "idle": [{"dirtyrate.calc_status": 2, "dirtyrate.megabytes_per_second": 0}],
    })
    busy, idle, old = FakeDomain("busy", conn), FakeDomain("idle", conn), FakeDomain("old", conn, can_measure=False)
    rates, problems = measure.dirty_rates([busy, idle, old], seconds=3)
    assert rates == {"busy": 64.0, "idle": 0.0, "old": None}
    assert busy.started == 3 and idle.started == 3
    assert "dirty-rate API" in problems["old"]
