"""The PROXY protocol reader and builders: unit cases, a fuzz test, and real HAProxy headers."""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opskit import HAProxy, free_port, haproxy_tcp_config

from sockkit._proxy_protocol import (
    V1_MAX_LENGTH,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    ProxyHeaderReader,
    build_v1,
    build_v2,
)


def read_all(data: bytes, step: int | None = None) -> tuple[ProxyHeader | None, bytes]:
    reader = ProxyHeaderReader()
    chunks = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    header = None
    for chunk in chunks:
        header = reader.feed(chunk)  # after the header, feed() only adds to leftover
    return header, reader.leftover


# -- v1 -----------------------------------------------------------------------


def test_v1_tcp4_gives_the_addresses_and_leaves_the_payload() -> None:
    data = b"PROXY TCP4 192.0.2.7 198.51.100.1 41122 443\r\nGET / HTTP/1.0\r\n"
    for step in (None, 1, 5):
        header, leftover = read_all(data, step)
        assert header is not None
        assert header.version == 1 and not header.local
        assert header.family == socket.AF_INET
        assert header.source == ("192.0.2.7", 41122)
        assert header.destination == ("198.51.100.1", 443)
        assert header.length == data.index(b"\r\n") + 2
        assert leftover == b"GET / HTTP/1.0\r\n"


def test_v1_longest_lines_fit_107_bytes() -> None:
    full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    line = f"PROXY TCP6 {full} {full} 65535 65535\r\n".encode()
    header, leftover = read_all(line + b"x")
    assert header is not None and header.source == (full, 65535)
    assert leftover == b"x"
    unknown = b"PROXY UNKNOWN " + b"u" * (V1_MAX_LENGTH - 16) + b"\r\n"
    assert len(unknown) == V1_MAX_LENGTH
    header, leftover = read_all(unknown + b"y", step=3)
    assert header is not None and header.length == V1_MAX_LENGTH and leftover == b"y"
    with pytest.raises(ProxyHeaderError):
        read_all(unknown[:-2] + b"u\r\n")


def test_v1_unknown_keeps_the_connection_addresses() -> None:
    header, leftover = read_all(b"PROXY UNKNOWN ignored stuff\r\nhi")
    assert header is not None and header.source is None and header.family is None
    assert leftover == b"hi"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"GET / HTTP/1.1\r\n", "no PROXY header"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "stray CR or LF"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "needs TCP4|TCP6"),
        (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "is not TCP4, TCP6 or UNKNOWN"),
        (b"PROXY TCP4 ::1 ::1 1 2\r\n", "is not IPv4"),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "is not IPv6"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", "is not 0-65535"),
        (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "needs TCP4|TCP6"),
        (b"PROXY TCP4 999.2.3.4 5.6.7.8 1 2\r\n", "is not an IP address"),
        (b"PROXY " + b"1" * 200, "without CRLF in 107 bytes"),
    ],
)
def test_v1_malformed_lines_raise_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ProxyHeaderError, match=reason.replace("|", r"\|")):
        read_all(data)


def test_v1_without_crlf_fails_at_byte_107_not_later() -> None:
    reader = ProxyHeaderReader()
    data = b"PROXY TCP4 " + b"1" * 300
    for count in range(1, len(data) + 1):
        try:
            assert reader.feed(data[count - 1 : count]) is None
        except ProxyHeaderError:
            break
    assert count == V1_MAX_LENGTH


# -- v2 -----------------------------------------------------------------------


def test_v2_ipv4_with_tlvs_and_payload() -> None:
    tlvs = ((0x05, b"unique-id-1"), (0x02, b"example.test"))
    data = build_v2(("203.0.113.9", 50000), ("127.0.0.1", 7007), tlvs=tlvs) + b"payload"
    for step in (None, 1, 7):
        header, leftover = read_all(data, step)
        assert header is not None and header.version == 2
        assert header.source == ("203.0.113.9", 50000)
        assert header.destination == ("127.0.0.1", 7007)
        assert header.protocol == "stream"
        assert header.tlvs == tlvs and header.tlv(0x02) == b"example.test"
        assert leftover == b"payload"


