"""Out of descriptors: the relay backs off instead of spinning, says so once, and recovers."""

from __future__ import annotations

import re
import resource
import socket
import subprocess
import threading
import time
from pathlib import Path

from tests.conftest import cli_env, sockkit_argv
from tests.relay.conftest import Peer


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


def test_emfile_backs_off_and_recovers(peer: Peer) -> None:
    def few_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))

    proc = subprocess.Popen(
        sockkit_argv("relay", "127.0.0.1:0", peer.address),
        stderr=subprocess.PIPE,
        env=cli_env(),
        preexec_fn=few_descriptors,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    port = int(re.search(r":(\d+) ", proc.stderr.readline().decode()).group(1))  # type: ignore[union-attr]
    threading.Thread(
        target=lambda: lines.extend(line.decode() for line in proc.stderr), daemon=True
    ).start()
    clients = []
    try:
        for _ in range(30):  # two descriptors each in the relay: it runs out
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            clients.append(sock)
        time.sleep(0.5)
        cpu_before = _cpu_seconds(proc.pid)
        time.sleep(1.5)
        spent = _cpu_seconds(proc.pid) - cpu_before
        assert spent < 0.3, f"relay used {spent:.2f} s of CPU in 1.5 s while out of descriptors"
        # One line per episode (a refused client frees a descriptor and ends one), not per try.
        warnings = [line for line in lines if line.startswith("cannot accept")]
        assert 1 <= len(warnings) <= 30 and "retrying every 0.1s" in warnings[0]
        for sock in clients:
            sock.close()
        time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.settimeout(5)
            sock.sendall(b"again")
            assert sock.recv(10) == b"again"
    finally:
        for sock in clients:
            sock.close()
        proc.terminate()
        proc.wait(10)
