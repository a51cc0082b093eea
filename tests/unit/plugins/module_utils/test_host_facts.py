"""host_info's parsing: capabilities, host-model CPU, labels, blockers, qemu.conf, certificates."""

import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from ansible_collections.virtops.migration.plugins.module_utils._facts import host_facts as facts
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import ParameterError

CAPABILITIES = """<capabilities>
  <host><uuid>0b8c5e4e-1111-2222-3333-444455556666</uuid>
    <cpu><arch>x86_64</arch><model>EPYC-Rome</model><vendor>AMD</vendor>
      <feature name='x2apic'/><feature name='svm'/></cpu></host>
  <guest><os_type>hvm</os_type>
    <arch name='x86_64'><emulator>/usr/bin/qemu-system-x86_64</emulator>
      <machine canonical='pc-i440fx-7.2' maxCpus='255'>pc</machine>
      <machine maxCpus='288'>pc-q35-7.2</machine>
      <domain type='qemu'/>
      <domain type='kvm'/>
    </arch></guest>
  <guest><os_type>xen</os_type><arch name='x86_64'><domain type='xen'/></arch></guest>
</capabilities>"""


def test_capabilities_give_cpu_machines_and_accelerators():
    caps = facts.parse_capabilities(CAPABILITIES)
    assert caps["model"] == "EPYC-Rome" and caps["vendor"] == "AMD" and caps["features"] == ["svm", "x2apic"]
    assert caps["host_uuid"] == "0b8c5e4e-1111-2222-3333-444455556666"
    x86 = caps["guests"]["x86_64"]
    assert x86["machines"] == ["pc", "pc-i440fx-7.2", "pc-q35-7.2"]
    assert x86["domain_types"] == ["kvm", "qemu"]


def test_host_model_cpu_from_domain_capabilities():
    text = """<domainCapabilities><cpu>
      <mode name='host-model' supported='yes'><model fallback='forbid'>EPYC-Rome</model>
        <feature policy='require' name='x2apic'/><feature policy='disable' name='arch-capabilities'/></mode>
    </cpu></domainCapabilities>"""
    assert facts.parse_host_model(text) == {"model": "EPYC-Rome", "features": ["-arch-capabilities", "x2apic"]}
    assert facts.parse_host_model("<domainCapabilities><cpu><mode name='host-model' supported='no'/></cpu>"
                                  "</domainCapabilities>") is None


def test_policy_from_metadata_and_inventory_labels_win():
    metadata = ("<vo:policy xmlns:vo='urn:virtops:migration:1'><vo:anti_affinity>db</vo:anti_affinity>"
                "<vo:do_not_migrate>skip</vo:do_not_migrate></vo:policy>")
    labels = facts.parse_policy(metadata)
    assert labels == {"anti_affinity": "db", "do_not_migrate": "skip"}
    merged, problems = facts.merge_labels(labels, {"do_not_migrate": "cold", "anti_affinity": None})
    assert merged == {"anti_affinity": "db", "do_not_migrate": "cold"} and problems == []
    problems = facts.merge_labels(labels, {"do_not_migrate": "delete"})[1]
    assert "unknown do_not_migrate policy 'delete'" in problems[0]
    assert facts.parse_policy(None) == {"anti_affinity": None, "do_not_migrate": None}


def test_inventory_labels_by_name_then_by_the_first_matching_pattern():
    inventory = {"db-*": {"anti_affinity": "db"}, "db-[0-9]*": {"do_not_migrate": "cold"},
                 "db-legacy": {"do_not_migrate": "shutdown"}}
    assert facts.inventory_labels_for("db-legacy", inventory) == {"do_not_migrate": "shutdown"}
    assert facts.inventory_labels_for("db-1", inventory) == {"anti_affinity": "db"}
    assert facts.inventory_labels_for("web1", inventory) is None
    assert facts.inventory_labels_for("web1", None) is None
    # A name that merely looks like part of a pattern is not one.
    assert facts.inventory_labels_for("db-", {"db-": {"anti_affinity": "x"}}) == {"anti_affinity": "x"}


