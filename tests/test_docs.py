"""The README and the documentation site: the commands people copy, the tour run as written,
links that lead somewhere, and the site building in strict mode."""

from __future__ import annotations

import ast
import importlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from tests.conftest import cli_env
from tests.docpages import DOCS, README, ROOT, code_blocks, section

INSTALL_AND_RUN = (
    "python3 -m venv .venv && .venv/bin/pip install -e '.[fast]' && .venv/bin/sockkit serve"
)
INSTALL_AND_TEST = (
    "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest"
)


def test_quick_start_commands_are_the_ones_users_and_ci_rely_on() -> None:
    quick_start = section(README.read_text(), "## Quick start")
    assert code_blocks(quick_start, "sh") == [INSTALL_AND_RUN + "\n", INSTALL_AND_TEST + "\n"]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert INSTALL_AND_TEST in ci  # CI runs the README's test command, as one line


def test_readme_links_lead_to_files() -> None:
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text())
    assert any(t.startswith("docs/") for t in targets)
    for target in targets:
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tour_steps() -> list[tuple[str, list[str]]]:
    """The tour's commands, each with the output the README shows under it."""
    (block,) = code_blocks(section(README.read_text(), "## A short tour"), "console")
    steps: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    return steps


def words(lines: list[str]) -> list[list[str]]:
    """Lines compared word by word: ss pads its columns to the widest address."""
    return [line.split() for line in lines]


def test_readme_tour_runs_as_written(tmp_path: Path) -> None:
    """Each command of the tour, in a shell, on a free port instead of 7007."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sockkit").write_text(f'#!/bin/sh\nexec {sys.executable} -m sockkit "$@"\n')
    (bin_dir / "sockkit").chmod(0o755)
    env = cli_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    port = str(free_port())
    with open("/proc/sys/net/core/somaxconn") as f:
        backlog = str(min(socket.SOMAXCONN, int(f.read())))
    background: list[subprocess.Popen[bytes]] = []
    try:
        for command, shown in tour_steps():
            command = command.replace("7007", port)
            expected = [
                line.replace("7007", port).replace(" 4096 ", f" {backlog} ") for line in shown
            ]
            if command.endswith("&"):
                proc = subprocess.Popen(
                    "exec " + command.removesuffix("&"),
                    shell=True,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    env=env,
                    cwd=tmp_path,
                )
                background.append(proc)
                assert proc.stderr is not None
                got = []
                deadline = time.monotonic() + 20
                while len(got) < len(expected) and time.monotonic() < deadline:
                    if select.select([proc.stderr], [], [], 0.5)[0]:
                        got.append(proc.stderr.readline().decode().rstrip("\n"))
                assert got == expected, command
                continue
            result = subprocess.run(
                command,
                shell=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=tmp_path,
                timeout=30,
            )
            assert words(result.stdout.decode().splitlines()) == words(expected), command
            failing = bool(expected) and expected[0].startswith("sockkit: ")
            assert (result.returncode != 0) == failing, (command, result.returncode)
    finally:
        for proc in background:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def test_the_site_builds_in_strict_mode(tmp_path: Path) -> None:
    """A broken link or anchor, or a page left out of the nav, fails the build."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()
    built = {
        p.relative_to(tmp_path / "site").parent.as_posix()
        for p in (tmp_path / "site").rglob("index.html")
    }
    for page in DOCS.glob("*.md"):
        assert (page.stem if page.stem != "index" else ".") in built, f"{page.name} was not built"


def python_examples() -> list[tuple[str, str]]:
    pages = [README, *sorted(DOCS.glob("*.md"))]
    return [
        (f"{page.name}#{n}", block)
        for page in pages
        for n, block in enumerate(code_blocks(page.read_text(), "python"))
    ]


@pytest.mark.parametrize(
    ("where", "block"), python_examples(), ids=[w for w, _ in python_examples()]
)
def test_python_examples_use_names_sockkit_has(where: str, block: str) -> None:
    """Every Python example parses, and every sockkit name it imports or reaches exists.

    Examples that need a peer (a server on 7007, root for a capture) are not run here;
    the services page's are run in full by tests/services/."""
    tree = ast.parse(block, where)
    modules = {"sockkit": importlib.import_module("sockkit")}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sockkit":
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                if not hasattr(module, alias.name):  # a submodule, as 'from' imports it
                    importlib.import_module(f"{node.module}.{alias.name}")
                value = getattr(module, alias.name)
                if isinstance(value, types.ModuleType):
                    modules[alias.asname or alias.name] = value
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "sockkit":
                    importlib.import_module(alias.name)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
        ):
            module = modules[node.value.id]
            assert hasattr(module, node.attr), f"{where}: {module.__name__} has no {node.attr}"
