"""Endpoints: one grammar for every command, resolution, and the functions that open sockets.

Three modules, one idea each, layered downwards:

- :mod:`._grammar` -- text to :class:`Endpoint` and back; pure, no look-ups;
- :mod:`._resolve` -- service names, getaddrinfo/getnameinfo, sockaddr text;
- :mod:`._open` -- creating, binding and connecting sockets with sockkit's options.

Everything is re-exported here, so ``from sockkit._endpoint import X`` is the
one import the rest of sockkit uses.
"""

from __future__ import annotations

from sockkit._endpoint._grammar import (
    LOOPBACK,
    Endpoint,
    Transport,
    parse_address,
    parse_endpoint,
    parse_port,
)
from sockkit._endpoint._open import open_connection, open_listener, sockaddr_endpoint
from sockkit._endpoint._resolve import (
    AddressInfo,
    format_sockaddr,
    lookup,
    resolve,
    resolve_service,
    reverse_lookup,
    sockaddr_host,
)

__all__ = [
    "LOOPBACK",
    "AddressInfo",
    "Endpoint",
    "Transport",
    "format_sockaddr",
    "lookup",
    "open_connection",
    "open_listener",
    "parse_address",
    "parse_endpoint",
    "parse_port",
    "resolve",
    "resolve_service",
    "reverse_lookup",
    "sockaddr_endpoint",
    "sockaddr_host",
]
