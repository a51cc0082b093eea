#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: evacuate
short_description: Carry out an evacuation plan - move every planned domain off a KVM hypervisor, resumably
version_added: 0.1.0
description:
  - Runs on the host to empty (the source) and carries out the O(moves) of a
    M(virtops.migration.evacuation_plan) - live and cold migrations to their destinations, and shutdowns in place
    for domains whose C(do_not_migrate) policy says so (never silently - each is reported).
  - B(Concurrency.) Moves start in the plan's order whenever fewer than O(max_parallel_per_source) run and fewer than
    O(max_parallel_per_destination) run to the move's destination. A move the plan marks C(exclusive) runs alone.
    A move held back by its destination does not hold back the ones after it. Shutdowns in place start once no
    migration is left. Each move runs in a thread of its own, with its own libvirt connections, through the engine
    of M(virtops.migration.migrate) - the same pre-checks, escalation ladder, verification and clean-up on failure.
  - B(Journal.) The state of each domain (C(pending), C(in_flight), C(moved), C(failed), C(skipped), C(shut_down)),
    its destination, attempts, timings, bytes sent, escalations and errors, and the totals, are written to
    C(O(journal_dir)/O(evacuation_id).json) on the source after every change and about once a second - atomically,
    so a reader (a playbook polling it with C(ansible.builtin.slurp) or C(ansible.builtin.fetch)) never sees half
    a file. Its C(progress) key is a one-line summary.
  - B(Resume.) Run again with the same O(evacuation_id) to continue an interrupted evacuation. Domains the journal
    says were moved are checked where they are and never moved again; a migration the journal says was in flight and
    that libvirt still runs (peer-to-peer migrations survive the death of the process that started them) is waited
    for, not started twice; one that ended is recorded where the domain is. A domain that ran before is never left
    shut off by an interrupted move. Only one evacuation runs on a host at a time; a run that finds the same
    evacuation still running waits for it to end and reports, starting nothing itself.
  - B(Abort.) Creating C(O(journal_dir)/O(evacuation_id).abort) on the source aborts the evacuation - in-flight
    pre-copy migrations are aborted (the domain keeps running on the source), post-copy migrations and cold moves
    finish (they cannot be rolled back without stopping the guest), nothing new starts, and the journal's result is
    C(aborted). The module then fails, and removes the request. A request found when the module starts is honoured
    at once.
  - B(Failures.) A move that fails is retried, re-placed or left, per O(on_failure). A failed pre-copy migration
    leaves the domain running on the source; a failed cold move starts it again where it is; a failed post-copy
    migration is resumed when possible and only ever retried to the same destination. The module fails when a
    domain of O(moves) is not moved (or shut down) at the end, with the whole report.
author:
  - virtops.migration contributors (!UNKNOWN)
extends_documentation_fragment:
  - virtops.migration.connection
  - virtops.migration.attributes
  - virtops.migration.attributes.action_group
  - virtops.migration.options.ladder
  - virtops.migration.options.migration
  - virtops.migration.options.storage
  - virtops.migration.options.concurrency
  - virtops.migration.options.addresses
  - virtops.migration.options.source
  - virtops.migration.options.evacuation_id
  - virtops.migration.options.journal
attributes:
  check_mode:
    support: full
    details:
      - Reads the journal and returns the moves a real run would start (RV(would_move)); nothing is opened, moved or
        written.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - Re-running with the same O(evacuation_id) after success moves nothing and returns C(changed=false).
