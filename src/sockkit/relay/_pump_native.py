"""The no-toxic fast path in native code: bytes move in a thread that never enters Python.

:mod:`sockkit.relay._fastpath` (a small C extension, built when a compiler
is there) runs one thread with its own epoll that copies each direction
src -> dst through a bounded buffer, with the interpreter lock released.
This module is its asyncio face: one native thread per event loop while any
direction uses it (closed after a second idle), an eventfd the loop watches
for directions that ended, and :class:`NativePump`, which keeps the
contract of :class:`~sockkit.relay._pump_splice.SplicePump`.

Without the extension, or with ``SOCKKIT_RELAY_FASTPATH=0`` in the
environment, :func:`native_usable` says no and the relay splices from
Python as before.
"""

from __future__ import annotations

import asyncio
import os
import socket
import weakref
from types import ModuleType

__all__ = ["ENV", "NativePump", "close_native_loop", "native_usable"]

ENV = "SOCKKIT_RELAY_FASTPATH"  # "0", "off", "no" or "false": keep the copy loop in Python
_IDLE = 1.0  # seconds with no direction before the native thread is stopped

try:
    import sockkit.relay._fastpath as _native

    _ext: ModuleType | None = _native
    _RUNNING = _native.RUNNING
except ImportError:  # built without a compiler: the Python path serves
    _ext = None
    _RUNNING = 0


def native_usable() -> bool:
    """Whether the native copy loop is built and not turned off."""
    return _ext is not None and os.environ.get(ENV, "1").lower() not in ("0", "off", "no", "false")


class _Engine:
    """One native thread serving the directions of one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        assert _ext is not None
        self.loop = loop
        self.core = _ext.Engine()
        self.pumps: dict[int, NativePump] = {}
        self.idle: asyncio.TimerHandle | None = None
        loop.add_reader(self.core.fileno(), self._finished)

    def _finished(self) -> None:
        for handle, state, error in self.core.finished():
            pump = self.pumps.get(handle)
            if pump is not None:
                pump.ended(state, error)

    def attach(self, pump: NativePump) -> int:
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        handle: int = self.core.add(pump.src, pump.dst)
        self.pumps[handle] = pump
        return handle

    def detach(self, handle: int) -> tuple[int, bytes, int, int]:
        """Take a direction back: (bytes written, bytes read and not written, state, errno)."""
        del self.pumps[handle]
        out: tuple[int, bytes, int, int] = self.core.release(handle)
        if not self.pumps and self.idle is None and not self.loop.is_closed():
            self.idle = self.loop.call_later(_IDLE, self.close)
        return out

    def close(self) -> None:
        self.idle = None
        if self.pumps:
            return
        _engines.pop(self.loop, None)
        if not self.loop.is_closed():
            self.loop.remove_reader(self.core.fileno())
        self.core.close()


_engines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Engine] = (
    weakref.WeakKeyDictionary()
)


def close_native_loop() -> None:
    """Stop the running loop's native thread now, if it serves no direction."""
    engine = _engines.get(asyncio.get_running_loop())
    if engine is not None:
        if engine.idle is not None:
            engine.idle.cancel()
        engine.close()


def _engine(loop: asyncio.AbstractEventLoop) -> _Engine:
    engine = _engines.get(loop)
    if engine is None:
        engine = _engines[loop] = _Engine(loop)
    return engine


class NativePump:
    """Moves ``src`` to ``dst`` in the native thread until the stream ends or :meth:`stop`.

    :meth:`run` returns True at the end of ``src``'s stream (every byte
    written; the caller half-closes ``dst``), False after :meth:`stop` (the
    direction is back in Python; :attr:`pending` holds the bytes read from
    ``src`` and not yet written, to be sent first), and raises the
    :class:`OSError` a socket reported.  :attr:`moved` counts the bytes
    written to ``dst`` so far.
    """

    kind = "native"

    def __init__(self, src: socket.socket, dst: socket.socket) -> None:
        src.setblocking(False)
        dst.setblocking(False)
        self.src, self.dst = src.fileno(), dst.fileno()
        self.loop = asyncio.get_running_loop()
        self.engine = _engine(self.loop)
        self.done: asyncio.Future[bool] = self.loop.create_future()
        self.handle: int | None = None
        self.pending = b""
        self._moved = 0

    @property
    def moved(self) -> int:
        if self.handle is not None:
            return int(self.engine.core.moved(self.handle))
        return self._moved

    async def run(self) -> bool:
        self.handle = self.engine.attach(self)
        try:
            return await self.done
        finally:
            self._release()

    def stop(self) -> None:
        """Hand the direction back to Python now (a toxic or an observer touches it).

        The native loop lets go before this returns, so no byte passes it
        after the change that called for it.
        """
        if not self.done.done():
            self._release()
        if not self.done.done():
            self.done.set_result(False)

    def _release(self) -> None:
        if self.handle is not None:
            self._moved, self.pending, state, error = self.engine.detach(self.handle)
            self.handle = None
            if state != _RUNNING:  # it ended before Python heard: say how
                self.ended(state, error)

    def ended(self, state: int, error: int) -> None:
        """The native loop finished the direction: end of stream, or a socket error."""
        if self.done.done():
            return
        assert _ext is not None
        if state == _ext.DONE_ERROR:
            self.done.set_exception(OSError(error, os.strerror(error)))
        else:
            self.done.set_result(True)
