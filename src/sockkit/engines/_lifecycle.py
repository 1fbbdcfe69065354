"""The one stop sequence every engine follows, and the stop signal that drives it.

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
  :meth:`StopSignal.hurried` turned true.
- **closing**: at the deadline, or at once after a second stop, the engine
  closes every connection left with ``CloseReason.SERVER_STOPPING`` and returns
  with no thread or child process left behind.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sockkit.engines._contract import ServeContext

__all__ = ["HURRY_POLL", "Drain", "StopSignal"]

#: While draining, blocking engines look at least this often for a second stop.
HURRY_POLL = 0.1


class StopSignal:
    """A stop request that threads, signal handlers and pollers can all see.

    The first :meth:`set` asks to stop (drain); any later one asks to hurry
    (close what is left now).  ``set()`` is safe from a signal handler and
    from any thread.  ``fd`` becomes readable on every ``set()``, so a reactor
    can poll it beside its sockets; :meth:`consume` empties it again.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._hurry = threading.Event()
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._closed = False

    @property
    def fd(self) -> int:
        return self._read_fd

    def set(self) -> None:
        if self._event.is_set():
            self._hurry.set()
        self._event.set()
        if self._closed:
            return  # the fd numbers may belong to another file by now
        with contextlib.suppress(OSError):  # pipe full: readable already, all we need
            os.write(self._write_fd, b"x")

    def is_set(self) -> bool:
        return self._event.is_set()

    def hurried(self) -> bool:
        """True once stop was asked for a second time: close the connections left now."""
        return self._hurry.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def consume(self) -> None:
        """Empty the pipe behind ``fd`` (a level-triggered poller would wake for ever)."""
        with contextlib.suppress(OSError):
            while os.read(self._read_fd, 512):
                pass

    def close(self) -> None:
        """Release the pipe.  ``set`` stays safe to call afterwards; ``fd`` is then invalid."""
        if self._closed:
            return
        self._closed = True
        for fd in (self._read_fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


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
