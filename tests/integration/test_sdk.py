"""The Python SDK against a real gustd (one daemon for the module, see shared_gust):
an app of decorated functions deployed with its image built (debian_slim) and its
source and the SDK mounted read-only, .remote(), .spawn() and FunctionCall.get(),
.map() ordered and unordered, .starmap(), .local(), remote exceptions re-raised with
their type and traceback, failure kinds, classes, secrets, source trees uploaded only
where gustd lacks a chunk, and the HTTP API under them."""
import importlib.util
import io
from gustlib import sdk_module, wait_until
import json
import os
import sys

SDK = os.path.join(os.path.dirname(__file__), "..", "..", "sdk", "python")

MODULE = '''
import gust

app = gust.App("sdkt")


@app.function(timeout=60, max_containers=4)
def square(x, add=0):
    print("squaring", x)
    return x * x + add


@app.function()
def boom(msg):
    raise ValueError("remote says " + msg)
'''


def load(tmp_path, name="sdkmod", text=MODULE):
    return sdk_module(tmp_path, name, text)


def test_python_functions_remote_spawn_map_and_errors(shared_gust, tmp_path):
    gust = shared_gust
    mod = load(tmp_path)
    import gust as gsdk
    mod.app.addr = gust.addr
    import io
    progress = io.StringIO()
    dep = mod.app.deploy(progress=progress)
    assert dep["app"] == "sdkt" and {f["name"] for f in dep["functions"]} == {"square", "boom"}, dep
    assert mod.square.local(3) == 9
    assert mod.square.remote(7) == 49
    assert mod.square.remote(2, add=1) == 5
    call = mod.square.spawn(11)
    assert call.get(timeout=60) == 121
    assert list(mod.square.map(range(20))) == [i * i for i in range(20)]
    assert sorted(mod.square.map(range(10), order_outputs=False)) == [i * i for i in range(10)]
    assert list(mod.square.starmap([(1,), (2,)], kwargs={"add": 10})) == [11, 14]
    try:
        mod.boom.remote("no")
        raise AssertionError("no exception")
    except ValueError as e:
        assert str(e) == "remote says no"
        assert isinstance(e.__cause__, gsdk.RemoteError) and "in boom" in str(e.__cause__), e.__cause__
    out = list(mod.boom.map(["a", "b"], return_exceptions=True))
    assert [type(x) for x in out] == [ValueError, ValueError] and str(out[1]) == "remote says b", out
    # A redeploy with the same sources reuses every build step.
    progress = io.StringIO()
    mod.app.deploy(progress=progress)
    assert "done in" not in progress.getvalue(), progress.getvalue()
    logs = gust.http("GET", "/v1/functions/sdkt/square/logs").body.decode()
    assert "squaring 7" in logs, logs
    # print() inside an input is logged with its call id.
    line = [x for x in logs.splitlines() if x.endswith(" squaring 11")]
    assert line and f" {call.object_id} stdout squaring 11" in line[0], (call.object_id, logs)


