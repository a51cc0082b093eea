#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: host_info
short_description: Facts about a KVM hypervisor and its domains that migration planning needs
version_added: 0.1.0
description:
  - Reads, on the hypervisor it runs on, what a planner needs to place its domains elsewhere and what a
    pre-check needs to tell whether a migration can work - the host's CPU (as libvirt sees it, and the
    C(host-model) CPU libvirt computes), memory and vCPU capacity and what the running domains take of it,
    libvirt and QEMU versions, machine types and accelerators, whether KVM is usable, the TLS
    certificates of libvirt and QEMU (names, addresses, expiry), the migration settings of C(qemu.conf),
    whether the host is in maintenance, and every domain with its state, size, CPU definition, disks
    (shared or local), devices that block live migration, persistence and migration labels.
  - Migration labels come from the domain's libvirt metadata (namespace C(urn:virtops:migration:1), elements
    C(anti_affinity), C(do_not_migrate), C(priority) and C(max_downtime)) and from O(labels), which wins key by
    key; RV(host_info.domains[].label_sources) says where each came from.
  - The result is the per-host input of M(virtops.migration.evacuation_plan).
author:
  - virtops.migration contributors (!UNKNOWN)
extends_documentation_fragment:
  - virtops.migration.connection
  - virtops.migration.attributes
  - virtops.migration.attributes.action_group
  - virtops.migration.attributes.info_module
