"""Printing tables and JSON the same way in every command."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["color_enabled", "print_json", "print_table"]


def color_enabled(stream: Any = None) -> bool:
    """Colour only on a terminal, and never with ``NO_COLOR`` set to a non-empty value.

    An empty ``NO_COLOR=`` leaves colour on, as no-color.org defines it.
    """
    stream = stream or sys.stdout
    return not os.environ.get("NO_COLOR") and hasattr(stream, "isatty") and stream.isatty()


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Left-aligned columns, two spaces apart, the header in bold on a terminal."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(header)]
    head = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()
    if color_enabled():
        head = f"\x1b[1m{head}\x1b[0m"
    lines = [head]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    sys.stdout.write("\n".join(lines) + "\n")
