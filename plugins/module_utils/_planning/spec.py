# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The options of virtops.migration.evacuation_plan, declared once: the module's entry point
(run.py, also the action plugin's) and the validation of the plan's input (inputs.py) read
them from here."""

from __future__ import annotations

from ansible_collections.virtops.migration.plugins.module_utils._migration.ladder import QEMU_DEFAULT_DOWNTIME_MS
from ansible_collections.virtops.migration.plugins.module_utils._option_spec import argument_spec
from ansible_collections.virtops.migration.plugins.module_utils._options import (
    CAPACITY,
    CONCURRENCY,
    DOMAINS,
    FACTS,
    LADDER,
    PLANNING,
    SOURCE,
)

UNCHECKED_PAIRS = ("auto", "allow", "deny")
LIVE_FALLBACKS = ("none", "cold")
VERDICTS = ("ok", "warn", "block")

# One pre-check as the planner takes it: these keys of a precheck module's result.
PRECHECK_OPTIONS = dict(
    domain=dict(type="str", required=True),
    source=dict(type="str", required=True),
    destination=dict(type="str", required=True),
    verdict=dict(type="str", required=True, choices=list(VERDICTS)),
    reasons=dict(type="list", elements="str", default=[]),
    predicted_seconds=dict(type="float"),
    predicted_downtime_ms=dict(type="float"),
    converges=dict(type="bool"),
    escalation=dict(type="str"),
)

# The module's options: the shared ones as _options declares them (the planner predicts at
# QEMU's default downtime unless told otherwise), then those only the planner has.
EVACUATION_PLAN_ARGUMENT_SPEC = argument_spec(
    LADDER["max_downtime"].but(default=QEMU_DEFAULT_DOWNTIME_MS),
    *[option for name, option in LADDER.items() if name != "max_downtime"],
    CAPACITY, CONCURRENCY, SOURCE["source"].but(required=True), FACTS, DOMAINS, PLANNING,
    dirty_rates=dict(type="dict", default={}),
    source_bandwidth_mib_s=dict(type="float"),
    prechecks=dict(type="list", elements="dict", default=[], options=PRECHECK_OPTIONS),
    unchecked_pairs=dict(type="str", default="auto", choices=list(UNCHECKED_PAIRS)),
    count_shutoff_domains=dict(type="bool", default=True),
    live_fallback=dict(type="str", default="none", choices=list(LIVE_FALLBACKS)),
    bandwidth_budget_mib_s=dict(type="float"),
    assumed_dirty_rate_mib_s=dict(type="float", default=0.0),
)

# The module's parameters that are the plan's input, not planning options.
PLAN_INPUTS = ("source", "hosts", "prechecks", "domains", "dirty_rates", "source_bandwidth_mib_s")
