"""``/proc/net`` text -> records, from captured text (little-endian x86-64 output)."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from sockkit.inspect._owners import parse_socket_link, socket_owners
from sockkit.inspect._procnet import decode_proc_address, parse_proc_inet, parse_proc_unix
from sockkit.inspect._query import ALL_STATES
from sockkit.inspect._record import ProcessRef, SocketRecord, SocketRow, record_from_row

FIXTURES = Path(__file__).parent / "fixtures"

little_endian = pytest.mark.skipif(sys.byteorder != "little", reason="fixtures captured on x86-64")

# Captured from this machine's /proc/net files, then edited to cover more
# cases (an ESTAB line with queues and a uid, a v4-mapped pair, a seqpacket
# listener, a path with a space).
PROC_TCP = (FIXTURES / "proc_net_tcp").read_text()
PROC_TCP6 = (FIXTURES / "proc_net_tcp6").read_text()
PROC_UDP6 = (FIXTURES / "proc_net_udp6").read_text()
PROC_UNIX = (FIXTURES / "proc_net_unix").read_text()


def records(rows: list[SocketRow]) -> list[SocketRecord]:
    return [record_from_row(row) for row in rows]


@little_endian
def test_ipv4_words_are_host_order_so_loopback_reads_backwards() -> None:
    assert decode_proc_address("0100007F:1B5F") == ("127.0.0.1", 7007)
    assert decode_proc_address("0A02A8C0:0016") == ("192.168.2.10", 22)
    assert decode_proc_address("00000000:0000") == ("0.0.0.0", 0)


@little_endian
def test_ipv6_is_four_host_order_words() -> None:
    assert decode_proc_address("00000000000000000000000001000000:0016") == ("::1", 22)
    assert decode_proc_address("0000000000000000FFFF00000100007F:1B5F") == (
        "::ffff:127.0.0.1",
        7007,
    )
    assert decode_proc_address("B80D0120000000000000000001000000:0050") == ("2001:db8::1", 80)


def test_decoding_follows_the_host_byte_order_on_any_machine() -> None:
    # Encode the way the kernel prints (%08X of the raw word read as a host
    # integer) and check the round trip, whatever this machine's order.
    raw = socket.inet_pton(socket.AF_INET6, "fe80::1234:5678")
    words = struct.unpack("=4I", raw)
    text = "".join(f"{w:08X}" for w in words) + ":0050"
    assert decode_proc_address(text) == ("fe80::1234:5678", 80)
    (word,) = struct.unpack("=I", socket.inet_pton(socket.AF_INET, "10.20.30.40"))
    assert decode_proc_address(f"{word:08X}:01BB") == ("10.20.30.40", 443)


def test_malformed_address_is_refused() -> None:
    with pytest.raises(ValueError):
        decode_proc_address("12345:0016")


@little_endian
def test_tcp_lines_give_states_queues_uid_and_inode() -> None:
    found = records(parse_proc_inet(PROC_TCP, "tcp", ALL_STATES))
    rows = [(r.state, r.recv_q, r.send_q, r.local, r.peer, r.uid, r.inode) for r in found]
    assert rows == [
        ("LISTEN", 0, 0, "0.0.0.0:2024", "0.0.0.0:*", 0, 1583),
        ("LISTEN", 1, 0, "127.0.0.1:40255", "0.0.0.0:*", 1000, 24305),
        ("TIME-WAIT", 0, 0, "127.0.0.1:32780", "127.0.0.1:54597", 0, 0),
        ("ESTAB", 12, 5, "127.0.0.1:54597", "127.0.0.1:32780", 1000, 24400),
    ]
    assert {r.family for r in found} == {"inet"}


@little_endian
def test_state_mask_and_owners_apply() -> None:
    owners = {24400: (ProcessRef("client", 7, 4),)}
    found = records(parse_proc_inet(PROC_TCP, "tcp", 1 << 1, owners))
    assert [(r.local_port, r.processes) for r in found] == [(54597, (ProcessRef("client", 7, 4),))]


@little_endian
def test_tcp6_and_udp6_lines() -> None:
    tcp6 = records(parse_proc_inet(PROC_TCP6, "tcp", ALL_STATES))
    assert [(r.family, r.local, r.peer, r.v6only) for r in tcp6] == [
        ("inet6", "*:45379", "*:*", None),  # "::" - /proc cannot tell whether v6-only
        ("inet6", "[::1]:54293", "[::]:*", True),  # bound to ::1, so the kernel set v6-only
        ("inet6", "[::ffff:127.0.0.1]:7007", "[::ffff:10.0.0.2]:41122", None),
    ]
    [udp] = records(parse_proc_inet(PROC_UDP6, "udp", ALL_STATES))
    assert (udp.netid, udp.state, udp.recv_q, udp.local, udp.peer) == (
        "udp",
        "ESTAB",
        0x300,
        "[::1]:60965",
        "[::1]:9",
    )


def test_header_and_garbage_lines_are_skipped() -> None:
    text = (
        PROC_TCP.splitlines()[0]
        + "\n   7: garbage\n   8: 0100007F:XXXX 00000000:0000 0A 0:0 0 0 0 0 1\n"
    )
    assert records(parse_proc_inet(text, "tcp", ALL_STATES)) == []
    assert records(parse_proc_inet("", "tcp", ALL_STATES)) == []


def test_unix_lines_map_states_types_and_paths_like_ss() -> None:
    found = records(parse_proc_unix(PROC_UNIX, ALL_STATES))
    rows = [(r.netid, r.state, r.local_address, r.inode, r.local_port) for r in found]
    assert rows == [
        ("u_dgr", "ESTAB", "", 24321, 24321),
        ("u_str", "ESTAB", "", 1580, 1580),
        ("u_str", "ESTAB", "/tmp/probe.sock", 24318, 24318),
        ("u_str", "LISTEN", "/tmp/probe.sock", 24316, 24316),
        ("u_dgr", "UNCONN", "/tmp/with space.sock", 24320, 24320),
        ("u_seq", "LISTEN", "@probe-abstract", 24319, 24319),
    ]
    listening = records(parse_proc_unix(PROC_UNIX, 1 << 10))
    assert [r.inode for r in listening] == [24316, 24319]


def test_socket_link_targets() -> None:
    assert parse_socket_link("socket:[12345]") == 12345
    assert parse_socket_link("pipe:[12345]") is None
    assert parse_socket_link("/dev/null") is None
    assert parse_socket_link("socket:[]") is None


def test_owner_scan_reads_fd_links_and_skips_what_it_cannot_read(tmp_path: Path) -> None:
    proc = tmp_path
    good = proc / "123"
    (good / "fd").mkdir(parents=True)
    (good / "comm").write_text("server\n")
    (good / "fd" / "3").symlink_to("socket:[900]")
    (good / "fd" / "4").symlink_to("pipe:[901]")
    (good / "fd" / "7").symlink_to("socket:[902]")
    other = proc / "45"
    (other / "fd").mkdir(parents=True)
    (other / "comm").write_text("worker\n")
    (other / "fd" / "5").symlink_to("socket:[900]")
    (proc / "77").mkdir()  # no fd directory: gone or not ours
    (proc / "78").mkdir()
    (proc / "78" / "fd").write_text("not a directory")
    (proc / "self").mkdir()  # not a pid
    owners = socket_owners(proc=str(proc))
    assert owners == {
        900: (ProcessRef("worker", 45, 5), ProcessRef("server", 123, 3)),
        902: (ProcessRef("server", 123, 7),),
    }
    assert socket_owners({902}, proc=str(proc)) == {902: (ProcessRef("server", 123, 7),)}
    assert socket_owners(proc=str(proc / "missing")) == {}


def _tcp_line(state: str) -> str:
    return (
        f"   0: 0100007F:1B5F 00000000:0000 {state} 00000000:00000000 00:00000000 00000000"
        "     0        0 4242 1 0000000000000000 100 0 0 10 0"
    )


@pytest.mark.parametrize("state", ["00", "0D", "FF", "7FFFFFF"])
def test_a_state_outside_the_kernels_range_makes_the_line_malformed(state: str) -> None:
    text = "header\n" + _tcp_line(state) + "\n" + _tcp_line("0A")
    assert [row[1] for row in parse_proc_inet(text, "tcp")] == ["LISTEN"]


def test_a_ten_digit_state_is_skipped_without_a_huge_shift() -> None:
    # 1 << 0xFFFFFFFFFF is a 2**40-bit integer; under a 512 MiB address-space
    # limit the old parser died of MemoryError instead of skipping the line.
    script = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20))\n"
        "from sockkit.inspect._procnet import parse_proc_inet\n"
        f"print(len(parse_proc_inet('header\\n' + {_tcp_line('FFFFFFFFFF')!r}, 'tcp')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout.strip()) == (0, "0"), done.stderr[-400:]
