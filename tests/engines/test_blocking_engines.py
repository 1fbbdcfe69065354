"""The fork, thread and pool engines, driven for real over loopback.

Each test builds a ServeContext by hand, runs one engine on a thread of the
test process (fork forks per connection from there) and checks what a client
sees, what the connection log recorded, and what the process holds afterwards
(threads, child processes, file descriptors, memory).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sockkit._endpoint import open_listener, parse_endpoint, sockaddr_endpoint
from sockkit.engines import get_engine
from sockkit.engines._contract import (
    AccessList,
    ConnectionLog,
    Limits,
    ServeContext,
    StreamListener,
)
from sockkit.services._base import CLOSE, Service

ENGINES = ["thread", "pool", "fork"]
SHARED = ["thread", "pool"]  # engines whose connections run in this process


# -- services the tests drive --------------------------------------------------


class Echo(Service):
    def received(self, data: bytes) -> bytes:
        return data


class Chargen(Service):
    """Endless output; counts what it was asked for across all instances."""

    produced = 0
    producing = True

    def produce(self, limit: int) -> bytes:
        Chargen.produced += limit
        return b"x" * limit


class Greeter(Service):
    """Says hello and closes: the service ends the connection."""

    def connected(self, peer: str) -> bytes:
        self.state = CLOSE
        return b"hello\r\n"


class Waking(Service):
    """Output that appears between calls, handed over from another thread."""

    instances: list[Waking] = []

    def __init__(self) -> None:
        self.queued = b""
        self.lock = threading.Lock()
        self.closed_calls = 0
        Waking.instances.append(self)

    def push(self, data: bytes) -> None:
        with self.lock:
            self.queued += data
            self.producing = True
        self.wakeup()

    def produce(self, limit: int) -> bytes:
        with self.lock:
            out, self.queued = self.queued[:limit], self.queued[limit:]
            self.producing = bool(self.queued)
        return out

    def closed(self) -> None:
        self.closed_calls += 1


@dataclass
class RecordingLog(ConnectionLog):
    enabled: bool = True
    events: list[tuple[str, ...]] = field(default_factory=list)
    closes: list[tuple[str, int, int, str | None]] = field(default_factory=list)

    def opened(self, peer: str, local: str) -> None:
        self.events.append(("opened", peer))

    def closed(
        self, peer: str, bytes_in: int, bytes_out: int, duration: float, reason: str | None
    ) -> None:
        self.closes.append((peer, bytes_in, bytes_out, reason))
        self.events.append(("closed", peer))

    def refused(self, peer: str, reason: str) -> None:
        self.events.append(("refused", reason))

    def reasons(self) -> list[str]:
        return [e[1] for e in self.events if e[0] == "refused"]


# -- running an engine ---------------------------------------------------------


@dataclass(frozen=True)
class TLSFiles:
    server: ssl.SSLContext
    client: ssl.SSLContext
    pem: str  # key and certificate chain, for a server in another process


@dataclass
class Running:
    address: tuple[str, int]
    ctx: ServeContext
    thread: threading.Thread
    log: RecordingLog

    def connect(self, timeout: float = 5) -> socket.socket:
        return socket.create_connection(self.address, timeout=timeout)

    def stop(self, timeout: float = 15) -> float:
        """Stop the engine; return how long run() took to return."""
        started = time.monotonic()
        self.ctx.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "run() did not return"
        return time.monotonic() - started


# The fork engine runs in a child process of its own: forking from this test
# process would copy the test's client sockets into every connection's child,
# holding peers open that the test has closed.
_FORK_SERVER = r"""
import json, ssl, sys, threading
sys.path.insert(0, sys.argv[1])
import test_blocking_engines as t
from sockkit._endpoint import open_listener, parse_endpoint, sockaddr_endpoint
from sockkit.engines import get_engine
from sockkit.engines._contract import AccessList, ConnectionLog, Limits, ServeContext, StreamListener

spec = json.loads(sys.argv[2])

def emit(*record):
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()  # before any fork: a child must not inherit unwritten lines

class Log(ConnectionLog):
    enabled = True
    def opened(self, peer, local): emit("opened", peer)
    def closed(self, peer, bytes_in, bytes_out, duration, reason):
        emit("closed", peer, bytes_in, bytes_out, reason)
    def refused(self, peer, reason): emit("refused", reason)

