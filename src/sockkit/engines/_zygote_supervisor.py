"""The serving process's side of the fork server: start it, watch it, relay the stop.

:class:`ForkServer` runs in :meth:`ForkEngine.run <sockkit.engines._fork.ForkEngine.run>`
in place of the accept loop.  It starts the fork server (``python -c``
:data:`~sockkit.engines._zygote_boot.BOOTSTRAP`, which runs :mod:`sockkit.engines._zygote`)
(a fresh interpreter, so nothing this process imported is copied into it),
passing the listening sockets by descriptor, and then only waits::

    starting --r--> serving --stop--> stopping --fork server exited--> returned
       |              |
       e: SockkitError, fork server died: start another (orphans left to drain
       the reason        on their own, ended at the stop); more than
                         RESTARTS in RESTART_WINDOW s: SockkitError

- **stop** (the first): SIGTERM to the fork server, which drains exactly as
  the fork engine does in one process (listeners closed, ``draining`` logged,
  children given ``drain_timeout``, then SIGTERM, then SIGKILL); this process
  closes its own copies of the listeners at once (and removes Unix socket
  files), so a new client is refused.
- **stop again**: a second SIGTERM, which ends the drain now.
- The fork server sits in its own process group with its children; a Ctrl-C
  on the terminal reaches only this process, which relays it once.  If this
  process dies, the fork server sees end of file on its lifeline and drains.
- sd_notify READY/STOPPING are this process's (the fork server's
  environment has no ``NOTIFY_SOCKET``).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time

from sockkit._errors import SockkitError
from sockkit.engines._contract import ServeContext
from sockkit.engines._lifecycle import HURRY_POLL
from sockkit.engines._zygote_args import Described, describe
from sockkit.engines._zygote_boot import BOOTSTRAP

__all__ = ["ForkServer"]

#: Most fork server restarts within :data:`RESTART_WINDOW` seconds before giving up.
RESTARTS = 3
RESTART_WINDOW = 10.0
#: Beyond the drain and the children's grace, how long a stopping fork server
#: may take before it is killed.
_STOP_SLACK = 5.0
#: Orphans of a fork server that died get this long after SIGTERM at the stop.
_ORPHAN_GRACE = 1.0
#: What the fork server must not inherit: the service manager's and the
#: socket-activation variables are this process's.
_PRIVATE_ENV = ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


class ForkServer:
    """One fork server process at a time, for one :class:`ServeContext`."""

    def __init__(self, ctx: ServeContext, described: Described) -> None:
        self.ctx = ctx
        self.described = described
        self.proc: subprocess.Popen[bytes] | None = None
        self._pidfd = -1
        self._ready_r = -1
        self._lifeline_w = -1
        self._ready = False
        self._restarts: list[float] = []
        #: Process groups of fork servers that died: their children may still serve.
        self._orphan_groups: list[int] = []

    @classmethod
    def for_context(cls, ctx: ServeContext) -> ForkServer | None:
        """A fork server for ``ctx``, or None when ``ctx`` cannot be handed to one."""
        described = describe(ctx)
        return None if described is None else cls(ctx, described)

    def run(self) -> None:
        """Serve through the fork server until ``ctx.stop``; stop it; return when it is gone."""
        stop = self.ctx.stop
        try:
            self._start()
            while not stop.is_set():
                self._watch()
        finally:
            self._stop()

    # -- starting and watching ---------------------------------------------

    def _start(self) -> None:
        described = self.described
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        lifeline_r, lifeline_w = os.pipe2(os.O_CLOEXEC)
        env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV}
        env["PYTHONPATH"] = os.pathsep.join(
            [*described.import_roots, *filter(None, [env.get("PYTHONPATH")])]
        )
        argv = [sys.executable, "-c", BOOTSTRAP, *described.args]
        argv += ["--ready", str(ready_w), "--lifeline", str(lifeline_r)]
        log_fd = self.ctx.log.lines()
        stderr = log_fd.fd if log_fd is not None and log_fd.fd >= 0 else None
        try:
            self.proc = subprocess.Popen(
                argv,
                pass_fds=(*described.fds, ready_w, lifeline_r),
                stdin=subprocess.DEVNULL,
                stderr=stderr,
                env=env,
                process_group=0,
            )
        except OSError as exc:
            for fd in (ready_r, ready_w, lifeline_r, lifeline_w):
                os.close(fd)
            raise SockkitError(f"cannot start the fork server: {exc.strerror or exc}") from None
        os.close(ready_w)
        os.close(lifeline_r)
        self._ready_r, self._lifeline_w = ready_r, lifeline_w
        self._ready = False
        self._pidfd = os.pidfd_open(self.proc.pid)

    def _watch(self) -> None:
        """Wait for the stop, the fork server's start-up report or its end; act on it."""
        poller = select.poll()
        poller.register(self.ctx.stop.fd, select.POLLIN)
        poller.register(self._pidfd, select.POLLIN)
        signal_fd = self.ctx.stop.signal_fd
        if signal_fd >= 0:  # a signal's handler runs once this thread wakes
            poller.register(signal_fd, select.POLLIN)
        if self._ready_r >= 0:
            poller.register(self._ready_r, select.POLLIN)
        # Level-triggered and never emptied (other threads watch it too), so
        # once the stop is set this returns at once and run() sees it.
        for fd, _ in poller.poll():
            if fd == signal_fd:
                self.ctx.stop.drain_signals()
            elif fd == self._ready_r:
                self._read_report()
            elif fd == self._pidfd and not self.ctx.stop.is_set():
                self._died()
                return

    def _read_report(self) -> None:
        report = os.read(self._ready_r, 4096).decode(errors="replace")
        os.close(self._ready_r)
        self._ready_r = -1
        if report.startswith("r"):
            self._ready = True
        elif report.startswith("e"):
            self._reap()
            raise SockkitError(f"the fork server cannot start: {report[1:]}")

    def _died(self) -> None:
        """The fork server ended while it should serve: start another, unless it keeps dying."""
        if self._ready_r >= 0:
            self._read_report()  # raises if it said why it could not start
        assert self.proc is not None
        pid = self.proc.pid
        status = self._reap()
        if not self._ready:
            raise SockkitError(f"the fork server exited at start ({_status_text(status)})")
        self._orphan_groups.append(pid)
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW] + [now]
        if len(self._restarts) > RESTARTS:
            raise SockkitError(
                f"the fork server keeps ending ({_status_text(status)}):"
                f" {len(self._restarts)} times in {RESTART_WINDOW:g} s"
            )
        self.ctx.log.warning(
            f"fork server (pid {pid}) ended ({_status_text(status)}); starting another"
        )
        self._start()

    def _reap(self) -> int:
        """Wait for the fork server (it has exited or is about to); close its descriptors."""
        assert self.proc is not None
        status = self.proc.wait()
        for fd in (self._pidfd, self._lifeline_w, self._ready_r):
            if fd >= 0:
                os.close(fd)
        self._pidfd = self._lifeline_w = self._ready_r = -1
        return status

    # -- stopping -----------------------------------------------------------

    def _stop(self) -> None:
        """Relay the stop, close our listeners, wait for the fork server, end orphans."""
        ctx = self.ctx
        if self._pidfd >= 0:
            self._signal(signal.SIGTERM)
        ctx.shut_listeners()
        hurried = False
        limit = time.monotonic() + ctx.limits.drain_timeout + 1.0 + _STOP_SLACK
        while self._pidfd >= 0:
            if ctx.stop.hurried() and not hurried:
                self._signal(signal.SIGTERM)  # the second stop: close what is left now
                hurried = True
            if time.monotonic() > limit:
                self._signal(signal.SIGKILL)
            if select.select([self._pidfd], [], [], HURRY_POLL)[0]:
                assert self.proc is not None
                self._orphan_groups.append(self.proc.pid)  # SIGKILLed: it left children
                self._reap()
        for group in self._orphan_groups:
            _end_group(group)

    def _signal(self, sig: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, sig)


def _end_group(group: int) -> None:
    """SIGTERM what is left of process group ``group``, SIGKILL it after a grace; wait."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + _ORPHAN_GRACE
        while time.monotonic() < deadline:
            os.killpg(group, 0)  # ProcessLookupError: nobody left
            time.sleep(0.02)
        os.killpg(group, signal.SIGKILL)


def _status_text(status: int) -> str:
    if status < 0:
        return f"killed by signal {-status}"
    return f"exit status {status}"
