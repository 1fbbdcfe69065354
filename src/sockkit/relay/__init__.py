"""The relay: forward connections or datagrams from one endpoint to another, with faults.

:func:`run_relay` relays one listening endpoint to one target with the faults
given on the command line; :func:`run_relays` runs any number of proxies in
one process, optionally with toxiproxy's HTTP API to change them at run time.
Both run until SIGINT/SIGTERM (or ``stop``).
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
from collections.abc import Callable, Sequence
from typing import Any

from sockkit._endpoint import Endpoint
from sockkit._errors import SockkitError, UsageError
from sockkit._sd_notify import notify_stopping
from sockkit.relay._dump import make_observers
from sockkit.relay._faults import Faults, parse_rate, parse_size
from sockkit.relay._host import Observer
from sockkit.relay._log import log_handler
from sockkit.relay._proxy import Proxy
from sockkit.relay._pump_native import close_native_loop
from sockkit.relay._registry import ApiError, Registry
from sockkit.relay._tls import RelayTLS
from sockkit.relay._toxics import DATAGRAM_TYPES, STREAM_TYPES, Toxic, ToxicError, parse_toxic

__all__ = [
    "DATAGRAM_TYPES",
    "STREAM_TYPES",
    "Faults",
    "Observer",
    "Proxy",
    "Registry",
    "RelayTLS",
    "Toxic",
    "ToxicError",
    "load_config",
    "log_handler",
    "make_observers",
    "parse_rate",
    "parse_size",
    "parse_toxic",
    "run_relay",
    "run_relays",
]


def run_relay(
    listen: Endpoint,
    target: Endpoint,
    faults: Faults | None = None,
    *,
    toxics: Sequence[dict[str, Any]] = (),
    observers: Sequence[Observer] = (),
    send_proxy: str | None = None,
    tls: RelayTLS | None = None,
    on_ready: Callable[[Endpoint], None] | None = None,
    stop: threading.Event | None = None,
    drain_timeout: float = 10.0,
) -> None:
    """Relay from ``listen`` to ``target`` until SIGINT/SIGTERM or ``stop`` is set.

    ``faults`` and ``toxics`` (toxiproxy JSON bodies) say what to break;
    ``observers`` see every relayed piece; ``send_proxy`` (``v1``/``v2``) sends
    a PROXY protocol header to the target before the client's bytes.
    ``on_ready`` receives the real bound endpoint.  Raises :class:`UsageError`
    when the two endpoints are of different kinds (stream vs datagram), and the
    usual :class:`~sockkit.SockkitError` subclasses when binding fails.
    """
    if listen.is_datagram != target.is_datagram:
        raise UsageError(
            f"cannot relay {listen} to {target}: one is a stream and the other datagrams"
        )
    bodies = [*(faults or Faults()).toxics(datagram=listen.is_datagram), *toxics]
    for body in bodies:
        try:
            parse_toxic(body, datagram=listen.is_datagram)
        except ToxicError as exc:
            raise UsageError(f"bad toxic {body.get('type')!r}: {exc}") from None
    spec: dict[str, Any] = {
        "name": "relay",
        "listen": listen,  # the parsed value: fd:N / systemd: endpoints are not parsed twice
        "upstream": target,
        "toxics": bodies,
    }
    if send_proxy is not None:
        spec["send_proxy"] = send_proxy

    def ready(proxies: dict[str, Proxy]) -> None:
        proxy = proxies["relay"]
        proxy.observers.extend(observers)
        proxy.changed()
        if on_ready is not None and proxy.bound is not None:
            on_ready(proxy.bound)

    run_relays([spec], on_ready=ready, stop=stop, tls=tls, drain_timeout=drain_timeout)


def load_config(path: str) -> list[dict[str, Any]]:
    """Proxies from a toxiproxy config file (a JSON list); :class:`UsageError` if unusable."""
    try:
        with open(path, encoding="utf-8") as file:
            value = json.load(file)
    except OSError as exc:
        raise SockkitError(f"cannot read config {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"bad config {path}: {exc}") from None
    except RecursionError:
        raise UsageError(f"bad config {path}: JSON nested too deeply") from None
    if not isinstance(value, list) or not all(isinstance(p, dict) for p in value):
        raise UsageError(f"bad config {path}: expected a JSON list of proxies")
    return value


def run_relays(
    proxies: Sequence[dict[str, Any]],
    *,
    api: tuple[str, int] | None = None,
    on_ready: Callable[[dict[str, Proxy]], None] | None = None,
    on_api: Callable[[str, int], None] | None = None,
    stop: threading.Event | None = None,
    tls: RelayTLS | None = None,
    drain_timeout: float = 10.0,
) -> None:
    """Run ``proxies`` (toxiproxy JSON, each may carry ``toxics``) and the API if asked.

    ``tls`` holds the files for tls:// legs (a listener's certificate, a target's CA).
    SIGINT/SIGTERM closes the listeners at once (new clients are refused), lets open
    connections finish for up to ``drain_timeout`` seconds, then closes them; a
    second signal closes them at once.  Setting ``stop`` closes everything at once.
    """
    runner = _runner()
    with runner:
        runner.run(_main(proxies, api, on_ready, on_api, stop, tls, drain_timeout))


def _runner() -> asyncio.Runner:
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


async def _main(
    specs: Sequence[dict[str, Any]],
    api: tuple[str, int] | None,
    on_ready: Callable[[dict[str, Proxy]], None] | None,
    on_api: Callable[[str, int], None] | None,
    stop_flag: threading.Event | None,
    tls: RelayTLS | None,
    drain_timeout: float,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    hurry = asyncio.Event()  # a second signal: no more draining

    def signalled() -> None:
        (hurry if stop.is_set() else stop).set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, signalled)
    registry = Registry(tls)
    server = None
    try:
        for spec in specs:
            try:
                await registry.create({k: v for k, v in spec.items() if k != "toxics"})
                for body in spec.get("toxics") or ():
                    registry.add_toxic(spec["name"], body)
            except ApiError as exc:
                if isinstance(exc.__cause__, SockkitError):
                    raise exc.__cause__ from None  # as it is (the CLI names an address's holder)
                raise (SockkitError if exc.status >= 500 else UsageError)(
                    f"proxy {spec.get('name')!r}: {exc.message}"
                ) from None
        if api is not None:
            from sockkit.relay._api import serve_api

            try:
                server = await serve_api(registry, *api)
            except OSError as exc:
                from sockkit._errors import translate_os_error

                raise translate_os_error(exc, "bind", f"{api[0]}:{api[1]}") from None
            host, port = server.sockets[0].getsockname()[:2]
            if on_api is not None:
                on_api(host, port)
        if on_ready is not None:
            on_ready(registry.proxies)
        if stop_flag is not None:
            while not stop_flag.is_set() and not stop.is_set():
                await asyncio.sleep(0.05)
            if stop_flag.is_set():
                hurry.set()  # stopped from code: close at once
        else:
            await stop.wait()
    finally:
        if server is not None:
            server.close()
        if stop.is_set() or hurry.is_set():
            notify_stopping()  # a service manager sees the drain begin, as with serve
            await registry.drain(drain_timeout, hurry)
        else:
            await registry.close()
        close_native_loop()  # every link has ended: its thread is joined now
