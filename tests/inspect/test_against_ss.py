"""The same sockets, states, addresses and queues as iproute2 ss, for sockets this test opens.

Each comparison is restricted to the test's own ports, paths and inodes, so
other processes on the machine cannot disturb it.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.inspect.sockzoo import SocketZoo, inode_of

from sockkit import AddressInUseError, open_listener, parse_endpoint
from sockkit.inspect import SocketRecord, list_sockets, port_owner, select_query
from sockkit.inspect._owners import process_name

pytestmark = pytest.mark.skipif(shutil.which("ss") is None, reason="needs iproute2 ss")

Row = tuple[str, ...]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SocketZoo]:
    sockets = SocketZoo(tmp_path_factory.mktemp("zoo"))
    yield sockets
    sockets.close()


def ss_lines(*args: str) -> list[list[str]]:
    out = subprocess.run(["ss", *args], capture_output=True, text=True, check=True).stdout
    return [line.split() for line in out.splitlines() if line.strip()]


def port_of(endpoint: str) -> int:
    port = endpoint.rpartition(":")[2]
    return int(port) if port.isdigit() else 0


def inet_rows_from_ss(flag: str, ports: set[int]) -> Counter[Row]:
    rows: Counter[Row] = Counter()
    for fields in ss_lines(flag + "anH"):
        state, recv_q, send_q, local, peer = fields[:5]
        if port_of(local) in ports or port_of(peer) in ports:
            rows[(state, recv_q, send_q, local, peer)] += 1
    return rows


def inet_rows_from_records(records: list[SocketRecord], ports: set[int]) -> Counter[Row]:
    return Counter(
        (r.state, str(r.recv_q), str(r.send_q), r.local, r.peer)
        for r in records
        if r.local_port in ports or r.peer_port in ports
    )


def test_tcp_matches_ss(zoo: SocketZoo) -> None:
    ports = {zoo.tcp_port, zoo.tcp6_port}
    # The two readings are moments apart, and a FIN or ACK still on its way
    # (FIN-WAIT-1 turning FIN-WAIT-2) may land between them: a real difference
    # stays, a passing one is gone on a second look.
    for _ in range(10):
        expected = inet_rows_from_ss("-t", ports)
        got = inet_rows_from_records(list_sockets(select_query(tcp=True, all_states=True)), ports)
        if got == expected:
            break
        time.sleep(0.1)
    assert got == expected
    states = {row[0] for row in got}
    assert {"LISTEN", "ESTAB", "FIN-WAIT-2", "CLOSE-WAIT"} <= states
    assert ("TIME-WAIT" in states) == zoo.has_time_wait
    listener = (
        "LISTEN",
        "1",
        "8",
        f"127.0.0.1:{zoo.tcp_port}",
        "0.0.0.0:*",
    )  # one connection waiting; backlog 8
    assert got[listener] == 1
    assert ("LISTEN", "0", "4", f"[::1]:{zoo.tcp6_port}", "[::]:*") in got


def test_udp_matches_ss(zoo: SocketZoo) -> None:
    expected = inet_rows_from_ss("-u", zoo.udp_ports)
    got = inet_rows_from_records(
        list_sockets(select_query(udp=True, all_states=True)), zoo.udp_ports
    )
    assert got == expected
    assert len(got) == 3
    [bound] = [row for row in got if row[3] == f"127.0.0.1:{zoo.udp_port}"]
    assert bound[0] == "UNCONN" and int(bound[1]) > 0  # the unread datagram


def test_unix_matches_ss(zoo: SocketZoo) -> None:
    expected: Counter[Row] = Counter()
    for fields in ss_lines("-xanH"):
        if int(fields[5]) in zoo.unix_inodes:
            expected[tuple(fields[:8])] += 1
    got: Counter[Row] = Counter()
    for r in list_sockets(select_query(unix=True, all_states=True)):
        if r.inode in zoo.unix_inodes:
            row = (r.netid, r.state, str(r.recv_q), str(r.send_q), r.local_address or "*")
            got[(*row, str(r.local_port), "*", str(r.peer_port))] += 1
    assert got == expected
    assert sum(got.values()) == len(zoo.unix_inodes)
    netids = {row[0] for row in got}
    assert netids == {"u_str", "u_dgr", "u_seq"}
    assert any(row[4] == "@" + zoo.abstract_name and row[1] == "LISTEN" for row in got)


def test_default_selection_matches_ss_without_flags(zoo: SocketZoo) -> None:
    ports = {zoo.tcp_port, zoo.tcp6_port}
    expected = inet_rows_from_ss("-t", ports)
    default = inet_rows_from_records(list_sockets(select_query(tcp=True)), ports)
    ss_default: Counter[Row] = Counter()
    for fields in ss_lines("-tnH"):
        state, recv_q, send_q, local, peer = fields[:5]
        if port_of(local) in ports or port_of(peer) in ports:
            ss_default[(state, recv_q, send_q, local, peer)] += 1
    assert default == ss_default
    assert default != expected  # no LISTEN, no TIME-WAIT without -a
    assert not {"LISTEN", "TIME-WAIT"} & {row[0] for row in default}


def test_proc_fallback_gives_the_same_records(zoo: SocketZoo) -> None:
    query = select_query(tcp=True, udp=True, unix=True, all_states=True)
    ports = zoo.tcp_ports | zoo.udp_ports

    def inet(records: list[SocketRecord]) -> Counter[Row]:
        return Counter(
            (
                r.netid,
                r.state,
                str(r.recv_q),
                # /proc does not hold a listener's backlog
                "-" if r.state == "LISTEN" else str(r.send_q),
                r.local,
                r.peer,
                str(r.inode),
                str(r.uid),
            )
            for r in records
            if r.family != "unix"
            and (r.local_port in ports or r.peer_port in ports)
            # Another program's old connection to a port number the zoo now
            # reuses can sit in TIME-WAIT and expire between the two reads;
            # and the zoo's TIME-WAIT port is free for other programs' live
            # connections, which come and go: only its TIME-WAIT entry counts.
            and (r.state != "TIME-WAIT" or r.local_port == zoo.time_wait_port)
            and (r.local_port != zoo.time_wait_port or r.state == "TIME-WAIT")
        )

    def unix(records: list[SocketRecord]) -> Counter[Row]:
        # /proc/net/unix has neither queues nor peers
        return Counter(
            (r.netid, r.state, r.local_address, str(r.inode))
            for r in records
            if r.inode in zoo.unix_inodes
        )

    from_netlink = list_sockets(query, source="netlink")
    from_proc = list_sockets(query, source="proc")
    assert inet(from_proc) == inet(from_netlink)
    assert unix(from_proc) == unix(from_netlink)
    assert len(inet(from_proc)) >= 10 and sum(unix(from_proc).values()) == len(zoo.unix_inodes)


def test_proc_source_is_chosen_by_the_environment(
    zoo: SocketZoo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOCKKIT_SS_SOURCE", "proc")
    query = select_query(tcp=True, listening=True, sport=zoo.tcp_port)
    [listener] = list_sockets(query)
    assert listener.send_q == 0  # /proc's answer; netlink says 8
    monkeypatch.setenv("SOCKKIT_SS_SOURCE", "netlink")
    [listener] = list_sockets(query)
    assert listener.send_q == 8


def test_port_filters_are_applied_by_the_kernel_and_by_proc(zoo: SocketZoo) -> None:
    for source in ("netlink", "proc"):
        query = select_query(tcp=True, all_states=True, port=zoo.tcp_port)
        records = list_sockets(query, source=source)
        assert records and all(zoo.tcp_port in (r.local_port, r.peer_port) for r in records)
        assert {r.state for r in records} >= {"LISTEN", "ESTAB", "FIN-WAIT-2"}
        only_local = list_sockets(
            select_query(tcp=True, all_states=True, sport=zoo.tcp_port), source=source
        )
        assert all(r.local_port == zoo.tcp_port for r in only_local)
        assert len(only_local) < len(records)


def test_processes_include_this_process_with_its_descriptor(zoo: SocketZoo) -> None:
    query = select_query(tcp=True, listening=True, sport=zoo.tcp_port, processes=True)
    [listener] = list_sockets(query)
    mine = [p for p in listener.processes if p.pid == os.getpid()]
    assert [(p.name, p.fd) for p in mine] == [(process_name(os.getpid()), zoo.listener.fileno())]
    assert listener.inode == inode_of(zoo.listener)


def test_tcp_info_agrees_with_getsockopt(zoo: SocketZoo) -> None:
    sport = zoo.established.getsockname()[1]
    query = select_query(tcp=True, sport=sport, dport=zoo.tcp_port, tcp_info=True)
    [record] = list_sockets(query)
    info = record.tcp_info
    assert info is not None
    raw = zoo.established.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 512)

    def field(offset: int, fmt: str = "I") -> int:
        value: int = struct.unpack_from("=" + fmt, raw, offset)[0]
        return value

    # quantities that do not move on an idle connection
    assert info.snd_mss == field(16) and info.rcv_mss == field(20) and info.advmss == field(84)
    assert info.bytes_received == field(128, "Q") == 5
    assert info.bytes_acked == field(120, "Q")
    if len(raw) >= 232:
        assert info.snd_wnd == field(228) and info.snd_wnd > 0
    assert info.snd_cwnd and info.snd_cwnd > 0
    assert info.rtt is not None and info.rtt > 0


def test_port_owner_names_this_process(zoo: SocketZoo) -> None:
    me = f"pid {os.getpid()} ({process_name(os.getpid())})"
    assert port_owner("tcp", "127.0.0.1", zoo.tcp_port) == me
    assert port_owner("tcp", None, zoo.tcp_port) == me
    assert port_owner("tls", "0.0.0.0", zoo.tcp_port) == me
    assert port_owner("tcp", "[::1]", zoo.tcp6_port) == me
    assert port_owner("tcp", "127.0.0.2", zoo.tcp_port) is None  # a different address is free
    assert port_owner("udp", "127.0.0.1", zoo.udp_port) == me
    assert port_owner("unix", zoo.unix_path) == me
    assert port_owner("unix", "@" + zoo.abstract_name) == me
    assert port_owner("unixgram", zoo.dgram_path) == me
    relative = os.path.relpath(zoo.unix_path)
    assert port_owner("unix", relative) == me
    assert port_owner(parse_endpoint(f"tcp://127.0.0.1:{zoo.tcp_port}")) == me
    assert port_owner(parse_endpoint(f"udp://127.0.0.1:{zoo.udp_port}")) == me
    assert port_owner(parse_endpoint(f"unix:{zoo.unix_path}")) == me
    assert port_owner(parse_endpoint(f"unix:@{zoo.abstract_name}")) == me


def test_port_owner_explains_a_real_address_in_use(zoo: SocketZoo) -> None:
    endpoint = parse_endpoint(f"127.0.0.1:{zoo.tcp_port}")
    with pytest.raises(AddressInUseError):
        open_listener(endpoint).close()
    assert port_owner(endpoint) == f"pid {os.getpid()} ({process_name(os.getpid())})"


def test_port_owner_of_a_free_port_is_none() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    assert port_owner("tcp", "127.0.0.1", port) is None
    assert port_owner("udp", None, port) is None
    assert port_owner("unix", "/nonexistent/sockkit.sock") is None
    with pytest.raises(ValueError):
        port_owner("sctp", None, 1)


def test_records_appear_in_ss_order_unix_udp_tcp(zoo: SocketZoo) -> None:
    records = list_sockets(select_query(all_states=True))
    order = [
        r.netid for r in records if r.inode in zoo.unix_inodes or r.local_port in zoo.udp_ports
    ]
    order += [r.netid for r in records if r.local_port == zoo.tcp_port]
    first_udp = order.index("udp")
    assert all(n.startswith("u_") for n in order[:first_udp])
    assert order[-1] == "tcp" and "tcp" not in order[:first_udp]
    assert Path(zoo.unix_path).exists()
