"""The no-toxic fast path: bytes moved by the kernel, Python only says when.

Small reads are copied with ``recv_into``/``send``; bulk goes socket -> pipe
-> socket by ``splice(2)``.  Both ends are non-blocking and watched by the
event loop with plain callbacks.  Nothing is held between two turns, so the
caller may switch to the Python path (toxics, dumps) at any turn without
losing or reordering a byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
from collections.abc import Callable
from typing import Protocol

__all__ = ["SPLICE", "SplicePump", "splice_usable"]

SPLICE = hasattr(os, "splice")
_PIPE_SIZE = 256 * 1024  # kernel memory per direction; the process holds none of it
_COPY_SIZE = 16 * 1024  # a read this full means bulk: splice from then on
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)


class SplicePump:
    """Moves ``src`` to ``dst`` without Python touching the bytes' path, driven by loop callbacks.

    Small messages (request/response traffic) are copied with one
    ``recv_into``/``send`` pair, which costs the kernel less than two splices;
    once a read fills the copy buffer the stream is bulk, and from then on it
    goes socket -> pipe -> socket by ``splice(2)``.  :meth:`run` returns True at
    the end of ``src``'s stream, False as soon as ``keep_going()`` says no
    before a read (nothing is held then), and raises the :class:`OSError` a
    socket reported.  :attr:`moved` counts the bytes delivered so far: a plain
    integer, so a small message costs no call to count it.
    """

    kind = "splice"
    pending = b""  # nothing is held when run() returns False

    def __init__(
        self,
        src: socket.socket,
        dst: socket.socket,
        keep_going: Callable[[], bool],
        host: _Versioned | None = None,
    ) -> None:
        self.src_sock, self.dst_sock = src, dst
        self.src, self.dst = src.fileno(), dst.fileno()
        # SPLICE_F_NONBLOCK only spares the pipe: splice waits on a blocking
        # socket (for data to read, for room to write) whatever the flags, in
        # a call Python restarts after a signal.  A socket left blocking would
        # hang the whole relay past SIGTERM, so the pump makes sure of it itself.
        src.setblocking(False)
        dst.setblocking(False)
        self.keep_going = keep_going
        self.moved = 0  # bytes written to dst
        # keep_going() can only change its answer when host.generation does:
        # it is asked again only then, not on every message.
        self.host = host
        self.seen = -1
        self.buffer = bytearray(_COPY_SIZE)
        self.view = memoryview(self.buffer)
        self.held = b""  # copied bytes dst could not take yet
        self.read_fd = self.write_fd = -1  # the pipe, once the stream turns out bulk
        self.piped = 0  # bytes in the pipe
        self.batch = 0  # bytes of the read now being delivered
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
                if fd >= 0:
                    os.close(fd)

    def stop(self) -> None:
        """Nothing to do: ``keep_going()`` is asked before every read."""

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
        host = self.host
        if host is None or host.generation != self.seen:
            if not self.keep_going():
                return self._finish(False)
            if host is not None:
                self.seen = host.generation
        try:
            if self.read_fd < 0:
                got = self.src_sock.recv_into(self.buffer)
            else:
                got = os.splice(self.src, self.write_fd, _PIPE_SIZE, flags=_FLAGS)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            return self._finish(exc)
        if not got:
            return self._finish(True)
        self.batch = got
        if self.read_fd >= 0:
            self.piped = got
        else:
            try:
                sent = self.dst_sock.send(self.view[:got])
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                return self._finish(exc)
            if sent == got < _COPY_SIZE:
                # a request or a reply, written whole: the common case, done here
                self.moved += got
                return None
            if sent < got:
                self.held = bytes(self.view[sent:got])
            if got == _COPY_SIZE:
                self._go_bulk()
        self._flush()
        return None

    def _go_bulk(self) -> None:
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        with contextlib.suppress(OSError):
            fcntl.fcntl(self.write_fd, _F_SETPIPE_SZ, _PIPE_SIZE)

    def _flush(self) -> None:
        try:
            while self.held:
                self.held = self.held[self.dst_sock.send(self.held) :]
            while self.piped:
                self.piped -= os.splice(self.read_fd, self.dst, self.piped, flags=_FLAGS)
        except (BlockingIOError, InterruptedError):
            # dst is full: stop reading until it drains (bounded by the pipe or one buffer).
            self.loop.remove_reader(self.src)
            self.loop.add_writer(self.dst, self._writable)
            return
        except OSError as exc:
            return self._finish(exc)
        self.moved += self.batch

    def _writable(self) -> None:
        self._flush()
        if not self.piped and not self.held and not self.done.done():
            self.loop.remove_writer(self.dst)
            self.loop.add_reader(self.src, self._readable)


class _Versioned(Protocol):
    generation: int


def splice_usable(*socks: socket.socket, extra: Callable[[], bool] | None = None) -> bool:
    """Whether the kernel can splice these sockets (TCP or Unix stream)."""
    if not SPLICE:
        return False
    return all(s.type == socket.SOCK_STREAM for s in socks) and (extra is None or extra())
