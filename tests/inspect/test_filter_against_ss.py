"""ss's filter language: the same rows as iproute2 ss for the same expressions, and the
kernel running the compiled bytecode keeps exactly what the Python evaluation keeps.

Every comparison looks only at the zoo's own sockets (its ports, paths and
inodes): the machine is shared and other programs' sockets come and go.
ss is run before and after sockkit, and a comparison counts only when the
two ss runs agree, so a socket changing state in between cannot fail it.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from functools import partial

import pytest
from tests.conftest import run_cli
from tests.inspect.sockzoo import SocketZoo

from sockkit.inspect import parse_filter, select_query
from sockkit.inspect._bytecode import compile_bytecode
from sockkit.inspect._filter_match import compile_predicate
from sockkit.inspect._netlink import AF_INET, AF_INET6, IPPROTO_TCP, inet_request, parse_inet_dump
from sockkit.inspect._query import ALL_STATES
from sockkit.inspect._sockdiag import SockDiag

pytestmark = pytest.mark.skipif(shutil.which("ss") is None, reason="needs iproute2 ss")

Rows = list[tuple[str, ...]]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SocketZoo]:
    sockets = SocketZoo(tmp_path_factory.mktemp("filter-zoo"))
    yield sockets
    sockets.close()


def _zoo_rows(text: str, keep: Callable[[tuple[str, ...]], bool]) -> Rows:
    return sorted(fields for line in text.splitlines() if keep(fields := tuple(line.split())))


def _inet_keep(ports: set[int]) -> Callable[[tuple[str, ...]], bool]:
    def keep(fields: tuple[str, ...]) -> bool:
        ends = [f.rpartition(":")[2] for f in fields if ":" in f]
        return any(end.isdigit() and int(end) in ports for end in ends)

    return keep


def _unix_keep(inodes: set[int]) -> Callable[[tuple[str, ...]], bool]:
    return lambda fields: any(f.isdigit() and int(f) in inodes for f in fields[4:8])


def same_as_ss(args: list[str], keep: Callable[[tuple[str, ...]], bool]) -> tuple[Rows, Rows]:
    """(ss's rows, sockkit's rows) for ``args``, from a moment when ss's answer held still."""
    for _attempt in range(5):
        before = subprocess.run(["ss", *args], capture_output=True, text=True, check=True)
        ours = run_cli(["ss", *args])
        assert ours.returncode == 0, ours.stderr
        after = subprocess.run(["ss", *args], capture_output=True, text=True, check=True)
        expected = _zoo_rows(before.stdout, keep)
        if expected == _zoo_rows(after.stdout, keep):
            return expected, _zoo_rows(ours.stdout.decode(), keep)
    raise AssertionError("ss's answer kept changing")


def expressions(zoo: SocketZoo) -> list[list[str]]:
    p, p6, tw = zoo.tcp_port, zoo.tcp6_port, zoo.time_wait_port
    return [
        ["state", "established", f"( dport = :{p} or sport = :{p} )"],
        ["dst", "127.0.0.1/8"],
        ["dst", "127.0.0.0/24"],
        [f"src :{p}"],
        [f"src 127.0.0.1:{p}"],
        ["sport", "gt", ":1024"],
        [f"sport > :{p}"],
        [f"sport < :{p}"],
        [f"sport >= :{p}", "and", f"sport <= :{p}"],
        [f"dport != :{p}"],
        [f"dport eq :{p}"],
        [f"dport ge :{p}", "&&", f"dport le :{p}"],
        ["state", "connected", f"sport = :{p}"],
        ["state", "synchronized"],
        ["state", "listening", "state", "time-wait"],
        ["state", "bucket"],
        ["state", "big", f"dport = :{p}"],
        ["exclude", "established", "exclude", "time-wait"],
        ["exclude", "listening"],
        [f"not dport = :{p}"],
        [f"! ( sport = :{p} or dport = :{p} )"],
        # or/and chain left to right: (sport or dport) and dport
        [f"sport = :{p} or dport = :{p} and dport = :{p}"],
        [f"sport = :{p} | sport = :{p6} | sport = :{tw}"],
        [f"src [::1]:{p6}"],
        ["dst", "[::1]"],
        [f"src inet6:[::1]:{p6}"],
        ["src", "inet:127.0.0.1"],
        ["dst", "localhost"],
        ["autobound"],
        ["not", "autobound"],
    ]


