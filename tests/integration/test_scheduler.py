"""Scheduling and autoscaling: max/min/buffer containers, scale to zero, max_inputs, GPUs."""
import threading
import time

from gustlib import Bg, fn_spec, wait_until

SLEEP1 = ["sh", "-c", "cat >/dev/null; sleep 1; echo done"]
SMALL = {"cpu": 100, "memory": 64}


class Sampler(threading.Thread):
    """Samples GET /v1/containers for one function until stopped."""

    def __init__(self, gust, app, fn):
        super().__init__(daemon=True)
        self.gust, self.app, self.fn = gust, app, fn
        self.samples = []
        self.stop = threading.Event()
        self.start()

    def run(self):
        while not self.stop.is_set():
            try:
                self.samples.append(self.gust.containers(self.app, self.fn))
            except Exception as e:  # noqa: BLE001
                self.samples.append(e)
            time.sleep(0.05)

    def finish(self):
        self.stop.set()
        self.join(5)
        errors = [s for s in self.samples if isinstance(s, Exception)]
        assert not errors, errors[:3]
        return self.samples


def sampled_calls(gust, app, fn, n, timeout):
    """Makes n concurrent calls while sampling the function's containers; returns
    (responses, seconds taken, container samples)."""
    s = Sampler(gust, app, fn)
    t0 = time.monotonic()
    calls = [Bg(gust.call, app, fn, b"x") for _ in range(n)]
    results = [c.get(timeout) for c in calls]
    took = time.monotonic() - t0
    return results, took, s.finish()


def test_max_containers_respected(gust):
    gust.deploy(fn_spec("sc", "cap", SLEEP1, timeout=30, resources=SMALL,
                        scaling={"max_containers": 2, "scaledown_window": 30}))
    results, took, samples = sampled_calls(gust, "sc", "cap", 10, timeout=60)
    assert all(r.status == 200 and r.body == b"done\n" for r in results), results
    most = max(len(x) for x in samples)
    assert most <= 2, f"saw {most} containers with max_containers=2"
    assert most == 2, "never scaled to 2 containers"
    assert took >= 4.5, f"10 x 1 s calls on 2 containers took only {took:.2f} s"
    f = gust.function("sc", "cap")
    assert f["queued"] == 0 and f["running"] == 0, f


def test_scale_to_zero(gust):
    gust.deploy(fn_spec("sc", "idle", ["cat"], timeout=30, resources=SMALL,
                        scaling={"scaledown_window": 2}))
    assert gust.call_ok("sc", "idle", b"x") == b"x"
    t0 = time.monotonic()
    assert len(gust.containers("sc", "idle")) == 1
    wait_until(lambda: not gust.containers("sc", "idle"), 10, msg="scale to zero")
    took = time.monotonic() - t0
    assert 1.0 <= took <= 6, f"container went away after {took:.2f} s with scaledown_window=2"
    # And it comes back on demand.
    assert gust.call_ok("sc", "idle", b"y") == b"y"


def test_min_containers_warm_before_any_call(gust):
    gust.deploy(fn_spec("sc", "warm", ["cat"], timeout=30, resources=SMALL,
                        scaling={"min_containers": 2, "max_containers": 4, "scaledown_window": 1}))
    gust.wait_idle("sc", "warm", 2, timeout=20)
    # They stay although scaledown_window is 1 s.
    time.sleep(2.0)
    assert len([c for c in gust.containers("sc", "warm") if c["state"] == "idle"]) == 2
    f = gust.function("sc", "warm")
    assert f["containers"]["idle"] == 2, f


def test_buffer_containers(gust):
    gust.deploy(fn_spec("sc", "buf", ["sh", "-c", "cat >/dev/null; sleep 3; echo done"], timeout=30,
                        resources=SMALL, scaling={"buffer_containers": 1, "max_containers": 4, "scaledown_window": 10}))
    call = Bg(gust.call, "sc", "buf", b"x")
    # While one input is busy, one more idle container is kept ready.
    wait_until(lambda: (lambda cs: len([c for c in cs if c["state"] == "busy"]) >= 1 and
                        len([c for c in cs if c["state"] == "idle"]) >= 1)(gust.containers("sc", "buf")),
               2.8, msg="a busy container plus an idle buffer container")
    r = call.get(30)
    assert r.status == 200


