"""`gust call`, `spawn`, `result` and `map` on Python functions (deployed by the SDK):
JSON in and JSON out (the tagged form of src/client/pyjson.h, which the SDK's runner
decodes), exceptions shown as type, message and remote traceback with exit 1, results
JSON cannot hold named by type, and the raw pickle path kept; and the thread-pool
variables (OMP_NUM_THREADS, ...) every container gets from its CPU allowance unless its
env or secrets set them."""
import json
import os
import pickle

from gustlib import fn_spec, sdk_module

MODULE = '''
import os

import gust

app = gust.App("clipy")
image = gust.Image.from_name("python")  # the host's Python: no image build


@app.function(image=image, timeout=60, scaledown_window=60)
def square(x):
    return x * x


@app.function(image=image, timeout=60, scaledown_window=60)
def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


@app.function(image=image, timeout=60, scaledown_window=60)
def boom(msg):
    raise ValueError("remote says " + msg)


def down(n):  # down and up alternate, so the traceback shows every frame
    return 1 / 0 if n == 0 else up(n - 1)


def up(n):
    return down(n)


@app.function(image=image, timeout=60, scaledown_window=60)
def deep(n):
    """A traceback longer than libgust's 1 KiB error message."""
    return down(n)


@app.function(image=image, timeout=60, scaledown_window=60)
def odd(kind):
    return {"set": {1, 2}, "nan": float("nan"), "nested": {"a": [b"bytes"]}, "none": None,
            "text": "h\\u00e9llo \\u2603"}[kind]


@app.cls(image=image, timeout=60, scaledown_window=60)
class Calc:
    @gust.method()
    def add(self, a, b=0):
        return a + b


@app.function(image=image, timeout=60, cpu=(0.5, 3))
def threads():
    return {k: os.environ.get(k) for k in THREAD_VARS}


THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
               "NUMEXPR_NUM_THREADS")
'''

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
               "NUMEXPR_NUM_THREADS")


def deploy(g, tmp_path):
    import io
    mod = sdk_module(tmp_path, "clipy", MODULE)
    mod.app.addr = g.addr
    mod.app.deploy(progress=io.StringIO())
    return mod


def host_cpus():
    """The CPUs gustd (started from this process) and its containers may run on."""
    return len(os.sched_getaffinity(0))


def ok(c):
    assert c.rc == 0, c
    assert "GUSTEXC1" not in c.err and "GUSTJSON" not in c.out, c
    return c


