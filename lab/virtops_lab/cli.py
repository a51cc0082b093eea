"""labctl: bring the lab up and down, and turn the knobs tests need."""

import argparse
import json
import os
import shutil
import socket
import sys
import time

from . import config, guests, hosts, images, mirror, network
from .util import LabError, log, pid_alive, wait_until, write_file

REQUIRED_COMMANDS = ("debootstrap", "systemd-nspawn", "ip", "tc", "nsenter", "ssh", "ssh-keygen", "gcc",
                     "apt-get", "dpkg-deb", "qemu-system-x86_64")
USERFAULTFD = "/proc/sys/vm/unprivileged_userfaultfd"
INOTIFY_INSTANCES = "/proc/sys/fs/inotify/max_user_instances"
# Every host's systemd, udevd, journald, user manager and libvirtd hold inotify
# instances (11 a host once prepared), all as the machine's root: Debian's limit of
# 128 a user stops the 21st stock host's systemd from starting. Allowed per host:
INOTIFY_PER_HOST = 64


def _machine_settings(count):
    """Machine-wide kernel settings the lab needs (the hosts' /proc/sys is read-only); restored by down.

    Post-copy needs unprivileged userfaultfd (LAB.md); many hosts need inotify instances.
    """
    return {USERFAULTFD: 1, INOTIFY_INSTANCES: INOTIFY_PER_HOST * (count + 1)}


INVENTORY_HEADER = """\
---
# The lab's hosts, written by `make lab-up` (lab/labctl up): do not edit, edit
# lab/virtops_lab/config.py. Ansible reaches every host over SSH as root with
# the lab's key, checking the host keys the lab recorded.
"""


def _running_hosts(state):
    return {name: info for name, info in state.get("hosts", {}).items() if pid_alive(info.get("init_pid"))}


def is_up():
    state = hosts.load_state()
    return bool(state.get("up")) and len(_running_hosts(state)) == len(config.HOSTS)


def _wanted(args, state):
    """(hypervisor root kind, {host: release}) that `up` is asked for.

    What is not asked for is what runs (when the lab is up) or the default: a
    plain `labctl up` accepts the lab that is up.
    """
    running = state if is_up() else {}
    count = getattr(args, "hosts", None) or running.get("hypervisor_count") or config.DEFAULT_HYPERVISORS
    try:
        config.HOSTS = config.make_hosts(count)
    except ValueError as error:
        raise LabError("--hosts: %s" % error)
    if getattr(args, "installed", False):
        kind = "installed"
    elif getattr(args, "stock", False):
        kind = "stock"
    else:
        kind = running.get("hypervisor_root", "stock")
    if getattr(args, "releases", None) is not None:
        try:
            asked = config.parse_releases(args.releases)
        except (KeyError, ValueError) as error:
            raise LabError("--releases: %s" % error)
        releases = {host.name: asked.get(host.name, config.DEFAULT_RELEASE) for host in config.HOSTS}
    else:
        # What runs, for the hosts that run; the default for hosts added by --hosts.
        running_releases = running.get("releases") or {}
        releases = {host.name: running_releases.get(host.name, config.DEFAULT_RELEASE) for host in config.HOSTS}
    return kind, releases, count


def _init_pid(name):
    config.host(name)
    info = _running_hosts(hosts.load_state()).get(name)
    if not info:
        raise LabError("lab host %s is not running (make lab-up)" % name)
    return info["init_pid"]


def in_host(name, argv, **kwargs):
    return hosts.nsenter(_init_pid(name), argv, **kwargs)


