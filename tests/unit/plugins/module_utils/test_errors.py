import pytest

from ansible_collections.virtops.migration.plugins.module_utils._errors import (
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
