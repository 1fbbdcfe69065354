"""Each scenario, played for real on loopback, checked against the textbook."""

from __future__ import annotations

import pytest
from tests.trace.scenario_runs import needs_capture, played

from sockkit._errors import SockkitError
from sockkit.trace import TcpState, Trace

S = TcpState
pytestmark = needs_capture


def flags(trace: Trace) -> list[str]:
    return [e.packet.flag_text for e in trace.events]


def client_states(trace: Trace) -> list[TcpState]:
    return [e.states[0].state for e in trace.events if e.states]


def server_states(trace: Trace) -> list[TcpState]:
    return [e.states[1].state for e in trace.events if e.states]


def kernel_agrees_at_end(trace: Trace, client: TcpState, server: TcpState) -> None:
    last = trace.events[-1].states
    assert last is not None
    assert (last[0].kernel, last[1].kernel) == (client, server)
    assert (last[0].state, last[1].state) == (client, server)


def test_handshake_is_syn_synack_ack_with_isn_plus_one_on_both_sides() -> None:
    trace = played("handshake")
    assert flags(trace) == ["SYN", "SYN+ACK", "ACK"]
    syn, synack, ack = (e.packet for e in trace.events)
    assert synack.ack == (syn.seq + 1) % 2**32
    assert ack.ack == (synack.seq + 1) % 2**32 and ack.seq == (syn.seq + 1) % 2**32
    assert [e.isn for e in trace.events] == [syn.seq, synack.seq, None]
    assert [(e.seq, e.ack) for e in trace.events] == [(0, 0), (0, 1), (1, 1)]
    assert trace.initial is not None
    assert [s.state for s in trace.initial] == [S.CLOSED, S.LISTEN]
    assert [s.kernel for s in trace.initial] == [S.CLOSED, S.LISTEN]
    assert client_states(trace) == [S.SYN_SENT, S.ESTABLISHED, S.ESTABLISHED]
    assert server_states(trace) == [S.SYN_RECEIVED, S.SYN_RECEIVED, S.ESTABLISHED]
    kernel_agrees_at_end(trace, S.ESTABLISHED, S.ESTABLISHED)
    for packet in (syn, synack):  # Linux offers every option a SYN can carry
        assert packet.options.mss and packet.options.wscale is not None
        assert packet.options.sack_permitted and packet.options.timestamps is not None
    assert trace.stats is not None and trace.stats.dropped == 0


def test_transfer_carries_every_byte_in_order_and_acknowledges_it() -> None:
    trace = played("transfer")
    sent = {True: b"", False: b""}
    for event in trace.events:
        if event.packet.length:
            assert event.seq == len(sent[event.rightward]) + 1  # relative seq counts bytes
            sent[event.rightward] += event.packet.payload
    assert sent[True] == b"GET /motd\r\n"
    assert sent[False] == b"Hello, sockets! Every byte has a number.\r\n"
    last_ack = {e.rightward: e.ack for e in trace.events}
    assert last_ack[False] == len(sent[True]) + 1 and last_ack[True] == len(sent[False]) + 1
    assert set(client_states(trace)[1:]) == {S.ESTABLISHED}
    kernel_agrees_at_end(trace, S.ESTABLISHED, S.ESTABLISHED)


def test_close_is_four_segments_and_the_first_closer_ends_in_time_wait() -> None:
    trace = played("close")
    teardown = trace.events[3:]
    assert [(e.rightward, e.packet.flag_text) for e in teardown] == [
        (True, "FIN+ACK"),
        (False, "ACK"),
        (False, "FIN+ACK"),
        (True, "ACK"),
    ]
    assert teardown[1].ack == teardown[0].seq + 1  # the FIN takes one sequence number
    assert teardown[3].ack == teardown[2].seq + 1
    assert client_states(trace)[3:] == [S.FIN_WAIT_1, S.FIN_WAIT_2, S.TIME_WAIT, S.TIME_WAIT]
    assert server_states(trace)[3:] == [S.CLOSE_WAIT, S.CLOSE_WAIT, S.LAST_ACK, S.CLOSED]
    kernel_agrees_at_end(trace, S.TIME_WAIT, S.CLOSED)
    fin_wait_2 = teardown[1].states
    assert fin_wait_2 is not None and fin_wait_2[0].kernel is S.FIN_WAIT_2
    assert fin_wait_2[1].kernel is S.CLOSE_WAIT


def test_half_close_lets_the_server_send_after_the_clients_fin() -> None:
    trace = played("half-close")
    fin = next(e for e in trace.events if e.rightward and "FIN" in e.packet.flag_text)
    later = trace.events[fin.index + 1 :]
    replies = [e for e in later if not e.rightward and e.packet.length]
    assert b"".join(e.packet.payload for e in replies) == b"reply, part 1\nreply, part 2\n"
    assert all(e.states and e.states[0].state is S.FIN_WAIT_2 for e in replies)
    acked = [e.ack for e in later if e.rightward]
    assert acked[-1] == replies[-1].seq + replies[-1].packet.length + 1  # data and the FIN
    kernel_agrees_at_end(trace, S.TIME_WAIT, S.CLOSED)


