"""What the server tests share: in-process servers, `sockkit serve` children, clients, /proc."""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sockkit._endpoint import Endpoint, open_connection, parse_endpoint
from sockkit.engines import available_engines
from sockkit.server import Limits, Server, ServerLog, make_logger

HERE = Path(__file__).resolve().parent
SRC = str(HERE.parent.parent / "src")
LAUNCHER = str(HERE / "launch_sockkit.py")
LISTENING = re.compile(rb"listening on ([^\s\"]+)")


def engine_names() -> list[str]:
    """The engines every conformance test runs on.

    Every engine available on this checkout; ``SOCKKIT_TEST_ENGINES=a,b``
    picks engines instead.
    """
    chosen = os.environ.get("SOCKKIT_TEST_ENGINES")
    if chosen:
        return [name.strip() for name in chosen.split(",") if name.strip()]
    return available_engines()


def default_test_engine() -> str:
    """One engine for tests of the server itself (not of an engine)."""
    names = available_engines()
    return "thread" if "thread" in names else names[0]


def engine_shares_memory(name: str) -> bool:
    from sockkit.engines import get_engine

    return get_engine(name).shares_memory


# -- in-process servers ---------------------------------------------------


class Running:
    """A server running for a test: its real endpoints, and what it logged and counted."""

    def __init__(
        self, endpoints: list[Endpoint], log: io.StringIO, counts: Callable[[], dict[str, int]]
    ) -> None:
        self.endpoints, self.log_text, self._counts = endpoints, log, counts

    @property
    def endpoint(self) -> Endpoint:
        return self.endpoints[0]

    @property
    def counts(self) -> dict[str, int]:
        return self._counts()

    def connect(self, index: int = 0, timeout: float = 5) -> socket.socket:
        sock = open_connection(self.endpoints[index], timeout=timeout)
        sock.settimeout(timeout)
        return sock


@contextlib.contextmanager
def running(
    service: Any, endpoints: Sequence[str], engine: str, **options: Any
) -> Iterator[Running]:
    """Run a server for the block; stop it and check it returned.

    The server runs on a thread of this process -- except for engines that
    fork per connection: their children would inherit this process's client
    sockets and hold connections open, so those servers run in a child forked
    before any client exists (their log and counts are then out of sight).
    """
    options.setdefault("limits", Limits(drain_timeout=1.0))
    if engine_shares_memory(engine):
        with _running_on_thread(service, endpoints, engine, **options) as srv:
            yield srv
    else:
        with _running_in_child(service, endpoints, engine, **options) as srv:
            yield srv


@contextlib.contextmanager
def _running_on_thread(
    service: Any, endpoints: Sequence[str], engine: str, **options: Any
) -> Iterator[Running]:
    text = io.StringIO()
    log = ServerLog(make_logger(options.pop("log_level", "info"), "text", stream=text))
    server = Server(service, endpoints, engine=engine, log=log, **options)
    with server:
        server.open()
        thread = threading.Thread(target=server.run, name="test-server", daemon=True)
        thread.start()
        try:
            yield Running(server.endpoints, text, lambda: dict(log.counts))
        finally:
            server.stop()
            thread.join(server.limits.drain_timeout + 10)
            assert not thread.is_alive(), "server.run() did not return after stop()"


@contextlib.contextmanager
def _running_in_child(
    service: Any, endpoints: Sequence[str], engine: str, **options: Any
) -> Iterator[Running]:
    server = Server(service, endpoints, engine=engine, log_level="warning", **options)
    server.open(announce=False)
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the server process
        status = 1
        try:
            os.close(ready_r)
            signal.signal(signal.SIGTERM, lambda signum, frame: server.stop())
            os.write(ready_w, b"r")
            os.close(ready_w)
            server.run()
            server.close()
            status = 0
        finally:
            os._exit(status)
    os.close(ready_w)
    try:
        assert os.read(ready_r, 1) == b"r"
        os.close(ready_r)
        yield Running(server.endpoints, io.StringIO(), dict)
    finally:
        os.kill(pid, signal.SIGTERM)
        _, status = os.waitpid(pid, 0)
        server.release()
        assert os.waitstatus_to_exitcode(status) == 0, "server process did not exit cleanly"


def family_endpoint(family: str, tmp_path: Path, scheme: str = "tcp") -> str:
    """An endpoint text on loopback for ``family`` (tcp4, tcp6, unix) with a free port."""
    if family == "tcp4":
        return f"{scheme}://127.0.0.1:0"
    if family == "tcp6":
        return f"{scheme}://[::1]:0"
    return f"unix:{tmp_path}/s.sock"


