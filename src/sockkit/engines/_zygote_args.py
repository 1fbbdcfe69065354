"""What the fork server process is told on its command line, written and read in one place.

The serving process describes its :class:`~sockkit.engines._contract.ServeContext`
as plain arguments; the fork server (:mod:`sockkit.engines._zygote`) rebuilds
an equal context from them.  Only what survives as text can cross: listening
sockets (by descriptor number, kept by ``pass_fds``), a service *class* that
a fresh interpreter can import by name, limits, access rules, trusted
proxies and how the log writes.  :func:`describe` returns ``None`` for
anything else (a TLS context, a service factory built at run time, a log
with handlers of the application's own); the fork engine then forks from the
serving process as before.

The grammar, one option per item group::

    --listener FD ENDPOINT MODULE:CLASS     (repeated, in the context's order)
    --limit NAME=VALUE                      (a Limits field that is not its default)
    --allow CIDR / --deny CIDR              (repeated)
    --proxy TIMEOUT CIDR[,CIDR...]
    --log FD LEVEL FORMAT
    --ready FD --lifeline FD
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sockkit.engines._contract import Limits, LogLines, ServeContext

__all__ = ["Described", "ZygoteArgs", "describe", "parse"]


@dataclass(slots=True)
class ZygoteArgs:
    """The fork server's arguments, parsed."""

    #: (descriptor, endpoint text, ``module:qualname`` of the service class).
    listeners: list[tuple[int, str, str]] = field(default_factory=list)
    limits: dict[str, object] = field(default_factory=dict)
    allow: list[str] = field(default_factory=list)
    deny: list[str] = field(default_factory=list)
    #: (header timeout, trusted networks) for ``--proxy-protocol``.
    proxy: tuple[float, list[str]] | None = None
    log: LogLines = field(default_factory=lambda: LogLines(-1, "off", "text"))
    #: Where to write ``r`` once serving (or ``e`` and why it cannot start).
    ready: int = -1
    #: Readable (end of file) once the serving process is gone.
    lifeline: int = -1


@dataclass(frozen=True, slots=True)
class Described:
    """A context as the fork server's arguments, and where Python must look for its modules."""

    args: list[str]
    #: Directories to put first on the fork server's ``sys.path`` (``PYTHONPATH``).
    import_roots: list[str]
    #: The listening sockets' descriptors, to pass on.
    fds: list[int]


def describe(ctx: ServeContext) -> Described | None:
    """``ctx`` as arguments (without ``--ready``/``--lifeline``), or None if it cannot cross."""
    lines = ctx.log.lines()
    if lines is None:
        return None
    args: list[str] = []
    roots = [_import_root("sockkit.engines._contract")]
    fds = []
    for listener in ctx.listeners:
        if listener.tls is not None:
            return None  # an SSLContext (keys, callbacks) does not cross a process boundary
        ref = _class_ref(listener.factory)
        if ref is None:
            return None
        root = _import_root(ref.partition(":")[0])
        if root is None:
            return None
        roots.append(root)
        fd = listener.sock.fileno()
        fds.append(fd)
        args += ["--listener", str(fd), str(listener.endpoint), ref]
    defaults = Limits()
    for f in dataclasses.fields(Limits):
        value = getattr(ctx.limits, f.name)
        if value == getattr(defaults, f.name):
            continue
        if isinstance(value, frozenset):
            value = ",".join(str(uid) for uid in sorted(value))
        args += ["--limit", f"{f.name}={value}"]
    args += [item for net in ctx.access.allow for item in ("--allow", str(net))]
    args += [item for net in ctx.access.deny for item in ("--deny", str(net))]
    if ctx.proxy is not None:
        nets = ",".join(str(net) for net in ctx.proxy.networks)
        args += ["--proxy", repr(ctx.proxy.timeout), nets]
    args += ["--log", str(lines.fd), lines.level, lines.format]
    unique = list(dict.fromkeys(root for root in roots if root is not None))
    return Described(args, unique, fds)


def parse(argv: Sequence[str]) -> ZygoteArgs:
    """The arguments :func:`describe` wrote (plus ``--ready``/``--lifeline``).

    Raises ValueError on anything else: only the serving process starts this.
    """
    parsed = ZygoteArgs()
    types = {f.name: str(f.type) for f in dataclasses.fields(Limits)}
    items = iter(argv)
    for option in items:
        if option == "--listener":
            parsed.listeners.append((int(next(items)), next(items), next(items)))
        elif option == "--limit":
            name, _, text = next(items).partition("=")
            parsed.limits[name] = _limit_value(types[name], text)
        elif option == "--allow":
            parsed.allow.append(next(items))
        elif option == "--deny":
            parsed.deny.append(next(items))
        elif option == "--proxy":
            timeout = float(next(items))
            parsed.proxy = (timeout, next(items).split(","))
        elif option == "--log":
            parsed.log = LogLines(int(next(items)), next(items), next(items))
        elif option == "--ready":
            parsed.ready = int(next(items))
        elif option == "--lifeline":
            parsed.lifeline = int(next(items))
        else:
            raise ValueError(f"unknown argument {option!r}")
    return parsed


def _limit_value(kind: str, text: str) -> object:
    if text == "None":
        return None
    if kind.startswith("frozenset"):
        return frozenset(int(uid) for uid in text.split(",") if uid)
    if kind.startswith("float"):
        return float(text)
    return int(text)


def _class_ref(factory: object) -> str | None:
    """``module:qualname`` of a class a fresh interpreter imports as the same class; else None."""
    if not isinstance(factory, type):
        return None
    module_name, qualname = factory.__module__, factory.__qualname__
    if module_name == "__main__" or "<" in qualname:
        return None
    found: object = sys.modules.get(module_name)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return f"{module_name}:{qualname}" if found is factory else None


def _import_root(module_name: str) -> str | None:
    """The ``sys.path`` directory that module ``module_name`` was (or would be) loaded from."""
    module = sys.modules.get(module_name)
    if module is None:
        module = sys.modules.get(module_name.rpartition(".")[0])
        module_name = module_name.rpartition(".")[0]
    filename = getattr(module, "__file__", None)
    if not filename:
        return None
    path = Path(filename)
    if path.stem == "__init__":
        path = path.parent
    return str(path.parents[module_name.count(".")])
