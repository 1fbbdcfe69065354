"""The fork server: a small process that accepts and forks one child per connection.

``python -m sockkit.engines._zygote ARGS`` (started by the serving process,
:mod:`sockkit.engines._zygote_supervisor`; ARGS are :mod:`._zygote_args`')
imports what a child runs and nothing else -- the blocking connection loop,
the connection core, the one service class, a log writer without
``logging`` records -- so every child it forks copies a small process and
writes few of its pages.  It serves with :class:`~sockkit.engines._fork.ForkEngine`
exactly as the serving process would (accept, admission, ``max_conns``,
SIGCHLD reaping, the drain), handed the listening sockets by descriptor.

Signals: SIGTERM is a stop (the first drains, a second closes the rest now);
SIGINT is ignored (the serving process relays a Ctrl-C as SIGTERM, so it is
not counted twice).  When the serving process is gone (``--lifeline`` reads
end of file) it stops as if sent SIGTERM.

Start-up is reported on ``--ready``: ``r`` once serving, or ``e`` and one line
saying why it cannot, then exit status 1.

At-fork hooks.  ``threading`` and ``logging`` (which ``import sockkit``
loads) register ``os.register_at_fork`` hooks that repair what *other*
threads may have held at the fork.  They cost every child more than all of
sockkit's own code: measured, an idle child of this process writes 1,016 KiB
with them and 504 KiB without, and fork + exit + wait takes 1,190 us against
580.  The fork server runs one thread, so there is nothing to repair:
:data:`BOOTSTRAP` (how the serving process starts it) holds back the hooks
that importing this module registers, and :class:`HeldForkHooks` runs them
around a fork only if a thread exists after all (a service module that
started one).  Hooks registered later (by the service's own imports) run as
usual.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal.py without the enum wrapping
import _thread
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
from sockkit.engines._zygote_warmup import warm_up
from sockkit.services._base import Service

__all__ = ["BOOTSTRAP", "HeldForkHooks", "main"]

#: ``python -c BOOTSTRAP ARGS`` starts the fork server with the at-fork hooks
#: that importing it registers held back (see the module docstring).
BOOTSTRAP = """\
import os, sys
held = []
register = os.register_at_fork
os.register_at_fork = lambda **hooks: held.append(hooks)
try:
    import sockkit.engines._zygote as zygote
finally:
    os.register_at_fork = register
sys.exit(zygote.main(sys.argv[1:], held))
"""

Hook = Callable[[], object]


class HeldForkHooks:
    """At-fork hooks held back from ``os.register_at_fork``, run by :meth:`fork` only when needed."""

    def __init__(self, held: Sequence[dict[str, Hook]]) -> None:
        # The order os.fork() would use: "before" hooks last-registered first.
        self.before = [hooks["before"] for hooks in reversed(held) if "before" in hooks]
        self.in_parent = [hooks["after_in_parent"] for hooks in held if "after_in_parent" in hooks]
        self.in_child = [hooks["after_in_child"] for hooks in held if "after_in_child" in hooks]

    def fork(self) -> int:
        """``os.fork()``, with the held hooks around it if any thread but this one runs."""
        if _thread._count() == 0:  # threads besides the main one
            return os.fork()
        for hook in self.before:
            hook()
        try:
            pid = os.fork()
        except OSError:
            for hook in self.in_parent:
                hook()
            raise
        for hook in self.in_child if pid == 0 else self.in_parent:
            hook()
        return pid


def main(argv: Sequence[str], held: Sequence[dict[str, Hook]] = ()) -> int:
    """Serve until stopped; the exit status (0, or 1 when it could not start).

    ``held``: at-fork hooks :data:`BOOTSTRAP` kept from ``os.register_at_fork``.
    """
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    stop = StopSignal()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    _signal.signal(_signal.SIGTERM, on_term)
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
