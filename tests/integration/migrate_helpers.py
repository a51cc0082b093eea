"""Helpers for the lab tests that run the migrate module (its own suite and the fault suite).

The module runs the way a user runs it: `ansible HOST -m virtops.migration.migrate` against
the lab inventory, with the checkout linked in as virtops.migration. Outcomes are checked
with virsh on each host over SSH (tests/integration/conftest.py), never with the module.
"""

import json
import os
import subprocess
import time
import uuid

import pytest

from conftest import INVENTORY, REPO, labctl, ssh, where

ANSIBLE = os.path.join(REPO, ".venv", "bin", "ansible")
COLLECTIONS = os.path.join(REPO, ".tmp", "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "virtops", "migration")
MIGRATION_ADDRESSES = {"hv1": "198.18.1.11", "hv2": "198.18.1.12", "hv3": "198.18.1.13"}


def link_collection():
    """As `make collection`: Ansible finds the checkout as virtops.migration."""
    if os.path.realpath(LINK) != os.path.realpath(REPO):
        os.makedirs(os.path.dirname(LINK), exist_ok=True)
        if os.path.islink(LINK):
            os.unlink(LINK)
        os.symlink(REPO, LINK)


def ansible_env():
    env = dict(os.environ)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=COLLECTIONS,
        ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_HOST_KEY_CHECKING="1",
    )
    return env


def warnings_of(result):
    texts = []
    for warning in result.get("warnings", []):
        texts.append(warning["event"]["msg"] if isinstance(warning, dict) and "event" in warning else str(warning))
    return texts


def _argv(source, check, diff, args):
    argv = [ANSIBLE, "-i", INVENTORY, source, "-m", "virtops.migration.migrate", "-a", json.dumps(args)]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    return argv


def _result(source, returncode, stdout, stderr):
    try:
        report = json.loads(stdout)
    except ValueError:
        raise AssertionError("ansible printed no JSON (rc %d): %s%s" % (returncode, stdout, stderr)) from None
    return report["plays"][0]["tasks"][0]["hosts"][source]


def migrate(source, check=False, diff=False, run_timeout=600, **args):
    """Run the module on ``source``; return (its result dict, wall seconds)."""
    started = time.monotonic()
    proc = subprocess.run(_argv(source, check, diff, args), stdin=subprocess.DEVNULL, capture_output=True, text=True, env=ansible_env(),
                          timeout=run_timeout, check=False)
    elapsed = time.monotonic() - started
    return _result(source, proc.returncode, proc.stdout, proc.stderr), elapsed


class Background(object):
    """The module running on ``source`` while the test does something else."""

    def __init__(self, source, **args):
        self.source = source
        self.proc = subprocess.Popen(_argv(source, False, False, args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=ansible_env())

    def result(self, timeout=600):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError("the module did not finish within %s s: %s%s" % (timeout, out, err)) from None
        return _result(self.source, self.proc.returncode, out, err)


def guest(host, name, start=True, **options):
    """Define a lab guest (labctl guest define); return its name."""
    argv = ["guest", "define", host, name]
    for key, value in options.items():
        argv += ["--" + key.replace("_", "-"), str(value)]
    if start:
        argv.append("--start")
    labctl(*argv)
    return name


def remove_guest(name):
    labctl("guest", "remove", name, check=False)


def unique(prefix):
    return "mig-%s-%s" % (prefix, uuid.uuid4().hex[:6])


def placement(name):
    """(hosts where it runs, hosts where it is persistent), from virsh on every hypervisor."""
    running, persistent = where(name)
    return sorted(running), sorted(persistent)


def state_on(host, name):
    out = ssh(host, "virsh -q domstate %s 2>/dev/null || echo absent" % name, check=False).stdout.strip()
    return out or "absent"


def tx_bytes(host, interface="mig0"):
    """Bytes the host has sent on ``interface`` (its own network namespace's counters)."""
    out = ssh(host, "ip -s -j link show dev %s" % interface).stdout
    return json.loads(out)[0]["stats64"]["tx"]["bytes"]


@pytest.fixture(scope="module")
def prepared(lab):
    """The lab, its hosts prepared for migration; a suite's tests fail at once, saying so, when they are not.

    A fixture: the suites that use it import it by name."""
    link_collection()
    ok, why = tls_ready()
    if not ok:
        pytest.fail("the lab hosts are not prepared for migration (run playbooks/prepare_hosts.yml first): %s" % why)
    return lab


def tls_ready():
    """Whether the hosts were prepared (playbooks/prepare_hosts.yml): TLS between hv1 and hv2."""
    proc = ssh("hv1", "virsh -c qemu+tls://hv2/system -q list --all >/dev/null", check=False, timeout=60)
    return proc.returncode == 0, proc.stderr.strip()
