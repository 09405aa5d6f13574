"""Generator and async functions from the Python SDK against a real gustd (the shared
daemon): .remote_gen() streams values while the generator still runs (shown by the
order of events, not by timings), a generator's exception follows the values it
yielded, misuses raise InvalidError as in Modal (also for functions looked up by name,
where gustd tells), async functions run on one event loop per container with the .aio
forms from coroutines, an async local entrypoint runs under `gust run`, and another
workspace cannot read a call's items (404)."""
import asyncio
import io
import json
import os
import pickle
import struct
import sys

import pytest

from gustlib import sdk_module

MODULE = '''
import asyncio
import threading
import time

import gust

app = gust.App("gent")
IMAGE = gust.Image.from_name("python")
_released = threading.Event()


# Two inputs at once in one container (one process): "wait" yields, then waits for the
# "release" input to set the event. The client asks for "release" only after it holds
# "wait"'s first value, so "second" comes only if that value arrived while "wait" was
# still running.
@app.function(image=IMAGE, max_containers=1, timeout=120)
@gust.concurrent(max_inputs=2)
def handshake(mode):
    if mode == "release":
        _released.set()
        yield "released"
        return
    yield "first"
    yield "second" if _released.wait(60) else "never released"


# A generator of 1 MiB values and, as a second input of the same process, a probe of
# how many it has produced: its reader takes nothing, so the item window (8 MiB) stops it.
_produced = []


@app.function(image=IMAGE, max_containers=1, timeout=120)
@gust.concurrent(max_inputs=2)
def big(mode, n=0):
    if mode == "probe":
        yield len(_produced)
        return
    for i in range(n):
        _produced.append(i)
        yield bytes([i]) * (1 << 20)


@app.function(image=IMAGE)
def count(n):
    for i in range(n):
        yield {"i": i, "pad": "x" * (i % 7)}


@app.function(image=IMAGE)
def fails_after(n):
    for i in range(n):
        yield i
    raise ValueError(f"gen says no after {n}")


@app.function(image=IMAGE)
def plain(x):
    return x * 2


@app.function(image=IMAGE)
async def add_async(x):
    await asyncio.sleep(0)
    print("adding", x)
    return x + 1


@app.function(image=IMAGE)
async def agen(n):
    for i in range(n):
        await asyncio.sleep(0)
        yield i * 10


# Four inputs at once on the container's event loop: each waits until all four are in
# (an asyncio.Event of that one loop); inputs run one after another would never meet.
_arrived = []
_all_in = None


@app.function(image=IMAGE, max_containers=1, timeout=120)
@gust.concurrent(max_inputs=4)
async def meet(k):
    global _all_in
    if _all_in is None:
        _all_in = asyncio.Event()
    _arrived.append(k)
    if len(_arrived) % 4 == 0:
        _all_in.set()
    try:
        await asyncio.wait_for(_all_in.wait(), 60)
    except asyncio.TimeoutError:
        return ("alone", threading.get_ident())
    return ("met", threading.get_ident())
'''


@pytest.fixture
def gen_app(shared_gust, tmp_path):
    g = shared_gust
    mod = sdk_module(tmp_path, "genmod", MODULE)
    mod.app.addr = g.addr
    mod.app.deploy(progress=io.StringIO())
    yield g, mod
    g.http("POST", "/v1/apps/gent/stop")


def test_remote_gen_streams_while_the_generator_runs(gen_app):
    g, mod = gen_app
    it = mod.handshake.remote_gen("wait")
    assert next(it) == "first"
    # "wait" is still running (blocked until released): its first value is here.
    assert list(mod.handshake.remote_gen("release")) == ["released"]
    assert list(it) == ["second"]
    # Many values, in order, as the client sees them.
    got = list(mod.count.remote_gen(5000))
    assert [v["i"] for v in got] == list(range(5000)) and got[6]["pad"] == "xxxxxx"
    assert list(mod.count.remote_gen(0)) == []
    # The local form is the plain generator.
    assert [v["i"] for v in mod.count.local(3)] == [0, 1, 2]


def test_a_slow_reader_holds_the_generator_back(gen_app):
    g, mod = gen_app
    it = mod.big.remote_gen("produce", 20)
    first = next(it)  # what the first answer holds stays unacknowledged while we hold it
    assert first == bytes([0]) * (1 << 20)
    produced = next(mod.big.remote_gen("probe"))
    # 8 MiB of values unacknowledged: at most 8 sent, a 9th pulled and waiting to go.
    assert 1 <= produced <= 9, produced
    rest = list(it)
    assert [v[:1] for v in rest] == [bytes([i]) for i in range(1, 20)] and all(len(v) == 1 << 20 for v in rest)


def test_generator_exception_follows_its_values(gen_app):
    g, mod = gen_app
    import gust
    seen = []
    with pytest.raises(ValueError) as ei:
        for v in mod.fails_after.remote_gen(3):
            seen.append(v)
    assert seen == [0, 1, 2]
    assert str(ei.value) == "gen says no after 3"
    assert isinstance(ei.value.__cause__, gust.RemoteError) and "fails_after" in str(ei.value.__cause__)


