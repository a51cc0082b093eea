"""host_info's parsing: capabilities, host-model CPU, blockers, qemu.conf, versions."""

import pytest

from ansible_collections.virtops.migration.plugins.module_utils._facts import host_facts as facts

CAPABILITIES = """<capabilities>
  <host><uuid>0b8c5e4e-1111-2222-3333-444455556666</uuid>
    <cpu><arch>x86_64</arch><model>EPYC-Rome</model><vendor>AMD</vendor>
      <feature name='x2apic'/><feature name='svm'/></cpu></host>
  <guest><os_type>hvm</os_type>
    <arch name='x86_64'><emulator>/usr/bin/qemu-system-x86_64</emulator>
      <machine canonical='pc-i440fx-7.2' maxCpus='255'>pc</machine>
      <machine maxCpus='288'>pc-q35-7.2</machine>
      <domain type='qemu'/>
      <domain type='kvm'/>
    </arch></guest>
  <guest><os_type>xen</os_type><arch name='x86_64'><domain type='xen'/></arch></guest>
</capabilities>"""


def test_capabilities_give_cpu_machines_and_accelerators():
    caps = facts.parse_capabilities(CAPABILITIES)
    assert caps["model"] == "EPYC-Rome" and caps["vendor"] == "AMD" and caps["features"] == ["svm", "x2apic"]
    assert caps["host_uuid"] == "0b8c5e4e-1111-2222-3333-444455556666"
    x86 = caps["guests"]["x86_64"]
    assert x86["machines"] == ["pc", "pc-i440fx-7.2", "pc-q35-7.2"]
    assert x86["domain_types"] == ["kvm", "qemu"]


def test_host_model_cpu_from_domain_capabilities():
    text = """<domainCapabilities><cpu>
      <mode name='host-model' supported='yes'><model fallback='forbid'>EPYC-Rome</model>
        <feature policy='require' name='x2apic'/><feature policy='disable' name='arch-capabilities'/></mode>
    </cpu></domainCapabilities>"""
    assert facts.parse_host_model(text) == {"model": "EPYC-Rome", "features": ["-arch-capabilities", "x2apic"]}
    assert facts.parse_host_model("<domainCapabilities><cpu><mode name='host-model' supported='no'/></cpu>"
                                  "</domainCapabilities>") is None


def test_devices_that_block_live_migration():
    xml = """<domain><devices>
      <hostdev mode='subsystem' type='pci'/>
      <filesystem type='mount' accessmode='passthrough'><driver type='virtiofs'/></filesystem>
      <serial type='pty'/>
    </devices></domain>"""
    assert facts.migration_blockers(xml) == [
        "host device passthrough (hostdev)", "passthrough filesystem", "virtiofs filesystem"]
    assert facts.migration_blockers("<domain><devices><serial type='file'/></devices></domain>") == []


def test_qemu_conf_migration_settings_ignore_comments():
    text = """# migration_address = "0.0.0.0"
migration_address = "198.18.1.11"
migrate_tls_force = 1
migration_port_min = 49152
cgroup_controllers = [ ]
"""
    assert facts.parse_qemu_conf(text) == {
        "migration_address": "198.18.1.11", "migrate_tls_force": "1", "migration_port_min": "49152"}


@pytest.mark.parametrize("number, text", [(9000000, "9.0.0"), (7002001, "7.2.1"), (10010012, "10.10.12")])
def test_versions_as_libvirt_encodes_them(number, text):
    assert facts._version(number) == text
