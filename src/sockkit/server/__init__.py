"""The server: listeners + engine + service + limits + life cycle."""

from __future__ import annotations

from sockkit.server._context import AccessList, Limits, ServeContext, StopSignal, StreamListener

__all__ = ["AccessList", "Limits", "ServeContext", "StopSignal", "StreamListener"]
