"""Who may do what (docs/API.md "Authentication", docs/SECURITY.md). Table-driven over
every route of the router, read from src/api/routes.c so that a new route is covered
the day it is added: no token -> 401; a role below the route's -> 403; another
workspace's objects -> 404, the same answer as a missing one; revoked and expired
tokens -> 401; token strings appear in no log, answer or listing."""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

from gustlib import BUILD, fn_spec, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLES = {"CTL_ROLE_INVOKER": 1, "CTL_ROLE_DEVELOPER": 2, "CTL_ROLE_ADMIN": 3}


def router_table():
    """[(method, pattern, least role)] as compiled into gustd."""
    with open(os.path.join(ROOT, "src/api/routes.c")) as f:
        text = f.read()
    table = text[text.index("api_route_table[] = {"):]
    table = table[:table.index("};")]
    rows = re.findall(r'\{"(\w+)", "([^"]+)", (CTL_ROLE_\w+), \w+, \w+\}', table)
    assert len(rows) >= 30, rows
    return [(m, p, ROLES[r]) for m, p, r in rows]


ROUTES = router_table()


def concrete(pattern, objs):
    """The pattern with each "*" replaced by the object that position names."""
    segs = pattern.strip("/").split("/")
    out = []
    for i, s in enumerate(segs):
        if s != "*":
            out.append(s)
            continue
        kind = segs[1]
        if kind == "functions":
            out.append(objs["app"] if i == 2 else objs["fn"])
        elif kind == "apps":
            out.append(objs["app"])
        elif kind in ("dicts", "queues"):
            out.append(objs[kind] if i == 2 else "len")
        elif kind == "volumes":
            out.append(objs[kind] if i == 2 else "remove")
        else:
            out.append(objs[kind])
    return "/" + "/".join(out)


def body_for(method, pattern):
    """A well-formed body for the routes that take one (so 4xx is about who asks)."""
    if method in ("GET", "DELETE"):
        return None, {}
    j = {"Content-Type": "application/json"}
    if pattern == "/v1/deploy":
        return json.dumps(fn_spec("other", "f", ["cat"], image="busybox")), j
    if pattern.endswith("/map"):
        return b'"a"\n', {"Content-Type": "application/x-ndjson"}
    if pattern.endswith(("/call", "/spawn")) or pattern == "/v1/blobs/*":
        return b"x", {"Content-Type": "application/octet-stream"}
    if pattern == "/v1/secrets/*":
        return json.dumps({"env": {"K": "v"}}), j
    if pattern == "/v1/blobs/missing":
        return json.dumps({"digests": []}), j
    if pattern == "/v1/mounts":
        return json.dumps({"entries": []}), j
    if pattern == "/v1/workspaces":
        return json.dumps({"name": "made-by-test"}), j
    if pattern == "/v1/workspaces/*/quotas":
        return json.dumps({}), j
    if pattern == "/v1/tokens":
        return json.dumps({"workspace": "default", "role": "invoker"}), j
    return json.dumps({}), j


@pytest.fixture
def world(gust):
    """Workspace "default" (admin token) with an app, a call, a secret and an image;
    workspace "wsb" with an admin-made developer and invoker token of its own."""
    g = gust
    g.deploy(fn_spec("authz", "echo", ["cat"], image="busybox", secrets=["db"]), expect=400)
    r = g.http("PUT", "/v1/secrets/db", json.dumps({"env": {"DB_PASSWORD": "root-only-value"}}),
               {"Content-Type": "application/json"})
    assert r.status == 200, r
    g.deploy(fn_spec("authz", "echo", ["cat"], image="busybox", secrets=["db"]))
    assert g.call_ok("authz", "echo", b"mine") == b"mine"
    call_id = g.spawn("authz", "echo", b"spawned")
    g.wait_status(call_id, "succeeded")
    rootfs = os.path.join(g.tmpdir, "img-rootfs")
    os.makedirs(os.path.join(rootfs, "etc"), exist_ok=True)
    with open(os.path.join(rootfs, "etc", "hello"), "w") as f:
        f.write("hi\n")
    g.add_image("authzimg", rootfs)
    import hashlib
    blob = "sha256:" + hashlib.sha256(b"x").hexdigest()
    r = g.http("PUT", f"/v1/blobs/{blob}", b"x", {"Content-Type": "application/octet-stream"})
    assert r.status == 201, r
    tokens = {
        "admin": g.admin_token,
        "b_dev": g.token_for("wsb", "developer"),
        "b_inv": g.token_for("wsb", "invoker"),
        "a_inv": g.token_for("default", "invoker"),
        "a_dev": g.token_for("default", "developer"),
    }
    for kind in ("dicts", "queues", "volumes"):
        r = g.http("PUT", f"/v1/{kind}/shared")
        assert r.status == 200, r
    tok_list = g.get_json("/v1/tokens")["tokens"]
    objs = {"dicts": "shared", "queues": "shared", "volumes": "shared", "app": "authz", "fn": "echo", "calls": call_id, "images": "authzimg", "secrets": "db",
            "blobs": blob, "workspaces": "wsb",
            "tokens": next(t["id"] for t in tok_list if t["workspace"] == "wsb" and t["role"] == "invoker")}
    return g, tokens, objs


