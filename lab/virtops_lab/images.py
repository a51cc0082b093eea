"""The slow-to-build parts, cached by recipe: the hosts' base root and the guest image.

Each is built in a temporary directory and renamed into place only when
complete, under a name that carries a hash of its recipe: an interrupted build
leaves nothing that looks usable, and a changed recipe builds anew.
"""

import glob
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import time

from . import config
from .util import LabError, log, output, run, write_file

# A stock host: a minimal Debian server (systemd, sshd, python3) and the few
# tools every Debian server has, but no libvirt and no QEMU. The collection's
# roles install those from the lab's package mirror, as on a freshly installed
# server. udev does nothing in a container, but its package makes the kvm group,
# as on every Debian server.
STOCK_INCLUDE = \
    "systemd,systemd-sysv,libpam-systemd,udev,dbus,openssh-server,python3,iproute2,iputils-ping,procps,kmod,netbase"
# An "installed" host also has the hypervisor packages, installed as Debian
# installs them and not configured: what the lab's own tests need, and the
# storage host, whose NBD exports (qemu-nbd) no role installs.
INSTALLED_PACKAGES = (
    "libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils "
    "python3-libvirt python3-apt python3-cryptography iperf3 gnutls-bin nftables"
)
KINDS = ("stock", "installed")
SUITE = "bookworm"   # the machine's own release, whose sources the hosts of debian12 copy
GUEST_SOURCES = ("init", "dirtier.c", "power-button")


def _digest(*parts):
    sha = hashlib.sha256()
    for part in parts:
        sha.update(part if isinstance(part, bytes) else str(part).encode())
        sha.update(b"\0")
    return sha.hexdigest()[:12]


def _mirror():
    """The Debian mirror this machine's apt uses, so the lab needs no other."""
    for path in glob.glob("/etc/apt/sources.list.d/*.sources"):
        with open(path) as handle:
            text = handle.read()
        if "Suites: %s" % SUITE in text or "Suites: %s " % SUITE in text:
            for line in text.splitlines():
                if line.startswith("URIs:"):
                    return line.split()[1]
    return "http://deb.debian.org/debian"


def _sources(release=config.DEFAULT_RELEASE):
    """The hosts' apt sources: the machine's own Debian sources (deb.debian.org), for the release's suite."""
    suite = config.RELEASES[release]["suite"]
    if suite != SUITE:
        return ("Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\n"
                "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
                "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: %s-security\nComponents: main\n"
                "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n" % (_mirror(), suite, suite, suite))
    path = "/etc/apt/sources.list.d/debian.sources"
    if os.path.exists(path):
        with open(path) as handle:
            return handle.read()
    return ("Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n" % (_mirror(), SUITE, SUITE))


def _proxy_env():
    return dict(os.environ, http_proxy=config.MIRROR_URL + "/", DEBIAN_FRONTEND="noninteractive")


def base_root(kind="stock", release=config.DEFAULT_RELEASE):
    """Path of a host root of ``kind`` (stock or installed) and ``release``, built when missing.

    The package mirror must be running: both are built through it.
    """
    if kind not in KINDS:
        raise LabError("no host root of kind %r (kinds: %s)" % (kind, ", ".join(KINDS)))
    suite = config.RELEASES[release]["suite"]
    stock_recipe = _digest(suite, STOCK_INCLUDE, _sources(release), _stock_tweaks_text())
    # The default release's roots keep the names they had before there were releases.
    prefix = kind + "-" if release == config.DEFAULT_RELEASE else "%s-%s-" % (kind, release)
    if kind == "stock":
        return _cached_root(prefix + stock_recipe, release, lambda building: _build_stock(building, release))
    stock = base_root("stock", release)
    recipe = _digest(stock_recipe, INSTALLED_PACKAGES, _installed_tweaks_text())
    return _cached_root(prefix + recipe, release, lambda building: _build_installed(stock, building))


def _root_release(path):
    try:
        with open(os.path.join(path, ".virtops-lab-release")) as handle:
            return handle.read().strip()
    except OSError:
        return config.DEFAULT_RELEASE


