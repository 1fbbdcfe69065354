"""--max-conns-per-ip behind --proxy-protocol counts the client the header names, not the proxy.

Every connection reaches the server from the proxy's one address; the limit
is meant per real client.  Two ways in: PROXY v2 headers made by hand from
several fake sources through a trusted loopback peer (exact control over the
source), and a real HAProxy with ``send-proxy-v2`` in front.
"""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opskit import HAProxy, cli_env, free_port, haproxy_tcp_config, sockkit_argv

from sockkit._proxy_protocol import build_v2
from sockkit.engines import available_engines

ENGINES = [
    name
    for name in ("thread", "pool", "fork", "select", "poll", "epoll", "asyncio", "uvloop")
    if name in available_engines()
]
LIMIT = 10
LISTENING = re.compile(rb"listening on \S+:(\d+)")
PER_IP_REFUSAL = re.compile(rb"refused (\S+) max-conns-per-ip")


class Server:
    """``sockkit serve echo`` behind trusted proxies on 127.0.0.1, its log collected."""

    def __init__(self, engine: str) -> None:
        args = ["echo", "127.0.0.1:0", "--engine", engine, "--proxy-protocol", "127.0.0.1/32"]
        args += ["--max-conns-per-ip", str(LIMIT)]
        if engine == "pool":  # a thread per open connection, or the pool queues them
            args += ["--threads", "40"]
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
        self.port = int(self.wait_for(LISTENING)[0])

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
            assert self.proc.poll() is None or time.monotonic() < deadline - timeout + 1, (
                self.output.decode(errors="replace")
            )
            assert time.monotonic() < deadline, self.output.decode(errors="replace")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    made: list[Server] = []
    yield made
    for server in made:
        server.stop()


def served(sock: socket.socket) -> bool:
    """Whether the echo server answers on ``sock`` (False: closed or reset without a byte)."""
    try:
        sock.sendall(b"ping\n")
        got = b""
        while len(got) < 5:
            chunk = sock.recv(64)
            if not chunk:
                return False
            got += chunk
    except OSError:
        return False
    assert got == b"ping\n"
    return True


def by_hand(port: int, source: str, number: int) -> socket.socket:
    """A connection from the trusted 127.0.0.1 whose PROXY v2 header names ``source``."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock.sendall(build_v2((source, 40000 + number), ("127.0.0.1", port)))
    return sock


def check_limit_per_real_source(open_one: object, server: Server) -> None:
    opened: list[socket.socket] = []
    try:
        for number in range(LIMIT):
            sock = open_one("127.0.0.2", number)  # type: ignore[operator]
            opened.append(sock)
            assert served(sock), f"connection {number + 1} from 127.0.0.2 was not served"
        # The proxy's own address already carries LIMIT connections: other
        # clients must still get in, each up to its own limit.
        for number in range(3):
            other = open_one(f"10.0.0.{number + 1}", number)  # type: ignore[operator]
            opened.append(other)
            assert served(other), f"client 10.0.0.{number + 1} was refused"
        eleventh = open_one("127.0.0.2", LIMIT)  # type: ignore[operator]
        opened.append(eleventh)
        assert not served(eleventh), "the 11th connection from 127.0.0.2 was served"
        assert b"127.0.0.2" in server.wait_for(PER_IP_REFUSAL)[0]
        third = open_one("127.0.0.3", 0)  # type: ignore[operator]
        opened.append(third)
        assert served(third), "127.0.0.3 was refused while 127.0.0.2 was at its limit"
        # Closing one of 127.0.0.2's connections gives its slot back to it.
        opened.pop(0).close()
        deadline = time.monotonic() + 10
        while True:
            again = open_one("127.0.0.2", LIMIT + 1)  # type: ignore[operator]
            opened.append(again)
            if served(again):
                break
            assert time.monotonic() < deadline, "127.0.0.2's slot was never given back"
            time.sleep(0.2)
    finally:
        for sock in opened:
            sock.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_the_limit_counts_the_header_source_not_the_proxy(
    engine: str, servers: list[Server]
) -> None:
    server = Server(engine)
    servers.append(server)
    check_limit_per_real_source(lambda source, number: by_hand(server.port, source, number), server)


@pytest.mark.parametrize("engine", ENGINES)
def test_behind_haproxy_send_proxy_v2_the_limit_is_per_client(
    engine: str, tmp_path: Path, servers: list[Server]
) -> None:
    server = Server(engine)
    servers.append(server)
    front = free_port()
    config = haproxy_tcp_config(front, [f"s1 127.0.0.1:{server.port} send-proxy-v2"])
    haproxy = HAProxy(tmp_path, config, front)
    try:

        def through_haproxy(source: str, number: int) -> socket.socket:
            if source.startswith("10."):  # HAProxy sees the real source: use loopback ones
                source = f"127.0.1.{int(source.rsplit('.', 1)[1])}"
            sock = socket.socket()
            sock.settimeout(20)
            sock.bind((source, 0))
            sock.connect(("127.0.0.1", front))
            return sock

        check_limit_per_real_source(through_haproxy, server)
    finally:
        haproxy.stop()
