"""Endpoints: one grammar for every command, and the two functions that open sockets from them.

Grammar (see DESIGN.md)::

    tcp://HOST:PORT   udp://HOST:PORT   tls://HOST:PORT
    unix:PATH   unix:@NAME   unixgram:PATH   unixgram:@NAME
    HOST:PORT         same as tcp://HOST:PORT
    :PORT             every interface (dual-stack where the host has IPv6)
    PORT              loopback only, 127.0.0.1 -- the safe default
    fd:N              an already-open socket on descriptor N (inherited)
    systemd:[NAME]    the socket systemd socket activation passed (LISTEN_FDS)

HOST is a name, an IPv4 address or a bracketed IPv6 address (``[::1]``).  PORT is
0-65535 or a service name looked up with getservbyname.  The same wildcard and
loopback short forms work after a scheme (``udp://:9000``, ``udp://9000``).

Parsing and formatting are pure: :func:`parse_endpoint` and :meth:`Endpoint.__str__`
round-trip.  Resolution happens in :func:`resolve` only, and sockets are opened by
:func:`open_listener` and :func:`open_connection` only.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from sockkit._errors import (
    AddressInUseError,
    EndpointError,
    ResolveError,
    SockkitError,
    translate_os_error,
    translating,
)
from sockkit._inherit import INHERITED_PREFIXES, adopt, inspect_inherited

__all__ = [
    "AddressInfo",
    "Endpoint",
    "Transport",
    "format_sockaddr",
    "lookup",
    "open_connection",
    "open_listener",
    "parse_endpoint",
    "resolve",
    "reverse_lookup",
    "sockaddr_endpoint",
]

Transport = Literal["tcp", "udp", "tls", "unix", "unixgram"]

_INET_SCHEMES: tuple[Transport, ...] = ("tcp", "udp", "tls")
LOOPBACK = "127.0.0.1"
# sun_path is 108 bytes on Linux and needs a terminating NUL for file paths.
_UNIX_PATH_MAX = 107
_SERVICE_PROTO = {"tcp": "tcp", "tls": "tcp", "udp": "udp"}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to listen or connect.

    For ``tcp``/``udp``/``tls``: ``host`` is a name or address (IPv6 without
    brackets), or ``None`` for every interface; ``port`` is 0-65535.  For
    ``unix``/``unixgram``: ``path`` is a file path, or ``@name`` for the abstract
    namespace.  ``str(endpoint)`` gives the canonical text, which parses back to
    an equal value.  ``fd`` is set for an inherited socket (``fd:N``,
    ``systemd:``; see :mod:`sockkit._inherit`): the other fields then describe
    the socket on that descriptor, which is adopted rather than bound, and
    whose socket file is never removed.
    """

    transport: Transport
    host: str | None = None
    port: int = 0
    path: str | None = None
    fd: int | None = None

    @property
    def is_unix(self) -> bool:
        return self.transport in ("unix", "unixgram")

    @property
    def is_datagram(self) -> bool:
        return self.transport in ("udp", "unixgram")

    @property
    def is_stream(self) -> bool:
        return not self.is_datagram

    @property
    def is_tls(self) -> bool:
        return self.transport == "tls"

    @property
    def is_abstract(self) -> bool:
        return self.is_unix and (self.path or "").startswith("@")

    @property
    def socktype(self) -> int:
        return socket.SOCK_DGRAM if self.is_datagram else socket.SOCK_STREAM

    @property
    def address(self) -> str:
        """The address part alone: ``HOST:PORT`` (``[v6]:PORT``, ``:PORT``) or the path."""
        if self.is_unix:
            return self.path or ""
        host = self.host or ""
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{self.port}"

    def with_port(self, port: int) -> Endpoint:
        return Endpoint(self.transport, self.host, port, self.path)

    def __str__(self) -> str:
        if self.fd is not None:
            return f"fd:{self.fd}"
        if self.is_unix:
            return f"{self.transport}:{self.path}"
        return f"{self.transport}://{self.address}"