def send(g, method, pattern, objs, token):
    body, headers = body_for(method, pattern)
    return g.http(method, concrete(pattern, objs), body, headers, token=token, timeout=30)


def test_every_route_needs_a_token(world):
    g, tokens, objs = world
    forged = tokens["admin"][:-4] + ("aaaa" if not tokens["admin"].endswith("aaaa") else "bbbb")
    for method, pattern, _ in ROUTES:
        for tok in ("", forged, "not-a-token", tokens["admin"] + "x"):
            r = send(g, method, pattern, objs, tok)
            assert r.status == 401, (method, pattern, tok[:8], r)
            assert r.error()["code"] == "unauthorized"
    # Basic auth, a lower-case scheme with a bad token, and an empty bearer: 401 too.
    for h in ("Basic YWRtaW46YWRtaW4=", "bearer nope", "Bearer "):
        r = g.http("GET", "/v1/functions", headers={"Authorization": h}, token="")
        assert r.status == 401, (h, r)
    # Nothing was done by any of it.
    assert [a["name"] for a in g.get_json("/v1/apps")["apps"]] == ["authz"]
    # The one exemption, outside the table: the dashboard's page and scripts (/ui, the
    # embedded bundle, no data; test_ui.py checks what it serves). Its data calls are
    # table routes and need the token like any client's.
    assert not any(p == "/ui" or p.startswith("/ui/") for _, p, _ in ROUTES)
    assert g.http("GET", "/ui/", token="").status == 200


def test_roles_are_enforced_on_every_route(world):
    g, tokens, objs = world
    for name, level in (("a_inv", 1), ("a_dev", 2)):
        for method, pattern, need in ROUTES:
            r = send(g, method, pattern, objs, tokens[name])
            if need > level:
                assert r.status == 403, (name, method, pattern, r)
                assert r.error()["code"] == "forbidden" and "role" in r.error()["message"], r
            else:
                assert r.status not in (401, 403), (name, method, pattern, r)
        if name == "a_inv":
            # What the invoker was allowed did not stop the app or remove anything; it
            # calls and reads its results.
            r = g.http("POST", "/v1/functions/authz/echo/call", b"inv", {"Content-Type": "application/octet-stream"},
                       token=tokens["a_inv"])
            assert r.status == 200 and r.body == b"inv", r
            assert g.get_json("/v1/images/authzimg")["name"] == "authzimg"
    # The developer's routes did: it stopped the app (POST /v1/apps/authz/stop).
    apps = {a["name"]: a["state"] for a in g.get_json("/v1/apps")["apps"]}
    assert apps == {"authz": "stopped", "other": "deployed"}, apps


# What workspace B gets for each route that names one of A's objects: 404, as for a
# missing object. Routes that create (PUT a secret, PUT a blob) act on B's own.
CROSS_CREATES = {("PUT", "/v1/secrets/*"), ("PUT", "/v1/blobs/*"), ("PUT", "/v1/dicts/*"), ("PUT", "/v1/queues/*"),
                 ("PUT", "/v1/volumes/*")}


