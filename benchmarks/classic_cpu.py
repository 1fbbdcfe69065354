"""Server CPU per operation and rate: sockkit's classic engines against socketserver.

Usage (from the repository root)::

    cc -O2 -o /tmp/rrload ../shared/tools/rrload.c
    python benchmarks/classic_cpu.py --pair thread --rounds 5 --duration 3 --conns 4
    python benchmarks/classic_cpu.py --pair fork --rounds 5 --duration 3 --conns 4

``--pair thread`` runs request/response (``rrload --mode rr``, 64 B echo)
against ``sockkit serve --engine thread`` and ``socketserver.ThreadingTCPServer``;
``--pair fork`` runs connect/echo/close (``rrload --mode connect``) against
``--engine fork`` (children forked from its fork server), the same with
``SOCKKIT_FORK_SERVER=off`` (``sockkit-fork-inline``: forked from the serving
process) and ``socketserver.ForkingTCPServer``.  Each server is pinned
to CPU 1 (``taskset -c 1``), the load to CPU 0, and primed with one
unmeasured run.  Server CPU is utime + stime + cutime + cstime from
/proc/PID/stat (the last two count reaped fork children), summed over the
server and its live descendants (the fork server), over the measured run, divided by the operations rrload completed.  Servers alternate round by
round; the medians and the median of per-round ratios are reported, because
the machine is shared.
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

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")
PEERS = ROOT / "benchmarks" / "peers"


def server_argv(name: str) -> list[str]:
    if name == "socketserver":
        return [sys.executable, str(PEERS / "socketserver_threading_echo.py"), "127.0.0.1", "0"]
    if name == "socketserver-fork":
        return [sys.executable, str(PEERS / "socketserver_forking_echo.py"), "127.0.0.1", "0"]
    engine = name.removeprefix("sockkit-").removesuffix("-inline")
    return [
        sys.executable,
        "-m",
        "sockkit",
        "serve",
        "--engine",
        engine,
        "echo",
        "tcp://127.0.0.1:0",
    ]


def cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid``, its reaped children, and its live descendants (a fork server) so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        kids = [
            int(kid)
            for task in Path(f"/proc/{pid}/task").iterdir()
            for kid in (task / "children").read_text().split()
        ]
    except (FileNotFoundError, ProcessLookupError):
        return 0.0  # exited meanwhile: its time is in its parent's cutime now
    return sum(int(f) for f in fields[11:15]) / TICK + sum(cpu_seconds(kid) for kid in kids)


def load(args: argparse.Namespace, port: int, duration: float) -> dict[str, float]:
    argv = [
        "taskset", "-c", "0", args.rrload, "--mode", args.mode, "--conns", str(args.conns),
        "--depth", str(args.depth), "--size", str(args.size), "--warmup", "0", "--duration", str(duration), f"127.0.0.1:{port}",
    ]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, check=True, timeout=duration + 30)
    result: dict[str, float] = json.loads(out.stdout)
    return result


def measure(args: argparse.Namespace, name: str) -> tuple[float, float, float]:
    """(server CPU us per operation, operations per second, p50 latency us) of one run."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    if name.endswith("-inline"):
        env["SOCKKIT_FORK_SERVER"] = "off"  # children forked from the serving process
    # stderr to a file: a pipe nobody reads would fill with log lines and stall the server.
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(["taskset", "-c", "1", *server_argv(name)], stderr=log, env=env)
    try:
        port = wait_for_port(log)
        load(args, port, 1.0)  # prime: imports, allocator, page cache
        cpu0 = cpu_seconds(proc.pid)
        result = load(args, port, args.duration)
        cpu1 = cpu_seconds(proc.pid)
        if result["errors"] or result["conn_failures"] or not result["msgs"]:
            raise SystemExit(f"{name}: load errors {result}")
        return (cpu1 - cpu0) / result["msgs"] * 1e6, result["msgs_per_s"], result["p50_us"]
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def wait_for_port(log: IO[bytes]) -> int:
    """The port from the server's first ``listening on HOST:PORT`` line."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        log.seek(0)
        line = log.readline()
        if line.endswith(b"\n"):
            return int(line.rsplit(b":", 1)[1])
        time.sleep(0.02)
    raise SystemExit("server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rrload", default="/tmp/rrload")
    parser.add_argument("--pair", choices=["thread", "fork"], default="thread")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--conns", type=int, default=4)
    parser.add_argument(
        "--mode", choices=["rr", "connect"], help="default: rr for thread, connect for fork"
    )
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    args.mode = args.mode or ("rr" if args.pair == "thread" else "connect")
    names = (
        ["sockkit-thread", "socketserver"]
        if args.pair == "thread"
        else ["sockkit-fork", "sockkit-fork-inline", "socketserver-fork"]
    )
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in names}
    for round_no in range(args.rounds):
        for name in names if round_no % 2 == 0 else names[::-1]:
            runs[name].append(measure(args, name))
        print(f"round {round_no + 1}: " + "  ".join(
            f"{n}={runs[n][-1][0]:.1f}us/op {runs[n][-1][1]:.0f}/s" for n in names), flush=True)  # fmt: skip
    print(f"\nmode={args.mode} conns={args.conns} duration={args.duration}s rounds={args.rounds}")
    print(
        f"{'server':<18} {'us/op':>8} {'ops/s':>9} {'p50 us':>9} {'cpu ratio':>10} {'rate ratio':>11}"
    )
    peer = runs[names[-1]]
    for name in names:
        cpu = statistics.median(r[0] for r in runs[name])
        rate = statistics.median(r[1] for r in runs[name])
        p50 = statistics.median(r[2] for r in runs[name])
        # Same round, neighbouring runs: the machine's load mostly cancels out.
        cpu_ratio = statistics.median(a[0] / b[0] for a, b in zip(runs[name], peer, strict=True))
        rate_ratio = statistics.median(a[1] / b[1] for a, b in zip(runs[name], peer, strict=True))
        print(
            f"{name:<18} {cpu:>8.2f} {rate:>9.0f} {p50:>9.0f} {cpu_ratio:>10.3f} {rate_ratio:>11.3f}"
        )


if __name__ == "__main__":
    main()
