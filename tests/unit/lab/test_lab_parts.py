"""The lab's pure parts: the guest's initramfs archive, domain XML, NBD ports."""

import gzip
import os
import stat
import sys
import xml.etree.ElementTree as ET

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "lab"))

from virtops_lab import config, guests, hosts, images  # noqa: E402
from virtops_lab.util import LabError  # noqa: E402


def read_newc(data):
    """A minimal reader of the kernel's newc cpio format, independent of the writer."""
    entries = {}
    offset = 0
    while True:
        header = data[offset:offset + 110]
        assert header[:6] == b"070701"
        fields = [int(header[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        mode, filesize, namesize = fields[1], fields[6], fields[11]
        name_start = offset + 110
        name = data[name_start:name_start + namesize - 1].decode()
        body = name_start + namesize + (-(110 + namesize) % 4)
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, data[body:body + filesize])
        offset = body + filesize + (-filesize % 4)


FILES = {"init": (b"#!/bin/sh\n", 0o755), "lib/modules/a.ko": (b"x" * 5, 0o644), "bin/sh": ("busybox", "symlink")}


def test_newc_archive_holds_files_with_modes_and_their_directories():
    archive = images._newc_archive(FILES)
    entries = read_newc(archive)
    assert entries["bin/sh"] == (stat.S_IFLNK | 0o777, b"busybox")
    assert entries["init"] == (stat.S_IFREG | 0o755, b"#!/bin/sh\n")
    assert entries["lib/modules/a.ko"] == (stat.S_IFREG | 0o644, b"xxxxx")
    assert stat.S_ISDIR(entries["lib"][0]) and stat.S_ISDIR(entries["lib/modules"][0])
    for name in ("dev", "proc", "sys"):
        assert stat.S_ISDIR(entries[name][0])
    # gzip of it is what the kernel unpacks; it must be reproducible.
    assert gzip.compress(archive, mtime=0) == gzip.compress(images._newc_archive(dict(FILES)), mtime=0)


def parse(xml):
    return ET.fromstring(xml)


def test_linux_guest_carries_its_workload_on_the_kernel_command_line():
    dom = parse(guests.domain_xml("g1", "qemu", memory_mib=512, dirty_mib=128, dirty_rate=40))
    assert dom.get("type") == "qemu"
    assert dom.findtext("memory") == "512" and dom.find("memory").get("unit") == "MiB"
    cmdline = dom.findtext("os/cmdline")
    assert "virtops.dirty_mib=128" in cmdline and "virtops.dirty_rate=40" in cmdline
    assert dom.findtext("os/kernel") == config.GUEST_MOUNT + "/vmlinuz"
    assert dom.find("devices/disk") is None
    assert dom.find("devices/serial/source").get("path") == guests.serial_log("g1")


def test_shared_disk_is_an_nbd_export_of_the_storage_host_and_local_disk_a_qcow2():
    shared = parse(guests.domain_xml("g2", "qemu", disk="shared", nbd_port=10810))
    source = shared.find("devices/disk/source")
    assert shared.find("devices/disk").get("type") == "network"
    assert source.get("protocol") == "nbd" and source.get("name") == "g2"
    assert source.find("host").get("name") == config.host(config.STORAGE_HOST).mgmt_address
    assert source.find("host").get("port") == "10810"
    local = parse(guests.domain_xml("g3", "qemu", disk="local"))
    assert local.find("devices/disk/source").get("file") == "/var/lib/libvirt/images/g3.qcow2"


def test_firmware_guest_uses_kvm_when_available_with_arch_capabilities_off():
    dom = parse(guests.domain_xml("fw", "kvm", kind="firmware", memory_mib=64))
    assert dom.get("type") == "kvm"
    assert dom.find("os/kernel") is None
    assert dom.find("cpu").get("mode") == "host-passthrough"
    assert dom.find("cpu/feature").get("name") == "arch-capabilities"


def test_labels_go_to_the_collections_metadata_namespace_escaped():
    dom = parse(guests.domain_xml("g4", "qemu", labels={"anti_affinity": "db<1>"}))
    label = dom.find("metadata/{urn:virtops:migration:1}policy/{urn:virtops:migration:1}anti_affinity")
    assert label.text == "db<1>"
    with pytest.raises(LabError, match="invalid label name"):
        guests.domain_xml("g5", "qemu", labels={"x><y": "1"})


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "bad name"}, "invalid guest name"),
    ({"name": "x;rm"}, "invalid guest name"),
    ({"kind": "windows"}, "unknown guest kind"),
    ({"disk": "nfs"}, "unknown disk"),
    ({"memory_mib": 32}, "at least 64"),
    ({"dirty_rate": -1}, "not negative"),
    ({"memory_mib": 256, "dirty_mib": 240}, "cannot keep 240 MiB dirty"),
])
def test_bad_guest_definitions_are_refused(kwargs, message):
    args = {"name": "g"}
    args.update(kwargs)
    with pytest.raises(LabError, match=message):
        guests.domain_xml(args.pop("name"), "qemu", **args)


def test_nbd_ports_are_allocated_from_the_first_free_one():
    assert guests.next_nbd_port([]) == config.NBD_FIRST_PORT
    confs = [guests.nbd_conf("a", 10809, "/srv/images/a.img"), guests.nbd_conf("b", 10811, "/srv/images/b.img")]
    assert guests.next_nbd_port(confs) == 10810
    assert guests.conf_port(confs[1]) == 10811


