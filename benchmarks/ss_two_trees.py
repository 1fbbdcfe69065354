"""Wall time of ``sockkit ss ARGS`` from two source trees, alternating rounds.

    python benchmarks/ss_two_trees.py OLD_SRC NEW_SRC [--rounds 20] [--cpu 1] [-- ss args]

Each round runs both trees (order swapped every round) pinned to one CPU
with taskset, on whatever sockets the machine has at that moment, and
prints the medians and their ratio.  The machine's own socket churn moves
both trees alike; quote only the ratio from one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--cpu", default="1")
    argv = sys.argv[1:]
    ss_args = ["-tan"]
    if "--" in argv:
        ss_args = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    args = parser.parse_args(argv)
    args.ss_args = ss_args
    trees = [("old", args.old), ("new", args.new)]
    times: dict[str, list[float]] = {"old": [], "new": []}
    lines = 0
    for round_number in range(args.rounds):
        for name, tree in trees if round_number % 2 == 0 else trees[::-1]:
            env = dict(os.environ, PYTHONPATH=tree)
            command = ["taskset", "-c", args.cpu, sys.executable, "-m", "sockkit", "ss"]
            started = time.perf_counter()
            out = subprocess.run([*command, *args.ss_args], env=env, capture_output=True)
            times[name].append(time.perf_counter() - started)
            lines = len(out.stdout.splitlines())
    old, new = statistics.median(times["old"]), statistics.median(times["new"])
    print(f"sockkit ss {' '.join(args.ss_args)}: {lines} lines, {args.rounds} rounds")
    print(f"old median {old * 1000:.0f} ms (min {min(times['old']) * 1000:.0f})")
    print(f"new median {new * 1000:.0f} ms (min {min(times['new']) * 1000:.0f})")
    print(f"new/old {new / old:.3f}")


if __name__ == "__main__":
    main()
