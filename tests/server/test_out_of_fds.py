"""Out of descriptors: every listener in sockkit backs off instead of spinning, then recovers.

Each server runs under a descriptor limit of 64 while 200 clients arrive: it
must use under 10 % of a core over 3 s (a busy accept loop uses 100 %), and
once the clients leave, a new client must be served within 2 s.
"""

from __future__ import annotations

import os
import re
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from serverkit import cli_env, engine_names

_LIMIT = 64
_CLIENTS = 200
_LISTENING = re.compile(rb"listening on tcp://127\.0\.0\.1:(\d+)")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (_LIMIT, _LIMIT))


def _check(argv: list[str], stdout: Path, served: Callable[[int], bool]) -> None:
    r, w = os.pipe()  # stdin kept open: listen must not see its end
    with open(stdout, "wb") as out:
        proc = subprocess.Popen(
            argv, stdin=r, stdout=out, stderr=subprocess.PIPE, env=cli_env(), preexec_fn=_limited
        )
    os.close(r)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = _LISTENING.search(line)
        assert match, line
        port = int(match.group(1))
        # Keep reading its warnings, so a full pipe cannot be what slows it down.
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        clients = []
        for _ in range(_CLIENTS):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            clients.append(sock)
        time.sleep(1.0)  # let it run out of descriptors
        before = _cpu_seconds(proc.pid)
        time.sleep(3.0)
        used = _cpu_seconds(proc.pid) - before
        assert proc.poll() is None
        assert used < 0.3, f"{used:.2f} s of CPU in 3 s while out of descriptors"
        for sock in clients:
            sock.close()
        started = time.monotonic()
        assert served(port), "no client served after the descriptors were freed"
        assert time.monotonic() - started < 2.0 + 1.0  # margin for a busy machine
    finally:
        proc.kill()
        proc.wait(5)
        os.close(w)


def _echoes(port: int) -> bool:
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                sock.sendall(b"ping")
                if sock.recv(4) == b"ping":
                    return True
        except OSError:
            time.sleep(0.05)
    return False


@pytest.mark.parametrize("engine", engine_names())
def test_serve_backs_off_when_out_of_descriptors(engine: str, tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "sockkit", "serve", "echo", "tcp://127.0.0.1:0"]
    _check([*argv, "--engine", engine], tmp_path / "out", _echoes)


def test_listen_keep_open_backs_off_when_out_of_descriptors(tmp_path: Path) -> None:
    stdout = tmp_path / "out"

    def heard(port: int) -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"marker\n")
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                if b"marker" in stdout.read_bytes():
                    return True
                time.sleep(0.05)
        return False

    argv = [sys.executable, "-m", "sockkit", "listen", "--keep-open", "-v", "tcp://127.0.0.1:0"]
    _check(argv, stdout, heard)
