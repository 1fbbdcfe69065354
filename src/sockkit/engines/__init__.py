"""Engines, picked in one place.

``ENGINES`` maps each name to the module and class that implement it; an
engine is imported only when asked for, so a missing optional dependency
(uvloop) hides that engine and nothing else.
"""

from __future__ import annotations

import importlib

from sockkit._errors import UsageError
from sockkit.engines._base import Engine

__all__ = ["ENGINES", "Engine", "available_engines", "default_engine", "get_engine"]

ENGINES: dict[str, str] = {
    "fork": "sockkit.engines._fork:ForkEngine",
    "thread": "sockkit.engines._thread:ThreadEngine",
    "pool": "sockkit.engines._pool:PoolEngine",
    "select": "sockkit.engines._reactor:SelectEngine",
    "poll": "sockkit.engines._reactor:PollEngine",
    "epoll": "sockkit.engines._reactor:EpollEngine",
    "asyncio": "sockkit.engines._aio:AsyncioEngine",
    "uvloop": "sockkit.engines._aio:UvloopEngine",
}

#: Tried in order by :func:`default_engine`: the fastest first.
_PREFERENCE = ("uvloop", "epoll", "poll", "select")


def _load(name: str) -> type[Engine] | None:
    module_name, _, class_name = ENGINES[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    cls: type[Engine] = getattr(module, class_name)
    return cls if cls.available() else None


def get_engine(name: str) -> type[Engine]:
    """The engine class called ``name``; :class:`UsageError` if unknown or unavailable here."""
    if name not in ENGINES:
        raise UsageError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
    cls = _load(name)
    if cls is None:
        raise UsageError(f"engine {name!r} is not available here (is its package installed?)")
    return cls


def available_engines() -> list[str]:
    """Names of the engines that can run here, in ``ENGINES`` order."""
    return [name for name in ENGINES if _load(name) is not None]


def default_engine() -> str:
    """The fastest engine available: uvloop, else epoll (then poll, select)."""
    for name in _PREFERENCE:
        if _load(name) is not None:
            return name
    raise UsageError("no engine is available")