def cmd_up(args):
    state = hosts.load_state()
    running_hosts = config.HOSTS
    kind, releases, count = _wanted(args, state)
    if is_up():
        running = (state.get("hypervisor_root", "stock"),
                   state.get("releases") or {host.name: config.DEFAULT_RELEASE for host in running_hosts},
                   state.get("hypervisor_count") or config.DEFAULT_HYPERVISORS)
        if running == (kind, releases, count):
            log("the lab is already up")
            _print_status()
            return 0
        log("the lab is up with other hosts than asked for: bringing it up anew")
    started = time.monotonic()
    if hosts.load_state().get("hosts") or network.lab_links() or hosts.lab_mounts() or mirror.processes():
        log("removing what an earlier lab left behind")
        cmd_down(None)
    missing = [command for command in REQUIRED_COMMANDS if not shutil.which(command)]
    if missing:
        raise LabError("missing commands: %s (run make setup)" % ", ".join(missing))
    try:
        _up(kind, releases, count)
    except BaseException:
        if os.environ.get("VIRTOPS_LAB_KEEP_FAILED") != "1":
            log("lab-up failed: removing what it had made (set VIRTOPS_LAB_KEEP_FAILED=1 to keep it)")
            cmd_down(None)
        raise
    log("the lab is up in %.1f s" % (time.monotonic() - started))
    _print_status()
    return 0


def _up(kind, releases, count):
    state = {"hosts": {}, "up": False, "started_at": time.time(), "hypervisor_root": kind, "releases": releases,
             "hypervisor_count": count}
    hosts.save_state(state)
    # The mirror listens on the control node's management address: bridges first.
    network.create_bridges()
    state["mirror_pid"] = mirror.start()
    hosts.save_state(state)
    roots = {}
    for host in config.HOSTS:
        # The storage host's NBD exports need qemu-nbd, which no role installs: an installed debian12 host.
        wanted = (kind, releases[host.name]) if host.group == "hypervisors" else ("installed", config.DEFAULT_RELEASE)
        if wanted not in roots:
            roots[wanted] = images.base_root(*wanted)
        roots[host.name] = roots[wanted]
    guest_dir = images.guest_image()
    state["accel"] = images.probe_accelerators(guest_dir)
    wanted_settings = _machine_settings(count)
    state["sysctl_before"] = {}
    for path in wanted_settings:
        with open(path) as handle:
            state["sysctl_before"][path] = handle.read().strip()
    hosts.save_state(state)
    for path, value in wanted_settings.items():
        if path == USERFAULTFD or int(state["sysctl_before"][path]) < value:
            with open(path, "w") as handle:
                handle.write("%d\n" % value)
    public_key = hosts.ensure_ssh_key()
    for host in config.HOSTS:
        network.create_host_links(host)
        hosts.prepare_root(host, roots[host.name], guest_dir, public_key)
    started = {}
    for host in config.HOSTS:
        started[host.name] = hosts.boot(host, guest_dir, releases.get(host.name, config.DEFAULT_RELEASE))
        state["hosts"][host.name] = {"nspawn_pid": started[host.name].pid}
        hosts.save_state(state)
    for host in config.HOSTS:
        state["hosts"][host.name]["init_pid"] = hosts.find_init(host, started[host.name])
        hosts.save_state(state)
    if os.environ.get("VIRTOPS_LAB_FAIL_AT") == "boot":
        # Lets the tests make a real half-built lab and check that down removes it.
        raise LabError("failing after boot, as VIRTOPS_LAB_FAIL_AT asked")
    for host in config.HOSTS:
        hosts.wait_ready(host, state["hosts"][host.name]["init_pid"])
    _write_known_hosts()
    write_inventory()
    for host in config.HOSTS:
        wait_until(lambda h=host: _ssh_answers(h), 60, "sshd on " + host.name)
    state["up"] = True
    hosts.save_state(state)


def _ssh_answers(host):
    try:
        with socket.create_connection((host.mgmt_address, 22), timeout=2) as conn:
            return conn.recv(4).startswith(b"SSH")
    except OSError:
        return False


def _write_known_hosts():
    lines = []
    for host in config.HOSTS:
        lines.append("%s,%s,%s %s" % (host.name, host.fqdn, host.mgmt_address, hosts.host_key(host)))
    write_file(config.KNOWN_HOSTS, "\n".join(lines) + "\n", mode=0o600)


