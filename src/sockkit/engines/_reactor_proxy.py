"""A reactor connection from a trusted proxy: its PROXY header first, then the plain pump.

Like the TLS handshake, the header is a stage before serving: the connection
is registered for READ with :meth:`ProxiedConnection.on_header` as handler,
feeds what arrives to a :class:`~sockkit._proxy_admission.ProxyStage`, and
once the header is complete admits the client it names (``--allow/--deny``),
logs ``opened CLIENT -> LOCAL via=PROXY`` and serves, the bytes that followed
the header going to the service first.  The reactor's sweep closes it if the
header is not complete within ``proxy.timeout`` (3 s).
"""

from __future__ import annotations

import os
import socket

from sockkit._accept import SockAddr
from sockkit._proxy_admission import ProxyStage
from sockkit._proxy_protocol import ProxyHeaderError
from sockkit.engines._reactor_conn import Connection
from sockkit.engines._reactor_poll import READ, Callback
from sockkit.services._base import Service

__all__ = ["ProxiedConnection"]

_RETRY = (BlockingIOError, InterruptedError)


class ProxiedConnection(Connection):
    """A connection whose first bytes are a PROXY header (see the module docstring)."""

    __slots__ = ("_first", "_stage", "deadline", "via")

    def __init__(self, sock: socket.socket, addr: SockAddr, peer: str, timeout: float) -> None:
        super().__init__(sock, peer)
        self._stage = ProxyStage(addr)
        self._first = b""
        #: Seconds after opening by which the header must be complete.
        self.deadline = timeout
        self.via: str | None = None

    def begin(self) -> None:
        """Register for the header; serving follows when it is complete."""
        self.host.poller.register(self.fd, READ, Callback(self.on_header))
        self.events = READ

    def on_header(self, mask: int) -> None:
        try:
            data = os.read(self.fd, self._stage.wanted)
        except _RETRY:
            return
        except OSError as exc:
            self.close(f"proxy-protocol: {exc.strerror or exc}")
            return
        try:
            proxied = self._stage.feed(data)
        except ProxyHeaderError as exc:
            self.close(str(exc))
            return
        if proxied is None:
            return
        self.via, self.peer = self.peer, proxied.peer
        refusal = self.host.ctx.admission.admit_client(proxied.address)
        if refusal is not None:
            self.close(refusal)
            return
        self.host.hold_slot(self.fd, proxied.address)
        self._first = proxied.leftover
        # Drop the header handler: serving registers its own.
        self.host.poller.unregister(self.fd)
        self.events = 0
        try:
            service = type(self).factory()
        except Exception as exc:
            self.fail(exc)
            return
        try:
            self.begin_serving(service)
        except Exception as exc:
            self.fail(exc)

    def begin_serving(self, service: Service) -> None:
        self.service = service
        self.serving = True
        service.wakeup = self
        self.host.ctx.log.opened(self.peer, self.local, self.via)
        self.start(self.peer)
        if self._first:
            self.receive(self._first)
        self.pump()

    def header_late(self, now: float) -> bool:
        """Whether the header is still incomplete past its deadline."""
        return not self.serving and now - self.opened_at >= self.deadline
