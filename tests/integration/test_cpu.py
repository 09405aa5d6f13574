"""CPU requests and limits (docs/SPEC.md "resources"): a request is a reservation and
the cgroup's weight, never a cap, so a small function bursts into idle CPU; contending
functions share CPU in proportion to their requests; an explicit limit is a hard CFS
quota. Usage comes from the containers' cgroup CPU counters (`cpu_s` of
/v1/containers, read live), compared over the same window, so the assertions are about
CPU shares rather than wall-clock speed. Bounds are generous: the machine may be shared
with other work, which lowers what a container gets but not who gets more."""
import threading
import time

from gustlib import fn_spec, sdk_module, wait_until


def spin(threads, seconds, cpu=None):
    """A command that reads its input, then keeps `threads` busy loops running (the
    cores of the machine for "nproc") for `seconds`, all on CPU `cpu` if given."""
    n = "$(nproc)" if threads == "nproc" else str(threads)
    pin = f"taskset -c {cpu} " if cpu is not None else ""
    return ["sh", "-c", f"cat >/dev/null; n={n}; i=0; "
                        f"while [ $i -lt $n ]; do {pin}timeout {seconds} sh -c 'while :; do :; done' & i=$((i+1)); "
                        "done; wait; echo spun"]


def busy_container(gust, app, fn):
    """The function's container once it is serving its input."""
    return wait_until(lambda: next((c for c in gust.containers(app, fn) if c["state"] == "busy"), None), 60,
                      0.1, msg=f"a busy container of {app}.{fn}")


def cpu_rates(gust, ids, window):
    """CPU cores each container in ids used over `window` seconds: the delta of its
    cgroup CPU seconds over the delta of wall time between two readings."""
    def read():
        by = {c["id"]: c["cpu_s"] for c in gust.containers()}
        return time.monotonic(), [by[i] for i in ids]
    t0, a = read()
    time.sleep(window)
    t1, b = read()
    return [(y - x) / (t1 - t0) for x, y in zip(a, b)]


def spawn_and_wait(gust, app, fn):
    cid = gust.spawn(app, fn)
    return cid, busy_container(gust, app, fn)["id"]


def finish(gust, call_id):
    r = gust.result(call_id, wait=60)
    assert r.status == 200 and r.body == b"spun\n", r


def _usage_fn(usage, app, fn):
    for a in usage["apps"]:
        if a["app"] == app:
            return next((f for f in a["functions"] if f["function"] == fn), None)
    return None


def test_small_request_bursts_into_idle_cpu_and_bills_the_reservation(gust):
    # 25 millicores used to be a 2.5 ms per 100 ms quota: 2.5 % of a core at most.
    gust.deploy(fn_spec("cpu", "small", spin(1, 6), timeout=60, resources={"cpu": 25, "memory": 64},
                        scaling={"scaledown_window": 2}))
    assert gust.function("cpu", "small")["spec"]["resources"]["cpu"] == 25
    call, ctr = spawn_and_wait(gust, "cpu", "small")
    time.sleep(0.5)  # the loop is running
    [rate] = cpu_rates(gust, [ctr], 2.0)
    finish(gust, call)
    # One busy loop on a mostly idle machine gets most of a core; 0.5 leaves room for
    # a shared machine while still 20 times the old quota.
    assert rate > 0.5, f"a cpu=25 function used only {rate:.2f} cores"
    # Billing stays on the reservation; usage shows what was used (recorded when the
    # container stops, after its 2 s scale-down window).
    f = wait_until(lambda: (lambda u: u if u and u["cpu_used_s"] > 1.0 else None)(
        _usage_fn(gust.get_json("/v1/usage"), "cpu", "small")), 30, 0.2, msg="usage of cpu.small")
    assert f["cpu_used_s"] > 10 * f["cpu_core_s"], f


def test_contending_functions_share_by_request(gust):
    # Both busy loops are pinned to the same core, so that core is contended and the
    # weights decide. (Unpinned, the load balancer may give each function a core of
    # its own on a 2-core machine, and then neither waits for the other.)
    gust.deploy({"app": "share", "functions": [
        {"name": "low", "kind": "exec", "command": spin(1, 12, cpu=0), "timeout": 60,
         "resources": {"cpu": 100, "memory": 64}},
        {"name": "high", "kind": "exec", "command": spin(1, 12, cpu=0), "timeout": 60,
         "resources": {"cpu": 300, "memory": 64}}]})
    results = {}

    def start(fn):
        results[fn] = spawn_and_wait(gust, "share", fn)
    ts = [threading.Thread(target=start, args=(fn,)) for fn in ("low", "high")]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    time.sleep(1.0)  # every loop of both is running
    low, high = cpu_rates(gust, [results["low"][1], results["high"][1]], 3.0)
    for fn in ("low", "high"):
        finish(gust, results[fn][0])
    assert low > 0.05 and high > 0.05, (low, high)
    ratio = high / low
    assert 2.0 <= ratio <= 4.5, f"cpu 300 vs 100 got {high:.2f} vs {low:.2f} cores (ratio {ratio:.2f}, want ~3)"


def test_explicit_limit_is_enforced(gust):
    # A limit of half a core, far above the request: busy loops on every core would
    # otherwise take all of them.
    gust.deploy(fn_spec("cpu", "capped", spin("nproc", 6), timeout=60, resources={"cpu": [25, 500], "memory": 64}))
    assert gust.function("cpu", "capped")["spec"]["resources"]["cpu"] == [25, 500]
    call, ctr = spawn_and_wait(gust, "cpu", "capped")
    time.sleep(0.5)
    [rate] = cpu_rates(gust, [ctr], 2.0)
    finish(gust, call)
    # 500 millicores = a 50 ms quota per 100 ms period; the margin covers the periods
    # cut by the window's edges.
    assert rate <= 0.5 * 1.2, f"a cpu=[25, 500] function used {rate:.2f} cores"


def test_request_limit_errors_name_the_field(gust):
    r = gust.deploy(fn_spec("cpu", "bad", ["true"], resources={"cpu": [100, 50]}), expect=400)
    assert "functions[0].resources.cpu: the limit (50) is below the request (100)" in r.text, r
    r = gust.deploy(fn_spec("cpu", "bad", ["true"], resources={"memory": [256, 128]}), expect=400)
    assert "functions[0].resources.memory: the limit (128) is below the request (256)" in r.text, r
    # TOML takes the same forms.
    gust.deploy('app = "cpu"\n[[functions]]\nname = "toml"\nkind = "exec"\ncommand = ["true"]\n'
                'resources = { cpu = [100, 2000], memory = [64, 128] }\n')
    assert gust.function("cpu", "toml")["spec"]["resources"]["memory"] == [64, 128]


def test_sdk_cpu_and_memory_tuples(tmp_path):
    mod = sdk_module(tmp_path, "cpumod", '''
import gust
app = gust.App("sdkcpu")

@app.function(cpu=(0.25, 1.5), memory=(128, 512))
def burst():
    pass

@app.function(cpu=0.5, memory=256)
def plain():
    pass

@app.function()
def default():
    pass
''')
    assert mod.burst.spec()["resources"] == {"cpu": [250, 1500], "memory": [128, 512]}
    assert mod.plain.spec()["resources"] == {"cpu": 500, "memory": 256}
    assert "resources" not in mod.default.spec()
