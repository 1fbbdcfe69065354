"""What a server hands its engine: listeners, limits, access rules, the log and the stop signal.

An engine needs nothing else to serve: it accepts on ``ServeContext.listeners``,
asks ``access.admit`` before reading or writing a byte, keeps to ``limits``,
reports every connection to ``log``, and watches ``stop``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sockkit._endpoint import Endpoint
from sockkit.services._base import Service

__all__ = [
    "REFUSED_DENY",
    "REFUSED_MAX_CONNS",
    "REFUSED_TLS",
    "AccessList",
    "ConnectionLog",
    "Limits",
    "ServeContext",
    "StopSignal",
    "StreamListener",
]


def _default_threads() -> int:
    return max(8, 2 * (os.cpu_count() or 1))


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits every engine honours the same way."""

    #: Most connections served at once; extra clients are closed at once and counted.
    max_conns: int | None = None
    #: Close a connection that neither sends nor receives for this long.
    idle_timeout: float | None = None
    #: Close a connection whose pending output makes no progress for this long.
    send_timeout: float | None = None
    #: After a stop request, how long open connections may go on.
    drain_timeout: float = 10.0
    #: A TLS handshake must finish within this.
    handshake_timeout: float = 10.0
    #: Output buffered above this pauses the service (stop producing, stop reading).
    high_water: int = 64 * 1024
    #: Output drained below this resumes it.
    low_water: int = 16 * 1024
    #: Output buffered past this disconnects the peer: it is not reading.
    output_cap: int = 1024 * 1024
    #: Bytes asked of each recv().
    read_size: int = 256 * 1024
    #: Worker threads of the pool engine.
    threads: int = field(default_factory=_default_threads)


@dataclass(slots=True)
class StreamListener:
    """A bound, listening stream socket and what serves its connections."""

    sock: socket.socket
    #: The real bound endpoint (port 0 already replaced).
    endpoint: Endpoint
    #: Makes one :class:`Service` per accepted connection.
    factory: Callable[[], Service]
    #: Server-side TLS context for ``tls://`` endpoints, else ``None``.
    tls: ssl.SSLContext | None = None


class AccessList:
    """``--allow`` / ``--deny`` CIDR rules.  Deny wins; with any allow rule, the rest are denied.

    Unix peers are always admitted (file permissions guard them).
    """

    def __init__(self, allow: Sequence[str] = (), deny: Sequence[str] = ()) -> None:
        self.allow = [ipaddress.ip_network(c, strict=False) for c in allow]
        self.deny = [ipaddress.ip_network(c, strict=False) for c in deny]

    @property
    def open(self) -> bool:
        """True when there are no rules, so engines may skip the check."""
        return not self.allow and not self.deny

    def admit(self, host: str) -> bool:
        """Whether a peer at IP address ``host`` may be served."""
        if self.open or not host or host.startswith(("/", "@", "(")):
            return True
        addr = ipaddress.ip_address(host.split("%", 1)[0])
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if any(addr in net for net in self.deny):
            return False
        return not self.allow or any(addr in net for net in self.allow)


class StopSignal:
    """A stop request that threads, signal handlers and pollers can all see.

    ``set()`` is safe from a signal handler and from any thread.  ``fd`` becomes
    readable once it is set, so a reactor or an accept loop can poll it beside
    its sockets.  Never cleared.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._closed = False

    @property
    def fd(self) -> int:
        return self._read_fd

    def set(self) -> None:
        self._event.set()
        if self._closed:
            return  # the fd numbers may belong to another file by now
        with contextlib.suppress(OSError):  # pipe full: readable already, all we need
            os.write(self._write_fd, b"x")

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def close(self) -> None:
        """Release the pipe.  ``set`` stays safe to call afterwards; ``fd`` is then invalid."""
        if self._closed:
            return
        self._closed = True
        for fd in (self._read_fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


#: ``ConnectionLog.refused`` reasons shared by every engine.
REFUSED_DENY = "deny"
REFUSED_MAX_CONNS = "max-conns"
REFUSED_TLS = "tls"


class ConnectionLog:
    """Receives one event per connection opened, closed or refused.

    The server supplies the real one (text or JSON lines on stderr); this base
    records nothing, which is what engines get in unit tests.
    """

    #: False when nothing would be written, so engines can skip building records.
    enabled: bool = False

    def opened(self, peer: str, local: str) -> None:
        """A connection from ``peer`` to ``local`` was accepted and admitted."""

    def closed(
        self, peer: str, bytes_in: int, bytes_out: int, duration: float, reason: str | None
    ) -> None:
        """A connection ended; ``reason`` is ``None`` for a normal close."""

    def refused(self, peer: str, reason: str) -> None:
        """A connection was closed without being served.

        ``reason`` is :data:`REFUSED_DENY` (``"deny"``), :data:`REFUSED_MAX_CONNS`
        (``"max-conns"``), or for a failed handshake a text starting with
        :data:`REFUSED_TLS` (``"tls: ..."``); other refusals say why in a few words.
        Logs and counters are keyed on these, so engines use them as they are.
        """


@dataclass(slots=True)
class ServeContext:
    """Everything an engine needs; see the module docstring."""

    listeners: list[StreamListener]
    limits: Limits = field(default_factory=Limits)
    access: AccessList = field(default_factory=AccessList)
    log: ConnectionLog = field(default_factory=ConnectionLog)
    stop: StopSignal = field(default_factory=StopSignal)
