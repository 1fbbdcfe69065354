"""The proxies of one relay process, driven by toxiproxy's JSON requests.

Each method takes a decoded JSON body (or names from the URL) and returns
the JSON to answer with, or raises :class:`ApiError` with toxiproxy's status
and message (400 bad body / unknown toxic, 404 not found, 409 exists).
Nothing here speaks HTTP; :mod:`sockkit.relay._api` does.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

from sockkit._endpoint import Endpoint, parse_endpoint, resolve_service
from sockkit._errors import SockkitError, UsageError
from sockkit._version import __version__
from sockkit.relay._log import event
from sockkit.relay._proxy import Proxy
from sockkit.relay._tls import RelayTLS
from sockkit.relay._toxics import Toxic, ToxicError, parse_toxic

__all__ = ["ApiError", "Registry"]


class ApiError(Exception):
    """An answer other than success: ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def to_json(self) -> dict[str, Any]:
        return {"error": self.message, "status": self.status}


def _endpoint(text: object, what: str, datagram_hint: bool = False) -> Endpoint:
    if isinstance(text, Endpoint):
        return resolve_service(text)  # already parsed (the command line's LISTEN and TARGET)
    if not isinstance(text, str) or not text:
        raise ApiError(400, f"missing required field: {what}")
    try:
        endpoint = parse_endpoint(text, default_transport="udp" if datagram_hint else "tcp")
        return resolve_service(endpoint)
    except SockkitError as exc:
        raise ApiError(400, f"bad {what} {text!r}: {exc}") from None


