"""A small in-memory stand-in for two libvirt hosts, for driving the migrate module in unit tests.

Only what the module calls is implemented. Migrations follow a Scenario: the job reports
the statistics it yields, and the migration completes once the scenario says so (for
example once the module raised the downtime far enough), fails, or is aborted.
"""

import threading
import time
import xml.etree.ElementTree as ET

import libvirt

MIB = 1024 * 1024
DOMAIN_XML = """<domain type='qemu'>
  <name>{name}</name><uuid>{uuid}</uuid>
  <memory unit='KiB'>262144</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <cpu mode='custom' match='exact'><model fallback='forbid'>qemu64</model></cpu>
  <devices>{disks}</devices>
</domain>"""
NBD_DISK = ("<disk type='network' device='disk'><driver name='qemu' type='raw'/>"
            "<source protocol='nbd' name='x'><host name='198.18.0.20' port='10809'/></source>"
            "<target dev='vda' bus='virtio'/></disk>")
LOCAL_DISK = ("<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
              "<source file='/var/lib/libvirt/images/{name}.qcow2'/><target dev='vda' bus='virtio'/></disk>")


def error(code, message):
    err = libvirt.libvirtError(message)
    err.err = (code, 0, message, 2, None, None, None, 0, 0)
    return err


class Scenario(object):
    """How a migration job behaves."""

    def __init__(self, complete=lambda job: job.polls >= 3, fail=None, remaining_mib=128, bps_mib=50,
                 postcopy_fail=None, resume_ok=True, shutdown_ok=True, postcopy_stall=False, hang_after_pause=False,
                 ignore_abort=False, fail_after_arrival=None, stats_hang=False):
        self.complete = complete
        self.fail = fail
        self.remaining_mib = remaining_mib
        self.bps_mib = bps_mib
        self.postcopy_fail = postcopy_fail
        self.resume_ok = resume_ok
        self.shutdown_ok = shutdown_ok
        self.postcopy_stall = postcopy_stall
        self.hang_after_pause = hang_after_pause
        self.ignore_abort = ignore_abort
        # The destination finished (the domain is there), then the job still reports this error.
        self.fail_after_arrival = fail_after_arrival
        # The job's statistics are not answered while this is true (QEMU's monitor stopped answering).
        self.stats_hang = stats_hang


class Job(object):
    def __init__(self, scenario):
        self.scenario = scenario
        self.polls = 0
        self.iteration = 1
        self.downtime = 300
        self.postcopy = False
        self.paused = False
        self.aborted = False
        self.postcopy_paused = False
        self.sent = 0
        self.started = time.monotonic()

    def stats(self):
        while self.scenario.stats_hang:
            time.sleep(0.01)
        self.polls += 1
        self.iteration = 1 + self.polls
        if not (self.postcopy and self.scenario.postcopy_stall):
            self.sent += 64 * MIB
        return {
            "type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED,
            "time_elapsed": int((time.monotonic() - self.started) * 1000),
            "memory_iteration": self.iteration,
            "data_remaining": self.scenario.remaining_mib * MIB,
            "memory_remaining": self.scenario.remaining_mib * MIB,
            "memory_processed": self.sent,
            "data_processed": self.sent,
            "memory_bps": self.scenario.bps_mib * MIB,
        }


