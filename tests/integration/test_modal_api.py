"""Modal's API on Gust, against a real gustd (the shared daemon): FunctionCall.gather,
.from_id (another process), .spawn_map, Function/Cls.with_options (a variant deployed
on first use), class parameters (a parameter set's own containers), Cls.from_name,
App-wide image and secrets, enable_memory_snapshot, gust.exception, is_local /
current_input_id / current_function_call_id, Image.debian_slim(python_version=),
Image.imports(), pip_install_from_requirements, run_function, and @exit hooks that run
(their output in the logs) when a container scales down and on `gust stop`."""
import os
import subprocess
import sys
import time

import pytest

from gustlib import sdk_module, wait_until
from test_build import make_wheel

SDK = os.path.join(os.path.dirname(__file__), "..", "..", "sdk", "python")

CALLS = '''
import os, time
import gust

app = gust.App("mcalls")


@app.function(max_containers=4)
def square(x, add=0):
    return x * x + add


@app.function()
def fail(msg):
    raise ValueError(msg)


@app.function(timeout=120)
def slow(s):
    time.sleep(s)
    return s


@app.function(max_containers=1)
@gust.concurrent(max_inputs=2)
def where(x):
    return (gust.is_local(), gust.current_input_id(), gust.current_function_call_id(), x, AT_IMPORT)


@app.function(timeout=1)
def too_long():
    time.sleep(30)


AT_IMPORT = (gust.is_local(), gust.current_input_id(), gust.current_function_call_id())
'''


def in_other_process(g, code):
    """Runs Python code in a fresh interpreter with the SDK on its path; its stdout."""
    env = dict(os.environ, PYTHONPATH=SDK, GUST_ADDR=g.addr, GUST_TOKEN=g.admin_token)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p
    return p.stdout


def test_gather_from_id_spawn_map_and_call_context(shared_gust, tmp_path):
    g = shared_gust
    mod = sdk_module(tmp_path, "mcalls", CALLS)
    import gust
    mod.app.addr = g.addr
    mod.app.deploy(progress=None)
    # gather: results in the calls' order, whatever order they finish in.
    calls = [mod.slow.spawn(2), mod.square.spawn(3), mod.square.spawn(4, add=1)]
    assert gust.FunctionCall.gather(*calls) == [2, 9, 17]
    assert gust.FunctionCall.gather() == []
    # The first failure raises at once, with the function's exception; the slow call
    # is not waited for.
    t0 = time.monotonic()
    try:
        gust.FunctionCall.gather(mod.slow.spawn(20), mod.fail.spawn("no"))
        raise AssertionError("gather did not raise")
    except ValueError as e:
        assert str(e) == "no", e
    assert time.monotonic() - t0 < 15
    # from_id: the result fetched by id, here and in another process.
    fc = mod.square.spawn(12)
    assert gust.FunctionCall.from_id(fc.object_id, addr=g.addr).get(timeout=60) == 144
    out = in_other_process(g, f"import gust; print(gust.FunctionCall.from_id({fc.object_id!r}).get())")
    assert out == "144\n", out
    bad = gust.FunctionCall.from_id("fc-" + "x" * 20, addr=g.addr)
    for cls in (gust.exception.OutputExpiredError, gust.exception.NotFoundError):
        try:
            bad.get(timeout=5)
            raise AssertionError("unknown call id gave a result")
        except cls as e:
            assert e.code == "not_found", e
    try:
        gust.FunctionCall.from_id("nope")
        raise AssertionError("a bad id was taken")
    except gust.exception.InvalidError:
        pass
    # spawn_map: returns once the inputs are stored; a FunctionCall of all of them.
    sm = mod.square.spawn_map(range(6), kwargs={"add": 1})
    assert sm.num_inputs() == 6 and sm.object_id.count("fc-") == 6, sm.object_id
    assert sm.get(index=5, timeout=60) == 26
    assert list(sm.iter()) == [i * i + 1 for i in range(6)]
    assert list(sm.iter(start=2, end=4)) == [5, 10]
    out = in_other_process(g, f"import gust; print(list(gust.FunctionCall.from_id({sm.object_id!r}).iter()))")
    assert out == "[1, 2, 5, 10, 17, 26]\n", out
    assert mod.square.spawn_map([]).num_inputs() == 0
    # Cancel: caught as Modal's InputCancellation or as a gust error.
    fc = mod.slow.spawn(60)
    wait_until(lambda: g.get_json(f"/v1/calls/{fc.object_id}/status")["status"] == "running", 60, msg="running")
    fc.cancel()
    try:
        fc.get(timeout=30)
        raise AssertionError("a cancelled call returned")
    except gust.exception.InputCancellation as e:
        assert isinstance(e, gust.Error) and e.code == "cancelled", e
    # Where code runs: is_local, the input's id and its call's id (threads included).
    assert gust.is_local() and gust.current_input_id() is None and gust.current_function_call_id() is None
    fc = mod.where.spawn("a")
    local, input_id, call_id, x, at_import = fc.get(timeout=60)
    assert (local, call_id, x) == (False, fc.object_id, "a") and input_id.startswith("in-"), (input_id, call_id)
    assert at_import == (False, None, None), at_import
    got = list(mod.where.map(["b", "c", "d"]))
    assert len({r[1] for r in got}) == 3 and all(r[2].startswith("fc-") for r in got), got
    assert len({r[2] for r in got}) == 3, got
    # gust.exception: gustd's failures under Modal's names.
    try:
        mod.too_long.remote()
        raise AssertionError("no timeout")
    except gust.exception.TimeoutError as e:
        assert isinstance(e, gust.exception.FunctionTimeoutError) and isinstance(e, gust.FunctionTimeoutError), e
    try:
        gust.Function.from_name("mcalls", "missing", addr=g.addr).remote()
        raise AssertionError("no such function, no error")
    except gust.exception.NotFoundError as e:
        assert e.code == "not_found", e
    g.cli("stop", "mcalls")