class Registry:
    """Proxies by name, in creation order."""

    def __init__(self, tls: RelayTLS | None = None) -> None:
        self.tls = tls
        self.proxies: dict[str, Proxy] = {}
        self._serials = itertools.count(1)

    def get(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise ApiError(404, "proxy not found")
        return proxy

    def index(self) -> dict[str, Any]:
        return {name: proxy.to_json() for name, proxy in self.proxies.items()}

    async def create(self, body: object, *, replace: bool = False) -> Proxy:
        """A new proxy from ``{"name", "listen", "upstream", "enabled"}``; started if enabled."""
        if not isinstance(body, dict):
            raise ApiError(400, "bad request body: a proxy is a JSON object")
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "missing required field: name")
        listen = _endpoint(body.get("listen") or "127.0.0.1:0", "listen")
        upstream = _endpoint(body.get("upstream"), "upstream", listen.is_datagram)
        if listen.is_datagram != upstream.is_datagram:
            raise ApiError(400, "listen and upstream must both be streams or both datagrams")
        enabled = body.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ApiError(400, "bad request body: enabled must be true or false")
        old = self.proxies.get(name)
        if old is not None:
            if not replace:
                raise ApiError(409, "proxy already exists")
            await self.delete(name)
        send_proxy = body.get("send_proxy")
        if send_proxy not in (None, "v1", "v2"):
            raise ApiError(400, "bad request body: send_proxy is v1 or v2")
        if send_proxy is not None and listen.is_datagram:
            raise ApiError(400, "send_proxy applies to stream proxies")
        proxy = Proxy(
            name,
            listen,
            upstream,
            enabled=enabled,
            upstream_text=str(body["upstream"]),
            tls=self.tls,
        )
        proxy.send_proxy = send_proxy
        if enabled:
            try:
                await proxy.start()
            except UsageError as exc:
                raise ApiError(400, str(exc)) from exc
            except SockkitError as exc:
                raise ApiError(500, str(exc)) from exc
        self.proxies[name] = proxy
        return proxy

    async def populate(self, body: object) -> list[Proxy]:
        """Create (or re-create when changed) every proxy of a JSON list."""
        if not isinstance(body, list):
            raise ApiError(400, "bad request body: populate takes a JSON list of proxies")
        made = []
        for item in body:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                old = self.proxies.get(item["name"])
                same = old is not None and old.upstream_text == item.get("upstream")
                if same and old is not None and item.get("listen") in (None, old.listen_text):
                    made.append(old)
                    continue
            made.append(await self.create(item, replace=True))
        return made

    async def update(self, name: str, body: object) -> Proxy:
        """Change ``enabled`` (and ``listen``/``upstream``, which restart the proxy)."""
        proxy = self.get(name)
        if not isinstance(body, dict):
            raise ApiError(400, "bad request body: a proxy is a JSON object")
        enabled = body.get("enabled", proxy.enabled)
        if not isinstance(enabled, bool):
            raise ApiError(400, "bad request body: enabled must be true or false")
        restart = False
        if body.get("upstream") not in (None, proxy.upstream_text):
            proxy.upstream = _endpoint(body["upstream"], "upstream", proxy.datagram)
            proxy.upstream_text = body["upstream"]
            restart = True
        if body.get("listen") not in (None, proxy.listen_text):
            proxy.listen = _endpoint(body["listen"], "listen")
            proxy.bound = None
            restart = True
        if restart or not enabled:
            await proxy.stop()
        if enabled:
            try:
                await proxy.start()
            except SockkitError as exc:
                raise ApiError(500, str(exc)) from None
        return proxy

    async def delete(self, name: str) -> None:
        proxy = self.get(name)
        await proxy.stop()
        del self.proxies[name]

    async def reset(self) -> None:
        """Every proxy enabled, every toxic gone."""
        for proxy in self.proxies.values():
            proxy.toxics.clear()
            proxy.changed()
            if not proxy.enabled:
                try:
                    await proxy.start()
                except SockkitError as exc:
                    raise ApiError(500, str(exc)) from None

    async def close(self) -> None:
        for proxy in self.proxies.values():
            await proxy.stop()

    async def drain(self, timeout: float, hurry: asyncio.Event) -> None:
        """Stop accepting everywhere, let live connections end until ``timeout`` or
        ``hurry``, then end those left."""
        for proxy in self.proxies.values():
            proxy.stop_listening()
        live = sum(p.busy for p in self.proxies.values())
        if live and timeout > 0 and not hurry.is_set():
            noun = "connection" if live == 1 else "connections"
            event(
                logging.INFO,
                f"draining {live} {noun} (up to {timeout:g} s; Ctrl-C again to close them now)",
                event="draining",
                connections=live,
                timeout=timeout,
            )
            drained = asyncio.ensure_future(self._drained())
            hurried = asyncio.ensure_future(hurry.wait())
            await asyncio.wait(
                [drained, hurried], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            drained.cancel()
            hurried.cancel()
        await self.close()

    async def _drained(self) -> None:
        for proxy in self.proxies.values():
            await proxy.drained()

    # -- toxics -----------------------------------------------------------------

    def toxic(self, proxy_name: str, toxic_name: str) -> Toxic:
        for toxic in self.get(proxy_name).toxics:
            if toxic.name == toxic_name:
                return toxic
        raise ApiError(404, "toxic not found")

    def add_toxic(self, proxy_name: str, body: object) -> Toxic:
        proxy = self.get(proxy_name)
        try:
            toxic = parse_toxic(body, datagram=proxy.datagram, serial=next(self._serials))
        except ToxicError as exc:
            raise ApiError(400, f"bad request body: {exc}") from None
        if any(t.name == toxic.name for t in proxy.toxics):
            raise ApiError(409, "toxic already exists")
        proxy.toxics.append(toxic)
        proxy.changed()
        for link in list(proxy.links.values()):
            link.arm_timers()
        return toxic

    def update_toxic(self, proxy_name: str, toxic_name: str, body: object) -> Toxic:
        proxy = self.get(proxy_name)
        old = self.toxic(proxy_name, toxic_name)
        try:
            new = parse_toxic(body, datagram=proxy.datagram, old=old, serial=next(self._serials))
        except ToxicError as exc:
            raise ApiError(400, f"bad request body: {exc}") from None
        proxy.toxics[proxy.toxics.index(old)] = new
        proxy.changed()
        for link in list(proxy.links.values()):
            link.arm_timers()
        return new

    def remove_toxic(self, proxy_name: str, toxic_name: str) -> None:
        proxy = self.get(proxy_name)
        proxy.toxics.remove(self.toxic(proxy_name, toxic_name))
        proxy.changed()

    # -- what is going on -------------------------------------------------------

    def version(self) -> dict[str, Any]:
        return {"version": __version__, "server": "sockkit relay"}

    def connections(self, proxy_name: str) -> list[dict[str, Any]]:
        """Live connections: id, peer, age, bytes each way, toxics hitting it."""
        import time

        proxy = self.get(proxy_name)
        now = time.monotonic()
        return [
            {
                "id": link_id,
                "peer": link.peer,
                "age": round(now - link.started, 3),
                "bytes_upstream": link.sent["upstream"],
                "bytes_downstream": link.sent["downstream"],
                "toxics": link.active_toxics(),
                "paths": link.paths(),
            }
            for link_id, link in proxy.links.items()
        ]

    def close_connection(self, proxy_name: str, link_id: int) -> None:
        link = self.get(proxy_name).links.get(link_id)
        if link is None:
            raise ApiError(404, "connection not found")
        link.close("closed through the API")

    def metrics(self) -> str:
        """Prometheus text: bytes, connections and toxics per proxy."""
        lines = [
            "# HELP sockkit_relay_bytes_total Bytes relayed, by proxy and direction.",
            "# TYPE sockkit_relay_bytes_total counter",
        ]
        for name, p in self.proxies.items():
            for way, n in p.bytes.items():
                lines.append(f'sockkit_relay_bytes_total{{proxy="{name}",direction="{way}"}} {n}')
        for metric, kind, text, value in (
            ("connections_total", "counter", "Connections accepted", lambda p: p.connections),
            ("connections_open", "gauge", "Connections open now", lambda p: len(p.links)),
            ("toxics", "gauge", "Toxics configured", lambda p: len(p.toxics)),
            ("enabled", "gauge", "1 if the proxy is listening", lambda p: int(p.enabled)),
        ):
            lines.append(f"# HELP sockkit_relay_{metric} {text}, by proxy.")
            lines.append(f"# TYPE sockkit_relay_{metric} {kind}")
            for name, p in self.proxies.items():
                lines.append(f'sockkit_relay_{metric}{{proxy="{name}"}} {value(p)}')
        return "\n".join(lines) + "\n"
