"""The sans-I/O connection core, with plain calls: no socket, no thread, no loop."""

from __future__ import annotations

from sockkit.engines._contract import CloseReason, Limits
from sockkit.engines._core import END_OF_STREAM, ConnectionCore, tick_interval
from sockkit.services._base import CLOSE, HALF_CLOSE, Service

LIMITS = Limits(high_water=100, low_water=20, output_cap=1000, idle_timeout=1.0, send_timeout=2.0)


class Echo(Service):
    def received(self, data: bytes) -> bytes:
        return data


class Chargen(Service):
    produced = 0

    def connected(self, peer: str) -> bytes:
        self.producing = True
        return b""

    def produce(self, limit: int) -> bytes:
        self.produced += limit
        return b"c" * limit


class GreetAndHalfClose(Service):
    def connected(self, peer: str) -> bytes:
        self.state = HALF_CLOSE
        return b"hello"

    def received(self, data: bytes) -> bytes:
        return b"late"  # the contract forbids it: dropped


class Flood(Service):
    def received(self, data: bytes) -> bytes:
        return b"f" * 5000


class Broken(Service):
    def received(self, data: bytes) -> bytes:
        raise ValueError("bad input")


def _core(service: Service, limits: Limits = LIMITS) -> ConnectionCore:
    core = ConnectionCore(service, limits, now=0.0)
    core.start("peer")
    return core


def test_echo_output_waits_until_sent_and_eof_closes_once_flushed() -> None:
    core = _core(Echo())
    core.receive(b"abc")
    assert bytes(core.data_to_send() or b"") == b"abc"
    core.sent(2)
    assert bytes(core.data_to_send() or b"") == b"c"
    core.receive_eof()
    assert not core.should_close  # one byte still to send
    core.sent(1)
    assert core.should_close and core.close_reason is None
    assert (core.bytes_in, core.bytes_out) == (3, 3)


def test_high_water_pauses_reading_and_low_water_resumes() -> None:
    core = _core(Echo())
    core.receive(b"x" * 150)
    assert not core.wants_read and core.wants_write
    core.sent(100)
    assert not core.wants_read  # 50 left: above low water
    core.sent(30)
    assert core.wants_read


def test_output_past_the_cap_closes_with_the_one_wording() -> None:
    core = _core(Flood())
    core.receive(b"go")
    assert (
        core.should_close and core.close_reason == CloseReason.OUTPUT_CAP == "output cap exceeded"
    )
    assert core.data_to_send() is None


def test_producing_service_is_asked_up_to_high_water_only_below_low_water() -> None:
    service = Chargen()
    core = _core(service)
    core.writable()
    assert len(core.out) == 100 and service.produced == 100
    core.writable()
    assert service.produced == 100  # still above low water
    core.sent(85)
    core.writable()
    assert len(core.out) == 100 and service.produced == 185


def test_half_close_sends_its_bytes_then_the_fin_and_drops_later_bytes() -> None:
    core = _core(GreetAndHalfClose())
    assert bytes(core.data_to_send() or b"") == b"hello"
    core.sent(5)
    assert core.data_to_send() is END_OF_STREAM
    core.fin_sent()
    assert core.data_to_send() is None and core.wants_read
    core.receive(b"x")
    assert core.data_to_send() is None  # "late" was dropped
    core.receive_eof()
    assert core.should_close and core.close_reason is None


def test_close_flushes_first_and_logs_the_service_reason() -> None:
    class Bye(Service):
        def received(self, data: bytes) -> bytes:
            self.state = CLOSE
            self.close_reason = "bye"
            return b"bye!"

    core = _core(Bye())
    core.receive(b"x")
    assert not core.should_close
    core.sent(4)
    assert core.should_close and core.close_reason == "bye"


def test_idle_and_send_deadlines_come_from_byte_counters() -> None:
    stalled = _core(Echo(), Limits(send_timeout=2.0))
    stalled.receive(b"x")  # output waits: the peer takes nothing
    stalled.tick(0.5)
    stalled.tick(2.4)
    assert not stalled.should_close
    stalled.tick(2.6)
    assert stalled.should_close and stalled.close_reason == CloseReason.SEND_TIMEOUT

    quiet = _core(Echo(), Limits(idle_timeout=1.0))
    quiet.tick(0.1)
    quiet.receive(b"x")
    quiet.sent(1)
    quiet.tick(0.6)  # traffic since the last look: the clock starts again
    quiet.tick(1.5)
    assert not quiet.should_close
    quiet.tick(1.6)
    assert quiet.should_close and quiet.close_reason == CloseReason.IDLE_TIMEOUT == "idle timeout"


def test_a_service_that_raises_is_closed_with_its_error() -> None:
    core = _core(Broken())
    core.receive(b"x")
    assert core.should_close and core.close_reason == "service error: ValueError: bad input"


def test_tick_interval_is_a_quarter_of_the_shortest_timeout_at_most_half_a_second() -> None:
    assert tick_interval(Limits()) is None
    assert tick_interval(Limits(idle_timeout=0.4, send_timeout=10)) == 0.1
    assert tick_interval(Limits(send_timeout=30)) == 0.5
    assert tick_interval(Limits(line_timeout=1.0)) == 0.25


class Closing(Service):
    def received(self, data: bytes) -> bytes:
        self.state = CLOSE
        return b"bye"


class Recorder(ConnectionCore):
    """A pump's view: which of the two ends the core chose."""

    __slots__ = ("ends",)

    def __init__(self, service: Service) -> None:
        super().__init__(service, LIMITS, now=0.0)
        self.ends: list[str] = []

    def abort(self, reason: str | None) -> None:
        self.ends.append("abort")
        super().abort(reason)

    def finish(self, reason: str | None) -> None:
        self.ends.append("finish")
        super().finish(reason)


def test_a_normal_end_is_finish_and_a_rule_is_abort() -> None:
    """A pump whose lower layer still holds bytes flushes them after finish, drops them after abort."""
    normal = Recorder(Closing())
    normal.start("peer")
    normal.receive(b"x")
    normal.sent(len(normal.out))
    assert normal.should_close and normal.ends == ["finish"]

    capped = Recorder(Flood())
    capped.start("peer")
    capped.receive(b"x")
    assert capped.close_reason == CloseReason.OUTPUT_CAP and capped.ends == ["abort"]


def test_no_buffer_until_output_waits_and_a_fully_sent_one_is_let_go() -> None:
    core = _core(Echo())
    assert core.out == b"" and not isinstance(core.out, bytearray)
    core.receive(b"abc")
    held = core.data_to_send()
    assert isinstance(held, bytearray)
    core.sent(3)
    # The pump may hand ``held`` on (an asyncio transport keeps it): the core no longer owns it.
    assert core.out is not held and held == b"abc" and core.bytes_out == 3
