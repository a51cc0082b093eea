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
from ansible_collections.virtops.migration.plugins.module_utils._options import argument_spec

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


def _start_one(local, peers, silent, name, check_mode):
    """('started' | 'running', None) or (None, why it was not started)."""
    here = local.name
    state = state_of(local.domain(name), here)
    if state is None:
        return None, "%s is not defined on %s" % (name, here)
    if state.active:
        return "running", None
    if silent:
        return None, "%s not started on %s: %s did not answer, and could be running it" % (
            name, here, "; ".join("%s (%s)" % item for item in sorted(silent.items())))
    elsewhere = _running_on(peers, state)
    if elsewhere:
        return None, "%s not started on %s: it runs on %s" % (name, here, ", ".join(elsewhere))
    if not check_mode:
        start(local.domain(state.uuid), name, here)
    return "started", None


def run_domain_start(module):
    params = module.params
    settings = ConnectionSettings.from_params(params)
    local = open_hypervisor(settings.uri, settings.connect_timeout)
    peers, silent = _open_peers(settings, [peer for peer in params["peers"] if peer != local.name])
    started, running, problems = [], [], []
    try:
        for name in params["domains"]:
            try:
                outcome, problem = _start_one(local, peers, silent, name, module.check_mode)
            except VirtopsError as err:
                outcome, problem = None, "%s not started: %s" % (name, err.msg)
            if outcome == "started":
                started.append(name)
            elif outcome == "running":
                running.append(name)
            else:
                problems.append(problem)
    finally:
        for hypervisor in [local] + list(peers.values()):
            hypervisor.close()
    return dict(changed=bool(started), started=started, running=running, problems=problems)


DOMAIN_START_MODULE = EntryPoint(run_domain_start, DOMAIN_START_ARGUMENT_SPEC)
