"""Parsing ss's filter language (pure), its bytecode's shape, and the CLI's answer to a bad filter."""

from __future__ import annotations

import socket
import struct

import pytest
from tests.conftest import run_cli

from sockkit.inspect import ALL_STATES, FilterError, parse_filter
from sockkit.inspect._bytecode import BC_JMP, BC_S_COND, compile_bytecode
from sockkit.inspect._filter_match import compile_predicate
from sockkit.inspect._filter_tree import And, HostCond, Not, Or, PortCompare

ESTABLISHED, LISTEN, TIME_WAIT = 1 << 1, 1 << 10, 1 << 6


def row(local: str, lport: int, peer: str, pport: int, family: str = "inet") -> tuple[object, ...]:
    return ("tcp", "ESTAB", 0, 0, family, local, lport, peer, pport, 1, 0, False, (), None, None)


def test_state_words_or_together_and_exclude_starts_from_every_state() -> None:
    assert parse_filter(["state", "established", "state", "listening"]).states == (
        ESTABLISHED | LISTEN
    )
    assert parse_filter(["exclude", "time-wait"]).states == ALL_STATES & ~TIME_WAIT
    assert parse_filter(["state", "connected"]).states == ALL_STATES & ~(LISTEN | 1 << 7)
    assert parse_filter([]).states is None and parse_filter([]).expression is None


def test_one_argument_or_many_words_parse_alike() -> None:
    quoted = parse_filter(["( dport = :ssh or sport = :ssh )"])
    split = parse_filter(["(", "dport", "=", ":ssh", "or", "sport", "=", ":ssh", ")"])
    assert quoted == split
    assert quoted.expression == Or(HostCond("d", 22), HostCond("s", 22))


def test_operators_chain_left_to_right_as_ss_parses_them() -> None:
    a, b, c = HostCond("s", 1), HostCond("s", 2), HostCond("d", 3)
    assert parse_filter(["sport = :1 or sport = :2 and dport = :3"]).expression == And(Or(a, b), c)
    assert parse_filter(["sport = :1 sport = :2"]).expression == And(a, b)  # no word: and
    assert parse_filter(["not sport = :1 or sport = :2"]).expression == Or(Not(a), b)


def test_comparisons_become_ss_s_primitives() -> None:
    assert parse_filter(["sport gt :1024"]).expression == Not(PortCompare("s", "le", 1024))
    assert parse_filter(["dport < 80"]).expression == Not(PortCompare("d", "ge", 80))
    assert parse_filter(["sport >= :5"]).expression == PortCompare("s", "ge", 5)
    assert parse_filter(["dport != :5"]).expression == Not(HostCond("d", 5))
    assert parse_filter(["sport = *"]).expression == HostCond("s", None)


def test_hosts_prefixes_and_families() -> None:
    net = parse_filter(["dst 127.0.0.1/8"]).expression
    assert net == HostCond("d", None, ((socket.AF_INET, bytes([127, 0, 0, 1]), 8),))
    short = parse_filter(["dst 193.233.7/24"]).expression  # ss's short dotted form
    assert isinstance(short, HostCond) and short.addresses[0][1] == bytes([193, 233, 7, 0])
    v6 = parse_filter(["src [::1]:7007"]).expression
    assert v6 == HostCond("s", 7007, ((socket.AF_INET6, socket.inet_pton(10, "::1"), 128),))
    assert parse_filter(["src inet6:[::1]"]).families == {"inet6"}
    unix = parse_filter(["src /tmp/*.sock"])
    assert unix.expression == HostCond("s", None, (), "/tmp/*.sock") and unix.families == {"unix"}
    assert parse_filter(["src anything*"], unix_only=True).expression == HostCond(
        "s", None, (), "anything*"
    )


def test_python_evaluation_follows_the_kernel_address_rules() -> None:
    match = compile_predicate(parse_filter(["dst 127.0.0.1/8"]).expression)  # type: ignore[arg-type]
    assert match(row("10.0.0.1", 1, "127.9.9.9", 2))  # type: ignore[arg-type]
    assert not match(row("10.0.0.1", 1, "128.0.0.1", 2))  # type: ignore[arg-type]
    assert match(row("::ffff:1.2.3.4", 1, "::ffff:127.0.0.1", 2, "inet6"))  # type: ignore[arg-type]
    assert not match(row("::1", 1, "::1", 2, "inet6"))  # type: ignore[arg-type]


def test_bytecode_shape_for_or_and_not() -> None:
    program = compile_bytecode(parse_filter(["src :1 or not src :2"]).expression)  # type: ignore[arg-type]
    assert program is not None
    ops = []
    pos = 0
    while pos < len(program):
        code, yes, no = struct.unpack_from("=BBH", program, pos)
        ops.append((code, yes, no))
        pos += yes
    # S_COND(:1), JMP to the end (32: accept), S_COND(:2), JMP 4 past the end (the not)
    assert [op[0] for op in ops] == [BC_S_COND, BC_JMP, BC_S_COND, BC_JMP]
    assert ops[0] == (BC_S_COND, 12, 16) and ops[1] == (BC_JMP, 4, 20) and ops[3] == (BC_JMP, 4, 8)
    unix = parse_filter(["src /tmp/x or src :1"]).expression
    assert compile_bytecode(unix) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("words", "position", "message"),
    [
        (["sport = :7007 or"], 4, "ends too early"),
        (["dport", "gt", "x-nope"], 2, "port"),
        (["state", "bogus"], 1, "unknown state"),
        (["(", "sport", "=", ":1"], 4, "expected ')'"),
        (["src", "1.2.3.4/99"], 1, "prefix"),
        (["dev", "lo"], 0, "not supported"),
        (["sport", "=", ":1", ")"], 3, "unexpected"),
    ],
)
def test_errors_point_at_the_word(words: list[str], position: int, message: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter(words)
    assert caught.value.position == position and message in str(caught.value)
    lines = caught.value.explain().splitlines()
    assert lines[1].index("^") - 2 == len(" ".join(caught.value.words[:position])) + (
        1 if position else 0
    )
    assert "FILTER" in lines[2]


def test_cli_bad_filter_is_exit_2_with_a_caret_and_the_grammar() -> None:
    result = run_cli(["ss", "-t", "sport", "gt", "nonsense-port"])
    assert result.returncode == 2 and result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert lines[0].startswith("sockkit: ss: bad filter:") and "nonsense-port" in lines[0]
    assert lines[1] == "  sport gt nonsense-port"
    assert lines[2] == "  " + " " * len("sport gt ") + "^"
    assert any(line.strip().startswith("EXPRESSION") for line in lines[3:])
    assert "Traceback" not in result.stderr.decode()


def test_help_leads_with_the_forms_ss_users_type() -> None:
    text = run_cli(["ss", "--help"]).stdout.decode()
    head = text.splitlines()[:16]
    assert head[0].startswith("usage: sockkit ss [-tuxlan46]")
    assert any("state established '( dport = :ssh or sport = :ssh )'" in line for line in head)
    assert any("sockkit ss -tlnp" in line for line in head)
    assert "FILTER     := { state STATE | exclude STATE }" in text


def test_kill_without_a_filter_is_refused() -> None:
    result = run_cli(["ss", "-K"])
    assert result.returncode == 2 and result.stdout == b""
    [line] = result.stderr.decode().splitlines()
    assert line.startswith("sockkit: ") and "FILTER" in line
