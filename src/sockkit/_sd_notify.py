"""sd_notify: telling a service manager (systemd ``Type=notify``) that we are ready or stopping.

When ``NOTIFY_SOCKET`` is set, the manager listens on that Unix datagram
socket (a path, or ``@name`` in the abstract namespace) for lines such as
``READY=1`` and ``STOPPING=1``.  Without it every call here does nothing, so
callers need not check.

Notifications are best effort, as in libsystemd: a manager that went away must
not stop a server that is otherwise fine, so a failed send is reported by the
return value only.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

__all__ = ["notify", "notify_ready", "notify_stopping"]


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (``"READY=1"``, newline-separated assignments) to ``NOTIFY_SOCKET``.

    Returns whether a notification was sent (``False`` when the variable is
    unset or the send failed).
    """
    target = (os.environ if environ is None else environ).get("NOTIFY_SOCKET")
    if not target or target[0] not in "/@":
        return False
    address: str | bytes = b"\x00" + os.fsencode(target[1:]) if target[0] == "@" else target
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), address)
    except OSError:
        return False
    return True


def notify_ready() -> bool:
    """``READY=1``: every listener is open and connections are being accepted."""
    return notify(f"READY=1\nMAINPID={os.getpid()}")


def notify_stopping() -> bool:
    """``STOPPING=1``: no more accepting; open connections are draining."""
    return notify("STOPPING=1")