def write_inventory():
    lines = [INVENTORY_HEADER.rstrip("\n"), "all:", "  vars:",
             "    ansible_user: root",
             "    ansible_python_interpreter: /usr/bin/python3",
             "    ansible_ssh_private_key_file: %s" % config.SSH_KEY,
             "    ansible_ssh_common_args: >-",
             "      -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes" % config.KNOWN_HOSTS,
             "  children:"]
    for group in ("hypervisors", "storage_hosts"):
        lines += ["    %s:" % group, "      hosts:"]
        for host in config.HOSTS:
            if host.group != group:
                continue
            lines += ["        %s:" % host.name, "          ansible_host: %s" % host.mgmt_address]
            if host.mig_address:
                lines += ["          migration_address: %s" % host.mig_address,
                          "          migration_prefix: %d" % config.PREFIX_LEN,
                          "          migration_interface: mig0"]
    write_file(config.INVENTORY, "\n".join(lines) + "\n")


def cmd_down(_args):
    started = time.monotonic()
    state = hosts.load_state()
    hosts.stop_all()
    mirror.stop(state.get("mirror_pid"))
    hosts.unmount_all()
    hosts.remove_cgroups()
    network.remove_all()
    hosts.remove_nspawn_leftovers()
    before = dict(state.get("sysctl_before") or {})
    if state.get("userfaultfd_before") is not None:   # a lab brought up before there were others
        before.setdefault(USERFAULTFD, state["userfaultfd_before"])
    for path, value in before.items():
        with open(path, "w") as handle:
            handle.write(value + "\n")
    shutil.rmtree(config.STATE_DIR, ignore_errors=True)
    if os.path.exists(config.STATE_DIR):
        raise LabError("could not remove %s" % config.STATE_DIR)
    log("the lab is down (%.1f s)" % (time.monotonic() - started))
    return 0


def _status():
    state = hosts.load_state()
    running = _running_hosts(state)
    return {
        "up": is_up(),
        "accel": state.get("accel"),
        "hypervisor_root": state.get("hypervisor_root"),
        "mirror": config.MIRROR_URL if mirror.processes() else None,
        "hosts": [{
            "name": host.name, "group": host.group, "running": host.name in running,
            "management_address": host.mgmt_address, "migration_address": host.mig_address,
            "init_pid": running.get(host.name, {}).get("init_pid"),
            **_versions(host, host.name in running),
        } for host in config.HOSTS],
        "guest_network": {"bridge": config.GUEST_BRIDGE, "control_address": config.GUEST_CONTROL_ADDRESS,
                          "host_bridge": config.GUEST_HOST_BRIDGE, "echo_port": config.GUEST_ECHO_PORT},
        "guests": [{"name": name, "address": address}
                   for name, address in sorted((state.get("guest_addresses") or {}).items())],
        "inventory": config.INVENTORY,
    }


def _versions(host, running):
    """The host's Debian release and its libvirt and QEMU versions, read from its root (None when absent)."""
    if not running:
        return {"release": None, "codename": None, "libvirt": None, "qemu": None}
    version_id, codename = hosts.os_release(host.root)
    installed = hosts.installed_versions(host.root)
    return {"release": "debian%s" % version_id if version_id else None, "codename": codename,
            "libvirt": installed.get("libvirt0"), "qemu": installed.get("qemu-system-x86")}


def _print_status():
    status = _status()
    print("lab: %s" % ("up" if status["up"] else "down"))
    accel = status["accel"] or {}
    if accel:
        print("guests: linux guests run under %s, firmware-only guests under %s (/dev/kvm %s)" % (
            accel["linux_guest"].upper(), accel["firmware_guest"].upper(),
            "present" if accel["kvm_device"] else "absent"))
    if status["hypervisor_root"]:
        print("hypervisors: %s hosts; package mirror %s" % (status["hypervisor_root"], status["mirror"] or "not running"))
    for host in status["hosts"]:
        print("  %-8s %-12s %-8s mgmt %-12s mig %-12s %-9s libvirt %-7s qemu %s" % (
            host["name"], host["group"], "running" if host["running"] else "down",
            host["management_address"], host["migration_address"] or "-", host["release"] or "-",
            host["libvirt"] or "-", host["qemu"] or "-"))
    if status["up"]:
        print("inventory: %s" % status["inventory"])


