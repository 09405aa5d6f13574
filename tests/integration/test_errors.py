"""Bad input of every kind: the daemon answers with the documented error and stays healthy."""
import json
import socket
import time

from gustlib import fn_spec, raw_exchange, status_of_raw, wait_until

GOOD = {"app": "e", "functions": [{"name": "f", "kind": "exec", "command": ["cat"]}]}


def _deploy_raw(gust, body, ctype="application/json"):
    return gust.http("POST", "/v1/deploy", body, {"Content-Type": ctype})


def _spec(**fields):
    s = json.loads(json.dumps(GOOD))
    s["functions"][0].update(fields)
    return s


def test_malformed_json(gust):
    for body in (b"{", b'{"app": "e", "functions": [', b"not json at all", b"\xff\xfe\x00", b""):
        r = _deploy_raw(gust, body)
        assert r.status == 400, (body, r)
        assert r.error()["code"] in ("bad_request", "invalid_spec"), r
    r = _deploy_raw(gust, 'app = "x"\n[[functions]\nname=', "application/toml")
    assert r.status == 400, r
    r.error()


def test_unknown_field_is_named(gust):
    r = _deploy_raw(gust, json.dumps(_spec(colour="blue")))
    assert r.status == 400, r
    e = r.error()
    assert e["code"] == "invalid_spec"
    assert "colour" in e["message"] or "colour" in e.get("field", ""), e
    s = _spec()
    s["functions"][0]["scaling"] = {"max_containerz": 3}
    e = _deploy_raw(gust, json.dumps(s)).error()
    assert "max_containerz" in e["message"] or "max_containerz" in e.get("field", ""), e
    assert "functions[0]" in e["message"] or e.get("field", "").startswith("functions[0]"), e
    e = _deploy_raw(gust, json.dumps({**GOOD, "extra": 1})).error()
    assert "extra" in e["message"] or e.get("field") == "extra", e


def test_missing_required_field(gust):
    s = json.loads(json.dumps(GOOD))
    del s["functions"][0]["command"]
    r = _deploy_raw(gust, json.dumps(s))
    assert r.status == 400, r
    e = r.error()
    assert e["code"] == "invalid_spec" and "command" in (e["message"] + e.get("field", "")), e
    r = _deploy_raw(gust, json.dumps({"functions": GOOD["functions"]}))
    assert r.status == 400 and "app" in (r.error()["message"] + r.error().get("field", "")), r
    r = _deploy_raw(gust, json.dumps(_spec(command=[])))
    assert r.status == 400 and r.error()["code"] == "invalid_spec", r
    r = _deploy_raw(gust, json.dumps(_spec(resources={"memory": "lots"})))
    e = r.error()
    assert r.status == 400 and "memory" in (e["message"] + e.get("field", "")), r


def test_invalid_names(gust):
    for bad in ("bad name", "-leading", "a/b", "x" * 64, "", "ü", "../etc"):
        r = _deploy_raw(gust, json.dumps({**GOOD, "app": bad}))
        assert r.status == 400, (bad, r)
        assert r.error()["code"] == "invalid_spec"
        r = _deploy_raw(gust, json.dumps(_spec(name=bad)))
        assert r.status == 400, (bad, r)
        assert r.error()["code"] == "invalid_spec"
    # The longest valid name works.
    ok = "a" + "b" * 62
    assert _deploy_raw(gust, json.dumps({**GOOD, "app": ok})).status == 200


def test_gpu_beyond_every_worker(gust_factory):
    g = gust_factory("--gpus", "H100:2")
    r = _deploy_raw(g, json.dumps(fn_spec("gp", "big", ["cat"], resources={"gpu": "H100:4"}, timeout=10)))
    if r.status == 422:
        assert r.error()["code"] == "unschedulable", r
        return
    assert r.status == 200, r
    # Accepted: a call must wait, with the reason visible.
    cid = g.spawn("gp", "big", b"x")

    def reason():
        f = [f for f in g.functions() if f["app"] == "gp" and f["name"] == "big"][0]
        return f["waiting_reason"]

    why = wait_until(reason, 10, msg="waiting_reason for a 4 x H100 function")
    assert "H100" in why, why
    assert g.status(cid)["status"] == "pending"
    c = g.cli("ls")
    assert c.rc == 0 and "H100" in c.out, c
    # Also a call with a deadline answers 202 instead of hanging or erroring.
    r = g.call("gp", "big", b"x", query="?timeout=1")
    assert r.status in (202, 422), r


