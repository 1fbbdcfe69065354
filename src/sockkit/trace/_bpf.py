"""The classic BPF program that keeps one flow, so the kernel drops the rest of loopback.

A packet socket on ``lo`` sees every packet of every program on the machine.
Filtering in Python would still copy each one into the socket's buffer, and
a busy neighbour could fill it and make us lose our own packets; a filter
attached with ``SO_ATTACH_FILTER`` runs in the kernel before anything is
queued (tcpdump does the same).  The program accepts, over Ethernet framing
(which ``lo`` uses):

* IPv4 or IPv6 TCP and UDP with PORT as source or destination port
  (IPv4 fragments after the first carry no ports and are dropped);
* ICMP "destination unreachable" (and ICMPv6 type 1) whose quoted header
  has PORT on either side -- the "port unreachable" answer to a datagram;

and drops every packet whose type is ``PACKET_OUTGOING``: on loopback each
packet is seen leaving and arriving, and only the arrival is kept (libpcap
skips the same copy, in user space).

The assembler is the smallest that reads well: instructions with symbolic
jump targets, resolved to the relative offsets the kernel wants.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

__all__ = ["Instruction", "assemble", "flow_filter"]

# opcode parts (linux/filter.h, linux/bpf_common.h)
_LD, _LDX, _ALU, _JMP, _RET, _MISC = 0x00, 0x01, 0x04, 0x05, 0x06, 0x07
_W, _H, _B = 0x00, 0x08, 0x10
_ABS, _IND, _MSH = 0x20, 0x40, 0xA0
_JEQ, _JSET = 0x10, 0x40
_ADD, _AND, _LSH = 0x00, 0x50, 0x60
_K, _X = 0x00, 0x08
_TAX = 0x00

_SKF_AD_OFF = -0x1000
_SKF_AD_PKTTYPE = 4
_PACKET_OUTGOING = 4
_SNAPLEN = 0x40000  # "accept the whole packet": what tcpdump's default snap length is


class Instruction(NamedTuple):
    """One ``struct sock_filter``; ``jt``/``jf`` are label names until :func:`assemble`."""

    code: int
    k: int = 0
    jt: str | None = None
    jf: str | None = None


def _ld(size: int, offset: int) -> Instruction:
    return Instruction(_LD | size | _ABS, offset & 0xFFFFFFFF)


def _ldi(size: int, offset: int) -> Instruction:
    return Instruction(_LD | size | _IND, offset)


def _jeq(value: int, yes: str | None, no: str | None = None) -> Instruction:
    return Instruction(_JMP | _JEQ | _K, value, yes, no)


def _ports(port: int, first: int, *, indexed: bool) -> list[Instruction]:
    load = _ldi if indexed else _ld
    return [
        load(_H, first),
        _jeq(port, "accept"),
        load(_H, first + 2),
        _jeq(port, "accept", "drop"),
    ]


def flow_filter(port: int) -> list[tuple[str | None, Instruction]]:
    """The program (label, instruction) pairs for "TCP/UDP/ICMP-about PORT, arriving copies only"."""
    if not 0 < port < 65536:
        raise ValueError(f"port out of range: {port}")
    eth = 14
    v4, v6 = eth, eth
    program: list[tuple[str | None, Instruction]] = [
        (None, _ld(_W, _SKF_AD_OFF + _SKF_AD_PKTTYPE)),
        (None, _jeq(_PACKET_OUTGOING, "drop")),
        (None, _ld(_H, 12)),
        (None, _jeq(0x0800, "v4")),
        (None, _jeq(0x86DD, "v6", "drop")),
        # IPv4: protocol byte, then ports past the variable-length header (X = header length)
        ("v4", _ld(_B, v4 + 9)),
        (None, _jeq(6, "v4ports")),
        (None, _jeq(17, "v4ports")),
        (None, _jeq(1, "v4icmp", "drop")),
        ("v4ports", _ld(_H, v4 + 6)),
        (None, Instruction(_JMP | _JSET | _K, 0x1FFF, "drop")),
        (None, Instruction(_LDX | _B | _MSH, v4)),
    ]
    program += [(None, i) for i in _ports(port, v4, indexed=True)]
    program += [
        ("v4icmp", Instruction(_LDX | _B | _MSH, v4)),
        (None, _ldi(_B, v4)),
        (None, _jeq(3, None, "drop")),  # destination unreachable
        (None, _ldi(_B, v4 + 8 + 9)),  # the quoted header's protocol
        (None, _jeq(17, "v4quoted")),
        (None, _jeq(6, "v4quoted", "drop")),
        ("v4quoted", _ldi(_B, v4 + 8)),
        (None, Instruction(_ALU | _AND | _K, 0x0F)),
        (None, Instruction(_ALU | _LSH | _K, 2)),
        (None, Instruction(_ALU | _ADD | _X, 0)),
        (None, Instruction(_MISC | _TAX, 0)),
    ]
    program += [(None, i) for i in _ports(port, v4 + 8, indexed=True)]
    program += [
        # IPv6 without extension headers: next header, then ports at a fixed offset
        ("v6", _ld(_B, v6 + 6)),
        (None, _jeq(6, "v6ports")),
        (None, _jeq(17, "v6ports")),
        (None, _jeq(58, "v6icmp", "drop")),
        ("v6ports", _ld(_H, v6 + 40)),
        (None, _jeq(port, "accept")),
        (None, _ld(_H, v6 + 42)),
        (None, _jeq(port, "accept", "drop")),
        ("v6icmp", _ld(_B, v6 + 40)),
        (None, _jeq(1, None, "drop")),  # destination unreachable
    ]
    program += [(None, i) for i in _ports(port, v6 + 40 + 8 + 40, indexed=False)]
    program += [
        ("accept", Instruction(_RET | _K, _SNAPLEN)),
        ("drop", Instruction(_RET | _K, 0)),
    ]
    return program


def assemble(program: Sequence[tuple[str | None, Instruction]]) -> bytes:
    """The packed ``struct sock_filter`` array; a missing target falls through to the next one."""
    labels = {label: index for index, (label, _) in enumerate(program) if label}
    out = bytearray()
    for index, (_, ins) in enumerate(program):
        jumps = []
        for target in (ins.jt, ins.jf):
            offset = 0 if target is None else labels[target] - index - 1
            if not 0 <= offset < 256:
                raise ValueError(f"jump from {index} to {target!r} out of reach")
            jumps.append(offset)
        out += struct.pack("=HBBI", ins.code, jumps[0], jumps[1], ins.k)
    return bytes(out)
