"""``--workers N``: N processes serving the same endpoints, and the supervisor that keeps them.

How the workers share an endpoint: the supervisor keeps every listening
socket open and every worker inherits it, so all accept from one kernel queue
(or read one datagram socket).  A worker that dies -- even by SIGKILL -- takes
only the connections it had accepted; those still queued wait for the others
and for its replacement.  (With one SO_REUSEPORT socket per worker, the kernel
drops a socket's queued connections when it closes.)  The price is that idle
workers all wake for a new connection and one wins the accept().

The supervisor (one thread, no engine) forks the workers, replaces a worker
that dies (at most one per second while workers keep dying young).  Asked to
stop, it closes its own listeners at once (removing Unix socket files), so new
clients are refused while the workers drain; it forwards SIGTERM to every
worker (again on a second stop: the workers then close what is left at once),
waits for every one -- killing whichever outlives the drain deadline by a
margin -- and leaves no zombie.  Workers ignore SIGINT: Ctrl-C reaches the
whole process group, and only the supervisor's forwarded SIGTERM counts.

The supervisor knows nothing of :class:`~sockkit.server.Server`: it is given
a :class:`Workforce`, the few calls it makes.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import selectors
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import FrameType

from sockkit._errors import SockkitError
from sockkit.engines._contract import StopSignal
from sockkit.engines._lifecycle import HURRY_POLL

__all__ = ["Supervisor", "Workforce"]

_PR_SET_PDEATHSIG = 1
#: How long a new worker may take to bind its sockets.
_READY_TIMEOUT = 15.0
#: A worker that dies younger than this is replaced only after this long.
_RESPAWN_BACKOFF = 1.0
#: Past the drain deadline, how long workers get before SIGKILL.
_KILL_MARGIN = 5.0
#: Held back while a worker is forked, until it has its own handlers.
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


@dataclass(frozen=True, slots=True)
class Workforce:
    """What the supervisor needs from the server it runs workers for."""

    #: How many worker processes to keep.
    count: int
    #: Runs in a new worker: given its own stop signal and a ``ready()`` to call
    #: once its sockets are bound; serves until that signal is set, then returns.
    run_worker: Callable[[StopSignal, Callable[[], None]], None]
    #: Every worker is ready: say ``listening on``.
    all_ready: Callable[[], None]
    #: A stop began: close the supervisor's listeners and socket files now.
    close_listeners: Callable[[], None]
    #: Logs a line (``level, message``).
    event: Callable[[int, str], None]
    #: How long workers may drain before they are killed (plus a margin).
    drain_timeout: float


class Supervisor:
    """Runs ``workforce.count`` worker processes until ``stop`` is set.

    Call :meth:`run` once, in the main thread, after the listeners are open.
    """

    def __init__(self, workforce: Workforce, stop: StopSignal) -> None:
        self.workforce = workforce
        self.stop = stop
        #: pid -> when it started
        self.children: dict[int, float] = {}
        #: pid -> wait status, for the log line of a worker that ended
        self._statuses: dict[int, int] = {}
        self._child_r, self._child_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def run(self) -> None:
        previous = signal.signal(signal.SIGCHLD, self._on_sigchld)
        try:
            self._start_all()
            self._supervise()
        finally:
            self.workforce.close_listeners()
            self._stop_all()
            signal.signal(signal.SIGCHLD, previous)
            os.close(self._child_r)
            os.close(self._child_w)

    def _on_sigchld(self, signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(OSError):
            os.write(self._child_w, b"c")

    # -- start ------------------------------------------------------------

    def _start_all(self) -> None:
        ready_pipes = [self._spawn() for _ in range(self.workforce.count)]
        for ready in ready_pipes:
            assert ready is not None
            if not _wait_ready(ready):
                raise SockkitError("a worker process failed to start (see the message above)")
        self.workforce.all_ready()

    def _spawn(self, with_ready_pipe: bool = True) -> int | None:
        """Fork one worker; return the read end of its ready pipe (or ``None``)."""
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC) if with_ready_pipe else (-1, -1)
        sys.stderr.flush()
        # A stop signal that reaches the new worker before it has its own
        # handler would run the supervisor's in the worker and be lost: the
        # worker would then serve until killed.  Held back until it is ready.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        pid = os.fork()
        if pid == 0:
            if ready_r >= 0:
                os.close(ready_r)
            self._become_worker(ready_w, mask)  # never returns
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        self.children[pid] = time.monotonic()
        if ready_w >= 0:
            os.close(ready_w)
            return ready_r
        return None

    def _become_worker(self, ready_w: int, mask: Iterable[int]) -> None:
        status = 0
        try:
            os.close(self._child_r)
            os.close(self._child_w)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            self.stop.close()  # the supervisor's; this worker gets its own
            stop = StopSignal()
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # reloads are the supervisor's
            stop.catch_signals()
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a SIGTERM held back arrives now
            _die_with_parent()

            def ready() -> None:
                if ready_w >= 0:
                    os.write(ready_w, b"r")
                    os.close(ready_w)

            self.workforce.run_worker(stop, ready)
        except SockkitError as exc:
            sys.stderr.write(f"sockkit: worker {os.getpid()}: {exc}\n")
            status = 1
        except BaseException as exc:
            sys.stderr.write(f"sockkit: worker {os.getpid()} failed: {exc!r}\n")
            status = 1
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os._exit(status)

    # -- supervise --------------------------------------------------------

    def _supervise(self) -> None:
        stop = self.stop
        with selectors.DefaultSelector() as selector:
            selector.register(stop.fd, selectors.EVENT_READ)
            selector.register(self._child_r, selectors.EVENT_READ)
            if stop.signal_fd >= 0:
                selector.register(stop.signal_fd, selectors.EVENT_READ)
            while not stop.is_set():
                selector.select()
                stop.drain_signals()
                _drain_pipe(self._child_r)
                for pid in self._reap():
                    started = self.children.pop(pid)
                    if stop.is_set():
                        break
                    if time.monotonic() - started < _RESPAWN_BACKOFF and stop.wait(
                        _RESPAWN_BACKOFF
                    ):
                        break
                    ended = how_it_ended(self._statuses.pop(pid, 0))
                    self.workforce.event(logging.WARNING, f"worker {pid} {ended}; starting another")
                    self._spawn(with_ready_pipe=False)

    def _reap(self) -> list[int]:
        """Collect every child that has exited; return the ones that were workers."""
        dead = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in self.children:
                dead.append(pid)
                self._statuses[pid] = status
        return dead

    def _stop_all(self) -> None:
        self._signal_all(signal.SIGTERM)
        hurried = False
        deadline = time.monotonic() + self.workforce.drain_timeout + _KILL_MARGIN
        while self.children and time.monotonic() < deadline:
            for pid in self._reap():
                self.children.pop(pid, None)
            if not hurried and self.stop.hurried():
                hurried = True
                self._signal_all(signal.SIGTERM)  # a second stop: workers close what is left
            if self.children:
                _wait_readable(
                    self._child_r, min(HURRY_POLL, max(0.0, deadline - time.monotonic()))
                )
                _drain_pipe(self._child_r)
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            del self.children[pid]

    def _signal_all(self, sig: int) -> None:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this worker when the supervisor dies, even by SIGKILL.

    Otherwise orphaned workers would go on serving the inherited listeners with
    nobody to stop them.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the supervisor died before the prctl took
        os.kill(os.getpid(), signal.SIGTERM)


def _wait_ready(fd: int) -> bool:
    try:
        if not _wait_readable(fd, _READY_TIMEOUT):
            return False
        return os.read(fd, 1) == b"r"
    finally:
        os.close(fd)


def _wait_readable(fd: int, timeout: float) -> bool:
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        return bool(selector.select(timeout))


def _drain_pipe(fd: int) -> None:
    while True:
        try:
            if not os.read(fd, 512):
                return
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                return
            raise


def how_it_ended(status: int) -> str:
    """A wait status in words: ``killed by SIGKILL``, ``exited with status 3``."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"killed by {name}"
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)}"
    return "exited"
