"""The thread engine: a thread for every connection.

Simple and fair, and chat works (one process).  Each open connection has a
thread of its own, so ``max_conns`` is the real bound.

Starting a thread is most of what a short connection costs (``Thread()``,
``clone``, a stack, and ``Thread.start`` waiting for the new thread to run),
so a thread whose connection ended waits up to :data:`_LINGER` seconds for
the next one before it exits; at most :data:`_MAX_SPARE` wait at a time.
Under a steady stream of connections no thread is started at all; when
connections stop, the spare threads end and the engine holds nothing.
"""

from __future__ import annotations

import threading

from sockkit.engines._accept import AcceptingEngine, _logger
from sockkit.engines._blocking import Connection
from sockkit.engines._lifecycle import Drain

__all__ = ["ThreadEngine"]

#: After force-closing, how long to wait for each connection's thread to notice.
_JOIN_TIMEOUT = 5.0
#: How long a thread whose connection ended waits for another one.
_LINGER = 1.0
#: At most this many threads wait for a connection at a time.
_MAX_SPARE = 32


class _Spare:
    """A thread between connections: its next connection (None: exit) and the lock it waits on."""

    __slots__ = ("conn", "ready")

    def __init__(self) -> None:
        self.conn: Connection | None = None
        self.ready = threading.Lock()
        self.ready.acquire()  # released by dispatch() once conn is set


class ThreadEngine(AcceptingEngine):
    """Serve each connection on its own thread (``--engine thread``)."""

    name = "thread"

    def start(self) -> None:
        self._lock = threading.Lock()
        #: Notified whenever a connection ends; drain waits on it.
        self._ended = threading.Condition(self._lock)
        self._live: set[Connection] = set()
        self._spares: list[_Spare] = []
        self._threads: set[threading.Thread] = set()
        self._stopping = False

    def open_count(self) -> int:
        return len(self._live)

    def dispatch(self, conn: Connection) -> str | None:
        with self._lock:
            self._live.add(conn)
            if self._spares:
                spare = self._spares.pop()  # the most recent: its stack is still warm
                spare.conn = conn
                spare.ready.release()
                return None
        thread = threading.Thread(target=self._serve, args=(conn,), name="sockkit-conn")
        thread.daemon = True
        with self._lock:
            self._threads.add(thread)
        try:
            thread.start()
        except RuntimeError:  # "can't start new thread": out of memory or a ulimit
            with self._lock:
                self._live.discard(conn)
                self._threads.discard(thread)
            return "cannot start a thread"
        return None

    def _serve(self, first: Connection) -> None:
        conn: Connection | None = first
        spare = _Spare()
        try:
            while conn is not None:
                try:
                    conn.run()
                finally:
                    self.ctx.admission.release(conn.counted)
                    with self._lock:
                        self._live.discard(conn)
                        self._ended.notify_all()
                conn = self._next(spare)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _next(self, spare: _Spare) -> Connection | None:
        """Wait up to :data:`_LINGER` for another connection; None: end this thread."""
        with self._lock:
            if self._stopping or len(self._spares) >= _MAX_SPARE:
                return None
            spare.conn = None
            self._spares.append(spare)
        if not spare.ready.acquire(timeout=_LINGER):
            with self._lock:
                if spare in self._spares:
                    self._spares.remove(spare)
                    return None
            spare.ready.acquire()  # dispatch() took it just now: its release is coming
        return spare.conn

    def drain(self, drain: Drain) -> None:
        with self._lock:
            self._stopping = True
            for spare in self._spares:
                spare.ready.release()  # conn is None: the thread ends
            self._spares.clear()
            drain.wait(self._ended, lambda: self._live)
            live = list(self._live)
            threads = list(self._threads)
        for conn in live:
            conn.abort()
        for thread in threads:
            thread.join(_JOIN_TIMEOUT)
            if thread.is_alive():
                _logger.warning("a connection thread did not end after being closed")
