# -*- coding: utf-8 -*-
# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the virtops.migration collection. This is not a public API: it may change
# or disappear in any release, and other collections must not import it.
"""libvirt calls waited for at most a bound.

libvirt's calls that need a domain's QEMU monitor (job statistics, downtime, post-copy, abort)
have no time limit of their own: a QEMU that stops answering holds such a call, and whatever
loop made it, forever. A loop that must keep its own time (a migration's timeout, an
evacuation's other moves) makes them through BoundedCalls.
"""

from __future__ import annotations

import threading
import time

from ansible_collections.virtops.migration.plugins.module_utils._libvirt.errors import Unanswered, call


class BoundedCalls(object):
    """The steering loop's libvirt calls, each in its own thread and waited for at most ``wait_s``.

    A call still running at its bound is left to libvirt, and no other call is made until it
    returns: libvirt would only queue them behind it on the domain's job.
    """

    def __init__(self, wait_s):
        self.wait_s = wait_s
        self.pending = None        # the description of a call libvirt has not answered yet
        self._thread = None
        self.answered_at = time.monotonic()

    def stuck_for(self):
        """Seconds since libvirt last answered, while a call is still unanswered; else 0."""
        if self._thread is not None and not self._thread.is_alive():
            self.pending, self._thread = None, None
            self.answered_at = time.monotonic()
        return time.monotonic() - self.answered_at if self.pending else 0.0

    def __call__(self, what, func, *args):
        """call(what, func, *args), or raise Unanswered when it (or an earlier call) has not returned."""
        if self.stuck_for():
            raise Unanswered("%s: not tried, libvirt has not yet answered %s" % (what, self.pending))
        box = {}

        def work():
            try:
                box["value"] = call(what, func, *args)
            except Exception as err:  # pylint: disable=broad-except  # re-raised in the caller's thread
                box["error"] = err

        thread = threading.Thread(target=work, name=what)
        thread.daemon = True
        thread.start()
        thread.join(self.wait_s)
        if thread.is_alive():
            self.pending, self._thread = what, thread
            raise Unanswered("%s: libvirt did not answer within %d s" % (what, self.wait_s))
        self.answered_at = time.monotonic()
        if "error" in box:
            raise box["error"]
        return box.get("value")
