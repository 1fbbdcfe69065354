"""echo, discard, daytime and time, called directly as an engine would call them."""

from __future__ import annotations

import calendar
import re
import time

import pytest

from sockkit.services import (
    CLOSE,
    HALF_CLOSE,
    OPEN,
    DaytimeDatagram,
    DaytimeService,
    DiscardDatagram,
    DiscardService,
    EchoDatagram,
    EchoService,
    TimeDatagram,
    TimeService,
)
from sockkit.services._base import Service, lends_input
from sockkit.services._classic import RFC868_EPOCH_OFFSET, daytime_line, rfc868_time
from sockkit.services._contract import Checked

MONTHS = "January February March April May June July August September October November December"
DAYTIME = re.compile(
    rb"(Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), "
    rb"(" + MONTHS.replace(" ", "|").encode() + rb") "
    rb"(\d{1,2}), (\d{4}) (\d\d):(\d\d):(\d\d)-UTC\r\n"
)


def test_echo_returns_the_very_same_object() -> None:
    service = EchoService()
    data = b"hello\n"
    assert service.connected("127.0.0.1:1") == b""
    assert service.received(data) is data
    assert service.state == OPEN


def test_echo_and_discard_may_be_lent_a_view_of_the_read_buffer() -> None:
    assert lends_input(EchoService) and lends_input(DiscardService)
    view = memoryview(b"borrowed")
    assert EchoService().received(view) is view  # type: ignore[arg-type]


def test_only_a_marked_received_is_lent_a_view() -> None:
    class KeepsInput(EchoService):
        def received(self, data: bytes) -> bytes:
            return data

    class InheritsEcho(EchoService):
        def eof_received(self) -> bytes:
            return b"bye"

    assert not lends_input(KeepsInput)
    assert lends_input(InheritsEcho)  # same received, same promise
    assert not lends_input(Service) and not lends_input(DaytimeService)
    assert not lends_input(Checked)  # the debug wrapper passes what it gets to its own checks


def test_echo_closes_after_eof() -> None:
    service = EchoService()
    service.connected("p")
    assert service.eof_received() == b""
    assert service.state == CLOSE


def test_discard_answers_nothing_and_closes_after_eof() -> None:
    service = DiscardService()
    assert service.connected("p") == b""
    assert service.received(b"x" * 1000) == b""
    assert service.state == OPEN
    service.eof_received()
    assert service.state == CLOSE


def test_daytime_line_for_a_known_instant() -> None:
    assert daytime_line(0) == b"Thursday, January 1, 1970 00:00:00-UTC\r\n"
    moment = calendar.timegm((2026, 11, 21, 16, 11, 44, 0, 0, 0))
    assert daytime_line(moment) == b"Saturday, November 21, 2026 16:11:44-UTC\r\n"


def test_daytime_service_sends_the_clock_then_closes() -> None:
    before = int(time.time())
    service = DaytimeService()
    line = service.connected("p")
    after = int(time.time())
    assert service.state == HALF_CLOSE  # closes fully once the peer has finished
    match = DAYTIME.fullmatch(line)
    assert match, line
    month = MONTHS.split().index(match[2].decode()) + 1
    sent = calendar.timegm(
        (int(match[4]), month, int(match[3]), int(match[5]), int(match[6]), int(match[7]), 0, 0, 0)
    )
    assert before <= sent <= after


def test_rfc868_known_values() -> None:
    assert rfc868_time(0) == RFC868_EPOCH_OFFSET.to_bytes(4, "big")
    assert rfc868_time(0) == bytes.fromhex("83aa7e80")


def test_rfc868_wraps_in_2036() -> None:
    wrap = 2**32 - RFC868_EPOCH_OFFSET  # 2036-02-07 06:28:16 UTC
    assert time.gmtime(wrap)[:6] == (2036, 2, 7, 6, 28, 16)
    assert rfc868_time(wrap - 1) == b"\xff\xff\xff\xff"
    assert rfc868_time(wrap) == b"\x00\x00\x00\x00"
    assert rfc868_time(wrap + 5) == b"\x00\x00\x00\x05"


def test_time_service_sends_four_bytes_of_now_then_closes() -> None:
    before = int(time.time())
    service = TimeService()
    reply = service.connected("p")
    after = int(time.time())
    assert service.state == HALF_CLOSE
    assert service.received(b"ignored") == b""
    service.eof_received()
    assert service.state == CLOSE
    assert len(reply) == 4
    assert (
        before + RFC868_EPOCH_OFFSET <= int.from_bytes(reply, "big") <= after + RFC868_EPOCH_OFFSET
    )


def test_time_and_daytime_use_the_given_clock() -> None:
    assert TimeService(clock=lambda: 1.9).connected("p") == rfc868_time(1)
    assert DaytimeService(clock=lambda: 0.0).connected("p") == daytime_line(0)


def test_echo_datagram_returns_the_datagram() -> None:
    service = EchoDatagram()
    assert service.datagram(b"ping", "127.0.0.1:5") == b"ping"
    assert service.datagram(b"", "127.0.0.1:5") == b""


def test_echo_datagram_drops_what_it_could_not_send_back_whole() -> None:
    service = EchoDatagram()
    assert service.datagram(b"x" * service.max_reply, "p") is not None
    assert service.datagram(b"x" * (service.max_reply + 1), "p") is None


def test_discard_datagram_never_replies() -> None:
    assert DiscardDatagram().datagram(b"anything", "p") is None


@pytest.mark.parametrize("now", [0.0, 2_000_000_000.0, 4_000_000_000.0, 253_402_300_799.0])
def test_time_and_daytime_datagrams_fit_their_max_reply(now: float) -> None:
    daytime = DaytimeDatagram(clock=lambda: now).datagram(b"", "p")
    assert daytime == daytime_line(now)
    assert len(daytime) <= DaytimeDatagram.max_reply
    assert TimeDatagram(clock=lambda: now).datagram(b"", "p") == rfc868_time(now)
    assert TimeDatagram.max_reply == 4
