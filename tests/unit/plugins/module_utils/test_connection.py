"""Opening a libvirt connection: bounded, and with keepalive so that a hung daemon fails its calls."""

import threading
import time
import types

import pytest

from ansible_collections.virtops.migration.plugins.module_utils._libvirt import connection as _connection
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import HypervisorUnreachable
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.uri import parse_uri

libvirt = pytest.importorskip("libvirt")


class Conn(object):
    def __init__(self):
        self.keepalive = None

    def setKeepAlive(self, interval, count):
        self.keepalive = (interval, count)
        return 0


def bindings(open_, event_loop=True):
    """A stand-in for the libvirt module: ``open_`` opens; with or without a default event loop."""
    fake = types.SimpleNamespace(libvirtError=libvirt.libvirtError, open=open_, runs=[])
    if event_loop:
        fake.virEventRegisterDefaultImpl = lambda: 0

        def run_once():
            fake.runs.append(time.monotonic())
            time.sleep(0.01)
            return 0
        fake.virEventRunDefaultImpl = run_once
    return fake


LOCAL = parse_uri("qemu:///system", allow_local=True)


@pytest.fixture(autouse=True)
def no_loop_yet(monkeypatch):
    """Each test's bindings start without an event loop (the module keeps one per process)."""
    monkeypatch.setattr(_connection, "_EVENT_LOOP", None)


def test_each_connection_gets_keepalive_from_one_event_loop(monkeypatch):
    conns = []

    def open_(uri):
        conns.append(Conn())
        return conns[-1]
    fake = bindings(open_)
    monkeypatch.setattr(_connection, "libvirt", fake)
    first = _connection.open_hypervisor(LOCAL, 1)
    second = _connection.open_hypervisor(LOCAL, 1)
    expected = (_connection.KEEPALIVE_INTERVAL_S, _connection.KEEPALIVE_COUNT)
    assert first.conn.keepalive == second.conn.keepalive == expected
    time.sleep(0.1)
    assert fake.runs, "the event loop does not run"
    loops = [t for t in threading.enumerate() if t.name == "libvirt event loop"]
    assert len(loops) >= 1 and all(t.daemon for t in loops)


def test_bindings_without_an_event_loop_open_without_keepalive(monkeypatch):
    fake = bindings(lambda uri: Conn(), event_loop=False)
    monkeypatch.setattr(_connection, "libvirt", fake)
    assert _connection.open_hypervisor(LOCAL, 1).conn.keepalive is None


def test_a_daemon_that_never_answers_the_open_is_unreachable_within_the_bound(monkeypatch):
    release = threading.Event()

    def hangs(uri):
        release.wait(30)
        return Conn()
    monkeypatch.setattr(_connection, "libvirt", bindings(hangs, event_loop=False))
    monkeypatch.setattr(_connection, "OPEN_GRACE_S", 0.2)
    started = time.monotonic()
    try:
        with pytest.raises(HypervisorUnreachable) as err:
            _connection.open_hypervisor(LOCAL, 0.3)
    finally:
        release.set()
    assert time.monotonic() - started < 5
    assert "answered nothing within" in err.value.msg and "qemu:///system" in err.value.msg
