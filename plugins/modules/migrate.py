#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: migrate
short_description: Ensure a libvirt/QEMU domain runs on (or is defined on) another KVM hypervisor
version_added: 0.1.0
description:
  - Ensures that a domain runs on a destination hypervisor, moving it there from the host the module runs
    on (the source) by live migration, or for a shut-off domain (or O(mode=cold)) by cold migration, in
    which case it ends up defined on the destination and running there if it ran before.
  - The migration is peer-to-peer - the source's libvirtd connects to the destination's libvirtd (over TLS by
    default) and drives the migration itself - so an interrupted Ansible run does not orphan it.
  - A live migration climbs a per-VM escalation ladder while it runs, decided from libvirt's job statistics
    polled every 0.2 s - pre-copy at O(max_downtime); when pre-copy stalls (the bytes left at the start of an
    iteration stop shrinking for O(stall_iterations) iterations), the next of O(max_downtime_steps);
    auto-converge (O(auto_converge)); post-copy (O(postcopy=permit)); and at O(timeout), O(timeout_action).
    Each step applied is returned with its time in RV(escalations), and RV(completed_by) says which one let
    the migration finish.
  - Idempotent - when the domain already runs on the destination and not on the source, nothing is done.
    A domain that runs on the destination while the source still holds its inactive definition (a live
    migration made without undefining the source) is finished - defined on the destination if needed, then
    undefined on the source.
  - Before changing anything (and in check mode, instead of changing anything) the module checks that the
    destination is reachable and is another host, that the domain exists, that its CPU is accepted by the
    destination's libvirt, that each disk is shared or can be copied there, and the destination's free
    memory, and fails with every blocker found and nothing changed.
  - A failed pre-copy live migration leaves the domain running on the source, with the destination cleaned
    up, and the module fails with what happened and where the domain is now (RV(where)).
  - A failed post-copy migration cannot be rolled back - the guest cannot run on either host until it is resumed.
    A post-copy migration that sends nothing for 30 s (a broken link, a dead peer) is paused
    (C(VIR_DOMAIN_ABORT_JOB_POSTCOPY)) so that it can be resumed later instead of hanging. The module then tries
    to resume it (O(postcopy_resume), libvirt 8.5 or later) and otherwise fails with what happened, where the
    domain is and the recovery command. Re-running the task once the link is back resumes it.
author:
  - virtops.migration contributors (!UNKNOWN)
extends_documentation_fragment:
  - virtops.migration.connection
  - virtops.migration.attributes
  - virtops.migration.attributes.action_group
  - virtops.migration.options.mode
  - virtops.migration.options.ladder
  - virtops.migration.options.migration
  - virtops.migration.options.storage
attributes:
  check_mode:
    support: full
    details:
      - Runs every pre-check and returns the decided RV(operation), the migration RV(plan) and RV(checks); fails when a
        pre-check finds a blocker, as the real run would.
  diff_mode:
    support: full
    details:
      - The diff shows on which host the domain is, and its state there, before and after.
  idempotent:
    support: full
