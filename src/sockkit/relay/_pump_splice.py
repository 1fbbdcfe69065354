"""Moving a stream's bytes without entering Python: ``splice(2)`` through a pipe.

socket -> pipe -> socket, both ends non-blocking, waiting on the event loop
when either side has nothing to give or no room to take.  The pipe is empty
again at the top of every turn, so the caller may switch to the Python path
(toxics, dumps) between two turns without losing or reordering a byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
from collections.abc import Callable

__all__ = ["SPLICE", "SplicePump", "splice_usable", "wait_fd"]

SPLICE = hasattr(os, "splice")
_PIPE_SIZE = 256 * 1024  # kernel memory per direction; the process holds none of it
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)


async def wait_fd(fd: int, writable: bool) -> None:
    """Return once ``fd`` is readable (or writable)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not done.done():
            done.set_result(None)

    (loop.add_writer if writable else loop.add_reader)(fd, ready)
    try:
        await done
    finally:
        (loop.remove_writer if writable else loop.remove_reader)(fd)


class SplicePump:
    """Moves ``src`` to ``dst`` through a pipe, driven by loop callbacks (no task per turn).

    :meth:`run` returns True at the end of ``src``'s stream, False as soon as
    ``keep_going()`` says no before a read (the pipe is then empty), and
    raises the :class:`OSError` a socket reported.  ``moved(n)`` is told of
    every batch delivered.
    """

    def __init__(
        self,
        src: socket.socket,
        dst: socket.socket,
        keep_going: Callable[[], bool],
        moved: Callable[[int], None],
    ) -> None:
        self.src, self.dst = src.fileno(), dst.fileno()
        self.keep_going = keep_going
        self.moved = moved
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        with contextlib.suppress(OSError):
            fcntl.fcntl(self.write_fd, _F_SETPIPE_SZ, _PIPE_SIZE)
        self.pending = 0  # bytes in the pipe
        self.batch = 0  # bytes of the splice that filled it
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[bool] = self.loop.create_future()

    async def run(self) -> bool:
        self.loop.add_reader(self.src, self._readable)
        try:
            return await self.done
        finally:
            self.loop.remove_reader(self.src)
            self.loop.remove_writer(self.dst)
            for fd in (self.read_fd, self.write_fd):
                os.close(fd)

    def _finish(self, result: bool | OSError) -> None:
        self.loop.remove_reader(self.src)
        self.loop.remove_writer(self.dst)
        if self.done.done():
            return
        if isinstance(result, OSError):
            self.done.set_exception(result)
        else:
            self.done.set_result(result)

    def _readable(self) -> None:
        if not self.keep_going():
            return self._finish(False)
        try:
            got = os.splice(self.src, self.write_fd, _PIPE_SIZE, flags=_FLAGS)
        except BlockingIOError:
            return None
        except OSError as exc:
            return self._finish(exc)
        if not got:
            return self._finish(True)
        self.pending = self.batch = got
        self._flush()
        return None

    def _flush(self) -> None:
        while self.pending:
            try:
                self.pending -= os.splice(self.read_fd, self.dst, self.pending, flags=_FLAGS)
            except BlockingIOError:
                # dst is full: stop reading until it drains (bounded by the pipe).
                self.loop.remove_reader(self.src)
                self.loop.add_writer(self.dst, self._writable)
                return
            except OSError as exc:
                return self._finish(exc)
        self.moved(self.batch)

    def _writable(self) -> None:
        self._flush()
        if not self.pending and not self.done.done():
            self.loop.remove_writer(self.dst)
            self.loop.add_reader(self.src, self._readable)


def splice_usable(*socks: socket.socket, extra: Callable[[], bool] | None = None) -> bool:
    """Whether the kernel can splice these sockets (TCP or Unix stream)."""
    if not SPLICE:
        return False
    return all(s.type == socket.SOCK_STREAM for s in socks) and (extra is None or extra())
