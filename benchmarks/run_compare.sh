#!/bin/sh
# Re-run the full side-by-side comparison of sockkit's engines and the raw peer
# servers, and rewrite benchmarks/RESULTS.md (plus results/compare.json and
# results/compare.png).  Takes about a quarter of an hour on 2 cores; run it on
# an otherwise idle machine.  Extra arguments go to `sockkit bench compare`
# (e.g. --rounds 1, --loadgen ../shared/tools/rrload.c).
set -eu
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec python -m sockkit bench compare --scale full \
    --out benchmarks/results --markdown benchmarks/RESULTS.md "$@"
