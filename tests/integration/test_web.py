"""Web endpoints (docs/API.md "Web endpoints") against a real gustd with real clients
(curl, http.client): the examples in examples/python/web_*.py deployed with the SDK,
routing by path and by Host (--web-domain), tokens (401, 403, public), errors a
client can act on (404, 405, 413, 500 without a traceback in the body but with it in
the logs, 502 when the container dies mid-request, 504), streaming (server-sent events
arrive while the handler runs: shown by ordering, not timing), and the browser attacks
docs/SECURITY.md lists (cross-site requests carry no credentials: 401; DNS rebinding:
403; the invoker's token is not passed to the endpoint)."""
import http.client
import importlib.util
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from gustlib import SDK_DIR, sdk_module, wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EX = os.path.join(REPO, "examples", "python")


def load_example(name):
    if SDK_DIR not in sys.path:
        sys.path.insert(0, SDK_DIR)
    spec = importlib.util.spec_from_file_location(name.replace(".py", ""), os.path.join(EX, name))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def deploy(g, mod):
    mod.app.addr = g.addr
    mod.app.deploy(progress=io.StringIO())
    return mod


def request(g, method, path, body=None, headers=None, token=None, host=None):
    """One request to g's web listener; token None: g's admin token, "" none."""
    c = http.client.HTTPConnection("127.0.0.1", g.web_port, timeout=120)
    h = dict(headers or {})
    tok = g.admin_token if token is None else token
    if tok:
        h["Authorization"] = f"Bearer {tok}"
    if host:
        h["Host"] = host
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, dict(r.getheaders()), data


def jbody(data):
    return json.loads(data)


@pytest.fixture(scope="module")
def hello(shared_gust):
    return deploy(shared_gust.use_for_sdk(), load_example("web_hello.py"))


