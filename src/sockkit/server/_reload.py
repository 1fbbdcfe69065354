"""SIGHUP: hand the listening sockets to a new generation of the server, then drain the old one.

The way nginx's binary upgrade and HAProxy's ``-x`` hand listeners over, so a
restart refuses and loses no connection:

1. SIGHUP (or ``--reload-signal``) in the serving process (the supervisor with
   ``--workers``) starts ``sockkit`` again with the same command line, in a
   helper thread while the engine keeps serving.  Every listening socket is
   inherited (same descriptor numbers), and ``SOCKKIT_LISTENERS`` says which
   endpoint each one is (``ENDPOINT=FD`` joined by ``;``).
2. The new generation opens each of those endpoints by adopting the socket
   (:func:`handed_over`) instead of binding: same socket, same kernel queue, so
   a connection arriving meanwhile waits there for whichever generation
   accepts first.  New code and the options on the command line take effect.
3. Once listening, the new generation says ``READY=1`` through
   ``NOTIFY_SOCKET``, which the old one pointed at a private datagram socket
   (the sd_notify line that would otherwise reach systemd).
4. Then the old generation logs it, leaves its Unix socket files to the new
   one, stops accepting and drains as for SIGTERM, and exits 0.  If the new
   generation exits first, or is not ready within :data:`READY_TIMEOUT`, the
   old one says why and goes on serving (the new one's own error line is on
   the shared stderr).

Under systemd with socket activation the sockets are systemd's anyway:
``systemctl restart`` loses nothing there, and ``systemd:`` endpoints are not
handed over this way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Protocol

from sockkit._endpoint import Endpoint, parse_endpoint
from sockkit.engines._contract import StopSignal
from sockkit.server._log import ServerLog


class Reloadable(Protocol):
    """What a reload needs of the server (:class:`sockkit.server.Server` is one)."""

    @property
    def log(self) -> ServerLog: ...

    @property
    def stop_signal(self) -> StopSignal: ...

    def stop(self) -> None: ...

    def handover_sockets(self) -> list[tuple[str, socket.socket]]: ...

    def disown_socket_files(self) -> None: ...


__all__ = ["READY_TIMEOUT", "handed_over", "reloading"]

#: How long a new generation may take to say it is ready.
READY_TIMEOUT = 30.0
_ENV = "SOCKKIT_LISTENERS"
_handed: dict[str, int] | None = None


def handed_over(endpoint: Endpoint) -> Endpoint:
    """``endpoint``, or the socket a previous generation handed over for it (``fd`` set).

    The hand-over list is read once from the environment and removed from it,
    so programs this one starts do not see it.
    """
    global _handed
    if _handed is None:
        _handed = {}
        for item in os.environ.pop(_ENV, "").split(";"):
            text, sep, number = item.rpartition("=")
            if sep and number.isdigit():
                _handed[text] = int(number)
    fd = _handed.pop(str(endpoint), None)
    return endpoint if fd is None else parse_endpoint(f"fd:{fd}")


@contextlib.contextmanager
def reloading(
    server: Reloadable, command: Sequence[str] | None, signum: int = signal.SIGHUP
) -> Iterator[None]:
    """While in the block, ``signum`` starts a new generation running ``command`` (main thread only).

    ``command`` is the full argv of the new generation (``None``: no reloads).
    """
    if command is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    busy = threading.Lock()

    def handler(sig: int, frame: FrameType | None) -> None:
        if busy.acquire(blocking=False):
            threading.Thread(
                target=_reload, args=(server, list(command), busy), daemon=True, name="reload"
            ).start()

    previous = signal.signal(signum, handler)
    try:
        yield
    finally:
        signal.signal(signum, previous)


def _reload(server: Reloadable, command: list[str], busy: threading.Lock) -> None:
    try:
        outcome = _start_next_generation(server, command)
    except OSError as exc:
        outcome = f"could not start it: {exc}"
    finally:
        busy.release()
    if isinstance(outcome, int):
        # WARNING, not INFO: a reload is rare and must show with --log-level warning.
        server.log.event(
            logging.WARNING, f"reload: new generation (pid {outcome}) is serving; draining this one"
        )
        server.disown_socket_files()
        server.stop()
    else:
        server.log.event(logging.ERROR, f"reload failed, still serving: {outcome}")


def _start_next_generation(server: Reloadable, command: list[str]) -> int | str:
    """Start the next generation; its pid once ready, else why not."""
    sockets = [(text, sock) for text, sock in server.handover_sockets() if sock.fileno() >= 0]
    listing = ";".join(f"{text}={sock.fileno()}" for text, sock in sockets)
    name = f"sockkit-reload-{os.getpid()}-{os.urandom(4).hex()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as ready:
        ready.bind(b"\x00" + name.encode())
        env = dict(os.environ, **{_ENV: listing, "NOTIFY_SOCKET": "@" + name})
        sys.stderr.flush()
        child = subprocess.Popen(
            command,
            env=env,
            pass_fds=[sock.fileno() for _, sock in sockets],
            stdin=subprocess.DEVNULL,
            start_new_session=False,
        )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            ready.settimeout(0.1)
            try:
                message = ready.recv(4096)
            except TimeoutError:
                message = b""
            if b"READY=1" in message.split(b"\n"):
                return child.pid
            status = child.poll()
            if status is not None:
                return f"the new generation exited with status {status} before it was ready"
            if server.stop_signal.is_set():
                child.terminate()
                return "this server is stopping"
        child.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(5)
        return f"the new generation was not ready within {READY_TIMEOUT:g} s"
