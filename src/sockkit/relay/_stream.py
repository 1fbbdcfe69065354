"""Relaying stream connections (TCP, TLS-less, Unix) with faults, on asyncio.

Each accepted connection gets a fresh connection to the target and two pumps,
one per direction.  A pump is a reader task that stamps each chunk with the
time it may leave, and a writer task that sends chunks in order when due, at
most ``bandwidth`` bytes/second, in ``slice``-sized writes.  The end of one
side's data becomes a half-close (``write_eof``) on the other once everything
before it has been written, so request/response protocols that rely on
half-close work through the relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import random
import socket
import struct
import termios
import time
from dataclasses import dataclass, field

from sockkit._endpoint import Endpoint, format_sockaddr, open_connection
from sockkit._errors import SockkitError
from sockkit.relay._faults import Faults

__all__ = ["StreamRelay"]

log = logging.getLogger("sockkit.relay")

_CHUNK = 64 * 1024
_QUEUE_CHUNKS = 64  # chunks held per direction before reading pauses: bounded memory
_LINGER_RESET = struct.pack("ii", 1, 0)


class _Reset(Exception):
    """The byte budget of --reset-after is spent."""


@dataclass(slots=True)
class _Budget:
    """Bytes left before the connection pair is reset (shared by both directions)."""

    left: int

    def take(self, want: int) -> int:
        if self.left < 0:
            return want  # unlimited
        got = min(want, self.left)
        self.left -= got
        return got


@dataclass(slots=True)
class _Pair:
    peer: str
    budget: _Budget
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    sent: list[int] = field(default_factory=lambda: [0, 0])


class StreamRelay:
    """Forwards every connection accepted on ``listener`` to ``target`` with ``faults``."""

    def __init__(
        self, listener: socket.socket, target: Endpoint, faults: Faults, timeout: float = 10.0
    ) -> None:
        self.listener = listener
        self.target = target
        self.faults = faults
        self.timeout = timeout
        self.rng = random.Random()
        self.connections = 0

    async def serve(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set, then close the listener and every open pair."""
        server = await asyncio.start_server(self._handle, sock=self.listener, limit=_CHUNK)
        async with server:
            await stop.wait()
            server.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        sock = client_w.get_extra_info("socket")
        peer = format_sockaddr(sock.family, client_w.get_extra_info("peername"))
        self.connections += 1
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        try:
            upstream = await loop.run_in_executor(
                None, lambda: open_connection(self.target, timeout=self.timeout)
            )
        except SockkitError as exc:
            log.warning("relay %s -> %s failed: %s", peer, self.target, exc)
            client_w.close()
            return
        up_r, up_w = await asyncio.open_connection(sock=upstream, limit=_CHUNK)
        pair = _Pair(peer, _Budget(self.faults.reset_after or -1), [client_w, up_w])
        log.info("open %s -> %s", peer, self.target)
        reason = None
        try:
            await asyncio.gather(
                self._pump(client_r, up_w, pair, 0), self._pump(up_r, client_w, pair, 1)
            )
        except _Reset:
            reason = f"reset after {self.faults.reset_after} bytes"
            for writer in pair.writers:
                await _flushed(writer)
            for writer in pair.writers:
                _reset(writer)
        except (ConnectionError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            for writer in pair.writers:
                writer.transport.abort()
        finally:
            for writer in pair.writers:
                writer.close()
            log.info(
                "close %s in=%d out=%d %.3fs%s",
                peer,
                pair.sent[0],
                pair.sent[1],
                time.monotonic() - started,
                f" ({reason})" if reason else "",
            )

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pair: _Pair, way: int
    ) -> None:
        """Copy ``reader`` to ``writer`` through the faults, then half-close ``writer``."""
        faults = self.faults
        paced = bool(faults.latency or faults.jitter or faults.bandwidth or faults.slice)
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(_QUEUE_CHUNKS)
        sender = asyncio.ensure_future(self._send(queue, writer, pair, way)) if paced else None
        last_due = 0.0
        try:
            while data := await reader.read(_CHUNK):
                allowed = pair.budget.take(len(data))
                data, reset = data[:allowed], allowed < len(data) or pair.budget.left == 0
                if sender is None:
                    writer.write(data)
                    pair.sent[way] += len(data)
                    await writer.drain()
                else:
                    last_due = max(last_due, time.monotonic() + faults.delay(self.rng))
                    await queue.put((last_due, data))
                if reset:
                    if sender is not None:
                        await queue.put((0.0, b""))
                        await sender
                    raise _Reset
            if sender is not None:
                await queue.put((0.0, b""))
                await sender
            if writer.can_write_eof():
                with contextlib.suppress(OSError):
                    writer.write_eof()
        finally:
            if sender is not None and not sender.done():
                sender.cancel()

    async def _send(
        self,
        queue: asyncio.Queue[tuple[float, bytes]],
        writer: asyncio.StreamWriter,
        pair: _Pair,
        way: int,
    ) -> None:
        faults = self.faults
        next_free = time.monotonic()
        while True:
            due, data = await queue.get()
            if not data:
                return
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            for piece in faults.pieces(data):
                if faults.bandwidth:
                    wait = next_free - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    next_free = max(next_free, time.monotonic()) + len(piece) / faults.bandwidth
                writer.write(piece)
                pair.sent[way] += len(piece)
                await writer.drain()


async def _flushed(writer: asyncio.StreamWriter, limit: float = 2.0) -> None:
    """Wait (bounded) until everything written has left us and been acknowledged.

    A reset throws away unsent bytes, so the bytes the budget let through must be
    out of both asyncio's buffer and the kernel's send queue first.
    """
    sock = writer.get_extra_info("socket")
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        queued = writer.transport.get_write_buffer_size()
        if not queued and sock is not None:
            try:
                queued = struct.unpack(
                    "i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4)
                )[0]
            except OSError:
                queued = 0
        if not queued:
            return
        await asyncio.sleep(0.002)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a crashed or hostile peer would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    writer.transport.abort()
