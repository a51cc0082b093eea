# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""An evacuation plan: where each domain of a host goes, how, in which order, and how long.

Pure Python, no libvirt: it works on host facts (host_info) and pre-check results
(precheck). plan_evacuation() is the entry point; every domain of the source ends up in
exactly one of ``moves``, ``skipped_domains`` and ``unplaceable`` - never silently dropped.

The steps:

1. validate the input (inputs.py: ParameterError naming the faulty host, domain and field);
2. decide each source domain's mode from its state, its ``do_not_migrate`` label and its
   blockers: live, cold, shutdown (in place), skipped, or unplaceable with a reason (modes.py);
3. predict each live migration at its least bandwidth share; one that converges only with
   the whole budget runs alone ("exclusive") (modes.py);
4. place: largest domains first, each on the destination that has the largest share of
   its capacity still free (memory or vCPUs, whichever is scarcer), counting the moves
   already placed - an index of destinations by that share and by their free memory and
   vCPUs (index.py), so a domain costs about log(hosts) instead of a scan of every host,
   big domains included;
5. schedule (schedule.py, with prediction.simulate): exclusive migrations first, then longest
   first, under the concurrency limits and the shared bandwidth budget; domains shut down
   by policy go last, once every migration has finished.

The result and its summary lines are built in summary.py. This module holds the planner's
state (read from the input) and step 4, the placement itself.
"""

from __future__ import annotations

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import ParameterError
from ansible_collections.virtops.migration.plugins.module_utils._planning.inputs import (
    DEFAULT_BANDWIDTH_MIB_S,
    LIVE,
    host_domains,
    index_destinations,
    index_prechecks,
    checked_mapping,
    note_member,
    checked_number,
    source_domain,
    PlanOptions,
)
from ansible_collections.virtops.migration.plugins.module_utils._planning.index import DestinationIndex
from ansible_collections.virtops.migration.plugins.module_utils._planning.modes import check_convergence, classify
from ansible_collections.virtops.migration.plugins.module_utils._planning.reasons import Refusals
from ansible_collections.virtops.migration.plugins.module_utils._planning.schedule import finish_shutdowns, schedule_moves
from ansible_collections.virtops.migration.plugins.module_utils._planning.summary import plan_result


# --- planning ------------------------------------------------------------------------

class _Planner(object):
    def __init__(self, source, hosts, prechecks, opts):
        self.source = source
        self.opts = opts
        checked_mapping("hosts", hosts)
        if not isinstance(source, str) or source not in hosts:
            raise ParameterError("source %r is not in hosts" % (source,))
        raw = checked_mapping("hosts.%s" % source, hosts[source])
        measured = checked_number("hosts.%s" % source, "migration_bandwidth_mib_s", raw.get("migration_bandwidth_mib_s"),
                                  allow_zero=False, optional=True)
        self.budget_assumed = opts.bandwidth_budget_mib_s is None and measured is None
        self.budget = float(opts.bandwidth_budget_mib_s or measured or DEFAULT_BANDWIDTH_MIB_S)
        self.domains = []
        names = {}
        for index, item in enumerate(host_domains(source, raw)):
            dom = source_domain(source, index, item, opts.do_not_migrate_default)
            if dom.name in names:
                raise ParameterError("hosts.%s: two domains are named %r" % (source, dom.name))
            names[dom.name] = dom.name
            if dom.uuid:
                names.setdefault(dom.uuid, dom.name)
            self.domains.append(dom)
        self.by_name = dict((d.name, d) for d in self.domains)
        groups = set(d.group for d in self.domains if d.group is not None)
        (self.destinations, self.maintenance, self.excluded,
         self.group_hosts) = index_destinations(source, hosts, opts, groups)
        self.unknown_excluded = sorted(h for h in opts.exclude if h not in hosts)
        self.prechecks = index_prechecks(source, prechecks, names)
        if opts.unchecked_pairs == "auto":
            # Unchecked pairs are allowed only when this evacuation was not pre-checked at all.
            self.allow_unchecked = not any(isinstance(p, dict) and p.get("source") == source for p in prechecks)
        else:
            self.allow_unchecked = opts.unchecked_pairs == "allow"
        self.destination_names = sorted(self.destinations)
        self.destination_list = [self.destinations[name] for name in self.destination_names]
        self.moves = []
        self.skipped = []
        self.unplaceable = []
        self.index = None
        self.generation = 0
        self.explained = {}

    # -- step 4: placement ----------------------------------------------------------

    @staticmethod
    def _precheck_refusal(mode, check):
        """Whether a pre-check forbids the pair: "blocked", "not_live" or None."""
        if check["verdict"] == "block":
            return "blocked"
        if mode == LIVE and check.get("converges") is False and check.get("escalation") is None:
            return "not_live"
        return None

    def _fits(self, dom, dest):
        if dest.mem_cap <= 0 or dest.cpu_cap <= 0:
            return False
        return not self._counts(dom) or (dest.mem_used + dom.memory <= dest.mem_cap
                                         and dest.cpu_used + dom.vcpus <= dest.cpu_cap)

    def _allowed(self, dom, mode, dest, pairs):
        """Whether ``dest`` may take ``dom`` now (explain() says why not)."""
        check = pairs.get(dest.name) if pairs else None
        if check is not None:
            if self._precheck_refusal(mode, check) is not None:
                return False
        elif not self.allow_unchecked:
            return False
        if dom.group is not None and dest.name in self.group_hosts[dom.group]:
            return False
        return self._fits(dom, dest)

    def _index(self):
        """The destinations by free share, searchable by the room a domain needs (index.py)."""
        if self.index is None:
            self.index = DestinationIndex(self.destination_list)
        return self.index

    def _counts(self, dom):
        return dom.active or self.opts.count_shutoff_domains

    def choose(self, dom, mode):
        """The least-loaded destination that can take ``dom``, or None."""
        pairs = self.prechecks.get(dom.name)
        if not self.allow_unchecked:
            # Only pre-checked pairs qualify: look at those alone, not at the inventory.
            best = None
            for name in sorted(pairs or ()):
                dest = self.destinations.get(name)
                if dest is None or not self._allowed(dom, mode, dest, pairs):
                    continue
                key = (-dest.score(), dest.name)
                if best is None or key < best[0]:
                    best = (key, dest)
            return best[1] if best else None
        counts = self._counts(dom)
        return self._index().best(lambda dest: self._allowed(dom, mode, dest, pairs),
                                  dom.memory if counts else None, dom.vcpus if counts else None)

    def assign(self, dom, dest):
        if self._counts(dom):
            dest.mem_used += dom.memory
            dest.cpu_used += dom.vcpus
        if dom.group is not None:
            note_member(self.group_hosts[dom.group], dest.name, dom.name)
        self.generation += 1
        if self.index is not None:
            self.index.update(dest)

    def explain(self, dom, mode):
        """Why no destination takes ``dom``, grouped by reason (see Refusals).

        Costs a pass over the destinations, so identical requests are answered once per
        state of the plan: in a full inventory every domain of the same size, group and
        mode is refused for the same reasons.
        """
        pairs = self.prechecks.get(dom.name) or {}
        key = None
        if not pairs:
            key = (self.generation, dom.memory, dom.vcpus, self._counts(dom), dom.group, mode)
            if key in self.explained:
                return self.explained[key]
        refusals = Refusals()
        refused = set()
        for name in sorted(pairs):
            if name not in self.destinations:
                continue
            why = self._precheck_refusal(mode, pairs[name])
            if why == "blocked":
                refusals.blocked.append((name, pairs[name].get("reasons") or []))
            elif why == "not_live":
                refusals.not_live.append(name)
            if why is not None:
                refused.add(name)
        if self.allow_unchecked:
            candidates = self.destination_list
        else:
            refusals.unchecked = [name for name in self.destination_names if name not in pairs]
            candidates = [self.destinations[name] for name in sorted(pairs)
                          if name in self.destinations and name not in refused]
        if dom.group is not None:
            members = self.group_hosts[dom.group]
            for name in sorted(members):
                if name in self.destinations and name not in refused and (self.allow_unchecked or name in pairs):
                    refusals.affinity.append((name, members[name] or "unnamed domain"))
                    refused.add(name)
        counts = self._counts(dom)
        memory, vcpus = dom.memory, dom.vcpus
        for dest in candidates:
            if dest.mem_cap <= 0 or dest.cpu_cap <= 0:
                if dest.name not in refused:
                    refusals.full.append(dest.name)
            elif counts and dest.mem_used + memory > dest.mem_cap:
                if dest.name not in refused:
                    refusals.memory.append((dest.name, dest.mem_cap - dest.mem_used))
            elif counts and dest.cpu_used + vcpus > dest.cpu_cap:
                if dest.name not in refused:
                    refusals.vcpus.append((dest.name, dest.cpu_cap - dest.cpu_used))
        lines = refusals.lines(dom, self.maintenance, self.excluded, self.destinations)
        if key is not None:
            self.explained[key] = lines
        return lines

    def place(self, candidates):
        placed = []
        # Largest first, so the big domains find room before the small ones fill it.
        for dom, mode, why, exclusive in sorted(candidates, key=lambda c: (-c[0].memory, -c[0].vcpus, c[0].name)):
            dest = self.choose(dom, mode)
            if dest is None:
                self.add_unplaceable(dom, self.explain(dom, mode))
                continue
            self.assign(dom, dest)
            placed.append((dom, mode, why, exclusive, dest.name))
        return placed

    # -- output ---------------------------------------------------------------------

    def add_unplaceable(self, dom, reasons):
        self.unplaceable.append(dict(dom.identity, state=dom.state, reasons=reasons))

    def run(self):
        """Every step after the input's: modes, convergence, placement, schedule; then the result."""
        placed = self.place(check_convergence(self, classify(self)))
        makespan, self.sent_mib = schedule_moves(self, placed)
        total = finish_shutdowns(self.moves, makespan, self.opts.shutdown_seconds)
        return plan_result(self, total)


def plan_evacuation(source, hosts, prechecks=None, options=None):
    """Plan the evacuation of ``source``; see the module's RETURN for what comes back.

    ``options`` is a PlanOptions (defaults when None). Raises ParameterError on bad input.
    """
    opts = options if options is not None else PlanOptions()
    return _Planner(source, hosts, prechecks or [], opts).run()
