# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""Strict validation of host names and libvirt URIs (plain Python, no libvirt).

A host name that reaches libvirt ends up inside a URI that libvirtd parses and connects
to, sometimes through an SSH command line. So only letters, digits, '-' and '.' (or an IP
address) are accepted; anything else (``/ ? # @ % : [ ]``, blanks, control characters)
is refused before any connection is tried. URIs are limited to the qemu driver's
``/system`` instance over an allowed transport, with no query string (libvirt's URI
parameters include ``command=``, ``netcat=``, ``socket=`` and ``no_verify=``).

Plaintext is refused, with no option to allow it: ``qemu+tcp://`` (libvirt's unencrypted
TCP transport, root on the hypervisor for anyone on the path) is named and rejected, and
the only migration stream URI is ``tcp://``, which QEMU wraps in TLS (the migrate request
refuses ``tls=false``). SSH transports stay: they are encrypted and authenticated.
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import ParameterError

# Transports a remote libvirt URI may use, and libvirtd's default port for each: all of them
# encrypted and authenticated.
TRANSPORT_PORTS = {
    "tls": 16514,
    "ssh": 22,
    "libssh": 22,
    "libssh2": 22,
}
# libvirt's plaintext transport: refused by name, so that the error says why.
PLAINTEXT_TRANSPORTS = ("tcp",)
DEFAULT_TRANSPORT = "tls"
LOCAL_URI = "qemu:///system"

_LABEL_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_SCOPE_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
_URI_RE = re.compile(
    r"^(?P<scheme>[a-z0-9+]+)://"
    r"(?:(?P<user>[^@/?#]*)@)?"
    r"(?P<host>\[[^\]/?#]*\]|[^:/?#\[\]]*)"
    r"(?::(?P<port>[^/?#]*))?"
    r"(?P<path>/[^?#]*)?"
    r"(?P<rest>[?#].*)?$",
    re.DOTALL,
)


def refuse_plaintext(transport, what):
    """Raise ParameterError when ``transport`` is libvirt's unencrypted TCP transport."""
    if transport in PLAINTEXT_TRANSPORTS:
        raise ParameterError(
            "%s uses libvirt's plaintext transport qemu+%s://: refused. It carries the libvirt connection "
            "(root on the hypervisor) without encryption or certificate checks; use qemu+tls:// (the default) "
            "or qemu+ssh://. No option re-enables it, and the hypervisors prepared by this collection do not "
            "listen for it." % (what, transport))


def validate_host(value, what="host name"):
    """Return ``value`` as a safe host: an IP address or an RFC 1123 host name.

    IPv6 addresses may be given with or without brackets; they are returned without.
    """
    if not isinstance(value, str) or not value:
        raise ParameterError("%s must be a non-empty string" % what)
    text = value
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        address, _sep, scope = text.partition("%")
        if _sep and not _SCOPE_RE.fullmatch(scope):
            raise ParameterError("%s %r: an IPv6 scope id must be an interface name (letters, digits, '.', '_', "
                                 "'-'; at most 15)" % (what, value))
        try:
            return str(ipaddress.IPv6Address(text))
        except ValueError:
            raise ParameterError(
                "%s %r is neither a valid IPv6 address nor a host name (':' is only allowed in IPv6 addresses)"
                % (what, value)
            ) from None
    if text != value:
        raise ParameterError("%s %r: brackets are only allowed around an IPv6 address" % (what, value))
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        pass
    name = text[:-1] if text.endswith(".") else text
    if len(name) > 253 or not all(_LABEL_RE.fullmatch(label) for label in name.split(".")):
        raise ParameterError(
            "%s %r is not a valid host name: use letters, digits, '-' and '.' only "
            "(no URI metacharacters, blanks or empty labels), or an IP address" % (what, value)
        )
    if re.fullmatch(r"[0-9.]+", name):
        raise ParameterError("%s %r is not a valid IPv4 address" % (what, value))
    return name.lower()


def format_host(host):
    """A host as it appears inside a URI: IPv6 addresses in brackets."""
    return "[%s]" % host if ":" in host else host


class LibvirtURI(object):
    """A validated libvirt URI for the qemu driver's system instance."""

    def __init__(self, transport=None, host=None, user=None, port=None):
        self.transport = transport
        self.host = host
        self.user = user
        self.port = port

    @property
    def is_local(self):
        return self.host is None

    @property
    def scheme(self):
        return "qemu+%s" % self.transport if self.transport else "qemu"

    @property
    def effective_port(self):
        if self.is_local:
            return None
        return self.port or TRANSPORT_PORTS[self.transport]

    def __str__(self):
        if self.is_local:
            return LOCAL_URI
        authority = format_host(self.host)
        if self.user:
            authority = "%s@%s" % (self.user, authority)
        if self.port:
            authority = "%s:%d" % (authority, self.port)
        return "%s://%s/system" % (self.scheme, authority)

    def __eq__(self, other):
        return isinstance(other, LibvirtURI) and str(self) == str(other)

    def __hash__(self):
        return hash(str(self))

    def __repr__(self):
        return "LibvirtURI(%r)" % str(self)


