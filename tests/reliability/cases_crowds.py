"""Cases 1-6: many clients at once -- idle floods, connection caps, EMFILE, accept storms, churn."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from .probes import echo_probe, wait_closed
from .procfs import children, cpu_seconds, fd_count, memory_kb, thread_count, zombies
from .scale import Scale
from .served import Served
from .verdict import Verdict, percentile

__all__ = [
    "accept_storm",
    "emfile",
    "fork_churn",
    "idle_flood",
    "max_conns",
    "max_conns_per_ip",
    "run_crowd",
    "soak",
]

CROWD = Path(__file__).resolve().parent / "crowd.py"
#: Engines with a thread or process per connection get the larger memory budget.
BLOCKING = frozenset({"fork", "thread", "pool"})


def run_crowd(mode: str, address: tuple[str, int], **options: object) -> subprocess.Popen[bytes]:
    """Start ``crowd.py MODE`` against ``address`` (see its docstring); read its JSON at the end."""
    argv = [sys.executable, str(CROWD), mode, address[0], str(address[1])]
    for name, value in options.items():
        argv += [f"--{name}", str(value)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE)


def crowd_result(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, object]:
    out, _ = proc.communicate(timeout=timeout)
    result: dict[str, object] = json.loads(out)
    return result


def warm(address: tuple[str, int], count: int = 5) -> None:
    """A few round trips so lazily built state is in the baseline."""
    for _ in range(count):
        echo_probe(address)


def wait_fds(pid: int, target: int, slack: int, timeout: float) -> int:
    """Wait until ``pid`` holds ``target`` ± ``slack`` descriptors; the last count seen."""
    deadline = time.monotonic() + timeout
    while True:
        count = fd_count(pid)
        if abs(count - target) <= slack or time.monotonic() > deadline:
            return count
        time.sleep(0.05)


def idle_flood(engine: str, scale: Scale) -> Verdict:
    """1. Idle clients flood the server; new clients stay fast, memory and descriptors bounded."""
    v = Verdict()
    idle = 3.0
    with Served(["echo", "0", "--engine", engine, "--idle-timeout", str(idle)]) as server:
        pid, address = server.pid, server.address
        warm(address)
        base_mem, base_fds = memory_kb(pid), fd_count(pid)
        clients: list[tuple[socket.socket, float]] = []
        for _ in range(scale.idle_clients):
            sock = socket.create_connection(address, timeout=10)
            clients.append((sock, time.monotonic()))
        rtts = []
        for _ in range(scale.probes):
            rtts.append(echo_probe(address))
            time.sleep(0.01)
        grown = (memory_kb(pid) - base_mem) / 1024
        budget = 32 if engine in BLOCKING else 16
        poller = select.poll()
        opened = {}
        for sock, at in clients:
            poller.register(sock, select.POLLIN)
            opened[sock.fileno()] = (sock, at)
        lateness: list[float] = []
        deadline = time.monotonic() + idle + 5
        while opened and time.monotonic() < deadline:
            for fd, _ in poller.poll(100):
                sock, at = opened.pop(fd)
                poller.unregister(fd)
                try:
                    data = sock.recv(16)
                except OSError:
                    data = b""
                lateness.append(time.monotonic() - at)
                if data:
                    v.check(False, "an idle client received bytes")
        for sock, _ in clients:
            sock.close()
        fds = wait_fds(pid, base_fds, 2, 3.0)
        p99 = percentile(rtts, 99) * 1000
        v.check(p99 < 50, f"probe p99 {p99:.1f} ms", timing=True)
        v.check(grown < budget, f"RSS +{grown:.1f} MB (< {budget})")
        worst = max(lateness, default=float("inf"))
        v.check(
            not opened and worst <= idle + 1,
            f"{len(lateness)}/{len(clients)} idle closed, last at {worst:.2f} s",
        )
        v.check(abs(fds - base_fds) <= 2, f"fds {base_fds}->{fds}")
    return v


def max_conns(engine: str, scale: Scale) -> Verdict:
    """2. ``--max-conns N`` with N + extra clients: N served, the extra closed at once and counted."""
    v = Verdict()
    limit = scale.max_conns
    args = ["echo", "0", "--engine", engine, "--max-conns", str(limit)]
    if engine == "pool":
        args += ["--threads", str(limit)]  # the pool serves --threads at once; room for all
    with Served(args) as server:
        held = []
        served = 0
        for _ in range(limit):
            sock = server.connect()
            held.append(sock)
            sock.sendall(b"x")
            served += _echoed(sock, b"x")
        late = []
        refused = 0
        for _ in range(scale.extra_conns):
            start = time.monotonic()
            sock = server.connect()
            closed, got = wait_closed(sock, 1.0)
            late.append(time.monotonic() - start)
            refused += closed and got == 0
            sock.close()
        still = 0
        for sock in held:
            sock.setblocking(True)
            sock.settimeout(5)
            sock.sendall(b"y")
            still += _echoed(sock, b"y")
            sock.close()
        counted = len(server.wait_for_lines("max-conns", scale.extra_conns, 2.0))
        v.check(served == limit and still == limit, f"{served} served ({still} still echoing)")
        worst = max(late) * 1000
        v.check(
            refused == scale.extra_conns and worst < 100,
            f"{refused}/{scale.extra_conns} extra closed, slowest {worst:.0f} ms",
        )
        v.check(counted == scale.extra_conns, f"{counted} refusals logged")
    return v


def _echoed(sock: socket.socket, sent: bytes) -> bool:
    """Whether ``sent`` came back (False on a timeout or a closed connection)."""
    try:
        return sock.recv(len(sent)) == sent
    except OSError:
        return False


def max_conns_per_ip(engine: str, scale: Scale) -> Verdict:
    """3. ``--max-conns-per-ip 10``: the 11th from 127.0.0.2 refused while 127.0.0.3 is served."""
    v = Verdict()
    per_ip = 10
    args = ["echo", "0", "--engine", engine, "--max-conns-per-ip", str(per_ip)]
    if engine == "pool":
        args += ["--threads", str(2 * per_ip)]  # the pool serves --threads at once; room for all
    with Served(args) as server:
        held = []
        served = 0
        for _ in range(per_ip):
            sock = server.connect(source="127.0.0.2")
            held.append(sock)
            sock.sendall(b"x")
            served += _echoed(sock, b"x")
        eleventh = server.connect(source="127.0.0.2")
        closed, got = wait_closed(eleventh, 1.0)
        eleventh.close()
        other = server.connect(source="127.0.0.3")
        other.sendall(b"z")
        other_ok = _echoed(other, b"z")
        other.close()
        for sock in held:
            sock.close()
        v.check(served == per_ip, f"{served}/{per_ip} from 127.0.0.2 served")
        v.check(closed and got == 0, "11th from 127.0.0.2 refused" if closed else "11th served")
        v.check(other_ok, "127.0.0.3 served")
    return v


def emfile(engine: str, scale: Scale) -> Verdict:
    """4. Out of descriptors (``ulimit -n 64``): no spin, listener kept, service resumes, quiet log."""
    v = Verdict()
    with Served(["echo", "0", "--engine", engine], nofile=64) as server:
        pid, address = server.pid, server.address
        warm(address, 2)
        lines_before = len(server.lines)
        began = time.monotonic()
        held = [socket.create_connection(address, timeout=5) for _ in range(scale.emfile_clients)]
        waiter = socket.create_connection(address, timeout=5)
        waiter.sendall(b"w")
        time.sleep(0.5)  # let the server reach its limit
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(scale.emfile_seconds)
        cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
        for sock in held:
            sock.close()
        freed = time.monotonic()
        waiter.settimeout(5)
        try:
            answer = waiter.recv(1)
        except OSError:
            answer = b""
        served_after = time.monotonic() - freed
        waiter.close()
        alive = server.alive() and echo_probe(address) < 5
        time.sleep(max(0.0, freed + 1.0 - time.monotonic()))
        v.check(cpu < 0.10, f"CPU {cpu * 100:.1f}% of a core")
        v.check(alive, "listener open, serving after" if alive else "server down")
        v.check(answer == b"w" and served_after < 2, f"waiter served {served_after:.2f} s after")
        # Over the whole episode -- exhaustion, then recovery and one second
        # after -- at most one line a second about accepting (opened/closed
        # lines are per connection and not counted).
        window = time.monotonic() - began
        accept_lines = [ln for _, ln in server.lines[lines_before:] if "accept" in ln]
        v.check(
            len(accept_lines) <= window + 1,
            f"{len(accept_lines)} accept log lines in {window:.1f} s",
        )
    return v


def accept_storm(engine: str, scale: Scale) -> Verdict:
    """5. Thousands of connects in one second; a pinging client keeps its latency."""
    v = Verdict()
    with Served(["echo", "0", "--engine", engine, "--log-level", "warning"]) as server:
        address = server.address
        warm(address)
        pinger = server.connect()
        pinger.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        crowd = run_crowd("storm", address, count=scale.storm_connects, seconds=1.0)
        rtts = []
        while crowd.poll() is None:
            start = time.monotonic()
            pinger.sendall(b"p")
            pinger.recv(1)
            rtts.append(time.monotonic() - start)
            time.sleep(0.01)
        result = crowd_result(crowd, 60)
        pinger.close()
        durations = [float(d) for d in result["durations"]]  # type: ignore[attr-defined]
        p99 = percentile(rtts, 99) * 1000
        v.check(p99 < 50, f"ping p99 {p99:.1f} ms over {len(rtts)}", timing=True)
        worst = max(durations, default=0.0)
        v.check(worst <= 5.0, f"slowest client {worst:.2f} s")
        v.note(f"{len(durations)} done, {result['failed']} failed in {result['elapsed']:.1f} s")
    return v


def fork_churn(engine: str, scale: Scale) -> Verdict:
    """6. Connect/close churn with ``--max-conns 40``: never more children, no zombies, fds back."""
    v = Verdict()
    if engine != "fork":
        v.skipped = "fork only: the case counts child processes"
        return v
    limit = 40
    with Served(["echo", "0", "--engine", engine, "--max-conns", str(limit)]) as server:
        pid, address = server.pid, server.address
        warm(address)
        base_fds = fd_count(pid)
        most = 0
        sampling = True

        def sample() -> None:
            nonlocal most
            while sampling:
                most = max(most, len(children(pid)))
                time.sleep(0.002)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        crowd = run_crowd(
            "churn",
            address,
            count=scale.churn_cycles,
            seconds=scale.churn_seconds,
            width=60,
            # Each cycle holds its connection long enough that about 50 are open at
            # once: more than --max-conns, so the limit is what bounds the children.
            hold=50 * scale.churn_seconds / scale.churn_cycles,
        )
        result = crowd_result(crowd, scale.churn_seconds + 60)
        time.sleep(1.0)
        sampling = False
        sampler.join()
        left = zombies(pid)
        fds = wait_fds(pid, base_fds, 2, 2.0)
        v.check(most <= limit, f"at most {most} children")
        v.check(not left, f"{len(left)} zombies 1 s after")
        v.check(abs(fds - base_fds) <= 2, f"fds {base_fds}->{fds}")
        v.note(f"{len(result['durations'])} cycles served, {result['failed']} refused")  # type: ignore[arg-type]
    return v


def _slope_per_minute(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) samples, per minute."""
    n = len(samples)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in samples) / n
    mean_v = sum(v for _, v in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    cov = sum((t - mean_t) * (v - mean_v) for t, v in samples)
    return cov / var * 60 if var else 0.0


def soak(engine: str, scale: Scale) -> Verdict:
    """17. Mixed load for ``soak_seconds``: after the warm-up, nothing grows and echo stays fast."""
    v = Verdict()
    with contextlib.ExitStack() as stack:
        echo = stack.enter_context(
            Served(["echo", "0", "--engine", engine, "--log-level", "warning"])
        )
        servers = [echo]
        chat_port = 0
        if engine != "fork":  # chat needs shared memory; fork refuses it by design
            chat = stack.enter_context(
                Served(["chat", "0", "--engine", engine, "--log-level", "warning"])
            )
            servers.append(chat)
            chat_port = chat.address[1]
        crowd = run_crowd(
            "soak",
            echo.address,
            seconds=scale.soak_seconds,
            count=50,
            chat=chat_port,
            pace=scale.soak_pace,
        )
        pinger = echo.connect()
        pinger.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = time.monotonic()
        memory: list[tuple[float, float]] = []
        threads: list[int] = []
        fds: list[int] = []
        rtts: list[float] = []
        next_sample = start
        while crowd.poll() is None:
            now = time.monotonic()
            sent = time.monotonic()
            pinger.sendall(b"p")
            pinger.recv(1)
            if now - start >= scale.soak_warmup:
                rtts.append(time.monotonic() - sent)
            if now >= next_sample:
                next_sample += 1.0
                if now - start >= scale.soak_warmup:
                    memory.append((now - start, sum(memory_kb(s.pid) for s in servers) / 1024))
                    threads.append(sum(thread_count(s.pid) for s in servers))
                    fds.append(sum(fd_count(s.pid) for s in servers))
            time.sleep(0.05)
        result = crowd_result(crowd, 30)
        pinger.close()
        time.sleep(1.0)
        left = sum(len(zombies(s.pid)) for s in servers)
        slope = _slope_per_minute(memory)
        v.check(slope < 1.0, f"RSS {slope:+.2f} MB/min")
        v.check(max(threads) - min(threads) <= 2, f"threads {min(threads)}-{max(threads)}")
        v.check(max(fds) - min(fds) <= 5, f"fds {min(fds)}-{max(fds)}")
        v.check(left == 0, f"{left} zombies")
        p99 = percentile(rtts, 99) * 1000
        v.check(p99 < 20, f"echo p99 {p99:.1f} ms", timing=True)
        v.check(
            result["errors"] == 0,
            f"{result['exchanges']} rr, {result['churned']} churn, {result['errors']} errors",
        )
    return v
