"""Memory per idle connection: sockkit's uvloop/asyncio engine against the raw peers.

Usage (from the checkout; rrload built at /tmp/rrload)::

    ulimit -n 65536; PYTHONPATH=src python benchmarks/aio_memory.py [--conns 10000]

For each server: start it, prime it with one short rr run, read RSS and PSS
(/proc/PID/status, /proc/PID/smaps_rollup), hold ``--conns`` idle connections
with rrload ``--mode idle`` (each has done one verified 64-byte echo), read
again once rrload prints "ready", and report the difference per connection.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from aio_cpu import RRLOAD, load, start


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of ``pid`` in KiB."""
    rss = pss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


def measure(name: str, conns: int) -> dict[str, object]:
    proc, port = start(name)
    try:
        load(port, "a", 0.5, 0.0)
        before = memory_kib(proc.pid)
        idle = subprocess.Popen(
            [
                RRLOAD,
                "--mode",
                "idle",
                "--conns",
                str(conns),
                "--size",
                "64",
                "--duration",
                "3",
                f"127.0.0.1:{port}",
            ],
            stdout=subprocess.PIPE,
        )
        assert idle.stdout is not None
        ready = json.loads(idle.stdout.readline())
        held = memory_kib(proc.pid)
        idle.wait(30)
        return {
            "server": name,
            "conns": conns,
            "ready": ready,
            "rss_before_kib": before[0],
            "rss_held_kib": held[0],
            "pss_before_kib": before[1],
            "pss_held_kib": held[1],
            "rss_per_conn_kib": (held[0] - before[0]) / conns,
            "pss_per_conn_kib": (held[1] - before[1]) / conns,
        }
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conns", type=int, default=10000)
    parser.add_argument("--servers", default="raw-uvloop,sockkit-uvloop,sockkit-uvloop-log")
    args = parser.parse_args()
    for name in args.servers.split(","):
        print(json.dumps(measure(name, args.conns)), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
