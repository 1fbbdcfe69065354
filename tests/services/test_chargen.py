"""chargen: the RFC 864 pattern, produced in whatever pieces the driver asks for."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from sockkit.services import CLOSE, OPEN, ChargenDatagram, ChargenService
from sockkit.services._chargen import CYCLE, MAX_CHUNK, MAX_DATAGRAM, chargen_bytes
from sockkit.testing import MemoryConnection, exchange_datagram

PRINTABLE = bytes(range(0x20, 0x7F))


def expected_stream(count: int) -> bytes:
    """The first ``count`` bytes of chargen, built the slow, obvious way."""
    out = bytearray()
    line = 0
    while len(out) < count:
        out += bytes(PRINTABLE[(line + i) % 95] for i in range(72)) + b"\r\n"
        line += 1
    return bytes(out[:count])


def test_cycle_is_95_lines_of_72_printable_chars_and_crlf() -> None:
    lines = CYCLE.split(b"\r\n")
    assert lines[-1] == b""
    lines = lines[:-1]
    assert len(lines) == 95
    for n, line in enumerate(lines):
        assert len(line) == 72
        assert line[0] == 0x20 + n
        assert all(0x20 <= c <= 0x7E for c in line)
    assert lines[0] == PRINTABLE[:72]
    assert lines[94][:2] == b"~ "  # wraps from 0x7E back to 0x20


def test_stream_matches_the_slow_definition_across_cycles() -> None:
    service = ChargenService()
    out = bytearray()
    while len(out) < 3 * len(CYCLE) + 100:
        out += service.produce(1000)
    assert bytes(out) == expected_stream(len(out))


@given(st.lists(st.integers(min_value=1, max_value=3 * MAX_CHUNK), min_size=1, max_size=40))
def test_output_is_the_same_however_limits_are_chosen(limits: list[int]) -> None:
    service = ChargenService()
    pieces = [service.produce(limit) for limit in limits]
    for limit, piece in zip(limits, pieces, strict=True):
        assert 0 < len(piece) <= limit
        assert len(piece) == min(limit, MAX_CHUNK)
    joined = b"".join(pieces)
    assert joined == chargen_bytes(0, len(joined))


@given(st.integers(min_value=0, max_value=10 * len(CYCLE)), st.integers(0, 5 * MAX_CHUNK))
def test_chargen_bytes_is_the_stream_from_any_offset(offset: int, count: int) -> None:
    assert chargen_bytes(offset, count) == expected_stream(offset + count)[offset:]


def test_input_is_discarded_and_eof_closes() -> None:
    service = ChargenService()
    assert service.connected("p") == b""
    assert service.producing
    assert service.received(b"ignored") == b""
    assert service.state == OPEN
    service.eof_received()
    assert service.state == CLOSE


def test_over_memory_output_is_exactly_what_the_reader_reads_with_bounded_buffering() -> None:
    conn = MemoryConnection(ChargenService(), high_water=8192, low_water=2048)
    got = bytearray()
    rng = random.Random(7)
    while len(got) < 200_000:
        got += conn.read(rng.randint(1, 5000))
        assert conn.buffered <= 8192
    assert conn.max_buffered <= 8192
    # Everything produced is either read or still buffered: nothing ran ahead.
    assert conn.bytes_out == len(got) + conn.buffered
    assert bytes(got) == chargen_bytes(0, len(got))
    conn.shutdown_write()
    tail = conn.read_until_eof()
    assert bytes(got) + tail == chargen_bytes(0, len(got) + len(tail))
    assert conn.closed_calls == 1


def test_a_reader_that_stops_gets_no_more_produced() -> None:
    conn = MemoryConnection(ChargenService(), high_water=4096, low_water=1024)
    produced = conn.bytes_out
    assert produced == 4096
    conn.send(b"more input")  # input does not make chargen run ahead either
    conn.pump()
    assert conn.bytes_out == produced


def test_datagram_replies_are_0_to_512_chars_of_the_pattern() -> None:
    service = ChargenDatagram(rng=random.Random(1))
    lengths = set()
    for n in range(500):
        reply = exchange_datagram(service, b"")
        assert reply is not None
        assert len(reply) <= MAX_DATAGRAM
        lengths.add(len(reply))
        assert reply == chargen_bytes((n % 95) * 74, len(reply))
    assert min(lengths) < 30 and max(lengths) > 480  # lengths really vary over the range


def test_datagram_lengths_include_both_bounds() -> None:
    class Fixed(random.Random):
        def __init__(self, value: int) -> None:
            super().__init__()
            self.value = value

        def randint(self, a: int, b: int) -> int:
            assert (a, b) == (0, MAX_DATAGRAM)
            return self.value

    assert exchange_datagram(ChargenDatagram(rng=Fixed(0)), b"x") == b""
    reply = exchange_datagram(ChargenDatagram(rng=Fixed(512)), b"x")
    assert reply == chargen_bytes(0, 512)