def _parse_port(value, uri):
    # ASCII digits only: str.isdigit() also takes '²' or '٣', which int() then refuses with a ValueError.
    if not re.fullmatch(r"[0-9]{1,5}", value) or not 0 < int(value) < 65536:
        raise ParameterError("libvirt URI %r: port %r is not a number between 1 and 65535" % (uri, value))
    return int(value)


def parse_uri(value, allow_local=False, transports=tuple(TRANSPORT_PORTS)):
    """Parse and validate a libvirt URI; raise ParameterError naming what is wrong."""
    if not isinstance(value, str) or not value:
        raise ParameterError("libvirt URI must be a non-empty string")
    if any(ch.isspace() or ord(ch) < 32 for ch in value):
        raise ParameterError("libvirt URI %r contains blanks or control characters" % value)
    match = _URI_RE.fullmatch(value)
    if not match:
        raise ParameterError("%r is not a libvirt URI of the form qemu+tls://HOST/system" % value)
    scheme = match.group("scheme")
    if match.group("rest"):
        raise ParameterError(
            "libvirt URI %r: query strings and fragments are not accepted "
            "(they can change how libvirt connects, e.g. command=, socket=, no_verify=)" % value
        )
    if match.group("path") != "/system":
        raise ParameterError("libvirt URI %r: only the system instance (path /system) is supported" % value)
    driver, _sep, transport = scheme.partition("+")
    if driver != "qemu":
        raise ParameterError("libvirt URI %r: only the qemu driver is supported, not %r" % (value, driver))
    host = match.group("host")
    if not host:
        if transport or match.group("user") is not None or match.group("port") is not None:
            raise ParameterError("libvirt URI %r names a transport or user but no host" % value)
        if not allow_local:
            raise ParameterError("libvirt URI %r is local; a remote URI (qemu+tls://HOST/system) is needed" % value)
        return LibvirtURI()
    if not transport:
        raise ParameterError(
            "libvirt URI %r has a host but no transport; use one of %s"
            % (value, ", ".join("qemu+%s://" % t for t in transports))
        )
    refuse_plaintext(transport, "libvirt URI %r" % value)
    if transport not in transports:
        raise ParameterError(
            "libvirt URI %r: transport %r is not allowed; use one of %s" % (value, transport, ", ".join(transports))
        )
    user = match.group("user")
    if user is not None:
        if transport not in ("ssh", "libssh", "libssh2"):
            raise ParameterError("libvirt URI %r: a user name is only meaningful with SSH transports" % value)
        if not _USER_RE.fullmatch(user):
            raise ParameterError("libvirt URI %r: user name %r is not a plain login name" % (value, user))
    port = match.group("port")
    port = _parse_port(port, value) if port is not None else None
    return LibvirtURI(transport=transport, host=validate_host(host, "host name in libvirt URI"), user=user, port=port)


def destination_uri(destination, transport=DEFAULT_TRANSPORT):
    """The libvirt URI for ``destination``: a host name, an IP address or a libvirt URI."""
    if not isinstance(destination, str) or not destination:
        raise ParameterError("destination must be a host name, an IP address or a libvirt URI")
    if "://" in destination:
        return parse_uri(destination)
    refuse_plaintext(transport, "transport %r" % transport)
    if transport not in TRANSPORT_PORTS:
        raise ParameterError("transport %r is not one of %s" % (transport, ", ".join(TRANSPORT_PORTS)))
    return LibvirtURI(transport=transport, host=validate_host(destination, "destination"))


def migration_uri(address):
    """``tcp://ADDRESS`` (QEMU's migration stream URI) from an address or a tcp:// URI."""
    text = address
    port = None
    if text.startswith("tcp://"):
        text = text[len("tcp://"):]
        match = re.fullmatch(r"(\[[^\]]*\]|[^:/?#\[\]@]*)(?::([^/?#]*))?", text)
        if not match:
            raise ParameterError("migration_address %r is not of the form tcp://ADDRESS[:PORT]" % address)
        text = match.group(1)
        if match.group(2) is not None:
            port = _parse_port(match.group(2), address)
    elif "://" in text:
        raise ParameterError("migration_address %r: only tcp:// is supported (QEMU wraps the stream in TLS)" % address)
    host = validate_host(text, "migration_address")
    uri = "tcp://%s" % format_host(host)
    if port:
        uri = "%s:%d" % (uri, port)
    return uri


def migration_disks_uri(address):
    """``tcp://ADDRESS`` for libvirt's disk copy (NBD): the migration address, without its port."""
    uri = migration_uri(address)
    if uri.endswith("]") or uri.count(":") == 1:
        return uri
    return uri.rsplit(":", 1)[0]
