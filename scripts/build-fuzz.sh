#!/usr/bin/env bash
# Builds every tests/fuzz/fuzz_*.c into build-fuzz/ with libFuzzer + ASan + UBSan.
# A target named fuzz_<module>_<what>.c links src/base/*.c and src/<module>/*.c.
#
#   scripts/build-fuzz.sh                      build all targets
#   scripts/build-fuzz.sh --run SECONDS [T..]  build, then run each target (or only the
#                                              named ones) for SECONDS over its seeds in
#                                              tests/fuzz/corpus/<target>/; exits non-zero
#                                              if any target crashes or fails to build.
# New inputs go to build-fuzz/corpus/<target>/ (the seeds in the tree are not touched);
# crash inputs to build-fuzz/artifacts/.
set -euo pipefail

cd "$(dirname "$0")/.."
CC=${FUZZ_CC:-clang}
OUT=build-fuzz
RUN_SECS=""
ONLY=()

while [ $# -gt 0 ]; do
    case "$1" in
    --run)
        [ $# -ge 2 ] || { echo "build-fuzz: --run needs SECONDS" >&2; exit 2; }
        RUN_SECS=$2
        shift 2
        ;;
    -h | --help)
        sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        ONLY+=("$1")
        shift
        ;;
    esac
done
if [ -n "$RUN_SECS" ] && ! [[ "$RUN_SECS" =~ ^[0-9]+$ ]]; then
    echo "build-fuzz: --run SECONDS must be a whole number, got '$RUN_SECS'" >&2
    exit 2
fi

CFLAGS=(-std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
    -Wno-unused-parameter -Iinclude -Isrc -g -O1 -fno-omit-frame-pointer
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)

mkdir -p "$OUT/artifacts"
shopt -s nullglob
targets=()
for src in tests/fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    if [ ${#ONLY[@]} -gt 0 ]; then
        keep=0
        for o in "${ONLY[@]}"; do [ "$o" = "$name" ] && keep=1; done
        [ $keep = 1 ] || continue
    fi
    rest=${name#fuzz_}
    module=${rest%%_*}
    srcs=(src/base/*.c)
    if [ "$module" != "base" ]; then
        if [ ! -d "src/$module" ]; then
            echo "build-fuzz: $name: no src/$module/ for module '$module'" >&2
            exit 1
        fi
        srcs+=(src/"$module"/*.c)
    fi
    # Modules that build on another one (docs/ARCHITECTURE.md) bring it along.
    [ "$module" = "image" ] && srcs+=(src/cas/*.c)
    libs=(-ljansson -lseccomp -lzstd -lcrypto -lz)
    if [ "$module" = "client" ]; then
        srcs+=(src/http/*.c)
        libs+=(-lssl)
    fi
    echo "build-fuzz: $name (src/base + src/$module)"
    "$CC" "${CFLAGS[@]}" -o "$OUT/$name" "$src" "${srcs[@]}" "${libs[@]}"
    targets+=("$name")
done

if [ ${#targets[@]} -eq 0 ]; then
    echo "build-fuzz: no targets" >&2
    exit 1
fi
[ -n "$RUN_SECS" ] || exit 0

failed=()
for name in "${targets[@]}"; do
    work="$OUT/corpus/$name"
    seeds="tests/fuzz/corpus/$name"
    mkdir -p "$work"
    dirs=("$work")
    [ -d "$seeds" ] && dirs+=("$seeds")
    echo "build-fuzz: running $name for ${RUN_SECS}s"
    if ! "$OUT/$name" -max_total_time="$RUN_SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$OUT/artifacts/$name-" "${dirs[@]}" >"$OUT/$name.log" 2>&1; then
        echo "build-fuzz: $name FAILED (log: $OUT/$name.log)" >&2
        tail -n 40 "$OUT/$name.log" >&2
        failed+=("$name")
    else
        grep -E '^stat::number_of_executed_units|^#[0-9]+.*DONE' "$OUT/$name.log" | tail -n 2 || true
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "build-fuzz: crashes in: ${failed[*]}" >&2
    exit 1
fi
echo "build-fuzz: all ${#targets[@]} targets ran clean"
