"""``connect -z``: which ports are open, as ``nc -z`` finds them; concurrent and bounded."""

from __future__ import annotations

import random
import re
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from tests.client.conftest import need
from tests.conftest import run_cli

from sockkit._errors import UsageError
from sockkit.client import parse_ports, scan_ports


@pytest.fixture
def some_open() -> Iterator[tuple[int, list[int]]]:
    """A run of 12 loopback ports of which the 3rd, 7th and 8th listen: (first port, open ones)."""
    # Below the ephemeral range (32768-60999), where other tests' clients take ports.
    for _ in range(200):
        listeners: list[socket.socket] = []
        first = random.randrange(20000, 32000)
        try:
            for port in (first + 2, first + 6, first + 7):
                sock = socket.socket()
                listeners.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", port))
                sock.listen()
        except OSError:
            for sock in listeners:
                sock.close()
            continue
        yield first, [first + 2, first + 6, first + 7]
        for sock in listeners:
            sock.close()
        return
    pytest.skip("no free run of ports")


def nc_open_ports(first: int, last: int) -> tuple[int, set[int]]:
    result = subprocess.run(
        [need("nc"), "-zv", "-w", "1", "127.0.0.1", f"{first}-{last}"],
        capture_output=True,
        timeout=60,
    )
    ports = re.findall(rb"Connection to 127\.0\.0\.1 (\d+) port .* succeeded", result.stderr)
    return result.returncode, {int(p) for p in ports}


def test_z_finds_the_ports_nc_z_finds(some_open: tuple[int, list[int]]) -> None:
    first, open_ports = some_open
    status, theirs = nc_open_ports(first, first + 11)
    ours = run_cli(["connect", "-z", "127.0.0.1", f"{first}-{first + 11}"])
    assert ours.returncode == status == 0
    lines = ours.stdout.decode().splitlines()
    assert len(lines) == 12
    found = {
        int(m.group(1))
        for m in re.finditer(r"^127\.0\.0\.1 (\d+)/tcp open", ours.stdout.decode(), re.M)
    }
    assert found == theirs == set(open_ports)
    assert all(re.match(r"^127\.0\.0\.1 \d+/tcp (open|closed)", line) for line in lines)


def test_z_exits_1_like_nc_when_nothing_is_open(some_open: tuple[int, list[int]]) -> None:
    first, _ = some_open
    status, theirs = nc_open_ports(first, first + 1)
    ours = run_cli(["connect", "-z", f"127.0.0.1:{first}-{first + 1}"])
    assert ours.returncode == status == 1
    assert theirs == set()
    assert ours.stdout.decode().count(" closed") == 2


def test_a_thousand_ports_and_one_that_never_answers_take_bounded_time() -> None:
    # A listener whose backlog is full drops SYNs: that port can only time out.
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        port = full.getsockname()[1]
        queued = [socket.socket() for _ in range(3)]
        for sock in queued:
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
        time.sleep(0.2)
        low = max(port - 500, 1)
        ports = list(range(low, low + 1000))
        started = time.monotonic()
        _, results = scan_ports("127.0.0.1", ports, timeout=1.0)
        elapsed = time.monotonic() - started
        for sock in queued:
            sock.close()
    states = {r.port: r.state for r in results}
    assert states[port] == "timed out"
    assert [r.port for r in results] == ports
    assert elapsed < 6, elapsed  # ~1 s of waiting, not 1000 sequential probes


def test_udp_probe_tells_closed_from_silent() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bound:
        bound.bind(("127.0.0.1", 0))
        listening = bound.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as spare:
            spare.bind(("127.0.0.1", 0))
            closed = spare.getsockname()[1]
        _, results = scan_ports("127.0.0.1", [listening, closed], udp=True, timeout=0.5)
    assert [r.state for r in results] == ["open|filtered", "closed"]


def test_port_lists() -> None:
    assert parse_ports("22") == [22]
    assert parse_ports("20-23,80,22") == [20, 21, 22, 23, 80]
    for bad in ("0", "25-20", "x", "1-70000"):
        with pytest.raises(UsageError):
            parse_ports(bad)


def test_z_with_data_options_is_a_usage_error() -> None:
    result = run_cli(["connect", "-z", "-x", "127.0.0.1", "20-25"])
    assert result.returncode == 2
    assert b"does nothing with -z" in result.stderr