options:
  name:
    description:
      - Name or UUID of the domain.
    type: str
    required: true
    aliases: [domain]
  destination:
    description:
      - The destination hypervisor - a host name as the source host resolves it (usually the inventory
        hostname), an IP address, or a libvirt URI such as C(qemu+tls://hv2.example.com/system).
      - A host name becomes C(qemu+TRANSPORT://HOST/system) with O(transport). With TLS, the destination's
        certificate must name it.
      - Must not be the source host itself (checked by address, libvirt host name and host UUID).
    type: str
    required: true
  migration_address:
    description:
      - Address (or C(tcp://ADDRESS[:PORT])) of the destination on the migration network. The memory stream,
        and the disk copies of O(copy_storage), go there instead of to the address of O(destination).
      - With O(tls=true), the destination's certificate must also name this address, or set O(tls_destination).
    type: str
  tls_destination:
    description:
      - Host name that QEMU expects in the destination's certificate for the migration stream, when it is
        not the host of O(migration_address) or O(destination) (C(VIR_MIGRATE_PARAM_TLS_DESTINATION)).
    type: str
  persistent:
    description:
      - Define the domain on the destination and undefine it on the source, only once the migration has
        succeeded. The source undefines it as the migration completes (C(VIR_MIGRATE_UNDEFINE_SOURCE)), then the
        module defines the source's configuration on the destination, so at no moment do two hosts hold a
        persistent definition. Should that last step fail, the domain runs transient on the destination and a
        re-run defines it there.
      - An offline move of a shut-off domain is libvirt's own (C(VIR_MIGRATE_PERSIST_DEST) with
        C(VIR_MIGRATE_UNDEFINE_SOURCE)), which needs both.
      - With C(false) (live only), the domain runs transient on the destination and the source keeps its
        inactive definition.
    type: bool
    default: true
notes:
  - Run the module on the source hypervisor (the host where the domain is), for example with the task's
    C(delegate_to) set to the host the domain is on.
  - The completed job statistics of a peer-to-peer migration are read on the destination; when they cannot be
    read, the last statistics polled on the source are returned and RV(statistics_source) says so.
  - No option is secret; TLS keys and certificates stay in libvirt's and QEMU's configuration.
  - libvirt's calls that need the domain's QEMU (job statistics, downtime, post-copy, abort) have no time limit of
    their own. The module waits 10 s for each; while one is unanswered it makes no other, and after 120 s without
    an answer (a QEMU that stopped responding) it stops waiting, fails, and says where the domain is. A pre-copy
    migration's incoming copy is then removed from the destination, so the guest stays on the source.
seealso:
  - name: libvirt migration guide
    description: Migration transports, flags and parameters.
    link: https://libvirt.org/migration.html
"""

EXAMPLES = r"""
- name: Move web1 live from hv1 to hv2 over the migration network
  virtops.migration.migrate:
    name: web1
    destination: hv2
    migration_address: "{{ hostvars['hv2'].migration_address }}"
    bandwidth: 1000
  delegate_to: hv1

- name: Move a busy database, escalating until it converges
  virtops.migration.migrate:
    name: db1
    destination: hv3
    max_downtime: 300
    max_downtime_steps: [500, 1000, 2000]
    auto_converge: true
    postcopy: permit
    timeout: 600
    timeout_action: abort
  delegate_to: hv1
  register: moved

- name: Show which step made it converge
  ansible.builtin.debug:
    msg: "{{ moved.completed_by }} after {{ moved.timings.total_ms }} ms, downtime {{ moved.timings.downtime_ms }} ms"

- name: Move a guest with a local disk, copying the disk
  virtops.migration.migrate:
    name: build1
    destination: hv2
    copy_storage: all
  delegate_to: hv1

- name: Cold-migrate a guest, powering it off if it ignores the shutdown request
  virtops.migration.migrate:
    name: legacy1
    destination: qemu+tls://hv2.example.com/system
    mode: cold
    shutdown_timeout: 60
    force: true
  delegate_to: hv1
"""

RETURN = r"""
operation:
  description:
    - What was done (or would be done in check mode) - C(none), C(live), C(cold), C(resume_postcopy)
      (a failed post-copy migration was resumed), or C(finish) (a half-done move was completed).
    - Not called C(action), which Ansible's callbacks use for the module's name.
  returned: always
  type: str
  sample: live
reason:
  description: Why that action was chosen.
  returned: always
  type: str
  sample: the domain runs on hv1
mode:
  description: The kind of migration done, C(live) or C(cold); null when nothing was migrated.
  returned: always
  type: str
  sample: live
domain:
  description: The domain's name and UUID.
  returned: always
  type: dict
  contains:
    name:
      description: Domain name.
      type: str
      returned: always
      sample: web1
    uuid:
      description: Domain UUID.
      type: str
      returned: always
      sample: 0b5e7a4c-1d5e-4f7e-9a3b-2c8d6e1f0a9b
source:
  description: The source hypervisor.
  returned: always
  type: dict
  contains:
    uri:
      description: The libvirt URI used for it.
      type: str
      returned: always
      sample: qemu:///system
    host:
      description: Its host name.
      type: str
      returned: always
      sample: hv1
destination:
  description: The destination hypervisor.
  returned: always
  type: dict
  contains:
    uri:
      description: The libvirt URI of the destination (also the peer-to-peer URI).
      type: str
      returned: always
      sample: qemu+tls://hv2/system
    host:
      description: Its host name.
      type: str
      returned: always
      sample: hv2
checks:
  description:
    - The pre-checks run before a migration, each with its outcome (C(passed) is null when it was not checked).
  returned: always (empty when nothing had to move)
  type: list
  elements: dict
  sample:
    - {name: cpu, passed: true, detail: "domain CPU (custom) accepted by libvirt on hv2"}
    - {name: storage, passed: true, detail: "disk vda (web1): network disk (nbd)"}
plan:
  description: How the migration is (or would be) done.
  returned: when a live or cold migration was decided, also in check mode
  type: dict
  contains:
    flags:
      description: The C(VIR_MIGRATE_*) flags, without the prefix.
      type: list
      elements: str
      returned: always
      sample: [PEER2PEER, LIVE, ABORT_ON_ERROR, TLS, UNDEFINE_SOURCE]
    parameters:
      description: The typed migration parameters, by their libvirt names.
      type: dict
      returned: always
      sample: {migrate_uri: "tcp://198.18.1.12", bandwidth: 1000}
    copy_disks:
      description: Target devices of the disks copied to the destination.
      type: list
      elements: str
      returned: always
      sample: [vda]
    timeout_s:
      description: The timeout in force (O(timeout), or the computed default).
      type: int
      returned: always
      sample: 300
    disks:
      description: Each disk and how it reaches the destination (C(shared), C(local), C(skipped)).
      type: list
      elements: dict
      returned: always
escalations:
  description:
    - The escalation steps applied, in order, each with C(step) (C(max_downtime), C(auto_converge),
      C(postcopy), C(pause), C(abort), C(postcopy_paused), C(postcopy_resume)), C(at_s) (seconds since the migration started),
      C(iteration), C(remaining_bytes) at that moment, C(value) (the new downtime in ms, or the throttle
      percentage) and C(reason).
  returned: always (empty when none was needed)
  type: list
  elements: dict
  sample:
    - {step: max_downtime, at_s: 9.6, iteration: 5, remaining_bytes: 134217728, value: 1000,
       reason: "pre-copy stalled at 128.0 MiB for 2 iterations; finishing now needs about 2680 ms at 47.7 MiB/s"}
completed_by:
  description:
    - The step that let the migration finish - C(precopy) when no escalation was needed, else the last step
      applied (C(max_downtime), C(auto_converge), C(postcopy), C(pause), C(postcopy_resume)).
  returned: always (null when nothing was migrated or for a cold migration)
  type: str
  sample: precopy
timings:
  description: Durations of the migration.
  returned: after a migration
  type: dict
  contains:
    total_ms:
      description: Total time of the migration job, from libvirt's job statistics.
      type: int
      returned: when libvirt reported it
      sample: 1432
    downtime_ms:
      description: Time the guest did not run at the switch-over, as measured by QEMU.
      type: int
      returned: when libvirt reported it
      sample: 41
    setup_ms:
      description: Time spent setting the migration up before data moved.
      type: int
      returned: when libvirt reported it
      sample: 12
    migration_s:
      description: Live migration - wall-clock seconds of the migration call itself, as the module saw it.
      type: float
      returned: for live migrations
      sample: 1.5
    module_s:
      description:
        - Wall-clock seconds the module spent, from its start (connections, pre-checks) to the end of the
          migration and the reading of its results.
      type: float
      returned: always
      sample: 1.9
    shutdown_s:
      description: Cold migration - seconds the guest took to shut down.
      type: float
      returned: for cold migrations of a running domain
    move_s:
      description: Cold migration - seconds to move the definition and copy the disks.
      type: float
      returned: for cold migrations
    start_s:
      description: Cold migration - seconds to start (or stop) it on the destination.
      type: float
      returned: for cold migrations
transferred:
  description: Bytes sent, from libvirt's job statistics.
  returned: after a migration
  type: dict
  contains:
    memory_bytes:
      description: Guest memory sent (including pages re-sent in later iterations).
      type: int
      returned: when libvirt reported it
    disk_bytes:
      description: Disk data copied.
      type: int
      returned: when libvirt reported it
    total_bytes:
      description: All data sent.
      type: int
      returned: when libvirt reported it
    memory_total_bytes:
      description: Size of the guest's memory.
      type: int
      returned: when libvirt reported it
iterations:
  description: Number of pre-copy memory iterations.
  returned: after a migration, when libvirt reported it
  type: int
  sample: 3
average_bandwidth_mib_s:
  description: Data sent divided by the transfer time (total minus setup), in MiB/s.
  returned: after a migration, when libvirt reported it
  type: float
  sample: 312.5
postcopy_requests:
  description: Pages the destination had to request from the source during post-copy.
  returned: after a migration, when libvirt reported it
  type: int
auto_converge_throttle:
  description: The vCPU throttle percentage auto-converge had reached.
  returned: after a migration, when libvirt reported it
  type: int
statistics_source:
  description:
    - Where the statistics come from - C(completed job statistics) (read on the destination), C(last poll on the
      source), or C(none).
  returned: after a migration
  type: str
cold:
  description: What the cold migration did.
  returned: after a cold migration
  type: dict
  contains:
    shutdown:
      description: C(graceful), C(forced), or C(not needed (shut off)).
      type: str
      returned: always
    started_on_destination:
      description: Whether it was started on the destination (it ran before).
      type: bool
      returned: always
    copied_disks:
      description: Target devices of the disks copied.
      type: list
      elements: str
      returned: always
finished:
  description: The steps taken to finish a half-done move (RV(operation=finish)).
  returned: when operation is finish
  type: list
  elements: str
state:
  description:
    - Where the domain is, read from both hosts after the action (before it in check mode) - for each of
      C(source) and C(destination) - C(host), C(present), and when present C(state) (libvirt's, such as
      C(running), C(paused), C(shutoff)), C(persistent) and C(postcopy_failed).
  returned: always
  type: dict
where:
  description:
    - On failure, once the domain was found - where the domain is now, in the same form as RV(state). When the task
      was refused before anything started (a failed check), that is where it was found, unchanged; otherwise both hosts
      are read again after the failure (a libvirt connection that broke is opened again first). A host that still
      cannot be read (its daemon hangs, or it stopped answering) has C(state) C(unknown), C(present) null and an
      C(error) that says why - unknown, not absent.
  returned: on failure, once the domain was found
  type: dict
"""

from ansible_collections.virtops.migration.plugins.module_utils._migration.task import MIGRATE_MODULE
from ansible_collections.virtops.migration.plugins.module_utils._module import run_module


def main():
    run_module(MIGRATE_MODULE)


if __name__ == "__main__":
    main()
