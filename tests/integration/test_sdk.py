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


def load(tmp_path):
    sys.path.insert(0, SDK)
    path = tmp_path / "sdkmod.py"
    path.write_text(MODULE)
    spec = importlib.util.spec_from_file_location("sdkmod", path)
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
    assert isinstance(gsdk.App("x"), gsdk.App)
