"""``connect``/``listen`` over UDP and Unix datagrams: one datagram per line, replies to the sender."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.client.conftest import Listening, Spawn, free_port, need
from tests.conftest import cli_env, run_cli, sockkit_argv

StartListen = Callable[..., Listening]


@pytest.fixture
def udp_recorder() -> Iterator[tuple[int, list[bytes]]]:
    """A UDP peer that records each datagram and answers it upper-cased."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    got: list[bytes] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                data, address = sock.recvfrom(65535)
            except TimeoutError:
                continue
            got.append(data)
            sock.sendto(data.upper(), address)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield sock.getsockname()[1], got
    stop.set()
    thread.join(5)
    sock.close()


def test_each_line_is_one_datagram_and_replies_are_printed(
    udp_recorder: tuple[int, list[bytes]],
) -> None:
    port, got = udp_recorder
    result = run_cli(
        ["connect", "--wait", "0.5", f"udp://127.0.0.1:{port}"], input=b"one\ntwo\nlast"
    )
    assert result.returncode == 0, result.stderr
    assert got == [b"one\n", b"two\n", b"last"]
    assert result.stdout == b"ONE\nTWO\nLAST"


def test_chunk_cuts_stdin_into_fixed_datagrams(udp_recorder: tuple[int, list[bytes]]) -> None:
    port, got = udp_recorder
    result = run_cli(
        ["connect", "--chunk", "4", "--wait", "0.3", f"udp://127.0.0.1:{port}"], input=b"abcdefghij"
    )
    assert result.returncode == 0, result.stderr
    assert got == [b"abcd", b"efgh", b"ij"]


def test_socat_udp_echo(processes: Spawn) -> None:
    port = free_port(socket.SOCK_DGRAM)
    processes([need("socat"), f"UDP-RECVFROM:{port},bind=127.0.0.1,fork", "PIPE"])
    # socat binds asynchronously: retry the first exchange until it answers.
    for _ in range(50):
        result = run_cli(["connect", "--wait", "0.3", f"udp://127.0.0.1:{port}"], input=b"ping\n")
        if result.stdout:
            break
    assert result.stdout == b"ping\n"
    result = run_cli(["connect", "--wait", "0.5", f"udp://127.0.0.1:{port}"], input=b"a\nb\n")
    assert result.returncode == 0
    assert sorted(result.stdout.splitlines()) == [b"a", b"b"]


def test_nobody_listening_on_udp_is_refused() -> None:
    port = free_port(socket.SOCK_DGRAM)
    result = run_cli(["connect", "--wait", "2", f"udp://127.0.0.1:{port}"], input=b"anyone?\n")
    assert result.returncode == 1
    assert (
        result.stderr
        == f"sockkit: connection refused: nothing is listening at 127.0.0.1:{port}\n".encode()
    )


def _read_until(fd: int, expected: bytes) -> bytes:
    seen = b""
    while not seen.endswith(expected):
        chunk = os.read(fd, 65536)
        assert chunk, f"stdout ended after {seen!r}"
        seen += chunk
    return seen


def test_listen_udp_answers_each_peer_not_only_the_first(sockkit_listen: StartListen) -> None:
    listening = sockkit_listen("udp://127.0.0.1:0", stdin=subprocess.PIPE)
    assert listening.proc.stdin is not None and listening.proc.stdout is not None
    stdout = listening.proc.stdout.fileno()
    peers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    try:
        for n, peer in enumerate(peers):
            peer.settimeout(5)
            peer.sendto(b"from %d\n" % n, ("127.0.0.1", listening.port))
            _read_until(stdout, b"from %d\n" % n)
            listening.proc.stdin.write(b"reply %d\n" % n)
            listening.proc.stdin.flush()
            assert peer.recv(100) == b"reply %d\n" % n
        # Each peer got only its own reply.
        for peer in peers:
            peer.settimeout(0.2)
            with pytest.raises(TimeoutError):
                peer.recv(100)
    finally:
        for peer in peers:
            peer.close()
        listening.proc.send_signal(signal.SIGTERM)
    assert listening.proc.wait(10) == 0


def test_unixgram_connect_and_listen(sockkit_listen: StartListen, tmp_path: Path) -> None:
    path = tmp_path / "dgram"
    listening = sockkit_listen(f"unixgram:{path}", stdin=subprocess.PIPE)
    assert listening.proc.stdin is not None and listening.proc.stdout is not None
    client = subprocess.Popen(
        sockkit_argv("connect", "--wait", "1.5", f"unixgram:{path}"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(),
    )
    try:
        assert client.stdin is not None
        client.stdin.write(b"hello over unixgram\n")
        client.stdin.close()
        _read_until(listening.proc.stdout.fileno(), b"hello over unixgram\n")
        listening.proc.stdin.write(b"and back\n")
        listening.proc.stdin.flush()
        assert client.wait(15) == 0
        assert client.stdout is not None
        assert client.stdout.read() == b"and back\n"
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(5)
        for stream in (client.stdout, client.stderr):
            assert stream is not None
            stream.close()
        listening.proc.send_signal(signal.SIGTERM)
    assert listening.proc.wait(10) == 0
    assert not path.exists()


def test_recv_only_sends_nothing_and_ends_after_the_wait(
    udp_recorder: tuple[int, list[bytes]],
) -> None:
    port, got = udp_recorder
    result = run_cli(
        ["connect", "--recv-only", "--wait", "0.2", f"udp://127.0.0.1:{port}"], input=b"not sent\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    assert got == []
