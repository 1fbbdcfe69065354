"""Records -> ss's table, JSON objects and watch lines; snapshot differences (all pure)."""

from __future__ import annotations

import json
from dataclasses import replace

from sockkit.inspect import ProcessRef, SocketRecord, TcpInfo
from sockkit.inspect._annotations import format_tcp_info
from sockkit.inspect._format import (
    event_to_dict,
    format_event,
    format_processes,
    format_table,
    record_to_dict,
)
from sockkit.inspect._services import ServiceNames
from sockkit.inspect._watch import SocketEvent, diff_snapshots, snapshot

LISTENER = SocketRecord(
    "tcp", "LISTEN", 0, 128, "inet", "127.0.0.1", 7007, "0.0.0.0", 0, 11, 0, False
)
CLIENT = SocketRecord(
    "tcp", "ESTAB", 5, 0, "inet", "127.0.0.1", 41122, "127.0.0.1", 7007, 12, 0, False
)
V6 = SocketRecord("tcp", "LISTEN", 0, 5, "inet6", "::", 22, "::", 0, 13, 0, True)
UNIX = SocketRecord("u_str", "ESTAB", 0, 768, "unix", "/tmp/s.sock", 501, "", 500, 501, 0, None)


def test_table_aligns_addresses_on_the_colon_and_hides_single_valued_columns() -> None:
    text = format_table([LISTENER, CLIENT], netid_column=False, state_column=True)
    lines = text.splitlines()
    assert lines[0].split() == [
        "State",
        "Recv-Q",
        "Send-Q",
        "Local",
        "Address:Port",
        "Peer",
        "Address:Port",
        "Process",
    ]
    assert lines[1].split() == ["LISTEN", "0", "128", "127.0.0.1:7007", "0.0.0.0:*"]
    assert lines[2].split() == ["ESTAB", "5", "0", "127.0.0.1:41122", "127.0.0.1:7007"]
    colons = {line.index(":", line.index("127.0.0.1")) for line in lines[1:]}
    assert len(colons) == 1
    assert text.endswith("\n")
    bare = format_table([CLIENT], netid_column=False, state_column=False, header=False)
    assert bare.split() == ["5", "0", "127.0.0.1:41122", "127.0.0.1:7007"]


def test_table_shows_netid_unix_inodes_and_ipv6_brackets() -> None:
    text = format_table([UNIX, V6], header=False)
    first, second = (line.split() for line in text.splitlines())
    assert first == ["u_str", "ESTAB", "0", "768", "/tmp/s.sock", "501", "*", "500"]
    assert second == ["tcp", "LISTEN", "0", "5", "[::]:22", "[::]:*"]
    dual = replace(V6, v6only=False)
    assert format_table([dual], header=False).split()[4:] == ["*:22", "*:*"]


def test_processes_column() -> None:
    procs = (ProcessRef("python3", 10, 3), ProcessRef("worker", 11, 4))
    assert format_processes(procs) == 'users:(("python3",pid=10,fd=3),("worker",pid=11,fd=4))'
    assert format_processes(()) == ""
    text = format_table([replace(LISTENER, processes=procs[:1]), CLIENT], header=False)
    assert text.splitlines()[0].endswith('users:(("python3",pid=10,fd=3))')
    assert not text.splitlines()[1].endswith(" ")


def test_service_names_leave_ephemeral_ports_numeric() -> None:
    namer = ServiceNames(ephemeral=(32768, 60999))
    assert namer(22, "tcp") == "ssh"
    assert namer(40000, "tcp") == "40000"
    assert namer(0, "udp") == "*"
    assert namer(7, "udp") == "echo"
    assert namer(1, "tcp") in ("tcpmux", "1")
    text = format_table([replace(CLIENT, peer_port=22)], header=False, port_name=namer)
    assert "127.0.0.1:ssh" in text
    assert namer(7007000, "u_str") == "7007000"  # a Unix socket's inode, never a service
    mixed = format_table([UNIX, replace(UNIX, local_port=22, peer_port=0)], port_name=namer)
    assert [line.split()[4:] for line in mixed.splitlines()[1:]] == [
        ["/tmp/s.sock", "501", "*", "500"],
        ["/tmp/s.sock", "22", "*", "0"],
    ]


def test_tcp_info_line_follows_the_socket() -> None:
    info = TcpInfo(
        rtt=1500, rttvar=750, snd_cwnd=10, bytes_acked=7, snd_wnd=65536, congestion="cubic"
    )
    line = format_tcp_info(info)
    assert line.split() == ["cubic", "rtt:1.5/0.75", "cwnd:10", "bytes_acked:7", "snd_wnd:65536"]
    text = format_table([replace(CLIENT, tcp_info=info), LISTENER], header=False, tcp_info=True)
    lines = text.splitlines()
    # like ss, every TCP socket gets the line, empty when the kernel said nothing
    assert lines[1:] == ["\t " + line, lines[2], "\t"]


