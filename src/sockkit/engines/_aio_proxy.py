"""An asyncio connection from a trusted proxy: its PROXY header first, then the usual protocol.

The header stage of ``--proxy-protocol`` for the asyncio and uvloop engines,
the same rules as the other engines (:mod:`sockkit._proxy_admission`): the
acceptor's admission has already refused a peer that is not a trusted proxy;
here the first bytes go to a :class:`~sockkit._proxy_admission.ProxyStage`
until the header is complete, with a ``call_later`` deadline; then the client
it names is checked against ``--allow/--deny``, logged as ``opened CLIENT ->
LOCAL via=PROXY``, and served, the bytes after the header going to the
service first.  A malformed, late or missing header closes the connection
with one ``refused`` line giving the reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any

from sockkit._accept import SockAddr
from sockkit._proxy_admission import ProxyProtocol, ProxyStage
from sockkit._proxy_protocol import ProxyHeaderError
from sockkit.engines._aio_protocol import _NO_SERVICE, Conn, Door, TrackedConn
from sockkit.engines._core import ConnectionRules

__all__ = ["proxied_protocol_factory"]


class ProxiedConn(TrackedConn):
    """A :class:`TrackedConn` that reads a PROXY header before its service exists."""

    __slots__ = ("_counted", "_stage", "_timer", "_via")

    _proxy: ProxyProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        ConnectionRules.__init__(self, _NO_SERVICE)
        self._stage: ProxyStage | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._via: str | None = None
        #: The client's address once it holds a per-address slot.
        self._counted: SockAddr | None = None
        door = self._door
        if not door.admits(transport):  # not a trusted proxy, or max-conns
            self.should_close = True
            return
        door.hub.add(self)
        self._stage = ProxyStage(transport.get_extra_info("peername"))
        self._timer = door.hub.loop.call_later(self._proxy.timeout, self._late)

    def data_received(self, data: bytes) -> None:
        stage = self._stage
        if stage is None:
            if self.service is not _NO_SERVICE:
                super().data_received(data)
            return
        try:
            proxied = stage.feed(data)
        except ProxyHeaderError as exc:
            self._refuse(str(exc))
            return
        if proxied is None:
            return
        self._end_stage()
        admission = self._door.hub.admission
        refusal = admission.admit_client(proxied.address)
        if refusal is not None:
            self._refuse(refusal, proxied.peer)
            return
        self._counted = proxied.address if admission.per_ip is not None else None
        self._via = proxied.via
        self._serve(self._door.factory(), proxied.peer)
        if proxied.leftover and not self.should_close:
            super().data_received(proxied.leftover)

    def eof_received(self) -> bool:
        if self._stage is not None:
            self._refuse("proxy-protocol: connection closed before the PROXY header")
            return False
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._stage is not None:  # gone during the header: admitted, never served
            self._end_stage()
            self._door.hub.forget(self)
            return
        super().connection_lost(exc)
        counted, self._counted = self._counted, None
        if counted is not None:
            self._door.hub.admission.release(counted)

    def _opened(self, peer: str) -> None:
        self._peer = peer
        self._opened_at = self._door.hub.loop.time()
        self._door.hub.log.opened(peer, self._door.local, self._via)

    def _late(self) -> None:
        if self._stage is not None:
            self._refuse(f"proxy-protocol: no PROXY header within {self._proxy.timeout:g} s")

    def _end_stage(self) -> None:
        self._stage = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _refuse(self, reason: str, peer: str | None = None) -> None:
        self._end_stage()
        door = self._door
        name = peer if peer is not None else door.peer(self._transport)
        self._transport.abort()
        door.hub.forget(self)
        if door.hub.log.enabled:
            door.hub.log.refused(name, reason)


def proxied_protocol_factory(door: Door, proxy: ProxyProtocol) -> Callable[[], Conn]:
    """The protocol factory for ``door``'s listener when every peer is a proxy."""
    attributes: dict[str, Any] = {
        "__slots__": (),
        "_door": door,
        "_limits": door.limits,
        "_timed": True,
        "_proxy": proxy,
    }
    cls = type(ProxiedConn.__name__, (ProxiedConn,), attributes)
    return partial(object.__new__, cls)
