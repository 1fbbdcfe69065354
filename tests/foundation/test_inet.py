"""The byte-order and address toolbox, against the C API's behaviour."""

from __future__ import annotations

import json
import socket
import struct
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockkit import UsageError
from sockkit._inet import byte_order, hton16, hton32, ntoh16, ntoh32, ntop, parse_int, pton
from sockkit.cli import main


@given(st.ip_addresses())
def test_pton_ntop_round_trip(address: object) -> None:
    text = str(address)
    packed = pton(text)
    assert ntop(packed.packed) == socket.inet_ntop(packed.family, packed.packed)
    assert ntop(packed.hex) == ntop(packed.packed)
    assert pton(ntop(packed.packed)) == packed


@given(st.integers(0, 0xFFFF))
def test_16_bit_conversions_match_the_c_api(value: int) -> None:
    assert hton16(value) == socket.htons(value)
    assert ntoh16(hton16(value)) == value
    assert struct.pack("=H", hton16(value)) == struct.pack("!H", value)


@given(st.integers(0, 0xFFFFFFFF))
def test_32_bit_conversions_match_the_c_api(value: int) -> None:
    assert hton32(value) == socket.htonl(value)
    assert ntoh32(hton32(value)) == value


def test_endian_by_union_matches_sys_byteorder() -> None:
    order = byte_order()
    assert order.order == sys.byteorder
    assert order.memory == (b"\x02\x01" if sys.byteorder == "little" else b"\x01\x02")


@pytest.mark.parametrize("bad", ["1.2.3", "::g", "300.1.1.1", "", "1.2.3.4/8"])
def test_pton_rejects_bad_addresses(bad: str) -> None:
    with pytest.raises(UsageError):
        pton(bad)


@pytest.mark.parametrize("bad", ["abc", "c0a801", "00" * 5, "zz" * 4])
def test_ntop_rejects_bad_hex(bad: str) -> None:
    with pytest.raises(UsageError):
        ntop(bad)


def test_parse_int_accepts_decimal_and_hex_and_checks_range() -> None:
    assert parse_int("0x1b5f", 16) == 7007
    assert parse_int("7007", 16) == 7007
    for bad in ("65536", "-1", "x"):
        with pytest.raises(UsageError):
            parse_int(bad, 16)


def test_cli_pton_prints_hex_and_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inet", "pton", "192.168.1.10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["hex"] == "c0a8010a"
    assert out["bytes"] == "192.168.1.10"
    assert out["uint32_network"] == 0xC0A8010A


def test_cli_ntop_and_swaps(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inet", "ntop", "00000000000000000000000000000001"]) == 0
    assert "::1" in capsys.readouterr().out
    assert main(["inet", "hton16", "0x1b5f", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["output"] == socket.htons(0x1B5F)
    assert main(["inet", "endian"]) == 0
    assert sys.byteorder in capsys.readouterr().out


def test_cli_bad_value_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inet", "hton16", "70000"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sockkit: ")


def test_cli_resolve_table_and_services(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["resolve", "127.0.0.1", "echo", "--type", "stream", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [
        {
            "family": "inet",
            "type": "stream",
            "protocol": "tcp",
            "canonname": "127.0.0.1",
            "address": "127.0.0.1",
            "port": 7,
            "sockaddr": "127.0.0.1:7",
        }
    ]
    assert main(["resolve", "--service", "echo", "--json"]) == 0
    assert {"port": 7, "protocol": "tcp", "service": "echo"} in json.loads(capsys.readouterr().out)
    assert main(["resolve", "--service", "7", "--json"]) == 0
    assert {"port": 7, "protocol": "tcp", "service": "echo"} in json.loads(capsys.readouterr().out)
    assert main(["resolve", "--reverse", "127.0.0.1:7", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["service"] == "echo"


def test_cli_resolve_passive_wildcard(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["resolve", "", "7007", "--passive", "--family", "4", "--type", "stream"]) == 0
    assert "0.0.0.0" in capsys.readouterr().out


def test_cli_resolve_unknown_name_is_runtime_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["resolve", "no-such-host.invalid"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sockkit: cannot resolve no-such-host.invalid: ")
    assert err.count("\n") == 1
