"""host_info on the lab, its facts checked against what virsh says on the same host."""

import re

import pytest

from conftest import HYPERVISORS, labctl, run_module, ssh

MODULE = "virtops.migration.host_info"


@pytest.fixture(scope="module")
def guests(lab):
    made = {
        "hi-local": ("hv1", ["--disk", "local", "--label", "anti_affinity=db", "--label", "do_not_migrate=cold",
                             "--label", "priority=7", "--start"]),
        "hi-shared": ("hv1", ["--disk", "shared", "--memory", "192"]),
        "hi-plain": ("hv2", ["--start", "--vcpus", "2"]),
        # A policy in a domain's own metadata that no version knows: reported, never refused.
        "hi-odd": ("hv3", ["--label", "do_not_migrate=delete-it"]),
    }
    for name, (host, options) in made.items():
        labctl("guest", "define", host, name, *options)
    # A definition with a device no live migration can carry (defined only: it needs no real device).
    xml = ("<domain type='qemu'><name>hi-blocked</name><memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm"
           "</type></os><devices><shmem name='ivshmem0'><model type='ivshmem-plain'/><size unit='M'>4</size>"
           "</shmem></devices></domain>")
    ssh("hv1", "cat > /tmp/hi-blocked.xml <<'XML'\n%s\nXML\nvirsh -q define /tmp/hi-blocked.xml" % xml)
    yield made
    for name in list(made) + ["hi-blocked"]:
        labctl("guest", "remove", name)


def virsh_value(host, command, key):
    out = ssh(host, command).stdout
    return re.search(r"^%s:\s+(.*)$" % re.escape(key), out, re.M).group(1).strip()


def test_host_facts_match_what_virsh_says(guests):
    for host in HYPERVISORS:
        result = run_module(host, MODULE)
        assert result.get("failed") is not True, result
        info = result["host_info"]
        assert result["changed"] is False
        assert info["hostname"] == host + ".lab.test"
        memory_kib = int(virsh_value(host, "virsh nodeinfo", "Memory size").split()[0])
        assert info["memory_total_mib"] == memory_kib // 1024
        assert info["vcpus_total"] == int(virsh_value(host, "virsh nodeinfo", "CPU(s)"))
        assert info["libvirt_version"] == virsh_value(host, "virsh version", "Using library").split()[-1]
        assert info["qemu_version"] == virsh_value(host, "virsh version", "Running hypervisor").split()[-1]
        assert "pc-i440fx-7.2" in info["guests"]["x86_64"]["machines"]
        listed = sorted(ssh(host, "virsh -q list --all --name").stdout.split())
        assert [d["name"] for d in info["domains"]] == listed
        for domain in info["domains"]:
            assert domain["state"] == ssh(host, "virsh domstate %s" % domain["name"]).stdout.strip().replace(" ", "")
            assert domain["uuid"] == ssh(host, "virsh domuuid %s" % domain["name"]).stdout.strip()


def test_domains_disks_labels_and_blockers(guests):
    domains = {d["name"]: d for d in run_module("hv1", MODULE)["host_info"]["domains"]}
    local = domains["hi-local"]
    assert local["state"] == "running" and local["persistent"] is True
    assert local["shared_storage"] is False and local["disks"][0]["placement"] == "local"
    allocated = int(virsh_value("hv1", "virsh domblkinfo hi-local vda", "Allocation"))
    assert local["local_disk_bytes"] == allocated > 0
    assert local["labels"] == {"anti_affinity": "db", "do_not_migrate": "cold", "priority": 7, "max_downtime": None}
    assert local["label_sources"] == {"anti_affinity": "metadata", "do_not_migrate": "metadata", "priority": "metadata"}
    shared = domains["hi-shared"]
    assert shared["state"] == "shutoff" and shared["memory_mib"] == 192
    assert shared["shared_storage"] is True and shared["disks"][0]["reason"] == "network disk (nbd)"
    assert shared["labels"] == {"anti_affinity": None, "do_not_migrate": None, "priority": None, "max_downtime": None}
    assert shared["label_sources"] == {}
    assert domains["hi-blocked"]["blockers"] == ["shared memory device (ivshmem)"]
    assert domains["hi-local"]["blockers"] == [] and domains["hi-shared"]["blockers"] == []


def test_inventory_labels_override_metadata_and_bad_policies_are_flagged(guests):
    labels = {"hi-local": {"do_not_migrate": "skip", "max_downtime": 150}}
    domains = {d["name"]: d for d in run_module("hv1", MODULE, {"labels": labels})["host_info"]["domains"]}
    assert domains["hi-local"]["labels"] == {"anti_affinity": "db", "do_not_migrate": "skip", "priority": 7,
                                             "max_downtime": 150}
    assert domains["hi-local"]["label_sources"] == {"anti_affinity": "metadata", "do_not_migrate": "inventory",
                                                    "priority": "metadata", "max_downtime": "inventory"}
    # An unknown policy in the inventory is the operator's typo: refused before anything is read.
    refused = run_module("hv1", MODULE, {"labels": {"hi-shared": {"do_not_migrate": "delete-it"}}})
    assert refused.get("failed") is True and "host_info" not in refused
    assert "labels of hi-shared: do_not_migrate must be null, true or one of" in refused["msg"], refused["msg"]
    # One in a domain's metadata is the host's state: the facts report it (and the plan refuses it).
    odd = {d["name"]: d for d in run_module("hv3", MODULE)["host_info"]["domains"]}["hi-odd"]
    assert odd["label_problems"] == ["metadata: do_not_migrate must be null, true or one of skip, cold, shutdown, "
                                     "not 'delete-it'"]


def test_committed_capacity_counts_only_domains_that_run(guests):
    info = run_module("hv2", MODULE, {"reserved_memory_mib": 512})["host_info"]
    running = [d for d in info["domains"] if d["state"] != "shutoff"]
    assert info["memory_committed_mib"] == sum(d["memory_mib"] for d in running)
    assert info["vcpus_committed"] == sum(d["vcpus"] for d in running) >= 2
    assert info["memory_committable_mib"] == info["memory_total_mib"] - 512


def test_maintenance_marker_is_reported():
    ssh("hv3", "mkdir -p /var/lib/virtops-migration && echo 'kernel upgrade' > /var/lib/virtops-migration/maintenance")
    try:
        info = run_module("hv3", MODULE)["host_info"]
        assert info["maintenance"] is True and info["maintenance_reason"] == "kernel upgrade"
    finally:
        ssh("hv3", "rm -f /var/lib/virtops-migration/maintenance")
    assert run_module("hv3", MODULE)["host_info"]["maintenance"] is False


@pytest.mark.parametrize("args, message", [
    ({"reserved_memory_mib": -1}, "reserved_memory_mib must be a finite number, at least 0 "),
    ({"labels": {"vm1": {"colour": "red"}}}, "labels of vm1 must be a dictionary"),
    ({"uri": "qemu+tls://no;such/system"}, "host"),
    ({"uri": "qemu+tls://198.18.0.99/system", "connect_timeout": 2}, "cannot reach 198.18.0.99"),
])
def test_bad_input_fails_clearly(args, message):
    result = run_module("hv1", MODULE, args)
    assert result.get("failed") is True
    assert message in result["msg"], result["msg"]
