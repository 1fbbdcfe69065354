"""Connections for Python programs: a buffered byte stream with expect-style reads, and datagrams.

Timeouts have one meaning everywhere: ``timeout`` is the most seconds the whole
call may take, however many packets it needs.  Left out, a call uses the
connection's default (the ``timeout`` given to :func:`connect`); ``None`` waits
for ever.

Nothing read is ever lost.  A call that times out raises
:class:`sockkit.TimeoutError` whose ``partial`` is a copy of every byte received
and not yet returned, and those bytes *stay buffered*: the next ``recv*`` call
sees them first.  The same holds when the peer closes before a delimiter or a
byte count is reached (:class:`ConnectError`), or a line is longer than allowed.
"""

from __future__ import annotations

import builtins
import contextlib
import enum
import os
import socket
import time
from typing import Any, Self

from sockkit._endpoint import Endpoint, format_sockaddr, open_connection, parse_endpoint
from sockkit._errors import ConnectError, SockkitError, TimeoutError, UsageError, translate_os_error
from sockkit.client._streams import ByteStream, PlainStream, tls_handshake
from sockkit.client._tls import TLSConfig, client_context, tls_error

__all__ = ["DEFAULT", "Connection", "DatagramConnection", "connect", "connect_datagram"]

#: How many bytes one ``recv`` system call asks for.
_CHUNK = 65536
#: Largest datagram: the UDP payload limit.
_MAX_DATAGRAM = 65535


class _Default(enum.Enum):
    TIMEOUT = enum.auto()


#: "Use the connection's default timeout" (the default of every ``timeout`` argument).
DEFAULT = _Default.TIMEOUT
Timeout = float | None | _Default


def _as_endpoint(endpoint: str | Endpoint) -> Endpoint:
    return endpoint if isinstance(endpoint, Endpoint) else parse_endpoint(endpoint)


class _Deadline:
    """The monotonic instant a call must finish by, and the per-step timeout it leaves."""

    __slots__ = ("seconds", "when")

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.when = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float | None:
        if self.when is None:
            return None
        return max(self.when - time.monotonic(), 0.0)

    def expired(self) -> bool:
        return self.when is not None and time.monotonic() >= self.when


