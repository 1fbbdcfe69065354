"""The process ``bench compare`` starts for one server: an engine or a baseline on 127.0.0.1:0.

``python -m sockkit.bench._child engine NAME`` serves echo with sockkit engine
NAME through the library's :class:`sockkit.server.Server`, as ``sockkit serve``
runs it; ``python -m sockkit.bench._child baseline NAME`` runs a
:mod:`~sockkit.bench.baselines` server.  Either prints ``listening on
HOST:PORT`` on stdout once bound and serves until SIGTERM.
"""

from __future__ import annotations

import gc
import sys
from dataclasses import replace

#: how long a stopping engine lets open connections finish
_DRAIN_S = 2.0


def serve_engine(name: str) -> None:
    from sockkit.server import Limits, Server

    server = Server(
        "echo",
        ["127.0.0.1:0"],
        engine=name,
        limits=replace(Limits(), drain_timeout=_DRAIN_S),
        log_level="warning",
    )
    with server:
        server.open(announce=False)
        print(f"listening on {server.endpoints[0]}", flush=True)
        # As `sockkit serve` does: what start-up built lives until exit, so keep
        # the collector from rescanning it while connections come and go.
        gc.freeze()
        server.run(handle_signals=True)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("engine", "baseline"):
        sys.stderr.write("usage: python -m sockkit.bench._child engine|baseline NAME\n")
        return 2
    kind, name = argv
    if kind == "engine":
        serve_engine(name)
    else:
        from sockkit.bench.baselines import run_baseline

        run_baseline(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
