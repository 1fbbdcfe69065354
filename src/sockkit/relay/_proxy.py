"""A proxy: one listening endpoint relayed to one target, with its toxics and counters.

Lifecycle: :meth:`Proxy.start` binds and begins accepting (or receiving
datagrams); :meth:`Proxy.stop` closes the listener and ends every live
connection, as toxiproxy does when a proxy is disabled.  Toxics may be
added, changed and removed at any time; live connections see the change on
their next bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
import socket
import ssl
import time
from typing import TYPE_CHECKING, Any

from sockkit._accept import AsyncAcceptor, SockAddr
from sockkit._endpoint import Endpoint, format_sockaddr, open_listener, sockaddr_endpoint
from sockkit._errors import SockkitError
from sockkit.relay._dial import dial
from sockkit.relay._host import Observer
from sockkit.relay._link import Link
from sockkit.relay._log import event
from sockkit.relay._proxy_header import proxy_header
from sockkit.relay._sides import PlainSide, Side, tls_accept, tls_connect
from sockkit.relay._tls import RelayTLS, accept_context, connect_context
from sockkit.relay._toxics import Toxic

if TYPE_CHECKING:
    from sockkit.relay._datagram import DatagramRelay

__all__ = ["Proxy"]

_ids = itertools.count(1)


class Proxy:
    """``listen`` relayed to ``upstream``; ``listen_text``/``upstream_text`` are as the user wrote them."""

    def __init__(
        self,
        name: str,
        listen: Endpoint,
        upstream: Endpoint,
        *,
        enabled: bool = True,
        connect_timeout: float = 10.0,
        upstream_text: str | None = None,
        rng: random.Random | None = None,
        tls: RelayTLS | None = None,
    ) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.upstream_text = upstream_text or upstream.address
        self.enabled = enabled
        self.send_proxy: str | None = None
        self.tls = tls or RelayTLS()
        self._accept_ctx: ssl.SSLContext | None = None
        self._connect_ctx: ssl.SSLContext | None = (
            None  # "v1"/"v2": PROXY header to the target first
        )
        self.connect_timeout = connect_timeout
        self.rng = rng or random.Random()
        self.toxics: list[Toxic] = []
        self.generation = 0  # bumped whenever toxics or observers change
        self.observers: list[Observer] = []
        self.links: dict[int, Link] = {}
        self.bound: Endpoint | None = None
        self.connections = 0  # accepted since the proxy was created
        self._bytes = {"upstream": 0, "downstream": 0}  # of links' ended fast paths and copies
        self._sock: socket.socket | None = None
        self._acceptor: AsyncAcceptor | None = None
        self._datagrams: DatagramRelay | None = None
        self._tasks: set[asyncio.Future[None]] = set()

    @property
    def datagram(self) -> bool:
        return self.listen.is_datagram

    @property
    def listen_text(self) -> str:
        """The bound address (real port) in toxiproxy's ``host:port`` form; the path for Unix."""
        where = self.bound or self.listen
        if where.is_unix:
            return str(where)
        prefix = "udp://" if where.is_datagram else ""
        return prefix + where.address

    @property
    def busy(self) -> int:
        """Connections open or being opened."""
        return len(self._tasks)

    @property
    def bytes(self) -> dict[str, int]:
        """Bytes relayed per direction so far, open connections' fast paths included."""
        links = self.links.values()
        return {way: n + sum(link.pumped(way) for link in links) for way, n in self._bytes.items()}

    def count(self, way: str, n: int) -> None:
        self._bytes[way] += n

    def changed(self) -> None:
        """Toxics or observers changed: live connections look again at what touches them."""
        self.generation += 1
        for link in list(self.links.values()):
            link.recheck()

    def to_json(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "listen": self.listen_text,
            "upstream": self.upstream_text,
            "enabled": self.enabled,
            "toxics": [t.to_json() for t in self.toxics],
        }
        if self.send_proxy is not None:
            out["send_proxy"] = self.send_proxy
        return out

    async def _open(self, client: socket.socket, address: SockAddr) -> tuple[Side, Side]:
        """Both ends ready: TLS handshakes done, the target dialled, the PROXY header sent."""
        timeout = self.connect_timeout
        front: Side = PlainSide(client)
        if self._accept_ctx is not None:
            front = await tls_accept(client, self._accept_ctx, timeout)
        sock = await dial(self.upstream, timeout)
        try:
            if self.send_proxy is not None:
                header = proxy_header(self.send_proxy, address, client.getsockname())
                await asyncio.get_running_loop().sock_sendall(sock, header)
            back: Side = PlainSide(sock)
            if self._connect_ctx is not None:
                back = await tls_connect(sock, self._connect_ctx, self.upstream.host, timeout)
        except BaseException:
            sock.close()
            front.close()
            raise
        return front, back

    # -- listening --------------------------------------------------------------

    async def start(self) -> None:
        """Bind (reusing the bound port after a restart) and begin relaying.

        Raises :class:`SockkitError` when the address cannot be bound, or
        :class:`UsageError` when a TLS leg's files cannot be loaded.
        """
        if self._sock is not None:
            return
        if self.listen.is_tls and self._accept_ctx is None:
            self._accept_ctx = accept_context(self.tls)
        if self.upstream.is_tls and self._connect_ctx is None:
            self._connect_ctx = connect_context(self.tls)
        where = self.listen
        if self.bound is not None and not where.is_unix and where.fd is None:
            where = where.with_port(self.bound.port)
        sock = open_listener(where)
        self._sock = sock
        self.bound = sockaddr_endpoint(sock)
        sock.setblocking(False)
        if self.datagram:
            from sockkit.relay._datagram import DatagramRelay

            self._datagrams = DatagramRelay(self, sock)
            await self._datagrams.start()
        else:
            self._acceptor = AsyncAcceptor(
                sock, self._accepted, where=str(self.bound), warn=lambda m: event(30, m)
            )
            self._acceptor.start()
        self.enabled = True
        event(
            logging.INFO,
            f"listening on {self.bound} -> {self.upstream}",
            event="listening",
            proxy=self.name,
            local=str(self.bound),
            upstream=str(self.upstream),
        )

    async def stop(self) -> None:
        """Stop listening and end every live connection."""
        self.stop_listening()
        await self.close_links()

    def stop_listening(self) -> None:
        """Close the listener (new clients are refused); live connections go on."""
        self.enabled = False
        if self._acceptor is not None:
            self._acceptor.close()
            self._acceptor = None
        if self._datagrams is not None:
            self._datagrams.close()
            self._datagrams = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            bound = self.bound
            if (
                bound is not None
                and bound.is_unix
                and not bound.is_abstract
                and self.listen.fd is None
            ):
                with contextlib.suppress(OSError):
                    os.unlink(bound.path or "")

    async def close_links(self, reason: str = "proxy stopped") -> None:
        """End every live connection now (FIN both sides) and every one being opened."""
        for link in list(self.links.values()):
            link.close(reason)
        tasks = list(self._tasks)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=0.5)
            for task in late:  # still dialling the target or in a TLS handshake
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=0.5)

    async def drained(self) -> None:
        """Wait until every live connection (and every one being opened) has ended."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    def _accepted(self, sock: socket.socket, address: SockAddr) -> None:
        sock.setblocking(False)  # the descriptor accept() gives is blocking
        self.connections += 1
        peer = format_sockaddr(sock.family, address)
        task = asyncio.ensure_future(self._serve(sock, address, peer, self.connections))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(
        self, client: socket.socket, address: SockAddr, peer: str, number: int
    ) -> None:
        started = time.monotonic()
        if client.family != socket.AF_UNIX:
            with contextlib.suppress(OSError):
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            ends = await self._open(client, address)
        except asyncio.CancelledError:
            client.close()  # stopped while the target was being dialled
            raise
        except (SockkitError, OSError, ssl.SSLError) as exc:
            # As toxiproxy does: the client sees its connection closed.
            client.close()
            reason = str(exc) if isinstance(exc, SockkitError) else _tls_reason(exc)
            event(
                logging.WARNING,
                f"refused {peer}: {reason}",
                event="refused",
                proxy=self.name,
                peer=peer,
                reason=reason,
            )
            return
        link = Link(self, number, *ends, peer, self.rng)
        link_id = next(_ids)
        self.links[link_id] = link
        link.task = asyncio.current_task()
        event(
            logging.INFO,
            f"opened {peer} -> {self.upstream}",
            event="opened",
            proxy=self.name,
            id=link_id,
            peer=peer,
            upstream=str(self.upstream),
        )
        try:
            await link.run()
        except asyncio.CancelledError:
            pass
        finally:
            del self.links[link_id]
            duration = time.monotonic() - started
            reason = f" ({link.reason})" if link.reason else ""
            event(
                logging.INFO,
                f"closed {peer} in={link.sent['upstream']} out={link.sent['downstream']}"
                f" duration={duration:.3f}s{reason}",
                event="closed",
                proxy=self.name,
                id=link_id,
                peer=peer,
                bytes_in=link.sent["upstream"],
                bytes_out=link.sent["downstream"],
                duration=round(duration, 6),
                reason=link.reason,
            )


def _tls_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, TimeoutError):
        return "TLS handshake timed out"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
