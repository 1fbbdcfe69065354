"""``sockkit connect`` against real peers: byte-exact transfers, half-close, and every failure mode."""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from tests.client.conftest import Spawn, free_port, need
from tests.conftest import run_cli, sockkit_argv

from sockkit import _endpoint
from sockkit._endpoint import AddressInfo, parse_endpoint
from sockkit.client import NetcatOptions, run_connect

TEN_MIB = 10 * 1024 * 1024


@pytest.fixture(scope="module")
def ten_mib() -> bytes:
    return os.urandom(TEN_MIB)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_ten_mib_through_socat_echo_comes_back_byte_exact(socat_echo: int, ten_mib: bytes) -> None:
    result = run_cli(["connect", str(socat_echo)], input=ten_mib)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) == TEN_MIB
    assert sha(result.stdout) == sha(ten_mib)


def test_ncat_listener_receives_ten_mib_byte_exact(
    processes: Spawn, ten_mib: bytes, tmp_path: os.PathLike[str]
) -> None:
    # ncat --exec cat drops the reply at half-close, so ncat is the receiving end
    # here.  Its stdin stays open (--recv-only would half-close at once, and a
    # peer's end of stream ends connect).
    port = free_port()
    out_path = os.path.join(tmp_path, "got")
    with open(out_path, "wb") as out:
        server = processes(
            [need("ncat"), "-l", "127.0.0.1", str(port)], stdin=subprocess.PIPE, stdout=out
        )
        assert _wait_listening(port)
        result = run_cli(["connect", f"tcp://127.0.0.1:{port}"], input=ten_mib)
        assert result.returncode == 0, result.stderr
        assert server.wait(20) == 0
    with open(out_path, "rb") as f:
        assert sha(f.read()) == sha(ten_mib)


