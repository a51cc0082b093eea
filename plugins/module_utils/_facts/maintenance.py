# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""The host's maintenance marker: a one-line file that keeps the host out of every plan's destinations.

host_info reports it (``maintenance``, ``maintenance_reason``); the maintenance module sets and
removes it. It is refused while an evacuation other than the caller's runs on the host (holds
the host's journal lock): a second evacuation must not rewrite the marker of the first, nor a
restore take the host out of maintenance under a running one.

The host enforces it too: the libvirt hook of the hypervisor role (roles/hypervisor/files/
virtops-maintenance) refuses every incoming live migration while the marker is there, but of the
domains named in the file beside it (``<marker>.returning``, one name a line), which a restore
writes (state ``returning``) for the domains it brings back. So a plan made from facts read
before the host was marked - another controller's, another evacuation's - cannot send it a guest.
"""

from __future__ import annotations

import errno
import os

from ansible_collections.virtops.migration.plugins.module_utils._evacuation.journal import (
    JournalError,
    atomic_write,
    lock_holder,
    validate_id,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import ParameterError, VirtopsError
from ansible_collections.virtops.migration.plugins.module_utils._module import EntryPoint
from ansible_collections.virtops.migration.plugins.module_utils._option_spec import argument_spec
from ansible_collections.virtops.migration.plugins.module_utils._options import EVACUATION_ID, JOURNAL, REASON

MAINTENANCE_FILE = "/var/lib/virtops-migration/maintenance"
# What the hook says when it refuses a migration; libvirt's error carries it to the source.
REFUSAL = "is in maintenance and takes no incoming migration"
MAX_REASON = 500
DEFAULT_REASON = "maintenance"


def read_marker(path=None):
    """The marker's text (stripped), "" for an empty marker, or None when the host is not marked."""
    try:
        with open(path or MAINTENANCE_FILE) as handle:
            return handle.read().strip()
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise VirtopsError("cannot read the maintenance marker %s: %s" % (path or MAINTENANCE_FILE, err.strerror))


def check_reason(reason):
    """The reason as the marker holds it; ParameterError for one that is not one short line."""
    text = (reason or "").strip() or DEFAULT_REASON
    if "\n" in text or "\r" in text or len(text) > MAX_REASON:
        raise ParameterError("reason must be one line of at most %d characters, not %r" % (MAX_REASON, text[:80]))
    return text


def marker_text(reason, evacuation_id):
    return "%s (evacuation %s)" % (reason, evacuation_id) if evacuation_id else reason


def running_elsewhere(journal_dir, evacuation_id):
    """The id of another evacuation that runs on this host now (holds its journal lock), or None.

    A run of ``evacuation_id`` itself (a resumed evacuation marking its host again) is not another one.
    """
    try:
        holder = lock_holder(journal_dir)
    except JournalError as err:
        raise VirtopsError(str(err)) from None
    if holder is None:
        return None
    owner = holder.get("evacuation_id")
    if evacuation_id and owner == evacuation_id:
        return None
    return owner or "of unknown id"


def set_marker(text, path=None, check_mode=False):
    """Write the marker; (changed, text before or None)."""
    path = path or MAINTENANCE_FILE
    before = read_marker(path)
    if before == text:
        return False, before
    if not check_mode:
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            atomic_write(path, text + "\n", 0o644)
        except OSError as err:
            raise VirtopsError("cannot write the maintenance marker %s: %s" % (path, err.strerror)) from None
    return True, before


def returning_path(path=None):
    return (path or MAINTENANCE_FILE) + ".returning"


def read_returning(path=None):
    """The domains the marked host takes back (sorted), [] when it takes none."""
    try:
        with open(returning_path(path)) as handle:
            return sorted(line for line in handle.read().splitlines() if line)
    except FileNotFoundError:
        return []
    except OSError as err:
        raise VirtopsError("cannot read %s: %s" % (returning_path(path), err.strerror)) from None


def set_returning(names, path=None, check_mode=False):
    """Write the domains the marked host takes back ([] removes the file); True when it changed."""
    names = sorted(set(names))
    if read_returning(path) == names:
        return False
    if not check_mode:
        try:
            if names:
                atomic_write(returning_path(path), "".join(name + "\n" for name in names), 0o644)
            else:
                os.unlink(returning_path(path))
        except FileNotFoundError:
            pass
        except OSError as err:
            raise VirtopsError("cannot write %s: %s" % (returning_path(path), err.strerror)) from None
    return True


def check_domain_names(names):
    """The names as given; ParameterError for one that is empty or not one line."""
    for name in names:
        if not name or "\n" in name or "\r" in name or "/" in name:
            raise ParameterError("returning_domains must be domain names (one line, no '/'), not %r" % (name,))
    return names


def clear_marker(path=None, check_mode=False):
    """Remove the marker; (changed, text before or None)."""
    path = path or MAINTENANCE_FILE
    before = read_marker(path)
    if before is None:
        return False, None
    if not check_mode:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise VirtopsError("cannot remove the maintenance marker %s: %s" % (path, err.strerror)) from None
    return True, before


def _diff(before, after):
    return dict(before=before + "\n" if before is not None else "", after=after + "\n" if after is not None else "",
                before_header=MAINTENANCE_FILE, after_header=MAINTENANCE_FILE)


def run_maintenance(module, path=None):
    params = module.params
    state = params["state"]
    evacuation_id = params["evacuation_id"]
    text = marker_text(check_reason(params["reason"]), evacuation_id) if state == "present" else None
    names = check_domain_names(params["returning_domains"] or [])
    if names and state != "returning":
        raise ParameterError("returning_domains is for state=returning only, not state=%s" % state)
    try:
        if evacuation_id is not None:
            validate_id(evacuation_id)
    except JournalError as err:
        raise ParameterError(str(err)) from None
    other = running_elsewhere(params["journal_dir"], evacuation_id)
    if other is not None:
        raise VirtopsError("evacuation %s is running on this host: the maintenance marker is left as it is (%s)" % (
            other, "restore the host once it has ended" if state == "absent" else "wait for it to end, or abort it"))
    if state == "present":
        changed, before = set_marker(text, path, module.check_mode)
        after = text
    elif state == "absent":
        changed, before = clear_marker(path, module.check_mode)
        after = None
    else:
        # The marker stays as it is; an unmarked host takes every migration in anyway.
        before = after = read_marker(path)
        changed = False
    # A host marked afresh, or taken out of maintenance, takes back nothing from before.
    wanted = names if state == "returning" and before is not None else []
    changed = set_returning(wanted, path, module.check_mode) or changed
    result = dict(changed=changed, maintenance=after is not None, marked_before=before is not None,
                  reason_before=before, reason=after, returning=sorted(set(wanted)), path=path or MAINTENANCE_FILE)
    if before != after:
        result["diff"] = _diff(before, after)
    return result


MAINTENANCE_ARGUMENT_SPEC = argument_spec(
    EVACUATION_ID["evacuation_id"].but(required=False), JOURNAL, REASON,
    state=dict(type="str", default="present", choices=["present", "absent", "returning"]),
    returning_domains=dict(type="list", elements="str", default=[]),
)

# On the host, from files alone: no libvirt connection.
MAINTENANCE_MODULE = EntryPoint(run_maintenance, MAINTENANCE_ARGUMENT_SPEC, connection=False)
