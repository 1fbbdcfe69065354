"""The pool engine: half-sync/half-async -- one reactor thread, ``limits.threads`` service threads.

One reactor thread (the epoll engine's, :mod:`._reactor`) owns every socket
and its readiness: it accepts, receives, sends and keeps the deadlines, so an
idle connection costs a registration, not a thread.  What may block -- the
service's calls (``connected``, ``received``, ``eof_received``, ``produce``)
-- runs on the pool's worker threads:

- When a connection has input (bytes or the peer's EOF), the reactor reads
  it, stops watching the socket and puts one job -- the connection core's
  call -- on the work queue.  A connection has at most one job at a time, so
  its calls stay in order and its core is touched by one thread at a time:
  the worker while the job runs, the reactor otherwise.
- The worker runs the core's call (the core applies every rule: water
  marks, cap, half-close order, close reasons) and hands the connection back
  through the reactor's wakeup pipe; the reactor sends what the core holds
  and watches the socket again.
- The queue is bounded: with ``4 * threads`` jobs (queued or running)
  outstanding, a connection that becomes readable is parked unread -- its
  bytes wait in the kernel, which pushes back on the peer -- and parked
  connections are read in turn as jobs finish.
- Deadlines are not checked while a job runs (a service that is working is
  not idle); a close decided meanwhile (drain deadline, stop) waits for the
  job to end.  ``--max-conns`` refuses with the usual logged reason.
"""

from __future__ import annotations

import collections
import logging
import os
import select
import socket
import ssl
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from sockkit.engines._contract import ServeContext, service_error
from sockkit.engines._core import ConnectionCore
from sockkit.engines._reactor import _Reactor, _ReactorEngine
from sockkit.engines._reactor_conn import Connection, TlsConnection
from sockkit.engines._reactor_poll import EpollPoller, Poller, PollPoller, SelectPoller

__all__ = ["PoolEngine"]

_log = logging.getLogger("sockkit.engines.pool")

#: After the reactor ends, how long to wait for each worker to finish its job.
_JOIN_TIMEOUT = 5.0
#: Jobs (queued plus running) per worker before readable connections are parked.
_QUEUE_PER_THREAD = 4

# A connection's job state: the reactor owns it (IDLE), a worker does (BUSY),
# or the worker is done and the reactor has yet to take it back (RETURNED).
_IDLE, _BUSY, _RETURNED = 0, 1, 2

_Job = tuple["_Pooled", Callable[..., None], tuple[object, ...]]

if TYPE_CHECKING:
    _PooledBase = Connection
else:
    _PooledBase = object


class _Pooled(_PooledBase):
    """What a pooled connection adds to the reactor's: service calls go to the work queue.

    A mixin with no slots of its own, so it goes in front of both
    :class:`Connection` and :class:`TlsConnection`; the concrete classes hold
    ``job`` and ``parked``.
    """

    # Empty at run time: two bases with slots of their own cannot be combined.
    if TYPE_CHECKING:
        __slots__ = ("job", "parked")
    else:
        __slots__ = ()

    job: int
    parked: bool
    host: ClassVar[_PoolReactor]

    # -- the core's entry points, sent to a worker ------------------------------

    def start(self, peer: str) -> None:
        self._submit(ConnectionCore.start, peer)

    def receive(self, data: bytes) -> None:
        self._submit(ConnectionCore.receive, data)

    def receive_eof(self) -> None:
        self._submit(ConnectionCore.receive_eof)

    def writable(self) -> None:
        if self.service.producing:  # otherwise the core's call would do nothing
            self._submit(ConnectionCore.writable)

    def _submit(self, call: Callable[..., None], *args: object) -> None:
        self.job = _BUSY
        self.sync()  # wanted_events() is 0 while busy: the socket is not watched
        self.host.submit((self, call, args))

    def returned(self) -> None:
        """Called on the worker after the job: hand the connection back to the reactor."""
        self.job = _RETURNED
        self.host.wake_from_thread(self)

    # -- the reactor's side, while a job runs -----------------------------------

    @property
    def wants_read(self) -> bool:
        return not self.job and super().wants_read

    def wanted_events(self) -> int:
        return 0 if self.job or self.parked else super().wanted_events()

    def sync(self) -> None:
        """Also the hand-back: a returned connection sends what its job produced."""
        if self.job == _RETURNED:
            self.job = _IDLE
            self.host.job_done()
            self.pump()
            if self.more_buffered() and not self.closed and self.wants_read:
                self.on_readable(0)
            return
        super().sync()

    def pump(self) -> None:
        if not self.job:  # the worker owns the output buffer while busy
            super().pump()

    def tick(self, now: float, held: int = 0) -> None:
        if not self.job:
            super().tick(now, held)

    def close(self, reason: str | None) -> None:
        if self.job == _BUSY and not self.host.workers_gone:
            self.abort(reason)  # closed when the worker hands it back
            return
        super().close(reason)

    def on_readable(self, mask: int) -> None:
        if self.host.saturated:
            self.parked = True
            self.sync()
            self.host.park(self)
            return
        self.read_input()

    on_ready = on_readable

    def read_input(self) -> None:
        """Read what the socket holds and submit it (the family's own read)."""
        raise NotImplementedError

    def more_buffered(self) -> bool:
        """Whether input waits outside the socket (TLS records OpenSSL has decrypted)."""
        return False


