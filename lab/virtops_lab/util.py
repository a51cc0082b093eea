"""Running commands, and the small pieces of process and file handling the lab needs."""

import os
import subprocess
import sys
import time


class LabError(Exception):
    """Something the lab could not do; the message says what and why."""


def log(message):
    print("lab: %s" % message, file=sys.stderr, flush=True)


def run(argv, check=True, capture=False, input_text=None, timeout=None, env=None, cwd=None):
    """Run a command; raise LabError with its output when it fails and check is set."""
    result = subprocess.run(
        argv,
        input=input_text,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
        stdin=None if input_text is not None else subprocess.DEVNULL,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
        check=False,
    )
    if check and result.returncode != 0:
        detail = ""
        if capture:
            detail = ": " + (result.stderr or result.stdout or "").strip()[-2000:]
        raise LabError("%s exited %d%s" % (" ".join(argv), result.returncode, detail))
    return result


def output(argv, **kwargs):
    return run(argv, capture=True, **kwargs).stdout


def write_file(path, content, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        handle.write(content)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def pid_alive(pid):
    if not pid:
        return False
    try:
        with open("/proc/%d/stat" % pid) as handle:
            # A zombie has exited; its parent simply has not reaped it yet.
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def children(pid):
    found = []
    try:
        for task in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, task)) as handle:
                found.extend(int(child) for child in handle.read().split())
    except (FileNotFoundError, ProcessLookupError):
        pass
    return found


def inner_pid(pid):
    """The PID a process has inside its own PID namespace (from NSpid), or None."""
    try:
        with open("/proc/%d/status" % pid) as handle:
            for line in handle:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def descendants(pid):
    found = []
    pending = [pid]
    while pending:
        for child in children(pending.pop()):
            found.append(child)
            pending.append(child)
    return found


def wait_until(predicate, timeout, what, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise LabError("timed out after %ds waiting for %s" % (timeout, what))
        time.sleep(interval)