class Connection:
    """A connected byte stream (TCP, TLS or Unix) with a receive buffer.

    Made by :func:`connect` or :meth:`sockkit.Listener.accept`.  Calls:
    ``send``/``sendline`` and the ``recv*`` family in any order, then
    ``shutdown_write`` (optional: tells the peer we are done sending, we can still
    receive) and ``close`` (or leave a ``with`` block).  Not thread-safe.
    """

    def __init__(self, stream: ByteStream, *, timeout: float | None = None, peer: str = "") -> None:
        self._stream = stream
        self._buffer = bytearray()
        self._eof = False
        self.timeout = timeout
        self.peer_address = peer or _peer_name(stream.sock)
        self.local_address = format_sockaddr(stream.sock.family, stream.sock.getsockname())

    # -- plumbing --------------------------------------------------------------

    def _deadline(self, timeout: Timeout) -> _Deadline:
        return _Deadline(self.timeout if isinstance(timeout, _Default) else timeout)

    def _wait(self, deadline: _Deadline) -> bool:
        """Wait for the stream until the deadline; False if it passed first."""
        return not deadline.expired() and self._stream.wait(deadline.remaining())

    def _fill(self, deadline: _Deadline, waiting_for: str) -> bool:
        """Receive one chunk into the buffer; False at end of stream.  Raises on the deadline."""
        while not self._eof:
            try:
                chunk = self._stream.recv(_CHUNK)
            except BlockingIOError:
                if not self._wait(deadline):
                    raise self._timeout(deadline, waiting_for) from None
                continue
            except OSError as exc:
                raise tls_error(exc, self.peer_address, "receive from") from exc
            if not chunk:
                self._eof = True
                break
            self._buffer += chunk
            return True
        return False

    def _timeout(self, deadline: _Deadline, waiting_for: str) -> TimeoutError:
        return TimeoutError(
            f"timed out after {deadline.seconds:g}s waiting for {waiting_for}"
            f" from {self.peer_address} ({len(self._buffer)} bytes buffered)",
            partial=bytes(self._buffer),
        )

    def _take(self, n: int) -> bytes:
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    # -- sending ---------------------------------------------------------------

    def send(self, data: bytes, *, timeout: Timeout = DEFAULT) -> None:
        """Send all of ``data`` before the deadline.

        Raises :class:`TimeoutError` (how much went is unknown: treat the
        connection as broken) or :class:`ConnectError` (reset, closed by the peer).
        """
        deadline = self._deadline(timeout)
        view = memoryview(data)
        while view or self._stream.wants_write():
            try:
                if view:
                    view = view[self._stream.send(view) :]
                else:
                    self._stream.flush()
            except BlockingIOError:
                if not self._wait(deadline):
                    raise TimeoutError(
                        f"timed out after {deadline.seconds:g}s sending to {self.peer_address}"
                    ) from None
            except OSError as exc:
                raise tls_error(exc, self.peer_address, "send to") from exc

    def sendline(self, line: bytes | str, *, timeout: Timeout = DEFAULT) -> None:
        """Send ``line`` (a str is encoded as UTF-8) followed by ``\\n``."""
        data = line.encode() if isinstance(line, str) else line
        self.send(data + b"\n", timeout=timeout)

    def shutdown_write(self) -> None:
        """Half-close: the peer reads end of stream; we can still receive.

        Next: ``recv*`` until ``b""``, then ``close``.
        """
        try:
            self._stream.half_close()
        except OSError as exc:
            raise tls_error(exc, self.peer_address, "shut down the connection to") from exc

    # -- receiving -------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """How many received bytes wait in the buffer, not yet returned by a ``recv*`` call."""
        return len(self._buffer)

    def recv(self, max_bytes: int = _CHUNK, *, timeout: Timeout = DEFAULT) -> bytes:
        """Up to ``max_bytes`` bytes: buffered ones at once, else the next that arrive.

        Returns ``b""`` once the peer has closed and the buffer is empty.
        """
        deadline = self._deadline(timeout)
        if not self._buffer:
            self._fill(deadline, "data")
        return self._take(max_bytes)

    def recv_exactly(self, n: int, *, timeout: Timeout = DEFAULT) -> bytes:
        """Exactly ``n`` bytes.

        Raises :class:`ConnectError` if the peer closes first (the bytes stay buffered).
        """
        deadline = self._deadline(timeout)
        while len(self._buffer) < n:
            if not self._fill(deadline, f"{n} bytes"):
                raise ConnectError(
                    f"{self.peer_address} closed the connection"
                    f" after {len(self._buffer)} of {n} bytes"
                )
        return self._take(n)

    def recv_until(
        self, delimiter: bytes, *, max_bytes: int = _CHUNK, timeout: Timeout = DEFAULT
    ) -> bytes:
        """Bytes up to and including the first ``delimiter``.

        Raises :class:`SockkitError` if ``max_bytes`` arrive without the delimiter
        (a bound so a peer that never sends it cannot fill memory), and
        :class:`ConnectError` if the peer closes first; the bytes stay buffered.
        """
        if not delimiter:
            raise UsageError("recv_until needs a non-empty delimiter")
        deadline = self._deadline(timeout)
        searched = 0
        while True:
            found = self._buffer.find(delimiter, searched)
            if found >= 0 and found + len(delimiter) <= max_bytes:
                return self._take(found + len(delimiter))
            if found >= 0 or len(self._buffer) >= max_bytes:
                raise SockkitError(
                    f"no {delimiter!r} within {max_bytes} bytes from {self.peer_address}"
                )
            # A delimiter split across two chunks starts at most len-1 bytes back.
            searched = max(len(self._buffer) - len(delimiter) + 1, 0)
            if not self._fill(deadline, repr(delimiter)):
                raise ConnectError(
                    f"{self.peer_address} closed the connection before sending {delimiter!r}"
                    f" ({len(self._buffer)} bytes buffered)"
                )

    def recv_line(self, *, max_bytes: int = _CHUNK, timeout: Timeout = DEFAULT) -> bytes:
        """One line, with its ``\\n`` (``\\r\\n`` stays as sent); see :meth:`recv_until`."""
        return self.recv_until(b"\n", max_bytes=max_bytes, timeout=timeout)

    def recv_all(self, *, max_bytes: int = 1 << 30, timeout: Timeout = DEFAULT) -> bytes:
        """Everything until the peer closes (at most ``max_bytes``, else :class:`SockkitError`)."""
        deadline = self._deadline(timeout)
        while len(self._buffer) <= max_bytes:
            if not self._fill(deadline, "the end of the stream"):
                return self._take(len(self._buffer))
        raise SockkitError(f"{self.peer_address} sent more than {max_bytes} bytes")

    # -- lifecycle -------------------------------------------------------------

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def socket(self) -> socket.socket:
        """The underlying socket (non-blocking), for options and inspection."""
        return self._stream.sock

    def close(self) -> None:
        """Close the connection (idempotent; TLS says ``close_notify``).  Buffered bytes go."""
        self._stream.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Connection {self.local_address} -> {self.peer_address}>"


