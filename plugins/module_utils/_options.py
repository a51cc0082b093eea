# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""Every option that several modules share, declared once: type, default, choices, text.

The argument specs of the modules are built from these declarations (``argument_spec`` of
_option_spec.py, which holds the machinery), and the doc fragment ``virtops.migration.options``
renders the same declarations as the modules' documentation, so an option's type, default,
choices and description live here and nowhere else. A module whose default differs (an
evacuation copies local disks by default, the planner assumes QEMU's downtime) says so with
``Option.but(default=...)`` (likewise ``required``) and repeats only that in its
DOCUMENTATION, which validate-modules checks.

Options that only one module has are declared beside that module's entry point.
"""

from __future__ import annotations

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.uri import (
    DEFAULT_TRANSPORT,
    LOCAL_URI,
    TRANSPORT_PORTS,
)
from ansible_collections.virtops.migration.plugins.module_utils._migration.ladder import (
    DEFAULT_STALL_ITERATIONS,
    POSTCOPY_CHOICES,
    TIMEOUT_ACTIONS,
)
from ansible_collections.virtops.migration.plugins.module_utils._option_spec import Option, _group
from ansible_collections.virtops.migration.plugins.module_utils._planning.prediction import DEFAULT_SETUP_SECONDS

COPY_STORAGE = ("none", "all", "incremental")
COMPRESSION_METHODS = ("xbzrle", "mt")
MIGRATION_MODES = ("auto", "cold", "live")
DEFAULT_CONNECT_TIMEOUT = 10
DEFAULT_SHUTDOWN_TIMEOUT = 120

# --- the libvirt connection (every module but the planner) ---------------------------

CONNECTION = _group(
    Option("uri", "str", default=LOCAL_URI, description=[
        "The libvirt URI of the hypervisor the module acts on, as seen from the host the module runs on.",
        "The modules are meant to run on the hypervisor itself, so the default is the local system instance.",
        "A remote URI is accepted with the same strict rules as O(transport) builds them "
        "(C(qemu+TRANSPORT://HOST[:PORT]/system), no query string). C(qemu+tcp://), libvirt's plaintext "
        "transport, is refused with an error before anything is opened."]),
    Option("transport", "str", default=DEFAULT_TRANSPORT, choices=sorted(TRANSPORT_PORTS), description=[
        "Transport of the libvirt URIs built from host names, for example C(qemu+tls://hv2/system) for C(tls).",
        "C(tls) needs libvirtd's TLS listener and certificates whose subject alternative names include the "
        "host name used; C(ssh) needs SSH keys for the user the module runs as (for peer-to-peer migration, "
        "for the root user of the source's libvirtd).",
        "There is no C(tcp): libvirt's plaintext TCP transport would hand a root-equivalent connection to "
        "anyone on the path, and no option of the collection re-enables it."]),
    Option("connect_timeout", "int", default=DEFAULT_CONNECT_TIMEOUT, description=[
        "Seconds to wait for a remote hypervisor's libvirt port to answer before failing, so that an "
        "unreachable host fails quickly with a clear message."]),
)

# --- the escalation ladder of a live migration (migrate, evacuate, precheck, plan) ----

LADDER = _group(
    Option("max_downtime", "int", description=[
        "Maximum tolerable downtime in milliseconds at the switch-over, applied as soon as the job starts.",
        "QEMU's default (300 ms) when not set. The planner and the pre-check predict with it."]),
    Option("max_downtime_steps", "list", elements="int", default=[], description=[
        "Higher downtime limits in milliseconds, climbed one rung at a time each time pre-copy stalls "
        "(or straight to the first one that the measured bandwidth says is enough). Each must be above "
        "O(max_downtime), and none may be listed twice."]),
    Option("stall_iterations", "int", default=DEFAULT_STALL_ITERATIONS, description=[
        "Pre-copy iterations without progress (the bytes left not dropping below 90 % of the best seen) "
        "before the next rung of the ladder is climbed."]),
    Option("auto_converge", "bool", default=False, description=[
        "Permit QEMU's auto-converge - throttling the guest's vCPUs while it dirties memory faster than it can "
        "be sent. QEMU fixes this when the migration starts and engages it by itself; the migrate module records "
        "when it did and, while the throttle still rises, waits for it before climbing to post-copy."]),
    Option("postcopy", "str", default="never", choices=POSTCOPY_CHOICES, description=[
        "C(never) - no post-copy (unless O(timeout_action=postcopy)).",
        "C(permit) - switch to post-copy when pre-copy still stalls after the downtime steps and auto-converge.",
        "C(after_first_pass) - switch to post-copy as soon as the first pre-copy pass has been sent.",
        "In post-copy the guest runs on the destination while the rest of its memory follows; a failure then "
        "cannot be rolled back (see O(virtops.migration.migrate#module:postcopy_resume)). Needs C(userfaultfd) "
        "for QEMU on the destination (C(vm.unprivileged_userfaultfd=1) when QEMU does not run as root). Not "
        "combinable with the compression method C(mt)."]),
    Option("timeout", "int", description=[
        "Seconds after which O(timeout_action) is taken if a migration has not completed.",
        "When not set, 800 s per GiB to move (memory, and disks copied), at least 300 s. A rung the planner "
        "or the pre-check predicts to take longer does not count as converging."]),
    Option("timeout_action", "str", default="abort", choices=TIMEOUT_ACTIONS, description=[
        "C(abort) - abort the migration; the domain stays running on the source and the move fails.",
        "C(postcopy) - switch to post-copy (permitted from the start for that).",
        "C(pause) - pause the guest so the rest is sent while it does not run (downtime grows accordingly); "
        "it is resumed on the destination."]),
)

# --- how one migration runs (migrate, evacuate) ----------------------------------------

MIGRATION = _group(
    Option("tls", "bool", default=True, description=[
        "Encrypt the migration stream (memory and copied disks) with QEMU's native TLS (C(VIR_MIGRATE_TLS)); "
        "both hosts need QEMU's migration certificates (the C(virtops.migration.tls) role issues them).",
        "Only V(true) is accepted. V(false) is refused with an error before anything is opened: the stream "
        "carries all of the guest's memory, and a plaintext stream could be read or altered by anyone on the "
        "migration network. There is deliberately no option to allow it; hosts prepared by the "
        "C(virtops.migration.hypervisor) role refuse such a migration too (C(migrate_tls_force))."]),
    Option("bandwidth", "int", description=[
        "Maximum migration bandwidth in MiB/s, at least 1. Unlimited when not set."]),
    Option("postcopy_resume", "bool", default=True, description=[
        "When a post-copy migration fails, try to resume it (C(VIR_MIGRATE_POSTCOPY_RESUME)), retrying for up to "
        "180 s while libvirt still refuses because the destination has not noticed the failure yet.",
        "Not attempted while libvirt still holds the failed migration job open (its peer unreachable); run "
        "again later."]),
    Option("parallel_connections", "int", description=[
        "Number of parallel connections for the memory stream (QEMU multifd, C(VIR_MIGRATE_PARALLEL))."]),
    Option("compression", "list", elements="str", default=[], choices=COMPRESSION_METHODS, description=[
        "Compression methods for the memory stream (C(VIR_MIGRATE_COMPRESSED)); C(xbzrle) sends page deltas, "
        "C(mt) compresses pages with several threads."]),
    Option("shutdown_timeout", "int", default=DEFAULT_SHUTDOWN_TIMEOUT, description=[
        "Seconds to wait for a graceful (ACPI) shutdown - of a running domain moved cold, and of a domain an "
        "evacuation shuts down in place."]),
    Option("force", "bool", default=False, description=[
        "Power a domain off when it has not shut down within O(shutdown_timeout), or (cold migration) when it is "
        "paused. Without it, the move fails, nothing is moved and the domain keeps running."]),
    Option("cpu_check", "bool", default=True, description=[
        "Ask the destination's libvirt whether it can provide the domain's CPU (C(virConnectCompareHypervisorCPU)) "
        "before migrating. Turn off only when the comparison gives false failures for a known-good pair of hosts."]),
)

# --- what happens to disks that are not shared (migrate, evacuate, precheck) -----------

STORAGE = _group(
    Option("copy_storage", "str", default="none", choices=COPY_STORAGE, description=[
        "What to do with disks that are not shared with the destination (neither network disks nor files on a "
        "shared file system such as NFS, GFS2, OCFS2 or CephFS).",
        "C(none) - fail (the pre-check blocks) if there is such a disk. C(all) - copy them "
        "(C(VIR_MIGRATE_NON_SHARED_DISK)). C(incremental) - copy only their top image, the backing chain being "
        "present on the destination (C(VIR_MIGRATE_NON_SHARED_INC)).",
        "The destination needs a storage pool for the disk's directory (libvirt creates the disk there), or the "
        "disk must already exist there.",
        "An evacuation and the pre-check copy by default, since an evacuation must take local disks along."]),
)

# --- the kind of migration (migrate, precheck) ---------------------------------------

MODE = _group(
    Option("mode", "str", default="auto", choices=MIGRATION_MODES, description=[
        "C(live) moves a running (or paused) domain without stopping it, and fails for a shut-off domain.",
        "C(cold) shuts the domain down gracefully (see O(virtops.migration.migrate#module:shutdown_timeout) and "
        "O(virtops.migration.migrate#module:force)), moves its definition and its local disks, and starts it on "
        "the destination if it ran before.",
        "C(auto) migrates live when the domain is active and cold when it is shut off.",
        "The pre-check checks for the migration this chooses."]),
)

# --- destinations' capacity (evacuation_plan, precheck) ------------------------------

CAPACITY = _group(
    Option("memory_overcommit", "float", default=1.0, description=[
        "Ratio of guest memory to a destination's committable memory."]),
    Option("vcpu_overcommit", "float", default=4.0, description=[
        "Ratio of guest vCPUs to a destination's logical CPUs."]),
    Option("reserved_memory_mib", "int", default=0, description=[
        "Memory kept free on every destination for the host itself, in MiB."]),
)

# --- how many moves run at once (evacuation_plan, evacuate) --------------------------

CONCURRENCY = _group(
    Option("max_parallel_per_source", "int", default=2, description=[
        "Migrations running from the source at the same time (the evacuation uses the plan's value)."]),
    Option("max_parallel_per_destination", "int", default=1, description=[
        "Migrations running to one destination at the same time (the evacuation uses the plan's value)."]),
)

# --- the migration network (evacuate, precheck) --------------------------------------

ADDRESSES = _group(
    Option("migration_addresses", "dict", default={}, description=[
        "Migration network address of each destination, by host name as the destinations are named. The memory "
        "stream and disk copies go there (the migrate module's "
        "O(virtops.migration.migrate#module:migration_address)); the pre-check measures the throughput to it, "
        "and the destination's QEMU certificate must name it."]),
)

# --- the host being emptied (evacuation_plan, evacuate) -------------------------------

SOURCE = _group(
    Option("source", "str", description=[
        "Inventory name of the host to empty (the source) - the host planned for, evacuated, verified or restored.",
        "The planner needs it as a key of O(virtops.migration.evacuation_plan#module:hosts), and so does the "
        "verification after an evacuation; the evacuation records it in its journal (it is the plan's "
        "RV(virtops.migration.evacuation_plan#module:source)) and refuses any destination that is this host."]),
)

# --- the facts of every hypervisor (evacuation_plan, evacuation_verify, restore_plan) --

FACTS = _group(
    Option("hosts", "dict", required=True, description=[
        "The inventory's hypervisors, as the C(virtops.migration.host_info) module reports them - a dictionary "
        "from inventory hostname to that host's facts. Every field the module reads is checked; malformed input "
        "fails with the host, domain and field named. The planner does not inspect the domains of hosts that "
        "cannot be destinations (maintenance, O(virtops.migration.evacuation_plan#module:exclude)).",
        "C(memory_total_mib) (number, required) - the host's memory.",
        "C(memory_committable_mib) (number, required, at most C(memory_total_mib)) - the memory that can be given "
        "to guests. The planner's capacity is C(memory_committable_mib) * "
        "O(virtops.migration.evacuation_plan#module:memory_overcommit) - "
        "O(virtops.migration.evacuation_plan#module:reserved_memory_mib).",
        "C(vcpus_total) (number, required) - the host's logical CPUs. The planner's capacity is C(vcpus_total) * "
        "O(virtops.migration.evacuation_plan#module:vcpu_overcommit).",
        "C(maintenance) (bool, default false) - a host in maintenance is never a destination.",
        "C(migration_bandwidth_mib_s) (number > 0, optional) - measured throughput from this host on the "
        "migration network; the source's is the default of "
        "O(virtops.migration.evacuation_plan#module:bandwidth_budget_mib_s).",
        "C(domains) (list, default empty) - the host's domains, each with C(name) (required, unique on the "
        "source), C(uuid), C(state) (required - libvirt's C(running), C(blocked), C(paused), C(shutdown), "
        "C(shutoff), C(crashed), C(pmsuspended), C(nostate) or C(unknown)), C(persistent) (bool, default true), "
        "C(memory_mib) and C(vcpus) (numbers, required), C(dirty_rate_mib_s) (measured, optional - see "
        "O(virtops.migration.evacuation_plan#module:assumed_dirty_rate_mib_s)), C(shared_storage) (bool, default "
        "true - every disk is shared with the destinations), C(local_disk_bytes) (bytes to copy, required when "
        "C(shared_storage) is false), C(blockers) (list of strings - devices that block live migration) and "
        "C(labels) - C(anti_affinity) (group name or null) and C(do_not_migrate) (null, C(skip), C(cold), "
        "C(shutdown), or true for O(virtops.migration.evacuation_plan#module:do_not_migrate_default)).",
    ]),
)

# --- which domains of the source (precheck, evacuation_plan) ------------------------

DOMAINS = _group(
    Option("domains", "list", elements="str", description=[
        "Domains of the source (names or UUIDs) to check or to plan for; all its domains when not set."]),
)

# --- an evacuation: its id, its journal, its result (evacuate, evacuation_abort, evacuation_report,
# evacuation_verify) -----------------------------------------------------------------

JOURNAL_DIRECTORY = "/var/lib/virtops-migration/evacuations"

EVACUATION_ID = _group(
    Option("evacuation_id", "str", required=True, description=[
        "Names the evacuation and its journal. Use the same id to resume an interrupted evacuation.",
        "Letters, digits, C(.), C(_) and C(-), at most 100, starting with a letter or digit."]),
)

JOURNAL = _group(
    Option("journal_dir", "path", default=JOURNAL_DIRECTORY, description=[
        "Directory of the journals on the source."]),
)

REASON = _group(
    Option("reason", "str", default="", description=[
        "Why, in one line - written in the maintenance marker or the abort request, for whoever reads it later "
        "(who asked, and why)."]),
)

EVACUATION_RESULT = _group(
    Option("evacuation", "dict", description=[
        "The result of the M(virtops.migration.evacuate) module, or of its failure - its "
        "RV(virtops.migration.evacuate#module:domains), RV(virtops.migration.evacuate#module:totals) and "
        "RV(virtops.migration.evacuate#module:summary), or its C(msg)."]),
)

# --- planning the moves of many domains (evacuation_plan, upgrade_plan) ----------------

DO_NOT_MIGRATE_POLICIES = ("skip", "cold", "shutdown")
DEFAULT_SHUTDOWN_SECONDS = 30.0

PLANNING = _group(
    Option("exclude", "list", elements="str", default=[], description=[
        "Hosts never used as destinations. M(virtops.migration.upgrade_plan) does not upgrade them either."]),
    Option("do_not_migrate_default", "str", default="skip", choices=DO_NOT_MIGRATE_POLICIES, description=[
        "The policy of a domain whose C(do_not_migrate) label is C(true) - C(skip), C(cold) or C(shutdown)."]),
    Option("setup_seconds", "float", default=DEFAULT_SETUP_SECONDS, description=[
        "Fixed overhead of each migration - connecting, starting QEMU on the destination, moving the definition."]),
    Option("shutdown_seconds", "float", default=DEFAULT_SHUTDOWN_SECONDS, description=[
        "Expected time of a guest's graceful shutdown (cold moves of running domains, and policy C(shutdown))."]),
)

# The groups by the name of their section in the virtops.migration.options doc fragment.
GROUPS = dict(connection=CONNECTION, ladder=LADDER, migration=MIGRATION, storage=STORAGE, mode=MODE,
              capacity=CAPACITY, concurrency=CONCURRENCY, addresses=ADDRESSES, source=SOURCE,
              facts=FACTS, domains=DOMAINS, evacuation_id=EVACUATION_ID, journal=JOURNAL, reason=REASON,
              evacuation_result=EVACUATION_RESULT, planning=PLANNING)


# --- bounds of every numeric option, shared or a module's own --------------------------

DAY_S = 86400
# (minimum, maximum) of each numeric option of any module, by name; a list option's bounds hold
# for each of its elements. Every value must also be a finite number (no inf, no nan). A value
# out of these bounds is a mistake: the schedule would never end, a timer would overflow, a
# migration would be capped at nothing. check_bounds(params, BOUNDS) (_option_spec.py) refuses
# it before anything is opened.
BOUNDS = dict(
    connect_timeout=(1, 3600),
    max_downtime=(1, 600000),
    max_downtime_steps=(1, 600000),
    stall_iterations=(1, 1000),
    timeout=(1, 7 * DAY_S),
    bandwidth=(1, 1000000),
    parallel_connections=(1, 255),
    shutdown_timeout=(0, DAY_S),
    memory_overcommit=(0.01, 100),
    vcpu_overcommit=(0.01, 1000),
    reserved_memory_mib=(0, 1 << 40),
    max_parallel_per_source=(1, 64),
    max_parallel_per_destination=(1, 64),
    retries=(0, 100),
    retry_delay=(0, 3600),
    source_throughput_mib_s=(0.001, 1000000),
    source_bandwidth_mib_s=(0.001, 1000000),
    bandwidth_budget_mib_s=(0.001, 1000000),
    assumed_dirty_rate_mib_s=(0, 1000000),
    setup_seconds=(0, DAY_S),
    shutdown_seconds=(0, DAY_S),
    bandwidth_port=(1, 65535),
    bandwidth_seconds=(1, 60),
    dirty_rate_seconds=(0, 600),  # 0 skips the sampling
    certificate_min_days=(0, 3650),
    # upgrade_plan's own options
    max_hosts_per_wave=(1, 10000),
    bandwidth_mib_s=(0.001, 10 ** 7),
    upgrade_seconds=(0, 10 ** 6),
)
