"""``sockkit serve`` as a user runs it: arguments, exit codes, signals, workers, real peers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from serverkit import (
    ServeProcess,
    children,
    cli_env,
    closed_by_peer,
    recv_exactly,
    recv_until_eof,
    run_sockkit,
    serve_process,
    sockkit_argv,
    wait_for,
)

from sockkit.cli.serve import split_targets

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        ([], ("echo", ["7007"])),
        (["9000"], ("echo", ["9000"])),
        (["chargen"], ("chargen", ["7007"])),
        (["daytime", "7013", "udp://7013"], ("daytime", ["7013", "udp://7013"])),
        (["tcp://[::1]:0", "unix:/tmp/x"], ("echo", ["tcp://[::1]:0", "unix:/tmp/x"])),
        (["mymod:Upper", "7100"], ("mymod:Upper", ["7100"])),
    ],
)
def test_first_word_is_a_service_unless_it_is_an_endpoint(
    targets: list[str], expected: tuple[str, list[str]]
) -> None:
    assert split_targets(targets) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--engine", "nope"], "unknown engine 'nope'"),
        (["nosuch"], "unknown service 'nosuch'"),
        (["--max-conns", "0"], "--max-conns"),
        (["--idle-timeout", "-1"], "--idle-timeout"),
        (["--mode", "999"], "--mode"),
        (["echo", "tcp://127.0.0.1:99999"], "port must be 0-65535"),
        (["chat", "udp://127.0.0.1:0"], "no datagram form"),
        (["chat", "--workers", "2"], "--workers"),
        (["chat", "--engine", "fork"], "own process"),
        (["echo", "tls://127.0.0.1:0"], "--tls-cert"),
        (["echo", "tls://127.0.0.1:0", "--tls-cert", "/nonexistent.pem"], "no such file"),
        (["--allow", "300.0.0.0/8"], "--allow/--deny"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args: list[str], message: str) -> None:
    result = run_sockkit(["serve", *args])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sockkit: "), lines
    assert message in lines[0]


def test_unusable_certificate_exits_1_with_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    result = run_sockkit(["serve", "tls://127.0.0.1:0", "--tls-cert", str(junk)])
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and "cannot load TLS certificate" in lines[0]


def test_address_in_use_exits_1_with_one_line() -> None:
    with serve_process(["tcp://127.0.0.1:0"]) as first:
        result = run_sockkit(["serve", first.endpoints[0]])
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and "address already in use" in lines[0], lines


def test_a_bare_port_serves_echo_on_loopback_and_sigint_exits_zero() -> None:
    with serve_process(["0"]) as server:
        assert server.endpoints[0].startswith("tcp://127.0.0.1:")
        with server.connect() as sock:
            sock.sendall(b"port only")
            assert recv_exactly(sock, 9) == b"port only"
        assert server.stop(signal.SIGINT) == 0


def test_limit_options_reach_the_engine() -> None:
    args = ["tcp://127.0.0.1:0", "--max-conns", "1", "--idle-timeout", "0.5", "--backlog", "8"]
    with serve_process(args) as server, server.connect() as first:
        first.sendall(b"1")
        assert recv_exactly(first, 1) == b"1"
        with server.connect() as second:
            assert closed_by_peer(second)
        started = time.monotonic()
        assert closed_by_peer(first, timeout=5)
        assert time.monotonic() - started >= 0.4
        assert server.stop() == 0
    log = server.rest_of_stderr()
    assert b": max-conns" in log
    assert b"reason=" in log.split(b"closed 127.0.0.1:")[-1]


def test_json_log_format_writes_objects(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        sockkit_argv("serve", "tcp://127.0.0.1:0", "--log-format", "json"),
        stderr=subprocess.PIPE,
        env=cli_env(),
    )
    try:
        assert proc.stderr is not None
        first = json.loads(proc.stderr.readline())
        assert first["message"].startswith("listening on tcp://127.0.0.1:")
        assert first["endpoint"] == first["message"].removeprefix("listening on ")
        port = int(first["endpoint"].rsplit(":", 1)[1])
        before = time.time()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"hello")
            assert sock.recv(5) == b"hello"
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(1) == b""
        opened = json.loads(proc.stderr.readline())
        closed = json.loads(proc.stderr.readline())
        assert opened["event"] == "opened" and opened["level"] == "info"
        assert opened["message"] == f"opened {opened['peer']} -> {first['endpoint']}"
        assert closed["event"] == "closed" and closed["peer"] == opened["peer"]
        assert (closed["bytes_in"], closed["bytes_out"], closed["reason"]) == (5, 5, None)
        assert closed["message"].startswith(f"closed {opened['peer']} in=5 out=5 duration=")
        assert before - 1 <= opened["time"] <= closed["time"] <= time.time()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        if proc.stderr is not None:
            proc.stderr.close()


def test_users_own_service_class(tmp_path: Path) -> None:
    (tmp_path / "shout.py").write_text(
        textwrap.dedent(
            """
            from sockkit import Service

            class Upper(Service):
                def received(self, data):
                    return data.upper()
            """
        )
    )
    proc = subprocess.Popen(
        sockkit_argv("serve", "shout:Upper", "tcp://127.0.0.1:0"),
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=cli_env(),
    )
    try:
        assert proc.stderr is not None
        endpoint = proc.stderr.readline().decode().split()[-1]
        port = int(endpoint.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"quiet")
            assert recv_exactly(sock, 5) == b"QUIET"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        if proc.stderr is not None:
            proc.stderr.close()


# -- real peers from outside ----------------------------------------------------------


@pytest.mark.skipif(shutil.which("socat") is None, reason="socat not installed")
def test_socat_round_trips_over_tcp_udp_and_unix(tmp_path: Path) -> None:
    path = tmp_path / "e.sock"
    with serve_process(["tcp://127.0.0.1:0", "udp://127.0.0.1:0", f"unix:{path}"], count=3) as srv:
        tcp_port = srv.endpoints[0].rsplit(":", 1)[1]
        udp_port = srv.endpoints[1].rsplit(":", 1)[1]
        for address, payload in (
            (f"TCP:127.0.0.1:{tcp_port}", b"over tcp\n"),
            (f"UNIX-CONNECT:{path}", b"over unix\n"),
        ):
            out = subprocess.run(
                ["socat", "-", address], input=payload, capture_output=True, timeout=10
            )
            assert out.stdout == payload
        out = subprocess.run(
            ["socat", "-t", "2", "-", f"UDP:127.0.0.1:{udp_port}"],
            input=b"over udp\n",
            capture_output=True,
            timeout=10,
        )
        assert out.stdout == b"over udp\n"


@pytest.mark.skipif(shutil.which("ncat") is None, reason="ncat not installed")
def test_ncat_send_only_to_discard() -> None:
    with serve_process(["discard", "tcp://127.0.0.1:0", "--log-level", "info"]) as srv:
        port = srv.endpoints[0].rsplit(":", 1)[1]
        out = subprocess.run(
            ["ncat", "--send-only", "127.0.0.1", port], input=b"z" * 100_000, timeout=10
        )
        assert out.returncode == 0
        assert srv.stop() == 0
        assert b"closed 127.0.0.1:" in srv.rest_of_stderr()
        assert b" in=100000 out=0 " in srv.rest_of_stderr()


# -- workers ------------------------------------------------------------------------


def _listening_lines(server: ServeProcess) -> list[bytes]:
    return [line for line in server.rest_of_stderr().splitlines() if b"listening on" in line]


def test_workers_share_one_port_and_are_replaced_and_reaped(tmp_path: Path) -> None:
    path = tmp_path / "w.sock"
    args = ["tcp://127.0.0.1:0", "udp://127.0.0.1:0", f"unix:{path}", "--workers", "3"]
    with serve_process(args, count=3) as server:
        workers = {pid for pid, _ in children(server.pid)}
        assert len(workers) == 3
        for index in (0, 2):
            for n in range(6):
                with server.connect(index) as sock:
                    sock.sendall(b"w%d" % n)
                    sock.shutdown(socket.SHUT_WR)
                    assert recv_until_eof(sock) == b"w%d" % n
        with server.connect(1) as dgram:
            for n in range(6):
                dgram.send(b"d%d" % n)
                assert dgram.recv(100) == b"d%d" % n
        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        assert wait_for(
            lambda: len(children(server.pid)) == 3 and victim not in dict(children(server.pid)),
            timeout=5,
        )
        with server.connect(0) as sock:
            sock.sendall(b"after")
            assert recv_exactly(sock, 5) == b"after"
        everyone = {pid for pid, _ in children(server.pid)}
        assert server.stop() == 0
    assert len(_listening_lines(server)) == 3
    assert not any(os.path.exists(f"/proc/{pid}") for pid in everyone)
    assert not path.exists()


def test_sigterm_reaches_every_worker_and_drains(tmp_path: Path) -> None:
    with serve_process(["tcp://127.0.0.1:0", "--workers", "2", "--drain-timeout", "1"]) as server:
        with server.connect() as sock:
            sock.sendall(b"x")
            assert recv_exactly(sock, 1) == b"x"
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            sock.sendall(b"y")
            assert recv_exactly(sock, 1) == b"y"
            assert recv_until_eof(sock) == b""
            assert time.monotonic() - started < 5
        assert server.proc.wait(10) == 0
