"""The public API: ``__all__`` and the lazy re-export table stay in step."""

from __future__ import annotations

import importlib

import sockkit


def test_all_and_exports_agree() -> None:
    assert set(sockkit.__all__) - {"__version__"} == set(sockkit._EXPORTS)


def test_every_public_name_resolves_to_its_private_definition() -> None:
    for name, module in sockkit._EXPORTS.items():
        assert module.split(".")[-1].startswith("_"), f"{name} should come from a private module"
        assert getattr(sockkit, name) is getattr(importlib.import_module(module), name)


def test_unknown_attribute_raises() -> None:
    try:
        sockkit.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
