"""How fast ``sockkit ss`` lists 10,000 sockets, next to iproute2 ``ss``.

Opens 5,000 connected TCP pairs on loopback (10,000 sockets plus a
listener) in this process, then runs each command several times, in turn,
and records the median and best wall-clock times of the whole process --
interpreter start-up included -- in ``benchmarks/ss_results.md``.

    python benchmarks/ss_speed.py [--pairs 5000] [--repeats 15]

Run it from the repository root; it byte-compiles ``src`` first (as
installing a package does; this matters where PYTHONDONTWRITEBYTECODE is
set) and puts it on PYTHONPATH for the ``sockkit`` runs.  Nothing listens
beyond loopback, and every socket is closed at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "ss_results.md"


def open_pairs(count: int) -> list[socket.socket]:
    """``count`` established loopback TCP connections (both ends kept open)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * count + 64
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise SystemExit(f"need {needed} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    address = listener.getsockname()
    sockets = [listener]
    for _ in range(count):
        client = socket.create_connection(address)
        server, _ = listener.accept()
        sockets += (client, server)
    return sockets


def close_without_time_wait(sockets: list[socket.socket]) -> None:
    """Close with a reset (SO_LINGER 0) so 5,000 TIME-WAIT entries do not linger for a minute."""
    linger = struct.pack("ii", 1, 0)
    for sock in sockets:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        except OSError:
            pass
        sock.close()


def time_runs(commands: dict[str, list[str]], repeats: int, env: dict[str, str]) -> dict[str, list[float]]:
    """Wall-clock seconds per run, commands interleaved so load drifts hit all alike."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for name, argv in commands.items():  # warm the page cache once
        subprocess.run(argv, stdout=subprocess.DEVNULL, env=env, check=True)
    for _ in range(repeats):
        for name, argv in commands.items():
            start = time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, env=env, check=True)
            times[name].append(time.perf_counter() - start)
    return times


def count_lines(argv: list[str], env: dict[str, str]) -> int:
    out = subprocess.run(argv, capture_output=True, env=env, check=True).stdout
    return out.count(b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-write", action="store_true", help="print only, do not write the results file")
    args = parser.parse_args()
    if shutil.which("ss") is None:
        raise SystemExit("iproute2 ss is not installed")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src" / "sockkit")], check=True)
    sockkit = [sys.executable, "-m", "sockkit", "ss"]
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "ss -tan": ["ss", "-tan"],
        "sockkit ss -tan": [*sockkit, "-tan"],
        "ss -tanp": ["ss", "-tanp"],
        "sockkit ss -tanp": [*sockkit, "-tanp"],
    }
    sockets = open_pairs(args.pairs)
    try:
        lines = {name: count_lines(argv, env) for name, argv in commands.items() if "ss" in name}
        times = time_runs(commands, args.repeats, env)
    finally:
        close_without_time_wait(sockets)
    median = {name: statistics.median(t) * 1000 for name, t in times.items()}
    best = {name: min(t) * 1000 for name, t in times.items()}
    ratio_plain = median["sockkit ss -tan"] / median["ss -tan"]
    ratio_procs = median["sockkit ss -tanp"] / median["ss -tanp"]
    rows = [
        f"| `{name}` | {median[name]:.1f} | {best[name]:.1f} | {lines.get(name, '')} |" for name in commands
    ]
    report = "\n".join(
        [
            "# `sockkit ss` speed against iproute2 `ss`",
            "",
            f"{2 * args.pairs:,} loopback TCP sockets ({args.pairs:,} connected pairs) plus one listener,",
            f"held open by the benchmark process; each command run {args.repeats} times, interleaved,",
            "output to /dev/null; wall-clock time of the whole process, interpreter start-up included.",
            "",
            "Command: `python benchmarks/ss_speed.py"
            + (f" --pairs {args.pairs}" if args.pairs != 5000 else "")
            + (f" --repeats {args.repeats}" if args.repeats != 15 else "")
            + "`",
            "",
            "| command | median ms | best ms | lines printed |",
            "|---|---:|---:|---:|",
            *rows,
            "",
            f"- `sockkit ss -tan` / `ss -tan` (medians): **{ratio_plain:.2f}x** (target: at most 3x)",
            f"- `sockkit ss -tanp` / `ss -tanp` (medians): **{ratio_procs:.2f}x** (target: at most 2x)",
            "",
            f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"{subprocess.run(['ss', '-V'], capture_output=True, text=True).stdout.strip()}; "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
            "",
        ]
    )
    print(report)
    if not args.no_write:
        RESULTS.write_text(report)
        print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
