# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""Measurements a prediction rests on: real throughput and real dirty rates.

Throughput is measured with iperf3 from the source to the destination's migration
address (the destination runs a one-shot ``iperf3 -s -1`` that the playbook starts), not
taken from a link's nominal speed. Dirty rates come from QEMU through libvirt's
dirty-rate API, for all domains of a host at once.
"""

from __future__ import annotations

import json
import time

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import LibvirtError, NotFound, VirtopsError, call
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.bindings import constant

MIB = 1024.0 * 1024.0


class MeasurementFailed(VirtopsError):
    """A measurement could not be made; the message says why."""


def parse_iperf3(text):
    """Throughput in MiB/s (what the receiver got) and retransmits, from ``iperf3 -J`` output."""
    try:
        report = json.loads(text)
    except ValueError:
        raise MeasurementFailed("iperf3 printed no JSON report: %s" % text[:200]) from None
    if report.get("error"):
        raise MeasurementFailed("iperf3 failed: %s" % report["error"])
    end = report.get("end", {})
    received = end.get("sum_received") or end.get("sum") or {}
    if "bits_per_second" not in received:
        raise MeasurementFailed("iperf3 report has no received throughput")
    sent = end.get("sum_sent", {})
    return {
        "mib_s": round(received["bits_per_second"] / 8.0 / MIB, 1),
        "seconds": round(received.get("seconds", 0.0), 2),
        "retransmits": sent.get("retransmits"),
    }


def iperf3_argv(address, port, seconds, streams=1):
    """The client command line; the address is validated by the caller (_uri.validate_host)."""
    return ["iperf3", "--json", "--client", address, "--port", str(port), "--time", str(seconds),
            "--parallel", str(streams), "--connect-timeout", "5000"]


def throughput(run_command, address, port=5201, seconds=3, streams=1):
    """Measure from this host to ``address``; ``run_command`` is AnsibleModule.run_command."""
    rc, out, err = run_command(iperf3_argv(address, port, seconds, streams))
    if rc != 0:
        # iperf3 -J reports its errors in the JSON too.
        try:
            return parse_iperf3(out)
        except MeasurementFailed as failure:
            raise MeasurementFailed("cannot measure throughput to %s port %d: %s%s" % (
                address, port, failure.msg, (" (%s)" % err.strip()) if err.strip() else "")) from None
    return parse_iperf3(out)


def dirty_rates(domains, seconds=2, settle=0.5, timeout=30):
    """{name: MiB/s} for running virDomains, measured by QEMU in parallel over ``seconds``.

    A domain that cannot be measured (not running, gone, or a QEMU without the API) maps to
    None with the reason in a second dict: (rates, problems).
    """
    rates, problems, started = {}, {}, []
    for dom in domains:
        name = dom.name()
        try:
            # Page sampling (flags 0), QEMU's default. Its dirty-bitmap mode would count exactly,
            # but Debian 12's QEMU 7.2 under TCG dies of a segmentation fault when asked for it
            # (calc-dirty-rate mode=dirty-bitmap, tried on the control node): a pre-check must
            # never kill the guest it measures.
            call("starting the dirty-rate calculation of %s" % name, dom.startDirtyRateCalc, seconds, 0)
            started.append(dom)
        except (LibvirtError, AttributeError) as err:
            rates[name] = None
            problems[name] = getattr(err, "msg", str(err))
    if not started:
        return rates, problems
    time.sleep(seconds + settle)
    deadline = time.monotonic() + timeout
    pending = list(started)
    stats_flag = constant("VIR_DOMAIN_STATS_DIRTYRATE", 1 << 9)
    while pending:
        still = []
        for dom in pending:
            name = dom.name()
            try:
                stats = call("reading the dirty rate of %s" % name, _domain_stats, dom, stats_flag)
            except NotFound:
                rates[name], problems[name] = None, "the domain went away while it was measured"
                continue
            status = stats.get("dirtyrate.calc_status")
            if status == 2:  # measured; QEMU counts in MiB (pages x page size / 2^20) per second
                rates[name] = float(stats.get("dirtyrate.megabytes_per_second", 0))
            elif time.monotonic() > deadline:
                rates[name], problems[name] = None, "QEMU did not finish measuring within %d s" % timeout
            else:
                still.append(dom)
        pending = still
        if pending:
            time.sleep(0.2)
    return rates, problems


def _domain_stats(dom, stats_flag):
    conn = dom.connect()
    records = conn.domainListGetStats([dom], stats_flag, 0)
    return records[0][1] if records else {}
