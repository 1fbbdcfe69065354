"""sockkit.inspect's public API: ``__all__``, the lazy table and the private modules stay in step."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import sockkit.inspect as inspect_api

PACKAGE = Path(inspect_api.__file__).parent


def test_every_public_name_resolves_to_a_private_definition() -> None:
    for name in inspect_api.__all__:
        value = getattr(inspect_api, name)
        module = getattr(value, "__module__", None)
        if module is not None and module.startswith("sockkit.inspect."):
            assert module.split(".")[-1].startswith("_"), name
    for name, module in inspect_api._LAZY.items():
        assert name in inspect_api.__all__
        assert getattr(inspect_api, name) is getattr(importlib.import_module(module), name)


def _inspect_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("sockkit.inspect."):
                found.add(node.module.rsplit(".", 1)[1])
    return found


def test_inspect_modules_import_one_way() -> None:
    graph = {p.stem: _inspect_imports(p) - {p.stem} for p in PACKAGE.glob("_*.py")}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join((*path, module))
        if module in done:
            return
        for imported in sorted(graph.get(module, ())):
            visit(imported, (*path, module))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())


def test_cli_uses_only_the_public_names() -> None:
    for cli in (PACKAGE.parent / "cli").glob("*.py"):
        for node in ast.walk(ast.parse(cli.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and "inspect" in node.module:
                assert node.module == "sockkit.inspect", cli.name
                assert all(alias.name in inspect_api.__all__ for alias in node.names), cli.name
