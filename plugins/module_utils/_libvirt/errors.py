# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The collection's one exception family, and the one place libvirt errors are translated.

Modules catch VirtopsError (and nothing wider) in main(). Code that talks to libvirt goes
through call() or lookup(), which turn libvirt.libvirtError into a VirtopsError subclass
that says what was being done; lookup() turns "no such object" into None.
"""

from __future__ import annotations

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.bindings import libvirt


class VirtopsError(Exception):
    """Base of every error the collection raises on purpose.

    ``details`` holds extra keys that fail_json returns beside ``msg`` (for example where
    the domain is after a failed migration).
    """

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


class ParameterError(VirtopsError):
    """Bad input, found before anything was changed."""


class PlanningError(VirtopsError):
    """The planner reached a state it cannot resolve: a bug, reported as an error instead of a traceback."""


class HypervisorUnreachable(VirtopsError):
    """A libvirt connection could not be opened."""


class DomainStateError(VirtopsError):
    """The domain is not in a state the requested operation can start from."""


class PrecheckFailed(VirtopsError):
    """A pre-check found a blocker; nothing was changed."""


class MigrationFailed(VirtopsError):
    """A migration (or a step of it) failed; ``details`` says where the domain is."""


class PostcopyFailed(MigrationFailed):
    """A post-copy migration failed after the guest had switched to the destination."""


class LibvirtError(VirtopsError):
    """A libvirt call failed. ``code`` is libvirt's error code (virErrorNumber)."""

    def __init__(self, msg, code=None, libvirt_message=None, **details):
        super().__init__(msg, **details)
        self.code = code
        self.libvirt_message = libvirt_message


class NotFound(LibvirtError):
    """The object (domain, volume, pool...) does not exist."""


class OperationInvalid(LibvirtError):
    """The operation is not valid in the object's current state (for example no job)."""


class Unsupported(LibvirtError):
    """The hypervisor or its libvirt does not support the operation."""


class Unanswered(LibvirtError):
    """A libvirt call did not return within the time the caller allowed it (it may still be running)."""


class _NoLibvirtError(Exception):
    """Stands in for libvirt.libvirtError when the bindings are missing: never raised."""


_LIBVIRT_ERROR = libvirt.libvirtError if libvirt is not None else _NoLibvirtError

_NOT_FOUND_CODES = (
    "VIR_ERR_NO_DOMAIN",
    "VIR_ERR_NO_STORAGE_POOL",
    "VIR_ERR_NO_STORAGE_VOL",
    "VIR_ERR_NO_NETWORK",
    "VIR_ERR_NO_DOMAIN_SNAPSHOT",
)
_INVALID_CODES = ("VIR_ERR_OPERATION_INVALID",)
_UNSUPPORTED_CODES = ("VIR_ERR_NO_SUPPORT", "VIR_ERR_ARGUMENT_UNSUPPORTED")


def _codes(names):
    if libvirt is None:
        return frozenset()
    return frozenset(getattr(libvirt, name) for name in names if hasattr(libvirt, name))


def translate(err, action):
    """Turn a libvirt.libvirtError into the matching LibvirtError subclass."""
    code = err.get_error_code()
    message = err.get_error_message() or str(err)
    if code in _codes(_NOT_FOUND_CODES):
        cls = NotFound
    elif code in _codes(_INVALID_CODES):
        cls = OperationInvalid
    elif code in _codes(_UNSUPPORTED_CODES):
        cls = Unsupported
    else:
        cls = LibvirtError
    return cls("%s: %s" % (action, message), code=code, libvirt_message=message)


def call(action, func, *args):
    """Call a libvirt function; a libvirt error becomes a LibvirtError naming ``action``."""
    try:
        return func(*args)
    except _LIBVIRT_ERROR as err:
        raise translate(err, action) from None


def lookup(action, func, *args):
    """Like call(), but "no such object" returns None instead of raising."""
    try:
        return call(action, func, *args)
    except NotFound:
        return None
