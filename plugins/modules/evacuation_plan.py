#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: evacuation_plan
short_description: Plan the evacuation of a KVM hypervisor - where each domain goes, how, in which order, how long
version_added: 0.1.0
description:
  - Assigns every domain of the host O(source) to a destination among the other hosts of O(hosts), from host facts
    and pre-check results, and predicts each migration's time and downtime and the whole evacuation's. It only
    plans - nothing is changed, so it runs on the control node (delegated to C(localhost), for example),
    needs no libvirt, and check mode behaves exactly as a normal run.
  - B(Every domain of the source is accounted for), in exactly one of RV(moves), RV(skipped_domains) and RV(unplaceable)
    (with the reasons); RV(can_empty) says whether the host can be emptied.
  - B(Modes.) A running, paused or blocked domain moves live (pre-copy, climbing the escalation ladder of
    O(max_downtime_steps), O(auto_converge), O(postcopy) and O(timeout_action) when predicted necessary); a shut-off
    domain moves cold (its definition, and its local disks when not on shared storage). A domain with devices that
    block live migration, or whose live migration is predicted not to converge even with the whole bandwidth
    budget, is unplaceable unless O(live_fallback=cold). A domain labelled C(do_not_migrate) follows its policy -
    C(skip) (left as it is), C(cold) (shut down, moved, started again) or C(shutdown) (shut down on the source,
    not moved; scheduled after every migration, so an aborted evacuation leaves it running).
  - B(Destinations) are the hosts of O(hosts) other than the source, not in maintenance and not in O(exclude). A
    destination takes a domain only when its memory and vCPUs suffice - counting the running domains it holds,
    its persistent shut-off ones (O(count_shutoff_domains)) and the domains this plan already sends there - when
    no domain of the same anti-affinity group is there (whatever its state, including domains this plan sends
    there), and when its pre-check for the domain is not C(block). Without a pre-check for the pair, CPU
    compatibility is unknown and O(unchecked_pairs) decides.
  - B(Placement) takes the largest domains first (memory, then vCPUs) and puts each on the destination with the
    largest share of its capacity still free, of memory or vCPUs whichever is scarcer - it spreads the load,
    keeping headroom even across destinations and spreading the migrations over many destinations so that
    O(max_parallel_per_destination) does not serialize them. It is deterministic - the same input gives the
    same plan. It does not search for the placement with the fewest unplaceable domains - a domain may stay
    unplaceable although moving others elsewhere would have made room for it.
  - B(Schedule.) Migrations that converge only with the whole budget run alone, first; then the longest first.
    A migration starts when a source slot (O(max_parallel_per_source)) and a slot on its destination
    (O(max_parallel_per_destination)) are free. Its bandwidth, fixed when it starts, is the free part of the
    O(bandwidth_budget_mib_s) divided among the migrations that could run beside it, so concurrent migrations never
    exceed the budget together. Times come from an event simulation of that schedule.
  - B(Predictions.) Pre-copy is modelled round by round - each round sends what the guest dirtied during the one
    before; it converges when what is left can be sent within the downtime limit, and does not when the guest
    dirties memory at least as fast as it is sent, after 30 rounds, or - when a higher rung is permitted - when it
    stalls as the migrate module judges it (two rounds in a row that leave more than 90 % of the least left so
    far), and the next rung is tried. A rung predicted to take longer than O(timeout) does not count either.
    Bandwidth shares are fixed when a migration starts and not raised when others finish, so the predictions
    lean to the long side. A migration also takes O(setup_seconds),
    and first copies local disks that are not shared. When a pre-check predicted a pair, the plan never
    predicts less time, less downtime or a lower escalation than the pre-check did.
  - B(It runs in the controller's process), as an action plugin - not as a module in a process of its own, which
    would get the facts of the whole inventory as JSON and copy them. When O(hosts) is one variable
    (C("{{ evacuate_facts }}")), its value is read as it is, not templated - facts are data. The task is sent back
    to the playbook without the facts.
  - Scales to large inventories - the destinations are indexed once per plan (by free share, and by the memory
    and vCPUs they have free, so hosts without room for a big domain are passed over whole), so planning one
    host's evacuation among 10,000 hosts and 200,000 domains takes a fraction of a second.
author:
  - virtops.migration contributors (!UNKNOWN)
extends_documentation_fragment:
  - virtops.migration.attributes
  - virtops.migration.attributes.controller_action
  - virtops.migration.attributes.control_node
  - virtops.migration.options.ladder
  - virtops.migration.options.capacity
  - virtops.migration.options.concurrency
  - virtops.migration.options.source
  - virtops.migration.options.facts
  - virtops.migration.options.domains
  - virtops.migration.options.planning
options:
  source:
    required: true
  dirty_rates:
    description:
      - Measured dirty rates of the source's domains, MiB/s by domain name (the
        RV(virtops.migration.precheck#module:dirty_rates) of the pre-check). A domain listed here is planned with
        this rate instead of its C(dirty_rate_mib_s) in O(hosts) (null - not measured).
    type: dict
    default: {}
  source_bandwidth_mib_s:
    description:
      - Measured throughput from the source on the migration network, MiB/s (for example the highest
        RV(virtops.migration.precheck#module:bandwidth)). It replaces the source's C(migration_bandwidth_mib_s) in
        O(hosts).
    type: float
  prechecks:
    description:
      - Results of the C(virtops.migration.precheck) module, one per domain and candidate destination. Only those
        whose C(source) is O(source) are used (pre-checks of other evacuations may be passed along); those of
        domains not on the source, or of hosts not in O(hosts), are ignored. When a pair has several, the worst
        verdict counts.
    type: list
    elements: dict
    default: []
    suboptions:
      domain:
        description: Name or UUID of the domain.
        type: str
        required: true
      source:
        description: The host the domain is on.
        type: str
        required: true
      destination:
        description: The candidate destination.
        type: str
        required: true
      verdict:
        description:
          - C(block) forbids the destination for the domain (the pre-check's reasons appear in RV(unplaceable) if it
            cannot go anywhere else). C(warn) permits it, and its reasons become the move's C(warnings).
        type: str
        required: true
        choices: [ok, warn, block]
      reasons:
        description: Why, for people.
        type: list
        elements: str
        default: []
      predicted_seconds:
        description: The pre-check's predicted migration time; the plan never predicts less for the pair.
        type: float
      predicted_downtime_ms:
        description: The pre-check's predicted downtime; the plan never predicts less for the pair.
        type: float
      converges:
        description:
          - Whether the pre-check predicts pre-copy to converge. C(false) with no O(prechecks[].escalation) forbids a live
            migration to the destination.
        type: bool
      escalation:
        description: The escalation step the pre-check predicts necessary (C(max_downtime), C(auto_converge), C(postcopy), C(pause)).
        type: str
  unchecked_pairs:
    description:
      - Whether a domain may go to a destination no pre-check of O(prechecks) covers (CPU compatibility unknown).
      - C(auto) - allowed only when O(prechecks) holds nothing for O(source); once the evacuation is pre-checked,
        only pairs with a verdict of C(ok) or C(warn) qualify.
    type: str
    choices: [auto, allow, deny]
    default: auto
  count_shutoff_domains:
    description:
      - Count the memory and vCPUs of persistent shut-off domains on a destination as used - they may start again.
        Applies to shut-off domains this plan moves there, too.
    type: bool
    default: true
  live_fallback:
    description:
      - What happens to a domain that cannot move live - blocking devices, or predicted not to converge.
      - C(none) - unplaceable, with the reason. C(cold) - moved cold instead (it is shut down, with downtime), with
        the reason in the move.
    type: str
    choices: [none, cold]
    default: none
  bandwidth_budget_mib_s:
    description:
      - Bandwidth in MiB/s shared by the migrations running from the source at the same time.
      - Defaults to the source's measured C(migration_bandwidth_mib_s), else 112 MiB/s (about what a 1 Gbit/s
        link carries), which the summary then says.
    type: float
  assumed_dirty_rate_mib_s:
    description:
      - Dirty rate assumed for running domains whose C(dirty_rate_mib_s) was not measured (the summary counts them).
        A paused domain dirties nothing.
    type: float
    default: 0.0
  max_downtime:
    default: 300
notes:
  - The plan is only as good as the facts - measure the bandwidth and the dirty rates (C(virtops.migration.host_info))
    and pre-check the pairs (C(virtops.migration.precheck)) for predictions one can hold it to.
seealso:
  - module: virtops.migration.migrate
"""

EXAMPLES = r"""
- name: Plan the evacuation of hv1
  virtops.migration.evacuation_plan:
    source: hv1
    hosts: "{{ dict(groups['hypervisors'] | zip(groups['hypervisors'] | map('extract', hostvars, 'virtops_host_info'))) }}"
    prechecks: "{{ precheck_results }}"
    max_parallel_per_source: 2
    exclude: [hv9]
  delegate_to: localhost
  run_once: true
  register: plan

- name: Stop here when hv1 cannot be emptied
  ansible.builtin.assert:
    that: plan.can_empty
    fail_msg: "{{ plan.summary | join('\n') }}"

- name: Allow more downtime, throttling and cold moves for what cannot go live
  virtops.migration.evacuation_plan:
    source: hv1
    hosts: "{{ host_facts }}"
    max_downtime_steps: [500, 1000, 2000]
    auto_converge: true
    live_fallback: cold
    bandwidth_budget_mib_s: 1000
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
can_empty:
  description:
    - Whether the host can be emptied - no domain is unplaceable and no skipped domain still runs. Shut-off domains
      left on the source by their policy do not count against it.
  returned: success
  type: bool
  sample: true
source:
  description: The host the plan empties.
  returned: success
  type: str
  sample: hv1
moves:
  description:
    - What to do, in start order - migrations, then domains shut down in place (last, after every migration).
  returned: success
  type: list
  elements: dict
  contains:
    domain:
      description: Name of the domain.
      type: str
      returned: always
    uuid:
      description: UUID of the domain, when the facts have it.
      type: str
      returned: always
    destination:
      description: Where it goes; null for C(mode=shutdown).
      type: str
      returned: always
    mode:
      description:
        - C(live), C(cold) (shut down when running, definition and local disks moved, started again when it ran),
          or C(shutdown) (shut down on the source, not moved).
      type: str
      returned: always
    reason:
      description: Why the mode is C(cold) or C(shutdown) (the label, the state, the blockers); null for C(live).
      type: str
      returned: always
    state:
      description: The domain's state on the source.
      type: str
      returned: always
    memory_mib:
      description: The domain's memory.
      type: float
      returned: always
    vcpus:
      description: The domain's vCPUs.
      type: float
      returned: always
    local_disk_mib:
      description: Local disks copied with it, in MiB.
      type: float
      returned: always
    order:
      description: Start order, from 1.
      type: int
      returned: always
    wave:
      description: Moves with the same wave start at the same instant of the schedule.
      type: int
      returned: always
    start_offset_s:
      description: Predicted start, in seconds after the evacuation starts.
      type: float
      returned: always
    finish_offset_s:
      description: Predicted end, in seconds after the evacuation starts.
      type: float
      returned: always
    predicted_seconds:
      description: Predicted duration, set-up included.
      type: float
      returned: always
    predicted_downtime_ms:
      description:
        - Predicted downtime - the switch-over of a live migration; from the shutdown until started on the
          destination for a cold move of a running domain; 0 for a shut-off domain; null for C(mode=shutdown).
      type: int
      returned: always
    bandwidth_mib_s:
      description: Its share of the bandwidth budget (the C(bandwidth) to give the migrate module); 0 when it sends nothing.
      type: float
      returned: always
    escalation:
      description:
        - The escalation step predicted necessary (C(max_downtime), C(auto_converge), C(postcopy), C(pause)); null
          when plain pre-copy converges.
      type: str
      returned: always
    exclusive:
      description: Converges only with the whole budget, so it runs alone.
      type: bool
      returned: always
    priority:
      description: The domain's C(priority) label (0 when unset); higher priorities are scheduled first.
      type: int
      returned: always
    max_downtime_ms:
      description:
        - The domain's C(max_downtime) label, null when unset. Its live migration's downtime limit and escalation
          steps stay at or below it (the prediction and the evacuation both).
      type: int
      returned: always
    label_sources:
      description: Where each of the domain's labels came from - C(inventory) or C(metadata) (M(virtops.migration.host_info)).
      type: dict
      returned: always
    warnings:
      description:
        - The pre-check's C(warn) reasons for the pair, blocking devices of a cold move to check, and a pre-check's
          predicted downtime above the domain's C(max_downtime) label.
      type: list
      elements: str
      returned: always
  sample:
    - domain: web-1
      uuid: 0b5e7a4c-1d5e-4f7e-9a3b-2c8d6e1f0a9b
      destination: hv4
      mode: live
      reason: null
      state: running
      memory_mib: 4096
      vcpus: 2
      local_disk_mib: 0.0
      order: 1
      wave: 1
      start_offset_s: 0.0
      finish_offset_s: 10.3
      predicted_seconds: 10.3
      predicted_downtime_ms: 42
      bandwidth_mib_s: 500.0
      escalation: null
      exclusive: false
      warnings: []
skipped_domains:
  description: Domains left on the source by their C(do_not_migrate) policy.
  returned: success
  type: list
  elements: dict
  contains:
    domain:
      description: Name of the domain.
      type: str
      returned: always
    uuid:
      description: UUID of the domain, when the facts have it.
      type: str
      returned: always
    policy:
      description: C(skip), or C(shutdown) for a domain already shut off.
      type: str
      returned: always
    state:
      description: The domain's state on the source.
      type: str
      returned: always
    reason:
      description: What the policy means for it.
      type: str
      returned: always
    label_sources:
      description: Where each of the domain's labels came from - C(inventory) or C(metadata).
      type: dict
      returned: always
unplaceable:
  description: Domains that cannot be moved, with every reason.
  returned: success
  type: list
  elements: dict
  contains:
    domain:
      description: Name of the domain.
      type: str
      returned: always
    uuid:
      description: UUID of the domain, when the facts have it.
      type: str
      returned: always
    state:
      description: The domain's state on the source.
      type: str
      returned: always
    reasons:
      description:
        - Why - about the domain itself (state, blocking devices, convergence), or per destination, grouped by
          reason with at most five host names each (pre-check blocks with their reasons, missing pre-checks,
          anti-affinity with the member in the way, memory or vCPUs short with the most free, maintenance,
          exclusion).
      type: list
      elements: str
      returned: always
  sample:
    - domain: db-3
      uuid: null
      state: running
      reasons:
        - "hv2: pre-check blocked: CPU feature avx512f missing"
        - "anti-affinity group 'db' already has a member on hv3 (db-1)"
destinations:
  description:
    - The destinations the plan uses - C(moves), C(memory_mib) and C(vcpus) it sends there, and
      C(memory_free_after_mib) and C(vcpus_free_after) (capacity left after the plan).
  returned: success
  type: dict
  sample:
    hv4: {moves: 2, memory_mib: 8192, vcpus: 4, memory_free_after_mib: 120832, vcpus_free_after: 180}
predicted_total_seconds:
  description: Predicted time of the whole evacuation, shutdowns in place included.
  returned: success
  type: float
  sample: 312.4
bound_seconds:
  description:
    - The physical lower bound - everything the migrations send (memory, local disks) divided by the bandwidth
      budget. No evacuation is faster; RV(predicted_total_seconds) is never below it.
  returned: success
  type: float
  sample: 240.0
bandwidth_budget_mib_s:
  description: The budget used, from O(bandwidth_budget_mib_s), the measured bandwidth, or the default.
  returned: success
  type: float
  sample: 1000.0
summary:
  description: A few lines for a person - whether the host can be emptied, what is in the way, time, assumptions.
  returned: success
  type: list
  elements: str
  sample:
    - "hv1 can be emptied: 12 domains - 11 live, 1 cold, 0 shut down in place, 0 skipped, 0 unplaceable."
    - "Predicted 96.2 s in total (no faster than 81.9 s: 81920 MiB over 1000 MiB/s); 11 destinations, at most 2
      per source and 1 per destination at a time."
lines:
  description: The plan for a person - RV(summary), then one line per move (order, domain, mode, destination,
    predicted time and downtime, escalation), per skipped domain and per unplaceable domain with its reasons.
  returned: success
  type: list
  elements: str
  sample:
    - "hv1 can be emptied: 2 domains - 1 live, 0 cold, 0 shut down in place, 1 skipped, 0 unplaceable."
    - "  1   web1                     live     -> hv2           4.1 s  downtime 300 ms"
    - "  skipped: batch1 (do_not_migrate: skip)"
"""

from ansible_collections.virtops.migration.plugins.module_utils._planning.run import EVACUATION_PLAN_MODULE
from ansible_collections.virtops.migration.plugins.module_utils._module import run_module


def main():
    run_module(EVACUATION_PLAN_MODULE)


if __name__ == "__main__":
    main()