VARIANTS = '''
import os, time
import gust

app = gust.App("mvar")


@app.function(max_containers=2, env={"WHO": "base"})
def info():
    return {"who": os.environ.get("WHO"), "extra": os.environ.get("EXTRA"),
            "container": os.environ.get("GUST_CONTAINER_ID"), "secret": os.environ.get("TOKEN")}


@app.function(timeout=60)
def nap(s):
    time.sleep(s)
    return s


@app.cls(max_containers=2)
class Model:
    size: int = gust.parameter(default=1)
    label: str = gust.parameter(default="small")
    blob: bytes = gust.parameter(default=b"")
    flag: bool = gust.parameter(default=False)

    @gust.enter()
    def load(self):
        self.loaded = (self.size, self.label)

    @gust.method()
    def describe(self):
        return {"loaded": self.loaded, "blob": self.blob, "flag": self.flag,
                "container": os.environ.get("GUST_CONTAINER_ID"), "memory": os.environ.get("MEM_HINT")}


@app.cls()
class Needs:
    name: str = gust.parameter()

    @gust.method()
    def hello(self):
        return "hello " + self.name
'''


def fn_names(g, app):
    return sorted(f["name"] for f in g.get_json("/v1/functions")["functions"] if f["app"] == app)


def test_with_options_and_class_parameters(shared_gust, tmp_path):
    g = shared_gust
    mod = sdk_module(tmp_path, "mvar", VARIANTS)
    import gust
    mod.app.addr = g.addr
    mod.app.deploy(progress=None)
    base = mod.info.remote()
    assert base["who"] == "base" and base["extra"] is None, base
    # with_options: a variant deployed on its first call, with containers of its own.
    v = mod.info.with_options(env={"EXTRA": "1"}, memory=256, secrets=[gust.Secret.from_dict({"TOKEN": "t"})])
    got = v.remote()
    assert got["who"] == "base" and got["extra"] == "1" and got["secret"] == "t", got
    assert got["container"] != base["container"], (got, base)
    names = fn_names(g, "mvar")
    assert v.name in names and v.name.startswith("info-v"), names
    spec = g.get_json(f"/v1/functions/mvar/{v.name}")["spec"]
    assert spec["resources"]["memory"] == 256 and spec["env"]["WHO"] == "base", spec
    version = g.get_json(f"/v1/functions/mvar/{v.name}")["version"]
    # The same options, from another process and by name: the same variant, not redeployed.
    out = in_other_process(g, "import gust; f = gust.Function.from_name('mvar', 'info')\n"
                              "v = f.with_options(env={'EXTRA': '1'}, memory=256, "
                              "secrets=[gust.Secret.from_dict({'TOKEN': 't'})])\n"
                              "print(v.name, v.remote()['extra'])")
    assert out == f"{v.name} 1\n", out
    assert g.get_json(f"/v1/functions/mvar/{v.name}")["version"] == version
    # Chained, and Modal's older names: timeout=1 makes nap time out.
    short = mod.nap.with_options(timeout=1).with_options(container_idle_timeout=5)
    try:
        short.remote(10)
        raise AssertionError("the variant's timeout did not apply")
    except gust.exception.FunctionTimeoutError:
        pass
    assert mod.nap.remote(0) == 0  # the base keeps its own
    s2 = g.get_json(f"/v1/functions/mvar/{short.name}")["spec"]
    assert s2["timeout"] == 1 and s2["scaling"]["scaledown_window"] == 5, s2
    try:
        mod.nap.with_options(region="us-east")
        raise AssertionError("region accepted")
    except gust.exception.InvalidError as e:
        assert "region" in str(e), e
    # A redeploy of the base makes the variant follow it on its next first use.
    mod.app.deploy(progress=None)
    again = mod.info.with_options(env={"EXTRA": "1"}, memory=256, secrets=[gust.Secret.from_dict({"TOKEN": "t"})])
    assert again.name == v.name and again.remote()["extra"] == "1"
    assert g.get_json(f"/v1/functions/mvar/{v.name}")["version"] == version + 1

    # Parameters: the default set is the class's own function; each other set has its
    # own containers, whose instance has its values before the enter hooks.
    d = mod.Model().describe.remote()
    assert d["loaded"] == [1, "small"] or d["loaded"] == (1, "small"), d
    big = mod.Model(size=3, label="big", blob=b"\x00\x01", flag=True)
    b = big.describe.remote()
    assert tuple(b["loaded"]) == (3, "big") and b["blob"] == b"\x00\x01" and b["flag"] is True, b
    assert b["container"] != d["container"], (b, d)
    assert big.size == 3 and big.label == "big", "parameter values read locally"
    assert mod.Model(size=1).describe.remote()["container"] == d["container"]  # the defaults: the base
    assert mod.Model(size=3, label="big", blob=b"\x00\x01", flag=True).describe.remote()["container"] == b["container"]
    for bad, what in (({"size": "3"}, "size must be int"), ({"nope": 1}, "unknown parameter nope"),
                      ({"flag": 1}, "flag must be bool")):
        try:
            mod.Model(**bad)
            raise AssertionError(f"{bad} accepted")
        except gust.exception.InvalidError as e:
            assert what in str(e), e
    try:
        mod.Needs()
        raise AssertionError("a parameter without default was not required")
    except gust.exception.InvalidError as e:
        assert "name has no default" in str(e), e
    assert mod.Needs(name="ada").hello.remote() == "hello ada"
    assert mod.Needs("bob").hello.remote() == "hello bob"
    # Cls.from_name: the same parameter set reaches the same function; with_options
    # gives a parameter set other options.
    n = len(fn_names(g, "mvar"))
    M = gust.Cls.from_name("mvar", "Model", addr=g.addr)
    assert M(size=3, label="big", blob=b"\x00\x01", flag=True).describe.remote()["container"] == b["container"]
    assert len(fn_names(g, "mvar")) == n
    try:
        M(size="x")
        raise AssertionError("from_name did not check the parameters")
    except gust.exception.InvalidError as e:
        assert "size must be int" in str(e), e
    wo = mod.Model.with_options(env={"MEM_HINT": "lots"}, max_containers=1)(size=5).describe.remote()
    assert wo["memory"] == "lots" and tuple(wo["loaded"]) == (5, "small"), wo
    out = in_other_process(g, "import gust\n"
                              "M = gust.Cls.from_name('mvar', 'Needs')\n"
                              "print(M(name='eve').hello.remote())")
    assert out == "hello eve\n", out
    try:
        mod.Model.with_options(bogus=1)
        raise AssertionError("an unknown option was taken")
    except TypeError:
        pass
    g.cli("stop", "mvar")