def test_call_spawn_and_result_take_and_print_json(shared_gust, tmp_path):
    g = shared_gust
    deploy(g, tmp_path)
    assert ok(g.cli("call", "clipy.square", "-d", "7")).out == "49\n"
    assert ok(g.cli("call", "clipy.square", "-d", "1.5")).out == "2.25\n"
    big = 123456789012345678901234567890
    assert ok(g.cli("call", "clipy.square", "-d", str(big))).out == f"{big * big}\n"
    # The value is the one argument; --args spreads an array or an object; no input: no arguments.
    echo = lambda *a, **kw: json.loads(ok(g.cli("call", "clipy.echo", *a, **kw)).out)
    assert echo("-d", "[1, 2]") == {"args": [[1, 2]], "kwargs": {}}
    assert echo("-d", '{"k": 1}') == {"args": [{"k": 1}], "kwargs": {}}
    assert echo("-d", '"ada"') == {"args": ["ada"], "kwargs": {}}
    assert echo("--args", "-d", '[1, "x", null]') == {"args": [1, "x", None], "kwargs": {}}
    assert echo("--args", "-d", '{"k": [true]}') == {"args": [], "kwargs": {"k": [True]}}
    assert echo() == {"args": [], "kwargs": {}}
    # A class's method: its name first.
    assert ok(g.cli("call", "clipy.Calc", "--args", "-d", '["add", 2, 3]')).out == "5\n"
    assert echo(input="[3]") == {"args": [[3]], "kwargs": {}}  # stdin
    f = tmp_path / "in.json"
    f.write_text('{"from": "file"}\n')
    assert echo("-d", f"@{f}") == {"args": [{"from": "file"}], "kwargs": {}}
    # Non-ASCII text comes back as UTF-8.
    assert ok(g.cli("call", "clipy.odd", "-d", '"text"')).stdout == '"h\u00e9llo \u2603"\n'.encode()
    assert ok(g.cli("call", "clipy.odd", "-d", '"none"')).out == "null\n"
    # --json: the result is the object's "result", as JSON.
    j = ok(g.cli("call", "clipy.square", "-d", "3", "--json")).json()
    assert j["result"] == 9 and j["status"] == "succeeded" and j["call_id"].startswith("fc-"), j
    # Input that is not JSON is a usage error that says how to write a string.
    c = g.cli("call", "clipy.square", "-d", "hello")
    assert c.rc == 2 and "takes JSON" in c.err and "\"text\"" in c.err, c
    c = g.cli("call", "clipy.echo", "--args", "-d", "7")
    assert c.rc == 2 and "array" in c.err and "not a number" in c.err, c
    c = g.cli("call", "clipy.echo", "--args", "--raw", "-d", "[]")
    assert c.rc == 2, c
    # --raw keeps the SDK's pickles.
    c = ok(g.cli("call", "clipy.square", "--raw", input=pickle.dumps(((4,), {}), protocol=5)))
    assert pickle.loads(c.stdout) == 16
    # spawn takes JSON too; result prints JSON.
    cid = ok(g.cli("spawn", "clipy.square", "-d", "6")).out.strip()
    assert cid.startswith("fc-")
    assert ok(g.cli("result", cid, "--wait", "60")).out == "36\n"
    assert ok(g.cli("result", cid, "--json")).json()["result"] == 36
    c = g.cli("result", cid, "--raw")
    raw = c.stdout
    assert c.rc == 0 and raw.startswith(b"\0GUSTJSON1\n") and raw.endswith(b"36"), raw
    cid = ok(g.cli("spawn", "clipy.echo", "--args", "-d", '{"k": 2}')).out.strip()
    assert json.loads(ok(g.cli("result", cid, "--wait", "60")).out) == {"args": [], "kwargs": {"k": 2}}
    # A function that is not a Python one still takes and gives bytes.
    g.deploy(fn_spec("clipyx", "cat", ["cat"], timeout=30))
    assert ok(g.cli("call", "clipyx.cat", "-d", "hello")).out == "hello"
    c = g.cli("call", "clipyx.cat", "--args", "-d", "[1]")
    assert c.rc == 2 and "--args is for Python functions" in c.err, c
    c = g.cli("call", "clipy.nope", "-d", "1")
    assert c.rc == 3, c


def test_exceptions_are_readable_and_fail_the_command(shared_gust, tmp_path):
    g = shared_gust
    deploy(g, tmp_path)
    c = g.cli("call", "clipy.boom", "-d", '"no"')
    assert c.rc == 1, c
    assert "GUSTEXC1" not in c.err and "GUSTEXC1" not in c.out, c
    assert "ValueError: remote says no" in c.err.splitlines()[0], c
    assert "remote traceback:" in c.err and "Traceback (most recent call last)" in c.err and "in boom" in c.err, c
    assert c.out == "", c
    j = g.cli("call", "clipy.boom", "-d", '"no"', "--json")
    assert j.rc == 1, j
    err = j.json()["error"]
    assert err["type"] == "ValueError" and err["message"] == "ValueError: remote says no", err
    assert err["code"] == "function_error" and "in boom" in err["traceback"], err
    assert "GUSTEXC1" not in j.out, j
    # A traceback longer than libgust's error message is shown in full.
    c = g.cli("call", "clipy.deep", "-d", "25")
    assert c.rc == 1 and "ZeroDivisionError: division by zero" in c.err.splitlines()[0], c
    assert c.err.count("in down") >= 12 and c.err.count("in up") >= 12 and len(c.err) > 2048 and c.err.rstrip().endswith("ZeroDivisionError: division by zero"), c
    assert "GUSTEXC1" not in c.err, c
    # The same through spawn and result.
    cid = ok(g.cli("spawn", "clipy.boom", "-d", '"later"')).out.strip()
    c = g.cli("result", cid, "--wait", "60")
    assert c.rc == 1 and "ValueError: remote says later" in c.err and "in boom" in c.err, c
    assert "GUSTEXC1" not in c.err, c


def test_results_json_cannot_hold_are_named(shared_gust, tmp_path):
    g = shared_gust
    deploy(g, tmp_path)
    c = g.cli("call", "clipy.odd", "-d", '"set"')
    assert c.rc == 1 and "TypeError: the result (of type set) cannot be sent as JSON" in c.err, c
    assert "Object of type set is not JSON serializable" in c.err, c
    c = g.cli("call", "clipy.odd", "-d", '"nested"')
    assert c.rc == 1 and "(of type dict)" in c.err and "Object of type bytes" in c.err, c
    c = g.cli("call", "clipy.odd", "-d", '"nan"')
    assert c.rc == 1 and "(of type float)" in c.err and "not JSON compliant" in c.err, c
    assert "GUSTEXC1" not in c.err, c


