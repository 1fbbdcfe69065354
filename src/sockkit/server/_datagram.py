"""Serving datagram endpoints (``udp://``, ``unixgram:``) beside whatever stream engine runs.

Datagram serving is a recvfrom/sendto loop, the same for every engine, so it
lives here rather than in each engine: one thread per datagram socket, each
watching the stop signal's fd beside its socket.  A datagram service answers
every datagram with at most one datagram, never larger than its ``max_reply``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import selectors
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sockkit._endpoint import Endpoint, format_sockaddr
from sockkit.engines._contract import AccessList, Refusal, StopSignal
from sockkit.server._log import ServerLog
from sockkit.server._rate import SourceRate
from sockkit.services._base import DatagramService

__all__ = ["DatagramListener", "DatagramThread"]

# The largest datagram UDP can carry (65535 less the IPv4 and UDP headers);
# Unix datagrams this large are accepted too and anything longer is truncated.
_MAX_DATAGRAM = 65507
# Errors a single sendto can meet without anything being wrong with the server:
# the peer went away, its buffer is full, or an unnamed Unix peer cannot be answered.
_PEER_ERRORS = frozenset(
    {errno.ECONNREFUSED, errno.ENOENT, errno.EAGAIN, errno.ENOBUFS, errno.ENOTCONN, errno.EINVAL}
)


@dataclass(slots=True)
class DatagramListener:
    """A bound datagram socket and what answers its datagrams."""

    sock: socket.socket
    #: The real bound endpoint.
    endpoint: Endpoint
    factory: Callable[[], DatagramService]


class DatagramThread(threading.Thread):
    """Serves one datagram socket until ``stop`` is set; see the module docstring.

    Call :meth:`start`, then :meth:`join` after setting ``stop``.  The socket is
    left open for its owner to close.
    """

    def __init__(
        self,
        listener: DatagramListener,
        access: AccessList,
        stop: StopSignal,
        log: ServerLog,
        rate: float | None = None,
    ) -> None:
        super().__init__(name=f"sockkit-datagram {listener.endpoint}", daemon=True)
        self.listener = listener
        self.access = access
        self.stop_signal = stop
        self.log = log
        self.service = listener.factory()
        #: Replies per second per source address (``--dgram-rate``), or None.
        self.rate = SourceRate(rate) if rate is not None else None
        self.received = 0
        #: Datagrams left unanswered because their source was over the rate.
        self.dropped = 0
        self.answered = 0

    def run(self) -> None:
        sock = self.listener.sock
        sock.setblocking(False)
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            selector.register(self.stop_signal.fd, selectors.EVENT_READ)
            while not self.stop_signal.is_set():
                for _ in selector.select():
                    self._drain_socket()

    def _drain_socket(self) -> None:
        # Take every datagram already queued, so one wake-up serves a burst.
        sock = self.listener.sock
        while not self.stop_signal.is_set():
            try:
                data, address = sock.recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.log.event(logging.WARNING, f"recvfrom on {self.listener.endpoint}: {exc}")
                return
            self.received += 1
            self._answer(data, address)

    def _answer(self, data: bytes, address: Any) -> None:
        sock = self.listener.sock
        peer = format_sockaddr(sock.family, address or "")
        if not self.access.admit(address or ""):
            self.log.refused(peer, Refusal.DENY)
            return
        if self.rate is not None:
            # Keyed on the address alone: a forged flood can vary the port freely.
            source = address[0] if isinstance(address, tuple) else peer
            if not self.rate.allow(source):
                self.dropped += 1
                return
        try:
            reply = self.service.datagram(data, peer)
        except Exception as exc:  # a user's service must not take the endpoint down
            self.log.event(logging.ERROR, f"datagram service failed for {peer}: {exc!r}")
            return
        if reply is None:
            return
        reply = reply[: min(self.service.max_reply, _MAX_DATAGRAM)]
        if not address:
            return  # an unnamed Unix peer: nowhere to send a reply
        try:
            sock.sendto(reply, address)
            self.answered += 1
        except OSError as exc:
            if exc.errno not in _PEER_ERRORS:
                self.log.event(logging.WARNING, f"sendto {peer}: {exc.strerror or exc}")


def join_all(threads: list[DatagramThread], timeout: float = 5.0) -> None:
    """Wait for datagram threads that were told to stop."""
    for thread in threads:
        with contextlib.suppress(RuntimeError):
            thread.join(timeout)
