"""sockkit inet: the byte-order and address-conversion toolbox."""

from __future__ import annotations

import argparse
import sys

from sockkit import _inet
from sockkit.cli._output import print_json

DESCRIPTION = """\
Byte order and address conversion, as the C socket API does it.

  pton ADDR                 inet_pton: address text -> network-order bytes
  ntop HEX                  inet_ntop: 8 or 32 hex digits -> address text
  hton16|hton32 VALUE       htons / htonl (decimal or 0x input)
  ntoh16|ntoh32 VALUE       ntohs / ntohl
  endian                    this machine's byte order, by the union test
"""

EXAMPLES = """\
examples:
  sockkit inet pton 192.168.1.10      c0a8010a, 192.168.1.10 as bytes
  sockkit inet pton ::1
  sockkit inet ntop c0a8010a          192.168.1.10
  sockkit inet hton16 7007            7007 (0x1b5f) -> 24347 (0x5f1b) on little-endian
  sockkit inet ntoh32 0x0100007f
  sockkit inet endian --json
"""

_SWAPS = {
    "hton16": (_inet.hton16, 16),
    "hton32": (_inet.hton32, 32),
    "ntoh16": (_inet.ntoh16, 16),
    "ntoh32": (_inet.ntoh32, 32),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="op", required=True, metavar="OPERATION")
    p = sub.add_parser("pton", help="address text to network-order bytes")
    p.add_argument("address")
    p = sub.add_parser("ntop", help="network-order bytes (hex) to address text")
    p.add_argument("hex")
    for name, (_, bits) in _SWAPS.items():
        p = sub.add_parser(name, help=f"{bits}-bit byte-order conversion")
        p.add_argument("value")
    sub.add_parser("endian", help="this machine's byte order")
    for choice in sub.choices.values():
        choice.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    op: str = args.op
    if op == "pton":
        packed = _inet.pton(args.address)
        result: dict[str, object] = {
            "address": args.address,
            "family": packed.family_name,
            "hex": packed.hex,
            "bytes": packed.bytes_text,
        }
        if len(packed.packed) == 4:
            result["uint32_network"] = int.from_bytes(packed.packed, "big")
            result["uint32_host_load"] = int.from_bytes(packed.packed, sys.byteorder)
    elif op == "ntop":
        result = {"hex": args.hex, "address": _inet.ntop(args.hex)}
    elif op in _SWAPS:
        func, bits = _SWAPS[op]
        value = _inet.parse_int(args.value, bits)
        out = func(value)
        digits = bits // 4
        result = {
            "function": op,
            "input": value,
            "input_hex": f"0x{value:0{digits}x}",
            "output": out,
            "output_hex": f"0x{out:0{digits}x}",
            "host_order": sys.byteorder,
        }
    else:
        order = _inet.byte_order()
        result = {
            "byte_order": order.order,
            "name": order.name,
            "union_value": "0x0102",
            "memory": [f"0x{b:02x}" for b in order.memory],
        }
    if args.json:
        print_json(result)
    else:
        _print_plain(op, result)
    return 0


def _print_plain(op: str, result: dict[str, object]) -> None:
    if op in _SWAPS:
        print(
            f"{result['input']} ({result['input_hex']}) -> {result['output']} ({result['output_hex']})"
        )
    elif op == "endian":
        memory = result["memory"]
        assert isinstance(memory, list)
        print(result["name"])
        print(
            f"union {{ uint16_t s; uint8_t c[2]; }} u; u.s = 0x0102;"
            f"  ->  c[0] = {memory[0]}, c[1] = {memory[1]}"
        )
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")
