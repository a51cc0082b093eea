"""The fleet's PKI on the lab (issue 12): every bad identity and every plaintext attempt is refused
with a clear message and leaves the guest where it was; a rotation in the middle of an
evacuation refuses no migration; after prepare_hosts.yml no hypervisor holds a CA key, every
private key has its expected owner and mode, and no secret appears in a log or a module return.

Needs prepared hosts (molecule scenario `prepare` or playbooks/prepare_hosts.yml) with the
CAs in the lab's tls_ca_dir, unencrypted (the lab sets no passphrase).

The bad client identities are presented with virsh's own client (a migration managed by
virsh, not peer to peer): `qemu+tls://hv2/system?pkipath=DIR` makes virsh use DIR's
cacert.pem, clientcert.pem and clientkey.pem instead of the host's. Certificates are made on
the control node with Python's cryptography, signed by the lab's CAs where the case needs it.
Outcomes are read with virsh on each host, never with the collection.
"""

import datetime
import json
import os
import subprocess
import time

import pytest

from conftest import HYPERVISORS, INVENTORY, REPO, ansible_env, run_module, ssh

from migrate_helpers import guest, migrate, placement, remove_guest, tls_ready, unique

cryptography = pytest.importorskip("cryptography")
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

CA_DIR = "/var/lib/virtops-lab/pki"
LIBVIRT_CA = (os.path.join(CA_DIR, "cacert.pem"), os.path.join(CA_DIR, "private", "cakey.pem"))
QEMU_CA = (os.path.join(CA_DIR, "qemu", "cacert.pem"), os.path.join(CA_DIR, "qemu", "private", "cakey.pem"))
PLAYBOOK = os.path.join(REPO, ".venv", "bin", "ansible-playbook")
PKIPATH = "/root/pki-test"
SOURCE, DESTINATION = "hv1", "hv2"
KEY_MODES = {
    "/etc/pki/libvirt/private/serverkey.pem": ("root", "root", "0600"),
    "/etc/pki/libvirt/private/clientkey.pem": ("root", "root", "0600"),
    "/etc/pki/qemu/server-key.pem": ("root", "libvirt-qemu", "0440"),
    "/etc/pki/qemu/client-key.pem": ("root", "libvirt-qemu", "0440"),
}


@pytest.fixture(scope="module", autouse=True)
def prepared(lab):
    ready, reason = tls_ready()
    if not ready:
        pytest.skip("the hosts are not prepared (run the molecule scenario prepare first): %s" % reason)


@pytest.fixture
def vm():
    name = guest(SOURCE, unique("pki"), memory=128)
    yield name
    remove_guest(name)


def playbook(name, *extra, timeout=1800):
    argv = [PLAYBOOK, "-i", INVENTORY, os.path.join(REPO, "playbooks", name)] + list(extra)
    env = dict(ansible_env(), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default")
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=timeout, check=False)


# --- identities made on the control node ---------------------------------------------

def _load_ca(paths):
    with open(paths[0], "rb") as handle:
        cert = x509.load_pem_x509_certificate(handle.read())
    with open(paths[1], "rb") as handle:
        key = serialization.load_pem_private_key(handle.read(), password=None)
    return cert, key


def _foreign_ca():
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "virtops"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "virtops")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def client_identity(ca, unit="libvirt-client", cn=SOURCE, days=(-1, 30)):
    """(certificate PEM, key PEM) of a client certificate with the subject libvirt compares."""
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP384R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "virtops"),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
                         x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now + datetime.timedelta(days=days[0] - 1))
            .not_valid_after(now + datetime.timedelta(days=days[1]))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, content_commitment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


def install_pkipath(host, cert_pem, key_pem):
    """A client PKI directory on ``host``: the lab's libvirt CA (to check the server), and the identity."""
    with open(LIBVIRT_CA[0]) as handle:
        ca_pem = handle.read()
    ssh(host, "rm -rf %s && mkdir -m 0700 %s" % (PKIPATH, PKIPATH))
    for name, text, mode in (("cacert.pem", ca_pem, "0644"), ("clientcert.pem", cert_pem, "0644"),
                             ("clientkey.pem", key_pem, "0600")):
        ssh(host, "umask 077; cat > %s/%s <<'EOF'\n%sEOF\nchmod %s %s/%s" % (PKIPATH, name, text, mode, PKIPATH, name))


