"""sockkit.testing: the memory driver follows the grammar and catches services that break it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.docpages import code_blocks, page

from sockkit.cli.serve import _search_working_directory as search_working_directory
from sockkit.services import CLOSE, HALF_CLOSE, DatagramService, EchoService, Service
from sockkit.services._registry import load_service
from sockkit.testing import ContractViolation, MemoryConnection, exchange_datagram

SERVICES_PAGE = page("services.md")


class Recorder(Service):
    """Logs every call, echoes, and half-closes when told to."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def connected(self, peer: str) -> bytes:
        self.calls.append(f"connected {peer}")
        return b"hi\n"

    def received(self, data: bytes) -> bytes:
        self.calls.append(f"received {data!r}")
        if data == b"bye":
            self.state = HALF_CLOSE
            return b"goodbye\n"
        return b"" if self.state == HALF_CLOSE else data

    def eof_received(self) -> bytes:
        self.calls.append("eof")
        return super().eof_received()

    def closed(self) -> None:
        self.calls.append("closed")


def test_calls_follow_the_grammar_and_sends_are_not_merged() -> None:
    service = Recorder()
    conn = MemoryConnection(service, "peer:1")
    conn.send(b"a")
    conn.send(b"b")
    assert conn.read() == b"hi\nab"
    conn.shutdown_write()
    assert conn.read_until_eof() == b""
    assert service.calls == ["connected peer:1", "received b'a'", "received b'b'", "eof", "closed"]


def test_big_sends_arrive_in_read_size_pieces() -> None:
    service = Recorder()
    conn = MemoryConnection(service, read_size=4)
    conn.send(b"0123456789")
    assert service.calls[1:] == ["received b'0123'", "received b'4567'", "received b'89'"]
    assert conn.read() == b"hi\n0123456789"


def test_half_close_keeps_reading_until_the_peers_eof() -> None:
    service = Recorder()
    conn = MemoryConnection(service)
    conn.send(b"bye")
    assert conn.half_closed and not conn.finished
    assert conn.read() == b"hi\ngoodbye\n"
    assert conn.at_eof and not conn.finished
    conn.send(b"more")
    assert service.calls[-1] == "received b'more'"
    conn.shutdown_write()
    assert conn.finished and service.calls[-2:] == ["eof", "closed"]


def test_output_waits_at_high_water_until_read() -> None:
    conn = MemoryConnection(EchoService(), high_water=10, low_water=5, read_size=10)
    for _ in range(5):
        conn.send(b"x" * 10)
    assert conn.buffered == 10  # reading paused: the rest waits on the client's side
    assert conn.bytes_in == 10
    assert conn.read() == b"x" * 10
    assert conn.bytes_in == 20


def test_close_by_the_client_calls_closed_once_and_drops_output() -> None:
    service = Recorder()
    conn = MemoryConnection(service)
    conn.close()
    conn.close()
    assert service.calls.count("closed") == 1 and conn.closed_calls == 1
    assert conn.read() == b"" and conn.at_eof


def test_send_after_shutdown_write_is_a_test_mistake() -> None:
    conn = MemoryConnection(EchoService())
    conn.shutdown_write()
    with pytest.raises(ValueError):
        conn.send(b"x")


def test_read_until_eof_reports_a_stall() -> None:
    conn = MemoryConnection(EchoService())
    conn.send(b"x")
    with pytest.raises(ContractViolation, match="stalled"):
        conn.read_until_eof()


class Greedy(Service):
    producing = True

    def produce(self, limit: int) -> bytes:
        return b"x" * (limit + 1)


class Idle(Service):
    producing = True

    def produce(self, limit: int) -> bytes:
        return b""


class TextReply(Service):
    def received(self, data: bytes) -> bytes:
        return data.decode()  # type: ignore[return-value]


class TalksAfterHalfClose(Service):
    def connected(self, peer: str) -> bytes:
        self.state = HALF_CLOSE
        return b""

    def received(self, data: bytes) -> bytes:
        return data


class Reopens(Service):
    def connected(self, peer: str) -> bytes:
        self.state = HALF_CLOSE
        return b""

    def received(self, data: bytes) -> bytes:
        self.state = 0
        return b""


@pytest.mark.parametrize(
    ("service", "message"),
    [
        (Greedy(), r"produce\(65536\) returned 65537 bytes"),
        (Idle(), "left producing set"),
        (TextReply(), "received\\(\\) returned str"),
        (TalksAfterHalfClose(), "after HALF_CLOSE"),
        (Reopens(), "back to OPEN"),
    ],
)
def test_contract_violations_are_caught(service: Service, message: str) -> None:
    with pytest.raises(ContractViolation, match=message):
        conn = MemoryConnection(service)
        conn.send(b"x")


class Oversize(DatagramService):
    max_reply = 3

    def datagram(self, data: bytes, peer: str) -> bytes | None:
        return data


def test_datagram_replies_are_checked_against_max_reply() -> None:
    assert exchange_datagram(Oversize(), b"abc") == b"abc"
    with pytest.raises(ContractViolation, match="more than max_reply=3"):
        exchange_datagram(Oversize(), b"abcd")


def test_a_service_closing_between_calls_is_noticed_through_wakeup() -> None:
    class Kicked(Service):
        def kick(self) -> None:
            self.state = CLOSE
            self.close_reason = "kicked"
            self.producing = True
            self.wakeup()

        def produce(self, limit: int) -> bytes:
            self.producing = False
            return b""

    service = Kicked()
    conn = MemoryConnection(service)
    service.kick()
    assert conn.wakeups == 1
    conn.pump()
    assert conn.finished and conn.close_reason == "kicked"


# -- the services page's examples, run as written -------------------------


@pytest.fixture
def mymod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    blocks = code_blocks(SERVICES_PAGE.read_text(), "python")
    module = next(block for block in blocks if "class Upper(Service)" in block)
    (tmp_path / "mymod.py").write_text(module)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != ""])
    search_working_directory()  # what 'sockkit serve' does before loading a service
    yield
    sys.modules.pop("mymod", None)


def test_documented_upper_example_loads_and_works(mymod: None) -> None:
    spec = load_service("mymod:Upper")
    assert spec.stream is not None
    conn = MemoryConnection(spec.stream())
    conn.send(b"hello\nwor")
    assert conn.read() == b"HELLO\n"
    conn.send(b"ld")
    conn.shutdown_write()
    assert conn.read_until_eof() == b"WORLD"


def test_documented_upper_example_refuses_an_endless_line(mymod: None) -> None:
    spec = load_service("mymod:Upper")
    assert spec.stream is not None
    conn = MemoryConnection(spec.stream())
    conn.send(b"a" * (64 * 1024 + 1))
    assert conn.finished and conn.close_reason == "line too long"


def test_documented_testing_example_runs(
    mymod: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    blocks = code_blocks(SERVICES_PAGE.read_text(), "python")
    block = next(b for b in blocks if "MemoryConnection(Upper())" in b)
    exec(compile(block, str(SERVICES_PAGE), "exec"), {})
