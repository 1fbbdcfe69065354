"""Chat fan-out: one room in one process vs the same room over two servers through Redis.

Usage (from the checkout, with redis-server installed)::

    .venv/bin/python benchmarks/chat_fanout.py --receivers 20 --lines 3000 --rounds 3

Each round starts its own servers (``sockkit serve chat``) pinned with taskset,
connects one sender and RECEIVERS receivers, and has the sender send LINES
lines with a window: line k goes out once every receiver has line k - WINDOW,
so nothing queues without bound and the rate is what the path sustains.
Each line carries its send time; every receiver notes when it got it.

Setups, alternated round by round so machine noise hits both alike:

- ``in-process``: one server, sender and receivers on it.
- ``redis``: two servers sharing the room through one redis-server; the sender
  is on server A and the receivers are split evenly over A and B.  Two server
  processes on two CPUs, so this measures the whole path, not Redis's cost.
- ``redis-1`` (``--setups``): one server with the backplane on, everyone on it:
  the backplane's own cost beside ``in-process``.

Reports, per setup, the median over rounds of deliveries/s (lines received by
all receivers per second) and of the p50/p99 delivery latency; ``--json FILE``
keeps every round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(rb"listening on tcp://([\d.]+):(\d+)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(cpu: str, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen(
        [
            "taskset",
            "-c",
            cpu,
            sys.executable,
            "-m",
            "sockkit",
            "serve",
            "chat",
            "127.0.0.1:0",
            *extra,
        ],
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    match = LISTENING.search(line)
    if match is None:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, int(match.group(2))


async def one_round(
    sender_port: int, receiver_ports: list[int], lines: int, window: int
) -> dict[str, float]:
    readers = []
    for port in receiver_ports:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        readers.append((reader, writer))
    sreader, swriter = await asyncio.open_connection("127.0.0.1", sender_port)
    count = len(readers)
    progress = [0] * count
    latencies: list[float] = []
    advanced = asyncio.Event()

    async def receive(index: int, reader: asyncio.StreamReader) -> None:
        while progress[index] < lines:
            line = await reader.readline()
            if not line:
                raise RuntimeError("receiver closed")
            text = line.rsplit(b"] ", 1)[-1].split()
            if len(text) != 2 or text[0] != b"t":
                continue  # a warm-up line or a notice
            now = time.perf_counter_ns()
            sent = int(text[1])
            latencies.append((now - sent) / 1e6)
            progress[index] += 1
            advanced.set()

    # Warm up: every receiver must hear the sender before timing starts
    # (with Redis, both servers must be subscribed).
    async def warm() -> None:
        while True:
            swriter.write(b"warm\n")
            await swriter.drain()
            try:
                await asyncio.wait_for(
                    asyncio.gather(*(r.readline() for r, _ in readers)), timeout=0.5
                )
                return
            except TimeoutError:
                continue

    await warm()
    await asyncio.sleep(0.5)
    for reader, _ in readers:  # drop the warm-up lines still queued
        while True:
            try:
                await asyncio.wait_for(reader.readline(), timeout=0.2)
            except TimeoutError:
                break
    tasks = [asyncio.create_task(receive(i, r)) for i, (r, _) in enumerate(readers)]
    started = time.perf_counter()
    for k in range(lines):
        while min(progress) < k - window:
            advanced.clear()
            await advanced.wait()
        swriter.write(b"t %d\n" % time.perf_counter_ns())
        if k % 16 == 0:
            await swriter.drain()
    await swriter.drain()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
    elapsed = time.perf_counter() - started
    for _, writer in [*readers, (sreader, swriter)]:
        writer.close()
    latencies.sort()
    return {
        "deliveries_per_s": count * lines / elapsed,
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[int(len(latencies) * 0.99)],
        "seconds": elapsed,
    }


def run_setup(setup: str, args: argparse.Namespace) -> dict[str, float]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        if setup == "in-process":
            proc, port = start_server("0", "--engine", args.engine)
            procs.append(proc)
            ports = [port] * args.receivers
            sender = port
        elif setup == "redis-1":
            redis_port = free_port()
            redis = subprocess.Popen(
                [
                    "taskset",
                    "-c",
                    "1",
                    "redis-server",
                    "--port",
                    str(redis_port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                stdout=subprocess.DEVNULL,
            )
            procs.append(redis)
            time.sleep(0.3)
            url = f"redis://127.0.0.1:{redis_port}"
            proc, port = start_server("0", "--engine", args.engine, "--backplane", url)
            procs.append(proc)
            ports = [port] * args.receivers
            sender = port
        else:
            redis_port = free_port()
            redis = subprocess.Popen(
                [
                    "taskset",
                    "-c",
                    "1",
                    "redis-server",
                    "--port",
                    str(redis_port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                stdout=subprocess.DEVNULL,
            )
            procs.append(redis)
            time.sleep(0.3)
            url = f"redis://127.0.0.1:{redis_port}"
            a, port_a = start_server("0", "--engine", args.engine, "--backplane", url)
            b, port_b = start_server("1", "--engine", args.engine, "--backplane", url)
            procs += [a, b]
            ports = [port_a if i % 2 == 0 else port_b for i in range(args.receivers)]
            sender = port_a
        return asyncio.run(one_round(sender, ports, args.lines, args.window))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receivers", type=int, default=20)
    parser.add_argument("--lines", type=int, default=3000)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--engine", default="epoll")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--setups",
        default="in-process,redis",
        help="comma-separated: in-process, redis (two servers), redis-1 (one server, backplane on)",
    )
    args = parser.parse_args()
    setups = args.setups.split(",")
    results: dict[str, list[dict[str, float]]] = {setup: [] for setup in setups}
    for round_ in range(args.rounds):
        for setup in setups if round_ % 2 == 0 else setups[::-1]:
            result = run_setup(setup, args)
            results[setup].append(result)
            print(
                f"round {round_ + 1} {setup:10s} "
                + " ".join(f"{k}={v:.2f}" for k, v in result.items()),
                flush=True,
            )
    print()
    print("| setup | deliveries/s | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    for setup, rounds in results.items():
        med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        print(
            f"| {setup} | {med['deliveries_per_s']:.0f} | {med['p50_ms']:.2f} | {med['p99_ms']:.2f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
