"""``--workers N``: N processes serving the same endpoints, and the supervisor that keeps them.

How the workers share an endpoint:

- TCP/TLS/UDP: every worker binds its own socket to the same port with
  SO_REUSEPORT and the kernel spreads connections (or datagrams) over them.
  The supervisor's own socket only found the real port; it leaves the group
  (closes) once every worker has bound, before ``listening on`` is logged, so
  no connection waits in a queue nobody accepts from.
- Unix sockets have no SO_REUSEPORT: the supervisor keeps its listener and
  every worker inherits it and accepts from the one shared queue.

The supervisor (one thread, no engine) forks the workers, replaces a worker
that dies (at most one per second while workers keep dying young), forwards
SIGTERM to all when it is asked to stop, waits for every one -- killing
whichever outlives the drain deadline by a margin -- and leaves no zombie.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import selectors
import signal
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING

from sockkit._errors import SockkitError
from sockkit.server._context import StopSignal

if TYPE_CHECKING:
    from sockkit.server._server import Server

__all__ = ["Supervisor"]

#: How long a new worker may take to bind its sockets.
_READY_TIMEOUT = 15.0
#: A worker that dies younger than this is replaced only after this long.
_RESPAWN_BACKOFF = 1.0
#: Past the drain deadline, how long workers get before SIGKILL.
_KILL_MARGIN = 5.0


class Supervisor:
    """Runs ``server.workers`` worker processes until ``server.stop_signal`` is set.

    Call :meth:`run` once, in the main thread, after ``server.open(announce=False)``.
    """

    def __init__(self, server: Server) -> None:
        self.server = server
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
            self._stop_all()
            signal.signal(signal.SIGCHLD, previous)
            os.close(self._child_r)
            os.close(self._child_w)

    def _on_sigchld(self, signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(OSError):
            os.write(self._child_w, b"c")

    # -- start ------------------------------------------------------------

    def _start_all(self) -> None:
        ready_pipes = [self._spawn() for _ in range(self.server.workers)]
        for ready in ready_pipes:
            assert ready is not None
            if not _wait_ready(ready):
                raise SockkitError("a worker process failed to start (see the message above)")
        # Every worker holds its own SO_REUSEPORT socket now: leave the group.
        for lst in self.server.all_listeners():
            if not lst.endpoint.is_unix:
                lst.sock.close()
        self.server.announce()

    def _spawn(self, with_ready_pipe: bool = True) -> int | None:
        """Fork one worker; return the read end of its ready pipe (or ``None``)."""
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC) if with_ready_pipe else (-1, -1)
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            if ready_r >= 0:
                os.close(ready_r)
            self._become_worker(ready_w)  # never returns
        self.children[pid] = time.monotonic()
        if ready_w >= 0:
            os.close(ready_w)
            return ready_r
        return None

    def _become_worker(self, ready_w: int) -> None:
        status = 0
        try:
            os.close(self._child_r)
            os.close(self._child_w)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            server = self.server
            server.stop_signal.close()  # the supervisor's; this worker gets its own
            server.stop_signal = stop = StopSignal()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda signum, frame: stop.set())
            server.reopen_shared_port()
            if ready_w >= 0:
                os.write(ready_w, b"r")
                os.close(ready_w)
            server.serve_here()
            server.release()
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
        stop = self.server.stop_signal
        with selectors.DefaultSelector() as selector:
            selector.register(stop.fd, selectors.EVENT_READ)
            selector.register(self._child_r, selectors.EVENT_READ)
            while not stop.is_set():
                selector.select()
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
                    self.server.log.event(
                        logging.WARNING, f"worker {pid} {ended}; starting another"
                    )
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
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.server.limits.drain_timeout + _KILL_MARGIN
        while self.children and time.monotonic() < deadline:
            for pid in self._reap():
                self.children.pop(pid, None)
            if self.children:
                _wait_readable(self._child_r, min(0.5, max(0.0, deadline - time.monotonic())))
                _drain_pipe(self._child_r)
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            del self.children[pid]


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