@pytest.mark.parametrize("labels, message", [
    ({"web1": "skip"}, "labels of web1 must be a dictionary"),
    ({"web1": {"affinity": "a"}}, "labels of web1 must be a dictionary"),
    ({"web1": {"anti_affinity": 3}}, "anti_affinity must be a group name"),
    ({"web1": {"anti_affinity": " "}}, "anti_affinity must be a group name"),
    ({"web*": {"do_not_migrate": "delete"}}, "labels of web*: do_not_migrate must be null, true or one of"),
    ({"web1": {"do_not_migrate": False}}, "do_not_migrate must be null, true or one of"),
])
def test_bad_inventory_labels_are_refused(labels, message):
    with pytest.raises(ParameterError) as err:
        facts.check_inventory_labels(labels)
    assert message in err.value.msg


def test_good_inventory_labels_pass():
    facts.check_inventory_labels({"db-*": {"anti_affinity": "db", "do_not_migrate": None},
                                  "batch1": {"do_not_migrate": True}, "web1": {}})


def test_devices_that_block_live_migration():
    xml = """<domain><devices>
      <hostdev mode='subsystem' type='pci'/>
      <filesystem type='mount' accessmode='passthrough'><driver type='virtiofs'/></filesystem>
      <serial type='pty'/>
    </devices></domain>"""
    assert facts.migration_blockers(xml) == [
        "host device passthrough (hostdev)", "passthrough filesystem", "virtiofs filesystem"]
    assert facts.migration_blockers("<domain><devices><serial type='file'/></devices></domain>") == []


def test_qemu_conf_migration_settings_ignore_comments():
    text = """# migration_address = "0.0.0.0"
migration_address = "198.18.1.11"
migrate_tls_force = 1
migration_port_min = 49152
cgroup_controllers = [ ]
"""
    assert facts.parse_qemu_conf(text) == {
        "migration_address": "198.18.1.11", "migrate_tls_force": "1", "migration_port_min": "49152"}


def make_certificate(names, addresses, not_before, not_after):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    san = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(7).not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(san), critical=False).sign(key, hashes.SHA256()))
    return cert.public_bytes(Encoding.PEM)


def test_certificate_names_addresses_and_expiry():
    now = datetime.datetime(2026, 11, 25, tzinfo=datetime.timezone.utc)
    pem = make_certificate(["hv1", "hv1.lab.test"], ["198.18.1.11"], now - datetime.timedelta(days=1),
                           now + datetime.timedelta(days=10))
    found = facts.certificate_facts(pem, now=now)
    assert found["dns_names"] == ["hv1", "hv1.lab.test"] and found["ip_addresses"] == ["198.18.1.11"]
    assert found["subject_cn"] == "hv1" and found["issuer"] == "CN=test CA"
    assert found["days_left"] == 10.0 and found["valid_now"] is True
    expired = facts.certificate_facts(pem, now=now + datetime.timedelta(days=11))
    assert expired["valid_now"] is False and expired["days_left"] < 0


def test_certificates_that_are_missing_or_unreadable_say_so(tmp_path):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    found = facts.read_certificates({"ca": str(tmp_path / "missing.pem"), "libvirt_server": str(garbage)})
    assert found["ca"] == {"path": str(tmp_path / "missing.pem"), "present": False}
    assert found["libvirt_server"]["present"] and "cannot read" in found["libvirt_server"]["error"]


def _ca(name):
    key = ec.generate_private_key(ec.SECP256R1())
    return key, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])


def _signed(ca, serial, now):
    key, issuer = ca
    leaf = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hv1")]))
            .issuer_name(issuer).public_key(leaf.public_key()).serial_number(serial)
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("hv1")]), critical=False)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(Encoding.PEM)


def _crl(ca, serials, now):
    key, issuer = ca
    builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer).last_update(now)
               .next_update(now + datetime.timedelta(days=30)))
    for serial in serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build())
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.PEM)


