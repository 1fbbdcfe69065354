"""How fast ``sockkit ss`` lists 10,000 sockets, next to iproute2 ``ss``.

Opens 5,000 connected TCP pairs on loopback (10,000 sockets plus a
listener) in this process, then runs each command several times, in turn,
and records the median and best wall-clock times of the whole process --
interpreter start-up included -- and its CPU time (user + system) in
``benchmarks/ss_results.md``.

    python benchmarks/ss_speed.py [--pairs 5000] [--repeats 15] [--private-net]

``sockkit`` runs as an installed console script would: a small script that
imports ``sockkit.cli`` and calls ``main()`` (``python -m sockkit`` is timed
too).  The sources are byte-compiled first, as installing a package does
(this matters where PYTHONDONTWRITEBYTECODE is set).

``--private-net`` (root only) runs everything in a fresh network namespace
(``unshare --net``), so the machine's other sockets -- say, tens of
thousands of TIME-WAIT entries left by a load test -- are not in the
listing and the comparison is the 10,000 sockets alone.  Nothing listens
beyond loopback, and every socket is closed with a reset at the end, so no
TIME-WAIT entries are left behind either.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import resource
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "ss_results.md"

CONSOLE_SCRIPT = """\
import sys
from sockkit.cli import main
sys.exit(main())
"""


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
    """Close with a reset (SO_LINGER 0) so no TIME-WAIT entries linger for a minute."""
    linger = struct.pack("ii", 1, 0)
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        sock.close()


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) milliseconds of one run, output to /dev/null."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, env=env, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall * 1000, cpu * 1000


def time_runs(
    commands: dict[str, list[str]], repeats: int, env: dict[str, str]
) -> dict[str, list[tuple[float, float]]]:
    """Timings per command, the commands interleaved so load drifts hit all alike."""
    for argv in commands.values():  # warm caches once
        subprocess.run(argv, stdout=subprocess.DEVNULL, env=env, check=True)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, argv in commands.items():
            times[name].append(run_once(argv, env))
    return times


def count_lines(argv: list[str], env: dict[str, str]) -> int:
    return subprocess.run(argv, capture_output=True, env=env, check=True).stdout.count(b"\n")


def report(
    args: argparse.Namespace, times: dict[str, list[tuple[float, float]]], lines: dict[str, int]
) -> str:
    wall = {name: [w for w, _ in runs] for name, runs in times.items()}
    cpu = {name: [c for _, c in runs] for name, runs in times.items()}
    med = {name: statistics.median(values) for name, values in wall.items()}
    cpu_med = {name: statistics.median(values) for name, values in cpu.items()}
    rows = [
        f"| `{name}` | {med[name]:.1f} | {min(wall[name]):.1f} | {cpu_med[name]:.1f}"
        f" | {lines.get(name, '')} |"
        for name in times
    ]
    plain = med["sockkit ss -tan"] / med["ss -tan"]
    procs = med["sockkit ss -tanp"] / med["ss -tanp"]
    plain_cpu = cpu_med["sockkit ss -tan"] / cpu_med["ss -tan"]
    procs_cpu = cpu_med["sockkit ss -tanp"] / cpu_med["ss -tanp"]
    startup = med["python -c pass"]
    bare = med["sockkit ss -tan (python -S)"] / med["ss -tan"]
    bare_cpu = cpu_med["sockkit ss -tan (python -S)"] / cpu_med["ss -tan"]
    command = "python benchmarks/ss_speed.py" + "".join(
        (
            f" --pairs {args.pairs}" if args.pairs != 5000 else "",
            f" --repeats {args.repeats}" if args.repeats != 15 else "",
            " --private-net" if args.private_net else "",
        )
    )
    ss_version = subprocess.run(["ss", "-V"], capture_output=True, text=True).stdout.strip()
    return "\n".join(
        [
            "# `sockkit ss` speed against iproute2 `ss`",
            "",
            f"{2 * args.pairs:,} loopback TCP sockets ({args.pairs:,} connected pairs) and one"
            " listener,",
            "held open by the benchmark process"
            + (" in a private network namespace" if args.private_net else "")
            + f"; each command run {args.repeats} times,",
            "interleaved, output to /dev/null.  Times are of the whole process, interpreter"
            " start-up",
            "included: wall clock (median and best) and CPU (user + system, median).",
            "",
            f"Command: `{command}`",
            "",
            "| command | wall median ms | wall best ms | CPU median ms | lines printed |",
            "|---|---:|---:|---:|---:|",
            *rows,
            "",
            f"- `sockkit ss -tan` / `ss -tan`: **{plain:.2f}x** wall, {plain_cpu:.2f}x CPU"
            " (target: 3x)",
            f"- `sockkit ss -tanp` / `ss -tanp`: **{procs:.2f}x** wall, {procs_cpu:.2f}x CPU"
            " (target: 2x)",
            f"- of `sockkit ss -tan`'s {med['sockkit ss -tan']:.0f} ms, {startup:.0f} ms is the"
            " bare interpreter start-up (`python -c pass`)",
            f"- without `site` (`python -S`, which skips any `.pth` start-up hooks installed"
            f" on this host): `sockkit ss -tan` / `ss -tan` = {bare:.2f}x wall,"
            f" {bare_cpu:.2f}x CPU",
            "",
            f"Machine: {platform.platform()}, {os.cpu_count()} CPUs (shared), Python"
            f" {platform.python_version()}, {ss_version};"
            f" {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--private-net", action="store_true", help="run in a new network namespace")
    parser.add_argument("--no-write", action="store_true", help="print, do not write the results")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if shutil.which("ss") is None:
        raise SystemExit("iproute2 ss is not installed")
    if args.private_net and not args.inside:
        inner = [sys.executable, *sys.argv, "--inside"]
        script = 'ip link set lo up && exec "$@"'
        raise SystemExit(subprocess.call(["unshare", "--net", "sh", "-c", script, "sh", *inner]))
    env = dict(os.environ)
    src = str(ROOT / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    subprocess.run([sys.executable, "-m", "compileall", "-q", src + "/sockkit"], check=True)
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "sockkit"
        script.write_text(CONSOLE_SCRIPT)
        sockkit = [sys.executable, str(script), "ss"]
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "ss -tan": ["ss", "-tan"],
            "sockkit ss -tan": [*sockkit, "-tan"],
            "python -m sockkit ss -tan": [sys.executable, "-m", "sockkit", "ss", "-tan"],
            "ss -tanp": ["ss", "-tanp"],
            "sockkit ss -tanp": [*sockkit, "-tanp"],
            # without site: what the interpreter costs without this host's .pth hooks
            "python -S -c pass": [sys.executable, "-S", "-c", "pass"],
            "sockkit ss -tan (python -S)": [sys.executable, "-S", str(script), "ss", "-tan"],
        }
        sockets = open_pairs(args.pairs)
        try:
            lines = {
                name: count_lines(argv, env) for name, argv in commands.items() if "ss" in name
            }
            times = time_runs(commands, args.repeats, env)
        finally:
            close_without_time_wait(sockets)
    text = report(args, times, lines)
    print(text)
    if not args.no_write:
        RESULTS.write_text(text)
        print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
