"""Sans-I/O services: the contract and the classic ones."""

from __future__ import annotations

from sockkit.services._base import CLOSE, HALF_CLOSE, OPEN, DatagramService, Service

__all__ = ["CLOSE", "HALF_CLOSE", "OPEN", "DatagramService", "Service"]
