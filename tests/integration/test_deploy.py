"""Deploying apps: JSON and TOML specs, per-input and runner functions, redeploys."""

from gustlib import Bg, echo_fn, fn_spec, wait_until

HELLO = ["sh", "-c", "read x; echo hello $x"]


def test_deploy_json_per_input(gust):
    r = gust.deploy(fn_spec("demo", "hello", HELLO, image="busybox", timeout=30,
                            resources={"cpu": 100, "memory": 64}))
    assert r["app"] == "demo"
    assert [f["name"] for f in r["functions"]] == ["hello"]
    assert isinstance(r["functions"][0]["version"], int)
    r = gust.call("demo", "hello", b"world\n")
    assert r.status == 200, r
    assert r.body == b"hello world\n"
    assert r.headers.get("gust-call-id", "").startswith("fc-")
    assert r.headers.get("gust-status") == "succeeded"
    # Listed, with the normalized spec.
    f = gust.function("demo", "hello")
    assert f["app"] == "demo" and f["name"] == "hello" and f["kind"] == "exec" and f["image"] == "busybox"
    assert f["spec"]["command"] == HELLO
    apps = gust.get_json("/v1/apps")["apps"]
    assert any(a["name"] == "demo" and a["state"] == "deployed" for a in apps), apps


def test_deploy_toml_http_and_cli(gust, tmp_path):
    toml = '''
app = "tom"

[[functions]]
name = "cat"
kind = "exec"
command = ["cat"]
image = "busybox"
timeout = 20
env = { GREETING = "hi" }

[functions.resources]
cpu = 100
memory = 64

[functions.scaling]
max_containers = 2
scaledown_window = 30

[[functions]]
name = "greet"
kind = "exec"
command = ["sh", "-c", "read x; echo $GREETING $x"]
env = { GREETING = "hi" }
'''
    r = gust.deploy(toml)
    assert sorted(f["name"] for f in r["functions"]) == ["cat", "greet"]
    assert gust.call_ok("tom", "cat", b"meow") == b"meow"
    assert gust.call_ok("tom", "greet", b"bob\n") == b"hi bob\n"
    f = gust.function("tom", "cat")
    assert f["spec"]["scaling"]["max_containers"] == 2
    # The same file through the CLI gives every function a new version.
    p = tmp_path / "app.toml"
    p.write_text(toml)
    c = gust.cli("deploy", str(p))
    assert c.rc == 0, c
    assert gust.function("tom", "cat")["version"] > f["version"]


def test_deploy_runner_mode_echo(gust_echo):
    gust = gust_echo
    gust.deploy(echo_fn("run", "echo"))
    assert gust.call_ok("run", "echo", b"abc") == b"abc"
    assert gust.call_ok("run", "echo", b"second") == b"second"
    f = gust.function("run", "echo")
    assert f["spec"]["mode"] == "runner"
    # One long-lived process served both inputs.
    cs = gust.containers("run", "echo")
    assert len(cs) == 1 and cs[0]["inputs_done"] >= 2, cs


def test_redeploy_new_version_inflight_finishes_on_old(gust):
    v1 = fn_spec("rd", "f", ["sh", "-c", "cat >/dev/null; sleep 2; echo v1"], timeout=30,
                 resources={"cpu": 100, "memory": 64})
    v2 = fn_spec("rd", "f", ["sh", "-c", "cat >/dev/null; echo v2"], timeout=30,
                 resources={"cpu": 100, "memory": 64})
    ver1 = gust.deploy(v1)["functions"][0]["version"]
    inflight = Bg(gust.call, "rd", "f", b"x")
    wait_until(lambda: gust.function("rd", "f")["running"] >= 1, 10, msg="the slow call to run")
    ver2 = gust.deploy(v2)["functions"][0]["version"]
    assert ver2 > ver1
    # The deploy answered while the old version's call still runs: it did not wait for it.
    assert inflight.is_alive(), "deploy waited for the running call"
    assert gust.function("rd", "f")["version"] == ver2
    r = gust.call("rd", "f", b"y")
    assert r.status == 200 and r.body == b"v2\n", r
    old = inflight.get(30)
    assert old.status == 200 and old.body == b"v1\n", old
    st = gust.status(old.headers["gust-call-id"])
    assert st["version"] == ver1 and st["status"] == "succeeded", st
    assert gust.status(r.headers["gust-call-id"])["version"] == ver2


def _echo(name, **kw):
    return echo_fn("ret", name, **kw)["functions"][0]


def test_redeploy_retires_functions_the_spec_left_out(gust_echo):
    """A deploy replaces the app's set of functions, as Modal's: one the new spec lacks
    is gone from the listings, a call to it is 404 naming the deploy, its calls are
    cancelled and its containers stop. A with_options variant (GUST_VARIANT_OF) stays
    while its base does; a deploy of variants alone retires nothing. The retirement
    survives a restart, and a later deploy with the function brings it back."""
    gust = gust_echo
    slow = {"name": "slow", "kind": "exec", "command": ["sh", "-c", "sleep 60"], "image": "busybox",
            "timeout": 120, "resources": {"cpu": 100, "memory": 64}}
    gust.deploy({"app": "ret", "functions": [
        _echo("f"), _echo("g"), slow,
        _echo("f-v0123456789", env={"GUST_VARIANT_OF": "f@1"}),
        _echo("g-v0123456789", env={"GUST_VARIANT_OF": "g@1"})]})
    assert gust.call_ok("ret", "g", b"hi") == b"hi"
    gust.wait_idle("ret", "g", 1)
    running = gust.spawn("ret", "slow")
    wait_until(lambda: gust.function("ret", "slow")["running"] >= 1, 30, msg="the slow call to run")

    gust.deploy({"app": "ret", "functions": [_echo("f")]})
    names = sorted(f["name"] for f in gust.functions() if f["app"] == "ret")
    assert names == ["f", "f-v0123456789"], names
    for gone in ("g", "slow", "g-v0123456789"):
        r = gust.http("GET", f"/v1/functions/ret/{gone}")
        assert r.status == 404, r
        r = gust.call("ret", gone, b"x")
        assert r.status == 404 and "removed" in r.error()["message"], r
    st = gust.status(running)
    assert st["status"] == "cancelled" and "removed from app ret" in (st.get("error") or {}).get("message", ""), st
    wait_until(lambda: not gust.containers("ret", "g") and not gust.containers("ret", "slow"), 30,
               msg="the retired functions' containers to stop")
    assert gust.call_ok("ret", "f", b"still") == b"still"
    apps = {a["name"]: a for a in gust.get_json("/v1/apps")["apps"]}
    assert apps["ret"]["functions"] == 2, apps
    assert "slow" not in gust.cli("ls").out

    # The SDK deploys a variant alone on its first use: nothing else goes.
    gust.deploy({"app": "ret", "functions": [_echo("f-vfedcba9876", env={"GUST_VARIANT_OF": "f@2"})]})
    names = sorted(f["name"] for f in gust.functions() if f["app"] == "ret")
    assert names == ["f", "f-v0123456789", "f-vfedcba9876"], names

    gust.restart()
    names = sorted(f["name"] for f in gust.functions() if f["app"] == "ret")
    assert names == ["f", "f-v0123456789", "f-vfedcba9876"], names
    assert gust.call("ret", "g", b"x").status == 404

    gust.deploy({"app": "ret", "functions": [_echo("f"), _echo("g")]})
    assert gust.call_ok("ret", "g", b"back") == b"back"
