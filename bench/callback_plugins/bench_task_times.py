# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A callback for the benchmarks only: each task's wall time, written as JSON at the end.

Enabled by bench/bench_plan_task.py (ANSIBLE_CALLBACK_PLUGINS, ANSIBLE_CALLBACKS_ENABLED);
BENCH_TASK_TIMES names the file. A task's time runs from its start to the last result
of any host, so a task over many hosts counts once, as the play waits for it.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: bench_task_times
type: aggregate
short_description: Task wall times for the benchmarks, as JSON
description:
  - Writes {task name, start, seconds} of every task to the file named by the environment variable C(BENCH_TASK_TIMES).
requirements:
  - enabled in the configuration
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_task_times"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tasks = []
        self.current = None

    def _close(self):
        if self.current is not None:
            self.tasks.append(self.current)
            self.current = None

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._close()
        now = time.time()
        self.current = dict(name=task.get_name(), start=now, end=now, results=0)

    def _result(self, result):
        if self.current is not None:
            self.current["end"] = time.time()
            self.current["results"] += 1

    v2_runner_on_ok = v2_runner_on_failed = v2_runner_on_skipped = v2_runner_on_unreachable = _result

    def v2_playbook_on_stats(self, stats):
        self._close()
        path = os.environ.get("BENCH_TASK_TIMES")
        if path:
            with open(path, "w") as handle:
                json.dump([dict(name=t["name"], start=t["start"], seconds=t["end"] - t["start"], results=t["results"])
                           for t in self.tasks], handle, indent=1)
