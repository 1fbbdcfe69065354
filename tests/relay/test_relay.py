"""The relay over real loopback sockets: faithful forwarding, then each fault."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import run_cli

from sockkit import Endpoint, parse_endpoint
from sockkit.relay import Faults, run_relay


class EchoPeer:
    """A threaded echo server (stream or datagram) that records the size of every recv."""

    def __init__(self, endpoint: str) -> None:
        from sockkit import open_listener

        self.sock = open_listener(parse_endpoint(endpoint))
        self.recv_sizes: list[int] = []
        self.stopped = False
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def endpoint(self) -> Endpoint:
        from sockkit._endpoint import sockaddr_endpoint

        return sockaddr_endpoint(self.sock)

    def _serve(self) -> None:
        if self.sock.type == socket.SOCK_DGRAM:
            while not self.stopped:
                try:
                    data, addr = self.sock.recvfrom(65536)
                except OSError:
                    return
                self.sock.sendto(data, addr)
            return
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    self.recv_sizes.append(len(data))
                    conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        self.stopped = True
        self.sock.close()


@pytest.fixture
def relay() -> Iterator[object]:
    stops: list[tuple[threading.Event, threading.Thread]] = []

    def start(listen: str, target: Endpoint, faults: Faults | None = None) -> Endpoint:
        ready: list[Endpoint] = []
        stop = threading.Event()
        thread = threading.Thread(
            target=run_relay,
            args=(parse_endpoint(listen), target, faults),
            kwargs={"on_ready": ready.append, "stop": stop},
            daemon=True,
        )
        thread.start()
        deadline = time.monotonic() + 10
        while not ready:
            assert time.monotonic() < deadline, "relay did not start"
            time.sleep(0.01)
        stops.append((stop, thread))
        return ready[0]

    yield start
    for stop, thread in stops:
        stop.set()
        thread.join(10)
        assert not thread.is_alive()


def _exchange(endpoint: Endpoint, payload: bytes) -> bytes:
    from sockkit import open_connection

    with open_connection(endpoint, timeout=5) as sock:
        sock.settimeout(20)
        sender = threading.Thread(
            target=lambda: (sock.sendall(payload), sock.shutdown(socket.SHUT_WR))
        )
        sender.start()
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
        sender.join()
    return b"".join(chunks)


@pytest.mark.parametrize("listen", ["tcp://127.0.0.1:0", "tcp://[::1]:0", "unix"])
def test_relay_forwards_1mib_byte_exact_with_half_close(
    relay: Any, listen: str, tmp_path: Path
) -> None:
    peer = EchoPeer("0")
    try:
        if listen == "unix":
            listen = f"unix:{tmp_path}/r.sock"
        front = relay(listen, peer.endpoint)
        payload = os.urandom(1 << 20)
        echoed = _exchange(front, payload)
        assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
    finally:
        peer.close()


def test_latency_delays_each_direction(relay: Any) -> None:
    peer = EchoPeer("0")
    try:
        front = relay("0", peer.endpoint, Faults(latency=0.15))
        started = time.monotonic()
        assert _exchange(front, b"ping") == b"ping"
        assert time.monotonic() - started >= 0.3  # 150 ms out, 150 ms back
    finally:
        peer.close()


def test_bandwidth_caps_throughput(relay: Any) -> None:
    peer = EchoPeer("0")
    try:
        front = relay("0", peer.endpoint, Faults(bandwidth=400_000))
        started = time.monotonic()
        payload = os.urandom(200_000)
        assert _exchange(front, payload) == payload
        # 200 kB each way at 400 kB/s per direction: at least 0.5 s, minus one burst.
        assert time.monotonic() - started >= 0.4
    finally:
        peer.close()


def test_slice_cuts_data_into_pieces() -> None:
    assert Faults(slice=4).pieces(b"abcdefghij") == [b"abcd", b"efgh", b"ij"]
    assert Faults().pieces(b"abc") == [b"abc"]


def test_sliced_paced_writes_reach_the_peer_as_separate_pieces(relay: Any) -> None:
    peer = EchoPeer("0")
    try:
        # 100-byte pieces at 10 kB/s leave 10 ms apart, so the peer's recv sees them one by one.
        front = relay("0", peer.endpoint, Faults(slice=100, bandwidth=10_000))
        payload = bytes(range(256)) * 4
        assert _exchange(front, payload) == payload
        assert len(peer.recv_sizes) >= 5
        assert max(peer.recv_sizes) <= 300
    finally:
        peer.close()


def test_reset_after_budget(relay: Any) -> None:
    from sockkit import open_connection

    peer = EchoPeer("0")
    try:
        front = relay("0", peer.endpoint, Faults(reset_after=10_000))
        received = 0
        with open_connection(front, timeout=5) as sock, pytest.raises(ConnectionResetError):
            sock.settimeout(10)
            sock.sendall(b"x" * 5000)
            while True:
                data = sock.recv(65536)
                received += len(data)
                if not data:
                    break  # pragma: no cover - a reset must come, not EOF
                sock.sendall(b"x" * 5000)
        assert 0 < received <= 10_000
    finally:
        peer.close()


def test_udp_drop_rate(relay: Any) -> None:
    from sockkit import open_connection

    peer = EchoPeer("udp://127.0.0.1:0")
    try:
        front = relay("udp://127.0.0.1:0", peer.endpoint, Faults(drop=0.5))
        with open_connection(front) as sock:
            sock.settimeout(0.5)
            for i in range(200):
                sock.send(b"%d" % i)
            replies = 0
            try:
                while True:
                    sock.recv(100)
                    replies += 1
            except TimeoutError:
                pass
        # Each datagram crosses the relay twice, kept with probability 0.25 overall.
        assert 15 <= replies <= 100
    finally:
        peer.close()


def test_udp_relay_keeps_clients_apart(relay: Any) -> None:
    from sockkit import open_connection

    peer = EchoPeer("udp://127.0.0.1:0")
    try:
        front = relay("udp://127.0.0.1:0", peer.endpoint)
        clients = [open_connection(front) for _ in range(3)]
        for i, sock in enumerate(clients):
            sock.settimeout(5)
            sock.send(b"client %d" % i)
        assert [sock.recv(100) for sock in clients] == [b"client %d" % i for i in range(3)]
        for sock in clients:
            sock.close()
    finally:
        peer.close()


def test_cli_relay_with_socat_peer_and_refused_target() -> None:
    result = run_cli(["relay", "udp://127.0.0.1:0", "tcp://127.0.0.1:1"])
    assert result.returncode == 2
    assert result.stderr.decode().startswith("sockkit: cannot relay udp://")
    result = run_cli(["relay", "udp://127.0.0.1:0", "udp://127.0.0.1:7007", "--drop", "150%"])
    assert result.returncode == 2
    assert (
        result.stderr.decode()
        == "sockkit: bad rate '150%': expected a probability between 0 and 1\n"
    )
