"""Finding services by name and loading a user's own ``module:Class``."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import sockkit
from sockkit import UsageError
from sockkit.cli.serve import _search_working_directory as search_working_directory
from sockkit.services import (
    SERVICE_NAMES,
    ChatService,
    DatagramService,
    EchoDatagram,
    EchoService,
    Service,
    ServiceSpec,
    chat_spec,
    get_service,
    load_service,
    resolve_service,
)
from sockkit.testing import MemoryConnection, exchange_datagram


def test_every_name_has_a_spec_with_a_stream_form() -> None:
    assert SERVICE_NAMES == ("echo", "discard", "chargen", "daytime", "time", "chat")
    for name in SERVICE_NAMES:
        spec = get_service(name)
        assert spec.name == name
        assert spec.stream is not None
        assert isinstance(spec.stream(), Service)
        assert spec.description
        assert (spec.datagram is None) == (name == "chat")
        assert spec.needs_shared_memory == (name == "chat")


def test_echo_spec_makes_fresh_objects() -> None:
    spec = get_service("echo")
    assert spec.stream is EchoService and spec.datagram is EchoDatagram
    assert spec.stream() is not spec.stream()


def test_chat_connections_of_one_spec_share_one_room() -> None:
    spec = get_service("chat")
    assert spec.stream is not None
    a, b = spec.stream(), spec.stream()
    assert isinstance(a, ChatService) and isinstance(b, ChatService)
    assert a.room is b.room
    other = get_service("chat").stream
    assert other is not None
    c = other()
    assert isinstance(c, ChatService) and c.room is not a.room


def test_spec_is_frozen() -> None:
    spec = get_service("echo")
    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]


def test_unknown_name_is_a_usage_error_naming_the_choices() -> None:
    with pytest.raises(UsageError) as caught:
        get_service("ech")
    message = str(caught.value)
    assert "'ech'" in message
    for name in SERVICE_NAMES:
        assert name in message
    assert caught.value.exit_status == 2


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module ``sk_user_services`` in a temporary working directory."""
    name = "sk_user_services"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            from sockkit import CLOSE, DatagramService, Service

            class Upper(Service):
                '''Upper-cases everything.'''
                def received(self, data):
                    return data.upper()

            class Reverse(DatagramService):
                def datagram(self, data, peer):
                    return data[::-1]

            class NeedsArgs(Service):
                def __init__(self, size):
                    self.size = size

            class Outer:
                class Inner(Service):
                    pass

            class NotAService:
                pass

            not_a_class = 42
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    search_working_directory()  # what 'sockkit serve' does before loading a service
    yield name
    sys.modules.pop(name, None)


def test_load_a_stream_service_from_the_working_directory(user_module: str) -> None:
    spec = load_service(f"{user_module}:Upper")
    assert spec.name == f"{user_module}:Upper"
    assert spec.datagram is None and spec.stream is not None
    assert spec.description == "Upper-cases everything."
    conn = MemoryConnection(spec.stream())
    conn.send(b"shout")
    assert conn.read() == b"SHOUT"


def test_the_library_leaves_sys_path_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sk_cwd_only.py").write_text(
        "from sockkit import Service\nclass S(Service): pass\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    before = list(sys.path)
    with pytest.raises(UsageError, match="no module named 'sk_cwd_only'"):
        load_service("sk_cwd_only:S")
    assert sys.path == before


def test_load_a_datagram_service(user_module: str) -> None:
    spec = load_service(f"{user_module}:Reverse")
    assert spec.stream is None and spec.datagram is not None
    assert exchange_datagram(spec.datagram(), b"abc") == b"cba"


def test_load_a_nested_class(user_module: str) -> None:
    spec = load_service(f"{user_module}:Outer.Inner")
    assert spec.stream is not None


def test_resolve_service_takes_names_and_module_class(user_module: str) -> None:
    assert resolve_service("echo").stream is EchoService
    assert resolve_service(f"{user_module}:Upper").name.endswith(":Upper")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sk_user_services", "expected a service name or module:Class"),
        ("sk_user_services:", "expected a service name or module:Class"),
        (":Upper", "expected a service name or module:Class"),
        ("sk_no_such_module_here:Upper", "no module named 'sk_no_such_module_here'"),
        ("sk_user_services:Missing", "has no 'Missing'"),
        ("sk_user_services:NotAService", "is not a subclass of sockkit.Service"),
        ("sk_user_services:not_a_class", "is not a subclass of sockkit.Service"),
        ("sk_user_services:NeedsArgs", "must be callable with no arguments"),
    ],
)
def test_bad_specs_are_usage_errors(user_module: str, text: str, expected: str) -> None:
    with pytest.raises(UsageError) as caught:
        load_service(text)
    assert expected in str(caught.value)
    assert text in str(caught.value)


def test_a_module_that_fails_to_import_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sk_broken_services.py").write_text("import sk_missing_dependency\n")
    (tmp_path / "sk_syntax_services.py").write_text("def broken(:\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != ""])
    search_working_directory()  # what 'sockkit serve' does before loading a service
    try:
        with pytest.raises(UsageError, match="importing sk_broken_services failed"):
            load_service("sk_broken_services:X")
        with pytest.raises(UsageError, match="SyntaxError"):
            load_service("sk_syntax_services:X")
    finally:
        sys.modules.pop("sk_broken_services", None)


def test_public_names() -> None:
    assert sockkit.ServiceSpec is ServiceSpec
    assert sockkit.get_service is get_service
    assert sockkit.load_service is load_service
    assert issubclass(EchoDatagram, DatagramService)


def test_chat_spec_takes_limits_for_its_room() -> None:
    spec = chat_spec(max_line=8, queue_cap=100, notices=False)
    assert spec.name == "chat" and spec.needs_shared_memory
    assert spec.stream is not None
    a, b = MemoryConnection(spec.stream(), "a:1"), MemoryConnection(spec.stream(), "b:2")
    a.send(b"12345678\n")
    assert b.read() == b"[a:1] 12345678\n"
    a.send(b"123456789\n")
    assert a.finished and a.close_reason == "chat line longer than 8 bytes"
    with pytest.raises(ValueError):
        chat_spec(max_line=0)