# -- `sockkit serve` children ----------------------------------------------


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("NO_COLOR", None)
    return env


def sockkit_argv(*args: str) -> list[str]:
    """``sockkit ARGS`` through a launcher that also finds the services of these tests."""
    return [sys.executable, LAUNCHER, *args]


def run_sockkit(args: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        sockkit_argv(*args), capture_output=True, timeout=timeout, env=cli_env(), check=False
    )


class ServeProcess:
    """A ``sockkit serve`` child started by :func:`serve_process`."""

    def __init__(
        self,
        args: Sequence[str],
        count: int = 1,
        timeout: float = 15,
        env: dict[str, str] | None = None,
    ) -> None:
        self.proc = subprocess.Popen(
            sockkit_argv("serve", *args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**cli_env(), **(env or {})},
        )
        self.endpoints: list[str] = []
        self.stderr_lines: list[bytes] = []
        deadline = time.monotonic() + timeout
        assert self.proc.stderr is not None
        while len(self.endpoints) < count:
            line = self.proc.stderr.readline()
            if not line or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"server did not start: {self.stderr_lines!r}")
            self.stderr_lines.append(line)
            match = LISTENING.search(line)
            if match:
                self.endpoints.append(match.group(1).decode())

    @property
    def pid(self) -> int:
        return self.proc.pid

    def connect(self, index: int = 0, timeout: float = 5) -> socket.socket:
        sock = open_connection(parse_endpoint(self.endpoints[index]), timeout=timeout)
        sock.settimeout(timeout)
        return sock

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)

    def rest_of_stderr(self) -> bytes:
        """Everything it wrote on stderr; waits for it to exit (call after stop())."""
        assert self.proc.stderr is not None
        if not self.proc.stderr.closed:
            self.stderr_lines.append(self.proc.stderr.read())
            self.proc.stderr.close()
        return b"".join(self.stderr_lines)


@contextlib.contextmanager
def serve_process(
    args: Sequence[str], count: int = 1, env: dict[str, str] | None = None
) -> Iterator[ServeProcess]:
    proc = ServeProcess(args, count, env=env)
    try:
        yield proc
    finally:
        proc.kill()
        proc.rest_of_stderr()  # keeps what it wrote for the test to read afterwards


# -- clients ----------------------------------------------------------------


def recv_until_eof(sock: socket.socket, limit: int = 64 * 1024 * 1024) -> bytes:
    chunks = []
    total = 0
    while total < limit:
        data = sock.recv(256 * 1024)
        if not data:
            break
        chunks.append(data)
        total += len(data)
    return b"".join(chunks)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        data = sock.recv(size - len(buf))
        if not data:
            break
        buf += data
    return bytes(buf)


def closed_by_peer(sock: socket.socket, timeout: float = 3.0) -> bool:
    """True when the peer closes (EOF or reset) within ``timeout`` without sending data."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1024) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def wait_for(check: Callable[[], bool], timeout: float = 5.0, interval: float = 0.02) -> bool:
    """Poll ``check`` until true or ``timeout``; for states only /proc can show."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


# -- /proc ------------------------------------------------------------------


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, state letter) of every child of ``pid``, zombies included."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append((int(entry), fields[0]))
    return found


def is_fork_server(pid: int) -> bool:
    """Whether ``pid`` is the fork engine's fork server (the process children are forked from)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"sockkit.engines._zygote" in f.read()
    except OSError:
        return False


def fork_servers(pid: int) -> list[int]:
    """The fork servers among ``pid``'s children."""
    return [child for child, _ in children(pid) if is_fork_server(child)]


def served_by(pid: int) -> list[tuple[int, str]]:
    """(pid, state) of the processes serving connections for server ``pid``, zombies included.

    Its children and, under the fork engine, its fork server's children; the
    fork server itself lives as long as the server and is not counted.
    """
    found = []
    for child in children(pid):
        if is_fork_server(child[0]):
            found += children(child[0])
        else:
            found.append(child)
    return found


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return 0  # exited meanwhile
    raise AssertionError(f"no Pss for {pid}")


def memory_kib(pid: int) -> int:
    """Memory of ``pid`` and its children, in KiB.

    Proportional set size, so pages a forked child still shares with its
    parent count once, not once per process.
    """
    total = _pss_kib(pid)
    for child, _ in children(pid):
        total += memory_kib(child) if is_fork_server(child) else _pss_kib(child)
    return total
