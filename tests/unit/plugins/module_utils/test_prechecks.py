"""The pre-checks that need no hypervisor: verdicts, machine, versions, devices, capacity, certificates, prediction."""

import pytest

from ansible_collections.virtops.migration.plugins.module_utils._facts import prechecks as checks
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import DomainDescription
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import ParameterError

DOMAIN_XML = """<domain type='kvm'><name>web1</name><memory unit='MiB'>1024</memory>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
  <cpu mode='custom'><model>EPYC</model></cpu>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>"""
CAPS = {"guests": {"x86_64": {"machines": ["pc", "pc-i440fx-7.2", "pc-q35-7.2"], "domain_types": ["kvm", "qemu"],
                              "emulator": "/usr/bin/qemu-system-x86_64"}}}


def test_the_worst_verdict_wins_and_reasons_list_warnings_and_blockers():
    items = [checks.check("a", "ok", "fine"), checks.check("b", "skipped", "n/a"), checks.check("c", "warn", "hmm")]
    assert checks.verdict_of(items) == "warn"
    assert checks.verdict_of(items + [checks.check("d", "block", "no")]) == "block"
    assert checks.verdict_of([checks.check("b", "skipped", "n/a")]) == "ok"
    assert checks.reasons_of(items + [checks.check("d", "block", "no")]) == ["hmm", "no"]


def test_machine_type_accelerator_and_emulator_must_be_offered():
    desc = DomainDescription.from_xml(DOMAIN_XML)
    assert checks.machine(desc, "/usr/bin/qemu-system-x86_64", CAPS, "hv2")["verdict"] == "ok"
    tcg_only = {"guests": {"x86_64": dict(CAPS["guests"]["x86_64"], domain_types=["qemu"])}}
    blocked = checks.machine(desc, "/usr/bin/qemu-system-x86_64", tcg_only, "hv3")
    assert blocked["verdict"] == "block" and "kvm guests cannot run on hv3 (it offers qemu)" in blocked["detail"]
    old = {"guests": {"x86_64": dict(CAPS["guests"]["x86_64"], machines=["pc-q35-5.2"])}}
    assert "machine type pc-q35-7.2 is not offered by hv2" in checks.machine(desc, None, old, "hv2")["detail"]
    other = checks.machine(desc, "/opt/qemu/bin/qemu", CAPS, "hv2")
    assert other["verdict"] == "block" and "emulator /opt/qemu/bin/qemu" in other["detail"]
    assert checks.machine(desc, None, {"guests": {}}, "hv2")["detail"] == "hv2 runs no x86_64 guests"


@pytest.mark.parametrize("src, dst, verdict", [
    ({"libvirt": "9.0.0", "qemu": "7.2.0"}, {"libvirt": "9.0.0", "qemu": "7.2.0"}, "ok"),
    ({"libvirt": "9.0.0", "qemu": "7.2.0"}, {"libvirt": "10.1.0", "qemu": "8.2.2"}, "ok"),
    ({"libvirt": "9.0.0", "qemu": "7.2.0"}, {"libvirt": "9.0.0", "qemu": "6.2.0"}, "block"),
    ({"libvirt": "9.0.0", "qemu": "7.2.0"}, {"libvirt": "8.0.0", "qemu": "7.2.0"}, "warn"),
])
def test_destination_not_older_than_the_source(src, dst, verdict):
    assert checks.versions(src, dst, "hv2")["verdict"] == verdict


def test_devices_block_live_but_only_warn_cold():
    xml = "<domain><devices><hostdev mode='subsystem' type='pci'/></devices></domain>"
    assert checks.devices(xml, "live")["verdict"] == "block"
    assert checks.devices(xml, "cold")["verdict"] == "warn"
    assert checks.devices("<domain><devices/></domain>", "live")["verdict"] == "ok"


OPTIONS = {"memory_overcommit": 1.0, "vcpu_overcommit": 2.0, "reserved_memory_mib": 1024}


def test_capacity_counts_what_already_runs_there_within_the_overcommit():
    load = {"memory_total_mib": 8192, "memory_committed_mib": 6144, "vcpus_total": 4, "vcpus_committed": 6}
    fits = checks.capacity({"memory_mib": 1024, "vcpus": 2}, load, OPTIONS, "hv2")
    assert [c["verdict"] for c in fits] == ["ok", "ok"]
    too_big = checks.capacity({"memory_mib": 1025, "vcpus": 3}, load, OPTIONS, "hv2")
    assert [c["verdict"] for c in too_big] == ["block", "block"]
    assert too_big[0]["detail"].startswith("not enough memory: 7169 MiB of 7168 MiB")


