#!/usr/bin/env python3
"""Relays side by side in one sitting, alternated: HAProxy, socat and sockkit builds.

For a busy machine: every relay is started once and kept running, pinned to
``--relay-cpu`` (default CPU 1); the backends (redis-server, an echo server,
iperf3) and the load generators run on ``--load-cpu`` (default CPU 0).  Each
round runs, through each path in turn (order rotated per round):

- redis-benchmark PING and SET, ``--conns`` connections: requests/s, and the
  relay's CPU time per request (far less sensitive to a busy machine);
- rrload, one connection, 64-byte echoes for ``--seconds``: p50 round trip
  in µs (log-linear buckets, ~0.8 %), from which ``direct`` is subtracted;
- iperf3 bulk for ``--seconds``: MB/s, and the relay's CPU seconds per GB.

Ratios to ``haproxy`` are taken within each round, so load changes between
rounds cancel out.  ``haproxy`` runs with ``nbthread 1``; ``haproxy-auto``
runs with HAProxy's default thread count (one per CPU it may use, so one
when pinned to one CPU: the script prints what it started).
``--sockkit NAME=SRC[,VAR=VALUE...]`` adds a sockkit relay running the
sources in SRC (a checkout's ``src``) with extra environment, so an older
build, or the Python path, can be compared in the same run:

    python3 benchmarks/relay_pairs.py --rounds 6 --sockkit new=src \\
        --sockkit python-path=src,SOCKKIT_RELAY_FASTPATH=0 --sockkit old=/tmp/old/src
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from relay import ROOT, free_port, haproxy_argv, iperf, pinned, redis, running

RRLOAD_C = Path("/work/shared/tools/rrload.c")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def rrload(binary: str, port: int, seconds: int, cpu: str) -> float:
    """p50 round trip in µs of 64-byte echoes on one connection; NaN on failure."""
    argv = [binary, "--conns", "1", "--size", "64", "--warmup", "0.5"]
    argv += ["--duration", str(seconds), f"127.0.0.1:{port}"]
    out = subprocess.run(pinned(cpu, argv), capture_output=True, timeout=seconds + 30)
    try:
        return float(json.loads(out.stdout)["p50_us"])
    except (ValueError, KeyError):
        return float("nan")


def start_paths(
    stack: ExitStack, args: argparse.Namespace, backends: dict[str, int], tmp: Path
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Every relay, started once: front ports and relay pids per backend, by path name."""
    fronts: dict[str, dict[str, int]] = {"direct": dict(backends)}
    pids: dict[str, dict[str, int]] = {}
    cpu = args.relay_cpu
    for name, nbthread in (("haproxy", 1), ("haproxy-auto", None)):
        fronts[name] = {key: free_port() for key in backends}
        cfg = tmp / f"{name}.cfg"
        argv = haproxy_argv(cfg, {fronts[name][k]: backends[k] for k in backends}, nbthread)
        proc = stack.enter_context(running(pinned(cpu, argv), *fronts[name].values()))
        pids[name] = dict.fromkeys(backends, proc.pid)
    python = str(ROOT / ".venv/bin/python")
    for name, spec in [("socat", ""), *(item.split("=", 1) for item in args.sockkit)]:
        fronts[name] = {key: free_port() for key in backends}
        for key, back in backends.items():
            front = fronts[name][key]
            if name == "socat":
                argv = ["socat", f"TCP-LISTEN:{front},bind=127.0.0.1,fork,reuseaddr"]
                argv.append(f"TCP:127.0.0.1:{back}")
            else:
                src, *env = spec.split(",")
                argv = ["env", f"PYTHONPATH={Path(src).resolve()}", *env, python, "-m"]
                argv += ["sockkit", "relay", f"127.0.0.1:{front}", f"127.0.0.1:{back}"]
                argv += ["--log-level", "warning"]
            proc = stack.enter_context(running(pinned(cpu, argv), front))
            if name != "socat":  # socat's work is in its forked children
                pids.setdefault(name, {})[key] = proc.pid
    return fronts, pids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=40000)
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=3, help="rrload and iperf3 time per run")
    parser.add_argument("--relay-cpu", default="1")
    parser.add_argument("--load-cpu", default="0")
    parser.add_argument("--no-socat", action="store_true", help="leave socat out")
    parser.add_argument("--sockkit", action="append", default=[], metavar="NAME=SRC[,VAR=VAL]")
    args = parser.parse_args()
    args.sockkit = args.sockkit or [f"sockkit={ROOT / 'src'}"]
    load = args.load_cpu
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmpdir, ExitStack() as stack:
        tmp = Path(tmpdir)
        binary = str(tmp / "rrload")
        subprocess.run(["cc", "-O2", "-o", binary, str(RRLOAD_C)], check=True)
        backends = {"redis": free_port(), "echo": free_port(), "iperf": free_port()}
        redis_argv = ["redis-server", "--port", str(backends["redis"]), "--bind", "127.0.0.1"]
        redis_argv += ["--save", "", "--appendonly", "no"]
        stack.enter_context(running(pinned(load, redis_argv), backends["redis"]))
        echo_argv = [str(ROOT / ".venv/bin/python"), "-m", "sockkit", "serve", "echo"]
        echo_argv += [f"127.0.0.1:{backends['echo']}", "--engine", "epoll"]
        stack.enter_context(running(pinned(load, echo_argv), backends["echo"]))
        iperf_argv = ["iperf3", "-s", "-B", "127.0.0.1", "-p", str(backends["iperf"])]
        stack.enter_context(running(pinned(load, iperf_argv), backends["iperf"]))
        fronts, pids = start_paths(stack, args, backends, tmp)
        if args.no_socat:
            del fronts["socat"]
        for name in ("haproxy", "haproxy-auto"):
            print(f"{name}: {threads(pids[name]['redis'])} thread(s)", file=sys.stderr)
        names = list(fronts)
        for rnd in range(args.rounds):
            order = names[rnd % len(names) :] + names[: rnd % len(names)]
            got: dict[str, dict[str, float]] = {name: {} for name in names}
            for name in order:
                port = fronts[name]
                pid = pids.get(name, {}).get("redis")
                before = cpu_seconds(pid) if pid else 0.0
                out = redis(port["redis"], "ping,set", args.conns, args.requests, load)
                if pid:
                    spent = cpu_seconds(pid) - before
                    got[name]["cpu µs/req"] = spent / (2 * args.requests) * 1e6
                got[name]["PING"] = out.get("PING_INLINE", (float("nan"), 0.0))[0]
                got[name]["SET"] = out.get("SET", (float("nan"), 0.0))[0]
                got[name]["p50 µs"] = rrload(binary, port["echo"], args.seconds, load)
                pid = pids.get(name, {}).get("iperf")
                before = cpu_seconds(pid) if pid else 0.0
                got[name]["bulk MB/s"] = iperf(port["iperf"], args.seconds, load)
                if pid:
                    spent = cpu_seconds(pid) - before
                    moved = got[name]["bulk MB/s"] * args.seconds / 1000  # GB, about
                    got[name]["cpu s/GB"] = spent / moved if moved > 0 else float("nan")
            for name in names:
                r = results.setdefault(name, {})
                for key, value in got[name].items():
                    r.setdefault(key, []).append(value)
                    if key != "p50 µs" and key in got["haproxy"]:
                        r.setdefault(key + " ratio", []).append(value / got["haproxy"][key])
                added = got[name]["p50 µs"] - got["direct"]["p50 µs"]
                r.setdefault("added p50 µs", []).append(added)
            line = ", ".join(
                f"{n} PING {got[n]['PING']:,.0f} SET {got[n]['SET']:,.0f}"
                f" p50 {got[n]['p50 µs']:.1f} bulk {got[n]['bulk MB/s']:,.0f}"
                for n in names
            )
            print(f"round {rnd + 1}: {line}", file=sys.stderr)
    report(args, names, results)
    return 0


