"""sock_diag replies -> records, from struct-packed fixtures (no sockets opened)."""

from __future__ import annotations

import errno
import itertools
import socket
import struct
from typing import Any

import pytest
from tests.inspect.diag_packets import (
    attribute,
    done,
    error,
    inet_diag,
    run_bytecode,
    tcp_info,
    unix_diag,
)

from sockkit.inspect._netlink import (
    inet_request,
    parse_inet_dump,
    port_bytecode,
)
from sockkit.inspect._record import ProcessRef, SocketRecord, record_from_row
from sockkit.inspect._tcp_info import parse_tcp_info
from sockkit.inspect._unix_diag import parse_unix_dump, unix_request

INET_DIAG_INFO, INET_DIAG_CONG, INET_DIAG_SKV6ONLY = 2, 4, 11
UNIX_DIAG_NAME, UNIX_DIAG_VFS, UNIX_DIAG_PEER, UNIX_DIAG_RQLEN, UNIX_DIAG_UID = 0, 1, 2, 4, 7


def parse_inet(*args: Any, **kwargs: Any) -> tuple[list[SocketRecord], bool]:
    rows, finished = parse_inet_dump(*args, **kwargs)
    return [record_from_row(row) for row in rows], finished


def parse_unix(*args: Any, **kwargs: Any) -> tuple[list[SocketRecord], bool]:
    rows, finished = parse_unix_dump(*args, **kwargs)
    return [record_from_row(row) for row in rows], finished


def test_ports_and_ipv4_addresses_decode_from_network_order() -> None:
    chunk = inet_diag(state=1, src="127.0.0.1", sport=7007, dst="10.1.2.3", dport=41122, inode=55)
    records, finished = parse_inet(chunk, "tcp")
    assert not finished
    [r] = records
    assert (r.local_address, r.local_port, r.peer_address, r.peer_port) == (
        "127.0.0.1",
        7007,
        "10.1.2.3",
        41122,
    )
    # 7007 is 0x1B5F: a host-order misread would give 0x5F1B = 24347
    assert r.local == "127.0.0.1:7007"
    assert r.peer == "10.1.2.3:41122"


def test_listener_fields_map_to_ss_columns() -> None:
    chunk = inet_diag(state=10, sport=22, rqueue=3, wqueue=128, uid=1000, inode=4242) + done()
    records, finished = parse_inet(chunk, "tcp")
    assert finished
    assert records == [
        SocketRecord(
            netid="tcp",
            state="LISTEN",
            recv_q=3,
            send_q=128,
            family="inet",
            local_address="127.0.0.1",
            local_port=22,
            peer_address="0.0.0.0",
            peer_port=0,
            inode=4242,
            uid=1000,
            v6only=False,
        )
    ]
    assert records[0].peer == "0.0.0.0:*"


@pytest.mark.parametrize(
    ("state", "name"),
    [
        (1, "ESTAB"),
        (2, "SYN-SENT"),
        (3, "SYN-RECV"),
        (4, "FIN-WAIT-1"),
        (5, "FIN-WAIT-2"),
        (6, "TIME-WAIT"),
        (7, "UNCONN"),
        (8, "CLOSE-WAIT"),
        (9, "LAST-ACK"),
        (10, "LISTEN"),
        (11, "CLOSING"),
        (200, "UNKNOWN"),
    ],
)
def test_state_numbers_get_ss_names(state: int, name: str) -> None:
    [r], _ = parse_inet(inet_diag(state=state), "tcp")
    assert r.state == name


def test_ipv6_addresses_and_v6only_attribute() -> None:
    dual = inet_diag(
        family=socket.AF_INET6,
        state=10,
        src="::",
        sport=7007,
        dst="::",
        attributes=attribute(INET_DIAG_SKV6ONLY, b"\0"),
    )
    only = inet_diag(
        family=socket.AF_INET6,
        state=10,
        src="::",
        sport=7008,
        dst="::",
        attributes=attribute(8, b"\0") + attribute(INET_DIAG_SKV6ONLY, b"\1"),
    )
    loop = inet_diag(
        family=socket.AF_INET6, state=1, src="::1", sport=1, dst="::ffff:10.0.0.1", dport=2
    )
    records, _ = parse_inet(dual + only + loop, "tcp")
    assert [(r.family, r.v6only) for r in records] == [
        ("inet6", False),
        ("inet6", True),
        ("inet6", False),
    ]
    assert [(r.local, r.peer) for r in records] == [
        ("*:7007", "*:*"),
        ("[::]:7008", "[::]:*"),
        ("[::1]:1", "[::ffff:10.0.0.1]:2"),
    ]