def test_a_domain_bigger_than_the_destination_is_blocked_whatever_its_state():
    # Issue 11, hole 9: a shut-off 64 GiB guest to a 24 GiB host was only "warn" (free memory); capacity is not
    # checked for shut-off domains. It can never run there: block.
    load = {"memory_total_mib": 24576, "memory_committed_mib": 0, "vcpus_total": 4, "vcpus_committed": 0}
    found = checks.memory_total(64 << 20, load, "hv2")
    assert found["verdict"] == "block" and "can never run there" in found["detail"]
    assert checks.memory_total(16 << 20, load, "hv2")["verdict"] == "ok"
    assert checks.memory_total(16 << 20, {}, "hv2")["verdict"] == "skipped"


def cert(**overrides):
    facts = {"present": True, "path": "/etc/pki/qemu/server-cert.pem", "valid_now": True, "days_left": 300.0,
             "not_before": "2026-01-01", "not_after": "2027-01-01", "dns_names": ["hv2"], "ip_addresses": ["198.18.1.12"]}
    facts.update(overrides)
    return facts


def test_certificates_on_both_ends_and_the_migration_address():
    local = {"libvirt_client": cert(), "qemu_client": cert()}
    good = checks.certificates(local, {"certificates": {"qemu_server": cert()}}, "hv2", "198.18.1.12", 14)
    assert checks.verdict_of(good) == "ok"
    wrong_name = checks.certificates(local, {"certificates": {"qemu_server": cert(ip_addresses=["198.18.0.12"])}},
                                     "hv2", "198.18.1.12", 14)
    assert checks.verdict_of(wrong_name) == "block"
    assert "does not name the migration address 198.18.1.12" in checks.reasons_of(wrong_name)[0]
    expired = checks.certificates({"libvirt_client": cert(valid_now=False), "qemu_client": cert(days_left=3.0)},
                                  None, "hv2", None, 14)
    assert [c["verdict"] for c in expired] == ["block", "warn", "skipped"]
    missing = checks.certificates({"libvirt_client": cert(present=False), "qemu_client": None}, None, "hv2", None, 14)
    assert "is missing (/etc/pki/qemu/server-cert.pem)" in missing[0]["detail"]
    assert missing[1]["verdict"] == "block"


def test_a_revoked_certificate_is_named_and_blocks():
    local = {"libvirt_client": cert(path="/etc/pki/libvirt/clientcert.pem", serial="1f", revoked=True,
                                    revoked_on="2026-11-30T10:00:00+00:00", crl="/etc/pki/CA/cacrl.pem"),
             "qemu_client": cert(revoked=False)}
    server = cert(revoked=True, serial="2a", crl="/etc/pki/qemu/ca-crl.pem")
    found = checks.certificates(local, {"certificates": {"qemu_server": server}}, "hv2", "198.18.1.12", 14)
    assert [c["verdict"] for c in found] == ["block", "ok", "block"]
    assert "this host's libvirt_client certificate (/etc/pki/libvirt/clientcert.pem, serial 1f) is revoked" \
        in found[0]["detail"] and "/etc/pki/CA/cacrl.pem" in found[0]["detail"]
    assert "hv2's QEMU server certificate" in found[2]["detail"] and "serial 2a) is revoked" in found[2]["detail"]


def test_a_certificate_that_does_not_name_its_host_is_named():
    local = {"libvirt_client": cert(dns_names=["hv1", "hv1.lab.test"]),
             "qemu_client": cert(dns_names=["hv3"], ip_addresses=[])}
    found = checks.certificates(local, {"certificates": {"qemu_server": cert(dns_names=["hv3"])}}, "hv2",
                                "198.18.1.12", 14, src_name="hv1.lab.test")
    verdicts = [(c["verdict"], c["detail"]) for c in found]
    assert [verdict for verdict, _detail in verdicts] == ["ok", "ok", "warn", "ok", "warn"]
    assert "this host's qemu_client certificate (/etc/pki/qemu/server-cert.pem) does not name hv1.lab.test " \
        "(it names hv3)" in verdicts[2][1]
    assert "hv2's QEMU server certificate" in verdicts[4][1] and "does not name hv2" in verdicts[4][1]
    # A short name in the certificate matches the host's FQDN; an address matches as an address.
    assert checks.verdict_of(checks.certificates({"libvirt_client": cert(dns_names=["hv1"]),
                                                  "qemu_client": cert(dns_names=["hv1"])},
                                                 {"certificates": {"qemu_server": cert(dns_names=[])}},
                                                 "198.18.1.12", "198.18.1.12", 14, src_name="hv1.lab.test")) == "ok"


