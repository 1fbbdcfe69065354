"""Inherited sockets (fd:N, systemd:) and sd_notify, with the real systemd-socket-activate."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opskit import LISTENING, cli_env, free_port, need, run_cli, sockkit_argv

from sockkit._endpoint import Endpoint, open_listener, parse_endpoint
from sockkit._errors import EndpointError
from sockkit._inherit import expand_inherited, systemd_descriptors


class Child:
    """A process whose stderr is read line by line until it says ``listening on``."""

    def __init__(self, argv: list[str], **popen: object) -> None:
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            **popen,  # type: ignore[call-overload]
        )
        self.lines: list[bytes] = []

    def wait_listening(self, count: int = 1, timeout: float = 20) -> list[str]:
        found: list[str] = []
        deadline = time.monotonic() + timeout
        assert self.proc.stderr is not None
        while len(found) < count:
            assert time.monotonic() < deadline, self.lines
            line = self.proc.stderr.readline()
            assert line, (self.proc.wait(5), self.lines)
            self.lines.append(line)
            match = LISTENING.search(line)
            if match:
                found.append(match.group(1).decode())
        return found

    def wait_activator(self, count: int, timeout: float = 20) -> None:
        """Wait for systemd-socket-activate's ``Listening on ADDR as N.`` lines."""
        seen = 0
        deadline = time.monotonic() + timeout
        assert self.proc.stderr is not None
        while seen < count:
            assert time.monotonic() < deadline, self.lines
            line = self.proc.stderr.readline()
            assert line, (self.proc.wait(5), self.lines)
            self.lines.append(line)
            seen += line.startswith(b"Listening on ")

    def stop(self, timeout: float = 20) -> tuple[int, bytes]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
        assert self.proc.stderr is not None
        return code, b"".join(self.lines) + self.proc.stderr.read()


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        if child.proc.poll() is None:
            child.proc.kill()
            child.proc.wait(5)


def echo_once(address: tuple[str, int] | str, data: bytes = b"hello\n") -> bytes:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(15)
        sock.connect(address)
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def socket_activate(*listen: str, names: str = "", **env: str) -> list[str]:
    argv = [need("systemd-socket-activate")]
    for address in listen:
        argv += ["-l", address]
    if names:
        argv += [f"--fdname={names}"]
    for name, value in env.items():
        argv += ["-E", f"{name}={value}"]  # the activator passes NOTIFY_SOCKET on only so
    return argv


# -- the grammar ----------------------------------------------------------------


