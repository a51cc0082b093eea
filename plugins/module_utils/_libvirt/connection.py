# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The one place that opens libvirt connections.

Modules run on a hypervisor host: the local libvirt is ``uri`` (default qemu:///system);
other hosts are reached at a URI built from a host name (``qemu+tls://HOST/system`` by
default) or given as a validated libvirt URI. Before libvirt is asked to connect to a
remote host, a plain TCP probe with ``connect_timeout`` makes an unreachable host fail in
seconds with a clear message instead of hanging in the kernel's SYN retries.
"""

from __future__ import annotations

import socket
import threading
import time
import xml.etree.ElementTree as ET

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.bounded import BoundedCalls
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import (
    HypervisorUnreachable,
    LibvirtError,
    ParameterError,
    Unanswered,
    call,
    lookup,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.bindings import (
    libvirt,
    silence_default_error_handler,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.uri import (
    DEFAULT_TRANSPORT,
    LOCAL_URI,
    destination_uri,
    parse_uri,
    refuse_plaintext,
)
from ansible_collections.virtops.migration.plugins.module_utils._option_spec import argument_spec
from ansible_collections.virtops.migration.plugins.module_utils._options import CONNECTION

# The common connection options, merged into every module's argument spec and
# documented once in the virtops.migration.connection doc fragment.
CONNECTION_ARGUMENT_SPEC = argument_spec(CONNECTION)

# Every connection pings its daemon every KEEPALIVE_INTERVAL_S seconds. When KEEPALIVE_COUNT
# pings in a row go unanswered (the daemon hung, its host stopped answering), libvirt closes the
# connection, and each call waiting on it fails instead of waiting forever (libvirt's own
# defaults for its daemons' connections). Keepalive needs an event loop: see event_loop().
KEEPALIVE_INTERVAL_S = 5
KEEPALIVE_COUNT = 5
# Opening a connection has no time limit of libvirt's own either: a daemon that accepts the
# TCP connection and then answers nothing would hold the open forever. It is given the
# connect timeout plus this long for the TLS handshake and the first calls.
OPEN_GRACE_S = 20

# Whether the loop runs; None until event_loop() first tried to start it.
_EVENT_LOOP = None
_EVENT_LOOP_LOCK = threading.Lock()


def event_loop():
    """Run libvirt's default event loop in a thread of its own, once per process; whether it runs.

    It must be registered before the connections that use it are opened; it carries their
    keepalive pings, also while another thread waits in a long call (a migration).
    """
    global _EVENT_LOOP  # pylint: disable=global-statement
    with _EVENT_LOOP_LOCK:
        if _EVENT_LOOP is not None:
            return _EVENT_LOOP
        register = getattr(libvirt, "virEventRegisterDefaultImpl", None)
        run_once = getattr(libvirt, "virEventRunDefaultImpl", None)
        running = False
        if register is not None and run_once is not None:
            try:
                register()
            except libvirt.libvirtError:
                pass
            else:
                def loop():
                    while True:
                        if run_once() < 0:
                            time.sleep(0.1)

                thread = threading.Thread(target=loop, name="libvirt event loop")
                thread.daemon = True
                thread.start()
                running = True
        _EVENT_LOOP = running
        return running


class ConnectionSettings(object):
    """Validated common connection options."""

    def __init__(self, uri, transport, connect_timeout):
        self.uri = uri
        self.transport = transport
        self.connect_timeout = connect_timeout

    @classmethod
    def from_params(cls, params):
        timeout = params.get("connect_timeout")
        if timeout is None or timeout <= 0:
            raise ParameterError("connect_timeout must be a positive number of seconds, not %r" % (timeout,))
        uri = parse_uri(params.get("uri") or LOCAL_URI, allow_local=True)
        transport = params.get("transport") or DEFAULT_TRANSPORT
        refuse_plaintext(transport, "transport %r" % transport)
        return cls(uri, transport, timeout)

    def remote(self, host_or_uri):
        """The validated URI of another hypervisor named by host name, address or URI."""
        return destination_uri(host_or_uri, self.transport)


def probe(host, port, timeout):
    """Fail fast and clearly when ``host:port`` cannot be reached."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror as err:
        raise HypervisorUnreachable("cannot resolve host name %r: %s" % (host, err.strerror or err)) from None
    except socket.timeout:
        raise HypervisorUnreachable(
            "cannot reach %s port %d: no answer within %s s" % (host, port, timeout)
        ) from None
    except OSError as err:
        raise HypervisorUnreachable("cannot reach %s port %d: %s" % (host, port, err.strerror or err)) from None
    sock.close()


def local_address_of(host):
    """An address of ``host`` that belongs to this machine, or None.

    Binding a socket succeeds only for the machine's own addresses, which tells whether a
    destination is really this host without listing interfaces.
    """
    try:
        infos = socket.getaddrinfo(host, None, 0, socket.SOCK_DGRAM)
    except socket.gaierror:
        return None
    for family, socktype, proto, _canon, sockaddr in infos:
        sock = socket.socket(family, socktype, proto)
        try:
            sock.bind((sockaddr[0], 0))
        except OSError:
            continue
        finally:
            sock.close()
        return sockaddr[0]
    return None


class Hypervisor(object):
    """An open libvirt connection and what the modules ask of it."""

    def __init__(self, uri, conn, connect_timeout=None):
        self.uri = uri
        self.conn = conn
        self.connect_timeout = connect_timeout
        self._hostname = None
        self._host_uuid = None

    def alive(self):
        """Whether the connection still works (False once its libvirt daemon went away)."""
        try:
            return self.conn.isAlive() == 1
        except libvirt.libvirtError:
            return False

    def reopen_if_broken(self, wait_s):
        """When the connection broke (its daemon went away), open it again, for up to ``wait_s``
        seconds (see reopen); whether it had broken. Domains looked up before must be looked up again."""
        if self.alive():
            return False
        self.reopen(wait_s)
        return True

    def reopen(self, wait_s):
        """Open the connection again after it broke (its daemon restarted, say), trying for up to
        ``wait_s`` seconds; raise HypervisorUnreachable when the daemon stays away."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fresh = open_hypervisor(self.uri, self.connect_timeout)
            except HypervisorUnreachable:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(1)
                continue
            self.close()
            self.conn = fresh.conn
            return

    @property
    def name(self):
        """A short name for messages: the host name of a remote URI, else libvirt's host name."""
        return self.uri.host if not self.uri.is_local else self.hostname

    @property
    def hostname(self):
        if self._hostname is None:
            self._hostname = call("reading the host name of %s" % self.uri, self.conn.getHostname)
        return self._hostname

    @property
    def host_uuid(self):
        if self._host_uuid is None:
            caps = call("reading the capabilities of %s" % self.uri, self.conn.getCapabilities)
            node = ET.fromstring(caps).find("./host/uuid")
            self._host_uuid = node.text.strip() if node is not None and node.text else ""
        return self._host_uuid

    def domain(self, name_or_uuid):
        """The virDomain named (or with the UUID) ``name_or_uuid``, or None."""
        what = "looking up domain %r on %s" % (name_or_uuid, self.name)
        if looks_like_uuid(name_or_uuid):
            dom = lookup(what, self.conn.lookupByUUIDString, name_or_uuid)
            if dom is not None:
                return dom
        return lookup(what, self.conn.lookupByName, name_or_uuid)

    def compare_cpu(self, cpu_xml, arch, machine, virttype):
        """Ask this host's libvirt whether it can provide ``cpu_xml``; (result, reason)."""
        what = "comparing the domain's CPU with what %s provides" % self.name
        fail = libvirt.VIR_CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE
        try:
            result = call(what, self.conn.compareHypervisorCPU, None, arch, machine, virttype, cpu_xml, fail)
        except LibvirtError as err:
            if err.code == libvirt.VIR_ERR_CPU_INCOMPATIBLE:
                return False, err.libvirt_message
            raise
        return result != libvirt.VIR_CPU_COMPARE_INCOMPATIBLE, None

    def refresh_pool_for_directory(self, directory):
        """Rescan the storage pool whose target is ``directory``, if there is an active one.

        libvirt caches a pool's volumes: a disk image deleted behind its back (by hand, by
        another tool) stays listed until a refresh, and a migration that copies storage then
        fails on it ("unable to stat"). Returns the pool's name, or None.
        """
        pool = lookup("looking up a storage pool for %s on %s" % (directory, self.name),
                      self.conn.storagePoolLookupByTargetPath, directory)
        if pool is None:
            return None
        try:
            if call("reading whether pool %s is active" % pool.name(), pool.isActive):
                call("rescanning pool %s on %s" % (pool.name(), self.name), pool.refresh, 0)
        except LibvirtError:
            # A pool that cannot be rescanned now is judged as it is listed; the migration reports the rest.
            pass
        return pool.name()

    def volume_exists(self, path):
        vol = lookup("looking up volume %s on %s" % (path, self.name), self.conn.storageVolLookupByPath, path)
        return vol is not None

    def close(self):
        try:
            self.conn.close()
        except libvirt.libvirtError:
            # Closing a connection whose peer went away: nothing left to release.
            pass


def looks_like_uuid(value):
    text = value.replace("-", "")
    return len(text) == 32 and all(ch in "0123456789abcdefABCDEF" for ch in text)


def open_hypervisor(uri, connect_timeout):
    """Open ``uri`` (a validated LibvirtURI); raise HypervisorUnreachable with the reason."""
    if not uri.is_local:
        probe(uri.host, uri.effective_port, connect_timeout)
    silence_default_error_handler()
    keepalive = event_loop()
    wait_s = connect_timeout + OPEN_GRACE_S
    try:
        conn = BoundedCalls(wait_s)("opening %s" % uri, libvirt.open, str(uri))
    except Unanswered:
        raise HypervisorUnreachable("libvirt at %s took the connection but answered nothing within %d s (its daemon "
                                    "hangs, or its host is overloaded)" % (uri, wait_s)) from None
    except LibvirtError as err:
        raise HypervisorUnreachable("cannot connect to libvirt at %s: %s" % (uri, err.libvirt_message)) from None
    if keepalive:
        try:
            conn.setKeepAlive(KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT)
        except libvirt.libvirtError:
            pass  # a daemon without keepalive: its calls are unbounded, as before
    return Hypervisor(uri, conn, connect_timeout)
