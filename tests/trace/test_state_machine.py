"""The transition table and the packets-to-events rules, on packets made by hand (no capture)."""

from __future__ import annotations

from sockkit.trace import TRANSITIONS, Packet, TcpState, Trace, build_trace
from sockkit.trace._packet import ACK, FIN, PSH, RST, SYN
from sockkit.trace._states import EndModel, Event, step

S = TcpState
CLIENT, SERVER = ("10.0.0.1", 40000), ("10.0.0.2", 80)
C_ISN, S_ISN = 1000, 5000


def seg(
    from_client: bool, flags: int, seq: int, ack: int = 0, length: int = 0, window: int = 100
) -> Packet:
    (src, sport), (dst, dport) = (CLIENT, SERVER) if from_client else (SERVER, CLIENT)
    return Packet(
        0.0, src, sport, dst, dport, "tcp", length, b"x" * length, seq, ack, flags, window
    )


def timed(packets: list[Packet]) -> list[Packet]:
    return [p.__class__(**{**p.__dict__, "time": i / 1000}) for i, p in enumerate(packets)]


def states(trace: Trace) -> list[tuple[S, S]]:
    return [(e.states[0].state, e.states[1].state) for e in trace.events if e.states]


HANDSHAKE = [
    seg(True, SYN, C_ISN),
    seg(False, SYN | ACK, S_ISN, C_ISN + 1),
    seg(True, ACK, C_ISN + 1, S_ISN + 1),
]


def test_the_textbook_paths_through_the_table() -> None:
    active = [E.SEND_SYN, E.RECV_SYN_ACK, E.SEND_FIN, E.RECV_ACK_OF_FIN, E.RECV_FIN]
    passive = [E.RECV_SYN, E.SEND_SYN_ACK, E.RECV_ACK_OF_SYN, E.RECV_FIN, E.SEND_FIN]
    state = S.CLOSED
    seen = []
    for event in active:
        state = step(state, event)
        seen.append(state)
    assert seen == [S.SYN_SENT, S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.TIME_WAIT]
    state, seen = S.LISTEN, []
    for event in [*passive, E.RECV_ACK_OF_FIN]:
        state = step(state, event)
        seen.append(state)
    assert seen == [
        S.SYN_RECEIVED, S.SYN_RECEIVED, S.ESTABLISHED, S.CLOSE_WAIT, S.LAST_ACK, S.CLOSED,
    ]  # fmt: skip
    assert step(S.FIN_WAIT_1, E.RECV_FIN) is S.CLOSING
    assert step(S.CLOSING, E.RECV_ACK_OF_FIN) is S.TIME_WAIT


E = Event


def test_every_state_is_reachable_and_every_entry_changes_or_restarts_something() -> None:
    reached = {S.CLOSED, S.LISTEN}
    for _ in range(len(S)):
        for (state, _event), after in TRANSITIONS.items():
            if state in reached:
                reached.add(after)
    assert reached == set(S)
    same = [key for key, after in TRANSITIONS.items() if key[0] is after]
    assert same == [(S.TIME_WAIT, E.RECV_FIN)]  # the one self-loop: 2MSL restarts


def test_fin_wait_1_receiving_fin_with_the_ack_of_its_own_fin_goes_to_time_wait() -> None:
    model = EndModel(S.ESTABLISHED)
    model.sent(seg(True, FIN | ACK, 10, 20))
    assert model.state is S.FIN_WAIT_1
    model.received(seg(False, FIN | ACK, 20, 11))
    assert model.state is S.TIME_WAIT
    assert model.events[-2:] == [E.RECV_ACK_OF_FIN, E.RECV_FIN]


def test_handshake_and_close_from_packets() -> None:
    packets = [
        *HANDSHAKE,
        seg(True, FIN | ACK, C_ISN + 1, S_ISN + 1),
        seg(False, ACK, S_ISN + 1, C_ISN + 2),
        seg(False, FIN | ACK, S_ISN + 1, C_ISN + 2),
        seg(True, ACK, C_ISN + 2, S_ISN + 2),
    ]
    trace = build_trace(timed(packets))
    assert trace.initial is not None and [s.state for s in trace.initial] == [S.CLOSED, S.LISTEN]
    assert states(trace) == [
        (S.SYN_SENT, S.SYN_RECEIVED),
        (S.ESTABLISHED, S.SYN_RECEIVED),
        (S.ESTABLISHED, S.ESTABLISHED),
        (S.FIN_WAIT_1, S.CLOSE_WAIT),
        (S.FIN_WAIT_2, S.CLOSE_WAIT),
        (S.TIME_WAIT, S.LAST_ACK),
        (S.TIME_WAIT, S.CLOSED),
    ]
    assert [(e.seq, e.ack) for e in trace.events] == [
        (0, 0), (0, 1), (1, 1), (1, 1), (1, 2), (1, 2), (2, 2),
    ]  # fmt: skip
    assert [e.isn for e in trace.events][:2] == [C_ISN, S_ISN]


