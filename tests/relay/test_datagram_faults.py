"""Packet faults on datagram relays: loss (random, bursts), duplicate, reorder, corrupt, delay."""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from pathlib import Path

from tests.relay.conftest import RelayAPI

from sockkit.relay._packets import PacketFaults
from sockkit.relay._toxics import parse_toxic


def _toxic(kind: str, **attributes: float) -> object:
    return parse_toxic({"type": kind, "attributes": attributes}, datagram=True)


class Counter:
    """A datagram server that records the sequence numbers it receives (and echoes)."""

    def __init__(self, family: int = socket.AF_INET, path: str | None = None) -> None:
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind(path or ("127.0.0.1", 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.seen: list[int] = []
        self.payloads: list[bytes] = []
        threading.Thread(target=self._run, daemon=True).start()

    @property
    def address(self) -> str:
        name = self.sock.getsockname()
        return f"unixgram:{name}" if isinstance(name, str) else f"udp://127.0.0.1:{name[1]}"

    def _run(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            self.seen.append(struct.unpack("!I", data[:4])[0])
            self.payloads.append(data)


def _send_paced(port: int, count: int, size: int = 16) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", port))
        for i in range(count):
            sock.send(struct.pack("!I", i) + bytes(size - 4))
            if i % 20 == 19:
                time.sleep(0.002)  # stay far below socket buffer sizes: only the toxic loses


def _wait_quiet(counter: Counter) -> None:
    last, deadline = -1, time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if len(counter.seen) == last:
            return
        last = len(counter.seen)


def test_udp_loss_10_percent_over_10000_datagrams(relay_api: RelayAPI) -> None:
    counter = Counter()
    status, proxy = relay_api.call(
        "POST",
        "/proxies",
        {"name": "u", "listen": "udp://127.0.0.1:0", "upstream": counter.address},
    )
    assert status == 201, proxy
    assert proxy["listen"].startswith("udp://127.0.0.1:") and not proxy["listen"].endswith(":0")
    status, body = relay_api.call(
        "POST",
        "/proxies/u/toxics",
        {"type": "loss", "stream": "upstream", "attributes": {"probability": 0.1}},
    )
    assert status == 200, body
    _send_paced(int(proxy["listen"].rsplit(":", 1)[1]), 10_000)
    _wait_quiet(counter)
    assert len(set(counter.seen)) == len(counter.seen)  # nothing doubled
    lost = 10_000 - len(counter.seen)
    assert 800 <= lost <= 1200, lost


def _bursts(losses: list[bool]) -> list[int]:
    runs, run = [], 0
    for lost in losses:
        if lost:
            run += 1
        elif run:
            runs.append(run)
            run = 0
    return runs


def test_gilbert_elliott_bursts_have_the_configured_mean_length() -> None:
    faults = PacketFaults(random.Random(7))
    toxic = _toxic("loss", p=0.02, r=0.25)  # mean burst 1/r = 4 datagrams
    losses = [not faults.apply(b"x", [toxic]) for _ in range(100_000)]  # type: ignore[list-item]
    runs = _bursts(losses)
    mean = sum(runs) / len(runs)
    assert 3.2 <= mean <= 4.8, mean
    # and far burstier than random loss at the same overall rate
    rate = sum(losses) / len(losses)
    plain = PacketFaults(random.Random(7))
    random_runs = _bursts(
        [not plain.apply(b"x", [_toxic("loss", probability=rate)]) for _ in range(100_000)]  # type: ignore[list-item]
    )
    assert sum(random_runs) / len(random_runs) < 1.3


def test_gilbert_elliott_end_to_end(relay_api: RelayAPI) -> None:
    counter = Counter()
    relay_api.call(
        "POST",
        "/proxies",
        {"name": "ge", "listen": "udp://127.0.0.1:0", "upstream": counter.address},
    )
    relay_api.call(
        "POST",
        "/proxies/ge/toxics",
        {"type": "loss", "stream": "upstream", "attributes": {"p": 0.02, "r": 0.25}},
    )
    _send_paced(relay_api.listen_port("ge"), 10_000)
    _wait_quiet(counter)
    got = set(counter.seen)
    runs = _bursts([i not in got for i in range(10_000)])
    mean = sum(runs) / len(runs)
    assert 3.2 <= mean <= 4.8, (mean, len(runs))


def test_duplicate_reorder_corrupt_and_delay_rules() -> None:
    rng = random.Random(1)
    dup = PacketFaults(rng)
    assert dup.apply(b"a", [_toxic("duplicate", probability=1)]) == [(0.0, b"a"), (0.0, b"a")]  # type: ignore[list-item]
    reorder = PacketFaults(rng)
    toxic = [_toxic("reorder", probability=1)]
    assert reorder.apply(b"1", toxic) == []  # type: ignore[arg-type]
    assert reorder.apply(b"2", toxic) == [(0.0, b"2"), (0.0, b"1")]  # type: ignore[arg-type]
    corrupt = PacketFaults(rng)
    [(_, bent)] = corrupt.apply(bytes(64), [_toxic("corrupt", probability=1)])  # type: ignore[list-item]
    assert len(bent) == 64 and sum(bin(b).count("1") for b in bent) == 1  # one bit flipped
    late = PacketFaults(rng)
    [(delay, _)] = late.apply(b"x", [_toxic("latency", latency=50, jitter=10)])  # type: ignore[list-item]
    assert 0.040 <= delay <= 0.060


def test_unixgram_duplicates_every_datagram(relay_api: RelayAPI, tmp_path: Path) -> None:
    counter = Counter(socket.AF_UNIX, str(tmp_path / "target.sock"))
    front = tmp_path / "front.sock"
    status, body = relay_api.call(
        "POST",
        "/proxies",
        {"name": "ug", "listen": f"unixgram:{front}", "upstream": counter.address},
    )
    assert status == 201, body
    relay_api.call(
        "POST",
        "/proxies/ug/toxics",
        {"type": "duplicate", "stream": "upstream", "attributes": {"probability": 1}},
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("")
        for i in range(20):
            sock.sendto(struct.pack("!I", i), str(front))
    _wait_quiet(counter)
    assert sorted(counter.seen) == sorted(list(range(20)) * 2)