def test_other_workspace_sees_none_of_it(world):
    g, tokens, objs = world
    # A blob A uploaded is "missing" for B: no answer tells B what A holds.
    r = g.http("POST", "/v1/blobs/missing", json.dumps({"digests": [objs["blobs"]]}),
               {"Content-Type": "application/json"}, token=tokens["b_dev"])
    assert r.status == 200 and r.json()["missing"] == [objs["blobs"]], r
    r = g.http("POST", "/v1/blobs/missing", json.dumps({"digests": [objs["blobs"]]}),
               {"Content-Type": "application/json"})
    assert r.status == 200 and r.json()["missing"] == [], r
    for tok in ("b_dev", "b_inv"):
        level = 2 if tok == "b_dev" else 1
        # Routes that create (B's own object of that name) go last.
        for method, pattern, need in sorted(ROUTES, key=lambda r: (r[0], r[1]) in CROSS_CREATES):
            if "*" not in pattern or need > level or pattern.startswith(("/v1/workspaces", "/v1/tokens")):
                continue
            r = send(g, method, pattern, objs, tokens[tok])
            if (method, pattern) in CROSS_CREATES:
                assert r.status in (200, 201), (tok, method, pattern, r)
                if pattern.startswith(("/v1/dicts", "/v1/queues", "/v1/volumes")):
                    # B's own, of the same name: removed, so that the next token's
                    # requests find nothing again.
                    r = g.http("DELETE", concrete(pattern, objs), token=tokens["b_dev"])
                    assert r.status == 200, r
                continue
            if pattern == "/v1/blobs/*":
                continue
            assert r.status == 404, (tok, method, pattern, r)
            assert r.error()["code"] == "not_found", r
            missing = concrete(pattern, dict(objs, app="no-such-app", calls="fc-nosuchcall0000",
                                             images="no-such-image", secrets="no-such-secret",
                                             dicts="no-such-dict", queues="no-such-queue",
                                             volumes="no-such-volume"))
            r2 = g.http(method, missing, *body_for(method, pattern), token=tokens[tok])
            assert r2.status == 404, (missing, r2)
    b = tokens["b_dev"]
    # Listings of B show nothing of A.
    for path, key in (("/v1/apps", "apps"), ("/v1/functions", "functions"), ("/v1/containers", "containers"),
                      ("/v1/secrets", "secrets")):
        r = g.http("GET", path, token=b)
        assert r.status == 200, r
        # (B has a secret "db" of its own by now, made by PUT above: with its own key.)
        assert "authz" not in r.body.decode() and "DB_PASSWORD" not in r.body.decode(), (path, r)
    r = g.http("GET", "/v1/usage", token=b)
    assert r.status == 200 and "authz" not in r.body.decode(), r
    names = [i["name"] for i in g.http("GET", "/v1/images", token=b).json()["images"]]
    assert "authzimg" not in names and "busybox" in names, names
    # B's secret "db" (created above) is B's own; A's is untouched.
    assert [s["name"] for s in g.get_json("/v1/secrets")["secrets"]] == ["db"]
    assert [s["name"] for s in g.http("GET", "/v1/secrets", token=b).json()["secrets"]] == ["db"]
    r = g.http("POST", "/v1/deploy", json.dumps(fn_spec("envcheck", "f", ["sh", "-c", "echo $DB_PASSWORD"],
                                                       image="busybox", secrets=["db"])),
               {"Content-Type": "application/json"})
    assert r.status == 200, r
    assert g.call_ok("envcheck", "f") == b"root-only-value\n"


def test_cross_workspace_redeploy_cannot_touch_the_callers_function(world):
    """B deploys an app with A's name: it gets its own; A's callers still reach A's."""
    g, tokens, _ = world
    evil = fn_spec("authz", "echo", ["sh", "-c", "echo pwned"], image="busybox")
    r = g.http("POST", "/v1/deploy", json.dumps(evil), {"Content-Type": "application/json"}, token=tokens["b_dev"])
    assert r.status == 200, r
    assert g.call_ok("authz", "echo", b"safe") == b"safe"
    r = g.http("POST", "/v1/functions/authz/echo/call", b"", {"Content-Type": "application/octet-stream"},
               token=tokens["b_inv"])
    assert r.status == 200 and r.body == b"pwned\n", r
    # B cannot stop A's app either: it stops its own.
    r = g.http("POST", "/v1/apps/authz/stop", token=tokens["b_dev"])
    assert r.status == 200, r
    assert g.call_ok("authz", "echo", b"still-safe") == b"still-safe"


