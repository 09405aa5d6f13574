"""Calls: sync, binary payloads, limits, spawn/result, long-poll, cancel, map."""
import json
import os
import time

from gustlib import fn_spec, map_lines, wait_until

CAT = fn_spec("c", "cat", ["cat"], timeout=60, resources={"cpu": 250, "memory": 128},
              scaling={"max_containers": 4, "scaledown_window": 60})
SLEEP = fn_spec("c", "sleep", ["sh", "-c", "read t; sleep $t; echo slept $t"], timeout=60,
                resources={"cpu": 100, "memory": 64}, scaling={"max_containers": 4, "scaledown_window": 60})


def test_sync_call_returns_output(gust):
    gust.deploy(CAT)
    r = gust.call("c", "cat", b"hello")
    assert r.status == 200 and r.body == b"hello", r
    assert r.headers["gust-status"] == "succeeded"
    st = gust.status(r.headers["gust-call-id"])
    assert st["status"] == "succeeded" and st["app"] == "c" and st["function"] == "cat", st
    assert st["attempts"] == 1 and st["error"] is None and st["output_size"] == 5, st
    # Empty input, empty output.
    r = gust.call("c", "cat", b"")
    assert r.status == 200 and r.body == b"", r


def test_binary_safe_payloads(gust):
    gust.deploy(CAT)
    every = bytes(range(256)) * 4
    assert gust.call_ok("c", "cat", every) == every
    big = os.urandom(5 * 1024 * 1024)
    r = gust.call("c", "cat", big, timeout=120)
    assert r.status == 200, r
    assert len(r.body) == len(big) and r.body == big
    # Through the CLI too (-d @file, output on stdout).
    c = gust.cli("call", "c.cat", input=every)
    assert c.rc == 0 and c.stdout == every, c


def test_payload_over_limit_is_413(gust_factory):
    g = gust_factory("--max-payload", "1024")
    g.deploy(CAT)
    assert g.call_ok("c", "cat", b"a" * 1000) == b"a" * 1000
    r = g.call("c", "cat", b"a" * 4096)
    assert r.status == 413, r
    assert r.error()["code"] == "payload_too_large"
    # A function's output over the limit fails the call instead of crashing anything.
    g.deploy(fn_spec("c", "big", ["sh", "-c", "head -c 100000 /dev/zero"], timeout=20))
    r = g.call("c", "big", b"")
    assert r.status >= 400, r
    r.error()
    assert g.http("GET", "/v1/health").status == 200


def test_spawn_and_result_wait(gust):
    gust.deploy(CAT)
    cid = gust.spawn("c", "cat", b"later")
    r = gust.result(cid, wait=30)
    assert r.status == 200 and r.body == b"later", r
    assert r.headers.get("gust-call-id") == cid
    # The CLI: spawn prints the id, result --wait prints the output.
    c = gust.cli("spawn", "c.cat", "-d", "via-cli")
    assert c.rc == 0, c
    cid2 = c.out.strip()
    assert cid2.startswith("fc-"), c
    c = gust.cli("result", cid2, "--wait", "30")
    assert c.rc == 0 and c.stdout == b"via-cli", c


def test_result_long_poll_202_then_200(gust):
    gust.deploy(SLEEP)
    cid = gust.spawn("c", "sleep", b"2\n")
    r = gust.result(cid, wait=0)
    assert r.status == 202, r
    j = r.json()
    assert j["call_id"] == cid and j["status"] in ("pending", "running"), j
    t0 = time.monotonic()
    r = gust.result(cid, wait=1)
    assert r.status == 202, r
    assert 0.8 <= time.monotonic() - t0 < 5, "wait=1 did not wait about 1 s"
    r = gust.result(cid, wait=30)
    assert r.status == 200 and r.body == b"slept 2\n", r


def test_cancel_running_call(gust):
    gust.deploy(SLEEP)
    cid = gust.spawn("c", "sleep", b"30\n")
    gust.wait_status(cid, "running", 15)
    t0 = time.monotonic()
    r = gust.http("POST", f"/v1/calls/{cid}/cancel")
    assert r.status == 200, r
    assert r.json() == {"call_id": cid, "status": "cancelled"} or r.json()["status"] == "cancelled", r
    st = gust.wait_status(cid, "cancelled", 10)
    assert st["status"] == "cancelled"
    r = gust.result(cid, wait=10)
    assert r.status == 409 and r.error()["code"] == "cancelled", r
    assert time.monotonic() - t0 < 10
    # The input was really stopped: the container becomes free for the next call.
    wait_until(lambda: gust.function("c", "sleep")["running"] == 0, 10, msg="running back to 0")
    r = gust.call("c", "sleep", b"0\n")
    assert r.status == 200 and r.body == b"slept 0\n", r
    # Cancelling a finished call does not change it.
    done = r.headers["gust-call-id"]
    r = gust.http("POST", f"/v1/calls/{done}/cancel")
    assert r.status == 200 and r.json()["status"] == "succeeded", r
    # ... and via the CLI.
    cid = gust.spawn("c", "sleep", b"30\n")
    c = gust.cli("cancel", cid)
    assert c.rc == 0, c
    gust.wait_status(cid, "cancelled", 10)


def _map_body(n):
    return ("\n".join(json.dumps(f"in-{i}") for i in range(n)) + "\n").encode()


def test_map_unordered_all_indices(gust):
    gust.deploy(CAT)
    r = gust.http("POST", "/v1/functions/c/cat/map", _map_body(200), {"Content-Type": "application/x-ndjson"},
                  timeout=120)
    assert r.status == 200, r
    assert r.headers.get("content-type", "").startswith("application/x-ndjson")
    rows, done = map_lines(r.body)
    assert sorted(x["index"] for x in rows) == list(range(200))
    for x in rows:
        assert x["status"] == "succeeded" and x["output"] == f"in-{x['index']}", x
        assert x["call_id"].startswith("fc-")
    assert done["succeeded"] == 200 and done["failed"] == 0, done


def test_map_ordered_and_input_forms(gust):
    gust.deploy(CAT)
    r = gust.http("POST", "/v1/functions/c/cat/map?ordered=1", _map_body(200),
                  {"Content-Type": "application/x-ndjson"}, timeout=120)
    assert r.status == 200, r
    rows, done = map_lines(r.body)
    assert [x["index"] for x in rows] == list(range(200))
    assert all(x["output"] == f"in-{x['index']}" for x in rows)
    assert done["succeeded"] == 200
    # {"b64": ...} is decoded; other JSON values pass as their JSON text; binary output
    # comes back as output_b64.
    body = b'{"b64": "/wA="}\n{"k": 1}\n42\n'
    r = gust.http("POST", "/v1/functions/c/cat/map?ordered=1", body, {"Content-Type": "application/x-ndjson"})
    rows, done = map_lines(r.body)
    assert rows[0].get("output_b64") == "/wA=", rows[0]
    assert json.loads(rows[1]["output"]) == {"k": 1}, rows[1]
    assert rows[2]["output"] == "42", rows[2]


def test_map_via_cli_with_progress(gust, tmp_path):
    gust.deploy(CAT)
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(_map_body(200))
    c = gust.cli("map", "c.cat", input=inp.read_bytes(), timeout=120)
    assert c.rc == 0, c
    rows = [json.loads(x) for x in c.out.splitlines() if x.strip()]
    rows = [x for x in rows if "index" in x]
    assert sorted(x["index"] for x in rows) == list(range(200)), c.out[-500:]
    assert c.err.strip(), "no progress on stderr"
    assert "200" in c.err, f"progress does not count to 200: {c.err[-300:]!r}"
