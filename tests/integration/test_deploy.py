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
