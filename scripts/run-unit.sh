#!/bin/sh
# Runs every unit-test binary of a build tree; prints per-binary results and a total.
set -u
B=${1:-build-asan}
export GUST_INIT="$PWD/$B/gust-init" GUST_ECHO="$PWD/$B/examples/echo/echo"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}" UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
passed=0; failed=0; bad=""
for t in "$B"/tests/test_*; do
    [ -x "$t" ] || continue
    out=$("$t" 2>&1); rc=$?
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -1)
    p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/'); f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    [ -n "$line" ] || { p=0; f=1; }
    if [ $rc -ne 0 ] && [ "$f" = 0 ]; then f=1; fi
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$f" != 0 ]; then bad="$bad $(basename "$t")"; printf '%s\n' "$out" | tail -40; fi
    echo "unit $(basename "$t"): $p passed, $f failed"
done
echo "unit: $passed passed, $failed failed${bad:+ (failing:$bad)}"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