def test_many_messages_across_datagrams_keep_order_until_done() -> None:
    first = b"".join(inet_diag(sport=1000 + i, inode=i + 1) for i in range(50))
    second = b"".join(inet_diag(sport=2000 + i, inode=100 + i) for i in range(3)) + done()
    got1, finished1 = parse_inet(first, "udp")
    got2, finished2 = parse_inet(memoryview(second), "udp")
    assert (finished1, finished2) == (False, True)
    ports = [r.local_port for r in got1 + got2]
    assert ports == [*range(1000, 1050), *range(2000, 2003)]
    assert {r.netid for r in got1 + got2} == {"udp"}


def test_done_alone_finishes_the_dump() -> None:
    assert parse_inet(done(), "tcp") == ([], True)
    assert parse_unix(done()) == ([], True)


def test_kernel_error_is_raised_as_oserror() -> None:
    with pytest.raises(OSError) as caught:
        parse_inet(error(errno.EINVAL), "tcp")
    assert caught.value.errno == errno.EINVAL
    with pytest.raises(OSError) as caught:
        parse_unix(done(-errno.ENOENT))
    assert caught.value.errno == errno.ENOENT


def test_owners_are_attached_by_inode_and_not_to_inode_zero() -> None:
    owners = {77: (ProcessRef("srv", 10, 3),), 0: (ProcessRef("bogus", 1, 1),)}
    chunk = inet_diag(inode=77) + inet_diag(state=6, inode=0)
    records, _ = parse_inet(chunk, "tcp", owners)
    assert [r.processes for r in records] == [(ProcessRef("srv", 10, 3),), ()]


def test_tcp_info_attribute_is_decoded_only_when_asked() -> None:
    info = tcp_info(
        236,
        rtt=1500,
        rttvar=700,
        snd_cwnd=10,
        snd_ssthresh=7,
        retransmits=2,
        total_retrans=5,
        bytes_acked=1 << 40,
        bytes_received=12345,
        snd_wnd=65536,
        options=0x04,
        wscale=0x97,  # rcv_wscale 9 in the high nibble, snd_wscale 7 in the low
    )
    attrs = attribute(INET_DIAG_INFO, info) + attribute(INET_DIAG_CONG, b"cubic\0")
    chunk = inet_diag(state=1, attributes=attrs)
    [plain], _ = parse_inet(chunk, "tcp")
    assert plain.tcp_info is None
    [rich], _ = parse_inet(chunk, "tcp", tcp_info=True)
    ti = rich.tcp_info
    assert ti is not None
    assert (ti.rtt, ti.rttvar, ti.snd_cwnd, ti.snd_ssthresh) == (1500, 700, 10, 7)
    assert (ti.retransmits, ti.total_retrans) == (2, 5)
    assert (ti.bytes_acked, ti.bytes_received, ti.snd_wnd) == (1 << 40, 12345, 65536)
    assert (ti.snd_wscale, ti.rcv_wscale) == (7, 9)
    assert ti.congestion == "cubic"
    assert ti.rcv_wnd == 0  # in the struct (236 bytes reach it) but unset


def test_tcp_info_is_parsed_by_length_so_old_kernels_give_fewer_fields() -> None:
    old = parse_tcp_info(tcp_info(104, rtt=250, total_retrans=1, bytes_acked=9, snd_wnd=9))
    assert (old.rtt, old.total_retrans) == (250, 1)
    assert old.bytes_acked is None and old.snd_wnd is None and old.rcv_wnd is None
    mid = parse_tcp_info(tcp_info(160, bytes_acked=9, snd_wnd=9))
    assert mid.bytes_acked == 9 and mid.snd_wnd is None
    new = parse_tcp_info(tcp_info(280, snd_wnd=9, rcv_wnd=8))
    assert (new.snd_wnd, new.rcv_wnd) == (9, 8)
    assert new.as_dict()["snd_wnd"] == 9
    assert "snd_wnd" not in old.as_dict()


