"""The fork engine's fork server: a lean process that the connection children are forked from.

Checked on the real command: the process tree (serve -> fork server -> one
child per connection), what the fork server has loaded, its replacement when
it dies, its end when the serving process dies, and the stop relayed to it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from serverkit import (
    ServeProcess,
    children,
    cli_env,
    fork_servers,
    recv_exactly,
    recv_until_eof,
    serve_process,
    served_by,
    wait_for,
)

pytestmark = pytest.mark.timeout(60)

ECHO = ["echo", "tcp://127.0.0.1:0", "--engine", "fork"]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def _ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"


def _one_fork_server(server: ServeProcess) -> int:
    assert wait_for(lambda: len(fork_servers(server.pid)) == 1), children(server.pid)
    return fork_servers(server.pid)[0]


def _echo(sock: socket.socket, data: bytes) -> None:
    sock.sendall(data)
    assert recv_exactly(sock, len(data)) == data


_LOADED = """
import sys
import sockkit.engines._zygote, sockkit.services._classic
print(len(sys.modules), " ".join(sorted(sys.modules)))
"""
_LOADED_BY_SERVE = """
import sys
import sockkit.cli, sockkit.cli.serve, sockkit.server, sockkit.engines._fork
print(len(sys.modules), " ".join(sorted(sys.modules)))
"""


def _modules(probe: str) -> tuple[int, set[str]]:
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=cli_env()
    ).stdout.split()
    return int(out[0]), set(out[1:])


def test_fork_server_loads_fewer_modules_than_the_serving_process() -> None:
    count, loaded = _modules(_LOADED)
    serve_count, _ = _modules(_LOADED_BY_SERVE)
    assert count < serve_count
    assert loaded & {"ssl", "_ssl", "argparse", "json", "sockkit.server", "sockkit.cli"} == set()


def test_children_are_forked_from_a_smaller_fork_server() -> None:
    with serve_process(ECHO) as server:
        fork_server = _one_fork_server(server)
        assert _ppid(fork_server) == server.pid
        with server.connect() as a, server.connect() as b:
            _echo(a, b"one")
            _echo(b, b"two")
            served = [pid for pid, _ in served_by(server.pid)]
            assert len(served) == 2
            assert {_ppid(pid) for pid in served} == {fork_server}
        # The fork server holds only the child's path: measurably less than serve.
        assert _rss_kib(fork_server) < _rss_kib(server.pid) - 1024
        assert server.stop() == 0
    assert not _alive(fork_server)


def test_log_lines_from_the_fork_server_are_serves_json() -> None:
    args = [*ECHO, "--log-format", "json", "--max-conns", "1"]
    with serve_process(args) as server:
        with server.connect() as first:
            _echo(first, b"hello")
            with server.connect() as second:  # past --max-conns: refused by the fork server
                assert recv_until_eof(second) == b""
        assert server.stop() == 0
    events = [json.loads(line) for line in server.rest_of_stderr().splitlines()]
    kinds = [(e["event"], e["level"]) for e in events]
    assert ("opened", "info") in kinds
    assert ("closed", "info") in kinds
    assert ("refused", "warning") in kinds
    closed = next(e for e in events if e["event"] == "closed")
    assert closed["bytes_in"] == closed["bytes_out"] == 5
    assert set(closed) == {
        "time", "level", "message", "event", "peer", "bytes_in", "bytes_out", "duration", "reason"
    }  # fmt: skip
    refused = next(e for e in events if e["event"] == "refused")
    assert refused["reason"] == "max-conns"


def test_log_level_warning_keeps_connection_lines_out() -> None:
    with serve_process([*ECHO, "--log-level", "warning"]) as server:
        with server.connect() as sock:
            _echo(sock, b"x")
        assert server.stop() == 0
    text = server.rest_of_stderr().decode()
    assert "opened" not in text and "closed" not in text


def test_killed_fork_server_is_replaced_and_its_orphans_ended_at_the_stop() -> None:
    with serve_process([*ECHO, "--drain-timeout", "2"]) as server:
        first = _one_fork_server(server)
        old = server.connect()
        _echo(old, b"before")
        orphan = served_by(server.pid)[0][0]
        os.kill(first, signal.SIGKILL)
        assert wait_for(lambda: fork_servers(server.pid) not in ([], [first]), timeout=10)
        second = fork_servers(server.pid)[0]
        with server.connect() as new:
            _echo(new, b"served by the new one")
        _echo(old, b"the orphan still serves")  # its child outlived it
        assert server.stop() == 0
        assert recv_until_eof(old) == b""  # ended at the stop, not left behind
        old.close()
    assert not _alive(orphan)
    assert not _alive(second)
    assert b"fork server (pid %d) ended" % first in server.rest_of_stderr()


def test_fork_server_stops_when_the_serving_process_dies() -> None:
    with serve_process(ECHO) as server:
        fork_server = _one_fork_server(server)
        port = int(server.endpoints[0].rsplit(":", 1)[1])
        server.proc.kill()
        server.proc.wait(5)
        assert wait_for(lambda: not _alive(fork_server), timeout=10)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_fork_server_that_cannot_start_is_one_error_line() -> None:
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("launch_sockkit.py")), "serve",
         "fork_server_services:Echo", "tcp://127.0.0.1:0", "--engine", "fork"],
        stderr=subprocess.PIPE, env={**cli_env(), "SOCKKIT_TEST_BREAK_FORK_SERVER": "1"},
    )  # fmt: skip
    try:
        _, err = server.communicate(timeout=30)
    finally:
        if server.poll() is None:  # it served on: the fork server did not fail
            server.kill()
            server.wait(5)
    assert server.returncode == 1
    lines = err.decode().splitlines()
    assert lines[0].startswith("listening on ")
    assert lines[1:] == [
        "sockkit: the fork server cannot start: refusing to load outside the serving process"
    ]


def test_second_sigterm_ends_the_drain_now() -> None:
    with serve_process([*ECHO, "--drain-timeout", "30"]) as server:
        with server.connect() as sock:
            _echo(sock, b"x")
            fork_server = _one_fork_server(server)
            child = served_by(server.pid)[0][0]
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            assert _alive(child)  # draining: the connection is still served
            _echo(sock, b"still")
            started = time.monotonic()
            assert server.stop() == 0
            assert time.monotonic() - started < 5
            assert recv_until_eof(sock) == b""
    assert not _alive(child) and not _alive(fork_server)
    assert b"reason=server stopping" in server.rest_of_stderr()


def test_fork_server_off_forks_from_the_serving_process() -> None:
    with serve_process(ECHO, env={"SOCKKIT_FORK_SERVER": "off"}) as server:
        with server.connect() as sock:
            _echo(sock, b"x")
            assert fork_servers(server.pid) == []
            assert [_ppid(pid) for pid, _ in served_by(server.pid)] == [server.pid]
        assert server.stop() == 0
