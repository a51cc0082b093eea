"""Lab guests and the shared disks they may use.

A 'linux' guest is Debian's kernel with a busybox initramfs whose workload is
chosen when it is defined: idle, or rewriting N MiB at R MiB/s. A 'firmware'
guest stays in SeaBIOS: it dirties nothing, but runs under KVM where Linux
guests cannot (LAB.md).
"""

import os
import re
from xml.sax.saxutils import escape

from . import config
from .util import LabError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
DISKS = ("none", "local", "shared")
KINDS = ("linux", "firmware")
LOCAL_IMAGES = "/var/lib/libvirt/images"
POLICY_NS = "urn:virtops:migration:1"


def check_name(name):
    if not NAME_RE.match(name):
        raise LabError("invalid guest name %r: letters, digits, '.', '_' and '-' only" % name)
    return name


def serial_log(name):
    return "/var/log/libvirt/qemu/%s.serial.log" % name


def guest_mac(address):
    """The NIC's MAC address, derived from its IPv4 address on the guest network (locally administered)."""
    return "52:54:00:%02x:%02x:%02x" % tuple(int(part) for part in address.split(".")[1:])


def free_address(taken):
    """The lowest guest-network address not in ``taken``."""
    for last in range(config.GUEST_FIRST, config.GUEST_LAST + 1):
        address = "%s.%d" % (config.GUEST_NET, last)
        if address not in taken:
            return address
    raise LabError("no free address left on the guest network (%d guests)" % len(taken))


def domain_xml(name, accel, kind="linux", memory_mib=256, vcpus=1, disk="none", nbd_port=None,
               dirty_mib=0, dirty_rate=0, labels=None, address=None):
    check_name(name)
    if kind not in KINDS:
        raise LabError("unknown guest kind %r (kinds: %s)" % (kind, ", ".join(KINDS)))
    if disk not in DISKS:
        raise LabError("unknown disk %r (disks: %s)" % (disk, ", ".join(DISKS)))
    if memory_mib < 64 or dirty_mib < 0 or dirty_rate < 0 or vcpus < 1:
        raise LabError("memory must be at least 64 MiB, vcpus at least 1, and the workload not negative")
    if dirty_mib and dirty_mib > memory_mib - 48:
        raise LabError("a %d MiB guest cannot keep %d MiB dirty: leave 48 MiB for its kernel" % (memory_mib, dirty_mib))
    if kind == "linux":
        domain_type = accel
        cpu = "<cpu mode='custom' match='exact'><model fallback='forbid'>qemu64</model></cpu>"
        cmdline = "console=ttyS0 quiet panic=-1 virtops.dirty_mib=%d virtops.dirty_rate=%d" % (dirty_mib, dirty_rate)
        if address:
            cmdline += " virtops.ip=%s/%d" % (address, config.PREFIX_LEN)
        boot = ("<kernel>%s/vmlinuz</kernel><initrd>%s/initrd.img</initrd><cmdline>%s</cmdline>"
                % (config.GUEST_MOUNT, config.GUEST_MOUNT, cmdline))
    else:
        domain_type = "kvm" if accel == "kvm" else "qemu"
        # host-passthrough fails under nested KVM here unless arch-capabilities is off (LAB.md).
        cpu = ("<cpu mode='host-passthrough' check='none'><feature policy='disable' name='arch-capabilities'/></cpu>"
               if domain_type == "kvm" else "<cpu mode='custom' match='exact'><model>qemu64</model></cpu>")
        boot = ""
    disk_xml = ""
    if disk == "local":
        disk_xml = ("<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                    "<source file='%s/%s.qcow2'/><target dev='vda' bus='virtio'/></disk>" % (LOCAL_IMAGES, name))
    elif disk == "shared":
        storage = config.host(config.STORAGE_HOST)
        disk_xml = ("<disk type='network' device='disk'><driver name='qemu' type='raw' cache='none'/>"
                    "<source protocol='nbd' name='%s'><host name='%s' port='%d'/></source>"
                    "<target dev='vda' bus='virtio'/></disk>" % (name, storage.mgmt_address, nbd_port))
    nic = ""
    if address and kind == "linux":
        # e1000: one module in the guest, and QEMU announces it (RARP) where it arrives.
        nic = ("<interface type='bridge'><mac address='%s'/><source bridge='%s'/><model type='e1000'/></interface>"
               % (guest_mac(address), config.GUEST_HOST_BRIDGE))
    metadata = ""
    if labels:
        # The collection's own metadata namespace, where operators keep migration policy.
        for key in labels:
            if not re.match(r"^[a-z_]+$", key):
                raise LabError("invalid label name %r" % key)
        items = "".join("<vo:%s>%s</vo:%s>" % (k, escape(str(v)), k) for k, v in sorted(labels.items()))
        metadata = "<metadata><vo:policy xmlns:vo='%s'>%s</vo:policy></metadata>" % (POLICY_NS, items)
    return """<domain type='{dtype}'>
  <name>{name}</name>
  {metadata}
  <memory unit='MiB'>{memory}</memory>
  <vcpu>{vcpus}</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>{boot}</os>
  <features><acpi/><apic/></features>
  {cpu}
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    {disk}
    {nic}
    <serial type='file'><source path='{log}' append='on'/><target port='0'/></serial>
    <console type='file'><source path='{log}' append='on'/><target type='serial' port='0'/></console>
    <memballoon model='none'/>
  </devices>
</domain>
""".format(dtype=domain_type, name=name, metadata=metadata, memory=memory_mib, vcpus=vcpus, boot=boot, cpu=cpu,
           disk=disk_xml, nic=nic, log=serial_log(name))


def nbd_conf(name, port, image, fmt="raw"):
    storage = config.host(config.STORAGE_HOST)
    return "ADDRESS=%s\nPORT=%d\nIMAGE=%s\nFORMAT=%s\n" % (storage.mgmt_address, port, image, fmt)


def conf_port(text):
    for line in text.splitlines():
        if line.startswith("PORT="):
            return int(line.split("=", 1)[1])
    return None


def next_nbd_port(existing_confs):
    used = {conf_port(text) for text in existing_confs}
    port = config.NBD_FIRST_PORT
    while port in used:
        port += 1
    return port


def image_path(name):
    return os.path.join(config.STORAGE_IMAGES, name + ".img")
