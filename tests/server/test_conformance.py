"""The conformance suite: what every engine must do, over real loopback and Unix sockets.

Every test runs once per available engine (ids are engine names).  Servers run
in-process on a thread where that is enough, and as ``sockkit serve`` children
where signals, exit codes, descriptors and processes are what is checked.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import resource
import signal
import socket
import ssl
import struct
import threading
import time
from pathlib import Path

import pytest
from serverkit import (
    Running,
    ServeProcess,
    children,
    closed_by_peer,
    engine_names,
    engine_shares_memory,
    family_endpoint,
    fd_count,
    fork_servers,
    memory_kib,
    recv_exactly,
    recv_until_eof,
    running,
    serve_process,
    served_by,
    wait_for,
)

from conftest import TLSFilesForTest
from sockkit.server import TLSFiles
from sockkit.services import CLOSE, EchoService

pytestmark = pytest.mark.timeout(60)

ENGINES = engine_names()
FAMILIES = ["tcp4", "tcp6", "unix"]
# Seconds between 1900-01-01 and 1970-01-01 (RFC 868).
_EPOCH_1900 = 2208988800


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


# -- the services' RFC behaviour ------------------------------------------------


def test_echo_sends_back_a_mebibyte_byte_exact_after_half_close(
    engine: str, family: str, tmp_path: Path
) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    with running("echo", [family_endpoint(family, tmp_path)], engine) as srv, srv.connect() as sock:
        received: list[bytes] = []
        reader = threading.Thread(target=lambda: received.append(recv_until_eof(sock)))
        reader.start()
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        reader.join(30)
        assert received and received[0] == payload


class _KeepsEveryMessage(EchoService):
    """Echo that keeps what it is given and sends all of it again after the peer's EOF.

    It overrides ``received`` without marking it ``borrows_input``, so an
    engine must hand it bytes of its own, never a view of a reused buffer.
    """

    def __init__(self) -> None:
        self.kept: list[bytes] = []

    def received(self, data: bytes) -> bytes:
        self.kept.append(data)
        return data

    def eof_received(self) -> bytes:
        self.state = CLOSE
        return b"".join(self.kept)


def test_a_service_that_keeps_its_input_gets_bytes_of_its_own(engine: str) -> None:
    messages = [bytes([i]) * 100 for i in range(20)]
    with running(_KeepsEveryMessage, ["tcp://127.0.0.1:0"], engine) as srv, srv.connect() as sock:
        for message in messages:
            sock.sendall(message)
            assert recv_exactly(sock, len(message)) == message
        sock.shutdown(socket.SHUT_WR)
        assert recv_until_eof(sock) == b"".join(messages)


def test_discard_reads_everything_and_sends_nothing(
    engine: str, family: str, tmp_path: Path
) -> None:
    with (
        running("discard", [family_endpoint(family, tmp_path)], engine) as srv,
        srv.connect() as sock,
    ):
        sock.sendall(b"x" * 200_000)
        sock.shutdown(socket.SHUT_WR)
        # A close with unread input would reset; a clean EOF means all of it was read.
        assert recv_until_eof(sock) == b""


def _chargen_cycle(data: bytes) -> bytes:
    # RFC 864 rotates through the 95 printable characters; some servers leave out space.
    first = 32 if b" " in data else 33
    return bytes(range(first, 127))


def test_chargen_sends_rotating_72_character_lines(
    engine: str, family: str, tmp_path: Path
) -> None:
    with (
        running("chargen", [family_endpoint(family, tmp_path)], engine) as srv,
        srv.connect() as sock,
    ):
        data = recv_exactly(sock, 74 * 200)
    lines = data.split(b"\r\n")[:-1]
    assert len(lines) == 200
    cycle = _chargen_cycle(data)
    starts = []
    for line in lines:
        assert len(line) == 72
        start = cycle.index(line[:1])
        assert line == (cycle * 2)[start : start + 72]
        starts.append(start)
    assert all((b - a) % len(cycle) == 1 for a, b in itertools.pairwise(starts))


def test_daytime_sends_one_line_then_closes(engine: str, family: str, tmp_path: Path) -> None:
    with (
        running("daytime", [family_endpoint(family, tmp_path)], engine) as srv,
        srv.connect() as sock,
    ):
        data = recv_until_eof(sock)
    assert data.endswith(b"\r\n") and data.count(b"\n") == 1
    assert (
        str(time.gmtime().tm_year).encode() in data
        or str(time.localtime().tm_year).encode() in data
    )


def test_time_sends_seconds_since_1900_then_closes(
    engine: str, family: str, tmp_path: Path
) -> None:
    with running("time", [family_endpoint(family, tmp_path)], engine) as srv, srv.connect() as sock:
        data = recv_until_eof(sock)
    assert len(data) == 4
    (value,) = struct.unpack("!I", data)
    assert abs(value - _EPOCH_1900 - time.time()) <= 2


def test_chat_line_reaches_every_other_client(engine: str, tmp_path: Path) -> None:
    if not engine_shares_memory(engine):
        pytest.skip(f"engine {engine} serves each connection in its own process")
    endpoint = family_endpoint("tcp4", tmp_path)
    with (
        running("chat", [endpoint], engine) as srv,
        srv.connect() as a,
        srv.connect() as b,
        srv.connect() as c,
    ):
        heard = {b: bytearray(), c: bytearray()}

        def everyone_heard(marker: bytes) -> bool:
            for sock, buf in heard.items():
                sock.setblocking(False)
                try:
                    while data := sock.recv(65536):
                        buf += data
                except BlockingIOError:
                    pass
            return all(marker in buf for buf in heard.values())

        # Joining the room happens on the server's time: repeat until both hear.
        for n in range(250):
            a.sendall(b"warm-up %d\n" % n)
            if wait_for(lambda: everyone_heard(b"warm-up"), timeout=0.02):
                break
        a.sendall(b"the message from a\n")
        assert wait_for(lambda: everyone_heard(b"the message from a"))


# -- limits -------------------------------------------------------------------


def test_max_conns_closes_the_extra_client_at_once(engine: str, tmp_path: Path) -> None:
    endpoint = family_endpoint("tcp4", tmp_path)
    with running("echo", [endpoint], engine, limits=_limits(max_conns=2)) as srv:
        first, second = srv.connect(), srv.connect()
        with first, second:
            for sock in (first, second):
                sock.sendall(b"hi")
                assert recv_exactly(sock, 2) == b"hi"
            with srv.connect() as extra:
                started = time.monotonic()
                assert closed_by_peer(extra, timeout=3)
                assert time.monotonic() - started < 2
            assert counted(srv, engine, "refused:max-conns")
        # With the two gone, a new client is served again (once the server has noticed).
        assert wait_for(lambda: _echoes(srv), timeout=5)


def test_idle_timeout_closes_a_silent_connection(engine: str, family: str, tmp_path: Path) -> None:
    endpoint = family_endpoint(family, tmp_path)
    limits = _limits(idle_timeout=0.3)
    with running("echo", [endpoint], engine, limits=limits) as srv, srv.connect() as sock:
        sock.sendall(b"a")
        assert recv_exactly(sock, 1) == b"a"
        started = time.monotonic()
        assert closed_by_peer(sock, timeout=5)
        assert time.monotonic() - started >= 0.25


@pytest.mark.parametrize("inet", ["tcp4", "tcp6"])
def test_deny_wins_over_allow(engine: str, inet: str, tmp_path: Path) -> None:
    loopback = "127.0.0.1/32" if inet == "tcp4" else "::1/128"
    endpoint = family_endpoint(inet, tmp_path)
    with running("echo", [endpoint], engine, allow=[loopback], deny=[loopback]) as srv:
        with srv.connect() as sock:
            with contextlib.suppress(OSError):  # already closed by the server
                sock.sendall(b"x")
            assert closed_by_peer(sock)
        assert counted(srv, engine, "refused:deny")
    other = "10.0.0.0/8" if inet == "tcp4" else "fd00::/8"
    with running("echo", [endpoint], engine, allow=[loopback, other]) as srv, srv.connect() as sock:
        sock.sendall(b"allowed")
        assert recv_exactly(sock, 7) == b"allowed"
    with running("echo", [endpoint], engine, allow=[other]) as srv, srv.connect() as sock:
        assert closed_by_peer(sock)


def test_mutual_tls_serves_a_client_with_a_certificate_and_refuses_one_without(
    engine: str, tls_files: TLSFilesForTest
) -> None:
    files = TLSFiles(
        str(tls_files.cert_file), str(tls_files.key_file), str(tls_files.client_ca_file)
    )
    with running("echo", ["tls://127.0.0.1:0"], engine, tls=files) as srv:
        context = ssl.create_default_context(cafile=str(tls_files.ca_file))
        tls_files.client_cert.configure_cert(context)
        with context.wrap_socket(srv.connect(), server_hostname="127.0.0.1") as sock:
            sock.sendall(b"secret")
            assert recv_exactly(sock, 6) == b"secret"
        bare = ssl.create_default_context(cafile=str(tls_files.ca_file))
        with (
            pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)),
            bare.wrap_socket(srv.connect(), server_hostname="127.0.0.1") as sock,
        ):
            # TLS 1.3 reports the missing certificate only on the first read.
            sock.sendall(b"secret")
            if sock.recv(6) == b"":
                raise ConnectionResetError("closed without a reply")
        assert counted(srv, engine, "refused")


def test_tls_handshake_that_never_starts_is_cut_off(
    engine: str, tls_files: TLSFilesForTest
) -> None:
    files = TLSFiles(str(tls_files.cert_file), str(tls_files.key_file))
    limits = _limits(handshake_timeout=0.3)
    with (
        running("echo", ["tls://127.0.0.1:0"], engine, tls=files, limits=limits) as srv,
        srv.connect() as silent,
    ):
        started = time.monotonic()
        assert closed_by_peer(silent, timeout=5)
        assert 0.25 <= time.monotonic() - started < 4


# -- process-level behaviour: signals, exit codes, descriptors, memory ----------------


@pytest.mark.parametrize("workers", [1, 2], ids=["one", "workers2"])
def test_sigterm_refuses_new_clients_at_once_and_drains_open_ones(
    engine: str, workers: int, tmp_path: Path
) -> None:
    path = tmp_path / "drain.sock"
    args = ["echo", "tcp://127.0.0.1:0", f"unix:{path}", "--engine", engine]
    args += ["--drain-timeout", "5", "--workers", str(workers)]
    with serve_process(args, count=2) as server:
        port = int(server.endpoints[0].rsplit(":", 1)[1])
        tcp, unix = server.connect(0), server.connect(1)
        with tcp, unix:
            for sock in (tcp, unix):
                sock.sendall(b"before")
                assert recv_exactly(sock, 6) == b"before"
            processes = {server.pid, *(pid for pid, _ in children(server.pid))}
            processes |= {pid for pid, _ in served_by(server.pid)}
            server.proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            refused_after = _first_refusal(port)
            assert refused_after - signalled < _REFUSED_WITHIN, (
                f"a new client was still let in {refused_after - signalled:.3f}s after SIGTERM"
            )
            assert wait_for(lambda: not path.exists(), timeout=1)
            with pytest.raises(OSError), socket.socket(socket.AF_UNIX) as late:
                late.connect(str(path))
            # Connections opened before the signal keep being served.
            for sock in (tcp, unix):
                sock.sendall(b"after")
                assert recv_exactly(sock, 5) == b"after"
                sock.shutdown(socket.SHUT_WR)
                assert recv_until_eof(sock) == b""
        assert server.proc.wait(4) == 0  # well before the 5 s deadline: nothing left to drain
    assert not [pid for pid in processes if Path(f"/proc/{pid}").exists()]


#: How soon after SIGTERM a new client must be refused.  The server closes its
#: listeners in the signal's first loop turn (about a millisecond); the margin is
#: for a machine so busy that the server is not scheduled for a while.
_REFUSED_WITHIN = 0.1 * 3


def _first_refusal(port: int) -> float:
    """Connect every few milliseconds until refused; when that was (monotonic).

    A SYN that reaches the listener just as it closes can be dropped instead of
    answered; the kernel would retry it only after a second.  Such an attempt
    let nobody in, so it is given up after a short timeout rather than counted
    as a late refusal.
    """
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
        except ConnectionRefusedError:
            return time.monotonic()
        except OSError:
            pass
        time.sleep(0.005)
    raise AssertionError("new clients were never refused after SIGTERM")


@pytest.mark.parametrize("workers", [1, 2], ids=["one", "workers2"])
def test_second_sigterm_closes_open_connections_at_once(
    engine: str, workers: int, tmp_path: Path
) -> None:
    args = ["echo", "tcp://127.0.0.1:0", "--engine", engine, "--drain-timeout", "60"]
    args += ["--workers", str(workers)]
    with serve_process(args) as server, server.connect() as sock:
        sock.sendall(b"x")
        assert recv_exactly(sock, 1) == b"x"
        server.proc.send_signal(signal.SIGTERM)
        line = _stderr_line_with(server, b"draining ", timeout=5)
        assert b"draining 1 connection (up to 60 s; Ctrl-C again to close them now)" in line
        sock.sendall(b"y")
        assert recv_exactly(sock, 1) == b"y"  # still served while draining
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert closed_by_peer(sock, timeout=5)
        assert time.monotonic() - started < 3
        assert server.proc.wait(5) == 0


def _stderr_line_with(server: ServeProcess, needle: bytes, timeout: float) -> bytes:
    stream = server.proc.stderr
    assert stream is not None
    os.set_blocking(stream.fileno(), False)
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen += stream.read() or b""
        for line in seen.splitlines():
            if needle in line:
                server.stderr_lines.append(seen)
                return line
        time.sleep(0.02)
    raise AssertionError(f"no {needle!r} line on stderr: {server.stderr_lines!r} {seen!r}")


# -- one close reason, one wording, on every engine ------------------------------


def _never_reading_client(server: ServeProcess) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    host, port = server.endpoints[0].removeprefix("tcp://").rsplit(":", 1)
    sock.connect((host, int(port)))
    return sock


def _idle(server: ServeProcess) -> None:
    with server.connect() as sock:
        assert closed_by_peer(sock, timeout=5)


def _send_timeout(server: ServeProcess) -> None:
    with _never_reading_client(server) as sock:
        time.sleep(2.5)
        del sock


def _output_cap(server: ServeProcess) -> None:
    with _never_reading_client(server) as sock:
        sock.sendall(b"go")
        time.sleep(1.5)


def _max_conns(server: ServeProcess) -> None:
    with server.connect() as first:
        first.sendall(b"1")
        assert recv_exactly(first, 1) == b"1"
        with server.connect() as second:
            assert closed_by_peer(second)


def _deny(server: ServeProcess) -> None:
    with server.connect() as sock:
        assert closed_by_peer(sock)


def _drain(server: ServeProcess) -> None:
    with server.connect() as sock:
        sock.sendall(b"x")
        assert recv_exactly(sock, 1) == b"x"
        server.proc.send_signal(signal.SIGTERM)
        assert closed_by_peer(sock, timeout=5)


#: case -> (serve arguments, what the client does, the JSON event, its reason).
_REASON_CASES = {
    "idle timeout": (["echo", "--idle-timeout", "0.3"], _idle, "closed", "idle timeout"),
    "send timeout": (
        ["chargen", "--send-timeout", "0.5"],
        _send_timeout,
        "closed",
        "send timeout",
    ),
    "output cap": (["sample_services:Flood"], _output_cap, "closed", "output cap exceeded"),
    "max-conns": (["echo", "--max-conns", "1"], _max_conns, "refused", "max-conns"),
    "deny": (["echo", "--deny", "127.0.0.0/8"], _deny, "refused", "deny"),
    "drain": (["echo", "--drain-timeout", "0.3"], _drain, "closed", "server stopping"),
}


@pytest.mark.parametrize("case", list(_REASON_CASES))
def test_the_same_close_reason_on_every_engine(engine: str, case: str) -> None:
    args, client, event, reason = _REASON_CASES[case]
    service, *options = args
    with serve_process(
        [service, "tcp://127.0.0.1:0", "--engine", engine, "--log-format", "json", *options]
    ) as server:
        client(server)
        server.stop()
    events = _json_events(server)
    reasons = [e.get("reason") for e in events if e.get("event") == event]
    assert reasons, events
    assert set(reasons) == {reason}, events


def test_a_stop_signal_that_lands_on_another_thread_stops_the_server(engine: str) -> None:
    """SIGTERM taken by a thread other than the main one (or by it just before it sleeps).

    Python runs the handler in the main thread when it next runs Python code;
    asleep in poll() it would not, and the server served on (the thread engine
    hung about one stop in a hundred, when the signal came just as the main
    thread went back to poll()).  Here the service signals its own thread.
    """
    if engine == "fork":
        pytest.skip("the service runs in a child process: the signal stops only that child")
    args = ["sample_services:StopsFromHere", "tcp://127.0.0.1:0", "--engine", engine]
    with serve_process([*args, "--drain-timeout", "0.5"]) as server:
        with server.connect() as sock:
            sock.sendall(b"x")
            assert recv_exactly(sock, 5) == b"sent\n"
            started = time.monotonic()
            assert server.proc.wait(10) == 0
        assert time.monotonic() - started < 5
    assert b"draining" in server.rest_of_stderr()


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug-contract"])
def test_bytes_after_half_close_are_dropped_the_same_way(engine: str, debug: bool) -> None:
    """Bytes of the call answering HALF_CLOSE go before the FIN; later ones nowhere.

    With ``SOCKKIT_DEBUG_CONTRACT=1`` the broken rule is named in the log.
    """
    env = {"SOCKKIT_DEBUG_CONTRACT": "1"} if debug else {}
    args = ["sample_services:TalksAfterHalfClose", "tcp://127.0.0.1:0", "--engine", engine]
    with serve_process([*args, "--log-format", "json"], env=env) as server:
        with server.connect() as sock:
            assert recv_until_eof(sock) == b"hello"
            sock.sendall(b"x")
            time.sleep(0.2)
            sock.shutdown(socket.SHUT_WR)
            assert recv_until_eof(sock) == b""
        server.stop()
    closed = [e for e in _json_events(server) if e.get("event") == "closed"]
    assert len(closed) == 1, closed
    if debug:
        assert closed[0]["reason"] == (
            "service error: ContractViolation:"
            " TalksAfterHalfClose: received() returned bytes after HALF_CLOSE"
        )
    else:
        assert closed[0]["reason"] is None


def _json_events(server: ServeProcess) -> list[dict[str, object]]:
    events = []
    for line in server.rest_of_stderr().splitlines():
        with contextlib.suppress(ValueError):
            events.append(json.loads(line))
    return events


def test_hundreds_of_connections_leave_no_fds_or_children(engine: str) -> None:
    with serve_process(["echo", "tcp://127.0.0.1:0", "--engine", engine]) as server:
        with server.connect() as warm:
            warm.sendall(b"w")
            warm.shutdown(socket.SHUT_WR)
            # EOF back means the server has closed its end: nothing of it is left open.
            assert recv_until_eof(warm) == b"w"
        assert wait_for(lambda: not served_by(server.pid))
        baseline = _fds(server.pid)
        # 300 connections, 6 at a time, each finished by the server (EOF back)
        # before the next batch.  Two batches together stay within every engine's
        # default concurrency: the pool refuses past 16 live connections, and it
        # counts the last batch until its threads have wound them down.
        for batch in range(50):
            socks = [server.connect() for _ in range(6)]
            for i, sock in enumerate(socks):
                sock.sendall(b"%d.%d" % (batch, i))
                sock.shutdown(socket.SHUT_WR)
            for i, sock in enumerate(socks):
                assert recv_until_eof(sock) == b"%d.%d" % (batch, i)
                sock.close()
        assert wait_for(lambda: _fds(server.pid) <= baseline, timeout=5), (
            f"fds {_fds(server.pid)} != baseline {baseline}"
        )
        assert wait_for(lambda: not served_by(server.pid), timeout=5), served_by(server.pid)
        assert server.stop() == 0


def _fds(pid: int) -> int:
    """Open descriptors of server ``pid`` and of its fork server, if it has one."""
    return fd_count(pid) + sum(fd_count(fork) for fork in fork_servers(pid))


def test_chargen_clients_that_never_read_leave_memory_flat(engine: str) -> None:
    with serve_process(["chargen", "tcp://127.0.0.1:0", "--engine", engine]) as server:
        with server.connect() as probe:
            recv_exactly(probe, 74 * 100)
        before = memory_kib(server.pid)
        stalled = []
        for _ in range(4):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", int(server.endpoints[0].rsplit(":", 1)[1])))
            stalled.append(sock)
        try:
            # Give unbounded buffering time to show: it would grow by hundreds of MB a second.
            samples = []
            for _ in range(10):
                time.sleep(0.1)
                samples.append(memory_kib(server.pid))
            with server.connect() as probe:
                assert len(recv_exactly(probe, 74 * 10)) == 740  # still serving
        finally:
            for sock in stalled:
                sock.close()
        # Each stalled peer may cost at most the output cap (1 MiB) plus bookkeeping
        # (a forked child's own pages, about 2.5 MiB); unbounded output is 100s of MiB.
        assert max(samples) - before < 4 * 1024 + 16 * 1024, (before, samples)
        assert server.stop() == 0


def counted(srv: Running, engine: str, key: str) -> bool:
    """Whether the server's log counted ``key``; fork logs in its children, out of sight."""
    if not engine_shares_memory(engine):
        return True
    return wait_for(lambda: srv.counts.get(key, 0) >= 1, timeout=2)


