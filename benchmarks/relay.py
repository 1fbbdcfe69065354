#!/usr/bin/env python3
"""Relay speed side by side: direct vs HAProxy (mode tcp) vs socat vs sockkit relay.

Loopback only, bounded: for each round and each path (order rotated per round),
iperf3 bulk for --seconds, redis-benchmark PING and SET with 50 connections
for --requests requests each, and redis-benchmark PING with 1 connection for
its p50.  The relays are pinned to CPU 1 and the backends and clients to
CPU 0, so every path gets the same cores.  Prints a Markdown
table of medians and ratios to HAProxy within this run.

    python3 benchmarks/relay.py --rounds 3 > benchmarks/results/relay-$(date +%F).md
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOCKKIT = [str(ROOT / ".venv/bin/python"), "-m", "sockkit"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def pinned(cpu: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *argv] if shutil.which("taskset") else argv


@contextmanager
def running(argv: list[str], *ports: int) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` running (until the block ends) and listening on each of ``ports``."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for port in ports:
            wait_port(port)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def haproxy_argv(cfg: Path, fronts: dict[int, int], nbthread: int | None = None) -> list[str]:
    """HAProxy in ``mode tcp``, ``nbthread`` threads (None: its default, one per usable CPU)."""
    lines = [
        "global",
        "    maxconn 4096",
        *([f"    nbthread {nbthread}"] if nbthread else []),
        "defaults",
        "    mode tcp",
        "    timeout connect 5s",
        "    timeout client 60s",
        "    timeout server 60s",
    ]
    for front, back in fronts.items():
        lines += [
            f"listen p{front}",
            f"    bind 127.0.0.1:{front}",
            f"    server s 127.0.0.1:{back}",
        ]
    cfg.write_text("\n".join(lines) + "\n")
    return ["haproxy", "-f", str(cfg), "-db"]


@contextmanager
def path(name: str, backends: dict[str, int], cpu: str, tmp: Path) -> Iterator[dict[str, int]]:
    """Front ports for each backend through path ``name``."""
    if name == "direct":
        yield dict(backends)
        return
    fronts = {key: free_port() for key in backends}
    procs = []
    try:
        if name == "haproxy":
            argv = haproxy_argv(tmp / "haproxy.cfg", {fronts[k]: backends[k] for k in backends})
            procs.append(subprocess.Popen(pinned(cpu, argv), stderr=subprocess.DEVNULL))
        else:
            for key, back in backends.items():
                if name == "socat":
                    argv = [
                        "socat",
                        f"TCP-LISTEN:{fronts[key]},bind=127.0.0.1,fork,reuseaddr",
                        f"TCP:127.0.0.1:{back}",
                    ]
                else:
                    argv = [*SOCKKIT, "relay", f"127.0.0.1:{fronts[key]}", f"127.0.0.1:{back}"]
                    argv += ["--log-level", "warning"]
                procs.append(
                    subprocess.Popen(
                        pinned(cpu, argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                    )
                )
        for port in fronts.values():
            wait_port(port)
        yield fronts
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def iperf(port: int, seconds: int, cpu: str) -> float:
    """MB/s received; NaN when iperf3 reports an error twice (e.g. the server still busy)."""
    for _attempt in range(2):
        out = subprocess.run(
            pinned(cpu, ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-J"]),
            capture_output=True,
            timeout=seconds + 30,
        )
        try:
            data = json.loads(out.stdout)
            return float(data["end"]["sum_received"]["bits_per_second"]) / 8 / 1e6
        except (ValueError, KeyError):
            time.sleep(1)
    return float("nan")


def redis(
    port: int, tests: str, conns: int, requests: int, cpu: str
) -> dict[str, tuple[float, float]]:
    out = subprocess.run(
        pinned(
            cpu,
            [
                "redis-benchmark",
                "-p",
                str(port),
                "-t",
                tests,
                "-c",
                str(conns),
                "-n",
                str(requests),
                "--csv",
            ],
        ),
        capture_output=True,
        timeout=300,
    )
    result = {}
    for line in out.stdout.decode().splitlines()[1:]:
        fields = [f.strip('"') for f in line.split(",")]
        result[fields[0]] = (float(fields[1]), float(fields[4]))  # rps, p50 ms
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=3, help="iperf3 time per run")
    parser.add_argument("--requests", type=int, default=50000)
    parser.add_argument(
        "--paths", default="direct,haproxy,socat,sockkit", help="comma-separated paths"
    )
    args = parser.parse_args()
    names = args.paths.split(",")
    relay_cpu, client_cpu = ("1", "0") if (os.cpu_count() or 1) >= 2 else ("0", "0")
    results: dict[str, dict[str, list[float]]] = {n: {} for n in names}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        ports = {"iperf": free_port(), "redis": free_port()}
        iperf_argv = pinned(
            client_cpu, ["iperf3", "-s", "-B", "127.0.0.1", "-p", str(ports["iperf"])]
        )
        redis_argv = pinned(
            client_cpu,
            [
                "redis-server",
                "--port",
                str(ports["redis"]),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
        )
        with running(iperf_argv, ports["iperf"]), running(redis_argv, ports["redis"]):
            for rnd in range(args.rounds):
                order = names[rnd % len(names) :] + names[: rnd % len(names)]
                for name in order:
                    with path(name, ports, relay_cpu, tmp) as fronts:
                        r = results[name]
                        r.setdefault("bulk MB/s", []).append(
                            iperf(fronts["iperf"], args.seconds, client_cpu)
                        )
                        many = redis(fronts["redis"], "ping,set", 50, args.requests, client_cpu)
                        nan = (float("nan"), float("nan"))  # a run that printed no result
                        r.setdefault("PING 50c req/s", []).append(many.get("PING_INLINE", nan)[0])
                        r.setdefault("SET 50c req/s", []).append(many.get("SET", nan)[0])
                        one = redis(fronts["redis"], "ping", 1, args.requests // 5, client_cpu)
                        r.setdefault("1c p50 ms", []).append(one.get("PING_INLINE", nan)[1])
                    print(f"round {rnd + 1} {name} done", file=sys.stderr)
    metrics = ["bulk MB/s", "PING 50c req/s", "SET 50c req/s", "1c p50 ms"]
    med = {
        n: {
            m: statistics.median([v for v in results[n][m] if v == v] or [float("nan")])
            for m in metrics
        }
        for n in names
    }
    print(
        f"{args.rounds} rounds, medians; relays on CPU {relay_cpu}, clients/backends on CPU {client_cpu}\n"
    )
    print("| path | " + " | ".join(metrics) + " | added p50 µs |")
    print("|---" * (len(metrics) + 2) + "|")
    for n in names:
        added = (med[n]["1c p50 ms"] - med["direct"]["1c p50 ms"]) * 1000 if "direct" in med else 0
        cells = [f"{med[n][m]:,.0f}" if "ms" not in m else f"{med[n][m]:.3f}" for m in metrics]
        print(f"| {n} | " + " | ".join(cells) + f" | {added:.0f} |")
    if "haproxy" in med and "sockkit" in med:
        s, h = med["sockkit"], med["haproxy"]
        print("\nsockkit relay / HAProxy, same run:")
        for m in metrics[:3]:
            print(f"- {m}: {s[m] / h[m]:.2f}x")
        if "direct" in med:
            d = med["direct"]["1c p50 ms"]
            print(
                f"- added 1-conn p50: sockkit {1000 * (s['1c p50 ms'] - d):.0f} µs,"
                f" HAProxy {1000 * (h['1c p50 ms'] - d):.0f} µs"
            )
    print("\nraw: " + json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
