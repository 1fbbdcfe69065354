"""The protections the reliability cases exercise, checked as plain objects (no sockets served)."""

from __future__ import annotations

import os
import socket

from sockkit._accept import Admission, PeerCounts, Refusal, peer_uid
from sockkit.engines._contract import Limits
from sockkit.engines._core import ConnectionCore, PartialInput, tick_interval
from sockkit.server._rate import SourceRate
from sockkit.services._chat import ChatRoom, ChatService


def test_per_ip_limit_counts_each_address_and_releases() -> None:
    admission = Admission(max_conns_per_ip=2)
    a, b = ("127.0.0.2", 1000), ("127.0.0.3", 1000)
    assert admission.admit(a) is None
    assert admission.admit(a) is None
    assert admission.admit(a) == Refusal.MAX_CONNS_PER_IP
    assert admission.admit(b) is None
    admission.release(a)
    assert admission.admit(a) is None
    assert admission.per_ip is not None and admission.per_ip.open_from("127.0.0.2") == 2


def test_peer_counts_forget_an_address_at_zero() -> None:
    counts = PeerCounts(1)
    assert counts.take("h") and not counts.take("h")
    counts.give_back("h")
    assert counts.open_from("h") == 0 and counts.take("h")


def test_allow_uid_reads_so_peercred() -> None:
    left, right = socket.socketpair()
    with left, right:
        assert peer_uid(left) == os.getuid()
        assert Admission(allow_uids=frozenset({os.getuid()})).admit("", 0, left) is None
        refused = Admission(allow_uids=frozenset({os.getuid() + 1})).admit("", 0, left)
        assert refused == Refusal.UID
        # Without the socket the uid cannot be known: refused, never admitted by default.
        assert Admission(allow_uids=frozenset({os.getuid()})).admit("") == Refusal.UID


def test_source_rate_allows_rate_per_second_plus_one_burst() -> None:
    now = [0.0]
    rate = SourceRate(10, clock=lambda: now[0])
    burst = sum(rate.allow("a") for _ in range(100))
    assert burst == 10
    assert rate.allow("b")  # another source has its own bucket
    now[0] = 1.0
    assert sum(rate.allow("a") for _ in range(100)) == 10


def test_chat_numbers_each_new_partial_line() -> None:
    service = ChatService(ChatRoom())
    service.connected("p")
    assert service.partial_input == 0
    service.received(b"hel")
    first = service.partial_input
    assert first != 0
    service.received(b"lo")
    assert service.partial_input == first  # the same line, still incomplete
    service.received(b"\nne")
    assert service.partial_input not in (0, first)  # a new line began
    service.received(b"w\n")
    assert service.partial_input == 0


def test_partial_input_deadline_fires_from_the_line_start() -> None:
    service = ChatService(ChatRoom())
    service.connected("p")
    clock = PartialInput(2.0)
    service.received(b"slow")
    clock.seen(service, 10.0)
    service.received(b"er")
    clock.seen(service, 11.5)
    assert not clock.overdue(11.9)
    assert clock.overdue(12.0)


def test_core_closes_a_slow_line_with_the_line_timeout_reason() -> None:
    limits = Limits(line_timeout=1.0)
    assert tick_interval(limits) == 0.25
    service = ChatService(ChatRoom())
    core = ConnectionCore(service, limits, now=0.0)
    core.start("p")
    core.receive(b"no newline yet")
    core.tick(1e9)
    assert core.should_close and core.close_reason == "line timeout"
