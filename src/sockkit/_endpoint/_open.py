"""Opening sockets from endpoints: the one place sockkit creates, binds and connects them.

:func:`open_listener` and :func:`open_connection` take an :class:`Endpoint`
(resolved here through :mod:`sockkit._endpoint._resolve`) and give a ready
socket with sockkit's options set; :func:`sockaddr_endpoint` reads back what a
socket is really bound to.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from collections.abc import Callable

from sockkit._endpoint._grammar import Endpoint, Transport, parse_address
from sockkit._endpoint._resolve import format_sockaddr, resolve, resolve_service, sockaddr_host
from sockkit._errors import (
    AddressInUseError,
    EndpointError,
    SockkitError,
    translate_os_error,
    translating,
)
from sockkit._inherit import adopt

__all__ = ["open_connection", "open_listener", "sockaddr_endpoint"]


def sockaddr_endpoint(sock: socket.socket, transport: Transport | None = None) -> Endpoint:
    """The endpoint a socket is actually bound to (port 0 replaced by the real port)."""
    family, addr = sock.family, sock.getsockname()
    if family == socket.AF_UNIX:
        kind: Transport = "unixgram" if sock.type == socket.SOCK_DGRAM else "unix"
        return Endpoint(transport or kind, path=format_sockaddr(family, addr))
    default: Transport = "udp" if sock.type == socket.SOCK_DGRAM else "tcp"
    return Endpoint(transport or default, host=sockaddr_host(addr), port=addr[1])


def _unix_address(path: str) -> str | bytes:
    if path.startswith("@"):
        return b"\x00" + os.fsencode(path[1:])
    return path


def open_listener(
    endpoint: Endpoint,
    *,
    backlog: int | None = None,
    reuse_port: bool = False,
    mode: int = 0o600,
) -> socket.socket:
    """Create, bind and (for streams) listen on a socket for ``endpoint``; return it.

    TCP/TLS sockets get SO_REUSEADDR (and SO_REUSEPORT when ``reuse_port``); a
    wildcard IPv6 socket accepts IPv4 too.  ``backlog`` defaults to SOMAXCONN.
    A Unix socket file gets ``mode`` whatever the umask, and is never more open
    than ``mode`` at any instant; an existing socket file
    is replaced only when nothing answers on it, and a file that is not a socket
    is never touched.  Datagram endpoints are bound but not listened on.
    The caller removes a Unix socket file it no longer needs.

    Raises :class:`AddressInUseError`, :class:`ResolveError` or another
    :class:`SockkitError` with a message naming the endpoint.
    """
    if endpoint.fd is not None:
        return adopt(endpoint.fd)  # bound and listening already; backlog and mode are its owner's
    if backlog is None:
        backlog = socket.SOMAXCONN
    try:
        sock = _bind_unix(endpoint, mode) if endpoint.is_unix else _bind_inet(endpoint, reuse_port)
    except AddressInUseError as exc:
        exc.endpoint = resolve_service(endpoint)  # the port number, for naming its holder
        raise
    if endpoint.is_stream:
        try:
            sock.listen(backlog)
        except OSError as exc:
            sock.close()
            raise translate_os_error(exc, "listen on", str(endpoint)) from exc
    return sock


def _bind_inet(endpoint: Endpoint, reuse_port: bool) -> socket.socket:
    infos = resolve(endpoint, passive=True)
    target = resolve_service(endpoint).address
    last: BaseException | None = None
    for info in infos:
        sock = socket.socket(info.family, info.type, info.proto)
        try:
            if endpoint.is_stream:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if info.family == socket.AF_INET6 and endpoint.host is None:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(info.sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
            if exc.errno == errno.EADDRINUSE:
                break
    assert last is not None
    raise translate_os_error(last, "bind", target) from last


def _bind_unix(endpoint: Endpoint, mode: int) -> socket.socket:
    path = endpoint.path or ""
    sock = socket.socket(socket.AF_UNIX, endpoint.socktype)
    try:
        if endpoint.is_abstract:
            with translating("bind", str(endpoint)):
                sock.bind(_unix_address(path))
            return sock
        _clear_stale_socket_file(endpoint)
        # Linux creates the file with the socket inode's mode minus the umask, so
        # setting the mode on the socket first means the file is never, even for
        # an instant, more open than asked.  (Binding to a temporary name and
        # renaming would do the same but leave getsockname() reporting the
        # temporary name to us and to every peer.)  A chmod afterwards gives the
        # exact mode when the umask took bits away.
        with translating("bind", str(endpoint)):
            os.fchmod(sock.fileno(), mode)
            sock.bind(path)
            try:
                os.chmod(path, mode)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(path)
                raise
        return sock
    except BaseException:
        sock.close()
        raise


def _clear_stale_socket_file(endpoint: Endpoint) -> None:
    path = endpoint.path or ""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SockkitError(
            f"cannot bind {endpoint}: {path} exists and is not a socket; not replacing it"
        )
    with socket.socket(socket.AF_UNIX, endpoint.socktype) as probe:
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)  # stale: a socket file with nobody listening
            return
        except OSError:
            return  # let bind report whatever is wrong
    raise AddressInUseError(
        f"address already in use: {endpoint} (a process is listening on it)", str(endpoint)
    )


def open_connection(
    endpoint: Endpoint,
    *,
    timeout: float | None = None,
    source: str | None = None,
    on_attempt: Callable[[str], None] | None = None,
) -> socket.socket:
    """Connect to ``endpoint`` and return the connected, blocking socket.

    Every address getaddrinfo gives is tried in turn with a fresh socket;
    ``timeout`` bounds each attempt.  ``source`` (``ADDR``, ``ADDR:PORT`` or
    ``[v6]:PORT``) binds the local side first.  ``on_attempt`` is told of each
    address tried (for ``--verbose``).  Datagram endpoints give a connected
    datagram socket; a ``unixgram`` one is auto-bound so replies can reach it.

    Raises :class:`ConnectError`, :class:`TimeoutError`, :class:`ResolveError`.
    """
    if endpoint.fd is not None:
        raise EndpointError(str(endpoint), "an inherited socket is for listening, not connecting")
    if endpoint.is_unix:
        return _connect_unix(endpoint, timeout)
    infos = resolve(endpoint)
    last: BaseException | None = None
    for info in infos:
        target = format_sockaddr(info.family, info.sockaddr)
        if on_attempt is not None:
            on_attempt(target)
        sock = socket.socket(info.family, info.type, info.proto)
        try:
            if source is not None:
                _bind_source(sock, source, info.family)
            sock.settimeout(timeout)
            sock.connect(info.sockaddr)
            sock.settimeout(None)
            return sock
        except SockkitError:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            last = translate_os_error(exc, "connect to", target)
    assert last is not None
    raise last


def _connect_unix(endpoint: Endpoint, timeout: float | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, endpoint.socktype)
    try:
        with translating("connect to", str(endpoint)):
            if endpoint.is_datagram:
                sock.bind("")  # Linux autobind: an abstract name, so the server can reply
            sock.settimeout(timeout)
            sock.connect(_unix_address(endpoint.path or ""))
            sock.settimeout(None)
        return sock
    except BaseException:
        sock.close()
        raise


def _bind_source(sock: socket.socket, source: str, family: int) -> None:
    try:
        ep = parse_address(source)
    except SockkitError:
        raise EndpointError(source, "expected a source ADDR or ADDR:PORT") from None
    # ``:PORT`` (no address) binds the port on the wildcard of the target's family.
    infos = resolve(ep, family=family, passive=ep.host is None)
    if ep.port:
        # As nc -p: a fixed source port is reused at once (a TIME-WAIT holds it otherwise).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    with translating("bind", ep.address):
        sock.bind(infos[0].sockaddr)
