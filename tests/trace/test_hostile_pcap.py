"""A capture given to ``trace --read`` is untrusted: bad lengths are skipped or refused, never a crash."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import run_cli

from sockkit.trace._packet import decode_ip
from sockkit.trace._pcap import PcapError, read_pcap

_FILE_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)  # raw IP


def tcp_segment(options: bytes, payload: bytes = b"") -> bytes:
    offset = (20 + len(options)) // 4
    tcp = struct.pack("!HHIIBBHHH", 40000, 7007, 1, 0, offset << 4, 0x02, 65535, 0, 0)
    total = 20 + len(tcp) + len(options) + len(payload)
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, total, 0, 0, 64, 6, 0, *[socket.inet_aton("127.0.0.1")] * 2
    )
    return ip + tcp + options + payload


def capture(path: Path, *packets: bytes) -> Path:
    records = b"".join(struct.pack("<IIII", 1, 0, len(p), len(p)) + p for p in packets)
    path.write_bytes(_FILE_HEADER + records)
    return path


def test_a_tcp_option_running_past_the_header_is_dropped_not_a_struct_error() -> None:
    # NOP NOP then an MSS option (4 bytes) with only its kind and length left
    for options in (b"\x01\x01\x02\x04", b"\x08\x0a\x00\x00", b"\x01\x05\x0a\x00"):
        packet = decode_ip(0.0, tcp_segment(options))
        assert packet is not None and packet.options.mss is None


def test_trace_read_of_such_a_capture_prints_it(tmp_path: Path) -> None:
    path = capture(tmp_path / "cut.pcap", tcp_segment(b"\x01\x01\x02\x04"))
    result = run_cli(["trace", "--read", str(path)])
    assert result.returncode == 0, result.stderr.decode()
    assert b"Traceback" not in result.stderr


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=80),
            st.builds(tcp_segment, st.binary(max_size=40).map(lambda b: b[: len(b) // 4 * 4])),
        ),
        max_size=4,
    ),
    st.lists(st.integers(0, (1 << 32) - 1), max_size=4),
)
def test_any_records_give_packets_or_a_pcap_error(
    tmp_path_factory: object, packets: list[bytes], lengths: list[int]
) -> None:
    records = b""
    for number, packet in enumerate(packets):
        claimed = lengths[number] if number < len(lengths) else len(packet)
        records += struct.pack("<IIII", 1, 0, claimed & 0xFFFFFFFF, len(packet)) + packet
    path = Path(str(tmp_path_factory.mktemp("pcap"))) / "x.pcap"  # type: ignore[attr-defined]
    path.write_bytes(_FILE_HEADER + records)
    try:
        read_pcap(path)
    except PcapError:
        pass
