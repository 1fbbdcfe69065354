"""Small things a user meets: a reader that leaves, NO_COLOR=, UDP sizes, workers killed."""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import LISTENING, cli_env, run_cli, sockkit_argv

from sockkit.cli._output import color_enabled


def _churn(stop: threading.Event) -> None:
    """Open and close a listener now and then, so ``ss --watch`` has a change to print."""
    while not stop.wait(0.2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            time.sleep(0.2)


@pytest.mark.parametrize("argv", [["ss", "-a"], ["ss", "--watch", "0.1", "-t"]])
def test_a_reader_that_leaves_ends_the_command_quietly_with_0(argv: list[str]) -> None:
    proc = subprocess.Popen(
        sockkit_argv(*argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env()
    )
    assert proc.stdout is not None and proc.stderr is not None
    stop = threading.Event()
    churn = threading.Thread(target=_churn, args=(stop,), daemon=True)
    churn.start()
    try:
        assert proc.stdout.readline()
    finally:
        stop.set()
        churn.join()
    proc.stdout.close()  # as `| head -1` does
    try:
        status = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read()
    proc.stderr.close()
    assert status == 0, err
    assert b"Traceback" not in err and b"Error" not in err and b"sockkit: " not in err, err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("value", "colour"), [("", True), ("1", False), (None, True)])
def test_only_a_non_empty_no_color_turns_colour_off(
    monkeypatch: pytest.MonkeyPatch, value: str | None, colour: bool
) -> None:
    if value is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", value)
    assert color_enabled(_Terminal()) is colour


def test_a_datagram_too_long_suggests_chunk() -> None:
    result = run_cli(["connect", "udp://127.0.0.1:9"], input=b"x" * 100_000 + b"\n")
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and "message too long" in lines[0] and "--chunk" in lines[0], lines


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


@contextlib.contextmanager
def _serving(*args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``sockkit serve ARGS`` with stderr piped; killed at the end if still running."""
    proc = subprocess.Popen(
        sockkit_argv("serve", *args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=cli_env(),
    )
    assert proc.stderr is not None
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_a_worker_killed_by_a_signal_is_logged_with_the_signal_name() -> None:
    with _serving("--workers", "2", "tcp://127.0.0.1:0") as proc:
        assert proc.stderr is not None
        assert LISTENING.search(proc.stderr.readline())
        deadline = time.monotonic() + 10
        while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        victim = _children(proc.pid)[0]
        os.kill(victim, signal.SIGKILL)
        line = proc.stderr.readline().decode()
        assert re.search(rf"worker {victim} killed by SIGKILL; starting another", line), line
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_a_stop_right_as_a_worker_is_replaced_reaches_the_new_worker() -> None:
    """SIGTERM while a replacement worker is being forked stops it at once.

    The replacement is forked right after the supervisor logs its line, so a
    SIGTERM sent on reading that line lands while the worker is starting.  A
    stop lost there left the worker serving until the drain deadline killed it
    (15 s), about one round in two; four rounds catch it nearly always.
    """
    for _ in range(4):
        with _serving("--workers", "2", "tcp://127.0.0.1:0") as proc:
            assert proc.stderr is not None
            assert LISTENING.search(proc.stderr.readline())
            os.kill(_children(proc.pid)[0], signal.SIGKILL)
            assert b"starting another" in proc.stderr.readline()
            proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            assert proc.wait(30) == 0
            assert time.monotonic() - started < 5, "the new worker missed the stop"


def test_a_second_sigterm_as_the_drain_ends_still_ends_the_server() -> None:
    """SIGTERM arriving while the server sets its own stop at the drain's end.

    The handler ran inside the stop's lock that the main thread already held
    and waited on itself for ever (the epoll, poll, select and pool servers
    hung about one time in three here); ten rounds catch it nearly always.
    """
    for _ in range(10):
        with _serving(
            "echo", "tcp://127.0.0.1:0", "--engine", "epoll", "--drain-timeout", "0.3"
        ) as proc:
            assert proc.stderr is not None
            match = LISTENING.search(proc.stderr.readline())
            assert match
            port = int(match.group(1).rsplit(b":", 1)[1])
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"x")
                assert sock.recv(1) == b"x"
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(OSError):
                    while sock.recv(100):
                        pass
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            # Ended, not hung: 0, or killed by the SIGTERM if it came after the
            # server had already put the default handler back on its way out.
            assert proc.wait(10) in (0, -signal.SIGTERM)
