"""Build sock_diag netlink replies byte by byte, as the kernel lays them out (test fixtures).

Written from the C structs in linux/netlink.h, linux/inet_diag.h and
linux/unix_diag.h, independently of the parser under test: host-order
header fields, network-order ports and addresses, 4-byte aligned attributes.
"""

from __future__ import annotations

import socket
import struct

SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
NLMSG_DONE = 3


def _align(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def attribute(kind: int, payload: bytes) -> bytes:
    """One rtattr: u16 length (header + payload), u16 type, payload, padding."""
    return _align(struct.pack("=HH", 4 + len(payload), kind) + payload)


def message(kind: int, payload: bytes, seq: int = 1) -> bytes:
    """One nlmsghdr-framed message (u32 len, u16 type, u16 flags, u32 seq, u32 pid)."""
    header = struct.pack("=IHHII", 16 + len(payload), kind, 2, seq, 0)
    return _align(header + payload)


def inet_diag(
    *,
    family: int = socket.AF_INET,
    state: int = 1,
    src: str = "127.0.0.1",
    sport: int = 0,
    dst: str = "0.0.0.0",
    dport: int = 0,
    rqueue: int = 0,
    wqueue: int = 0,
    uid: int = 0,
    inode: int = 0,
    attributes: bytes = b"",
) -> bytes:
    """A SOCK_DIAG_BY_FAMILY message carrying one struct inet_diag_msg."""
    src_raw = socket.inet_pton(family, src).ljust(16, b"\0")
    dst_raw = socket.inet_pton(family, dst).ljust(16, b"\0")
    sockid = (
        struct.pack("!HH", sport, dport) + src_raw + dst_raw + struct.pack("=III", 0, 0xAB, 0xCD)
    )
    body = struct.pack("=BBBB", family, state, 0, 0) + sockid
    body += struct.pack("=IIIII", 0, rqueue, wqueue, uid, inode)
    assert len(body) == 72
    return message(SOCK_DIAG_BY_FAMILY, body + attributes)


def unix_diag(
    *, kind: int = socket.SOCK_STREAM, state: int = 1, inode: int, attributes: bytes = b""
) -> bytes:
    """A SOCK_DIAG_BY_FAMILY message carrying one struct unix_diag_msg."""
    body = struct.pack("=BBBxIII", socket.AF_UNIX, kind, state, inode, 1, 2)
    assert len(body) == 16
    return message(SOCK_DIAG_BY_FAMILY, body + attributes)


def done(error: int = 0) -> bytes:
    """NLMSG_DONE, which carries an int (negative errno if the dump failed)."""
    return message(NLMSG_DONE, struct.pack("=i", error))


def error(errno_: int) -> bytes:
    """NLMSG_ERROR: int error (negative errno), then the request's header."""
    return message(
        NLMSG_ERROR, struct.pack("=i", -errno_) + struct.pack("=IHHII", 72, 20, 0x301, 1, 0)
    )


def tcp_info(length: int, **fields: int) -> bytes:
    """A struct tcp_info of ``length`` bytes with some fields set (offsets from linux/tcp.h)."""
    layout = {
        "retransmits": (2, "B"),
        "options": (5, "B"),
        "wscale": (6, "B"),
        "rto": (8, "I"),
        "snd_mss": (16, "I"),
        "rtt": (68, "I"),
        "rttvar": (72, "I"),
        "snd_ssthresh": (76, "I"),
        "snd_cwnd": (80, "I"),
        "total_retrans": (100, "I"),
        "bytes_acked": (120, "Q"),
        "bytes_received": (128, "Q"),
        "snd_wnd": (228, "I"),
        "rcv_wnd": (232, "I"),
    }
    raw = bytearray(length)
    for name, value in fields.items():
        offset, fmt = layout[name]
        if offset + struct.calcsize(fmt) <= length:
            struct.pack_into("=" + fmt, raw, offset, value)
    return bytes(raw)


def run_bytecode(program: bytes, sport: int, dport: int) -> bool:
    """Run an inet_diag filter the way the kernel's inet_diag_bc_run() does.

    Each op is (u8 code, u8 yes, u16 no); a comparison's operand is the
    ``no`` of the following op.  Taking ``yes``/``no`` skips that many
    bytes; the socket passes when the program ends exactly at its end.
    """
    pos, length = 0, len(program)
    while length > 0:
        code, yes, no = struct.unpack_from("=BBH", program, pos)
        if code == 1:  # JMP
            result = False
        elif code in (2, 3, 4, 5):  # S_GE, S_LE, D_GE, D_LE
            operand = struct.unpack_from("=BBH", program, pos + 4)[2]
            port = sport if code in (2, 3) else dport
            result = port >= operand if code in (2, 4) else port <= operand
        else:
            raise AssertionError(f"unexpected bytecode op {code}")
        step = yes if result else no
        pos += step
        length -= step
    return length == 0
