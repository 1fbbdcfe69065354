"""SIGTERM/SIGINT while peers misbehave mid-transfer: the relay drains, then exits 0 in time.

Each case starts ``sockkit relay`` as a child with a short drain deadline,
gets bytes flowing between real peers, signals it mid-transfer and checks
the exit code, the time to exit, that the listener refused new clients at
once and that the peers' connections were closed (nothing left open).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import cli_env
from tests.relay.test_pump import RelayProcess

DRAIN = 2.0
SLACK = 1.0  # the relay must be gone within DRAIN + SLACK of the signal
CHUNK = b"x" * 65536
FIFTY_MB = 800  # chunks


class Target:
    """A listening target; ``conns`` are the relay's connections to it, as accepted."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.accepted = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            self.accepted.set()

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


def _closed_by_relay(sock: socket.socket, timeout: float = 3.0) -> bool:
    """Whether the relay ended this connection: EOF or reset once the queued bytes are read."""
    sock.settimeout(timeout)
    try:
        while sock.recv(1 << 20):
            pass
    except ConnectionResetError:
        return True
    except OSError:
        return False
    return True


def _send_forever(sock: socket.socket, sent: list[int]) -> None:
    try:
        for _ in range(FIFTY_MB):
            sock.sendall(CHUNK)
            sent[0] += len(CHUNK)
    except OSError:
        pass


