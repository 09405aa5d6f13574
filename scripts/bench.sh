#!/bin/bash
# `make bench`: Gust benchmarks on a release build. Compiles bench/warmcall.c, then runs
# bench/bench.py, which starts its own gustd (free port, temp data dir), measures cold
# start (with runc and bwrap baselines), warm calls, throughput (wrk) and map fan-out,
# prints a table and writes bench/results/latest.json + bench/results/<date>.json.
# Exits non-zero, naming the step, when any step fails. Extra args go to bench.py
# (e.g. --steps baselines).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
shift || true
[ "$(id -u)" -eq 0 ] || { echo "bench: must run as root (containers, cgroups)" >&2; exit 1; }
mkdir -p "$B/bench"
gcc -std=c17 -O2 -Wall -Wextra -Werror -o "$B/bench/warmcall" bench/warmcall.c
gcc -std=c17 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -Isrc -o "$B/bench/casbench" bench/casbench.c \
    "$B/libgust-internal.a" -ljansson -lzstd -lcrypto -lpthread
exec /usr/bin/python3 bench/bench.py --build "$B" "$@"
