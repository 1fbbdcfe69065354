"""The texts of ss's views, from values (pure): timers, rates, memory, details, the summary."""

from __future__ import annotations

from sockkit.inspect import SocketDetails, SocketMemory, format_summary
from sockkit.inspect._annotations import (
    Annotations,
    _ms_timer,
    format_bandwidth,
    format_details,
    format_memory,
    format_timer,
)
from sockkit.inspect._summary import parse_summary

SOCKSTAT = """sockets: used 20
TCP: inuse 4 orphan 1 tw 59 alloc 6 mem 196
UDP: inuse 2 mem 0
UDPLITE: inuse 0
RAW: inuse 0
FRAG: inuse 0 memory 0
"""
SOCKSTAT6 = (
    "TCP6: inuse 1\nUDP6: inuse 3\nUDPLITE6: inuse 0\nRAW6: inuse 0\nFRAG6: inuse 0 memory 0\n"
)
SNMP = "Tcp: RtoAlgorithm RtoMin CurrEstab\nTcp: 1 200 7\n"


def test_timer_texts_round_like_ss() -> None:
    assert _ms_timer(7_140_000) == "119min"
    assert _ms_timer(59_500) == "59sec"  # ten seconds or more drop the milliseconds
    assert _ms_timer(5_250) == "5.250sec"
    assert _ms_timer(200) == "200ms"
    assert _ms_timer(61_500) == "1min1sec"
    details = SocketDetails(timer=2, expires=7_140_000)
    assert format_timer(details) == "timer:(keepalive,119min,0)"
    assert format_timer(SocketDetails()) == ""


def test_rates_in_ss_units() -> None:
    assert format_bandwidth(145_635_555_556) == "146G"
    assert format_bandwidth(116_140_624) == "116M"
    assert format_bandwidth(999) == "999"
    assert format_bandwidth(145_635_555_556.4, numeric=True) == "145635555556"


def test_memory_and_details_texts() -> None:
    memory = SocketMemory(0, 131072, 0, 16384, 0, 0, 0, 0, 0)
    assert format_memory(memory) == "skmem:(r0,rb131072,t0,tb16384,f0,w0,o0,bl0,d0)"
    assert format_memory(SocketMemory(1, 2, 3, 4, 5, 6, 7)) == "skmem:(r1,rb2,t3,tb4,f5,w6,o7)"
    row = ("tcp", "LISTEN", 0, 5, "inet6", "::1", 7, "::", 0, 42, 1000, True, (), None, None)
    details = SocketDetails(cookie=0x9A71, cgroup_id=5, shutdown=0)
    text = format_details(row, details, {5: "/user.slice"})  # type: ignore[arg-type]
    assert text == "uid:1000 ino:42 sk:9a71 cgroup:/user.slice v6only:1 <->"
    half = SocketDetails(cookie=1, shutdown=2)
    estab = ("tcp", "ESTAB", 0, 0, "inet", "1.2.3.4", 1, "1.2.3.5", 2, 7, 0, False, (), None, None)
    assert format_details(estab, half) == "ino:7 sk:1 <--"  # type: ignore[arg-type]
    assert format_details(estab, SocketDetails(cookie=1, cgroup_id=9)) == (  # type: ignore[arg-type]
        "ino:7 sk:1 cgroup:unreachable:9"
    )


def test_second_line_as_ss_prints_it() -> None:
    tw = ("tcp", "TIME-WAIT", 0, 0, "inet", "1.2.3.4", 1, "1.2.3.5", 2, 0, 0, False, (), None, None)
    assert Annotations(memory=True)(tw) == ("", "")  # type: ignore[arg-type]
    udp = ("udp", "UNCONN", 0, 0, "inet", "1.2.3.4", 1, "0.0.0.0", 0, 0, 0, False, (), None, None)
    assert Annotations(tcp_info=True)(udp) == ("", None)  # type: ignore[arg-type]


def test_summary_text_as_ss_prints_it() -> None:
    text = format_summary(parse_summary(SOCKSTAT, SOCKSTAT6, SNMP))
    lines = text.splitlines()
    assert lines[0] == "Total: 20"
    assert lines[1] == "TCP:   65 (estab 7, closed 60, orphaned 1, timewait 59)"
    assert lines[3] == "Transport Total     IP        IPv6"
    assert lines[5].split() == ["UDP", "5", "2", "3"]
    assert lines[7].split() == ["INET", "10", "6", "4"]