def test_map_takes_json_lines(shared_gust, tmp_path):
    g = shared_gust
    deploy(g, tmp_path)
    c = ok(g.cli("map", "clipy.square", "--ordered", input="1\n2\n\n  \n3\n123456789012345678901234567890\n"))
    lines = [json.loads(x) for x in c.out.splitlines()]
    assert [x["index"] for x in lines] == [0, 1, 2, 3], lines
    assert [x["result"] for x in lines] == [1, 4, 9, 123456789012345678901234567890 ** 2], lines
    assert all(x["status"] == "succeeded" and "output" not in x for x in lines), lines
    assert "map: 4/4 done, 0 failed" in c.err, c
    c = ok(g.cli("map", "clipy.echo", "--ordered", "--args", input='[1, 2]\n{"k": "v"}\n[]\n'))
    assert [json.loads(x)["result"] for x in c.out.splitlines()] == [
        {"args": [1, 2], "kwargs": {}}, {"args": [], "kwargs": {"k": "v"}}, {"args": [], "kwargs": {}}], c
    f = tmp_path / "in.jsonl"
    f.write_text('"a"\n"b"\n')
    c = g.cli("map", "clipy.boom", "--ordered", "--input", str(f))
    assert c.rc == 1 and "GUSTEXC1" not in c.out, c
    lines = [json.loads(x) for x in c.out.splitlines()]
    assert [x["status"] for x in lines] == ["failed", "failed"], lines
    for x, s in zip(lines, "ab"):
        e = x["error"]
        assert e["type"] == "ValueError" and e["message"] == f"ValueError: remote says {s}", e
        assert "in boom" in e["traceback"], e
    c = g.cli("map", "clipy.odd", "--ordered", input='"none"\n"set"\n')
    lines = [json.loads(x) for x in c.out.splitlines()]
    assert c.rc == 1 and lines[0]["result"] is None and "of type set" in lines[1]["error"]["message"], c
    c = g.cli("map", "clipy.square", input="1\nnope\n")
    assert c.rc == 2 and "line 2" in c.err and "takes JSON" in c.err, c


def test_thread_variables_follow_the_cpu_allowance(gust_factory):
    # Capacity above the host's cores, so cpu=2 fits on any machine; the thread count
    # is still bounded by the CPUs the host has.
    g = gust_factory("--cpu", "8000")
    n = host_cpus()
    env_cmd = ["sh", "-c", "cat >/dev/null; env"]
    r = g.cli("secret", "create", "thr", "MKL_NUM_THREADS=5")
    assert r.rc == 0, r
    g.deploy({"app": "thr", "functions": [
        {"name": "quarter", "kind": "exec", "command": env_cmd, "resources": {"cpu": 250}},
        {"name": "two", "kind": "exec", "command": env_cmd, "resources": {"cpu": 2000}},
        {"name": "burst", "kind": "exec", "command": env_cmd, "resources": {"cpu": [500, 3000]}},
        {"name": "mine", "kind": "exec", "command": env_cmd, "resources": {"cpu": 2000},
         "env": {"OMP_NUM_THREADS": "7"}},
        {"name": "secret", "kind": "exec", "command": env_cmd, "resources": {"cpu": 250}, "secrets": ["thr"]},
    ]})

    def env_of(fn):
        out = g.call_ok("thr", fn).decode()
        return {k: v for k, v in (line.split("=", 1) for line in out.splitlines() if "=" in line) if k in THREAD_VARS}
    assert env_of("quarter") == {k: "1" for k in THREAD_VARS}
    assert env_of("two") == {k: str(min(2, n)) for k in THREAD_VARS}
    assert env_of("burst") == {k: str(min(3, n)) for k in THREAD_VARS}
    # The function's OMP_NUM_THREADS wins, and the others stay unset: each library
    # falls back to it, where a default of ours would override it.
    assert env_of("mine") == {"OMP_NUM_THREADS": "7"}
    # A secret's variable wins over the default; the others still get it.
    assert env_of("secret") == dict({k: "1" for k in THREAD_VARS}, MKL_NUM_THREADS="5")


def test_python_function_sees_the_thread_variables(shared_gust, tmp_path):
    deploy(shared_gust, tmp_path)
    got = json.loads(ok(shared_gust.cli("call", "clipy.threads")).out)  # cpu=(0.5, 3)
    assert got == {k: str(min(3, host_cpus())) for k in THREAD_VARS}, got
