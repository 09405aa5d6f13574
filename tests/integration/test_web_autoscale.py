"""Web endpoints under load (docs/API.md "Autoscaling" and "Web endpoints"), with real
clients (http.client threads, wrk) against a real gustd: a burst is served by
ceil(concurrency / max_inputs) containers, requests wait at gustd while containers
start (no 5xx), the container count rises with a wrk ramp and falls to zero after the
keep-alive (read from GET /v1/functions), a container killed mid-request fails only
the requests it held (502) while those queued behind it are served by another, and
past the bounded queue a request is answered 503 with Retry-After at once."""
import http.client
import io
import json
import os
import re
import signal
import subprocess
import threading

from gustlib import sdk_module, wait_until

BURST = '''
import time
import uuid
import gust
app = gust.App("web-burst")
CTR = uuid.uuid4().hex  # once per container

@app.function(image=gust.Image.from_name("python"), max_containers=10)
@gust.concurrent(max_inputs=50)
@gust.web_endpoint()
def nap(s: float = 2.0):
    time.sleep(s)
    return {"ctr": CTR}
'''

RAMP = '''
import time
import gust
app = gust.App("web-ramp")

# A short keep-alive (Modal's scaledown_window) so that scale-to-zero comes quickly;
# it also bounds the autoscaler's stable window.
@app.function(image=gust.Image.from_name("python"), max_containers=10, scaledown_window=2)
@gust.concurrent(max_inputs=2)
@gust.web_endpoint()
def work():
    time.sleep(0.2)
    return {"ok": True}
'''

KILL = '''
import time
import uuid
import gust
app = gust.App("web-kill")
CTR = uuid.uuid4().hex  # once per container

@app.function(image=gust.Image.from_name("python"), max_containers=1)
@gust.concurrent(max_inputs=3)
@gust.web_endpoint()
def held(s: float = 0.0):
    time.sleep(s)
    return {"ctr": CTR}
'''

BOUND = '''
import time
import gust
app = gust.App("web-bound")

@app.function(image=gust.Image.from_name("python"), max_containers=1)
@gust.web_endpoint()
def one(s: float = 0.0):
    time.sleep(s)
    return {"slept": s}
'''


def deploy(g, mod):
    mod.app.addr = g.addr
    mod.app.deploy(progress=io.StringIO())
    return mod


