"""A peer's end of stream means it stopped sending, not reading: stdin still reaches it in full.

Receivers that half-close at once (``ncat --recv-only``, ``ncat -l < /dev/null``,
``nc -N -l < /dev/null``) get all 50 MB of a file byte-exact from ``sockkit
connect`` (and ``--send-only``), from ``sockkit listen --half-close``, and over
TLS; ncat, ``nc -N`` and socat are checked against the same receivers so the
test would notice a receiver that really does stop reading.  A receiver that
resets after reading a little makes sockkit exit 1 and say how many bytes of
stdin did not arrive.
"""

from __future__ import annotations

import hashlib
import re
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.client.conftest import Certs, Listening, Spawn, free_port, need
from tests.conftest import sockkit_argv

SIZE = 50_000_000
# A reset after the peer's FIN reads as EPIPE ("closed by peer ... while sending").
NOT_DELIVERED = re.compile(
    rb"^sockkit: connection (?:reset|closed) by peer \S+.*: (at least )?(\d+) bytes of stdin not delivered$"
)


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("payload") / "50MB.bin"
    with path.open("wb") as out, open("/dev/urandom", "rb") as random:
        left = SIZE
        while left:
            block = random.read(min(left, 1 << 20))
            out.write(block)
            left -= len(block)
    return path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def wait_listening(port: int, timeout: float = 10) -> None:
    """Wait until a TCP socket listens on 127.0.0.1:``port``, without connecting to it.

    A probe connection would be the one peer ncat or nc accepts.
    """
    local = f"0100007F:{port:04X}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/net/tcp") as table:
            for row in table.readlines()[1:]:
                fields = row.split()
                if fields[1] == local and fields[3] == "0A":  # TCP_LISTEN
                    return
        time.sleep(0.02)
    raise AssertionError(f"nothing came to listen on port {port}")


# Receivers that shut their sending side at once but read to the end.
RECEIVERS: dict[str, Callable[[int], list[str]]] = {
    "ncat --recv-only": lambda port: [need("ncat"), "-l", "--recv-only", "127.0.0.1", str(port)],
    "ncat -l < /dev/null": lambda port: [need("ncat"), "-l", "127.0.0.1", str(port)],
    "nc -N -l < /dev/null": lambda port: [need("nc"), "-N", "-l", "127.0.0.1", str(port)],
}

# Senders: sockkit's and, for reference, the peers' own (which deliver everything).
SENDERS: dict[str, Callable[[int], list[str]]] = {
    "sockkit connect": lambda port: sockkit_argv("connect", str(port)),
    "sockkit connect --send-only": lambda port: sockkit_argv("connect", "--send-only", str(port)),
    "ncat": lambda port: [need("ncat"), "127.0.0.1", str(port)],
    "nc -N": lambda port: [need("nc"), "-N", "127.0.0.1", str(port)],
    "socat": lambda port: [need("socat"), "-", f"TCP:127.0.0.1:{port}"],
}


@pytest.mark.parametrize("sender", SENDERS)
@pytest.mark.parametrize("receiver", RECEIVERS)
def test_a_receiver_that_half_closes_first_gets_all_of_stdin(
    receiver: str, sender: str, big_file: Path, tmp_path: Path, processes: Spawn
) -> None:
    port = free_port()
    received = tmp_path / "r.bin"
    with received.open("wb") as out:
        rx = processes(RECEIVERS[receiver](port), stdin=subprocess.DEVNULL, stdout=out)
    wait_listening(port)
    with big_file.open("rb") as stdin:
        tx = processes(SENDERS[sender](port), stdin=stdin, stderr=subprocess.PIPE)
        _, err = tx.communicate(timeout=120)
    assert tx.returncode == 0, err
    assert rx.wait(30) == 0
    assert received.stat().st_size == SIZE
    assert sha256(received) == sha256(big_file)


