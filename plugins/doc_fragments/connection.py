# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):
    """The common libvirt connection options of every module (virtops.migration.connection)."""

    DOCUMENTATION = r"""
options:
  uri:
    description:
      - The libvirt URI of the hypervisor the module acts on, as seen from the host the module runs on.
      - The modules are meant to run on the hypervisor itself, so the default is the local system instance.
      - A remote URI is accepted with the same strict rules as O(transport) builds them
        (C(qemu+TRANSPORT://HOST[:PORT]/system), no query string).
    type: str
    default: qemu:///system
  transport:
    description:
      - Transport of the libvirt URIs built from host names, for example C(qemu+tls://hv2/system) for C(tls).
      - C(tls) needs libvirtd's TLS listener and certificates whose subject alternative names include the
        host name used; C(ssh) needs SSH keys for the user the module runs as (for peer-to-peer migration,
        for the root user of the source's libvirtd); C(tcp) is unencrypted unless SASL is configured.
    type: str
    choices: [libssh, libssh2, ssh, tcp, tls]
    default: tls
  connect_timeout:
    description:
      - Seconds to wait for a remote hypervisor's libvirt port to answer before failing, so that an
        unreachable host fails quickly with a clear message.
    type: int
    default: 10
notes:
  - Host names given to the modules are validated strictly before use - letters, digits, C(-) and C(.),
    or an IP address - and libvirt URIs must be C(qemu[+TRANSPORT]://[USER@]HOST[:PORT]/system) without a
    query string or fragment.
requirements:
  - libvirt Python bindings on the host the module runs on (Debian and Ubuntu C(python3-libvirt),
    Fedora and RHEL C(python3-libvirt), PyPI C(libvirt-python)).
"""
