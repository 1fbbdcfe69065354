"""What a fork child's process has loaded: every module there is copied into each child.

A plain (non-TLS) fork server must not load ssl (about 6 MiB of RSS) nor the
whole service catalogue; ``sockkit.services`` still gives every public name.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import sockkit.services

_PROBE = """
import sys
import sockkit.engines._fork, sockkit.services._classic
print(" ".join(sorted(sys.modules)))
"""


def _loaded_by_child_path() -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return set(out.split())


def test_fork_engine_and_echo_do_not_load_ssl_or_the_catalogue() -> None:
    loaded = _loaded_by_child_path()
    assert "sockkit.engines._fork" in loaded
    unwanted = {
        "ssl",
        "_ssl",
        "sockkit.services._chat",
        "sockkit.services._chargen",
        "sockkit.services._registry",
        "random",
    }
    assert loaded & unwanted == set()


def test_services_package_still_exports_every_name() -> None:
    assert set(sockkit.services.__all__) == set(sockkit.services._EXPORTS)
    for name, module in sockkit.services._EXPORTS.items():
        assert getattr(sockkit.services, name) is getattr(importlib.import_module(module), name)
    assert sorted(dir(sockkit.services)) == sorted(sockkit.services.__all__)
