"""Cases 7-12: clients that misbehave -- never read, never stop, never end a line, reset, half-close."""

from __future__ import annotations

import json
import socket
import threading
import time

from .cases_crowds import crowd_result, run_crowd, wait_fds, warm
from .probes import echo_transfer, wait_closed
from .procfs import fd_count, memory_kb
from .scale import MB, Scale
from .served import Served
from .verdict import Verdict, percentile

__all__ = [
    "chat_long_line",
    "half_close",
    "never_reads_chargen",
    "never_reads_echo",
    "reset_storm",
    "slowloris",
]

#: Chat needs connections that share memory; the fork engine refuses it by design.
SHARED_MEMORY_ONLY = "chat needs shared memory; the fork engine refuses it by design"


class _PeakMemory:
    """Samples a process's memory every 50 ms in a thread; ``peak`` in kB."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = memory_kb(pid)
        self._running = True
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while self._running:
            try:
                self.peak = max(self.peak, memory_kb(self.pid))
            except (FileNotFoundError, ProcessLookupError, KeyError):
                return
            time.sleep(0.05)

    def stop(self) -> int:
        self._running = False
        self._thread.join()
        return self.peak


def _closed_line_after(server: Served, port: int, since: float, timeout: float) -> float | None:
    """When the server logged closing the client on local ``port`` (None: not within timeout)."""
    needle = f":{port} "
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for at, line in server.matching("closed ", since):
            if needle in line:
                return at
        time.sleep(0.01)
    return None


def never_reads_chargen(engine: str, scale: Scale) -> Verdict:
    """7. A chargen client with a 4 KiB receive buffer that never reads: bounded memory, timed out."""
    v = Verdict()
    limit = scale.send_timeout
    args = ["chargen", "0", "--engine", engine, "--send-timeout", str(limit)]
    with Served(args) as server:
        pid = server.pid
        warm_sock = server.connect()
        warm_sock.recv(4096)
        warm_sock.close()
        time.sleep(0.2)
        base = memory_kb(pid)
        peak = _PeakMemory(pid)
        sock = socket.socket(server_family(server), socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        start = time.monotonic()
        sock.connect(server.address)
        port = sock.getsockname()[1]
        # Growth while the client does not read, from once its connection is
        # set up: a fork child's own pages are the cost of any connection.
        time.sleep(0.3)
        base = memory_kb(pid)
        peak.peak = base
        closed_at = _closed_line_after(server, port, start, scale.never_read_seconds + limit + 2)
        grown = (peak.stop() - base) / 1024
        sock.close()
        after = None if closed_at is None else closed_at - start
        v.check(grown < 1, f"RSS +{grown:.2f} MB")
        v.check(
            after is not None and limit <= after + 0.05 and after <= limit + 1,
            f"closed {after:.2f} s after connect (send timeout {limit:g})"
            if after is not None
            else "never closed",
        )
    return v


def server_family(server: Served) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in server.address[0] else socket.AF_INET


def never_reads_echo(engine: str, scale: Scale) -> Verdict:
    """8. A client pushes at echo and never reads: the server stops reading, the client's send blocks."""
    v = Verdict()
    with Served(["echo", "0", "--engine", engine]) as server:
        pid, address = server.pid, server.address
        warm(address)
        base = memory_kb(pid)
        peak = _PeakMemory(pid)
        sock = server.connect()
        sock.setblocking(False)
        block = b"\x5a" * (256 * 1024)
        sent = 0
        stalled_since = time.monotonic()
        while sent < scale.flood_bytes and time.monotonic() - stalled_since < 1.0:
            try:
                n = sock.send(block[: scale.flood_bytes - sent])
            except BlockingIOError:
                time.sleep(0.01)
                continue
            except OSError:
                break
            sent += n
            stalled_since = time.monotonic()
        blocked = sent < scale.flood_bytes
        grown = (peak.stop() - base) / 1024
        alive = server.alive()
        sock.close()
        v.check(blocked, f"send blocked after {sent / MB:.1f} MB of {scale.flood_bytes / MB:.0f}")
        v.check(grown < 2, f"RSS +{grown:.2f} MB")
        v.check(alive, "server up")
    return v


def _chat_member(server: Served) -> socket.socket:
    sock = server.connect()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _line_latencies(
    server: Served, sender: socket.socket, receiver: socket.socket, count: int, gap: float
) -> list[float]:
    """Send ``count`` numbered lines from ``sender``; how long each took to reach ``receiver``."""
    sent_at: dict[int, float] = {}
    latencies: list[float] = []
    done = threading.Event()

    def read() -> None:
        buffer = b""
        receiver.settimeout(5)
        while len(latencies) < count:
            try:
                chunk = receiver.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                word = line.rsplit(b" ", 1)[-1]
                if word.startswith(b"n") and word[1:].isdigit():
                    latencies.append(time.monotonic() - sent_at[int(word[1:])])
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    for n in range(count):
        sent_at[n] = time.monotonic()
        sender.sendall(b"line n%d\n" % n)
        time.sleep(gap)
    done.wait(10)
    latencies += [float("inf")] * (count - len(latencies))
    return latencies


