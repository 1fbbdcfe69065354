"""The load generator verifies every byte: broken servers give errors, never throughput."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import pytest
from bench_servers import Behaviour, corrupting, delayed, echo, resetting, short
from tests.conftest import run_cli

from sockkit import UsageError, parse_endpoint
from sockkit.bench import BenchResult, run_bench

QUICK = {"duration": 0.4, "warmup": 0.1}


def bench(target: str, **kwargs: object) -> BenchResult:
    return run_bench(parse_endpoint(target), **{**QUICK, **kwargs})  # type: ignore[arg-type]


def test_a_correct_echo_server_verifies_with_no_errors(
    tcp_server: Callable[[Behaviour], str],
) -> None:
    result = bench(tcp_server(echo), conns=4, depth=4, size=100)
    assert result.ok and result.errors == 0
    assert result.established == 4
    assert result.requests > 50
    assert result.msgs_per_s == pytest.approx(result.requests / result.duration_s, rel=0.01)
    assert result.p50_us is not None and result.p99_us is not None and result.max_us is not None
    assert 0 < result.p50_us <= result.p99_us <= result.max_us
    assert result.mb_per_s == pytest.approx(result.msgs_per_s * 100 / 1e6, rel=0.01)


def test_a_corrupting_server_yields_errors(tcp_server: Callable[[Behaviour], str]) -> None:
    result = bench(tcp_server(corrupting(every=5)), conns=2, depth=2, size=64)
    assert result.errors > 0
    assert not result.ok
    assert "did not match" in result.first_error


def test_a_resetting_server_yields_errors_and_connection_failures(
    tcp_server: Callable[[Behaviour], str],
) -> None:
    result = bench(tcp_server(resetting(after=640)), conns=3, depth=1, size=64)
    assert result.conn_failures == 3
    assert result.errors >= 3


def test_short_replies_are_errors(tcp_server: Callable[[Behaviour], str]) -> None:
    result = bench(tcp_server(short), conns=2, duration=1.2, warmup=0)
    assert result.errors == 2
    assert result.requests == 0
    assert "short reply" in result.first_error


@pytest.mark.parametrize("behaviour", [corrupting(every=3), resetting(after=200)])
def test_the_command_exits_1_for_a_broken_server(
    tcp_server: Callable[[Behaviour], str], behaviour: Behaviour
) -> None:
    target = tcp_server(behaviour)
    done = run_cli(
        ["bench", target, "--duration", "0.4", "--warmup", "0", "--conns", "2", "--json"]
    )
    assert done.returncode == 1, done.stderr
    data = json.loads(done.stdout)
    assert data["errors"] > 0


def test_the_command_prints_a_report_and_exits_0(tcp_server: Callable[[Behaviour], str]) -> None:
    done = run_cli(
        ["bench", tcp_server(echo), "--duration", "0.4", "--warmup", "0.1", "--conns", "2"]
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout.decode()
    assert "msg/s" in text and "p99" in text and "errors       0" in text


def test_connect_mode_counts_verified_connections(tcp_server: Callable[[Behaviour], str]) -> None:
    result = bench(tcp_server(echo), mode="connect", conns=2, src_ips=4)
    assert result.ok
    assert result.requests > 10
    assert result.p50_us is not None


def test_idle_mode_holds_verified_connections(tcp_server: Callable[[Behaviour], str]) -> None:
    phases: list[str] = []
    result = bench(tcp_server(echo), mode="idle", conns=40, duration=0.3, on_phase=phases.append)
    assert result.ok
    assert result.established == 40 and result.requests == 40
    assert phases == ["ready", "measure", "done"]


def test_stream_mode_measures_bulk_throughput(unix_server: str) -> None:
    result = bench(unix_server, mode="stream", conns=1, depth=4, size=65536)
    assert result.ok
    assert result.mb_per_s > 1
    assert result.p50_us is None


def test_udp_rr_verifies_datagrams(udp_server: str) -> None:
    result = bench(udp_server, conns=2, depth=2, size=32)
    assert result.ok
    assert result.requests > 20
    assert result.lost == 0


def test_processes_split_the_connections_and_merge(tcp_server: Callable[[Behaviour], str]) -> None:
    before = set(os.listdir("/proc"))
    phases: list[str] = []
    result = bench(tcp_server(echo), conns=4, processes=2, on_phase=phases.append)
    assert result.ok and result.processes == 2
    assert result.established == 4
    assert result.requests > 20
    assert phases == ["measure", "done"]
    # every generator child was reaped
    leftovers = {p for p in set(os.listdir("/proc")) - before if p.isdigit()}
    assert all(not os.path.exists(f"/proc/{p}/stat") or _ppid(p) != os.getpid() for p in leftovers)


def _ppid(pid: str) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_a_slow_server_is_measured_as_slow(tcp_server: Callable[[Behaviour], str]) -> None:
    result = bench(tcp_server(delayed(0.01)), conns=1, duration=0.5)
    assert result.p50_us is not None and result.p50_us >= 10_000
    assert result.msgs_per_s < 110


@pytest.mark.parametrize("target", ["tcp://10.0.0.1:7", "tcp://8.8.8.8:53", "tls://127.0.0.1:7"])
def test_non_loopback_targets_are_refused(target: str) -> None:
    with pytest.raises(UsageError):
        bench(target)
    done = run_cli(["bench", target, "--duration", "0.1"])
    assert done.returncode == 2
    assert done.stderr.startswith(b"sockkit: ")


def test_nothing_listening_is_a_failure_not_a_result() -> None:
    done = run_cli(["bench", "127.0.0.1:1", "--duration", "0.2", "--warmup", "0", "--json"])
    assert done.returncode == 1
    assert json.loads(done.stdout)["conn_failures"] == 50


def test_nothing_listening_is_one_clear_line_for_a_person() -> None:
    done = run_cli(["bench", "127.0.0.1:1", "--duration", "0.2", "--warmup", "0"])
    assert done.returncode == 1
    assert done.stdout == b""
    assert done.stderr == b"sockkit: connection refused: nothing is listening at 127.0.0.1:1\n"


def test_bad_options_are_usage_errors_even_when_nothing_listens() -> None:
    done = run_cli(["bench", "127.0.0.1:1", "--conns", "0"])
    assert done.returncode == 2
    assert done.stderr.startswith(b"sockkit: --conns")


@pytest.mark.parametrize("mode", ["rr", "idle"])
def test_a_server_closing_right_after_the_first_echo_yields_errors(
    tcp_server: Callable[[Behaviour], str], mode: str
) -> None:
    result = bench(tcp_server(resetting(after=64)), mode=mode, conns=30, size=64)
    assert result.conn_failures == 30
    assert result.errors >= 30
    assert not result.ok