def test_socat_server_receives_what_connect_sends(
    processes: Spawn, tmp_path: os.PathLike[str]
) -> None:
    port = free_port()
    out = os.path.join(tmp_path, "got")
    server = processes(
        [need("socat"), "-u", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr", f"CREATE:{out}"]
    )
    assert _wait_listening(port)
    payload = os.urandom(300_000)
    result = run_cli(["connect", str(port)], input=payload)
    assert result.returncode == 0, result.stderr
    assert server.wait(10) == 0
    with open(out, "rb") as f:
        assert f.read() == payload


def _wait_listening(port: int, timeout: float = 10) -> bool:
    # socat without fork serves one connection only: watch the listen table
    # instead of connecting to it.
    deadline = time.monotonic() + timeout
    needle = f"0100007F:{port:04X}"
    while time.monotonic() < deadline:
        with open("/proc/net/tcp") as table:
            if any(needle in line and line.split()[3] == "0A" for line in table):
                return True
        time.sleep(0.02)
    return False


@pytest.fixture
def one_shot_server() -> Iterator[socket.socket]:
    listener = socket.create_server(("127.0.0.1", 0))
    yield listener
    listener.close()


def test_peer_closing_first_ends_connect_with_status_zero(
    one_shot_server: socket.socket, processes: Spawn
) -> None:
    port = one_shot_server.getsockname()[1]
    # stdin stays open (a pipe nobody writes to): only the peer's close can end it.
    proc = processes(
        sockkit_argv("connect", str(port)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    peer, _ = one_shot_server.accept()
    peer.sendall(b"daytime\r\n")
    peer.close()
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert out == b"daytime\r\n"


def test_refused_is_one_line_and_status_one() -> None:
    port = free_port()
    result = run_cli(["connect", str(port)], input=b"x")
    assert result.returncode == 1
    assert (
        result.stderr
        == f"sockkit: connection refused: nothing is listening at 127.0.0.1:{port}\n".encode()
    )


def test_timeout_against_a_full_backlog() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # never accepted: once the queue is full, SYNs go unanswered
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(listener.getsockname())
            except BlockingIOError:
                pass
            fillers.append(filler)
        time.sleep(0.1)
        port = listener.getsockname()[1]
        started = time.monotonic()
        result = run_cli(["connect", "--timeout", "0.5", str(port)], input=b"")
        assert result.returncode == 1
        assert (
            result.stderr == f"sockkit: timed out trying to connect to 127.0.0.1:{port}\n".encode()
        )
        assert time.monotonic() - started < 10
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_reset_by_peer_is_reported(one_shot_server: socket.socket, processes: Spawn) -> None:
    port = one_shot_server.getsockname()[1]
    proc = processes(
        sockkit_argv("connect", str(port)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    peer, _ = one_shot_server.accept()
    peer.sendall(b"before the reset\n")
    time.sleep(0.2)
    # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 1
    assert out == b"before the reset\n"
    assert err == f"sockkit: connection reset by peer 127.0.0.1:{port}\n".encode()


def test_idle_timeout_fails_when_nothing_moves(
    one_shot_server: socket.socket, processes: Spawn
) -> None:
    port = one_shot_server.getsockname()[1]
    proc = processes(
        sockkit_argv("connect", "--idle-timeout", "0.3", str(port)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    peer, _ = one_shot_server.accept()
    try:
        _, err = proc.communicate(timeout=10)
    finally:
        peer.close()
    assert proc.returncode == 1
    assert err == b"sockkit: timed out: no data either way for 0.3s\n"


@pytest.mark.parametrize(
    "endpoint", ["tcp://127.0.0.1", "ftp://127.0.0.1:21", "127.0.0.1:99999", "[::1:7007"]
)
def test_bad_endpoint_is_a_usage_error(endpoint: str) -> None:
    result = run_cli(["connect", endpoint], input=b"")
    assert result.returncode == 2
    assert result.stderr.startswith(f"sockkit: bad endpoint {endpoint!r}".encode())
    assert result.stderr.count(b"\n") == 1


def test_send_and_recv_only_exclude_each_other() -> None:
    result = run_cli(["connect", "--send-only", "--recv-only", "7"], input=b"")
    assert result.returncode == 2
    assert b"exclude each other" in result.stderr


def _serve_once(listener: socket.socket, reply: bytes, received: list[bytes]) -> threading.Thread:
    def run() -> None:
        peer, _ = listener.accept()
        with peer:
            peer.sendall(reply)
            chunks = []
            while chunk := peer.recv(65536):
                chunks.append(chunk)
            received.append(b"".join(chunks))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_send_only_prints_nothing_and_still_half_closes(one_shot_server: socket.socket) -> None:
    received: list[bytes] = []
    thread = _serve_once(one_shot_server, b"ignored reply\n", received)
    result = run_cli(
        ["connect", "--send-only", str(one_shot_server.getsockname()[1])], input=b"payload"
    )
    thread.join(10)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    assert received == [b"payload"]


def test_recv_only_never_sends(one_shot_server: socket.socket) -> None:
    port = one_shot_server.getsockname()[1]
    received: list[bytes] = []

    def run() -> None:
        peer, _ = one_shot_server.accept()
        with peer:
            peer.settimeout(0.5)
            peer.sendall(b"hello\n")
            try:
                received.append(peer.recv(100))
            except TimeoutError:
                received.append(b"(nothing)")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    result = run_cli(["connect", "--recv-only", str(port)], input=b"must not be sent")
    thread.join(10)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hello\n"
    assert received == [b"(nothing)"]


def test_no_shutdown_keeps_the_write_side_open(
    one_shot_server: socket.socket, processes: Spawn
) -> None:
    port = one_shot_server.getsockname()[1]
    proc = processes(
        sockkit_argv("connect", "--no-shutdown", str(port)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(b"question\n")
    proc.stdin.close()
    peer, _ = one_shot_server.accept()
    with peer:
        peer.settimeout(0.5)
        assert peer.recv(100) == b"question\n"
        # Without the half-close no end of stream arrives: recv waits.
        with pytest.raises(TimeoutError):
            peer.recv(100)
        peer.sendall(b"answer\n")
    assert proc.wait(10) == 0
    assert proc.stdout is not None
    assert proc.stdout.read() == b"answer\n"


def test_verbose_reports_addresses_bytes_and_who_closed(socat_echo: int) -> None:
    result = run_cli(["connect", "-v", str(socat_echo)], input=b"12345")
    assert result.returncode == 0
    err = result.stderr.decode()
    assert f"trying 127.0.0.1:{socat_echo}" in err
    assert f"-> 127.0.0.1:{socat_echo}" in err
    assert "half-closed" in err
    assert "sent 5 bytes, received 5 bytes" in err


def test_source_address_is_bound(one_shot_server: socket.socket) -> None:
    port = one_shot_server.getsockname()[1]
    seen: list[str] = []

    def run() -> None:
        peer, address = one_shot_server.accept()
        seen.append(address[0])
        peer.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    result = run_cli(["connect", "--source", "127.0.0.2", str(port)], input=b"")
    thread.join(10)
    assert result.returncode == 0, result.stderr
    assert seen == ["127.0.0.2"]


def test_every_resolved_address_is_tried(
    one_shot_server: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A name that resolves to a dead address first and a live one second.
    port = one_shot_server.getsockname()[1]
    dead = AddressInfo(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.3", port))
    live = AddressInfo(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))
    monkeypatch.setattr(_endpoint._open, "resolve", lambda endpoint, **kwargs: [dead, live])
    threading.Thread(target=lambda: one_shot_server.accept()[0].close(), daemon=True).start()
    events: list[str] = []
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    os.close(stdin_w)
    try:
        run_connect(
            parse_endpoint(f"two-addresses.test:{port}"),
            NetcatOptions(timeout=5),
            stdin_fd=stdin_r,
            stdout_fd=stdout_w,
            on_event=events.append,
        )
    finally:
        for fd in (stdin_r, stdout_r, stdout_w):
            os.close(fd)
    assert events[:2] == [f"trying 127.0.0.3:{port}", f"trying 127.0.0.1:{port}"]
    assert any(event.startswith("connected ") for event in events)


def test_main_called_directly_reports_a_bad_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    from sockkit.cli import main

    assert main(["connect", "udp://[::1"]) == 2
    assert main(["listen", "unix:"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert all(line.startswith("sockkit: bad endpoint ") for line in err)
