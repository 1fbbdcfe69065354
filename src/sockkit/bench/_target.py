"""Where the load goes: a loopback or Unix endpoint, resolved once into a socket address.

The load generator refuses anything else -- it is a tool for measuring servers on
this machine, not for loading other people's hosts.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass

from sockkit._endpoint import Endpoint, resolve
from sockkit._errors import UsageError

__all__ = ["Target", "resolve_target"]


@dataclass(frozen=True, slots=True)
class Target:
    """A resolved endpoint: what ``socket()`` and ``connect()`` need."""

    endpoint: Endpoint
    family: int
    socktype: int
    address: str | bytes | tuple[str, int] | tuple[str, int, int, int]

    @property
    def is_datagram(self) -> bool:
        return self.socktype == socket.SOCK_DGRAM

    @property
    def is_ipv4(self) -> bool:
        return self.family == socket.AF_INET


def resolve_target(endpoint: Endpoint) -> Target:
    """Resolve ``endpoint`` to a loopback or Unix address; :class:`UsageError` otherwise.

    TLS is refused too (the generator speaks plain bytes).
    """
    if endpoint.is_tls:
        raise UsageError(f"bench cannot load {endpoint}: TLS endpoints are not supported")
    if endpoint.is_unix:
        path = endpoint.path or ""
        address: str | bytes = b"\x00" + os.fsencode(path[1:]) if path.startswith("@") else path
        return Target(endpoint, socket.AF_UNIX, endpoint.socktype, address)
    if endpoint.host is None:
        raise UsageError(f"bench needs a host to connect to, got {endpoint}; try 127.0.0.1:PORT")
    infos = resolve(endpoint)
    for info in infos:
        if not ipaddress.ip_address(info.host.split("%", 1)[0]).is_loopback:
            raise UsageError(
                f"bench only loads loopback or Unix targets; {endpoint} resolves to {info.host}"
            )
    if endpoint.port == 0:
        raise UsageError(f"bench needs a port to connect to, got {endpoint}")
    info = infos[0]
    return Target(endpoint, info.family, endpoint.socktype, info.sockaddr)