def _cached_root(name, release, build):
    path = os.path.join(config.CACHE_DIR, name)
    if os.path.isfile(os.path.join(path, ".virtops-lab-complete")):
        return path
    building = path + ".building"
    shutil.rmtree(building, ignore_errors=True)
    os.makedirs(config.CACHE_DIR, exist_ok=True)
    started = time.monotonic()
    build(building)
    write_file(os.path.join(building, ".virtops-lab-release"), release + "\n")
    with open(os.path.join(building, ".virtops-lab-complete"), "w") as handle:
        handle.write("built in %.0f s\n" % (time.monotonic() - started))
    os.rename(building, path)
    kind = name.split("-", 1)[0]
    # Roots of an older recipe for the same release (and the lab's earlier single "base" root) go.
    for old in glob.glob(os.path.join(config.CACHE_DIR, kind + "-*")) + glob.glob(
            os.path.join(config.CACHE_DIR, "base-*")):
        if old != path and not old.endswith(".building") and (
                old.startswith(os.path.join(config.CACHE_DIR, "base-")) or _root_release(old) == release):
            shutil.rmtree(old, ignore_errors=True)
    log("%s root ready in %.0f s: %s" % (kind, time.monotonic() - started, path))
    return path


def _build_stock(building, release):
    suite = config.RELEASES[release]["suite"]
    log("building the stock host root of %s (debootstrap %s through the lab's mirror)" % (release, suite))
    run(["debootstrap", "--variant=minbase", "--include=" + STOCK_INCLUDE, suite, building, _mirror()],
        capture=True, timeout=1200, env=_proxy_env())
    write_file(os.path.join(building, "etc/apt/sources.list.d/debian.sources"), _sources(release))
    try:
        os.unlink(os.path.join(building, "etc/apt/sources.list"))
    except FileNotFoundError:
        pass
    # Package lists go stale: a role finds none and must fetch them, as on a host installed long ago.
    run(["sh", "-c", "rm -rf %s/var/lib/apt/lists/* %s/var/cache/apt/*.bin" % (building, building)])
    _apply_tweaks(building, STOCK_TWEAKS)
    # Each host generates its own SSH host keys (hosts.prepare_root).
    for key in glob.glob(os.path.join(building, "etc/ssh/ssh_host_*")):
        os.unlink(key)


def _build_installed(stock, building):
    log("building the installed host root (the stock root and the hypervisor packages, from the mirror)")
    run(["cp", "-a", "--reflink=auto", stock, building])
    os.unlink(os.path.join(building, ".virtops-lab-complete"))
    # polkit's post-install script fails when installed by debootstrap: install
    # the rest from inside a container, where it succeeds (LAB.md).
    script = (
        "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -q; "
        "apt-get install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold %s; "
        "apt-get clean; "
        "rm -rf /var/lib/apt/lists/*" % INSTALLED_PACKAGES
    )
    run(["systemd-nspawn", "-q", "-D", building, "--register=no", "--keep-unit", "--pipe",
         "/bin/sh", "-c", script], capture=True, timeout=1800)
    _apply_tweaks(building, INSTALLED_TWEAKS)


def _stock_tweaks_text():
    return json.dumps(STOCK_TWEAKS, sort_keys=True)


def _installed_tweaks_text():
    return json.dumps(INSTALLED_TWEAKS, sort_keys=True)


# Files the lab changes in the roots, all of them needed only because the hosts
# are containers on one machine (or lab hosts behind the lab's mirror), not
# because a hypervisor would need them.
STOCK_TWEAKS = {
    # apt goes through the lab's mirror, as a host installed behind a proxy
    # (debian-installer writes the same setting). No recommended packages: lab
    # hosts stay small, and installs fast.
    "etc/apt/apt.conf.d/00virtops-lab": 'Acquire::http::Proxy "%s/";\nAPT::Install-Recommends "false";\n'
                                        % config.MIRROR_URL,
    # Bound the time libvirt-guests may take to stop guests when a host shuts
    # down (read once libvirt is installed; dpkg keeps the file).
    "etc/default/libvirt-guests": "ON_SHUTDOWN=shutdown\nSHUTDOWN_TIMEOUT=20\n",
    # Every host gets its own machine ID at first boot (libvirt derives its host
    # UUID from it; two hosts with one UUID refuse to migrate to each other).
    "etc/machine-id": "",
}
INSTALLED_TWEAKS = {
    # cgroup v1 controllers are read-only inside systemd-nspawn (LAB.md). On stock
    # hosts the hypervisor role sets it (inventories/lab/group_vars).
    "etc/libvirt/qemu.conf.append": "\n# lab: cgroup v1 controllers are read-only inside the container\ncgroup_controllers = [ ]\n",
}


