"""The domain_start module against fake libvirt hosts: a domain is started only when every
other hypervisor answered and none runs it; one that runs already is left as it is."""

import json
import os
import sys

import pytest

from ansible.module_utils.common import warnings as ansible_warnings
from ansible.module_utils.testing import patch_module_args

pytest.importorskip("libvirt")
import libvirt  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from fake_libvirt import World  # noqa: E402

from ansible_collections.virtops.migration.plugins.module_utils._evacuation import start_again  # noqa: E402
from ansible_collections.virtops.migration.plugins.modules import domain_start  # noqa: E402

OFF = libvirt.VIR_DOMAIN_SHUTOFF
UUID_S = "00000000-0000-0000-0000-0000000000b1"
UUID_T = "00000000-0000-0000-0000-0000000000b2"


@pytest.fixture
def run(monkeypatch, capsys):
    def runner(world, **args):
        monkeypatch.setattr(start_again, "open_hypervisor", world.open)
        with patch_module_args(args):
            with pytest.raises(SystemExit) as exit_info:
                domain_start.main()
        ansible_warnings._global_warnings.clear()
        out = json.loads(capsys.readouterr().out)
        out["rc"] = exit_info.value.code
        return out
    return runner


def test_a_shut_off_domain_is_started_when_no_peer_runs_it_and_a_second_run_changes_nothing(run):
    world = World()
    dom = world.hv1.add("s", UUID_S, state=OFF)
    out = run(world, domains=["s"], peers=["hv2"])
    assert out["rc"] == 0 and out["changed"] and out["started"] == ["s"] and out["problems"] == []
    assert dom.calls == ["create"] and "qemu+tls://hv2/system" in world.opened
    again = run(world, domains=["s"], peers=["hv2"])
    assert not again["changed"] and again["running"] == ["s"] and again["started"] == [] and dom.calls == ["create"]


def test_a_domain_running_on_a_peer_is_not_started_and_the_others_still_are(run):
    world = World()
    held = world.hv1.add("s", UUID_S, state=OFF)
    world.hv2.add("s", UUID_S)
    free = world.hv1.add("t", UUID_T, state=OFF)
    out = run(world, domains=["s", "t", "gone"], peers=["hv2"])
    assert out["rc"] == 0 and out["started"] == ["t"]
    assert out["problems"] == ["s not started on hv1: it runs on hv2", "gone is not defined on hv1"]
    assert held.calls == [] and free.calls == ["create"]


def test_nothing_is_started_while_a_peer_does_not_answer(run):
    world = World()
    dom = world.hv1.add("s", UUID_S, state=OFF)
    out = run(world, domains=["s"], peers=["hv2", "hv3-unreachable"])
    assert out["rc"] == 0 and not out["changed"] and out["started"] == []
    assert "hv3-unreachable" in out["problems"][0] and "did not answer, and could be running it" in out["problems"][0]
    assert dom.calls == []


def test_check_mode_asks_the_peers_and_starts_nothing(run):
    world = World()
    dom = world.hv1.add("s", UUID_S, state=OFF)
    out = run(world, domains=["s"], peers=["hv2"], _ansible_check_mode=True)
    assert out["changed"] and out["started"] == ["s"] and dom.calls == [] and "qemu+tls://hv2/system" in world.opened


def test_a_plaintext_transport_is_refused_before_anything_is_opened(run):
    world = World()
    world.hv1.add("s", UUID_S, state=OFF)
    out = run(world, domains=["s"], peers=["hv2"], transport="tcp")
    assert out["rc"] == 1 and "transport must be one of" in out["msg"] and world.opened == []


def test_a_run_with_nothing_to_start_asks_no_peer_and_a_name_given_twice_is_started_once(run):
    world = World()
    dom = world.hv1.add("s", UUID_S)
    out = run(world, domains=["s"], peers=["hv2", "hv3-unreachable"])
    assert out["running"] == ["s"] and out["problems"] == [] and world.opened == ["qemu:///system"]
    off = world.hv1.add("t", UUID_T, state=OFF)
    out = run(world, domains=["t", "s", "t"], peers=["hv2"])
    assert out["started"] == ["t"] and out["running"] == ["s"] and out["problems"] == []
    assert off.calls == ["create"] and dom.calls == []
