"""Call timelines: GET /v1/calls/ID/status's "timeline", the listing of a function's
recent calls (GET .../calls, `gust calls`), and `gust logs` filters."""
import json
import time

from gustlib import fn_spec, wait_until

CAT = fn_spec("tl", "cat", ["cat"], timeout=60, resources={"cpu": 100, "memory": 64},
              scaling={"max_containers": 1, "scaledown_window": 60})
FAIL = fn_spec("tl", "fail", ["sh", "-c", "cat >/dev/null; exit 3"], timeout=60,
               resources={"cpu": 100, "memory": 64}, retries={"max_retries": 1, "initial_delay": 0},
               scaling={"max_containers": 1, "scaledown_window": 60})


def check_sums(tl):
    """The phases are contiguous: queued + running is the whole, and the attempts'
    times are the running part, in order, none overlapping."""
    assert tl["ended_us"] is not None and tl["elapsed_us"] == tl["ended_us"], tl
    assert tl["queued_us"] + tl["running_us"] == tl["ended_us"], tl
    assert tl["queued_us"] >= 0 and tl["running_us"] >= 0, tl
    ran, prev_end = 0, 0
    for a in tl["attempts"]:
        assert prev_end <= a["dispatched_us"] <= a["ended_us"] <= tl["ended_us"], tl
        ran += a["ended_us"] - a["dispatched_us"]
        prev_end = a["ended_us"]
    assert ran == tl["running_us"], tl
    assert tl["attempts_total"] == len(tl["attempts"]), tl


def test_cold_and_warm_call_timelines(gust):
    gust.deploy(CAT)
    t0 = time.monotonic()
    r = gust.call("tl", "cat", b"one")
    observed_us = (time.monotonic() - t0) * 1e6
    assert r.status == 200, r
    st = gust.status(r.headers["gust-call-id"])
    tl = st["timeline"]
    check_sums(tl)
    # What the client saw contains what gustd measured.
    assert observed_us >= tl["ended_us"], (observed_us, tl)
    assert len(tl["attempts"]) == 1, tl
    a = tl["attempts"][0]
    assert a["container"]["cold"] is True and a["container"]["id"].startswith("ct-"), tl
    assert a["container"]["snapshot"] is False, tl
    cs = tl["container_start"]
    assert cs is not None and cs["started_us"] <= cs["ready_us"] <= a["dispatched_us"], tl
    assert set(cs["start_breakdown_us"]) == {"cgroups", "namespaces", "network", "mounts", "user_namespace",
                                             "seccomp_caps", "exec"}, cs
    assert tl["first_output_us"] == tl["ended_us"], tl
    assert abs(tl["submitted_at"] - st["created_at"]) < 1e-3, (tl, st)

    t0 = time.monotonic()
    r = gust.call("tl", "cat", b"two")
    observed_us = (time.monotonic() - t0) * 1e6
    st = gust.status(r.headers["gust-call-id"])
    tl = st["timeline"]
    check_sums(tl)
    assert observed_us >= tl["ended_us"], (observed_us, tl)
    a2 = tl["attempts"][0]
    assert a2["container"]["cold"] is False and a2["container"]["id"] == a["container"]["id"], tl
    assert tl["container_start"] is None, tl


def test_spawned_call_timeline_is_stored(gust):
    gust.deploy(CAT)
    cid = gust.spawn("tl", "cat", b"stored")
    assert gust.result(cid, wait=30).status == 200
    tl = gust.status(cid)["timeline"]
    check_sums(tl)
    # The stored text is what a later read of the call (from the store) answers.
    stored = wait_until(lambda: gust.http("GET", f"/v1/calls/{cid}/status").json()["timeline"], 5, 0.1)
    assert stored == tl


def test_retried_call_lists_attempts(gust):
    gust.deploy(FAIL)
    cid = gust.spawn("tl", "fail", b"x")
    r = gust.result(cid, wait=60)
    assert r.status >= 400, r
    st = gust.status(cid)
    assert st["status"] == "failed" and st["attempts"] == 2, st
    tl = st["timeline"]
    check_sums(tl)
    assert len(tl["attempts"]) == 2 and tl["attempts_total"] == 2, tl
    assert tl["first_output_us"] is None, tl


