"""Server CPU per operation for a few servers, measured in alternating rounds with rrload.

Usage (from the checkout, after ``cc -O2 -o /tmp/rrload ../shared/tools/rrload.c``)::

    PYTHONPATH=src python benchmarks/alternating_cpu.py --mode connect --conns 16 \\
        "minimal=python benchmarks/peers/selectors_echo.py 127.0.0.1 0" \\
        "epoll=python -m sockkit serve echo 127.0.0.1:0 --log-level warning --engine epoll"

Each NAME=COMMAND must print a line ending in ``:PORT`` that contains
``listening`` (on stdout or stderr).  Every round starts each server afresh,
pinned to CPU 1, primes it with a 1.5 s unmeasured run, then measures a 3 s
rrload run pinned to CPU 0; the server's user+system time (children
included, from /proc/PID/stat) over that run, divided by rrload's verified
operations, is its CPU per operation.  The order alternates round by round.
Prints the median per server and its ratio to the first one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / _TICK  # utime stime cutime cstime


def _one(command: str, load: list[str]) -> float:
    proc = subprocess.Popen(
        ["taskset", "-c", "1", *shlex.split(command)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        while "listening" not in line:
            if not line:
                raise SystemExit(f"{command!r} exited before listening")
            line = proc.stdout.readline().decode()
        match = re.search(r":(\d+)\s*$", line.strip())
        assert match, line
        target = f"127.0.0.1:{match.group(1)}"
        subprocess.run([*load, "--warmup", "0.5", "--duration", "1", target], capture_output=True)
        before = _cpu_seconds(proc.pid)
        done = subprocess.run(
            [*load, "--warmup", "0", "--duration", "3", target], capture_output=True, check=True
        )
        spent = _cpu_seconds(proc.pid) - before
        result = json.loads(done.stdout)
        if result["errors"] or result["conn_failures"]:
            raise SystemExit(f"{command!r}: rrload counted errors: {result}")
        return spent * 1e6 / result["msgs"]
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("servers", nargs="+", metavar="NAME=COMMAND")
    parser.add_argument("--rrload", default="/tmp/rrload")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mode", default="rr", choices=["rr", "connect"])
    parser.add_argument("--conns", type=int, default=100)
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    servers = [tuple(s.split("=", 1)) for s in args.servers]
    load = ["taskset", "-c", "0", args.rrload, "--mode", args.mode, "--conns", str(args.conns)]
    load += ["--depth", str(args.depth), "--size", str(args.size), "--src-ips", "8"]
    results: dict[str, list[float]] = {name: [] for name, _ in servers}
    for round_ in range(args.rounds):
        for name, command in servers if round_ % 2 == 0 else servers[::-1]:
            results[name].append(_one(command, load))
    first = None
    for name, values in results.items():
        median = statistics.median(values)
        first = first or median
        rounds = ", ".join(f"{v:.2f}" for v in values)
        print(f"{name:14s} {median:9.2f} us/op  {median / first:6.3f}x  [{rounds}]")


if __name__ == "__main__":
    main()
