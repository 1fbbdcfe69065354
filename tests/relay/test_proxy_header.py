"""--send-proxy: the PROXY protocol header toward the target, checked by HAProxy itself."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from tests.relay.conftest import Peer
from tests.relay.test_pump import RelayProcess, _free_port

from sockkit._proxy_protocol import V2_SIGNATURE, ProxyHeader, ProxyHeaderReader
from sockkit.relay._proxy_header import proxy_header


def _read(header: bytes) -> ProxyHeader:
    reader = ProxyHeaderReader()
    parsed = reader.feed(header)
    assert parsed is not None and parsed.length == len(header)
    return parsed


def test_v1_text_lines() -> None:
    assert (
        proxy_header("v1", ("127.0.0.1", 40000), ("127.0.0.2", 7100))
        == b"PROXY TCP4 127.0.0.1 127.0.0.2 40000 7100\r\n"
    )
    assert (
        proxy_header("v1", ("::1", 40000, 0, 0), ("::1", 7100, 0, 0))
        == b"PROXY TCP6 ::1 ::1 40000 7100\r\n"
    )
    assert proxy_header("v1", "/tmp/client.sock", "/tmp/front.sock") == b"PROXY UNKNOWN\r\n"


def test_v2_reads_back_with_sockkits_parser() -> None:
    header = proxy_header("v2", ("10.1.2.3", 40000), ("10.9.8.7", 443))
    assert header[:12] == V2_SIGNATURE
    parsed = _read(header)
    assert (parsed.version, parsed.local) == (2, False)
    assert parsed.source == ("10.1.2.3", 40000) and parsed.destination == ("10.9.8.7", 443)
    unix = _read(proxy_header("v2", b"", "/tmp/front.sock"))
    assert unix.source is None  # an unnamed Unix client: no addresses to state


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_haproxy_accept_proxy_takes_the_header(version: str, peer: Peer, tmp_path: Path) -> None:
    front = _free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 10s\n  timeout server 10s\n"
        f"listen x\n  bind 127.0.0.1:{front} accept-proxy\n  server s {peer.address}\n"
    )
    haproxy = subprocess.Popen(
        ["haproxy", "-f", str(config), "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    relay = RelayProcess("127.0.0.1:0", f"127.0.0.1:{front}", "--send-proxy", version)
    try:
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
            sock.settimeout(10)
            sock.sendall(b"through haproxy")
            assert sock.recv(100) == b"through haproxy"
        # Without the header HAProxy refuses the same bytes: the test can tell.
        with socket.create_connection(("127.0.0.1", front), timeout=10) as sock:
            sock.settimeout(10)
            sock.sendall(b"through haproxy")
            try:
                assert sock.recv(100) == b""
            except ConnectionResetError:
                pass  # HAProxy resets it: refused either way
    finally:
        relay.stop()
        haproxy.terminate()
        haproxy.wait(10)
