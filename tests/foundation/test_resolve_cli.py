"""``sockkit resolve``: the grammar's port range and IPv6 scopes, as every other command has them."""

from __future__ import annotations

import json
import socket

import pytest
from tests.conftest import run_cli

from sockkit._endpoint import format_sockaddr

LO_INDEX = socket.if_nametoindex("lo")


@pytest.mark.parametrize(
    "args",
    [
        ["resolve", "localhost", "70000"],
        ["resolve", "--reverse", "127.0.0.1:99999"],
        ["resolve", "--reverse", "[::1]:65536"],
    ],
)
def test_a_port_out_of_range_is_a_usage_error(args: list[str]) -> None:
    result = run_cli(args)
    assert result.returncode == 2, result.stdout
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sockkit: "), lines
    assert lines[0].endswith("port must be 0-65535")
    assert result.stdout == b""


def test_resolve_keeps_the_ipv6_scope() -> None:
    result = run_cli(["resolve", "fe80::1%lo", "22", "--type", "stream", "--json"])
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["address"], r["port"], r["sockaddr"]) for r in rows] == [
        ("fe80::1%lo", 22, "[fe80::1%lo]:22")
    ]


@pytest.mark.parametrize(("text", "port"), [("fe80::1%lo", 0), ("[fe80::1%lo]:22", 22)])
def test_reverse_takes_and_prints_a_scoped_address(text: str, port: int) -> None:
    result = run_cli(["resolve", "--reverse", text, "--json"])
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert (answer["address"], answer["port"]) == ("fe80::1%lo", port)
    assert answer["host"] == "fe80::1%lo"


def test_connect_names_the_scoped_address_it_could_not_reach() -> None:
    # lo has no fe80::1 here, so the connect fails; its message must keep %lo.
    result = run_cli(["connect", "--timeout", "2", "[fe80::1%lo]:22"], input=b"")
    assert result.returncode == 1, result.stderr
    assert "[fe80::1%lo]:22" in result.stderr.decode()


def test_format_sockaddr_prints_the_scope_by_interface_name() -> None:
    assert format_sockaddr(socket.AF_INET6, ("fe80::1", 22, 0, LO_INDEX)) == "[fe80::1%lo]:22"
    assert format_sockaddr(socket.AF_INET6, ("::1", 7, 0, 0)) == "[::1]:7"
    assert format_sockaddr(socket.AF_INET6, ("::ffff:127.0.0.1", 7, 0, 0)) == "127.0.0.1:7"
