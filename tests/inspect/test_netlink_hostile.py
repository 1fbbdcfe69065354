"""Malformed sock_diag datagrams: the parsers answer OSError(EBADMSG), never hang or crash.

The kernel never sends these, but the parsers' input is bytes off a socket
and a bug here must not turn ``sockkit ss`` into a hang or a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import struct
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.inspect.diag_packets import attribute, done, inet_diag, message, unix_diag

from sockkit.inspect._netlink import parse_inet_dump
from sockkit.inspect._unix_diag import parse_unix_dump

SOCK_DIAG_BY_FAMILY = 20
INET_DIAG_SKV6ONLY, INET_DIAG_CGROUP_ID, INET_DIAG_SHUTDOWN = 11, 21, 8
UNIX_DIAG_PEER, UNIX_DIAG_RQLEN, UNIX_DIAG_SHUTDOWN = 2, 4, 6

PARSERS: dict[str, Callable[[bytes], object]] = {
    "inet": lambda chunk: parse_inet_dump(chunk, "tcp"),
    "inet details": lambda chunk: parse_inet_dump(chunk, "tcp", tcp_info=True, details=True),
    "unix": lambda chunk: parse_unix_dump(chunk),
    "unix details": lambda chunk: parse_unix_dump(chunk, names={}, details=True),
}


@contextlib.contextmanager
def time_limit() -> Iterator[None]:
    """Fail (instead of hanging the suite) if a parse takes over 2 s."""

    def hung(signum: int, frame: object) -> None:
        raise AssertionError("the parser did not return within 2 s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, 2.0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def alarm() -> Iterator[None]:
    with time_limit():
        yield


def header(length: int, kind: int) -> bytes:
    return struct.pack("=IHHII", length, kind, 2, 1, 0)


def refuses(parse: Callable[[bytes], object], chunk: bytes) -> None:
    with pytest.raises(OSError) as caught:
        parse(chunk)
    assert caught.value.errno == errno.EBADMSG
    assert "sock_diag" in str(caught.value)


@pytest.mark.parametrize("name", PARSERS)
@pytest.mark.parametrize("kind", [SOCK_DIAG_BY_FAMILY, 0, 1, 65535])
def test_a_length_field_below_the_header_is_an_error_not_a_loop(
    name: str, kind: int, alarm: None
) -> None:
    # length 0 used to leave the offset where it was: an endless loop
    for length in (0, 4, 15):
        refuses(PARSERS[name], header(length, kind) + bytes(120))


@pytest.mark.parametrize("name", PARSERS)
def test_a_length_field_past_the_datagram_is_an_error(name: str) -> None:
    refuses(PARSERS[name], header(4096, SOCK_DIAG_BY_FAMILY) + bytes(100))


@pytest.mark.parametrize("name", PARSERS)
def test_a_socket_message_shorter_than_its_struct_is_an_error(name: str) -> None:
    # a header and 4 bytes: parse_unix_dump used to raise struct.error here
    refuses(PARSERS[name], header(20, SOCK_DIAG_BY_FAMILY) + bytes(4))
    refuses(PARSERS[name], header(16, SOCK_DIAG_BY_FAMILY))


@pytest.mark.parametrize("name", ["inet", "inet details"])
def test_an_inet_attribute_cut_short_by_its_message_is_an_error(name: str) -> None:
    whole = inet_diag(
        family=10, src="::1", dst="::", inode=7, attributes=attribute(INET_DIAG_CGROUP_ID, bytes(8))
    )
    # the message (and the datagram) ends inside the attribute
    cut = struct.pack("=I", len(whole) - 4) + whole[4:-4]
    refuses(PARSERS[name], cut)
    for kind in (INET_DIAG_SKV6ONLY, INET_DIAG_SHUTDOWN):
        refuses(
            PARSERS[name],
            inet_diag(family=10, src="::1", dst="::", attributes=attribute(kind, b"")),
        )


@pytest.mark.parametrize("name", ["unix", "unix details"])
def test_a_unix_attribute_shorter_than_its_value_is_an_error(name: str) -> None:
    for kind in (UNIX_DIAG_PEER, UNIX_DIAG_RQLEN, UNIX_DIAG_SHUTDOWN):
        refuses(PARSERS[name], unix_diag(inode=3, attributes=attribute(kind, b"")))
    whole = unix_diag(inode=3, attributes=attribute(UNIX_DIAG_RQLEN, bytes(8)))
    refuses(PARSERS[name], struct.pack("=I", len(whole) - 4) + whole[4:-4])


def test_well_formed_dumps_still_parse_around_the_checks() -> None:
    chunk = inet_diag(inode=5) + message(1, b"") + done()
    rows, finished = parse_inet_dump(chunk, "tcp")
    assert finished and [row[9] for row in rows] == [5]
    rows, finished = parse_unix_dump(unix_diag(inode=9) + done())
    assert finished and [row[9] for row in rows] == [9]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_rows_or_os_error(chunk: bytes) -> None:
    for parse in PARSERS.values():
        with time_limit(), contextlib.suppress(OSError):
            parse(chunk)


def test_a_destroy_events_protocol_attribute_without_its_byte_is_not_read() -> None:
    from sockkit.inspect._events import _protocol

    inet_diag_protocol = 10  # INET_DIAG_PROTOCOL
    base = inet_diag(inode=1)
    # an empty attribute at the very end: reading its byte was an IndexError
    assert _protocol(base + struct.pack("=HH", 4, inet_diag_protocol)) == 6
    assert _protocol(base + attribute(inet_diag_protocol, b"\x11")) == 17
