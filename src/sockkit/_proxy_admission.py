"""``serve --proxy-protocol CIDR,...``: which peers are proxies, and the stage before the service.

Rules (HAProxy's PROXY protocol spec, section 1, and why):

- Only peers in the trusted networks may -- and must -- begin with a PROXY
  header.  A connection from anywhere else is refused: a server that accepted
  both, or looked for a header when it saw one, would let any client claim any
  address (the spec forbids guessing).
- The header must arrive within :data:`HEADER_TIMEOUT` seconds (3 s), or the
  connection is closed: a proxy sends it at once, and a peer that sends
  nothing must not hold a connection slot with no service to time it out.
- Once the header is read, the real client's address stands in for the
  peer's everywhere: ``--allow``/``--deny``, the per-address limits and the
  connection log (``peer=`` the client, ``via=`` the proxy).  ``LOCAL`` (a
  health check) and ``UNKNOWN`` headers name no client: the proxy itself is
  then the peer.
- The bytes after the header belong to the service: they are its first data.

:class:`ProxyStage` is the sans-I/O part every engine drives the same way:
``feed`` it what arrives until it returns a :class:`ProxiedPeer`; a
:class:`~sockkit._proxy_protocol.ProxyHeaderError` means close with its text as
the reason.  :func:`read_header_blocking` is that loop for engines that block.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sockkit._proxy_protocol import ProxyHeader, ProxyHeaderError, ProxyHeaderReader

__all__ = [
    "HEADER_TIMEOUT",
    "REFUSED_UNTRUSTED",
    "ProxiedPeer",
    "ProxyProtocol",
    "ProxyStage",
    "format_address",
    "read_header_blocking",
]

#: Seconds a trusted proxy has to send its header.
HEADER_TIMEOUT = 3.0
#: The refusal reason for a peer outside the trusted networks.
REFUSED_UNTRUSTED = "proxy-protocol: not a trusted proxy"

#: A socket address as ``accept()`` returns it.
Address = tuple[str, int] | tuple[str, int, int, int] | str | bytes


def format_address(address: Address) -> str:
    """``1.2.3.4:5``, ``[2001:db8::1]:5`` or a Unix path, as the connection log shows peers."""
    if isinstance(address, tuple):
        host, port = address[0], address[1]
        if host.startswith("::ffff:") and "." in host:
            host = host[7:]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(address, bytes):
        return address.decode("utf-8", "backslashreplace") or "(unnamed)"
    return address or "(unnamed)"


class ProxyProtocol:
    """The trusted proxies' networks and the header deadline.

    Raises :class:`ValueError` (naming the text) for a network that does not parse.
    """

    def __init__(self, trusted: Sequence[str], timeout: float = HEADER_TIMEOUT) -> None:
        if not trusted:
            raise ValueError("expected at least one CIDR of trusted proxies")
        self.networks = [ipaddress.ip_network(text.strip(), strict=False) for text in trusted]
        self.timeout = timeout

    @classmethod
    def from_option(cls, text: str) -> ProxyProtocol:
        """From ``--proxy-protocol CIDR[,CIDR...]``."""
        return cls([part for part in text.split(",") if part.strip()])

    def trusts(self, address: Address) -> bool:
        """Whether the peer at ``address`` is a proxy that must send a header (IP peers only)."""
        if not isinstance(address, tuple):
            return False
        addr = ipaddress.ip_address(address[0].split("%", 1)[0])
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.networks)

    def stage(self, address: Address) -> ProxyStage:
        """The header stage of a connection from the trusted proxy at ``address``."""
        return ProxyStage(address)


@dataclass(frozen=True, slots=True)
class ProxiedPeer:
    """Who a proxied connection is really from."""

    #: The client's address (the proxy's own for LOCAL/UNKNOWN headers).
    address: Address
    #: The proxy's address: the connection's real peer.
    proxy: Address
    #: Bytes that followed the header: the service's first data.
    leftover: bytes
    header: ProxyHeader

    @property
    def peer(self) -> str:
        return format_address(self.address)

    @property
    def via(self) -> str:
        return format_address(self.proxy)


class ProxyStage:
    """Reads one connection's PROXY header; see the module docstring for the rules."""

    def __init__(self, proxy: Address) -> None:
        self.proxy = proxy
        self._reader = ProxyHeaderReader()

    @property
    def wanted(self) -> int:
        """How many bytes to ask the next recv() for without reading far past the header."""
        return max(1, self._reader.wanted)

    def feed(self, data: bytes) -> ProxiedPeer | None:
        """Add received ``data`` (``b""`` = the peer closed); the peer once the header is complete.

        Raises :class:`ProxyHeaderError` for a malformed header or a close before it.
        """
        if not data:
            raise ProxyHeaderError("proxy-protocol: connection closed before the PROXY header")
        try:
            header = self._reader.feed(data)
        except ProxyHeaderError as exc:
            raise ProxyHeaderError(f"proxy-protocol: {exc}") from None
        if header is None:
            return None
        source = header.source if header.source is not None else self.proxy
        return ProxiedPeer(source, self.proxy, self._reader.leftover, header)


def read_header_blocking(
    sock: socket.socket, stage: ProxyStage, timeout: float = HEADER_TIMEOUT
) -> ProxiedPeer:
    """Read the header from blocking ``sock`` within ``timeout`` seconds in all.

    Raises :class:`ProxyHeaderError` (malformed, closed early, or late).  The
    socket's own timeout is restored afterwards.
    """
    deadline = time.monotonic() + timeout
    previous = sock.gettimeout()
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProxyHeaderError(f"proxy-protocol: no PROXY header within {timeout:g} s")
            sock.settimeout(left)
            try:
                data = sock.recv(stage.wanted)
            except TimeoutError:
                continue
            except OSError as exc:
                raise ProxyHeaderError(f"proxy-protocol: {exc.strerror or exc}") from None
            peer = stage.feed(data)
            if peer is not None:
                return peer
    finally:
        sock.settimeout(previous)
