"""Serve echo on one reactor engine, for benchmarks/reactor_cpu.py.

Usage: PYTHONPATH=src python benchmarks/reactor_serve.py ENGINE HOST PORT

Prints ``listening on HOST:PORT``; SIGTERM stops the engine (drain 1 s).
"""

from __future__ import annotations

import signal
import sys

from sockkit._endpoint import Endpoint, open_listener
from sockkit.engines import get_engine
from sockkit.engines._contract import Limits, ServeContext, StreamListener
from sockkit.services._base import Service


class Echo(Service):
    """RFC 862 echo: exactly what an echo service does, nothing more."""

    def received(self, data: bytes) -> bytes:
        return data


def main() -> None:
    engine, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    endpoint = Endpoint("tcp", host=host, port=port)
    sock = open_listener(endpoint)
    real = endpoint.with_port(sock.getsockname()[1])
    ctx = ServeContext([StreamListener(sock, real, Echo)], Limits(drain_timeout=1.0))
    signal.signal(signal.SIGTERM, lambda signum, frame: ctx.stop.set())
    print(f"listening on {real.address}", flush=True)
    get_engine(engine)().run(ctx)
    sock.close()


if __name__ == "__main__":
    main()
