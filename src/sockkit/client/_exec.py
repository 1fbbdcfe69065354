"""``--exec`` / ``--sh-exec`` (ncat's ``-e`` / ``-c``): a program talks to the peer.

The program runs with the connected socket itself as its stdin and stdout
(stderr stays ours), so it reads what the peer sends and its output goes
straight back; sockkit moves no bytes.  Its environment names both ends as
ncat does, since scripts written for ncat read these names:

    NCAT_REMOTE_ADDR  NCAT_REMOTE_PORT  NCAT_LOCAL_ADDR  NCAT_LOCAL_PORT  NCAT_PROTO

(``NCAT_PROTO`` is ``TCP``; for a Unix socket the ``ADDR`` variables carry the
path and the ``PORT`` ones are left out.)

Rules:

- ``connect``: one program for the one connection; we wait for it to exit.
- ``listen``: each admitted connection gets its own process.  Without
  ``keep_open`` the first admitted peer is the only one (the listener closes),
  and we return when its program exits.  With ``keep_open`` we accept until
  interrupted; at most ``max_children`` programs run at once (ncat's
  ``--max-conns`` default, 100), a peer beyond that is refused ("max-conns").
- Every child is reaped as soon as it exits (a pidfd per child sits in the
  same poll as the listener), so no zombie outlives its connection.
- The child starts with the socket in blocking mode, as a program reading
  its stdin expects.
"""

from __future__ import annotations

import os
import select
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence

from sockkit._accept import Acceptor, Admission
from sockkit._endpoint import format_sockaddr
from sockkit._errors import SockkitError, UsageError

__all__ = ["MAX_CHILDREN", "ProgramServer", "program_argv", "run_program", "spawn"]

#: Programs running at once under ``listen --keep-open --exec`` (ncat's default --max-conns).
MAX_CHILDREN = 100

Event = Callable[[str], None]


def program_argv(exec_command: str | None, shell_command: str | None) -> list[str] | None:
    """The argv for ``--exec CMD`` (split as a shell would, run without one) or ``--sh-exec CMD``."""
    if exec_command is not None and shell_command is not None:
        raise UsageError("--exec and --sh-exec exclude each other")
    if shell_command is not None:
        return ["/bin/sh", "-c", shell_command]
    if exec_command is None:
        return None
    try:
        argv = shlex.split(exec_command)
    except ValueError as exc:
        raise UsageError(f"--exec {exec_command!r}: {exc}") from None
    if not argv:
        raise UsageError("--exec needs a command")
    return argv


def check_program(argv: Sequence[str]) -> None:
    """Raise :class:`SockkitError` now if ``argv[0]`` cannot be run, not at the first peer."""
    if shutil.which(argv[0]) is None:
        raise SockkitError(f"cannot run {argv[0]!r}: no such program (or not executable)")


def _environment(sock: socket.socket) -> dict[str, str]:
    env = dict(os.environ)
    for prefix, get in (("REMOTE", sock.getpeername), ("LOCAL", sock.getsockname)):
        try:
            address = get()
        except OSError:
            continue
        if isinstance(address, tuple):
            env[f"NCAT_{prefix}_ADDR"] = str(address[0])
            env[f"NCAT_{prefix}_PORT"] = str(address[1])
        elif address:
            env[f"NCAT_{prefix}_ADDR"] = os.fsdecode(address)
    env["NCAT_PROTO"] = "UDP" if sock.type == socket.SOCK_DGRAM else "TCP"
    return env


