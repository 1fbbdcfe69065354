"""Serve echo with sockkit's asyncio or uvloop engine directly, for benchmarks/aio.md.

Usage: ``python benchmarks/aio_serve.py ENGINE HOST PORT [--log] [--idle-timeout S]``
with ``PYTHONPATH=src``.  Prints ``listening on HOST:PORT``, serves until SIGTERM.
Uses sockkit's echo service when it exists, else an equivalent one-line service.
"""

from __future__ import annotations

import argparse
import gc
import signal
import sys
from typing import Any

from sockkit._endpoint import open_listener, parse_endpoint, sockaddr_endpoint
from sockkit.engines import get_engine
from sockkit.engines._contract import ConnectionLog, Limits, ServeContext, StreamListener
from sockkit.services import Service

try:
    from sockkit.services import EchoService as Echo  # type: ignore[attr-defined]
except ImportError:

    class Echo(Service):  # type: ignore[no-redef]
        __slots__ = ()

        def received(self, data: bytes) -> bytes:
            return data


class _CountingLog(ConnectionLog):
    """A log that is "on" but writes nothing: measures the cost of the counted path."""

    enabled = True

    def closed(self, *args: Any) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("engine")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--log", action="store_true")
    parser.add_argument("--idle-timeout", type=float)
    parser.add_argument("--no-gc", action="store_true", help="experiment: disable the cyclic GC")
    args = parser.parse_args()
    if args.no_gc:
        gc.disable()
    endpoint = parse_endpoint(
        args.host if args.host.startswith("unix:") else f"tcp://{args.host}:{args.port}"
    )
    sock = open_listener(endpoint)
    ctx = ServeContext(
        [StreamListener(sock, sockaddr_endpoint(sock), Echo)],
        limits=Limits(idle_timeout=args.idle_timeout),
        log=_CountingLog() if args.log else ConnectionLog(),
    )
    signal.signal(signal.SIGTERM, lambda *_: ctx.stop.set())
    signal.signal(signal.SIGINT, lambda *_: ctx.stop.set())
    print(f"listening on {ctx.listeners[0].endpoint}", flush=True)
    get_engine(args.engine)().run(ctx)
    sock.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
