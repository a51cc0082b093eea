"""The evacuation report as a timeline SVG, JUnit XML and Prometheus text."""

import re
import xml.etree.ElementTree as ET

from ansible_collections.virtops.migration.plugins.module_utils._evacuation import outputs

SVG = "{http://www.w3.org/2000/svg}"


def record(domain, status, started_at=None, seconds=None, **more):
    entry = dict(domain=domain, status=status, started_at=started_at, seconds=seconds, destination=None,
                 mode="live", downtime_ms=None, predicted_seconds=None, bytes_sent=None, error=None, notes=[])
    entry.update(more)
    return entry


REPORT = dict(
    evacuation_id="evacuate-hv1", source="hv1", result="failed",
    totals=dict(wall_seconds=12.5),
    domains=[
        record("web-1", "moved", "2026-12-01T10:00:00+00:00", 4.0, destination="hv2", downtime_ms=120,
               predicted_seconds=5.0, bytes_sent=300 << 20),
        record("db<1>", "failed", "2026-12-01T10:00:02+00:00", 6.5, destination="hv3", error='refused "x"'),
        record("batch", "skipped", notes=["do_not_migrate=skip"], mode=None),
        record("cold-1", "pending", mode="cold"),
    ])


def test_the_timeline_has_a_bar_per_started_move_with_its_downtime():
    svg = ET.fromstring(outputs.timeline_svg(REPORT))
    titles = [t.text for t in svg.iter(SVG + "title")]
    assert len(titles) == 2
    assert titles[0].startswith("web-1: moved, 4.0 s (predicted 5.0 s), downtime 120 ms")
    assert titles[1].startswith("db<1>: failed, 6.5 s")
    texts = [t.text for t in svg.iter(SVG + "text")]
    assert "web-1 \u2192 hv2" in texts and "db<1>" in texts
    assert texts.count("skipped") == 2 and "not started" in texts  # the legend's and batch's; cold-1
    assert "120 ms" in texts
    fills = [r.get("fill") for r in svg.iter(SVG + "rect")]
    assert outputs.COLOURS["moved"] in fills and outputs.COLOURS["failed"] in fills


def test_the_timeline_places_bars_by_their_start():
    svg = ET.fromstring(outputs.timeline_svg(REPORT))
    bars = [r for r in svg.iter(SVG + "rect") if r.find(SVG + "title") is not None]
    first, second = (float(b.get("x")) for b in bars)
    # The second move started 2 s after the first, on a plot 8.5 s wide.
    assert abs((second - first) - 2.0 * outputs.PLOT_WIDTH / 8.5) < 0.5


def test_an_empty_report_still_draws():
    ET.fromstring(outputs.timeline_svg(dict(domains=[], totals={})))


def test_junit_has_one_case_per_domain():
    suites = ET.fromstring(outputs.junit_xml(REPORT))
    assert suites.get("tests") == "4" and suites.get("failures") == "2" and suites.get("skipped") == "1"
    cases = {c.get("name"): c for c in suites.iter("testcase")}
    assert set(cases) == {"web-1", "db<1>", "batch", "cold-1"}
    assert cases["db<1>"].find("failure").get("message") == 'refused "x"'
    assert cases["cold-1"].find("failure").get("message") == "not done: pending"
    assert cases["batch"].find("skipped").get("message") == "do_not_migrate=skip"
    assert cases["web-1"].find("failure") is None and cases["web-1"].get("time") == "4.000"


SAMPLE = re.compile(r'^([a-z_]+)\{((?:[a-z_]+="(?:[^"\\]|\\.)*",?)*)\} (-?[0-9.e+]+)$')


def test_prometheus_text_is_well_formed():
    lines = outputs.prometheus_text(REPORT).splitlines()
    declared = set()
    for line in lines:
        if line.startswith("# TYPE "):
            declared.add(line.split()[2])
        elif not line.startswith("# HELP "):
            match = SAMPLE.match(line)
            assert match, line
            assert match.group(1) in declared, line


def test_prometheus_figures_per_domain_and_in_total():
    text = outputs.prometheus_text(REPORT)
    assert ('virtops_migration_move_downtime_seconds{destination="hv2",domain="web-1",evacuation="evacuate-hv1",'
            'mode="live",source="hv1"} 0.12') in text
    assert 'virtops_migration_move_sent_bytes{destination="hv2",domain="web-1"' in text
    assert 'virtops_migration_evacuation_domains{evacuation="evacuate-hv1",outcome="not_done",source="hv1"} 1' in text
    assert 'virtops_migration_evacuation_completed{evacuation="evacuate-hv1",source="hv1"} 0' in text
    assert 'virtops_migration_evacuation_duration_seconds{evacuation="evacuate-hv1",source="hv1"} 12.5' in text


def test_prometheus_label_values_are_escaped():
    report = dict(REPORT, domains=[record('a"b\\c', "moved", seconds=1.0)])
    assert 'domain="a\\"b\\\\c"' in outputs.prometheus_text(report)


def test_figures_that_are_not_numbers_are_left_out():
    report = dict(REPORT, domains=[record("x", "moved", seconds=float("nan"), downtime_ms="12")])
    text = outputs.prometheus_text(report)
    assert "move_duration_seconds{" not in text and "move_downtime_seconds{" not in text
