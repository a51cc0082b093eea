# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""What a migration request means, decided without libvirt.

- MigrationRequest: the module's parameters, validated (bad input fails here, before any
  connection is opened).
- decide(): from where the domain is now (a DomainState on each host, or None) to what
  must happen: nothing, a live or cold migration, resuming a failed post-copy migration,
  or finishing a half-done move (persist on the destination, undefine on the source).
- live_flags()/cold_flags()/migration_params(): the virDomainMigrateToURI3 flags (as
  names of VIR_MIGRATE_* constants) and typed parameters (by their libvirt names).
"""

from __future__ import annotations

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import (
    DomainStateError,
    ParameterError,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.uri import (
    migration_disks_uri,
    migration_uri,
    validate_host,
)
from ansible_collections.virtops.migration.plugins.module_utils._migration.ladder import Ladder
from ansible_collections.virtops.migration.plugins.module_utils._option_spec import (
    argument_spec,
    check_bounds,
    with_defaults,
)
from ansible_collections.virtops.migration.plugins.module_utils._options import BOUNDS, LADDER, MIGRATION, MODE, STORAGE

# QEMU's limits: multifd-channels up to 255; libvirt's bandwidth is in MiB/s in a 64-bit byte count.
MAX_PARALLEL_CONNECTIONS = 255
MAX_BANDWIDTH_MIB_S = (1 << 63) // (1024 * 1024) - 1
MIB = 1024 * 1024

NONE = "none"
LIVE = "live"
COLD = "cold"
RESUME_POSTCOPY = "resume_postcopy"
FINISH = "finish"

# The migrate module's options (beside the common connection options): the shared ones as
# _options declares them, then those only this module has.
MIGRATE_ARGUMENT_SPEC = argument_spec(
    MODE, LADDER, MIGRATION, STORAGE,
    name=dict(type="str", required=True, aliases=["domain"]),
    destination=dict(type="str", required=True),
    migration_address=dict(type="str"),
    tls_destination=dict(type="str"),
    persistent=dict(type="bool", default=True),
)


def _positive(params, key, upper=None, allow_zero=False):
    value = params.get(key)
    if value is None:
        return None
    if value < 0 or (value == 0 and not allow_zero):
        raise ParameterError("%s must be %s, not %d" % (key, "zero or more" if allow_zero else "a positive number", value))
    if upper is not None and value > upper:
        raise ParameterError("%s must be at most %d, not %d" % (key, upper, value))
    return value


class MigrationRequest(object):
    """The validated parameters of one migrate task."""

    def __init__(self, **kwargs):
        for key, value in kwargs.items():
            setattr(self, key, value)

    @classmethod
    def from_params(cls, params, destination_uri):
        """Validate ``params`` (the module's; missing ones at their defaults) for ``destination_uri``."""
        params = with_defaults(MIGRATE_ARGUMENT_SPEC, params)
        name = params.get("name")
        if not name or not name.strip() or any(ord(ch) < 32 for ch in name):
            raise ParameterError("name must be a domain name or UUID, not %r" % (name,))
        mode = params["mode"]
        bandwidth = _positive(params, "bandwidth", MAX_BANDWIDTH_MIB_S)
        policy = Ladder.from_params(params)
        parallel = _positive(params, "parallel_connections", MAX_PARALLEL_CONNECTIONS)
        shutdown_timeout = _positive(params, "shutdown_timeout", allow_zero=True)
        compression = list(params["compression"])
        if len(set(compression)) != len(compression):
            raise ParameterError("compression lists a method twice: %r" % (compression,))
        if policy.postcopy_flag and "mt" in compression:
            raise ParameterError("post-copy (postcopy or timeout_action=postcopy) cannot be combined with "
                                 "compression method mt: QEMU refuses that combination")
        if not params["persistent"] and mode == "cold":
            raise ParameterError("persistent=false needs mode live: a cold migration moves the definition itself")
        tls = params["tls"]
        if not tls:
            raise ParameterError(
                "tls=false would send the guest's memory (and copied disks) over the migration network in clear: "
                "refused. The collection migrates with QEMU's native TLS only, and has no option to allow "
                "plaintext; issue QEMU's migration certificates (role virtops.migration.tls) instead.")
        tls_destination = params.get("tls_destination")
        if tls_destination is not None:
            tls_destination = validate_host(tls_destination, "tls_destination")
        address = params.get("migration_address")
        mig_uri = migration_uri(address) if address else None
        disks_uri = migration_disks_uri(address) if address else None
        check_bounds(params, BOUNDS)
        return cls(
            name=name,
            destination=destination_uri,
            mode=mode,
            migration_uri=mig_uri,
            disks_uri=disks_uri,
            tls=tls,
            tls_destination=tls_destination,
            bandwidth=bandwidth,
            policy=policy,
            parallel_connections=parallel,
            compression=compression,
            copy_storage=params["copy_storage"],
            persistent=params["persistent"],
            shutdown_timeout=shutdown_timeout,
            force=bool(params["force"]),
            cpu_check=params["cpu_check"],
            postcopy_resume=params["postcopy_resume"],
        )

    def effective_timeout(self, bytes_to_move):
        """The completion timeout of this migration (the ladder's one rule)."""
        return self.policy.effective_timeout(bytes_to_move / float(MIB))


class Decision(object):
    """What the module does, and why; ``steps`` for FINISH."""

    def __init__(self, action, reason, mode=None, steps=(), warnings=()):
        self.action = action
        self.reason = reason
        self.mode = mode
        self.steps = list(steps)
        self.warnings = list(warnings)

    @property
    def changes(self):
        return self.action != NONE

    def __repr__(self):
        return "Decision(%s, %s, %r)" % (self.action, self.mode, self.steps)


def decide(request_mode, persistent, src, dst, src_name="the source", dst_name="the destination", name=None):
    """Decide what to do from where the domain is (``src``/``dst``: DomainState or None)."""
    if src is None and dst is None:
        raise DomainStateError("domain not found: %sit is neither on %s nor on %s" % (
            "%r: " % name if name else "", src_name, dst_name))
    if src is not None and dst is not None and src.uuid and dst.uuid and src.uuid != dst.uuid:
        raise DomainStateError(
            "a different domain with the same name is defined on %s (UUID %s, source UUID %s): "
            "refusing to overwrite it" % (dst_name, dst.uuid, src.uuid))
    if src is not None and src.postcopy_failed or dst is not None and dst.postcopy_failed:
        if src is None or dst is None:
            raise DomainStateError(
                "a post-copy migration failed and only one side still holds the domain (%s: %s, %s: %s): "
                "its memory cannot be put back together" % (
                    src_name, src.describe() if src else "absent", dst_name, dst.describe() if dst else "absent"))
        return Decision(RESUME_POSTCOPY, "a post-copy migration failed earlier: resume it", mode="live")
    if dst is not None and dst.incoming_migration and src is not None and src.active:
        raise DomainStateError("a migration of this domain to %s is already in progress" % dst_name)
    if (src is not None and src.postcopy_running) or (dst is not None and dst.postcopy_running):
        raise DomainStateError(
            "a post-copy migration of this domain from %s to %s is in progress (%s: %s; %s: %s): wait for it to "
            "finish, then re-run" % (src_name, dst_name, src_name, src.describe() if src else "absent",
                                     dst_name, dst.describe() if dst else "absent"))
    if src is None:
        return _on_destination_only(persistent, dst, dst_name, request_mode)
    if dst is not None and dst.active:
        if src.active:
            raise DomainStateError("the domain runs on both %s and %s: refusing to guess which one is right"
                                   % (src_name, dst_name))
        return _finish(persistent, src, dst, src_name, dst_name)
    warnings = []
    if dst is not None:
        warnings.append("%s holds an inactive definition of the domain; the migration replaces it" % dst_name)
    if src.active:
        if request_mode == "cold":
            return Decision(COLD, "the domain runs on %s: shut it down, move it, start it again" % src_name,
                            mode="cold", warnings=warnings)
        return Decision(LIVE, "the domain runs on %s" % src_name, mode="live", warnings=warnings)
    if request_mode == "live":
        raise DomainStateError(
            "the domain is shut off on %s: a live migration needs it running; use mode cold or auto" % src_name)
    return Decision(COLD, "the domain is shut off on %s: move its definition" % src_name, mode="cold",
                    warnings=warnings)


def _on_destination_only(persistent, dst, dst_name, request_mode):
    warnings = []
    if dst.active and persistent and not dst.persistent:
        return Decision(FINISH, "the domain runs on %s but is transient there" % dst_name, mode=None,
                        steps=["persist_destination"])
    if not dst.active and request_mode == "live":
        warnings.append("the domain is defined on %s but not running there" % dst_name)
    return Decision(NONE, "the domain is already on %s and not on the source" % dst_name, warnings=warnings)


def _finish(persistent, src, dst, src_name, dst_name):
    """The domain runs on the destination and the source keeps an inactive definition."""
    if not persistent:
        return Decision(NONE, "the domain runs on %s; %s keeps its inactive definition (persistent=false)"
                        % (dst_name, src_name))
    steps = []
    if not dst.persistent:
        steps.append("persist_destination")
    steps.append("undefine_source")
    return Decision(FINISH, "the domain runs on %s but %s still holds its inactive definition"
                    % (dst_name, src_name), steps=steps)


def live_flags(request, copy_targets):
    """Names of the VIR_MIGRATE_* flags for a live migration."""
    # TLS always: MigrationRequest refuses tls=false.
    names = ["PEER2PEER", "LIVE", "ABORT_ON_ERROR", "TLS"]
    if request.persistent:
        # Not PERSIST_DEST: libvirt would define the domain on the destination before the source
        # undefines it, so for a moment both hosts would hold a persistent definition. The module
        # defines it on the destination itself once the source has let go (persist_on_destination).
        names.append("UNDEFINE_SOURCE")
    if request.policy.auto_converge:
        names.append("AUTO_CONVERGE")
    if request.policy.postcopy_flag:
        names.append("POSTCOPY")
    if request.parallel_connections:
        names.append("PARALLEL")
    if request.compression:
        names.append("COMPRESSED")
    names += _storage_flags(request, copy_targets)
    return names


def cold_flags(request, copy_targets):
    """Flags for a cold migration.

    Without disks to copy, libvirt's offline migration moves the definition alone. With
    disks to copy the module starts the domain paused (its vCPUs never run) and migrates
    it that way, so libvirt's storage migration copies them; it arrives paused.
    """
    if not copy_targets:
        # libvirtd with migrate_tls_force refuses any migration without the TLS flag, even offline.
        return ["PEER2PEER", "OFFLINE", "PERSIST_DEST", "UNDEFINE_SOURCE", "TLS"]
    # As for a live migration, the module defines the domain on the destination afterwards.
    names = ["PEER2PEER", "PAUSED", "UNDEFINE_SOURCE", "ABORT_ON_ERROR", "TLS"]
    if request.parallel_connections:
        names.append("PARALLEL")
    return names + _storage_flags(request, copy_targets)


def _storage_flags(request, copy_targets):
    if not copy_targets:
        return []
    return ["NON_SHARED_INC"] if request.copy_storage == "incremental" else ["NON_SHARED_DISK"]


def migration_params(request, copy_targets, offline=False):
    """virDomainMigrateToURI3 typed parameters, keyed by libvirt's parameter names."""
    params = {}
    if offline:
        return params
    if request.migration_uri:
        params["migrate_uri"] = request.migration_uri
        if copy_targets:
            # Disk copies (NBD) follow the memory stream onto the migration network.
            params["disks_uri"] = request.disks_uri
    if request.bandwidth:
        params["bandwidth"] = request.bandwidth
    if request.parallel_connections:
        params["parallel.connections"] = request.parallel_connections
    if request.compression:
        params["compression"] = list(request.compression)
    if copy_targets:
        params["migrate_disks"] = list(copy_targets)
    if request.tls_destination:
        params["tls.destination"] = request.tls_destination
    return params