options:
  moves:
    description:
      - The RV(virtops.migration.evacuation_plan#module:moves) of the plan, as it returns them. Used keys -
        C(domain), C(uuid), C(destination), C(mode) (C(live), C(cold) or C(shutdown)), C(order), C(exclusive),
        C(state), C(memory_mib), C(local_disk_mib), C(bandwidth_mib_s); the others are kept in the journal.
    type: list
    elements: dict
    default: []
  skipped:
    description:
      - The plan's RV(virtops.migration.evacuation_plan#module:skipped_domains) domains, recorded in the journal and the report
        as skipped.
    type: list
    elements: dict
    default: []
  settle_only:
    description:
      - Only settle what an interrupted run of this evacuation left in flight (wait for migrations libvirt still runs,
        record where domains are), starting nothing. A playbook does this before it plans again, so that the planner
        sees each domain on one host only.
    type: bool
    default: false
  retries:
    description: Attempts after the first on the same destination, for failures worth another try.
    type: int
    default: 1
  retry_delay:
    description: Seconds before a failed move is tried again.
    type: int
    default: 5
  on_failure:
    description:
      - C(retry) - try a failed move again, up to O(retries) times, then report it failed.
      - C(replace) - as C(retry); then, or at once when a pre-check blocks the destination, try the hosts of
        O(replacement_hosts) in order that have the free memory and no member of the domain's anti-affinity group.
      - C(leave) - report it failed at once.
      - In every case a failed domain stays running (on the source, or where it is).
    type: str
    choices: [retry, replace, leave]
    default: retry
  replacement_hosts:
    description: Hosts a failed move may be re-placed on (O(on_failure=replace)), in order of preference.
    type: list
    elements: str
    default: []
  use_planned_bandwidth:
    description:
      - Cap each migration at the bandwidth share the plan gave it (C(bandwidth_mib_s)), so that concurrent
        migrations stay within the plan's bandwidth budget together. Use it when the budget was measured or set.
    type: bool
    default: false
  source_throughput_mib_s:
    description:
      - The source's measured migration throughput, in MiB/s. When set, the report gives the bound - the memory and
        disks moved divided by it, the least time any evacuation could take - and the wall time's ratio to it.
    type: float
  run_tag:
    description: A token recorded in the journal for this run, so that a playbook polling the journal knows it reads this run's.
    type: str
  copy_storage:
    default: all
notes:
  - Run the module on the source host, usually asynchronously (C(async), C(poll=0)) while the playbook reads the journal
    for progress; see C(playbooks/evacuate_host.yml) of this collection.
  - Every migration is persistent - defined on the destination and undefined on the source once it has succeeded.
seealso:
  - module: virtops.migration.evacuation_plan
  - module: virtops.migration.migrate
"""

EXAMPLES = r"""
- name: Plan the evacuation of hv1
  virtops.migration.evacuation_plan:
    source: hv1
    hosts: "{{ host_facts }}"
  delegate_to: localhost
  register: plan

- name: Evacuate hv1 in the background
  virtops.migration.evacuate:
    evacuation_id: hv1-maintenance
    source: hv1
    moves: "{{ plan.moves }}"
    skipped: "{{ plan.skipped_domains }}"
    migration_addresses:
      hv2: 198.18.1.12
      hv3: 198.18.1.13
    max_parallel_per_source: 2
    on_failure: replace
    replacement_hosts: [hv2, hv3]
    auto_converge: true
  delegate_to: hv1
  async: 21600
  poll: 0
  register: evacuation

- name: Abort it (from another run)
  ansible.builtin.file:
    path: /var/lib/virtops-migration/evacuations/hv1-maintenance.abort
    state: touch
    mode: "0600"
  delegate_to: hv1
"""

RETURN = r"""
evacuation_id:
  description: The evacuation's id.
  returned: always
  type: str
  sample: hv1-maintenance
source:
  description: The source host, as given or recorded in the journal.
  returned: always
  type: str
  sample: hv1
result:
  description:
    - C(completed) (every domain of O(moves) moved or shut down in place), C(failed) (some were not; see RV(domains)),
      C(aborted), or C(interrupted) (O(settle_only) left domains of an earlier run to do). Null in check mode.
  returned: always
  type: str
  sample: completed
journal:
  description: Path of the journal on the source (null in check mode).
  returned: always
  type: str
  sample: /var/lib/virtops-migration/evacuations/hv1-maintenance.json
progress:
  description: The journal's one-line summary.
  returned: always
  type: str
  sample: "41.2 s: moved 6/6, in flight 0, failed 0, pending 0, 1536.0 MiB sent, 37.3 MiB/s - completed"
domains:
  description:
    - The journal's entry of every domain, in the plan's order - C(domain), C(uuid), C(status) (C(pending),
      C(in_flight), C(moved), C(failed), C(skipped), C(shut_down), or C(unknown) - a host that could hold it did not
      answer, so it was left alone; a later run settles it), C(mode),
      C(destination) (where it went or goes), C(planned_destination), C(attempts), C(history) (each attempt's
      destination, seconds, outcome and error), C(started_at), C(finished_at), C(seconds), C(downtime_ms),
      C(total_ms), C(bytes_sent), C(average_mib_s), C(escalations), C(completed_by), C(error), C(notes), and the
      plan's C(order), C(wave), C(memory_mib), C(state), C(predicted_seconds), C(predicted_downtime_ms),
      C(escalation).
  returned: always
  type: list
  elements: dict
  sample:
    - {domain: web1, status: moved, mode: live, destination: hv2, attempts: 1, seconds: 3.2, downtime_ms: 41,
       completed_by: precopy, error: null}
totals:
  description:
    - C(domains), C(moved), C(in_flight), C(pending), C(failed), C(skipped), C(shut_down), C(unknown) (counts);
      C(mib_sent);
      C(moved_mib) (memory and disks of the moved domains) and C(moved_mib_this_run); C(elapsed_s) and
      C(wall_seconds) (this run); C(throughput_mib_s) (this run); C(source_throughput_mib_s), C(bound_seconds) (what
      this run moved divided by O(source_throughput_mib_s)) and C(bound_ratio) (this run's wall time divided by the
      bound); null without O(source_throughput_mib_s).
  returned: always
  type: dict
  sample: {domains: 7, moved: 6, failed: 0, mib_sent: 1536.0, wall_seconds: 41.2, bound_seconds: 8.5, bound_ratio: 4.85}
summary:
  description: Lines for a person - the outcome, one line per domain (where it went, mode, seconds, downtime, escalation), totals.
  returned: always
  type: list
  elements: str
would_move:
  description: In check mode, the moves a real run would start (C(domain), C(destination), C(mode)).
  returned: in check mode
  type: list
  elements: dict
"""

from ansible_collections.virtops.migration.plugins.module_utils._evacuation.run import EVACUATE_MODULE
from ansible_collections.virtops.migration.plugins.module_utils._module import run_module


def main():
    run_module(EVACUATE_MODULE)


if __name__ == "__main__":
    main()
