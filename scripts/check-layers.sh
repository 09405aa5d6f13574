#!/bin/sh
# Enforces docs/ARCHITECTURE.md:
# - a component includes only its own headers and those of the components it may use;
# - a component's internal.h is included only by that component's own files;
# - control reaches workers only through the seam, worker/ops.h (no worker pointers);
# - control's files form a one-way stack (scripts/check-control-order.py).
set -u
cd "$(dirname "$0")/.."
allowed() {
    case "$1" in
    base) echo "base" ;;
    proto|http|evloop|spec|runtime|cas) echo "base $1" ;;
    image) echo "base cas image" ;;
    store) echo "base spec store" ;;
    worker) echo "base proto evloop runtime cas image spec worker" ;;
    build) echo "base evloop spec runtime cas image worker build" ;;
    control) echo "base evloop spec store worker cas image build control" ;;
    api) echo "base proto http evloop spec control store cas image worker build api" ;;
    client) echo "base http client" ;;
    cli) echo "base client spec cli" ;;
    init) echo "base proto runtime init" ;;
    trace) echo "base trace" ;;
    sim) echo "base evloop spec store worker control trace sim" ;;
    gust-sim) echo "base trace sim gust-sim" ;;
    gustd) echo "base proto http evloop spec runtime cas image store worker build control api gustd" ;;
    *) echo "" ;;
    esac
}
bad=0
for dir in src/*/; do
    comp=$(basename "$dir")
    ok=$(allowed "$comp")
    for f in "$dir"*.c "$dir"*.h; do
        [ -f "$f" ] || continue
        for inc in $(grep -hoE '^#include "[a-z_]+/' "$f" | sed -E 's/#include "([a-z_]+)\//\1/'); do
            case " $ok " in
            *" $inc "*) ;;
            *) echo "layering: $f includes $inc/ (allowed for $comp: $ok)"; bad=1 ;;
            esac
        done
        for inc in $(grep -hoE '^#include "[a-z_]+/internal\.h"' "$f" | sed -E 's/#include "([a-z_]+)\/.*/\1/'); do
            [ "$inc" = "$comp" ] || { echo "layering: $f includes $inc/internal.h, which is private to src/$inc"; bad=1; }
        done
        if [ "$comp" = control ]; then
            for inc in $(grep -hoE '^#include "worker/[a-z_]+\.h"' "$f" | sed -E 's/#include "(.*)"/\1/'); do
                [ "$inc" = worker/ops.h ] || { echo "layering: $f includes $inc; control uses workers only through worker/ops.h"; bad=1; }
            done
        fi
    done
done
[ $bad -eq 0 ] && echo "layering: ok"
/usr/bin/python3 scripts/check-control-order.py || bad=1
exit $bad
