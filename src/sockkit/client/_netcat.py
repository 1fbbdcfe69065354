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
from dataclasses import dataclass, replace
from typing import Any

from sockkit._accept import Acceptor, Admission
from sockkit._endpoint import (
    Endpoint,
    format_sockaddr,
    open_connection,
    open_listener,
    resolve,
    sockaddr_endpoint,
)
from sockkit._errors import ResolveError, SockkitError, TimeoutError, UsageError, translate_os_error
from sockkit._traffic_dump import TrafficDump
from sockkit.client._datagram_pump import DatagramOptions, DatagramPump
from sockkit.client._exec import MAX_CHILDREN, ProgramServer, check_program, run_program
from sockkit.client._line_endings import CrlfFilter
from sockkit.client._listener import remove_socket_file
from sockkit.client._stream_pump import Peer, PumpOptions, StreamPump
from sockkit.client._streams import ByteStream, PlainStream, tls_handshake
from sockkit.client._tls import TLSConfig, client_context, server_context

__all__ = ["NetcatOptions", "run_connect", "run_listen"]

Event = Callable[[str], None]

#: How long a TLS peer of ``listen`` may take over its handshake.
_HANDSHAKE_SECONDS = 10.0

#: How long datagram ``connect`` waits for replies after stdin ends, unless told.
DEFAULT_WAIT = 1.0


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
    #: Datagrams: seconds to wait for replies after stdin ends (None: DEFAULT_WAIT).
    wait: float | None = None
    chunk: int | None = None
    tls: TLSConfig | None = None
    #: Bare LFs of stdin go out as CRLF (``-C``).
    crlf: bool = False
    #: Seconds to go on after stdin ended and was sent, then stop (``-q``); None: until done.
    quit_after: float | None = None
    #: Dump the traffic to stderr: ``"text"`` (``-vv``) or ``"hex"`` (``-x``).
    dump: str | None = None
    #: Run this program on each connection instead of pumping stdin/stdout (``-e``/``-c``).
    exec_argv: tuple[str, ...] | None = None
    #: Who ``listen`` serves (``--allow``/``--deny``); None: everyone.
    admission: Admission | None = None
    #: Idle for ``idle_timeout`` ends the exchange quietly with success, as nc's ``-w`` does.
    idle_quits: bool = False
    #: ``socket.AF_INET`` or ``AF_INET6`` to use only that family (``-4``/``-6``).
    family: int = socket.AF_UNSPEC

    def __post_init__(self) -> None:
        if self.send_only and self.receive_only:
            raise UsageError("--send-only and --recv-only exclude each other")
        for name in ("timeout", "idle_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UsageError(f"--{name.replace('_', '-')} must be a positive number of seconds")
        if self.wait is not None and self.wait < 0:
            raise UsageError("--wait must be zero or more seconds")
        if self.chunk is not None and not 0 < self.chunk <= 65507:
            raise UsageError("--chunk must be 1-65507 bytes")
        if self.quit_after is not None and self.quit_after < 0:
            raise UsageError("-q must be zero or more seconds")
        if self.dump not in (None, "text", "hex"):
            raise UsageError(f"unknown dump format {self.dump!r}")
        if self.exec_argv is not None and (self.send_only or self.receive_only):
            raise UsageError("--exec/--sh-exec leave stdin and stdout alone; no --send/--recv-only")

    def check_endpoint(self, endpoint: Endpoint, *, listening: bool) -> None:
        """Raise :class:`UsageError` for an option that cannot apply to ``endpoint``."""
        if endpoint.is_datagram:
            for given, option in ((self.crlf, "--crlf"), (self.dump, "-x/-vv")):
                if given:
                    raise UsageError(f"{option} applies to stream endpoints only, not {endpoint}")
            if self.exec_argv is not None and listening:
                raise UsageError(f"--exec on a datagram listener is not supported ({endpoint})")
        if self.exec_argv is not None and endpoint.is_tls:
            raise UsageError(f"--exec cannot hand a TLS connection to a program ({endpoint})")

    def _pump_extras(self) -> dict[str, Any]:
        return {
            "stdin_filter": CrlfFilter() if self.crlf else None,
            "dump": TrafficDump(hexdump=self.dump == "hex") if self.dump else None,
        }

    def stream(self, keep_open: bool = False) -> PumpOptions:
        return PumpOptions(
            shutdown_on_eof=self.shutdown_on_eof,
            send_only=self.send_only,
            receive_only=self.receive_only,
            idle_timeout=self.idle_timeout,
            keep_open=keep_open,
            quit_after=self.quit_after,
        )

    def datagram(self) -> DatagramOptions:
        return DatagramOptions(
            chunk=self.chunk,
            wait=DEFAULT_WAIT if self.wait is None else self.wait,
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
    options.check_endpoint(endpoint, listening=False)
    context = client_context(options.tls or TLSConfig()) if endpoint.is_tls else None
    sock = _connect_any(
        in_family(endpoint, options.family),
        timeout=options.timeout,
        source=options.source,
        on_attempt=lambda address: on_event(f"trying {address}"),
    )
    peer = _name(sock, peer=True)
    on_event(f"connected {_name(sock)} -> {peer}")
    if options.exec_argv is not None:
        run_program(sock, options.exec_argv, on_event)
        return
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
    pumping = StreamPump(stdin_fd, stdout_fd, options.stream(), on_event, **options._pump_extras())
    try:
        pumping.run_one(Peer(stream, peer))
    except TimeoutError:
        if not options.idle_quits:
            raise
        on_event(f"idle for {options.idle_timeout:g}s: done")


def run_listen(
    endpoint: Endpoint,
    options: NetcatOptions,
    *,
    stdin_fd: int = 0,
    stdout_fd: int = 1,
    on_event: Event = _quiet,
    on_listening: Event = _quiet,
    on_warning: Event = _quiet,
    on_peer: Event = _quiet,
) -> None:
    """Listen on ``endpoint``, tell ``on_listening`` the real endpoint, then pump.

    ``on_peer`` hears of each peer accepted or refused (``--allow``/``--deny``);
    with ``keep_open`` that replaces the ``accepted`` line of ``on_event``.
    With ``exec_argv`` each admitted peer gets its own program instead (see
    :mod:`sockkit.client._exec`).

    Streams: one peer, then return when it closes; with ``keep_open`` accept
    peers until interrupted, stdin going to every peer connected at the time.
    Datagrams: answer the latest sender until interrupted.  With ``keep_open``
    a peer that fails (reset, TLS handshake) is told to ``on_warning`` and dropped.
    """
    options.check_endpoint(endpoint, listening=True)
    if options.exec_argv is not None:
        check_program(options.exec_argv)
    context = server_context(options.tls or TLSConfig()) if endpoint.is_tls else None
    admission = options.admission or Admission()
    listener = open_listener(in_family(endpoint, options.family, passive=True)[0])
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

        if options.exec_argv is not None:
            ProgramServer(
                listener,
                str(real),
                options.exec_argv,
                keep_open=options.keep_open,
                admission=Admission(admission.access, max_conns=MAX_CHILDREN),
                on_peer=on_peer if options.keep_open else on_event,
                on_refused=on_peer,
                on_warning=on_warning,
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
            refusal = admission.admit(address)
            if refusal is not None:
                on_peer(f"refused {name}: {refusal}")  # said before the peer sees the close
                sock.close()
                return None
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
            (on_peer if options.keep_open else on_event)(f"accepted {name} on {local}")
            return Peer(stream, name)

        pump = StreamPump(
            stdin_fd,
            stdout_fd,
            options.stream(options.keep_open),
            on_event,
            on_warning,
            **options._pump_extras(),
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
        if endpoint.fd is None:  # an inherited socket's file is its owner's
            remove_socket_file(real)


def in_family(endpoint: Endpoint, family: int, *, passive: bool = False) -> list[Endpoint]:
    """``endpoint``, or one endpoint per address of ``family`` when it is restricted (-4/-6).

    A wildcard listener becomes that family's wildcard; a name becomes its
    addresses of that family, in the resolver's order.
    """
    if family == socket.AF_UNSPEC or endpoint.is_unix:
        return [endpoint]
    version = 4 if family == socket.AF_INET else 6
    if passive and endpoint.host is None:
        return [replace(endpoint, host="0.0.0.0" if version == 4 else "::")]
    try:
        infos = resolve(endpoint, passive=passive, family=family)
    except ResolveError as exc:
        raise ResolveError(f"{exc} (as an IPv{version} address, -{version})") from exc
    hosts = dict.fromkeys(str(info.sockaddr[0]) for info in infos)
    return [replace(endpoint, host=host) for host in hosts]


def _connect_any(
    endpoints: list[Endpoint],
    *,
    timeout: float | None,
    source: str | None,
    on_attempt: Event,
) -> socket.socket:
    """Connect to the first of ``endpoints`` that answers; raise the last failure."""
    for endpoint in endpoints[:-1]:
        try:
            return open_connection(endpoint, timeout=timeout, source=source, on_attempt=on_attempt)
        except UsageError:
            raise
        except SockkitError:
            continue
    return open_connection(endpoints[-1], timeout=timeout, source=source, on_attempt=on_attempt)


def _name(sock: socket.socket, peer: bool = False) -> str:
    with contextlib.suppress(OSError):
        return format_sockaddr(sock.family, sock.getpeername() if peer else sock.getsockname())
    return "(unknown)"
