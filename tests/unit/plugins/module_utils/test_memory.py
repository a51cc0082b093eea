"""A guest's memory use: its RAM mapping in QEMU's smaps and the share of non-zero pages."""

import pytest

from ansible_collections.virtops.migration.plugins.module_utils._facts import memory


SMAPS = """55d4c1a00000-55d4c1c00000 r-xp 00000000 fe:01 123 /usr/bin/qemu-system-x86_64
Size:               2048 kB
Rss:                1024 kB
7f5ca7e00000-7f5cb3e00000 rw-p 00000000 00:00 0
Size:             196608 kB
KernelPageSize:        4 kB
Rss:               79872 kB
7f5cb4000000-7f5cf3fff000 rwxp 00000000 00:00 0
Size:            1048572 kB
Rss:                2048 kB
"""


def test_resident_guest_ram_is_the_mapping_of_the_guests_size():
    assert memory.guest_ram_mapping(SMAPS, 192 * 1024) == (0x7f5ca7e00000, 79872)
    assert memory.guest_ram_mapping(SMAPS, 256 * 1024) is None


def test_nonzero_share_is_sampled_from_the_guest_ram():
    import io
    ram = io.BytesIO(bytes(4096) * 3 + b"\x01" * 4096)  # one page in four holds data
    assert memory.nonzero_fraction(ram, 0, 4, samples=4000) == pytest.approx(0.25, abs=0.03)
    assert memory.nonzero_fraction(io.BytesIO(bytes(8192)), 0, 2, samples=10) == 0.0


def test_memory_use_of_a_domain_not_running_here_is_unknown(tmp_path):
    assert memory.guest_memory_use("nope", 192, run_dir=str(tmp_path)) == (None, None)
