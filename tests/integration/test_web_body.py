"""Request bodies stream from the client to the container (docs/API.md "Web endpoints",
"Request bodies"): gustd submits the call at the request's head and sends the body on
the call's input stream as it arrives. Against a real gustd with real clients (curl,
raw sockets): an ASGI app answers the first piece of an upload while the client still
holds back the rest (streaming shown by ordering: with a buffered body this could not
answer at all), uploads of tens of MiB arrive whole (Content-Length, chunked,
Expect: 100-continue), a chunked body over --web-max-body gets 413, a client that
leaves mid-upload cancels its call and the container goes on serving, WSGI apps and
web_endpoint functions (batched ones too) read streamed bodies, @gust.web_server proxies an upload to its
server as it arrives, and gustd's memory stays bounded while an app reads an upload
slowly (backpressure: a behaviour, measured as gustd's RSS, not a timing)."""
import hashlib
import io
import json
import os
import re
import socket
import subprocess
import threading

import pytest

from gustlib import sdk_module, wait_until

MIB = 1 << 20

MODULE = '''
import asyncio
import hashlib
import json
import gust

app = gust.App("web-body")
IMAGE = gust.Image.from_name("python")


async def _lifespan(receive, send):
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return


@app.function(image=IMAGE, scaledown_window=600, max_containers=1)
@gust.concurrent(max_inputs=4)
@gust.asgi_app(label="count")
def count():
    """/progress: answers "first:<bytes seen> call:<id>" as soon as the first piece
    came, then "total:<bytes> pieces:<n> sha:<sha256>" at the end. /slow: the same
    total, reading each piece slowly. /ping: pong."""
    async def asgi(scope, receive, send):
        if scope["type"] == "lifespan":
            return await _lifespan(receive, send)
        if scope["path"] == "/ping":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"pong"})
            return
        n = pieces = 0
        h = hashlib.sha256()
        started = False
        while True:
            msg = await receive()
            body = msg.get("body", b"")
            n += len(body)
            h.update(body)
            pieces += bool(body)
            if scope["path"] == "/slow" and body:
                await asyncio.sleep(0.002)
            if scope["path"] == "/progress" and body and not started:
                started = True
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"text/plain")]})
                first = "first:%d call:%s\\n" % (n, gust.current_function_call_id())
                await send({"type": "http.response.body", "body": first.encode(), "more_body": True})
            if not msg.get("more_body"):
                break
        last = ("total:%d pieces:%d sha:%s\\n" % (n, pieces, h.hexdigest())).encode()
        if not started:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": last})
    return asgi


@app.function(image=IMAGE, scaledown_window=600, max_containers=1)
@gust.wsgi_app(label="wsgi")
def wsgi():
    def app_(environ, start_response):
        f = environ["wsgi.input"]
        h = hashlib.sha256()
        n = 0
        while True:
            b = f.read(100000)
            if not b:
                break
            n += len(b)
            h.update(b)
        out = json.dumps({"n": n, "sha": h.hexdigest(), "length": environ.get("CONTENT_LENGTH"),
                          "terminated": environ.get("wsgi.input_terminated", False)}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [out]
    return app_


@app.function(image=IMAGE, scaledown_window=600)
@gust.web_endpoint(method="POST")
def fn(items: list):
    return {"n": len(items), "sum": sum(items)}


@app.function(image=IMAGE, scaledown_window=600)
@gust.batched(max_batch_size=4, wait_ms=10)
@gust.web_endpoint(method="POST")
def batched(items: list[list]):
    return [{"n": len(x), "sum": sum(x)} for x in items]


@app.function(image=IMAGE, scaledown_window=600)
@gust.web_server(8005)
def proxied():
    import http.server
    import threading

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            h = hashlib.sha256()
            n = 0
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\\r\\n", b""):
                            pass
                        break
                    b = self.rfile.read(size)
                    self.rfile.readline()
                    n += len(b)
                    h.update(b)
                framing = "chunked"
            else:
                left = int(self.headers["Content-Length"])
                while left:
                    b = self.rfile.read(min(left, 1 << 16))
                    left -= len(b)
                    n += len(b)
                    h.update(b)
                framing = "length"
            out = json.dumps({"n": n, "sha": h.hexdigest(), "framing": framing}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 8005), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
'''


@pytest.fixture(scope="module")
def body_app(shared_gust, tmp_path_factory):
    g = shared_gust.use_for_sdk()
    mod = sdk_module(tmp_path_factory.mktemp("webbody"), "webbodymod", MODULE)
    mod.app.addr = g.addr
    mod.app.deploy(progress=io.StringIO())
    return g


def url(g, path):
    """path: /<label>/<rest>."""
    return f"http://127.0.0.1:{g.web_port}/default/web-body{path}"


