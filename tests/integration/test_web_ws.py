"""WebSockets through web endpoints (docs/API.md "Web endpoints"): the example
examples/python/web_websocket.py (FastAPI via asgi_app) deployed with the SDK and
driven by a real client (the websockets library): text and binary echo over several
messages, the client's close and the server's, a refused handshake (403), a message
over the runner's bound (close 1009), a handshake without a token (401 before any
upgrade), a plain web_endpoint answering a handshake 400, a client that goes away
(its call ends; the call's state read through the API), and the same over TLS."""
import asyncio
import os
import socket
import ssl
import subprocess

import pytest
import websockets

from gustlib import Gust, TlsFiles, sdk_module, wait_until
from test_web import deploy, load_example


@pytest.fixture(scope="module")
def ws_app(shared_gust):
    return deploy(shared_gust.use_for_sdk(), load_example("web_websocket.py"))


def url(g, path, scheme="ws", port=None):
    return f"{scheme}://127.0.0.1:{port or g.web_port}/default/web-ws/echo{path}"


def auth(g):
    return {"Authorization": f"Bearer {g.admin_token}"}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def call_state(g, call_id):
    return g.get_json(f"/v1/calls/{call_id}/status")["status"]


def test_echo_text_and_binary_and_client_close(shared_gust, ws_app):
    g = shared_gust

    async def go():
        async with websockets.connect(url(g, "/ws"), extra_headers=auth(g)) as ws:
            for i in range(5):
                await ws.send(f"hello {i}")
                assert await ws.recv() == f"echo: hello {i}"
            blob = bytes(range(256)) * 400  # 100 KiB: several runner frames each way
            await ws.send(blob)
            assert await ws.recv() == blob
            await ws.send("count")
            assert await ws.recv() == "7"
            await ws.send("id")
            call_id = await ws.recv()
        # The client closed (code 1000 both ways): the call ended well.
        assert ws.close_code == 1000, ws.close_code
        return call_id
    call_id = run(go())
    assert call_id.startswith("fc-"), call_id
    wait_until(lambda: call_state(g, call_id) == "succeeded", 60, msg="the call to end")


def test_server_close_and_refused_handshake(shared_gust, ws_app):
    g = shared_gust

    async def go():
        async with websockets.connect(url(g, "/ws"), extra_headers=auth(g)) as ws:
            await ws.send("close")
            with pytest.raises(websockets.ConnectionClosed):  # 4000 is not an "OK" code to the library
                await ws.recv()
        assert ws.close_code == 4000 and ws.close_reason == "asked to", (ws.close_code, ws.close_reason)
        # The app closes before accepting: the handshake is refused with 403.
        with pytest.raises(websockets.InvalidStatusCode) as ei:
            async with websockets.connect(url(g, "/refuse"), extra_headers=auth(g)):
                pass
        assert ei.value.status_code == 403
    run(go())


def test_message_over_the_bound_is_refused_with_1009(shared_gust, ws_app):
    g = shared_gust

    async def go():
        async with websockets.connect(url(g, "/ws"), extra_headers=auth(g), max_size=None) as ws:
            await ws.send("before")
            assert await ws.recv() == "echo: before"
            with pytest.raises(websockets.ConnectionClosedError) as ei:
                await ws.send(b"x" * ((16 << 20) + 1))
                await ws.recv()
            assert ei.value.code == 1009, ei.value
    run(go())


def test_tokens_and_plain_endpoints(shared_gust, ws_app, tmp_path):
    g = shared_gust

    async def go():
        # No token: 401 before anything runs (no upgrade).
        with pytest.raises(websockets.InvalidStatusCode) as ei:
            async with websockets.connect(url(g, "/ws")):
                pass
        assert ei.value.status_code == 401
        with pytest.raises(websockets.InvalidStatusCode) as ei:
            async with websockets.connect(url(g, "/ws"), extra_headers={"Authorization": "Bearer nope"}):
                pass
        assert ei.value.status_code == 401
        # A plain web_endpoint does not take WebSockets: a clean 400, not a hang.
        with pytest.raises(websockets.InvalidStatusCode) as ei:
            async with websockets.connect(f"ws://127.0.0.1:{g.web_port}/default/web-ws-plain/plain",
                                          extra_headers=auth(g)):
                pass
        assert ei.value.status_code == 400
    deploy(g, sdk_module(tmp_path, "wsplain", '''
import gust
app = gust.App("web-ws-plain")

@app.function(image=gust.Image.from_name("python"))
@gust.web_endpoint()
def plain():
    return {"ok": True}
'''))
    run(go())
    # The plain endpoint still serves plain requests.
    out = subprocess.run(["curl", "-sS", "-H", f"Authorization: Bearer {g.admin_token}",
                          f"http://127.0.0.1:{g.web_port}/default/web-ws-plain/plain"],
                         capture_output=True, timeout=60)
    assert out.stdout == b'{"ok": true}', out


def test_client_going_away_ends_the_call(shared_gust, ws_app):
    """A client that disappears without a close frame: its EOF ends the call's input
    stream (the app's receive() gets websocket.disconnect, 1006), and a reset
    connection cancels the call."""
    g = shared_gust

    async def open_and_vanish(reset):
        ws = await websockets.connect(url(g, "/ws"), extra_headers=auth(g))
        await ws.send("id")
        call_id = await ws.recv()
        assert call_state(g, call_id) == "running"
        sock = ws.transport.get_extra_info("socket")
        if reset:  # SO_LINGER 0: the close is a reset, not a FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        ws.transport.abort()
        return call_id
    eof_id = run(open_and_vanish(False))
    wait_until(lambda: call_state(g, eof_id) not in ("pending", "running"), 60, msg="the call to end at EOF")
    reset_id = run(open_and_vanish(True))
    wait_until(lambda: call_state(g, reset_id) == "cancelled", 60, msg="the call cancelled at a reset")


RAW_ASGI = '''
import gust
app = gust.App("web-ws-raw")

@app.function(image=gust.Image.from_name("python"))
@gust.asgi_app()
def raw():
    async def asgi(scope, receive, send):
        assert scope["type"] == "websocket"
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept", "subprotocol": "echo.v1"})
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": msg.get("text"), "bytes": msg.get("bytes")})
    return asgi
'''


def test_raw_asgi_websocket_over_tls(tmp_path, monkeypatch):
    """The tunnel under TLS (wss://), with a plain ASGI app (no framework) that picks a
    subprotocol."""
    g = Gust(tmp_path, name="wstls", tls=TlsFiles(tmp_path))
    g.start()
    try:
        monkeypatch.setenv("GUST_CA_FILE", g.tls.ca)
        monkeypatch.setenv("GUST_TOKEN", g.admin_token)
        deploy(g, sdk_module(tmp_path, "wsraw", RAW_ASGI))
        ctx = ssl.create_default_context(cafile=g.tls.ca)

        async def go():
            async with websockets.connect(f"wss://127.0.0.1:{g.web_port}/default/web-ws-raw/raw",
                                          extra_headers=auth(g), ssl=ctx, subprotocols=["echo.v1"]) as ws:
                assert ws.subprotocol == "echo.v1"
                for i in range(3):
                    await ws.send(f"over tls {i}")
                    assert await ws.recv() == f"over tls {i}"
                blob = os.urandom(200_000)
                await ws.send(blob)
                assert await ws.recv() == blob
        run(go())
    finally:
        problems = g.check_after_stop()
    assert not problems, problems
