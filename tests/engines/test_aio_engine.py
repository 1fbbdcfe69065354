"""The asyncio and uvloop engines, driven directly through a ServeContext on a thread."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import trustme

from sockkit._endpoint import open_listener, parse_endpoint, sockaddr_endpoint
from sockkit.engines._aio import AsyncioEngine, UvloopEngine
from sockkit.engines._contract import (
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


def refused_with_no_bytes(client: socket.socket) -> bool:
    try:
        return client.recv(100) == b""
    except ConnectionResetError:
        return True


# -- echo ----------------------------------------------------------------------------


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


# -- stop and drain ----------------------------------------------------------------


# -- access rules --------------------------------------------------------------------


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
