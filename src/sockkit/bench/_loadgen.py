"""One load-generator process: an epoll loop over non-blocking sockets.

(Over 400 lines: one loop per mode sharing the generator's socket handling; the
modes read best side by side.)

Why not asyncio: the generator must cost the machine as little as possible per
request, so the server -- not the client -- is what gets measured.  One epoll
object, one preallocated receive buffer (``recv_into``), requests sent as slices
of a shared pattern (no per-request allocation), and per request only: compare
the echoed bytes, pop a send time, bump a histogram bucket, send the next one.

Modes (``LoadSpec.mode``):

- ``rr``: ``conns`` stream connections each keep ``depth`` requests of ``size``
  bytes in flight; latency is from queuing a request to its last echoed byte.
  On a datagram target each request is one datagram whose first 8 bytes are its
  sequence number; a reply missing for ``loss_timeout`` is counted lost and
  replaced.
- ``stream``: the same loop with a send window of ``size * depth`` bytes and no
  latency: bulk throughput of the echo.
- ``connect``: ``conns`` loops of connect, one request, verified echo, close.
- ``idle``: open ``conns`` connections (``pending`` handshakes at a time), one
  verified echo each so the server has really accepted them, then hold them for
  ``duration`` seconds.

Every received byte is compared with what its stream position predicts
(:mod:`sockkit.bench._pattern`).  A wrong byte, a reset, an early EOF, an
unsolicited byte or a request still unanswered after ``STALL_S`` at the end
counts as an error; the run goes on with the other connections.
"""

from __future__ import annotations

import contextlib
import errno
import resource
import select
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from typing import Literal

from sockkit.bench._histogram import SUB, SUB_BITS
from sockkit.bench._interval import IntervalCallback, IntervalClock
from sockkit.bench._pattern import DOUBLE, PERIOD, conn_seed
from sockkit.bench._tally import Tally
from sockkit.bench._target import Target

__all__ = ["MODES", "STALL_S", "LoadSpec", "Mode", "PhaseCallback", "ProgressCallback", "generate"]

Mode = Literal["rr", "connect", "idle", "stream"]
MODES: tuple[Mode, ...] = ("rr", "connect", "idle", "stream")
#: A request unanswered this long when the run ends was answered short (or not at all).
STALL_S = 1.0
#: Linux's IP_BIND_ADDRESS_NO_PORT: bind the source address now, pick the port at connect.
_IP_BIND_ADDRESS_NO_PORT = 24
_IN, _OUT = select.EPOLLIN, select.EPOLLOUT
_GONE = select.EPOLLERR | select.EPOLLHUP
_NS = 1_000_000_000

#: ``on_phase(name)``: "ready" (idle: all connections open), "measure", "done".
PhaseCallback = Callable[[str], None]
#: ``on_progress(phase, seconds_into_phase, requests, errors)``, about 4 times a second;
#: phase is "warmup" (seconds into the warm-up) or "measure" (into the measured phase).
ProgressCallback = Callable[[str, float, int, int], None]
_PROGRESS_NS = _NS // 4


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """What one generator process does.  ``index`` varies the byte patterns per process."""

    target: Target
    mode: Mode = "rr"
    conns: int = 50
    depth: int = 1
    size: int = 64
    duration: float = 5.0
    warmup: float = 1.0
    src_ips: int = 1
    connect_timeout: float = 10.0
    pending: int = 256
    loss_timeout: float = 1.0
    index: int = 0
    #: seconds per interval report (0: none)
    interval: float = 0.0


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Conn:
    """One connection's stream positions: bytes queued, sent and received."""

    __slots__ = ("bad", "fd", "outq", "recvd", "seed", "sent", "sock", "start", "times", "want")

    def __init__(self, sock: socket.socket, seed: int) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.seed = seed
        self.want = 0  # stream bytes queued (requests issued * size)
        self.sent = 0
        self.recvd = 0
        self.times: deque[int] = deque()  # issue time of each unanswered request
        self.bad: set[int] = set()  # request numbers whose echo did not verify
        self.outq = False  # registered for EPOLLOUT
        self.start = 0


