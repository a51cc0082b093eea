# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""After an evacuation and around a restore: where each domain is, judged from host facts.

Plain Python on the control node (no libvirt): the facts are the host_info results of
every hypervisor, by inventory name, read again after the moves, so the verdicts do not
depend on what the moves themselves reported.

- evacuation_problems(): every domain the evacuation moved runs where it went (when it ran)
  and is persistent there, is active on no other host, and no longer is on the source; one it
  shut down is off;
- restore_plan(): which evacuated domain comes back from which host, which to start again;
- restore_problems(): every domain is back on the host, active, and nowhere else.

Entry points of the evacuation_verify and restore_plan modules.
"""

from __future__ import annotations

import re

from ansible_collections.virtops.migration.plugins.module_utils._evacuation.record import FAILED, MOVED, SHUT_DOWN, SKIPPED, UNKNOWN
from ansible_collections.virtops.migration.plugins.module_utils._evacuation.request import ACTIVE_STATES
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import ParameterError
from ansible_collections.virtops.migration.plugins.module_utils._module import EntryPoint
from ansible_collections.virtops.migration.plugins.module_utils._option_spec import argument_spec
from ansible_collections.virtops.migration.plugins.module_utils._options import EVACUATION_RESULT, FACTS, SOURCE

SHUTOFF = "shutoff"


def _domains_on(facts, host):
    return (facts.get(host) or {}).get("domains") or []


def _named(facts, host, name):
    return [dom for dom in _domains_on(facts, host) if dom.get("name") == name]


def _holds(dom):
    """Whether a host still holds the domain: active there, or defined (a transient shut-off one is gone)."""
    return dom.get("state") != SHUTOFF or bool(dom.get("persistent"))


def evacuation_problems(source, records, facts, empty=False, empty_pattern=None):
    """What is not where the evacuation's journal ``records`` say, by the ``facts`` read afterwards.

    ``empty``: the source was to be emptied of every domain; any other domain still there (running,
    transient or not, or defined) is a problem too - it may have been moved in by another evacuation.
    ``empty_pattern``: the same for the domains whose name it matches (re.match), when the source was
    to be emptied of those.
    """
    problems = []
    if empty or empty_pattern is not None:
        accounted = set(rec["domain"] for rec in records if rec["status"] in (MOVED, SHUT_DOWN, SKIPPED))
        for dom in _domains_on(facts, source):
            if empty_pattern is not None and not empty and not re.match(empty_pattern, dom.get("name") or ""):
                continue
            if dom.get("name") not in accounted and _holds(dom):
                problems.append("%s is still on %s (%s%s), and this evacuation did not move it" % (
                    dom.get("name"), source, dom.get("state"), "" if dom.get("persistent", True) else ", transient"))
    here = [dom.get("name") for dom in _domains_on(facts, source)]
    for rec in records:
        name = rec["domain"]
        if rec["status"] == MOVED:
            if name in here:
                problems.append("%s is still defined on %s" % (name, source))
            there = _named(facts, rec.get("destination"), name)
            if not there:
                problems.append("%s is not on %s" % (name, rec.get("destination")))
            elif rec.get("state") in ACTIVE_STATES and there[0].get("state") not in ACTIVE_STATES \
                    or rec.get("state") == "running" and there[0].get("state") != "running":
                # One that ran and is paused there is not done: paused is not running.
                problems.append("%s is %s on %s" % (name, there[0].get("state"), rec.get("destination")))
            elif not there[0].get("persistent"):
                problems.append("%s is not persistent on %s" % (name, rec.get("destination")))
            for host in sorted(set(facts) - set([source, rec.get("destination")])):
                # A copy left on a third host (a guest running on two hosts, a paused leftover of a
                # migration) counts too; another domain that only shares the name (its UUID differs) does not.
                for dom in _named(facts, host, name):
                    same = not rec.get("uuid") or not dom.get("uuid") or dom["uuid"] == rec["uuid"]
                    if same and dom.get("state") != SHUTOFF:
                        problems.append("%s is also %s on %s" % (name, dom.get("state"), host))
        elif rec["status"] == SHUT_DOWN:
            mine = _named(facts, source, name)
            if mine and mine[0].get("state") != SHUTOFF:
                problems.append("%s still runs here" % name)
    return problems


def restore_plan(host, journal, facts, move_back=True, silent=()):
    """What to do to bring back to ``host`` what its evacuation (``journal``, or None) moved away.

    Returns ``moves`` (``domain``, ``from``, ``state``: each moved domain found on exactly one
    other host; none unless ``move_back``), ``starts`` (domains shut down in place, still off here
    and active nowhere else) and ``problems``. A domain is started only when every hypervisor
    answered: with any host ``silent``, it could run there, so it is left off and named.
    """
    moves, starts, problems = [], [], []
    records = sorted(((journal or {}).get("domains") or {}).values(), key=lambda rec: rec["domain"])
    for rec in records:
        name = rec["domain"]
        found = [(where, dom) for where in facts for dom in _named(facts, where, name) if _holds(dom)]
        if rec["status"] == MOVED:
            elsewhere = [(where, dom) for where, dom in found if where != host]
            if len(elsewhere) == 1:
                if move_back:
                    moves.append({"domain": name, "from": elsewhere[0][0], "state": elsewhere[0][1].get("state")})
            elif len(elsewhere) > 1:
                problems.append("%s is on several hosts: %s" % (name, ", ".join(where for where, _dom in elsewhere)))
            elif not found:
                problems.append("%s was not found on any hypervisor" % name)
        elif rec["status"] == SHUT_DOWN:
            here = [dom for where, dom in found if where == host]
            running = sorted(where for where, dom in found if where != host and dom.get("state") != SHUTOFF)
            if not here or here[0].get("state") != SHUTOFF:
                continue
            if running:
                problems.append("%s runs on %s: not started again on %s" % (name, ", ".join(running), host))
            elif silent:
                problems.append("%s not started again on %s: %s did not answer, and could be running it" % (
                    name, host, ", ".join(sorted(silent))))
            else:
                starts.append(name)
    return dict(moves=moves, starts=starts, problems=problems)


def restore_problems(host, plan, facts, moved=(), started=None):
    """What did not come back: the plan's problems, failed attempts, and where each domain is now.

    ``moved`` is the registered results of the task that moved the domains back (each with its
    ``item``), ``started`` the registered result of the domain_start task that started the
    others again.
    """
    problems = list(plan.get("problems") or [])
    for run in moved:
        if run.get("failed"):
            problems.append("%s: %s" % (run["item"]["domain"], run.get("msg", "failed")))
    if started:
        if started.get("failed"):
            problems.append("the domains shut down in place were not started: %s" % started.get("msg", "failed"))
        problems += started.get("problems") or []
    names = [move["domain"] for move in plan.get("moves") or []] + list(plan.get("starts") or [])
    for name in names:
        for where in facts:
            doms = _named(facts, where, name)
            if where == host and not doms:
                problems.append("%s is not on %s" % (name, where))
            elif where == host and doms[0].get("state") == SHUTOFF:
                problems.append("%s is shut off on %s" % (name, where))
            elif where != host and doms and _holds(doms[0]):
                problems.append("%s is still on %s (%s)" % (name, where, doms[0].get("state")))
    return problems


# --- the modules ----------------------------------------------------------------------

def _check_facts(params):
    facts = params["hosts"]
    for host, item in facts.items():
        if not isinstance(item, dict) or not isinstance(item.get("domains") or [], list):
            raise ParameterError("hosts.%s must be the host_info facts of that host (with a list of domains)" % host)
    return facts


def failures(records):
    """One line per domain the evacuation failed to move, with its error."""
    return ["%s %s: %s." % (rec["domain"], "failed" if rec["status"] == FAILED else "is left alone, where it is unknown",
                            rec.get("error")) for rec in records if rec["status"] in (FAILED, UNKNOWN)]


def run_evacuation_verify(module):
    params = module.params
    facts = _check_facts(params)
    source = params["source"]
    if params["evacuation"] is not None:
        if source not in facts:
            raise ParameterError("no facts of %s, the host evacuated: it cannot be verified" % source)
        records = params["evacuation"].get("domains") or []
        pattern = params["empty_pattern"]
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ParameterError("empty_pattern is not a regular expression: %s" % err) from None
        problems = evacuation_problems(source, records, facts, empty=params["empty"], empty_pattern=pattern)
        return dict(changed=False, problems=problems, failures=failures(records))
    problems = restore_problems(source, params["restore"], facts, params["moved"] or [], params["started"])
    return dict(changed=False, problems=problems, failures=[])


def run_restore_plan(module):
    params = module.params
    out = restore_plan(params["source"], params["journal"], _check_facts(params), params["move_back"],
                       params["silent_hosts"])
    out["changed"] = False
    return out


# The evacuation_verify module: after an evacuation (its result) or a restore (the restore plan and
# what the moves back and the starts registered).
EVACUATION_VERIFY_ARGUMENT_SPEC = argument_spec(
    SOURCE["source"].but(required=True), FACTS, EVACUATION_RESULT,
    empty=dict(type="bool", default=False),
    empty_pattern=dict(type="str"),
    restore=dict(type="dict"),
    moved=dict(type="list", elements="dict"),
    started=dict(type="dict"),
)
EVACUATION_VERIFY_RULES = dict(
    required_one_of=[("evacuation", "restore")],
    mutually_exclusive=[("evacuation", "restore")],
    required_by=dict(moved="restore", started="restore", empty_pattern="evacuation"),
)
RESTORE_PLAN_ARGUMENT_SPEC = argument_spec(
    SOURCE["source"].but(required=True), FACTS,
    journal=dict(type="dict"),
    move_back=dict(type="bool", default=True),
    silent_hosts=dict(type="list", elements="str", default=[]),
)

# Both run on the control node from facts already read: no connection, no libvirt.
EVACUATION_VERIFY_MODULE = EntryPoint(run_evacuation_verify, EVACUATION_VERIFY_ARGUMENT_SPEC, connection=False,
                                      **EVACUATION_VERIFY_RULES)
RESTORE_PLAN_MODULE = EntryPoint(run_restore_plan, RESTORE_PLAN_ARGUMENT_SPEC, connection=False)
