"""``sockkit ss`` as a real process: table, JSON, -p, exit codes and --watch."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from tests.conftest import cli_env, run_cli, sockkit_argv
from tests.inspect.sockzoo import SocketZoo, time_wait_table_full

from sockkit.cli import main
from sockkit.inspect._owners import process_name

needs_ss = pytest.mark.skipif(shutil.which("ss") is None, reason="needs iproute2 ss")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SocketZoo]:
    sockets = SocketZoo(tmp_path_factory.mktemp("cli-zoo"))
    yield sockets
    sockets.close()


def rows(text: str, ports: set[int]) -> set[tuple[str, ...]]:
    found = set()
    for line in text.splitlines():
        fields = tuple(line.split())
        ends = [f.rpartition(":")[2] for f in fields[3:5]]
        if any(e.isdigit() and int(e) in ports for e in ends):
            found.add(fields[:5])
    return found


@needs_ss
def test_table_rows_match_ss(zoo: SocketZoo) -> None:
    ports = {zoo.tcp_port, zoo.tcp6_port}
    ours = run_cli(["ss", "-tanH"])
    assert ours.returncode == 0, ours.stderr
    theirs = subprocess.run(["ss", "-tanH"], capture_output=True, text=True, check=True).stdout
    assert rows(ours.stdout.decode(), ports) == rows(theirs, ports)
    assert len(rows(theirs, ports)) >= 8


def test_unix_table_with_and_without_numeric(zoo: SocketZoo) -> None:
    for flags in ("-xa", "-xan"):
        result = run_cli(["ss", flags, "-H"])
        assert result.returncode == 0, result.stderr
        lines = [line.split() for line in result.stdout.decode().splitlines()]
        ours = [f for f in lines if f[4] == zoo.unix_path and f[1] == "LISTEN"]
        assert len(ours) == 1 and ours[0][0] == "u_str"


def test_header_and_columns(zoo: SocketZoo) -> None:
    out = run_cli(["ss", "-tln", "--port", str(zoo.tcp_port)]).stdout.decode().splitlines()
    assert out[0].split() == [
        "State",
        "Recv-Q",
        "Send-Q",
        "Local",
        "Address:Port",
        "Peer",
        "Address:Port",
        "Process",
    ]
    assert out[1].split() == ["LISTEN", "1", "8", f"127.0.0.1:{zoo.tcp_port}", "0.0.0.0:*"]
    assert len(out) == 2
    mixed = run_cli(["ss", "-a", "--port", str(zoo.tcp_port)]).stdout.decode().splitlines()
    assert mixed[0].startswith("Netid State")


def test_processes_column_finds_this_test_process(zoo: SocketZoo) -> None:
    out = run_cli(["ss", "-tlnp", "--sport", str(zoo.tcp_port)]).stdout.decode()
    name, pid, fd = process_name(os.getpid()), os.getpid(), zoo.listener.fileno()
    assert f'("{name}",pid={pid},fd={fd})' in out


def test_json_is_a_list_of_socket_objects(zoo: SocketZoo) -> None:
    result = run_cli(["ss", "-tanp", "--json", "--port", str(zoo.tcp_port)])
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert isinstance(data, list) and len(data) >= 6
    assert all(zoo.tcp_port in (d["local_port"], d["peer_port"]) for d in data)
    [listener] = [d for d in data if d["state"] == "LISTEN"]
    assert (listener["recv_q"], listener["send_q"], listener["local"]) == (
        1,
        8,
        f"127.0.0.1:{zoo.tcp_port}",
    )
    assert {"name": process_name(os.getpid()), "pid": os.getpid(), "fd": zoo.listener.fileno()} in (
        listener["processes"]
    )
    assert set(listener) >= {"netid", "family", "inode", "uid", "v6only", "tcp_info", "peer"}


def test_info_flag_adds_tcp_internals(zoo: SocketZoo) -> None:
    port = zoo.established.getsockname()[1]
    ends = ["--sport", str(port), "--dport", str(zoo.tcp_port)]
    out = run_cli(["ss", "-tni", *ends]).stdout.decode().splitlines()
    assert len(out) == 3 and out[2].startswith("\t")
    assert "bytes_received:5" in out[2] and "cwnd:" in out[2] and "rtt:" in out[2]
    data = json.loads(run_cli(["ss", "-ti", "--json", *ends]).stdout)
    assert data[0]["tcp_info"]["bytes_received"] == 5


@pytest.mark.parametrize(
    "args",
    [
        ["ss", "--state", "bogus"],
        ["ss", "--port", "notaport"],
        ["ss", "--count", "3"],
        ["ss", "--watch", "-1"],
        ["ss", "--source", "carrier-pigeon"],
    ],
)
def test_usage_errors_exit_2_with_one_line(args: list[str]) -> None:
    result = run_cli(args)
    assert result.returncode == 2
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sockkit: ")
    assert result.stdout == b""


def test_bad_source_variable_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOCKKIT_SS_SOURCE", "nowhere")
    assert main(["ss", "-t"]) == 2


def test_main_runs_in_process(capsys: pytest.CaptureFixture[str], zoo: SocketZoo) -> None:
    assert main(["ss", "-uln", "--sport", str(zoo.udp_port), "-H"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.split()[:1] == ["UNCONN"] and f"127.0.0.1:{zoo.udp_port}" in line


def test_watch_shows_connect_half_close_and_close_in_order() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    watch = subprocess.Popen(
        sockkit_argv("ss", "--watch", "0.05", "--port", str(port), "--duration", "4"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(),
    )
    try:
        assert watch.stderr is not None
        assert b"watching" in watch.stderr.readline()  # the baseline is taken
        client = socket.create_connection(("127.0.0.1", port))
        client_port = client.getsockname()[1]
        time.sleep(0.4)
        server, _ = listener.accept()
        client.shutdown(socket.SHUT_WR)  # client FIN-WAIT-2, server CLOSE-WAIT
        time.sleep(0.4)
        server.close()  # server gone, client TIME-WAIT
        time.sleep(0.4)
        client.close()
        out, err = watch.communicate(timeout=15)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
        listener.close()
    assert watch.returncode == 0, err
    lines = out.decode().splitlines()
    client_end = f"127.0.0.1:{client_port} → 127.0.0.1:{port}"
    server_end = f"127.0.0.1:{port} → 127.0.0.1:{client_port}"
    client_events = [line for line in lines if client_end in line]
    server_events = [line for line in lines if server_end in line]
    # A transient state (FIN-WAIT-1, LAST-ACK) shows up only if a listing
    # happens to fall inside it; the required path is fixed.
    assert client_events[0] == f"+ tcp {client_end} ESTAB"
    expected = ["ESTAB", "FIN-WAIT-2", "TIME-WAIT"]
    if client_events[-1].startswith("- ") and time_wait_table_full():
        expected.pop()  # no TIME-WAIT bucket left on this machine: the kernel closed it outright
    assert state_path(client_events) == expected, lines
    assert state_path(server_events)[:2] == ["ESTAB", "CLOSE-WAIT"], lines
    assert server_events[-1].startswith(f"- tcp {server_end} ")
    closed = lines.index(server_events[-1])
    assert lines.index(client_events[-1]) <= closed + 1  # TIME-WAIT comes with the close
    assert all(lines.index(line) < closed for line in client_events[:-1])


def state_path(events: list[str]) -> list[str]:
    """The states one socket went through, checking each change starts where the last ended."""
    path: list[str] = []
    for line in events:
        mark, *_, state = line.split()
        if mark == "+":
            assert not path, events
            path.append(state)
        elif mark == "~":
            old = line.split()[-3]
            assert old == path[-1], events
            path.append(state)
    return [state for state in path if state not in ("FIN-WAIT-1", "LAST-ACK")]


def test_watch_json_lines_and_count_stop_early() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    watch = subprocess.Popen(
        sockkit_argv(
            "ss",
            "--watch",
            "0.05",
            "--sport",
            str(port),
            "--json",
            "--count",
            "1",
            "--duration",
            "20",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(),
    )
    started = time.monotonic()
    try:
        assert watch.stderr is not None
        watch.stderr.readline()
        client = socket.create_connection(("127.0.0.1", port))
        out, _ = watch.communicate(timeout=15)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
        listener.close()
    client_port = client.getsockname()[1]
    client.close()
    assert watch.returncode == 0
    assert time.monotonic() - started < 15  # --count ended it, not --duration
    [line] = out.decode().splitlines()
    event = json.loads(line)
    assert (event["event"], event["state"], event["old_state"]) == ("appeared", "ESTAB", None)
    # --sport keeps the server side only: the connection waiting to be accepted
    assert (event["socket"]["local_port"], event["socket"]["peer_port"]) == (port, client_port)


def test_watch_exits_0_on_ctrl_c() -> None:
    watch = subprocess.Popen(
        sockkit_argv("ss", "--watch", "0.05", "--port", "9", "--duration", "30"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(),
    )
    try:
        assert watch.stderr is not None
        assert b"watching" in watch.stderr.readline()
        watch.send_signal(signal.SIGINT)
        assert watch.wait(timeout=10) == 0
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
