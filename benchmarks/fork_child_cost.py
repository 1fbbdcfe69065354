"""What one forked child costs: private memory per child and fork+exit time by parent size.

Usage (from the repository root)::

    python benchmarks/fork_child_cost.py --conns 50 --forks 300

1. Per-child memory: ``sockkit serve echo --engine fork`` and
   ``socketserver.ForkingTCPServer`` (``benchmarks/peers``) each hold
   ``--conns`` idle connections (one 64-byte echo each, so each child has
   served); the median child's Private_Clean + Private_Dirty and Pss
   (``/proc/PID/smaps_rollup``), and where the private pages are
   (``/proc/PID/smaps``, by mapping).
2. fork+exit+wait time: a process with only the standard start-up imports
   ("lean") and one that has imported what ``sockkit serve`` imports ("as
   serve"), each forking ``--forks`` children that ``os._exit(0)`` at once;
   the median of fork() to waitpid() returning; "child-path" imports only
   ``sockkit.engines._fork`` and the echo service (what a fork child runs);
   "fork-server" what the fork server process imports.  Servers pinned to CPU 1.

"parent RSS" is the RSS of the process the children are forked from: the fork
server for ``sockkit-fork``, the serving process for ``sockkit-inline``
(``SOCKKIT_FORK_SERVER=off``, children forked as before the fork server).
"""

from __future__ import annotations

import argparse
import collections
import os
import socket
import statistics
import subprocess
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

_PEER = str(HERE / "peers" / "socketserver_forking_echo.py")
_SOCKKIT = [sys.executable, "-m", "sockkit", "serve", "echo", "tcp://127.0.0.1:0", "--engine", "fork"]
#: name: (argv, extra environment).  "sockkit-fork" forks from its fork server
#: process; "sockkit-inline" (SOCKKIT_FORK_SERVER=off) from the serving process.
SERVERS = {
    "sockkit-fork": (_SOCKKIT, {}),
    "sockkit-inline": (_SOCKKIT, {"SOCKKIT_FORK_SERVER": "off"}),
    "socketserver-fork": ([sys.executable, _PEER, "127.0.0.1", "0"], {}),
}  # fmt: skip

_FORK_TIMER = """
import gc, os, sys, time, statistics
if sys.argv[1] == "as-serve":
    # What `sockkit serve --engine fork` has loaded when it forks (ssl only with tls://).
    import sockkit.cli, sockkit.cli.serve, sockkit.server, sockkit.engines._fork  # noqa: F401
elif sys.argv[1] == "child-path":
    import sockkit.engines._fork, sockkit.services._classic  # noqa: F401
elif sys.argv[1] == "fork-server":
    # What the fork server has loaded, with threading's and logging's at-fork
    # hooks held back as its bootstrap (engines/_zygote_boot.py) holds them.
    held, register = [], os.register_at_fork
    os.register_at_fork = lambda **hooks: held.append(hooks)
    import sockkit.engines._zygote, sockkit.services._classic  # noqa: F401
    os.register_at_fork = register
gc.freeze()
rss = [line for line in open("/proc/self/status") if line.startswith("VmRSS")][0].split()[1]
times = []
for _ in range(int(sys.argv[2])):
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    times.append(time.perf_counter() - start)
print(rss, statistics.median(times) * 1e6, len(sys.modules))
"""


def _rollup(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].endswith(":"):
            values[parts[0][:-1]] = int(parts[1])
    return values


def _private_by_mapping(pid: int) -> collections.Counter[str]:
    found: collections.Counter[str] = collections.Counter()
    name = "[anon]"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        parts = line.split()
        if not parts[0].endswith(":"):
            name = os.path.basename(parts[5]) if len(parts) > 5 else "[anon]"
        elif parts[0] in ("Private_Dirty:", "Private_Clean:"):
            found[name] += int(parts[1])
    return found


def _children(pid: int) -> list[int]:
    kids = []
    for task in os.listdir(f"/proc/{pid}/task"):
        kids += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return kids


def _forking_process(pid: int) -> int:
    """The process that forks the connection children: the fork server if there is one."""
    for kid in _children(pid):
        if b"sockkit.engines._zygote" in Path(f"/proc/{kid}/cmdline").read_bytes():
            return kid
    return pid


def child_memory(name: str, conns: int) -> None:
    argv, extra = SERVERS[name]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), **extra)
    proc = subprocess.Popen(["taskset", "-c", "1", *argv], stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    port = int(proc.stderr.readline().rsplit(b":", 1)[1])
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # a full pipe would stall it
    socks = []
    try:
        for _ in range(conns):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"x" * 64)
            got = b""
            while len(got) < 64:
                got += sock.recv(64)
            socks.append(sock)
        forker = _forking_process(proc.pid)
        kids = _children(forker)
        rollups = [_rollup(kid) for kid in kids]
        private = statistics.median(r["Private_Clean"] + r["Private_Dirty"] for r in rollups)
        pss = statistics.median(r["Pss"] for r in rollups)
        parent = _rollup(forker)
        where = _private_by_mapping(kids[0]).most_common(4)
        print(
            f"{name:<18} parent RSS {parent['Rss']:>6} KiB | {len(kids)} children: private"
            f" {private:>6.0f} KiB, PSS {pss:>6.0f} KiB | private pages in: "
            + ", ".join(f"{mapping} {kib}" for mapping, kib in where)
        )
    finally:
        for sock in socks:
            sock.close()
        proc.terminate()
        proc.wait(10)


def fork_time(kind: str, forks: int) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    out = subprocess.run(
        ["taskset", "-c", "1", sys.executable, "-c", _FORK_TIMER, kind, str(forks)],
        capture_output=True,
        check=True,
        env=env,
    ).stdout.split()
    print(
        f"{kind:<11} RSS {int(out[0]):>6} KiB, {out[2].decode():>3} modules:"
        f" fork+exit+wait median {float(out[1]):>6.0f} us"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--forks", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for _ in range(args.rounds):
        for name in SERVERS:
            child_memory(name, args.conns)
        for kind in ("lean", "fork-server", "child-path", "as-serve"):
            fork_time(kind, args.forks)


if __name__ == "__main__":
    main()