tls = None
if spec["pem"]:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(spec["pem"])
sock = open_listener(parse_endpoint("127.0.0.1:0"))
listener = StreamListener(sock, sockaddr_endpoint(sock), getattr(t, spec["factory"]), tls)
ctx = ServeContext([listener], Limits(**spec["limits"]), AccessList(**spec["access"]), Log())
threading.Thread(target=lambda: (sys.stdin.read(), ctx.stop.set()), daemon=True).start()
emit("listening", sock.getsockname()[1])
get_engine("fork")().run(ctx)
emit("stopped")
"""


class ForkServer(Running):
    """The fork engine in a child process, its log lines read back into a RecordingLog."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc = proc
        self.address = ("127.0.0.1", port)
        self.log = RecordingLog()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            record = json.loads(line)
            if record[0] == "closed":
                self.log.closed(record[1], record[2], record[3], 0.0, record[4])
            elif record[0] == "opened":
                self.log.opened(record[1], "")
            elif record[0] == "refused":
                self.log.refused("", record[1])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 15) -> float:
        started = time.monotonic()
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        assert self.proc.wait(timeout) == 0
        return time.monotonic() - started


@contextlib.contextmanager
def serving(
    engine: str,
    factory: type[Service] = Echo,
    *,
    tls: TLSFiles | None = None,
    access: dict[str, list[str]] | None = None,
    **limits: object,
) -> Iterator[Running]:
    if engine == "fork":
        with _serving_fork(factory, tls, access or {}, limits) as server:
            yield server
        return
    sock = open_listener(parse_endpoint("127.0.0.1:0"))
    log = RecordingLog()
    ctx = ServeContext(
        [StreamListener(sock, sockaddr_endpoint(sock), factory, tls and tls.server)],
        Limits(**limits),  # type: ignore[arg-type]
        AccessList(**(access or {})),
        log,
    )
    errors: list[BaseException] = []

    def run() -> None:
        try:
            get_engine(engine)().run(ctx)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name=f"engine-{engine}")
    thread.start()
    running = Running(sock.getsockname()[:2], ctx, thread, log)
    try:
        yield running
    finally:
        if thread.is_alive():
            running.stop()
        sock.close()
        ctx.stop.close()
    assert not errors, errors


