"""The argument parser every subcommand uses, and the one way errors are printed."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from sockkit._errors import UsageError

__all__ = ["CommandParser", "fail"]


def fail(message: str, status: int) -> int:
    """Print ``sockkit: message`` on stderr as one line and return ``status``."""
    line = " ".join(message.split("\n"))
    sys.stderr.write(f"sockkit: {line}\n")
    sys.stderr.flush()
    return status


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are :class:`UsageError` (one line, exit 2), not usage dumps."""

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")