DEFAULTS = '''
import os
import gust

image = gust.Image.debian_slim().env({"FROM_APP_IMAGE": "yes"})
app = gust.App("mdef", image=image, secrets=[gust.Secret.from_dict({"APP_S": "app"})])


@app.function(secrets=[gust.Secret.from_dict({"FN_S": "fn"})])
def env_of():
    return {k: os.environ.get(k) for k in ("FROM_APP_IMAGE", "APP_S", "FN_S", "OWN")}


@app.function(image=gust.Image.debian_slim().env({"OWN": "own"}), enable_memory_snapshot=True)
def own_image():
    return {k: os.environ.get(k) for k in ("FROM_APP_IMAGE", "APP_S", "OWN")}
'''


def test_app_defaults_and_memory_snapshot_name(shared_gust, tmp_path):
    g = shared_gust
    mod = sdk_module(tmp_path, "mdef", DEFAULTS)
    mod.app.addr = g.addr
    mod.app.deploy(progress=None)
    assert mod.env_of.remote() == {"FROM_APP_IMAGE": "yes", "APP_S": "app", "FN_S": "fn", "OWN": None}
    assert mod.own_image.remote() == {"FROM_APP_IMAGE": None, "APP_S": "app", "OWN": "own"}
    assert g.get_json("/v1/functions/mdef/own_image")["spec"]["snapshot"] is True
    assert g.get_json("/v1/functions/mdef/env_of")["spec"]["snapshot"] is False
    g.cli("stop", "mdef")
    mod.app.drop_inline_secrets()


