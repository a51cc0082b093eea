"""A client of a lab guest: one TCP connection to its echo service, held while it migrates.

It sends a short numbered message every ``interval`` seconds and records when each
answer comes back. The longest gap between two answers is the downtime a user of
the guest sees (client-observed downtime), retransmissions included.
"""

import socket
import threading
import time

from . import config

MESSAGE = b"%08d\n"
MESSAGE_LEN = len(MESSAGE % 0)


class EchoProbe:
    """One TCP connection to ``address``:port 7; ``start()``, then ``stop()`` returns what it saw."""

    def __init__(self, address, port=config.GUEST_ECHO_PORT, interval=0.01, connect_timeout=10.0):
        self.address, self.port, self.interval = address, port, interval
        self.connect_timeout = connect_timeout
        self.sent = 0
        self.answers = []          # monotonic time of each answer, in order
        self.error = None          # why the connection ended early, if it did
        self._stop_sending = threading.Event()
        self._stop = threading.Event()
        self._sock = None
        self._threads = []

    def start(self):
        """Connect and wait for a first answer: the guest is reachable before anything moves."""
        deadline = time.monotonic() + self.connect_timeout
        while True:
            try:
                self._sock = socket.create_connection((self.address, self.port), timeout=2)
                break
            except OSError as error:
                if time.monotonic() > deadline:
                    raise ConnectionError("no echo service at %s:%d: %s" % (self.address, self.port, error))
                time.sleep(0.5)
        self._sock.settimeout(None)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._threads = [threading.Thread(target=self._send, daemon=True),
                         threading.Thread(target=self._receive, daemon=True)]
        for thread in self._threads:
            thread.start()
        while not self.answers:
            if self.error or time.monotonic() > deadline:
                self.stop()
                raise ConnectionError("%s:%d accepted but did not answer: %s" % (self.address, self.port, self.error))
            time.sleep(0.01)
        return self

    def _send(self):
        number = 0
        next_at = time.monotonic()
        while not self._stop_sending.is_set() and self.error is None:
            try:
                self._sock.sendall(MESSAGE % (number % 100000000))
            except OSError as error:
                self.error = self.error or "send: %s" % error
                return
            number += 1
            self.sent = number
            next_at += self.interval
            self._stop_sending.wait(max(0.0, next_at - time.monotonic()))

    def _receive(self):
        pending = b""
        expected = 0
        while True:
            try:
                data = self._sock.recv(4096)
            except OSError as error:
                if not self._stop.is_set():
                    self.error = self.error or "receive: %s" % error
                return
            if not data:
                if not self._stop.is_set():
                    self.error = self.error or "the guest closed the connection"
                return
            now = time.monotonic()
            pending += data
            while len(pending) >= MESSAGE_LEN:
                line, pending = pending[:MESSAGE_LEN], pending[MESSAGE_LEN:]
                if line != MESSAGE % (expected % 100000000):
                    self.error = self.error or "answer %r where %r was due" % (line, MESSAGE % expected)
                    return
                expected += 1
                self.answers.append(now)

    def longest_gap(self):
        """Longest time between two answers, in seconds."""
        times = self.answers
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)

    def stop(self, settle=2.0):
        """Stop sending, wait up to ``settle`` s for the answers still due, close; return a summary."""
        self._stop_sending.set()
        if self._threads:
            self._threads[0].join(5)
        deadline = time.monotonic() + settle
        while len(self.answers) < self.sent and self.error is None and time.monotonic() < deadline:
            time.sleep(0.01)
        self._stop.set()
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
        for thread in self._threads:
            thread.join(5)
        return self.summary()

    def summary(self):
        return {"address": self.address, "sent": self.sent, "answered": len(self.answers),
                "longest_gap_ms": round(self.longest_gap() * 1000, 1), "error": self.error}
