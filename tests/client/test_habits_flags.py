"""nc / ncat habits on ``connect`` and ``listen``, each checked against the real nc or ncat."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.client.conftest import Listening, Spawn, free_port, need
from tests.conftest import LISTENING, ServerProcess, cli_env, run_cli, sockkit_argv

from sockkit.client._line_endings import CrlfFilter


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Sink:
    """A loopback TCP peer that reads everything and closes only when told (or never sends)."""

    def __init__(self, *, read: bool = True, close_at_eof: bool = False) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received: list[bytes] = []
        self._read = read
        self._close_at_eof = close_at_eof
        self._conns: list[socket.socket] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._done.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self._conns.append(conn)
            got = bytearray()
            while self._read:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                got += chunk
            self.received.append(bytes(got))
            if self._close_at_eof:
                conn.close()

    def wait_for(self, count: int, timeout: float = 10) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.received

    def close(self) -> None:
        self._done.set()
        self.listener.close()
        for conn in self._conns:
            conn.close()


@pytest.fixture
def sink() -> Iterator[Sink]:
    peer = Sink()
    yield peer
    peer.close()


@pytest.fixture
def closer() -> Iterator[Sink]:
    """A peer that reads until end of stream, then closes."""
    peer = Sink(close_at_eof=True)
    yield peer
    peer.close()


@pytest.fixture
def mute() -> Iterator[Sink]:
    """A peer that accepts and then neither reads, sends nor closes."""
    peer = Sink(read=False)
    yield peer
    peer.close()


def nc() -> str:
    return need("nc")


# -- HOST PORT, -u ------------------------------------------------------------------


def test_host_port_gets_what_nc_host_port_gets(socat_echo: int) -> None:
    data = os.urandom(300_000)
    ours = run_cli(["connect", "127.0.0.1", str(socat_echo)], input=data)
    theirs = subprocess.run(
        [nc(), "-N", "127.0.0.1", str(socat_echo)], input=data, capture_output=True, timeout=30
    )
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert sha(ours.stdout) == sha(theirs.stdout) == sha(data)


def test_listen_host_port_receives_what_nc_sends(
    sockkit_listen: Callable[..., Listening], tmp_path: Path
) -> None:
    port = free_port()
    with open(tmp_path / "got", "wb") as out:
        listening = sockkit_listen("127.0.0.1", str(port), stdin=subprocess.DEVNULL, stdout=out)
    assert listening.port == port
    data = os.urandom(200_000)
    sent = subprocess.run(
        [nc(), "-N", "127.0.0.1", str(port)], input=data, capture_output=True, timeout=30
    )
    assert sent.returncode == 0
    assert listening.proc.wait(30) == 0
    assert sha((tmp_path / "got").read_bytes()) == sha(data)


def test_u_talks_udp_as_nc_u_does(serve: type[ServerProcess]) -> None:
    server = serve(["echo", "udp://127.0.0.1:0"])
    port = server.endpoints[0].rsplit(":", 1)[1]
    lines = b"one\ntwo\nthree\n"
    ours = run_cli(["connect", "-u", "127.0.0.1:" + port], input=lines)
    theirs = subprocess.run(
        [nc(), "-u", "-w", "1", "127.0.0.1", port], input=lines, capture_output=True, timeout=30
    )
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert ours.stdout == theirs.stdout == lines


# -- -q, -w, -C, -N -------------------------------------------------------------------


@pytest.mark.parametrize("tool", ["nc", "sockkit"])
def test_q_sends_everything_and_exits_0_when_the_peer_closes(tool: str, closer: Sink) -> None:
    argv = [nc()] if tool == "nc" else sockkit_argv("connect")
    data = os.urandom(100_000)
    result = subprocess.run(
        [*argv, "-q", "1", "127.0.0.1", str(closer.port)],
        input=data,
        capture_output=True,
        timeout=30,
        env=cli_env(),
    )
    assert result.returncode == 0, result.stderr
    assert sha(closer.wait_for(1)[0]) == sha(data)


def test_q_quits_seconds_after_end_of_stdin_though_the_peer_stays(sink: Sink) -> None:
    # OpenBSD nc's documented -q; Debian's nc 1.219 was seen to wait on here
    # (its timer is not armed while the peer stays silent), so sockkit alone.
    argv = sockkit_argv("connect")
    data = os.urandom(100_000)
    started = time.monotonic()
    result = subprocess.run(
        [*argv, "-q", "1", "127.0.0.1", str(sink.port)],
        input=data,
        capture_output=True,
        timeout=30,
        env=cli_env(),
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert 0.9 <= elapsed < 8, elapsed
    assert sha(sink.wait_for(1)[0]) == sha(data)


def test_without_q_connect_waits_for_the_peer(mute: Sink, processes: Spawn) -> None:
    proc = processes(
        sockkit_argv("connect", f"127.0.0.1:{mute.port}"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    time.sleep(2)
    assert proc.poll() is None


@pytest.mark.parametrize("tool", ["nc", "sockkit"])
def test_w_quits_with_success_when_idle(tool: str, mute: Sink, processes: Spawn) -> None:
    argv = [nc()] if tool == "nc" else sockkit_argv("connect")
    started = time.monotonic()
    proc = processes(
        [*argv, "-w", "1", "127.0.0.1", str(mute.port)],
        stdin=subprocess.PIPE,  # held open: only idleness can end it
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.wait(15) == 0
    assert 0.9 <= time.monotonic() - started < 8


@pytest.mark.parametrize("tool", ["nc", "sockkit"])
def test_w_bounds_a_connect_nobody_answers(tool: str) -> None:
    # A listener whose backlog is full drops further SYNs: the connect hangs.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        queued = [socket.socket() for _ in range(3)]
        for sock in queued:
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
        time.sleep(0.2)
        argv = [nc()] if tool == "nc" else sockkit_argv("connect")
        started = time.monotonic()
        result = subprocess.run(
            [*argv, "-w", "1", "127.0.0.1", str(port)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            env=cli_env(),
        )
        elapsed = time.monotonic() - started
        for sock in queued:
            sock.close()
    assert result.returncode == 1
    assert 0.9 <= elapsed < 8
    if tool == "sockkit":
        assert re.match(rb"sockkit: .*timed out", result.stderr), result.stderr


@pytest.mark.parametrize("tool", ["nc", "sockkit"])
def test_C_sends_crlf_line_endings_as_nc_C(tool: str, closer: Sink) -> None:
    argv = [nc(), "-N"] if tool == "nc" else sockkit_argv("connect")
    result = subprocess.run(
        [*argv, "-C", "127.0.0.1", str(closer.port)],
        input=b"GET / HTTP/1.0\nHost: x\r\n\nend",
        capture_output=True,
        timeout=30,
        env=cli_env(),
    )
    assert result.returncode == 0, result.stderr
    assert closer.wait_for(1) == [b"GET / HTTP/1.0\r\nHost: x\r\n\r\nend"]


def test_crlf_filter_keeps_a_crlf_split_across_reads() -> None:
    crlf = CrlfFilter()
    pieces = [crlf(piece) for piece in (b"a\r", b"\nb\n", b"\n", b"c")]
    assert b"".join(pieces) == b"a\r\nb\r\n\r\nc"


def test_N_is_accepted_by_connect_and_is_half_close_for_listen(
    socat_echo: int, processes: Spawn
) -> None:
    data = b"hello\n" * 1000
    ours = run_cli(["connect", "-N", "127.0.0.1", str(socat_echo)], input=data)
    assert ours.returncode == 0 and ours.stdout == data
    # listen -N: at end of stdin shut our side, so an nc that reads until end of stream exits.
    port = free_port()
    listener = processes(
        sockkit_argv("listen", "-N", f"127.0.0.1:{port}"),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert listener.stderr is not None and LISTENING.search(listener.stderr.readline())
    client = processes(
        [nc(), "127.0.0.1", str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert listener.stdin is not None
    listener.stdin.write(data)
    listener.stdin.close()
    out, _ = client.communicate(timeout=15)  # nc's own stdin closes here too
    assert out == data
    assert listener.wait(15) == 0


# -- -x and -vv: the relay's dump format -------------------------------------------------

_STAMP = re.compile(rb"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{6}")


def test_hex_dump_is_line_for_line_the_relays(socat_echo: int, processes: Spawn) -> None:
    relay = processes(
        sockkit_argv("relay", "-x", "127.0.0.1:0", f"127.0.0.1:{socat_echo}"),
        stderr=subprocess.PIPE,
    )
    assert relay.stderr is not None
    found = LISTENING.search(relay.stderr.readline())
    assert found
    port = found.group(1).rsplit(b":", 1)[1].decode()
    data = b"hello, dump\x00\x01\xff" + bytes(range(40))
    ours = run_cli(["connect", "-x", f"127.0.0.1:{port}"], input=data)
    assert ours.returncode == 0 and ours.stdout == data
    relay.terminate()
    relay_log = relay.stderr.read()
    dumped = [line for line in ours.stderr.splitlines() if not line.startswith(b"sockkit:")]
    relayed = [line for line in relay_log.splitlines() if line.startswith((b"<", b">", b"  0"))]
    assert len(dumped) == 2 + 2 * 4  # a header and 4 hex lines each way
    assert [_STAMP.sub(b"T", line) for line in dumped] == [
        _STAMP.sub(b"T", line) for line in relayed
    ]
    assert dumped[1].startswith(b"  00000000  68 65 6c 6c 6f 2c 20 64 75 6d 70 00 01 ff 00 01")


def test_vv_dumps_the_traffic_as_text(socat_echo: int) -> None:
    result = run_cli(["connect", "-vv", f"127.0.0.1:{socat_echo}"], input=b"ab\r\n")
    assert result.returncode == 0
    lines = result.stderr.decode().splitlines()
    header = r"^[<>] \d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{6} conn=1 length=4 from=0 to=3$"
    marks = [line[0] for line in lines if re.match(header, line)]
    assert marks == [">", "<"]
    assert lines.count("ab\\r") == 2


# -- listen --allow/--deny and -k's peer lines ----------------------------------------------


def _connect_and_read(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.shutdown(socket.SHUT_WR)
        return b"".join(iter(lambda: sock.recv(4096), b""))


def test_deny_refuses_with_serves_wording(
    sockkit_listen: Callable[..., Listening], serve: type[ServerProcess]
) -> None:
    listening: Listening = sockkit_listen("-k", "--deny", "127.0.0.0/8", "0")
    server = serve(["echo", "127.0.0.1:0", "--deny", "127.0.0.0/8"])
    assert _connect_and_read(listening.port) == b""
    assert _connect_and_read(int(server.endpoints[0].rsplit(":", 1)[1])) == b""
    listening.proc.terminate()
    assert listening.proc.wait(10) == 0
    assert listening.proc.stderr is not None
    ours = listening.proc.stderr.read().decode()
    server.stop()
    theirs = server.read_stderr().decode()
    refused = r"^refused 127\.0\.0\.1:\d+: deny$"
    assert re.search(refused, ours, re.M), ours
    assert re.search(refused, theirs, re.M), theirs


def test_allow_admits_its_network_only_and_keep_open_logs_each_peer(
    sockkit_listen: Callable[..., Listening],
) -> None:
    start = sockkit_listen
    denied: Listening = start("-k", "--allow", "10.0.0.0/8", "0", stdin=subprocess.DEVNULL)
    allowed: Listening = start("-k", "--allow", "127.0.0.1/32", "0", stdin=subprocess.DEVNULL)
    with socket.create_connection(("127.0.0.1", allowed.port), timeout=10) as sock:
        sock.sendall(b"kept\n")
        sock.shutdown(socket.SHUT_WR)
        local = sock.getsockname()[1]
        # The listener closes its side once it has our end of stream and its
        # stdin ended, after writing what we sent.
        assert sock.recv(100) == b""
    assert _connect_and_read(denied.port) == b""
    for listening in (denied, allowed):
        listening.proc.terminate()
    out, err = allowed.proc.communicate(timeout=10)
    assert out == b"kept\n"
    assert f"accepted 127.0.0.1:{local} on 127.0.0.1:{allowed.port}" in err.decode()
    _, err = denied.proc.communicate(timeout=10)
    assert re.search(r"^refused 127\.0\.0\.1:\d+: deny$", err.decode(), re.M)


def test_a_bad_network_is_a_usage_error_as_for_serve() -> None:
    ours = run_cli(["listen", "--deny", "10.0.0.0/33", "0"])
    theirs = run_cli(["serve", "echo", "0", "--deny", "10.0.0.0/33"])
    assert ours.returncode == theirs.returncode == 2
    assert ours.stderr == theirs.stderr
    assert ours.stderr.startswith(b"sockkit: bad --allow/--deny network:")


# -- --help ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "first"),
    [
        ("connect", "sockkit connect 127.0.0.1 7007"),
        ("listen", "sockkit listen 127.0.0.1 9000"),
    ],
)
def test_help_shows_the_nc_forms_first(command: str, first: str) -> None:
    result = run_cli([command, "--help"])
    assert result.returncode == 0
    examples = result.stdout.decode().split("examples", 1)[1].splitlines()
    assert examples[1].strip().startswith(first)
    for flag in ("-u", "-q", "-C", "-e", "-c", "-x", "-w", "-N"):
        assert f"  {flag} " in result.stdout.decode() or f"  {flag}," in result.stdout.decode()