def test_unknown_function_and_call_404(gust):
    gust.deploy(GOOD)
    for method, path in (("POST", "/v1/functions/e/nope/call"), ("POST", "/v1/functions/nope/f/call"),
                         ("POST", "/v1/functions/e/nope/spawn"), ("POST", "/v1/functions/e/nope/map"),
                         ("GET", "/v1/functions/e/nope"), ("GET", "/v1/calls/fc-doesnotexist"),
                         ("GET", "/v1/calls/fc-doesnotexist/status"), ("POST", "/v1/calls/fc-doesnotexist/cancel"),
                         ("GET", "/v1/nothing-here"), ("POST", "/v1/apps/nope/stop")):
        r = gust.http(method, path, b"x" if method == "POST" else None)
        assert r.status == 404, (method, path, r)
        assert r.error()["code"] == "not_found", r
    r = gust.http("DELETE", "/v1/deploy")
    assert r.status in (404, 405), r
    r.error()


def test_stopped_app_refuses_calls(gust):
    gust.deploy(GOOD)
    assert gust.call_ok("e", "f", b"1") == b"1"
    r = gust.http("POST", "/v1/apps/e/stop")
    assert r.status == 200 and r.json()["state"] == "stopped", r
    r = gust.call("e", "f", b"2")
    assert r.status == 409 and r.error()["code"] == "conflict", r
    gust.deploy(GOOD)
    assert gust.call_ok("e", "f", b"3") == b"3"


def test_client_disconnect_mid_request(gust):
    gust.deploy(GOOD)
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", gust.port))
        s.sendall(b"POST /v1/functions/e/f/call HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n" + b"a" * 5000)
        s.close()
        s = socket.create_connection(("127.0.0.1", gust.port))
        s.sendall(b"POST /v1/deploy HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 900\r\n\r\n{\"app\"")
        s.close()
        # Disconnect while a call is running.
        s = socket.create_connection(("127.0.0.1", gust.port))
        s.sendall(b"POST /v1/functions/e/f/call HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 2\r\n\r\nhi")
        s.close()
    time.sleep(0.2)
    assert gust.http("GET", "/v1/health").status == 200
    assert gust.call_ok("e", "f", b"still") == b"still"


def test_garbage_bytes_and_oversized_headers(gust):
    for junk in (b"\x00\x01\x02\xff" * 100, b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                 b"POST /v1/deploy HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                 b"POST /v1/deploy HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                 b"\r\n" * 1000):
        out = raw_exchange(gust.port, junk, read_timeout=3)
        st = status_of_raw(out)
        assert st is None or (400 <= st < 600 and st != 500), (junk[:40], out[:200])
    huge = b"GET /v1/health HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n"
    out = raw_exchange(gust.port, huge, read_timeout=3)
    assert status_of_raw(out) in (431, None), out[:200]
    many = b"GET /v1/health HTTP/1.1\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(150)) + b"\r\n"
    out = raw_exchange(gust.port, many, read_timeout=3)
    assert status_of_raw(out) in (400, 431, None), out[:200]
    assert gust.http("GET", "/v1/health").status == 200


def test_every_error_has_code_and_message(gust):
    """A sweep of error answers, all with the documented error body."""
    gust.deploy(GOOD)
    cases = [
        ("POST", "/v1/deploy", b"{"),
        ("POST", "/v1/deploy", json.dumps(_spec(timeout=0)).encode()),
        ("POST", "/v1/deploy", json.dumps(_spec(retries=99)).encode()),
        ("POST", "/v1/deploy", json.dumps(_spec(scaling={"min_containers": 5, "max_containers": 2})).encode()),
        ("POST", "/v1/deploy", json.dumps(_spec(kind="python")).encode()),
        ("POST", "/v1/deploy", json.dumps(_spec(image="no-such-image")).encode()),
        ("POST", "/v1/deploy", json.dumps(_spec(workdir="relative")).encode()),
        ("POST", "/v1/deploy", json.dumps(_spec(env={"1BAD": "x"})).encode()),
        ("GET", "/v1/calls/fc-zzz", None),
        ("GET", "/v1/functions/e/zzz", None),
        ("POST", "/v1/functions/e/f/call?timeout=abc", b""),
        ("POST", "/v1/images", b'{"name": "x", "rootfs": "/does/not/exist"}'),
        ("GET", "/v1/usage?since=yesterday", None),
    ]
    for method, path, body in cases:
        r = gust.http(method, path, body, {"Content-Type": "application/json"} if body else None)
        assert 400 <= r.status < 500, (method, path, body, r)
        e = r.error()
        assert e["code"] in ("bad_request", "invalid_spec", "invalid_argument", "not_found",
                             "method_not_allowed"), (path, e)
    assert gust.http("GET", "/v1/health").status == 200
