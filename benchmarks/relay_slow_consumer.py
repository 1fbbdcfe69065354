#!/usr/bin/env python3
"""A slow consumer through sockkit relay: the relay's RSS must not grow with the backlog.

A source sends --total bytes at once; the client behind the relay reads at
--rate bytes/s; the relay's RSS (VmRSS from /proc) is sampled once a second.
Loopback only; bounded by --total / --rate (+ a margin).  Prints one
Markdown line with the RSS before, the peak, and the growth.

    python3 benchmarks/relay_slow_consumer.py --total 100M --rate 100k
    python3 benchmarks/relay_slow_consumer.py --total 100M --rate 100k --toxic latency:latency=1
"""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3}


def size(text: str) -> int:
    match = re.fullmatch(r"(\d+)([kmg]?)", text.lower())
    if not match:
        raise argparse.ArgumentTypeError(f"bad size {text!r}")
    return int(match.group(1)) * UNITS[match.group(2)]


def rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1))  # type: ignore[union-attr]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=size, default=size("100M"))
    parser.add_argument("--rate", type=size, default=size("100k"))
    parser.add_argument("--toxic", action="append", default=[])
    args = parser.parse_args()

    source = socket.create_server(("127.0.0.1", 0))

    def send() -> None:
        conn, _ = source.accept()
        with conn:
            block = b"x" * 65536
            left = args.total
            while left > 0:
                conn.sendall(block[: min(left, len(block))])
                left -= min(left, len(block))

    threading.Thread(target=send, daemon=True).start()
    argv = [str(ROOT / ".venv/bin/python"), "-m", "sockkit", "relay", "127.0.0.1:0"]
    argv += [f"127.0.0.1:{source.getsockname()[1]}"]
    for toxic in args.toxic:
        argv += ["--toxic", toxic]
    relay = subprocess.Popen(argv, stderr=subprocess.PIPE)
    assert relay.stderr is not None
    port = int(re.search(rb":(\d+) ", relay.stderr.readline()).group(1))  # type: ignore[union-attr]
    time.sleep(0.5)
    before = peak = rss_kib(relay.pid)
    got = 0
    started = last = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        while got < args.total:
            data = sock.recv(16 * 1024)
            if not data:
                break
            got += len(data)
            ahead = got / args.rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
            if time.monotonic() - last >= 1:
                peak, last = max(peak, rss_kib(relay.pid)), time.monotonic()
    took = time.monotonic() - started
    relay.terminate()
    relay.wait(10)
    toxics = " ".join(args.toxic) or "none"
    print(
        f"| {args.total:,} B at {args.rate:,} B/s | toxics: {toxics} | received {got:,} B"
        f" in {took:.0f} s | RSS before {before} KiB, peak {peak} KiB,"
        f" growth {peak - before} KiB |"
    )
    return 0 if got == args.total else 1


if __name__ == "__main__":
    sys.exit(main())