def spawn(sock: socket.socket, argv: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start ``argv`` with ``sock`` as its stdin and stdout; the caller may then close ``sock``."""
    sock.setblocking(True)
    try:
        return subprocess.Popen(
            list(argv), stdin=sock.fileno(), stdout=sock.fileno(), env=_environment(sock)
        )
    except OSError as exc:
        raise SockkitError(f"cannot run {argv[0]!r}: {exc.strerror or exc}") from exc


def run_program(sock: socket.socket, argv: Sequence[str], on_event: Event) -> int:
    """Run ``argv`` on the connected ``sock`` until it exits; close ``sock``; its exit status."""
    with sock:
        child = spawn(sock, argv)
    status = child.wait()
    on_event(f"{argv[0]} exited with status {status}")
    return status


class ProgramServer:
    """Accept peers on a listening socket, one program per admitted peer; :meth:`run` once.

    ``on_peer`` gets one line per peer accepted or finished (shown without
    ``--verbose`` under ``keep_open``), ``on_refused`` one per peer refused;
    ``on_warning`` gets failures that do not stop the listener.
    """

    def __init__(
        self,
        listener: socket.socket,
        where: str,
        argv: Sequence[str],
        *,
        keep_open: bool,
        admission: Admission,
        on_peer: Event,
        on_refused: Event,
        on_warning: Event,
    ) -> None:
        self._listener = listener
        self._acceptor = Acceptor(listener, where, on_warning)
        self._argv = list(argv)
        self._keep_open = keep_open
        self._admission = admission
        self._on_peer = on_peer
        self._on_refused = on_refused
        self._on_warning = on_warning
        self._poll = select.poll()
        #: pidfd -> (child, peer name)
        self._children: dict[int, tuple[subprocess.Popen[bytes], str]] = {}
        self._accepting = True
        self._paused_until = 0.0

    @property
    def running(self) -> int:
        """Programs running now (each reaped as soon as it exits)."""
        return len(self._children)

    def run(self) -> None:
        """Serve until interrupted (``keep_open``) or until the one peer's program exits."""
        self._poll.register(self._listener.fileno(), select.POLLIN)
        try:
            while self._accepting or self._children:
                timeout = None
                if self._paused_until:
                    timeout = max(int((self._paused_until - time.monotonic()) * 1000) + 1, 0)
                for fd, _ in self._poll.poll(timeout):
                    if fd == self._listener.fileno():
                        self._accept()
                    else:
                        self._reap(fd)
                if self._paused_until and time.monotonic() >= self._paused_until:
                    self._paused_until = 0.0
                    self._poll.register(self._listener.fileno(), select.POLLIN)
        finally:
            for pidfd in list(self._children):
                os.close(pidfd)
            self._children.clear()

    def _accept(self) -> None:
        for got in self._acceptor.batch():
            if isinstance(got, float):
                # Out of descriptors: stop watching the listener for a while.
                self._poll.unregister(self._listener.fileno())
                self._paused_until = time.monotonic() + got
                return
            sock, address = got
            name = format_sockaddr(sock.family, address) if address else "(unnamed)"
            reason = self._admission.admit(address, len(self._children))
            if reason is not None:
                self._on_refused(f"refused {name}: {reason}")  # before the peer sees the close
                sock.close()
                continue
            self._start(sock, name)
            if not self._keep_open:
                self._stop_accepting()
                return

    def _start(self, sock: socket.socket, name: str) -> None:
        with sock:
            try:
                child = spawn(sock, self._argv)
            except SockkitError as exc:
                if not self._keep_open:
                    raise
                self._on_warning(str(exc))
                return
        pidfd = os.pidfd_open(child.pid)
        self._children[pidfd] = (child, name)
        self._poll.register(pidfd, select.POLLIN)
        self._on_peer(f"accepted {name}: {self._argv[0]} pid {child.pid}")

    def _stop_accepting(self) -> None:
        self._accepting = False
        self._poll.unregister(self._listener.fileno())
        self._listener.close()  # one peer only: nobody else may queue up behind it

    def _reap(self, pidfd: int) -> None:
        child, name = self._children.pop(pidfd)
        self._poll.unregister(pidfd)
        os.close(pidfd)
        status = child.wait()
        self._on_peer(f"closed {name}: {self._argv[0]} pid {child.pid} exited with status {status}")
