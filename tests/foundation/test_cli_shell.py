"""The command-line shell: help, version, unknown commands, and the installed entry points."""

from __future__ import annotations

import pytest
from tests.conftest import run_cli

from sockkit import __version__
from sockkit.cli import COMMANDS, _exists, main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"sockkit {__version__}\n"


def test_unknown_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sockkit: unknown command 'frobnicate'") and err.count("\n") == 1


def test_no_command_prints_usage_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: sockkit" in capsys.readouterr().err


@pytest.mark.parametrize("name", [n for n in COMMANDS if _exists(n)])
def test_every_command_has_help_with_examples(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"usage: sockkit {name}" in out
    assert "examples:" in out


def test_bad_option_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inet", "--bogus"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sockkit: ") and err.count("\n") == 1


def test_python_dash_m_runs_the_cli() -> None:
    result = run_cli(["inet", "hton16", "1"])
    assert result.returncode == 0
    assert result.stdout == b"1 (0x0001) -> 256 (0x0100)\n"
