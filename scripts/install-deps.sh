#!/bin/sh
# Installs the Debian 12 packages Gust needs to build, test and benchmark, if missing.
set -eu
PKGS="gcc make clang libclang-rt-14-dev libjansson-dev libsqlite3-dev busybox-static runc bubblewrap wrk python3 python3-pytest python3-websockets iproute2 libseccomp-dev nftables libzstd-dev libssl-dev openssl zlib1g-dev debootstrap python3-uvicorn"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# prometheus: tests/integration/test_metrics.py runs its own server scraping a test
# gustd. Without its recommends (node-exporter, a second daemon), and the system's
# instance the package may start is stopped and disabled: the test needs only the binary.
dpkg-query -W -f='${Status}' prometheus 2>/dev/null | grep -q "install ok installed" || missing_prom=1
[ -z "$missing" ] && [ -z "${missing_prom:-}" ] && exit 0
echo "installing:$missing${missing_prom:+ prometheus}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
[ -z "$missing" ] || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
if [ -n "${missing_prom:-}" ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    if [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
    elif command -v service >/dev/null 2>&1; then
        $SUDO service prometheus stop >/dev/null 2>&1 || true
    fi
fi
