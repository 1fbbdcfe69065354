"""Drive a service over memory by the rules an engine follows, and check it keeps the contract.

:class:`MemoryConnection` is one connection: the test plays the client
(``send``, ``shutdown_write``, ``read``, ``close``) and the connection plays the
engine, calling the service exactly as the grammar in
:mod:`sockkit.services._base` says::

    connected(peer)
      -> ( received(data) | produce(limit) )*
      -> [ eof_received() -> produce(limit)* ]
      -> closed()

Like an engine it keeps an output buffer (what the service returned that the
client has not read yet).  At ``high_water`` bytes it stops reading the
client's data and stops asking the service to produce; it asks ``produce``
again only once the buffer is below ``low_water``.  So a test sees the same
backpressure a slow reader causes on a real socket, with nothing in flight
outside the buffer.

Every call the service breaks the rules on raises :class:`ContractViolation`
at once: non-bytes output, ``produce`` returning more than ``limit`` or
``b""`` while staying ``producing``, output after ``HALF_CLOSE``, a state
going back to ``OPEN``.

Nothing happens in the background: the connection does its work inside the
test's calls (``send``, ``shutdown_write``, ``read``, ``pump``).  A ``wakeup``
from the service is recorded and acted on at the next of those calls, which
is also why it may come from any thread.  A connection itself is for one
thread at a time.
"""

from __future__ import annotations

from collections import deque

from sockkit.services._base import CLOSE, HALF_CLOSE, OPEN, DatagramService, Service

__all__ = ["ContractViolation", "MemoryConnection", "exchange_datagram"]


class ContractViolation(AssertionError):
    """A service did something the service contract forbids."""


