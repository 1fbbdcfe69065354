"""The servers ``bench compare`` measures, and starting and stopping them.

A :class:`ServerSpec` says how to start one server on ``127.0.0.1`` with port 0;
:func:`builtin_servers` gives sockkit's engines and its :mod:`baselines
<sockkit.bench.baselines>`, each run by :mod:`sockkit.bench._child` through the
library (nothing here needs a source tree or the CLI).  A caller may bring its
own specs (any program that prints ``listening on HOST:PORT``).

:class:`RunningServer` starts one pinned to a CPU, waits for its ``listening
on`` line, keeps draining its output (so a chatty server never blocks on a full
pipe) and stops it with SIGTERM -- then kills, by PID, any descendant it left.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from sockkit._endpoint import Endpoint, parse_endpoint
from sockkit._errors import SockkitError, UsageError
from sockkit.bench._procstat import process_start_time, tree_pids
from sockkit.bench.baselines import BASELINES, available_baselines

__all__ = ["RunningServer", "ServerSpec", "builtin_servers"]

_LISTENING = re.compile(r"listening on (\S+)")
#: the directory holding this sockkit package, first on the child's path so it
#: runs the same sockkit as this process (a checkout's src, or site-packages)
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
#: engines that serve each connection in its own process
_PER_CONNECTION_PROCESS = frozenset({"fork"})


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """How to start one server: a command that prints ``listening on HOST:PORT``."""

    name: str
    kind: str  # "engine", "baseline" or "peer"
    argv: tuple[str, ...]
    #: one process per connection: idle-connection counts are capped for it
    per_connection_process: bool = False


def _child(kind: str, name: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "sockkit.bench._child", kind, name)


def builtin_servers(
    engines: list[str] | None, baselines: list[str] | None
) -> tuple[list[ServerSpec], dict[str, str]]:
    """sockkit's engines and baselines to compare, and ``{name: why skipped}`` for the others.

    ``engines``/``baselines``: names to keep (``None``: all available; an empty
    list: none).  A baseline may be named without its ``_echo`` suffix.
    """
    from sockkit.engines import available_engines, get_engine

    skipped: dict[str, str] = {}
    specs: list[ServerSpec] = []
    for name in available_engines() if engines is None else engines:
        try:
            get_engine(name)
        except UsageError as exc:
            skipped[name] = str(exc)
            continue
        specs.append(
            ServerSpec(name, "engine", _child("engine", name), name in _PER_CONNECTION_PROCESS)
        )
    here = available_baselines()
    wanted = list(BASELINES) if baselines is None else [_full(n) for n in baselines]
    for name in wanted:
        if name not in BASELINES:
            skipped[name] = f"no such baseline; choose from {', '.join(BASELINES)}"
        elif name not in here:
            skipped[name] = f"{BASELINES[name]} is not installed"
        else:
            specs.append(ServerSpec(name, "baseline", _child("baseline", name)))
    return specs, skipped


def _full(name: str) -> str:
    return name if name.endswith("_echo") else f"{name}_echo"


class RunningServer:
    """One started server.  Use as a context manager; ``endpoint`` is where it listens."""

    def __init__(self, spec: ServerSpec, cpu: int | None, timeout: float = 20.0) -> None:
        self.spec = spec
        argv = list(spec.argv)
        env = dict(os.environ)
        path = env.get("PYTHONPATH")
        env["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + path if path else "")
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