@contextlib.contextmanager
def _serving_fork(
    factory: type[Service],
    tls: TLSFiles | None,
    access: dict[str, list[str]],
    limits: dict[str, object],
) -> Iterator[ForkServer]:
    spec = {
        "factory": factory.__name__,
        "pem": tls and tls.pem,
        "access": access,
        "limits": limits,
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", _FORK_SERVER, str(Path(__file__).parent), json.dumps(spec)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline() or b'["died"]')
        assert first[0] == "listening", first
        server = ForkServer(proc, first[1])
        yield server
        if proc.poll() is None:
            server.stop()
        server.reader.join(5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


def recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True if the server ends the connection (EOF or reset) within ``within`` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def wait_for(condition: Callable[[], bool], timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def children(pid: int | str = "self") -> list[int]:
    """PIDs of a process's children (every thread's), from /proc."""
    pids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            pids += [int(p) for p in (task / "children").read_text().split()]
    return pids


def zombies(parent: int | str = "self") -> list[int]:
    found = []
    for pid in children(parent):
        with contextlib.suppress(FileNotFoundError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                found.append(pid)
    return found


def open_fds(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# -- echo and the call grammar ---------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_many_small_exchanges_on_concurrent_connections(engine: str) -> None:
    with serving(engine) as server:
        clients = [server.connect() for _ in range(5)]
        for round_ in range(50):
            for i, client in enumerate(clients):
                client.sendall(b"%d:%d\n" % (i, round_))
            for i, client in enumerate(clients):
                expected = b"%d:%d\n" % (i, round_)
                got = b""
                while len(got) < len(expected):
                    got += client.recv(100)
                assert got == expected
        for client in clients:
            client.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_service_close_sends_greeting_then_closes(engine: str) -> None:
    with serving(engine, Greeter) as server, server.connect() as client:
        assert recv_all(client) == b"hello\r\n"


@pytest.mark.parametrize("engine", SHARED)
def test_log_records_bytes_each_way_and_closed_is_called_once(engine: str) -> None:
    Waking.instances.clear()
    with serving(engine, Waking) as server:
        with server.connect() as client:
            client.sendall(b"12345")
            client.shutdown(socket.SHUT_WR)
            assert recv_all(client) == b""
        assert wait_for(lambda: len(server.log.closes) == 1)
    (_, bytes_in, bytes_out, reason) = server.log.closes[0]
    assert (bytes_in, bytes_out, reason) == (5, 0, None)
    assert [e[0] for e in server.log.events] == ["opened", "closed"]
    assert [s.closed_calls for s in Waking.instances] == [1]


@pytest.mark.parametrize("engine", SHARED)
def test_wakeup_from_another_thread_sends_promptly(engine: str) -> None:
    Waking.instances.clear()
    with serving(engine, Waking) as server, server.connect() as client:
        assert wait_for(lambda: len(Waking.instances) == 1)
        time.sleep(0.05)  # let the connection settle into waiting for the peer
        started = time.monotonic()
        threading.Thread(target=Waking.instances[0].push, args=(b"news\n",)).start()
        assert client.recv(100) == b"news\n"
        assert time.monotonic() - started < 0.5


# -- limits ------------------------------------------------------------------------


def _echoes(server: Running) -> bool:
    with server.connect() as client:
        client.sendall(b"again")
        client.settimeout(2)
        try:
            return client.recv(10) == b"again"
        except (ConnectionResetError, TimeoutError):
            return False


@pytest.mark.parametrize("engine", SHARED)
def test_threads_do_not_outlive_their_connections(engine: str) -> None:
    baseline = threading.active_count()
    with serving(engine, threads=3) as server:
        for i in range(100):
            with server.connect() as client:
                client.sendall(b"%d" % i)
                client.shutdown(socket.SHUT_WR)
                assert recv_all(client) == b"%d" % i
        # thread: only the engine's own thread is left; pool: it and its 3 workers.
        expected = baseline + 1 + (3 if engine == "pool" else 0)
        assert wait_for(lambda: threading.active_count() == expected)


@pytest.mark.parametrize("engine", SHARED)
def test_chargen_to_a_reader_that_never_reads_stays_bounded(engine: str) -> None:
    Chargen.produced = 0
    with serving(engine, Chargen) as server, server.connect() as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        time.sleep(0.5)
        early = Chargen.produced
        time.sleep(0.5)
        late = Chargen.produced
        # Production stops once the kernel buffers and high_water are full.
        assert early == late
        assert late < 16 * 1024 * 1024
        assert client.recv(10) == b"x" * 10  # and resumes when the peer reads


# -- stop and drain ------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_stop_with_no_connections_returns_at_once(engine: str) -> None:
    with serving(engine) as server:
        time.sleep(0.05)
        assert server.stop() < 1


@pytest.mark.parametrize("engine", ENGINES)
def test_no_fds_threads_or_children_left_after_stop(engine: str) -> None:
    fds_before = open_fds()
    threads_before = threading.active_count()
    with serving(engine, drain_timeout=0.5, threads=12) as server:
        clients = [server.connect() for _ in range(10)]
        for client in clients:
            client.sendall(b"z")
            assert client.recv(1) == b"z"
        for client in clients[:5]:
            client.close()
        server.stop()
        for client in clients[5:]:
            client.close()
    assert threading.active_count() == threads_before
    assert children() == []
    assert open_fds() == fds_before


# -- fork ----------------------------------------------------------------------------


def test_fork_leaves_no_zombie_or_fd_after_200_connections() -> None:
    with serving("fork", max_conns=50) as server:
        assert isinstance(server, ForkServer)
        assert _echoes(server)  # the engine is up (its own pipes are open)
        assert wait_for(lambda: children(server.pid) == [])
        fds_before = open_fds(server.pid)
        for i in range(200):
            with server.connect() as client:
                client.sendall(b"%d" % i)
                client.shutdown(socket.SHUT_WR)
                assert recv_all(client) == b"%d" % i
        assert wait_for(lambda: children(server.pid) == [], timeout=5)
        assert zombies(server.pid) == []
        assert open_fds(server.pid) == fds_before
        assert "max-conns" not in server.log.reasons()


def test_fork_engine_does_not_share_memory() -> None:
    assert get_engine("fork").shares_memory is False
    assert get_engine("thread").shares_memory is True


# -- TLS -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    pem = tmp_path_factory.mktemp("tls") / "server.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return TLSFiles(server_ctx, client_ctx, str(pem))


@pytest.mark.parametrize("engine", ENGINES)
def test_tls_echo_and_a_failed_handshake_only_ends_its_own_connection(
    engine: str, tls_files: TLSFiles
) -> None:
    client_ctx = tls_files.client
    payload = os.urandom(200_000)
    with serving(engine, tls=tls_files, handshake_timeout=2) as server:
        with server.connect() as plain:
            plain.sendall(b"GET / HTTP/1.0\r\n\r\n")  # not TLS
            assert closed_by_server(plain, within=5)
        raw = server.connect()
        with client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as client:
            # One thread only: an SSL object must not be used from two at once.
            # The payload fits in the loopback buffers, so sending first is safe.
            client.sendall(payload)
            got = b""
            while len(got) < len(payload):
                got += client.recv(65536)
        assert got == payload
        assert wait_for(lambda: any(r.startswith("tls: ") for r in server.log.reasons()))


# -- running out of file descriptors ------------------------------------------------
