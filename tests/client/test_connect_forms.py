"""``connect HOST PORT`` as nc takes it, and ``-4``/``-6`` to pick the address family."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from tests.conftest import run_cli


@pytest.fixture
def echo_once() -> Iterator[int]:
    """A one-connection IPv4 echo on 127.0.0.1 that reads to the end, then echoes it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
            conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    thread.join(10)
    server.close()


@pytest.mark.parametrize(
    "words",
    [
        ["-4", "localhost:{port}"],
        ["-4", "localhost", "{port}"],
        ["localhost", "{port}"],
        ["127.0.0.1", "{port}"],
        ["-v", "-4", "127.0.0.1", "{port}"],
    ],
)
def test_connect_takes_host_port_and_minus_4(echo_once: int, words: list[str]) -> None:
    argv = ["connect", *(w.format(port=echo_once) for w in words)]
    result = run_cli(argv, input=b"hello\n", timeout=20)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hello\n"


def test_minus_6_does_not_fall_back_to_ipv4() -> None:
    result = run_cli(["connect", "-6", "127.0.0.1", "9"], input=b"")
    assert result.returncode == 1
    assert b"IPv6" in result.stderr


def test_host_port_form_refuses_an_endpoint_as_the_host() -> None:
    result = run_cli(["connect", "tcp://127.0.0.1:7", "7"], input=b"")
    assert result.returncode == 2
    assert result.stderr.startswith(b"sockkit: HOST PORT takes a host")