def test_v2_ipv6_and_unix_round_trip() -> None:
    header, _ = read_all(build_v2(("2001:db8::1", 1), ("::1", 2), protocol="dgram"))
    assert header is not None and header.family == socket.AF_INET6
    assert header.source == ("2001:db8::1", 1) and header.protocol == "dgram"
    header, _ = read_all(build_v2("/run/a.sock", "@abstract"))
    assert header is not None and header.family == socket.AF_UNIX
    assert (header.source, header.destination) == ("/run/a.sock", "@abstract")


def test_v2_local_carries_no_addresses_and_its_body_is_skipped() -> None:
    data = build_v2(None, None, local=True, tlvs=((0x04, b"\x00" * 5),)) + b"rest"
    header, leftover = read_all(data)
    assert header is not None and header.local and header.source is None
    assert header.length == len(data) - 4 and leftover == b"rest"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda h: h[:12] + bytes([0x11]) + h[13:], "version 1 is not 2"),
        (lambda h: h[:12] + bytes([0x22]) + h[13:], "command 2 is not LOCAL or PROXY"),
        (lambda h: h[:13] + bytes([0x51]) + h[14:], "family/protocol byte 0x51"),
        (lambda h: h[:14] + struct.pack("!H", 4) + h[16:20], "too short for its addresses"),
        (lambda h: h[:14] + struct.pack("!H", 14) + h[16:28] + b"\x05\x00", "TLV cut short"),
        (
            lambda h: h[:14] + struct.pack("!H", 16) + h[16:28] + b"\x05\x00\x09\x00",
            "runs past the header",
        ),
        (lambda h: b"\r\n\r\n\x00\r\nQUIX\n" + h[12:], "no PROXY header"),
    ],
)
def test_v2_malformed_headers_raise_with_a_reason(mutate: object, reason: str) -> None:
    good = build_v2(("10.0.0.1", 1), ("10.0.0.2", 2))
    assert callable(mutate)
    with pytest.raises(ProxyHeaderError, match=reason):
        read_all(mutate(good))


def test_v2_wanted_never_reaches_past_the_header() -> None:
    header = build_v2(("10.0.0.1", 1), ("10.0.0.2", 2), tlvs=((1, b"h2"),))
    reader = ProxyHeaderReader()
    taken = 0
    while reader.header is None:
        want = reader.wanted
        assert taken + want <= len(header)
        reader.feed(header[taken : taken + want])
        taken += want
    assert taken == len(header) and reader.wanted == 0


def test_builders_write_what_the_reader_reads() -> None:
    assert build_v1(("::ffff:192.0.2.1", 5), ("192.0.2.2", 6)) == (
        b"PROXY TCP4 192.0.2.1 192.0.2.2 5 6\r\n"
    )
    assert build_v1(("192.0.2.1", 5), ("::1", 6)) == b"PROXY UNKNOWN\r\n"
    assert build_v1(None, None) == b"PROXY UNKNOWN\r\n"
    header, _ = read_all(build_v1(("2001:db8::5", 80), ("2001:db8::6", 8080)))
    assert header is not None and header.destination == ("2001:db8::6", 8080)
    header, _ = read_all(build_v2(("10.1.1.1", 1), ("::1", 2)))
    assert header is not None and header.family is None and not header.local


# -- fuzz ---------------------------------------------------------------------

_starts = st.sampled_from([b"", b"PROXY ", b"PROXY TCP4 ", b"PROXY TCP6 ", V2_SIGNATURE])


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=_starts, body=st.binary(max_size=400), step=st.integers(1, 64))
def test_fuzz_only_the_documented_error_and_no_read_past_the_header(
    start: bytes, body: bytes, step: int
) -> None:
    data = start + body
    reader = ProxyHeaderReader()
    fed = 0
    header = None
    try:
        while fed < len(data) and header is None:
            header = reader.feed(data[fed : fed + step])
            fed += step
    except ProxyHeaderError as exc:
        assert str(exc)
        if data.startswith(b"P"):
            # A v1 verdict never needs more than 107 bytes.
            assert fed - step < V1_MAX_LENGTH
        return
    if header is None:
        # Still waiting: only a prefix of a header can be pending.
        if data.startswith(b"P"):
            assert len(data) < V1_MAX_LENGTH and b"\r\n" not in data
        else:
            assert data.startswith(V2_SIGNATURE[:16]) or V2_SIGNATURE.startswith(data)
        return
    if header.version == 1:
        assert header.length <= V1_MAX_LENGTH
        assert data[header.length - 2 : header.length] == b"\r\n"
    else:
        assert header.length == 16 + struct.unpack_from("!H", data, 14)[0]
    assert reader.leftover == data[header.length : fed]


