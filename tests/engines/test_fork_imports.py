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
import {}
print(" ".join(sorted(sys.modules)))
"""


def _loaded_by(modules: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(modules)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return set(out.split())


def test_fork_engine_and_echo_do_not_load_ssl_or_the_catalogue() -> None:
    loaded = _loaded_by("sockkit.engines._fork, sockkit.services._classic")
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


def test_serve_command_without_tls_does_not_load_ssl() -> None:
    # The process that forks (sockkit serve --engine fork) is what every child copies.
    loaded = _loaded_by("sockkit.cli.serve, sockkit.server, sockkit.engines._fork")
    assert "sockkit.server._tls" in loaded
    assert loaded & {"ssl", "_ssl"} == set()


def test_services_package_still_exports_every_name() -> None:
    assert set(sockkit.services.__all__) == set(sockkit.services._EXPORTS)
    for name, module in sockkit.services._EXPORTS.items():
        assert getattr(sockkit.services, name) is getattr(importlib.import_module(module), name)
    assert sorted(dir(sockkit.services)) == sorted(sockkit.services.__all__)