def test_calls_listing_and_cli(gust):
    gust.deploy(CAT)
    ids = [gust.call("tl", "cat", b"l%d" % i).headers["gust-call-id"] for i in range(3)]
    ids.append(gust.spawn("tl", "cat", b"spawned"))
    assert gust.result(ids[-1], wait=30).status == 200
    r = gust.http("GET", "/v1/functions/tl/cat/calls?limit=3")
    assert r.status == 200, r
    calls = r.json()["calls"]
    assert [c["call_id"] for c in calls] == ids[::-1][:3], (calls, ids)
    for c in calls:
        assert c["status"] == "succeeded", c
        check_sums(c["timeline"])
    assert gust.http("GET", "/v1/functions/tl/cat/calls?limit=0").status == 400
    bad = gust.http("GET", "/v1/functions/tl/cat/calls?limit=x")
    assert bad.status == 400 and "limit" in bad.error()["message"], bad
    assert gust.http("GET", "/v1/functions/tl/nope/calls").status == 404
    c = gust.cli("calls", "tl.cat", "--json")
    assert c.rc == 0, c
    listed = json.loads(c.out)["calls"]
    assert set(ids) <= {x["call_id"] for x in listed}, (listed, ids)
    c = gust.cli("calls", "tl.cat", "--limit", "2")
    assert c.rc == 0, c
    lines = c.out.splitlines()
    assert lines[0].split()[:3] == ["ID", "STATUS", "QUEUED"], c
    assert len(lines) == 3 and ids[-1] in lines[1] and "succeeded" in lines[1], c


LOG_MODULE = '''
import gust

app = gust.App("tllogs")
image = gust.Image.from_name("python")


@app.function(image=image, timeout=60, scaledown_window=60)
def say(x):
    print(f"said {x}")
    return x
'''


def test_logs_filters(shared_gust, tmp_path):
    import io
    from gustlib import sdk_module
    g = shared_gust
    mod = sdk_module(tmp_path, "tllogs", LOG_MODULE)
    mod.app.addr = g.addr
    mod.app.deploy(progress=io.StringIO())
    ids = []
    for word in ("alpha", "beta"):
        c = g.cli("spawn", "tllogs.say", "-d", json.dumps(word))
        assert c.rc == 0, c
        ids.append(c.out.strip())
        assert g.cli("result", ids[-1], "--wait", "60").rc == 0
    wait_until(lambda: "said beta" in g.cli("logs", "tllogs.say").out, 10, 0.2, msg="both lines stored")
    # --call: only that call's lines.
    c = g.cli("logs", "tllogs.say", "--call", ids[0])
    assert c.rc == 0 and "said alpha" in c.out and "said beta" not in c.out, c
    assert all(f" {ids[0]} " in x for x in c.out.splitlines()), c
    # --container: the container of the call's last attempt.
    ctr = g.status(ids[1])["timeline"]["attempts"][-1]["container"]["id"]
    c = g.cli("logs", "tllogs.say", "--container", ctr)
    assert c.rc == 0 and "said beta" in c.out and all(f" {ctr} " in x for x in c.out.splitlines()), c
    # --search: a substring.
    c = g.cli("logs", "tllogs.say", "--search", "id bet")
    assert c.rc == 0 and c.out.splitlines() and all("said beta" in x for x in c.out.splitlines()), c
    # --since in the future: nothing; --since an hour ago and --until in an hour: both.
    c = g.cli("logs", "tllogs.say", "--since", "2999-01-01T00:00:00Z")
    assert c.rc == 0 and c.out == "", c
    c = g.cli("logs", "tllogs.say", "--since", "1h", "--until", str(time.time() + 3600))
    assert c.rc == 0 and "said alpha" in c.out and "said beta" in c.out, c
    c = g.cli("logs", "tllogs.say", "--until", "1h")
    assert c.rc == 0 and "said" not in c.out, c
    # Bad values: the CLI names the option, gustd the parameter.
    c = g.cli("logs", "tllogs.say", "--since", "yesterday")
    assert c.rc == 2 and "--since" in c.err, c
    r = g.http("GET", "/v1/functions/tllogs/say/logs?since=soon")
    assert r.status == 400 and r.error()["message"].startswith("since:"), r
    r = g.http("GET", "/v1/functions/tllogs/say/logs?search=" + "x" * 300)
    assert r.status == 400 and r.error()["message"].startswith("search:"), r
    r = g.http("GET", "/v1/functions/tllogs/say/logs?call=")
    assert r.status == 400 and r.error()["message"].startswith("call:"), r
