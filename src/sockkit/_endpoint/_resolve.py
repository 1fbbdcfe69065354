"""Resolution: service names to ports, names to addresses, sockaddrs back to text.

The one place sockkit asks the resolver anything (``getservbyname``,
``getaddrinfo``, ``getnameinfo``, the interface index of an IPv6 scope).  The
grammar (:mod:`sockkit._endpoint._grammar`) leaves service names as text; they
become numbers here, in :func:`resolve_service`, which :func:`resolve` calls
first.  An IPv6 scope is kept in every address text this module gives
(``fe80::1%lo``), so what is printed can be typed back.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from sockkit._endpoint._grammar import Endpoint
from sockkit._errors import EndpointError, ResolveError, translate_os_error

__all__ = [
    "AddressInfo",
    "format_sockaddr",
    "lookup",
    "resolve",
    "resolve_service",
    "reverse_lookup",
    "sockaddr_host",
]

_SERVICE_PROTO = {"tcp": "tcp", "tls": "tcp", "udp": "udp"}


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
        """The address text, with ``%scope`` for a scoped IPv6 address."""
        return sockaddr_host(self.sockaddr)

    @property
    def port(self) -> int:
        return self.sockaddr[1]


def resolve_service(endpoint: Endpoint) -> Endpoint:
    """``endpoint`` with a service-name port replaced by its number (``http`` -> 80).

    Looked up with getservbyname for the endpoint's protocol (tcp for ``tls``).
    Unix endpoints and numeric ports come back unchanged.  An unknown name is a
    usage error (:class:`EndpointError`), as a malformed endpoint is.
    """
    if endpoint.is_unix or isinstance(endpoint.port, int):
        return endpoint
    try:
        number = socket.getservbyname(endpoint.port, _SERVICE_PROTO[endpoint.transport])
    except OSError:
        raise EndpointError(
            endpoint.address,
            f"unknown service name {endpoint.port!r}; expected a port number 0-65535"
            " (a host needs HOST:PORT)",
        ) from None
    return endpoint.with_port(number)


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
    """getnameinfo: ``(host name, service name)`` for an address; :class:`ResolveError` if unknown.

    ``host`` must be a numeric address; an IPv6 one may carry its ``%scope``.
    """
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

    A service-name port is looked up first (:func:`resolve_service`).
    ``passive`` asks for addresses to bind.  A wildcard endpoint (``host is
    None``) resolves to the IPv6 wildcard where the host has IPv6, so one
    dual-stack socket serves both families.
    """
    if endpoint.is_unix:
        raise EndpointError(str(endpoint), "a Unix endpoint has no addresses to resolve")
    port = resolve_service(endpoint).port
    host = endpoint.host
    if host is None:
        if family in (socket.AF_UNSPEC, socket.AF_INET6) and socket.has_ipv6 and _ipv6_usable():
            host, family = "::", socket.AF_INET6
        else:
            host, family = "0.0.0.0", socket.AF_INET
    return lookup(host, port, family=family, socktype=endpoint.socktype, passive=passive)


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


def sockaddr_host(sockaddr: tuple[str, int] | tuple[str, int, int, int]) -> str:
    """The host of an inet sockaddr as text, with ``%scope`` when it has a scope id."""
    host = sockaddr[0]
    if len(sockaddr) == 4 and sockaddr[3] and "%" not in host:
        scope_id = sockaddr[3]
        try:
            scope = socket.if_indextoname(scope_id)
        except OSError:
            scope = str(scope_id)  # an interface that has gone: its index still routes
        host = f"{host}%{scope}"
    return host


def format_sockaddr(family: int, sockaddr: object) -> str:
    """``127.0.0.1:41122``, ``[::1]:7007``, ``[fe80::1%lo]:22``, ``/tmp/s``, ``@name``, ``(unnamed)``."""
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
            return f"[{sockaddr_host(sockaddr)}]:{port}"
    return f"{host}:{port}"