options:
  reserved_memory_mib:
    description:
      - Memory kept for the host itself, subtracted from its total to give RV(host_info.memory_committable_mib).
    type: int
    default: 0
  labels:
    description:
      - Migration labels per domain name, for example from inventory variables. They override the labels
        in the domains' metadata.
      - A key with C(*), C(?) or C([) is a shell-style pattern (C(db-*)). A domain's own entry wins; otherwise the
        first pattern that matches it, in the order given.
      - Each value is a dictionary with the optional keys C(anti_affinity) (a group name - no two domains of one
        group on one host) and C(do_not_migrate) (C(skip), C(cold) or C(shutdown) - what an evacuation does
        with the domain instead of a live migration; C(true) for the planner's
        O(virtops.migration.evacuation_plan#module:do_not_migrate_default)), C(priority) (a whole number from
        -1000 to 1000, 0 when unset - an evacuation starts the domains of higher priority first) and
        C(max_downtime) (milliseconds, 1 to 600000 - the longest the domain may be paused when a live migration
        switches over; its migration's downtime never escalates above it).
      - A key set to null leaves the metadata's value.
    type: dict
    default: {}
  certificates:
    description:
      - Paths of the certificates to inspect, by role.
      - When not set, libvirt's and QEMU's standard paths - C(ca) is C(/etc/pki/CA/cacert.pem), C(libvirt_server)
        C(/etc/pki/libvirt/servercert.pem), C(libvirt_client) C(/etc/pki/libvirt/clientcert.pem), C(qemu_server)
        C(/etc/pki/qemu/server-cert.pem) and C(qemu_client) C(/etc/pki/qemu/client-cert.pem).
    type: dict
requirements:
  - Python C(cryptography) on the host to inspect certificates (without it, each certificate reports an error).
seealso:
  - module: virtops.migration.evacuation_plan
"""

EXAMPLES = r"""
- name: Read the facts of every hypervisor
  virtops.migration.host_info:
    reserved_memory_mib: 2048
    labels: "{{ migration_labels | default({}) }}"
  register: facts

- name: Show the domains that cannot move live
  ansible.builtin.debug:
    msg: "{{ facts.host_info.domains | selectattr('blockers') | map(attribute='name') | list }}"
"""

RETURN = r"""
host_info:
  description: The facts of the host.
  returned: success
  type: dict
  contains:
    hostname:
      description: The host name libvirt reports.
      type: str
      sample: hv1.lab.test
    host_uuid:
      description: libvirt's host UUID (two hosts with one UUID cannot migrate to each other).
      type: str
    cpu:
      description: The host CPU - C(arch), C(model), C(vendor), C(features), and C(host_model), the CPU libvirt
        would give a C(host-model) guest (C(model) and C(features); null without KVM).
      type: dict
    memory_total_mib:
      description: Physical memory of the host.
      type: int
    memory_committable_mib:
      description: Memory that may be given to guests - the total less O(reserved_memory_mib).
      type: int
    memory_committed_mib:
      description: Memory of the domains that are not shut off.
      type: int
    vcpus_total:
      description: Host CPUs libvirt reports.
      type: int
    vcpus_committed:
      description: vCPUs of the domains that are not shut off.
      type: int
    libvirt_version:
      description: Version of libvirt.
      type: str
      sample: 9.0.0
    qemu_version:
      description: Version of QEMU (the hypervisor version libvirt reports).
      type: str
      sample: 7.2.0
    kvm:
      description: Whether KVM guests can run here (libvirt offers the kvm domain type and /dev/kvm exists).
      type: bool
    guests:
      description: Per architecture, the machine types, the domain types (C(kvm), C(qemu)) and the emulator.
      type: dict
    certificates:
      description: Per certificate role, C(path), C(present), and when readable C(subject_cn), C(serial) (hex),
        C(issuer), C(dns_names), C(ip_addresses), C(not_before), C(not_after), C(days_left), C(valid_now); or
        C(error). Where the CRL of the certificate's CA is installed (C(/etc/pki/CA/cacrl.pem) for libvirt's,
        C(/etc/pki/qemu/ca-crl.pem) for QEMU's), also C(revoked), C(crl) and, when revoked, C(revoked_on).
      type: dict
    migration:
      description: The migration settings found in C(qemu.conf) (address, port range, TLS enforcement and
        verification), as strings.
      type: dict
    maintenance:
      description: Whether the host is marked in maintenance (excluded as a destination).
      type: bool
    maintenance_reason:
      description: What the maintenance marker says, or null.
      type: str
    domains:
      description: Every domain libvirt knows on the host, sorted by name.
      type: list
      elements: dict
      contains:
        name:
          description: Domain name.
          type: str
        uuid:
          description: Domain UUID.
          type: str
        state:
          description: C(running), C(paused), C(shutoff) and so on.
          type: str
        persistent:
          description: Whether the domain has a persistent definition here.
          type: bool
        autostart:
          description: Whether the domain starts with the host.
          type: bool
        memory_mib:
          description: Maximum memory of the domain.
          type: int
        memory_resident_mib:
          description:
            - Guest memory resident on the host (read from its QEMU process); untouched pages are not resident, and
              a migration sends them as zero pages. Null when the domain is not running here.
          type: int
        memory_nonzero_mib:
          description:
            - Estimated non-zero guest memory, from 4096 pages sampled in its QEMU process. Zero pages go as markers,
              so this is what a migration's first pass sends. Null when the domain is not running here.
          type: int
        vcpus:
          description: vCPUs of the domain.
          type: int
        virt_type:
          description: C(kvm) or C(qemu).
          type: str
        arch:
          description: Guest architecture.
          type: str
        machine:
          description: Machine type.
          type: str
        cpu:
          description: CPU C(mode) and its definition as XML (C(xml)), as the domain runs.
          type: dict
        disks:
          description: Each disk's C(target), C(source), C(type), C(placement) (C(shared), C(local) or C(skipped))
            and the C(reason).
          type: list
          elements: dict
        shared_storage:
          description: Whether no disk needs copying to move the domain.
          type: bool
        local_disk_bytes:
          description: Bytes allocated on the domain's local disks - what a storage copy moves.
          type: int
        blockers:
          description: Devices that prevent a live migration.
          type: list
          elements: str
        labels:
          description: C(anti_affinity), C(do_not_migrate), C(priority) and C(max_downtime), from metadata and O(labels).
          type: dict
        label_sources:
          description: For each label that is set, where it came from - C(inventory) (O(labels)) or C(metadata).
          type: dict
        label_problems:
          description: Labels that are not understood (for example an unknown policy).
          type: list
          elements: str
        dirty_rate_mib_s:
          description: Always null here; M(virtops.migration.precheck) measures it.
          type: float
"""

from ansible_collections.virtops.migration.plugins.module_utils._facts.host_facts import HOST_INFO_MODULE
from ansible_collections.virtops.migration.plugins.module_utils._module import run_module


def main():
    run_module(HOST_INFO_MODULE)


if __name__ == "__main__":
    main()
