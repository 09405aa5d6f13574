"""How containers take their inputs, with Modal's decorators: @gust.batched (callers
pass single values, the function gets lists; each caller gets its own element back,
from .remote, .map, a class method and a web endpoint) and @gust.concurrent (many
inputs at once per container: 200 calls of a max_inputs=50 function run in at most 5
containers, counted from gustd's usage; async inputs take no thread each)."""
import io
import json
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from gustlib import sdk_module

MODULE = '''
import asyncio, threading, time
import gust

app = gust.App("inputs")


@app.function()
@gust.batched(max_batch_size=10, wait_ms=1000)
def tag(xs: list[int]) -> list[tuple[int, int]]:
    # each caller's own value, and the size of the batch it came in
    return [(x, len(xs)) for x in xs]


@app.function()
@gust.batched(max_batch_size=4, wait_ms=100)
def wrong_length(xs: list[int]) -> list[int]:
    return xs + [0]


@app.function()
@gust.batched(max_batch_size=4, wait_ms=100)
def fails(xs: list[int]) -> list[int]:
    raise ValueError(f"batch of {len(xs)} failed")


@app.function()
@gust.batched(max_batch_size=8, wait_ms=300)
@gust.web_endpoint(method="GET")
def double(x: list[int]):
    return [{"double": v * 2, "batch": len(x)} for v in x]


@app.cls()
class Scaler:
    factor: int = gust.parameter(default=3)

    @gust.batched(max_batch_size=5, wait_ms=500)
    async def scale(self, xs: list[int], adds: list[int]) -> list[int]:
        await asyncio.sleep(0)
        return [x * self.factor + a for x, a in zip(xs, adds)]


@app.function(max_containers=10)
@gust.concurrent(max_inputs=50)
def nap(i):
    time.sleep(0.3)
    return i


@app.function()
@gust.concurrent(max_inputs=10, target_inputs=5)
def targeted(i):
    return i


@app.function(max_containers=1)
@gust.concurrent(max_inputs=50)
async def anap(i):
    await asyncio.sleep(0.5)
    return threading.active_count()
'''


@pytest.fixture(scope="module")
def mod(shared_gust, tmp_path_factory):
    shared_gust.use_for_sdk()
    m = sdk_module(tmp_path_factory.mktemp("inputs"), "inputsmod", MODULE)
    m.app.addr = shared_gust.addr
    m.app.deploy(progress=io.StringIO())
    return m


def test_batched_callers_get_their_own_values(mod):
    with ThreadPoolExecutor(max_workers=20) as pool:
        got = list(pool.map(mod.tag.remote, range(20)))
    assert [x for x, _ in got] == list(range(20)), got
    sizes = [n for _, n in got]
    assert max(sizes) > 1 and max(sizes) <= 10, sizes       # batches formed, never over max_batch_size
    out = list(mod.tag.map(range(50)))
    assert [x for x, _ in out] == list(range(50)), out
    assert max(n for _, n in out) > 1, out


def test_batched_class_method_and_failures(mod):
    import gust
    assert list(mod.Scaler().scale.map([1, 2, 3], [10, 20, 30])) == [13, 26, 39]
    assert mod.Scaler(factor=5).scale.remote(2, adds=1) == 11
    with pytest.raises(gust.InvalidError, match="must be a list of equal length as its inputs"):
        mod.wrong_length.remote(1)
    errs = list(mod.fails.map(range(3), return_exceptions=True))
    assert all(isinstance(e, ValueError) and "failed" in str(e) for e in errs), errs
    with pytest.raises(gust.InvalidError, match="takes 1 argument"):   # a caller's wrong arity fails alone
        mod.tag.remote(1, 2)


def test_batched_web_endpoint(shared_gust, mod):
    url = mod.double.get_web_url()

    def get(i):
        req = urllib.request.Request(f"{url}?x={i}", headers={"Authorization": f"Bearer {shared_gust.admin_token}"})
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read())
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(get, range(8)))
    assert [g["double"] for g in got] == [2 * i for i in range(8)], got
    assert max(g["batch"] for g in got) > 1, got


def test_batched_arguments_are_checked_as_modal_does():
    import gust
    for kw, msg in [({"max_batch_size": 0, "wait_ms": 1}, "max_batch_size must be a positive integer"),
                    ({"max_batch_size": 1000, "wait_ms": 1}, "max_batch_size must be less than 1000"),
                    ({"max_batch_size": 2, "wait_ms": -1}, "wait_ms must be a non-negative integer"),
                    ({"max_batch_size": 2, "wait_ms": 600000}, "wait_ms must be less than 600000")]:
        with pytest.raises(gust.InvalidError, match=msg):
            gust.batched(**kw)
    with pytest.raises(gust.InvalidError, match="does not accept default arguments"):
        gust.batched(max_batch_size=2, wait_ms=0)(lambda xs=[]: xs)
    with pytest.raises(gust.InvalidError, match="cannot be greater than `max_inputs`"):
        gust.concurrent(max_inputs=4, target_inputs=5)
    app = gust.App("bad")
    with pytest.raises(gust.InvalidError, match="can only have one batched function"):
        @app.cls()
        class Two:
            @gust.batched(max_batch_size=2, wait_ms=0)
            def a(self, xs): return xs

            @gust.batched(max_batch_size=2, wait_ms=0)
            def b(self, xs): return xs


def test_concurrent_200_calls_in_at_most_5_containers(shared_gust, mod):
    with ThreadPoolExecutor(max_workers=200) as pool:
        got = list(pool.map(mod.nap.remote, range(200)))
    assert got == list(range(200))
    usage = shared_gust.get_json("/v1/usage")
    fns = {f["function"]: f for a in usage["apps"] if a["app"] == "inputs" for f in a["functions"]}
    live = shared_gust.containers("inputs", "nap")
    assert 1 <= fns["nap"]["containers"] <= 5, (fns["nap"], live)
    assert len(live) <= 5, live
    spec = shared_gust.get_json("/v1/functions/inputs/targeted")["spec"]
    assert spec["scaling"]["max_inputs"] == 10 and spec["scaling"]["target_inputs"] == 5, spec
    assert spec["env"]["GUST_MAX_INPUTS"] == "10", spec


def test_async_inputs_take_no_thread_each(mod):
    with ThreadPoolExecutor(max_workers=50) as pool:
        counts = list(pool.map(mod.anap.remote, range(50)))
    # 50 inputs awaiting at once on the container's loop: a few threads, not 50.
    assert max(counts) < 10, counts
    assert threading.active_count() >= 1