def test_revocation_by_the_crl_of_the_certificates_own_ca(tmp_path):
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    libvirt_ca, qemu_ca = _ca("libvirt CA"), _ca("QEMU CA")
    paths = {}
    for role, ca, serial in (("libvirt_client", libvirt_ca, 0x1F), ("libvirt_server", libvirt_ca, 0x20),
                             ("qemu_client", qemu_ca, 0x1F)):
        paths[role] = str(tmp_path / (role + ".pem"))
        with open(paths[role], "wb") as handle:
            handle.write(_signed(ca, serial, now))
    crls = {"libvirt": str(tmp_path / "cacrl.pem"), "qemu": str(tmp_path / "ca-crl.pem")}
    with open(crls["libvirt"], "wb") as handle:
        handle.write(_crl(libvirt_ca, [0x1F], now))
    found = facts.read_certificates(paths, crls)
    assert found["libvirt_client"]["revoked"] is True and found["libvirt_client"]["serial"] == "1f"
    assert found["libvirt_client"]["crl"] == crls["libvirt"]
    assert found["libvirt_client"]["revoked_on"] == now.isoformat()
    assert found["libvirt_server"]["revoked"] is False
    # No QEMU CRL installed: not known, rather than not revoked.
    assert "revoked" not in found["qemu_client"]
    # A CRL of another CA with the same serial says nothing about the certificate.
    with open(crls["qemu"], "wb") as handle:
        handle.write(_crl(libvirt_ca, [0x1F], now))
    assert "revoked" not in facts.read_certificates(paths, crls)["qemu_client"]
    with open(crls["qemu"], "wb") as handle:
        handle.write(_crl(qemu_ca, [0x1F], now))
    assert facts.read_certificates(paths, crls)["qemu_client"]["revoked"] is True


def test_an_unreadable_crl_is_reported_and_checks_nothing(tmp_path):
    bad = tmp_path / "cacrl.pem"
    bad.write_text("not a CRL")
    found = facts.read_crls({"libvirt": str(bad), "qemu": str(tmp_path / "none.pem")})
    assert "cannot read" in found["libvirt"]["error"]
    assert found["qemu"] == {"path": str(tmp_path / "none.pem"), "present": False}
    assert facts.revocation({"serial": "1", "issuer": "CN=x"}, found["libvirt"]) is None


@pytest.mark.parametrize("number, text", [(9000000, "9.0.0"), (7002001, "7.2.1"), (10010012, "10.10.12")])
def test_versions_as_libvirt_encodes_them(number, text):
    assert facts._version(number) == text


SMAPS = """55d4c1a00000-55d4c1c00000 r-xp 00000000 fe:01 123 /usr/bin/qemu-system-x86_64
Size:               2048 kB
Rss:                1024 kB
7f5ca7e00000-7f5cb3e00000 rw-p 00000000 00:00 0
Size:             196608 kB
KernelPageSize:        4 kB
Rss:               79872 kB
7f5cb4000000-7f5cf3fff000 rwxp 00000000 00:00 0
Size:            1048572 kB
Rss:                2048 kB
"""


def test_resident_guest_ram_is_the_mapping_of_the_guests_size():
    assert facts.guest_ram_mapping(SMAPS, 192 * 1024) == (0x7f5ca7e00000, 79872)
    assert facts.guest_ram_mapping(SMAPS, 256 * 1024) is None


def test_nonzero_share_is_sampled_from_the_guest_ram():
    import io
    ram = io.BytesIO(bytes(4096) * 3 + b"\x01" * 4096)  # one page in four holds data
    assert facts.nonzero_fraction(ram, 0, 4, samples=4000) == pytest.approx(0.25, abs=0.03)
    assert facts.nonzero_fraction(io.BytesIO(bytes(8192)), 0, 2, samples=10) == 0.0


def test_memory_use_of_a_domain_not_running_here_is_unknown(tmp_path):
    assert facts.guest_memory_use("nope", 192, run_dir=str(tmp_path)) == (None, None)
