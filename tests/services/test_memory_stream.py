"""memory_stream_pair: two ends that behave like non-blocking stream sockets."""

from __future__ import annotations

import pytest

from sockkit.services import ChatRoom, ChatService
from sockkit.testing import MemoryConnection, memory_stream_pair


def test_bytes_flow_both_ways_as_one_stream() -> None:
    a, b = memory_stream_pair()
    assert a.send(b"hel") == 3
    a.send(b"lo")
    assert b.pending == 5
    assert b.recv(4) == b"hell"
    assert b.recv(100) == b"o"
    b.send(b"back")
    assert a.recv(10) == b"back"


def test_nothing_yet_is_blocking_io_and_eof_is_empty_bytes() -> None:
    a, b = memory_stream_pair()
    with pytest.raises(BlockingIOError):
        b.recv(10)
    a.send(b"last")
    a.shutdown_write()
    assert not b.at_eof
    assert b.recv(10) == b"last"
    assert b.at_eof
    assert b.recv(10) == b""
    b.send(b"still open this way")  # half-close: the other direction carries on
    assert a.recv(100) == b"still open this way"


def test_sending_after_shutdown_or_to_a_closed_peer_fails_like_a_socket() -> None:
    a, b = memory_stream_pair()
    a.shutdown_write()
    with pytest.raises(BrokenPipeError):
        a.send(b"x")
    b.close()
    b.close()
    assert b.closed
    c, d = memory_stream_pair(("c", "d"))
    d.close()
    with pytest.raises(ConnectionResetError, match="c: peer closed"):
        c.send(b"x")
    assert c.recv(1) == b""  # close sends EOF too
    with pytest.raises(OSError):
        d.recv(1)


def test_client_close_delivers_eof_first_like_a_socket() -> None:
    room = ChatRoom(notices=False)
    a = MemoryConnection(ChatService(room), "a:1")
    b = MemoryConnection(ChatService(room), "b:2")
    a.send(b"unfinished")
    a.close()
    assert a.closed_calls == 1
    assert b.read() == b"[a:1] unfinished\n"
    assert room.peers() == ["b:2"]


def test_the_client_end_can_be_used_directly() -> None:
    from sockkit.services import EchoService

    conn = MemoryConnection(EchoService())
    conn.client.send(b"raw")
    conn.pump()
    assert conn.client.recv(10) == b"raw"