def managed_migration(name, uri_extra="?pkipath=%s" % PKIPATH, tls=True):
    """`virsh migrate` managed by virsh on the source (not peer to peer), so virsh's identity counts."""
    command = "virsh migrate --live --persistent --undefinesource%s %s 'qemu+tls://%s/system%s' tcp://198.18.1.12" % (
        " --tls" if tls else "", name, DESTINATION, uri_extra)
    return ssh(SOURCE, command, check=False, timeout=300)


def assert_refused(proc, name, *messages):
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text
    assert any(message.lower() in text.lower() for message in messages), text
    assert "Traceback" not in text
    assert placement(name) == ([SOURCE], [SOURCE]), "the guest moved: %s" % (placement(name),)


# --- the attempts ----------------------------------------------------------------------

def test_a_foreign_ca_is_refused(vm):
    install_pkipath(SOURCE, *client_identity(_foreign_ca()))
    assert_refused(managed_migration(vm), vm, "certificate", "not trusted", "known issuer")


def test_an_expired_certificate_is_refused(vm):
    install_pkipath(SOURCE, *client_identity(_load_ca(LIBVIRT_CA), days=(-30, -1)))
    # virsh checks its own certificate first; libvirtd would refuse it too.
    assert_refused(managed_migration(vm), vm, "expired")


def test_a_certificate_that_does_not_name_the_destination_is_refused(vm):
    # QEMU's stream is checked against tls_destination: a name hv2's QEMU certificate does not carry.
    result, _seconds = migrate(SOURCE, name=vm, destination=DESTINATION, migration_address="198.18.1.12",
                               tls_destination="not-hv2.lab.invalid", mode="live")
    assert result.get("failed"), result
    assert "certificate" in result["msg"].lower() or "tls" in result["msg"].lower(), result["msg"]
    assert placement(vm) == ([SOURCE], [SOURCE])


def destination_log_since(epoch):
    """What the destination's libvirtd logged since ``epoch`` (seconds)."""
    return ssh(DESTINATION, "journalctl -q -u libvirtd --since @%d --no-pager" % int(epoch), check=False).stdout


def test_a_dn_that_is_not_allowed_is_refused(vm):
    install_pkipath(SOURCE, *client_identity(_load_ca(LIBVIRT_CA), unit="operators"))
    started = time.time() - 1
    # libvirtd ends the TLS session of a DN it does not allow: the client only sees the session end,
    # and the reason is in the destination's log.
    assert_refused(managed_migration(vm), vm, "Distinguished Name is not on the list", "tls_allowed_dn_list",
                   "Unable to read TLS confirmation")
    log = destination_log_since(started)
    assert "not on the list" in log or "tls_allowed_dn_list" in log, log[-2000:]


def test_qemus_key_presented_to_libvirtd_is_refused(vm):
    cert = ssh(SOURCE, "cat /etc/pki/qemu/client-cert.pem").stdout
    key = ssh(SOURCE, "cat /etc/pki/qemu/client-key.pem").stdout
    install_pkipath(SOURCE, cert, key)
    assert_refused(managed_migration(vm), vm, "certificate", "not trusted", "known issuer",
                   "Distinguished Name is not on the list")


