# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The domain_start module: start defined, shut-off domains on this host again.

A domain is started only once every other hypervisor that could hold it (``peers``) has
answered that it does not run it: one that did not answer could be running it, and a
second running copy would write the same disks. A domain that already runs here is left
as it is, so a second run changes nothing.
"""

from __future__ import annotations

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import (
    ConnectionSettings,
    open_hypervisor,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain_ops import start, state_of
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import (
    HypervisorUnreachable,
    VirtopsError,
)
from ansible_collections.virtops.migration.plugins.module_utils._module import EntryPoint
from ansible_collections.virtops.migration.plugins.module_utils._option_spec import argument_spec

DOMAIN_START_ARGUMENT_SPEC = argument_spec(
    domains=dict(type="list", elements="str", required=True),
    peers=dict(type="list", elements="str", default=[]),
)


def _open_peers(settings, peers):
    """({peer: Hypervisor} of those that answered, {peer: why not} of the others)."""
    opened, silent = {}, {}
    for peer in peers:
        try:
            opened[peer] = open_hypervisor(settings.remote(peer), settings.connect_timeout)
        except HypervisorUnreachable as err:
            silent[peer] = err.msg
    return opened, silent


def _running_on(peers, state):
    """The peers on which the domain (by UUID) is active; a peer that cannot say raises."""
    where = []
    for peer, hypervisor in sorted(peers.items()):
        found = state_of(hypervisor.domain(state.uuid), peer)
        if found is not None and found.active:
            where.append(peer)
    return where


def _shut_off_here(local, names):
    """([(name, domain, state)] of the shut-off ones, {name: 'running' | why not}), from this host alone."""
    shut_off, outcome = [], {}
    for name in names:
        try:
            dom = local.domain(name)
            state = state_of(dom, local.name)
        except VirtopsError as err:
            outcome[name] = "%s not started: %s" % (name, err.msg)
            continue
        if state is None:
            outcome[name] = "%s is not defined on %s" % (name, local.name)
        elif state.active:
            outcome[name] = "running"
        else:
            shut_off.append((name, dom, state))
    return shut_off, outcome


def _start_one(local, peers, silent, name, dom, state, check_mode):
    """None when ``dom`` (shut off here) was started, else why it was not."""
    here = local.name
    if silent:
        return "%s not started on %s: %s did not answer, and could be running it" % (
            name, here, "; ".join("%s (%s)" % item for item in sorted(silent.items())))
    elsewhere = _running_on(peers, state)
    if elsewhere:
        return "%s not started on %s: it runs on %s" % (name, here, ", ".join(elsewhere))
    if not check_mode:
        start(dom, name, here)
    return None


def run_domain_start(module):
    params = module.params
    settings = ConnectionSettings.from_params(params)
    local = open_hypervisor(settings.uri, settings.connect_timeout)
    names = list(dict.fromkeys(params["domains"]))  # each once, in the order given
    peers = {}
    try:
        shut_off, outcome = _shut_off_here(local, names)
        if shut_off:
            # Only now are the peers asked: a run with nothing to start opens no other connection.
            peers, silent = _open_peers(settings, [peer for peer in params["peers"] if peer != local.name])
        for name, dom, state in shut_off:
            try:
                outcome[name] = _start_one(local, peers, silent, name, dom, state, module.check_mode) or "started"
            except VirtopsError as err:
                outcome[name] = "%s not started: %s" % (name, err.msg)
    finally:
        for hypervisor in [local] + list(peers.values()):
            hypervisor.close()
    started = [n for n in names if outcome[n] == "started"]
    running = [n for n in names if outcome[n] == "running"]
    problems = [outcome[n] for n in names if outcome[n] not in ("started", "running")]
    return dict(changed=bool(started), started=started, running=running, problems=problems)


DOMAIN_START_MODULE = EntryPoint(run_domain_start, DOMAIN_START_ARGUMENT_SPEC)
