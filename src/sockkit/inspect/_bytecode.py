"""inet_diag filter programs (``INET_DIAG_REQ_BYTECODE``), so the kernel drops sockets early.

A program is a list of ops, each ``struct inet_diag_bc_op {u8 code; u8 yes;
u16 no;}`` plus its operand.  The kernel runs it on every socket: a test that
holds steps ``yes`` bytes forward, one that fails jumps ``no`` bytes; the
socket is kept when the program is left exactly at its end, dropped when
left 4 bytes past it.  So in a program of length L, an op at offset p
rejects with ``no = L - p + 4`` -- the convention every combinator below
keeps (and the kernel's audit checks: each jump lands on an op or on one of
those two ends).

* ``a and b``: a's rejections are moved past b; a's end falls into b.
* ``a or b``: a, then ``JMP`` to the end (accept), then b; a's rejections
  land on b.
* ``not a``: a, then ``JMP`` 4 bytes past the end; a's rejections land on
  the end (accept).

:func:`compile_bytecode` returns ``None`` for an expression holding
something the kernel cannot test (a Unix glob); the caller then filters in
Python only, which it does anyway (:mod:`._filter_match`).
"""

from __future__ import annotations

import struct

from sockkit.inspect._filter_tree import AF_UNIX, And, Auto, HostCond, Node, Not, Or, PortCompare

__all__ = ["bytecode_and", "bytecode_or", "compile_bytecode", "port_equals"]

# linux/inet_diag.h
BC_NOP, BC_JMP, BC_S_GE, BC_S_LE, BC_D_GE, BC_D_LE, BC_AUTO, BC_S_COND, BC_D_COND = range(9)

_OP = struct.Struct("=BBH")
_HOSTCOND = struct.Struct("=BBxxi")  # family, prefix_len, port (-1: any)
_COMPARE = {("s", "ge"): BC_S_GE, ("s", "le"): BC_S_LE, ("d", "ge"): BC_D_GE, ("d", "le"): BC_D_LE}


def compile_bytecode(node: Node) -> bytes | None:
    """The kernel program for ``node``, or ``None`` if some part cannot run in the kernel."""
    if isinstance(node, And):
        left, right = compile_bytecode(node.left), compile_bytecode(node.right)
        return None if left is None or right is None else bytecode_and(left, right)
    if isinstance(node, Or):
        left, right = compile_bytecode(node.left), compile_bytecode(node.right)
        return None if left is None or right is None else bytecode_or(left, right)
    if isinstance(node, Not):
        term = compile_bytecode(node.term)
        return None if term is None else term + _OP.pack(BC_JMP, 4, 8)
    if isinstance(node, PortCompare):
        return _compare(_COMPARE[node.side, node.op], node.port)
    if isinstance(node, Auto):
        return _OP.pack(BC_AUTO, 4, 8)
    return _host(node)


def _compare(code: int, port: int) -> bytes:
    # the operand rides in a second op's ``no`` field
    return _OP.pack(code, 8, 12) + _OP.pack(0, 0, port)


def _host(cond: HostCond) -> bytes | None:
    if cond.pattern is not None:
        return None
    code = BC_S_COND if cond.side == "s" else BC_D_COND
    port = -1 if cond.port is None else cond.port
    alternatives = cond.addresses or ((0, b"", 0),)
    ops: list[bytes] = []
    for family, packed, prefix in alternatives:
        if family == AF_UNIX:
            return None
        size = 4 + _HOSTCOND.size + len(packed)
        ops.append(_OP.pack(code, size, size + 4) + _HOSTCOND.pack(family, prefix, port) + packed)
    program = ops[-1]
    for op in reversed(ops[:-1]):
        program = bytecode_or(op, program)
    return program


def bytecode_and(first: bytes, second: bytes) -> bytes:
    """``first`` and ``second``: the program keeping what both keep."""
    patched = bytearray(first)
    pos = 0
    while pos < len(first):
        code, yes, no = _OP.unpack_from(first, pos)
        if pos + no == len(first) + 4:
            _OP.pack_into(patched, pos, code, yes, no + len(second))
        pos += yes
    return bytes(patched) + second


def bytecode_or(first: bytes, second: bytes) -> bytes:
    """``first`` or ``second``: the program keeping what either keeps."""
    return first + _OP.pack(BC_JMP, 4, len(second) + 4) + second


def port_equals(side: str, port: int) -> bytes:
    """The local (``side`` ``"s"``) or peer (``"d"``) port is ``port``: ``>= port and <= port``."""
    return bytecode_and(_compare(_COMPARE[side, "ge"], port), _compare(_COMPARE[side, "le"], port))