LIFETIME = '''
import os
import gust

app = gust.App("mlife")
ME = os.urandom(8).hex()  # this container's process


@app.function(max_inputs=1)
def single_use():
    return ME


@app.function(max_inputs=2, max_containers=1)
def twice():
    return ME
'''


def test_function_max_inputs_is_inputs_per_container_as_in_modal(shared_gust, tmp_path):
    """Modal's @app.function(max_inputs=N): a container serves N inputs, then a fresh
    one takes over (1: single-use containers); inputs at once are @gust.concurrent's."""
    g = shared_gust
    mod = sdk_module(tmp_path, "mlife", LIFETIME)
    mod.app.addr = g.addr
    mod.app.deploy(progress=None)
    import gust
    assert g.get_json("/v1/functions/mlife/single_use")["spec"]["scaling"]["lifetime_inputs"] == 1
    assert g.get_json("/v1/functions/mlife/single_use")["spec"]["scaling"]["max_inputs"] == 1
    seen = [mod.single_use.remote() for _ in range(3)]
    assert len(set(seen)) == 3, seen
    pairs = [mod.twice.remote() for _ in range(4)]
    assert pairs[0] == pairs[1] and pairs[2] == pairs[3] and pairs[1] != pairs[2], pairs
    with pytest.raises(gust.InvalidError, match="max_inputs"):
        mod.app.function(max_inputs=0)
    g.cli("stop", "mlife")


