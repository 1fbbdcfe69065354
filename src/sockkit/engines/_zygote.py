"""The fork server: a small process that accepts and forks one child per connection.

Started by the serving process (:mod:`sockkit.engines._zygote_supervisor`)
as ``python -c BOOTSTRAP ARGS`` (:mod:`._zygote_boot`; ARGS are
:mod:`._zygote_args`'), it imports what a child runs and nothing else -- the
blocking connection loop, the connection core, the one service class, a log
writer that uses no ``logging`` handler or record (``import sockkit`` still
loads the module) -- so every child it forks copies a small process and
writes few of its pages.  It serves with :class:`~sockkit.engines._fork.ForkEngine`
exactly as the serving process would (accept, admission, ``max_conns``,
SIGCHLD reaping, the drain), handed the listening sockets by descriptor.

Signals: SIGTERM is a stop (the first drains, a second closes the rest now);
SIGINT is ignored (the serving process relays a Ctrl-C as SIGTERM, so it is
not counted twice).  When the serving process is gone (``--lifeline`` reads
end of file) it stops as if sent SIGTERM.

Start-up is reported on ``--ready``: ``r`` once serving, or ``e`` and one line
saying why it cannot, then exit status 1.

At-fork hooks: see :mod:`._zygote_boot`.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal.py without the enum wrapping
import gc
import importlib
import os
import socket
import sys
from collections.abc import Callable, Sequence
from types import FrameType

from sockkit._endpoint import parse_endpoint
from sockkit.engines._contract import AccessList, Limits, ServeContext, StopSignal, StreamListener
from sockkit.engines._fork import ForkEngine
from sockkit.engines._log_lines import LineLog
from sockkit.engines._zygote_args import ZygoteArgs, parse
from sockkit.engines._zygote_boot import HeldForkHooks, Hook
from sockkit.engines._zygote_warmup import warm_up
from sockkit.services._base import Service

__all__ = ["main"]


def main(argv: Sequence[str], held: Sequence[dict[str, Hook]] = ()) -> int:
    """Serve until stopped; the exit status (0, or 1 when it could not start).

    ``held``: at-fork hooks :data:`BOOTSTRAP` kept from ``os.register_at_fork``.
    """
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    stop = StopSignal()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    _signal.signal(_signal.SIGTERM, on_term)
    stop.catch_signals()
    ready = -1
    try:
        args = parse(argv)
        ready = args.ready
        ctx = _context(args, stop)
    except Exception as exc:
        why = str(exc) or type(exc).__name__
        _report(ready, f"e{why}")
        return 1
    engine = ForkEngine(lifeline=args.lifeline, fork=HeldForkHooks(held).fork)
    warm_up(ctx, args.log)
    _report(ready, "r")
    # Everything built so far lives until exit and is shared with every
    # child: keep the collector from ever walking (and so writing) it.
    gc.freeze()
    engine.run(ctx)
    return 0


def _context(args: ZygoteArgs, stop: StopSignal) -> ServeContext:
    listeners = [
        StreamListener(socket.socket(fileno=fd), parse_endpoint(text), _load_class(ref))
        for fd, text, ref in args.listeners
    ]
    proxy = None
    if args.proxy is not None:
        from sockkit._proxy_admission import ProxyProtocol

        timeout, networks = args.proxy
        proxy = ProxyProtocol(networks, timeout)
    return ServeContext(
        listeners,
        Limits(**args.limits),  # type: ignore[arg-type]
        AccessList(args.allow, args.deny),
        LineLog(args.log),
        stop,
        proxy=proxy,
    )


def _load_class(ref: str) -> Callable[[], Service]:
    module_name, _, qualname = ref.partition(":")
    found: object = importlib.import_module(module_name)
    for part in qualname.split("."):
        found = getattr(found, part)
    if not (isinstance(found, type) and issubclass(found, Service)):
        raise TypeError(f"{ref} is not a sockkit Service class")
    return found


def _report(fd: int, message: str) -> None:
    if fd < 0:
        return
    try:
        os.write(fd, message.encode(errors="replace"))
        os.close(fd)
    except OSError:
        pass  # the serving process is gone: the lifeline stops us


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