def test_json_object_has_the_documented_fields() -> None:
    procs = (ProcessRef("python3", 10, 3),)
    data = json.loads(json.dumps(record_to_dict(replace(CLIENT, processes=procs))))
    assert data == {
        "netid": "tcp",
        "state": "ESTAB",
        "recv_q": 5,
        "send_q": 0,
        "family": "inet",
        "local": "127.0.0.1:41122",
        "peer": "127.0.0.1:7007",
        "local_address": "127.0.0.1",
        "local_port": 41122,
        "peer_address": "127.0.0.1",
        "peer_port": 7007,
        "inode": 12,
        "uid": 0,
        "v6only": False,
        "processes": [{"name": "python3", "pid": 10, "fd": 3}],
        "tcp_info": None,
        "details": None,
    }
    with_info = record_to_dict(replace(CLIENT, tcp_info=TcpInfo(rtt=10, snd_wnd=5)))
    assert with_info["tcp_info"] == {"rtt": 10, "snd_wnd": 5}


def test_records_are_frozen_values() -> None:
    rebuilt = SocketRecord(**{name: getattr(CLIENT, name) for name in CLIENT.__dataclass_fields__})
    assert rebuilt == CLIENT and hash(rebuilt) == hash(CLIENT)
    try:
        CLIENT.state = "CLOSED"  # type: ignore[misc]
    except AttributeError:
        pass
    else:
        raise AssertionError("SocketRecord should be frozen")


def test_diff_reports_appear_change_and_disappear() -> None:
    syn = replace(CLIENT, state="SYN-SENT", inode=12)
    before = snapshot([LISTENER, syn, UNIX])
    estab = replace(CLIENT, recv_q=99)  # queue moved too: not an event by itself
    after = snapshot([LISTENER, estab, replace(V6, inode=99)])
    events = diff_snapshots(before, after, 5.0)
    assert [(e.kind, e.record.local, e.old_state, e.record.state) for e in events] == [
        ("changed", "127.0.0.1:41122", "SYN-SENT", "ESTAB"),
        ("appeared", "[::]:22", None, "LISTEN"),
        ("disappeared", "/tmp/s.sock:501", None, "ESTAB"),
    ]
    assert {e.time for e in events} == {5.0}
    assert diff_snapshots(after, after) == []


def test_tcp_sockets_are_followed_when_their_inode_changes() -> None:
    waiting = replace(CLIENT, inode=0)  # in the accept queue
    accepted = replace(CLIENT, inode=77)
    assert diff_snapshots(snapshot([waiting]), snapshot([accepted])) == []
    timewait = replace(CLIENT, state="TIME-WAIT", inode=0)
    [event] = diff_snapshots(snapshot([accepted]), snapshot([timewait]))
    assert (event.kind, event.old_state, event.record.state) == ("changed", "ESTAB", "TIME-WAIT")


def test_reuseport_listeners_sharing_an_address_stay_apart() -> None:
    one, two = replace(LISTENER, inode=1), replace(LISTENER, inode=2)
    before = snapshot([one, two])
    assert len(before) == 2
    [event] = diff_snapshots(before, snapshot([one]))
    assert (event.kind, event.record.inode) == ("disappeared", 2)


def test_event_lines_and_json() -> None:
    appeared = SocketEvent("appeared", replace(CLIENT, state="SYN-SENT"), None, 1.5)
    changed = SocketEvent("changed", CLIENT, "SYN-SENT", 2.0)
    gone = SocketEvent(
        "disappeared", replace(CLIENT, processes=(ProcessRef("nc", 9, 3),)), None, 3.0
    )
    assert format_event(appeared) == "+ tcp 127.0.0.1:41122 → 127.0.0.1:7007 SYN-SENT"
    assert format_event(changed) == "~ tcp 127.0.0.1:41122 → 127.0.0.1:7007 SYN-SENT → ESTAB"
    assert (
        format_event(gone, "->")
        == '- tcp 127.0.0.1:41122 -> 127.0.0.1:7007 ESTAB users:(("nc",pid=9,fd=3))'
    )
    data = json.loads(json.dumps(event_to_dict(changed)))
    assert (data["event"], data["time"], data["old_state"], data["state"]) == (
        "changed",
        2.0,
        "SYN-SENT",
        "ESTAB",
    )
    assert data["socket"]["local"] == "127.0.0.1:41122"


def test_columns_are_as_wide_as_their_longest_entry() -> None:
    wide = replace(CLIENT, state="CLOSE-WAIT", recv_q=123456789)
    narrow = replace(LISTENER, local_port=9, recv_q=7)
    text = format_table([narrow, wide, UNIX, replace(V6, peer_port=65535)])
    header, *rows = text.splitlines()
    # Netid is 5 wide, State as wide as CLOSE-WAIT, Recv-Q as wide as 123456789
    assert (header.index("State"), header.index("Recv-Q"), header.index("Send-Q")) == (6, 17, 27)
    for row, record in zip(rows, [narrow, wide, UNIX, V6], strict=True):
        assert row[6:17].rstrip() == record.state
        assert row[17:27].rstrip() == str(record.recv_q)
        assert row[27:].split()[0] == str(record.send_q)
