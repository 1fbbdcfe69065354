#!/usr/bin/env python3
"""Small-message speed, HAProxy and sockkit relay builds run side by side, alternated.

For a busy machine: every relay is started once and kept running (all pinned
to CPU 0; redis-server and redis-benchmark on CPU 1), then each round runs
redis-benchmark (PING and SET, 50 connections) through each relay in turn,
order rotated per round, and the ratio to HAProxy is taken within the round
so load changes between rounds cancel out.  ``--sockkit NAME=SRC`` adds a
sockkit relay running the sources in SRC (a checkout's ``src``), so an older
build can be compared in the same run.

    python3 benchmarks/relay_pairs.py --rounds 8 --sockkit new=src --sockkit old=/tmp/old/src
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from relay import ROOT, free_port, haproxy_argv, pinned, redis, running


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--requests", type=int, default=50000)
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--sockkit", action="append", default=[], metavar="NAME=SRC")
    args = parser.parse_args()
    builds = dict(item.split("=", 1) for item in args.sockkit) or {"sockkit": str(ROOT / "src")}
    relay_cpu, client_cpu = ("0", "1") if (os.cpu_count() or 1) >= 2 else ("0", "0")
    python = str(ROOT / ".venv/bin/python")
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmpdir, ExitStack() as stack:
        backend = free_port()
        stack.enter_context(
            running(
                pinned(
                    client_cpu,
                    [
                        "redis-server",
                        "--port",
                        str(backend),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ],
                ),
                backend,
            )
        )
        fronts = {"haproxy": free_port()}
        pids: dict[str, int] = {}
        cfg = Path(tmpdir) / "haproxy.cfg"
        pids["haproxy"] = stack.enter_context(
            running(
                pinned(relay_cpu, haproxy_argv(cfg, {fronts["haproxy"]: backend})),
                fronts["haproxy"],
            )
        ).pid
        for name, src in builds.items():
            fronts[name] = free_port()
            env_src = str(Path(src).resolve())
            argv = [
                "env",
                f"PYTHONPATH={env_src}",
                python,
                "-m",
                "sockkit",
                "relay",
                f"127.0.0.1:{fronts[name]}",
                f"127.0.0.1:{backend}",
                "--log-level",
                "warning",
            ]
            pids[name] = stack.enter_context(running(pinned(relay_cpu, argv), fronts[name])).pid
        names = list(fronts)
        for rnd in range(args.rounds):
            order = names[rnd % len(names) :] + names[: rnd % len(names)]
            got = {}
            spent: dict[str, float] = {}
            for name in order:
                before = cpu_seconds(pids[name])
                out = redis(fronts[name], "ping,set", args.conns, args.requests, client_cpu)
                spent[name] = cpu_seconds(pids[name]) - before
                got[name] = out
            for name in names:
                r = results.setdefault(name, {})
                for test, key in (("PING_INLINE", "PING"), ("SET", "SET")):
                    rps = got[name].get(test, (float("nan"), 0.0))[0]
                    base = got["haproxy"].get(test, (float("nan"), 0.0))[0]
                    r.setdefault(key, []).append(rps)
                    r.setdefault(key + " ratio", []).append(rps / base)
                # CPU time the relay spent per request: far less sensitive to a busy machine
                r.setdefault("cpu", []).append(spent[name] / (2 * args.requests) * 1e6)
                r.setdefault("cpu ratio", []).append(spent[name] / spent["haproxy"])
            line = ", ".join(
                f"{n} PING {got[n].get('PING_INLINE', (0,))[0]:,.0f} SET {got[n].get('SET', (0,))[0]:,.0f}"
                for n in names
            )
            print(f"round {rnd + 1}: {line}", file=sys.stderr)
    print(
        f"{args.rounds} rounds, {args.conns} conns, {args.requests} requests per test;"
        f" relays on CPU {relay_cpu}, redis on CPU {client_cpu}\n"
    )
    print(
        "| relay | PING req/s (median) | SET req/s (median) | PING / HAProxy | SET / HAProxy"
        " | relay CPU µs per request | CPU / HAProxy |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in names:
        r = results[name]
        print(
            f"| {name} | {statistics.median(r['PING']):,.0f} | {statistics.median(r['SET']):,.0f}"
            f" | {statistics.median(r['PING ratio']):.2f}"
            f" ({', '.join(f'{v:.2f}' for v in r['PING ratio'])})"
            f" | {statistics.median(r['SET ratio']):.2f}"
            f" ({', '.join(f'{v:.2f}' for v in r['SET ratio'])})"
            f" | {statistics.median(r['cpu']):.1f} | {statistics.median(r['cpu ratio']):.2f}"
            f" ({', '.join(f'{v:.2f}' for v in r['cpu ratio'])}) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
