"""Drive a service over memory by the rules an engine follows, and check it keeps the contract.

:class:`MemoryConnection` is one connection over a
:func:`~sockkit.testing.memory_stream_pair`: the test plays the client
(``send``, ``shutdown_write``, ``read``, ``close``) and the connection plays
the engine on the other end, calling the service exactly as the grammar in
:mod:`sockkit.services._base` says::

    connected(peer)
      -> ( received(data) | produce(limit) )*
      -> [ eof_received() -> produce(limit)* ]
      -> closed()

Like an engine it watches how much output waits for the client (sent by the
server end, not yet read).  At ``high_water`` bytes it stops reading the
client's data and stops asking the service to produce; it asks ``produce``
again only below ``low_water``.  So a test sees the backpressure a slow
reader causes on a real socket.

Every call is checked against the contract's tables
(:mod:`sockkit.services._contract`, the same ones the engines' debug check
uses): a call breaking a rule raises :class:`ContractViolation` at once
(non-bytes output, ``produce`` returning more than ``limit`` or ``b""`` while
staying ``producing``, output after ``HALF_CLOSE``, a state going back to
``OPEN``).

Nothing happens in the background: the connection does its work inside the
test's calls (``send``, ``shutdown_write``, ``read``, ``close``, ``pump``).
A ``wakeup`` from the service is recorded and acted on at the next of those
calls, which is also why it may come from any thread.  A connection itself is
for one thread at a time.
"""

from __future__ import annotations

from sockkit.services._base import CLOSE, HALF_CLOSE, DatagramService, Service
from sockkit.services._contract import Call, ContractState, ContractViolation
from sockkit.testing._stream import memory_stream_pair

__all__ = ["ContractViolation", "MemoryConnection", "exchange_datagram"]


class MemoryConnection:
    """One in-memory connection driving ``service``; the caller is the client.

    Construction installs ``service.wakeup``, calls ``connected(peer)`` and
    sends the greeting.  ``high_water`` and ``low_water`` are the engine's
    output marks; ``read_size`` is the most one ``received`` call is given.
    Raises :class:`ValueError` unless ``0 < low_water <= high_water``.

    :attr:`client` is the client's end of the stream pair, for tests that
    want socket-style calls; call :meth:`pump` after using it directly.
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
        self.client, self._server = memory_stream_pair((peer, "server"))
        #: How many times the service called ``wakeup``.
        self.wakeups = 0
        #: How many times ``closed()`` was called (the contract says exactly once).
        self.closed_calls = 0
        #: The most output that ever waited for the client, in bytes.
        self.max_buffered = 0
        #: Bytes the service was given, and bytes it returned.
        self.bytes_in = 0
        self.bytes_out = 0
        #: The service's ``close_reason`` when the connection ended.
        self.close_reason: str | None = None
        self._eof_delivered = False
        self._wants_produce = False
        self._woken = False
        self._write_shut = False  # the service asked HALF_CLOSE
        self._finished = False  # closed() has been called
        self._pumping = False
        self._contract = ContractState(type(service).__qualname__)
        service.wakeup = self._wake
        self._contract.call(Call.CONNECTED)
        self._after_call(Call.CONNECTED, service.connected(peer))
        self.pump()

    # -- what the client does -------------------------------------------

    def send(self, data: bytes) -> None:
        """The client sends ``data``; the service gets it as the output buffer allows.

        Each send is handed over before this returns unless reading is paused
        (then later sends join it, as on a socket).  Data sent after the
        server closed is dropped.  Raises :class:`ValueError` after
        :meth:`shutdown_write`.
        """
        if self.client._write_done:
            raise ValueError("send() after shutdown_write()")
        if data and not self._finished:
            self.client.send(data)
        self.pump()

    def shutdown_write(self) -> None:
        """The client half-closes: the service gets ``eof_received`` after all sent data."""
        self.client.shutdown_write()
        self.pump()

    def read(self, limit: int | None = None) -> bytes:
        """Take up to ``limit`` bytes (all, if ``None``) of the service's output.

        Returns ``b""`` when nothing is waiting: check :attr:`at_eof` to tell
        the end of output from "nothing yet".  Reading makes room, so the
        service may be asked for more before this returns.
        """
        self.pump()
        if self.client.closed:
            return b""
        try:
            data = self.client.recv(self.client.pending if limit is None else limit)
        except BlockingIOError:
            data = b""
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
        """The client closes: unread output is lost and the connection ends.

        As on a socket, the server end first sees the client's EOF, so the
        service gets ``eof_received`` (if it has not yet) and then ``closed``.
        """
        self.client.close()
        self.pump()
        self._finish()

    def pump(self) -> None:
        """Make every call into the service the engine would make now."""
        if self._pumping:  # re-entered (say, from a wakeup hook): the running loop goes on
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
        return self.client.pending

    @property
    def half_closed(self) -> bool:
        """The service asked ``HALF_CLOSE`` (it sends nothing more but still reads)."""
        return self._write_shut

    @property
    def finished(self) -> bool:
        """The connection has ended and ``closed()`` has been called.

        It ends when the service asks ``CLOSE``, when both sides have shut
        down writing, or when the client closes.
        """
        return self._finished

    @property
    def at_eof(self) -> bool:
        """The service will send nothing more and the client has read everything."""
        return self.client.closed or self.client.at_eof

    # -- the engine's side ----------------------------------------------

    def _wake(self) -> None:
        self.wakeups += 1
        self._woken = True

    def _step(self) -> bool:
        """Make one call into the service if the engine would; return whether anything moved."""
        if self._finished:
            return False
        if self._write_shut and self._eof_delivered:
            self._finish()  # both directions are done
            return False
        service = self.service
        if self._woken:
            self._woken = False
            self._wants_produce = service.producing
        buffered = self.client.pending
        if buffered < self.high_water and not self._eof_delivered:
            try:
                chunk = self._server.recv(self.read_size)
            except BlockingIOError:
                pass
            else:
                if chunk:
                    self.bytes_in += len(chunk)
                    self._contract.call(Call.RECEIVED)
                    self._after_call(Call.RECEIVED, service.received(chunk))
                else:
                    self._eof_delivered = True
                    self._contract.call(Call.EOF_RECEIVED)
                    self._after_call(Call.EOF_RECEIVED, service.eof_received())
                return True
        if self._wants_produce and not self._write_shut and buffered < self.low_water:
            limit = self.high_water - buffered
            self._contract.call(Call.PRODUCE)
            self._after_call(Call.PRODUCE, service.produce(limit), limit)
            return True
        return False

    def _after_call(self, call: Call, data: bytes, limit: int | None = None) -> None:
        """What an engine does after every call: send the output, then read the state."""
        service = self.service
        self._contract.answer(call, data, service.state, service.producing, limit)
        if data:
            self.bytes_out += len(data)
            try:
                self._server.send(data)
            except ConnectionResetError:
                self._finish()  # the client is gone: what would be EPIPE on a socket
                return
            self.max_buffered = max(self.max_buffered, self.client.pending)
        state = self.service.state
        if state == CLOSE:
            # Output is already with the client's end (the kernel, on a
            # socket), so the connection ends now and the client reads the rest.
            self._finish()
            return
        if state == HALF_CLOSE and not self._write_shut:
            self._write_shut = True
            self._server.shutdown_write()
        self._wants_produce = self.service.producing

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._server.close()
        self.close_reason = self.service.close_reason
        self.closed_calls += 1
        self._contract.call(Call.CLOSED)
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
