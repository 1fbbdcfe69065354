"""Expect-style reads do not depend on how the peer splits its bytes, and a timeout loses nothing.

The peer here is a scripted :class:`ByteStream`: it hands out exactly the chunks
hypothesis chose, and "stalls" (the deadline passes) where the script says so.
"""

from __future__ import annotations

import itertools
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sockkit
from sockkit.client import Connection

STALL = None


class ScriptedStream:
    """A peer that sends the scripted chunks one per ``recv``; ``STALL`` makes ``wait`` time out."""

    def __init__(self, script: list[bytes | None]) -> None:
        self.script = list(script)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # only for its name

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self, max_bytes: int) -> bytes:
        if not self.script:
            return b""
        head = self.script[0]
        if head is STALL:
            raise BlockingIOError
        if len(head) > max_bytes:
            self.script[0] = head[max_bytes:]
            return head[:max_bytes]
        self.script.pop(0)
        return head

    def wait(self, timeout: float | None) -> bool:
        return not (self.script and self.script[0] is STALL)

    def release(self) -> None:
        """The deadline was missed; now the rest arrives."""
        assert self.script[0] is STALL
        self.script.pop(0)

    def send(self, data: bytes | bytearray | memoryview) -> int:
        return len(data)

    def wants_write(self) -> bool:
        return False

    def flush(self) -> None:
        pass

    def has_buffered(self) -> bool:
        return False

    def half_close(self) -> None:
        pass

    def close(self) -> None:
        self.sock.close()


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


def connection(script: list[bytes | None]) -> tuple[Connection, ScriptedStream]:
    stream = ScriptedStream(script)
    return Connection(stream, timeout=1.0, peer="scripted peer"), stream  # type: ignore[arg-type]


lines = st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=12)
cuts = st.lists(st.integers(min_value=0, max_value=1000), max_size=30)


@settings(max_examples=200, deadline=None)
@given(lines=lines, tail=st.binary(max_size=10).map(lambda b: b.replace(b"\n", b"")), cuts=cuts)
def test_recv_line_is_the_same_however_the_bytes_are_split(
    lines: list[bytes], tail: bytes, cuts: list[int]
) -> None:
    data = b"".join(line + b"\n" for line in lines) + tail
    conn, stream = connection(list(split(data, cuts)))
    try:
        got = [conn.recv_line() for _ in lines]
        assert got == [line + b"\n" for line in lines]
        with pytest.raises(sockkit.ConnectError):
            conn.recv_line()  # the tail has no newline: the peer closed first...
        assert conn.recv(1 << 20) == tail  # ...and the tail is still there
    finally:
        stream.close()


@settings(max_examples=200, deadline=None)
@given(
    before=st.binary(max_size=200),
    delimiter=st.binary(min_size=1, max_size=4),
    after=st.binary(max_size=50),
    cuts=cuts,
)
def test_recv_until_is_the_same_however_the_bytes_are_split(
    before: bytes, delimiter: bytes, after: bytes, cuts: list[int]
) -> None:
    data = before + delimiter + after
    expected = data[: data.find(delimiter) + len(delimiter)]
    conn, stream = connection(list(split(data, cuts)))
    try:
        assert conn.recv_until(delimiter) == expected
        assert conn.recv_all() == data[len(expected) :]
    finally:
        stream.close()


@settings(max_examples=200, deadline=None)
@given(
    first=st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"")),
    second=st.binary(max_size=200),
    cuts_first=cuts,
    cuts_second=cuts,
)
def test_a_timeout_loses_no_byte(
    first: bytes, second: bytes, cuts_first: list[int], cuts_second: list[int]
) -> None:
    data = first + b"\n" + second
    script: list[bytes | None] = [*split(first, cuts_first), STALL]
    script += split(b"\n" + second, cuts_second)
    conn, stream = connection(script)
    try:
        with pytest.raises(sockkit.TimeoutError) as caught:
            conn.recv_line(timeout=0.01)
        assert caught.value.partial == first  # shown in the error...
        assert conn.buffered == len(first)  # ...and kept in the buffer
        stream.release()
        assert conn.recv_line() + conn.recv_all() == data
    finally:
        stream.close()


@settings(max_examples=100, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=300), n=st.integers(min_value=1, max_value=300), cuts=cuts
)
def test_recv_exactly_keeps_a_short_read_buffered(data: bytes, n: int, cuts: list[int]) -> None:
    conn, stream = connection(list(split(data, cuts)))
    try:
        if n <= len(data):
            assert conn.recv_exactly(n) == data[:n]
            assert conn.recv_all() == data[n:]
        else:
            with pytest.raises(sockkit.ConnectError, match=f"after {len(data)} of {n} bytes"):
                conn.recv_exactly(n)
            assert conn.recv_all() == data
    finally:
        stream.close()
