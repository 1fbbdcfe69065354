"""The asyncio and uvloop engines, driven directly through a ServeContext on a thread."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme

from sockkit._endpoint import open_listener, parse_endpoint, sockaddr_endpoint
from sockkit.engines._aio import AsyncioEngine, UvloopEngine
from sockkit.server._context import (
    AccessList,
    ConnectionLog,
    Limits,
    ServeContext,
    StreamListener,
)
from sockkit.services import CLOSE, HALF_CLOSE, Service

pytestmark = pytest.mark.timeout(60)

ENGINES = [
    AsyncioEngine,
    pytest.param(
        UvloopEngine,
        marks=pytest.mark.skipif(not UvloopEngine.available(), reason="uvloop not installed"),
    ),
]


# -- services used by the tests ------------------------------------------------


class Echo(Service):
    def received(self, data: bytes) -> bytes:
        return data


class Greeter(Service):
    def connected(self, peer: str) -> bytes:
        return f"hello {peer}\n".encode()


class Chargen(Service):
    """Streams forever; counts what it handed out across all connections."""

    produced = 0
    lock = threading.Lock()

    def __init__(self) -> None:
        self.producing = True

    def produce(self, limit: int) -> bytes:
        with Chargen.lock:
            Chargen.produced += limit
        return b"x" * limit


class Flood(Service):
    """Answers any input with 4 MiB at once: more than the output cap."""

    def received(self, data: bytes) -> bytes:
        return b"f" * (4 << 20)


class Banner(Service):
    """Sends a line, half-closes, then counts what the peer still sends."""

    def connected(self, peer: str) -> bytes:
        self.state = HALF_CLOSE
        self.got = 0
        return b"banner\n"

    def received(self, data: bytes) -> bytes:
        self.got += len(data)
        return b""

    def eof_received(self) -> bytes:
        self.state = CLOSE
        return b""


class RecordingLog(ConnectionLog):
    enabled = True

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def opened(self, peer: str, local: str) -> None:
        self.events.append(("opened", peer, local))

    def closed(
        self, peer: str, bytes_in: int, bytes_out: int, duration: float, reason: str | None
    ) -> None:
        self.events.append(("closed", peer, bytes_in, bytes_out, duration, reason))

    def refused(self, peer: str, reason: str) -> None:
        self.events.append(("refused", peer, reason))

    def wait_for(self, kind: str, timeout: float = 5) -> tuple[Any, ...]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in list(self.events):
                if event[0] == kind:
                    return event
            time.sleep(0.01)
        raise AssertionError(f"no {kind!r} event in {self.events!r}")


# -- harness -----------------------------------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Running:
    def __init__(self, ctx: ServeContext, thread: threading.Thread) -> None:
        self.ctx = ctx
        self.thread = thread

    @property
    def address(self) -> Any:
        endpoint = self.ctx.listeners[0].endpoint
        if endpoint.is_unix:
            # getsockname() names the temporary file open_listener bound before
            # renaming it into place; the endpoint has the real path.
            return endpoint.path
        return self.ctx.listeners[0].sock.getsockname()

    def connect(self, **kwargs: Any) -> socket.socket:
        sock = self.ctx.listeners[0].sock
        client = socket.socket(sock.family, socket.SOCK_STREAM)
        for opt, value in kwargs.items():
            client.setsockopt(socket.SOL_SOCKET, getattr(socket, opt), value)
        client.settimeout(10)
        client.connect(self.address)
        return client

    def stop(self, timeout: float = 15) -> float:
        started = time.monotonic()
        self.ctx.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "engine did not return after stop"
        return time.monotonic() - started


@contextmanager
def running(
    engine: type[AsyncioEngine],
    factory: Callable[[], Service],
    endpoint: str = "tcp://127.0.0.1:0",
    tls: ssl.SSLContext | None = None,
    **ctx_args: Any,
) -> Iterator[Running]:
    parsed = parse_endpoint(endpoint)
    sock = open_listener(parsed)
    bound = parsed if parsed.is_unix else sockaddr_endpoint(sock)
    ctx = ServeContext([StreamListener(sock, bound, factory, tls)], **ctx_args)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            engine().run(ctx)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    run = Running(ctx, thread)
    try:
        yield run
    finally:
        if thread.is_alive():
            run.stop()
        sock.close()
        ctx.stop.close()
    assert not errors, errors


def recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def echo_round_trip(client: socket.socket, payload: bytes) -> bytes:
    writer = threading.Thread(target=lambda: (client.sendall(payload), client.shutdown(1)))
    writer.start()
    got = recv_all(client)
    writer.join()
    return got


def refused_with_no_bytes(client: socket.socket) -> bool:
    try:
        return client.recv(100) == b""
    except ConnectionResetError:
        return True


PAYLOAD = os.urandom(1 << 20)


# -- echo ----------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", ["tcp4", "tcp6", "unix"])
def test_echo_one_mebibyte_with_half_close(
    engine: type[AsyncioEngine], kind: str, tmp_path: Path
) -> None:
    endpoint = {
        "tcp4": "tcp://127.0.0.1:0",
        "tcp6": "tcp://[::1]:0",
        "unix": f"unix:{tmp_path}/echo.sock",
    }[kind]
    if kind == "tcp6" and not socket.has_ipv6:
        pytest.skip("no IPv6")
    with running(engine, Echo, endpoint) as server:
        client = server.connect()
        assert echo_round_trip(client, PAYLOAD) == PAYLOAD
        client.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_many_connections_echo_concurrently(engine: type[AsyncioEngine]) -> None:
    with running(engine, Echo) as server:
        clients = [server.connect() for _ in range(50)]
        for i, client in enumerate(clients):
            client.sendall(b"ping %d\n" % i)
        for i, client in enumerate(clients):
            assert client.recv(100) == b"ping %d\n" % i
            client.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_half_close_service_keeps_reading(engine: type[AsyncioEngine]) -> None:
    log = RecordingLog()
    with running(engine, Banner, log=log) as server:
        client = server.connect()
        assert recv_all(client) == b"banner\n"  # our EOF arrived after the banner
        client.sendall(b"still talking")
        client.shutdown(socket.SHUT_WR)
        closed = log.wait_for("closed")
        assert closed[2] == len(b"still talking")
        assert closed[3] == len(b"banner\n")
        client.close()


# -- limits --------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_max_conns_refuses_extra_clients(engine: type[AsyncioEngine]) -> None:
    log = RecordingLog()
    with running(engine, Echo, limits=Limits(max_conns=1), log=log) as server:
        first = server.connect()
        first.sendall(b"a")
        assert first.recv(1) == b"a"
        second = server.connect()
        assert refused_with_no_bytes(second)
        assert log.wait_for("refused")[2] == "max-conns"
        first.sendall(b"b")
        assert first.recv(1) == b"b"
        first.close()
        log.wait_for("closed")
        third = server.connect()  # a slot is free again
        third.sendall(b"c")
        assert third.recv(1) == b"c"
        second.close()
        third.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_idle_timeout_closes_silent_connection(engine: type[AsyncioEngine]) -> None:
    log = RecordingLog()
    with running(engine, Echo, limits=Limits(idle_timeout=0.3), log=log) as server:
        client = server.connect()
        started = time.monotonic()
        assert refused_with_no_bytes(client)
        assert 0.25 <= time.monotonic() - started < 3
        assert log.wait_for("closed")[5] == "idle-timeout"
        client.close()


def queued(port: int) -> tuple[int, int]:
    """(server Send-Q, client Recv-Q) of the one established connection to ``port``, from ss."""
    out = subprocess.run(
        ["ss", "-tnH", "state", "established"], capture_output=True, text=True, check=True
    ).stdout
    send_q = recv_q = 0
    for line in out.splitlines():
        fields = line.split()
        recv, send, local, peer = int(fields[0]), int(fields[1]), fields[2], fields[3]
        if local.endswith(f":{port}"):
            send_q = send
        elif peer.endswith(f":{port}"):
            recv_q = recv
    return send_q, recv_q


@pytest.mark.parametrize("engine", ENGINES)
def test_chargen_to_a_client_that_never_reads_stays_under_the_cap(
    engine: type[AsyncioEngine],
) -> None:
    limits = Limits(high_water=64 << 10, low_water=16 << 10, output_cap=256 << 10)
    Chargen.produced = 0
    with running(engine, Chargen, limits=limits) as server:
        client = server.connect(SO_RCVBUF=4096)
        port = server.address[1]
        previous = -1
        deadline = time.monotonic() + 10
        while Chargen.produced != previous:  # wait for production to stall
            assert time.monotonic() < deadline, "chargen never stopped producing"
            previous = Chargen.produced
            time.sleep(0.3)
        send_q, recv_q = queued(port)
        buffered_in_process = Chargen.produced - send_q - recv_q
        assert 0 <= buffered_in_process <= limits.output_cap
        # Reading resumes production once the buffers drain below low water.
        deadline = time.monotonic() + 10
        while Chargen.produced == previous:
            assert time.monotonic() < deadline, "reading did not resume chargen"
            client.recv(1 << 16)
        client.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_output_past_the_cap_disconnects(engine: type[AsyncioEngine]) -> None:
    log = RecordingLog()
    limits = Limits(output_cap=1 << 20)
    with running(engine, Flood, limits=limits, log=log) as server:
        client = server.connect(SO_RCVBUF=4096)
        client.sendall(b"go")
        assert log.wait_for("closed")[5] == "output-cap"
        got = 0
        try:
            while chunk := client.recv(1 << 16):
                got += len(chunk)
        except ConnectionResetError:
            pass
        assert got < 4 << 20
        client.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_send_timeout_disconnects_a_stalled_reader(engine: type[AsyncioEngine]) -> None:
    log = RecordingLog()
    limits = Limits(send_timeout=0.3)
    with running(engine, Chargen, limits=limits, log=log) as server:
        client = server.connect(SO_RCVBUF=4096)
        assert log.wait_for("closed")[5] == "send-timeout"
        client.close()


# -- stop and drain ----------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_stop_drains_then_closes_open_connections(engine: type[AsyncioEngine]) -> None:
    log = RecordingLog()
    with running(engine, Echo, limits=Limits(drain_timeout=1.0), log=log) as server:
        client = server.connect()
        client.sendall(b"x")
        assert client.recv(1) == b"x"
        server.ctx.stop.set()
        time.sleep(0.2)
        client.sendall(b"still served while draining")
        assert client.recv(100) == b"still served while draining"
        late = socket.create_connection(server.address, timeout=5)  # backlog, never served
        late.sendall(b"hello?")
        elapsed = server.stop()
        assert 0.5 < elapsed < 5
        assert refused_with_no_bytes(client)
        assert log.wait_for("closed")[5] == "stopped"
        late.settimeout(0.2)
        with pytest.raises(TimeoutError):
            late.recv(10)
        late.close()
        client.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_stop_returns_early_once_connections_end(engine: type[AsyncioEngine]) -> None:
    with running(engine, Echo, limits=Limits(drain_timeout=10.0)) as server:
        client = server.connect()
        client.sendall(b"x")
        assert client.recv(1) == b"x"
        server.ctx.stop.set()
        time.sleep(0.2)
        client.close()
        assert server.stop() < 3


@pytest.mark.parametrize("engine", ENGINES)
def test_file_descriptors_return_to_baseline(engine: type[AsyncioEngine]) -> None:
    # libuv opens a process-wide pipe with its first loop (for signal
    # delivery) and keeps it: one warm-up run takes that out of the count.
    with running(engine, Echo) as server:
        server.stop()
    baseline = open_fds()
    with running(engine, Echo, limits=Limits(drain_timeout=0.5)) as server:
        clients = [server.connect() for _ in range(20)]
        for client in clients:
            client.sendall(b"x")
            assert client.recv(1) == b"x"
        server.stop()
        for client in clients:
            client.close()
    assert open_fds() == baseline


# -- access rules --------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_denied_peer_gets_no_byte(engine: type[AsyncioEngine]) -> None:
    log = RecordingLog()
    access = AccessList(deny=["127.0.0.0/8"])
    with running(engine, Greeter, access=access, log=log) as server:
        client = server.connect()
        assert refused_with_no_bytes(client)
        assert log.wait_for("refused")[2] == "deny"
        assert not [e for e in log.events if e[0] == "opened"]
        client.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_allowed_peer_is_greeted(engine: type[AsyncioEngine]) -> None:
    access = AccessList(allow=["127.0.0.0/8"], deny=["10.0.0.0/8"])
    with running(engine, Greeter, access=access) as server:
        client = server.connect()
        assert client.recv(100).startswith(b"hello 127.0.0.1:")
        client.close()


# -- TLS -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, require_client_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        ca.configure_trust(context)
    return context


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.mark.parametrize("engine", ENGINES)
def test_tls_echo(engine: type[AsyncioEngine], ca: trustme.CA) -> None:
    log = RecordingLog()
    with running(engine, Echo, tls=server_context(ca), log=log) as server:
        raw = server.connect()
        client = client_context(ca).wrap_socket(raw, server_hostname="localhost")
        payload = os.urandom(256 << 10)
        client.sendall(payload)
        got = b""
        while len(got) < len(payload):
            got += client.recv(1 << 16)
        assert got == payload
        client.close()
        closed = log.wait_for("closed")
        assert closed[2] == closed[3] == len(payload)


@pytest.mark.parametrize("engine", ENGINES)
def test_mutual_tls_refuses_a_client_without_certificate(
    engine: type[AsyncioEngine], ca: trustme.CA
) -> None:
    log = RecordingLog()
    context = server_context(ca, require_client_cert=True)
    with running(engine, Echo, tls=context, log=log) as server:
        raw = server.connect()
        with pytest.raises((ssl.SSLError, ConnectionError)):
            client = client_context(ca).wrap_socket(raw, server_hostname="localhost")
            client.sendall(b"hello")
            if client.recv(100) == b"":  # TLS 1.3: the refusal shows on first read
                raise ConnectionResetError
        assert log.wait_for("refused")[2].startswith("tls")
        assert not [e for e in log.events if e[0] == "opened"]
        raw.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_denied_peer_gets_no_tls_byte(engine: type[AsyncioEngine], ca: trustme.CA) -> None:
    log = RecordingLog()
    access = AccessList(deny=["127.0.0.1/32"])
    with running(engine, Echo, tls=server_context(ca), access=access, log=log) as server:
        raw = server.connect()
        with pytest.raises((ssl.SSLError, ConnectionError)):
            client_context(ca).wrap_socket(raw, server_hostname="localhost")
        assert log.wait_for("refused")[2] == "deny"
        raw.close()


# -- what the loops promise ------------------------------------------------------------


def server_side_socket(client: socket.socket) -> socket.socket:
    """A duplicate of the accepted socket (in this process) whose peer is ``client``."""
    want = client.getsockname()
    for name in os.listdir("/proc/self/fd"):
        try:
            candidate = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        try:
            if candidate.type == socket.SOCK_STREAM and candidate.getpeername() == want:
                return candidate
        except OSError:
            pass
        candidate.close()
    raise AssertionError("no accepted socket found for the client")


@pytest.mark.parametrize("engine", ENGINES)
def test_accepted_tcp_sockets_have_nodelay(engine: type[AsyncioEngine]) -> None:
    with running(engine, Echo) as server:
        client = server.connect()
        client.sendall(b"x")
        assert client.recv(1) == b"x"
        accepted = server_side_socket(client)
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        accepted.close()
        client.close()


EMFILE_CHILD = """
import resource, signal, sys
from sockkit._endpoint import open_listener, parse_endpoint, sockaddr_endpoint
from sockkit.engines import get_engine
from sockkit.server._context import ServeContext, StreamListener
from sockkit.services import Service

