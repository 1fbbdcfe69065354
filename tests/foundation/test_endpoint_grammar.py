"""The endpoint grammar: every row of DESIGN.md's table, malformed texts, and round-trips."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.conftest import run_cli

from sockkit import Endpoint, EndpointError, parse_endpoint

GOOD = [
    ("tcp://example.com:80", Endpoint("tcp", "example.com", 80)),
    ("tcp://127.0.0.1:7007", Endpoint("tcp", "127.0.0.1", 7007)),
    ("tcp://[::1]:7007", Endpoint("tcp", "::1", 7007)),
    ("tcp://[fe80::1%lo]:22", Endpoint("tcp", "fe80::1%lo", 22)),
    ("udp://127.0.0.1:5353", Endpoint("udp", "127.0.0.1", 5353)),
    ("udp://[::1]:9", Endpoint("udp", "::1", 9)),
    ("tls://localhost:4433", Endpoint("tls", "localhost", 4433)),
    ("unix:/run/sockkit.sock", Endpoint("unix", path="/run/sockkit.sock")),
    ("unix:rel/path.sock", Endpoint("unix", path="rel/path.sock")),
    ("unix:@sockkit-test", Endpoint("unix", path="@sockkit-test")),
    ("unixgram:/tmp/dgram.sock", Endpoint("unixgram", path="/tmp/dgram.sock")),
    ("unixgram:@dgram", Endpoint("unixgram", path="@dgram")),
    ("localhost:8080", Endpoint("tcp", "localhost", 8080)),
    ("10.1.2.3:0", Endpoint("tcp", "10.1.2.3", 0)),
    ("[::]:7007", Endpoint("tcp", "::", 7007)),
    (":7007", Endpoint("tcp", None, 7007)),
    ("7007", Endpoint("tcp", "127.0.0.1", 7007)),
    ("0", Endpoint("tcp", "127.0.0.1", 0)),
    ("udp://:9000", Endpoint("udp", None, 9000)),
    ("udp://9000", Endpoint("udp", "127.0.0.1", 9000)),
    ("tcp://:65535", Endpoint("tcp", None, 65535)),
    # Service names stay names: the grammar does no look-ups (resolution does).
    ("localhost:echo", Endpoint("tcp", "localhost", "echo")),
    ("udp://127.0.0.1:daytime", Endpoint("udp", "127.0.0.1", "daytime")),
    ("echo", Endpoint("tcp", "127.0.0.1", "echo")),
    ("tcp://nosuchservice", Endpoint("tcp", "127.0.0.1", "nosuchservice")),
]


@pytest.mark.parametrize(("text", "expected"), GOOD, ids=[t for t, _ in GOOD])
def test_every_grammar_row_parses(text: str, expected: Endpoint) -> None:
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize(("text", "expected"), GOOD, ids=[t for t, _ in GOOD])
def test_format_parses_back_to_the_same_endpoint(text: str, expected: Endpoint) -> None:
    assert parse_endpoint(str(expected)) == expected


def test_kinds() -> None:
    assert parse_endpoint("udp://1.2.3.4:5").is_datagram
    assert parse_endpoint("unixgram:@x").socktype == socket.SOCK_DGRAM
    assert parse_endpoint("tls://h:1").is_tls and parse_endpoint("tls://h:1").is_stream
    assert parse_endpoint("unix:@x").is_abstract and not parse_endpoint("unix:/x").is_abstract
    assert parse_endpoint("[::1]:5").address == "[::1]:5"


BAD = [
    ("", "expected HOST:PORT"),
    (" 7007", "expected HOST:PORT"),
    ("tcp://", "expected HOST:PORT"),
    ("tcp://host.example", "expected HOST:PORT, or a port number"),
    ("host:", "expected a port number"),
    ("host:99999", "0-65535"),
    ("host:-1", "expected a port number 0-65535 or a service name"),
    ("[::1", "unclosed '['"),
    ("[::1]", "expected :PORT"),
    ("[::1]80", "expected :PORT"),
    ("::1:80", "put an IPv6 address in brackets"),
    ("[1.2.3.4]:80", "brackets must hold an IPv6 address"),
    ("ftp://host:21", "unknown scheme"),
    ("unix:", "socket path"),
    ("unix:@", "name after @"),
    ("unixgram:", "socket path"),
    ("unix:/" + "x" * 120, "at most 107 bytes"),
    ("tcp://a b:80", "host name or an IP address"),
    ("tcp://host:80/path", "port number 0-65535 or a service name"),
    ("host:80:90", "put an IPv6 address in brackets"),
    (":", "port number or service name"),
    ("99999", "0-65535"),
    ("tcp://user@host:80", "host name or an IP address"),
    ("udp://[::1]", "expected :PORT"),
    ("host:８０", "port number 0-65535 or a service name"),  # noqa: RUF001
]


@pytest.mark.parametrize(("text", "why"), BAD, ids=[repr(t) for t, _ in BAD])
def test_malformed_endpoint_is_a_usage_error_naming_text_and_expectation(
    text: str, why: str
) -> None:
    with pytest.raises(EndpointError) as info:
        parse_endpoint(text)
    assert info.value.exit_status == 2
    assert repr(text) in str(info.value)
    assert why in str(info.value)


CLI_BAD = ["host:99999", "::1:80", "ftp://x:1", "unix:@", "tcp://a b:1", "[::1"]


@pytest.mark.parametrize("text", CLI_BAD)
@pytest.mark.parametrize(
    "command", [["connect"], ["serve", "echo"], ["listen"], ["relay", "7007"], ["bench"]]
)
def test_malformed_endpoint_on_the_command_line_exits_2_with_one_line(
    command: list[str], text: str
) -> None:
    result = run_cli([*command, text], input=b"")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("sockkit: ")
    assert repr(text) in lines[0]
    assert "Traceback" not in result.stderr.decode()
    assert result.stdout == b""


@pytest.mark.parametrize(("text", "why"), BAD, ids=[repr(t) for t, _ in BAD])
def test_every_malformed_endpoint_fails_connect_with_exit_2_and_the_reason(
    text: str, why: str
) -> None:
    # "--" so a text starting with "-" is still the endpoint, as a user would write it.
    result = run_cli(["connect", "--", text], input=b"")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("sockkit: ")
    assert repr(text) in lines[0]
    assert why in lines[0]
    assert result.stdout == b""


hosts = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,3}", fullmatch=True),
    st.none(),
)
inet_endpoints = st.builds(
    Endpoint, st.sampled_from(["tcp", "udp", "tls"]), hosts, st.integers(0, 65535)
)
unix_endpoints = st.builds(
    lambda t, p: Endpoint(t, path=p),
    st.sampled_from(["unix", "unixgram"]),
    st.from_regex(r"@?[A-Za-z0-9_./-]{1,60}", fullmatch=True).filter(
        lambda p: p != "@" and not p.startswith("//")
    ),
)


@given(st.one_of(inet_endpoints, unix_endpoints))
def test_parse_format_round_trip(endpoint: Endpoint) -> None:
    assert parse_endpoint(str(endpoint)) == endpoint


@given(st.text(max_size=40))
def test_any_text_parses_or_raises_endpoint_error(text: str) -> None:
    try:
        endpoint = parse_endpoint(text)
    except EndpointError as exc:
        assert "\n" not in str(exc).replace(repr(text), "")
    else:
        assert parse_endpoint(str(endpoint)) == endpoint