def test_a_revoked_certificate_is_refused(vm, tmp_path):
    cert_pem, key_pem = client_identity(_load_ca(LIBVIRT_CA))
    # Allowed and valid first: the same identity gets through before it is revoked.
    install_pkipath(SOURCE, cert_pem, key_pem)
    listing = ssh(SOURCE, "virsh -c 'qemu+tls://%s/system?pkipath=%s' -q list --all" % (DESTINATION, PKIPATH),
                  check=False)
    assert listing.returncode == 0, listing.stderr
    path = tmp_path / "revoked.pem"
    path.write_text(cert_pem)
    extra = json.dumps({"tls_revoke_certificates": {"libvirt": [{"path": str(path)}]}})
    play = os.path.join(str(tmp_path), "revoke.yml")
    with open(play, "w") as handle:
        handle.write("- hosts: hypervisors\n  gather_facts: true\n  gather_subset: [min]\n  tasks:\n"
                     "    - {ansible.builtin.import_role: {name: virtops.migration.tls, tasks_from: ca}}\n"
                     "    - {ansible.builtin.import_role: {name: virtops.migration.tls, tasks_from: trust}}\n")
    proc = subprocess.run([PLAYBOOK, "-i", INVENTORY, play, "-e", extra], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=dict(ansible_env(), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default"), timeout=900,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    started = time.time() - 1
    # As for a DN not allowed, the client may only see the session end; the destination logs why.
    assert_refused(managed_migration(vm), vm, "revoked", "Unable to read TLS confirmation")
    log = destination_log_since(started)
    assert "revoked" in log.lower(), log[-2000:]
    # The pre-check would name a revoked certificate of a host; the test identity is not a host's.


def test_plaintext_libvirt_is_refused_by_the_module_and_the_host(vm):
    result, _seconds = migrate(SOURCE, name=vm, destination="qemu+tcp://%s/system" % DESTINATION)
    assert result.get("failed") and "plaintext transport qemu+tcp://: refused" in result["msg"], result
    assert placement(vm) == ([SOURCE], [SOURCE])
    proc = ssh(SOURCE, "virsh -c qemu+tcp://%s/system hostname" % DESTINATION, check=False)
    assert proc.returncode != 0 and "Connection refused" in proc.stderr, proc.stderr


def test_a_migration_without_tls_is_refused(vm):
    result, _seconds = migrate(SOURCE, name=vm, destination=DESTINATION, tls=False)
    assert result.get("failed") and "in clear: refused" in result["msg"], result
    proc = ssh(SOURCE, "virsh migrate --live --p2p --persistent --undefinesource %s qemu+tls://%s/system"
               % (vm, DESTINATION), check=False, timeout=300)
    assert_refused(proc, vm, "only with VIR_MIGRATE_TLS", "TLS")


# --- rotation in the middle of an evacuation ------------------------------------------

def serials(host):
    """The serials of the host's libvirt and QEMU client certificates (read here: hosts have no openssl)."""
    out = []
    for path in ("/etc/pki/libvirt/clientcert.pem", "/etc/pki/qemu/client-cert.pem"):
        pem = ssh(host, "cat %s" % path).stdout.encode()
        out.append("%x" % x509.load_pem_x509_certificate(pem).serial_number)
    return out


def _utc(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_a_rotation_in_the_middle_of_an_evacuation_refuses_no_migration(tmp_path):
    """evacuate_host.yml empties hv1 while rotate_certificates.yml re-keys every host: each move completes,
    with the certificates it started with or with the new ones."""
    prefix = unique("rotev")
    names = [guest(SOURCE, "%s-%d" % (prefix, index), memory=192) for index in range(4)]
    evacuation_id = "pki-rotation"
    extra = dict(evacuate_host=SOURCE, evacuate_domain_pattern="^%s-" % prefix, evacuate_id=evacuation_id,
                 evacuate_control_dir=str(tmp_path), evacuate_iperf3_port=5213, evacuate_progress_interval=2,
                 evacuate_maintenance_reason="pki rotation test", evacuate_max_parallel_per_source=1,
                 # Slow moves (about 10 s each), so that the rotation falls in the middle of the evacuation.
                 evacuate_bandwidth=2)
    argv = [PLAYBOOK, "-i", INVENTORY, os.path.join(REPO, "playbooks", "evacuate_host.yml"), "-e", json.dumps(extra)]
    journal = "/var/lib/virtops-migration/evacuations/%s.json" % evacuation_id
    before = dict((host, serials(host)) for host in HYPERVISORS)
    since = time.time() - 1
    try:
        evacuation = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      env=dict(ansible_env(), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default"))
        deadline = time.monotonic() + 600
        while True:
            text = ssh(SOURCE, "cat %s 2>/dev/null || true" % journal, check=False).stdout
            state = json.loads(text) if text.strip() else {}
            if state.get("phase") == "running" and state.get("totals", {}).get("in_flight", 0) >= 1:
                break
            assert evacuation.poll() is None, evacuation.communicate()[0][-4000:]
            assert time.monotonic() < deadline, "no move started within 600 s"
            time.sleep(1)
        rotation_from = time.time()
        rotation = playbook("rotate_certificates.yml", "-e", "tls_rekey=true")
        rotation_to = time.time()
        output = evacuation.communicate(timeout=1800)[0]
        assert rotation.returncode == 0, rotation.stdout[-4000:] + rotation.stderr
        assert evacuation.returncode == 0, output[-6000:]
        done = json.loads(ssh(SOURCE, "cat %s" % journal).stdout)
        assert done["result"] == "completed", done
        during = []
        assert sorted(done["domains"]) == sorted(names)
        for name, record in done["domains"].items():
            assert record["status"] == "moved" and len(record["history"]) == 1, (name, record)
            if _utc(record["started_at"]) < rotation_to and _utc(record["finished_at"]) > rotation_from:
                during.append(name)
        for name in names:
            running, persistent = placement(name)
            assert running == persistent and len(running) == 1 and running != [SOURCE], (name, running, persistent)
        # At least one move overlapped the rotation (the others ran before or after it, all on the first try).
        assert during, [(n, r["started_at"], r["finished_at"]) for n, r in done["domains"].items()]
        for host in HYPERVISORS:
            new_serials = serials(host)
            assert set(new_serials).isdisjoint(before[host]), (host, new_serials, before[host])
            # Reloaded in place (virt-admin server-update-tls), never stopped. (An idle libvirtd exits by
            # itself after 120 s, Debian's --timeout, and socket activation starts it again: its PID
            # changes without a stop, so the journal tells, not the PID.)
            log = ssh(host, "journalctl -q -u libvirtd --since @%d --no-pager" % int(since), check=False).stdout
            assert "Stopping libvirtd.service" not in log, "libvirtd was restarted on %s: %s" % (host, log[-1500:])
        # New migrations work with the new certificates. hv1 first leaves maintenance, as after its
        # restore: while marked, its libvirt hook refuses every incoming migration (roles/hypervisor).
        cleared = run_module(SOURCE, "virtops.migration.maintenance", dict(state="absent", evacuation_id=evacuation_id))
        assert not cleared.get("failed"), cleared.get("msg")
        moved = done["domains"][names[0]]["destination"]
        result, _seconds = migrate(moved, name=names[0], destination=SOURCE, migration_address="198.18.1.11")
        assert not result.get("failed"), result.get("msg")
        print("rotation in the middle of an evacuation: %.0f s, %d of %d moves overlapped it"
              % (rotation_to - rotation_from, len(during), len(names)))
    finally:
        for name in names:
            remove_guest(name)
        ssh(SOURCE, "rm -f /var/lib/virtops-migration/maintenance /var/lib/virtops-migration/evacuations/%s.*"
            % evacuation_id, check=False)


# --- after prepare_hosts.yml -----------------------------------------------------------

def test_no_hypervisor_holds_a_ca_key():
    for host in HYPERVISORS:
        found = ssh(host, "grep -rlE 'BEGIN (ENCRYPTED |RSA |EC )?PRIVATE KEY' /etc /root /var/lib/libvirt /tmp "
                          "2>/dev/null || true").stdout.split()
        allowed = set(KEY_MODES) | {"/etc/ssh/ssh_host_ecdsa_key", "/etc/ssh/ssh_host_ed25519_key",
                                    "/etc/ssh/ssh_host_rsa_key"}
        assert not [path for path in found if path not in allowed and not path.startswith(PKIPATH)], (host, found)
        with open(LIBVIRT_CA[1]) as handle:
            ca_key_line = handle.read().splitlines()[1]
        assert ssh(host, "grep -rlF %s /etc /root /var /tmp 2>/dev/null || true" % json.dumps(ca_key_line),
                   check=False).stdout.strip() == "", host


def test_every_private_key_has_its_owner_and_mode():
    for host in HYPERVISORS:
        for path, (owner, group, mode) in KEY_MODES.items():
            out = ssh(host, "stat -c '%%U %%G %%a' %s" % path).stdout.split()
            assert out == [owner, group, mode.lstrip("0")], (host, path, out)
        # kvm's members other than QEMU cannot read QEMU's keys.
        members = ssh(host, "getent group libvirt-qemu").stdout.strip().split(":")[-1].split(",")
        assert members in ([""], ["libvirt-qemu"]), (host, members)


def test_no_secret_in_logs_or_module_returns():
    markers = ["PRIVATE KEY", "Proc-Type: 4,ENCRYPTED"]
    result = run_module(SOURCE, "virtops.migration.host_info")
    text = json.dumps(result)
    assert not [marker for marker in markers if marker in text]
    # prepare_hosts.yml's own output (-v, with its module results) is checked for the same markers
    # by the molecule scenario's check-mode run (molecule/prepare/verify_check_mode.yml), which
    # make test runs on these hosts before this suite: the same run, made once.
    for host in HYPERVISORS:
        logs = ssh(host, "journalctl --no-pager -q 2>/dev/null | grep -c 'PRIVATE KEY' || true; "
                         "grep -rl 'PRIVATE KEY' /var/log 2>/dev/null || true", check=False).stdout.split()
        assert logs in (["0"], []), (host, logs)


def teardown_module(module):
    ssh(SOURCE, "rm -rf %s" % PKIPATH, check=False)
