"""The relay command line: options that cannot apply are refused; serve's log vocabulary."""

from __future__ import annotations

import json
import re
import socket
import subprocess

import pytest
from tests.conftest import cli_env, run_cli, sockkit_argv
from tests.relay.conftest import Peer


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--latency", "-5"], "--latency must be 0 or more"),
        (["--jitter", "-1"], "--jitter must be 0 or more"),
        (["--bandwidth", "0"], "--bandwidth must be more than 0"),
        (["--slice", "0"], "--slice must be more than 0"),
        (["--reset-after", "0"], "--reset-after must be more than 0"),
        (["--drop", "10%"], "--drop loses datagrams and does not apply to a stream relay"),
        (["--toxic", "gremlins"], "unknown type 'gremlins'"),
        (["--toxic", "latency:latency=-3"], "latency.latency must be a finite number >= 0"),
    ],
)
def test_options_that_would_do_nothing_are_usage_errors(args: list[str], names: str) -> None:
    result = run_cli(["relay", "127.0.0.1:0", "127.0.0.1:9", *args])
    assert result.returncode == 2
    err = result.stderr.decode()
    assert err.startswith("sockkit: ") and names in err and err.count("\n") == 1


def test_stream_options_on_a_datagram_relay_are_usage_errors() -> None:
    result = run_cli(["relay", "udp://127.0.0.1:0", "udp://127.0.0.1:9", "--bandwidth", "1k"])
    assert result.returncode == 2
    assert "--bandwidth applies to streams, not to a datagram relay" in result.stderr.decode()


def _one_connection(args: list[str], peer: Peer) -> list[str]:
    proc = subprocess.Popen(
        sockkit_argv("relay", "127.0.0.1:0", peer.address, *args),
        stderr=subprocess.PIPE,
        env=cli_env(),
    )
    assert proc.stderr is not None
    lines = []
    try:
        while True:
            line = proc.stderr.readline().decode()
            assert line, "relay exited"
            lines.append(line)
            match = re.search(r"listening on tcp://127\.0\.0\.1:(\d+)", line)
            if match:
                break
        with socket.create_connection(("127.0.0.1", int(match.group(1))), timeout=10) as sock:
            sock.sendall(b"hello")
            sock.shutdown(socket.SHUT_WR)
            assert b"".join(iter(lambda: sock.recv(100), b"")) == b"hello"
        while "closed" not in lines[-1]:
            lines.append(proc.stderr.readline().decode())
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        lines.extend(line.decode() for line in proc.stderr.readlines())
        proc.stderr.close()
    return lines


def test_log_lines_use_serves_vocabulary(peer: Peer) -> None:
    lines = _one_connection(["--log-level", "debug"], peer)
    opened = [line for line in lines if line.startswith("opened ")]
    closed = [line for line in lines if line.startswith("closed ")]
    assert len(opened) == 1 and opened[0].startswith("opened 127.0.0.1:")
    assert len(closed) == 1
    assert re.fullmatch(r"closed 127\.0\.0\.1:\d+ in=5 out=5 duration=\d+\.\d{3}s\n", closed[0])
    assert not any("selector" in line.lower() for line in lines), lines


def test_log_format_json(peer: Peer) -> None:
    lines = _one_connection(["--log-format", "json"], peer)
    events = [json.loads(line) for line in lines]
    by_event = {e.get("event"): e for e in events}
    assert by_event["listening"]["local"].startswith("tcp://127.0.0.1:")
    assert by_event["opened"]["peer"].startswith("127.0.0.1:")
    closed = by_event["closed"]
    assert closed["bytes_in"] == 5 and closed["bytes_out"] == 5 and closed["duration"] >= 0
    assert closed["message"].startswith("closed 127.0.0.1:")


@pytest.mark.parametrize(
    "args",
    [
        ["--bandwidth", "nan"],
        ["--bandwidth", "inf"],
        ["--bandwidth", "NaN"],
        ["--bandwidth=-inf"],
        ["--bandwidth", "1e400"],
        ["--bandwidth", "1e308Gi"],
        ["--slice", "inf"],
        ["--reset-after", "nan"],
        ["--latency", "nan"],
        ["--latency", "inf"],
        ["--jitter=-inf"],
        ["--toxic", "latency:latency=nan"],
        ["--toxic", "bandwidth:rate=inf"],
    ],
)
def test_non_finite_numbers_are_usage_errors_not_crashes(args: list[str]) -> None:
    # float() reads nan and inf; parse_size then failed in int() with a traceback
    result = run_cli(["relay", "127.0.0.1:0", "127.0.0.1:9", *args], timeout=20)
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert err.startswith("sockkit: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_a_non_finite_drop_rate_is_a_usage_error() -> None:
    for rate in ("nan", "inf", "nan%"):
        result = run_cli(["relay", "udp://127.0.0.1:0", "udp://127.0.0.1:9", "--drop", rate])
        err = result.stderr.decode()
        assert result.returncode == 2 and err.startswith("sockkit: bad rate"), err