def test_gust_deploy_of_a_python_file(shared_gust, tmp_path):
    gust = shared_gust
    d = tmp_path / "proj"
    d.mkdir()
    (d / "hello.py").write_text('''
import gust
app = gust.App("pyhello")

@app.function(image=gust.Image.debian_slim().env({"WHO": "world"}))
def hello(name=None):
    import os
    return "hello, " + (name or os.environ["WHO"])
''')
    r = gust.cli("deploy", str(d / "hello.py"), timeout=600)
    assert r.rc == 0 and "deployed app pyhello" in r.out and "pyhello.hello  version 1" in r.out, r
    assert "FROM debian_slim" in r.err, r
    sys.path.insert(0, SDK)
    import gust as gsdk
    spec = importlib.util.spec_from_file_location("hello", d / "hello.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.app.addr = gust.addr
    assert mod.hello.remote() == "hello, world" and mod.hello.remote("gust") == "hello, gust"
    r = gust.cli("deploy", str(d / "missing.py"))
    assert r.rc == 2 and "missing.py" in r.err, r
    # gust run: deploy, the local entrypoint, then the app is stopped.
    (d / "runme.py").write_text('''
import gust
app = gust.App("pyrun")

@app.function(image=gust.Image.debian_slim().env({"WHO": "world"}))
def hello(name):
    return "hi " + name

@app.local_entrypoint()
def main():
    print(hello.remote("from run"))
    print(list(hello.map(["a", "b"])))
''')
    r = gust.cli("run", str(d / "runme.py"), timeout=600)
    assert r.rc == 0 and r.out == "hi from run\n['hi a', 'hi b']\n", r
    apps = {a["name"]: a["state"] for a in gust.get_json("/v1/apps")["apps"]}
    assert apps.get("pyrun") == "stopped", apps
    r = gust.cli("run", str(d / "runme.py") + "::nope")
    assert r.rc == 2 and "no local entrypoint named nope" in r.err, r


MODULE2 = '''
import os, time
import gust

app = gust.App("sdk2")


@app.function(max_containers=1)
@gust.concurrent(max_inputs=2)
def overlap(x):
    t0 = time.time()
    time.sleep(1.0)
    return (os.getpid(), t0, time.time())


@app.function(retries=gust.Retries(2, initial_delay=0.1), max_containers=1)
def flaky(key):
    path = "/tmp/attempt-" + key
    n = int(open(path).read()) if os.path.exists(path) else 0
    open(path, "w").write(str(n + 1))
    if n == 0:
        raise RuntimeError("first attempt fails")
    return n + 1


@app.function(timeout=1)
def slow():
    time.sleep(30)


@app.cls(max_containers=1)
class Model:
    @gust.enter(snap=True)
    def load(self):
        self.weight = 3
        with open("/tmp/enters", "a") as f:
            f.write("snap\\n")

    @gust.enter()
    def warm(self):
        self.ready = self.weight * 2

    @gust.method()
    def predict(self, x):
        return x * self.weight + self.ready, open("/tmp/enters").read().count("snap")

    def helper(self):
        return "not remote"


@app.function(memory=64)
def hog():
    blocks = []
    while True:
        blocks.append(bytearray(16 << 20))
'''


def test_concurrency_retries_and_failure_kinds(shared_gust, tmp_path):
    gust = shared_gust
    mod = load(tmp_path, "sdk2", MODULE2)
    import gust as gsdk
    mod.app.addr = gust.addr
    mod.app.deploy(progress=None)
    # Two inputs at once in one container (threads): same pid, overlapping in time.
    (p1, s1, e1), (p2, s2, e2) = list(mod.overlap.map([1, 2]))
    assert p1 == p2 and s2 < e1 and s1 < e2, (s1, e1, s2, e2)
    assert mod.flaky.remote("a") == 2                       # the retry succeeded
    try:
        mod.slow.remote()
        raise AssertionError("no timeout")
    except gsdk.FunctionTimeoutError as e:
        assert e.code == "timeout" and e.call_id, e
    try:
        mod.hog.remote()
        raise AssertionError("no OOM")
    except gsdk.OutOfMemoryError as e:
        assert e.code == "oom", e
    # A class: enter hooks once per container (snap first), methods serve inputs.
    m = mod.Model()
    assert m.predict.remote(2) == (12, 1)
    assert m.predict.remote(5) == (21, 1)
    assert list(m.predict.map([1, 2])) == [(9, 1), (12, 1)]
    try:
        m.helper
        raise AssertionError("helper is not a method")
    except AttributeError:
        pass
    # A deployed function by name, without its source.
    f = gsdk.Function.from_name("sdk2", "flaky", addr=gust.addr)
    assert f.remote("b") == 2


MODULE3 = '''
import os, signal
import gust

app = gust.App("sdk3")
named = gust.Secret.from_name("sdk3-db")
inline = gust.Secret.from_dict({"DB_USER": "inline-user", "ONLY_INLINE": "yes"})


@app.function(secrets=[named, inline], env={"DB_USER": "from-env", "PLAIN": "p"})
def env_of(keys):
    return {k: os.environ.get(k) for k in keys}


@app.function()
def where():
    import gust as g
    try:
        open(__file__, "a")
        writable = True
    except OSError as e:
        writable = e.errno
    return __file__, os.path.dirname(g.__file__), writable, VERSION


@app.function()
def crash():
    os.kill(os.getpid(), signal.SIGKILL)


@app.function(timeout=120)
def sleepy(s):
    import time
    time.sleep(s)
    return s


VERSION = 1
'''


def test_secrets_are_injected_and_never_shown(shared_gust, tmp_path):
    g = shared_gust
    import errno
    import gust as gsdk
    mod = load(tmp_path, "sdk3", MODULE3)
    mod.app.addr = g.addr
    # A secret that does not exist yet: the deploy names the field.
    try:
        mod.app.deploy(progress=None)
        raise AssertionError("deployed with a missing secret")
    except gsdk.GustError as e:
        assert e.code == "invalid_spec" and "functions[0].secrets[0]" in str(e) and "sdk3-db" in str(e), e
    value = "pw-" + os.urandom(6).hex()
    assert gsdk.Secret.create("sdk3-db", {"DB_PASSWORD": value, "DB_USER": "named-user"}, addr=g.addr) == \
        ["DB_PASSWORD", "DB_USER"]
    mod.app.deploy(progress=None)
    got = mod.env_of.remote(["DB_PASSWORD", "DB_USER", "ONLY_INLINE", "PLAIN"])
    # The later secret wins over the earlier one; secrets win over env.
    assert got == {"DB_PASSWORD": value, "DB_USER": "inline-user", "ONLY_INLINE": "yes", "PLAIN": "p"}, got
    # required_keys are checked at deploy.
    try:
        gsdk.secret.resolve("x", [gsdk.Secret.from_name("sdk3-db", required_keys=["NOPE"])], g.addr, {})
        raise AssertionError("missing key accepted")
    except gsdk.SecretError as e:
        assert "lacks required keys: NOPE" in str(e), e
    # Rotating a secret reaches containers started after it.
    gsdk.Secret.create("sdk3-db", {"DB_PASSWORD": "rotated", "DB_USER": "n"}, addr=g.addr)
    assert g.cli("stop", "sdk3").rc == 0
    mod.app.deploy(progress=None)
    assert mod.env_of.remote(["DB_PASSWORD"]) == {"DB_PASSWORD": "rotated"}
    # Names and keys only, anywhere gustd shows or logs things.
    listing = g.get_json("/v1/secrets")["secrets"]
    mine = [s for s in listing if s["name"] == "sdk3-db"][0]
    assert mine["keys"] == ["DB_PASSWORD", "DB_USER"] and mine["used_by"] == ["sdk3.env_of"], mine
    shown = json.dumps(listing) + json.dumps(g.get_json("/v1/functions/sdk3/env_of")) + g.stderr_text()
    shown += g.cli("secret", "ls").out + g.cli("--json", "ls").out
    assert value not in shown and "rotated" not in shown and "inline-user" not in shown
    # In use: refused; after the app stops: deleted.
    r = g.http("DELETE", "/v1/secrets/sdk3-db")
    assert r.status == 409 and r.error()["code"] == "secret_in_use" and "sdk3.env_of" in r.error()["message"], r
    assert g.cli("stop", "sdk3").rc == 0
    r = g.cli("secret", "rm", "sdk3-db")
    assert r.rc == 0 and "deleted secret sdk3-db" in r.out, r
    # Bad input names the field.
    r = g.http("PUT", "/v1/secrets/bad!name", json.dumps({"env": {"A": "b"}}).encode())
    assert r.status == 400 and r.error().get("field") == "name", r
    r = g.http("PUT", "/v1/secrets/ok", json.dumps({"env": {"1A": "b"}}).encode())
    assert r.status == 400 and r.error().get("field") == "env.1A", r
    r = g.http("PUT", "/v1/secrets/ok", json.dumps({"env": {"A": 1}}).encode())
    assert r.status == 400 and r.error().get("field") == "env.A", r
    r = g.http("PUT", "/v1/secrets/ok", json.dumps({"env": {f"K{i}": "v" for i in range(300)}}).encode())
    assert r.status == 413, r
    r = g.cli("secret", "create", "ok", "UNSET_VAR_FOR_TEST")
    assert r.rc == 2 and "UNSET_VAR_FOR_TEST: not set" in r.err, r
    del errno


def test_source_is_mounted_read_only_and_uploaded_once(shared_gust, tmp_path):
    g = shared_gust
    import errno
    import gust as gsdk
    from gust import _net
    gsdk.Secret.create("sdk3-db", {"DB_PASSWORD": "x"}, addr=g.addr)
    mod = load(tmp_path, "sdk3", MODULE3)
    mod.app.addr = g.addr
    puts = []
    real = _net.request

    def counting(addr, method, path, *a, **k):
        if method == "PUT" and path.startswith("/v1/blobs/"):
            puts.append(path)
        return real(addr, method, path, *a, **k)
    _net.request = counting
    try:
        mod.app.deploy(progress=None)
        f, sdk_dir, writable, version = mod.where.remote()
        assert f == "/opt/gust/app/sdk3.py" and sdk_dir == "/opt/gust/sdk/gust", (f, sdk_dir)
        assert writable == errno.EROFS and version == 1, writable
        # Same sources again: nothing uploaded, nothing built.
        puts.clear()
        progress = io.StringIO()
        mod.app.deploy(progress=progress)
        assert puts == [] and "done in" not in progress.getvalue(), (puts, progress.getvalue())
        # A changed module: one chunk uploaded (the module; the SDK is unchanged), no image
        # step runs, and the new code serves.
        (tmp_path / "sdk3.py").write_text(MODULE3.replace("VERSION = 1", "VERSION = 2"))
        progress = io.StringIO()
        mod.app.deploy(progress=progress)
        assert len(puts) == 1 and "done in" not in progress.getvalue(), (puts, progress.getvalue())
        assert mod.where.remote()[3] == 2
    finally:
        _net.request = real
    # A module in a package gets its package, and its sibling modules import.
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "helpers.py").write_text("def triple(x):\n    return 3 * x\n")
    (pkg / "main.py").write_text('''
import gust
from mypkg.helpers import triple
app = gust.App("sdkpkg")

@app.function()
def run(x):
    return triple(x)
''')
    spec = importlib.util.spec_from_file_location("mypkg.main", pkg / "main.py")
    sys.path.insert(0, str(tmp_path))
    pmod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pmod)
    pmod.app.addr = g.addr
    pmod.app.deploy(progress=None)
    assert pmod.run.remote(5) == 15
    # A crash is its own exception.
    try:
        mod.crash.remote()
        raise AssertionError("no crash")
    except gsdk.ContainerCrashError as e:
        assert e.code == "crashed" and e.call_id, e
    # A spawned call cancelled while it runs.
    fc = mod.sleepy.spawn(60)
    wait_until(lambda: g.get_json(f"/v1/calls/{fc.object_id}/status")["status"] == "running", 60,
               msg="the call runs")
    fc.cancel()
    try:
        fc.get(timeout=30)
        raise AssertionError("a cancelled call returned")
    except gsdk.GustError as e:
        assert e.code == "cancelled", e
    for app in ("sdk3", "sdkpkg"):
        g.cli("stop", app)


