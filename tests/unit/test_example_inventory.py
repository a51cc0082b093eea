"""inventories/example: Ansible reads it, and every hypervisor has what the playbooks need."""

import os

from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.vars.manager import VariableManager

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "inventories", "example")


def load():
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[os.path.join(EXAMPLE, "hosts.yml")])
    return inventory, VariableManager(loader=loader, inventory=inventory)


def test_every_hypervisor_has_its_addresses():
    inventory, variables = load()
    hosts = inventory.get_groups_dict()["hypervisors"]
    assert hosts == ["hv1", "hv2", "hv3"]
    for name in hosts:
        host_vars = variables.get_vars(host=inventory.get_host(name))
        for key in ("ansible_host", "migration_address", "migration_prefix", "migration_interface"):
            assert host_vars.get(key), (name, key)
        # The evacuation and preparation settings reach every hypervisor from group_vars.
        assert host_vars["evacuate_max_parallel_per_source"] == 2
        assert host_vars["tls_ca_supplied"] is True


def test_the_vault_example_is_not_loaded_as_variables():
    inventory, variables = load()
    host_vars = variables.get_vars(host=inventory.get_host("hv1"))
    assert "vault_hypervisor_ca_passphrase" not in host_vars
