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
# The dashboard (ui/) and its browser test (tests/integration/test_ui.py): node and npm
# build the bundle and run Playwright (npm's playwright-core), which drives Debian's
# chromium (at /usr/bin/chromium, where the test looks); without recommends (fonts and drivers a headless test does not need).
# By command, not package: a node from elsewhere (NodeSource's bundles npm, and
# conflicts with Debian's npm) serves as well.
missing_ui=""
command -v node >/dev/null 2>&1 || missing_ui="$missing_ui nodejs"
command -v npm >/dev/null 2>&1 || missing_ui="$missing_ui npm"
[ -x /usr/bin/chromium ] || missing_ui="$missing_ui chromium"
# playwright-core for the browser test and the dashboard's build tools, at the versions
# their locks pin (test_ui.py rebuilds the bundle to check the committed ui/dist).
ui_test_modules() {
    [ -d "$(dirname "$0")/../tests/integration/ui/node_modules/playwright-core" ] ||
        (cd "$(dirname "$0")/../tests/integration/ui" && npm ci --no-audit --no-fund --loglevel=error)
    [ -d "$(dirname "$0")/../ui/node_modules/esbuild" ] ||
        (cd "$(dirname "$0")/../ui" && npm ci --no-audit --no-fund --loglevel=error)
}
if [ -z "$missing" ] && [ -z "${missing_prom:-}" ] && [ -z "$missing_ui" ]; then
    ui_test_modules
    exit 0
fi
echo "installing:$missing${missing_prom:+ prometheus}$missing_ui" >&2
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
[ -z "$missing_ui" ] || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing_ui >/dev/null
ui_test_modules