def request(g, path, timeout=120):
    c = http.client.HTTPConnection("127.0.0.1", g.web_port, timeout=timeout)
    c.request("GET", path, headers={"Authorization": f"Bearer {g.admin_token}"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, dict(r.getheaders()), data


def in_threads(g, paths):
    """Sends each path at once from its own thread; the answers in order."""
    out = [None] * len(paths)

    def one(i, p):
        try:
            out[i] = request(g, p)
        except OSError as e:
            out[i] = (0, {}, repr(e).encode())
    ts = [threading.Thread(target=one, args=(i, p)) for i, p in enumerate(paths)]
    for t in ts:
        t.start()
    return ts, out


def fn_json(g, app, name):
    return g.get_json(f"/v1/functions/{app}/{name}")


def live(g, app, name):
    c = fn_json(g, app, name)["containers"]
    return c["starting"] + c["idle"] + c["busy"]


def test_200_concurrent_requests_in_at_most_5_containers(shared_gust, tmp_path):
    g = shared_gust
    deploy(g, sdk_module(tmp_path, "webburst", BURST))
    ts, out = in_threads(g, ["/default/web-burst/nap"] * 200)
    peak = 0
    while any(t.is_alive() for t in ts):
        peak = max(peak, live(g, "web-burst", "nap"))
        ts[0].join(0.05)
    for t in ts:
        t.join(120)
    statuses = [o[0] for o in out]
    # Queued at gustd while the containers start: every request answered 200.
    assert statuses == [200] * 200, sorted(set(statuses))
    ctrs_used = {json.loads(o[2])["ctr"] for o in out}
    assert 1 <= len(ctrs_used) <= 5, ctrs_used
    assert peak <= 5, peak
    # Its containers as the API lists them: the ones that answered, at most 5.
    ctrs = [k for k in g.get_json("/v1/containers")["containers"] if k["app"] == "web-burst"]
    assert len(ctrs) <= 5, ctrs
    a = fn_json(g, "web-burst", "nap")["autoscaler"]
    assert a["target_inputs"] == 50 and a["stable_window_s"] == 60, a


def test_wrk_ramp_scales_up_then_to_zero(shared_gust, tmp_path):
    g = shared_gust
    deploy(g, sdk_module(tmp_path, "webramp", RAMP))
    url = f"http://127.0.0.1:{g.web_port}/default/web-ramp/work"
    assert request(g, "/default/web-ramp/work")[0] == 200  # warm: one container
    peaks = []
    for conns in (2, 8, 16):
        done = threading.Event()
        peak = [0]

        def watch():
            while not done.is_set():
                peak[0] = max(peak[0], live(g, "web-ramp", "work"))
                done.wait(0.05)
        w = threading.Thread(target=watch)
        w.start()
        p = subprocess.run(["wrk", "-t", "2", "-c", str(conns), "-d", "3s", "--latency",
                            "-H", f"Authorization: Bearer {g.admin_token}", url],
                           capture_output=True, text=True, timeout=120)
        done.set()
        w.join()
        assert p.returncode == 0, p.stderr
        # No 5xx (nor any other non-2xx) while containers start.
        assert "Non-2xx" not in p.stdout, p.stdout
        assert re.search(r"\d+ requests in", p.stdout), p.stdout
        peaks.append(peak[0])
    # The count rises with the load: 2 in flight fit one container (max_inputs=2),
    # 16 need several.
    assert peaks[0] <= peaks[1] <= peaks[2] and peaks[2] > peaks[0], peaks
    assert peaks[2] > 1, peaks
    # The load gone, the autoscaler's stable window (2 s: the scaledown_window) comes
    # down and the keep-alive lets the last container go: zero, read from the API.
    wait_until(lambda: live(g, "web-ramp", "work") == 0, 120, msg="web-ramp scaled to zero")
    a = wait_until(lambda: (lambda a: a if a["desired_containers"] == 0 else None)(
        fn_json(g, "web-ramp", "work")["autoscaler"]), 60, msg="the autoscaler's count at zero")
    assert a["stable_window_s"] <= 2 and a["concurrency_stable"] == 0, a


def test_killed_container_fails_only_its_requests(shared_gust, tmp_path):
    g = shared_gust
    deploy(g, sdk_module(tmp_path, "webkill", KILL))
    # Three slow requests fill the one container (max_inputs=3, max_containers=1).
    slow, slow_out = in_threads(g, ["/default/web-kill/held?s=300"] * 3)

    def full():
        for k in g.get_json("/v1/containers")["containers"]:
            if k["app"] == "web-kill" and k["inputs_in_flight"] == 3:
                return k
    k = wait_until(full, 120, msg="the container holding 3 requests")
    # Two more wait at gustd: not yet started on any container.
    fast, fast_out = in_threads(g, ["/default/web-kill/held"] * 2)
    wait_until(lambda: fn_json(g, "web-kill", "held")["queued"] == 2, 60, msg="2 queued")
    os.kill(k["pid"], signal.SIGKILL)
    for t in slow + fast:
        t.join(120)
    for st, _, data in slow_out:
        assert st == 502, (st, data)
        assert json.loads(data)["error"]["code"] == "container_failed", data
    # The queued ones ran on the next container (the killed one is gone).
    for st, _, data in fast_out:
        assert st == 200, (st, data)
    assert len({json.loads(d)["ctr"] for _, _, d in fast_out}) == 1, fast_out
    assert not any(x["id"] == k["id"] for x in g.get_json("/v1/containers")["containers"])
    fn = fn_json(g, "web-kill", "held")
    assert fn["calls_total"] == 5, fn


def test_503_with_retry_after_past_the_queue_bound(shared_gust, tmp_path):
    g = shared_gust
    deploy(g, sdk_module(tmp_path, "webbound", BOUND))
    # One slow request holds the only container (max_inputs=1, max_containers=1)...
    first, first_out = in_threads(g, ["/default/web-bound/one?s=4"])
    wait_until(lambda: fn_json(g, "web-bound", "one")["running"] == 1, 120, msg="the first running")
    # ... so of 14 more, 10 queue (10 rounds of its capacity of 1) and 4 are refused.
    more, more_out = in_threads(g, ["/default/web-bound/one"] * 14)
    for t in first + more:
        t.join(120)
    assert first_out[0][0] == 200, first_out
    refused = [o for o in more_out if o[0] == 503]
    served = [o for o in more_out if o[0] == 200]
    assert len(refused) == 4 and len(served) == 10, [o[0] for o in more_out]
    for st, h, data in refused:
        assert h.get("Retry-After") == "1", h
        assert h.get("Content-Type", "").startswith("application/json"), h
        err = json.loads(data)["error"]
        assert err["code"] == "overloaded" and "queued" in err["message"], err
