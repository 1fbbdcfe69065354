"""``connect``/``listen`` ``-e``/``-c``: a program on the socket, ncat's environment, no zombies."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from tests.client.conftest import Spawn, free_port, need, wait_for_tcp
from tests.conftest import LISTENING, run_cli, sockkit_argv

NCAT_NAMES = {
    "NCAT_REMOTE_ADDR",
    "NCAT_REMOTE_PORT",
    "NCAT_LOCAL_ADDR",
    "NCAT_LOCAL_PORT",
    "NCAT_PROTO",
}
ENV_SCRIPT = "env | grep '^NCAT_' | sort"


def start_listen(processes: Spawn, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    """``sockkit listen ARGS`` with stderr piped; returns it and the port it logged."""
    proc = processes(
        sockkit_argv("listen", *args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    found = LISTENING.search(line)
    assert found, line
    return proc, int(found.group(1).rsplit(b":", 1)[1])


def children(pid: int) -> list[int]:
    """Processes (zombies included) whose parent is ``pid``, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def exchange(port: int, data: bytes) -> bytes:
    """Send ``data``, half-close, return everything the peer sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        got = bytearray()

        def send() -> None:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        while chunk := sock.recv(65536):
            got += chunk
        sender.join()
    return bytes(got)


def env_lines(text: bytes) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.decode().splitlines() if "=" in line)
    return {name: value for name, value in pairs}


def read_until_closed(port: int) -> tuple[int, bytes]:
    """Connect, send nothing, read until the peer closes: our port and what came."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        got = b""
        while chunk := sock.recv(4096):
            got += chunk
        return sock.getsockname()[1], got


def test_listen_sh_exec_gives_the_program_ncats_environment(processes: Spawn) -> None:
    ncat_port = free_port()
    processes([need("ncat"), "-l", "-k", "127.0.0.1", str(ncat_port), "-c", ENV_SCRIPT])
    wait_for_tcp(ncat_port)
    _, got = read_until_closed(ncat_port)
    theirs = env_lines(got)
    proc, port = start_listen(processes, "-c", ENV_SCRIPT, "0")
    client_port, got = read_until_closed(port)
    ours = env_lines(got)
    assert set(theirs) == NCAT_NAMES
    assert set(ours) == set(theirs)
    assert ours["NCAT_REMOTE_ADDR"] == theirs["NCAT_REMOTE_ADDR"] == "127.0.0.1"
    assert ours["NCAT_REMOTE_PORT"] == str(client_port)
    assert ours["NCAT_LOCAL_PORT"] == str(port)
    assert ours["NCAT_PROTO"] == theirs["NCAT_PROTO"] == "TCP"
    assert proc.wait(10) == 0  # one peer without -k: done when its program is


def test_connect_exec_gives_the_program_ncats_environment(processes: Spawn, tmp_path: Path) -> None:
    ncat = need("ncat")
    port = free_port()
    listener = processes(
        [ncat, "-l", "-k", "127.0.0.1", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    wait_for_tcp(port)
    script = f"{ENV_SCRIPT} >&2"
    ours = run_cli(["connect", "--sh-exec", script, f"127.0.0.1:{port}"])
    theirs = subprocess.run(
        [ncat, "-c", script, "127.0.0.1", str(port)], capture_output=True, timeout=30
    )
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    mine, ncats = env_lines(ours.stderr), env_lines(theirs.stderr)
    assert set(mine) == set(ncats) == NCAT_NAMES
    assert mine["NCAT_REMOTE_PORT"] == ncats["NCAT_REMOTE_PORT"] == str(port)
    assert mine["NCAT_LOCAL_ADDR"] == "127.0.0.1"
    listener.kill()


def test_exec_splits_its_command_and_runs_it_without_a_shell(processes: Spawn) -> None:
    _, port = start_listen(processes, "-k", "--exec", "/usr/bin/printf '%s|' 'a b' c", "0")
    assert exchange(port, b"") == b"a b|c|"


def test_keep_open_exec_cat_is_a_forking_echo_server_with_no_zombies(processes: Spawn) -> None:
    proc, port = start_listen(processes, "-k", "--exec", "/bin/cat", "0")
    payloads = [os.urandom(1024 * 1024) for _ in range(4)]
    results: list[bytes | None] = [None] * len(payloads)

    def client(i: int) -> None:
        results[i] = exchange(port, payloads[i])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(payloads))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for sent, got in zip(payloads, results, strict=True):
        assert got is not None
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(sent).hexdigest()
    # Every cat has exited (its peer half-closed); each must be reaped, not left a zombie.
    deadline = time.monotonic() + 10
    while children(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert children(proc.pid) == []
    assert proc.poll() is None  # still serving
    assert exchange(port, b"again") == b"again"
    proc.terminate()
    assert proc.wait(10) == 0
    assert proc.stderr is not None
    log = proc.stderr.read().decode()
    assert len(re.findall(r"^accepted 127\.0\.0\.1:\d+: /bin/cat pid \d+$", log, re.M)) == 5


def test_a_missing_program_is_one_error_line_before_listening() -> None:
    result = run_cli(["listen", "-k", "--exec", "/nonexistent/prog", "0"])
    assert result.returncode == 1
    assert result.stderr.decode().startswith("sockkit: cannot run '/nonexistent/prog'")
    assert b"listening on" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--exec", "cat", "--sh-exec", "cat", "0"], "exclude each other"),
        (["--exec", "cat", "tls://127.0.0.1:0"], "TLS"),
        (["-u", "--exec", "cat", "0"], "datagram"),
    ],
)
def test_exec_misfits_are_usage_errors(args: list[str], message: str) -> None:
    result = run_cli(["listen", *args])
    assert result.returncode == 2, result.stderr
    assert message in result.stderr.decode()
