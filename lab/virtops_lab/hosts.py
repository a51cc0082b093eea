"""Lab hosts: systemd-nspawn containers, each on an overlay of the shared base root.

The state file records what `up` started (the PID of each systemd-nspawn and of
the container's init); `down` ends those, and also anything else whose root
file system lies under the lab's state directory, so a lab whose state file
was lost still comes down completely.
"""

import json
import os
import secrets
import shutil
import signal
import subprocess
import time

from . import config, network
from .util import LabError, descendants, inner_pid, log, output, pid_alive, run, wait_until, write_file

NBD_UNIT = """\
[Unit]
Description=NBD export of lab disk image %i
After=network-online.target

[Service]
EnvironmentFile=/etc/virtops-nbd/%i.conf
ExecStart=/usr/bin/qemu-nbd --persistent --shared=16 --format=${FORMAT} --cache=none \\
    --bind=${ADDRESS} --port=${PORT} --export-name=%i ${IMAGE}
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""

KVM_TMPFILES = """\
# The lab's hosts make their own /dev/kvm node, readable by QEMU's group: the
# machine's node, when bound in, is root-only (LAB.md).
c /dev/kvm 0660 root kvm - 10:232
"""


def load_state():
    try:
        with open(config.STATE_FILE) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {"hosts": {}}


def save_state(state):
    write_file(config.STATE_FILE, json.dumps(state, indent=1, sort_keys=True) + "\n", mode=0o600)


def ensure_ssh_key():
    if not os.path.exists(config.SSH_KEY):
        os.makedirs(config.SSH_DIR, mode=0o700, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "virtops-lab", "-f", config.SSH_KEY], capture=True)
    with open(config.SSH_KEY + ".pub") as handle:
        return handle.read()


def prepare_root(host, base, guest_dir, public_key):
    """Mount the host's overlay root and give it its own identity."""
    for sub in ("upper", "work", "root"):
        os.makedirs(os.path.join(host.dir, sub), exist_ok=True)
    if not os.path.ismount(host.root):
        run(["mount", "-t", "overlay", "overlay", "-o", "lowerdir=%s,upperdir=%s,workdir=%s" % (
            base, os.path.join(host.dir, "upper"), os.path.join(host.dir, "work")), host.root])
    root = host.root
    write_file(os.path.join(root, "etc/hostname"), host.name + "\n")
    write_file(os.path.join(root, "etc/machine-id"), secrets.token_hex(16) + "\n", mode=0o444)
    network.write_etc_hosts(root)
    run(["ssh-keygen", "-q", "-A", "-f", root], capture=True)
    write_file(os.path.join(root, "root/.ssh/authorized_keys"), public_key, mode=0o600)
    os.chmod(os.path.join(root, "root/.ssh"), 0o700)
    # root's systemd user manager lingers: it starts at boot and stays. Otherwise it is stopped after
    # every last logout, and in these containers that stop cannot kill its cgroup ("Input/output
    # error"), so it hangs for its whole stop timeout while every new SSH login waits for it.
    write_file(os.path.join(root, "var/lib/systemd/linger/root"), "")
    os.makedirs(os.path.join(root, config.GUEST_MOUNT.lstrip("/")), exist_ok=True)
    if os.path.exists("/dev/kvm"):
        write_file(os.path.join(root, "etc/tmpfiles.d/virtops-lab-kvm.conf"), KVM_TMPFILES)
    if host.name == config.STORAGE_HOST:
        write_file(os.path.join(root, "etc/systemd/system/virtops-nbd@.service"), NBD_UNIT)
        os.makedirs(os.path.join(root, config.STORAGE_IMAGES.lstrip("/")), exist_ok=True)
        os.makedirs(os.path.join(root, "etc/virtops-nbd"), exist_ok=True)


def installed_versions(root, packages=("libvirt0", "qemu-system-x86")):
    """{package: upstream version} of the packages installed in a host's root (dpkg's status file)."""
    found = {}
    try:
        with open(os.path.join(root, "var/lib/dpkg/status")) as handle:
            text = handle.read()
    except OSError:
        return found
    for stanza in text.split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            if ": " in line and not line.startswith(" "):
                key, value = line.split(": ", 1)
                fields[key] = value
        if fields.get("Package") in packages and fields.get("Status", "").endswith(" installed"):
            version = fields["Version"].split(":", 1)[-1]
            found[fields["Package"]] = version.split("+", 1)[0].split("-", 1)[0]
    return found