def test_crossed_fins_are_read_as_a_simultaneous_close() -> None:
    packets = [
        *HANDSHAKE,
        seg(True, FIN | ACK, C_ISN + 1, S_ISN + 1),
        seg(False, FIN | ACK, S_ISN + 1, C_ISN + 1),  # does not ack the client's FIN: crossed
        seg(False, ACK, S_ISN + 2, C_ISN + 2),
        seg(True, ACK, C_ISN + 2, S_ISN + 2),
    ]
    assert states(build_trace(timed(packets)))[3:] == [
        (S.FIN_WAIT_1, S.ESTABLISHED),
        (S.CLOSING, S.FIN_WAIT_1),
        (S.TIME_WAIT, S.CLOSING),
        (S.TIME_WAIT, S.TIME_WAIT),
    ]


def test_refused_starts_the_server_closed() -> None:
    trace = build_trace(timed([seg(True, SYN, C_ISN), seg(False, RST | ACK, 0, C_ISN + 1)]))
    assert trace.initial is not None and trace.initial[1].state is S.CLOSED
    assert states(trace) == [(S.SYN_SENT, S.CLOSED), (S.CLOSED, S.CLOSED)]


def test_a_syn_sent_again_before_any_answer_was_dropped() -> None:
    packets = [seg(True, SYN, C_ISN), seg(True, SYN, C_ISN), *HANDSHAKE[1:]]
    trace = build_trace(timed(packets))
    assert "no answer: the receiver dropped it" in trace.events[0].notes
    assert "retransmission" in trace.events[1].notes
    assert states(trace)[:2] == [(S.SYN_SENT, S.LISTEN), (S.SYN_SENT, S.SYN_RECEIVED)]


def test_zero_window_probe_and_reopening_are_named() -> None:
    packets = [
        *HANDSHAKE,
        seg(True, PSH | ACK, C_ISN + 1, S_ISN + 1, length=10),
        seg(False, ACK, S_ISN + 1, C_ISN + 11, window=0),
        seg(True, ACK, C_ISN + 10, S_ISN + 1),  # snd_una - 1, no data: a probe
        seg(False, ACK, S_ISN + 1, C_ISN + 11, window=0),
        seg(False, ACK, S_ISN + 1, C_ISN + 11, window=50),
    ]
    notes = [e.notes for e in build_trace(timed(packets)).events][3:]
    assert notes == [
        (),
        ("window 0: the receiver's buffer is full",),
        ("window probe: is there room yet?",),
        ("window 0: the receiver's buffer is full",),
        ("window opens again",),
    ]


def test_window_is_scaled_only_when_both_syns_offered_a_scale() -> None:
    from sockkit.trace import TcpOptions

    def with_scale(packet: Packet, shift: int | None) -> Packet:
        return packet.__class__(**{**packet.__dict__, "options": TcpOptions(wscale=shift)})

    both = [with_scale(HANDSHAKE[0], 7), with_scale(HANDSHAKE[1], 2), HANDSHAKE[2]]
    assert [e.window for e in build_trace(timed(both)).events] == [100, 100, 100 << 7]
    one = [with_scale(HANDSHAKE[0], 7), HANDSHAKE[1], HANDSHAKE[2]]
    assert [e.window for e in build_trace(timed(one)).events] == [100, 100, 100]


def test_a_capture_that_begins_mid_connection_says_so() -> None:
    trace = build_trace(timed([seg(True, ACK, 7, 9, length=5), seg(False, ACK, 9, 12)]))
    assert [(e.seq, e.ack) for e in trace.events] == [(0, 0), (0, 5)]
    assert trace.initial is not None and trace.initial[0].state is S.ESTABLISHED
    assert any("inside a connection" in note for note in trace.notes)
