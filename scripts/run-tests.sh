#!/bin/bash
# `make test`: layering check, unit tests, fuzz smoke runs, integration tests, all on
# the ASan+UBSan build. Ends with one "N passed, N failed" line over everything.
set -u
B=${1:-build-asan}
status=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

scripts/check-layers.sh || status=1

scripts/run-unit.sh "$B" | tee "$tmp/unit"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
unit_line=$(grep -E '^unit: [0-9]+ passed' "$tmp/unit" | tail -1)
up=$(sed -E 's/^unit: ([0-9]+) passed.*/\1/' <<<"$unit_line"); up=${up:-0}
uf=$(sed -E 's/^unit: [0-9]+ passed, ([0-9]+) failed.*/\1/' <<<"$unit_line"); uf=${uf:-1}

fp=0; ff=0
if scripts/build-fuzz.sh --run "${GUST_FUZZ_SECONDS:-15}"; then fp=1; else ff=1; status=1; fi
echo "fuzz: $fp passed, $ff failed"

pp=0; pf=0  # the SDK's copy of the runner protocol against src/proto/*.h
if python3 scripts/check-proto-py.py; then pp=1; else pf=1; status=1; fi

GUST_BUILD="$B" scripts/run-integration.sh | tee "$tmp/it"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
it_line=$(grep -E '[0-9]+ (passed|failed|error)' "$tmp/it" | tail -1)
ip=$(grep -oE '[0-9]+ passed' <<<"$it_line" | grep -oE '[0-9]+'); ip=${ip:-0}
if_=$(grep -oE '[0-9]+ failed' <<<"$it_line" | grep -oE '[0-9]+'); if_=${if_:-0}
ie=$(grep -oE '[0-9]+ errors?' <<<"$it_line" | grep -oE '[0-9]+'); ie=${ie:-0}
[ "$ip" -gt 0 ] || status=1

tp=$((up + fp + pp + ip)); tf=$((uf + ff + pf + if_ + ie))
[ $status -ne 0 ] && [ $tf -eq 0 ] && tf=1
echo "$tp passed, $tf failed"
exit $status
