"""Cancelling one input of a container that serves several (the shared daemon): the
input's code sees the cancellation (InputCancellation raised in a sync function's
thread, CancelledError in an async one's task, a generator waiting for its consumer
woken to see it) and the container goes on serving the others: the same process
answers afterwards and remembers what the cancelled input recorded. With
terminate_containers=True the container itself is stopped (Modal's
FunctionCall.cancel). A generator whose consumer stops early (the SDK cancels its
call) no longer takes its container down with the container's other inputs."""
import io

import pytest

from gustlib import sdk_module, wait_until

MODULE = '''
import asyncio
import os
import time

import gust
from gust.exception import InputCancellation

app = gust.App("cancels")
IMAGE = gust.Image.from_name("python")
_seen = []
_ME = os.urandom(8).hex()  # this container's process (pids repeat: each has its own pid namespace)


@app.function(image=IMAGE, max_containers=1, timeout=120)
@gust.concurrent(max_inputs=4)
def spin(tag):
    if tag == "report":
        return list(_seen), _ME
    try:
        while True:
            time.sleep(0.01)
    except InputCancellation:
        _seen.append(tag)
        raise


@app.function(image=IMAGE, max_containers=1, timeout=120)
@gust.concurrent(max_inputs=4)
async def nap(tag):
    if tag == "report":
        return list(_seen), _ME
    try:
        await asyncio.sleep(100)
    except asyncio.CancelledError:
        _seen.append(tag)
        raise


@app.function(image=IMAGE, max_containers=1, timeout=120)
@gust.concurrent(max_inputs=4)
def flood(tag):
    if tag == "report":
        yield list(_seen), _ME
        return
    try:
        for i in range(1000):
            yield bytes(1 << 20)
    except InputCancellation:
        _seen.append(tag)
        raise
'''


@pytest.fixture
def cancel_app(shared_gust, tmp_path):
    g = shared_gust
    mod = sdk_module(tmp_path, "cancelmod", MODULE)
    mod.app.addr = g.addr
    mod.app.deploy(progress=io.StringIO())
    yield g, mod
    g.http("POST", "/v1/apps/cancels/stop")


def _running(g, call):
    return g.http("GET", f"/v1/calls/{call.object_id}/status").json()["status"] == "running"


def _cancelled_alongside(g, call, report, tag, **cancel_kwargs):
    """Cancels call (running) and returns what report() says once tag shows in it,
    with the id of the container's process before the cancel."""
    wait_until(lambda: _running(g, call), 60, msg=f"{tag} running")
    _, pid = report()
    call.cancel(**cancel_kwargs)
    seen, pid_after = wait_until(lambda: (lambda r: r if tag in r[0] else None)(report()), 60,
                                 msg=f"{tag} seeing its cancellation")
    return pid, pid_after


def test_a_cancelled_sync_input_leaves_its_container_serving(cancel_app):
    g, mod = cancel_app
    call = mod.spin.spawn("a")
    pid, pid_after = _cancelled_alongside(g, call, lambda: mod.spin.remote("report"), "a")
    assert pid_after == pid
    with pytest.raises(Exception) as ei:
        call.get(timeout=30)
    assert getattr(ei.value, "code", None) == "cancelled", ei.value
    st = g.http("GET", f"/v1/calls/{call.object_id}/status").json()
    assert st["status"] == "cancelled"


def test_a_cancelled_async_input_is_its_task_cancelled(cancel_app):
    g, mod = cancel_app
    call = mod.nap.spawn("b")
    pid, pid_after = _cancelled_alongside(g, call, lambda: mod.nap.remote("report"), "b")
    assert pid_after == pid


def test_a_generator_whose_reader_stops_is_cancelled_alone(cancel_app):
    g, mod = cancel_app
    it = mod.flood.remote_gen("c")
    assert len(next(it)) == 1 << 20  # it runs, and waits on its item window
    _, pid = next(mod.flood.remote_gen("report"))
    it.close()  # the SDK cancels the call
    seen, pid_after = wait_until(lambda: (lambda r: r if "c" in r[0] else None)(next(mod.flood.remote_gen("report"))),
                                 60, msg="the generator seeing its cancellation")
    assert pid_after == pid


def test_cancel_with_terminate_containers_stops_the_container(cancel_app):
    g, mod = cancel_app
    call = mod.spin.spawn("d")
    wait_until(lambda: _running(g, call), 60, msg="d running")
    _, pid = mod.spin.remote("report")
    call.cancel(terminate_containers=True)
    seen, pid_after = mod.spin.remote("report")  # a new container
    assert pid_after != pid and "d" not in seen
    bad = g.http("POST", f"/v1/calls/{call.object_id}/cancel", body=b'{"terminate_containers": "yes"}',
                 headers={"Content-Type": "application/json"})
    assert bad.status == 400 and b"terminate_containers" in bad.body