def test_listen_half_close_sends_all_of_stdin_to_a_peer_that_half_closes_first(
    big_file: Path,
    tmp_path: Path,
    processes: Spawn,
    sockkit_listen: Callable[..., Listening],
) -> None:
    with big_file.open("rb") as stdin:
        listening = sockkit_listen("0", "--half-close", stdin=stdin, stdout=subprocess.DEVNULL)
    received = tmp_path / "r.bin"
    with received.open("wb") as out:
        nc = processes(
            [need("nc"), "-N", "127.0.0.1", str(listening.port)],
            stdin=subprocess.DEVNULL,
            stdout=out,
        )
        assert nc.wait(120) == 0
    assert listening.proc.wait(30) == 0
    assert sha256(received) == sha256(big_file)


def test_tls_connect_sends_all_of_stdin_to_a_listener_that_half_closes_first(
    big_file: Path,
    tmp_path: Path,
    certs: Certs,
    processes: Spawn,
    sockkit_listen: Callable[..., Listening],
) -> None:
    received = tmp_path / "r.bin"
    with received.open("wb") as out:
        listening = sockkit_listen(
            "tls://127.0.0.1:0",
            "--half-close",
            "--tls-cert",
            str(certs.server),
            stdin=subprocess.DEVNULL,
            stdout=out,
        )
    with big_file.open("rb") as stdin:
        tx = processes(
            sockkit_argv("connect", "--tls-ca", str(certs.ca), listening.endpoint),
            stdin=stdin,
            stderr=subprocess.PIPE,
        )
        _, err = tx.communicate(timeout=120)
    assert tx.returncode == 0, err
    assert listening.proc.wait(30) == 0
    assert sha256(received) == sha256(big_file)


READ_BEFORE_RESET = 1_000_000


@pytest.fixture
def resetting_receiver() -> Iterator[tuple[int, list[int]]]:
    """A receiver that half-closes, reads about 1 MB, then resets (SO_LINGER 0).

    Its receive buffer is small, so little more than what it read was
    acknowledged by its TCP.  Yields its port and a list that gets the byte count
    it read.
    """
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    got: list[int] = []

    def run() -> None:
        conn, _ = server.accept()
        with conn:
            conn.shutdown(socket.SHUT_WR)
            count = 0
            while count < READ_BEFORE_RESET:
                count += len(conn.recv(65536))
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            got.append(count)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield server.getsockname()[1], got
    thread.join(30)
    server.close()


def test_a_receiver_that_resets_early_makes_connect_exit_1_with_the_bytes_not_delivered(
    big_file: Path, resetting_receiver: tuple[int, list[int]], processes: Spawn
) -> None:
    port, got = resetting_receiver
    with big_file.open("rb") as stdin:
        tx = processes(sockkit_argv("connect", str(port)), stdin=stdin, stderr=subprocess.PIPE)
        _, err = tx.communicate(timeout=60)
    assert tx.returncode == 1, err
    match = NOT_DELIVERED.search(err.rstrip(b"\n"))
    assert match, err
    assert match.group(1) is None  # stdin is a file: the count is exact
    assert err.count(b"\n") == 1 and err.startswith(b"sockkit: ")
    missing = SIZE - got[0]
    # What the receiver's TCP acknowledged but its program never read counts as
    # delivered: at most its (64 KiB, doubled by the kernel) receive buffer.
    assert missing - 512 * 1024 <= int(match.group(2)) <= missing


def test_through_a_pipe_the_count_is_a_lower_bound(
    big_file: Path, resetting_receiver: tuple[int, list[int]], processes: Spawn
) -> None:
    port, got = resetting_receiver
    cat = processes(["cat", str(big_file)], stdout=subprocess.PIPE)
    tx = processes(sockkit_argv("connect", str(port)), stdin=cat.stdout, stderr=subprocess.PIPE)
    _, err = tx.communicate(timeout=60)
    assert tx.returncode == 1, err
    match = NOT_DELIVERED.search(err.rstrip(b"\n"))
    assert match and match.group(1) == b"at least ", err
    assert 0 < int(match.group(2)) <= SIZE - got[0]
