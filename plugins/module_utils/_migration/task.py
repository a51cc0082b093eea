# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The entry point of virtops.migration.migrate: decide, check, then migrate.

run_migrate(module) validates the input, opens the two libvirt connections, decides what
must happen (request.decide), runs the pre-checks, and in check mode stops there.
Otherwise MigrateTask performs the one decided action - a live migration (live.py), a cold
one (cold.py), resuming a failed post-copy migration or finishing a half-done move - and
verifies the outcome on both hosts.
"""

from __future__ import annotations

import time

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.bindings import libvirt
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import ConnectionSettings, local_address_of, open_hypervisor
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain_ops import persist_where_it_runs, state_of
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import (
    HypervisorUnreachable,
    LibvirtError,
    MigrationFailed,
    ParameterError,
    PrecheckFailed,
    VirtopsError,
    call,
)
from ansible_collections.virtops.migration.plugins.module_utils._migration.cold import ColdMigration
from ansible_collections.virtops.migration.plugins.module_utils._migration.live import LiveMigration
from ansible_collections.virtops.migration.plugins.module_utils._migration.plan import MigrationChecks
from ansible_collections.virtops.migration.plugins.module_utils._migration.request import (
    COLD,
    FINISH,
    LIVE,
    MIGRATE_ARGUMENT_SPEC,
    NONE,
    RESUME_POSTCOPY,
    MigrationRequest,
    decide,
)
from ansible_collections.virtops.migration.plugins.module_utils._module import EntryPoint


def run_migrate(module):
    """Entry point for the migrate module: returns the result dict for exit_json."""
    started = time.monotonic()
    params = module.params
    settings = ConnectionSettings.from_params(params)
    dest_uri = settings.remote(params["destination"])
    request = MigrationRequest.from_params(params, dest_uri)
    if settings.uri.is_local:
        address = local_address_of(dest_uri.host)
        if address is not None:
            raise ParameterError("destination %s is this host (it resolves to %s, an address of this machine): "
                                 "the destination must be another hypervisor" % (dest_uri.host, address))
    elif settings.uri.host == dest_uri.host:
        raise ParameterError("destination %s is the source host itself" % dest_uri.host)
    src = open_hypervisor(settings.uri, settings.connect_timeout)
    try:
        dst = open_hypervisor(dest_uri, settings.connect_timeout)
        try:
            return MigrateTask(request, src, dst, module.check_mode, module.warn, started).run()
        finally:
            dst.close()
    finally:
        src.close()


# How long a failure waits for a broken libvirt connection to come back (systemd restarts a
# killed libvirtd within seconds) before it gives up saying where the domain is.
RECONNECT_WAIT_S = 30


def _state_dict(state, hypervisor, unreadable=None):
    """A host's entry of RV(where). ``unreadable``: why the host could not be read (its state
    is then ``unknown`` and ``present`` null: the module does not know)."""
    if unreadable is not None:
        return dict(host=hypervisor.name, present=None, state="unknown", error=unreadable)
    out = dict(host=hypervisor.name, present=state is not None)
    if state is not None:
        out.update(state.as_dict())
    return out


class MigrateTask(object):
    """One migrate task: the decision, the checks and the action, for one domain."""

    def __init__(self, request, src, dst, check_mode, warn, started=None):
        self.request = request
        self.src = src
        self.dst = dst
        self.check_mode = check_mode
        self.warn = warn
        self.checks = []
        self.src_dom = None
        self.dst_dom = None
        self.started = started if started is not None else time.monotonic()
        # Why a host could not be read at the last read_each() (by host name); empty when both were.
        self.unreadable = {}
        # Why a broken connection could not be opened again at the last refresh() (by host name).
        self.reopen_errors = {}

    # --- where things stand ----------------------------------------------------------

    def _find(self):
        self.src_dom = self.src.domain(self.request.name)
        key = self.src_dom.UUIDString() if self.src_dom is not None else self.request.name
        self.dst_dom = self.dst.domain(key)
        if self.dst_dom is None and self.src_dom is not None:
            self.dst_dom = self.dst.domain(self.request.name)

    def _states(self):
        return state_of(self.src_dom, self.src.name), state_of(self.dst_dom, self.dst.name)

    def refresh(self):
        """Both hosts' states of the domain, read now. A connection that broke under the task (its
        libvirt daemon killed or restarted mid-migration) is opened again first, for up to
        RECONNECT_WAIT_S seconds, so that a failure still says where the domain is."""
        self.reopen_errors = {}
        try:
            return self._read_both()
        except LibvirtError:
            reopened = []
            for hyp in (self.src, self.dst):
                try:
                    reopened.append(hyp.reopen_if_broken(RECONNECT_WAIT_S))
                except HypervisorUnreachable as err:
                    self.reopen_errors[hyp.name] = err.msg
            if self.reopen_errors:
                raise HypervisorUnreachable("; ".join(sorted(self.reopen_errors.values())))
            if not any(reopened):
                raise
        return self._read_both()

    def _read_both(self):
        uuid = None
        for dom in (self.src_dom, self.dst_dom):
            if dom is not None:
                uuid = dom.UUIDString()
                break
        key = uuid or self.request.name
        self.src_dom = self.src.domain(key)
        self.dst_dom = self.dst.domain(key)
        return self._states()

    def read_each(self, again=False):
        """Both hosts' states, as refresh() reads them; but a host that cannot be read even after
        reopening its connection (its daemon hung or gone, its host unreachable) gives None, and
        why is kept in ``unreadable``: None there means unknown, never absent.

        ``again``: a second read after acting on what the first one found; a host that could not
        be read then stays unknown without being tried again (it would cost RECONNECT_WAIT_S)."""
        kept = dict(self.unreadable) if again else {}
        self.unreadable = {}
        if not kept:
            try:
                return self.refresh()
            except (LibvirtError, HypervisorUnreachable):
                pass
        known = [dom.UUIDString() for dom in (self.src_dom, self.dst_dom) if dom is not None]
        key = known[0] if known else self.request.name
        states = []
        for hyp, attr in ((self.src, "src_dom"), (self.dst, "dst_dom")):
            if hyp.name in kept:
                self.unreadable[hyp.name] = kept[hyp.name]
                states.append(None)
                continue
            try:
                if not hyp.alive():
                    raise HypervisorUnreachable("its libvirt connection broke and could not be opened again: %s" % (
                        self.reopen_errors.get(hyp.name, "no answer")))
                dom = hyp.domain(key)
                setattr(self, attr, dom)
                states.append(state_of(dom, hyp.name))
            except (LibvirtError, HypervisorUnreachable) as err:
                self.unreadable[hyp.name] = err.msg
                states.append(None)
        return tuple(states)

    def where_now(self, states=None):
        """Where the domain is now, read once from both hosts (or as ``states`` just read by
        read_each()): (the RV(where) dict, a line for messages). A host that cannot be read is
        reported ``unknown``, with why."""
        src_state, dst_state = states if states is not None else self.read_each()

        def one(state, hyp):
            if hyp.name in self.unreadable:
                return "%s: unknown (cannot read it: %s)" % (hyp.name, self.unreadable[hyp.name])
            return "%s: %s" % (hyp.name, state.describe() if state is not None else "absent")

        where = dict(source=_state_dict(src_state, self.src, self.unreadable.get(self.src.name)),
                     destination=_state_dict(dst_state, self.dst, self.unreadable.get(self.dst.name)))
        return where, "%s; %s" % (one(src_state, self.src), one(dst_state, self.dst))

    # --- the task --------------------------------------------------------------------

    def run(self):
        if self.src.hostname == self.dst.hostname or (self.src.host_uuid and self.src.host_uuid == self.dst.host_uuid):
            raise ParameterError(
                "destination %s is the source host itself (host name %s, host UUID %s)"
                % (self.dst.uri, self.dst.hostname, self.dst.host_uuid))
        self._find()
        src_state, dst_state = self._states()
        decision = decide(self.request.mode, self.request.persistent, src_state, dst_state,
                          self.src.name, self.dst.name, self.request.name)
        for warning in decision.warnings:
            self.warn(warning)
        uuid = (src_state or dst_state).uuid
        name = (src_state or dst_state).name
        result = dict(
            changed=decision.changes,
            operation=decision.action,
            reason=decision.reason,
            mode=decision.mode,
            domain=dict(name=name, uuid=uuid),
            source=dict(uri=str(self.src.uri), host=self.src.name),
            destination=dict(uri=str(self.dst.uri), host=self.dst.name),
            checks=self.checks,
            escalations=[],
            completed_by=None,
        )
        before = dict(source=_state_dict(src_state, self.src), destination=_state_dict(dst_state, self.dst))
        try:
            return self._act(decision, result, before, src_state, dst_state)
        except VirtopsError as err:
            self._say_where(err, before)
            raise

    def _say_where(self, err, before):
        """Give every failure after the domain was found RV(where): what the failure read, else
        ``before`` when it was refused before anything started, else a fresh read of both hosts
        (none when even that fails: the message says what happened)."""
        if "where" in err.details:
            return
        if isinstance(err, PrecheckFailed):
            err.details["where"] = before
            return
        try:
            err.details["where"] = self.where_now()[0]
        except VirtopsError:
            pass

    def _act(self, decision, result, before, src_state, dst_state):
        if decision.action == NONE:
            result["state"] = before
            result["diff"] = dict(before=before, after=before)
            return result
        plan = None
        if decision.action in (LIVE, COLD):
            plan = MigrationChecks(self).run(decision, src_state, dst_state)
            result["plan"] = plan.as_dict()
        if self.check_mode:
            result["state"] = before
            result["diff"] = dict(before=before, after=self._predicted_after(decision, src_state, dst_state))
            return result
        if decision.action == LIVE:
            result.update(LiveMigration(self, plan).run())
        elif decision.action == COLD:
            result.update(ColdMigration(self, plan, src_state).run())
        elif decision.action == RESUME_POSTCOPY:
            result.update(LiveMigration(self, MigrationChecks(self).resume_plan()).resume_after_failure(None))
        elif decision.action == FINISH:
            result.update(self.finish(decision.steps))
        result["state"] = self.where_now()[0]
        result["diff"] = dict(before=before, after=result["state"])
        self._verify(decision, result["state"])
        return result

    def _predicted_after(self, decision, src_state, dst_state):
        """Where the domain will be if the decided action succeeds (for check mode's diff)."""
        runs = (src_state or dst_state).active or decision.action == FINISH
        keep_source = not self.request.persistent and src_state is not None and src_state.persistent
        source = dict(host=self.src.name, present=keep_source)
        if keep_source:
            source.update(state="shutoff", persistent=True, postcopy_failed=False)
        destination = dict(host=self.dst.name, present=True, state="running" if runs else "shutoff",
                           persistent=self.request.persistent or bool(dst_state and dst_state.persistent),
                           postcopy_failed=False)
        return dict(source=source, destination=destination)

    def _verify(self, decision, state):
        """Check the outcome on both hosts, independently of what libvirt returned."""
        src, dst = state["source"], state["destination"]
        problems = []
        if not dst["present"]:
            problems.append("the domain is not on %s" % dst["host"])
        if src["present"] and src.get("state") != "shutoff":
            problems.append("the domain is still active on %s (%s)" % (src["host"], src.get("state")))
        if self.request.persistent:
            if src["present"]:
                problems.append("%s still holds a definition of the domain" % src["host"])
            if dst["present"] and not dst.get("persistent"):
                problems.append("the domain is not persistent on %s" % dst["host"])
        for problem in problems:
            self.warn("after the migration: " + problem)

    # --- finishing a half-done move --------------------------------------------------

    def persistent_definition(self, src_state):
        """The source's definition to make persistent on the destination after the move.

        Its inactive configuration when it has one (``src_state.persistent``: what libvirt's
        PERSIST_DEST would carry, pending edits included), else the running one. Read before the
        migration: once the source has undefined the domain it is gone.
        """
        flags_value = libvirt.VIR_DOMAIN_XML_SECURE | libvirt.VIR_DOMAIN_XML_MIGRATABLE
        if src_state.persistent:
            flags_value |= libvirt.VIR_DOMAIN_XML_INACTIVE
        return call("reading the definition of the domain on %s" % self.src.name, self.src_dom.XMLDesc, flags_value)

    def persist_on_destination(self, xml, what):
        """Define the moved domain on the destination (it runs there as a transient domain).

        The source undefined it when the migration completed, so no moment has two persistent
        definitions. Should this fail, the domain runs on the destination without a persistent
        definition anywhere: say so, and how a re-run finishes it.
        """
        try:
            call("defining the domain on %s" % self.dst.name, self.dst.conn.defineXML, xml)
        except LibvirtError as err:
            where, where_text = self.where_now()
            raise MigrationFailed(
                "%s moved %s to %s, but defining it there failed: %s. It runs on %s as a transient domain and no "
                "host holds a persistent definition of it: re-run this task to define it there. Where the domain "
                "is now: %s." % (what, self.request.name, self.dst.name, err.msg, self.dst.name, where_text),
                changed=True, where=where) from None

    def finish(self, steps, xml=None):
        done = []
        if "persist_destination" in steps:
            if xml is None:
                persist_where_it_runs(self.dst, self.dst_dom)
            else:
                call("defining the domain on %s" % self.dst.name, self.dst.conn.defineXML, xml)
            done.append("defined the domain on %s" % self.dst.name)
        if "undefine_source" in steps:
            call("undefining the leftover definition on %s" % self.src.name, self.src_dom.undefineFlags,
                 _undefine_flags())
            done.append("undefined the leftover inactive definition on %s" % self.src.name)
        return dict(finished=done)


def _undefine_flags():
    names = ("VIR_DOMAIN_UNDEFINE_MANAGED_SAVE", "VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA",
             "VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA", "VIR_DOMAIN_UNDEFINE_KEEP_NVRAM")
    value = 0
    for name in names:
        value |= getattr(libvirt, name, 0)
    return value


# The migrate module: its entry function and the argument spec it runs with.
MIGRATE_MODULE = EntryPoint(run_migrate, MIGRATE_ARGUMENT_SPEC)
