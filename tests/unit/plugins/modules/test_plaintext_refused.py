"""No module of the collection opens a plaintext path: qemu+tcp://, transport=tcp and tls=false
fail with a clear message before any connection is opened and before anything is written.

The escape hatch is deliberately absent: these tests pin that no combination of options gets
a plaintext libvirt connection or migration stream past the modules.
"""

import json
import os
import sys

import pytest

from ansible.module_utils.common import warnings as ansible_warnings
from ansible.module_utils.testing import patch_module_args

pytest.importorskip("libvirt")

sys.path.insert(0, os.path.dirname(__file__))
from fake_libvirt import World  # noqa: E402

from ansible_collections.virtops.migration.plugins.module_utils._evacuation import libvirt_executor as _executor  # noqa: E402
from ansible_collections.virtops.migration.plugins.module_utils._facts import host_facts as _host_facts  # noqa: E402
from ansible_collections.virtops.migration.plugins.module_utils._facts import precheck_run as _precheck_run  # noqa: E402
from ansible_collections.virtops.migration.plugins.module_utils._migration import task as _migrate  # noqa: E402
from ansible_collections.virtops.migration.plugins.modules import evacuate, host_info, migrate, precheck  # noqa: E402

UUID = "0b5e7a4c-1d5e-4f7e-9a3b-2c8d6e1f0a9b"
PLAINTEXT_URI = "plaintext transport qemu+tcp://: refused"
PLAINTEXT_STREAM = "in clear: refused"


@pytest.fixture
def world(monkeypatch):
    world = World()
    world.hv1.add("mig-a", UUID)
    for module in (_migrate, _executor, _host_facts, _precheck_run):
        monkeypatch.setattr(module, "open_hypervisor", world.open)
    return world


@pytest.fixture
def run(capsys):
    def runner(module, **args):
        with patch_module_args(args):
            with pytest.raises(SystemExit) as exit_info:
                module.main()
        ansible_warnings._global_warnings.clear()
        out = json.loads(capsys.readouterr().out)
        out["rc"] = exit_info.value.code
        return out
    return runner


def _refused(out, world, message):
    assert out["rc"] == 1, out
    assert message in out["msg"], out["msg"]
    assert "Traceback" not in out["msg"] and "exception" not in out
    assert world.opened == [] and world.migrations == []
    assert not out.get("changed")


@pytest.mark.parametrize("args, message", [
    (dict(destination="qemu+tcp://hv2/system"), PLAINTEXT_URI),
    (dict(destination="qemu+tcp://hv2:16509/system"), PLAINTEXT_URI),
    (dict(uri="qemu+tcp://hv1/system"), PLAINTEXT_URI),
    (dict(tls=False), PLAINTEXT_STREAM),
    (dict(tls=False, mode="cold"), PLAINTEXT_STREAM),
    (dict(tls=False, migration_address="198.18.1.12"), PLAINTEXT_STREAM),
    # Ansible's choices refuse the transport before the module runs; the docs say why.
    (dict(transport="tcp"), "value of transport must be one of"),
])
def test_migrate_refuses_plaintext(run, world, args, message):
    out = run(migrate, name="mig-a", **dict(dict(destination="hv2"), **args))
    _refused(out, world, message)


@pytest.mark.parametrize("args, message", [
    (dict(tls=False), PLAINTEXT_STREAM),
    (dict(uri="qemu+tcp://hv1/system"), PLAINTEXT_URI),
    (dict(transport="tcp"), "value of transport must be one of"),
])
def test_evacuate_refuses_plaintext_before_writing_its_journal(run, world, tmp_path, args, message):
    moves = [dict(domain="mig-a", uuid=UUID, destination="hv2", mode="live", order=1, memory_mib=256)]
    out = run(evacuate, evacuation_id="ev-plain", source="hv1", moves=moves, journal_dir=str(tmp_path), **args)
    _refused(out, world, message)
    assert os.listdir(str(tmp_path)) == []


@pytest.mark.parametrize("args, message", [
    (dict(uri="qemu+tcp://hv1/system"), PLAINTEXT_URI),
    (dict(destinations=["qemu+tcp://hv2/system"]), PLAINTEXT_URI),
    (dict(transport="tcp"), "value of transport must be one of"),
])
def test_precheck_refuses_plaintext(run, world, args, message):
    out = run(precheck, **dict(dict(destinations=["hv2"]), **args))
    _refused(out, world, message)


def test_host_info_refuses_plaintext(run, world):
    _refused(run(host_info, uri="qemu+tcp://hv1/system"), world, PLAINTEXT_URI)


def test_ssh_control_connection_is_not_plaintext(run, world, monkeypatch):
    # qemu+ssh:// is encrypted and authenticated: accepted as the control connection.
    monkeypatch.setattr(_host_facts, "gather", lambda hypervisor, *args: {"hostname": hypervisor.name})
    out = run(host_info, uri="qemu+ssh://root@hv1/system")
    assert out["rc"] == 0, out
    assert world.opened == ["qemu+ssh://root@hv1/system"]
