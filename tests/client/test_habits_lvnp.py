"""The most typed nc lines: ``nc -lvnp PORT`` and ``nc -nv -p SRC HOST PORT``, against real nc."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.client.conftest import Listening, free_port, need
from tests.conftest import run_cli


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_lvnp_listens_on_the_port_and_receives_what_nc_sends(
    sockkit_listen: Callable[..., Listening], tmp_path: Path
) -> None:
    port = free_port()
    with open(tmp_path / "got", "wb") as out:
        listening = sockkit_listen("-lvnp", str(port), stdin=subprocess.DEVNULL, stdout=out)
    assert listening.port == port
    data = os.urandom(200_000)
    sent = subprocess.run(
        [need("nc"), "-N", "127.0.0.1", str(port)], input=data, capture_output=True, timeout=30
    )
    assert sent.returncode == 0
    assert listening.proc.wait(30) == 0
    assert sha((tmp_path / "got").read_bytes()) == sha(data)
    assert listening.proc.stderr is not None
    err = listening.proc.stderr.read().decode()
    assert re.search(rf"accepted 127\.0\.0\.1:\d+ on 127\.0\.0\.1:{port}", err), err  # -v


def test_p_beside_a_host_listens_there(sockkit_listen: Callable[..., Listening]) -> None:
    port = free_port()
    listening = sockkit_listen("-l", "-p", str(port), "127.0.0.1", stdin=subprocess.DEVNULL)
    assert listening.endpoint == f"tcp://127.0.0.1:{port}"


def test_connect_p_binds_the_source_port_as_nc_p_does(
    sockkit_listen: Callable[..., Listening],
) -> None:
    seen = {}
    for tool in ("sockkit", "nc"):
        listening = sockkit_listen("-v", "0", stdin=subprocess.DEVNULL)
        source = free_port()
        argv = ["connect", "-nv", "-p", str(source), "127.0.0.1", str(listening.port)]
        if tool == "sockkit":
            result = run_cli(argv, input=b"hello\n")
        else:
            result = subprocess.run(
                [need("nc"), "-N", "-n", "-p", str(source), "127.0.0.1", str(listening.port)],
                input=b"hello\n",
                capture_output=True,
                timeout=30,
            )
        assert result.returncode == 0, result.stderr
        assert listening.proc.wait(30) == 0
        assert listening.proc.stderr is not None
        err = listening.proc.stderr.read().decode()
        match = re.search(r"accepted 127\.0\.0\.1:(\d+) on", err)
        assert match, err
        seen[tool] = int(match.group(1)) == source
    assert seen == {"sockkit": True, "nc": True}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["connect", "-n", "localhost", "80"], "-n: 'localhost' is a name"),
        (["listen", "-n", "localhost:0"], "-n: 'localhost' is a name"),
        (["connect", "-z", "-n", "localhost", "22"], "-n: 'localhost' is a name"),
        (["listen", "-p", "4444", "5555"], "-p 4444 and PORT 5555 both name the port"),
        (["listen", "-p", "4444", "127.0.0.1", "5555"], "-p 4444 and PORT 5555 both name"),
        (["listen", "-p", "4444", "tcp://127.0.0.1:1"], "-p 4444 takes a HOST beside it"),
        (["listen", "-lv"], "listen needs ENDPOINT, HOST PORT or -p PORT"),
        (["listen", "-p", "70000"], "port 70000 is out of range"),
        (["connect", "-p", "5", "unix:/tmp/x"], "-p does nothing for unix:/tmp/x"),
        (["connect", "-n", "unix:/tmp/x"], "-n does nothing for unix:/tmp/x"),
        (
            ["connect", "-p", "5", "--source", "127.0.0.1:6", "127.0.0.1", "1"],
            "-p 5 and --source 127.0.0.1:6 both name the source port",
        ),
    ],
)
def test_misfits_are_usage_errors(argv: list[str], message: str) -> None:
    result = run_cli(argv)
    assert result.returncode == 2
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sockkit: "), lines
    assert message in lines[0]