def _apply_tweaks(root, tweaks):
    for name, content in tweaks.items():
        if name.endswith(".append"):
            with open(os.path.join(root, name[: -len(".append")]), "a") as handle:
                handle.write(content)
        else:
            write_file(os.path.join(root, name), content)


# ---------------------------------------------------------------------------
# The guest: Debian's kernel and a busybox initramfs whose init runs the workload.


def guest_image():
    """Directory holding vmlinuz and initrd.img for lab guests, built when missing."""
    sources = {}
    for name in GUEST_SOURCES:
        with open(os.path.join(config.LAB_DIR, "guest", name), "rb") as handle:
            sources[name] = handle.read()
    kernel_deb = _kernel_package()
    recipe = _digest(kernel_deb, *(sources[name] for name in GUEST_SOURCES), _busybox_version())
    path = os.path.join(config.CACHE_DIR, "guest-" + recipe)
    if os.path.isfile(os.path.join(path, "initrd.img")):
        return path
    building = path + ".building"
    shutil.rmtree(building, ignore_errors=True)
    os.makedirs(building)
    log("building the guest image (kernel %s, busybox initramfs)" % kernel_deb)
    unpacked = os.path.join(building, "kernel-deb")
    _download_and_unpack(kernel_deb, unpacked)
    vmlinuz = glob.glob(os.path.join(unpacked, "boot", "vmlinuz-*"))[0]
    shutil.copy(vmlinuz, os.path.join(building, "vmlinuz"))
    modules = {
        "button.ko": glob.glob(os.path.join(unpacked, "lib/modules/*/kernel/drivers/acpi/button.ko"))[0],
        "evdev.ko": glob.glob(os.path.join(unpacked, "lib/modules/*/kernel/drivers/input/evdev.ko"))[0],
        "e1000.ko": glob.glob(os.path.join(unpacked, "lib/modules/*/kernel/drivers/net/ethernet/intel/e1000/e1000.ko"))[0],
    }
    dirtier = os.path.join(building, "dirtier")
    run(["gcc", "-static", "-O2", "-Wall", "-Werror", "-o", dirtier,
         os.path.join(config.LAB_DIR, "guest", "dirtier.c")], capture=True)
    files = {
        "init": (sources["init"], 0o755),
        "bin/busybox": (_read("/bin/busybox"), 0o755),
        "bin/dirtier": (_read(dirtier), 0o755),
        "etc/acpi/PWRF/00000080": (sources["power-button"], 0o755),
        "lib/modules/button.ko": (_read(modules["button.ko"]), 0o644),
        "lib/modules/evdev.ko": (_read(modules["evdev.ko"]), 0o644),
        "lib/modules/e1000.ko": (_read(modules["e1000.ko"]), 0o644),
        # The kernel runs /init with its #!/bin/sh: busybox is that shell.
        "bin/sh": ("busybox", "symlink"),
    }
    with open(os.path.join(building, "initrd.img"), "wb") as handle:
        handle.write(gzip.compress(_newc_archive(files), mtime=0))
    shutil.rmtree(unpacked)
    os.unlink(dirtier)
    os.rename(building, path)
    log("guest image ready: %s" % path)
    return path


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


def _busybox_version():
    return output(["dpkg-query", "-W", "-f=${Version}", "busybox-static"])


def _kernel_package():
    """The versioned kernel package that Debian's linux-image-amd64 points at."""
    text = output(["apt-cache", "depends", "linux-image-amd64"])
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Depends: linux-image-") and "amd64" in line:
            return line.split()[1]
    raise LabError("cannot tell which kernel linux-image-amd64 depends on (run apt-get update?)")