def _peer_name(sock: socket.socket) -> str:
    try:
        return format_sockaddr(sock.family, sock.getpeername())
    except OSError:
        return "(unknown peer)"


class DatagramConnection:
    """A datagram socket (UDP or unixgram): one ``send``, one datagram; one ``recv``, one datagram.

    From :func:`connect_datagram` it is connected: ``send``/``recv`` talk to that
    peer.  From :func:`sockkit.client.listen_datagram` it is only bound: use
    ``recv_from`` and answer with ``send_to(data, address)``.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        timeout: float | None = None,
        socket_file: str | None = None,
    ) -> None:
        self._sock = sock
        self._socket_file = socket_file  # a unixgram file we bound: removed by close()
        self.timeout = timeout
        self.local_address = format_sockaddr(sock.family, sock.getsockname())

    def send(self, data: bytes) -> None:
        """Send one datagram to the connected peer."""
        try:
            self._sock.send(data)
        except OSError as exc:
            raise translate_os_error(exc, "send to", _peer_name(self._sock)) from exc

    def send_to(self, data: bytes, address: Any) -> None:
        """Send one datagram to ``address`` (as returned by :meth:`recv_from`)."""
        try:
            self._sock.sendto(data, address)
        except OSError as exc:
            raise translate_os_error(
                exc, "send to", format_sockaddr(self._sock.family, address)
            ) from exc

    def recv(self, *, timeout: Timeout = DEFAULT) -> bytes:
        """The next datagram.  :class:`TimeoutError` (``partial`` empty) if none arrives in time;
        :class:`ConnectError` if an earlier datagram was refused (nothing listens there)."""
        return self.recv_from(timeout=timeout)[0]

    def recv_from(self, *, timeout: Timeout = DEFAULT) -> tuple[bytes, Any]:
        """The next datagram and the sender's address."""
        seconds = self.timeout if isinstance(timeout, _Default) else timeout
        self._sock.settimeout(seconds)
        try:
            return self._sock.recvfrom(_MAX_DATAGRAM)
        except builtins.TimeoutError as exc:
            if getattr(exc, "errno", None):
                raise translate_os_error(exc, "receive on", self.local_address) from exc
            raise TimeoutError(f"timed out after {seconds:g}s waiting for a datagram") from None
        except OSError as exc:
            raise translate_os_error(exc, "receive from", _peer_name(self._sock)) from exc

    def fileno(self) -> int:
        return self._sock.fileno()

    @property
    def socket(self) -> socket.socket:
        return self._sock

    def close(self) -> None:
        """Close the socket (idempotent), removing the unixgram socket file we bound."""
        self._sock.close()
        if self._socket_file is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._socket_file)
            self._socket_file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(
    endpoint: str | Endpoint,
    *,
    timeout: float | None = None,
    source: str | None = None,
    tls: TLSConfig | None = None,
) -> Connection:
    """Connect to a ``tcp://``, ``tls://`` or ``unix:`` endpoint; return a :class:`Connection`.

    ``timeout`` bounds each connection attempt (every resolved address is tried
    in turn) and the TLS handshake, and becomes the connection's default for
    every later call.  ``tls`` configures a ``tls://`` endpoint (default: verify
    against the system store).  Raises :class:`ConnectError`,
    :class:`TimeoutError`, :class:`TLSError`, :class:`EndpointError`.
    """
    ep = _as_endpoint(endpoint)
    if ep.is_datagram:
        raise UsageError(f"{ep} is a datagram endpoint; use sockkit.connect_datagram()")
    config = tls or TLSConfig()
    context = client_context(config) if ep.is_tls else None
    sock = open_connection(ep, timeout=timeout, source=source)
    if context is None:
        return Connection(PlainStream(sock), timeout=timeout)
    stream = tls_handshake(
        sock,
        context,
        target=str(ep),
        server_hostname=config.server_hostname or ep.host,
        deadline=None if timeout is None else time.monotonic() + timeout,
    )
    return Connection(stream, timeout=timeout)


def connect_datagram(
    endpoint: str | Endpoint, *, timeout: float | None = None, source: str | None = None
) -> DatagramConnection:
    """Open a datagram socket connected to ``udp://`` or ``unixgram:`` ``endpoint``.

    ``timeout`` is the default for :meth:`DatagramConnection.recv`.
    """
    ep = _as_endpoint(endpoint)
    if not ep.is_datagram:
        raise UsageError(f"{ep} is a stream endpoint; use sockkit.connect()")
    return DatagramConnection(open_connection(ep, source=source), timeout=timeout)
