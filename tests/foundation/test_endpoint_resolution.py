"""The endpoint's three steps kept apart: the grammar looks nothing up, resolution does.

Service names stay names in the parsed :class:`Endpoint` and become numbers only
in the resolution step; an unknown one is still a usage error (exit 2) for
every command, raised where the name is looked up.
"""

from __future__ import annotations

import socket

import pytest
from tests.conftest import run_cli

from sockkit import EndpointError, parse_endpoint
from sockkit._endpoint import parse_address, resolve, resolve_service

LOOKED_UP = [
    "localhost:echo",
    "udp://127.0.0.1:daytime",
    "echo",
    "tcp://nosuchservice",
    "example.invalid:http",
    "[fe80::1%lo]:ssh",
    ":7007",
]


def _refuse(*args: object, **kwargs: object) -> object:
    raise AssertionError(f"the grammar looked something up: {args!r}")


@pytest.mark.parametrize("text", LOOKED_UP)
def test_parsing_looks_nothing_up(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("getservbyname", "getaddrinfo", "gethostbyname", "getnameinfo"):
        monkeypatch.setattr(socket, name, _refuse)
    endpoint = parse_endpoint(text)
    assert parse_endpoint(str(endpoint)) == endpoint


def test_service_names_become_numbers_in_the_resolution_step() -> None:
    assert resolve_service(parse_endpoint("localhost:echo")).port == 7
    assert resolve_service(parse_endpoint("udp://127.0.0.1:daytime")).port == 13
    assert resolve_service(parse_endpoint("tls://h:https")).port == 443
    numeric = parse_endpoint("127.0.0.1:7007")
    assert resolve_service(numeric) is numeric
    infos = resolve(parse_endpoint("echo"))
    assert {info.port for info in infos} == {7}
    assert {info.host for info in infos} == {"127.0.0.1"}


def test_an_unknown_service_name_is_a_usage_error_at_resolution() -> None:
    endpoint = parse_endpoint("localhost:nosuchservice")
    with pytest.raises(EndpointError) as info:
        resolve(endpoint)
    assert info.value.exit_status == 2
    assert "unknown service name 'nosuchservice'" in str(info.value)
    assert "'localhost:nosuchservice'" in str(info.value)


@pytest.mark.parametrize(
    "command",
    [["connect", "--"], ["listen"], ["relay", "127.0.0.1:0"], ["bench"], ["serve", "echo"]],
)
def test_every_command_refuses_an_unknown_service_name_with_exit_2(command: list[str]) -> None:
    result = run_cli([*command, "localhost:nosuchservice"], input=b"", timeout=20)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.decode().splitlines()
    assert lines == [
        "sockkit: bad endpoint 'localhost:nosuchservice': unknown service name"
        " 'nosuchservice'; expected a port number 0-65535 (a host needs HOST:PORT)"
    ]


def test_serve_still_reads_module_class_as_a_service_not_an_endpoint() -> None:
    result = run_cli(["serve", "no_such_module_here:Upper"], timeout=20)
    assert result.returncode == 2, result.stderr
    assert "no module named 'no_such_module_here'" in result.stderr.decode()


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1", "127.0.0.1", 0),
        ("127.0.0.1:22", "127.0.0.1", 22),
        ("fe80::1%lo", "fe80::1%lo", 0),
        ("[fe80::1%lo]:22", "fe80::1%lo", 22),
        ("::1", "::1", 0),
        (":5000", None, 5000),
    ],
)
def test_parse_address_takes_bare_and_bracketed_forms(
    text: str, host: str | None, port: int
) -> None:
    endpoint = parse_address(text)
    assert (endpoint.host, endpoint.port) == (host, port)


@pytest.mark.parametrize("text", ["", "127.0.0.1:99999", "[::1", "fe80::1%", "a b"])
def test_parse_address_refuses_malformed_text(text: str) -> None:
    with pytest.raises(EndpointError):
        parse_address(text)
