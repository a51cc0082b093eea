"""The lab's package mirror: Debian's apt-cacher-ng on the control node's management address.

It proxies Debian's archive (and nothing else: ForceManaged) and caches what it
fetched under the lab's cache directory, so that a second lab needs nothing
from outside for packages it has seen. `up` starts it, `down` ends it by its
recorded PID and by looking for any that runs with the lab's cache.
"""

import os
import signal
import socket
import subprocess
import time

from . import config
from .util import LabError, pid_alive, wait_until, write_file

SUPPORT_DIR = "/usr/lib/apt-cacher-ng"
# Debian's archive as this machine reaches it: the package's default backend
# (ftp.debian.org) is not reachable from here, deb.debian.org is.
ARCHIVE = "http://deb.debian.org/debian/"
SECURITY = "http://deb.debian.org/debian-security/"


def _conf_dir():
    return os.path.join(config.MIRROR_STATE, "conf")


def _write_config():
    settings = [
        ("CacheDir", config.MIRROR_CACHE),
        ("LogDir", config.MIRROR_STATE),
        ("SupportDir", SUPPORT_DIR),
        ("PidFile", os.path.join(config.MIRROR_STATE, "pid")),
        ("SocketPath", os.path.join(config.MIRROR_STATE, "socket")),
        ("BindAddress", config.CONTROL_ADDRESS),
        ("Port", str(config.MIRROR_PORT)),
        ("ForeGround", "1"),
        ("Remap-debrep", "file:deb_mirror*.gz /debian ; " + ARCHIVE),
        ("Remap-secdeb", "security.debian.org security.debian.org/debian-security deb.debian.org/debian-security "
                         "/debian-security ; " + SECURITY),
        # Only the archives above, never a URL a host makes up.
        ("ForceManaged", "1"),
        ("ExThreshold", "4"),
    ]
    write_file(os.path.join(_conf_dir(), "acng.conf"), "".join("%s: %s\n" % item for item in settings))


def _argv():
    # The cache directory on the command line too: it is how `processes` recognises the lab's mirror.
    return ["apt-cacher-ng", "-c", _conf_dir(), "CacheDir=" + config.MIRROR_CACHE]


def answers():
    try:
        socket.create_connection((config.CONTROL_ADDRESS, config.MIRROR_PORT), timeout=1).close()
        return True
    except OSError:
        return False


def start():
    """Start the mirror (the management bridge must have the control node's address); return its PID."""
    if not os.path.isdir(SUPPORT_DIR):
        raise LabError("apt-cacher-ng is not installed (run make setup)")
    os.makedirs(config.MIRROR_CACHE, exist_ok=True)
    os.makedirs(config.MIRROR_STATE, exist_ok=True)
    _write_config()
    log_file = open(os.path.join(config.MIRROR_STATE, "daemon.log"), "ab")
    proc = subprocess.Popen(_argv(), stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                            start_new_session=True)
    log_file.close()

    def ready():
        if proc.poll() is not None:
            raise LabError("apt-cacher-ng exited with %s; see %s/daemon.log" % (proc.returncode, config.MIRROR_STATE))
        return answers()
    wait_until(ready, 20, "the package mirror on %s" % config.MIRROR_URL)
    return proc.pid


def processes():
    """apt-cacher-ng processes running with the lab's cache: found by looking, not by record."""
    found = []
    marker = ("CacheDir=" + config.MIRROR_CACHE).encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as handle:
                    argv = handle.read().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"apt-cacher-ng") and marker in argv:
                found.append(int(entry))
    return found


def stop(recorded_pid=None, grace=5):
    pids = set(processes())
    if recorded_pid and recorded_pid in pids:
        pids.add(recorded_pid)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_alive(pid) for pid in pids):
        time.sleep(0.1)
    for pid in pids:
        if pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    wait_until(lambda: not processes(), 10, "the package mirror to exit")