LADDER = {"max_downtime": 300, "max_downtime_steps": [], "auto_converge": False, "postcopy": "never",
          "timeout_action": "abort"}


def test_prediction_from_measured_bandwidth_and_dirty_rate():
    ladder = checks.ladder_from(LADDER)
    domain = {"memory_mib": 512, "state": "running"}
    item, predicted = checks.prediction(domain, 5.0, 100.0, ladder, 0.0, "live")
    assert item["verdict"] == "ok" and predicted["converges"] and predicted["seconds"] > 512 / 100.0
    item, predicted = checks.prediction(domain, 150.0, 100.0, ladder, 0.0, "live")
    assert item["verdict"] == "block" and item["detail"].startswith("will not converge")
    escalating = checks.ladder_from(dict(LADDER, auto_converge=True))
    item, predicted = checks.prediction(domain, 150.0, 100.0, escalating, 0.0, "live")
    assert item["verdict"] == "warn" and "auto_converge" in item["detail"]
    assert checks.prediction(domain, 5.0, None, ladder, 0.0, "live")[0]["verdict"] == "skipped"
    assert checks.prediction(dict(domain, state="shutoff"), None, 10.0, ladder, 0.0, "cold")[1] is None


def params(**overrides):
    values = {"destinations": ["hv2"], "memory_overcommit": 1.0, "vcpu_overcommit": 4.0, "reserved_memory_mib": 0,
              "dirty_rate_seconds": 2, "certificate_min_days": 14, "bandwidth_port": 5201, "bandwidth_seconds": 3,
              "max_downtime": 300, "max_downtime_steps": []}
    values.update(overrides)
    return values


@pytest.mark.parametrize("overrides, message", [
    ({"destinations": []}, "at least one candidate"),
    ({"memory_overcommit": 0}, "memory_overcommit must be a finite number, at least 0.01"),
    ({"reserved_memory_mib": -5}, "reserved_memory_mib must be a finite number, at least 0 "),
    ({"bandwidth_port": 70000}, "bandwidth_port must be a finite number, at least 1 and at most 65535"),
    ({"bandwidth_seconds": 0}, "bandwidth_seconds must be a finite number, at least 1 and at most 60,"),
    ({"max_downtime_steps": [500, -1]}, "max_downtime_steps must be a finite number, at least 1 "),
])
def test_impossible_numbers_are_refused(overrides, message):
    with pytest.raises(ParameterError, match=message):
        checks.validate_options(params(**overrides))


def test_host_model_cpu_becomes_a_custom_definition_the_destination_can_compare():
    caps = """<domainCapabilities><cpu><mode name='host-model' supported='yes'>
      <model fallback='forbid'>EPYC-Rome</model><vendor>AMD</vendor>
      <feature policy='require' name='x2apic'/><feature policy='disable' name='arch-capabilities'/>
    </mode></cpu></domainCapabilities>"""
    xml = checks.host_model_cpu_xml(caps)
    assert xml.startswith('<cpu mode="custom" match="exact"><model fallback="forbid">EPYC-Rome</model>')
    assert '<feature policy="disable" name="arch-capabilities" />' in xml
    assert checks.host_model_cpu_xml("<domainCapabilities><cpu/></domainCapabilities>") is None


def test_prediction_sends_the_resident_memory_not_the_whole_guest():
    ladder = checks.ladder_from(LADDER)
    whole = checks.prediction({"memory_mib": 1024, "state": "running"}, 0.0, 100.0, ladder, 0.0, "live")[1]
    resident = checks.prediction({"memory_mib": 1024, "memory_resident_mib": 256, "state": "running"}, 0.0, 100.0,
                                 ladder, 0.0, "live")
    assert resident[1]["seconds"] < whole["seconds"]
    assert "256 MiB to send" in resident[0]["detail"]
    nonzero = checks.prediction({"memory_mib": 1024, "memory_resident_mib": 256, "memory_nonzero_mib": 64,
                                 "state": "running"}, 0.0, 100.0, ladder, 0.0, "live")
    assert nonzero[1]["seconds"] < resident[1]["seconds"] and "64 MiB to send" in nonzero[0]["detail"]
