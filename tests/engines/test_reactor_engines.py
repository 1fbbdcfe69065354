"""The select, poll and epoll engines, driven directly through a ServeContext.

Each test starts ``engine.run(ctx)`` on a thread with tiny in-test services,
talks to it over real loopback or Unix sockets, and stops it with
``ctx.stop.set()``.  Outcomes are bytes received, connection-log events, file
descriptors counted in /proc and memory measured.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sockkit._endpoint import Endpoint, open_connection, open_listener, parse_endpoint
from sockkit.engines import get_engine
from sockkit.engines._contract import ConnectionLog, Limits, ServeContext, StreamListener
from sockkit.services._base import CLOSE, HALF_CLOSE, Service

ENGINES = ["select", "poll", "epoll"]


# ----------------------------------------------------------------- services


class Echo(Service):
    def received(self, data: bytes) -> bytes:
        return data


class Chargen(Service):
    """Streams a pattern as fast as the driver asks; counts what it handed out."""

    produced = 0  # class-wide, so a test sees it without reaching the instance

    def connected(self, peer: str) -> bytes:
        self.producing = True
        return b""

    def produce(self, limit: int) -> bytes:
        chunk = b"x" * min(limit, 16384)
        Chargen.produced += len(chunk)
        return chunk


class Boom(Service):
    def received(self, data: bytes) -> bytes:
        if data.startswith(b"boom"):
            raise RuntimeError("service bug")
        return data


class Pushed(Service):
    """Output appears between calls, from another thread, through ``wakeup``."""

    instances: list[Pushed] = []

    def __init__(self) -> None:
        self.queue: list[bytes] = []
        self.lock = threading.Lock()
        Pushed.instances.append(self)

    def push(self, data: bytes) -> None:
        with self.lock:
            self.queue.append(data)
            self.producing = True
        self.wakeup()

    def produce(self, limit: int) -> bytes:
        with self.lock:
            data, self.queue = b"".join(self.queue), []
            self.producing = False
        return data


class Announce(Service):
    """Says its piece, half-closes, and waits for the peer to finish."""

    def connected(self, peer: str) -> bytes:
        self.state = HALF_CLOSE
        return b"announcement\r\n"


class Bye(Service):
    def connected(self, peer: str) -> bytes:
        self.state = CLOSE
        return b"bye\r\n"


# ------------------------------------------------------------------ harness


class RecordingLog(ConnectionLog):
    enabled = True

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str | None]] = []
        self.lock = threading.Lock()

    def opened(self, peer: str, local: str) -> None:
        with self.lock:
            self.events.append(("opened", peer, None))

    def closed(
        self, peer: str, bytes_in: int, bytes_out: int, duration: float, reason: str | None
    ) -> None:
        with self.lock:
            self.events.append(("closed", peer, reason))

    def refused(self, peer: str, reason: str) -> None:
        with self.lock:
            self.events.append(("refused", peer, reason))

    def count(self, kind: str) -> int:
        with self.lock:
            return sum(1 for event in self.events if event[0] == kind)

    def reasons(self, kind: str) -> list[str | None]:
        with self.lock:
            return [event[2] for event in self.events if event[0] == kind]

    def wait_for(self, kind: str, text: str = "", timeout: float = 5.0) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for reason in self.reasons(kind):
                if text in (reason or ""):
                    return reason
            time.sleep(0.01)
        raise AssertionError(f"no {kind} event with {text!r}: {self.events}")


@dataclass
class Running:
    ctx: ServeContext
    endpoint: Endpoint
    thread: threading.Thread
    log: RecordingLog

    def connect(self, timeout: float = 5.0) -> socket.socket:
        return open_connection(self.endpoint, timeout=timeout)

    def stop(self, timeout: float = 10.0) -> float:
        """Set the stop signal; return how long ``run()`` took to return."""
        started = time.monotonic()
        self.ctx.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "engine.run() did not return"
        return time.monotonic() - started


@contextlib.contextmanager
def serving(
    engine: str,
    factory: Callable[[], Service],
    endpoint: str = "tcp://127.0.0.1:0",
    limits: Limits | None = None,
    tls: ssl.SSLContext | None = None,
) -> Iterator[Running]:
    requested = parse_endpoint(endpoint)
    sock = open_listener(requested)
    if requested.is_unix:
        real = requested
    else:
        host, port = sock.getsockname()[:2]
        real = Endpoint(requested.transport, host=host, port=port)
    log = RecordingLog()
    ctx = ServeContext([StreamListener(sock, real, factory, tls)], limits or Limits(), log=log)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            get_engine(engine)().run(ctx)
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run, name=f"{engine}-engine", daemon=True)
    thread.start()
    running = Running(ctx, real, thread, log)
    try:
        yield running
    finally:
        if thread.is_alive():
            running.stop()
        sock.close()
        ctx.stop.close()
        if requested.is_unix and requested.path and not requested.is_abstract:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(requested.path)
    assert not failures, failures


def recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


# -------------------------------------------------------------------- tests


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_two_hundred_concurrent_clients(engine: str) -> None:
    with serving(engine, Echo) as server:
        clients = [server.connect() for _ in range(200)]
        try:
            for i, sock in enumerate(clients):
                sock.sendall(b"client %d\n" % i)
            for i, sock in enumerate(clients):
                expected = b"client %d\n" % i
                assert recv_exactly(sock, len(expected)) == expected
            assert server.log.count("opened") == 200
        finally:
            for sock in clients:
                sock.close()
        server.log.wait_for("closed")


def test_client_that_never_reads_leaves_memory_flat(engine: str) -> None:
    Chargen.produced = 0
    limits = Limits(high_water=64 * 1024, low_water=16 * 1024, output_cap=1024 * 1024)
    with serving(engine, Chargen, limits=limits) as server:
        clients = []
        for _ in range(10):
            sock = server.connect()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            clients.append(sock)
        try:
            time.sleep(1.0)  # let every socket buffer fill
            produced, rss = Chargen.produced, rss_bytes()
            time.sleep(1.0)
            # Nothing was read, so nothing more may be produced or held.
            assert Chargen.produced == produced
            assert rss_bytes() - rss < 4 * 1024 * 1024
            # What sits in user space per connection is bounded by the
            # high-water mark plus one produce() chunk.
            assert produced < 10 * (8 * 1024 * 1024)
            # And the peers are still being served: reading resumes the flow.
            data = recv_exactly(clients[0], 256 * 1024)
            assert data == b"x" * len(data) and len(data) == 256 * 1024
        finally:
            for sock in clients:
                sock.close()


def test_echo_stops_reading_from_a_peer_that_does_not_read(engine: str) -> None:
    payload = b"a" * (64 * 1024 * 1024)  # more than every kernel buffer on the path holds
    with serving(engine, Echo) as server, server.connect() as sock:
        errors: list[OSError] = []

        def flood() -> None:
            try:
                sock.sendall(payload)
            except OSError as exc:
                errors.append(exc)

        writer = threading.Thread(target=flood)
        rss = rss_bytes()
        writer.start()
        time.sleep(1.0)
        # The engine paused reading once its output passed high water, so the
        # backpressure reached the writer: it is still blocked in sendall().
        assert writer.is_alive()
        assert rss_bytes() - rss < 8 * 1024 * 1024
        assert server.log.count("closed") == 0
        sock.shutdown(socket.SHUT_RDWR)
        writer.join(10)
        assert not writer.is_alive()


def test_service_close_flushes_then_closes(engine: str) -> None:
    with serving(engine, Bye) as server, server.connect() as sock:
        sock.settimeout(5)
        assert recv_all(sock) == b"bye\r\n"


def test_half_close_keeps_reading_until_the_peer_is_done(engine: str) -> None:
    with serving(engine, Announce) as server, server.connect() as sock:
        sock.settimeout(5)
        assert recv_all(sock) == b"announcement\r\n"  # EOF: the server shut down writing
        sock.sendall(b"still heard")  # ...but still reads
        time.sleep(0.1)
        assert server.log.count("closed") == 0
        sock.shutdown(socket.SHUT_WR)
        assert server.log.wait_for("closed") is None
    assert server.log.count("opened") == 1


def test_failing_service_closes_only_its_connection(engine: str) -> None:
    with serving(engine, Boom) as server:
        with server.connect() as good, server.connect() as bad:
            bad.sendall(b"boom")
            bad.settimeout(5)
            assert recv_all(bad) == b""
            good.sendall(b"fine")
            assert recv_exactly(good, 4) == b"fine"
        assert "RuntimeError" in (server.log.wait_for("closed", "service error") or "")


def test_wakeup_from_another_thread_flushes_output(engine: str) -> None:
    Pushed.instances = []
    with serving(engine, Pushed) as server, server.connect() as sock:
        sock.sendall(b"hello")  # a round trip proves the service exists
        deadline = time.monotonic() + 5
        while not Pushed.instances and time.monotonic() < deadline:
            time.sleep(0.01)
        pusher = threading.Thread(target=Pushed.instances[0].push, args=(b"pushed\n",))
        pusher.start()
        pusher.join()
        sock.settimeout(5)
        assert recv_exactly(sock, 7) == b"pushed\n"


@pytest.fixture(scope="module")
def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


def test_tls_echo(engine: str, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls_contexts
    payload = os.urandom(512 * 1024)
    with serving(engine, Echo, "tls://127.0.0.1:0", tls=server_ctx) as server:
        raw = server.connect()
        with client_ctx.wrap_socket(raw, server_hostname="localhost") as sock:
            # One thread: an SSL object must not be read and written at once,
            # and SSLSocket cannot half-close, so echo chunk by chunk.
            for start in range(0, len(payload), 64 * 1024):
                chunk = payload[start : start + 64 * 1024]
                sock.sendall(chunk)
                assert recv_exactly(sock, len(chunk)) == chunk
        server.log.wait_for("closed")
        assert server.log.count("opened") == 1


def test_tls_chargen_streams_exactly(
    engine: str, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_ctx, client_ctx = tls_contexts
    limits = Limits(high_water=16 * 1024, low_water=4 * 1024)
    with serving(engine, Chargen, "tls://127.0.0.1:0", limits=limits, tls=server_ctx) as server:
        raw = server.connect()
        with client_ctx.wrap_socket(raw, server_hostname="localhost") as sock:
            time.sleep(0.2)  # let the server fill its buffers: SSL want-write paths
            data = recv_exactly(sock, 2 * 1024 * 1024)
        assert data == b"x" * (2 * 1024 * 1024)


def test_tls_handshake_failure_and_timeout_are_refused(
    engine: str, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_ctx, _ = tls_contexts
    limits = Limits(handshake_timeout=0.3)
    with serving(engine, Echo, "tls://127.0.0.1:0", limits=limits, tls=server_ctx) as server:
        with server.connect() as garbage:
            garbage.sendall(b"GET / HTTP/1.0\r\n\r\n")
            garbage.settimeout(5)
            with contextlib.suppress(ConnectionResetError):
                recv_all(garbage)  # an alert, then the close
        assert server.log.wait_for("refused", "tls: handshake failed")
        with server.connect() as silent:
            silent.settimeout(5)
            assert silent.recv(1) == b""
        assert server.log.wait_for("refused", "timeout") == "tls handshake timeout"
        assert server.log.count("opened") == 0


def test_select_refuses_fds_it_cannot_watch() -> None:
    with serving("select", Echo) as server:
        # One echo first: the reactor's own fds (wakeup pipe, stop signal) are
        # then open below the padding, not past FD_SETSIZE.
        with server.connect() as first:
            first.sendall(b"up")
            assert recv_exactly(first, 2) == b"up"
        padding: list[int] = []
        try:
            while True:
                fd = os.open(os.devnull, os.O_RDONLY)
                padding.append(fd)
                if fd >= 1030:
                    break
            with server.connect() as high:
                high.settimeout(5)
                assert high.recv(1) == b""
            reason = server.log.wait_for("refused", "select()")
            assert reason is not None and "poll or epoll" in reason
        finally:
            for fd in padding:
                os.close(fd)
        with server.connect() as low:  # the engine is unharmed
            low.sendall(b"ok")
            assert recv_exactly(low, 2) == b"ok"


def test_out_of_fds_backs_off_without_spinning(
    engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with serving(engine, Echo, limits=Limits(drain_timeout=0.5)) as server:
        # The engine thread opens descriptors of its own as it starts (epoll's,
        # a wakeup pipe): one echo round trip proves it has, and waiting for
        # the close means no descriptor of the server is freed while the test
        # holds every free one (either would let accept() succeed: no EMFILE).
        with server.connect() as probe:
            probe.sendall(b"p")
            assert recv_exactly(probe, 1) == b"p"
        server.log.wait_for("closed")
        waiting = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        filler: list[int] = []
        try:
            highest = max(int(name) for name in os.listdir("/proc/self/fd"))
            resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1, hard))
            with contextlib.suppress(OSError):  # fill the holes below the limit
                while True:
                    filler.append(os.open(os.devnull, os.O_RDONLY))
            # No fd is left, so the server's accept() fails with EMFILE.
            waiting.connect((server.endpoint.host, server.endpoint.port))
            before = resource.getrusage(resource.RUSAGE_SELF)
            time.sleep(0.6)
            after = resource.getrusage(resource.RUSAGE_SELF)
        finally:
            for fd in filler:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        with waiting:
            used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            assert used < 0.3, f"{used:.2f} s of CPU in 0.6 s while out of fds: a busy loop"
            warnings = [r for r in caplog.records if "cannot accept on" in r.getMessage()]
            assert len(warnings) == 1
            # Once fds are available again the waiting client is served.
            waiting.settimeout(5)
            waiting.sendall(b"served")
            assert recv_exactly(waiting, 6) == b"served"