def os_release(root):
    """(VERSION_ID, VERSION_CODENAME) of a host's root."""
    values = {}
    try:
        with open(os.path.join(root, "etc/os-release")) as handle:
            for line in handle:
                if "=" in line:
                    key, value = line.rstrip("\n").split("=", 1)
                    values[key] = value.strip('"')
    except OSError:
        pass
    return values.get("VERSION_ID"), values.get("VERSION_CODENAME")


def host_key(host):
    with open(os.path.join(host.root, "etc/ssh/ssh_host_ed25519_key.pub")) as handle:
        return " ".join(handle.read().split()[:2])


# Without systemd on the machine, systemd-nspawn puts each container's systemd in
# a "payload" group under its own cgroup: left alone, every container would share
# one /payload, and one host removing its user-0.slice would pull it from under
# another's (user@0.service failing with "Failed to attach to cgroup"). Each
# container starts in a group of its own, named like the lab's other things.
CGROUP_ROOTS = ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified")


def _own_cgroup(host):
    paths = []
    for hierarchy in CGROUP_ROOTS:
        if os.path.ismount(hierarchy) or os.path.isfile(os.path.join(hierarchy, "cgroup.procs")):
            path = os.path.join(hierarchy, host.machine)
            os.makedirs(path, exist_ok=True)
            paths.append(os.path.join(path, "cgroup.procs"))

    def join():
        for procs in paths:
            with open(procs, "w") as handle:
                handle.write("0\n")
    return join


def lab_cgroups():
    found = []
    for hierarchy in CGROUP_ROOTS:
        if os.path.isdir(hierarchy):
            found += [os.path.join(hierarchy, name) for name in os.listdir(hierarchy)
                      if name.startswith(config.PREFIX) and os.path.isdir(os.path.join(hierarchy, name))]
    return found


def remove_cgroups():
    """Remove the containers' cgroups, deepest first (only empty groups can go)."""
    for top in lab_cgroups():
        for dirpath, _dirnames, _files in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass
    left = lab_cgroups()
    if left:
        raise LabError("could not remove cgroups: %s" % ", ".join(left))


def boot(host, guest_dir, release=config.DEFAULT_RELEASE):
    """Start the container; return the PID of its systemd-nspawn at once."""
    join_cgroup = _own_cgroup(host)
    console = open(os.path.join(host.dir, "console.log"), "ab")
    argv = [
        "systemd-nspawn", "--quiet", "--boot", "--directory", host.root,
        "--machine", host.machine, "--hostname", host.name,
        # No system bus or machined on the machine (LAB.md).
        "--register=no", "--keep-unit",
        "--network-namespace-path=/run/netns/" + host.netns,
        # libvirtd needs to create devices, namespaces and cgroups for QEMU.
        "--capability=all",
        "--bind-ro=%s:%s" % (guest_dir, config.GUEST_MOUNT),
        "--console=passive",
    ]
    env = dict(os.environ, **config.RELEASES[release].get("nspawn_env", {}))
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=join_cgroup, env=env)
    console.close()
    return proc


def find_init(host, proc):
    """PID of the container's init: the nspawn descendant that is PID 1 of its own namespace."""
    def init_pid():
        if proc.poll() is not None:
            raise LabError("systemd-nspawn for %s exited with %s; see %s/console.log" % (
                host.name, proc.returncode, host.dir))
        for pid in descendants(proc.pid):
            if inner_pid(pid) == 1:
                return pid
        return None

    return wait_until(init_pid, 30, "the init of " + host.name)


def nsenter(init_pid, argv, **kwargs):
    """Run a command inside a host, through its namespaces (independent of SSH)."""
    return run(["nsenter", "--target", str(init_pid), "--mount", "--uts", "--ipc", "--net", "--pid", "--"] + argv,
               **kwargs)