class _Generator:
    def __init__(
        self,
        spec: LoadSpec,
        on_phase: PhaseCallback | None,
        on_progress: ProgressCallback | None,
        on_interval: IntervalCallback | None = None,
    ) -> None:
        self.spec = spec
        self.tally = Tally()
        self.on_phase = on_phase or (lambda _name: None)
        self.on_progress = on_progress
        self.ep = select.epoll()
        self.live: dict[int, _Conn] = {}
        self.rbuf = bytearray(max(65536, min(spec.size * spec.depth, 1 << 20)))
        self.rview = memoryview(self.rbuf)
        self.dview = memoryview(DOUBLE)
        self.record_latency = spec.mode != "stream"
        self.stopping = False
        self.next_progress = 0
        self.clock = (
            IntervalClock(spec.interval, on_interval)
            if spec.interval > 0 and on_interval is not None
            else None
        )
        # set by start_measuring / finish, so an interrupted run can still finish
        self.cpu0 = 0.0
        self.t_start = 0
        self.measuring = False
        self.finished = False

    # -- sockets ----------------------------------------------------------------------------

    def new_socket(self, index: int) -> socket.socket | None:
        """A non-blocking socket with its connect started; ``None`` (and counted) on failure."""
        target, spec = self.spec.target, self.spec
        sock = socket.socket(target.family, target.socktype | socket.SOCK_NONBLOCK)
        try:
            if target.family == socket.AF_UNIX and target.is_datagram:
                sock.bind(b"")  # autobind, so the server has an address to reply to
            elif spec.src_ips > 1 and target.is_ipv4:
                sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((f"127.0.0.{1 + index % spec.src_ips}", 0))
            err = sock.connect_ex(target.address)
        except OSError as exc:
            err = exc.errno or errno.EIO
        if err in (0, errno.EINPROGRESS):
            return sock
        sock.close()
        if err in (errno.EADDRNOTAVAIL, errno.EAGAIN):
            # The client ran out of ports (TIME_WAIT) or the Unix backlog is full:
            # the caller retries; it is not the server's failure.
            self.tally.port_retries += 1
            return None
        self.tally.conn_failures += 1
        self.tally.note_error(f"connect: {errno.errorcode.get(err, err)}")
        return None

    def drop(self, c: _Conn, reason: str, unanswered: int | None = None) -> None:
        """Close a failed connection, counting its unanswered requests as errors."""
        self.tally.conn_failures += 1
        count = len(c.times) if unanswered is None else unanswered
        self.tally.note_error(reason, max(count, 1))
        self.close(c)

    def close(self, c: _Conn) -> None:
        self.live.pop(c.fd, None)
        with contextlib.suppress(OSError):
            self.ep.unregister(c.fd)
        c.sock.close()

    def connected(self, c: _Conn) -> bool:
        err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.drop(c, f"connect: {errno.errorcode.get(err, err)}", 1)
            return False
        return True

    # -- stream connections: sending and verifying ------------------------------------------

    def flush(self, c: _Conn) -> None:
        """Send queued bytes until done or the socket is full (then wait for EPOLLOUT)."""
        while c.sent < c.want:
            off = (c.seed + c.sent) % PERIOD
            try:
                c.sent += c.sock.send(self.dview[off : off + min(c.want - c.sent, PERIOD)])
            except BlockingIOError:
                if not c.outq:
                    self.ep.modify(c.fd, _IN | _OUT)
                    c.outq = True
                return
            except OSError as exc:
                self.drop(c, f"send: {exc.strerror or exc}")
                return
        if c.outq:
            self.ep.modify(c.fd, _IN)
            c.outq = False

    def receive(self, c: _Conn, now: int) -> None:
        """Read what is there, verify it, complete requests and issue their successors."""
        try:
            n = c.sock.recv_into(self.rbuf)
        except BlockingIOError:
            return
        except OSError as exc:
            self.drop(c, f"recv: {exc.strerror or exc}")
            return
        if n == 0:
            self.drop(c, "the server closed the connection with requests unanswered")
            return
        pos = c.recvd
        size = self.spec.size
        if pos + n > c.sent:
            self.drop(c, "the server sent bytes that were never sent to it")
            return
        off = (c.seed + pos) % PERIOD
        if self.rbuf[:n] != DOUBLE[off : off + n]:
            self.find_bad(c, pos, n)
        c.recvd = end = pos + n
        first = pos // size
        done = end // size - first
        if not done:
            return
        tally, times = self.tally, c.times
        counts = tally.hist.counts
        lo = hi = now - times[0]
        for k in range(first, first + done):
            value = now - times.popleft()
            if c.bad and k in c.bad:
                c.bad.discard(k)
                tally.note_error("an echoed byte did not match what was sent")
                continue
            tally.requests += 1
            if self.record_latency:
                # bucket_index(), inlined: this runs once per request.
                shift = value.bit_length() - SUB_BITS - 1
                counts[value if shift <= 0 else shift * SUB + (value >> shift)] += 1
                lo, hi = min(lo, value), max(hi, value)
        tally.payload_bytes += done * size
        if self.record_latency:
            tally.hist.note_extremes(lo, hi)
        if not self.stopping:
            c.want += done * size
            times.extend(repeat(now, done))
            self.flush(c)

    def find_bad(self, c: _Conn, pos: int, n: int) -> None:
        """The slow path after a mismatch: which requests does the bad chunk touch?"""
        size, end = self.spec.size, pos + n
        while pos < end:
            seg_end = min(end, (pos // size + 1) * size)
            off = (c.seed + pos) % PERIOD
            a = pos - c.recvd
            if self.rbuf[a : a + seg_end - pos] != DOUBLE[off : off + seg_end - pos]:
                c.bad.add(pos // size)
            pos = seg_end

    # -- phases ------------------------------------------------------------------------------

    def establish(self, ping: bool) -> list[_Conn]:
        """Open ``conns`` connections, at most ``pending`` at a time; ``ping``: one echo each."""
        spec, tally = self.spec, self.tally
        t0 = time.monotonic()
        deadline = t0 + spec.connect_timeout
        opening: dict[int, _Conn] = {}
        ready: dict[int, _Conn] = {}
        next_index = 0
        while (next_index < spec.conns or opening) and time.monotonic() < deadline:
            while next_index < spec.conns and len(opening) < spec.pending:
                retries = tally.port_retries
                sock = self.new_socket(next_index)
                if sock is None:
                    if tally.port_retries > retries:
                        break  # out of ports for now: let handshakes finish, then retry
                    next_index += 1
                    continue
                c = _Conn(sock, conn_seed(next_index, spec.index))
                next_index += 1
                opening[c.fd] = c
                self.live[c.fd] = c
                self.ep.register(c.fd, _IN | _OUT)
            for fd, events in self.ep.poll(0.05):
                if fd not in opening:
                    # An established connection the server closed or wrote to unasked.
                    done = ready.pop(fd, None)
                    if done is not None:
                        self.drop(done, "the server closed or wrote to an idle connection", 1)
                    continue
                c = opening[fd]
                if c.want == 0:
                    if not self.connected(c):
                        del opening[fd]
                        continue
                    if not ping:
                        self.ep.modify(fd, _IN)
                        ready[fd] = opening.pop(fd)
                        continue
                    c.want = spec.size
                    c.times.append(time.monotonic_ns())
                    self.ep.modify(fd, _IN)
                    self.flush(c)
                elif events & (_IN | _GONE):
                    self.stopping = True  # the ping has no successor
                    self.receive(c, time.monotonic_ns())
                    self.stopping = False
                    if c.fd not in self.live:
                        del opening[fd]
                    elif c.recvd == c.want:
                        ready[fd] = opening.pop(fd)
                if c.outq and events & _OUT:
                    self.flush(c)
        for c in opening.values():
            self.drop(c, f"no connection (or echo) within {spec.connect_timeout:g}s", 1)
        tally.established = len(ready)
        tally.connect_s = time.monotonic() - t0
        # The setup ping is not part of the measured load.
        tally.requests = tally.payload_bytes = 0
        tally.hist = type(tally.hist)()
        return list(ready.values())

    def measure_window(self) -> tuple[int, int]:
        start = time.monotonic_ns() + int(self.spec.warmup * _NS)
        return start, start + int(self.spec.duration * _NS)

    def progress(self, now: int, t_measure: int, measuring: bool) -> None:
        """Called once per loop: the interval clock's tick and the progress line's."""
        if self.clock is not None and measuring:
            self.clock.tick(now, self.tally)
        if self.on_progress is None or now < self.next_progress:
            return
        self.next_progress = now + _PROGRESS_NS
        phase = "measure" if measuring else "warmup"
        elapsed = (
            (now - t_measure) / _NS if measuring else self.spec.warmup + (now - t_measure) / _NS
        )
        self.on_progress(phase, max(elapsed, 0.0), self.tally.requests, self.tally.errors)

    def start_measuring(self) -> float:
        tally = self.tally
        tally.requests = tally.payload_bytes = 0
        tally.hist = type(tally.hist)()
        self.on_phase("measure")
        self.cpu0, self.t_start, self.measuring = _cpu_seconds(), time.monotonic_ns(), True
        if self.clock is not None:
            self.clock.start(self.t_start, tally)
        return self.cpu0

    def finish(self, cpu0: float, t_start: int) -> None:
        now = time.monotonic_ns()
        self.finished = True
        self.tally.cpu_s = _cpu_seconds() - cpu0
        self.tally.measured_s = (now - t_start) / _NS
        self.tally.cpu_pct_max = 100 * self.tally.cpu_s / max(self.tally.measured_s, 1e-9)
        if self.clock is not None:
            self.clock.finish(now, self.tally)
        self.on_phase("done")

    def interrupted(self) -> None:
        """Stop early (Ctrl-C): close the measured phase where it is, so the tally is a result."""
        self.tally.interrupted = True
        if self.finished:
            return
        if not self.measuring:
            # stopped while connecting or warming up: nothing was measured
            self.tally.requests = self.tally.payload_bytes = 0
            self.tally.hist = type(self.tally.hist)()
            self.finished = True
            return
        if self.spec.mode == "idle":
            self.tally.requests = len(self.live)
        self.finish(self.cpu0, self.t_start)

    def run_stream(self) -> None:
        """``rr`` and ``stream`` over TCP or Unix stream sockets."""
        spec = self.spec
        # One verified echo per connection first, so the load starts only once the
        # server has really taken every connection (a fork server forks it first).
        conns = self.establish(ping=True)
        now = time.monotonic_ns()
        for c in conns:
            c.want += spec.size * spec.depth
            c.times.extend(repeat(now, spec.depth))
            self.flush(c)
        t_measure, t_end = self.measure_window()
        measuring, cpu0 = False, 0.0
        live, poll, receive, flush = self.live, self.ep.poll, self.receive, self.flush
        while True:
            events = poll(0.05)
            now = time.monotonic_ns()
            if not measuring and now >= t_measure:
                measuring, cpu0, t_measure = True, self.start_measuring(), now
            if now >= t_end:
                break
            for fd, ev in events:
                conn = live.get(fd)
                if conn is None:
                    continue
                c = conn
                if ev & (_IN | _GONE):
                    receive(c, now)
                if ev & _OUT and c.outq and c.fd in live:
                    flush(c)
            self.progress(now, t_measure, measuring)
        self.finish(cpu0, t_measure)
        self.stopping = True
        for c in list(live.values()):
            if c.times and now - c.times[0] > STALL_S * _NS:
                self.tally.note_error(
                    f"short reply or stalled server: a request waited over {STALL_S:g}s"
                    " for its full echo"
                )
            self.close(c)

    def run_connect(self) -> None:
        """Connection rate: each slot loops connect, one request, verified echo, close."""
        spec = self.spec
        size = spec.size
        txn = 0
        retry: list[int] = []
        slots: dict[int, int] = {}  # fd -> slot index

        def start(slot: int) -> None:
            nonlocal txn
            txn += 1
            sock = self.new_socket(slot)
            if sock is None:
                retry.append(slot)
                return
            c = _Conn(sock, conn_seed(slot, txn + spec.index * 7919))
            c.start = time.monotonic_ns()
            self.live[c.fd] = c
            slots[c.fd] = slot
            self.ep.register(c.fd, _IN | _OUT)

        for slot in range(spec.conns):
            start(slot)
        t_measure, t_end = self.measure_window()
        measuring, cpu0 = False, 0.0
        while True:
            events = self.ep.poll(0.05 if not retry else 0.001)
            now = time.monotonic_ns()
            if not measuring and now >= t_measure:
                measuring, cpu0, t_measure = True, self.start_measuring(), now
            if now >= t_end:
                break
            for fd, ev in events:
                c = self.live.get(fd)
                if c is None:
                    continue
                slot = slots[fd]
                if c.want == 0:
                    if not self.connected(c):
                        del slots[fd]
                        start(slot)
                        continue
                    c.want = size
                    c.times.append(c.start)
                    self.ep.modify(fd, _IN)
                    self.flush(c)
                elif ev & (_IN | _GONE):
                    self.stopping = True  # one request per connection: issue no successor
                    self.receive(c, now)
                    self.stopping = False
                    if c.fd in self.live and c.recvd < size:
                        if c.outq and ev & _OUT:
                            self.flush(c)
                        continue
                    if c.fd in self.live:
                        self.close(c)
                    del slots[fd]
                    start(slot)
                elif c.outq:
                    self.flush(c)
            if retry:
                pending, retry[:] = list(retry), []
                for slot in pending:
                    start(slot)
            self.progress(now, t_measure, measuring)
        self.finish(cpu0, t_measure)
        for c in list(self.live.values()):
            self.close(c)

    def run_idle(self) -> None:
        """Open and verify every connection, say "ready", hold them for ``duration``."""
        conns = self.establish(ping=self.spec.size > 0)
        self.on_phase("ready")
        cpu0 = self.start_measuring()
        t0 = time.monotonic_ns()
        t_end = t0 + int(self.spec.duration * _NS)
        while (now := time.monotonic_ns()) < t_end:
            for fd, _ev in self.ep.poll(min(0.2, (t_end - now) / _NS)):
                c = self.live.get(fd)
                if c is not None:
                    self.drop(c, "an idle connection was closed or sent unasked bytes", 1)
        self.tally.requests = len(self.live)
        self.finish(cpu0, t0)
        for c in conns:
            if c.fd in self.live:
                self.close(c)

    # -- datagrams ---------------------------------------------------------------------------

    def run_datagram(self) -> None:
        """``rr`` over UDP / unixgram: sequence-numbered datagrams, losses counted."""
        spec, tally = self.spec, self.tally
        size = spec.size
        socks: dict[int, tuple[socket.socket, int, dict[int, int]]] = {}
        next_seq = 0
        lost_recently: set[int] = set()
        for i in range(spec.conns):
            sock = self.new_socket(i)
            if sock is not None:
                socks[sock.fileno()] = (sock, conn_seed(i, spec.index), {})
                self.ep.register(sock.fileno(), _IN)
        tally.established = len(socks)
        rbuf, dview = self.rbuf, self.dview

        def send(sock: socket.socket, seed: int, waiting: dict[int, int], now: int) -> None:
            nonlocal next_seq
            next_seq += 1
            off = (seed + next_seq * size) % PERIOD
            waiting[next_seq] = now
            try:
                sock.send(next_seq.to_bytes(8, "big") + dview[off : off + size - 8])
            except BlockingIOError:
                pass  # the receiver's queue is full: it counts as lost after loss_timeout
            except OSError as exc:
                tally.note_error(f"send: {exc.strerror or exc}")

        now = time.monotonic_ns()
        for sock, seed, waiting in socks.values():
            for _ in range(spec.depth):
                send(sock, seed, waiting, now)
        t_measure, t_end = self.measure_window()
        measuring, cpu0, next_scan = False, 0.0, now
        loss_ns = int(spec.loss_timeout * _NS)
        while True:
            events = self.ep.poll(0.05)
            now = time.monotonic_ns()
            if not measuring and now >= t_measure:
                measuring, cpu0, t_measure = True, self.start_measuring(), now
            if now >= t_end:
                break
            for fd, _ev in events:
                sock, seed, waiting = socks[fd]
                try:
                    n = sock.recv_into(rbuf)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    # ECONNREFUSED on a connected UDP socket: nothing listens any more.
                    tally.note_error(f"recv: {exc.strerror or exc}")
                    continue
                seq = int.from_bytes(rbuf[:8], "big") if n >= 8 else -1
                sent_at = waiting.pop(seq, None)
                if sent_at is None:
                    if seq not in lost_recently:
                        tally.note_error("a datagram came back that was never sent (or twice)")
                    continue
                off = (seed + seq * size) % PERIOD
                if n != size or rbuf[8:n] != DOUBLE[off : off + size - 8]:
                    tally.note_error("an echoed datagram did not match what was sent")
                else:
                    tally.requests += 1
                    tally.payload_bytes += size
                    tally.hist.record(now - sent_at)
                send(sock, seed, waiting, now)
            if now >= next_scan:
                next_scan = now + loss_ns // 4
                for sock, seed, waiting in socks.values():
                    for seq in [s for s, t in waiting.items() if now - t > loss_ns]:
                        del waiting[seq]
                        lost_recently.add(seq)
                        tally.lost += 1
                        send(sock, seed, waiting, now)
            self.progress(now, t_measure, measuring)
        self.finish(cpu0, t_measure)
        for sock, _seed, _waiting in socks.values():
            sock.close()


def generate(
    spec: LoadSpec,
    on_phase: PhaseCallback | None = None,
    on_progress: ProgressCallback | None = None,
    on_interval: IntervalCallback | None = None,
) -> Tally:
    """Run one generator process's share of the load to the end; return what it counted.

    Bounded in time: at most ``connect_timeout`` to connect, then ``warmup`` +
    ``duration``.  Failures of the server are counted in the tally, never raised.
    ``KeyboardInterrupt`` ends the run early: the tally then covers what was
    measured so far and has ``interrupted`` set (a second one propagates).
    With ``spec.interval``, ``on_interval`` hears each interval of the measured phase.
    """
    gen = _Generator(spec, on_phase, on_progress, on_interval)
    try:
        try:
            if spec.target.is_datagram:
                gen.run_datagram()
            elif spec.mode == "connect":
                gen.run_connect()
            elif spec.mode == "idle":
                gen.run_idle()
            else:
                gen.run_stream()
        except KeyboardInterrupt:
            gen.interrupted()
    finally:
        for c in list(gen.live.values()):
            gen.close(c)
        gen.ep.close()
    return gen.tally
