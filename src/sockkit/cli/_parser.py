"""The argument parser every subcommand uses, and the one way errors are printed."""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable
from typing import NoReturn

from sockkit._errors import UsageError

__all__ = [
    "CommandParser",
    "add_allow_deny",
    "fail",
    "finite_seconds",
    "non_negative_number",
    "positive_int",
    "positive_seconds",
    "say",
]


def say(message: str) -> None:
    """Print ``sockkit: message`` on stderr, at once (stderr may be a pipe)."""
    sys.stderr.write(f"sockkit: {message}\n")
    sys.stderr.flush()


def fail(message: str, status: int) -> int:
    """Print ``sockkit: message`` on stderr as one line and return ``status``."""
    say(" ".join(message.split("\n")))
    return status


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are :class:`UsageError` (one line, exit 2), not usage dumps."""

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(**kwargs)  # type: ignore[arg-type]
        # argparse takes ``-0x1`` for an option (only ``-1`` and ``-1.5`` read as numbers),
        # so ``inet hton16 -0x1`` would be "required: value"; no sockkit option looks so.
        self._negative_number_matcher = re.compile(r"^-(\d+|\d*\.\d+|0[xXoObB][0-9a-fA-F_]+)$")

    def error(self, message: str) -> NoReturn:
        # ``sockkit: `` is added where the error is printed; the command goes in the hint.
        raise UsageError(f"{message} (see '{self.prog} --help')")


def positive_int(text: str) -> int:
    """An argparse ``type``: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def positive_seconds(text: str) -> float:
    """An argparse ``type``: a finite number of seconds above 0."""
    return _finite_number(text, "seconds", lambda v: v > 0, "a positive number of seconds")


def finite_seconds(text: str) -> float:
    """An argparse ``type``: seconds as a finite number (the caller gives a sign its meaning).

    ``nan`` and ``inf`` are refused here: ``settimeout`` and deadlines fail on them.
    """
    return _finite_number(text, "seconds", lambda v: True, "a finite number of seconds")


def non_negative_number(text: str) -> float:
    """An argparse ``type``: a finite number of at least 0 (``nan``, ``inf`` and ``-1`` refused)."""
    return _finite_number(text, "a number", lambda v: v >= 0, "a finite number of at least 0")


def _finite_number(
    text: str, expected: str, acceptable: Callable[[float], bool], must_be: str
) -> float:
    """``text`` as a finite float that is ``acceptable``; else argparse's error, worded for it."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, not {text!r}") from None
    if not (math.isfinite(value) and acceptable(value)):
        raise argparse.ArgumentTypeError(f"must be {must_be}, not {text}")
    return value


def add_allow_deny(group: argparse._ActionsContainer) -> None:
    """``--allow CIDR`` and ``--deny CIDR``, repeatable, as every listening command takes them."""
    group.add_argument(
        "--allow", action="append", default=[], metavar="CIDR", help="serve only these networks"
    )
    group.add_argument(
        "--deny",
        action="append",
        default=[],
        metavar="CIDR",
        help="never serve these (wins over --allow)",
    )
