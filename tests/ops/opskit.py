"""Real peers for the production tests: HAProxy and redis-server on free loopback ports."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parent.parent.parent / "src")
LISTENING = re.compile(rb"listening on (\S+)")


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
    args: Sequence[str], timeout: float = 30, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``sockkit ARGS`` as a real process and wait for it."""
    return subprocess.run(
        sockkit_argv(*args), capture_output=True, timeout=timeout, env=env or cli_env()
    )


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's pick for port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_accepting(port: int, timeout: float = 15.0, host: str = "127.0.0.1") -> None:
    """Return once a TCP connection to ``host:port`` succeeds; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"nothing accepted on {host}:{port} within {timeout} s"
                ) from None
            time.sleep(0.05)


def need(program: str) -> str:
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/bin")
    if path is None:
        pytest.skip(f"{program} is not installed (.ci/run installs it)")
    return path


class HAProxy:
    """``haproxy -db`` with a config the test writes; stopped by :meth:`stop`."""

    def __init__(self, directory: Path, config: str, frontend_port: int) -> None:
        self.config_file = directory / "haproxy.cfg"
        self.config_file.write_text(config)
        check = subprocess.run(
            [need("haproxy"), "-c", "-f", str(self.config_file)], capture_output=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
        self.proc = subprocess.Popen(
            [need("haproxy"), "-db", "-f", str(self.config_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.port = frontend_port
        wait_accepting(frontend_port)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def haproxy_tcp_config(frontend_port: int, servers: list[str], *, extra: str = "") -> str:
    """A TCP-mode config: one frontend on loopback, one backend with ``servers`` lines."""
    lines = "\n".join(f"    server {line}" for line in servers)
    return f"""\
global
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend front
    bind 127.0.0.1:{frontend_port}
{extra}    default_backend back
backend back
    balance roundrobin
{lines}
"""


class RedisServer:
    """A throwaway ``redis-server`` with no persistence on a free loopback port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                need("redis-server"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_accepting(self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
