"""The operations page's 'Behind a load balancer' setup, run as written: HAProxy, two chat servers, Redis."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opskit import HAProxy, RedisServer, free_port
from test_chat_backplane import Chat, ChatServer, wait_subscribers
from tests.docpages import code_blocks, page, section

pytest.importorskip("redis")


def documented_haproxy_config() -> str:
    text = section(page("operations.md").read_text(), "## Behind a load balancer")
    (config,) = code_blocks(text, "haproxy")
    return config


@pytest.fixture
def stack() -> Iterator[list[object]]:
    items: list[object] = []
    yield items
    for item in reversed(items):
        if isinstance(item, ChatServer):
            if item.proc.poll() is None:
                item.proc.kill()
                item.proc.wait(10)
        else:
            item.stop()  # type: ignore[attr-defined]


class SourcedChat(Chat):
    """A chat client whose connection comes from a chosen loopback address."""

    def __init__(self, port: int, source: str) -> None:
        self.sock = socket.socket()
        self.sock.settimeout(15)
        self.sock.bind((source, 0))
        self.sock.connect(("127.0.0.1", port))
        self.name = "{}:{}".format(*self.sock.getsockname()[:2])
        self.buffer = b""


def test_documented_load_balancer_config(stack: list[object], tmp_path: Path) -> None:
    redis = RedisServer()
    stack.append(redis)
    servers = []
    for _ in range(2):
        server = ChatServer(
            "--engine", "epoll", "--proxy-protocol", "127.0.0.1/32", "--backplane", redis.url
        )
        stack.append(server)
        servers.append(server)
    ports = [int(s.endpoint.rsplit(":", 1)[1]) for s in servers]
    front = free_port()
    config = (
        documented_haproxy_config()
        .replace("127.0.0.1:7000", f"127.0.0.1:{front}")
        .replace("127.0.0.1:7001", f"127.0.0.1:{ports[0]}")
        .replace("127.0.0.1:7002", f"127.0.0.1:{ports[1]}")
    )
    haproxy = HAProxy(tmp_path, config, front)
    stack.append(haproxy)
    # HAProxy's start-up probe may still hold a connection to one server; leastconn
    # would then count it: wait until every opened connection has closed.
    deadline = time.monotonic() + 15
    while any(
        s.log_so_far().count(b"opened ") != s.log_so_far().count(b"closed ") for s in servers
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    alice = SourcedChat(front, "127.0.0.3")
    # leastconn sends bob to the other server once alice counts on hers.
    deadline = time.monotonic() + 15
    while not any(b"opened 127.0.0.3:" in s.log_so_far() for s in servers):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    bob = SourcedChat(front, "127.0.0.4")
    wait_subscribers(redis.port, 2)  # each server has a member: both subscribed
    line = alice.say("hello from alice")
    assert bob.line() == line  # the real address in the line, across two processes
    reply = bob.say("hi alice")
    assert alice.line() == reply
    alice.close()
    bob.close()
    logs = []
    for server in servers:
        code, log = server.stop()
        assert code == 0
        logs.append(log)
    opened = re.compile(rb"opened (127\.0\.0\.[34]):\d+ -> \S+ via=127\.0\.0\.1:\d+")
    clients = [set(opened.findall(log)) for log in logs]
    # The two are on different servers; each log names its own client.
    assert sorted(map(sorted, clients)) == [[b"127.0.0.3"], [b"127.0.0.4"]]
