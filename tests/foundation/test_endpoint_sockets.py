"""open_listener / open_connection over real sockets, and the errors people see."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import SRC

from sockkit import (
    AddressInUseError,
    ConnectError,
    Endpoint,
    SockkitError,
    open_connection,
    open_listener,
    parse_endpoint,
)
from sockkit._endpoint import format_sockaddr, sockaddr_endpoint
from sockkit._errors import TimeoutError as SockkitTimeout
from sockkit._errors import translate_os_error


@pytest.fixture
def umask_000() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _echo_once(listener: socket.socket) -> None:
    conn, _ = listener.accept()
    with conn:
        conn.sendall(conn.recv(100))


@pytest.mark.parametrize("text", ["tcp://127.0.0.1:0", "tcp://[::1]:0", "0", ":0"])
def test_listener_and_connection_talk_over_tcp(text: str) -> None:
    with open_listener(parse_endpoint(text)) as listener:
        bound = sockaddr_endpoint(listener)
        assert bound.port != 0
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
        host = "::1" if bound.host == "::1" else "127.0.0.1"
        with open_connection(Endpoint("tcp", host, bound.port), timeout=5) as conn:
            assert conn.gettimeout() is None
            server, _ = listener.accept()
            with server:
                conn.sendall(b"ping")
                assert server.recv(10) == b"ping"


def test_wildcard_listener_is_dual_stack() -> None:
    with open_listener(parse_endpoint(":0")) as listener:
        assert listener.family == socket.AF_INET6
        assert listener.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
        port = listener.getsockname()[1]
        for host in ("127.0.0.1", "::1"):
            with open_connection(Endpoint("tcp", host, port), timeout=5):
                peer, addr = listener.accept()
                peer.close()
                assert format_sockaddr(socket.AF_INET6, addr).startswith(
                    "127.0.0.1:" if host == "127.0.0.1" else "[::1]:"
                )


def test_backlog_defaults_to_somaxconn_and_reuse_port_is_optional() -> None:
    with open_listener(parse_endpoint("0"), reuse_port=True) as listener:
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        port = listener.getsockname()[1]
        with open_listener(parse_endpoint(f"{port}"), reuse_port=True) as second:
            assert second.getsockname()[1] == port


def test_unix_socket_file_is_0600_even_with_umask_000(tmp_path: Path, umask_000: None) -> None:
    path = tmp_path / "s.sock"
    with open_listener(parse_endpoint(f"unix:{path}")) as listener:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert [p.name for p in tmp_path.iterdir()] == ["s.sock"]  # no temporary name left
        with open_connection(parse_endpoint(f"unix:{path}"), timeout=5) as conn:
            server, _ = listener.accept()
            with server:
                conn.sendall(b"hi")
                assert server.recv(10) == b"hi"


def test_unix_mode_option(tmp_path: Path, umask_000: None) -> None:
    path = tmp_path / "g.sock"
    with open_listener(parse_endpoint(f"unix:{path}"), mode=0o660):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660


def test_stale_unix_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    old = socket.socket(socket.AF_UNIX)
    old.bind(str(path))
    old.close()  # the file stays, nobody listens: stale
    assert path.exists()
    with open_listener(parse_endpoint(f"unix:{path}")) as listener:
        assert listener.getsockname() == str(path)


def test_live_unix_socket_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "live.sock"
    with open_listener(parse_endpoint(f"unix:{path}")):
        with pytest.raises(AddressInUseError) as info:
            open_listener(parse_endpoint(f"unix:{path}"))
        assert "already in use" in str(info.value)
        assert path.exists()


def test_regular_file_is_never_deleted(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("precious")
    with pytest.raises(SockkitError) as info:
        open_listener(parse_endpoint(f"unix:{path}"))
    assert "is not a socket" in str(info.value)
    assert path.read_text() == "precious"


def test_abstract_unix_socket(tmp_path: Path) -> None:
    name = f"@sockkit-test-{os.getpid()}"
    with open_listener(parse_endpoint(f"unix:{name}")) as listener:
        assert sockaddr_endpoint(listener) == Endpoint("unix", path=name)
        with open_connection(parse_endpoint(f"unix:{name}"), timeout=5):
            listener.accept()[0].close()


def test_unixgram_client_can_receive_replies(tmp_path: Path) -> None:
    path = tmp_path / "d.sock"
    with open_listener(parse_endpoint(f"unixgram:{path}")) as server:
        with open_connection(parse_endpoint(f"unixgram:{path}"), timeout=5) as client:
            client.send(b"ping")
            data, addr = server.recvfrom(100)
            server.sendto(data.upper(), addr)
            assert client.recv(100) == b"PING"


def test_udp_listener_and_connected_client() -> None:
    with open_listener(parse_endpoint("udp://127.0.0.1:0")) as server:
        port = server.getsockname()[1]
        with open_connection(parse_endpoint(f"udp://127.0.0.1:{port}")) as client:
            client.send(b"x")
            data, addr = server.recvfrom(10)
            server.sendto(data, addr)
            assert client.recv(10) == b"x"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_refused_names_the_address() -> None:
    port = _free_port()
    with pytest.raises(ConnectError) as info:
        open_connection(parse_endpoint(f"127.0.0.1:{port}"), timeout=5)
    assert str(info.value) == f"connection refused: nothing is listening at 127.0.0.1:{port}"
    assert info.value.exit_status == 1


def test_every_resolved_address_is_tried() -> None:
    # "localhost" may resolve to ::1 first; listen on IPv4 only and expect success anyway.
    tried: list[str] = []
    with open_listener(parse_endpoint("tcp://127.0.0.1:0")) as listener:
        port = listener.getsockname()[1]
        with open_connection(
            parse_endpoint(f"localhost:{port}"), timeout=5, on_attempt=tried.append
        ):
            pass
    assert tried[-1] == f"127.0.0.1:{port}"


def test_address_in_use() -> None:
    with open_listener(parse_endpoint("0")) as listener:
        port = listener.getsockname()[1]
        with pytest.raises(AddressInUseError) as info:
            open_listener(parse_endpoint(f"{port}"))
    assert str(info.value) == f"address already in use: 127.0.0.1:{port}"


def test_connect_timeout_when_backlog_is_full() -> None:
    # A listener that never accepts, with its (tiny) backlog filled: the SYN goes unanswered.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            with pytest.raises(SockkitTimeout) as info:
                for _ in range(20):
                    fillers.append(open_connection(parse_endpoint(f"{port}"), timeout=0.5))
            assert f"127.0.0.1:{port}" in str(info.value)
        finally:
            for s in fillers:
                s.close()


def test_source_address_is_bound() -> None:
    with open_listener(parse_endpoint("tcp://127.0.0.1:0")) as listener:
        port = listener.getsockname()[1]
        with open_connection(parse_endpoint(f"{port}"), timeout=5, source="127.0.0.2") as conn:
            assert conn.getsockname()[0] == "127.0.0.2"
            listener.accept()[0].close()


PRIVILEGED = (
    "permission denied binding 127.0.0.1:80: ports below 1024 need root or CAP_NET_BIND_SERVICE"
)


def test_privileged_port_message_from_errno() -> None:
    exc = translate_os_error(
        PermissionError(errno.EACCES, "Permission denied"), "bind", "127.0.0.1:80"
    )
    assert str(exc) == PRIVILEGED


@pytest.mark.skipif(os.geteuid() == 0, reason="root may bind ports below 1024")
def test_privileged_port_message_for_real() -> None:
    with pytest.raises(SockkitError) as info:
        open_listener(parse_endpoint("tcp://127.0.0.1:80"))
    assert str(info.value) == PRIVILEGED


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare")
def test_unreachable_network_message() -> None:
    # In a fresh network namespace even loopback is down: a real ENETUNREACH, no packet sent.
    code = textwrap.dedent(
        """
        from sockkit import open_connection, parse_endpoint, SockkitError
        try:
            open_connection(parse_endpoint("127.0.0.1:7"), timeout=2)
        except SockkitError as exc:
            print(exc)
        """
    )
    result = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
        timeout=30,
    )
    if result.returncode != 0 and "Operation not permitted" in result.stderr:
        pytest.skip("unshare not permitted here")
    assert result.stdout.strip() == "network unreachable: cannot reach 127.0.0.1:7"
