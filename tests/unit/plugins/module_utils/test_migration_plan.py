import pytest

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.domain import DomainState
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import DomainStateError, ParameterError
from ansible_collections.virtops.migration.plugins.module_utils._migration.request import (
    COLD,
    FINISH,
    LIVE,
    MIGRATE_ARGUMENT_SPEC,
    NONE,
    RESUME_POSTCOPY,
    MigrationRequest,
    cold_flags,
    decide,
    live_flags,
    migration_params,
)
from ansible_collections.virtops.migration.plugins.module_utils._libvirt.uri import destination_uri

UUID = "0b5e7a4c-1d5e-4f7e-9a3b-2c8d6e1f0a9b"
DEST = destination_uri("hv2")


def params(**overrides):
    out = dict((k, v.get("default")) for k, v in MIGRATE_ARGUMENT_SPEC.items())
    out.update(name="mig-a", destination="hv2")
    out.update(overrides)
    return out


def request(**overrides):
    return MigrationRequest.from_params(params(**overrides), DEST)


def running(persistent=True, reason=1, state=1):
    return DomainState("mig-a", UUID, state, reason, persistent)


def shutoff():
    return DomainState("mig-a", UUID, 5, 1, True)


# --- validation ------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, message", [
    (dict(bandwidth=-1), "bandwidth"),
    (dict(bandwidth=0), "bandwidth"),
    (dict(max_downtime=0), "max_downtime"),
    (dict(max_downtime=3000000), "at most"),
    (dict(max_downtime=500, max_downtime_steps=[400]), "not above"),
    (dict(max_downtime_steps=[200]), "QEMU's default"),
    (dict(max_downtime_steps=[500, 500]), "duplicates"),
    (dict(max_downtime_steps=[-5]), "between"),
    (dict(timeout=0), "timeout"),
    (dict(timeout=-10), "timeout"),
    (dict(parallel_connections=0), "parallel_connections"),
    (dict(parallel_connections=256), "at most"),
    (dict(shutdown_timeout=-1), "shutdown_timeout"),
    (dict(stall_iterations=0), "stall_iterations"),
    (dict(compression=["mt"], postcopy="permit"), "compression"),
    (dict(compression=["mt"], timeout_action="postcopy"), "compression"),
    (dict(compression=["mt", "mt"]), "twice"),
    (dict(persistent=False, mode="cold"), "persistent"),
    (dict(tls=False), "tls=false would send the guest's memory .* in clear: refused"),
    (dict(tls=False, tls_destination="hv2"), "in clear: refused"),
    (dict(tls=False, mode="cold"), "in clear: refused"),
    (dict(tls_destination="hv2/x"), "tls_destination"),
    (dict(migration_address="198.18.1.12/24"), "migration_address"),
    (dict(migration_address="tcp://198.18.1.12?x"), "migration_address"),
    (dict(name=""), "name"),
    (dict(name="  "), "name"),
    (dict(name="a\nb"), "name"),
])
def test_bad_input_fails_before_anything(overrides, message):
    with pytest.raises(ParameterError, match=message):
        request(**overrides)


def test_defaults():
    r = request()
    assert r.mode == "auto" and r.tls and r.persistent and r.copy_storage == "none"
    assert r.policy.max_downtime is None and r.policy.stall_iterations == 2
    assert r.migration_uri is None and r.bandwidth is None
    assert r.shutdown_timeout == 120 and not r.force


def test_default_timeout_scales_with_what_moves():
    r = request()
    assert r.effective_timeout(256 * 1024 ** 2) == 300
    assert r.effective_timeout(4 * 1024 ** 3) == 3200
    assert request(timeout=42).effective_timeout(4 * 1024 ** 3) == 42


# --- flags and parameters ------------------------------------------------------------

def test_live_flags_default():
    # No PERSIST_DEST: the module defines the domain on the destination once the source let it go.
    assert live_flags(request(), []) == ["PEER2PEER", "LIVE", "ABORT_ON_ERROR", "TLS", "UNDEFINE_SOURCE"]


def test_live_flags_everything():
    r = request(persistent=False, auto_converge=True, postcopy="permit", parallel_connections=4,
                compression=["xbzrle"], copy_storage="incremental")
    assert live_flags(r, ["vda"]) == ["PEER2PEER", "LIVE", "ABORT_ON_ERROR", "TLS", "AUTO_CONVERGE", "POSTCOPY",
                                      "PARALLEL", "COMPRESSED", "NON_SHARED_INC"]
    assert "NON_SHARED_DISK" in live_flags(request(copy_storage="all"), ["vda"])
    # Nothing to copy: no storage flag even with copy_storage set.
    assert "NON_SHARED_DISK" not in live_flags(request(copy_storage="all"), [])


