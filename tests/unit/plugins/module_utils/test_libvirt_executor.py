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
    assert executors.anti_affinity_group(Dom("a")) is None
    assert executors.anti_affinity_group(Dom("a", error=libvirt_error(libvirt.VIR_ERR_NO_DOMAIN))) is None
    assert executors.anti_affinity_group(Dom("a", POLICY)) == "db"
    with pytest.raises(LibvirtError):
        executors.anti_affinity_group(Dom("a", error=libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR, "rpc")))


def test_a_host_whose_group_members_cannot_be_read_is_not_taken():
    record = dict(domain="db-2", memory_mib=512)
    blind = executor(Dom("db-2", POLICY), [Dom("x", error=libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR, "rpc"))])
    ok, why = blind.can_take(record, "hv3", 0)
    assert not ok and "anti-affinity could not be checked" in why and "rpc" in why
    taken = executor(Dom("db-2", POLICY), [Dom("db-1", POLICY)])
    assert taken.can_take(record, "hv3", 0) == (False, "anti-affinity group 'db' already has db-1 there")
    free = executor(Dom("db-2", POLICY), [Dom("web-1")])
    assert free.can_take(record, "hv3", 0) == (True, None)


# --- a destination that does not answer (issue 11, holes 1 and 2) ---------------------------------

class StatefulDom(object):
    def __init__(self, name, state, persistent=True):
        self._name = name
        self._state = state
        self._persistent = persistent
        self.created = 0

    def name(self):
        return self._name

    def UUIDString(self):
        return "6f1b3c52-7a4e-4b8e-9a43-0c5e0d4b1a01"

    def state(self, _flags=0):
        return [self._state, 0]

    def isPersistent(self):
        return self._persistent

    def jobStats(self, _flags=0):
        return {"type": libvirt.VIR_DOMAIN_JOB_NONE}

    def create(self):
        self.created += 1
        self._state = libvirt.VIR_DOMAIN_RUNNING


class Host(object):
    """A Hypervisor stand-in: ``domains`` by name, or ``error`` raised on every lookup (a lost connection)."""

    def __init__(self, name, domains=(), error=None):
        self.name = name
        self.doms = dict((d.name(), d) for d in domains)
        self.error = error
        self.closed = False
        self.conn = self

    def getFreeMemory(self):
        if self.error is not None:
            raise libvirt_error(libvirt.VIR_ERR_SYSTEM_ERROR, self.error)
        return 64 << 30

    def domain(self, name):
        if self.error is not None:
            raise LibvirtError(self.error)
        return self.doms.get(name)

    def close(self):
        self.closed = True


class Request(object):
    source = "hv1"


def executor_with(source, destinations):
    """A LibvirtExecutor whose destinations come from ``destinations`` (host -> Host, or None: no answer)."""
    ex = object.__new__(executors.LibvirtExecutor)
    ex.request = Request()
    ex.source = source
    ex.destinations = {}
    ex.unreachable = {}
    ex.opened = []

    class Settings(object):
        connect_timeout = 1

        @staticmethod
        def remote(host):
            return host

    ex.settings = Settings()

    def fake_open(uri, _timeout):
        ex.opened.append(uri)
        if destinations.get(uri) is None:
            raise executors.VirtopsError("cannot connect to libvirt at %s: No route to host" % uri)
        return destinations[uri]

    executors.open_hypervisor = fake_open
    return ex


@pytest.fixture(autouse=True)
def _restore_open():
    real = executors.open_hypervisor
    yield
    executors.open_hypervisor = real


def test_locate_says_unknown_when_the_destination_does_not_answer_and_nothing_is_started():
    # Before the fix an unreachable destination read as "absent", and ensure_running started the source's copy.
    off = StatefulDom("c", libvirt.VIR_DOMAIN_SHUTOFF)
    ex = executor_with(Host("hv1", [off]), {"hv2": None})
    record = dict(domain="c", destination="hv2", state="running", history=[])
    where = ex.locate(record)
    assert where["destination"] is None and where["unknown"] and "No route to host" in where["unknown"][0]
    notes = ex.ensure_running(record, None)
    assert off.created == 0 and "left as it is" in notes[0]


def test_every_host_that_could_hold_it_is_asked():
    # An earlier attempt went to hv3 (history): a copy there is not this move's, so the answer is incomplete.
    running = StatefulDom("c", libvirt.VIR_DOMAIN_RUNNING)
    ex = executor_with(Host("hv1", [StatefulDom("c", libvirt.VIR_DOMAIN_SHUTOFF)]),
                       {"hv2": Host("hv2"), "hv3": Host("hv3", [running])})
    where = ex.locate(dict(domain="c", destination="hv2", history=[dict(destination="hv3")]))
    assert where["unknown"] == ["hv3 holds it too (running)"]


def test_a_lost_destination_connection_is_dropped_reported_and_reopened():
    # Hole 2: the cached connection raises once the daemon is gone. Before the fix the error escaped locate().
    gone = Host("hv2", error="End of file while reading data: Input/output error")
    back = Host("hv2", [StatefulDom("c", libvirt.VIR_DOMAIN_RUNNING)])
    hosts = {"hv2": gone}
    ex = executor_with(Host("hv1"), hosts)
    record = dict(domain="c", destination="hv2", history=[])
    where = ex.locate(record)
    assert "Input/output error" in where["unknown"][0] and gone.closed and "hv2" not in ex.destinations
    assert ex.completed_stats(record) is None
    assert ex.can_take(dict(domain="c", memory_mib=1), "hv2", 0)[0] is False
    hosts["hv2"] = back
    where = ex.locate(record)
    assert where["unknown"] == [] and where["destination"]["active"] and ex.opened.count("hv2") >= 2
