"""A service that blocks, served by the pool and by a thread per connection.

Usage (from the repository root)::

    cc -O2 -o /tmp/rrload ../shared/tools/rrload.c
    python benchmarks/blocking_service.py --rounds 3 --duration 3

The service (:class:`SlowEcho`) waits 10 ms in every call, as a service that
queries a database would, then echoes.  For each server -- ``--engine pool``
with 8 and with 64 threads, and ``--engine thread`` -- two workloads run,
servers alternating round by round, server pinned to CPU 1 and load to CPU 0:

- busy: ``rrload --mode rr`` with ``--conns`` (64) clients, one 64-byte
  request each in flight: requests/s, p50/p99 latency, server CPU per request
  and the server's threads mid-run;
- idle: ``rrload --mode idle`` holds ``--idle`` (2,000) connections after one
  echo each: the server's PSS growth per connection and its threads.

Run as a service module too: ``sockkit serve blocking_service:SlowEcho ...``
with this folder on ``sys.path``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

from sockkit.services import Service

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TICK = os.sysconf("SC_CLK_TCK")

#: What each call waits, seconds: a quick database query.
DELAY = 0.01


class SlowEcho(Service):
    """Echo after waiting :data:`DELAY` seconds in every call."""

    def received(self, data: bytes) -> bytes:
        time.sleep(DELAY)
        return data


SERVERS = {
    "pool-8": ["--engine", "pool", "--threads", "8"],
    "pool-64": ["--engine", "pool", "--threads", "64"],
    "thread": ["--engine", "thread"],
}


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise KeyError("Pss")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / TICK


def _wait_for_port(log: IO[bytes]) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        log.seek(0)
        line = log.readline()
        if line.endswith(b"\n"):
            return int(line.rsplit(b":", 1)[1])
        time.sleep(0.02)
    raise SystemExit("server did not start")


class _Server:
    def __init__(self, options: list[str]) -> None:
        env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{HERE}")
        self.log = tempfile.TemporaryFile()  # a pipe nobody reads would stall the server
        argv = [sys.executable, "-m", "sockkit", "serve", "blocking_service:SlowEcho"]
        self.proc = subprocess.Popen(
            ["taskset", "-c", "1", *argv, "tcp://127.0.0.1:0", "--max-conns", "20000", *options],
            stderr=self.log,
            env=env,
            cwd=HERE,
        )
        self.port = _wait_for_port(self.log)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()


def _rrload(args: argparse.Namespace, port: int, *extra: str) -> subprocess.Popen[bytes]:
    argv = ["taskset", "-c", "0", args.rrload, "--size", "64", "--warmup", "0", *extra]
    return subprocess.Popen([*argv, f"127.0.0.1:{port}"], stdout=subprocess.PIPE)


def busy_run(args: argparse.Namespace, options: list[str]) -> dict[str, float]:
    server = _Server(options)
    try:
        pid = server.proc.pid
        conns = str(args.conns)
        _rrload(args, server.port, "--conns", conns, "--duration", "1").communicate(timeout=60)
        cpu0 = _cpu_seconds(pid)
        load = _rrload(args, server.port, "--conns", conns, "--duration", str(args.duration))
        time.sleep(args.duration / 2)
        threads = _status(pid, "Threads")  # mid-run: a thread engine's count falls at the end
        out, _ = load.communicate(timeout=args.duration + 60)
        cpu1 = _cpu_seconds(pid)
        result = json.loads(out)
        return {
            "req_per_s": result["msgs_per_s"],
            "p50_ms": result["p50_us"] / 1000,
            "p99_ms": result["p99_us"] / 1000,
            "cpu_us": (cpu1 - cpu0) / max(result["msgs"], 1) * 1e6,
            "threads": threads,
            "errors": result["errors"] + result["conn_failures"],
        }
    finally:
        server.close()


def idle_run(args: argparse.Namespace, options: list[str]) -> dict[str, float]:
    server = _Server(options)
    try:
        pid = server.proc.pid
        before = _pss_kib(pid)
        hold = args.idle * 0.01 + 20
        load = _rrload(
            args, server.port, "--mode", "idle", "--conns", str(args.idle),
            "--duration", str(hold), "--connect-timeout", "60",
        )  # fmt: skip
        assert load.stdout is not None
        ready = json.loads(load.stdout.readline() or b"{}")
        time.sleep(0.5)
        after = _pss_kib(pid)
        threads = _status(pid, "Threads")
        load.kill()
        load.wait(10)
        return {
            "kib_per_conn": (after - before) / args.idle,
            "threads": threads,
            "errors": float(ready.get("conn_failures", 0) + ready.get("errors", 0)),
        }
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rrload", default="/tmp/rrload")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--conns", type=int, default=64)
    parser.add_argument("--idle", type=int, default=2000)
    args = parser.parse_args()
    busy: dict[str, list[dict[str, float]]] = {name: [] for name in SERVERS}
    idle: dict[str, list[dict[str, float]]] = {name: [] for name in SERVERS}
    names = list(SERVERS)
    for round_no in range(args.rounds):
        for name in names if round_no % 2 == 0 else names[::-1]:
            busy[name].append(busy_run(args, SERVERS[name]))
            idle[name].append(idle_run(args, SERVERS[name]))
            print(f"round {round_no + 1} {name}: {busy[name][-1]} {idle[name][-1]}", flush=True)
    print(f"\nSlowEcho ({DELAY * 1000:.0f} ms per call); busy: {args.conns} clients, depth 1,")
    print(f"{args.duration}s per run; idle: {args.idle} connections; medians of {args.rounds}")
    print(
        f"{'server':<8} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>10} "
        f"{'threads':>7} {'errors':>6} | {'idle KiB/conn':>13} {'threads':>7}"
    )
    for name in names:

        def med(runs: list[dict[str, float]], key: str) -> float:
            return statistics.median(run[key] for run in runs)

        b, i = busy[name], idle[name]
        print(
            f"{name:<8} {med(b, 'req_per_s'):>8.0f} {med(b, 'p50_ms'):>7.1f} "
            f"{med(b, 'p99_ms'):>7.1f} {med(b, 'cpu_us'):>10.1f} {med(b, 'threads'):>7.0f} "
            f"{sum(r['errors'] for r in b):>6.0f} | {med(i, 'kib_per_conn'):>13.2f} "
            f"{med(i, 'threads'):>7.0f}"
        )


if __name__ == "__main__":
    main()
