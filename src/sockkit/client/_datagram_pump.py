"""The datagram side of ``sockkit connect`` and ``sockkit listen``: stdin lines to datagrams.

Rules:

- stdin is cut into datagrams: one per line, newline included (or one per
  ``chunk`` bytes when ``chunk`` is set); a last line without a newline is sent
  as it is at end of input.
- Every datagram that arrives is written to stdout as it is.
- A *connected* socket (``connect``) sends to its one peer; after end of stdin
  it waits ``wait`` seconds for more replies (the wait restarts with each reply),
  then returns.  "Connection refused" (an ICMP port-unreachable answer) raises.
- A *bound* socket (``listen``) answers whoever sent to it last: stdin datagrams
  go to the most recent sender, and stdin is not read before anyone has sent.
  It runs until it is interrupted (or ``idle_timeout``); end of stdin does not stop it.
- ``idle_timeout``: no datagram either way for that long raises :class:`TimeoutError`.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sockkit._endpoint import format_sockaddr
from sockkit._errors import SockkitError, TimeoutError, translate_os_error
from sockkit.client._stream_pump import write_all

__all__ = ["DatagramOptions", "DatagramPump"]

_MAX_DATAGRAM = 65535
_READ = 256 * 1024


@dataclass(frozen=True, slots=True)
class DatagramOptions:
    """How the datagram pump behaves; see the module rules."""

    chunk: int | None = None
    wait: float = 1.0
    idle_timeout: float | None = None
    send_only: bool = False
    receive_only: bool = False


class DatagramPump:
    """Pump between stdin/stdout and one datagram socket; :meth:`run` once."""

    def __init__(
        self,
        sock: socket.socket,
        stdin_fd: int,
        stdout_fd: int,
        options: DatagramOptions,
        *,
        connected: bool,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self._sock = sock
        self._stdin = stdin_fd
        self._stdout = stdout_fd
        self._options = options
        self._connected = connected
        self._on_event = on_event or (lambda message: None)
        self._pending = b""  # a partial line waiting for its newline
        self._queue: deque[bytes] = deque()
        self._stdin_open = not options.receive_only
        self._last_peer: Any = None
        self._last_activity = time.monotonic()
        # With receive_only there is no stdin to wait for: the --wait clock starts now.
        self._stdin_done_at: float | None = time.monotonic() if options.receive_only else None
        self.sent = 0
        self.received = 0

    def _target(self) -> str:
        try:
            return format_sockaddr(self._sock.family, self._sock.getpeername())
        except OSError:
            return format_sockaddr(self._sock.family, self._sock.getsockname())

    def run(self) -> None:
        """Pump until done; raises :class:`SockkitError` (refused, timed out)."""
        self._sock.setblocking(False)
        while True:
            can_send = self._connected or self._last_peer is not None
            if self._queue and can_send:
                self._flush()
            if self._connected and not self._stdin_open and not self._queue:
                if self._options.send_only:
                    return
                assert self._stdin_done_at is not None
                if (
                    time.monotonic() - max(self._stdin_done_at, self._last_activity)
                    >= self._options.wait
                ):
                    return
            watch = [self._sock.fileno()]
            if self._stdin_open and not self._queue and can_send:
                watch.append(self._stdin)
            readable, _, _ = select.select(watch, [], [], self._select_timeout())
            if watch[0] in readable:
                self._receive()
            if self._stdin in readable:
                self._read_stdin()
            idle = self._options.idle_timeout
            if idle is not None and time.monotonic() - self._last_activity >= idle:
                raise TimeoutError(f"timed out: no datagram either way for {idle:g}s")

    def _select_timeout(self) -> float | None:
        limits: list[float] = []
        now = time.monotonic()
        if self._options.idle_timeout is not None:
            limits.append(self._last_activity + self._options.idle_timeout - now)
        if self._connected and self._stdin_done_at is not None:
            limits.append(max(self._stdin_done_at, self._last_activity) + self._options.wait - now)
        return max(min(limits), 0.0) if limits else None

    def _read_stdin(self) -> None:
        try:
            data = os.read(self._stdin, _READ)
        except OSError as exc:
            if exc.errno not in (errno.EBADF, errno.EIO):
                raise
            data = b""
        if not data:
            self._stdin_open = False
            self._stdin_done_at = time.monotonic()
            if self._pending:
                self._queue.append(self._pending)
                self._pending = b""
            self._on_event("end of stdin")
            return
        self._last_activity = time.monotonic()
        buffer = self._pending + data
        chunk = self._options.chunk
        if chunk:
            cut = len(buffer) - len(buffer) % chunk
            self._queue.extend(buffer[i : i + chunk] for i in range(0, cut, chunk))
            self._pending = buffer[cut:]
        else:
            *lines, self._pending = buffer.split(b"\n")
            self._queue.extend(line + b"\n" for line in lines)

    def _flush(self) -> None:
        while self._queue:
            datagram = self._queue[0]
            try:
                if self._connected:
                    self._sock.send(datagram)
                else:
                    self._sock.sendto(datagram, self._last_peer)
            except BlockingIOError:
                select.select([], [self._sock], [], 1.0)
                continue
            except OSError as exc:
                if not self._connected:
                    # The sender went away (its socket closed): report, drop, carry on.
                    hint = "; split stdin with --chunk N" if exc.errno == errno.EMSGSIZE else ""
                    self._on_event(f"cannot send to {self._peer_text()}: {exc.strerror}{hint}")
                    self._queue.popleft()
                    continue
                if exc.errno == errno.EMSGSIZE:
                    raise SockkitError(
                        f"cannot send a {len(datagram)}-byte datagram to {self._target()}:"
                        f" message too long; split stdin with --chunk N (at most 65507 for UDP)"
                    ) from exc
                raise translate_os_error(exc, "send to", self._target()) from exc
            self._queue.popleft()
            self.sent += len(datagram)
            self._last_activity = time.monotonic()

    def _receive(self) -> None:
        while True:
            try:
                data, address = self._sock.recvfrom(_MAX_DATAGRAM)
            except BlockingIOError:
                return
            except OSError as exc:
                if not self._connected:
                    self._on_event(f"error from a peer: {exc.strerror}")
                    continue
                raise translate_os_error(exc, "send to", self._target()) from exc
            self.received += len(data)
            self._last_activity = time.monotonic()
            if not self._connected and address and address != self._last_peer:
                self._last_peer = address
                self._on_event(f"datagrams now go to {self._peer_text()}")
            if not self._options.send_only:
                write_all(self._stdout, data)

    def _peer_text(self) -> str:
        return (
            format_sockaddr(self._sock.family, self._last_peer) if self._last_peer else "(nobody)"
        )