def parse_endpoint(text: str, default_transport: Transport = "tcp") -> Endpoint:
    """Parse endpoint ``text``; raise :class:`EndpointError` (a usage error) if it is malformed.

    ``default_transport`` is used for the scheme-less forms (``HOST:PORT``,
    ``:PORT``, ``PORT``).
    """
    if not text or text != text.strip():
        raise EndpointError(
            text,
            "expected HOST:PORT, PORT, tcp://, udp://, tls://, unix:, unixgram:, fd: or systemd:",
        )
    if "\x00" in text:
        raise EndpointError(text, "NUL characters are not allowed")
    if text.startswith(INHERITED_PREFIXES):
        found = inspect_inherited(text)
        return Endpoint(found.transport, found.host, found.port, found.path, found.fd)
    for scheme in ("unixgram", "unix"):
        if text.startswith(scheme + ":"):
            return _parse_unix(text, scheme, text[len(scheme) + 1 :])
    scheme, sep, rest = text.partition("://")
    if sep:
        if scheme not in _INET_SCHEMES:
            raise EndpointError(
                text,
                "unknown scheme; expected tcp://, udp://, tls://, unix:, unixgram:, fd: or systemd:",
            )
        return _parse_inet(text, scheme, rest)
    return _parse_inet(text, default_transport, text)


def _parse_unix(text: str, transport: Transport, path: str) -> Endpoint:
    if path.startswith("//"):
        path = path[1:]  # unix:///tmp/s reads as the URL form of /tmp/s
    if not path:
        raise EndpointError(text, "expected a socket path or @name after the colon")
    if path == "@":
        raise EndpointError(text, "expected a name after @ for an abstract socket")
    if len(os.fsencode(path)) > _UNIX_PATH_MAX:
        raise EndpointError(text, f"a Unix socket path is at most {_UNIX_PATH_MAX} bytes")
    return Endpoint(transport, path=path)


def _parse_inet(text: str, transport: Transport, rest: str) -> Endpoint:
    expected = "expected HOST:PORT, [IPv6]:PORT, :PORT or PORT"
    if not rest:
        raise EndpointError(text, expected)
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            raise EndpointError(text, "unclosed '[' in IPv6 address")
        host: str | None = rest[1:close]
        after = rest[close + 1 :]
        if not after.startswith(":"):
            raise EndpointError(text, "expected :PORT after the bracketed IPv6 address")
        port_text = after[1:]
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0] if host else "")
        except ValueError:
            raise EndpointError(text, "brackets must hold an IPv6 address") from None
    elif ":" in rest:
        host, _, port_text = rest.rpartition(":")
        if ":" in host:
            raise EndpointError(text, "put an IPv6 address in brackets: [ADDR]:PORT")
        host = host or None
    else:
        host, port_text = LOOPBACK, rest
        if not (port_text.isdigit() and port_text.isascii()) and not _known_service(
            port_text, transport
        ):
            raise EndpointError(text, "expected HOST:PORT, or a port number or service name alone")
    if host is not None:
        _check_host(text, host)
    return Endpoint(transport, host=host, port=_parse_port(text, port_text, transport))


def _check_host(text: str, host: str) -> None:
    if not host or any(c.isspace() or c in "/?#@[]" for c in host):
        raise EndpointError(text, "expected a host name or an IP address before :PORT")


def _known_service(name: str, transport: Transport) -> bool:
    try:
        socket.getservbyname(name, _SERVICE_PROTO[transport])
    except OSError:
        return False
    return True


def _parse_port(text: str, port_text: str, transport: Transport) -> int:
    if not port_text:
        raise EndpointError(text, "expected a port number or service name after ':'")
    if port_text.isdigit() and port_text.isascii():
        port = int(port_text)
        if port > 65535:
            raise EndpointError(text, "port must be 0-65535")
        return port
    name_ok = port_text[0].isalpha() and port_text.replace("-", "").replace("_", "").isalnum()
    if not name_ok or not port_text.isascii():
        raise EndpointError(text, "expected a port number 0-65535 or a service name")
    try:
        return socket.getservbyname(port_text, _SERVICE_PROTO[transport])
    except OSError:
        raise EndpointError(
            text, f"unknown service name {port_text!r}; expected a port number 0-65535"
        ) from None


@dataclass(frozen=True, slots=True)
class AddressInfo:
    """One getaddrinfo answer."""

    family: socket.AddressFamily
    type: socket.SocketKind
    proto: int
    canonname: str
    sockaddr: tuple[str, int] | tuple[str, int, int, int]

    @property
    def host(self) -> str:
        return self.sockaddr[0]

    @property
    def port(self) -> int:
        return self.sockaddr[1]