class FakeDomain(object):
    def __init__(self, host, name, uuid, state=libvirt.VIR_DOMAIN_RUNNING, persistent=True, disks=NBD_DISK):
        self.host = host
        self._name = name
        self.uuid = uuid
        self.st = state
        self.reason = 1
        self.persistent = persistent
        self.disks = disks.format(name=name)
        self.job = None
        self.completed = None
        self.calls = []

    # identity and state
    def name(self):
        return self._name

    def UUIDString(self):
        return self.uuid

    def _alive(self):
        if self.host.domains.get(self.uuid) is not self:
            raise error(libvirt.VIR_ERR_NO_DOMAIN, "Domain not found")

    def state(self, flags=0):
        self._alive()
        return [self.st, self.reason]

    def isPersistent(self):
        self._alive()
        return 1 if self.persistent else 0

    def XMLDesc(self, flags=0):
        self._alive()
        return DOMAIN_XML.format(name=self._name, uuid=self.uuid, disks=self.disks)

    def blockInfo(self, target, flags=0):
        return [1024 * MIB, 100 * MIB, 100 * MIB]

    # life cycle
    def shutdownFlags(self, flags=0):
        self.calls.append("shutdown")
        if self.host.world.scenario.shutdown_ok:
            self.st = libvirt.VIR_DOMAIN_SHUTOFF

    def destroy(self):
        self.calls.append("destroy")
        self.st = libvirt.VIR_DOMAIN_SHUTOFF
        if not self.persistent:
            del self.host.domains[self.uuid]

    def create(self):
        self.calls.append("create")
        self.st = libvirt.VIR_DOMAIN_RUNNING

    def createWithFlags(self, flags=0):
        self.calls.append("create_paused" if flags & libvirt.VIR_DOMAIN_START_PAUSED else "create")
        self.st = libvirt.VIR_DOMAIN_PAUSED if flags & libvirt.VIR_DOMAIN_START_PAUSED else libvirt.VIR_DOMAIN_RUNNING

    def resume(self):
        self.calls.append("resume")
        self.st = libvirt.VIR_DOMAIN_RUNNING
        self.reason = 1

    def suspend(self):
        self.calls.append("suspend")
        if self.job:
            self.job.paused = True
        self.st = libvirt.VIR_DOMAIN_PAUSED

    def undefineFlags(self, flags=0):
        self.calls.append("undefine")
        self.persistent = False
        if self.st == libvirt.VIR_DOMAIN_SHUTOFF:
            del self.host.domains[self.uuid]

    # migration job
    def jobStats(self, flags=0):
        self._alive()
        if flags & libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED:
            return dict(self.completed or {"type": libvirt.VIR_DOMAIN_JOB_NONE})
        if self.job is None:
            return {"type": libvirt.VIR_DOMAIN_JOB_NONE}
        return self.job.stats()

    # libvirt 9 and later set a running domain's downtime limit outside a migration too (the
    # next migration starts with it); older ones want a migration job first.
    downtime_needs_job = False

    def migrateSetMaxDowntime(self, downtime, flags=0):
        if self.job is None and (self.downtime_needs_job or self.st != libvirt.VIR_DOMAIN_RUNNING):
            raise error(libvirt.VIR_ERR_OPERATION_INVALID, "no job is active on the domain")
        self.calls.append(("downtime", downtime) if self.job is not None else ("downtime before the job", downtime))
        self.downtime = downtime
        if self.job is not None:
            self.job.downtime = downtime

    def migrateStartPostCopy(self, flags=0):
        if self.job is None:
            raise error(libvirt.VIR_ERR_OPERATION_INVALID, "no job is active on the domain")
        self.calls.append("postcopy")
        self.job.postcopy = True

    def abortJobFlags(self, flags=0):
        self.calls.append("abort_postcopy" if flags & libvirt.VIR_DOMAIN_ABORT_JOB_POSTCOPY else "abort")
        if self.job is not None:
            if flags & libvirt.VIR_DOMAIN_ABORT_JOB_POSTCOPY:
                self.job.postcopy_paused = True
            else:
                self.job.aborted = True

    def abortJob(self):
        self.calls.append("abort")
        if self.job is not None:
            self.job.aborted = True

    def migrateToURI3(self, uri, params, flags):
        world = self.host.world
        world.migrations.append(dict(uri=uri, params=params, flags=flags))
        dest = world.by_uri(uri)
        scenario = world.scenario
        if flags & libvirt.VIR_MIGRATE_POSTCOPY_RESUME:
            if not scenario.resume_ok:
                raise error(libvirt.VIR_ERR_OPERATION_FAILED, "cannot resume: link still down")
            self.st, self.reason = libvirt.VIR_DOMAIN_RUNNING, 1
            return self._arrive(dest, flags, None)
        if flags & libvirt.VIR_MIGRATE_OFFLINE:
            if scenario.fail:
                raise error(libvirt.VIR_ERR_OPERATION_FAILED, scenario.fail)
            return self._arrive(dest, flags, None)
        if flags & (libvirt.VIR_MIGRATE_NON_SHARED_DISK | libvirt.VIR_MIGRATE_NON_SHARED_INC):
            # libvirt creates the disk images on the destination as the copy starts
            for source in ET.fromstring("<d>%s</d>" % self.disks).iter("source"):
                if source.get("file"):
                    dest.volumes.add(source.get("file"))
        job = self.job = Job(scenario)
        job.downtime = getattr(self, "downtime", job.downtime)
        try:
            while True:
                time.sleep(0.005)
                if job.aborted and not scenario.ignore_abort:
                    raise error(libvirt.VIR_ERR_OPERATION_ABORTED,
                                "operation aborted: migration out job: canceled by client")
                if scenario.fail and job.polls >= 2:
                    raise error(libvirt.VIR_ERR_OPERATION_FAILED, scenario.fail)
                if job.postcopy_paused and scenario.hang_after_pause:
                    self.st, self.reason = libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED
                    if self.uuid not in dest.domains:
                        incoming = FakeDomain(dest, self._name, self.uuid, libvirt.VIR_DOMAIN_RUNNING, persistent=False)
                        incoming.reason = libvirt.VIR_DOMAIN_RUNNING_POSTCOPY
                        dest.domains[self.uuid] = incoming
                    continue
                if job.postcopy and (scenario.postcopy_fail or job.postcopy_paused):
                    self.st, self.reason = libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED
                    incoming = FakeDomain(dest, self._name, self.uuid, libvirt.VIR_DOMAIN_PAUSED, persistent=False)
                    incoming.reason = libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED
                    dest.domains[self.uuid] = incoming
                    raise error(libvirt.VIR_ERR_OPERATION_FAILED, scenario.postcopy_fail or "post-copy paused")
                if job.postcopy and scenario.postcopy_stall:
                    continue
                if job.postcopy or job.paused or scenario.complete(job):
                    break
        finally:
            self.job = None
        self._arrive(dest, flags, job)
        if scenario.fail_after_arrival:
            raise error(libvirt.VIR_ERR_OPERATION_FAILED, scenario.fail_after_arrival)
        return 0

    def _arrive(self, dest, flags, job):
        arrived = FakeDomain(dest, self._name, self.uuid, state=self.st if self.st != libvirt.VIR_DOMAIN_SHUTOFF
                             else libvirt.VIR_DOMAIN_SHUTOFF,
                             persistent=bool(flags & libvirt.VIR_MIGRATE_PERSIST_DEST), disks="")
        arrived.disks = self.disks
        if flags & libvirt.VIR_MIGRATE_OFFLINE:
            arrived.st = libvirt.VIR_DOMAIN_SHUTOFF
        if job is not None:
            arrived.completed = {"type": libvirt.VIR_DOMAIN_JOB_COMPLETED, "time_elapsed": 1234, "downtime": 42,
                                 "setup_time": 10, "memory_processed": 300 * MIB, "data_processed": 300 * MIB,
                                 "memory_total": 256 * MIB, "memory_iteration": job.iteration}
        dest.domains[self.uuid] = arrived
        if flags & libvirt.VIR_MIGRATE_UNDEFINE_SOURCE or not self.persistent:
            del self.host.domains[self.uuid]
        else:
            self.st = libvirt.VIR_DOMAIN_SHUTOFF
        return 0


