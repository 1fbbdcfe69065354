"""The layers of DESIGN.md, enforced: every import in src/sockkit points down, and none closes a cycle.

The diagram, top to bottom (a layer may import its own layer and any below)::

    cli
    bench  inspect  trace  relay  client  server  testing  backplane
    engines
    accept-and-admit (sockkit._accept)
    services
    the traffic dump format (sockkit._traffic_dump)
    endpoint (sockkit._endpoint)
    the PROXY protocol stage (sockkit._proxy_admission)
    inherited sockets, the PROXY protocol, sd_notify (_inherit, _proxy_protocol, _sd_notify)
    inet (sockkit._inet)
    _errors, _version

``sockkit`` itself (the re-exporting front door) and ``sockkit.__main__`` sit
above everything.  Imports are read from the source with :mod:`ast`, inside
functions and under ``if TYPE_CHECKING:`` too: a lazy or type-only import is
still one module knowing another, and hiding a cycle behind one is the habit
this test exists to stop.

Known violations are listed below with the reason they still exist.  The lists
may only shrink: the test fails when a listed violation is gone, so an entry
cannot outlive its fix.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "sockkit"

#: top-level part of a module name -> rank; higher may import lower or equal.
RANKS: dict[str, int] = {
    "__init__": 100,
    "__main__": 100,
    "cli": 90,
    "bench": 80,
    "inspect": 80,
    "trace": 80,
    "relay": 80,
    "client": 80,
    "server": 80,
    "testing": 80,
    "engines": 70,
    "backplane": 80,
    "_accept": 65,
    "_shared_peer_counts": 64,
    "services": 60,
    "_traffic_dump": 52,
    "_endpoint": 50,
    "_tls_context": 50,
    "_proxy_admission": 46,
    "_inherit": 45,
    "_proxy_protocol": 45,
    "_sd_notify": 45,
    "_inet": 40,
    "_errors": 10,
    "_version": 10,
}

#: (importer, imported) pairs that go up a layer today, and why.
KNOWN_UPWARD: dict[tuple[str, str], str] = {}

#: Import cycles that exist today, and why.  A cycle found is allowed when all
#: its modules are in one entry, so breaking part of a cycle never fails here.
KNOWN_CYCLES: dict[frozenset[str], str] = {}

#: (cli module, private library module) pairs: the CLI should use public modules only.
KNOWN_PRIVATE_FROM_CLI: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(name: str) -> bool:
    return (SRC / Path(*name.split("."))).is_dir()


def _exists(name: str) -> bool:
    base = SRC / Path(*name.split("."))
    return base.is_dir() or base.with_suffix(".py").exists()


class _Imports(ast.NodeVisitor):
    """Every ``sockkit`` module a file imports, with whether it is only for type checking."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.package = module if is_package else module.rpartition(".")[0]
        self.found: list[tuple[str, bool]] = []
        self._typing_only = 0

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        typing = (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        )
        if typing:
            self._typing_only += 1
            for child in node.body:
                self.visit(child)
            self._typing_only -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            parts = self.package.split(".")
            base_parts = parts[: len(parts) - node.level + 1]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            self._add(submodule if _exists(submodule) else base)

    def _add(self, name: str) -> None:
        if name == "sockkit" or name.startswith("sockkit."):
            self.found.append((name, self._typing_only > 0))


def imports() -> Iterator[tuple[str, str, bool]]:
    """``(importer, imported, typing_only)`` for every sockkit import in src/sockkit."""
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        visitor = _Imports(name, path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text(), str(path)))
        for imported, typing_only in visitor.found:
            if imported != name:
                yield name, imported, typing_only


def layer(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def rank(module: str) -> int:
    top = layer(module)
    if top not in RANKS:
        pytest.fail(f"{module} is in no layer: add {top!r} to RANKS in tests/test_layers.py")
    return RANKS[top]


def upward_imports() -> dict[tuple[str, str], bool]:
    return {
        (importer, imported): typing_only
        for importer, imported, typing_only in imports()
        if rank(imported) > rank(importer)
    }


def cycles() -> set[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {}
    for importer, imported, _typing_only in imports():
        graph.setdefault(importer, set()).add(imported)
        graph.setdefault(imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_every_module_is_in_a_layer() -> None:
    for path in PACKAGE.rglob("*.py"):
        rank(module_name(path))


def test_no_import_goes_up_a_layer() -> None:
    found = upward_imports()
    new = sorted(set(found) - set(KNOWN_UPWARD))
    assert not new, "imports that go up a layer of DESIGN.md:\n" + "\n".join(
        f"  {a} ({layer(a)}) imports {b} ({layer(b)})" for a, b in new
    )


def private_imports_from_cli() -> set[tuple[str, str]]:
    """CLI imports of a library package's private module (``sockkit.inspect._format``)."""
    found = set()
    for importer, imported, _typing_only in imports():
        parts = imported.split(".")
        if (
            layer(importer) == "cli"
            and layer(imported) != "cli"
            and len(parts) > 2
            and not parts[1].startswith("_")
            and parts[2].startswith("_")
        ):
            found.add((importer, imported))
    return found


def test_no_import_closes_a_cycle() -> None:
    new = [sorted(c) for c in cycles() if not any(c <= known for known in KNOWN_CYCLES)]
    assert not new, "import cycles:\n" + "\n".join("  " + " <-> ".join(c) for c in new)


def test_the_cli_imports_only_public_modules_of_the_library() -> None:
    new = sorted(private_imports_from_cli() - set(KNOWN_PRIVATE_FROM_CLI))
    assert not new, "the CLI reaches into private modules:\n" + "\n".join(
        f"  {a} imports {b}" for a, b in new
    )


def test_the_known_violations_still_exist_so_the_lists_only_shrink() -> None:
    found_cycles = cycles()
    gone = [f"{a} -> {b}" for a, b in sorted(set(KNOWN_UPWARD) - set(upward_imports()))]
    gone += [
        " <-> ".join(sorted(known))
        for known in KNOWN_CYCLES
        if not any(c <= known for c in found_cycles)
    ]
    gone += [
        f"{a} -> {b}" for a, b in sorted(set(KNOWN_PRIVATE_FROM_CLI) - private_imports_from_cli())
    ]
    assert not gone, "fixed -- remove from tests/test_layers.py's allow-lists: " + "; ".join(gone)
