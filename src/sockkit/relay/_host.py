"""What a connection or datagram relay needs from the proxy it belongs to.

Kept apart from :mod:`sockkit.relay._proxy` so the pieces a proxy is made of
(links, the datagram relay) do not import the proxy back.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Protocol

from sockkit._endpoint import Endpoint
from sockkit.relay._toxics import Toxic

__all__ = ["Observer", "ProxyView"]

# (link, way, offset, data): sees every byte as it is written
Observer = Callable[[Any, str, int, bytes], None]


class ProxyView(Protocol):
    name: str
    upstream: Endpoint
    toxics: list[Toxic]
    observers: list[Observer]
    generation: int  # bumped whenever toxics or observers change
    connections: int
    rng: random.Random

    def count(self, way: str, n: int) -> None:
        """Add ``n`` bytes relayed in direction ``way`` to the proxy's counters."""