def cmd_status(args):
    if args.json:
        print(json.dumps(_status(), indent=1))
    else:
        _print_status()
    return 0 if is_up() else 3


def cmd_exec(args):
    argv = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not argv:
        raise LabError("exec needs a command after --")
    return in_host(args.host, argv, check=False).returncode


def cmd_shape(args):
    network.shape(config.host(args.host), args.mbit, args.net)
    return 0


def cmd_link(args):
    network.set_link(config.host(args.host), args.action == "heal", args.net)
    return 0


def cmd_libvirtd(args):
    actions = {
        # Stop the sockets too: socket activation would start the daemon again.
        "stop": [["systemctl", "stop", "libvirtd.service", "libvirtd*.socket"]],
        "kill": [["systemctl", "kill", "--kill-who=main", "--signal=SIGKILL", "libvirtd.service"]],
        # SIGSTOP: the daemon keeps its sockets and connections open but answers nothing (a hung daemon).
        "freeze": [["systemctl", "kill", "--kill-who=main", "--signal=SIGSTOP", "libvirtd.service"]],
        "thaw": [["systemctl", "kill", "--kill-who=main", "--signal=SIGCONT", "libvirtd.service"]],
        "start": [["sh", "-c", "systemctl start $(systemctl list-unit-files 'libvirtd*.socket' --state=enabled "
                               "--no-legend | cut -d' ' -f1) libvirtd.service"]],
    }
    actions["restart"] = actions["stop"] + actions["start"]
    for argv in actions[args.action]:
        in_host(args.host, argv)
    return 0


def cmd_kvm(args):
    """Take KVM away from a host (TCG only, as on a host without virtualisation) or give it back."""
    if args.state == "off":
        script = "rm -f /dev/kvm && systemctl restart libvirtd.service"
    else:
        script = "systemd-tmpfiles --create /etc/tmpfiles.d/virtops-lab-kvm.conf && systemctl restart libvirtd.service"
    in_host(args.host, ["sh", "-c", script])
    return 0


def create_disk(name, size_mib):
    """Create a raw image on the storage host and export it over NBD; return the port."""
    guests.check_name(name)
    storage = config.host(config.STORAGE_HOST)
    conf_dir = os.path.join(storage.root, "etc/virtops-nbd")
    conf_path = os.path.join(conf_dir, name + ".conf")
    if os.path.exists(conf_path):
        with open(conf_path) as handle:
            return guests.conf_port(handle.read())
    existing = []
    for conf in os.listdir(conf_dir):
        with open(os.path.join(conf_dir, conf)) as handle:
            existing.append(handle.read())
    port = guests.next_nbd_port(existing)
    image = guests.image_path(name)
    in_host(storage.name, ["qemu-img", "create", "-q", "-f", "raw", image, "%dM" % size_mib], capture=True)
    write_file(conf_path, guests.nbd_conf(name, port, image))
    in_host(storage.name, ["systemctl", "enable", "--now", "--quiet", "virtops-nbd@%s.service" % name], capture=True)

    def listening():
        try:
            socket.create_connection((storage.mgmt_address, port), timeout=1).close()
            return True
        except OSError:
            return False
    wait_until(listening, 20, "the NBD export of %s" % name)
    return port