def test_simultaneous_close_fins_cross_and_both_ends_pass_through_closing() -> None:
    trace = played("simultaneous-close")
    fins = [e for e in trace.events if "FIN" in e.packet.flag_text]
    assert len(fins) == 2 and fins[0].rightward != fins[1].rightward
    # neither FIN acknowledges the other (that would be ack=2): each left before the other came
    assert fins[0].seq == fins[1].seq == 1
    assert fins[0].ack == fins[1].ack == 1
    assert S.CLOSING in client_states(trace) and S.CLOSING in server_states(trace)
    assert not any("retransmission" in e.notes for e in trace.events)
    kernel_agrees_at_end(trace, S.TIME_WAIT, S.TIME_WAIT)


def test_refused_is_syn_then_rst_ack() -> None:
    trace = played("refused")
    assert flags(trace) == ["SYN", "RST+ACK"]
    syn, rst = (e.packet for e in trace.events)
    assert rst.ack == (syn.seq + 1) % 2**32
    assert trace.initial is not None and trace.initial[1].kernel is S.CLOSED
    assert client_states(trace) == [S.SYN_SENT, S.CLOSED]
    kernel_agrees_at_end(trace, S.CLOSED, S.CLOSED)


def test_reset_aborts_with_rst_no_fin_and_no_time_wait() -> None:
    trace = played("reset")
    assert trace.events[-1].packet.flag_text.startswith("RST") and trace.events[-1].rightward
    assert not any("FIN" in f for f in flags(trace))
    kernel_agrees_at_end(trace, S.CLOSED, S.CLOSED)
    assert S.TIME_WAIT not in client_states(trace)


def test_backlog_full_drops_the_syn_and_the_client_retransmits_it() -> None:
    trace = played("backlog-full")
    syns = [e for e in trace.events if e.packet.flag_text == "SYN"]
    assert len(syns) >= 2 and len({e.packet.seq for e in syns}) == 1
    assert "no answer: the receiver dropped it" in syns[0].notes
    assert "retransmission" in syns[1].notes
    assert syns[1].time - syns[0].time > 0.9  # the initial retransmission timeout is 1 s
    assert syns[0].states is not None and syns[0].states[1].state is S.LISTEN
    assert flags(trace)[len(syns) :] == ["SYN+ACK", "ACK"]
    kernel_agrees_at_end(trace, S.ESTABLISHED, S.ESTABLISHED)


def test_zero_window_advertises_zero_probes_and_reopens() -> None:
    trace = played("zero-window")
    zero = [e for e in trace.events if not e.rightward and e.packet.window == 0]
    assert zero, "the reader never advertised a zero window"
    probes = [e for e in trace.events if any(n.startswith("window probe") for n in e.notes)]
    assert probes and all(p.rightward and p.packet.length == 0 for p in probes)
    assert probes[0].index > zero[0].index
    reopened = [e for e in trace.events if "window opens again" in e.notes]
    assert reopened and reopened[0].index > probes[0].index and reopened[0].window
    data = sum(e.packet.length for e in trace.events if e.rightward)
    retransmitted = sum(e.packet.length for e in trace.events if "retransmission" in e.notes)
    assert trace.events[-1].ack == data - retransmitted + 1
    kernel_agrees_at_end(trace, S.ESTABLISHED, S.ESTABLISHED)


def test_udp_datagrams_then_icmp_port_unreachable() -> None:
    trace = played("udp")
    kinds = [(e.packet.protocol, e.packet.payload) for e in trace.events]
    assert kinds[:3] == [("udp", b"ping 1"), ("udp", b"pong: ping 1"), ("udp", b"ping 2")]
    icmp = trace.events[3].packet
    assert icmp.protocol == "icmp" and icmp.icmp is not None
    assert (icmp.icmp.type, icmp.icmp.code) == (3, 3) and not trace.events[3].rightward
    assert all(e.states is None for e in trace.events)


def test_simultaneous_close_says_so_plainly_when_the_fins_do_not_cross(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sockkit.trace import _closing, record

    # a fast queue and no filler: the first FIN is delivered at once, as on a plain loopback
    monkeypatch.setattr(
        _closing, "_QUEUE", ("tbf", "rate", "1gbit", "burst", "100k", "latency", "1s")
    )
    monkeypatch.setattr(_closing, "_FILLERS", 0)
    with pytest.raises(SockkitError, match="the two FINs did not cross in 3 attempts"):
        record("simultaneous-close")
