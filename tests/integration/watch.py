"""Every hypervisor's domains listed at the same instant, and a watcher that lists them so
while something moves guests: the lab tests' independent check, from virsh on each host.

One virsh run per host and listing: every domain's state comes from one list (a guest cannot
fall between a list of the running and a later list of the paused ones), and the persistent
ones are listed right after, over the same connection. The hosts are listed in parallel.
"""

import os
import subprocess
import threading
import time

from conftest import ADDRESSES, HYPERVISORS, KNOWN_HOSTS, SSH_KEY

VIRSH_LISTING = "virsh -q 'list --all; echo ---; list --all --persistent --name'"


def jobs_command(prefix=""):
    """A shell command that prints the running guests (named ``prefix``*) that have a job
    (a migration under way) on the host it runs on."""
    return ("for d in $(virsh -q list --name); do case $d in %s*) virsh domjobinfo $d | "
            "grep -Eq '^Job type: +(Bounded|Unbounded)' && echo $d;; esac; done; true" % prefix)


def parse_listing(out):
    """(running, paused, persistent) names from VIRSH_LISTING's output."""
    states, _sep, persistent = out.partition("---")
    running, paused = set(), set()
    for line in states.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "running":
            running.add(fields[1])
        elif len(fields) >= 3 and fields[2] == "paused":
            paused.add(fields[1])
    return running, paused, set(persistent.split())


def _list_one(host, control, out, errors):
    argv = ["ssh", "-i", SSH_KEY, "-o", "UserKnownHostsFile=" + KNOWN_HOSTS, "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"]
    if control:
        argv += ["-o", "ControlMaster=auto", "-o", "ControlPath=" + control, "-o", "ControlPersist=60"]
    try:
        proc = subprocess.run(argv + ["root@" + ADDRESSES[host], VIRSH_LISTING], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired as err:
        out[host] = None
        errors.append("%s: %s" % (host, err))
        return
    if proc.returncode != 0:
        out[host] = None
        errors.append("%s: %s" % (host, proc.stderr.strip()))
    elif "---" not in proc.stdout:
        # Cut short (libvirtd restarting): no evidence either way.
        out[host] = None
        errors.append("%s: incomplete listing %r" % (host, proc.stdout[-200:]))
    else:
        out[host] = parse_listing(proc.stdout)


def list_every_host(hosts=HYPERVISORS, control=None):
    """({host: (running, paused, persistent), or None when it could not be listed}, [errors]).

    ``control`` is an SSH ControlPath pattern, for callers that list again and again."""
    out, errors = {}, []
    threads = [threading.Thread(target=_list_one, args=(host, control, out, errors)) for host in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out, errors


def placement_of(names, hosts=HYPERVISORS):
    """{name: (running hosts, persistent hosts)} for the domains whose name ``names(name)`` accepts,
    from one listing of every host at the same instant; fails when a host could not be listed."""
    listings, errors = list_every_host(hosts)
    if errors:
        raise AssertionError("could not list every host: %s" % "; ".join(errors))
    out = {}
    for host in hosts:
        running, _paused, persistent = listings[host]
        for name in sorted(running | persistent):
            if not names(name):
                continue
            entry = out.setdefault(name, ([], []))
            if name in running:
                entry[0].append(host)
            if name in persistent:
                entry[1].append(host)
    return out


class Watcher(threading.Thread):
    """Lists every hypervisor about every ``interval`` seconds while guests move.

    At each poll the hosts are listed at the same instant (list_every_host, over shared SSH
    connections), and for each guest:
    - it runs (state running) on at most one host, and on exactly one unless it is paused on a
      host (the switch-over of a live migration, when the source has stopped its vCPUs and the
      destination has not started them yet) or it is allowed to be down (``may_stop``: guests
      moved cold, shut down in place by their policy, or killed by a test);
    - it is persistent on at most one host.
    Every violation is kept with its poll for the report. Two hosts holding a guest at once
    counts only when a second listing, right after, shows it too (poll says why); a state seen
    once is kept in ``unconfirmed``. A poll in which a host could not be
    listed (its libvirtd down, say) is no evidence either way: it is counted in ``errors``.
    """

    def __init__(self, guests, may_stop=(), interval=0.5):
        super().__init__(name="virsh-watcher", daemon=True)
        self.guests = set(guests)
        self.may_stop = set(may_stop)
        self.interval = interval
        self.stop_event = threading.Event()
        self.polls = 0
        self.violations = []
        self.unconfirmed = []   # seen in one listing only (see poll), kept for the report
        self.switchovers = 0
        self.errors = []
        self.control = "/tmp/lab-watch-%d-%%h" % os.getpid()

    def poll(self):
        out, errors = list_every_host(control=self.control)
        if errors:
            self.errors.extend(errors)
            return
        self.polls += 1
        suspects = []
        for name in self.guests:
            problem, seen = self._judge(name, out)
            if not seen["running"] and seen["paused"]:
                self.switchovers += 1
            if problem == "runs nowhere":
                self.violations.append(dict(seen, at=time.time(), guest=name, problem=problem))
            elif problem:
                suspects.append((name, problem, seen))
        if not suspects:
            return
        # The hosts' listings are taken in parallel but not at one instant: tens of ms apart, more
        # when a daemon is busy. A move that undefines the source and then defines the destination
        # within that skew can show on both. A state that really holds is still there when the
        # hosts are listed again at once (one listing for all the suspects); one gone by then is
        # kept apart.
        again, errors = list_every_host(control=self.control)
        for name, problem, seen in suspects:
            confirmed = not errors and self._judge(name, again)[0] == problem
            (self.violations if confirmed else self.unconfirmed).append(
                dict(seen, at=time.time(), guest=name, problem=problem))

    def _judge(self, name, out):
        """(the problem of one listing of every host for ``name``, or None; where it was seen)."""
        running = [h for h in HYPERVISORS if name in out[h][0]]
        paused = [h for h in HYPERVISORS if name in out[h][1]]
        persistent = [h for h in HYPERVISORS if name in out[h][2]]
        problem = None
        if len(running) > 1:
            problem = "runs on %s" % running
        elif not running and not paused and name not in self.may_stop:
            problem = "runs nowhere"
        elif len(persistent) > 1:
            problem = "persistent on %s" % persistent
        return problem, dict(running=running, paused=paused, persistent=persistent)

    def run(self):
        while not self.stop_event.is_set():
            started = time.monotonic()
            self.poll()
            self.stop_event.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def stop(self):
        self.stop_event.set()
        self.join(timeout=120)
        for host in HYPERVISORS:
            subprocess.run(["ssh", "-o", "ControlPath=" + self.control, "-O", "exit", "root@" + ADDRESSES[host]],
                           stdin=subprocess.DEVNULL, capture_output=True, check=False)
