# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The entry point of virtops.migration.evacuation_plan: its parameters in, the plan out."""

from __future__ import annotations

from collections.abc import Mapping

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import VirtopsError
from ansible_collections.virtops.migration.plugins.module_utils._module import EntryPoint
from ansible_collections.virtops.migration.plugins.module_utils._planning.inputs import PlanOptions, focus
from ansible_collections.virtops.migration.plugins.module_utils._planning.placement import plan_evacuation
from ansible_collections.virtops.migration.plugins.module_utils._planning.spec import EVACUATION_PLAN_ARGUMENT_SPEC


def invocation(params):
    """What the module echoes as its invocation: its parameters, the bulky facts summarised.

    AnsibleModule echoes every parameter back by default; with a large inventory that is
    tens of megabytes of host facts copied, scanned for secrets and serialised once more,
    for nothing.
    """
    args = dict(params)
    hosts = params.get("hosts")
    if isinstance(hosts, dict):
        domains = sum(len(h.get("domains") or []) for h in hosts.values() if isinstance(h, dict))
        args["hosts"] = "(facts of %d hosts with %d domains, not echoed)" % (len(hosts), domains)
    prechecks = params.get("prechecks")
    if isinstance(prechecks, list) and len(prechecks) > 20:
        args["prechecks"] = "(%d pre-check results, not echoed)" % len(prechecks)
    return dict(module_args=args)


def _labels_shown(move):
    """The labels that changed how a move is planned, each with where it came from ('' when none)."""
    sources = move.get("label_sources") or {}
    shown = []
    if move.get("priority"):
        shown.append("priority %s (%s)" % (move["priority"], sources.get("priority", "?")))
    if move.get("max_downtime_ms") is not None:
        shown.append("max_downtime %s ms (%s)" % (move["max_downtime_ms"], sources.get("max_downtime", "?")))
    for key in ("do_not_migrate", "anti_affinity"):
        if key in sources:
            shown.append("%s from the %s" % (key, sources[key]))
    return "  labels: %s" % ", ".join(shown) if shown else ""


def _skipped_line(item):
    """A skipped domain's line: its policy's reason, and where the policy came from when known."""
    source = (item.get("label_sources") or {}).get("do_not_migrate")
    return "  skipped: %s (%s%s)" % (item["domain"], item["reason"], "; from the %s" % source if source else "")


def plan_lines(plan):
    """The plan for people: its summary, then one line per move, skipped and unplaceable domain."""
    lines = list(plan["summary"])
    for move in plan["moves"]:
        lines.append("  %-3s %-24s %-8s -> %-10s %6s s  downtime %s ms%s%s" % (
            move["order"], move["domain"], move["mode"], move.get("destination") or "-", move.get("predicted_seconds"),
            move.get("predicted_downtime_ms"), "  escalation: %s" % move["escalation"] if move.get("escalation") else "",
            _labels_shown(move)))
    lines.extend(_skipped_line(item) for item in plan["skipped_domains"])
    lines.extend("  UNPLACEABLE: %s: %s" % (item["domain"], "; ".join(item["reasons"])) for item in plan["unplaceable"])
    return lines


def run_evacuation_plan(params):
    """The module's entry point: its parameters in, its result out."""
    opts = PlanOptions.from_params(params)
    hosts = focus(params["hosts"], params["source"], params.get("domains"), params.get("dirty_rates"),
                  params.get("source_bandwidth_mib_s"))
    plan = plan_evacuation(params["source"], hosts, params.get("prechecks"), opts)
    plan["lines"] = plan_lines(plan)
    return plan


def plan_in_controller(args):
    """The evacuation_plan task as the action plugin runs it, in the controller's process.

    The options are checked against the module's own argument spec, as AnsibleModule would
    check them - all but the facts, which the validator would deep-copy whole: the planner
    checks those itself, field by field. Returns the task's result, failed with the reason
    on bad input.
    """
    args = dict(args)
    hosts = args.pop("hosts", None)
    spec = dict((name, entry) for name, entry in EVACUATION_PLAN_ARGUMENT_SPEC.items() if name != "hosts")
    validation = ArgumentSpecValidator(spec).validate(args)
    if validation.error_messages:
        msg = validation.errors.msg
        if isinstance(validation.errors[0], UnsupportedError):
            msg = "Unsupported parameters for (virtops.migration.evacuation_plan) module: %s" % msg
        return dict(failed=True, msg=msg)
    if hosts is None:
        return dict(failed=True, msg="missing required arguments: hosts")
    if not isinstance(hosts, Mapping):
        return dict(failed=True, msg="hosts must be a dictionary of host facts (host_info), not %s"
                    % type(hosts).__name__)
    params = dict(validation.validated_parameters, hosts=hosts)
    echo = dict(invocation=invocation(params))
    try:
        result = run_evacuation_plan(params)
    except VirtopsError as err:
        return dict(echo, failed=True, msg=err.msg, **err.details)
    return dict(echo, **result)


def _run_module(module):
    return run_evacuation_plan(module.params)


# The evacuation_plan module: it only plans, on the control node, so it opens no connection and
# needs no libvirt; it echoes a summary of its bulky input instead of all of it.
EVACUATION_PLAN_MODULE = EntryPoint(_run_module, EVACUATION_PLAN_ARGUMENT_SPEC, connection=False,
                                    invocation=invocation)
