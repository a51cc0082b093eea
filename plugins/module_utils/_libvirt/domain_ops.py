# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""Operations on one domain, written once for the migrate module and the evacuation.

- state_of(): where a domain stands on one host (a DomainState), or None once it is gone;
- shut_down(): a graceful shutdown with a deadline, then (when permitted) a power-off;
- start(): start a defined domain that is off;
- persist_where_it_runs(): make a domain that runs transient on a host persistent there.
"""

from __future__ import annotations

import time

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.bindings import libvirt
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import DomainState
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import call, lookup

SHUTDOWN_POLL_S = 0.5

GRACEFUL = "graceful"
FORCED = "forced"


def state_of(dom, where):
    """DomainState of ``dom`` (None when ``dom`` is None or has just disappeared)."""
    if dom is None:
        return None
    state = lookup("reading the state of the domain on %s" % where, dom.state, 0)
    if state is None:
        return None
    persistent = lookup("reading whether the domain is persistent on %s" % where, dom.isPersistent)
    return DomainState(dom.name(), dom.UUIDString(), state[0], state[1], bool(persistent))


def _off(dom, where):
    state = state_of(dom, where)
    return state is None or not state.active


def shut_down(dom, where, name, timeout, force, graceful=True):
    """Shut ``dom`` down: ask the guest (unless ``graceful`` is false), wait up to ``timeout`` s.

    Returns GRACEFUL when it went off within the deadline, FORCED when it was powered off
    after it (``force``), or None when it still runs and ``force`` is not set: the caller
    says what that means for it.
    """
    if graceful:
        call("asking %s to shut down" % name, dom.shutdownFlags, 0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _off(dom, where):
                return GRACEFUL
            time.sleep(SHUTDOWN_POLL_S)
        if _off(dom, where):
            return GRACEFUL
    if not force:
        return None
    call("powering off %s" % name, dom.destroy)
    return FORCED


def start(dom, name, where):
    """Start the defined, shut-off domain ``dom`` on ``where``."""
    call("starting %s on %s" % (name, where), dom.create)


def persist_where_it_runs(hypervisor, dom):
    """Make the domain ``dom``, running transient on ``hypervisor``, persistent there as it runs."""
    xml = call("reading the definition of %s on %s" % (dom.name(), hypervisor.name), dom.XMLDesc,
               libvirt.VIR_DOMAIN_XML_SECURE | libvirt.VIR_DOMAIN_XML_MIGRATABLE)
    call("defining %s on %s" % (dom.name(), hypervisor.name), hypervisor.conn.defineXML, xml)
