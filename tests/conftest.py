"""Fixtures every test area shares: running the CLI for real and starting servers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parent.parent / "src")


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a ``python -m sockkit`` child: this checkout's sources first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("NO_COLOR", None)
    env.update(extra)
    return env


def sockkit_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "sockkit", *args]


def run_cli(
    args: Sequence[str], input: bytes | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[bytes]:
    """Run ``sockkit ARGS`` as a real process and wait for it."""
    return subprocess.run(
        sockkit_argv(*args), input=input, capture_output=True, timeout=timeout, env=cli_env()
    )


LISTENING = re.compile(rb"listening on (\S+)")


class ServerProcess:
    """A ``sockkit serve`` child; ``endpoints`` holds what it logged it listens on."""

    def __init__(self, args: Sequence[str], count: int = 1, timeout: float = 15) -> None:
        self.proc = subprocess.Popen(
            sockkit_argv("serve", *args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli_env(),
        )
        self.endpoints: list[str] = []
        self.stderr_lines: list[bytes] = []
        deadline = time.monotonic() + timeout
        assert self.proc.stderr is not None
        while len(self.endpoints) < count:
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"server did not start: {self.stderr_lines!r}")
            line = self.proc.stderr.readline()
            if not line:
                self.proc.wait(5)
                raise AssertionError(f"server exited {self.proc.returncode}: {self.stderr_lines!r}")
            self.stderr_lines.append(line)
            match = LISTENING.search(line)
            if match:
                self.endpoints.append(match.group(1).decode())

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def read_stderr(self) -> bytes:
        assert self.proc.stderr is not None
        return b"".join(self.stderr_lines) + self.proc.stderr.read()


@pytest.fixture
def serve() -> Iterator[type[ServerProcess]]:
    """Start ``sockkit serve`` children with ``serve(args)``; each is stopped at teardown."""
    started: list[ServerProcess] = []

    class _Tracked(ServerProcess):
        def __init__(self, args: Sequence[str], count: int = 1, timeout: float = 15) -> None:
            super().__init__(args, count, timeout)
            started.append(self)

    yield _Tracked
    for server in started:
        server.kill()
