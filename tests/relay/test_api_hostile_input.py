"""The relay API's and config file's JSON is untrusted: deep nesting is a 400 / usage error."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sockkit._errors import UsageError
from sockkit.relay import load_config
from sockkit.relay._api import dispatch
from sockkit.relay._registry import Registry


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 50_000, b"[" * 2000 + b"]" * 2000])
def test_deeply_nested_json_is_answered_400(body: bytes) -> None:
    # json.loads recursed until RecursionError, which ended the connection's task
    status, answer = asyncio.run(dispatch(Registry(), "POST", "/proxies", body))
    assert status == 400 and answer["error"].startswith("bad request body")


def test_a_deeply_nested_config_file_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "proxies.json"
    path.write_text("[" * 100_000)
    with pytest.raises(UsageError, match="bad config"):
        load_config(str(path))
