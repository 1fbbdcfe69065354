"""Fixtures starting the fault-injecting echo servers of ``bench_servers``."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest
from bench_servers import Behaviour, ThreadServer, echo


@pytest.fixture
def tcp_server() -> Iterator[Callable[[Behaviour], str]]:
    """``tcp_server(behaviour)`` -> ``"127.0.0.1:PORT"``; stopped at teardown."""
    servers: list[ThreadServer] = []

    def start(behaviour: Behaviour) -> str:
        listener = socket.create_server(("127.0.0.1", 0), backlog=512)
        servers.append(ThreadServer(listener, behaviour))
        return f"127.0.0.1:{listener.getsockname()[1]}"

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def unix_server(tmp_path: object) -> Iterator[str]:
    path = f"{tmp_path}/echo.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(128)
    server = ThreadServer(listener, echo)
    yield f"unix:{path}"
    server.close()


@pytest.fixture
def udp_server() -> Iterator[str]:
    """A UDP echo server (one thread); ``"udp://127.0.0.1:PORT"``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            sock.sendto(data, peer)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield f"udp://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join(5)
    sock.close()
