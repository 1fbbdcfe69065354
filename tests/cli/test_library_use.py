"""sockkit as a library: any service form is taken, and the log goes where the application says."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator

import pytest

import sockkit
from sockkit import Service


class Upper(Service):
    """Echoes upper-cased."""

    def received(self, data: bytes) -> bytes:
        return data.upper()


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def app_logging() -> Iterator[Records]:
    """What an application does: a handler of its own on the sockkit.server logger."""
    logger = logging.getLogger("sockkit.server")
    handler = Records()
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


def _talk(server: sockkit.Server, data: bytes) -> bytes:
    (endpoint,) = server.open()
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=10) as sock:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
    finally:
        server.stop()
        thread.join(20)
    return reply


@pytest.mark.parametrize(
    "service", [Upper, lambda: Upper(), sockkit.ServiceSpec("upper", Upper)], ids=str
)
def test_server_takes_a_service_subclass_a_factory_or_a_spec(service: object) -> None:
    server = sockkit.Server(service, ["tcp://127.0.0.1:0"], engine="thread")  # type: ignore[arg-type]
    with server:
        assert _talk(server, b"hello") == b"HELLO"


@pytest.mark.parametrize("wrong", [42, object(), str])
def test_a_wrong_service_is_a_type_error_saying_what_is_expected(wrong: object) -> None:
    with pytest.raises(TypeError, match="Service or DatagramService subclass"):
        sockkit.Server(wrong, ["tcp://127.0.0.1:0"])  # type: ignore[arg-type]


def test_an_embedded_server_logs_through_the_application_and_not_to_stderr(
    app_logging: Records, capfd: pytest.CaptureFixture[str]
) -> None:
    server = sockkit.Server(Upper, ["tcp://127.0.0.1:0"], engine="thread")
    with server:
        assert _talk(server, b"x") == b"X"
    joined = "\n".join(app_logging.messages)
    assert "listening on tcp://127.0.0.1:" in joined
    assert any(m.startswith("opened ") for m in app_logging.messages), joined
    assert any(m.startswith("closed ") for m in app_logging.messages), joined
    out, err = capfd.readouterr()
    assert err == "" and out == ""


def test_the_library_has_only_a_null_handler() -> None:
    handlers = logging.getLogger("sockkit").handlers
    assert handlers and all(isinstance(h, logging.NullHandler) for h in handlers)
    assert logging.getLogger("sockkit.server").handlers == []
