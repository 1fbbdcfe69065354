"""Errors that name the real problem, and options that refuse to do nothing silently.

Every case runs ``sockkit.cli.main`` in this process and checks the exit status
and the one ``sockkit: `` line on stderr.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from sockkit.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status = main(list(argv))
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sockkit: "), err
    return status, lines[0]


# -- options that do nothing for the endpoints given ------------------------------

INAPPLICABLE = [
    (["serve", "echo", "17201", "--tls-cert", "c.pem", "--tls-key", "k.pem"], "--tls-cert"),
    (["serve", "echo", "17201", "--tls-client-ca", "ca.pem"], "--tls-client-ca"),
    (["serve", "echo", "17201", "--mode", "644"], "--mode"),
    (["serve", "echo", "unix:@abstract", "--mode", "644"], "--mode"),
    (["serve", "echo", "17201", "--threads", "4"], "--threads"),
    (["serve", "echo", "udp://127.0.0.1:0", "--max-conns", "5"], "--max-conns"),
    (["serve", "echo", "udp://127.0.0.1:0", "--idle-timeout", "5"], "--idle-timeout"),
    (["serve", "echo", "udp://127.0.0.1:0", "--backlog", "5"], "--backlog"),
    (["serve", "echo", "unix:/tmp/sockkit-x.sock", "--allow", "10.0.0.0/8"], "--allow"),
    (["connect", "--tls-ca", "cert.pem", "17443"], "--tls-ca"),
    (["connect", "--insecure", "17443"], "--insecure"),
    (["connect", "--chunk", "10", "17443"], "--chunk"),
    (["connect", "--wait", "0", "17443"], "--wait"),
    (["connect", "--no-shutdown", "udp://127.0.0.1:9"], "--no-shutdown"),
    (["connect", "--source", "127.0.0.1", "unix:/tmp/sockkit-x.sock"], "--source"),
    (["connect", "-4", "unix:/tmp/sockkit-x.sock"], "-4/-6"),
    (["listen", "--tls-cert", "cert.pem", "0"], "--tls-cert"),
    (["listen", "--chunk", "10", "0"], "--chunk"),
    (["listen", "--half-close", "udp://127.0.0.1:0"], "--half-close"),
    (["listen", "--keep-open", "udp://127.0.0.1:0"], "--keep-open"),
]


@pytest.mark.parametrize(("argv", "option"), INAPPLICABLE)
def test_an_option_that_would_do_nothing_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], argv: list[str], option: str
) -> None:
    status, line = run(capsys, *argv)
    assert status == 2
    assert line.startswith(f"sockkit: {option} does nothing"), line
    assert ": " in line.split("does nothing", 1)[1]  # ... and says why


def test_options_that_apply_are_still_taken(tmp_path: Path) -> None:
    from sockkit.cli._parser import CommandParser
    from sockkit.cli.serve import add_arguments as serve_arguments
    from sockkit.cli.serve import reject_inapplicable, split_targets

    parser = CommandParser(prog="sockkit serve")
    serve_arguments(parser)
    args = parser.parse_args(
        ["echo", "7007", f"unix:{tmp_path}/s", "tls://127.0.0.1:0", "--mode", "644",
         "--tls-cert", "c.pem", "--engine", "pool", "--threads", "4", "--allow", "10.0.0.0/8"]
    )  # fmt: skip
    reject_inapplicable(args, split_targets(args.targets)[1])


def test_wait_help_says_what_zero_means(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["connect", "--help"]) == 0
    assert "0: do not wait" in " ".join(capsys.readouterr().out.split())


# -- errors that guess wrong ----------------------------------------------------


@pytest.mark.parametrize(
    "argv", [["serve", "tcp://127.0.0.1:99999"], ["serve", "70000"], ["serve", ":99999"]]
)
def test_serve_with_a_bad_port_first_says_the_port_is_out_of_range(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    status, line = run(capsys, *argv)
    assert status == 2
    assert "port must be 0-65535" in line, line


def test_serve_still_takes_module_class_as_the_service(capsys: pytest.CaptureFixture[str]) -> None:
    status, line = run(capsys, "serve", "no_such_module_here:Upper")
    assert status == 2
    assert "no module named 'no_such_module_here'" in line


def test_a_usage_error_has_the_prefix_once(capsys: pytest.CaptureFixture[str]) -> None:
    status, line = run(capsys, "serve", "--bogus")
    assert status == 2
    assert line.count("sockkit") == 2  # the prefix, and the hint naming the command
    assert line == "sockkit: unrecognized arguments: --bogus (see 'sockkit serve --help')"


@pytest.mark.parametrize("value", ["-0x1", "-1"])
def test_inet_says_a_negative_value_is_negative(
    capsys: pytest.CaptureFixture[str], value: str
) -> None:
    status, line = run(capsys, "inet", "hton16", value)
    assert status == 2
    assert f"bad value '{value}': negative" in line


def test_binding_in_a_missing_directory_says_the_directory_is_missing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, line = run(capsys, "serve", "echo", "unix:/nonexistent/dir/x.sock")
    assert status == 1
    assert line.endswith("directory /nonexistent/dir does not exist"), line


def test_a_unix_address_in_use_has_one_note(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "held.sock"
    with socket.socket(socket.AF_UNIX) as holder:
        holder.bind(str(path))
        holder.listen()
        status, line = run(capsys, "serve", "echo", f"unix:{path}")
    assert status == 1
    assert f"held by pid {os.getpid()}" in line
    assert "listening on it" not in line, line  # one note, not two


@pytest.fixture
def junk_pem(tmp_path: Path) -> Path:
    path = tmp_path / "junk.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    return path


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "tls://127.0.0.1:0", "--tls-cert", "{dir}"],
        ["listen", "tls://127.0.0.1:0", "--tls-cert", "{junk}"],
        ["listen", "tls://127.0.0.1:0", "--tls-cert", "{dir}"],
        ["connect", "tls://127.0.0.1:9", "--tls-ca", "{junk}"],
    ],
)
def test_a_certificate_that_exists_but_cannot_be_used_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, junk_pem: Path, argv: list[str]
) -> None:
    argv = [a.format(dir=tmp_path, junk=junk_pem) for a in argv]
    status, line = run(capsys, *argv)
    assert status == 1, line


def test_a_certificate_that_does_not_exist_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, line = run(capsys, "listen", "tls://127.0.0.1:0", "--tls-cert", "/nonexistent.pem")
    assert status == 2
    assert "no such file" in line
