"""The Python SDK against a real gustd: an app of decorated functions deployed with
its images built (debian_slim + the SDK and the module copied in), .remote(), .spawn()
and FunctionCall.get(), .map() ordered and unordered, .starmap(), .local(), and a
remote exception re-raised locally with its type and the remote traceback."""
import importlib.util
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
    """Writes text as module name under tmp_path and imports it (the SDK on the path)."""
    sys.path.insert(0, SDK)
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_python_functions_remote_spawn_map_and_errors(gust, tmp_path):
    mod = load(tmp_path)
    import gust as gsdk
    mod.app.addr = gust.addr
    import io
    progress = io.StringIO()
    dep = mod.app.deploy(progress=progress)
    assert dep["app"] == "sdkt" and {f["name"] for f in dep["functions"]} == {"square", "boom"}, dep
    assert "FROM debian_slim" in progress.getvalue()
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


def test_gust_deploy_of_a_python_file(gust, tmp_path):
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


@app.function(max_inputs=2, max_containers=1)
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


def test_concurrency_retries_and_failure_kinds(gust, tmp_path):
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
