import pytest

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import (
    LibvirtError,
    NotFound,
    OperationInvalid,
    Unsupported,
    VirtopsError,
    call,
    lookup,
)

libvirt = pytest.importorskip("libvirt")


def libvirt_error(code, message="boom"):
    err = libvirt.libvirtError(message)
    err.err = (code, 0, message, 2, None, None, None, 0, 0)
    return err


def raiser(code, message="boom"):
    def fn(*_args):
        raise libvirt_error(code, message)
    return fn


def test_not_found_is_none_for_lookup():
    assert lookup("looking up", raiser(libvirt.VIR_ERR_NO_DOMAIN)) is None
    with pytest.raises(NotFound):
        call("looking up", raiser(libvirt.VIR_ERR_NO_DOMAIN))


def test_translation_keeps_action_code_and_message():
    with pytest.raises(OperationInvalid) as info:
        call("setting downtime", raiser(libvirt.VIR_ERR_OPERATION_INVALID, "no job"))
    assert info.value.msg == "setting downtime: no job"
    assert info.value.code == libvirt.VIR_ERR_OPERATION_INVALID
    assert info.value.libvirt_message == "no job"
    with pytest.raises(Unsupported):
        call("x", raiser(libvirt.VIR_ERR_NO_SUPPORT))
    with pytest.raises(LibvirtError) as info:
        lookup("migrating", raiser(libvirt.VIR_ERR_OPERATION_FAILED, "link down"))
    assert isinstance(info.value, VirtopsError) and not isinstance(info.value, NotFound)


def test_other_exceptions_pass_through():
    def bad():
        raise KeyError("x")
    with pytest.raises(KeyError):
        call("x", bad)


def test_call_returns_value():
    assert call("adding", lambda a, b: a + b, 1, 2) == 3


# --- errors that used to escape the family --------------------------------------------

class FakePool(object):
    def __init__(self, refresh_error=None, active_error=None):
        self.refresh_error = refresh_error
        self.active_error = active_error
        self.refreshed = False

    def name(self):
        return "images"

    def isActive(self):
        if self.active_error is not None:
            raise self.active_error
        return 1

    def refresh(self, _flags):
        if self.refresh_error is not None:
            raise self.refresh_error
        self.refreshed = True


class FakeConn(object):
    def __init__(self, pool):
        self.pool = pool

    def storagePoolLookupByTargetPath(self, _path):
        return self.pool


def hypervisor(pool):
    from ansible_collections.virtops.migration.plugins.module_utils._libvirt.connection import Hypervisor
    from ansible_collections.virtops.migration.plugins.module_utils._libvirt.uri import parse_uri
    return Hypervisor(parse_uri("qemu+tls://hv2/system"), FakeConn(pool))


def test_a_pool_that_cannot_be_rescanned_is_judged_as_listed_not_a_traceback():
    pool = FakePool(refresh_error=libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR, "pool is busy"))
    assert hypervisor(pool).refresh_pool_for_directory("/var/lib/libvirt/images") == "images"
    pool = FakePool(active_error=libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR, "gone"))
    assert hypervisor(pool).refresh_pool_for_directory("/var/lib/libvirt/images") == "images"
    pool = FakePool()
    assert hypervisor(pool).refresh_pool_for_directory("/var/lib/libvirt/images") == "images" and pool.refreshed


def test_planning_errors_belong_to_the_family():
    from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import ParameterError, PlanningError
    from ansible_collections.virtops.migration.plugins.module_utils._planning.prediction import predict_migration
    from ansible_collections.virtops.migration.plugins.module_utils._planning.schedule import Job, simulate
    with pytest.raises(ParameterError):
        predict_migration(1024, 0, -1)
    # No slot on any destination: the schedule cannot make progress, which is a planner bug, reported as one.
    with pytest.raises(PlanningError) as err:
        simulate([Job("a", "hv2", lambda share: 1.0)], 100.0, 1, 0)
    assert isinstance(err.value, VirtopsError) and "stuck" in err.value.msg
