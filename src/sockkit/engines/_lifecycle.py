"""The one stop sequence every engine follows (the stop signal itself is in :mod:`._contract`).

::

    serving --stop--> draining --(no connection left | deadline | stop again)--> closing --> returned

- **stop** (SIGINT/SIGTERM, :meth:`Server.stop`): the engine stops watching its
  listeners and calls :meth:`Drain.begin` with the number of open connections.
  That closes every listening socket at once (and removes Unix socket files),
  so a new client is refused (ECONNREFUSED, or no file) instead of completing
  a handshake nobody will answer; with connections open it logs
  ``draining N connections (up to S s; Ctrl-C again to close them now)``.
- **draining**: open connections go on; the engine waits for them at most
  :meth:`Drain.remaining` seconds, looking again at least every
  :data:`HURRY_POLL` seconds (or when ``stop.fd`` is readable) in case
  ``StopSignal.hurried()`` (:mod:`._contract`) turned true.
- **closing**: at the deadline, or at once after a second stop, the engine
  closes every connection left with ``CloseReason.SERVER_STOPPING`` and returns
  with no thread or child process left behind.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sockkit.engines._contract import ServeContext

__all__ = ["HURRY_POLL", "Drain"]

#: While draining, blocking engines look at least this often for a second stop.
HURRY_POLL = 0.1


class Drain:
    """One engine's drain: begun once at the stop, then asked how long is left."""

    __slots__ = ("_ctx", "deadline")

    def __init__(self, ctx: ServeContext) -> None:
        self._ctx = ctx
        self.deadline = 0.0

    def begin(self, open_now: int) -> None:
        """Close the listeners now, log the drain if anything is open, start the deadline."""
        ctx = self._ctx
        timeout = ctx.limits.drain_timeout
        self.deadline = time.monotonic() + timeout
        ctx.shut_listeners()
        if open_now and not ctx.stop.hurried():
            ctx.log.draining(open_now, timeout)

    def remaining(self) -> float:
        """Seconds open connections may still go on (0 after a second stop)."""
        if self._ctx.stop.hurried():
            return 0.0
        return max(self.deadline - time.monotonic(), 0.0)

    def wait(self, ended: threading.Condition, busy: Callable[[], object]) -> None:
        """With ``ended``'s lock held: wait for it while ``busy()`` and the drain allows."""
        while busy():
            step = self.step()
            if step <= 0:
                return
            ended.wait(step)

    def step(self) -> float:
        """How long a blocking engine may wait before looking again (0: close now)."""
        return min(self.remaining(), HURRY_POLL)
