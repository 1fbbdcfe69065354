"""The three pollers under the reactor: epoll, poll and select, behind one small interface.

Why not :mod:`selectors`: its ``select()`` rebuilds every ready event in Python
(a key look-up, a mask translation and a tuple each), about 0.6 µs per wait,
which is several per cent of a loopback echo round trip.  Here ``wait`` is the
kernel poller's own ``poll`` method where there is one, returning raw
``(fd, mask)`` pairs, and the reactor calls ``handlers[fd].on_ready(mask)``
itself.  A handler is an object with an ``on_ready`` method (a connection
registers itself), not a bound method: that would be one more 64-byte object
for every idle connection.

Masks use the poll(2) bits, which epoll shares on Linux: ``READ``, ``WRITE``,
and ``ERROR`` (error or hang-up), which a handler treats as both readable and
writable so its next ``recv``/``send`` reports what happened.
"""

from __future__ import annotations

import select
from collections.abc import Callable, Iterable
from itertools import chain, repeat
from typing import ClassVar, Protocol

__all__ = [
    "ERROR",
    "READ",
    "STALE",
    "WRITE",
    "Callback",
    "EpollPoller",
    "Handler",
    "PollPoller",
    "Poller",
    "SelectPoller",
]

READ = select.POLLIN
WRITE = select.POLLOUT
ERROR = select.POLLERR | select.POLLHUP | select.POLLNVAL


class Handler(Protocol):
    """What is registered per fd: ``on_ready`` is called with the ready mask."""

    def on_ready(self, mask: int) -> None: ...


class Callback:
    """A function as a :class:`Handler` (the reactor's own fds, handshake stages)."""

    __slots__ = ("on_ready",)

    def __init__(self, on_ready: Callable[[int], None]) -> None:
        self.on_ready = on_ready


class _Stale:
    """The handler left for an unregistered fd.

    An fd closed by an earlier handler of the same batch may still appear
    in that batch; leaving this in :attr:`Poller.handlers` (instead of
    deleting the entry) lets the reactor dispatch with a plain subscript.
    """

    __slots__ = ()

    def on_ready(self, mask: int) -> None:
        pass


STALE: Handler = _Stale()


class Poller:
    """Watches fds for READ/WRITE and keeps the handler of each.

    ``wait(timeout)`` blocks for at most ``timeout`` (in the poller's unit:
    seconds times :attr:`scale`; ``None`` blocks indefinitely) and returns
    ``(fd, mask)`` pairs.  An fd must be unregistered before it is closed.
    """

    #: Seconds are multiplied by this for ``wait``.
    scale: ClassVar[float] = 1.0
    #: fds at or above this cannot be watched (select's FD_SETSIZE), else ``None``.
    fd_limit: ClassVar[int | None] = None

    wait: Callable[[float | None], Iterable[tuple[int, int]]]

    def __init__(self) -> None:
        #: fd -> handler; unregistered fds map to :data:`STALE`.
        self.handlers: dict[int, Handler] = {}

    def _forget(self, fd: int) -> None:
        if self.handlers.get(fd, STALE) is STALE:
            raise KeyError(f"fd {fd} is not registered")
        self.handlers[fd] = STALE

    def register(self, fd: int, events: int, handler: Handler) -> None:
        raise NotImplementedError

    def modify(self, fd: int, events: int, handler: Handler) -> None:
        raise NotImplementedError

    def unregister(self, fd: int) -> None:
        """Stop watching ``fd``; :class:`KeyError` if it is not registered."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the poller's own fd, if it has one."""


class EpollPoller(Poller):
    """epoll(7): the wait costs O(ready fds)."""

    def __init__(self) -> None:
        super().__init__()
        self._epoll = select.epoll()
        self.wait = self._epoll.poll

    def register(self, fd: int, events: int, handler: Handler) -> None:
        self._epoll.register(fd, events)
        self.handlers[fd] = handler

    def modify(self, fd: int, events: int, handler: Handler) -> None:
        self._epoll.modify(fd, events)
        self.handlers[fd] = handler

    def unregister(self, fd: int) -> None:
        self._forget(fd)
        self._epoll.unregister(fd)

    def close(self) -> None:
        self._epoll.close()


class PollPoller(Poller):
    """poll(2): no fd limit; the wait costs O(watched fds)."""

    scale = 1000.0  # poll() takes milliseconds

    def __init__(self) -> None:
        super().__init__()
        self._poll = select.poll()
        self.wait = self._poll.poll

    def register(self, fd: int, events: int, handler: Handler) -> None:
        self._poll.register(fd, events)
        self.handlers[fd] = handler

    def modify(self, fd: int, events: int, handler: Handler) -> None:
        self._poll.modify(fd, events)
        self.handlers[fd] = handler

    def unregister(self, fd: int) -> None:
        self._forget(fd)
        self._poll.unregister(fd)


_READS = repeat(READ)
_WRITES = repeat(WRITE)


class SelectPoller(Poller):
    """select(2): only fds below FD_SETSIZE (1024)."""

    fd_limit = 1024

    def __init__(self) -> None:
        super().__init__()
        self._readers: set[int] = set()
        self._writers: set[int] = set()
        self.wait = self._wait

    def _wait(self, timeout: float | None) -> Iterable[tuple[int, int]]:
        readable, writable, _ = select.select(self._readers, self._writers, (), timeout)
        # zip with an endless repeat() pairs each fd with its mask in C: no list built.
        if writable:
            return chain(zip(readable, _READS, strict=False), zip(writable, _WRITES, strict=False))
        return zip(readable, _READS, strict=False)

    def register(self, fd: int, events: int, handler: Handler) -> None:
        if self.handlers.get(fd, STALE) is not STALE:
            raise KeyError(f"fd {fd} is already registered")
        self.modify(fd, events, handler)

    def modify(self, fd: int, events: int, handler: Handler) -> None:
        self.handlers[fd] = handler
        for bit, watched in ((READ, self._readers), (WRITE, self._writers)):
            if events & bit:
                watched.add(fd)
            else:
                watched.discard(fd)

    def unregister(self, fd: int) -> None:
        self._forget(fd)
        self._readers.discard(fd)
        self._writers.discard(fd)
