"""serve --proxy-protocol on every engine, behind a real HAProxy (send-proxy and send-proxy-v2)."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opskit import LISTENING, HAProxy, cli_env, free_port, haproxy_tcp_config, run_cli, sockkit_argv

from sockkit._proxy_protocol import build_v1
from sockkit.engines import available_engines

ENGINES = [
    name
    for name in ("thread", "pool", "fork", "select", "poll", "epoll", "asyncio", "uvloop")
    if name in available_engines()
]


class LoggedServer:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            sockkit_argv("serve", *args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=cli_env(),
        )
        self.output = b""
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        self.port = int(self.wait_for(LISTENING)[0].rsplit(b":", 1)[1])

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self.output += line

    def wait_for(self, pattern: re.Pattern[bytes], timeout: float = 20) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = pattern.findall(self.output)
            if found:
                return found
            assert time.monotonic() < deadline, self.output.decode(errors="replace")
            time.sleep(0.02)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(30)


@pytest.fixture
def started() -> Iterator[list[LoggedServer | HAProxy]]:
    items: list[LoggedServer | HAProxy] = []
    yield items
    for item in items:
        if isinstance(item, HAProxy):
            item.stop()
        elif item.proc.poll() is None:
            item.proc.kill()
            item.proc.wait(10)


def exchange(port: int, payload: bytes, source: str = "127.0.0.1") -> bytes:
    with socket.socket() as sock:
        sock.settimeout(20)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        received = b""
        try:  # a refused peer may be closed (even reset) while it still sends
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                received += chunk
        except (ConnectionResetError, BrokenPipeError, OSError):
            pass
        return received


@pytest.mark.parametrize("engine", ENGINES)
def test_proxy_protocol_on_every_engine(
    engine: str, tmp_path: Path, started: list[LoggedServer | HAProxy]
) -> None:
    server = LoggedServer(
        "echo",
        "127.0.0.1:0",
        "--engine",
        engine,
        "--proxy-protocol",
        "127.0.0.1/32",
        "--deny",
        "127.0.0.2/32",
    )
    started.append(server)
    v1, v2 = free_port(), free_port()
    config = haproxy_tcp_config(v1, [f"s1 127.0.0.1:{server.port} send-proxy"])
    config += f"""frontend front2
    bind 127.0.0.1:{v2}
    default_backend back2
backend back2
    server s2 127.0.0.1:{server.port} send-proxy-v2
"""
    haproxy = HAProxy(tmp_path, config, v1)
    started.append(haproxy)
    payload = os.urandom(300_000)
    digest = hashlib.sha256(payload).hexdigest()
    for port, source in ((v1, "127.0.0.3"), (v2, "127.0.0.4")):
        got = exchange(port, payload, source)
        assert hashlib.sha256(got).hexdigest() == digest
        # The log names the real client, and the proxy it came through.
        server.wait_for(
            re.compile(rb"opened " + source.encode() + rb":\d+ -> \S+ via=127\.0\.0\.1:\d+")
        )
    # The real client's address drives --deny.
    assert exchange(v2, b"x", "127.0.0.2") == b""
    server.wait_for(re.compile(rb"refused 127\.0\.0\.2:\d+: deny"))
    # A peer that is not a trusted proxy is refused, header or not.
    assert (
        exchange(server.port, build_v1(("10.0.0.1", 1), ("10.0.0.2", 2)) + b"x", "127.0.0.5") == b""
    )
    server.wait_for(re.compile(rb"refused 127\.0\.0\.5:\d+: proxy-protocol: not a trusted proxy"))
    # A trusted peer must send a header: garbage closes with a reason ...
    assert exchange(server.port, b"GET / HTTP/1.0\r\n\r\n") == b""
    server.wait_for(re.compile(rb"proxy-protocol: no PROXY header: the connection did not begin"))
    # ... and so does silence, after 3 s.
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as silent:
        began = time.monotonic()
        try:
            assert silent.recv(1) == b""
        except ConnectionResetError:
            pass
        waited = time.monotonic() - began
    assert 2.5 < waited < 12
    server.wait_for(re.compile(rb"no PROXY header within 3 s"))
    haproxy.stop()
    assert server.stop() == 0


def test_proxy_protocol_option_errors() -> None:
    result = run_cli(["serve", "echo", "127.0.0.1:0", "--proxy-protocol", "10.0.0.0/33"])
    assert result.returncode == 2 and result.stderr.startswith(b"sockkit: bad --proxy-protocol")
    result = run_cli(
        [
            "serve",
            "echo",
            "tls://127.0.0.1:0",
            "--proxy-protocol",
            "127.0.0.1/32",
            "--tls-cert",
            "x",
        ]
    )
    assert result.returncode in (1, 2) and len(result.stderr.splitlines()) == 1
