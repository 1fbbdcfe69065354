"""The fork server's held at-fork hooks: skipped with one thread, run in order when another exists."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from sockkit.engines._zygote_boot import BOOTSTRAP, HeldForkHooks


def _fork_and_report(hooks: HeldForkHooks, calls: list[str]) -> list[str]:
    """Fork with ``hooks``; the child sends back what it saw called, then exits."""
    read_end, write_end = os.pipe()
    pid = hooks.fork()
    if pid == 0:
        os.write(write_end, ",".join(calls).encode())
        os._exit(0)
    os.close(write_end)
    seen = os.read(read_end, 1024).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    return seen.split(",") if seen else []


def _hooks(calls: list[str]) -> HeldForkHooks:
    return HeldForkHooks(
        [
            {"after_in_child": lambda: calls.append("child-1")},
            {
                "before": lambda: calls.append("before-2"),
                "after_in_parent": lambda: calls.append("parent-2"),
                "after_in_child": lambda: calls.append("child-2"),
            },
            {"before": lambda: calls.append("before-3")},
        ]
    )


_ONE_THREAD = """
import os
from sockkit.engines._zygote_boot import HeldForkHooks
calls = []
hooks = HeldForkHooks([{"before": lambda: calls.append("before"),
                        "after_in_child": lambda: calls.append("child")}])
pid = hooks.fork()
if pid == 0:
    os._exit(10 + len(calls))
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), len(calls))
"""


def test_one_thread_forks_without_the_hooks() -> None:
    # In a fresh interpreter: this one may have threads other tests left.
    out = subprocess.run(
        [sys.executable, "-c", _ONE_THREAD], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.split() == ["10", "0"]


def test_with_another_thread_the_hooks_run_as_os_fork_would_run_them() -> None:
    calls: list[str] = []
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        child_saw = _fork_and_report(_hooks(calls), calls)
    finally:
        release.set()
        other.join()
    # Before hooks last-registered first; after hooks in registration order.
    assert child_saw == ["before-3", "before-2", "child-1", "child-2"]
    assert calls == ["before-3", "before-2", "parent-2"]


def test_bootstrap_holds_back_threading_and_logging_hooks() -> None:
    probe = BOOTSTRAP.replace(
        "sys.exit(zygote.main(sys.argv[1:], held))",
        "print(sorted({f.__module__ for hooks in held for f in hooks.values()}))",
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "['logging', 'threading']"
