"""chat: rooms, line framing, limits, and delivery between members."""

from __future__ import annotations

import itertools
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockkit.services import CLOSE, OPEN, ChatRoom, ChatService
from sockkit.testing import MemoryConnection


def members(room: ChatRoom, *peers: str) -> list[MemoryConnection]:
    return [MemoryConnection(ChatService(room), peer) for peer in peers]


def test_a_line_reaches_every_other_member_with_the_senders_address() -> None:
    room = ChatRoom(notices=False)
    a, b, c = members(room, "10.0.0.1:1001", "10.0.0.2:1002", "[::1]:1003")
    a.send(b"hello\n")
    assert b.read() == b"[10.0.0.1:1001] hello\n"
    assert c.read() == b"[10.0.0.1:1001] hello\n"
    assert a.read() == b""  # not echoed to the sender
    c.send(b"hi a\r\n")
    assert a.read() == b"[[::1]:1003] hi a\r\n"
    assert b.read() == b"[[::1]:1003] hi a\r\n"
    assert len(room) == 3


def test_delivery_wakes_the_receiver() -> None:
    room = ChatRoom(notices=False)
    a, b = members(room, "a:1", "b:2")
    assert b.wakeups == 0
    a.send(b"x\n")
    assert b.wakeups == 1
    assert b.service.producing
    assert b.read() == b"[a:1] x\n"
    assert not b.service.producing


def test_join_and_leave_notices() -> None:
    room = ChatRoom(notices=True)
    a = MemoryConnection(ChatService(room), "a:1")
    b = MemoryConnection(ChatService(room), "b:2")
    assert a.read() == b"* b:2 joined\n"
    assert b.read() == b""
    b.close()
    assert a.read() == b"* b:2 left\n"
    assert len(room) == 1 and room.peers() == ["a:1"]


def test_partial_lines_wait_for_their_newline_and_eof_flushes_the_tail() -> None:
    room = ChatRoom(notices=False)
    a, b = members(room, "a:1", "b:2")
    a.send(b"hel")
    a.send(b"lo")
    assert b.read() == b""
    a.send(b" there\nand a tail")
    assert b.read() == b"[a:1] hello there\n"
    a.shutdown_write()
    assert b.read() == b"[a:1] and a tail\n"
    assert a.read_until_eof() == b""
    assert a.closed_calls == 1
    assert len(room) == 1


def test_an_over_long_line_closes_only_its_sender() -> None:
    room = ChatRoom(max_line=100, notices=False)
    a, b, c = members(room, "a:1", "b:2", "c:3")
    a.send(b"fine\n" + b"x" * 60)
    a.send(b"x" * 41)  # 101 bytes with no newline yet
    assert a.finished
    assert a.close_reason == "chat line longer than 100 bytes"
    assert b.read() == b"[a:1] fine\n"
    assert c.read() == b"[a:1] fine\n"
    b.send(b"still here\n")
    assert c.read() == b"[b:2] still here\n"
    assert not b.finished and not c.finished
    assert room.peers() == ["b:2", "c:3"]


def test_a_line_of_exactly_max_line_bytes_is_fine() -> None:
    room = ChatRoom(max_line=10, notices=False)
    a, b = members(room, "a:1", "b:2")
    a.send(b"0123456789\n")
    assert b.read() == b"[a:1] 0123456789\n"
    a.send(b"0123456789X\n")
    assert a.finished
    assert b.read() == b""


def test_a_member_that_never_reads_is_dropped_past_the_queue_cap() -> None:
    room = ChatRoom(queue_cap=1000, notices=False)
    talker, reader = members(room, "t:1", "r:3")
    # The sleeper's engine buffer holds 200 bytes; past that, lines wait in the room queue.
    sleeper = MemoryConnection(ChatService(room), "s:2", high_water=200, low_water=100)
    line = b"y" * 93 + b"\n"  # 100 bytes with the "[t:1] " prefix
    for _ in range(30):
        talker.send(line)
        sleeper.pump()
        assert reader.read() == b"[t:1] " + line
    assert sleeper.service.state == CLOSE
    assert room.peers() == ["t:1", "r:3"]
    # The engine notices at its next produce(), once its buffer has room: what it
    # had buffered is flushed, then the connection ends with the reason.
    assert sleeper.read_until_eof() == b"[t:1] " + line
    assert sleeper.finished and sleeper.closed_calls == 1
    assert sleeper.close_reason == "chat output over 1000 bytes: the peer is not reading"
    assert not talker.finished and not reader.finished


def test_queue_cap_drops_the_slow_member_with_a_reason() -> None:
    room = ChatRoom(queue_cap=250, notices=True)
    talker = ChatService(room)
    talker.connected("t:1")
    slow = ChatService(room)
    woken = []
    slow.wakeup = lambda: woken.append(1)
    slow.connected("s:2")
    other = ChatService(room)
    other.connected("o:3")
    heard = b""
    for _ in range(3):
        talker.received(b"z" * 93 + b"\n")  # 100 bytes each as delivered
        heard += other.produce(10_000)  # other reads; slow does not
    assert slow.state == CLOSE
    assert slow.close_reason is not None and "not reading" in slow.close_reason
    assert slow.producing and woken  # so the driver calls produce() and sees CLOSE
    assert slow.produce(1000) == b""
    assert not slow.producing
    assert room.peers() == ["t:1", "o:3"]
    assert heard.endswith(b"* s:2 left (not reading)\n")


