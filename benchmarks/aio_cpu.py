"""Server CPU per request: sockkit's uvloop/asyncio engine against the raw Protocol peers.

Usage (from the worktree root, after ``cc -O2 -o /tmp/rrload /work/shared/tools/rrload.c``)::

    PYTHONPATH=src python benchmarks/aio_cpu.py [--rounds 5] [--duration 3] [--cases a,b,c,d]

Each server runs pinned to CPU 0, rrload to CPU 1.  Per case and round every
server is started fresh, primed with a short unmeasured run, then measured:
server CPU = delta(utime + stime) from /proc/PID/stat over the measured run,
divided by the requests rrload reports.  Servers alternate within a round;
the table shows medians over rounds.  Prints one JSON line per measurement
and a Markdown table at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RRLOAD = os.environ.get("RRLOAD", "/tmp/rrload")
TICK = os.sysconf("SC_CLK_TCK")

SERVERS = {
    "raw-uvloop": [sys.executable, f"{HERE}/peers/uvloop_protocol_echo.py"],
    "sockkit-uvloop": [sys.executable, f"{HERE}/aio_serve.py", "uvloop"],
    "raw-asyncio": [sys.executable, f"{HERE}/peers/asyncio_protocol_echo.py"],
    "sockkit-asyncio": [sys.executable, f"{HERE}/aio_serve.py", "asyncio"],
    "sockkit-uvloop-log": [sys.executable, f"{HERE}/aio_serve.py", "uvloop", "--log"],
}

CASES = {
    "a": ["--mode", "rr", "--conns", "100", "--depth", "1", "--size", "64"],
    "b": ["--mode", "rr", "--conns", "100", "--depth", "16", "--size", "64"],
    "c": ["--mode", "rr", "--conns", "10", "--depth", "1", "--size", "65536"],
    "d": ["--mode", "connect", "--conns", "16", "--size", "64"],
}


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def start(name: str) -> tuple[subprocess.Popen[bytes], int]:
    """Start server ``name`` on a free port; return it and the port it printed."""
    proc = subprocess.Popen(
        ["taskset", "-c", "0", *SERVERS[name], "127.0.0.1", "0"],
        stdout=subprocess.PIPE,
        env=dict(os.environ),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert b"listening" in line, line
    return proc, int(line.rsplit(b":", 1)[1])


def load(port: int, case: str, duration: float, warmup: float) -> dict[str, float]:
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            RRLOAD,
            *CASES[case],
            "--warmup",
            str(warmup),
            "--duration",
            str(duration),
            f"127.0.0.1:{port}",
        ],
        capture_output=True,
        check=True,
        timeout=duration + warmup + 30,
    )
    result: dict[str, float] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return result


def measure(name: str, case: str, duration: float) -> dict[str, float]:
    proc, port = start(name)
    try:
        load(port, case, 1.0, 0.2)  # prime: the first run on a fresh server is slow
        before = cpu_seconds(proc.pid)
        t0 = time.monotonic()
        result = load(port, case, duration, 0.0)
        elapsed = time.monotonic() - t0
        used = cpu_seconds(proc.pid) - before
        # rrload's rate covers its measured window; the CPU delta covers the
        # whole run (connect phase included), so scale by wall time.
        requests = result["msgs_per_s"] * elapsed
        return {**result, "server_cpu_s": used, "us_per_req": used / requests * 1e6}
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--cases", default="a,b,c,d")
    parser.add_argument("--servers", default="raw-uvloop,sockkit-uvloop")
    args = parser.parse_args()
    names = args.servers.split(",")
    results: dict[tuple[str, str], list[float]] = {}
    for case in args.cases.split(","):
        for rnd in range(args.rounds):
            order = names if rnd % 2 == 0 else names[::-1]
            for name in order:
                r = measure(name, case, args.duration)
                results.setdefault((case, name), []).append(r["us_per_req"])
                print(json.dumps({"case": case, "server": name, "round": rnd, **r}), flush=True)
    base = names[0]
    print(
        f"\n| case | {' | '.join(names)} | " + " | ".join(f"{n}/{base}" for n in names[1:]) + " |"
    )
    print("|---" * (1 + 2 * len(names) - 1) + "|")
    for case in args.cases.split(","):
        meds = [statistics.median(results[(case, n)]) for n in names]
        ratios = [f"{m / meds[0]:.3f}" for m in meds[1:]]
        print(
            f"| {case} | "
            + " | ".join(f"{m:.2f}" for m in meds)
            + " | "
            + " | ".join(ratios)
            + " |"
        )


if __name__ == "__main__":
    main()
