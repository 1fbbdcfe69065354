"""Tracing without root: scenarios in a private user + network namespace, and a clear refusal.

The unprivileged run is real: a child process drops to ``nobody`` with
``setpriv`` and runs ``python -m sockkit trace``.  It needs an interpreter
and a copy of the sources that ``nobody`` can read (a checkout under a
private home directory is not), and a kernel that lets unprivileged users
create user namespaces; where one of those is missing the test is skipped
and says which.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import SRC

from sockkit.cli import main

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dropping to nobody needs root")

AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def _as_nobody(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*AS_NOBODY, *args], capture_output=True, timeout=60, **kwargs)  # type: ignore[call-overload, no-any-return]


@pytest.fixture(scope="module")
def nobody_python() -> Iterator[tuple[str, dict[str, str]]]:
    """An interpreter ``nobody`` can run, and an environment that finds a readable copy of sockkit."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    copy = tempfile.mkdtemp(prefix="sockkit-nobody-")
    try:
        os.chmod(copy, 0o755)
        shutil.copytree(Path(SRC) / "sockkit", Path(copy) / "sockkit")
        for folder, _, files in os.walk(copy):
            os.chmod(folder, 0o755)
            for name in files:
                os.chmod(os.path.join(folder, name), 0o644)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": copy}
        check = "import sys; assert sys.version_info >= (3, 11)"
        for python in (sys.executable, "/usr/bin/python3"):
            if _as_nobody([python, "-c", check], env=env, cwd="/").returncode == 0:
                break
        else:
            pytest.skip("no Python 3.11+ that the user nobody may run")
        probe = _as_nobody(["unshare", "--user", "--net", "true"], env=env, cwd="/")
        if probe.returncode != 0:
            reason = probe.stderr.decode().strip()
            pytest.skip(f"this kernel forbids unprivileged user namespaces ({reason})")
        yield python, env
    finally:
        shutil.rmtree(copy, ignore_errors=True)


@pytest.mark.parametrize("scenario", ["handshake", "close", "simultaneous-close"])
def test_scenario_runs_unprivileged_in_a_private_namespace(
    nobody_python: tuple[str, dict[str, str]], scenario: str
) -> None:
    python, env = nobody_python
    assert _as_nobody(["id", "-u"]).stdout.strip() != b"0"
    done = _as_nobody([python, "-m", "sockkit", "trace", scenario, "--json"], env=env, cwd="/")
    assert done.returncode == 0, done.stderr.decode()
    events = [json.loads(line) for line in done.stdout.decode().splitlines()]
    summary = events[-1]
    assert summary["source"] == "lo of a private network namespace" and summary["dropped"] == 0
    last = events[-2]["states"]
    if scenario == "handshake":
        assert [e["flags"] for e in events[:-1]] == ["SYN", "SYN+ACK", "ACK"]
        assert last["server"] == {"state": "ESTABLISHED", "kernel": "ESTABLISHED", "agrees": True}
    else:
        assert last["client"]["kernel"] == "TIME-WAIT" and last["client"]["agrees"]


def test_live_port_unprivileged_names_what_is_missing(
    nobody_python: tuple[str, dict[str, str]],
) -> None:
    python, env = nobody_python
    done = _as_nobody([python, "-m", "sockkit", "trace", "--port", "7007"], env=env, cwd="/")
    assert done.returncode == 1 and done.stdout == b""
    assert done.stderr.decode() == (
        "sockkit: capturing packets needs root or CAP_NET_RAW (a packet socket was refused)\n"
    )


def test_no_privilege_and_no_user_namespaces_is_one_line_status_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sockkit.trace import _namespace, _play

    def refuse(flags: int) -> None:
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(_play, "can_capture_here", lambda: False)
    monkeypatch.setattr(_namespace.os, "geteuid", lambda: 65534)
    monkeypatch.setattr(_namespace, "_unshare", refuse)
    assert main(["trace", "handshake"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sockkit: capturing needs root or CAP_NET_RAW")
    assert "user namespaces" in lines[0] and "Operation not permitted" in lines[0]
