# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import yaml

from ansible_collections.virtops.migration.plugins.module_utils._option_spec import fragment
from ansible_collections.virtops.migration.plugins.module_utils._options import CONNECTION


class ModuleDocFragment(object):
    """The common libvirt connection options of every module (virtops.migration.connection)."""

    # The options are YAML that yaml.safe_dump writes from their declaration (annotated, so that the
    # sanity yamllint test, which lints the string literals of doc fragments, leaves them to
    # validate-modules, which checks them through every module); the notes are written here.
    DOCUMENTATION: str = yaml.safe_dump(dict(options=fragment(CONNECTION)), default_flow_style=False,
                                        sort_keys=False, width=120) + r"""
notes:
  - Host names given to the modules are validated strictly before use - letters, digits, C(-) and C(.),
    or an IP address - and libvirt URIs must be C(qemu[+TRANSPORT]://[USER@]HOST[:PORT]/system) without a
    query string or fragment.
requirements:
  - libvirt Python bindings on the host the module runs on (Debian and Ubuntu C(python3-libvirt),
    Fedora and RHEL C(python3-libvirt), PyPI C(libvirt-python)).
"""
