"""Each stream toxic, measured through a real relay with toxiproxy's units and tolerances."""

from __future__ import annotations

import hashlib
import os
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests.relay.conftest import Peer, RelayAPI, start_relay_api


@pytest.fixture(scope="module")
def api() -> Iterator[RelayAPI]:
    relay = start_relay_api()
    yield relay
    relay.stop.set()
    relay.thread.join(10)


_names = iter(range(10**6))


def proxy(api: RelayAPI, upstream: str, *toxics: dict[str, Any]) -> tuple[str, int]:
    name = f"p{next(_names)}"
    status, body = api.call(
        "POST", "/proxies", {"name": name, "listen": "127.0.0.1:0", "upstream": upstream}
    )
    assert status == 201, body
    for toxic in toxics:
        status, body = api.call("POST", f"/proxies/{name}/toxics", toxic)
        assert status == 200, body
    return name, api.listen_port(name)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def test_bandwidth_1000_kbps_moves_480kb_in_480ms(api: RelayAPI) -> None:
    source = Peer("send:480000")
    writes: list[tuple[float, int]] = []
    try:
        name, port = proxy(api, source.address, {"type": "bandwidth", "attributes": {"rate": 1000}})
        # The relay's own clock: when each paced write left it (a busy machine may
        # delay this test's thread, not the schedule).
        api.proxies[name].observers.append(
            lambda link, way, offset, data: writes.append((time.monotonic(), len(data)))
        )
        api.proxies[name].generation += 1
        with _connect(port) as sock:
            started = time.monotonic()
            sock.sendall(b"g")
            assert len(_recv_exactly(sock, 480_000)) == 480_000
            end_to_end = time.monotonic() - started
        downstream = [w for w in writes if w[1] != 1]
        assert sum(n for _, n in downstream) == 480_000
        # The first write ends the first piece's time slot: count that slot in.
        took = downstream[-1][0] - downstream[0][0] + downstream[0][1] / 1_000_000
        assert 0.455 <= took <= 0.505, f"{took * 1000:.1f} ms"
        assert 0.455 <= end_to_end <= 0.6, f"{end_to_end * 1000:.1f} ms"
    finally:
        source.close()


def test_latency_adds_per_direction_as_configured(api: RelayAPI, peer: Peer) -> None:
    name, port = proxy(api, peer.address)

    def median_rtt() -> float:
        times = []
        with _connect(port) as sock:
            for _ in range(7):
                started = time.monotonic()
                sock.sendall(b"x")
                assert sock.recv(10) == b"x"
                times.append(time.monotonic() - started)
        return statistics.median(times)

    base = median_rtt()
    api.call("POST", f"/proxies/{name}/toxics", {"type": "latency", "attributes": {"latency": 100}})
    one_way = median_rtt() - base
    assert 0.090 <= one_way <= 0.110, f"{one_way * 1000:.1f} ms"
    api.call(
        "POST",
        f"/proxies/{name}/toxics",
        {"type": "latency", "stream": "upstream", "attributes": {"latency": 100}},
    )
    both = median_rtt() - base
    assert 0.190 <= both <= 0.220, f"{both * 1000:.1f} ms"


def test_reset_peer_sends_rst_after_its_timeout(api: RelayAPI, peer: Peer) -> None:
    _, port = proxy(api, peer.address, {"type": "reset_peer", "attributes": {"timeout": 100}})
    with _connect(port) as sock:
        started = time.monotonic()
        with pytest.raises(ConnectionResetError):
            sock.recv(10)
        took = time.monotonic() - started
    assert 0.100 <= took <= 0.120, f"{took * 1000:.1f} ms"


def test_limit_data_passes_exactly_that_many_bytes(api: RelayAPI) -> None:
    sink = Peer("sink")
    try:
        _, port = proxy(
            api,
            sink.address,
            {"type": "limit_data", "stream": "upstream", "attributes": {"bytes": 10_000}},
        )
        with _connect(port) as sock:
            try:
                for _ in range(50):
                    sock.sendall(os.urandom(1000))
                    time.sleep(0.001)
            except OSError:
                pass  # the relay closed: that is the point
            sock.settimeout(5)
            try:
                assert sock.recv(10) == b""
            except ConnectionResetError:
                pass
        deadline = time.monotonic() + 5
        while not sink.received and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sink.received == [10_000]
    finally:
        sink.close()


def test_slicer_output_is_byte_identical(api: RelayAPI, peer: Peer) -> None:
    _, port = proxy(
        api,
        peer.address,
        {
            "type": "slicer",
            "stream": "upstream",
            "attributes": {"average_size": 100, "size_variation": 60, "delay": 10},
        },
        {"type": "slicer", "attributes": {"average_size": 7, "size_variation": 6}},
    )
    payload = os.urandom(300_000)
    with _connect(port) as sock:
        sender = threading.Thread(
            target=lambda: (sock.sendall(payload), sock.shutdown(socket.SHUT_WR))
        )
        sender.start()
        echoed = b"".join(iter(lambda: sock.recv(65536), b""))
        sender.join()
    assert hashlib.sha256(echoed).hexdigest() == hashlib.sha256(payload).hexdigest()


