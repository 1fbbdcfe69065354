"""The endpoint grammar: text to :class:`Endpoint` and back, with no look-ups at all.

Grammar (see DESIGN.md)::

    tcp://HOST:PORT   udp://HOST:PORT   tls://HOST:PORT
    unix:PATH   unix:@NAME   unixgram:PATH   unixgram:@NAME
    HOST:PORT         same as tcp://HOST:PORT
    :PORT             every interface (dual-stack where the host has IPv6)
    PORT              loopback only, 127.0.0.1 -- the safe default
    fd:N              an already-open socket on descriptor N (inherited)
    systemd:[NAME]    the socket systemd socket activation passed (LISTEN_FDS)

HOST is a name, an IPv4 address or a bracketed IPv6 address (``[::1]``,
``[fe80::1%lo]`` with its scope).  PORT is 0-65535 or a service name.  The same
wildcard and loopback short forms work after a scheme (``udp://:9000``,
``udp://9000``).

Everything here is pure: no resolver, no ``getservbyname``, no socket.  A
service name stays a name in the :class:`Endpoint` (``port="http"``) and is
turned into a number by the resolution step (:mod:`sockkit._endpoint._resolve`),
so :func:`parse_endpoint` and :meth:`Endpoint.__str__` round-trip exactly and
give the same answer on every machine.

The one exception is an inherited socket (``fd:N``, ``systemd:``): what it is
(TCP or UDP, stream or datagram, which address) is a property of the
descriptor, not of the text, and every command needs it at once; so the
grammar asks the descriptor (:mod:`sockkit._inherit`, getsockopt only).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import Literal

from sockkit._errors import EndpointError
from sockkit._inherit import INHERITED_PREFIXES, inspect_inherited

__all__ = [
    "LOOPBACK",
    "Endpoint",
    "Transport",
    "parse_address",
    "parse_endpoint",
    "parse_port",
]

Transport = Literal["tcp", "udp", "tls", "unix", "unixgram"]

_INET_SCHEMES: tuple[Transport, ...] = ("tcp", "udp", "tls")
LOOPBACK = "127.0.0.1"
# sun_path is 108 bytes on Linux and needs a terminating NUL for file paths.
_UNIX_PATH_MAX = 107
_PORT_MAX = 65535


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to listen or connect.

    For ``tcp``/``udp``/``tls``: ``host`` is a name or address (IPv6 without
    brackets, with its ``%scope`` if any), or ``None`` for every interface;
    ``port`` is 0-65535 or a service name not yet looked up (see
    :func:`~sockkit._endpoint.resolve_service`).  For ``unix``/``unixgram``:
    ``path`` is a file path, or ``@name`` for the abstract namespace.
    ``str(endpoint)`` gives the canonical text, which parses back to an equal
    value.  ``fd`` is set for an inherited socket (``fd:N``, ``systemd:``; see
    :mod:`sockkit._inherit`): the other fields then describe the socket on that
    descriptor, which is adopted rather than bound, and whose socket file is
    never removed.
    """

    transport: Transport
    host: str | None = None
    port: int | str = 0
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

    def with_port(self, port: int | str) -> Endpoint:
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
    ``:PORT``, ``PORT``).  A service name is kept as text: whether it exists is
    the resolution step's question.
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


def parse_address(text: str, default_port: int = 0) -> Endpoint:
    """An address with an optional port: ``ADDR``, ``ADDR:PORT``, ``[IPv6]:PORT`` or a bare IPv6.

    The form ``--source`` and ``resolve --reverse`` take.  A bare IPv6 address
    (``fe80::1%lo``) needs no brackets because nothing follows it; ``ADDR``
    alone gets ``default_port``.  Raises :class:`EndpointError`.
    """
    if text and _is_ipv6(text):
        return Endpoint("tcp", host=text, port=default_port)
    if text.startswith("[") or ":" in text:
        return parse_endpoint(text)
    if not text:
        raise EndpointError(text, "expected ADDR, ADDR:PORT or [IPv6]:PORT")
    _check_host(text, text)
    return Endpoint("tcp", host=text, port=default_port)


def parse_port(text: str) -> int | str:
    """A port number 0-65535 (as an int) or a well-formed service name (as given).

    Raises :class:`EndpointError` naming ``text``: ``port must be 0-65535`` for
    a number out of range, as every command says it.
    """
    return _parse_port(text, text)


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
        if not _is_ipv6(host or ""):
            raise EndpointError(text, "brackets must hold an IPv6 address")
    elif ":" in rest:
        host, _, port_text = rest.rpartition(":")
        if ":" in host:
            raise EndpointError(text, "put an IPv6 address in brackets: [ADDR]:PORT")
        host = host or None
    else:
        host, port_text = LOOPBACK, rest
        if not _is_digits(port_text) and not _is_service_name(port_text):
            raise EndpointError(text, "expected HOST:PORT, or a port number or service name alone")
    if host is not None:
        _check_host(text, host)
    return Endpoint(transport, host=host, port=_parse_port(text, port_text))


def _is_ipv6(text: str) -> bool:
    address, _, scope = text.partition("%")
    if "%" in text and (not scope or any(c.isspace() or c in "/[]%" for c in scope)):
        return False
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return False
    return True


def _check_host(text: str, host: str) -> None:
    if not host or any(c.isspace() or c in "/?#@[]" for c in host):
        raise EndpointError(text, "expected a host name or an IP address before :PORT")


def _is_digits(text: str) -> bool:
    return text.isdigit() and text.isascii()


def _is_service_name(text: str) -> bool:
    # /etc/services names: a letter first, then letters, digits, '-' or '_'.
    return (
        bool(text)
        and text.isascii()
        and text[0].isalpha()
        and text.replace("-", "").replace("_", "").isalnum()
    )


def _parse_port(text: str, port_text: str) -> int | str:
    if not port_text:
        raise EndpointError(text, "expected a port number or service name after ':'")
    if _is_digits(port_text):
        port = int(port_text)
        if port > _PORT_MAX:
            raise EndpointError(text, "port must be 0-65535")
        return port
    if not _is_service_name(port_text):
        raise EndpointError(text, "expected a port number 0-65535 or a service name")
    return port_text