def pattern(n):
    """n bytes that are not all alike (a lost or repeated piece changes the digest)."""
    block = bytes(range(256)) * 4096  # 1 MiB
    return (block * (n // len(block) + 1))[:n]


def curl(g, path, data_file, *extra):
    out = subprocess.run(["curl", "-sS", "--fail-with-body", "-H", f"Authorization: Bearer {g.admin_token}",
                          "--data-binary", f"@{data_file}", *extra, url(g, path)],
                         capture_output=True, timeout=300)
    assert out.returncode == 0, out
    return out.stdout


def parse_total(text):
    m = re.search(rb"total:(\d+) pieces:(\d+) sha:(\w+)", text)
    assert m, text[-300:]
    return int(m.group(1)), int(m.group(2)), m.group(3).decode()


def raw_head(g, path, length=None, chunked=False, expect=False):
    h = f"POST /default/web-body{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {g.admin_token}\r\n"
    if chunked:
        h += "Transfer-Encoding: chunked\r\n"
    else:
        h += f"Content-Length: {length}\r\n"
    if expect:
        h += "Expect: 100-continue\r\n"
    return (h + "\r\n").encode()


def read_until(f, token):
    """Bytes from the file f until they match the regex token (or it ends)."""
    got = b""
    while not re.search(token, got):
        b = f.read1(65536)
        if not b:
            break
        got += b
    return got


FIRST = rb"first:(\d+) call:(\S+)\n"
LAST = rb"total:\d+ pieces:\d+ sha:\w+\n\r\n0\r\n\r\n"


def test_the_app_reads_an_upload_while_it_arrives(body_app, tmp_path):
    """The app answers its first piece while the client holds back the rest of the
    body: only a body that streams lets the client read that answer (a buffered one
    would wait for bytes the client sends only after it)."""
    g = body_app
    size = 24 * MIB
    data = pattern(size)
    with socket.create_connection(("127.0.0.1", g.web_port), timeout=120) as s:
        s.sendall(raw_head(g, "/count/progress", size) + data[:MIB])
        f = s.makefile("rb")
        first = read_until(f, FIRST)
        assert first.startswith(b"HTTP/1.1 200 "), first
        seen = int(re.search(FIRST, first).group(1))
        assert 0 < seen <= MIB, first
        s.sendall(data[MIB:])
        rest = read_until(f, LAST)
    total, pieces, sha = parse_total(rest)
    assert total == size and sha == hashlib.sha256(data).hexdigest(), rest[-200:]
    assert pieces > 1, rest[-200:]


def test_uploads_arrive_whole_in_every_framing(body_app, tmp_path):
    """curl uploads (Content-Length with Expect: 100-continue, as curl sends a large
    one; chunked) reach the ASGI app whole, in many pieces; WSGI reads them from
    wsgi.input; a web_endpoint function takes a streamed JSON body whole."""
    g = body_app
    size = 30 * MIB
    data = pattern(size)
    sha = hashlib.sha256(data).hexdigest()
    path = tmp_path / "up.bin"
    path.write_bytes(data)
    total, pieces, got = parse_total(curl(g, "/count/", path))
    assert (total, got) == (size, sha) and pieces > 1, (total, pieces)
    total, pieces, got = parse_total(curl(g, "/count/", path, "-H", "Transfer-Encoding: chunked"))
    assert (total, got) == (size, sha) and pieces > 1, (total, pieces)
    w = json.loads(curl(g, "/wsgi/", path))
    assert w == {"n": size, "sha": sha, "length": str(size), "terminated": False}, w
    w = json.loads(curl(g, "/wsgi/", path, "-H", "Transfer-Encoding: chunked"))
    assert w == {"n": size, "sha": sha, "length": None, "terminated": True}, w
    items = list(range(400000))  # ~3 MiB of JSON: more than comes with the head
    jpath = tmp_path / "items.json"
    jpath.write_text(json.dumps({"items": items}))
    out = json.loads(curl(g, "/fn/", jpath, "-H", "Content-Type: application/json"))
    assert out == {"n": len(items), "sum": sum(items)}, out
    out = json.loads(curl(g, "/batched/", jpath, "-H", "Content-Type: application/json"))
    assert out == {"n": len(items), "sum": sum(items)}, out


def test_web_server_proxy_streams_an_upload_to_its_server(body_app, tmp_path):
    g = body_app
    size = 20 * MIB
    data = pattern(size)
    path = tmp_path / "up.bin"
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    assert json.loads(curl(g, "/proxied/", path)) == {"n": size, "sha": sha, "framing": "length"}
    out = json.loads(curl(g, "/proxied/", path, "-H", "Transfer-Encoding: chunked"))
    assert out == {"n": size, "sha": sha, "framing": "chunked"}, out


def test_a_chunked_body_over_the_limit_gets_413(body_app):
    """--web-max-body (32 MiB here) bounds a streamed body as a buffered one: a chunked
    body that goes past it is answered 413 as soon as it does (the call is cancelled)."""
    g = body_app
    with socket.create_connection(("127.0.0.1", g.web_port), timeout=120) as s:
        s.sendall(raw_head(g, "/count/", chunked=True))
        chunk = b"%x\r\n" % MIB + pattern(MIB) + b"\r\n"
        try:
            for _ in range(40):
                s.sendall(chunk)
        except OSError:
            pass  # gustd answered and closed while we sent
        answer = s.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]
    assert b"payload_too_large" in answer, answer[:300]


def call_state(g, call_id):
    return g.get_json(f"/v1/calls/{call_id}/status")["status"]


def test_a_client_leaving_mid_upload_cancels_the_call(body_app):
    g = body_app
    with socket.create_connection(("127.0.0.1", g.web_port), timeout=120) as s:
        s.sendall(raw_head(g, "/count/progress", 24 * MIB) + pattern(2 * MIB))
        first = read_until(s.makefile("rb"), FIRST)
        call_id = re.search(FIRST, first).group(2).decode()
        assert call_state(g, call_id) == "running"
    wait_until(lambda: call_state(g, call_id) == "cancelled", 60, msg="the call cancelled")
    out = subprocess.run(["curl", "-sS", "-H", f"Authorization: Bearer {g.admin_token}", url(g, "/count/ping")],
                         capture_output=True, timeout=60)
    assert out.stdout == b"pong", out
    # A WSGI app blocked reading wsgi.input on a thread: the cancel wakes it (its
    # stream ends its reads), so the same container serves the next request.
    def wsgi_ctr():
        return [k for k in g.get_json("/v1/containers")["containers"] if k["function"] == "wsgi"
                and k["app"] == "web-body" and k["state"] in ("idle", "busy")]
    assert json.loads(subprocess.run(["curl", "-sS", "-H", f"Authorization: Bearer {g.admin_token}",
                                      "--data-binary", "x", url(g, "/wsgi/")], capture_output=True,
                                     timeout=120).stdout)["n"] == 1
    (before,) = wsgi_ctr()
    with socket.create_connection(("127.0.0.1", g.web_port), timeout=120) as s:
        s.sendall(raw_head(g, "/wsgi/", 24 * MIB) + pattern(2 * MIB))
        wait_until(lambda: wsgi_ctr() and wsgi_ctr()[0]["inputs_in_flight"] == 1, 60, msg="the upload running")
    wait_until(lambda: wsgi_ctr() and wsgi_ctr()[0]["inputs_in_flight"] == 0, 60, msg="the upload's input to end")
    out = subprocess.run(["curl", "-sS", "-H", f"Authorization: Bearer {g.admin_token}", "--data-binary", "xy",
                          url(g, "/wsgi/")], capture_output=True, timeout=120)
    assert json.loads(out.stdout)["n"] == 2, out
    (after,) = wsgi_ctr()
    assert after["id"] == before["id"] and after["inputs_done"] == before["inputs_done"] + 2, (before, after)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_memory_stays_bounded_while_the_app_reads_slowly(gust_factory, monkeypatch, tmp_path):
    """Backpressure: an app that reads an upload slowly makes gustd stop reading the
    client (the stream's window, control's bounded hold, then the kernel's buffers),
    so gustd's resident memory grows by far less than the upload while it is under way.
    A gustd of its own, with ASan's quarantine small (as test_abuse's RSS test): the
    default one (256 MiB) would count every buffer ever freed."""
    asan = os.environ.get("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    monkeypatch.setenv("ASAN_OPTIONS", asan + ":quarantine_size_mb=8")
    g = gust_factory()
    g.use_for_sdk()
    mod = sdk_module(tmp_path, "webbodymem", MODULE)
    mod.app.addr = g.addr
    mod.app.deploy(progress=io.StringIO())
    ping = subprocess.run(["curl", "-sS", "-H", f"Authorization: Bearer {g.admin_token}", url(g, "/count/ping")],
                          capture_output=True, timeout=120)
    assert ping.stdout == b"pong", ping  # the container is up before the measure starts
    pid = g.proc.pid
    size = 30 * MIB
    data = pattern(size)
    before = rss_kib(pid)
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_kib(pid))
            done.wait(0.01)
    t = threading.Thread(target=sample)
    t.start()
    try:
        with socket.create_connection(("127.0.0.1", g.web_port), timeout=300) as s:
            s.sendall(raw_head(g, "/count/slow", size) + data)
            answer = read_until(s.makefile("rb"), LAST)
    finally:
        done.set()
        t.join()
    total, pieces, sha = parse_total(answer)
    assert total == size and sha == hashlib.sha256(data).hexdigest()
    grown = peak[0] - before
    print(f"gustd RSS {before} KiB, peak {peak[0]} KiB (+{grown} KiB) during a {size >> 20} MiB upload "
          f"read in {pieces} pieces")
    assert grown < size // 1024 * 2 // 5, f"gustd grew by {grown} KiB during a {size >> 20} MiB upload"
