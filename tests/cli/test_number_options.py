"""The argparse number types refuse nan, inf and out-of-range values as usage errors."""

from __future__ import annotations

import argparse

import pytest

from sockkit.cli import main
from sockkit.cli._parser import non_negative_number, positive_int, positive_seconds
from sockkit.relay import parse_rate, parse_size


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "infinity", "1e400", "0", "-1"])
def test_positive_seconds_refuses_what_is_not_a_finite_positive_number(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        positive_seconds(text)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e400", "-0.5", "x"])
def test_non_negative_number_refuses_what_is_not_a_finite_number_of_at_least_0(
    text: str,
) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        non_negative_number(text)


def test_the_number_types_keep_their_ordinary_values() -> None:
    assert non_negative_number("0") == 0.0 and non_negative_number("2.5") == 2.5
    assert positive_seconds("0.25") == 0.25 and positive_int("3") == 3
    for text in ("nan", "0", "-3", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_int(text)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e400", "1e308Gi", "nank", "infM"])
def test_parse_size_refuses_non_finite_sizes_as_usage_errors(text: str) -> None:
    from sockkit._errors import UsageError

    with pytest.raises(UsageError):
        parse_size(text)
    with pytest.raises(UsageError):
        parse_rate(text)


def test_parse_size_still_reads_units() -> None:
    assert parse_size("64k") == 64000 and parse_size("1Mi") == 1 << 20 and parse_size("0") == 0


@pytest.mark.parametrize(
    "extra",
    [
        ["--toxicity", "nan"],
        ["--toxicity", "inf"],
        ["--after-seconds", "nan"],
        ["--after-seconds=-1"],
        ["latency=1.5e400"],
    ],
)
def test_relay_ctl_refuses_non_finite_numbers_before_calling_the_api(
    capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    # the API is never reached: port 9 (discard) is not one a relay listens on
    status = main(["relay", "ctl", "--api", "127.0.0.1:9", "toxic", "add", "p", "latency", *extra])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("sockkit: ") and err.count("\n") == 1, err


@pytest.mark.parametrize(
    "argv",
    [
        ["connect", "-w", "nan", "127.0.0.1", "9"],
        ["connect", "-w", "inf", "127.0.0.1", "9"],
        ["connect", "--timeout", "nan", "127.0.0.1:9"],
        ["connect", "--timeout", "inf", "127.0.0.1:9"],
        ["connect", "--idle-timeout", "nan", "127.0.0.1:9"],
        ["connect", "-q", "inf", "127.0.0.1", "9"],
        ["listen", "--idle-timeout", "nan", "127.0.0.1:0"],
    ],
)
def test_connect_and_listen_refuse_non_finite_seconds(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    # socket.settimeout(nan) raised ValueError, settimeout(inf) OverflowError
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("sockkit: ") and err.count("\n") == 1, err
