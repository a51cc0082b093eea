import pytest

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import ParameterError
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.uri import (
    destination_uri,
    migration_disks_uri,
    migration_uri,
    parse_uri,
    validate_host,
)


@pytest.mark.parametrize("value, expected", [
    ("hv2", "hv2"),
    ("HV2.Lab.Test", "hv2.lab.test"),
    ("hv2.lab.test.", "hv2.lab.test"),
    ("198.18.0.12", "198.18.0.12"),
    ("fd00::12", "fd00::12"),
    ("[fd00::12]", "fd00::12"),
    ("a-b.c-d", "a-b.c-d"),
])
def test_valid_hosts(value, expected):
    assert validate_host(value) == expected


@pytest.mark.parametrize("value", [
    "", "hv2/system", "hv2?socket=/tmp/x", "hv2#frag", "root@hv2", "hv2:16514", "hv 2", "hv2\n", "-hv2",
    "hv2-", "hv..2", "hv2;reboot", "hv2%00", "$(id)", "`id`", "[hv2]", "999.1.1.1", "1.2.3", "a" * 64,
    "fd00::zz", "hv2\x00", "hv_2", ".hv2",
])
def test_invalid_hosts(value):
    with pytest.raises(ParameterError):
        validate_host(value)


@pytest.mark.parametrize("value, expected", [
    ("qemu+tls://hv2/system", "qemu+tls://hv2/system"),
    ("qemu+tls://HV2.lab.test:16515/system", "qemu+tls://hv2.lab.test:16515/system"),
    ("qemu+ssh://root@hv2/system", "qemu+ssh://root@hv2/system"),
    ("qemu+tls://[fd00::12]/system", "qemu+tls://[fd00::12]/system"),
    ("qemu+libssh2://hv2/system", "qemu+libssh2://hv2/system"),
])
def test_valid_uris(value, expected):
    assert str(parse_uri(value)) == expected


@pytest.mark.parametrize("value, message", [
    ("qemu+tls://hv2/system?no_verify=1", "query"),
    ("qemu+ssh://hv2/system?command=/bin/sh", "query"),
    ("qemu+ssh://hv2/system?socket=/x", "query"),
    ("qemu+tls://hv2/system#x", "query"),
    ("qemu+tls://hv2/session", "system"),
    ("qemu+tls://hv2", "system"),
    ("xen+tls://hv2/system", "qemu driver"),
    ("qemu+http://hv2/system", "not allowed"),
    ("qemu+ext://hv2/system", "not allowed"),
    ("qemu+unix://hv2/system", "not allowed"),
    ("qemu+tcp://198.18.0.12/system", "plaintext transport qemu\\+tcp"),
    ("qemu+tcp://hv2:16509/system", "plaintext"),
    ("qemu://hv2/system", "no transport"),
    ("qemu+tls://root@hv2/system", "SSH"),
    ("qemu+ssh://user:pw@hv2/system", "login name"),
    ("qemu+tls://hv2:0/system", "port"),
    ("qemu+tls://hv2:99999/system", "port"),
    ("qemu+tls://hv2:abc/system", "port"),
    ("qemu+tls://hv%32/system", "host name"),
    ("qemu+tls://h v2/system", "blanks"),
    ("qemu:///system", "local"),
    ("qemu+tls:///system", "no host"),
    ("hv2/system", "libvirt URI"),
    ("", "non-empty"),
])
def test_invalid_uris(value, message):
    with pytest.raises(ParameterError, match=message):
        parse_uri(value)


def test_local_uri_allowed_for_the_source():
    assert parse_uri("qemu:///system", allow_local=True).is_local


def test_destination_from_host_name_uses_transport():
    assert str(destination_uri("hv2")) == "qemu+tls://hv2/system"
    assert str(destination_uri("hv2", "ssh")) == "qemu+ssh://hv2/system"
    assert destination_uri("hv2").effective_port == 16514
    assert destination_uri("fd00::2").effective_port == 16514
    assert str(destination_uri("fd00::2")) == "qemu+tls://[fd00::2]/system"


def test_destination_uri_is_validated():
    with pytest.raises(ParameterError):
        destination_uri("qemu+tls://hv2/system?no_verify=1")
    with pytest.raises(ParameterError):
        destination_uri("hv2", "carrier-pigeon")
    with pytest.raises(ParameterError):
        destination_uri(None)


@pytest.mark.parametrize("destination, transport", [
    ("hv2", "tcp"),
    ("qemu+tcp://hv2/system", "tls"),
    ("qemu+tcp://hv2/system", "ssh"),
])
def test_plaintext_libvirt_transport_is_refused_with_the_reason(destination, transport):
    with pytest.raises(ParameterError, match="plaintext transport qemu\\+tcp.*refused.*qemu\\+tls"):
        destination_uri(destination, transport)


def test_ssh_stays_allowed_for_the_control_connection():
    # Encrypted and authenticated: not plaintext.
    assert str(parse_uri("qemu+ssh://root@hv2/system")) == "qemu+ssh://root@hv2/system"
    assert str(destination_uri("hv2", "libssh")) == "qemu+libssh://hv2/system"


@pytest.mark.parametrize("value, expected, disks", [
    ("198.18.1.12", "tcp://198.18.1.12", "tcp://198.18.1.12"),
    ("tcp://198.18.1.12", "tcp://198.18.1.12", "tcp://198.18.1.12"),
    ("tcp://198.18.1.12:49152", "tcp://198.18.1.12:49152", "tcp://198.18.1.12"),
    ("fd00:1::12", "tcp://[fd00:1::12]", "tcp://[fd00:1::12]"),
    ("tcp://[fd00:1::12]:49152", "tcp://[fd00:1::12]:49152", "tcp://[fd00:1::12]"),
    ("hv2-mig.lab.test", "tcp://hv2-mig.lab.test", "tcp://hv2-mig.lab.test"),
])
def test_migration_uri(value, expected, disks):
    assert migration_uri(value) == expected
    assert migration_disks_uri(value) == disks


@pytest.mark.parametrize("value", ["rdma://198.18.1.12", "tcp://198.18.1.12/x", "tcp://a@b", "198.18.1.12:80",
                                   "tcp://198.18.1.12:0", "unix:///tmp/sock", "tcp://", "x y"])
def test_bad_migration_uri(value):
    with pytest.raises(ParameterError):
        migration_uri(value)
