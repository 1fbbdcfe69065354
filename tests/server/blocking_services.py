"""Services that block in their calls, like a service waiting on a database."""

from __future__ import annotations

import time

from sockkit.services._base import Service


class SlowEcho(Service):
    """Echo, after 10 ms of waiting per call (a quick database query)."""

    delay = 0.01

    def received(self, data: bytes) -> bytes:
        time.sleep(self.delay)
        return data


class StuckEcho(SlowEcho):
    """Echo, after a whole second per call (a slow query)."""

    delay = 1.0
