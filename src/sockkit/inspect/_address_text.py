"""How ss writes an IP address in a socket's end: the record's ``local``/``peer`` and the table.

Its own module (re-exported by :mod:`._record`, whose ends it writes) so
that the table printer can use it without importing the records' module and
``dataclasses`` under it: a plain ``sockkit ss`` never builds a record.
"""

from __future__ import annotations

__all__ = ["display_address"]


def display_address(address: str, v6only: bool | None) -> str:
    """An IP address as ss prints it: IPv6 in brackets, a dual-stack ``::`` as ``*``."""
    if ":" not in address:
        return address
    if address == "::" and not v6only:
        return "*"
    return f"[{address}]"