@settings(max_examples=500, deadline=None)
@given(
    src=st.ip_addresses(),
    dst=st.ip_addresses(),
    ports=st.tuples(st.integers(0, 65535), st.integers(0, 65535)),
    tlvs=st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=4),
)
def test_fuzz_built_headers_parse_back(
    src: object, dst: object, ports: tuple[int, int], tlvs: list[tuple[int, bytes]]
) -> None:
    source, destination = (str(src), ports[0]), (str(dst), ports[1])
    for data in (build_v1(source, destination), build_v2(source, destination, tlvs=tuple(tlvs))):
        header, leftover = read_all(data + b"!")
        assert header is not None and leftover == b"!"
        if header.source is not None:
            assert header.source[1] == ports[0]  # type: ignore[index]
            assert header.destination[1] == ports[1]  # type: ignore[index]


# -- against HAProxy ----------------------------------------------------------


class HeaderRecorder:
    """A loopback server that reads a PROXY header, then every byte after it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.results: list[tuple[ProxyHeader, bytes]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                reader = ProxyHeaderReader()
                header = None
                try:
                    while header is None:
                        chunk = conn.recv(max(1, reader.wanted))
                        if not chunk:
                            break
                        header = reader.feed(chunk)
                except OSError:
                    continue
                if header is None:
                    continue
                rest = bytearray(reader.leftover)
                try:
                    while chunk := conn.recv(65536):
                        rest += chunk
                except OSError:
                    pass  # health checks end with a reset
                self.results.append((header, bytes(rest)))

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("keyword", ["send-proxy", "send-proxy-v2"])
def test_real_haproxy_headers_name_the_real_client(tmp_path: Path, keyword: str) -> None:
    recorder = HeaderRecorder()
    front = free_port()
    options = " proxy-v2-options unique-id,crc32c" if keyword == "send-proxy-v2" else ""
    config = haproxy_tcp_config(
        front,
        [f"s1 127.0.0.1:{recorder.port} {keyword}{options}"],
        extra="    unique-id-format %{+X}o%ci:%cp\n",
    )
    haproxy = HAProxy(tmp_path, config, front)
    try:
        payload = os.urandom(200_000)
        with socket.create_connection(("127.0.0.1", front), timeout=10) as client:
            client_addr = client.getsockname()
            client.sendall(payload)
            client.shutdown(socket.SHUT_WR)
            assert client.recv(1) == b""
        # wait_accepting's probe connections reach the recorder too: find ours.
        ours = []
        for _ in range(200):
            ours = [r for r in recorder.results if r[0].source == client_addr]
            if ours:
                break
            threading.Event().wait(0.05)
        assert ours, recorder.results
        header, rest = ours[0]
    finally:
        haproxy.stop()
        recorder.close()
    assert header.source == client_addr
    assert header.destination == ("127.0.0.1", front)
    assert hashlib.sha256(rest).hexdigest() == hashlib.sha256(payload).hexdigest()
    if keyword == "send-proxy-v2":
        assert header.version == 2
        assert header.tlv(0x05) is not None  # the unique id HAProxy generated
        assert header.tlv(0x03) is not None and len(header.tlv(0x03) or b"") == 4  # crc32c
    else:
        assert header.version == 1


def test_real_haproxy_v2_health_checks_send_local(tmp_path: Path) -> None:
    recorder = HeaderRecorder()
    front = free_port()
    config = haproxy_tcp_config(
        front,
        [f"s1 127.0.0.1:{recorder.port} send-proxy-v2 check check-send-proxy inter 100ms"],
    )
    haproxy = HAProxy(tmp_path, config, front)
    try:
        for _ in range(200):
            if any(h.local for h, _ in recorder.results):
                break
            threading.Event().wait(0.05)
    finally:
        haproxy.stop()
        recorder.close()
    local = [h for h, _ in recorder.results if h.local]
    assert local and local[0].source is None and local[0].version == 2
