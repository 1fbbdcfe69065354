"""Running a function in a private network namespace, with its own loopback.

Without root, a packet socket is refused.  But an unprivileged process may
create a user namespace (as ``unshare -rn`` does) in which it is root, and a
network namespace owned by it: there it holds CAP_NET_RAW and CAP_NET_ADMIN
over its *own* interfaces, so it can bring its ``lo`` up and capture it.
Nothing else runs there, so the capture is exactly the scenario's packets.

The function runs in a forked child (``unshare`` of a user namespace needs
a single-threaded process, and the caller's namespaces stay untouched); what
it returns, or the error it raises, comes back pickled through a pipe.  Root
skips the user namespace and makes the network namespace alone.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import pickle
import socket
import struct
import sys
from collections.abc import Callable
from typing import TypeVar

from sockkit._errors import SockkitError

__all__ = ["NamespaceUnavailable", "run_in_private_network"]

T = TypeVar("T")

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS = 0x8913, 0x8914
_IFF_UP = 0x1


class NamespaceUnavailable(SockkitError):
    """No private network namespace can be made here."""


def _unshare(flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _become_root_in_user_namespace(uid: int, gid: int) -> None:
    with open("/proc/self/setgroups", "w") as file:
        file.write("deny")
    with open("/proc/self/uid_map", "w") as file:
        file.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as file:
        file.write(f"0 {gid} 1")


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack_from("16sH", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def _enter(privileged: bool) -> None:
    if privileged:
        _unshare(_CLONE_NEWNET)
    else:
        uid, gid = os.getuid(), os.getgid()
        _unshare(_CLONE_NEWUSER | _CLONE_NEWNET)
        _become_root_in_user_namespace(uid, gid)
    _loopback_up()


def _why_not(exc: OSError, privileged: bool) -> str:
    if privileged:
        return f"cannot create a network namespace: {exc.strerror or exc}"
    return (
        "capturing needs root or CAP_NET_RAW, or unprivileged user namespaces"
        f" (unshare was refused: {exc.strerror or exc};"
        " see /proc/sys/user/max_user_namespaces and kernel.unprivileged_userns_clone)"
    )


def run_in_private_network(function: Callable[[], T]) -> T:
    """Call ``function`` in a new network namespace (with a user namespace unless root).

    Returns what it returned.  Raises :class:`NamespaceUnavailable` when the
    namespace cannot be made (the message names what is missing), and
    re-raises a :class:`SockkitError` the function raised.
    """
    privileged = os.geteuid() == 0
    reader, writer = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(reader)
        status = 0
        try:
            try:
                _enter(privileged)
            except OSError as exc:
                outcome: tuple[str, object] = ("unavailable", _why_not(exc, privileged))
            else:
                outcome = ("ok", function())
        except SockkitError as exc:
            outcome = ("error", exc)
        except BaseException as exc:  # reported to the parent, which decides
            outcome = ("error", SockkitError(f"{type(exc).__name__}: {exc}"))
            status = 1
        with os.fdopen(writer, "wb") as pipe:
            pickle.dump(outcome, pipe)
        os._exit(status)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    if not data:
        raise SockkitError("the private network namespace's process ended without an answer")
    kind, value = pickle.loads(data)
    if kind == "unavailable":
        raise NamespaceUnavailable(str(value))
    if kind == "error":
        assert isinstance(value, BaseException)
        raise value
    result: T = value
    return result
