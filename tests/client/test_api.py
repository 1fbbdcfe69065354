"""The Python API against real peers: expect-style reads, deadlines, listeners, datagrams."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.client.conftest import free_port

import sockkit


@pytest.fixture
def peer_server() -> Iterator[Callable[[Callable[[socket.socket], None]], int]]:
    """Run ``script(conn)`` for the one peer that connects; returns the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    threads: list[threading.Thread] = []

    def start(script: Callable[[socket.socket], None]) -> int:
        def run() -> None:
            conn, _ = listener.accept()
            with conn:
                script(conn)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        return int(listener.getsockname()[1])

    yield start
    listener.close()
    for thread in threads:
        thread.join(10)


def test_expect_session_with_socat_echo(socat_echo: int) -> None:
    with sockkit.connect(f"127.0.0.1:{socat_echo}", timeout=10) as conn:
        conn.sendline("HELO sockkit")
        assert conn.recv_line() == b"HELO sockkit\n"
        conn.send(b"key=value;rest")
        assert conn.recv_until(b";") == b"key=value;"
        assert conn.recv_exactly(4) == b"rest"
        block = os.urandom(500_000)
        conn.send(block)
        conn.shutdown_write()
        assert conn.recv_all() == block
        assert conn.recv() == b""


def test_timeout_keeps_the_bytes_and_shows_them(peer_server: Callable[..., int]) -> None:
    go_on = threading.Event()

    def script(peer: socket.socket) -> None:
        peer.sendall(b"Password")
        go_on.wait(10)
        peer.sendall(b": \n")

    port = peer_server(script)
    with sockkit.connect(str(port), timeout=10) as conn:
        with pytest.raises(sockkit.TimeoutError) as caught:
            conn.recv_until(b": ", timeout=0.3)
        assert caught.value.partial == b"Password"
        assert isinstance(caught.value, TimeoutError)  # the builtin, too
        assert conn.buffered == len(b"Password")
        go_on.set()
        assert conn.recv_until(b": ") == b"Password: "
        assert conn.recv_line() == b"\n"


def test_timeout_is_a_deadline_for_the_whole_call(peer_server: Callable[..., int]) -> None:
    stop = threading.Event()

    def script(peer: socket.socket) -> None:
        # A byte every 50 ms, never a newline: a per-recv timeout would never fire.
        while not stop.wait(0.05):
            try:
                peer.sendall(b".")
            except OSError:
                return

    port = peer_server(script)
    try:
        with sockkit.connect(str(port)) as conn:
            started = time.monotonic()
            with pytest.raises(sockkit.TimeoutError) as caught:
                conn.recv_line(timeout=0.5)
            assert time.monotonic() - started < 5
            assert set(caught.value.partial) == {ord(".")}
    finally:
        stop.set()


def test_peer_closing_early_keeps_what_it_sent(peer_server: Callable[..., int]) -> None:
    port = peer_server(lambda peer: peer.sendall(b"abc"))
    with sockkit.connect(str(port), timeout=10) as conn:
        with pytest.raises(sockkit.ConnectError, match="after 3 of 10 bytes"):
            conn.recv_exactly(10)
        assert conn.recv() == b"abc"


def test_a_line_longer_than_max_bytes_is_refused(peer_server: Callable[..., int]) -> None:
    port = peer_server(lambda peer: peer.sendall(b"x" * 5000 + b"\n"))
    with sockkit.connect(str(port), timeout=10) as conn:
        with pytest.raises(sockkit.SockkitError, match="within 1000 bytes"):
            conn.recv_line(max_bytes=1000)
        assert conn.buffered >= 1000


def test_connect_errors_are_sockkit_errors() -> None:
    with pytest.raises(sockkit.ConnectError, match="connection refused"):
        sockkit.connect(str(free_port()), timeout=5)
    with pytest.raises(sockkit.EndpointError):
        sockkit.connect("tcp://nowhere")
    with pytest.raises(sockkit.UsageError, match="connect_datagram"):
        sockkit.connect("udp://127.0.0.1:9")


def test_listener_accepts_peers_one_after_another() -> None:
    with sockkit.listen("127.0.0.1:0", timeout=10) as listener:
        assert listener.endpoint.port > 0
        with pytest.raises(sockkit.TimeoutError):
            listener.accept(timeout=0.1)
        for n in range(3):
            with sockkit.connect(str(listener.endpoint), timeout=10) as client:
                client.sendline(b"peer %d" % n)
                with listener.accept() as server_side:
                    assert server_side.recv_line() == b"peer %d\n" % n
                    server_side.sendline(b"bye")
                assert client.recv_line() == b"bye\n"


def test_iterating_a_listener_yields_connections(tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    with sockkit.listen(f"unix:{path}", timeout=10) as listener:
        for n in range(2):
            client = sockkit.connect(f"unix:{path}", timeout=10)
            client.send(b"%d" % n)
            client.close()
        got = []
        for conn in listener:
            with conn:
                got.append(conn.recv_all())
            if len(got) == 2:
                break
    assert got == [b"0", b"1"]
    assert not path.exists()


def test_datagram_connection_and_listener_talk() -> None:
    with sockkit.listen_datagram("udp://127.0.0.1:0", timeout=5) as server:
        port = int(server.local_address.rsplit(":", 1)[1])
        clients = [sockkit.connect_datagram(f"udp://127.0.0.1:{port}", timeout=5) for _ in range(3)]
        try:
            for n, client in enumerate(clients):
                client.send(b"hello %d" % n)
                data, address = server.recv_from()
                server.send_to(data.upper(), address)
            for n, client in enumerate(clients):
                assert client.recv() == b"HELLO %d" % n
            with pytest.raises(sockkit.TimeoutError):
                clients[0].recv(timeout=0.1)
        finally:
            for client in clients:
                client.close()


def test_unixgram_listener_answers_and_removes_its_file(tmp_path: Path) -> None:
    path = tmp_path / "dgram.sock"
    with sockkit.listen_datagram(f"unixgram:{path}", timeout=5) as server:
        with sockkit.connect_datagram(f"unixgram:{path}", timeout=5) as client:
            client.send(b"ping")
            data, address = server.recv_from()
            server.send_to(b"pong:" + data, address)
            assert client.recv() == b"pong:ping"
    assert not path.exists()
