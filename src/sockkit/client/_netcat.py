"""``sockkit connect`` and ``sockkit listen`` as library calls: open the sockets, then pump.

The command-line modules parse options into :class:`NetcatOptions` and call
:func:`run_connect` or :func:`run_listen`; everything they report goes through
the ``on_event`` callback (the ``--verbose`` lines) or an exception.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from sockkit._accept import Acceptor
from sockkit._endpoint import (
    Endpoint,
    format_sockaddr,
    open_connection,
    open_listener,
    sockaddr_endpoint,
)
from sockkit._errors import SockkitError, UsageError, translate_os_error
from sockkit.client._datagram_pump import DatagramOptions, DatagramPump
from sockkit.client._listener import remove_socket_file
from sockkit.client._stream_pump import Peer, PumpOptions, StreamPump
from sockkit.client._streams import ByteStream, PlainStream, tls_handshake
from sockkit.client._tls import TLSConfig, client_context, server_context

__all__ = ["NetcatOptions", "run_connect", "run_listen"]

Event = Callable[[str], None]

#: How long a TLS peer of ``listen`` may take over its handshake.
_HANDSHAKE_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class NetcatOptions:
    """Everything ``connect`` and ``listen`` can be told (the CLI flags, as values)."""

    timeout: float | None = None
    idle_timeout: float | None = None
    source: str | None = None
    shutdown_on_eof: bool = True
    send_only: bool = False
    receive_only: bool = False
    keep_open: bool = False
    wait: float = 1.0
    chunk: int | None = None
    tls: TLSConfig | None = None

    def __post_init__(self) -> None:
        if self.send_only and self.receive_only:
            raise UsageError("--send-only and --recv-only exclude each other")
        for name in ("timeout", "idle_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UsageError(f"--{name.replace('_', '-')} must be a positive number of seconds")
        if self.wait < 0:
            raise UsageError("--wait must be zero or more seconds")
        if self.chunk is not None and not 0 < self.chunk <= 65507:
            raise UsageError("--chunk must be 1-65507 bytes")

    def stream(self, keep_open: bool = False) -> PumpOptions:
        return PumpOptions(
            shutdown_on_eof=self.shutdown_on_eof,
            send_only=self.send_only,
            receive_only=self.receive_only,
            idle_timeout=self.idle_timeout,
            keep_open=keep_open,
        )

    def datagram(self) -> DatagramOptions:
        return DatagramOptions(
            chunk=self.chunk,
            wait=self.wait,
            idle_timeout=self.idle_timeout,
            send_only=self.send_only,
            receive_only=self.receive_only,
        )


def _quiet(message: str) -> None:
    del message


def run_connect(
    endpoint: Endpoint,
    options: NetcatOptions,
    *,
    stdin_fd: int = 0,
    stdout_fd: int = 1,
    on_event: Event = _quiet,
) -> None:
    """Connect to ``endpoint`` and pump stdin/stdout through it until done.

    Returns normally when the exchange ended well (the peer closed, or datagram
    replies stopped); raises :class:`SockkitError` otherwise.
    """
    context = client_context(options.tls or TLSConfig()) if endpoint.is_tls else None
    sock = open_connection(
        endpoint,
        timeout=options.timeout,
        source=options.source,
        on_attempt=lambda address: on_event(f"trying {address}"),
    )
    peer = _name(sock, peer=True)
    on_event(f"connected {_name(sock)} -> {peer}")
    if endpoint.is_datagram:
        with sock:
            pump = DatagramPump(
                sock, stdin_fd, stdout_fd, options.datagram(), connected=True, on_event=on_event
            )
            pump.run()
        on_event(f"sent {pump.sent} bytes, received {pump.received} bytes")
        return
    stream: ByteStream
    if context is not None:
        config = options.tls or TLSConfig()
        stream = tls_handshake(
            sock,
            context,
            target=str(endpoint),
            server_hostname=config.server_hostname or endpoint.host,
            deadline=None if options.timeout is None else time.monotonic() + options.timeout,
        )
        on_event(f"TLS {stream.tls.version()} {(stream.tls.cipher() or ('?',))[0]}")
    else:
        stream = PlainStream(sock)
    StreamPump(stdin_fd, stdout_fd, options.stream(), on_event).run_one(Peer(stream, peer))


def run_listen(
    endpoint: Endpoint,
    options: NetcatOptions,
    *,
    stdin_fd: int = 0,
    stdout_fd: int = 1,
    on_event: Event = _quiet,
    on_listening: Event = _quiet,
    on_warning: Event = _quiet,
) -> None:
    """Listen on ``endpoint``, tell ``on_listening`` the real endpoint, then pump.

    Streams: one peer, then return when it closes; with ``keep_open`` accept
    peers until interrupted, stdin going to every peer connected at the time.
    Datagrams: answer the latest sender until interrupted.  With ``keep_open``
    a peer that fails (reset, TLS handshake) is told to ``on_warning`` and dropped.
    """
    context = server_context(options.tls or TLSConfig()) if endpoint.is_tls else None
    listener = open_listener(endpoint)
    real = sockaddr_endpoint(listener, endpoint.transport)
    try:
        on_listening(str(real))
        if endpoint.is_datagram:
            DatagramPump(
                listener,
                stdin_fd,
                stdout_fd,
                options.datagram(),
                connected=False,
                on_event=on_event,
            ).run()
            return

        acceptor = Acceptor(listener, str(real), on_warning)  # makes it non-blocking

        def accept() -> Peer | None:
            try:
                got = acceptor.accept()
            except OSError as exc:
                on_warning(str(translate_os_error(exc, "accept on", str(real))))
                return None
            if got is None:
                return None
            if isinstance(got, float):
                # Out of descriptors: the listener stays readable, so pause
                # instead of polling it again at once.
                time.sleep(got)
                return None
            sock, address = got
            name = format_sockaddr(sock.family, address) if address else "(unnamed)"
            local = _name(sock)
            stream: ByteStream = PlainStream(sock)
            if context is not None:
                try:
                    stream = tls_handshake(
                        sock,
                        context,
                        target=name,
                        server_side=True,
                        deadline=time.monotonic() + _HANDSHAKE_SECONDS,
                    )
                except SockkitError as exc:
                    if not options.keep_open:
                        raise
                    on_warning(str(exc))
                    return None
            on_event(f"accepted {name} on {local}")
            return Peer(stream, name)

        pump = StreamPump(
            stdin_fd, stdout_fd, options.stream(options.keep_open), on_event, on_warning
        )
        if options.keep_open:
            pump.run(listener.fileno(), accept)
            return
        first: Peer | None = None
        while first is None:
            select.select([listener], [], [])
            first = accept()
        listener.close()  # one peer only: nobody else may queue up behind it
        pump.run_one(first)
    finally:
        listener.close()
        remove_socket_file(real)


def _name(sock: socket.socket, peer: bool = False) -> str:
    with contextlib.suppress(OSError):
        return format_sockaddr(sock.family, sock.getpeername() if peer else sock.getsockname())
    return "(unknown)"
