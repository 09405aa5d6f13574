#!/bin/sh
# Installs the Debian 12 packages Gust needs to build, test and benchmark, if missing.
set -eu
PKGS="gcc make clang libclang-rt-14-dev libjansson-dev libsqlite3-dev busybox-static runc bubblewrap wrk python3 python3-pytest python3-websockets iproute2 libseccomp-dev nftables libzstd-dev libssl-dev openssl zlib1g-dev debootstrap python3-uvicorn"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
