#!/bin/bash
# `make run`: start gustd with its embedded defaults unless one is already answering,
# deploy examples/hello.toml, call it, print the result and the latency.
set -euo pipefail
B=${1:-build}
GUST="$PWD/$B/gust"
ADDR=${GUST_ADDR:-127.0.0.1:8470}
export GUST_ADDR=$ADDR
if [ "$(id -u)" -eq 0 ]; then DATA=/var/lib/gust; else DATA="$HOME/.local/share/gust"; fi
# Exit code 4: nothing answers at ADDR (0: it answered; 3: it answered, but refused the
# token this shell has, which install_token below fixes).
rc=0
"$GUST" health >/dev/null 2>&1 || rc=$?
if [ "$rc" -ne 4 ]; then
    echo "gustd already running at $ADDR"
else
    mkdir -p "$DATA"
    echo "starting gustd (data $DATA, log $DATA/gustd.log)"
    nohup "$PWD/$B/gustd" --data-dir "$DATA" --listen "$ADDR" >>"$DATA/gustd.log" 2>&1 </dev/null &
    for _ in $(seq 1 100); do
        [ -s "$DATA/admin.token" ] && break
        sleep 0.1
    done
fi

# Every request needs a token. gustd wrote its admin token to $DATA/admin.token (0600)
# on its first start; put it where the CLI and SDK look, unless what they find works.
CFG="${XDG_CONFIG_HOME:-$HOME/.config}/gust"
if ! "$GUST" whoami >/dev/null 2>&1; then
    if [ ! -r "$DATA/admin.token" ]; then
        echo "gustd at $ADDR refuses this shell's token and $DATA/admin.token is not readable;" \
             "set GUST_TOKEN to a token of that gustd (gust token create)" >&2
        exit 1
    fi
    mkdir -p "$CFG"
    chmod 700 "$CFG"
    (umask 077 && cp "$DATA/admin.token" "$CFG/token.new" && mv "$CFG/token.new" "$CFG/token")
    echo "wrote gustd's admin token to $CFG/token (the CLI and SDK read it; \$GUST_TOKEN wins)"
fi
for _ in $(seq 1 100); do
    "$GUST" health >/dev/null 2>&1 && break
    sleep 0.1
done
"$GUST" health >/dev/null || { echo "gustd did not start; see $DATA/gustd.log" >&2; tail -20 "$DATA/gustd.log" >&2; exit 1; }
echo "+ gust deploy examples/hello.toml"
"$GUST" deploy examples/hello.toml
for what in "cold start" "warm"; do
    t0=$(date +%s%N)
    out=$(echo "gust" | "$GUST" call hello.greet)
    t1=$(date +%s%N)
    printf '+ echo gust | gust call hello.greet   (%s)\n%s\n' "$what" "$out"
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "latency: %.1f ms (includes starting the gust CLI)\n", (b - a) / 1e6 }'
done
echo
echo "gustd keeps running at $ADDR. Try: $B/gust ls, $B/gust ps, $B/gust usage, $B/gust logs hello.greet"
