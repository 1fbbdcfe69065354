"""Where the documentation lives, and its code blocks, for the tests that run its examples."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def page(name: str) -> Path:
    """A page of the documentation site, e.g. ``page("services.md")``."""
    path = DOCS / name
    assert path.is_file(), f"no documentation page {path}"
    return path


def code_blocks(text: str, lang: str) -> list[str]:
    """The bodies of the fenced ``lang`` code blocks of a Markdown text, in order."""
    return re.findall(rf"^```{re.escape(lang)}\n(.*?)^```", text, flags=re.S | re.M)


def section(text: str, heading: str) -> str:
    """The text from a heading (``## Behind a load balancer``) to the next of its level or above."""
    level = heading.split(" ", 1)[0]
    start = text.index(heading + "\n")
    rest = text[start + len(heading) + 1 :]
    ends = [
        m.start() for m in re.finditer(r"^(#+) ", rest, flags=re.M) if len(m.group(1)) <= len(level)
    ]
    # headings inside code blocks (shell comments) do not end a section
    fenced = [m.span() for m in re.finditer(r"^```.*?^```", rest, flags=re.S | re.M)]
    ends = [e for e in ends if not any(a <= e < b for a, b in fenced)]
    return text[start : start + len(heading) + 1 + (ends[0] if ends else len(rest))]
