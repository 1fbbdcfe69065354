"""The capture itself: the kernel filter keeps one port's packets only, and drops are counted."""

from __future__ import annotations

import socket
import time

import pytest
from tests.trace.scenario_runs import needs_capture

from sockkit.trace import Capture, decode_frame

pytestmark = needs_capture


def _listener(family: int = socket.AF_INET, host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(8)
    return sock


def test_only_the_filtered_port_is_captured_while_other_loopback_traffic_flows() -> None:
    with _listener() as traced, _listener() as other:
        port = traced.getsockname()[1]
        with Capture(port) as capture:
            for _ in range(20):  # noise on another port, before, during and after
                with socket.create_connection(other.getsockname()) as noise:
                    noise.sendall(b"noise")
                    other.accept()[0].close()
            with socket.create_connection(traced.getsockname()) as client:
                conn, _ = traced.accept()
                client.sendall(b"signal")
                assert conn.recv(6) == b"signal"
                conn.close()
            time.sleep(0.2)
            packets = [decode_frame(p.time, p.frame) for p in capture.read(1.0)]
            stats = capture.stats()
    assert packets and all(p is not None and port in (p.sport, p.dport) for p in packets)
    assert stats.dropped == 0 and stats.packets == len(packets)
    assert [p.flag_text for p in packets if p][:3] == ["SYN", "SYN+ACK", "ACK"]
    times = [p.time for p in packets if p]
    assert times == sorted(times) and abs(times[0] - time.time()) < 30  # kernel timestamps


def test_ipv6_and_udp_with_its_icmp_error_pass_the_filter() -> None:
    try:
        six = _listener(socket.AF_INET6, "::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with six, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        port = six.getsockname()[1]
        with Capture(port) as capture:
            socket.create_connection(("::1", port)).close()
            udp.sendto(b"x", ("127.0.0.1", port))  # nothing listens on UDP: port unreachable
            time.sleep(0.2)
            packets = [decode_frame(p.time, p.frame) for p in capture.read(1.0)]
    kinds = {(p.protocol, p.src) for p in packets if p}
    assert (
        ("tcp", "::1") in kinds and ("udp", "127.0.0.1") in kinds and ("icmp", "127.0.0.1") in kinds
    )


def test_a_buffer_too_small_reports_drops_instead_of_hiding_them() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        port = sink.getsockname()[1]
        with Capture(port, buffer_size=1) as capture:  # the kernel rounds up to its minimum
            for _ in range(500):
                sink.sendto(b"y" * 1000, ("127.0.0.1", port))
            time.sleep(0.2)
            kept = len(capture.read(0.5))
            stats = capture.stats()
    assert stats.dropped > 0 and stats.packets == kept + stats.dropped
