"""ss's selection rules: which tables, families and states a set of flags means."""

from __future__ import annotations

import pytest

from sockkit._errors import UsageError
from sockkit.inspect import ALL_STATES, DEFAULT_STATES, STATE_NAMES, parse_state, select_query


def names(mask: int) -> set[str]:
    return {STATE_NAMES[i] for i in range(12) if mask & (1 << i)}


def test_no_flags_means_every_table_and_connected_states_only() -> None:
    query = select_query()
    assert query.netids == {"tcp", "udp", "u_str", "u_dgr", "u_seq"}
    assert query.families == {"inet", "inet6", "unix"}
    assert query.states == DEFAULT_STATES
    assert names(DEFAULT_STATES) == {
        "UNKNOWN",
        "ESTAB",
        "SYN-SENT",
        "FIN-WAIT-1",
        "FIN-WAIT-2",
        "CLOSE-WAIT",
        "LAST-ACK",
        "CLOSING",
    }


def test_listening_and_all() -> None:
    assert names(select_query(listening=True).states) == {"LISTEN", "UNCONN"}
    assert select_query(all_states=True).states == ALL_STATES


def test_tcp_alone_covers_both_ip_families() -> None:
    query = select_query(tcp=True)
    assert query.netids == {"tcp"}
    assert query.families == {"inet", "inet6"}


def test_udp_alone_defaults_to_established_only_as_ss_does() -> None:
    assert names(select_query(udp=True).states) == {"ESTAB"}
    assert select_query(udp=True, tcp=True).states == DEFAULT_STATES


def test_ipv4_alone_means_tcp_and_udp_over_ipv4() -> None:
    query = select_query(ipv4=True)
    assert query.netids == {"tcp", "udp"}
    assert query.families == {"inet"}


def test_unix_alone_means_every_unix_table() -> None:
    query = select_query(unix=True)
    assert query.netids == {"u_str", "u_dgr", "u_seq"}
    assert query.families == {"unix"}


def test_tcp_with_unix_brings_both_sides_along() -> None:
    query = select_query(tcp=True, unix=True)
    assert query.netids == {"tcp", "u_str", "u_dgr", "u_seq"}
    assert query.families == {"inet", "inet6", "unix"}


def test_state_words_replace_listening_and_all_and_combine() -> None:
    query = select_query(listening=True, all_states=True, states=("time-wait", "ESTABLISHED"))
    assert names(query.states) == {"TIME-WAIT", "ESTAB"}


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("established", {"ESTAB"}),
        ("syn-sent", {"SYN-SENT"}),
        ("syn-recv", {"SYN-RECV"}),
        ("fin-wait-1", {"FIN-WAIT-1"}),
        ("fin-wait-2", {"FIN-WAIT-2"}),
        ("time-wait", {"TIME-WAIT"}),
        ("closed", {"UNCONN"}),
        ("close-wait", {"CLOSE-WAIT"}),
        ("last-ack", {"LAST-ACK"}),
        ("listening", {"LISTEN"}),
        ("closing", {"CLOSING"}),
        ("bucket", {"SYN-RECV", "TIME-WAIT"}),
    ],
)
def test_single_state_words(word: str, expected: set[str]) -> None:
    assert names(parse_state(word)) == expected


def test_state_groups_match_ss() -> None:
    everything = names(ALL_STATES)
    assert names(parse_state("all")) == everything
    assert names(parse_state("connected")) == everything - {"LISTEN", "UNCONN"}
    assert names(parse_state("synchronized")) == everything - {"LISTEN", "UNCONN", "SYN-SENT"}
    assert names(parse_state("big")) == everything - {"SYN-RECV", "TIME-WAIT"}


def test_unknown_state_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as caught:
        parse_state("listen")
    assert caught.value.exit_status == 2
    assert "listening" in str(caught.value)


def test_port_filters() -> None:
    query = select_query(port=7007)
    assert query.port_matches(7007, 1) and query.port_matches(1, 7007)
    assert not query.port_matches(7006, 7008)
    assert not query.wants("u_str")  # Unix sockets have no ports
    assert query.wants("tcp")
    both = select_query(sport=1, dport=2)
    assert both.port_matches(1, 2) and not both.port_matches(2, 1)
