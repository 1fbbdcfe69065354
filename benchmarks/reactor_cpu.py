"""Server CPU per request: the reactor engines against a minimal selectors echo reactor.

Usage (from the repository root)::

    cc -O2 -o /tmp/rrload ../shared/tools/rrload.c
    python benchmarks/reactor_cpu.py --rrload /tmp/rrload --rounds 5 --duration 3 --conns 1

Each server runs pinned to CPU 0 (``taskset -c 0``), the load to CPU 1.  Each
server is primed with one unmeasured load run, then measured: server CPU
(utime + stime from /proc/PID/stat) over the load run divided by the requests
rrload completed.  Servers are alternated round by round and the median per
server is reported, because the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


def server_argv(name: str, port: int) -> list[str]:
    if name.startswith("selectors-"):
        script = ROOT / "benchmarks" / "peers" / "selectors_echo.py"
        kind = name.split("-", 1)[1]
        return [sys.executable, str(script), "127.0.0.1", str(port), kind]
    script = ROOT / "benchmarks" / "reactor_serve.py"
    return [sys.executable, str(script), name, "127.0.0.1", str(port)]


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def load(args: argparse.Namespace, port: int, duration: float) -> dict[str, float]:
    argv = [
        "taskset", "-c", "1", args.rrload, "--conns", str(args.conns), "--depth", "1",
        "--size", str(args.size), "--warmup", "0", "--duration", str(duration),
        f"127.0.0.1:{port}",
    ]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, check=True, timeout=duration + 30)
    result: dict[str, float] = json.loads(out.stdout)
    return result


def measure(args: argparse.Namespace, name: str) -> tuple[float, float]:
    """Server (total, user) CPU microseconds per request for one load run."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen(
        ["taskset", "-c", "0", *server_argv(name, 0)], stdout=subprocess.PIPE, env=env
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        port = int(line.rsplit(":", 1)[1])
        load(args, port, 1.0)  # prime: imports, allocator, branch caches
        user0, system0 = cpu_seconds(proc.pid)
        result = load(args, port, args.duration)
        user1, system1 = cpu_seconds(proc.pid)
        if result["errors"] or result["conn_failures"] or not result["msgs_per_s"]:
            raise SystemExit(f"{name}: load errors {result}")
        requests = result["msgs_per_s"] * args.duration
        user = (user1 - user0) / requests * 1e6
        return user + (system1 - system0) / requests * 1e6, user
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rrload", default="/tmp/rrload")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--conns", type=int, default=1)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument(
        "--servers",
        default="selectors-epoll,epoll,selectors-poll,poll,selectors-select,select",
        help="sockkit engines, and selectors-KIND for the minimal reactor on that poller",
    )
    args = parser.parse_args()
    names = args.servers.split(",")
    samples: dict[str, list[float]] = {name: [] for name in names}
    user_samples: dict[str, list[float]] = {name: [] for name in names}
    for round_no in range(args.rounds):
        order = names if round_no % 2 == 0 else names[::-1]
        for name in order:
            total, user = measure(args, name)
            samples[name].append(total)
            user_samples[name].append(user)
        print(f"round {round_no + 1}: " + "  ".join(
            f"{n}={samples[n][-1]:.2f}" for n in names), flush=True)  # fmt: skip
    print(f"\nconns={args.conns} size={args.size} duration={args.duration}s rounds={args.rounds}")
    print(
        f"{'server':<18} {'median us/req':>14} {'user us/req':>12}"
        f" {'ratio of medians':>17} {'median ratio':>13}"
    )
    for name in names:
        med = statistics.median(samples[name])
        base = samples.get(f"selectors-{name}")
        ratio = paired = "-"
        if base:
            ratio = f"{med / statistics.median(base):.3f}"
            # Same round, neighbouring runs: the machine's load cancels out.
            pairs = zip(samples[name], base, strict=True)
            paired = f"{statistics.median(a / b for a, b in pairs):.3f}"
        user = statistics.median(user_samples[name])
        print(f"{name:<18} {med:>14.2f} {user:>12.2f} {ratio:>17} {paired:>13}")


if __name__ == "__main__":
    main()
