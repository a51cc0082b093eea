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
   blockers: live, cold, shutdown (in place), skipped, or unplaceable with a reason;
3. predict each live migration at its least bandwidth share; one that converges only with
   the whole budget runs alone ("exclusive");
4. place: largest domains first, each on the destination that has the largest share of
   its capacity still free (memory or vCPUs, whichever is scarcer), counting the moves
   already placed - an index of destinations by that share and by their free memory and
   vCPUs (index.py), so a domain costs about log(hosts) instead of a scan of every host,
   big domains included;
5. schedule (prediction.simulate): exclusive migrations first, then longest
   first, under the concurrency limits and the shared bandwidth budget; domains shut down
   by policy go last, once every migration has finished.
"""

from __future__ import annotations

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import ParameterError
from ansible_collections.virtops.migration.plugins.module_utils._planning.inputs import (
    COLD,
    DEFAULT_BANDWIDTH_MIB_S,
    INACTIVE_STATES,
    LIVE,
    LIVE_STATES,
    MAX_NAMES,
    SHUTDOWN,
    _domains,
    _index_destinations,
    _index_prechecks,
    _mapping,
    _note_member,
    _number,
    _source_domain,
    PlanOptions,
)
from ansible_collections.virtops.migration.plugins.module_utils._planning.index import DestinationIndex
from ansible_collections.virtops.migration.plugins.module_utils._planning.reasons import Refusals, counted, fmt, host_names
from ansible_collections.virtops.migration.plugins.module_utils._planning.prediction import (
    Job,
    ladder_rank,
    predict_cold,
    predict_migration,
    simulate,
)


# --- planning ------------------------------------------------------------------------

class _Planner(object):
    def __init__(self, source, hosts, prechecks, opts):
        self.source = source
        self.opts = opts
        _mapping("hosts", hosts)
        if not isinstance(source, str) or source not in hosts:
            raise ParameterError("source %r is not in hosts" % (source,))
        raw = _mapping("hosts.%s" % source, hosts[source])
        measured = _number("hosts.%s" % source, "migration_bandwidth_mib_s", raw.get("migration_bandwidth_mib_s"),
                           allow_zero=False, optional=True)
        self.budget_assumed = opts.bandwidth_budget_mib_s is None and measured is None
        self.budget = float(opts.bandwidth_budget_mib_s or measured or DEFAULT_BANDWIDTH_MIB_S)
        self.domains = []
        names = {}
        for index, item in enumerate(_domains(source, raw)):
            dom = _source_domain(source, index, item, opts.do_not_migrate_default)
            if dom.name in names:
                raise ParameterError("hosts.%s: two domains are named %r" % (source, dom.name))
            names[dom.name] = dom.name
            if dom.uuid:
                names.setdefault(dom.uuid, dom.name)
            self.domains.append(dom)
        self.by_name = dict((d.name, d) for d in self.domains)
        groups = set(d.group for d in self.domains if d.group is not None)
        (self.destinations, self.maintenance, self.excluded,
         self.group_hosts) = _index_destinations(source, hosts, opts, groups)
        self.unknown_excluded = sorted(h for h in opts.exclude if h not in hosts)
        self.prechecks = _index_prechecks(source, prechecks, names)
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

    # -- step 2: what each domain needs ---------------------------------------------

    def classify(self):
        """Split the source's domains into skipped, shut down in place, unplaceable, to place."""
        to_place = []
        for dom in self.domains:
            policy = dom.policy
            if policy == "skip":
                self.skipped.append(dict(dom.identity, policy="skip", state=dom.state,
                                         reason="do_not_migrate: skip - left on the source as it is"))
                continue
            if policy == SHUTDOWN:
                if dom.active:
                    self.moves.append(self._move(dom, SHUTDOWN, None,
                                                 "do_not_migrate: shutdown - shut down on the source, not moved"))
                else:
                    self.skipped.append(dict(dom.identity, policy=SHUTDOWN, state=dom.state,
                                             reason="do_not_migrate: shutdown - already shut off, left defined "
                                                    "on the source"))
                continue
            if not dom.persistent and (policy == COLD or not dom.active):
                self._unplaceable(dom, ["transient domain: a cold move would lose its definition (define it "
                                        "persistently first)"])
                continue
            if policy == COLD:
                to_place.append((dom, COLD, "do_not_migrate: cold - shut down, moved, started on the destination"
                                 if dom.active else "do_not_migrate: cold - shut off, its definition is moved"))
            elif not dom.active:
                to_place.append((dom, COLD, "shut off: its definition%s is moved"
                                 % (" and %s MiB of local disks" % fmt(round(dom.disk_mib)) if dom.disk_mib else "")))
            elif dom.state not in LIVE_STATES:
                self._unplaceable(dom, ["state %s cannot be migrated; retry once it is running or shut off"
                                        % dom.state])
            elif dom.blockers:
                why = "live migration blocked by: %s" % ", ".join(dom.blockers)
                if self._fallback_cold(dom, why):
                    to_place.append((dom, COLD, why + " - moved cold instead (live_fallback=cold)"))
            else:
                to_place.append((dom, LIVE, None))
        return to_place

    def _fallback_cold(self, dom, why, hint=""):
        """Whether a domain that cannot move live moves cold; if not, it is unplaceable."""
        if self.opts.live_fallback != COLD:
            self._unplaceable(dom, [why + " (live_fallback=cold would move it cold%s)" % hint])
            return False
        if not dom.persistent:
            self._unplaceable(dom, [why + "; and it is transient: a cold move would lose its definition"])
            return False
        return True

    def dirty_rate(self, dom):
        if dom.state == "paused":
            return 0.0
        return dom.dirty_rate if dom.dirty_rate is not None else self.opts.assumed_dirty_rate_mib_s

    def sends(self, dom, mode):
        return mode == LIVE or dom.disk_mib > 0

    # -- step 3: live migrations that cannot converge -------------------------------

    def check_convergence(self, to_place):
        """Live domains predicted not to converge at the least share they could get."""
        senders = sum(1 for dom, mode, _why in to_place if self.sends(dom, mode))
        least_share = self.budget / max(1, min(self.opts.max_parallel_per_source, senders))
        out = []
        for dom, mode, why in to_place:
            exclusive = False
            if mode == LIVE:
                at_least = predict_migration(dom.memory, self.dirty_rate(dom), least_share, dom.disk_mib,
                                             self.opts.ladder, self.opts.setup_seconds)
                if not at_least["converges"]:
                    alone = predict_migration(dom.memory, self.dirty_rate(dom), self.budget, dom.disk_mib,
                                              self.opts.ladder, self.opts.setup_seconds)
                    if alone["converges"]:
                        exclusive = True
                    else:
                        reason = "live migration predicted not to converge at the whole budget of %s MiB/s: %s" % (
                            fmt(self.budget), alone["reason"])
                        if not self._fallback_cold(dom, reason, "; auto_converge or postcopy may make it converge"):
                            continue
                        mode, why = COLD, reason + " - moved cold instead (live_fallback=cold)"
            out.append((dom, mode, why, exclusive))
        return out

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
            _note_member(self.group_hosts[dom.group], dest.name, dom.name)
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
                self._unplaceable(dom, self.explain(dom, mode))
                continue
            self.assign(dom, dest)
            placed.append((dom, mode, why, exclusive, dest.name))
        return placed

    # -- step 5: schedule -----------------------------------------------------------

    def schedule(self, placed):
        opts = self.opts
        details = {}
        jobs = []

        def duration_of(dom, mode, dest):
            check = (self.prechecks.get(dom.name) or {}).get(dest)

            def duration(share):
                if mode == LIVE:
                    pred = predict_migration(dom.memory, self.dirty_rate(dom), share, dom.disk_mib,
                                             opts.ladder, opts.setup_seconds)
                    if not pred["converges"]:
                        # Only exclusive jobs, predicted here before they get the whole budget.
                        pred = predict_migration(dom.memory, self.dirty_rate(dom), self.budget, dom.disk_mib,
                                                 opts.ladder, opts.setup_seconds)
                    seconds, downtime, escalation = pred["seconds"], pred["downtime_ms"], pred["escalation"]
                    # A pre-check predicted this pair at its own measured bandwidth: never promise better.
                    if check is not None:
                        if check.get("predicted_seconds") is not None:
                            seconds = max(seconds, check["predicted_seconds"])
                        if check.get("predicted_downtime_ms") is not None:
                            downtime = max(downtime, int(round(check["predicted_downtime_ms"])))
                        if ladder_rank(check.get("escalation")) > ladder_rank(escalation):
                            escalation = check["escalation"]
                else:
                    seconds, downtime = predict_cold(dom.disk_mib, share or self.budget, dom.active,
                                                     opts.setup_seconds, opts.shutdown_seconds)
                    downtime = int(round(downtime))
                    escalation = None
                details[dom.name] = (seconds, downtime, escalation)
                return seconds
            return duration

        # Longest first (at the least share), which keeps the tail of the schedule short.
        ordered = []
        for dom, mode, why, exclusive, dest in placed:
            sends = self.sends(dom, mode)
            job = Job(dom.name, dest, duration_of(dom, mode, dest), sends=sends, exclusive=exclusive)
            nominal = job.duration(self.budget / max(1, opts.max_parallel_per_source)) if sends else 0.0
            ordered.append((-nominal, dom.name, job))
        ordered.sort(key=lambda item: item[:2])
        jobs = [item[2] for item in ordered]
        slots = simulate(jobs, self.budget, opts.max_parallel_per_source, opts.max_parallel_per_destination)
        sent_mib = 0.0
        for dom, mode, why, exclusive, dest in placed:
            slot = slots[dom.name]
            seconds, downtime, escalation = details[dom.name]  # from the run at its share
            move = self._move(dom, mode, dest, why)
            move.update(order=slot["order"], wave=slot["wave"], start_offset_s=round(slot["start"], 1),
                        finish_offset_s=round(slot["finish"], 1), predicted_seconds=round(seconds, 1),
                        predicted_downtime_ms=downtime, bandwidth_mib_s=round(slot["bandwidth"], 1),
                        escalation=escalation, exclusive=exclusive)
            check = (self.prechecks.get(dom.name) or {}).get(dest)
            if check is not None and check["verdict"] == "warn":
                move["warnings"].extend("pre-check: %s" % r for r in (check.get("reasons") or []))
            if mode == COLD and dom.blockers:
                move["warnings"].append("devices that block live migration (%s) must exist on %s to start it there"
                                        % (", ".join(dom.blockers), dest))
            if self.sends(dom, mode):
                sent_mib += (dom.memory if mode == LIVE else 0.0) + dom.disk_mib
            self.moves.append(move)
        makespan = max([s["finish"] for s in slots.values()] or [0.0])
        return makespan, sent_mib

    def finish_shutdowns(self, makespan):
        """Domains shut down by policy go last: an aborted evacuation leaves them running."""
        last_wave = max([m["wave"] for m in self.moves if m["mode"] != SHUTDOWN] or [0])
        order = max([m["order"] for m in self.moves if m["mode"] != SHUTDOWN] or [0])
        end = makespan
        for move in sorted((m for m in self.moves if m["mode"] == SHUTDOWN), key=lambda m: m["domain"]):
            order += 1
            move.update(order=order, wave=last_wave + 1, start_offset_s=round(makespan, 1),
                        finish_offset_s=round(makespan + self.opts.shutdown_seconds, 1),
                        predicted_seconds=round(self.opts.shutdown_seconds, 1), predicted_downtime_ms=None,
                        bandwidth_mib_s=0.0, escalation=None, exclusive=False)
            end = makespan + self.opts.shutdown_seconds
        return end

    # -- output ---------------------------------------------------------------------

    def _move(self, dom, mode, destination, reason):
        # Every key is set here, in the order a person reads them; the schedule fills in the rest.
        return dict(dom.identity, destination=destination, mode=mode, reason=reason, order=None, wave=None,
                    start_offset_s=None, finish_offset_s=None, predicted_seconds=None, predicted_downtime_ms=None,
                    bandwidth_mib_s=None, escalation=None, exclusive=False, state=dom.state, memory_mib=dom.memory,
                    vcpus=dom.vcpus, local_disk_mib=round(dom.disk_mib, 1), warnings=[])

    def _unplaceable(self, dom, reasons):
        self.unplaceable.append(dict(dom.identity, state=dom.state, reasons=reasons))

    def run(self):
        to_place = self.classify()
        candidates = self.check_convergence(to_place)
        placed = self.place(candidates)
        makespan, self.sent_mib = self.schedule(placed)
        total = self.finish_shutdowns(makespan)
        bound = self.sent_mib / self.budget
        self.moves.sort(key=lambda m: m["order"])
        self.skipped.sort(key=lambda s: s["domain"])
        self.unplaceable.sort(key=lambda u: u["domain"])
        stays_running = [s["domain"] for s in self.skipped if s["state"] not in INACTIVE_STATES]
        can_empty = not self.unplaceable and not stays_running
        destinations = {}
        for move in self.moves:
            if move["destination"] is None:
                continue
            dest = self.destinations[move["destination"]]
            entry = destinations.setdefault(dest.name, dict(
                moves=0, memory_mib=0, vcpus=0,
                memory_free_after_mib=round(dest.mem_cap - dest.mem_used, 1),
                vcpus_free_after=round(dest.cpu_cap - dest.cpu_used, 1)))
            entry["moves"] += 1
            entry["memory_mib"] += move["memory_mib"]
            entry["vcpus"] += move["vcpus"]
        result = dict(
            changed=False,
            source=self.source,
            can_empty=can_empty,
            moves=self.moves,
            skipped_domains=self.skipped,
            unplaceable=self.unplaceable,
            destinations=destinations,
            predicted_total_seconds=round(total, 1),
            bound_seconds=round(bound, 1),
            bandwidth_budget_mib_s=round(self.budget, 1),
        )
        result["summary"] = self.summary(result, stays_running)
        return result

    def summary(self, result, stays_running):
        moves = result["moves"]
        by_mode = dict((mode, sum(1 for m in moves if m["mode"] == mode)) for mode in (LIVE, COLD, SHUTDOWN))
        lines = []
        head = "%s %s: %d domains - %d live, %d cold, %d shut down in place, %d skipped, %d unplaceable" % (
            self.source, "can be emptied" if result["can_empty"] else "cannot be emptied", len(self.domains),
            by_mode[LIVE], by_mode[COLD], by_mode[SHUTDOWN], len(result["skipped_domains"]), len(result["unplaceable"]))
        lines.append(head + ".")
        if result["unplaceable"]:
            lines.append("Unplaceable: %s." % host_names([u["domain"] for u in result["unplaceable"]]))
        if stays_running:
            lines.append("Skipped by policy and still running on the source: %s." % host_names(stays_running))
        if moves:
            lines.append("Predicted %s s in total (no faster than %s s: %s MiB over %s MiB/s); %s, at most %d per "
                         "source and %d per destination at a time." % (
                             fmt(result["predicted_total_seconds"]), fmt(result["bound_seconds"]),
                             fmt(round(self.sent_mib)), fmt(self.budget),
                             counted(len(result["destinations"]), "destination"),
                             self.opts.max_parallel_per_source, self.opts.max_parallel_per_destination))
        escalated = [m for m in moves if m.get("escalation")]
        if escalated:
            lines.append("Escalations predicted: %s." % ", ".join(
                "%s (%s)" % (m["domain"], m["escalation"]) for m in escalated[:MAX_NAMES])
                + ("" if len(escalated) <= MAX_NAMES else " and %d more" % (len(escalated) - MAX_NAMES)))
        worst = max((m for m in moves if m["mode"] == LIVE), key=lambda m: (m["predicted_downtime_ms"], m["domain"]),
                    default=None)
        if worst is not None:
            lines.append("Longest live downtime: %d ms (%s)." % (worst["predicted_downtime_ms"], worst["domain"]))
        assumed = []
        if self.budget_assumed:
            assumed.append("the source's bandwidth was not measured: %s MiB/s assumed" % fmt(self.budget))
        unmeasured = sum(1 for m in moves if m["mode"] == LIVE and m["state"] != "paused"
                         and self.by_name[m["domain"]].dirty_rate is None)
        if unmeasured:
            assumed.append("dirty rate not measured for %s: %s MiB/s assumed" % (
                counted(unmeasured, "domain"), fmt(self.opts.assumed_dirty_rate_mib_s)))
        if self.unknown_excluded:
            assumed.append("exclude names hosts not in the inventory: %s" % host_names(self.unknown_excluded))
        if assumed:
            lines.append("Note: %s." % "; ".join(assumed))
        return lines


def plan_evacuation(source, hosts, prechecks=None, options=None):
    """Plan the evacuation of ``source``; see the module's RETURN for what comes back.

    ``options`` is a PlanOptions (defaults when None). Raises ParameterError on bad input.
    """
    opts = options if options is not None else PlanOptions()
    return _Planner(source, hosts, prechecks or [], opts).run()