def test_fd_endpoint_reads_the_kind_from_the_socket() -> None:
    with (
        socket.create_server(("127.0.0.1", 0)) as tcp,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
    ):
        udp.bind(("127.0.0.1", 0))
        ep = parse_endpoint(f"fd:{tcp.fileno()}")
        assert (ep.transport, ep.host, ep.port, ep.fd) == (
            "tcp",
            "127.0.0.1",
            tcp.getsockname()[1],
            tcp.fileno(),
        )
        assert str(ep) == f"fd:{tcp.fileno()}" and parse_endpoint(str(ep)) == ep
        assert parse_endpoint(f"fd:{udp.fileno()}").transport == "udp"
        assert parse_endpoint(f"fd:{udp.fileno()}").is_datagram


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fd:abc", "expected fd:N with N a descriptor number"),
        ("fd:", "expected fd:N with N a descriptor number"),
        ("fd:987", "expected an open socket on descriptor 987"),
        ("systemd:", "LISTEN_FDS is not set"),
    ],
)
def test_bad_inherited_endpoints_are_usage_errors(
    text: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LISTEN_FDS", raising=False)
    with pytest.raises(EndpointError, match=expected):
        parse_endpoint(text)


def test_a_file_or_an_unlistening_socket_is_refused(tmp_path: Path) -> None:
    with open(tmp_path / "f", "w") as f, pytest.raises(EndpointError, match="expected a socket"):
        parse_endpoint(f"fd:{f.fileno()}")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        with pytest.raises(EndpointError, match="expected a listening socket"):
            parse_endpoint(f"fd:{sock.fileno()}")


def test_systemd_environment_is_checked() -> None:
    me = str(os.getpid())
    env = {"LISTEN_FDS": "2", "LISTEN_PID": me, "LISTEN_FDNAMES": "web:admin"}
    assert systemd_descriptors(None, env) == [3, 4]
    assert systemd_descriptors("admin", env) == [4]
    assert expand_inherited("systemd:", env) == ["fd:3", "fd:4"]
    assert expand_inherited("7007", env) == ["7007"]
    with pytest.raises(EndpointError, match=r"named 'db' in LISTEN_FDNAMES \(web, admin\)"):
        systemd_descriptors("db", env)
    with pytest.raises(EndpointError, match="LISTEN_PID is 1 but this process is"):
        systemd_descriptors(None, {**env, "LISTEN_PID": "1"})
    with pytest.raises(EndpointError, match="count of 1 or more"):
        systemd_descriptors(None, {**env, "LISTEN_FDS": "x"})


def test_adopting_sets_close_on_exec_and_keeps_the_socket_file(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    owner = socket.socket(socket.AF_UNIX)
    owner.bind(str(path))
    owner.listen()
    fd = os.dup(owner.fileno())
    os.set_inheritable(fd, True)
    ep = parse_endpoint(f"fd:{fd}")
    assert ep == Endpoint("unix", path=str(path), fd=fd)
    adopted = open_listener(ep)
    assert not os.get_inheritable(fd)
    adopted.close()
    assert path.exists()
    owner.close()


# -- through the command line -----------------------------------------------------


@pytest.mark.parametrize("command", ["serve", "relay", "listen"])
def test_cli_reports_bad_inherited_endpoints_in_one_line(command: str) -> None:
    extra = ["127.0.0.1:9"] if command == "relay" else []
    for text, expected in [
        ("fd:abc", b"expected fd:N"),
        ("systemd:", b"LISTEN_FDS is not set"),
    ]:
        result = run_cli([command, text, *extra])
        assert result.returncode == 2, result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(b"sockkit: ") and expected in lines[0]


def test_cli_refuses_a_pid_mismatch() -> None:
    env = cli_env(LISTEN_FDS="1", LISTEN_PID="1")
    result = subprocess.run(
        sockkit_argv("serve", "echo", "systemd:"), capture_output=True, env=env, timeout=30
    )
    assert result.returncode == 2
    assert b"LISTEN_PID is 1 but this process is" in result.stderr


@pytest.mark.parametrize("command", ["serve", "relay", "listen"])
def test_help_lists_the_inherited_endpoints(command: str) -> None:
    out = run_cli([command, "--help"]).stdout
    assert b"fd:" in out and b"systemd:" in out


def test_serve_on_an_inherited_fd_leaves_the_socket_to_its_owner(
    children: list[Child], tmp_path: Path
) -> None:
    tcp = socket.create_server(("127.0.0.1", 0))
    path = tmp_path / "u.sock"
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(path))
    unix.listen()
    fds = (tcp.fileno(), unix.fileno())
    child = Child(
        sockkit_argv("serve", "echo", f"fd:{fds[0]}", f"fd:{fds[1]}"),
        env=cli_env(),
        pass_fds=fds,
    )
    children.append(child)
    listening = child.wait_listening(2)
    port = tcp.getsockname()[1]
    assert listening == [f"tcp://127.0.0.1:{port}", f"unix:{path}"]
    assert echo_once(("127.0.0.1", port)) == b"hello\n"
    assert echo_once(str(path), b"x" * 100_000) == b"x" * 100_000
    code, _ = child.stop()
    assert code == 0
    # The socket file and both listening sockets are still ours and still work.
    assert path.exists()
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    conn, _ = tcp.accept()
    conn.close()
    tcp.close()
    unix.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_under_systemd_socket_activate(
    children: list[Child], tmp_path: Path, workers: int
) -> None:
    port = free_port()
    path = tmp_path / "activated.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(20)
    argv = socket_activate(
        f"127.0.0.1:{port}", str(path), names="web:admin", NOTIFY_SOCKET=str(tmp_path / "notify")
    )
    argv += sockkit_argv("serve", "echo", "systemd:", "--workers", str(workers))
    child = Child(argv, env=cli_env())
    children.append(child)
    child.wait_activator(2)
    # systemd-socket-activate starts sockkit on the first connection, which waits
    # in the listening socket's queue meanwhile: nothing is lost.
    payload = os.urandom(50_000)
    assert echo_once(("127.0.0.1", port), payload) == payload
    listening = child.wait_listening(2)
    assert listening == [f"tcp://127.0.0.1:{port}", f"unix:{path}"]
    ready = notify.recv(4096)
    assert ready.startswith(b"READY=1") and f"MAINPID={child.proc.pid}".encode() in ready
    for _ in range(20):
        assert echo_once(str(path)) == b"hello\n"
    code, _ = child.stop()
    assert code == 0
    assert notify.recv(4096) == b"STOPPING=1"
    assert path.exists()  # systemd's (here: the activator's) file, not ours to remove
    notify.close()


def test_serve_picks_sockets_by_name(children: list[Child], tmp_path: Path) -> None:
    port, other = free_port(), free_port()
    argv = socket_activate(f"127.0.0.1:{port}", f"127.0.0.1:{other}", names="web:admin")
    argv += sockkit_argv("serve", "daytime", "systemd:admin")
    child = Child(argv, env=cli_env())
    children.append(child)
    child.wait_activator(2)
    assert echo_once(("127.0.0.1", other), b"").endswith(b"\r\n")
    assert child.wait_listening(1) == [f"tcp://127.0.0.1:{other}"]
    code, _ = child.stop()
    assert code == 0


def test_relay_and_listen_accept_on_systemd_sockets(children: list[Child]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as backend:
        backend_port = backend.getsockname()[1]
        port = free_port()
        argv = socket_activate(f"127.0.0.1:{port}")
        argv += sockkit_argv("relay", "systemd:", f"127.0.0.1:{backend_port}")
        relay = Child(argv, env=cli_env())
        children.append(relay)
        relay.wait_activator(1)
        with socket.create_connection(("127.0.0.1", port), timeout=15) as client:
            client.sendall(b"through the relay")
            backend.settimeout(15)
            conn, _ = backend.accept()
            with conn:
                conn.settimeout(15)
                assert conn.recv(100) == b"through the relay"
        assert relay.wait_listening(1) == [f"tcp://127.0.0.1:{port}"]
        assert relay.stop()[0] == 0

    port = free_port()
    argv = socket_activate(f"127.0.0.1:{port}") + sockkit_argv("listen", "systemd:")
    listener = Child(argv, env=cli_env())
    children.append(listener)
    listener.wait_activator(1)
    with socket.create_connection(("127.0.0.1", port), timeout=15) as client:
        client.sendall(b"to stdout\n")
        client.shutdown(socket.SHUT_WR)
        assert listener.proc.stdout is not None
        assert listener.proc.stdout.readline() == b"to stdout\n"
    assert listener.proc.wait(20) == 0


def test_no_notify_socket_means_no_notification_attempt() -> None:
    from sockkit._sd_notify import notify

    assert notify("READY=1", {}) is False
    assert notify("READY=1", {"NOTIFY_SOCKET": "relative/path"}) is False


def test_notify_reaches_an_abstract_socket() -> None:
    from sockkit._sd_notify import notify

    name = f"sockkit-notify-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\x00" + name.encode())
        sock.settimeout(5)
        assert notify("STOPPING=1", {"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(100) == b"STOPPING=1"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))


def test_relay_says_stopping_when_its_drain_begins(children: list[Child], tmp_path: Path) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(20)
    env = {**cli_env(), "NOTIFY_SOCKET": str(tmp_path / "notify")}
    with socket.create_server(("127.0.0.1", 0)) as backend:
        target = f"127.0.0.1:{backend.getsockname()[1]}"
        argv = sockkit_argv("relay", "127.0.0.1:0", target, "--drain-timeout", "30")
        relay = Child(argv, env=env)
        children.append(relay)
        port = int(relay.wait_listening(1)[0].rsplit(":", 1)[1])
        assert notify.recv(4096).startswith(b"READY=1")
        with socket.create_connection(("127.0.0.1", port), timeout=15) as client:
            backend.settimeout(15)
            conn, _ = backend.accept()
            with conn:
                relay.proc.send_signal(signal.SIGTERM)
                # The drain has begun while this connection is still open: STOPPING=1
                # reaches the manager now, not when the relay exits.
                assert notify.recv(4096) == b"STOPPING=1"
                assert relay.proc.poll() is None
                client.sendall(b"still relayed")
                conn.settimeout(15)
                assert conn.recv(100) == b"still relayed"
        assert relay.proc.wait(20) == 0
    notify.close()
