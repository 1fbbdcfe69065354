"""The pool engine: a fixed set of worker threads and a short queue in front of them.

``limits.threads`` workers each serve one connection at a time.  An accepted
connection waits in a queue of at most that many places; when workers and
queue are all taken the client is refused at once (closed, logged as ``busy``) rather than
left hanging in a backlog nobody will reach.  The number of threads never
changes, whatever the load.
"""

from __future__ import annotations

import queue
import threading

from sockkit.engines._accept import AcceptingEngine, _logger
from sockkit.engines._blocking import Connection
from sockkit.engines._lifecycle import Drain

__all__ = ["PoolEngine"]

_JOIN_TIMEOUT = 5.0


class PoolEngine(AcceptingEngine):
    """Serve connections on ``limits.threads`` worker threads (``--engine pool``)."""

    name = "pool"

    def start(self) -> None:
        size = max(1, self.ctx.limits.threads)
        # The bound is on connections, queued plus running, not on the queue
        # object: a burst must not be refused just because workers have not yet
        # picked up what was queued a microsecond earlier.
        self._capacity = 2 * size
        self._queue: queue.SimpleQueue[Connection | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._ended = threading.Condition(self._lock)
        #: Queued and running connections: what max_conns counts and drain ends.
        self._live: set[Connection] = set()
        self._workers = [
            threading.Thread(target=self._work, name=f"sockkit-pool-{i}", daemon=True)
            for i in range(size)
        ]
        for worker in self._workers:
            worker.start()

    def open_count(self) -> int:
        return len(self._live)

    def dispatch(self, conn: Connection) -> str | None:
        with self._lock:
            if len(self._live) >= self._capacity:
                return "busy"
            self._live.add(conn)
        self._queue.put(conn)
        return None

    def _work(self) -> None:
        buffer = memoryview(bytearray(self.ctx.limits.read_size))  # one per worker, reused
        while True:
            conn = self._queue.get()
            if conn is None:
                return
            conn.buffer = buffer
            try:
                conn.run()
            finally:
                self.ctx.admission.release(conn.addr)
                with self._lock:
                    self._live.discard(conn)
                    self._ended.notify_all()

    def drain(self, drain: Drain) -> None:
        with self._lock:
            drain.wait(self._ended, lambda: self._live)
            live = list(self._live)
        # Queued connections are ended too: run() sees the abort and refuses them.
        for conn in live:
            conn.abort()
        for _ in self._workers:
            self._queue.put(None)
        for worker in self._workers:
            worker.join(_JOIN_TIMEOUT)
            if worker.is_alive():
                _logger.warning("a pool thread did not end after its connection was closed")
