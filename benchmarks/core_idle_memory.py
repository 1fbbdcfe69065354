"""Memory per idle connection, old checkout against this one, alternating rounds.

Usage (from the checkout; rrload built; ``ulimit -n`` above the largest count)::

    python benchmarks/core_idle_memory.py /tmp/sockkit-old --rrload /tmp/rrload
    python benchmarks/core_idle_memory.py /tmp/sockkit-old --engines epoll --minimal --rounds 5

``--minimal`` adds the hand-written selectors reactor (``peers/selectors_echo.py``,
with the engine's poller) to each round, the floor a reactor engine is held to.

For each engine and round, each version is started afresh, primed with one
connection's echo, measured (PSS of the server and its children, from
/proc/PID/smaps_rollup), then rrload ``--mode idle`` holds N connections that
have each done one verified 64-byte echo; once it prints "ready" the server
is measured again.  Prints the median KiB per connection of each version.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import time

COUNTS = {"uvloop": 2000, "asyncio": 2000, "epoll": 2000, "thread": 500, "fork": 100}


def _pss(pid: int) -> int:
    total = 0
    pids = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                pids.append(int(entry))
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


MINIMAL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers", "selectors_echo.py")


def _one(src: str, engine: str, count: int, rrload: str) -> float:
    env = {**os.environ, "PYTHONPATH": f"{src}/src"}
    if src == "minimal":
        argv = [sys.executable, MINIMAL, "127.0.0.1", "0", engine]
    else:
        argv = [sys.executable, "-m", "sockkit", "serve", "echo", "127.0.0.1:0", "--engine", engine]
        argv += ["--log-level", "warning", "--max-conns", "100000"]
    # sockkit announces its port on stderr, the selectors reactor on stdout.
    announce = "stdout" if src == "minimal" else "stderr"
    proc = subprocess.Popen(argv, env=env, **{announce: subprocess.PIPE})  # type: ignore[call-overload]
    try:
        stream = getattr(proc, announce)
        line = stream.readline().decode()
        port = int(re.search(r":(\d+)\s*$", line.strip()).group(1))  # type: ignore[union-attr]
        with socket.create_connection(("127.0.0.1", port)) as probe:
            probe.sendall(b"x")
            probe.recv(1)
        time.sleep(0.5)
        before = _pss(proc.pid)
        load = subprocess.Popen(
            [rrload, "--mode", "idle", "--conns", str(count), "--size", "64", "--duration", "30"]
            + [f"127.0.0.1:{port}"],
            stdout=subprocess.PIPE,
        )
        assert load.stdout is not None
        ready = load.stdout.readline()
        assert b"ready" in ready, ready
        time.sleep(1.0)
        after = _pss(proc.pid)
        load.kill()
        load.wait()
        return (after - before) / count
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("old")
    parser.add_argument("--rrload", default="/tmp/rrload")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--engines", default="uvloop,epoll,thread,fork", help="comma-separated")
    parser.add_argument("--minimal", action="store_true", help="also the selectors reactor")
    parser.add_argument("--count", type=int, help="connections (default: per engine)")
    args = parser.parse_args()
    versions = [("old", args.old), ("new", os.getcwd())]
    if args.minimal:
        versions.append(("minimal", "minimal"))
    for engine in args.engines.split(","):
        count = args.count or COUNTS[engine]
        results: dict[str, list[float]] = {name: [] for name, _ in versions}
        for round_ in range(args.rounds):
            for name, src in versions if round_ % 2 == 0 else versions[::-1]:
                results[name].append(_one(src, engine, count, args.rrload))
        line = "  ".join(
            f"{name} {statistics.median(v):7.2f} KiB/conn [{', '.join(f'{x:.2f}' for x in v)}]"
            for name, v in results.items()
        )
        print(f"{engine:7s} x{count:<5d} {line}", flush=True)


if __name__ == "__main__":
    main()
