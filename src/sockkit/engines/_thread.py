"""The thread engine: a new thread for every connection.

Simple and fair, and chat works (one process).  Each thread costs a stack, so
``max_conns`` is the real bound; a finished thread drops out of :attr:`_live`
at once, so the engine holds nothing for connections that have ended.
"""

from __future__ import annotations

import threading

from sockkit.engines._accept import AcceptingEngine, _logger
from sockkit.engines._blocking import Connection
from sockkit.engines._lifecycle import Drain

__all__ = ["ThreadEngine"]

#: After force-closing, how long to wait for each connection's thread to notice.
_JOIN_TIMEOUT = 5.0


class ThreadEngine(AcceptingEngine):
    """Serve each connection on its own thread (``--engine thread``)."""

    name = "thread"

    def start(self) -> None:
        self._lock = threading.Lock()
        #: Notified whenever a connection ends; drain waits on it.
        self._ended = threading.Condition(self._lock)
        self._live: dict[Connection, threading.Thread] = {}

    def open_count(self) -> int:
        return len(self._live)

    def dispatch(self, conn: Connection) -> str | None:
        thread = threading.Thread(target=self._serve, args=(conn,), name="sockkit-conn")
        thread.daemon = True
        with self._lock:
            self._live[conn] = thread
        try:
            thread.start()
        except RuntimeError:  # "can't start new thread": out of memory or a ulimit
            with self._lock:
                del self._live[conn]
            return "cannot start a thread"
        return None

    def _serve(self, conn: Connection) -> None:
        try:
            conn.run()
        finally:
            self.ctx.admission.release(conn.addr)
            with self._lock:
                del self._live[conn]
                self._ended.notify_all()

    def drain(self, drain: Drain) -> None:
        with self._lock:
            drain.wait(self._ended, lambda: self._live)
            live = list(self._live.items())
        for conn, _ in live:
            conn.abort()
        for _, thread in live:
            thread.join(_JOIN_TIMEOUT)
            if thread.is_alive():
                _logger.warning("a connection thread did not end after being closed")