def wait_ready(host, init_pid, timeout=120):
    """Wait until the host's systemd has finished booting and sshd answers."""
    seen = []

    def booted():
        # Early in boot systemd does not answer yet: keep asking.
        answer = nsenter(init_pid, ["systemctl", "is-system-running"], capture=True, check=False).stdout.strip()
        seen.append(answer)
        return answer if answer in ("running", "degraded") else None

    try:
        state = wait_until(booted, timeout, "%s to boot" % host.name, interval=0.3)
    except LabError:
        raise LabError("%s did not boot in %d s: systemctl is-system-running said %r last" % (
            host.name, timeout, seen[-1] if seen else None))
    if state == "degraded":
        failed = nsenter(init_pid, ["systemctl", "--failed", "--no-legend", "--plain"], capture=True).stdout
        log("%s booted degraded; failed units: %s" % (host.name, " ".join(line.split()[0] for line in failed.splitlines())))
    nsenter(init_pid, ["systemctl", "is-active", "--quiet", "ssh.service"])
    return state


def host_processes():
    """PIDs of every process in a lab host's network namespace: found by looking, not by record."""
    found = []
    for netns in network.list_netns():
        if netns.startswith(config.PREFIX):
            found.extend(int(pid) for pid in output(["ip", "netns", "pids", netns], check=False).split())
    return found


def nspawn_processes():
    """Every systemd-nspawn on the machine that runs a root under the lab's hosts directory."""
    found = []
    marker = (config.HOSTS_DIR + os.sep).encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as handle:
                    argv = handle.read().split(b"\0")
            except (FileNotFoundError, ProcessLookupError):
                continue
            if argv and argv[0].endswith(b"systemd-nspawn") and any(arg.startswith(marker) for arg in argv):
                found.append(int(entry))
    return found


def stop_all(grace=10):
    """End every container of the lab: ask politely, then kill its PID namespace.

    The containers are found from the state file and by looking (systemd-nspawn
    processes running a lab root, processes in a lab network namespace), so that
    a lab whose state file is incomplete still comes down.
    """
    state = load_state()
    nspawns = set(nspawn_processes())
    inits = set()
    for info in state.get("hosts", {}).values():
        if info.get("init_pid") and pid_alive(info["init_pid"]) and _is_lab_process(info["init_pid"], "init_pid"):
            inits.add(info["init_pid"])
    for pid in nspawns:
        inits.update(child for child in descendants(pid) if inner_pid(child) == 1)
        # systemd-nspawn --boot turns SIGTERM into a clean poweroff of the container.
        _signal(pid, signal.SIGTERM)
    everything = nspawns | inits
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_alive(pid) for pid in everything):
        time.sleep(0.2)
    # Killing a container's init kills every process of its PID namespace with it.
    for pid in list(inits) + host_processes() + list(nspawns):
        _signal(pid, signal.SIGKILL)
    wait_until(lambda: not host_processes() and not nspawn_processes() and not any(pid_alive(p) for p in inits),
               30, "the lab's processes to exit")


def _signal(pid, signum):
    if pid_alive(pid):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def _is_lab_process(pid, key):
    """Guard against a recorded PID that the kernel has since given to someone else."""
    if key == "init_pid":
        return inner_pid(pid) == 1 and pid in host_processes()
    return pid in nspawn_processes()


def lab_mounts():
    """Mount points under the lab's state directory, deepest first."""
    points = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = line.split()[4].replace("\\040", " ")
            if point == config.STATE_DIR or point.startswith(config.STATE_DIR + os.sep):
                points.append(point)
    return sorted(set(points), key=len, reverse=True)


def unmount_all():
    for point in lab_mounts():
        if run(["umount", point], check=False, capture=True).returncode != 0:
            run(["umount", "--lazy", point], check=False, capture=True)
    leftover = lab_mounts()
    if leftover:
        raise LabError("could not unmount: %s" % ", ".join(leftover))


def remove_nspawn_leftovers():
    """systemd-nspawn leaves a mount propagation directory per machine in /run."""
    base = "/run/systemd/nspawn/propagate"
    if os.path.isdir(base):
        for name in os.listdir(base):
            if name.startswith(config.PREFIX):
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)