def remove_disk(name):
    guests.check_name(name)
    storage = config.host(config.STORAGE_HOST)
    conf_path = os.path.join(storage.root, "etc/virtops-nbd", name + ".conf")
    if not os.path.exists(conf_path):
        return False
    in_host(storage.name, ["systemctl", "disable", "--now", "--quiet", "virtops-nbd@%s.service" % name],
            capture=True, check=False)
    in_host(storage.name, ["rm", "-f", guests.image_path(name)])
    os.unlink(conf_path)
    return True


def cmd_disk(args):
    if args.action == "create":
        print(json.dumps({"name": args.name, "port": create_disk(args.name, args.size),
                          "host": config.host(config.STORAGE_HOST).mgmt_address}))
    else:
        remove_disk(args.name)
    return 0


def cmd_guest_define(args):
    host = config.host(args.host)
    if host.group != "hypervisors":
        raise LabError("guests run on hypervisors, not on %s" % host.name)
    accel = (hosts.load_state().get("accel") or {})
    accel_for_kind = accel.get("linux_guest" if args.kind == "linux" else "firmware_guest", "tcg")
    labels = dict(label.split("=", 1) for label in args.label or [])
    nbd_port = None
    if args.disk == "shared":
        nbd_port = create_disk(args.name, args.disk_size)
    guests.check_name(args.name)
    address = _guest_address(args.name) if args.kind == "linux" else None
    xml = guests.domain_xml(args.name, "kvm" if accel_for_kind == "kvm" else "qemu", kind=args.kind,
                            memory_mib=args.memory, vcpus=args.vcpus, disk=args.disk, nbd_port=nbd_port,
                            dirty_mib=args.dirty_mib, dirty_rate=args.dirty_rate, labels=labels, address=address)
    if args.disk == "local":
        in_host(host.name, ["qemu-img", "create", "-q", "-f", "qcow2", "%s/%s.qcow2" % (guests.LOCAL_IMAGES, args.name),
                            "%dM" % args.disk_size], capture=True)
    in_host(host.name, ["virsh", "-q", "define", "/dev/stdin"], input_text=xml, capture=True)
    if args.start:
        in_host(host.name, ["virsh", "-q", "start", args.name], capture=True)
    print(json.dumps({"name": args.name, "host": host.name, "kind": args.kind, "accel": accel_for_kind,
                      "disk": args.disk, "nbd_port": nbd_port, "started": args.start, "address": address}))
    return 0


def _guest_address(name):
    """The guest's address on the guest network: the one it had, else the lowest free one (kept in the state)."""
    state = hosts.load_state()
    addresses = state.setdefault("guest_addresses", {})
    if name not in addresses:
        addresses[name] = guests.free_address(set(addresses.values()))
        hosts.save_state(state)
    return addresses[name]


