"""A real ``sockkit serve`` process: started, its endpoints read from ``listening on``, stopped.

The server's stderr is read by a thread into :attr:`Served.lines` (each line
with its arrival time) for the whole run, so a case can count log lines and
see when a connection was closed without the pipe ever filling.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

__all__ = ["SRC", "Served", "inet_address", "sockkit_env"]

SRC = Path(__file__).resolve().parents[2] / "src"
#: Runs sockkit's own main() with a SIGALRM handler and an interval timer (the EINTR case).
ALARMED = Path(__file__).resolve().parent / "alarmed_sockkit.py"
_LISTENING = re.compile(r"listening on (\S+)")
_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def sockkit_env(**extra: str) -> dict[str, str]:
    """The environment for a child that runs this checkout's sockkit."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def inet_address(endpoint: str) -> tuple[str, int]:
    """``tcp://127.0.0.1:43117`` or ``udp://[::1]:9`` -> (host, port)."""
    rest = endpoint.split("://", 1)[1]
    host, _, port = rest.rpartition(":")
    return host.strip("[]"), int(port)


def _listening_endpoint(line: str) -> str | None:
    """The endpoint of a ``listening on`` line, in the text or the JSON log format."""
    if line.startswith("{"):
        try:
            entry = json.loads(line)
        except ValueError:
            return None
        if isinstance(entry, dict) and entry.get("event") == "listening":
            return str(entry["endpoint"])
        return None
    match = _LISTENING.search(line)
    return match.group(1) if match else None


class Served:
    """``sockkit serve ARGS`` running; use as a context manager (killed on exit if still up)."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        endpoints: int = 1,
        nofile: int | None = None,
        umask: int | None = None,
        alarm_interval: float | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.args = list(args)
        self.lines: list[tuple[float, str]] = []
        self.endpoints: list[str] = []
        if alarm_interval is None:
            argv = [sys.executable, "-m", "sockkit", "serve", *args]
            env = sockkit_env()
        else:
            argv = [sys.executable, str(ALARMED), "serve", *args]
            env = sockkit_env(SOCKKIT_ALARM_INTERVAL=str(alarm_interval))

        def limit() -> None:
            # The server dies with whoever started it, even if that is killed.
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
            if umask is not None:
                os.umask(umask)

        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            preexec_fn=limit,
        )
        self._listened = threading.Event()
        self._wanted = endpoints
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._listened.wait(timeout):
            self.kill()
            raise AssertionError(f"sockkit serve {' '.join(args)} did not start: {self.text()}")
        if len(self.endpoints) < endpoints:
            self.kill()
            raise AssertionError(
                f"sockkit serve {' '.join(args)} exited {self.proc.returncode}: {self.text()}"
            )

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append((time.monotonic(), line))
            endpoint = _listening_endpoint(line)
            if endpoint is not None and len(self.endpoints) < self._wanted:
                self.endpoints.append(endpoint)
                if len(self.endpoints) == self._wanted:
                    self._listened.set()
        self._listened.set()

    # -- what it serves -------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) of the first endpoint (an inet one)."""
        return inet_address(self.endpoints[0])

    def connect(self, timeout: float = 5.0, source: str | None = None) -> socket.socket:
        host, port = self.address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        if source is not None:
            sock.bind((source, 0))
        sock.connect((host, port))
        return sock

    # -- its log ----------------------------------------------------------------

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def matching(self, needle: str, since: float = 0.0) -> list[tuple[float, str]]:
        return [(at, line) for at, line in list(self.lines) if needle in line and at >= since]

    def wait_for_lines(self, needle: str, count: int, timeout: float) -> list[tuple[float, str]]:
        """The first ``count`` log lines containing ``needle``, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.matching(needle)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.01)

    def tracebacks(self) -> list[str]:
        return [line for _, line in self.lines if "Traceback" in line]

    # -- stopping ---------------------------------------------------------------

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait for the exit status (killed after ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        with contextlib.suppress(RuntimeError):
            self._reader.join(5)

    def __enter__(self) -> Served:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.stop(timeout=15)
        self.kill()