def test_secret_of_another_workspace_cannot_be_named(world):
    """The attack: deploy a function that names root's secret and prints its env."""
    g, tokens, _ = world
    steal = fn_spec("thief", "f", ["sh", "-c", "env"], image="busybox", secrets=["db"])
    # wsb has a "db" secret of its own only if an earlier test made one: use a fresh name.
    steal["functions"][0]["secrets"] = ["db"]
    r = g.http("POST", "/v1/deploy", json.dumps(steal), {"Content-Type": "application/json"},
               token=g.token_for("wsc", "developer"))
    assert r.status == 400, r
    assert r.error()["field"] == "functions[0].secrets[0]" and "no secret named" in r.error()["message"], r


def test_revoked_and_expired_tokens(world):
    g, tokens, _ = world
    inv = tokens["b_inv"]
    assert g.http("GET", "/v1/whoami", token=inv).json() == {
        "workspace": "wsb", "role": "invoker",
        "token_id": inv.split("_")[1]}
    r = g.cli("token", "revoke", inv.split("_")[1])
    assert r.rc == 0 and "revoked" in r.out, r
    r = g.http("GET", "/v1/functions", token=inv)
    assert r.status == 401, r
    r = g.http("POST", "/v1/tokens", json.dumps({"workspace": "wsb", "role": "developer", "expires_in": 1}),
               {"Content-Type": "application/json"})
    assert r.status == 201, r
    short = r.json()["token"]
    assert r.json()["expires_at"] > time.time()
    assert g.http("GET", "/v1/functions", token=short).status == 200
    time.sleep(1.2)
    r = g.http("GET", "/v1/functions", token=short)
    assert r.status == 401 and "expired" in r.error()["message"], r
    # Revoked and expired survive a restart (tokens are stored hashed, read back).
    g.restart()
    assert g.http("GET", "/v1/functions", token=inv).status == 401
    assert g.http("GET", "/v1/functions", token=tokens["b_dev"]).status == 200


def test_token_strings_appear_nowhere(world):
    g, tokens, _ = world
    listing = g.http("GET", "/v1/tokens").body.decode()
    g.cli("token", "ls")
    ls = g.cli("token", "ls").out
    for t in tokens.values():
        secret = t.split("_", 2)[2]
        assert secret not in listing and secret not in ls
        assert secret not in g.stderr_text(), "a token reached gustd's log"
        for path in ("/v1/workspaces", "/v1/functions", "/v1/whoami", "/v1/health"):
            assert secret not in g.http("GET", path).body.decode(), path
    # Stored hashed: the database file holds no token secret.
    with open(os.path.join(g.data_dir, "gust.db"), "rb") as f:
        db = f.read()
    for t in tokens.values():
        assert t.split("_", 2)[2].encode() not in db


def test_admin_token_file_and_cli(gust):
    g = gust
    path = os.path.join(g.data_dir, "admin.token")
    st = os.stat(path)
    assert st.st_mode & 0o777 == 0o600, oct(st.st_mode)
    assert g.cli("whoami").out.strip().startswith("workspace default, role admin")
    r = g.cli("workspace", "create", "team-x", "--quota", "containers=2", "--quota", "cpu=1.5")
    assert r.rc == 0, r
    r = g.cli("--json", "workspace", "ls")
    ws = {w["name"]: w for w in r.json()["workspaces"]}
    assert ws["team-x"]["quotas"] == {"containers": 2, "cpu": 1.5}, ws
    r = g.cli("token", "create", "--workspace", "team-x", "--role", "developer", "--name", "ci")
    assert r.rc == 0 and r.out.strip().startswith("gust_"), r
    tok = r.out.strip()
    r = g.cli("whoami", env={"GUST_TOKEN": tok})
    assert r.out.strip().startswith("workspace team-x, role developer"), r
    r = g.cli("token", "create", "--workspace", "team-x", "--role", "admin", env={"GUST_TOKEN": tok})
    assert r.rc == 3 and "admin role" in r.err, r
    r = g.cli("token", "create", "--workspace", "nope", "--role", "invoker")
    assert r.rc == 3 and "no workspace named" in r.err, r
    # The restart keeps the admin token as it was (not re-minted).
    before = g.admin_token
    g.restart()
    assert g.admin_token == before and g.cli("whoami").rc == 0