def cmd_guest_remove(args):
    guests.check_name(args.name)
    for host in config.HOSTS:
        if host.group != "hypervisors":
            continue
        script = ('virsh -q destroy "$1" >/dev/null 2>&1; virsh -q undefine "$1" >/dev/null 2>&1; '
                  'rm -f %s/"$1".qcow2 %s; '
                  # libvirt's pools would go on listing the deleted image.
                  'for p in $(virsh -q pool-list --name); do virsh -q pool-refresh "$p" >/dev/null 2>&1; done; true'
                  % (guests.LOCAL_IMAGES, guests.serial_log("$1").replace("$1", '"$1"')))
        in_host(host.name, ["sh", "-c", script, "sh", args.name])
    remove_disk(args.name)
    state = hosts.load_state()
    if state.get("guest_addresses", {}).pop(args.name, None):
        hosts.save_state(state)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="labctl", description="The virtops.migration lab: real hypervisors on one machine.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build what is missing and bring the lab up (idempotent)")
    root = up.add_mutually_exclusive_group()
    root.add_argument("--installed", action="store_true",
                      help="hypervisors with libvirt and QEMU installed (not configured) instead of stock hosts")
    root.add_argument("--stock", action="store_true", help="stock hypervisors (the default when the lab is down)")
    up.add_argument("--hosts", type=int, metavar="N",
                    help="hypervisors hv1 ... hvN (default %d)" % config.DEFAULT_HYPERVISORS)
    up.add_argument("--releases", metavar="HOST=RELEASE ...",
                    help="hypervisor generations per host, e.g. 'hv1=debian12 hv3=debian13' (others: %s; "
                         "releases: %s)" % (config.DEFAULT_RELEASE, ", ".join(sorted(config.RELEASES))))
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="remove everything the lab made (idempotent)").set_defaults(func=cmd_down)
    status = sub.add_parser("status", help="what runs; exits 3 when the lab is not up")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    sub.add_parser("inventory", help="write inventories/lab/hosts.yml again").set_defaults(func=lambda _a: write_inventory() or 0)

    execute = sub.add_parser("exec", help="run a command inside a host (through its namespaces, not SSH)")
    execute.add_argument("host")
    execute.add_argument("command", nargs=argparse.REMAINDER)
    execute.set_defaults(func=cmd_exec)

    shape = sub.add_parser("shape", help="limit a host's link to MBIT Mbit/s in both directions (0: no limit)")
    shape.add_argument("host")
    shape.add_argument("mbit", type=int)
    shape.add_argument("--net", default="mig", choices=network.NETS)
    shape.set_defaults(func=cmd_shape)
    for action in ("cut", "heal"):
        link = sub.add_parser(action, help="%s a host's link" % action)
        link.add_argument("host")
        link.add_argument("--net", default="mig", choices=network.NETS)
        link.set_defaults(func=cmd_link, action=action)

    libvirtd = sub.add_parser(
        "libvirtd", help="stop, start, restart, kill (SIGKILL), freeze (SIGSTOP) or thaw (SIGCONT) a host's libvirt daemon")
    libvirtd.add_argument("host")
    libvirtd.add_argument("action", choices=("stop", "start", "restart", "kill", "freeze", "thaw"))
    libvirtd.set_defaults(func=cmd_libvirtd)

    kvm = sub.add_parser("kvm", help="make a host TCG-only (off) or give it KVM back (on); restarts its libvirtd")
    kvm.add_argument("host")
    kvm.add_argument("state", choices=("on", "off"))
    kvm.set_defaults(func=cmd_kvm)

    disk = sub.add_parser("disk", help="create or remove a shared disk exported over NBD by the storage host")
    disk.add_argument("action", choices=("create", "remove"))
    disk.add_argument("name")
    disk.add_argument("--size", type=int, default=64, help="MiB")
    disk.set_defaults(func=cmd_disk)

    guest = sub.add_parser("guest", help="define or remove lab guests")
    guest_sub = guest.add_subparsers(dest="guest_command", required=True)
    define = guest_sub.add_parser("define", help="define a guest on a hypervisor")
    define.add_argument("host")
    define.add_argument("name")
    define.add_argument("--kind", default="linux", choices=guests.KINDS)
    define.add_argument("--memory", type=int, default=256, help="MiB")
    define.add_argument("--vcpus", type=int, default=1)
    define.add_argument("--disk", default="none", choices=guests.DISKS)
    define.add_argument("--disk-size", type=int, default=64, help="MiB")
    define.add_argument("--dirty-mib", type=int, default=0, help="working set the guest keeps rewriting")
    define.add_argument("--dirty-rate", type=int, default=0, help="MiB/s rewritten (0: as fast as it can)")
    define.add_argument("--label", action="append", help="KEY=VALUE kept in the domain's metadata")
    define.add_argument("--start", action="store_true")
    define.set_defaults(func=cmd_guest_define)
    remove = guest_sub.add_parser("remove", help="destroy and undefine a guest on every host, with its disks")
    remove.add_argument("name")
    remove.set_defaults(func=cmd_guest_remove)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if os.geteuid() != 0:
        print("labctl: the lab needs root", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except LabError as error:
        print("labctl: %s" % error, file=sys.stderr)
        return 1