def test_produce_respects_limit_and_splits_long_messages() -> None:
    room = ChatRoom(notices=False)
    a = ChatService(room)
    a.connected("a:1")
    b = ChatService(room)
    b.connected("b:2")
    a.received(b"abcdefghij\n")
    pieces = [b.produce(4) for _ in range(5)]
    assert all(len(piece) <= 4 for piece in pieces)
    assert b"".join(pieces) == b"[a:1] abcdefghij\n"
    assert not b.producing and b.queued == 0


def chat_transcript(chunks: list[bytes]) -> bytes:
    room = ChatRoom(notices=False)
    sender, listener = members(room, "s:1", "l:2")
    for chunk in chunks:
        sender.send(chunk)
    sender.shutdown_write()
    return listener.read()


LINES = st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=12)


@given(LINES, st.data())
def test_the_same_lines_arrive_however_the_input_is_split(
    lines: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(stream)), max_size=10)))
    chunks = [stream[i:j] for i, j in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    chunks = [chunk for chunk in chunks if chunk]
    assert chat_transcript(chunks) == b"".join(b"[s:1] " + line + b"\n" for line in lines)


def test_closed_leaves_the_room_once() -> None:
    room = ChatRoom(notices=False)
    (a,) = members(room, "a:1")
    a.close()
    a.close()
    assert a.closed_calls == 1
    assert len(room) == 0


def test_threads_sending_at_once_lose_no_line() -> None:
    room = ChatRoom(notices=False)
    senders = [ChatService(room) for _ in range(4)]
    for n, service in enumerate(senders):
        service.connected(f"s:{n}")
    listener = ChatService(room)
    listener.connected("l:9")
    per_thread = 500

    def talk(service: ChatService) -> None:
        for i in range(per_thread):
            service.received(b"line %d\n" % i)

    threads = [threading.Thread(target=talk, args=(s,)) for s in senders]
    for thread in threads:
        thread.start()
    received = bytearray()
    while any(t.is_alive() for t in threads):
        received += listener.produce(4096)
    for thread in threads:
        thread.join()
    while listener.producing:
        received += listener.produce(4096)
    lines = bytes(received).splitlines()
    assert len(lines) == 4 * per_thread
    for n in range(4):
        mine = [line for line in lines if line.startswith(b"[s:%d]" % n)]
        assert mine == [b"[s:%d] line %d" % (n, i) for i in range(per_thread)]
    # every sender also heard the other three
    assert all(
        s.queued == 3 * sum(len(b"[s:0] line %d\n" % i) for i in range(per_thread)) for s in senders
    )


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        ChatRoom(max_line=0)
    with pytest.raises(ValueError):
        ChatRoom(queue_cap=0)


def test_input_after_close_is_ignored() -> None:
    room = ChatRoom(max_line=4, notices=False)
    a = ChatService(room)
    a.connected("a:1")
    a.received(b"toolong")
    assert a.state == CLOSE
    assert a.received(b"x\n") == b""
    assert a.state == CLOSE
    b = ChatService(room)
    b.connected("b:2")
    assert b.state == OPEN


@given(
    st.lists(st.binary(min_size=0, max_size=40), min_size=1, max_size=10),
    st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=30),
)
def test_produced_bytes_are_the_same_however_limits_are_chosen(
    lines: list[bytes], limits: list[int]
) -> None:
    room = ChatRoom(notices=False)
    sender = ChatService(room)
    sender.connected("s:1")
    listener = ChatService(room)
    listener.connected("l:2")
    for line in lines:
        sender.received(line.replace(b"\n", b"") + b"\n")
    out = bytearray()
    for limit in itertools.cycle(limits):
        if not listener.producing:
            break
        piece = listener.produce(limit)
        assert 0 < len(piece) <= limit
        out += piece
    assert not listener.producing and listener.queued == 0
    assert bytes(out) == b"".join(b"[s:1] " + line.replace(b"\n", b"") + b"\n" for line in lines)


def test_notices_are_off_by_default() -> None:
    room = ChatRoom()
    a, b = members(room, "a:1", "b:2")
    b.close()
    assert a.read() == b""


def test_many_members_overflowing_at_once_are_all_dropped() -> None:
    room = ChatRoom(queue_cap=40)
    talker = ChatService(room)
    talker.connected("t:1")
    stuck = [ChatService(room) for _ in range(3000)]
    for n, service in enumerate(stuck):
        service.connected(f"s:{n}")
    room.notices = True
    talker.received(b"x" * 40 + b"\n")  # over every stuck member's cap at once
    assert all(service.state == CLOSE for service in stuck)
    # The talker never reads either: the 3000 leave notices overflow it too.
    assert talker.state == CLOSE and talker.queued == 0
    assert room.peers() == []