def test_blob_and_mount_api_errors(shared_gust):
    g = shared_gust
    import hashlib
    data = b"print('hi')\n"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = g.http("PUT", "/v1/blobs/" + "sha256:" + "0" * 64, data)
    assert r.status == 400 and r.error()["code"] == "digest_mismatch" and digest in r.error()["message"], r
    r = g.http("PUT", "/v1/blobs/nothex", data)
    assert r.status == 400, r
    r = g.post_json("/v1/blobs/missing", {"digests": [digest, "bad"]}, expect=400)
    r = g.post_json("/v1/blobs/missing", {"digests": [digest]})
    assert r["missing"] == [digest], r
    entry = {"path": "a.py", "type": "file", "mode": 0o644, "size": len(data), "chunks": [digest]}
    r = g.http("POST", "/v1/mounts", json.dumps({"entries": [entry]}).encode())
    assert r.status == 409 and r.error()["code"] == "missing_blobs", r
    assert g.http("PUT", "/v1/blobs/" + digest, data).status == 201
    assert g.post_json("/v1/blobs/missing", {"digests": [digest]})["missing"] == []
    tree = g.post_json("/v1/mounts", {"entries": [entry]})["id"]
    assert tree.startswith("sha256:"), tree
    r = g.http("POST", "/v1/mounts", json.dumps({"entries": [dict(entry, path="../x")]}).encode())
    assert r.status == 400 and r.error().get("field") == "entries", r
    base = {"name": "f", "kind": "exec", "command": ["/bin/cat"], "mode": "per_input"}
    for mounts, field in (([{"path": "/proc/x", "image": tree}], "functions[0].mounts[0].path"),
                          ([{"path": "/opt/a", "image": "sha256:zz"}], "functions[0].mounts[0].image"),
                          ([{"path": "/opt/a", "image": tree}, {"path": "/opt/a/b", "image": tree}],
                           "functions[0].mounts[1].path"),
                          ([{"path": "/opt/a", "image": "sha256:" + "1" * 64}], "functions[0].mounts")):
        r = g.http("POST", "/v1/deploy", json.dumps({"app": "mnt", "functions": [dict(base, mounts=mounts)]}).encode())
        assert r.status == 400 and r.error().get("field") == field, (mounts, r)
    # A busybox function reads the mounted tree.
    g.deploy({"app": "mnt", "functions": [dict(base, command=["/bin/cat", "/opt/code/a.py"],
                                                mounts=[{"path": "/opt/code", "image": tree}])]})
    assert g.call_ok("mnt", "f") == data
    g.cli("stop", "mnt")


def test_map_progress_on_stderr(shared_gust, tmp_path, capfd):
    mod = load(tmp_path, "sdkt", MODULE)
    mod.app.addr = shared_gust.addr
    mod.app.deploy(progress=None)
    os.environ["GUST_PROGRESS"] = "1"
    try:
        assert list(mod.square.map(range(50))) == [i * i for i in range(50)]
    finally:
        del os.environ["GUST_PROGRESS"]
    err = capfd.readouterr().err
    assert "square.map: 50/50 done" in err, err
    # for_each runs every input and keeps going past failures.
    assert mod.square.for_each(range(5)) is None
    assert mod.boom.for_each(["a", "b"]) is None