def _download_and_unpack(package, target):
    workdir = target + ".download"
    os.makedirs(workdir, exist_ok=True)
    # apt-get download drops privileges to _apt, which must be able to write here.
    os.chmod(workdir, 0o777)
    run(["apt-get", "download", "-q", package], capture=True, timeout=600, cwd=workdir)
    debs = glob.glob(os.path.join(workdir, "*.deb"))
    if not debs:
        raise LabError("apt-get download %s produced no package" % package)
    run(["dpkg-deb", "-x", debs[0], target])
    shutil.rmtree(workdir)


def _newc_archive(files):
    """A cpio archive in the kernel's 'newc' format holding files and their parent dirs.

    ``files`` maps a path to (content, mode), or to (target, "symlink") for a symbolic link.
    """
    entries = []
    dirs = set()
    for name in files:
        parts = name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:depth]))
    for name in ("dev", "proc", "sys", "tmp", "var", "var/log", "var/run", "etc", "bin"):
        dirs.add(name)
    for name in sorted(dirs):
        entries.append((name, stat.S_IFDIR | 0o755, b""))
    for name in sorted(files):
        data, mode = files[name]
        if mode == "symlink":
            entries.append((name, stat.S_IFLNK | 0o777, data.encode()))
        else:
            entries.append((name, stat.S_IFREG | mode, data))
    out = io.BytesIO()
    for ino, (name, mode, data) in enumerate(entries + [("TRAILER!!!", 0, b"")], start=1):
        encoded = name.encode() + b"\0"
        header = "070701" + "".join("%08X" % value for value in (
            ino if name != "TRAILER!!!" else 0, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0))
        out.write(header.encode() + encoded)
        out.write(b"\0" * (-(110 + len(encoded)) % 4))
        out.write(data)
        out.write(b"\0" * (-len(data) % 4))
    return out.getvalue()


def probe_accelerators(image_dir):
    """Which accelerator runs the Linux guest here: 'kvm' if it boots under KVM, else 'tcg'.

    Nested KVM on this kind of machine runs firmware-only guests but hangs Linux
    early in boot (LAB.md), so the answer is measured, not assumed, and cached
    per machine kernel and guest image.
    """
    cache_file = os.path.join(config.CACHE_DIR, "accel.json")
    key = "%s %s" % (os.uname().release, os.path.basename(image_dir))
    try:
        with open(cache_file) as handle:
            cached = json.load(handle)
    except (FileNotFoundError, ValueError):
        cached = {}
    if key in cached:
        return cached[key]
    result = {"kvm_device": os.path.exists("/dev/kvm"), "linux_guest": "tcg", "firmware_guest": "tcg"}
    if result["kvm_device"]:
        result["firmware_guest"] = "kvm" if _qemu_boots(image_dir, firmware_only=True) else "tcg"
        result["linux_guest"] = "kvm" if _qemu_boots(image_dir, firmware_only=False) else "tcg"
    cached[key] = result
    with open(cache_file, "w") as handle:
        json.dump(cached, handle, indent=1)
    return result


def _qemu_boots(image_dir, firmware_only, timeout=25):
    argv = ["qemu-system-x86_64", "-accel", "kvm", "-m", "256", "-nographic", "-no-reboot",
            "-cpu", "qemu64", "-monitor", "none", "-serial", "stdio"]
    if firmware_only:
        # SeaBIOS prints its banner on the serial port; no boot device follows.
        argv += ["-nodefaults"]
        marker = b"SeaBIOS"
    else:
        argv += ["-kernel", os.path.join(image_dir, "vmlinuz"), "-initrd", os.path.join(image_dir, "initrd.img"),
                 "-append", "console=ttyS0 panic=-1 virtops.probe=1"]
        marker = b"virtops-guest-up"
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              timeout=timeout, check=False)
        return marker in proc.stdout
    except subprocess.TimeoutExpired as expired:
        return marker in (expired.stdout or b"")
    except FileNotFoundError:
        return False
