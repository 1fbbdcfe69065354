"""Every built-in service over the in-memory transport, driven by the engine grammar."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from sockkit.services import (
    SERVICE_NAMES,
    ChatRoom,
    ChatService,
    chat_spec,
    get_service,
)
from sockkit.services._base import Service
from sockkit.services._classic import RFC868_EPOCH_OFFSET
from sockkit.testing import MemoryConnection, exchange_datagram


def stream(name: str) -> Service:
    factory = get_service(name).stream
    assert factory is not None
    return factory()


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_every_stream_service_ends_with_closed_exactly_once(name: str) -> None:
    spec = get_service(name)
    assert spec.stream is not None
    conn = MemoryConnection(spec.stream())
    conn.send(b"some input\n")
    conn.shutdown_write()
    if name == "chargen":
        conn.read(100_000)  # chargen streams until the peer's EOF is seen
    conn.read_until_eof()
    assert conn.finished and conn.closed_calls == 1
    conn.close()
    assert conn.closed_calls == 1


def test_echo_one_mebibyte_with_half_close_is_byte_exact() -> None:
    payload = os.urandom(1024 * 1024)
    conn = MemoryConnection(stream("echo"), read_size=16 * 1024)
    for offset in range(0, len(payload), 100_000):
        conn.send(payload[offset : offset + 100_000])
    conn.shutdown_write()
    echoed = conn.read_until_eof()
    assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
    assert conn.bytes_in == conn.bytes_out == len(payload)
    # Reading stops at high water, so the echo never buffers the whole megabyte.
    assert conn.max_buffered <= 64 * 1024 + 16 * 1024
    assert conn.closed_calls == 1


def test_echo_keeps_answering_while_the_client_reads_slowly() -> None:
    conn = MemoryConnection(stream("echo"), high_water=1000, low_water=500, read_size=1000)
    conn.send(b"a" * 5000)
    assert conn.buffered <= 1000 + 1000
    total = b""
    while len(total) < 5000:
        piece = conn.read(300)
        assert piece
        total += piece
    assert total == b"a" * 5000
    assert not conn.at_eof


def test_discard_sends_nothing_and_closes_after_eof() -> None:
    conn = MemoryConnection(stream("discard"))
    conn.send(os.urandom(200_000))
    assert conn.read() == b""
    conn.shutdown_write()
    assert conn.read_until_eof() == b""
    assert conn.bytes_in == 200_000 and conn.bytes_out == 0


def test_daytime_sends_one_line_of_now_then_half_closes() -> None:
    conn = MemoryConnection(stream("daytime"))
    line = conn.read_until_eof()
    assert line.endswith(b"-UTC\r\n") and line.count(b"\r\n") == 1
    assert time.strftime("%Y", time.gmtime()).encode() in line
    # Input is thrown away; the connection ends when the client is done too.
    assert conn.half_closed and not conn.finished
    conn.send(b"anything")
    conn.shutdown_write()
    assert conn.finished and conn.closed_calls == 1


def test_time_sends_four_bytes_of_now_then_half_closes() -> None:
    before = int(time.time()) + RFC868_EPOCH_OFFSET
    conn = MemoryConnection(stream("time"))
    reply = conn.read_until_eof()
    after = int(time.time()) + RFC868_EPOCH_OFFSET
    assert len(reply) == 4
    assert before <= int.from_bytes(reply, "big") <= after
    assert conn.half_closed and not conn.finished
    conn.close()
    assert conn.closed_calls == 1


def test_chat_among_three_clients() -> None:
    spec = chat_spec(notices=True)
    assert spec.needs_shared_memory and spec.datagram is None
    assert spec.stream is not None
    alice = MemoryConnection(spec.stream(), "127.0.0.1:40001")
    bob = MemoryConnection(spec.stream(), "127.0.0.1:40002")
    carol = MemoryConnection(spec.stream(), "127.0.0.1:40003")
    assert alice.read() == b"* 127.0.0.1:40002 joined\n* 127.0.0.1:40003 joined\n"
    assert bob.read() == b"* 127.0.0.1:40003 joined\n"
    alice.send(b"hi all\n")
    bob.send(b"hey alice\nand carol\n")
    carol.send(b"hello")
    carol.shutdown_write()
    assert carol.read_until_eof() == (
        b"[127.0.0.1:40001] hi all\n[127.0.0.1:40002] hey alice\n[127.0.0.1:40002] and carol\n"
    )
    assert carol.closed_calls == 1
    assert alice.read() == (
        b"[127.0.0.1:40002] hey alice\n[127.0.0.1:40002] and carol\n"
        b"[127.0.0.1:40003] hello\n* 127.0.0.1:40003 left\n"
    )
    assert bob.read() == (
        b"[127.0.0.1:40001] hi all\n[127.0.0.1:40003] hello\n* 127.0.0.1:40003 left\n"
    )


def test_each_chat_spec_has_its_own_room() -> None:
    first, second = get_service("chat"), get_service("chat")
    assert first.stream is not None and second.stream is not None
    a = MemoryConnection(first.stream(), "a:1")
    b = MemoryConnection(second.stream(), "b:2")
    a.send(b"only my room\n")
    assert b.read() == b""
    a.close()
    b.close()


def test_chat_over_long_line_closes_only_that_client_over_memory() -> None:
    room = ChatRoom(max_line=64 * 1024, notices=False)
    a, b, c = (MemoryConnection(ChatService(room), p) for p in ("a:1", "b:2", "c:3"))
    a.send(b"z" * (64 * 1024 + 1))
    assert a.finished and a.close_reason == "chat line longer than 65536 bytes"
    b.send(b"ok\n")
    assert c.read() == b"[b:2] ok\n"
    assert room.peers() == ["b:2", "c:3"]


@pytest.mark.parametrize("name", [n for n in SERVICE_NAMES if n != "chat"])
def test_every_datagram_form_keeps_within_max_reply(name: str) -> None:
    spec = get_service(name)
    assert spec.datagram is not None
    service = spec.datagram()
    for size in (0, 1, 512, 4096):
        reply = exchange_datagram(service, b"q" * size)
        if name == "echo":
            assert reply == b"q" * size
        elif name == "discard":
            assert reply is None
        else:
            assert reply is not None and len(reply) <= service.max_reply