def test_migration_params():
    r = request(migration_address="198.18.1.12", bandwidth=100, parallel_connections=4, compression=["xbzrle"],
                tls_destination="hv2.lab.test")
    assert migration_params(r, ["vda"]) == {
        "migrate_uri": "tcp://198.18.1.12",
        "disks_uri": "tcp://198.18.1.12",
        "bandwidth": 100,
        "parallel.connections": 4,
        "compression": ["xbzrle"],
        "migrate_disks": ["vda"],
        "tls.destination": "hv2.lab.test",
    }
    assert migration_params(request(), []) == {}
    assert migration_params(r, [], offline=True) == {}


def test_params_names_match_libvirt():
    libvirt = pytest.importorskip("libvirt")
    names = set(migration_params(request(migration_address="198.18.1.12", bandwidth=1, parallel_connections=2,
                                         compression=["xbzrle"], tls_destination="x"), ["vda"]))
    known = set(getattr(libvirt, n) for n in dir(libvirt) if n.startswith("VIR_MIGRATE_PARAM_"))
    assert names <= known
    for flag in live_flags(request(auto_converge=True, postcopy="permit", parallel_connections=2,
                                   compression=["xbzrle"], copy_storage="all"), ["vda"]) + ["OFFLINE", "PAUSED"]:
        assert hasattr(libvirt, "VIR_MIGRATE_" + flag)


def test_cold_flags():
    # TLS even offline: libvirtd with migrate_tls_force refuses any migration without it.
    assert cold_flags(request(), []) == ["PEER2PEER", "OFFLINE", "PERSIST_DEST", "UNDEFINE_SOURCE", "TLS"]
    flags = cold_flags(request(copy_storage="all"), ["vda"])
    assert "PAUSED" in flags and "NON_SHARED_DISK" in flags and "TLS" in flags and "LIVE" not in flags
    # The module persists the copy on the destination itself, after the source undefined it.
    assert "UNDEFINE_SOURCE" in flags and "PERSIST_DEST" not in flags


# --- decisions -------------------------------------------------------------------------

def test_running_on_source_goes_live():
    d = decide("auto", True, running(), None)
    assert (d.action, d.mode) == (LIVE, "live")
    assert decide("live", True, running(state=3, reason=1), None).action == LIVE  # paused moves live too


def test_running_on_source_with_mode_cold():
    d = decide("cold", True, running(), None)
    assert (d.action, d.mode) == (COLD, "cold")


def test_shut_off_goes_cold_or_fails_for_live():
    assert decide("auto", True, shutoff(), None).action == COLD
    assert decide("cold", True, shutoff(), None).action == COLD
    with pytest.raises(DomainStateError, match="shut off"):
        decide("live", True, shutoff(), None)


def test_already_on_destination_is_unchanged():
    for mode in ("auto", "live", "cold"):
        d = decide(mode, True, None, running())
        assert d.action == NONE and not d.changes
    assert decide("cold", True, None, shutoff()).action == NONE
    live = decide("live", True, None, shutoff())
    assert live.action == NONE and live.warnings


def test_transient_on_destination_is_made_persistent():
    d = decide("auto", True, None, running(persistent=False))
    assert d.action == FINISH and d.steps == ["persist_destination"]
    assert decide("auto", False, None, running(persistent=False)).action == NONE


def test_leftover_definition_on_source_is_removed_only_when_persistent():
    d = decide("auto", True, shutoff(), running())
    assert d.action == FINISH and d.steps == ["undefine_source"]
    d = decide("auto", True, shutoff(), running(persistent=False))
    assert d.steps == ["persist_destination", "undefine_source"]
    assert decide("auto", False, shutoff(), running(persistent=False)).action == NONE


def test_nowhere_fails():
    with pytest.raises(DomainStateError, match="neither"):
        decide("auto", True, None, None, "hv1", "hv2")


def test_running_on_both_fails():
    with pytest.raises(DomainStateError, match="both"):
        decide("auto", True, running(), running())


def test_migration_in_progress_fails():
    with pytest.raises(DomainStateError, match="in progress"):
        decide("auto", True, running(), running(persistent=False, state=3, reason=2))


def test_name_clash_with_other_uuid_fails():
    other = DomainState("mig-a", "11111111-2222-3333-4444-555555555555", 5, 1, True)
    with pytest.raises(DomainStateError, match="different domain"):
        decide("auto", True, running(), other)


def test_inactive_copy_on_destination_is_replaced_with_a_warning():
    d = decide("auto", True, running(), shutoff())
    assert d.action == LIVE and d.warnings


def test_postcopy_in_progress_fails_clearly():
    src = DomainState("mig-a", UUID, 3, 12, True)
    dst = DomainState("mig-a", UUID, 1, 10, True)
    with pytest.raises(DomainStateError, match="post-copy migration .* is in progress"):
        decide("auto", True, src, dst)


def test_failed_postcopy_is_resumed():
    src = DomainState("mig-a", UUID, 3, 13, True)
    dst = DomainState("mig-a", UUID, 3, 13, False)
    assert decide("auto", True, src, dst).action == RESUME_POSTCOPY
    with pytest.raises(DomainStateError, match="post-copy"):
        decide("auto", True, src, None)