def _fails(port: int) -> bool:
    """One request through the relay: True if it was cut (reset or closed), False if echoed."""
    try:
        with _connect(port) as sock:
            sock.sendall(b"q")
            return sock.recv(10) != b"q"
    except OSError:
        return True


def test_toxicity_half_hits_about_half_of_1000_connections(api: RelayAPI, peer: Peer) -> None:
    _, port = proxy(api, peer.address, {"type": "reset_peer", "toxicity": 0.5})
    hit = sum(_fails(port) for _ in range(1000))
    assert 400 <= hit <= 600, hit


def test_conditional_fail_the_first_two_connections(api: RelayAPI, peer: Peer) -> None:
    _, port = proxy(api, peer.address, {"type": "reset_peer", "when": {"until_connection": 2}})
    assert [_fails(port) for _ in range(4)] == [True, True, False, False]
    _, port = proxy(api, peer.address, {"type": "reset_peer", "when": {"from_connection": 3}})
    assert [_fails(port) for _ in range(4)] == [False, False, True, True]


def test_conditional_after_bytes_and_pattern(api: RelayAPI) -> None:
    sink = Peer("sink")
    try:
        _, port = proxy(
            api,
            sink.address,
            {"type": "timeout", "stream": "upstream", "when": {"after_bytes": 1000}},
        )
        with _connect(port) as sock:
            sock.sendall(b"a" * 1500)
            time.sleep(0.2)
        _, port = proxy(
            api,
            sink.address,
            {"type": "reset_peer", "stream": "upstream", "when": {"pattern": "QUIT\r\n"}},
        )
        with _connect(port) as sock:
            sock.sendall(b"hello\r\nQUIT\r\nnever")
            sock.settimeout(5)
            with pytest.raises(ConnectionResetError):
                sock.recv(10)
        deadline = time.monotonic() + 5
        while len(sink.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(sink.received) == [len(b"hello\r\nQUIT\r\n"), 1000]
    finally:
        sink.close()


def test_conditional_after_seconds(api: RelayAPI, peer: Peer) -> None:
    _, port = proxy(api, peer.address, {"type": "reset_peer", "when": {"after_seconds": 0.3}})
    with _connect(port) as sock:
        started = time.monotonic()
        sock.sendall(b"early")
        assert sock.recv(10) == b"early"
        with pytest.raises(ConnectionResetError):
            sock.recv(10)
        assert 0.3 <= time.monotonic() - started <= 0.5


def test_timeout_swallows_then_closes(api: RelayAPI, peer: Peer) -> None:
    _, port = proxy(api, peer.address, {"type": "timeout", "attributes": {"timeout": 200}})
    with _connect(port) as sock:
        started = time.monotonic()
        sock.sendall(b"lost")
        assert sock.recv(10) == b""
        assert 0.2 <= time.monotonic() - started <= 0.4


def test_slow_close_holds_the_close(api: RelayAPI, peer: Peer) -> None:
    _, port = proxy(api, peer.address, {"type": "slow_close", "attributes": {"delay": 200}})
    with _connect(port) as sock:
        sock.sendall(b"bye")
        sock.shutdown(socket.SHUT_WR)
        assert _recv_exactly(sock, 3) == b"bye"
        started = time.monotonic()
        assert sock.recv(10) == b""
        assert 0.18 <= time.monotonic() - started <= 0.4


def test_toxic_added_to_a_live_spliced_connection_applies_to_the_next_bytes(
    api: RelayAPI, peer: Peer
) -> None:
    name, port = proxy(api, peer.address)
    with _connect(port) as sock:
        started = time.monotonic()
        sock.sendall(b"fast")
        assert sock.recv(10) == b"fast"
        assert time.monotonic() - started < 0.1
        api.call(
            "POST", f"/proxies/{name}/toxics", {"type": "latency", "attributes": {"latency": 150}}
        )
        started = time.monotonic()
        sock.sendall(b"slow")
        assert sock.recv(10) == b"slow"
        assert time.monotonic() - started >= 0.15
        api.call("DELETE", f"/proxies/{name}/toxics/latency_downstream")
        sock.sendall(b"x")
        assert sock.recv(10) == b"x"  # one more chunk goes through the (now empty) filter
        started = time.monotonic()
        sock.sendall(b"fast")
        assert sock.recv(10) == b"fast"
        assert time.monotonic() - started < 0.1


def test_reset_peer_removed_before_its_timeout_does_not_fire(api: RelayAPI, peer: Peer) -> None:
    name, port = proxy(api, peer.address, {"type": "reset_peer", "attributes": {"timeout": 300}})
    with _connect(port) as sock:
        api.call("DELETE", f"/proxies/{name}/toxics/reset_peer_downstream")
        time.sleep(0.4)
        sock.sendall(b"alive")
        assert sock.recv(10) == b"alive"
