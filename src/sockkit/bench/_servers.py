"""The servers ``bench compare`` measures: sockkit engines and raw peer servers.

A :class:`ServerSpec` says how to start one server on ``127.0.0.1`` with port 0;
:class:`RunningServer` starts it pinned to a CPU, waits for its ``listening on``
line, keeps draining its stderr (so a chatty server never blocks on a full
pipe) and stops it with SIGTERM -- then kills, by PID, any descendant it left.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import sockkit
from sockkit._endpoint import Endpoint, parse_endpoint
from sockkit._errors import SockkitError
from sockkit.bench._procstat import process_start_time, tree_pids

__all__ = ["PEER_MODULES", "RunningServer", "ServerSpec", "discover_servers", "find_peers_dir"]

#: peer script stem -> the module it needs (a peer whose module is missing is skipped)
PEER_MODULES: dict[str, str | None] = {
    "uvloop_protocol_echo": "uvloop",
    "asyncio_protocol_echo": None,
    "asyncio_streams_echo": None,
    "selectors_echo": None,
    "socketserver_threading_echo": None,
    "socketserver_forking_echo": None,
    "trio_echo": "trio",
    "gevent_echo": "gevent",
    "twisted_echo": "twisted",
}
_C_PEER = "c_epoll_echo"
_LISTENING = re.compile(r"listening on (\S+)")
_SRC = str(Path(sockkit.__file__).resolve().parent.parent)


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """How to start one server: ``argv`` gets HOST and PORT appended for peers."""

    name: str
    kind: str  # "engine" or "peer"
    argv: tuple[str, ...]
    #: one process per connection: idle-connection counts are capped for it
    per_connection_process: bool = False
    #: arguments after HOST and PORT (a peer's options)
    extra: tuple[str, ...] = ()


def find_peers_dir() -> Path | None:
    """``benchmarks/peers`` under the working directory, else beside this checkout's ``src``."""
    for base in (Path.cwd(), Path(_SRC).parent):
        candidate = base / "benchmarks" / "peers"
        if candidate.is_dir():
            return candidate
    return None


def _engine_specs(wanted: list[str] | None, skipped: dict[str, str]) -> list[ServerSpec]:
    if importlib.util.find_spec("sockkit.cli.serve") is None:
        skipped["engines"] = "sockkit serve is not in this checkout"
        return []
    from sockkit.engines import ENGINES, available_engines

    available = available_engines()
    specs = []
    for name in ENGINES:
        if wanted is not None and name not in wanted:
            continue
        if name not in available:
            skipped[name] = "engine not available here"
            continue
        argv: tuple[str, ...] = (sys.executable, "-m", "sockkit", "serve", "echo", "127.0.0.1:0")
        argv += ("--engine", name, "--log-level", "warning", "--drain-timeout", "2")
        specs.append(ServerSpec(name, "engine", argv, name == "fork"))
    return specs


def _peer_specs(
    peers_dir: Path | None, wanted: list[str] | None, build_dir: Path, skipped: dict[str, str]
) -> list[ServerSpec]:
    if peers_dir is None:
        skipped["peers"] = "no benchmarks/peers directory found"
        return []
    specs = []
    for stem, module in PEER_MODULES.items():
        if wanted is not None and stem.removesuffix("_echo") not in wanted and stem not in wanted:
            continue
        script = peers_dir / f"{stem}.py"
        if not script.exists():
            skipped[stem] = "peer script not present"
        elif module is not None and importlib.util.find_spec(module) is None:
            skipped[stem] = f"{module} is not installed"
        else:
            specs.append(
                ServerSpec(
                    stem, "peer", (sys.executable, str(script)), stem.endswith("forking_echo")
                )
            )
    # The minimal reactor again on select() and poll(): the baselines for the
    # engines on those system calls (the plain one uses epoll, as
    # selectors.DefaultSelector does on Linux).
    script = peers_dir / "selectors_echo.py"
    for mechanism in ("select", "poll"):
        stem = f"selectors_{mechanism}_echo"
        if script.exists() and (wanted is None or stem in wanted or stem[:-5] in wanted):
            specs.append(
                ServerSpec(stem, "peer", (sys.executable, str(script)), extra=(mechanism,))
            )
    if wanted is None or _C_PEER in wanted or "c_epoll" in wanted:
        binary = _build_c_peer(peers_dir / f"{_C_PEER}.c", build_dir, skipped)
        if binary is not None:
            specs.append(ServerSpec(_C_PEER, "peer", (str(binary),)))
    return specs


def _build_c_peer(source: Path, build_dir: Path, skipped: dict[str, str]) -> Path | None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if not source.exists():
        skipped[_C_PEER] = "source not present"
        return None
    if compiler is None:
        skipped[_C_PEER] = "no C compiler"
        return None
    binary = build_dir / _C_PEER
    done = subprocess.run(
        [compiler, "-O2", "-o", str(binary), str(source)], capture_output=True, timeout=120
    )
    if done.returncode != 0:
        skipped[_C_PEER] = "build failed: " + done.stderr.decode(errors="replace")[:200]
        return None
    return binary


def discover_servers(
    engines: list[str] | None, peers: list[str] | None, build_dir: Path
) -> tuple[list[ServerSpec], dict[str, str]]:
    """Every server to compare, and ``{name: why it was skipped}`` for the others.

    ``engines``/``peers``: names to keep (``None``: all; an empty list: none).
    """
    skipped: dict[str, str] = {}
    specs = _engine_specs(engines, skipped)
    specs += _peer_specs(find_peers_dir(), peers, build_dir, skipped)
    return specs, skipped


class RunningServer:
    """One started server.  Use as a context manager; ``endpoint`` is where it listens."""

    def __init__(self, spec: ServerSpec, cpu: int | None, timeout: float = 20.0) -> None:
        self.spec = spec
        argv = list(spec.argv)
        if spec.kind == "peer":
            argv += ["127.0.0.1", "0", *spec.extra]
        env = dict(os.environ)
        env["PYTHONPATH"] = _SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        preexec = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            # Some peers print their "listening on" line on stdout: read both.
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=preexec,
        )
        self.log: deque[str] = deque(maxlen=50)
        self.endpoint = self._wait_listening(timeout)
        self._drain = threading.Thread(target=self._drain_stderr, daemon=True)
        self._drain.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _wait_listening(self, timeout: float) -> Endpoint:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        buffer = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                text = line.decode(errors="replace")
                self.log.append(text)
                match = _LISTENING.search(text)
                if match:
                    return parse_endpoint(match.group(1))
        self.stop()
        raise SockkitError(f"{self.spec.name} did not start: {' | '.join(self.log)[-300:]}")

    def _drain_stderr(self) -> None:
        assert self.proc.stdout is not None
        with contextlib.suppress(OSError, ValueError):
            for line in self.proc.stdout:
                self.log.append(line.decode(errors="replace").rstrip())

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, wait, then SIGKILL the server and any descendant still alive."""
        # Remember each descendant's start time, so a PID reused meanwhile is never killed.
        descendants = [
            (pid, process_start_time(pid))
            for pid in tree_pids(self.proc.pid)
            if pid != self.proc.pid
        ]
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid, started in descendants:
            if started is not None and process_start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        if self.proc.stdout is not None:
            with contextlib.suppress(OSError):
                self.proc.stdout.close()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
