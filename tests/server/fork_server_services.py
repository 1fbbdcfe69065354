"""A service module that loads in the serving process but not in the fork engine's fork server.

With ``SOCKKIT_TEST_BREAK_FORK_SERVER`` set, importing it anywhere but under
the ``sockkit`` command (whose process has ``sockkit.cli`` loaded) fails:
how a fork server that cannot start is provoked.
"""

from __future__ import annotations

import os
import sys

from sockkit.services._base import Service

if os.environ.get("SOCKKIT_TEST_BREAK_FORK_SERVER") and "sockkit.cli" not in sys.modules:
    raise RuntimeError("refusing to load outside the serving process")


class Echo(Service):
    def received(self, data: bytes) -> bytes:
        return data
