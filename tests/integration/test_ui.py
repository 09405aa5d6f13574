"""The web dashboard at /ui (docs/API.md "Dashboard"): gustd serves the bundle embedded
at build time, without a token and with its CSP; and, in Debian's chromium driven by
Playwright (tests/integration/ui/dashboard.mjs), a user logs in with a token, sees a
deployed function, its call and timeline, a log line arriving live, the usage plots
drawn, and another workspace's token sees none of it. Screenshots of the pages are
saved under the test's tmp dir (printed)."""
import json
import os
import shutil
import subprocess

import pytest

from gustlib import fn_spec

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UI_TEST_DIR = os.path.join(ROOT, "tests/integration/ui")
CHROMIUM = "/usr/bin/chromium"
INSTALL_HINT = ("run scripts/install-deps.sh (it installs Debian's nodejs, npm and chromium, "
                "and runs npm ci in ui and tests/integration/ui)")

SAY = fn_spec("uitest", "say", ["sh", "-c", "read x; echo said-$x >&2; echo result-$x"], timeout=60,
              resources={"cpu": 100, "memory": 64}, scaling={"max_containers": 1, "scaledown_window": 60})


def test_ui_is_served_from_the_binary(gust):
    # No token: the page and its scripts hold no data.
    r = gust.http("GET", "/ui", token="")
    assert r.status == 301 and r.headers["location"] == "/ui/", r
    r = gust.http("GET", "/ui/", token="")
    assert r.status == 200, r
    assert r.headers["content-type"].startswith("text/html"), r.headers
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, csp
    assert "unsafe-inline" not in csp, csp
    assert r.headers["x-content-type-options"] == "nosniff", r.headers
    assert r.headers["cache-control"] == "no-cache", r.headers
    page = r.text
    assert '<script defer src="/ui/app.js">' in page, page
    assert "<script>" not in page, "no inline script (the CSP would refuse it)"
    # The served bundle is ui/dist's, byte for byte.
    for name, ctype in (("app.js", "text/javascript"), ("app.css", "text/css"), ("index.html", "text/html")):
        r = gust.http("GET", "/ui/" + name, token="")
        assert r.status == 200 and r.headers["content-type"].startswith(ctype), (name, r)
        with open(os.path.join(ROOT, "ui/dist", name), "rb") as f:
            assert r.body == f.read(), f"/ui/{name} differs from ui/dist/{name}"
    # Nothing outside the embedded table, however the path is spelled.
    for path in ("/ui/nope.js", "/ui/../v1/functions", "/ui/%2e%2e/%2e%2e/etc/passwd", "/ui/dist/app.js",
                 "/ui/app.js/", "/ui//etc/passwd", "/ui/..%2fMakefile"):
        r = gust.http("GET", path, token="")
        assert r.status == 404, (path, r)
    r = gust.http("HEAD", "/ui/app.js", token="")
    assert r.status == 200 and r.body == b"", r
    r = gust.http("POST", "/ui/", b"x", {"Content-Type": "text/plain"}, token="")
    assert r.status == 405, r
    # Only /ui itself is public: a path that merely starts with "ui" needs a token.
    assert gust.http("GET", "/uix", token="").status == 401
    # The Origin and Host guard still applies (DNS rebinding, cross-site pages).
    r = gust.http("GET", "/ui/", headers={"Host": "evil.example:8470"}, token="")
    assert r.status == 403 and r.error()["code"] == "host_not_allowed", r
    r = gust.http("GET", "/ui/", headers={"Origin": "http://evil.example"}, token="")
    assert r.status == 403 and r.error()["code"] == "origin_not_allowed", r
    # A request from gustd's own origin (the dashboard's POSTs carry it) passes the
    # guard; another port of the same host is another origin.
    own = f"http://127.0.0.1:{gust.port}"
    r = gust.http("POST", "/v1/functions/nope/nope/spawn", b"x", {"Origin": own})
    assert r.status == 404, r
    r = gust.http("POST", "/v1/functions/nope/nope/spawn", b"x", {"Origin": f"http://127.0.0.1:{gust.port + 1}"})
    assert r.status == 403 and r.error()["code"] == "origin_not_allowed", r
    # The API stays closed without a token.
    assert gust.http("GET", "/v1/functions", token="").status == 401


def require_browser_tools():
    """Fails (never skips) naming how to install what the browser test needs."""
    missing = []
    if not shutil.which("node"):
        missing.append("node (Debian package nodejs)")
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} (Debian package chromium)")
    if not os.path.isdir(os.path.join(UI_TEST_DIR, "node_modules", "playwright-core")):
        missing.append("playwright-core (npm ci in tests/integration/ui)")
    if missing:
        pytest.fail("the dashboard's browser test needs " + ", ".join(missing) + ": " + INSTALL_HINT)


def test_committed_bundle_is_built_from_the_sources(tmp_path):
    """ui/dist (committed, embedded by a build without node) is what ui/src gives."""
    if not shutil.which("node") or not os.path.isdir(os.path.join(ROOT, "ui/node_modules/esbuild")):
        pytest.fail("checking ui/dist needs node and ui/node_modules (npm ci in ui): " + INSTALL_HINT)
    out = tmp_path / "dist"
    p = subprocess.run(["node", "build.mjs", str(out)], cwd=os.path.join(ROOT, "ui"), capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    built = sorted(os.listdir(out))
    assert built == sorted(os.listdir(os.path.join(ROOT, "ui/dist"))), built
    for name in built:
        with open(out / name, "rb") as a, open(os.path.join(ROOT, "ui/dist", name), "rb") as b:
            assert a.read() == b.read(), f"ui/dist/{name} is stale: run `cd ui && npm run build` and commit it"


def test_dashboard_in_browser(gust, tmp_path):
    require_browser_tools()
    gust.deploy(SAY)
    # Objects of the other pages, made through the API as a user would.
    r = gust.http("PUT", "/v1/secrets/uisecret", json.dumps({"env": {"UI_KEY": "hunter2-value"}}))
    assert r.status == 200, r
    r = gust.http("PUT", "/v1/volumes/uivol")
    assert r.status in (200, 201), r
    token_b = gust.token_for("wsb", "developer")
    shots = tmp_path / "screenshots"
    shots.mkdir()
    env = dict(os.environ, BASE=gust.base_url, TOKEN_A=gust.admin_token, TOKEN_B=token_b, SHOTS=str(shots),
               CHROMIUM=CHROMIUM, TMPDIR=str(tmp_path))  # chromium's profile and sockets, removed with it
    p = subprocess.run(["node", os.path.join(UI_TEST_DIR, "dashboard.mjs")], env=env, capture_output=True,
                       text=True, timeout=300)
    print(f"dashboard screenshots: {shots}")
    assert p.returncode == 0, f"dashboard test failed:\n{p.stdout}\n{p.stderr}\n(screenshots in {shots})"
    saved = sorted(os.listdir(shots))
    for name in ("login", "functions", "function", "call", "usage", "containers", "secrets", "other-workspace"):
        assert f"{name}.png" in saved, saved
        with open(shots / f"{name}.png", "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
