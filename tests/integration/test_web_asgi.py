"""The ASGI lifespan protocol of @gust.asgi_app apps (as Modal and uvicorn run it), with
plain ASGI callables (no framework needed): the startup runs once per container
before its first request and what it puts in the lifespan state reaches each request's
scope; the shutdown runs when the container stops (its print is in the logs); a failed
startup fails the container's start, so the request gets a 502 and the reason is in
the logs; an app that does not speak lifespan is served without it."""
import io
import json
import urllib.request

import pytest

from gustlib import sdk_module, wait_until

MODULE = '''
import os
import gust

app = gust.App("web-asgi")
IMAGE = gust.Image.from_name("python")


def _json(obj):
    return [(b"content-type", b"application/json")], __import__("json").dumps(obj).encode()


@app.function(image=IMAGE, scaledown_window=600)
@gust.asgi_app(label="with-lifespan")
def with_lifespan():
    started = []

    async def asgi(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    started.append(os.getpid())
                    scope["state"]["greeting"] = "set at startup"
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    print("lifespan shutdown ran", flush=True)
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        headers, body = _json({"state": scope["state"].get("greeting"), "startups": len(started)})
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    return asgi


@app.function(image=IMAGE)
@gust.asgi_app(label="failing-startup")
def failing_startup():
    async def asgi(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.failed", "message": "no database at startup 5150"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"never"})
    return asgi


@app.function(image=IMAGE)
@gust.asgi_app(label="no-lifespan")
def no_lifespan():
    async def asgi(scope, receive, send):
        assert scope["type"] == "http", "only http here"
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"plain"})
    return asgi
'''


@pytest.fixture(scope="module")
def asgi_app(shared_gust, tmp_path_factory):
    g = shared_gust.use_for_sdk()
    mod = sdk_module(tmp_path_factory.mktemp("asgi"), "asgimod", MODULE)
    mod.app.addr = g.addr
    mod.app.deploy(progress=io.StringIO())
    yield g
    g.http("POST", "/v1/apps/web-asgi/stop")


def _get(g, label):
    req = urllib.request.Request(f"http://127.0.0.1:{g.web_port}/default/web-asgi/{label}",
                                 headers={"Authorization": f"Bearer {g.admin_token}"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _logs(g, fn):
    return g.http("GET", f"/v1/functions/web-asgi/{fn}/logs").body.decode()


def test_failed_startup_fails_the_container_and_plain_apps_need_no_lifespan(asgi_app):
    g = asgi_app
    st, body = _get(g, "failing-startup")
    assert st == 502 and json.loads(body)["error"]["code"] == "container_failed", body
    assert b"5150" not in body
    wait_until(lambda: "no database at startup 5150" in _logs(g, "failing_startup"), 60, msg="the reason in the logs")
    assert _get(g, "no-lifespan") == (200, b"plain")


def test_lifespan_startup_state_and_shutdown(asgi_app):
    g = asgi_app
    for _ in range(3):
        st, body = _get(g, "with-lifespan")
        assert st == 200 and json.loads(body) == {"state": "set at startup", "startups": 1}, body
    assert "lifespan shutdown ran" not in _logs(g, "with_lifespan")
    g.http("POST", "/v1/apps/web-asgi/stop")
    wait_until(lambda: "lifespan shutdown ran" in _logs(g, "with_lifespan"), 60, msg="the shutdown in the logs")