def test_image_python_version_imports_requirements_and_run_function(shared_gust, tmp_path):
    g = shared_gust
    if SDK not in sys.path:
        sys.path.insert(0, SDK)
    import gust
    wheels = str(tmp_path / "wheels")
    make_wheel(wheels, name="gustreq")
    (tmp_path / "more.txt").write_text("gustreq  # from the local wheel\n")
    (tmp_path / "requirements.txt").write_text("# top\n-r more.txt\n\n")
    mod_text = f'''
import os
import gust

REQS = {str(tmp_path / "requirements.txt")!r}
WHEELS = {wheels!r}


def fetch_weights(name, size=1):
    import gustreq
    os.makedirs("/weights", exist_ok=True)
    with open("/weights/" + name, "w") as f:
        f.write(gustreq.hello() + " x" + str(size) + " local=" + str(gust.is_local()))


image = (gust.Image.debian_slim(python_version="3.11")
         .apt_install("python3-pip")
         .pip_install_from_requirements(REQS, find_links=WHEELS)
         .run_function(fetch_weights, args=("w1",), kwargs={{"size": 2}}))
app = gust.App("mimg", image=image)

with image.imports():  # only the image has it: here the import fails, quietly
    import gustreq


@app.function()
def check():
    return open("/weights/w1").read(), gustreq.hello(), os.path.exists("/opt/gust-build")


@app.function()
def strict():
    with image.imports():
        import not_installed_anywhere_xyz  # noqa: F401
    return "imported"
'''
    mod = sdk_module(tmp_path, "mimg", mod_text)
    mod.app.addr = g.addr
    try:
        mod.app.deploy(progress=None)
    except gust.BuildError as e:
        raise AssertionError(f"{e}\n{e.output_tail}") from e
    assert "gustreq" not in vars(mod)
    weights, hello, leftovers = mod.check.remote()
    assert weights == "hello from the wheel x2 local=False" and hello == "hello from the wheel", weights
    assert leftovers is False  # run_function's copies are gone from the image
    try:
        mod.strict.remote()
        raise AssertionError("a failing import inside imports() passed in the container")
    except ModuleNotFoundError as e:
        assert "not_installed_anywhere_xyz" in str(e), e
    # A Python the builder cannot provide: the build fails, naming the field.
    try:
        gust.Image.debian_slim(python_version="3.12").build(addr=g.addr, progress=None)
        raise AssertionError("python 3.12 built")
    except gust.BuildError as e:
        assert 'python_version="3.12"' in (e.output_tail or ""), e.event
        assert "provides Python 3.11" in (e.output_tail or ""), e.event
    for bad in ("3", "python3.11", 3.11):
        try:
            gust.Image.debian_slim(python_version=bad)
            raise AssertionError(f"{bad!r} accepted")
        except gust.exception.InvalidError as e:
            assert "python_version" in str(e), e
    (tmp_path / "opts.txt").write_text("--index-url http://example.invalid\nx\n")
    try:
        gust.Image.debian_slim().pip_install_from_requirements(str(tmp_path / "opts.txt"))
        raise AssertionError("a pip option was taken")
    except gust.exception.InvalidError as e:
        assert "opts.txt:1" in str(e) and "--index-url" in str(e), e
    try:
        gust.Image.debian_slim().run_function(mod.fetch_weights, secrets=[gust.Secret.from_name("x")])
        raise AssertionError("run_function secrets accepted")
    except gust.exception.InvalidError as e:
        assert "secrets" in str(e), e
    g.cli("stop", "mimg")


PIP = """
import gust

WHEELS = {wheels!r}

# Modal's debian_slim has pip: so does Gust's once a pip step needs it (python3-pip
# from the apt mirror). pip's own options make the step a run step.
from_links = gust.Image.debian_slim().uv_pip_install("gustpipa", find_links=WHEELS, uv_version="0.8")
with_options = (gust.Image.debian_slim().add_local_dir(WHEELS, "/wheels", copy=True)
                .pip_install("gustpipb", extra_options="--no-index --find-links /wheels", pre=True,
                             env={{"PIP_DISABLE_PIP_VERSION_CHECK": "1"}}, force_build=True))
app = gust.App("mpip")


@app.function(image=from_links)
def a():
    import gustpipa
    return gustpipa.hello()


@app.function(image=with_options)
def b():
    import gustpipb
    return gustpipb.hello()
"""


def test_pip_install_needs_no_pip_in_the_image_and_takes_modals_arguments(shared_gust, tmp_path):
    g = shared_gust
    wheels = str(tmp_path / "wheels")
    make_wheel(wheels, name="gustpipa")
    make_wheel(wheels, name="gustpipb")
    mod = sdk_module(tmp_path, "mpip", PIP.format(wheels=wheels))
    import gust
    mod.app.addr = g.addr
    try:
        mod.app.deploy(progress=None)
    except gust.BuildError as e:
        raise AssertionError(f"{e}\n{e.output_tail}") from e
    assert mod.a.remote() == "hello from the wheel" and mod.b.remote() == "hello from the wheel"
    g.cli("stop", "mpip")
    run = mod.with_options.definition()["steps"][-1]["run"]
    assert run[1] == ("env PIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip install --no-cache-dir "
                      "--break-system-packages --pre --no-index --find-links /wheels gustpipb"), run
    step = gust.Image.debian_slim().pip_install("torch==2.7", index_url="https://i.example/simple",
                                                extra_index_url="https://x.example/whl").definition()["steps"][0]
    assert step["run"][1].endswith("--index-url https://i.example/simple --extra-index-url https://x.example/whl "
                                   "torch==2.7"), step
    img = gust.Image.debian_slim()
    assert img.pip_install() is img and img.uv_pip_install([]) is img
    for kw in ({"secrets": [gust.Secret.from_dict({"A": "1"})]}, {"gpu": "T4"},
               {"find_links": wheels, "index_url": "https://i.example/simple"}):
        try:
            img.pip_install("x", **kw)
            raise AssertionError(f"pip_install took {kw}")
        except gust.exception.InvalidError as e:
            assert list(kw)[-1] in str(e), e


