"""Cases 13-14: signals landing mid-transfer (EINTR) and SIGTERM during downloads."""

from __future__ import annotations

import os
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

from .probes import echo_transfer
from .procfs import descendants, zombies
from .scale import MB, Scale
from .served import Served
from .verdict import Verdict

__all__ = ["ChargenCheck", "eintr", "sigterm_drain"]

#: RFC 864's pattern, written from the RFC: the 95 printable ASCII characters in
#: a ring; line n is the 72 starting at n mod 95, then CRLF.
_RING = bytes(range(0x20, 0x7F))
_CYCLE = b"".join((_RING * 2)[n : n + 72] + b"\r\n" for n in range(95))


class ChargenCheck:
    """Checks a chargen stream piece by piece against the pattern."""

    def __init__(self) -> None:
        self.offset = 0
        self.exact = True
        self._tiled = _CYCLE * (512 * 1024 // len(_CYCLE) + 2)

    def feed(self, data: bytes) -> None:
        start = self.offset % len(_CYCLE)
        view = memoryview(data)
        step = len(self._tiled) - len(_CYCLE)
        for at in range(0, len(data), step):
            piece = view[at : at + step]
            if piece != self._tiled[start : start + len(piece)]:
                self.exact = False
            start = (start + len(piece)) % len(_CYCLE)
        self.offset += len(data)


def eintr(engine: str, scale: Scale) -> Verdict:
    """13. SIGALRM every 10 ms during a large echo: bytes intact, at least half the quiet throughput."""
    v = Verdict()
    args = ["echo", "0", "--engine", engine, "--log-level", "warning"]
    with Served(args) as quiet, Served(args, alarm_interval=0.01) as alarmed:
        rates: dict[str, list[float]] = {"quiet": [], "alarmed": []}
        exact = True
        for _ in range(3):  # alternate, best of three each: the machine is shared
            for name, server in (("quiet", quiet), ("alarmed", alarmed)):
                same, seconds, _ = echo_transfer(server.address, scale.eintr_bytes)
                exact &= same
                rates[name].append(scale.eintr_bytes / seconds / MB)
        quiet_rate, alarmed_rate = max(rates["quiet"]), max(rates["alarmed"])
        up = alarmed.alive()
        v.check(exact and up, "sha256 equal" if exact else "bytes differ")
        v.check(
            alarmed_rate >= quiet_rate / 2,
            f"{alarmed_rate:.0f} MB/s under SIGALRM vs {quiet_rate:.0f} quiet "
            f"({alarmed_rate / quiet_rate:.2f}x)",
            timing=True,
        )
    return v


def _download(
    address: object,
    family: int,
    size: int,
    pace: float,
    out: dict[str, object],
    server_gone: threading.Event,
) -> None:
    """Read ``size`` bytes of chargen (``pace`` seconds between 64 KiB reads), checking them.

    Once ``server_gone`` is set the rest is read flat out: what the kernel
    still holds is the server's last word, and waiting for it proves nothing.
    """
    check = ChargenCheck()
    sock = socket.socket(family, socket.SOCK_STREAM)
    if pace:
        # A small window, so what the kernel holds for this reader is little
        # and its end of stream shows soon after the server's close.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.settimeout(30)
    try:
        sock.connect(address)
        while check.offset < size:
            chunk = sock.recv(min(65536, size - check.offset))
            if not chunk:
                break
            check.feed(chunk)
            if pace and not server_gone.is_set():
                time.sleep(pace)
    except OSError:
        pass
    out["ended"] = time.monotonic()
    out["bytes"] = check.offset
    out["exact"] = check.exact
    sock.close()


def sigterm_drain(engine: str, scale: Scale) -> Verdict:
    """14. SIGTERM during downloads: refuse new clients at once, drain, exit 0, clean up."""
    v = Verdict()
    drain = scale.drain_timeout
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "chargen.sock"
        args = ["chargen", "0", f"unix:{path}", "--engine", engine, "--drain-timeout", str(drain)]
        server = Served(args, endpoints=2)
        try:
            _drain_while_downloading(server, path, scale, v)
        finally:
            server.kill()
    return v


def _drain_while_downloading(server: Served, path: Path, scale: Scale, v: Verdict) -> None:
    drain = scale.drain_timeout
    downloads: list[dict[str, object]] = [{} for _ in range(scale.downloads)]
    server_gone = threading.Event()
    threads = []
    for n, out in enumerate(downloads):
        # Half read flat out (and should finish within the drain), half at
        # 640 KB/s (and cannot): both kinds must end cleanly.
        pace = 0.0 if n % 2 == 0 else 0.1
        if n % 4 == 3:
            target: object = str(path)
            family = socket.AF_UNIX
        else:
            target, family = server.address, socket.AF_INET
        thread = threading.Thread(
            target=_download,
            args=(target, family, scale.download_bytes, pace, out, server_gone),
            daemon=True,
        )
        thread.start()
        threads.append(thread)
    time.sleep(0.3)
    pid = server.pid
    before = descendants(pid)
    refused_after: list[float] = []

    def knock() -> None:
        start = time.monotonic()
        while time.monotonic() - start < 2.0:
            try:
                # A SYN that meets the listener as it closes is dropped and
                # retried by the kernel only after 1 s: nobody was let in, so a
                # short timeout counts it as the refusal it is.
                with socket.create_connection(server.address, timeout=0.05):
                    pass
            except OSError:
                refused_after.append(time.monotonic() - start)
                return
            time.sleep(0.005)

    stopped = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    knocker = threading.Thread(target=knock, daemon=True)
    knocker.start()
    left_zombies: list[int] = []
    while server.alive() and time.monotonic() - stopped < drain + 5:
        left_zombies = zombies(pid)
        time.sleep(0.05)
    code = server.proc.wait(max(0.1, drain + 10 - (time.monotonic() - stopped)))
    exited = time.monotonic() - stopped
    server_gone.set()
    for thread in threads:
        thread.join(10)
    knocker.join(5)
    still = [p for p in before if os.path.exists(f"/proc/{p}")]
    refusal = refused_after[0] * 1000 if refused_after else float("inf")
    v.check(refusal < 100, f"new connects refused after {refusal:.0f} ms")
    finished = [d for d in downloads if d.get("bytes") == scale.download_bytes]
    cut = [d for d in downloads if d not in finished]
    v.check(all(bool(d.get("exact")) for d in downloads), f"{len(finished)} finished byte-exact")
    # The server's side of every cut download is closed by the time it exits
    # (fork children are checked below); the client sees its end of stream
    # once it has read what the kernel still held.
    v.check(code == 0 and exited <= drain + 1, f"exit {code} after {exited:.2f} s")
    ended = [float(d["ended"]) - stopped for d in cut if "ended" in d]  # type: ignore[arg-type]
    v.check(
        len(ended) == len(cut),
        f"{len(cut)} cut, clients saw the end by {max(ended, default=0.0):.2f} s",
    )
    v.check(not left_zombies and not still, f"{len(left_zombies) + len(still)} zombies/leftovers")
    v.check(not path.exists(), "socket file removed" if not path.exists() else "socket file left")
