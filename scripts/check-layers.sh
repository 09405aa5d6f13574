#!/bin/sh
# Enforces docs/ARCHITECTURE.md: a component includes only its own headers and those of
# the components it is allowed to depend on.
set -u
allowed() {
    case "$1" in
    base) echo "base" ;;
    proto|http|evloop|spec|runtime|cas) echo "base $1" ;;
    image) echo "base cas image" ;;
    store) echo "base spec store" ;;
    worker) echo "base proto evloop runtime cas image spec worker" ;;
    build) echo "base evloop spec runtime cas image worker build" ;;
    control) echo "base evloop spec store worker cas image build control" ;;
    api) echo "base http evloop spec control store cas image worker build api" ;;
    client) echo "base http client" ;;
    cli) echo "base client cli" ;;
    init) echo "base proto runtime init" ;;
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
    done
done
[ $bad -eq 0 ] && echo "layering: ok"
exit $bad
