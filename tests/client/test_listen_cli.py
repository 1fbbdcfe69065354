"""``sockkit listen`` with sockkit, socat and ncat as the connecting side."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.client.conftest import Listening, Spawn, need
from tests.conftest import run_cli, sockkit_argv

StartListen = Callable[..., Listening]


def test_file_sent_with_connect_arrives_byte_exact_at_listen(
    sockkit_listen: StartListen, tmp_path: Path
) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)
    with open(tmp_path / "got", "wb") as out:
        listening = sockkit_listen("0", stdin=subprocess.DEVNULL, stdout=out)
        result = run_cli(["connect", listening.endpoint], input=payload)
        assert result.returncode == 0, result.stderr
        assert listening.proc.wait(10) == 0
    got = (tmp_path / "got").read_bytes()
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()


def test_listen_says_where_it_listens_with_the_real_port(sockkit_listen: StartListen) -> None:
    listening = sockkit_listen("0", stdin=subprocess.DEVNULL)
    assert listening.endpoint.startswith("tcp://127.0.0.1:")
    assert listening.port > 0
    with socket.create_connection(("127.0.0.1", listening.port), timeout=5):
        pass
    assert listening.proc.wait(10) == 0


def test_socat_client_talks_both_ways_with_listen(sockkit_listen: StartListen) -> None:
    listening = sockkit_listen("0", stdin=subprocess.PIPE)
    assert listening.proc.stdin is not None
    listening.proc.stdin.write(b"from listen\n")
    listening.proc.stdin.flush()
    socat = subprocess.run(
        [need("socat"), "-t", "5", "-", f"TCP:127.0.0.1:{listening.port}"],
        input=b"from socat\n",
        capture_output=True,
        timeout=20,
    )
    assert socat.stdout == b"from listen\n"
    # socat's end of stream does not end listen: stdin still goes to it until stdin ends.
    listening.proc.stdin.close()
    assert listening.proc.wait(10) == 0
    assert listening.proc.stdout is not None
    assert listening.proc.stdout.read() == b"from socat\n"


def test_ncat_client_sends_a_file_to_listen(sockkit_listen: StartListen) -> None:
    listening = sockkit_listen("0", stdin=subprocess.DEVNULL)
    payload = os.urandom(1 << 20)
    ncat = subprocess.run(
        [need("ncat"), "--send-only", "127.0.0.1", str(listening.port)],
        input=payload,
        capture_output=True,
        timeout=20,
    )
    assert ncat.returncode == 0, ncat.stderr
    out, _ = listening.proc.communicate(timeout=10)
    assert listening.proc.returncode == 0
    assert out == payload


def test_half_close_flag_lets_a_request_reply_exchange_end(sockkit_listen: StartListen) -> None:
    listening = sockkit_listen("--half-close", "0", stdin=subprocess.PIPE)
    assert listening.proc.stdin is not None
    listening.proc.stdin.write(b"reply")
    listening.proc.stdin.close()
    with socket.create_connection(("127.0.0.1", listening.port), timeout=5) as sock:
        chunks = []
        while chunk := sock.recv(100):  # ends only because listen half-closed
            chunks.append(chunk)
        sock.sendall(b"request")
    assert b"".join(chunks) == b"reply"
    assert listening.proc.wait(10) == 0
    assert listening.proc.stdout is not None
    assert listening.proc.stdout.read() == b"request"


def test_keep_open_takes_many_peers_and_keeps_each_ones_order(
    sockkit_listen: StartListen,
) -> None:
    listening = sockkit_listen("--keep-open", "0", stdin=subprocess.PIPE)
    messages = {f"peer{i}": b"".join(b"%d:%d\n" % (i, n) for n in range(2000)) for i in range(3)}
    for payload in messages.values():
        result = run_cli(["connect", "--send-only", listening.endpoint], input=payload)
        assert result.returncode == 0, result.stderr
    # Still listening after those peers left:
    with socket.create_connection(("127.0.0.1", listening.port), timeout=5) as sock:
        sock.sendall(b"last\n")
    expected = b"".join(messages.values()) + b"last\n"
    assert listening.proc.stdout is not None
    out = b""
    while len(out) < len(expected) and (chunk := os.read(listening.proc.stdout.fileno(), 65536)):
        out += chunk
    listening.proc.send_signal(signal.SIGTERM)
    assert listening.proc.wait(10) == 0
    assert out == expected


def test_keep_open_broadcasts_stdin_to_every_connected_peer(
    sockkit_listen: StartListen,
) -> None:
    listening = sockkit_listen("--keep-open", "0", stdin=subprocess.PIPE)
    peers = [socket.create_connection(("127.0.0.1", listening.port), timeout=5) for _ in range(2)]
    try:
        # Make sure both were accepted before stdin speaks: each says hello first.
        for n, peer in enumerate(peers):
            peer.sendall(b"hello %d\n" % n)
        assert listening.proc.stdout is not None
        seen = b""
        while seen.count(b"\n") < 2:
            seen += os.read(listening.proc.stdout.fileno(), 100)
        assert listening.proc.stdin is not None
        listening.proc.stdin.write(b"to all\n")
        listening.proc.stdin.flush()
        for peer in peers:
            assert peer.recv(100) == b"to all\n"
    finally:
        for peer in peers:
            peer.close()
        listening.proc.send_signal(signal.SIGTERM)
    assert listening.proc.wait(10) == 0


def test_unix_listen_removes_its_socket_file(sockkit_listen: StartListen, tmp_path: Path) -> None:
    path = tmp_path / "s"
    listening = sockkit_listen(f"unix:{path}", stdin=subprocess.DEVNULL)
    assert listening.endpoint == f"unix:{path}"
    result = run_cli(["connect", f"unix:{path}"], input=b"over unix\n")
    assert result.returncode == 0, result.stderr
    out, _ = listening.proc.communicate(timeout=10)
    assert out == b"over unix\n"
    assert not path.exists()


def test_address_in_use_is_one_line(processes: Spawn) -> None:
    holder = socket.create_server(("127.0.0.1", 0))
    try:
        port = holder.getsockname()[1]
        result = run_cli(["listen", str(port)], input=b"")
    finally:
        holder.close()
    assert result.returncode == 1
    line = f"sockkit: address already in use: 127.0.0.1:{port} (held by pid {os.getpid()} "
    assert result.stderr.startswith(line.encode())
    assert result.stderr.count(b"\n") == 1


def test_sigterm_stops_a_listener_with_status_zero(processes: Spawn) -> None:
    proc = processes(
        sockkit_argv("listen", "0"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    assert b"listening on" in proc.stderr.readline()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_keep_open_reports_a_reset_peer_and_serves_the_next(sockkit_listen: StartListen) -> None:
    listening = sockkit_listen("--keep-open", "0", stdin=subprocess.PIPE)
    rude = socket.create_connection(("127.0.0.1", listening.port), timeout=5)
    rude.sendall(b"rude\n")
    assert listening.proc.stdout is not None
    stdout = listening.proc.stdout.fileno()
    seen = b""
    while not seen.endswith(b"rude\n"):
        seen += os.read(stdout, 100)
    # Unread data in our receive queue makes close() send a reset.
    listening.proc.stdin.write(b"unread\n")  # type: ignore[union-attr]
    listening.proc.stdin.flush()  # type: ignore[union-attr]
    time.sleep(0.2)
    rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    rude.close()
    with socket.create_connection(("127.0.0.1", listening.port), timeout=5) as polite:
        polite.sendall(b"polite\n")
        while not seen.endswith(b"polite\n"):
            seen += os.read(stdout, 100)
    listening.proc.send_signal(signal.SIGTERM)
    assert listening.proc.wait(10) == 0
    assert listening.proc.stderr is not None
    assert b"connection reset by peer" in listening.proc.stderr.read()