def test_unix_records_carry_names_peers_queues_and_uid() -> None:
    path = unix_diag(
        kind=socket.SOCK_STREAM,
        state=10,
        inode=500,
        attributes=attribute(UNIX_DIAG_NAME, b"/tmp/s.sock")
        + attribute(UNIX_DIAG_RQLEN, struct.pack("=II", 2, 128))
        + attribute(UNIX_DIAG_UID, struct.pack("=I", 1000)),
    )
    abstract = unix_diag(
        kind=socket.SOCK_SEQPACKET,
        state=1,
        inode=501,
        attributes=attribute(UNIX_DIAG_NAME, b"\0my\0name")
        + attribute(UNIX_DIAG_PEER, struct.pack("=I", 502)),
    )
    unnamed = unix_diag(
        kind=socket.SOCK_DGRAM,
        state=7,
        inode=502,
        attributes=attribute(UNIX_DIAG_VFS, struct.pack("=II", 9, 8)),
    )
    files: dict[int, tuple[int, int]] = {}
    records, finished = parse_unix(path + abstract + unnamed + done(), names=files)
    assert finished
    rows = [
        (r.netid, r.state, r.recv_q, r.send_q, r.local_address, r.local_port, r.peer_port, r.uid)
        for r in records
    ]
    assert rows == [
        ("u_str", "LISTEN", 2, 128, "/tmp/s.sock", 500, 0, 1000),
        ("u_seq", "ESTAB", 0, 0, "@my@name", 501, 502, None),
        ("u_dgr", "UNCONN", 0, 0, "", 502, 0, None),
    ]
    assert [r.local for r in records] == ["/tmp/s.sock:500", "@my@name:501", "*:502"]
    assert files == {502: (9, 8)}


def test_inet_request_layout() -> None:
    request = inet_request(socket.AF_INET6, 6, 0x400, tcp_info=True, seq=9)
    length, kind, flags, seq, pid = struct.unpack_from("=IHHII", request)
    assert (length, kind, flags, seq, pid) == (len(request), 20, 0x301, 9, 0)
    assert len(request) == 16 + 56
    family, protocol, ext, _pad, states = struct.unpack_from("=BBBBI", request, 16)
    assert (family, protocol, states) == (socket.AF_INET6, 6, 0x400)
    # tcp_info, the congestion module's name and (through VEGASINFO's bit) its own info
    assert ext == (1 << (INET_DIAG_INFO - 1)) | (1 << (INET_DIAG_CONG - 1)) | (1 << 2)
    program = port_bytecode(sport=7007)
    with_filter = inet_request(socket.AF_INET, 17, 0xFFF, bytecode=program)
    assert struct.unpack_from("=I", with_filter)[0] == len(with_filter) == 72 + 4 + len(program)
    assert struct.unpack_from("=HH", with_filter, 72) == (4 + len(program), 1)
    assert with_filter[76:] == program


def test_unix_request_layout() -> None:
    request = unix_request(0xFFF, vfs=True)
    assert len(request) == 16 + 24
    family, _proto, _pad, states, ino, show = struct.unpack_from("=BBHIII", request, 16)
    assert (family, states, ino) == (socket.AF_UNIX, 0xFFF, 0)
    assert show & 0x01 and show & 0x02 and show & 0x04 and show & 0x10 and show & 0x40


@pytest.mark.parametrize(
    ("conditions", "accept"),
    [
        ({}, lambda s, d: True),
        ({"sport": 7007}, lambda s, d: s == 7007),
        ({"dport": 7007}, lambda s, d: d == 7007),
        ({"port": 7007}, lambda s, d: 7007 in (s, d)),
        ({"sport": 7007, "dport": 80}, lambda s, d: s == 7007 and d == 80),
        ({"port": 7007, "sport": 1}, lambda s, d: s == 1 and d == 7007),
        ({"port": 7007, "dport": 7007, "sport": 7007}, lambda s, d: s == d == 7007),
    ],
)
def test_port_bytecode_selects_what_it_says(conditions: dict[str, int], accept: object) -> None:
    program = port_bytecode(**conditions)
    assert callable(accept)
    ports = [0, 1, 80, 7006, 7007, 7008, 65535]
    for sport, dport in itertools.product(ports, ports):
        assert run_bytecode(program, sport, dport) == accept(sport, dport), (sport, dport)
