# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""How much of a running guest's memory is in use: its resident RAM and the share of it that
is not zero pages, read from the QEMU process of this host.
"""

from __future__ import annotations

import os
import random
import re


def guest_ram_mapping(smaps_text, memory_kib):
    """(start address, resident KiB) of the guest's RAM in a QEMU process's smaps, or None.

    The guest RAM is the one anonymous mapping whose size is the guest's memory.
    """
    start = None
    for line in smaps_text.splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            start = int(line.split("-", 1)[0], 16)
            size = None
        elif line.startswith("Size:"):
            size = int(line.split()[1])
        elif line.startswith("Rss:") and size == memory_kib and start is not None:
            return start, int(line.split()[1])
    return None


def nonzero_fraction(memory, start, pages, samples=4096, seed=0):
    """Share of non-zero pages among ``samples`` pages drawn (seeded) from a mapping of ``pages`` pages.

    A migration sends a zero page as a marker, nearly free, so the non-zero share of the
    guest's memory is what its first pass really sends.
    """
    draw = random.Random(seed)
    zero = bytes(4096)
    count = samples if pages else 0
    found = 0
    for _index in range(count):
        memory.seek(start + draw.randrange(pages) * 4096)
        found += memory.read(4096) != zero
    return found / float(count) if count else 0.0


def guest_memory_use(name, memory_mib, run_dir="/run/libvirt/qemu"):
    """(resident MiB, non-zero MiB) of a running domain of this host, from its QEMU process; (None, None) if unknown."""
    try:
        with open(os.path.join(run_dir, name + ".pid")) as handle:
            pid = int(handle.read().strip())
        with open("/proc/%d/smaps" % pid) as handle:
            mapping = guest_ram_mapping(handle.read(), memory_mib * 1024)
        if mapping is None:
            return None, None
        with open("/proc/%d/mem" % pid, "rb", buffering=0) as memory:
            share = nonzero_fraction(memory, mapping[0], memory_mib * 256)
    except (OSError, ValueError):
        return None, None
    return mapping[1] // 1024, int(round(share * memory_mib))