class FakePool(object):
    def __init__(self, conn, name):
        self.conn = conn
        self._name = name

    def name(self):
        return self._name

    def isActive(self):
        return 1

    def refresh(self, flags):
        self.conn.pool_refreshes += 1
        return 0


class FakeVol(object):
    def __init__(self, conn, path):
        self.conn = conn
        self.path = path

    def delete(self, flags=0):
        self.conn.volumes.discard(self.path)
        self.conn.deleted.append(self.path)
        return 0


class FakeConn(object):
    def __init__(self, world, hostname, host_uuid, cpu_ok=True, pools=("/var/lib/libvirt/images",)):
        self.pool_refreshes = 0
        self.world = world
        self.hostname = hostname
        self.host_uuid = host_uuid
        self.domains = {}
        self.cpu_ok = cpu_ok
        self.pools = list(pools)
        self.closed = False
        self.volumes = set()      # paths of the disk images libvirt lists here
        self.deleted = []

    def add(self, name, uuid, **kwargs):
        dom = FakeDomain(self, name, uuid, **kwargs)
        self.domains[uuid] = dom
        return dom

    def getHostname(self):
        return self.hostname

    def getCapabilities(self):
        return "<capabilities><host><uuid>%s</uuid><cpu><arch>x86_64</arch></cpu></host></capabilities>" % (
            self.host_uuid)

    def getLibVersion(self):
        return 9000000

    def getFreeMemory(self):
        return 8 * 1024 * MIB

    def lookupByUUIDString(self, uuid):
        if uuid in self.domains:
            return self.domains[uuid]
        raise error(libvirt.VIR_ERR_NO_DOMAIN, "Domain not found: no domain with matching uuid")

    def lookupByName(self, name):
        for dom in self.domains.values():
            if dom.name() == name:
                return dom
        raise error(libvirt.VIR_ERR_NO_DOMAIN, "Domain not found: no domain with matching name '%s'" % name)

    def compareHypervisorCPU(self, emulator, arch, machine, virttype, xml, flags):
        ET.fromstring(xml)
        if not self.cpu_ok:
            raise error(libvirt.VIR_ERR_CPU_INCOMPATIBLE,
                        "the CPU is incompatible with host CPU: Host CPU does not provide required features: avx512f")
        return libvirt.VIR_CPU_COMPARE_IDENTICAL

    def storagePoolLookupByTargetPath(self, path):
        if path in self.pools:
            return FakePool(self, "default")
        raise error(libvirt.VIR_ERR_NO_STORAGE_POOL, "Storage pool not found")

    def storageVolLookupByPath(self, path):
        if path in self.volumes:
            return FakeVol(self, path)
        raise error(libvirt.VIR_ERR_NO_STORAGE_VOL, "Storage volume not found")

    def defineXML(self, xml):
        uuid = ET.fromstring(xml).findtext("uuid")
        self.domains[uuid].persistent = True
        return self.domains[uuid]

    def isAlive(self):
        return 0 if self.closed else 1

    def close(self):
        self.closed = True
        return 0


class World(object):
    """hv1 (the source, local) and hv2 (the destination), as libvirt sees them."""

    def __init__(self, scenario=None, dest_cpu_ok=True, dest_pools=("/var/lib/libvirt/images",)):
        self.scenario = scenario or Scenario()
        self.hv1 = FakeConn(self, "hv1", "00000000-0000-0000-0000-000000000001")
        self.hv2 = FakeConn(self, "hv2", "00000000-0000-0000-0000-000000000002", cpu_ok=dest_cpu_ok,
                            pools=dest_pools)
        self.migrations = []
        self.opened = []
        self.lock = threading.Lock()

    def by_uri(self, uri):
        if "hv2" in uri:
            return self.hv2
        if "hv1" in uri or uri == "qemu:///system":
            return self.hv1
        raise error(libvirt.VIR_ERR_SYSTEM_ERROR, "unable to connect to server at '%s:16514': No route to host"
                    % uri)

    def open(self, uri, timeout):
        from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import Hypervisor
        from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import HypervisorUnreachable

        self.opened.append(str(uri))
        if "unreachable" in str(uri):
            raise HypervisorUnreachable("cannot reach %s port 16514: No route to host" % uri.host)
        return Hypervisor(uri, self.by_uri(str(uri)))
