"""Moving bytes: splice with half-close against real peers, bounded memory, dumps and pcap."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import cli_env, sockkit_argv
from tests.relay.conftest import Peer


class RelayProcess:
    """``sockkit relay ...`` as a child; ``port`` is where it listens."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            sockkit_argv("relay", *args), stderr=subprocess.PIPE, env=cli_env()
        )
        assert self.proc.stderr is not None
        self.lines: list[str] = []
        while True:
            line = self.proc.stderr.readline().decode()
            assert line, "relay exited: " + "".join(self.lines)
            self.lines.append(line)
            match = re.search(r"listening on \S+?:(\d+) ", line)
            if match:
                self.port = int(match.group(1))
                break
        self.rest: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.rest.append(line.decode(errors="replace"))

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]

    def stop(self) -> str:
        self.proc.terminate()
        assert self.proc.wait(10) == 0
        time.sleep(0.1)
        return "".join(self.rest)


@pytest.fixture
def payload(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "payload.bin"
    path.write_bytes(os.urandom(20 * 1024 * 1024))
    yield path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(shutil.which("ncat") is None, reason="ncat is not installed")
def test_20mb_each_way_with_ncat_and_half_close(payload: Path, tmp_path: Path) -> None:
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    # client -> relay -> ncat --recv-only: the client half-closes, ncat sees EOF.
    port = _free_port()
    received = tmp_path / "received.bin"
    with received.open("wb") as out:
        ncat = subprocess.Popen(["ncat", "-l", "--recv-only", "127.0.0.1", str(port)], stdout=out)
    relay = RelayProcess("127.0.0.1:0", f"127.0.0.1:{port}")
    try:
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", relay.port), timeout=20) as sock:
            sock.sendall(payload.read_bytes())
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(20)
            assert sock.recv(10) == b""  # ncat exits: its FIN comes back
        assert ncat.wait(20) == 0
        assert hashlib.sha256(received.read_bytes()).hexdigest() == digest
        # ncat --send-only -> relay -> client: ncat's FIN after the file ends the stream.
        port2 = _free_port()
        with payload.open("rb") as source:
            sender = subprocess.Popen(
                ["ncat", "-l", "--send-only", "127.0.0.1", str(port2)], stdin=source
            )
        relay2 = RelayProcess("127.0.0.1:0", f"127.0.0.1:{port2}")
        try:
            time.sleep(0.2)
            with socket.create_connection(("127.0.0.1", relay2.port), timeout=20) as sock:
                sock.settimeout(20)
                got = b"".join(iter(lambda: sock.recv(1 << 16), b""))
            assert hashlib.sha256(got).hexdigest() == digest
            assert sender.wait(20) == 0
        finally:
            relay2.stop()
    finally:
        log = relay.stop()
        ncat.kill()
        ncat.wait()
    assert f"in={20 * 1024 * 1024} out=0" in log


@pytest.mark.parametrize("toxic", [[], ["--toxic", "latency:latency=1"]])
def test_slow_consumer_keeps_relay_memory_bounded(toxic: list[str]) -> None:
    """8 MB to a reader taking 2 MB/s: the relay's RSS grows by less than 4 MB."""
    total = 8 * 1024 * 1024
    source = Peer(f"send:{total}")
    relay = RelayProcess("127.0.0.1:0", source.address, *toxic)
    try:
        time.sleep(0.3)
        before = relay.rss_kib()
        peak = before
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.sendall(b"g")
            got = 0
            started = time.monotonic()
            while got < total:
                data = sock.recv(64 * 1024)
                assert data
                got += len(data)
                ahead = got / (2 * 1024 * 1024) - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
                peak = max(peak, relay.rss_kib())
        assert got == total
        assert peak - before < 4 * 1024, f"RSS grew {peak - before} KiB"
    finally:
        relay.stop()
        source.close()


def test_verbose_dump_is_socat_like(peer: Peer) -> None:
    relay = RelayProcess("127.0.0.1:0", peer.address, "-v")
    try:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n\x00\x01")
            sock.shutdown(socket.SHUT_WR)
            b"".join(iter(lambda: sock.recv(100), b""))
    finally:
        log = relay.stop()
    header = re.compile(
        r"^([<>]) \d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{6} conn=1 length=20 from=0 to=19$", re.M
    )
    assert [m.group(1) for m in header.finditer(log)] == [">", "<"]
    assert "GET / HTTP/1.0\\r\n\\r\n\\x00\\x01\n" in log


def test_hex_dump(peer: Peer) -> None:
    relay = RelayProcess("127.0.0.1:0", peer.address, "-x")
    try:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
            sock.sendall(b"hello\x00")
            sock.shutdown(socket.SHUT_WR)
            b"".join(iter(lambda: sock.recv(100), b""))
    finally:
        log = relay.stop()
    assert "  00000000  68 65 6c 6c 6f 00" in log and "hello." in log


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
def test_pcap_opens_in_tcpdump(peer: Peer, tmp_path: Path) -> None:
    pcap = tmp_path / "relay.pcap"
    relay = RelayProcess("127.0.0.1:0", peer.address, "--pcap", str(pcap))
    try:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
            sock.sendall(b"hello pcap")
            assert sock.recv(100) == b"hello pcap"
            sock.sendall(b"again")
            assert sock.recv(100) == b"again"
    finally:
        relay.stop()
    result = subprocess.run(
        ["tcpdump", "-nn", "-r", str(pcap), "-A"], capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode(errors="replace")
    assert (
        len(re.findall(r"^\S+ IP 127\.0\.0\.1\.\d+ > 127\.0\.0\.1\.\d+: Flags \[P\.\]", text, re.M))
        == 4
    )
    assert "hello pcap" in text and "again" in text
    assert "length 10" in text and "length 5" in text
