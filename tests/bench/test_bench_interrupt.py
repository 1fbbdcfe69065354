"""``sockkit bench`` stopped with Ctrl-C, its progress line, and ``--interval`` reports.

Ctrl-C prints what was measured (text or ``--json``) and exits 130, as iperf3
prints its summary; the progress line counts the real warm-up and then the
measured phase, about four times a second, on a terminal only.
"""

from __future__ import annotations

import itertools
import json
import os
import pty
import signal
import subprocess
import time
from collections.abc import Callable

import pytest
from bench_servers import Behaviour, echo
from tests.conftest import cli_env, sockkit_argv

from sockkit import parse_endpoint
from sockkit.bench import run_bench


def _interrupted(args: list[str], after: float) -> tuple[int, bytes, bytes, float]:
    """Run ``sockkit bench ARGS``, send SIGINT after ``after`` seconds; (status, out, err, secs)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        sockkit_argv("bench", *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(),
    )
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err, time.monotonic() - started


@pytest.mark.parametrize("processes", ["1", "2"])
def test_ctrl_c_prints_the_partial_report_and_exits_130(
    tcp_server: Callable[[Behaviour], str], processes: str
) -> None:
    target = tcp_server(echo)
    args = [target, "--conns", "4", "--warmup", "0.3", "--duration", "20"]
    status, out, err, seconds = _interrupted([*args, "--processes", processes], after=2.5)
    assert status == 130, err
    assert seconds < 10  # stopped at once, not after the 20 s asked for
    text = out.decode()
    assert "interrupted: partial results of the" in text
    throughput = next(line for line in text.splitlines() if "throughput" in line)
    assert int(throughput.split()[1].replace(",", "")) > 0
    assert "Traceback" not in err.decode()


def test_ctrl_c_with_json_gives_the_partial_result(tcp_server: Callable[[Behaviour], str]) -> None:
    target = tcp_server(echo)
    args = [target, "--conns", "4", "--warmup", "0.3", "--duration", "20", "--json"]
    status, out, err, _ = _interrupted([*args, "--interval", "0.5"], after=2.5)
    assert status == 130, err
    result = json.loads(out)
    assert result["interrupted"] is True
    assert 0.5 < result["duration_s"] < 8
    assert result["requests"] > 0 and result["errors"] == 0
    assert len(result["intervals"]) >= 2
    assert sum(i["requests"] for i in result["intervals"]) <= result["requests"]


def test_ctrl_c_during_warm_up_says_nothing_was_measured(
    tcp_server: Callable[[Behaviour], str],
) -> None:
    target = tcp_server(echo)
    status, out, err, _ = _interrupted([target, "--warmup", "20", "--duration", "1"], after=1.5)
    assert status == 130, err
    assert "interrupted before the measured phase: nothing was measured" in out.decode()
    assert "throughput" not in out.decode()


def test_interval_reports_partition_the_measured_phase(
    tcp_server: Callable[[Behaviour], str],
) -> None:
    seen = []
    result = run_bench(
        parse_endpoint(tcp_server(echo)),
        conns=4,
        duration=2.0,
        warmup=0.2,
        interval=0.5,
        on_interval=seen.append,
    )
    assert list(result.intervals) == seen
    assert len(seen) == 4
    assert seen[0].start_s == 0.0
    for n, (before, after) in enumerate(itertools.pairwise(seen), start=1):
        assert after.start_s == before.end_s  # no gap, no overlap
        assert after.start_s == pytest.approx(0.5 * n, abs=0.15)
    assert seen[-1].end_s == pytest.approx(result.duration_s, abs=0.06)
    assert sum(i.requests for i in seen) == result.requests
    assert all(i.requests > 0 and i.p99_us is not None and i.errors == 0 for i in seen)
    for i in seen:
        assert i.msgs_per_s == pytest.approx(i.requests / (i.end_s - i.start_s), rel=0.01)


def test_interval_lines_on_stdout_and_in_json(tcp_server: Callable[[Behaviour], str]) -> None:
    target = tcp_server(echo)
    base = [target, "--conns", "4", "--warmup", "0.2", "--duration", "1.5", "--interval", "0.5"]
    text = subprocess.run(
        sockkit_argv("bench", *base), capture_output=True, env=cli_env(), timeout=30
    )
    assert text.returncode == 0, text.stderr
    lines = text.stdout.decode().splitlines()
    assert lines[0].split() == ["interval", "msg/s", "MB/s", "p99", "errors"]
    # the real span of each interval (on a busy machine one may end a few ms late)
    spans = [[float(t) for t in line.split()[0].split("-")] for line in lines[1:4]]
    assert [s for s, _ in spans] == [0.0, *[e for _, e in spans[:2]]]
    assert [e for _, e in spans] == pytest.approx([0.5, 1.0, 1.5], abs=0.15)
    assert all(line.split()[1] == "s" for line in lines[1:4])
    assert "throughput" in lines[4 + 1]
    as_json = subprocess.run(
        sockkit_argv("bench", *base, "--json"), capture_output=True, env=cli_env(), timeout=30
    )
    result = json.loads(as_json.stdout)
    assert len(result["intervals"]) == 3
    assert set(result["intervals"][0]) == {
        "start_s", "end_s", "requests", "msgs_per_s", "mb_per_s", "p99_us", "errors",
    }  # fmt: skip


def test_a_bad_interval_is_a_usage_error(tcp_server: Callable[[Behaviour], str]) -> None:
    done = subprocess.run(
        sockkit_argv("bench", tcp_server(echo), "--interval", "0.01"),
        capture_output=True,
        env=cli_env(),
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stderr.decode().strip() == "sockkit: --interval must be at least 0.1 seconds"


def test_progress_shows_the_real_warm_up_then_the_measure_four_times_a_second(
    tcp_server: Callable[[Behaviour], str],
) -> None:
    target = tcp_server(echo)
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.Popen(
            sockkit_argv("bench", target, "--conns", "2", "--warmup", "1.5", "--duration", "2"),
            stdout=subprocess.PIPE,
            stderr=secondary,
            env=cli_env(),
        )
        os.close(secondary)
        secondary = -1
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:
                break  # EIO: the child closed the terminal
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait(30)
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)
    assert proc.returncode == 0
    updates = [u.strip() for u in b"".join(chunks).decode().split("\r") if u.strip()]
    updates = [u.removeprefix("\x1b[K").strip() for u in updates]
    warmup = [u for u in updates if u.startswith("warmup")]
    measure = [u for u in updates if u.startswith("measure")]
    assert warmup and all(u.split()[1].endswith("s/1.5s") for u in warmup), warmup
    assert measure and all(u.split()[1].endswith("s/2s") for u in measure), measure
    # ~4 per second over 3.5 s; generous for a busy machine, but more than once a second
    assert len(warmup) + len(measure) >= 8, updates
    shown = [float(u.split()[1].split("s/")[0]) for u in warmup]
    assert max(shown) >= 1.0 and shown == sorted(shown)
