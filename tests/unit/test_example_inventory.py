"""inventories/example: Ansible reads it, and every hypervisor has what the playbooks need.

ansible-inventory runs in a process of its own: loading an inventory in the test process
would set Ansible's global state (its display and warnings) under the other unit tests.
"""

import json
import os
import subprocess
import sys

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "inventories", "example")


def inventory():
    env = dict(os.environ, ANSIBLE_INVENTORY_UNPARSED_FAILED="true")
    out = subprocess.run([sys.executable, "-m", "ansible.cli.inventory", "-i", os.path.join(EXAMPLE, "hosts.yml"),
                          "--list"], env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def test_every_hypervisor_has_its_addresses():
    data = inventory()
    hosts = data["hypervisors"]["hosts"]
    assert hosts == ["hv1", "hv2", "hv3"]
    for name in hosts:
        host_vars = data["_meta"]["hostvars"][name]
        for key in ("ansible_host", "migration_address", "migration_prefix", "migration_interface"):
            assert host_vars.get(key), (name, key)
        # The evacuation and preparation settings reach every hypervisor from group_vars.
        assert host_vars["evacuate_max_parallel_per_source"] == 2
        assert host_vars["tls_ca_supplied"] is True
        assert host_vars["evacuate_domain_labels"]["db-replica-*"] == {"anti_affinity": "db-replicas"}
        # The vault template is not loaded as variables.
        assert "vault_hypervisor_ca_passphrase" not in host_vars
