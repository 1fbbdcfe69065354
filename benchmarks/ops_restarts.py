"""Failed connections while sockkit serve reloads, and while its workers are SIGKILLed.

Usage (from the checkout)::

    .venv/bin/python benchmarks/ops_restarts.py reload --reloads 10
    .venv/bin/python benchmarks/ops_restarts.py kill --workers 4 --seconds 20

``reload``: ``sockkit serve echo`` (epoll), with ``sockkit bench --mode connect``
running throughout; every 2 s the current generation gets SIGHUP and the
script waits for the new one's pid in the log before the next.
``kill``: ``sockkit serve echo --workers N`` (epoll); one worker is SIGKILLed
every second while ``sockkit bench --mode connect`` runs.
Each prints bench's JSON result (``errors`` and ``conn_failures`` are the
failed connections, ``msgs_per_s`` the connections per second) and what was
done.  The server is pinned to CPU 0 and the load generator to CPU 1.
``SOCKKIT_SRC=DIR`` runs the server from another checkout's ``src``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# SOCKKIT_SRC=/other/checkout/src measures another version (e.g. the
# SO_REUSEPORT-per-worker supervisor) with the same script.
ENV = dict(os.environ, PYTHONPATH=os.environ.get("SOCKKIT_SRC", str(ROOT / "src")))
LISTENING = re.compile(rb"listening on tcp://127\.0\.0\.1:(\d+)")
NEW_GENERATION = re.compile(rb"reload: new generation \(pid (\d+)\)")


class Server:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [
                "taskset",
                "-c",
                "0",
                sys.executable,
                "-m",
                "sockkit",
                "serve",
                "echo",
                "127.0.0.1:0",
                "--engine",
                "epoll",
                "--log-level",
                "warning",
                *args,
            ],
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=ENV,
        )
        self.log = b""
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        self.port = int(self.wait(LISTENING)[0])

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self.lock:
                self.log += line

    def wait(self, pattern: re.Pattern[bytes], count: int = 1, timeout: float = 60) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = pattern.findall(self.log)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise RuntimeError(self.log.decode(errors="replace"))


def bench(port: int, seconds: float, conns: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            "taskset",
            "-c",
            "1",
            sys.executable,
            "-m",
            "sockkit",
            "bench",
            f"127.0.0.1:{port}",
            "--mode",
            "connect",
            "--conns",
            str(conns),
            "--duration",
            str(seconds),
            "--warmup",
            "0",
            "--json",
        ],
        stdout=subprocess.PIPE,
        env=ENV,
    )


def reload_run(args: argparse.Namespace) -> dict[str, object]:
    server = Server()
    pids = [server.proc.pid]
    load = bench(server.port, 2.0 * args.reloads + 3, args.conns)
    try:
        time.sleep(1.5)
        for n in range(1, args.reloads + 1):
            os.kill(pids[-1], signal.SIGHUP)
            pids.append(int(server.wait(NEW_GENERATION, n)[-1]))
            time.sleep(2.0)
        out, _ = load.communicate(timeout=120)
    finally:
        os.kill(pids[-1], signal.SIGTERM)
        server.proc.wait(30)
    return {"reloads": args.reloads, "generations": pids, "bench": json.loads(out)}


def kill_run(args: argparse.Namespace) -> dict[str, object]:
    server = Server("--workers", str(args.workers))
    load = bench(server.port, args.seconds + 2, args.conns)
    killed = []
    try:
        time.sleep(1.0)
        for _ in range(args.seconds):
            children = subprocess.run(
                ["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True
            ).stdout.split()
            if children:
                pid = int(children[len(killed) % len(children)])
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(1.0)
        out, _ = load.communicate(timeout=120)
    finally:
        server.proc.terminate()
        server.proc.wait(30)
    return {"workers": args.workers, "killed": len(killed), "bench": json.loads(out)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("reload", "kill"))
    parser.add_argument("--reloads", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--conns", type=int, default=50)
    args = parser.parse_args()
    result = reload_run(args) if args.what == "reload" else kill_run(args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