class PooledConnection(_Pooled, Connection):
    """A plain connection whose service runs on the pool."""

    __slots__ = ("job", "parked")

    def __init__(self, sock: socket.socket, peer: str) -> None:
        self.job = _IDLE
        self.parked = False
        super().__init__(sock, peer)

    def read_input(self) -> None:
        try:
            size = os.readv(self.fd, self._views)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.lost(exc)
            return
        if size:
            self.receive(self._view[:size].tobytes())
        else:
            self.receive_eof()


class PooledTlsConnection(_Pooled, TlsConnection):  # type: ignore[misc]  # slots: see _Pooled
    """A TLS connection: handshake on the reactor, service calls on the pool."""

    __slots__ = ("job", "parked")

    def __init__(self, sock: ssl.SSLSocket, peer: str) -> None:
        self.job = _IDLE
        self.parked = False
        super().__init__(sock, peer)

    def read_input(self) -> None:
        TlsConnection.on_readable(self, 0)  # stops after one record: the job is submitted

    def more_buffered(self) -> bool:
        pending: Callable[[], int] = getattr(self.sock, "pending", lambda: 0)
        return bool(pending())


class _Slot:
    """One worker's place in :class:`_WarmestFirst`: its wake-up lock and the job handed to it."""

    __slots__ = ("job", "wake")

    def __init__(self, wake: threading.Lock) -> None:
        self.wake = wake
        self.job: _Job | None = None


class _WarmestFirst:
    """The work queue: a job goes to the worker that went idle *last*.

    A plain FIFO queue wakes the workers in turn, so one busy connection's
    stream of jobs touches every worker's stack and malloc arena (about 0.3 MiB
    each, measured with 8 threads: +3.9 MiB for one never-reading echo client,
    +0.7 MiB with one thread).  Handing each job to the most recently idle
    worker keeps a light load on the few threads that are already warm, and
    the others are woken only when the load needs them.  ``None`` stops one worker.
    """

    __slots__ = ("_backlog", "_idle", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Slot] = []  # a stack: the warmest worker on top
        self._backlog: collections.deque[_Job | None] = collections.deque()

    def put(self, job: _Job | None) -> None:
        """Give ``job`` to the warmest idle worker, or queue it until one is free."""
        with self._lock:
            if not self._idle:
                self._backlog.append(job)
                return
            slot = self._idle.pop()
        slot.job = job
        slot.wake.release()

    def get(self, slot: _Slot) -> _Job | None:
        """The next job for the worker owning ``slot``; waits while there is none."""
        with self._lock:
            if self._backlog:
                return self._backlog.popleft()
            self._idle.append(slot)
        slot.wake.acquire()
        job, slot.job = slot.job, None
        return job


class _PoolReactor(_Reactor):
    """The reactor of :mod:`._reactor`, making pooled connections and feeding the workers."""

    connection_class = PooledConnection
    tls_connection_class = PooledTlsConnection

    def __init__(self, ctx: ServeContext, poller: Poller) -> None:
        super().__init__(ctx, poller)
        size = max(1, ctx.limits.threads)
        self._capacity = _QUEUE_PER_THREAD * size
        self._outstanding = 0  # jobs submitted and not yet taken back (reactor thread only)
        self._parked: collections.deque[_Pooled] = collections.deque()
        self._jobs = _WarmestFirst()
        #: Set once the workers are stopped: a close no longer waits for a job.
        self.workers_gone = False
        self._workers = [
            threading.Thread(target=self._work, name=f"sockkit-pool-{i}", daemon=True)
            for i in range(size)
        ]
        for worker in self._workers:
            worker.start()

    @property
    def saturated(self) -> bool:
        return self._outstanding >= self._capacity

    def submit(self, job: _Job) -> None:
        self._outstanding += 1
        self._jobs.put(job)

    def park(self, conn: _Pooled) -> None:
        self._parked.append(conn)

    def job_done(self) -> None:
        """A job was taken back: read the longest-parked connection, if any."""
        self._outstanding -= 1
        parked = self._parked
        while parked and not self.saturated:
            conn = parked.popleft()
            conn.parked = False
            if not conn.closed:
                conn.read_input()
                if not conn.job:
                    conn.sync()  # nothing to read after all: watch it again

    def _work(self) -> None:
        jobs = self._jobs
        wake = threading.Lock()
        wake.acquire()  # held: the next acquire() waits for a job handed to this worker
        slot = _Slot(wake)
        while True:
            job = jobs.get(slot)
            if job is None:
                return
            conn, call, args = job
            try:
                call(conn, *args)
            except Exception as exc:  # the core catches the service's; this is a defect
                _log.error("pool job failed for %s", conn.peer, exc_info=exc)
                conn.abort(service_error(exc))
            conn.returned()

    def stop_workers(self) -> None:
        for _ in self._workers:
            self._jobs.put(None)
        for worker in self._workers:
            worker.join(_JOIN_TIMEOUT)
            if worker.is_alive():
                _log.warning("a pool thread did not finish its service call in time")
        self.workers_gone = True


def _best_poller() -> type[Poller]:
    if hasattr(select, "epoll"):
        return EpollPoller
    return PollPoller if hasattr(select, "poll") else SelectPoller


class PoolEngine(_ReactorEngine):
    """One reactor thread for the sockets, ``--threads`` for the service (``--engine pool``)."""

    name = "pool"
    poller_class: ClassVar[type[Poller] | None] = _best_poller()

    def run(self, ctx: ServeContext) -> None:
        factory = self.poller_class
        assert factory is not None
        reactor = _PoolReactor(ctx, factory())
        try:
            reactor.run()
        finally:
            reactor.stop_workers()
            reactor.close()
