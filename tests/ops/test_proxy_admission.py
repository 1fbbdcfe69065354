"""The --proxy-protocol stage: trusted networks, the header deadline, the real peer."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from sockkit._proxy_admission import (
    ProxyProtocol,
    ProxyStage,
    format_address,
    read_header_blocking,
)
from sockkit._proxy_protocol import ProxyHeaderError, build_v1, build_v2


def test_only_trusted_ip_peers_are_proxies() -> None:
    policy = ProxyProtocol.from_option("127.0.0.0/8, 10.1.0.0/16")
    assert policy.trusts(("127.0.0.1", 5))
    assert policy.trusts(("::ffff:10.1.2.3", 5, 0, 0))
    assert not policy.trusts(("10.2.0.1", 5))
    assert not policy.trusts("/run/sock") and not policy.trusts(b"")
    with pytest.raises(ValueError):
        ProxyProtocol.from_option("10.0.0.0/33")
    with pytest.raises(ValueError):
        ProxyProtocol.from_option(",")


def test_stage_gives_the_real_client_and_the_first_bytes() -> None:
    stage = ProxyStage(("127.0.0.1", 40000))
    data = build_v2(("203.0.113.5", 5555), ("127.0.0.1", 7007)) + b"hello\n"
    assert stage.feed(data[:10]) is None
    peer = stage.feed(data[10:])
    assert peer is not None
    assert peer.peer == "203.0.113.5:5555" and peer.via == "127.0.0.1:40000"
    assert peer.leftover == b"hello\n"


def test_local_and_unknown_headers_leave_the_proxy_as_the_peer() -> None:
    for header in (build_v2(None, None, local=True), build_v1(None, None)):
        peer = ProxyStage(("127.0.0.1", 1)).feed(header)
        assert peer is not None and peer.address == ("127.0.0.1", 1) and peer.leftover == b""


def test_close_before_the_header_and_garbage_are_errors_with_reasons() -> None:
    with pytest.raises(ProxyHeaderError, match="closed before the PROXY header"):
        ProxyStage(("127.0.0.1", 1)).feed(b"")
    with pytest.raises(ProxyHeaderError, match=r"^proxy-protocol: no PROXY header"):
        ProxyStage(("127.0.0.1", 1)).feed(b"GET / HTTP/1.1\r\n")


def test_blocking_read_keeps_to_the_deadline() -> None:
    server, client = socket.socketpair()
    with server, client:
        client.sendall(b"PROXY TCP4 1.2.3.4 ")
        started = time.monotonic()
        with pytest.raises(ProxyHeaderError, match=r"no PROXY header within 0\.5 s"):
            read_header_blocking(server, ProxyStage(("127.0.0.1", 1)), timeout=0.5)
        assert 0.4 < time.monotonic() - started < 3


def test_blocking_read_of_a_header_sent_in_pieces() -> None:
    server, client = socket.socketpair()
    header = build_v1(("192.0.2.1", 1000), ("192.0.2.2", 80))

    def send() -> None:
        for i in range(0, len(header), 4):
            client.sendall(header[i : i + 4])
            time.sleep(0.01)
        client.sendall(b"payload")

    with server, client:
        thread = threading.Thread(target=send)
        thread.start()
        peer = read_header_blocking(server, ProxyStage(("127.0.0.1", 1)))
        thread.join()
        rest = peer.leftover
        server.settimeout(5)
        while len(rest) < len(b"payload"):
            rest += server.recv(100)
    assert peer.peer == "192.0.2.1:1000" and rest == b"payload"


def test_format_address() -> None:
    assert format_address(("::1", 5)) == "[::1]:5"
    assert format_address(("::ffff:1.2.3.4", 5, 0, 0)) == "1.2.3.4:5"
    assert format_address("") == "(unnamed)"
