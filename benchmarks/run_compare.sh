#!/bin/sh
# Re-run the full side-by-side comparison of sockkit's engines, its baselines
# and the peer servers in benchmarks/peers, judge the goals, and rewrite
# benchmarks/RESULTS.md (plus results/compare.json and results/compare.png).
# Takes about a quarter of an hour on 2 cores; run it on an otherwise idle
# machine.  Extra arguments go to benchmarks/compare_peers.py (e.g. --rounds 1,
# --loadgen ../shared/tools/rrload.c).
set -eu
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec python benchmarks/compare_peers.py --scale full \
    --out benchmarks/results --markdown benchmarks/RESULTS.md "$@"
