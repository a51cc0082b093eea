# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The one guarded import of the libvirt Python bindings.

Everything else imports ``libvirt`` from here, so that a host without python3-libvirt
gets missing_required_lib()'s message instead of a traceback.
"""

from __future__ import annotations

import traceback

try:
    import libvirt
except ImportError:
    libvirt = None
    HAS_LIBVIRT = False
    LIBVIRT_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_LIBVIRT = True
    LIBVIRT_IMPORT_ERROR = None


def flags(prefix, names):
    """OR together libvirt constants ``prefix + name`` for each name (VIR_MIGRATE_, LIVE...)."""
    value = 0
    for name in names:
        value |= getattr(libvirt, prefix + name)
    return value


def constant(name, default=None):
    """A libvirt constant by name, or ``default`` when this libvirt does not have it."""
    if libvirt is None:
        return default
    return getattr(libvirt, name, default)


def silence_default_error_handler():
    """libvirt prints every error to stderr by default; our errors are raised instead."""
    if libvirt is not None:
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