class MemoryConnection:
    """One in-memory connection driving ``service``; the caller is the client.

    Construction installs ``service.wakeup``, calls ``connected(peer)`` and
    buffers the greeting.  ``high_water`` and ``low_water`` are the engine's
    output marks; ``read_size`` is the most one ``received`` call is given (a
    ``send`` larger than that arrives in several calls, smaller sends arrive
    one call each, never merged).  Raises :class:`ValueError` for marks that
    do not satisfy ``0 < low_water <= high_water``.
    """

    def __init__(
        self,
        service: Service,
        peer: str = "127.0.0.1:50000",
        *,
        high_water: int = 64 * 1024,
        low_water: int = 16 * 1024,
        read_size: int = 64 * 1024,
    ) -> None:
        if not 0 < low_water <= high_water or read_size < 1:
            raise ValueError("need 0 < low_water <= high_water and read_size >= 1")
        self.service = service
        self.peer = peer
        self.high_water = high_water
        self.low_water = low_water
        self.read_size = read_size
        #: How many times the service called ``wakeup``.
        self.wakeups = 0
        #: How many times ``closed()`` was called (the contract says exactly once).
        self.closed_calls = 0
        #: The largest the output buffer ever was, in bytes.
        self.max_buffered = 0
        #: Bytes the service was given, and bytes it returned.
        self.bytes_in = 0
        self.bytes_out = 0
        #: The service's ``close_reason`` when the connection ended.
        self.close_reason: str | None = None
        self._inbound: deque[bytes] = deque()
        self._client_eof = False
        self._eof_delivered = False
        self._output = bytearray()
        self._wants_produce = False
        self._woken = False
        self._write_shut = False  # the service asked HALF_CLOSE
        self._closing = False  # the service asked CLOSE
        self._finished = False  # closed() has been called
        self._pumping = False
        service.wakeup = self._wake
        self._after_call("connected", service.connected(peer))
        self.pump()

    # -- what the client does -------------------------------------------

    def send(self, data: bytes) -> None:
        """The client sends ``data``; it reaches the service as the buffer allows.

        Data sent after the server closed is dropped, as the kernel would.
        Raises :class:`ValueError` after :meth:`shutdown_write`.
        """
        if self._client_eof:
            raise ValueError("send() after shutdown_write()")
        if data and not (self._closing or self._finished):
            self._inbound.append(bytes(data))
        self.pump()

    def shutdown_write(self) -> None:
        """The client half-closes: the service gets ``eof_received`` after all sent data."""
        self._client_eof = True
        self.pump()

    def read(self, limit: int | None = None) -> bytes:
        """Take up to ``limit`` bytes (all, if ``None``) of the service's output.

        Returns ``b""`` when nothing is buffered: check :attr:`at_eof` to tell
        the end of output from "nothing yet".  Reading makes room, so the
        service may be asked for more before this returns.
        """
        self.pump()
        count = len(self._output) if limit is None else min(limit, len(self._output))
        data = bytes(self._output[:count])
        del self._output[:count]
        self.pump()
        return data

    def read_until_eof(self, max_bytes: int = 64 * 1024 * 1024) -> bytes:
        """Read until the service has finished sending and all of it is read.

        Raises :class:`ContractViolation` if output stops without an end (the
        service waits for input that will not come) or passes ``max_bytes``.
        """
        parts: list[bytes] = []
        total = 0
        while True:
            data = self.read()
            if data:
                parts.append(data)
                total += len(data)
                if total > max_bytes:
                    raise ContractViolation(f"more than {max_bytes} bytes without an end")
            elif self.at_eof:
                return b"".join(parts)
            else:
                raise ContractViolation("output stalled: no bytes and no end of output")

    def close(self) -> None:
        """The client closes (or the link breaks): unread output is lost, ``closed()`` runs."""
        self._output.clear()
        self._inbound.clear()
        self._finish()

    def pump(self) -> None:
        """Make every call into the service the engine would make now."""
        if self._pumping:  # a call back from inside the service: the running loop goes on
            return
        self._pumping = True
        try:
            while self._step():
                pass
        finally:
            self._pumping = False

    # -- what the test observes -----------------------------------------

    @property
    def buffered(self) -> int:
        """Bytes of output waiting for the client to read."""
        return len(self._output)

    @property
    def half_closed(self) -> bool:
        """The service asked ``HALF_CLOSE`` (it sends nothing more but still reads)."""
        return self._write_shut

    @property
    def server_closed(self) -> bool:
        """The service asked ``CLOSE``: it takes no more input."""
        return self._closing

    @property
    def finished(self) -> bool:
        """The connection is over and ``closed()`` has been called."""
        return self._finished

    @property
    def at_eof(self) -> bool:
        """The service will send nothing more and the client has read everything."""
        return (self._write_shut or self._closing or self._finished) and not self._output

    # -- the engine's side ----------------------------------------------

    def _wake(self) -> None:
        self.wakeups += 1
        self._woken = True

    def _step(self) -> bool:
        """Make one call into the service if the engine would; return whether anything moved."""
        if self._finished:
            return False
        if self._closing or (self._write_shut and self._eof_delivered):
            if not self._output:
                self._finish()
            return False
        service = self.service
        if self._woken:
            self._woken = False
            self._wants_produce = service.producing
        room = len(self._output) < self.high_water
        if self._inbound and room:
            chunk = self._inbound.popleft()
            if len(chunk) > self.read_size:
                self._inbound.appendleft(chunk[self.read_size :])
                chunk = chunk[: self.read_size]
            self.bytes_in += len(chunk)
            self._after_call("received", service.received(chunk))
            return True
        if self._client_eof and not self._inbound and not self._eof_delivered and room:
            self._eof_delivered = True
            self._after_call("eof_received", service.eof_received())
            return True
        if self._wants_produce and not self._write_shut and len(self._output) < self.low_water:
            limit = self.high_water - len(self._output)
            data = service.produce(limit)
            if len(data) > limit:
                raise ContractViolation(f"produce({limit}) returned {len(data)} bytes")
            if not data and service.producing and service.state == OPEN:
                raise ContractViolation("produce() returned b'' but left producing set")
            self._after_call("produce", data)
            return True
        return False

    def _after_call(self, call: str, data: object) -> None:
        """What an engine does after every call: take the output, then read the state."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ContractViolation(f"{call}() returned {type(data).__name__}, not bytes")
        if data:
            if self._write_shut:
                raise ContractViolation(f"{call}() returned bytes after HALF_CLOSE")
            self._output += data
            self.bytes_out += len(data)
            self.max_buffered = max(self.max_buffered, len(self._output))
        state = self.service.state
        if state == CLOSE:
            self._closing = True
        elif state == HALF_CLOSE:
            self._write_shut = True
        elif state != OPEN:
            raise ContractViolation(f"{call}() left state {state!r}")
        elif self._write_shut:
            raise ContractViolation(f"{call}() went back to OPEN after HALF_CLOSE")
        self._wants_produce = self.service.producing

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._closing = True
        self.close_reason = self.service.close_reason
        self.closed_calls += 1
        self.service.closed()


def exchange_datagram(
    service: DatagramService, data: bytes, peer: str = "127.0.0.1:50000"
) -> bytes | None:
    """Give ``service`` one datagram from ``peer`` and return its reply (``None``: no reply).

    Raises :class:`ContractViolation` for a reply that is not bytes or is
    longer than the service's ``max_reply``.
    """
    reply = service.datagram(data, peer)
    if reply is None:
        return None
    if not isinstance(reply, bytes | bytearray | memoryview):
        raise ContractViolation(f"datagram() returned {type(reply).__name__}, not bytes")
    if len(reply) > service.max_reply:
        raise ContractViolation(
            f"datagram() returned {len(reply)} bytes, more than max_reply={service.max_reply}"
        )
    return bytes(reply)