def test_max_inputs_concurrency_per_container(gust):
    gust.deploy(fn_spec("sc", "multi", SLEEP1, timeout=30, resources=SMALL,
                        scaling={"max_containers": 1, "max_inputs": 4, "scaledown_window": 30}))
    gust.call_ok("sc", "multi", b"warm")
    results, _, samples = sampled_calls(gust, "sc", "multi", 4, timeout=30)
    assert all(r.status == 200 for r in results), results
    # One container, seen holding several inputs at once (the API's counts, not timing).
    assert max(len(x) for x in samples) == 1
    assert max((c["inputs_in_flight"] for x in samples for c in x), default=0) >= 2


def test_gpu_function_runs_and_shows_gpu(gust_factory):
    g = gust_factory("--gpus", "H100:2")
    h = g.get_json("/v1/health")
    assert "H100" in str(h.get("worker")), h
    g.deploy(fn_spec("gpu", "one", ["sh", "-c", "cat >/dev/null; sleep 1; echo gpu"], timeout=30,
                     resources={"cpu": 100, "memory": 64, "gpu": "H100:1"}, scaling={"scaledown_window": 30}))
    call = Bg(g.call, "gpu", "one", b"")
    cs = wait_until(lambda: [c for c in g.containers("gpu", "one") if c.get("gpus")], 10,
                    msg="a container holding a GPU")
    assert len(cs[0]["gpus"]) == 1 and cs[0]["gpus"][0].startswith("H100:"), cs
    r = call.get(30)
    assert r.status == 200 and r.body == b"gpu\n", r


def test_gpu_function_waits_with_visible_reason(gust_factory):
    g = gust_factory("--gpus", "H100:2")
    g.deploy({"app": "gw", "functions": [
        {"name": "both", "kind": "exec", "command": ["sh", "-c", "cat >/dev/null; sleep 3; echo both"],
         "timeout": 30, "resources": {"cpu": 100, "memory": 64, "gpu": "H100:2"},
         "scaling": {"max_containers": 1, "scaledown_window": 1}},
        {"name": "one", "kind": "exec", "command": ["sh", "-c", "cat >/dev/null; echo one"],
         "timeout": 30, "resources": {"cpu": 100, "memory": 64, "gpu": "H100:1"},
         "scaling": {"scaledown_window": 1}},
    ]})
    hog = Bg(g.call, "gw", "both", b"")
    wait_until(lambda: g.function("gw", "both")["running"] >= 1, 10, msg="the 2-GPU call to run")
    waiter = Bg(g.call, "gw", "one", b"")
    reason = wait_until(lambda: g.function("gw", "one")["waiting_reason"], 5,
                        msg="waiting_reason while both GPUs are taken")
    assert "H100" in reason, reason
    assert g.function("gw", "one")["queued"] >= 1
    assert hog.get(30).body == b"both\n"
    r = waiter.get(30)
    assert r.status == 200 and r.body == b"one\n", r
    assert g.function("gw", "one")["waiting_reason"] is None


def test_eviction_instead_of_scale_down_wait(gust_factory):
    """20 functions of 250 millicores on a 2000-millicore worker, each called once and
    then again: a call that does not fit evicts an idle container of another function
    rather than waiting for its keep-alive to end. Evictions show in /v1/usage and in
    the function listing."""
    g = gust_factory("--cpu", "2000")
    n = 20
    g.deploy({"app": "ev", "functions": [
        {"name": f"f{i}", "kind": "exec", "command": ["sh", "-c", "cat; echo ok"], "timeout": 30,
         "resources": {"cpu": 250, "memory": 64}} for i in range(n)]})
    reasons = set()
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            for f in g.functions():
                if f.get("waiting_reason"):
                    reasons.add(f["waiting_reason"])
            time.sleep(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        for _ in range(2):
            for i in range(n):
                t0 = time.monotonic()
                r = g.call("ev", f"f{i}", b"x", timeout=30)
                assert r.status == 200 and r.body == b"xok\n", r
                # Far below the 60 s keep-alive a wait for a scale-down would take.
                assert time.monotonic() - t0 < 20
    finally:
        stop.set()
        t.join(5)
    assert not [x for x in reasons if "scale" in x or "worker has" in x], reasons
    assert len(g.containers("ev")) <= 8
    fns = {f["name"]: f for f in g.functions() if f["app"] == "ev"}
    listed = sum(f["evictions"] for f in fns.values())
    assert listed >= n - 8, fns
    assert all("keepalive_s" in f and "next_prewarm_in_s" in f for f in fns.values())
    usage = g.get_json("/v1/usage")
    app = [a for a in usage["apps"] if a["app"] == "ev"][0]
    stored = sum(f["evictions"] for f in app["functions"])
    assert stored == listed, (stored, listed)
    ls = g.cli("ls")
    assert ls.rc == 0 and "EVICTED" in ls.out and "KEEPALIVE" in ls.out, ls
