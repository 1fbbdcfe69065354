"""How fast ``sockkit connect`` pipes bytes through an echo peer (and back), with half-close.

Usage: PYTHONPATH=src python benchmarks/client_pipe.py [MIB] [ROUNDS]

Starts a socat echo peer on loopback (``socat TCP-LISTEN:PORT,fork PIPE``),
sends MIB MiB of random bytes through ``python -m sockkit connect`` ROUNDS
times, checks every reply byte-exact (sha256) and prints the wall time of each
round (process start included) and the median throughput one way.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time


def main() -> None:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    socat = shutil.which("socat")
    if socat is None:
        raise SystemExit("socat is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    peer = subprocess.Popen([socat, f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork", "PIPE"])
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.02)
        payload = os.urandom(mib * 1024 * 1024)
        digest = hashlib.sha256(payload).digest()
        times = []
        for n in range(rounds):
            started = time.perf_counter()
            result = subprocess.run(
                [sys.executable, "-m", "sockkit", "connect", str(port)],
                input=payload,
                capture_output=True,
                check=True,
            )
            elapsed = time.perf_counter() - started
            assert hashlib.sha256(result.stdout).digest() == digest, "reply differs"
            times.append(elapsed)
            print(f"round {n + 1}: {mib} MiB there and back in {elapsed:.3f} s")
        median = statistics.median(times)
        print(f"median {median:.3f} s = {mib / median:.0f} MiB/s each way (process start included)")
    finally:
        peer.terminate()
        peer.wait(5)


if __name__ == "__main__":
    main()