def test_misuse_raises_invalid_error(gen_app):
    g, mod = gen_app
    import gust
    for call in (lambda: mod.count.remote(3), lambda: mod.count.spawn(3), lambda: mod.count.map([1]),
                 lambda: list(mod.plain.remote_gen(1))):
        with pytest.raises(gust.InvalidError):
            call()
    # Looked up by name the SDK cannot tell: gustd does.
    by_name = gust.Function.from_name("gent", "count", addr=g.addr)
    with pytest.raises(gust.InvalidError, match="remote_gen"):
        by_name.remote(3)
    assert [v["i"] for v in by_name.remote_gen(3)] == [0, 1, 2]
    with pytest.raises(gust.InvalidError, match="not a generator"):
        list(gust.Function.from_name("gent", "plain", addr=g.addr).remote_gen(1))
    assert mod.plain.remote(4) == 8  # the container that served the misuse still serves


def test_async_functions_and_aio_forms(gen_app):
    g, mod = gen_app
    assert mod.add_async.remote(1) == 2
    assert list(mod.agen.remote_gen(3)) == [0, 10, 20]

    async def main():
        a = await mod.add_async.remote.aio(41)
        call = await mod.add_async.spawn.aio(1)
        b = await call.get.aio(timeout=60)
        c = await mod.plain.remote.aio(5)
        items = [v async for v in mod.agen.remote_gen.aio(4)]
        sync_items = [v["i"] async for v in mod.count.remote_gen.aio(3)]
        mapped = [v async for v in mod.add_async.map.aio(range(5))]

        async def numbers():
            for i in range(3):
                yield i
        from_async = [v async for v in mod.plain.map.aio(numbers())]
        met = await asyncio.gather(*(mod.meet.remote.aio(k) for k in range(4)))
        return a, b, c, items, sync_items, mapped, from_async, met, call.object_id

    a, b, c, items, sync_items, mapped, from_async, met, call_id = asyncio.run(main())
    assert (a, b, c) == (42, 2, 10)
    assert items == [0, 10, 20, 30] and sync_items == [0, 1, 2]
    assert mapped == [1, 2, 3, 4, 5] and from_async == [0, 2, 4]
    # The four inputs ran at once on one event loop (one thread) of one container.
    assert [m[0] for m in met] == ["met"] * 4, met
    assert len({m[1] for m in met}) == 1, met
    # What a coroutine printed is logged with its call's id (the task's own input).
    logs = g.http("GET", "/v1/functions/gent/add_async/logs").body.decode()
    assert any(x.endswith(f" {call_id} stdout adding 1") for x in logs.splitlines()), (call_id, logs)


def test_async_local_entrypoint_runs_under_gust_run(shared_gust, tmp_path):
    g = shared_gust
    path = tmp_path / "arun.py"
    path.write_text('''
import asyncio
import gust
app = gust.App("genrun")

@app.function(image=gust.Image.from_name("python"))
def hello(name):
    return "hi " + name

@app.function(image=gust.Image.from_name("python"))
def upto(n):
    yield from range(n)

@app.local_entrypoint()
async def main():
    print(await hello.remote.aio("async"))
    print([x async for x in upto.remote_gen.aio(3)])
    await asyncio.sleep(0)
    print("entrypoint done")
''')
    r = g.cli("run", str(path), timeout=600)
    assert r.rc == 0 and r.out == "hi async\n[0, 1, 2]\nentrypoint done\n", r


def test_items_route_and_other_workspace(gen_app):
    g, mod = gen_app
    body = pickle.dumps(((3,), {}), protocol=5)
    r = g.http("POST", "/v1/functions/gent/count/generate", body)
    assert r.status == 202, r
    call_id = r.json()["call_id"]
    # Another workspace: not found, as a missing call.
    other = g.token_for("genws", "invoker")
    r = g.http("GET", f"/v1/calls/{call_id}/items?from=0", token=other)
    assert r.status == 404 and r.error()["code"] == "not_found", r
    # The owner reads every item (the long poll returns as soon as there are some).
    got, nxt, done = [], 0, False
    while not done:
        r = g.http("GET", f"/v1/calls/{call_id}/items?from={nxt}&timeout=30")
        assert r.status == 200 and r.headers["content-type"] == "application/x-gust-items", r
        nl = r.body.index(b"\n")
        head = json.loads(r.body[:nl])
        off = nl + 1
        for _ in range(head["next"] - head["from"]):
            (n,) = struct.unpack_from("<Q", r.body, off)
            got.append(pickle.loads(r.body[off + 8:off + 8 + n]))
            off += 8 + n
        assert off == len(r.body)
        nxt, done = head["next"], head["done"]
    assert [v["i"] for v in got] == [0, 1, 2] and head["status"] == "succeeded" and "error" not in head, head
    # Asking from 3 takes them all (gustd lets them go); then reading before that is
    # 410, past the end 400; a call that is not a generator call: 409.
    r = g.http("GET", f"/v1/calls/{call_id}/items?from=3")
    assert r.status == 200 and json.loads(r.body)["done"] is True, r
    assert g.http("GET", f"/v1/calls/{call_id}/items?from=4").status == 400
    assert g.http("GET", f"/v1/calls/{call_id}/items?from=1").status == 410
    assert g.http("GET", f"/v1/calls/{call_id}/items?from=x").status == 400
    plain = g.spawn("gent", "plain", pickle.dumps(((1,), {}), protocol=5))
    r = g.http("GET", f"/v1/calls/{plain}/items")
    assert r.status == 409 and r.error()["code"] == "not_generator", r
