"""Relays with their API in a thread, and small real peers to relay to."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from sockkit.relay import Proxy, run_relays


@dataclass
class RelayAPI:
    """A running relay process-in-a-thread: ``url`` of its API, ``proxies`` by name."""

    url: str
    port: int
    proxies: dict[str, Proxy]
    stop: threading.Event
    thread: threading.Thread

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else None
        if body is not None and data is None:
            data = json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        text = raw.decode()
        try:
            return status, json.loads(text) if text.strip() else None
        except ValueError:
            return status, text

    def listen_port(self, name: str) -> int:
        _, proxy = self.call("GET", f"/proxies/{name}")
        return int(proxy["listen"].rsplit(":", 1)[1])


def start_relay_api(specs: list[dict[str, Any]] | None = None) -> RelayAPI:
    got: dict[str, Any] = {}
    stop = threading.Event()

    def run() -> None:
        run_relays(
            specs or [],
            api=("127.0.0.1", 0),
            on_api=lambda host, port: got.update(port=port),
            on_ready=lambda proxies: got.update(proxies=proxies),
            stop=stop,
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while "proxies" not in got:
        assert time.monotonic() < deadline, "relay API did not start"
        assert thread.is_alive(), "relay thread died"
        time.sleep(0.01)
    port = got["port"]
    return RelayAPI(f"http://127.0.0.1:{port}", port, got["proxies"], stop, thread)


@pytest.fixture
def relay_api() -> Iterator[RelayAPI]:
    api = start_relay_api()
    yield api
    api.stop.set()
    api.thread.join(10)
    assert not api.thread.is_alive()


@dataclass
class Peer:
    """A threaded TCP server on 127.0.0.1: ``mode`` is echo, sink (counts) or send:N."""

    mode: str = "echo"
    sock: socket.socket = field(init=False)
    received: list[int] = field(default_factory=list)
    accepted: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(time.monotonic())
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        total = 0
        with conn:
            try:
                if self.mode.startswith("send:"):
                    conn.recv(1)  # the client's go
                    conn.sendall(b"s" * int(self.mode[5:]))
                    conn.shutdown(socket.SHUT_WR)
                while data := conn.recv(65536):
                    total += len(data)
                    if self.mode == "echo":
                        conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        self.received.append(total)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def peer() -> Iterator[Peer]:
    server = Peer("echo")
    yield server
    server.close()
