"""The pool engine: one reactor thread for the sockets, ``--threads`` for the service.

Idle connections must not hold a thread: a client beyond ``--threads`` idle
ones is served at once, and a few threads serve hundreds of connections.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverkit import LISTENING, ServeProcess, cli_env, recv_exactly, serve_process

pytestmark = pytest.mark.timeout(120)

HERE = Path(__file__).resolve().parent


def _port(server: ServeProcess) -> int:
    return int(server.endpoints[0].rsplit(":", 1)[1])


def _echo_once(port: int, payload: bytes, timeout: float = 3) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        return recv_exactly(sock, len(payload))


def test_idle_nc_clients_do_not_starve_a_third_client() -> None:
    with serve_process(["echo", "tcp://127.0.0.1:0", "--engine", "pool", "--threads", "2"]) as srv:
        port = _port(srv)
        idle = [
            subprocess.Popen(
                ["nc", "127.0.0.1", str(port)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(2)
        ]
        try:
            time.sleep(0.3)  # both accepted and idle, one per thread
            assert all(proc.poll() is None for proc in idle)
            assert _echo_once(port, b"third\n") == b"third\n"
        finally:
            for proc in idle:
                proc.kill()
                proc.wait(5)
        assert srv.stop() == 0


#: The server raises its descriptor limit to the hard limit before serving.
_RAISE_FD_LIMIT = (
    "import resource, sys\n"
    "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
    "resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))\n"
    "from sockkit.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


@contextlib.contextmanager
def _pool_server(*args: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``sockkit serve echo`` on the pool, with room for many descriptors; (process, port)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _RAISE_FD_LIMIT, "serve", "echo", "tcp://127.0.0.1:0", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=cli_env(),
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = LISTENING.search(line)
        assert match, line
        # One log line per connection: keep reading, or a full pipe stops the server.
        stderr = proc.stderr
        threading.Thread(target=lambda: stderr.read(), daemon=True).start()
        yield proc, int(match.group(1).rsplit(b":", 1)[1])
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)


def _serve_idle_and_busy(threads: int, idle_count: int, busy_count: int, rounds: int) -> None:
    """``idle_count`` silent clients stay open while ``busy_count`` echo sha256-checked bytes."""
    options = ["--engine", "pool", "--threads", str(threads), "--max-conns", str(idle_count * 2)]
    with _pool_server(*options) as (proc, port):
        idle = []
        failures: list[str] = []

        def busy(index: int) -> None:
            sent, got = hashlib.sha256(), hashlib.sha256()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                    for _ in range(rounds):
                        payload = os.urandom(4096 + index)
                        sent.update(payload)
                        sock.sendall(payload)
                        got.update(recv_exactly(sock, len(payload)))
            except OSError as exc:
                failures.append(f"client {index}: {exc}")
                return
            if sent.digest() != got.digest():
                failures.append(f"client {index}: the echo differs")

        try:
            for _ in range(idle_count):
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            workers = [threading.Thread(target=busy, args=(i,)) for i in range(busy_count)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(90)
            assert not failures, failures[:5]
            # The idle clients are still served, the first and the last alike.
            for i in (0, idle_count // 2, idle_count - 1):
                request = b"still here %d" % i
                idle[i].sendall(request)
                assert recv_exactly(idle[i], len(request)) == request
        finally:
            for sock in idle:
                sock.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_two_threads_serve_hundreds_of_idle_and_busy_connections() -> None:
    _serve_idle_and_busy(threads=2, idle_count=300, busy_count=20, rounds=20)


@pytest.mark.skipif(
    not os.environ.get("SOCKKIT_FULL_SCALE"), reason="full scale: set SOCKKIT_FULL_SCALE=1"
)
def test_eight_threads_serve_ten_thousand_idle_and_a_hundred_busy() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 10_300:
        pytest.skip(f"the descriptor hard limit ({hard}) is below 10,300")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        _serve_idle_and_busy(threads=8, idle_count=10_000, busy_count=100, rounds=20)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_blocked_service_call_holds_a_worker_not_the_sockets() -> None:
    """While both threads wait in a service call, the reactor still answers a stop at once."""
    args = ["blocking_services:StuckEcho", "tcp://127.0.0.1:0", "--engine", "pool"]
    with serve_process([*args, "--threads", "2"]) as srv:
        port = _port(srv)
        clients = [srv.connect() for _ in range(3)]
        for i, client in enumerate(clients):
            client.sendall(b"call %d" % i)
        time.sleep(0.3)  # two calls are running, the third waits in the queue
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        started = time.monotonic()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
        assert time.monotonic() - started < 0.5
        # The calls finish and their replies arrive during the drain.
        for i, client in enumerate(clients):
            client.settimeout(5)
            assert recv_exactly(client, len(b"call %d" % i)) == b"call %d" % i
            client.close()
        assert srv.stop() == 0
