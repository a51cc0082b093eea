"""No module returns a key Ansible reads as the task's own outcome.

Ansible marks a task failed when its result has a true ``failed`` or a non-zero ``rc``, skipped
when it has a true ``skipped``, unreachable when it has a true ``unreachable``. A module that
returned its list of failed domains as ``failed`` failed every evacuation that had one, with
"Unknown error" and without its report; a plan that returned its skipped domains as
``skipped`` showed as a skipped task.
"""

import importlib
import os

import pytest
import yaml

RESERVED = {"failed", "skipped", "unreachable", "rc"}
MODULES_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "plugins", "modules")
MODULES = sorted(name[:-3] for name in os.listdir(MODULES_DIR) if name.endswith(".py") and not name.startswith("_"))


@pytest.mark.parametrize("name", MODULES)
def test_no_return_key_is_one_ansible_reserves(name):
    module = importlib.import_module("ansible_collections.virtops.migration.plugins.modules." + name)
    returned = yaml.safe_load(module.RETURN) or {}
    assert not RESERVED & set(returned), (name, sorted(RESERVED & set(returned)))
