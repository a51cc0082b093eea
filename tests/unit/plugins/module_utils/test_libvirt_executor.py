"""The libvirt executor of the evacuation: the parts that need no running libvirt."""

import pytest

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import LibvirtError

libvirt = pytest.importorskip("libvirt")

from ansible_collections.virtops.migration.plugins.module_utils._evacuation import libvirt_executor as executors  # noqa: E402

POLICY = "<policy xmlns='urn:virtops:migration:1'><anti_affinity>db</anti_affinity></policy>"


def libvirt_error(code, message="boom"):
    err = libvirt.libvirtError(message)
    err.err = (code, 0, message, 2, None, None, None, 0, 0)
    return err


class Dom(object):
    def __init__(self, name, metadata=None, error=None):
        self._name = name
        self._metadata = metadata
        self._error = error

    def name(self):
        return self._name

    def metadata(self, *_args):
        if self._error is not None:
            raise self._error
        if self._metadata is None:
            raise libvirt_error(libvirt.VIR_ERR_NO_DOMAIN_METADATA, "no metadata")
        return self._metadata


class Conn(object):
    def __init__(self, domains, free=64 << 30):
        self.domains = domains
        self.free = free

    def getFreeMemory(self):
        return self.free

    def listAllDomains(self, _flags):
        return self.domains


class Dest(object):
    def __init__(self, conn):
        self.conn = conn


def executor(source_dom, dest_domains):
    ex = object.__new__(executors.LibvirtExecutor)
    ex._destination = lambda host: Dest(Conn(dest_domains))
    ex._source_domain = lambda record: source_dom
    return ex


def test_group_lookup_tells_no_group_from_an_error():
    assert executors.LibvirtExecutor._group(Dom("a")) is None
    assert executors.LibvirtExecutor._group(Dom("a", error=libvirt_error(libvirt.VIR_ERR_NO_DOMAIN))) is None
    assert executors.LibvirtExecutor._group(Dom("a", POLICY)) == "db"
    with pytest.raises(LibvirtError):
        executors.LibvirtExecutor._group(Dom("a", error=libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR, "rpc")))


def test_a_host_whose_group_members_cannot_be_read_is_not_taken():
    record = dict(domain="db-2", memory_mib=512)
    blind = executor(Dom("db-2", POLICY), [Dom("x", error=libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR, "rpc"))])
    ok, why = blind.can_take(record, "hv3", 0)
    assert not ok and "anti-affinity could not be checked" in why and "rpc" in why
    taken = executor(Dom("db-2", POLICY), [Dom("db-1", POLICY)])
    assert taken.can_take(record, "hv3", 0) == (False, "anti-affinity group 'db' already has db-1 there")
    free = executor(Dom("db-2", POLICY), [Dom("web-1")])
    assert free.can_take(record, "hv3", 0) == (True, None)