def report(
    args: argparse.Namespace, names: list[str], results: dict[str, dict[str, list[float]]]
) -> None:
    def med(name: str, key: str) -> float:
        values = [v for v in results[name].get(key, []) if v == v]
        return statistics.median(values) if values else float("nan")

    def spread(name: str, key: str) -> str:
        return ", ".join(f"{v:.2f}" for v in results[name].get(key, []))

    print(
        f"{args.rounds} rounds, {args.conns} conns, {args.requests} requests per redis test,"
        f" {args.seconds} s rrload/iperf3; relays on CPU {args.relay_cpu},"
        f" backends and load on CPU {args.load_cpu}; medians, ratios to haproxy"
        " (nbthread 1) within each round\n"
    )
    print(
        "| path | PING req/s | SET req/s | PING / HAProxy | SET / HAProxy"
        " | relay CPU µs/req | CPU / HAProxy | 1-conn p50 µs | added p50 µs"
        " | bulk MB/s | bulk / HAProxy | bulk CPU s/GB | CPU / HAProxy |"
    )
    print("|---" * 13 + "|")
    for n in names:
        print(
            f"| {n} | {med(n, 'PING'):,.0f} | {med(n, 'SET'):,.0f}"
            f" | {med(n, 'PING ratio'):.2f} | {med(n, 'SET ratio'):.2f}"
            f" | {med(n, 'cpu µs/req'):.1f} | {med(n, 'cpu µs/req ratio'):.2f}"
            f" | {med(n, 'p50 µs'):.1f} | {med(n, 'added p50 µs'):.1f}"
            f" | {med(n, 'bulk MB/s'):,.0f} | {med(n, 'bulk MB/s ratio'):.2f}"
            f" | {med(n, 'cpu s/GB'):.2f} | {med(n, 'cpu s/GB ratio'):.2f} |"
        )
    print("\nPer-round ratios to haproxy:\n")
    for n in names:
        if n in ("direct", "haproxy"):
            continue
        print(
            f"- {n}: PING {spread(n, 'PING ratio')}; SET {spread(n, 'SET ratio')};"
            f" CPU {spread(n, 'cpu µs/req ratio')}; bulk {spread(n, 'bulk MB/s ratio')};"
            f" bulk CPU {spread(n, 'cpu s/GB ratio')};"
            f" added p50 µs {', '.join(f'{v:.1f}' for v in results[n]['added p50 µs'])}"
        )
    print(
        "- haproxy added p50 µs "
        + ", ".join(f"{v:.1f}" for v in results["haproxy"]["added p50 µs"])
    )
    print("\nraw: " + json.dumps(results))


if __name__ == "__main__":
    sys.exit(main())