def test_status_reads_release_and_versions_from_a_hosts_root(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text('PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nVERSION_ID="13"\n'
                                             'VERSION_CODENAME=trixie\n')
    (tmp_path / "var/lib/dpkg").mkdir(parents=True)
    (tmp_path / "var/lib/dpkg/status").write_text(
        "Package: libvirt0\nStatus: install ok installed\nVersion: 11.3.0-3\n\n"
        "Package: qemu-system-x86\nStatus: install ok installed\nVersion: 1:10.0.2+ds-2+b1\n\n"
        "Package: iperf3\nStatus: deinstall ok config-files\nVersion: 3.18-2\n")
    assert hosts.os_release(str(tmp_path)) == ("13", "trixie")
    assert hosts.installed_versions(str(tmp_path)) == {"libvirt0": "11.3.0", "qemu-system-x86": "10.0.2"}
    assert hosts.installed_versions(str(tmp_path), ("iperf3",)) == {}
    assert hosts.installed_versions(str(tmp_path / "absent")) == {}


def test_releases_are_chosen_per_host():
    assert config.parse_releases("hv1=debian12, hv3=debian13") == {"hv1": "debian12", "hv3": "debian13"}
    assert config.parse_releases("") == {}
    for bad in ("hv1", "hv9=debian12", "hv1=debian11"):
        with pytest.raises((KeyError, ValueError)):
            config.parse_releases(bad)


def test_a_fleet_of_hypervisors_gets_unique_names_and_addresses():
    assert [h.mgmt_address for h in config.make_hosts()] == [
        "198.18.0.11", "198.18.0.12", "198.18.0.13", "198.18.0.20"]
    fleet = config.make_hosts(24)
    assert [h.name for h in fleet][:3] == ["hv1", "hv2", "hv3"] and fleet[-1].name == "storage"
    assert len(fleet) == 25
    for attribute in ("name", "mgmt_address", "veth"):
        values = [getattr(h, attribute) if attribute != "veth" else h.veth("mgmt") for h in fleet]
        assert len(set(values)) == len(values), attribute
    assert len({h.mig_address for h in fleet if h.mig_address}) == 24
    assert all(len(h.veth("mgmt")) <= 15 for h in config.make_hosts(config.MAX_HYPERVISORS))
    with pytest.raises(ValueError):
        config.make_hosts(0)


def test_linux_guests_get_a_nic_on_the_guest_bridge_and_their_address_on_the_command_line():
    xml = guests.domain_xml("g1", "qemu", address="198.18.2.10")
    root = ET.fromstring(xml)
    nic = root.find("devices/interface")
    assert nic.get("type") == "bridge" and nic.find("source").get("bridge") == config.GUEST_HOST_BRIDGE
    assert nic.find("mac").get("address") == guests.guest_mac("198.18.2.10") == "52:54:00:12:02:0a"
    assert nic.find("model").get("type") == "e1000"
    assert "virtops.ip=198.18.2.10/24" in root.find("os/cmdline").text.split()
    assert ET.fromstring(guests.domain_xml("g2", "qemu")).find("devices/interface") is None
    assert ET.fromstring(guests.domain_xml("g3", "kvm", kind="firmware", address="198.18.2.11")).find(
        "devices/interface") is None


def test_guest_addresses_are_the_lowest_free_ones_and_run_out_clearly():
    assert guests.free_address(set()) == "198.18.2.10"
    assert guests.free_address({"198.18.2.10", "198.18.2.12"}) == "198.18.2.11"
    every = {"198.18.2.%d" % n for n in range(config.GUEST_FIRST, config.GUEST_LAST + 1)}
    with pytest.raises(LabError, match="no free address"):
        guests.free_address(every)


def test_the_echo_client_measures_the_longest_gap_and_notices_a_broken_connection():
    import socket
    import threading
    import time

    from virtops_lab.echo import EchoProbe

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    pause = threading.Event()

    def serve():
        conn = server.accept()[0]
        paused = False
        while True:
            data = conn.recv(4096)
            if not data:
                break
            if pause.is_set() and not paused:
                paused = True
                time.sleep(0.3)
            conn.sendall(data)
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    probe = EchoProbe("127.0.0.1", server.getsockname()[1]).start()
    time.sleep(0.2)
    pause.set()
    time.sleep(0.6)
    summary = probe.stop()
    assert summary["error"] is None and summary["answered"] == summary["sent"] > 50
    assert 250 <= summary["longest_gap_ms"] < 1000

    def close_at_once():
        conn = server.accept()[0]
        conn.recv(64)
        conn.sendall(b"00000000\n")
        conn.close()

    threading.Thread(target=close_at_once, daemon=True).start()
    probe = EchoProbe("127.0.0.1", server.getsockname()[1]).start()
    time.sleep(0.2)
    summary = probe.stop()
    assert summary["error"] is not None
    server.close()


def test_many_hosts_get_inotify_instances_enough_for_their_systemd():
    from virtops_lab import cli

    settings = cli._machine_settings(24)
    assert settings[cli.USERFAULTFD] == 1
    # 11 instances a prepared host were counted; Debian's default of 128 stopped the 21st host.
    assert settings[cli.INOTIFY_INSTANCES] >= 25 * 11 > 128