def _echoes(srv: Running) -> bool:
    with srv.connect() as sock:
        try:
            sock.sendall(b"ok")
            return recv_exactly(sock, 2) == b"ok"
        except OSError:
            return False


def _limits(**changes: object) -> object:
    from dataclasses import replace

    from sockkit.server import Limits

    return replace(Limits(drain_timeout=1.0), **changes)  # type: ignore[arg-type]


#: Idle connections held per engine, and what each (served one request) may
#: cost the server at most, in KiB of PSS.  An event loop keeps a few objects; a
#: thread adds its stack's touched pages; a process per connection adds the
#: pages its child copies (about 1.4 MiB; socketserver's forking server about
#: 0.8).  A read buffer that stayed resident per connection (256 KiB) fails all
#: but the last.  epoll is held to 0.5 KiB (the minimal selectors reactor holds
#: about 0.26), over enough connections that one more 256 KiB allocator arena
#: stays small.
_IDLE = {"fork": (40, 2048.0), "thread": (200, 64.0), "pool": (200, 64.0), "epoll": (5000, 0.5)}


def _enough_fds(count: int) -> bool:
    """Raise the soft fd limit for ``count`` connections at both ends (the server inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * count + 256
    if soft < want <= hard or (soft < want and hard == resource.RLIM_INFINITY):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= want


def test_idle_connections_cost_little_memory(engine: str) -> None:
    count, bound = _IDLE.get(engine, (200, 8.0))
    if not _enough_fds(count):
        count, bound = 200, 8.0
    extra = ["--threads", str(count + 8)] if engine == "pool" else []
    if count > 1000:  # no "opened" line per connection: nobody reads the pipe until the end
        extra += ["--log-level", "warning"]
    with serve_process(
        ["echo", "tcp://127.0.0.1:0", "--engine", engine, "--max-conns", "10000", *extra]
    ) as server:
        port = int(server.endpoints[0].rsplit(":", 1)[1])
        with server.connect() as probe:
            probe.sendall(b"warm")
            assert recv_exactly(probe, 4) == b"warm"
        assert wait_for(lambda: not served_by(server.pid), timeout=5)
        before = memory_kib(server.pid)
        socks = []
        try:
            for i in range(count):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                socks.append(sock)
                request = b"%064d" % i
                sock.sendall(request)
                assert recv_exactly(sock, 64) == request
            per_conn = (memory_kib(server.pid) - before) / count
        finally:
            for sock in socks:
                sock.close()
        assert per_conn < bound, f"{per_conn:.2f} KiB per idle connection"
        assert server.stop() == 0


def _queued(server_end: tuple[str, int], client_end: tuple[str, int]) -> int:
    """Bytes the kernel holds between the two ends of an IPv4 loopback connection.

    The server socket's send queue plus the client socket's receive queue
    (``/proc/net/tcp``'s ``tx_queue:rx_queue``).
    """
    server, client = f"0100007F:{server_end[1]:04X}", f"0100007F:{client_end[1]:04X}"
    # The file is not one snapshot: a line may show twice, or be missed; look again then.
    for _ in range(5):
        queues = {}
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            local, remote, state, both = line.split()[1:5]
            if state == "01":  # ESTABLISHED: the one live socket of each end
                queues[local, remote] = [int(q, 16) for q in both.split(":")]
        if (server, client) in queues and (client, server) in queues:
            return queues[server, client][0] + queues[client, server][1]
    raise AssertionError(f"no sockets {server_end} <-> {client_end} in /proc/net/tcp")


def _fill_then_shut(server: ServeProcess) -> socket.socket:
    """Fill the kernel's buffers with echo's reply until the reply stays in the server; SHUT_WR.

    Once a chunk adds less than half of itself to what the kernel holds, the
    rest of its reply waits in the server process (in the core, or in an asyncio
    transport below its 64 KiB pause); then the client half-closes and
    never reads.
    """
    sock = _never_reading_client(server)
    server_end, client_end = sock.getpeername(), sock.getsockname()
    chunk = b"x" * 65536
    before = 0
    for _ in range(256):  # 16 MB at most: far more than loopback buffers take
        sock.sendall(chunk)
        time.sleep(0.03)
        queued = _queued(server_end, client_end)
        if queued < before + len(chunk) // 2:
            time.sleep(0.3)  # a busy server may be late: look again
            queued = _queued(server_end, client_end)
            if queued < before + len(chunk) // 2:
                break
        before = queued
    else:
        raise AssertionError("the kernel's buffers never filled")
    sock.shutdown(socket.SHUT_WR)
    return sock


@pytest.mark.parametrize(
    ("option", "reason"),
    [("--send-timeout", "send timeout"), ("--idle-timeout", "idle timeout")],
    ids=["send", "idle"],
)
def test_a_reply_the_peer_never_reads_after_its_fin_is_timed_out(
    engine: str, option: str, reason: str
) -> None:
    """Echo's reply is stuck (the peer sent, SHUT_WR, and never reads): the deadline still ends it.

    The service is done (it closes once the reply is out), but the reply
    never goes out: the connection must not outlive the deadline, whatever
    part of the reply the engine still holds.
    """
    args = ["echo", "tcp://127.0.0.1:0", "--engine", engine, "--log-format", "json"]
    with serve_process([*args, option, "1"]) as server:
        with _fill_then_shut(server):
            stuck = time.monotonic()
            line = _stderr_line_with(server, b'"closed"', timeout=10)
            waited = time.monotonic() - stuck
        server.stop()
    assert json.loads(line)["reason"] == reason, line
    # The deadline is 1 s from the last progress, checked every 0.25 s;
    # 3 s more is the margin of a busy machine.
    assert waited < 4, waited
