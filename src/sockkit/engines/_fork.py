"""The fork engine: a child process for every connection.

Where children are forked from: by default a small fork server process
(:mod:`._zygote`, supervised by :mod:`._zygote_supervisor`) that has imported
only what a child runs, so a child copies and dirties far fewer pages than a
copy of the serving process would.  A context that cannot be described to
another process (a ``tls://`` listener, a service built by a factory at run
time, a log with the application's own handlers; :mod:`._zygote_args`), or
``SOCKKIT_FORK_SERVER=off`` in the environment, keeps the children forked
from the serving process itself.  Either way the process that forks runs the
code below.

The parent only accepts, forks and reaps.  It closes its copy of each accepted
socket at once, counts its children for ``max_conns``, and reaps every exited
child in one pass (``waitpid(-1, WNOHANG)`` until nothing is left) whenever
SIGCHLD arrives, so no zombie outlives its connection.  A child resets the
signals it inherited, drops the parent's descriptors, serves its one
connection and leaves with ``os._exit`` (no ``atexit``, no second flush of the
parent's buffers).

Connections share no memory, so services that need each other (chat) cannot
run here: :attr:`ForkEngine.shares_memory` is False and the server refuses them.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal.py without the enum wrapping
import contextlib
import gc
import mmap
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from sockkit.engines._accept import AcceptingEngine, _logger
from sockkit.engines._blocking import Aborted, Connection
from sockkit.engines._contract import ServeContext
from sockkit.engines._lifecycle import Drain

__all__ = ["ForkEngine"]

#: After SIGTERM, how long children get to log and close before SIGKILL.
_TERM_GRACE = 1.0
#: Without a SIGCHLD handler (run() off the main thread), how often to reap.
_REAP_INTERVAL_MS = 50
#: With one, a safety net for a SIGCHLD that went to another thread.
_REAP_SAFETY_MS = 1000
#: Signals blocked from just before a fork until the child has its handlers.
_HELD_AT_FORK = {_signal.SIGTERM, _signal.SIGCHLD}
#: ``SOCKKIT_FORK_SERVER=off``: fork children from the serving process itself.
FORK_SERVER_ENV = "SOCKKIT_FORK_SERVER"


class ForkEngine(AcceptingEngine):
    """Serve each connection in a forked child process (``--engine fork``)."""

    name = "fork"
    shares_memory = False

    def __init__(self, lifeline: int | None = None, fork: Callable[[], int] = os.fork) -> None:
        #: In the fork server: a descriptor that reads end of file once the
        #: serving process is gone (then stop).  None: this is the serving process.
        self.lifeline = lifeline
        #: Makes one child: ``os.fork``, or the fork server's (:mod:`._zygote`).
        self.fork = fork

    def run(self, ctx: ServeContext) -> None:
        if self.lifeline is None and os.environ.get(FORK_SERVER_ENV, "on") != "off":
            from sockkit.engines._zygote_supervisor import ForkServer

            fork_server = ForkServer.for_context(ctx)
            if fork_server is not None:
                fork_server.run()
                return
        super().run(ctx)

    def start(self) -> None:
        if self.ctx.proxy is not None:
            # Children read the PROXY header and count the client themselves.
            self.ctx.admission.share_counts()
        self._children: set[int] = set()
        #: Each child's peer address, released from the admission when it is reaped.
        self._peers: dict[int, object] = {}
        # One read buffer, mapped here and never touched: fork copies no page
        # table entries for it, and a child faults in only the pages a recv
        # fills.  Private: each child's writes are its own (a shared mapping
        # would hand one client's bytes to another).
        self._buffer = memoryview(mmap.mmap(-1, self.ctx.limits.read_size, flags=mmap.MAP_PRIVATE))
        # SIGCHLD is turned into a readable pipe so the accept loop's poll()
        # wakes for it and reaps in its own time, never inside the handler.
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._old_handler: Any = None
        self._handling = threading.current_thread() is threading.main_thread()
        if self._handling:
            self._old_handler = signal.signal(signal.SIGCHLD, self._on_sigchld)

    def _on_sigchld(self, signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(OSError):  # pipe full: a wake-up is pending anyway
            os.write(self._wake_w, b"c")

    def extra_fds(self) -> tuple[int, ...]:
        if self.lifeline is None:
            return (self._wake_r,)
        return (self._wake_r, self.lifeline)

    def on_extra_fd(self, fd: int) -> None:
        if fd == self.lifeline:
            self.ctx.stop.set()  # the serving process is gone: nobody else will stop us
            return
        with contextlib.suppress(OSError):
            os.read(self._wake_r, 4096)
        self._reap()

    def poll_timeout_ms(self) -> int:
        if not self._children:
            return -1
        return _REAP_SAFETY_MS if self._handling else _REAP_INTERVAL_MS

    def open_count(self) -> int:
        max_conns = self.ctx.limits.max_conns
        if max_conns is not None and len(self._children) >= max_conns:
            self._reap()  # a child may have exited since the last SIGCHLD was handled
        return len(self._children)

    def _reap(self) -> None:
        """Collect every child that has exited, without blocking."""
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._forget(pid)

    def dispatch(self, conn: Connection) -> str | None:
        conn.buffer = self._buffer
        # A SIGTERM (the drain's end) or SIGCHLD reaching a new child before it
        # has its own handlers would run this process's handler there: the
        # SIGTERM would be lost and the child killed after the grace instead.
        # Held back across the fork; the child lets them in once it is ready.
        mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, _HELD_AT_FORK)
        try:
            pid = self.fork()
        except OSError as exc:
            _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
            _logger.warning("cannot fork: %s", exc.strerror)
            return "cannot fork"
        if pid == 0:
            self._serve_in_child(conn, mask)  # never returns
        _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
        self._children.add(pid)
        if conn.counted is not None:
            self._peers[pid] = conn.counted
        conn.sock.close()  # the child has its own copy; ours would keep the peer open
        return None

    def _forget(self, pid: int) -> None:
        """Child ``pid`` was reaped: it no longer counts, in total or for its address."""
        self._children.discard(pid)
        addr = self._peers.pop(pid, None)
        if addr is not None:
            self.ctx.admission.release(addr)

    def _serve_in_child(self, conn: Connection, mask: object) -> None:
        code = 0
        try:
            # The parent's objects are never collected here; keep the collector
            # off their pages so they stay shared with the parent.
            gc.freeze()
            # _signal, not signal: the wrapper turns each old handler into an
            # enum, and in a fresh child that costs ~150 us of copied pages.
            _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
            # Ctrl-C reaches the whole process group; the parent decides when
            # children stop (after the drain deadline, with SIGTERM).
            _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
            _signal.signal(_signal.SIGTERM, _terminate)
            _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)  # a held SIGTERM arrives now
            for listener in self.ctx.listeners:
                listener.sock.close()
            self.ctx.stop.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
            if self.lifeline is not None:
                os.close(self.lifeline)
            conn.run()
        except BaseException:
            code = 1
        finally:
            if self.ctx.proxy is not None:
                # The slot was taken here, for the client the header named.
                with contextlib.suppress(BaseException):
                    self.ctx.admission.release(conn.counted)
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(code)

    def drain(self, drain: Drain) -> None:
        try:
            self._reap()
            while self._children:
                step = drain.step()
                if step <= 0:
                    break
                self._wait_for_exit(step)
            self._signal_children(signal.SIGTERM, _TERM_GRACE)
            self._signal_children(signal.SIGKILL, None)
        finally:
            if self._handling:
                # None: the old handler was set outside Python; the default is
                # the closest thing we can put back.
                old = signal.SIG_DFL if self._old_handler is None else self._old_handler
                signal.signal(signal.SIGCHLD, old)
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _wait_for_exit(self, timeout: float) -> None:
        """Sleep until a child exits or ``timeout`` passes, then reap."""
        wait_ms = min(int(timeout * 1000) + 1, self.poll_timeout_ms())
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        if poller.poll(wait_ms):
            with contextlib.suppress(OSError):
                os.read(self._wake_r, 4096)
        self._reap()

    def _signal_children(self, sig: signal.Signals, grace: float | None) -> None:
        """Send ``sig`` to every child left; wait up to ``grace`` (None: for ever) for them."""
        if not self._children:
            return
        for pid in self._children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if grace is None:
            for pid in list(self._children):
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
                self._forget(pid)
            return
        deadline = time.monotonic() + grace
        while self._children:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._wait_for_exit(left)


def _terminate(signum: int, frame: FrameType | None) -> None:
    """A child's SIGTERM: end the connection through its normal close path, once."""
    _signal.signal(_signal.SIGTERM, _signal.SIG_DFL)
    raise Aborted("server stopping")