class Echo(Service):
    def received(self, data):
        return data

sock = open_listener(parse_endpoint("tcp://127.0.0.1:0"))
ctx = ServeContext([StreamListener(sock, sockaddr_endpoint(sock), Echo)])
signal.signal(signal.SIGTERM, lambda *_: ctx.stop.set())
resource.setrlimit(resource.RLIMIT_NOFILE, (24, 24))
print(sock.getsockname()[1], flush=True)
get_engine(sys.argv[1])().run(ctx)
"""


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("engine", ENGINES)
def test_out_of_file_descriptors_backs_off_and_recovers(
    engine: type[AsyncioEngine], tmp_path: Path
) -> None:
    script = tmp_path / "child.py"
    script.write_text(EMFILE_CHILD)
    stderr_path = tmp_path / "stderr"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2] / "src"))
    with open(stderr_path, "wb") as stderr:
        child = subprocess.Popen(
            [sys.executable, str(script), engine.name],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
        )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
        time.sleep(0.3)
        before = cpu_seconds(child.pid)
        time.sleep(1.5)
        assert cpu_seconds(child.pid) - before < 0.3, "busy loop while out of descriptors"
        for client in clients:
            client.close()
        # Served again once the server has seen those closes (libuv resets
        # connections it cannot take, so retry for a while).
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                    client.sendall(b"back")
                    assert client.recv(4) == b"back"
                    break
            except ConnectionError:
                assert time.monotonic() < deadline, "never served again"
                time.sleep(0.2)
        child.terminate()
        assert child.wait(15) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    log = stderr_path.read_text()
    assert "Traceback" not in log
    # One line per episode of exhaustion, never one per failed accept.
    assert log.count("cannot accept") <= 8


# -- the service call grammar ------------------------------------------------------------


class Mailbox(Service):
    """Sends what another thread posts, through ``producing`` + ``wakeup``."""

    instances: list[Mailbox] = []
    closed_calls = 0

    def __init__(self) -> None:
        self.outbox: list[bytes] = []
        self.lock = threading.Lock()

    def connected(self, peer: str) -> bytes:
        Mailbox.instances.append(self)
        return b""

    def post(self, data: bytes) -> None:
        with self.lock:
            self.outbox.append(data)
            self.producing = True
        self.wakeup()

    def produce(self, limit: int) -> bytes:
        with self.lock:
            out = b"".join(self.outbox)
            self.outbox.clear()
            self.producing = False
        return out

    def closed(self) -> None:
        Mailbox.closed_calls += 1


@pytest.mark.parametrize("engine", ENGINES)
def test_wakeup_from_another_thread_sends_posted_output(engine: type[AsyncioEngine]) -> None:
    Mailbox.instances = []
    with running(engine, Mailbox) as server:
        client = server.connect()
        deadline = time.monotonic() + 5
        while not Mailbox.instances:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        threading.Thread(target=Mailbox.instances[0].post, args=(b"news\n",)).start()
        assert client.recv(100) == b"news\n"
        client.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_closed_is_called_once_whatever_ends_the_connection(
    engine: type[AsyncioEngine],
) -> None:
    Mailbox.instances = []
    Mailbox.closed_calls = 0
    limits = Limits(idle_timeout=0.3, drain_timeout=0.2)
    with running(engine, Mailbox, limits=limits) as server:
        by_peer = server.connect()
        by_peer.close()  # the peer closes
        by_reset = server.connect()
        by_reset.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
        )
        by_reset.close()  # the peer resets
        by_idle = server.connect()  # idle timeout
        assert refused_with_no_bytes(by_idle)
        by_stop = server.connect()  # aborted at the end of the drain
        time.sleep(0.1)
        server.stop()
        by_idle.close()
        by_stop.close()
    assert len(Mailbox.instances) == 4
    assert Mailbox.closed_calls == 4


@pytest.mark.parametrize("engine", ENGINES)
def test_tls_connections_one_after_another(engine: type[AsyncioEngine], ca: trustme.CA) -> None:
    # TLS listeners are accepted by the engine's own acceptor and handed to
    # connect_accepted_socket; every connection in a row must get its echo.
    with running(engine, Echo, tls=server_context(ca), log=RecordingLog()) as server:
        for i in range(8):
            raw = server.connect()
            client = client_context(ca).wrap_socket(raw, server_hostname="localhost")
            client.sendall(b"round %d" % i)
            assert client.recv(100) == b"round %d" % i
            client.close()
            time.sleep(0.05)


@pytest.mark.parametrize("engine", ENGINES)
def test_max_conns_refuses_tls_clients_before_the_handshake(
    engine: type[AsyncioEngine], ca: trustme.CA
) -> None:
    log = RecordingLog()
    limits = Limits(max_conns=1)
    with running(engine, Echo, tls=server_context(ca), limits=limits, log=log) as server:
        first = client_context(ca).wrap_socket(server.connect(), server_hostname="localhost")
        first.sendall(b"one")
        assert first.recv(3) == b"one"
        second = server.connect()
        second.sendall(b"\x16\x03\x01\x00\x05hello")  # looks like a ClientHello; gets nothing
        assert refused_with_no_bytes(second)
        assert log.wait_for("refused")[2] == "max-conns"
        first.close()
        second.close()
