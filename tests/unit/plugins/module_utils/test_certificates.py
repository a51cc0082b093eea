"""Certificate and CRL facts: names, addresses and expiry, and revocation by the certificate's own CA."""

import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from ansible_collections.virtops.migration.plugins.module_utils._facts import certificates


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
    found = certificates.certificate_facts(pem, now=now)
    assert found["dns_names"] == ["hv1", "hv1.lab.test"] and found["ip_addresses"] == ["198.18.1.11"]
    assert found["subject_cn"] == "hv1" and found["issuer"] == "CN=test CA"
    assert found["days_left"] == 10.0 and found["valid_now"] is True
    expired = certificates.certificate_facts(pem, now=now + datetime.timedelta(days=11))
    assert expired["valid_now"] is False and expired["days_left"] < 0


def test_certificates_that_are_missing_or_unreadable_say_so(tmp_path):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    found = certificates.read_certificates({"ca": str(tmp_path / "missing.pem"), "libvirt_server": str(garbage)})
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
    found = certificates.read_certificates(paths, crls)
    assert found["libvirt_client"]["revoked"] is True and found["libvirt_client"]["serial"] == "1f"
    assert found["libvirt_client"]["crl"] == crls["libvirt"]
    assert found["libvirt_client"]["revoked_on"] == now.isoformat()
    assert found["libvirt_server"]["revoked"] is False
    # No QEMU CRL installed: not known, rather than not revoked.
    assert "revoked" not in found["qemu_client"]
    # A CRL of another CA with the same serial says nothing about the certificate.
    with open(crls["qemu"], "wb") as handle:
        handle.write(_crl(libvirt_ca, [0x1F], now))
    assert "revoked" not in certificates.read_certificates(paths, crls)["qemu_client"]
    with open(crls["qemu"], "wb") as handle:
        handle.write(_crl(qemu_ca, [0x1F], now))
    assert certificates.read_certificates(paths, crls)["qemu_client"]["revoked"] is True


def test_an_unreadable_crl_is_reported_and_checks_nothing(tmp_path):
    bad = tmp_path / "cacrl.pem"
    bad.write_text("not a CRL")
    found = certificates.read_crls({"libvirt": str(bad), "qemu": str(tmp_path / "none.pem")})
    assert "cannot read" in found["libvirt"]["error"]
    assert found["qemu"] == {"path": str(tmp_path / "none.pem"), "present": False}
    assert certificates.revocation({"serial": "1", "issuer": "CN=x"}, found["libvirt"]) is None
