from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import DomainDescription, DomainState
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.storage import (
    filesystem_of,
    parse_mountinfo,
    plan_storage,
)

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 259:2 / / rw,relatime - ext4 /dev/nvme0n1p2 rw
40 27 0:40 / /var/lib/libvirt/images rw,relatime - ext4 /dev/sdb1 rw
41 27 0:41 / /var/lib/libvirt/shared rw,relatime shared:5 - nfs4 storage:/srv rw,vers=4.2
42 27 0:42 / /mnt/with\\040space rw - ceph 198.18.0.20:/ rw
"""

DOMAIN_XML = """
<domain type='qemu'>
  <name>mig-a</name>
  <uuid>0b5e7a4c-1d5e-4f7e-9a3b-2c8d6e1f0a9b</uuid>
  <memory unit='KiB'>262144</memory>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type></os>
  <cpu mode='custom' match='exact'><model fallback='forbid'>qemu64</model></cpu>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/mig-a.qcow2'/><target dev='vda' bus='virtio'/></disk>
    <disk type='network' device='disk'><driver name='qemu' type='raw' cache='none'/>
      <source protocol='nbd' name='mig-a'><host name='198.18.0.20' port='10809'/></source>
      <target dev='vdb' bus='virtio'/></disk>
    <disk type='file' device='disk'><source file='/var/lib/libvirt/shared/data.raw'/><target dev='vdc'/></disk>
    <disk type='file' device='cdrom'><target dev='sda' bus='sata'/><readonly/></disk>
    <disk type='file' device='cdrom'><source file='/iso/tools.iso'/><target dev='sdb' bus='sata'/><readonly/></disk>
    <disk type='block' device='disk'><source dev='/dev/mapper/lun1'/><target dev='vdd'/><shareable/></disk>
    <disk type='file' device='disk'><source file='/mnt/with space/x.img'/><target dev='vde'/></disk>
  </devices>
</domain>
"""


def test_parse_mountinfo_and_lookup():
    mounts = parse_mountinfo(MOUNTINFO)
    assert ("/mnt/with space", "ceph") in mounts
    assert filesystem_of("/var/lib/libvirt/images/a.qcow2", mounts) == "ext4"
    assert filesystem_of("/var/lib/libvirt/shared/x", mounts) == "nfs4"
    assert filesystem_of("/var/lib/libvirt/sharedX/x", mounts) == "ext4"
    assert filesystem_of("/etc/hosts", mounts) == "ext4"
    assert filesystem_of("/etc/hosts", []) is None


def test_domain_description():
    d = DomainDescription.from_xml(DOMAIN_XML)
    assert (d.name, d.virt_type, d.arch, d.machine) == ("mig-a", "qemu", "x86_64", "pc-i440fx-7.2")
    assert d.memory_kib == 262144
    assert d.cpu_mode == "custom" and "qemu64" in d.cpu_xml
    assert [x.target for x in d.disks] == ["vda", "vdb", "vdc", "sda", "sdb", "vdd", "vde"]
    assert d.disks[1].protocol == "nbd" and d.disks[1].type == "network"
    assert d.disks[5].source == "/dev/mapper/lun1" and d.disks[5].shareable


def test_memory_units():
    xml = "<domain type='kvm'><name>x</name><memory unit='GiB'>2</memory></domain>"
    d = DomainDescription.from_xml(xml)
    assert d.memory_kib == 2 * 1024 * 1024 and d.cpu_xml is None and d.disks == []


def test_storage_plan_classifies_disks():
    disks = DomainDescription.from_xml(DOMAIN_XML).disks
    plan = plan_storage(disks, parse_mountinfo(MOUNTINFO), "none")
    kinds = dict((p.disk.target, p.kind) for p in plan.placements)
    assert kinds == {"vda": "local", "vdb": "shared", "vdc": "shared", "sda": "skipped", "sdb": "skipped",
                     "vdd": "shared", "vde": "shared"}
    assert plan.copy_targets == []
    assert len(plan.blockers) == 1 and "vda" in plan.blockers[0] and "copy_storage" in plan.blockers[0]
    plan = plan_storage(disks, parse_mountinfo(MOUNTINFO), "all")
    assert plan.copy_targets == ["vda"] and plan.blockers == []
    assert plan.as_list()[0]["placement"] == "local"


def test_unknown_mounts_make_file_disks_local():
    disks = DomainDescription.from_xml(DOMAIN_XML).disks
    plan = plan_storage(disks, [], "all")
    assert plan.copy_targets == ["vda", "vdc", "vde"]


def test_domain_state():
    s = DomainState("a", "u", 3, 13, False)
    assert s.active and s.postcopy_failed and s.state_name == "paused"
    assert "post-copy failed" in s.describe() and "transient" in s.describe()
    assert not DomainState("a", "u", 5, 0, True).active
    assert DomainState("a", "u", 3, 2, False).incoming_migration
    assert DomainState("a", "u", 1, 11, True).postcopy_failed
    expected = {"state": "running", "persistent": True, "postcopy_failed": False}
    assert DomainState("a", "u", 1, 1, True).as_dict() == expected