def test_stdlib_endpoint_with_curl_and_http_client(shared_gust, hello):
    g = shared_gust
    url = hello.hello.get_web_url()
    assert url == f"http://127.0.0.1:{g.web_port}/default/web-hello/hello", url
    # curl, GET: query parameters are the arguments (typed by their annotations).
    out = subprocess.run(["curl", "-sS", "-H", f"Authorization: Bearer {g.admin_token}",
                          url + "?name=ada&excited=true"], capture_output=True, timeout=120)
    assert json.loads(out.stdout) == {"greeting": "hello, ada!"}, out
    # http.client, POST: the JSON body's members are the arguments; keep-alive.
    c = http.client.HTTPConnection("127.0.0.1", g.web_port, timeout=120)
    for a in range(3):
        c.request("POST", "/default/web-hello/add", body=json.dumps({"a": a, "b": 0.5}),
                  headers={"Authorization": f"Bearer {g.admin_token}", "Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 200 and r.getheader("Content-Type") == "application/json"
        assert json.loads(r.read()) == {"sum": a + 0.5}
    c.close()
    # The listing shows the URL too.
    fns = {f["name"]: f for f in g.get_json("/v1/functions")["functions"] if f["app"] == "web-hello"}
    assert fns["add_numbers"]["web_url"].endswith("/default/web-hello/add"), fns
    ls = g.cli("ls")
    assert ls.rc == 0 and "WEB URL" in ls.out and url in ls.out, ls
    # Missing arguments: 422 with JSON, not a 500.
    st, _, data = request(g, "POST", "/default/web-hello/add", body=b'{"a": 1}')
    assert st == 422 and jbody(data)["error"]["code"] == "invalid_argument", data


def test_tokens_public_and_workspaces(shared_gust, hello):
    g = shared_gust
    st, h, data = request(g, "GET", "/default/web-hello/hello", token="")
    assert st == 401 and jbody(data)["error"]["code"] == "unauthorized" and h.get("WWW-Authenticate") == "Bearer"
    other = g.token_for("webother", "invoker")
    st, _, data = request(g, "GET", "/default/web-hello/hello", token=other)
    assert st == 403 and jbody(data)["error"]["code"] == "forbidden", data
    invoker = g.token_for("default", "invoker")
    st, _, data = request(g, "GET", "/default/web-hello/hello?name=x", token=invoker)
    assert st == 200 and jbody(data) == {"greeting": "hello, x"}
    # A public endpoint needs no token; its body and content type are the handler's.
    st, h, data = request(g, "GET", "/default/web-hello/status", token="")
    assert st == 200 and data == b"ok\n" and h["Content-Type"] == "text/plain", (st, h, data)
    # Unknown endpoints: 404 for the workspace's tokens, 401 without one (no probing).
    st, _, data = request(g, "GET", "/default/web-hello/nope")
    assert st == 404 and jbody(data)["error"]["code"] == "not_found"
    assert request(g, "GET", "/default/web-hello/nope", token="")[0] == 401
    assert request(g, "GET", "/just-one-segment")[0] == 404
    # The method is the endpoint's.
    st, h, _ = request(g, "PUT", "/default/web-hello/hello")
    assert st == 405 and h["Allow"] == "GET"


def test_browser_attacks(shared_gust, hello, tmp_path):
    g = shared_gust
    # A cross-site request (a page's form or fetch) carries no token: 401, and the
    # handler never runs.
    before = g.get_json("/v1/functions/web-hello/add_numbers")["calls_total"]
    st, _, _ = request(g, "POST", "/default/web-hello/add", body=b'{"a":1,"b":2}', token="",
                       headers={"Origin": "https://evil.example", "Content-Type": "text/plain"})
    assert st == 401
    assert g.get_json("/v1/functions/web-hello/add_numbers")["calls_total"] == before
    # DNS rebinding: a name that is not this gustd's in Host: refused, public or not.
    for path, tok in (("/default/web-hello/status", ""), ("/default/web-hello/hello", None)):
        st, _, data = request(g, "GET", path, token=tok, host=f"evil.example:{g.web_port}")
        assert st == 403 and jbody(data)["error"]["code"] == "host_not_allowed", data
    # A public endpoint works from a page of another origin (the browser's CORS rules
    # are the endpoint's to relax or not).
    st, _, _ = request(g, "GET", "/default/web-hello/status", token="", headers={"Origin": "https://app.example"})
    assert st == 200
    # The invoker's token is not handed to the endpoint's code; a public endpoint's
    # Authorization header is (it is its own business).
    mod = sdk_module(tmp_path, "webhdr", '''
import gust
app = gust.App("web-hdr")
IMAGE = gust.Image.from_name("python")

@app.function(image=IMAGE)
@gust.wsgi_app()
def private():
    def a(environ, start):
        start("200 OK", [("Content-Type", "text/plain")])
        return [environ.get("HTTP_AUTHORIZATION", "none").encode()]
    return a

@app.function(image=IMAGE)
@gust.wsgi_app(public=True)
def open_app():
    return private.raw_f()
''')
    deploy(g, mod)
    st, _, data = request(g, "GET", "/default/web-hdr/private")
    assert st == 200 and data == b"none", data
    st, _, data = request(g, "GET", "/default/web-hdr/open_app/x", token="abc")
    assert st == 200 and data == b"Bearer abc", data


ERRORS = '''
import os
import time
import gust
app = gust.App("web-err")
IMAGE = gust.Image.from_name("python")

@app.function(image=IMAGE)
@gust.web_endpoint()
def boom():
    raise RuntimeError("secret detail 4711")

@app.function(image=IMAGE, timeout=2)
@gust.web_endpoint()
def slow():
    time.sleep(30)
    return {}

@app.function(image=IMAGE, max_containers=1)
@gust.web_endpoint()
def hang():
    print("hanging", flush=True)
    time.sleep(60)
    return {}

@app.function(image=IMAGE)
@gust.web_endpoint(method="POST")
def size(**kw):
    return {"n": len(kw)}
'''


def test_errors(shared_gust, tmp_path):
    g = shared_gust
    deploy(g, sdk_module(tmp_path, "weberr", ERRORS))
    st, _, data = request(g, "GET", "/default/web-err/boom")
    assert st == 500 and jbody(data)["error"]["code"] == "handler_error", data
    assert b"4711" not in data and b"Traceback" not in data, data
    wait_until(lambda: "secret detail 4711" in g.http("GET", "/v1/functions/web-err/boom/logs").body.decode(),
               30, msg="the traceback in the logs")
    assert "Traceback" in g.http("GET", "/v1/functions/web-err/boom/logs").body.decode()
    st, _, data = request(g, "GET", "/default/web-err/slow")
    assert st == 504 and jbody(data)["error"]["code"] == "timeout", data
    # Over --web-max-body (32 MiB by default): 413 before anything runs.
    with socket.create_connection(("127.0.0.1", g.web_port), timeout=60) as s:
        s.sendall(f"POST /default/web-err/size HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                  f"{g.admin_token}\r\nContent-Length: {(32 << 20) + 1}\r\n\r\n".encode() + b"x" * 1024)
        answer = s.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]
    assert b'"payload_too_large"' in answer or b'"too_large"' in answer or b"413" in answer, answer
    # The container killed while it serves the request: 502 (and no retry).
    result = {}
    t = threading.Thread(target=lambda: result.update(r=request(g, "GET", "/default/web-err/hang")))
    t.start()

    def busy():
        for k in g.get_json("/v1/containers")["containers"]:
            if k["app"] == "web-err" and k["function"] == "hang" and k["state"] == "busy":
                return k
    k = wait_until(busy, 60, msg="hang's container busy")
    os.kill(k["pid"], signal.SIGKILL)
    t.join(60)
    st, _, data = result["r"]
    assert st == 502 and jbody(data)["error"]["code"] == "container_failed", data
    fn = g.get_json("/v1/functions/web-err/hang")
    assert fn["calls_total"] == 1, fn


def test_server_sent_events_arrive_while_the_handler_runs(shared_gust):
    g = shared_gust
    deploy(g, load_example("web_sse.py"))
    c = http.client.HTTPConnection("127.0.0.1", g.web_port, timeout=120)
    c.request("GET", "/default/web-sse/ticks?n=3&wait=true", headers={"Authorization": f"Bearer {g.admin_token}"})
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream"
    assert r.getheader("Transfer-Encoding") == "chunked"
    assert r.readline() == b"data: tick 0\n"
    assert r.readline() == b"\n"
    # tick 0 came while the handler waits for this release: streamed, not buffered.
    st, _, data = request(g, "GET", "/default/web-sse/ticks?release=true")
    assert st == 200 and jbody(data) == {"released": True}
    rest = r.read()
    assert rest == b"data: released\n\ndata: tick 1\n\ndata: tick 2\n\n", rest
    c.close()


def test_host_routing_with_web_domain(gust_factory, tmp_path):
    g = gust_factory("--web-domain", "gust.test")
    mod = sdk_module(tmp_path, "webhost", '''
import gust
app = gust.App("host-app")

@app.function(image=gust.Image.from_name("python"))
@gust.web_endpoint(label="say-hi")
def hi(who: str = "you"):
    return {"hi": who}
''')
    deploy(g, mod)
    assert mod.hi.get_web_url() == f"http://default--host-app-say-hi.gust.test:{g.web_port}"
    st, _, data = request(g, "GET", "/?who=dns", host=f"default--host-app-say-hi.gust.test:{g.web_port}")
    assert st == 200 and jbody(data) == {"hi": "dns"}, data
    st, _, data = request(g, "GET", "/?who=dns", host="default--host-app-say-hi.gust.test", token="")
    assert st == 401
    # Path routing goes on working on the same listener.
    st, _, data = request(g, "GET", "/default/host-app/say-hi")
    assert st == 200 and jbody(data) == {"hi": "you"}


def test_flask_wsgi_app(shared_gust):
    g = shared_gust
    deploy(g, load_example("web_flask.py"))
    st, _, data = request(g, "GET", "/default/web-flask/flask_app/")
    assert st == 200 and data == b"hello from flask\n", data
    st, _, data = request(g, "POST", "/default/web-flask/flask_app/echo", body=b'{"x": [1, 2]}',
                          headers={"Content-Type": "application/json"})
    assert st == 200 and jbody(data) == {"got": {"x": [1, 2]}, "path": "/echo",
                                         "root": "/default/web-flask/flask_app"}, data


def test_fastapi_asgi_app_and_fastapi_endpoint(shared_gust):
    g = shared_gust
    deploy(g, load_example("web_fastapi.py"))
    st, _, data = request(g, "GET", "/default/web-fastapi/api/items/7?q=z")
    assert st == 200 and jbody(data) == {"item_id": 7, "q": "z"}, data
    st, _, data = request(g, "POST", "/default/web-fastapi/api/items", body=b'{"a": 1}',
                          headers={"Content-Type": "application/json"})
    assert st == 200 and jbody(data) == {"created": {"a": 1}}, data
    st, _, data = request(g, "GET", "/default/web-fastapi/api/items/notanint")
    assert st == 422, data
    st, _, data = request(g, "GET", "/default/web-fastapi/square?x=9")
    assert st == 200 and jbody(data) == {"square": 81}, data


GONE = '''
import time
import gust
app = gust.App("web-gone")

@app.function(image=gust.Image.from_name("python"), max_containers=1)
@gust.concurrent(max_inputs=8)
@gust.web_endpoint()
def wait():
    time.sleep(30)
    return {}
'''


def test_clients_gone_mid_request_cancel_their_calls(shared_gust, tmp_path):
    """Clients that close their connections while their requests run (as wrk does at
    the end of a run): each call is cancelled, once, and gustd serves on."""
    g = shared_gust
    deploy(g, sdk_module(tmp_path, "webgone", GONE))
    socks = []
    for _ in range(8):
        s = socket.create_connection(("127.0.0.1", g.web_port), timeout=60)
        s.sendall(f"GET /default/web-gone/wait HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                  f"{g.admin_token}\r\n\r\n".encode())
        socks.append(s)
    wait_until(lambda: g.get_json("/v1/functions/web-gone/wait")["running"] == 8, 60, msg="8 requests running")
    for s in socks:
        s.close()
    wait_until(lambda: g.get_json("/v1/functions/web-gone/wait")["running"] == 0, 60, msg="the calls cancelled")
    assert g.alive(), "gustd died"
    assert g.http("GET", "/v1/health").status == 200


ASGI_HELD = '''
import asyncio
import gust
app = gust.App("web-asgi-held")
IMAGE = gust.Image.from_name("python")
_release = []


async def held_app(scope, receive, send):
    if not _release:
        _release.append(asyncio.Event())
    if scope["path"] == "/release":
        _release[0].set()
        body = b"released"
    else:
        await _release[0].wait()
        body = b"waited"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


@app.function(image=IMAGE, max_containers=1)
@gust.concurrent(max_inputs=8)
@gust.asgi_app()
def held():
    return held_app


async def made_app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"made by a coroutine"})


@app.function(image=IMAGE)
@gust.asgi_app()
async def made():
    await asyncio.sleep(0)
    return made_app
'''


def test_asgi_requests_wait_together_on_one_container(shared_gust, tmp_path):
    """An ASGI app's container reads its requests on its event loop: four requests wait
    there at once for a fifth that releases them; an app made by a coroutine serves."""
    g = shared_gust
    deploy(g, sdk_module(tmp_path, "webasgiheld", ASGI_HELD))
    results = []
    threads = [threading.Thread(target=lambda: results.append(request(g, "GET", "/default/web-asgi-held/held/wait")))
               for _ in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: g.get_json("/v1/functions/web-asgi-held/held")["running"] == 4, 60, msg="4 requests waiting")
    st, _, data = request(g, "GET", "/default/web-asgi-held/held/release")
    assert st == 200 and data == b"released", data
    for t in threads:
        t.join(60)
    assert sorted((st, data) for st, _, data in results) == [(200, b"waited")] * 4, results
    assert len([c for c in g.get_json("/v1/containers")["containers"] if c["app"] == "web-asgi-held"
                and c["function"] == "held"]) == 1
    st, _, data = request(g, "GET", "/default/web-asgi-held/made/")
    assert st == 200 and data == b"made by a coroutine", data