def _wait_for(what: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _terminate(relay: RelayProcess, sig: int = signal.SIGTERM) -> float:
    """Signal the relay, check new clients are refused, return seconds until it exited 0."""
    started = time.monotonic()
    relay.proc.send_signal(sig)
    time.sleep(0.3)
    if relay.proc.poll() is None:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", relay.port), timeout=2).close()
    code = relay.proc.wait(DRAIN + 10)
    took = time.monotonic() - started
    assert code == 0, "".join(relay.rest)
    return took


@pytest.fixture
def target() -> Iterator[Target]:
    peer = Target()
    yield peer
    peer.close()


PATHS = [pytest.param([], id="splice"), pytest.param(["--latency", "1"], id="toxic")]


def _relay(target: Target, extra: list[str]) -> RelayProcess:
    return RelayProcess(
        "127.0.0.1:0", f"127.0.0.1:{target.port}", "--drain-timeout", str(DRAIN), *extra
    )


@pytest.mark.parametrize("extra", PATHS)
def test_target_never_reads_while_client_sends_50mb(target: Target, extra: list[str]) -> None:
    relay = _relay(target, extra)
    client = socket.create_connection(("127.0.0.1", relay.port))
    sent = [0]
    sender = threading.Thread(target=_send_forever, args=(client, sent), daemon=True)
    sender.start()
    _wait_for(lambda: sent[0] >= 2 * len(CHUNK))  # buffers fill, then the client is stuck
    took = _terminate(relay)
    assert DRAIN - 0.2 <= took <= DRAIN + SLACK, took  # drained in vain, then closed
    sender.join(5)
    assert not sender.is_alive(), "the client is still blocked sending"
    assert sent[0] < FIFTY_MB * len(CHUNK)
    assert _closed_by_relay(target.conns[0])
    client.close()


@pytest.mark.parametrize("extra", PATHS)
def test_client_never_reads_while_target_sends_50mb(target: Target, extra: list[str]) -> None:
    relay = _relay(target, extra)
    client = socket.create_connection(("127.0.0.1", relay.port))
    assert target.accepted.wait(5)
    sent = [0]
    sender = threading.Thread(target=_send_forever, args=(target.conns[0], sent), daemon=True)
    sender.start()
    _wait_for(lambda: sent[0] >= 2 * len(CHUNK))
    took = _terminate(relay)
    assert DRAIN - 0.2 <= took <= DRAIN + SLACK, took
    sender.join(5)
    assert not sender.is_alive(), "the target is still blocked sending"
    assert _closed_by_relay(client)


@pytest.mark.skipif(not (shutil.which("ncat") and shutil.which("nc")), reason="needs ncat, nc")
@pytest.mark.parametrize("extra", PATHS)
def test_half_closing_peers_finish_during_the_drain(tmp_path: Path, extra: list[str]) -> None:
    """``nc -N`` trickles 50 MB and half-closes; ``ncat --recv-only`` takes it all."""
    port = _free_port()
    out = tmp_path / "out.bin"
    with out.open("wb") as sink:
        server = subprocess.Popen(
            ["ncat", "-l", "--recv-only", "127.0.0.1", str(port)], stdout=sink
        )
    try:
        _wait_for(lambda: _listening(port))
        relay = RelayProcess("127.0.0.1:0", f"127.0.0.1:{port}", "--drain-timeout", "10", *extra)
        block = os.urandom(1 << 20)
        trickle = subprocess.Popen(
            ["nc", "-N", "127.0.0.1", str(relay.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
        assert trickle.stdin is not None
        digest = hashlib.sha256()
        signalled = None
        for i in range(50):  # about 1.5 s of sending: the signal lands in the middle
            trickle.stdin.write(block)
            digest.update(block)
            time.sleep(0.03)
            if i == 10:
                relay.proc.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
        trickle.stdin.close()
        assert trickle.wait(20) == 0
        assert server.wait(20) == 0
        assert relay.proc.wait(20) == 0
        assert signalled is not None and time.monotonic() - signalled < 10
        assert hashlib.sha256(out.read_bytes()).hexdigest() == digest.hexdigest()
        assert "draining 1 connection" in "".join(relay.rest)
    finally:
        for proc in (server,):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("extra", PATHS)
def test_target_resets_mid_transfer_while_another_drains(target: Target, extra: list[str]) -> None:
    relay = _relay(target, extra)
    clients = [socket.create_connection(("127.0.0.1", relay.port)) for _ in range(2)]
    _wait_for(lambda: len(target.conns) == 2)
    sent = [[0], [0]]
    senders = [
        threading.Thread(target=_send_forever, args=(c, s), daemon=True)
        for c, s in zip(clients, sent, strict=True)
    ]
    for sender in senders:
        sender.start()
    _wait_for(lambda: sent[0][0] >= 2 * len(CHUNK))
    target.conns[0].recv(1 << 20)
    target.conns[0].setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    target.conns[0].close()  # RST while the client is still sending
    took = _terminate(relay)
    assert took <= DRAIN + SLACK, took
    for sender in senders:
        sender.join(5)
        assert not sender.is_alive()
    for client in clients:
        client.close()


def test_client_resets_mid_transfer(target: Target) -> None:
    relay = _relay(target, [])
    client = socket.create_connection(("127.0.0.1", relay.port))
    assert target.accepted.wait(5)
    sent = [0]
    sender = threading.Thread(target=_send_forever, args=(target.conns[0], sent), daemon=True)
    sender.start()
    _wait_for(lambda: sent[0] >= 2 * len(CHUNK))
    relay.proc.send_signal(signal.SIGTERM)
    client.recv(1 << 16)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # RST during the drain: the connection ends, so does the drain
    started = time.monotonic()
    assert relay.proc.wait(DRAIN + SLACK) == 0
    assert time.monotonic() - started < DRAIN
    assert _closed_by_relay(target.conns[0])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_second_signal_closes_at_once(target: Target, sig: int) -> None:
    relay = RelayProcess("127.0.0.1:0", f"127.0.0.1:{target.port}", "--drain-timeout", "60")
    client = socket.create_connection(("127.0.0.1", relay.port))
    sent = [0]
    threading.Thread(target=_send_forever, args=(client, sent), daemon=True).start()
    _wait_for(lambda: sent[0] >= 2 * len(CHUNK))
    relay.proc.send_signal(sig)
    time.sleep(0.5)
    assert relay.proc.poll() is None  # draining
    started = time.monotonic()
    relay.proc.send_signal(sig)
    assert relay.proc.wait(5) == 0
    assert time.monotonic() - started < SLACK + 1
    assert _closed_by_relay(target.conns[0])
    client.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True)
    return bool(out.stdout.strip())


_BLOCKING_PUMP = """
import asyncio, socket, threading
from sockkit.relay._pump_splice import SplicePump

async def main():
    a, src = socket.socketpair()
    dst, b = socket.socketpair()  # b never reads: dst fills up
    for s in (a, src, dst, b):
        s.setblocking(True)
    def feed():
        try:
            while True:
                a.sendall(b"y" * 65536)
        except OSError:
            pass
    threading.Thread(target=feed, daemon=True).start()
    pump = asyncio.ensure_future(SplicePump(src, dst, lambda: True, lambda n: None).run())
    await asyncio.sleep(1.0)
    pump.cancel()
    print("loop alive")

asyncio.run(main())
"""


def test_pump_never_blocks_on_sockets_handed_to_it_blocking() -> None:
    """A full destination left blocking made splice wait in the kernel, past any signal."""
    out = subprocess.run(
        [sys.executable, "-c", _BLOCKING_PUMP],
        capture_output=True,
        text=True,
        timeout=20,
        env=cli_env(),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "loop alive"
