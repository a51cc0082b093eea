# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The facts of a host's TLS certificates and revocation lists: names, validity, and whether
the CRL of the certificate's own CA revokes it.

Reading them needs python cryptography on the host; without it the facts say so.
"""

from __future__ import annotations

import datetime
import os

try:
    from cryptography import x509
    from cryptography.x509.oid import ExtensionOID, NameOID
except ImportError:  # the certificate facts say so instead
    x509 = None

# Certificates of libvirt's TLS transport and of QEMU's native TLS, Debian/RHEL paths.
DEFAULT_CERTIFICATES = {
    "ca": "/etc/pki/CA/cacert.pem",
    "libvirt_server": "/etc/pki/libvirt/servercert.pem",
    "libvirt_client": "/etc/pki/libvirt/clientcert.pem",
    "qemu_server": "/etc/pki/qemu/server-cert.pem",
    "qemu_client": "/etc/pki/qemu/client-cert.pem",
}

# Revocation lists the tls role installs, where libvirt (for its own certificates, as
# server and client) and QEMU (tls-creds-x509's ca-crl.pem) read them; which certificate
# roles each one covers.
DEFAULT_CRLS = {
    "libvirt": "/etc/pki/CA/cacrl.pem",
    "qemu": "/etc/pki/qemu/ca-crl.pem",
}
CRL_OF_ROLE = {
    "libvirt_server": "libvirt",
    "libvirt_client": "libvirt",
    "qemu_server": "qemu",
    "qemu_client": "qemu",
}


def certificate_facts(pem, now=None):
    """Subject, SAN names and addresses, issuer and validity of a PEM certificate."""
    if x509 is None:
        return {"error": "python cryptography is not installed on this host: certificates not inspected"}
    cert = x509.load_pem_x509_certificate(pem)
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
        names = san.get_values_for_type(x509.DNSName)
        addresses = [str(a) for a in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        names, addresses = [], []
    not_after = _utc(cert, "not_valid_after")
    not_before = _utc(cert, "not_valid_before")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    common_names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return {
        "subject_cn": common_names[0].value if common_names else None,
        "serial": format(cert.serial_number, "x"),
        "issuer": cert.issuer.rfc4514_string(),
        "dns_names": names,
        "ip_addresses": addresses,
        "not_before": not_before.isoformat(),
        "not_after": not_after.isoformat(),
        "days_left": round((not_after - now).total_seconds() / 86400.0, 1),
        "valid_now": not_before <= now <= not_after,
    }


def crl_facts(pem):
    """Issuer, next update and revoked serials (hex, with the revocation date) of a PEM CRL."""
    if x509 is None:
        return {"error": "python cryptography is not installed on this host: revocation not checked"}
    crl = x509.load_pem_x509_crl(pem)
    next_update = _utc(crl, "next_update")
    return {
        "issuer": crl.issuer.rfc4514_string(),
        "next_update": next_update.isoformat() if next_update else None,
        "revoked": dict((format(entry.serial_number, "x"), _utc(entry, "revocation_date").isoformat())
                        for entry in crl),
    }


def _read_pem(path, parse):
    """{"path", "present"} and what ``parse`` makes of the file, or the reason it could not be read."""
    entry = {"path": path, "present": os.path.exists(path)}
    if entry["present"]:
        try:
            with open(path, "rb") as handle:
                entry.update(parse(handle.read()))
        except (OSError, ValueError) as err:
            entry["error"] = "cannot read %s: %s" % (path, err)
    return entry


def read_crls(paths):
    """The CRLs at ``paths`` (by service), each as crl_facts says, or absent/unreadable."""
    return dict((service, _read_pem(path, crl_facts)) for service, path in sorted(paths.items()))


def revocation(cert, crl):
    """Whether ``cert`` (certificate_facts) is revoked by ``crl`` (read_crls' entry): True, False or None."""
    if not crl or not crl.get("present") or crl.get("error") or "serial" not in cert:
        return None
    if crl["issuer"] != cert["issuer"]:
        # Another CA's list says nothing about this certificate.
        return None
    return cert["serial"] in crl["revoked"]


def _utc(cert, name):
    # cryptography 42 added the *_utc properties; Debian 12 ships 38.
    value = getattr(cert, name + "_utc", None)
    if value is None:
        value = getattr(cert, name)
        value = value.replace(tzinfo=datetime.timezone.utc) if value is not None else None
    return value


def read_certificates(paths, crl_paths=None):
    """Each certificate's facts, and whether the CRL of its service (DEFAULT_CRLS) revokes it."""
    crls = read_crls(DEFAULT_CRLS if crl_paths is None else crl_paths)
    found = {}
    for role, path in sorted(paths.items()):
        entry = _read_pem(path, certificate_facts)
        if entry["present"]:
            crl = crls.get(CRL_OF_ROLE.get(role))
            revoked = revocation(entry, crl)
            if revoked is not None:
                entry["revoked"] = revoked
                entry["crl"] = crl["path"]
                if revoked:
                    entry["revoked_on"] = crl["revoked"][entry["serial"]]
        found[role] = entry
    return found