def test_workspace_quota_makes_calls_wait(world):
    g, tokens, _ = world
    r = g.http("POST", "/v1/workspaces", json.dumps({"name": "tiny", "quotas": {"containers": 1}}),
               {"Content-Type": "application/json"})
    assert r.status == 201, r
    dev = g.token_for("tiny", "developer")
    spec = {"app": "q", "functions": [
        dict(fn_spec("q", "a", ["sh", "-c", "cat; sleep 30"], image="busybox")["functions"][0]),
        dict(fn_spec("q", "b", ["cat"], image="busybox")["functions"][0])]}
    r = g.http("POST", "/v1/deploy", json.dumps(spec), {"Content-Type": "application/json"}, token=dev)
    assert r.status == 200, r
    ra = g.http("POST", "/v1/functions/q/a/spawn", b"x", {"Content-Type": "application/octet-stream"}, token=dev)
    assert ra.status == 202, ra
    wait_until(lambda: g.http("GET", "/v1/functions/q/a", token=dev).json()["running"] == 1, 30, msg="a running")
    rb = g.http("POST", "/v1/functions/q/b/spawn", b"y", {"Content-Type": "application/octet-stream"}, token=dev)
    assert rb.status == 202, rb

    def reason():
        return g.http("GET", "/v1/functions/q/b", token=dev).json().get("waiting_reason") or ""
    wait_until(lambda: "containers quota" in reason(), 15, msg="b waits on the quota")
    assert "workspace tiny" in reason()
    # Raising the quota lets b run.
    r = g.http("PUT", "/v1/workspaces/tiny/quotas", json.dumps({"containers": 2}),
               {"Content-Type": "application/json"})
    assert r.status == 200, r
    cid = rb.json()["call_id"]
    r = g.http("GET", f"/v1/calls/{cid}?wait=30", token=dev, timeout=60)
    assert r.status == 200 and r.body == b"y", r


def test_stored_bytes_quota_refuses_uploads(world):
    g, _, _ = world
    r = g.http("POST", "/v1/workspaces", json.dumps({"name": "store-q", "quotas": {"stored_bytes": 1000}}),
               {"Content-Type": "application/json"})
    assert r.status == 201, r
    dev = g.token_for("store-q", "developer")
    import hashlib
    small, big = b"s" * 600, b"b" * 600
    for data, want in ((small, 201), (big, 413)):
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        r = g.http("PUT", f"/v1/blobs/{d}", data, {"Content-Type": "application/octet-stream"}, token=dev)
        assert r.status == want, r
    assert r.error()["code"] == "quota_exceeded" and "stored_bytes" in r.error()["message"], r


def test_unprivileged_local_user_cannot_use_gustd(gust):
    """The attack from the issue, as user nobody on the same host: without root's token
    (0600 in gustd's data dir) every request is refused; the file cannot be read."""
    g = gust
    # pytest's own tmp dirs are root's 0700: nobody gets a world-readable one.
    d = tempfile.mkdtemp(prefix="gust-nobody-")
    try:
        os.chmod(d, 0o755)
        gust_bin = os.path.join(d, "gust")
        shutil.copy(os.path.join(BUILD, "gust"), gust_bin)
        os.chmod(gust_bin, 0o755)
        spec = os.path.join(d, "evil.toml")
        with open(spec, "w") as f:
            f.write('app = "authz"\n[[functions]]\nname = "echo"\nkind = "exec"\ncommand = ["sh", "-c", "id"]\n'
                    'image = "busybox"\n')
        os.chmod(spec, 0o644)
        g.deploy(fn_spec("authz", "echo", ["cat"], image="busybox"))

        def as_nobody(*args, cmd=None):
            env = {"PATH": "/usr/bin:/bin", "HOME": d, "GUST_ADDR": g.addr}
            return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                                   *(cmd or [gust_bin, *args])], capture_output=True, env=env, timeout=60)
        for args in (["deploy", spec], ["stop", "authz"], ["logs", "authz.echo"], ["ls"], ["secret", "ls"]):
            p = as_nobody(*args)
            assert p.returncode == 3 and b"token" in p.stderr, (args, p)
        p = as_nobody(cmd=["cat", os.path.join(g.data_dir, "admin.token")])
        assert p.returncode != 0 and b"Permission denied" in p.stderr, p
        assert g.call_ok("authz", "echo", b"untouched") == b"untouched"
    finally:
        shutil.rmtree(d, ignore_errors=True)