def lookup(
    host: str | None,
    service: str | int | None,
    *,
    family: int = socket.AF_UNSPEC,
    socktype: int = 0,
    passive: bool = False,
    canonname: bool = False,
) -> list[AddressInfo]:
    """getaddrinfo, the one place sockkit calls it; errors become :class:`ResolveError`."""
    flags = (socket.AI_PASSIVE if passive else 0) | (socket.AI_CANONNAME if canonname else 0)
    try:
        infos = socket.getaddrinfo(host, service, family, socktype, 0, flags)
    except socket.gaierror as exc:
        raise translate_os_error(exc, "resolve", _lookup_target(host, service)) from exc
    except (UnicodeError, ValueError, OverflowError) as exc:
        raise ResolveError(f"cannot resolve {_lookup_target(host, service)}: {exc}") from exc
    return [AddressInfo(f, t, p, c, a) for f, t, p, c, a in infos]  # type: ignore[arg-type]


def _lookup_target(host: str | None, service: str | int | None) -> str:
    return (
        f"{host or ''}{':' if service is not None else ''}{service if service is not None else ''}"
    )


def reverse_lookup(host: str, port: int = 0, *, numeric: bool = False) -> tuple[str, str]:
    """getnameinfo: ``(host name, service name)`` for an address; :class:`ResolveError` if unknown."""
    flags = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV if numeric else 0
    try:
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
        return socket.getnameinfo(infos[0][4], flags)
    except socket.gaierror as exc:
        raise translate_os_error(exc, "resolve", host) from exc


def resolve(
    endpoint: Endpoint, *, passive: bool = False, family: int = socket.AF_UNSPEC
) -> list[AddressInfo]:
    """Every address to try for an inet endpoint, in the resolver's order.

    ``passive`` asks for addresses to bind.  A wildcard endpoint (``host is None``)
    resolves to the IPv6 wildcard where the host has IPv6, so one dual-stack
    socket serves both families.
    """
    if endpoint.is_unix:
        raise EndpointError(str(endpoint), "a Unix endpoint has no addresses to resolve")
    host = endpoint.host
    if host is None:
        if family in (socket.AF_UNSPEC, socket.AF_INET6) and socket.has_ipv6 and _ipv6_usable():
            host, family = "::", socket.AF_INET6
        else:
            host, family = "0.0.0.0", socket.AF_INET
    return lookup(host, endpoint.port, family=family, socktype=endpoint.socktype, passive=passive)


_ipv6_checked: bool | None = None


def _ipv6_usable() -> bool:
    global _ipv6_checked
    if _ipv6_checked is None:
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
                probe.bind(("::1", 0))
            _ipv6_checked = True
        except OSError:
            _ipv6_checked = False
    return _ipv6_checked


def format_sockaddr(family: int, sockaddr: object) -> str:
    """``127.0.0.1:41122``, ``[::1]:7007``, ``/tmp/s``, ``@name`` or ``(unnamed)`` for a sockaddr."""
    if family == socket.AF_UNIX:
        if isinstance(sockaddr, bytes):
            if not sockaddr:
                return "(unnamed)"
            if sockaddr.startswith(b"\x00"):
                return "@" + sockaddr[1:].decode("utf-8", "replace")
            return os.fsdecode(sockaddr)
        text = str(sockaddr)
        if not text:
            return "(unnamed)"
        return "@" + text[1:] if text.startswith("\x00") else text
    assert isinstance(sockaddr, tuple)
    host, port = sockaddr[0], sockaddr[1]
    if family == socket.AF_INET6:
        if host.startswith("::ffff:") and "." in host:
            host = host[7:]  # an IPv4 peer on a dual-stack socket
        else:
            return f"[{host}]:{port}"
    return f"{host}:{port}"


def sockaddr_endpoint(sock: socket.socket, transport: Transport | None = None) -> Endpoint:
    """The endpoint a socket is actually bound to (port 0 replaced by the real port)."""
    family, addr = sock.family, sock.getsockname()
    if family == socket.AF_UNIX:
        kind: Transport = "unixgram" if sock.type == socket.SOCK_DGRAM else "unix"
        return Endpoint(transport or kind, path=format_sockaddr(family, addr))
    default: Transport = "udp" if sock.type == socket.SOCK_DGRAM else "tcp"
    return Endpoint(transport or default, host=addr[0], port=addr[1])


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
        exc.endpoint = endpoint
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
    raise translate_os_error(last, "bind", endpoint.address) from last


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
    if _is_bare_v6(source):
        ep = Endpoint("tcp", host=source, port=0)
    else:
        try:
            ep = parse_endpoint(source if ":" in source else f"{source}:0")
        except SockkitError:
            raise EndpointError(source, "expected a source ADDR or ADDR:PORT") from None
    infos = resolve(ep, family=family)
    with translating("bind", ep.address):
        sock.bind(infos[0].sockaddr)


def _is_bare_v6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True
