""" "Address already in use" names the process that holds the address."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from tests.conftest import run_cli

from sockkit import open_listener, parse_endpoint


@pytest.mark.parametrize("command", [["serve", "echo"], ["listen"], ["relay"]])
def test_tcp_port_in_use_names_this_process(command: list[str]) -> None:
    with open_listener(parse_endpoint("tcp://127.0.0.1:0")) as holder:
        port = holder.getsockname()[1]
        args = [*command, f"{port}"] + (["7007"] if command == ["relay"] else [])
        result = run_cli(args, input=b"")
    assert result.returncode == 1
    assert result.stderr.decode() == (
        f"sockkit: address already in use: 127.0.0.1:{port} (held by pid {os.getpid()} ("
        + Path(f"/proc/{os.getpid()}/comm").read_text().strip()
        + "))\n"
    )


def test_unix_socket_in_use_names_this_process(tmp_path: Path) -> None:
    path = tmp_path / "busy.sock"
    with open_listener(parse_endpoint(f"unix:{path}")):
        result = run_cli(["serve", "echo", f"unix:{path}"])
    assert result.returncode == 1
    assert f"(held by pid {os.getpid()} " in result.stderr.decode()
    assert result.stderr.decode().count("\n") == 1


def test_udp_port_in_use_names_this_process() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        result = run_cli(["serve", "echo", f"udp://127.0.0.1:{port}"])
    assert result.returncode == 1
    assert f"address already in use: 127.0.0.1:{port} (held by pid {os.getpid()} " in (
        result.stderr.decode()
    )
