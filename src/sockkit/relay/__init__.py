"""The relay: forward connections or datagrams from one endpoint to another, with faults.

:func:`run_relay` opens the listening endpoint, logs ``listening on ENDPOINT``,
and relays until SIGINT/SIGTERM (or ``stop``), like a socat or toxiproxy that
can add latency, throttle, slice, reset and drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable

from sockkit._endpoint import Endpoint, open_listener, sockaddr_endpoint
from sockkit._errors import UsageError
from sockkit.relay._datagram import DatagramRelay
from sockkit.relay._faults import Faults, parse_rate, parse_size
from sockkit.relay._stream import StreamRelay

__all__ = ["DatagramRelay", "Faults", "StreamRelay", "parse_rate", "parse_size", "run_relay"]

log = logging.getLogger("sockkit.relay")


def run_relay(
    listen: Endpoint,
    target: Endpoint,
    faults: Faults | None = None,
    *,
    on_ready: Callable[[Endpoint], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Relay from ``listen`` to ``target`` until SIGINT/SIGTERM or ``stop`` is set.

    ``on_ready`` receives the real bound endpoint.  Raises :class:`UsageError`
    when the two endpoints are of different kinds (stream vs datagram), and the
    usual :class:`~sockkit.SockkitError` subclasses when binding fails.
    """
    if listen.is_datagram != target.is_datagram:
        raise UsageError(
            f"cannot relay {listen} to {target}: one is a stream and the other datagrams"
        )
    if listen.is_tls or target.is_tls:
        raise UsageError(
            "relay forwards bytes as they are: use tcp:// on both sides of a TLS stream"
        )
    faults = faults or Faults()
    sock = open_listener(listen)
    bound = sockaddr_endpoint(sock)
    try:
        asyncio.run(_main(sock, bound, target, faults, on_ready, stop))
    finally:
        sock.close()
        if bound.is_unix and not bound.is_abstract and bound.path and listen.fd is None:
            with contextlib.suppress(OSError):
                os.unlink(bound.path)


async def _main(
    sock: socket.socket,
    bound: Endpoint,
    target: Endpoint,
    faults: Faults,
    on_ready: Callable[[Endpoint], None] | None,
    stop_flag: threading.Event | None,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    if stop_flag is not None:
        watcher = asyncio.ensure_future(_watch(stop_flag, stop))
    relay: StreamRelay | DatagramRelay
    relay = (
        DatagramRelay(sock, target, faults)
        if bound.is_datagram
        else StreamRelay(sock, target, faults)
    )
    if on_ready is not None:
        on_ready(bound)
    await relay.serve(stop)
    if stop_flag is not None:
        watcher.cancel()


async def _watch(flag: threading.Event, stop: asyncio.Event) -> None:
    while not flag.is_set():
        await asyncio.sleep(0.05)
    stop.set()
