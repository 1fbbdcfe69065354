"""Services under a real ``sockkit serve``: chat between sockets, and a user's module:Class."""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

import pytest
from tests.conftest import ServerProcess, run_cli
from tests.docpages import code_blocks, page


def address(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
    return host, int(port)


def read_until(sock: socket.socket, ending: bytes) -> bytes:
    data = b""
    while not data.endswith(ending):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def wait_until_in_room(
    listener: socket.socket, talkers: list[socket.socket], names: list[str]
) -> None:
    """Return once ``listener`` hears each talker: all of them have joined the room.

    Accepting is asynchronous, so a line sent at once could go out before a
    later client has joined; the talkers repeat a line until it is heard.
    """
    listener.settimeout(0.1)
    heard = b""
    waiting = set(range(len(talkers)))
    deadline = time.monotonic() + 10
    while waiting and time.monotonic() < deadline:
        for n in waiting:
            talkers[n].sendall(b"sync\n")
        with contextlib.suppress(TimeoutError):
            heard += listener.recv(65536)
        waiting = {n for n in waiting if f"[{names[n]}] sync\n".encode() not in heard}
    listener.settimeout(10)
    assert not waiting, heard


def test_chat_between_three_sockets(serve: type[ServerProcess]) -> None:
    server = serve(["chat", "127.0.0.1:0"])
    where = address(server.endpoints[0])
    clients = [socket.create_connection(where, timeout=10) for _ in range(3)]
    try:
        names = ["{}:{}".format(*c.getsockname()[:2]) for c in clients]
        wait_until_in_room(clients[0], clients[1:], names[1:])
        clients[0].sendall(b"hello from zero\n")
        expected = f"[{names[0]}] hello from zero\n".encode()
        for other in clients[1:]:
            assert read_until(other, expected).endswith(expected)
        clients[1].sendall(b"x" * (64 * 1024 + 1))  # over the line limit: only 1 is closed
        assert read_until(clients[1], b"\0") == b""  # EOF, nothing else
        clients[2].sendall(b"still here\n")
        expected = f"[{names[2]}] still here\n".encode()
        assert read_until(clients[0], expected).endswith(expected)
    finally:
        for client in clients:
            client.close()
    assert server.stop() == 0
    assert b"chat line longer than 65536 bytes" in server.read_stderr()


def test_documented_service_runs_under_sockkit_serve(
    serve: type[ServerProcess], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = code_blocks(page("services.md").read_text(), "python")
    (tmp_path / "mymod.py").write_text(next(b for b in blocks if "class Upper(Service)" in b))
    monkeypatch.chdir(tmp_path)  # the server runs where the user's module is
    server = serve(["mymod:Upper", "127.0.0.1:0"])
    with socket.create_connection(address(server.endpoints[0]), timeout=10) as sock:
        sock.sendall(b"hello\nworld\n")
        sock.shutdown(socket.SHUT_WR)
        assert read_until(sock, b"\0") == b"HELLO\nWORLD\n"
    assert server.stop() == 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sk_no_such_module:Upper", b"no module named 'sk_no_such_module'"),
        ("socket:socket", b"is not a subclass of sockkit.Service"),
        ("ech", b"unknown service 'ech'"),
    ],
)
def test_a_bad_service_is_a_one_line_usage_error(spec: str, message: bytes) -> None:
    result = run_cli(["serve", spec, "127.0.0.1:0"], timeout=20)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(b"sockkit: ")
    assert message in lines[0]


@pytest.mark.parametrize(("service", "size"), [("daytime", None), ("time", 4)])
def test_daytime_and_time_reach_clients_that_send_first(
    serve: type[ServerProcess], service: str, size: int | None
) -> None:
    # A close with the client's bytes unread would reset the connection and
    # could destroy the reply; the services half-close first so it arrives.
    server = serve([service, "127.0.0.1:0"])
    for _ in range(30):
        with socket.create_connection(address(server.endpoints[0]), timeout=10) as sock:
            sock.sendall(b"some bytes the service must throw away\n")
            reply = read_until(sock, b"\0")
        if size is None:
            assert reply.endswith(b"-UTC\r\n"), reply
        else:
            assert len(reply) == size, reply
    assert server.stop() == 0
