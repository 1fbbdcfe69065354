#!/bin/sh
# Server CPU per operation, the code before the connection-core work (a git
# worktree of OLD_COMMIT) against this checkout, in alternating rounds.
#
#   git worktree add /tmp/sockkit-old e845b81
#   cc -O2 -o /tmp/rrload ../shared/tools/rrload.c
#   PYTHON=.venv/bin/python sh benchmarks/core_vs_old.sh /tmp/sockkit-old /tmp/rrload > benchmarks/results/core_vs_old.txt
set -eu
OLD=${1:?old checkout}
RRLOAD=${2:-/tmp/rrload}
ROUNDS=${ROUNDS:-5}
NEW=$(pwd)
PY=${PYTHON:-python3}
for engine in ${ENGINES:-uvloop epoll thread fork}; do
    serve="-m sockkit serve echo 127.0.0.1:0 --log-level warning --engine $engine"
    old="old=env PYTHONPATH=$OLD/src $PY $serve"
    new="new=env PYTHONPATH=$NEW/src $PY $serve"
    for workload in "rr-64B-depth1:--mode rr --conns 50 --depth 1 --size 64" \
                    "rr-64B-depth16:--mode rr --conns 50 --depth 16 --size 64" \
                    "rr-64KiB:--mode rr --conns 8 --depth 1 --size 65536" \
                    "connect-rate:--mode connect --conns 16 --size 64"; do
        name=${workload%%:*}
        opts=${workload#*:}
        echo "== $engine $name"
        # shellcheck disable=SC2086
        python3 benchmarks/alternating_cpu.py --rrload "$RRLOAD" --rounds "$ROUNDS" $opts "$old" "$new"
    done
done
