"""sockkit bench agrees with rrload (an independent C generator) on the same server."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable

import pytest
from bench_servers import RRLOAD_SOURCE, Behaviour, delayed

from sockkit import parse_endpoint
from sockkit.bench import run_bench

RRLOAD = RRLOAD_SOURCE


@pytest.fixture(scope="module")
def rrload(tmp_path_factory: pytest.TempPathFactory) -> str:
    compiler = shutil.which("cc")
    if compiler is None or not RRLOAD.exists():
        pytest.skip("needs cc and rrload.c")
    binary = tmp_path_factory.mktemp("rrload") / "rrload"
    subprocess.run([compiler, "-O2", "-o", str(binary), str(RRLOAD)], check=True, timeout=120)
    return str(binary)


def test_throughput_and_latency_agree_with_rrload_within_15_percent(
    rrload: str, tcp_server: Callable[[Behaviour], str]
) -> None:
    # The server, not either generator, sets the pace: each request waits 2 ms
    # before its echo, so 4 connections at depth 1 make ~1,900 requests/s --
    # far below what either generator can do.
    target = tcp_server(delayed(0.002))
    done = subprocess.run(
        [rrload, "--conns", "4", "--duration", "1", "--warmup", "0.2", target],
        capture_output=True,
        timeout=30,
        check=True,
    )
    theirs = json.loads(done.stdout.splitlines()[-1])
    ours = run_bench(parse_endpoint(target), conns=4, duration=1.0, warmup=0.2)
    assert ours.ok and theirs["errors"] == 0
    assert not ours.saturated and theirs["client_cpu_pct"] < 90
    assert ours.msgs_per_s == pytest.approx(theirs["msgs_per_s"], rel=0.15)
    assert ours.p50_us == pytest.approx(theirs["p50_us"], rel=0.15)
