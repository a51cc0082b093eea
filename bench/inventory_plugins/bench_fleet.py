# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""An inventory for the benchmarks only: a generated fleet, its facts already gathered.

bench/bench_plan_task.py writes the facts of every host (as host_info reports them) to a
JSON file and names it in a source file ``plugin: bench_fleet`` / ``facts: PATH``. Each
host joins the group ``hypervisors`` with ``ansible_connection: local``, and
``localhost`` holds ``evacuate_facts`` - all of them, as tasks/host_facts.yml leaves them
for the plan. Loading them here, with the plain JSON parser, keeps the benchmark's set-up
out of what it measures.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: bench_fleet
short_description: A generated fleet with its facts, for the benchmarks
description:
  - Hosts and facts from a JSON file of {host: host_info facts}.
options:
  plugin:
    description: The name of this plugin.
    required: true
    choices: [bench_fleet]
  facts:
    description: The JSON file of the facts.
    required: true
    type: path
"""

import json
import sys

from ansible.plugins.inventory import BaseInventoryPlugin


class InventoryModule(BaseInventoryPlugin):
    NAME = "bench_fleet"

    def verify_file(self, path):
        return path.endswith(("bench_fleet.yml", "bench_fleet.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        with open(self.get_option("facts")) as handle:
            facts = json.load(handle)
        inventory.add_group("hypervisors")
        for name in facts:
            inventory.add_host(name, group="hypervisors")
        inventory.add_host("localhost")
        for name in ("hypervisors", "localhost"):
            # As for the implicit localhost: this Python, not whatever interpreter discovery finds.
            inventory.set_variable(name, "ansible_connection", "local")
            inventory.set_variable(name, "ansible_python_interpreter", sys.executable)
        # Past the wrapper that tags every value with its origin: that walk of the whole fleet's
        # facts belongs to gathering them (module results are walked as they arrive), not to planning.
        getattr(inventory, "__wrapped__", inventory).set_variable("localhost", "evacuate_facts", facts)