def chat_long_line(engine: str, scale: Scale) -> Verdict:
    """9. A 10 MB chat line with no newline: that client dropped at the cap, the room unaffected."""
    v = Verdict()
    if engine == "fork":
        v.skipped = SHARED_MEMORY_ONLY
        return v
    with Served(["chat", "0", "--engine", engine]) as server:
        pid = server.pid
        a, b = _chat_member(server), _chat_member(server)
        _line_latencies(server, a, b, 5, 0.01)  # warm
        base = memory_kb(pid)
        peak = _PeakMemory(pid)
        hostile = server.connect()
        result: dict[str, float] = {}

        def push() -> None:
            start = time.monotonic()
            block = b"x" * 65536
            sent = 0
            try:
                while sent < scale.chat_line_bytes:
                    hostile.sendall(block)
                    sent += len(block)
                closed, _ = wait_closed(hostile, 5.0)
                if closed:
                    result["closed"] = time.monotonic() - start
            except OSError:
                result["closed"] = time.monotonic() - start
            result["sent"] = sent

        pusher = threading.Thread(target=push, daemon=True)
        pusher.start()
        latencies = _line_latencies(server, a, b, 50, 0.02)
        pusher.join(15)
        grown = (peak.stop() - base) / 1024
        for sock in (a, b, hostile):
            sock.close()
        closed = result.get("closed")
        v.check(
            closed is not None and closed < 1,
            f"long-line client closed in {closed:.3f} s" if closed is not None else "never closed",
        )
        v.check(grown < 1, f"RSS +{grown:.2f} MB")
        p99 = percentile(latencies, 99) * 1000
        v.check(p99 < 50, f"others' lines p99 {p99:.1f} ms", timing=True)
    return v


def slowloris(engine: str, scale: Scale) -> Verdict:
    """10. Slowloris chat clients under ``--line-timeout``: each closed at S + 1 s, new clients fast."""
    v = Verdict()
    if engine == "fork":
        v.skipped = SHARED_MEMORY_ONLY
        return v
    limit = scale.line_timeout
    with Served(["chat", "0", "--engine", engine, "--line-timeout", str(limit)]) as server:
        a, b = _chat_member(server), _chat_member(server)
        crowd = run_crowd(
            "slowloris",
            server.address,
            count=scale.slowloris_clients,
            gap=scale.slowloris_gap,
            limit=limit + 4,
        )
        time.sleep(0.3)
        probes: list[float] = []
        while crowd.poll() is None:
            start = time.monotonic()
            newcomer = _chat_member(server)
            newcomer.sendall(b"hello n0\n")
            b.settimeout(5)
            try:
                got = b.recv(4096)
            except OSError:
                got = b""
            probes.append(time.monotonic() - start if b"n0" in got else float("inf"))
            newcomer.close()
            time.sleep(0.1)
        result = crowd_result(crowd, 30)
        a.close()
        b.close()
        closed_after = result["closed_after"]
        assert isinstance(closed_after, list)
        closed = [t for t in closed_after if t is not None]
        latest = max(closed, default=float("inf"))
        earliest = min(closed, default=0.0)
        v.check(
            len(closed) == len(closed_after) and latest <= limit + 1 and earliest >= limit - 0.05,
            f"{len(closed)}/{len(closed_after)} closed, {earliest:.2f}-{latest:.2f} s (S={limit:g})",
        )
        p99 = percentile(probes, 99) * 1000
        v.check(p99 < 50, f"new clients p99 {p99:.1f} ms over {len(probes)}", timing=True)
    return v


def reset_storm(engine: str, scale: Scale) -> Verdict:
    """11. Read 1 KB of chargen, then reset (SO_LINGER 0), many times: no errors, nothing leaks."""
    v = Verdict()
    with Served(["chargen", "0", "--engine", engine, "--log-format", "json"]) as server:
        pid = server.pid
        for _ in range(5):
            with server.connect() as sock:
                sock.recv(1024)
        time.sleep(0.2)
        base_mem, base_fds = memory_kb(pid), fd_count(pid)
        linger = (1).to_bytes(4, "little") + (0).to_bytes(4, "little")
        for _ in range(scale.resets):
            sock = server.connect()
            got = 0
            while got < 1024:
                chunk = sock.recv(1024 - got)
                if not chunk:
                    break
                got += len(chunk)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            sock.close()
        time.sleep(1.0)
        fds = wait_fds(pid, base_fds, 2, 3.0)
        grown = (memory_kb(pid) - base_mem) / 1024
        errors = [ln for _, ln in server.lines if _level(ln) in ("error", "critical")]
        v.check(not server.tracebacks(), f"{len(server.tracebacks())} tracebacks")
        v.check(not errors, f"{len(errors)} error lines" + (f": {errors[0]}" if errors else ""))
        v.check(abs(fds - base_fds) <= 2, f"fds {base_fds}->{fds}")
        v.check(grown < 2, f"RSS +{grown:.2f} MB")
    return v


def _level(line: str) -> str:
    try:
        entry = json.loads(line)
    except ValueError:
        return "unparsed"
    return str(entry.get("level", "")) if isinstance(entry, dict) else "unparsed"


def half_close(engine: str, scale: Scale) -> Verdict:
    """12. 1 MB then SHUT_WR: exactly 1 MB back, then EOF; a half-closed non-reader is dropped."""
    v = Verdict()
    idle = 2.0
    with Served(["echo", "0", "--engine", engine, "--idle-timeout", str(idle)]) as server:
        same, _, back = echo_transfer(server.address, MB, timeout=30)
        v.check(same, f"{back} bytes back, sha256 {'equal' if same else 'differs'}, then EOF")
        # A 4 KiB receive buffer and more than the kernel's buffers hold, so the
        # server is left holding output for a peer that has finished sending
        # (its FIN is queued behind the data) and will never read.
        sock = socket.socket(server_family(server), socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(server.address)
        port = sock.getsockname()[1]
        start = time.monotonic()
        try:
            sock.sendall(b"h" * (8 * MB))
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # dropped already (its output past the cap): the log says when
        closed_at = _closed_line_after(server, port, start, idle + 5)
        sock.close()
        after = None if closed_at is None else closed_at - start
        v.check(
            after is not None and after <= idle + 1,
            f"half-closed non-reader dropped {after:.2f} s after (idle {idle:g})"
            if after is not None
            else "never dropped",
        )
    return v