LIFECYCLE = '''
import os, time
import gust

app = gust.App("mexit")


class Tracked:
    @gust.enter()
    def start(self):
        self.me = os.environ.get("GUST_CONTAINER_ID")

    @gust.method()
    def ping(self):
        return self.me


@app.cls(scaledown_window=1)
class Quick(Tracked):
    @gust.exit()
    def bye(self):
        time.sleep(0.3)  # the hook may take a moment: the runner waits for it
        print("exit hook of", self.me, "done", flush=True)


@app.cls(scaledown_window=600)
@gust.concurrent(max_inputs=2)
class Lasting(Tracked):
    @gust.exit()
    def first(self):
        raise RuntimeError("a failing hook does not stop the next")

    @gust.exit()
    def second(self):
        print("stopped", self.me, flush=True)
'''


def test_exit_hooks_run_on_scale_down_and_on_stop(shared_gust, tmp_path):
    g = shared_gust
    mod = sdk_module(tmp_path, "mexit", LIFECYCLE)
    mod.app.addr = g.addr
    mod.app.deploy(progress=None)
    me = mod.Quick().ping.remote()

    def logs(fn):
        return g.http("GET", f"/v1/functions/mexit/{fn}/logs").body.decode()
    # Scale-down after the 1 s window: the hook's print reaches the logs.
    wait_until(lambda: f"exit hook of {me} done" in logs("Quick"), 60, msg="the exit hook ran on scale-down")
    wait_until(lambda: not g.containers("mexit", "Quick"), 30, msg="the container is gone")
    # gust stop: every hook runs, the failing one's traceback in the logs too.
    me2 = mod.Lasting().ping.remote()
    t0 = time.monotonic()
    assert g.cli("stop", "mexit").rc == 0
    # It exits on its own, before the grace period's SIGKILL (3 s, sched.c).
    wait_until(lambda: not g.containers("mexit", "Lasting"), 30, msg="the container is gone")
    assert time.monotonic() - t0 < 3, time.monotonic() - t0
    wait_until(lambda: f"stopped {me2}" in logs("Lasting"), 30, msg="the exit hook ran on gust stop")
    text = logs("Lasting")
    assert "a failing hook does not stop the next" in text, text


ASYNC_HOOKS = '''
import asyncio, os
import gust

app = gust.App("masync")


@app.cls(scaledown_window=1)
class Client:
    @gust.enter()
    async def open(self):
        await asyncio.sleep(0.01)
        self.loop = asyncio.get_running_loop()
        self.where = os.environ.get("GUST_CONTAINER_ID", "local")

    @gust.method()
    async def same_loop(self):
        return asyncio.get_running_loop() is self.loop

    @gust.method()
    def where_opened(self):
        return self.where

    @gust.exit()
    async def close(self):
        await asyncio.sleep(0.01)
        print("async exit hook of", self.where, flush=True)


@app.cls(snapshot=True)
class Loaded:
    @gust.enter(snap=True)
    async def load(self):
        await asyncio.sleep(0.01)
        self.weights = [1, 2, 3]

    @gust.method()
    def total(self):
        return sum(self.weights), os.environ.get("GUST_SNAPSHOT", "local")
'''


def test_async_enter_and_exit_hooks_and_local_methods(shared_gust, tmp_path):
    """Async @enter/@exit hooks, as Modal allows: awaited on the container's event loop
    (the async methods' loop), or in a snapshot template on a loop of its own; and
    Cls().method.local() runs the enter hooks here first."""
    g = shared_gust
    mod = sdk_module(tmp_path, "masync", ASYNC_HOOKS)
    mod.app.addr = g.addr
    mod.app.deploy(progress=None)
    assert mod.Client().same_loop.remote() is True
    me = mod.Client().where_opened.remote()
    assert me.startswith("ct-"), me
    assert mod.Loaded().total.remote() == (6, "restored")
    assert mod.Client().where_opened.local() == "local"
    assert mod.Loaded().total.local() == (6, "local")

    def logs():
        return g.http("GET", "/v1/functions/masync/Client/logs").body.decode()
    wait_until(lambda: f"async exit hook of {me}" in logs(), 60, msg="the async exit hook ran on scale-down")
    g.http("POST", "/v1/apps/masync/stop")
