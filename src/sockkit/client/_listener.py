"""Listening for Python programs: accept stream peers one by one, or bind a datagram socket."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import ssl
import time
from collections.abc import Iterator
from typing import Self

from sockkit._endpoint import Endpoint, format_sockaddr, open_listener, sockaddr_endpoint
from sockkit._errors import TimeoutError, UsageError, translate_os_error
from sockkit.client._connection import (
    DEFAULT,
    Connection,
    DatagramConnection,
    Timeout,
    _as_endpoint,
    _Default,
)
from sockkit.client._streams import PlainStream, tls_handshake
from sockkit.client._tls import TLSConfig, server_context

__all__ = ["Listener", "listen", "listen_datagram", "remove_socket_file"]


class Listener:
    """A listening stream socket.  ``accept()`` the next peer, or iterate to accept them all.

    ``endpoint`` is where it really listens (port 0 replaced by the chosen port).
    ``close()`` (or leaving the ``with`` block) stops listening and removes a Unix
    socket file it created.
    """

    def __init__(
        self,
        sock: socket.socket,
        endpoint: Endpoint,
        *,
        timeout: float | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._sock = sock
        self._tls = tls
        self.timeout = timeout
        self.endpoint = endpoint

    def accept(self, *, timeout: Timeout = DEFAULT) -> Connection:
        """The next peer as a :class:`Connection` (TLS handshake done); ``timeout`` bounds both.

        The connection's default timeout is the listener's.  Raises
        :class:`TimeoutError` if no peer arrives in time, :class:`TLSError` if its
        handshake fails.
        """
        seconds = self.timeout if isinstance(timeout, _Default) else timeout
        deadline = None if seconds is None else time.monotonic() + seconds
        wait = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        ready, _, _ = select.select([self._sock], [], [], wait)
        if not ready:
            raise TimeoutError(
                f"timed out after {seconds:g}s waiting for a peer on {self.endpoint}"
            )
        try:
            sock, address = self._sock.accept()
        except OSError as exc:
            raise translate_os_error(exc, "accept on", str(self.endpoint)) from exc
        peer = format_sockaddr(sock.family, address) if address else "(unnamed)"
        if self._tls is None:
            return Connection(PlainStream(sock), timeout=self.timeout, peer=peer)
        stream = tls_handshake(sock, self._tls, target=peer, server_side=True, deadline=deadline)
        return Connection(stream, timeout=self.timeout, peer=peer)

    def __iter__(self) -> Iterator[Connection]:
        """Accept peers for ever (each waits without a deadline)."""
        while True:
            yield self.accept(timeout=None)

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            self._sock.close()
            remove_socket_file(self.endpoint)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def remove_socket_file(endpoint: Endpoint) -> None:
    """Unlink the file of a path-named Unix endpoint we listened on (nothing else)."""
    if endpoint.is_unix and not endpoint.is_abstract and endpoint.path and endpoint.fd is None:
        with contextlib.suppress(OSError):
            os.unlink(endpoint.path)


def listen(
    endpoint: str | Endpoint,
    *,
    timeout: float | None = None,
    backlog: int | None = None,
    tls: TLSConfig | None = None,
) -> Listener:
    """Listen on a stream endpoint; ``tls://`` needs ``tls=TLSConfig(cert=..., key=...)``.

    ``timeout`` is the default for :meth:`Listener.accept` and for the accepted
    connections.  Raises :class:`AddressInUseError`, :class:`UsageError`, ...
    """
    ep = _as_endpoint(endpoint)
    if ep.is_datagram:
        raise UsageError(f"{ep} is a datagram endpoint; use sockkit.listen_datagram()")
    context = server_context(tls or TLSConfig()) if ep.is_tls else None
    sock = open_listener(ep, backlog=backlog)
    real = sockaddr_endpoint(sock, ep.transport)
    if ep.fd is not None:
        real = ep  # inherited: its socket file is its owner's, never removed
    return Listener(sock, real, timeout=timeout, tls=context)


def listen_datagram(
    endpoint: str | Endpoint, *, timeout: float | None = None
) -> DatagramConnection:
    """Bind a datagram socket on a ``udp://`` or ``unixgram:`` endpoint; reply with ``send_to``."""
    ep = _as_endpoint(endpoint)
    if not ep.is_datagram:
        raise UsageError(f"{ep} is a stream endpoint; use sockkit.listen()")
    path = ep.path if ep.is_unix and not ep.is_abstract and ep.fd is None else None
    return DatagramConnection(open_listener(ep), timeout=timeout, socket_file=path)
