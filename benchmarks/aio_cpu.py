"""Server CPU per request: sockkit's uvloop/asyncio engine against the raw Protocol peers.

Usage (from the checkout, after ``cc -O2 -o /tmp/rrload ../shared/tools/rrload.c``)::

    PYTHONPATH=src python benchmarks/aio_cpu.py [--rounds 5] [--duration 3] [--cases a,b,c,d]

Each server runs pinned to CPU 0, rrload to CPU 1.  Per case and round every
server is started fresh, primed with a short unmeasured run, then measured:
server CPU = delta(utime + stime) from /proc/PID/stat over the measured run,
divided by the requests rrload reports.  Servers alternate within a round;
the table shows medians over rounds.  With ``--paired`` the servers of a
round run at the same time, each under its own rrload, so load from other
processes on the machine hits them alike.  Prints one JSON line per measurement
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

_SOCKKIT = [sys.executable, f"{HERE}/aio_serve.py"]
#: name -> argv; each prints "listening on ...:PORT" (on stdout, or stderr for the CLI).
SERVERS = {
    "raw-uvloop": [sys.executable, f"{HERE}/peers/uvloop_protocol_echo.py", "127.0.0.1", "0"],
    "sockkit-uvloop": [sys.executable, f"{HERE}/aio_serve.py", "uvloop", "127.0.0.1", "0"],
    "raw-asyncio": [sys.executable, f"{HERE}/peers/asyncio_protocol_echo.py", "127.0.0.1", "0"],
    "sockkit-asyncio": [sys.executable, f"{HERE}/aio_serve.py", "asyncio", "127.0.0.1", "0"],
    "sockkit-uvloop-log": [
        sys.executable,
        f"{HERE}/aio_serve.py",
        "uvloop",
        "127.0.0.1",
        "0",
        "--log",
    ],
    "sockkit-uvloop-nogc": [*_SOCKKIT, "uvloop", "127.0.0.1", "0", "--no-gc"],
    "cli-uvloop": [
        sys.executable,
        "-m",
        "sockkit",
        "serve",
        "echo",
        "tcp://127.0.0.1:0",
        "--engine",
        "uvloop",
        "--log-level",
        "warning",
    ],
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
    on_stderr = name.startswith("cli-")
    proc = subprocess.Popen(
        ["taskset", "-c", "0", *SERVERS[name]],
        stdout=subprocess.DEVNULL if on_stderr else subprocess.PIPE,
        stderr=subprocess.PIPE if on_stderr else None,
        env=dict(os.environ),
    )
    stream = proc.stderr if on_stderr else proc.stdout
    assert stream is not None
    line = stream.readline()
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


def load_async(port: int, case: str, duration: float, warmup: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
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
        stdout=subprocess.PIPE,
    )


def measure_paired(names: list[str], case: str, duration: float) -> list[dict[str, float]]:
    """Run every server at once (all on CPU 0, their loads all on CPU 1), same load each.

    Whatever else the machine does then hits every server alike, so the ratio
    of their CPU per request is far steadier than in back-to-back runs.
    """
    started = [start(name) for name in names]
    try:
        for proc in [load_async(port, case, 1.0, 0.2) for _, port in started]:
            proc.wait(60)
        before = [cpu_seconds(proc.pid) for proc, _ in started]
        t0 = time.monotonic()
        loads = [load_async(port, case, duration, 0.0) for _, port in started]
        outs = [proc.communicate(timeout=duration + 60)[0] for proc in loads]
        elapsed = time.monotonic() - t0
        rows = []
        for (proc, _), cpu0, out in zip(started, before, outs, strict=True):
            result = json.loads(out.decode().strip().splitlines()[-1])
            used = cpu_seconds(proc.pid) - cpu0
            requests = result["msgs_per_s"] * elapsed
            rows.append({**result, "server_cpu_s": used, "us_per_req": used / requests * 1e6})
        return rows
    finally:
        for proc, _ in started:
            proc.terminate()
            proc.wait(10)


def table(rows: list[dict[str, object]], names: list[str]) -> str:
    """Markdown: median server CPU µs/request per case and server, and each ratio to the first."""
    by: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        by.setdefault((str(row["case"]), str(row["server"])), []).append(float(row["us_per_req"]))  # type: ignore[arg-type]
    base = names[0]
    lines = [
        "| case | "
        + " | ".join(names)
        + " | "
        + " | ".join(f"{n} / {base}" for n in names[1:])
        + " |",
        "|---" * (2 * len(names)) + "|",
    ]
    for case in CASES:
        if not all((case, n) in by for n in names):
            continue
        meds = [statistics.median(by[(case, n)]) for n in names]
        counts = min(len(by[(case, n)]) for n in names)
        cells = [f"{m:.2f}" for m in meds] + [f"{m / meds[0]:.3f}" for m in meds[1:]]
        lines.append(f"| {case} (n={counts}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--cases", default="a,b,c,d")
    parser.add_argument("--servers", default="raw-uvloop,sockkit-uvloop")
    parser.add_argument("--summarize", metavar="FILE", help="only print the table of a saved run")
    parser.add_argument("--paired", action="store_true", help="run the servers at the same time")
    args = parser.parse_args()
    names = args.servers.split(",")
    if args.summarize:
        with open(args.summarize) as f:
            rows = [json.loads(line) for line in f if line.startswith("{")]
        print(table(rows, names))
        return
    rows = []
    for case in args.cases.split(","):
        for rnd in range(args.rounds):
            order = names if rnd % 2 == 0 else names[::-1]
            if args.paired:
                results = list(zip(order, measure_paired(order, case, args.duration), strict=True))
            else:
                results = [(name, measure(name, case, args.duration)) for name in order]
            for name, r in results:
                row = {"case": case, "server": name, "round": rnd, **r}
                rows.append(row)
                print(json.dumps(row), flush=True)
    print()
    print(table(rows, names))


if __name__ == "__main__":
    main()