@pytest.mark.parametrize("index", range(30))
def test_tcp_filter_expressions_match_ss(zoo: SocketZoo, index: int) -> None:
    expression = expressions(zoo)[index]
    keep = _inet_keep(zoo.tcp_ports)
    expected, got = same_as_ss(["-tanH", *expression], keep)
    assert got == expected, expression
    if index in (0, 3, 8, 21):
        assert expected, f"{expression} should select some of the zoo's sockets"


@pytest.mark.parametrize("flags", ["-tnH", "-tlnH", "-6tanH", "-4tanH"])
def test_filters_combine_with_table_and_state_flags_as_in_ss(zoo: SocketZoo, flags: str) -> None:
    p = zoo.tcp_port
    for expression in ([f"sport = :{p} or dport = :{p}"], ["src", "[::1]"], ["dst", "127.0.0.1"]):
        if "[::1]" in expression and "4" in flags:
            continue  # ss refuses an IPv6 address after -4
        if "127.0.0.1" in expression and "6" in flags:
            continue
        expected, got = same_as_ss([flags, *expression], _inet_keep(zoo.tcp_ports))
        assert got == expected, (flags, expression)


def test_udp_filters_match_ss(zoo: SocketZoo) -> None:
    ports = zoo.udp_ports
    for expression in (["src", "127.0.0.1"], ["dst", "[::1]"], [f"sport = :{zoo.udp_port}"]):
        expected, got = same_as_ss(["-uanH", *expression], _inet_keep(ports))
        assert got == expected and expected, expression


def test_unix_globs_match_ss(zoo: SocketZoo) -> None:
    keep = _unix_keep(zoo.unix_inodes)
    for expression in (
        ["src", zoo.unix_path],
        ["src", "*ZOO.SOCK"],  # ss's glob ignores case
        ["src", f"@{zoo.abstract_name[:14]}*"],
        ["src", "unix:*zoo*"],
        ["not", "src", "*zoo*"],
    ):
        expected, got = same_as_ss(["-xanH", *expression], keep)
        assert got == expected and expected, expression


def _dump(af: int, bytecode: bytes) -> list[tuple[object, ...]]:
    with SockDiag() as diag:
        request = inet_request(af, IPPROTO_TCP, ALL_STATES, bytecode=bytecode)
        return diag.dump(request, partial(parse_inet_dump, netid="tcp"))


@pytest.mark.parametrize("index", range(30))
def test_the_kernel_runs_the_compiled_bytecode_as_python_evaluates_it(
    zoo: SocketZoo, index: int
) -> None:
    expression = parse_filter(expressions(zoo)[index]).expression
    if expression is None:
        return  # state words only: nothing for the kernel to run
    program = compile_bytecode(expression)
    assert program, "every TCP expression here compiles for the kernel"
    keep = compile_predicate(expression)
    # the listeners' ports only: the TIME-WAIT entry's port is free for other
    # programs' connections to reuse, and they come and go between two dumps
    ports = {zoo.tcp_port, zoo.tcp6_port}

    def ours(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
        return sorted(r[:9] for r in rows if r[6] in ports or r[8] in ports)

    for af in (AF_INET, AF_INET6):
        for _attempt in range(5):
            everything = ours(_dump(af, b""))
            by_kernel = ours(_dump(af, program))
            if everything == ours(_dump(af, b"")):
                break  # nothing of the zoo's changed while the kernel filtered
        by_python = [row for row in everything if keep(row)]  # type: ignore[arg-type]
        if "autobound" in " ".join(expressions(zoo)[index]):
            # the kernel's test (not bound by the user) and ss's (an ephemeral
            # port) differ, which is why both are applied; compare what both keep
            by_kernel = [row for row in by_kernel if keep(row)]  # type: ignore[arg-type]
        assert by_kernel == by_python, (af, expressions(zoo)[index])


def test_select_query_takes_the_filter_state_mask() -> None:
    chosen = parse_filter(["exclude", "listening"])
    query = select_query(tcp=True, state_mask=chosen.states)
    assert query.states == ALL_STATES & ~(1 << 10)
