"""@gust.web_server (docs/API.md "Web endpoints"): the function starts an HTTP server in
its container and the container's runner proxies each request to it.

Two layers, both with real sockets and real servers:
- the runner's proxy (gust/_container/web_server.py) driven directly against servers
  started here: framing (Content-Length, chunked in any split, until-close), 404 and
  bodies passed through, streamed events yielded one by one while the server still
  writes, keep-alive reuse, the 502s for a server that refuses or answers garbage, the
  mid-body failure, the 501 for upgrades, the startup wait's error;
- examples/python/web_server.py and modules written here deployed on a real gustd and
  used with curl and http.client: a file, a 404, a POST body, server-sent events
  arriving one by one (shown by ordering: the server writes the next event only once
  the client has the previous one), the startup timeout failing the container, the URL
  in `gust ls` and get_web_url, concurrent requests."""
import http.client
import http.server
import io
import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading

import pytest

from gustlib import SDK_DIR, sdk_module, wait_until

if SDK_DIR not in sys.path:
    sys.path.insert(0, SDK_DIR)

from gust._container import instream  # noqa: E402
from gust._container import web as cweb  # noqa: E402
from gust._container import web_server as ws  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_U32 = struct.Struct("<I")


# ---------------------------------------------------------------- helpers for the proxy

def envelope(method="GET", path="/", query="", headers=(), body=b"", scheme="http", root="/default/app/fn",
             client="", total=None):
    """A request as gustd encodes it (src/proto/web.h). total: the body's length when
    more of it streams (WEB_BODY_LEN_UNKNOWN: chunked); None: body is all of it."""
    def s(x):
        x = x if isinstance(x, bytes) else x.encode("latin-1")
        return _U32.pack(len(x)) + x
    out = cweb.WEB_TAG + b"".join(s(f) for f in (method, scheme, root, path, query, client))
    out += _U32.pack(len(headers)) + b"".join(s(k) + s(v) for k, v in headers)
    return out + struct.pack("<Q", len(body) if total is None else total) + body


def decode_head(item):
    """Item 0 → (status, [(name, value)], first body bytes)."""
    status, n = _U32.unpack_from(item, 0)[0], _U32.unpack_from(item, 4)[0]
    off, hs = 8, []
    for _ in range(n):
        pair = []
        for _ in range(2):
            (ln,) = _U32.unpack_from(item, off)
            pair.append(bytes(item[off + 4:off + 4 + ln]).decode("latin-1"))
            off += 4 + ln
        hs.append(tuple(pair))
    return status, hs, bytes(item[off:])


def proxy(port, pool=None, **kw):
    """(status, headers dict (lower-case names), body) of one request through the proxy."""
    pool = pool or ws.Pool(port, 1)
    items = list(ws.handle(None, cweb.Request(envelope(**kw)), pool=pool))
    status, hs, first = decode_head(items[0])
    return status, {k.lower(): v for k, v in hs}, first + b"".join(items[1:])


class RawServer:
    """A listener whose connections are served by fn(conn) on threads: byte-exact
    answers (splits, framings, garbage) that http.server would not write."""

    def __init__(self, fn):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns = 0
        self.fn = fn
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        with c:
            try:
                self.fn(c)
            except OSError:
                pass

    def close(self):
        self.sock.close()


def read_request(c):
    """One request from c: (head bytes, body) by Content-Length."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = c.recv(65536)
        if not d:
            return None, b""
        buf += d
    head, body = buf.split(b"\r\n\r\n", 1)
    n = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            n = int(v)
    while len(body) < n:
        body += c.recv(65536)
    return head, body


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_HEAD(self):
        self.do_GET(head=True)

    def do_GET(self, head=False):
        if self.path.startswith("/file"):
            body = b"file contents\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Seen-Host", self.headers.get("Host", ""))
            self.send_header("X-Seen-Path", self.path)
            self.send_header("X-Seen-Proto", self.headers.get("X-Forwarded-Proto", ""))
            self.send_header("X-Seen-Prefix", self.headers.get("X-Forwarded-Prefix", ""))
            self.end_headers()
            if not head:
                self.wfile.write(body)
        else:
            self.send_error(404, "no such thing")

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        out = json.dumps({"got": body.decode(), "type": self.headers.get("Content-Type")}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


@pytest.fixture
def stdlib_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


# ---------------------------------------------------------------- the proxy, directly

def test_proxy_passes_requests_and_answers_through(stdlib_server):
    port = stdlib_server.server_address[1]
    pool = ws.Pool(port, 2)
    st, h, body = proxy(port, pool, path="/file/a%20b", query="x=1&y=2",
                        headers=[(b"Host", b"example.test:8480")], scheme="https")
    assert st == 200 and body == b"file contents\n", (st, h, body)
    assert h["x-seen-host"] == "example.test:8480" and h["x-seen-path"] == "/file/a%20b?x=1&y=2", h
    assert h["x-seen-proto"] == "https" and h["x-seen-prefix"] == "/default/app/fn", h
    st, h, body = proxy(port, pool, path="/missing")
    assert st == 404 and b"no such thing" in body, (st, body)
    st, h, body = proxy(port, pool, method="POST", path="/p", body=b'{"a": 1}',
                        headers=[(b"Content-Type", b"application/json")])
    assert st == 201 and json.loads(body) == {"got": '{"a": 1}', "type": "application/json"}, body
    # HEAD: the head only, whatever Content-Length says.
    st, h, body = proxy(port, pool, method="HEAD", path="/file")
    assert st == 200 and body == b"" and h["content-length"] == "14", (st, h, body)


def test_proxy_streams_a_request_body_as_it_arrives(stdlib_server):
    """A streamed body (the envelope holds its first bytes, the input stream the rest):
    with the client's length it reaches a Content-Length server whole; without one
    (chunked) it goes on chunked, and the server has its first bytes while the rest
    has not yet come (ordering: the stream is fed only once the server saw them)."""
    port = stdlib_server.server_address[1]
    stream = instream.InputStream(lambda n: None)
    for piece in (b"-second", b"-third", b""):
        stream.feed(piece)
    req = cweb.Request(envelope(method="POST", path="/p", body=b"first", total=len(b"first-second-third"),
                                headers=[(b"Content-Type", b"text/plain")]), stream)
    items = list(ws.handle(None, req, pool=ws.Pool(port, 1)))
    status, _, first = decode_head(items[0])
    assert status == 201, items
    assert json.loads(first + b"".join(items[1:]))["got"] == "first-second-third", items

    saw_first = threading.Event()

    def serve(c):
        f = c.makefile("rb")
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += f.readline()
        assert b"transfer-encoding: chunked" in head.lower() and b"content-length" not in head.lower(), head
        body = b""
        while True:
            size = int(f.readline(), 16)
            if size == 0:
                f.readline()
                break
            body += f.read(size)
            f.readline()
            saw_first.set()
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    srv = RawServer(serve)
    stream = instream.InputStream(lambda n: None)
    req = cweb.Request(envelope(method="POST", body=b"abc", total=cweb.WEB_BODY_LEN_UNKNOWN), stream)
    out = []
    t = threading.Thread(target=lambda: out.extend(ws.handle(None, req, pool=ws.Pool(srv.port, 1))))
    t.start()
    assert saw_first.wait(60), "the server never got the body's first bytes"
    for piece in (b"def", b"ghi", b""):
        stream.feed(piece)
    t.join(60)
    status, _, first = decode_head(out[0])
    assert status == 200 and first + b"".join(out[1:]) == b"abcdefghi", out


def test_proxy_keeps_connections_alive():
    def serve(c):
        while True:
            head, _ = read_request(c)
            if head is None:
                return
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    srv = RawServer(serve)
    pool = ws.Pool(srv.port, 2)
    for _ in range(5):
        assert proxy(srv.port, pool)[2] == b"ok"
    assert srv.conns == 1, srv.conns
    srv.close()


def test_proxy_decodes_every_framing_in_any_split():
    body = bytes(range(256)) * 50
    chunked = b"".join(b"%x;ext=1\r\n" % len(p) + p + b"\r\n" for p in (body[:1000], body[1000:1001], body[1001:]))
    cases = [
        (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body, False),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked + b"0\r\nX-T: 1\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\n\r\n" + body, True),  # until close
        (b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\nContent-Length: %d\n\n" % len(body)
         + body, False),
    ]
    rnd = random.Random(4711)
    for raw, close in cases:
        for _ in range(5):
            cuts = sorted(rnd.sample(range(1, len(raw)), 12))
            pieces = [raw[a:b] for a, b in zip([0] + cuts, cuts + [len(raw)])]

            def serve(c, pieces=pieces, close=close):
                read_request(c)
                for p in pieces:
                    c.sendall(p)
                if not close:
                    read_request(c)  # hold the connection: the framing, not EOF, ends it
            srv = RawServer(serve)
            st, h, got = proxy(srv.port)
            srv.close()
            assert st == 200 and got == body, (raw[:60], len(got))
            assert "transfer-encoding" not in h and "link" not in h, h


def test_proxy_streams_pieces_as_the_server_writes_them():
    """Each event is an item before the server writes the next one: the server waits
    for the test to have taken an event before it writes another."""
    took = threading.Semaphore(0)

    def serve(c):
        read_request(c)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(3):
            ev = b"data: tick %d\n\n" % i
            c.sendall(b"%x\r\n" % len(ev) + ev + b"\r\n")
            assert took.acquire(timeout=60)
        c.sendall(b"0\r\n\r\n")
    srv = RawServer(serve)
    gen = ws.handle(None, cweb.Request(envelope(path="/events")), pool=ws.Pool(srv.port, 1))
    st, h, first = decode_head(next(gen))
    assert st == 200 and dict(h)["Content-Type"] == "text/event-stream"
    events = []
    if first:  # tick 0 came with the head
        events.append(first)
        took.release()
    for item in gen:
        events.append(item)
        took.release()
    assert events == [b"data: tick 0\n\n", b"data: tick 1\n\n", b"data: tick 2\n\n"], events
    srv.close()


def test_proxy_errors():
    # Nothing listens: a 502 naming the port.
    dead = socket.create_server(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    st, _, body = proxy(port)
    assert st == 502 and f"127.0.0.1:{port}" in json.loads(body)["error"]["message"], body
    bad = [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n",
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"v" * (ws.HEAD_MAX + 10),
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Le",  # closed inside the head
        b"",  # closed without an answer
    ]
    for raw in bad:
        srv = RawServer(lambda c, raw=raw: (read_request(c), c.sendall(raw)))
        st, _, body = proxy(srv.port)
        srv.close()
        assert st == 502 and json.loads(body)["error"]["code"] == "bad_gateway", (raw[:40], st, body)
    # Closed mid-body, after the head went: the call fails (gustd cuts the response short).
    for raw in (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"):
        srv = RawServer(lambda c, raw=raw: (read_request(c), c.sendall(raw)))
        gen = ws.handle(None, cweb.Request(envelope()), pool=ws.Pool(srv.port, 1))
        assert decode_head(next(gen))[0] == 200
        with pytest.raises(ws.UpstreamError, match="closed the connection"):
            list(gen)
        srv.close()


class ListStream:
    """An input stream (gust/_container/instream.py's read_sync) of given pieces, then
    its end."""

    def __init__(self, pieces):
        self.pieces = list(pieces)

    def read_sync(self, timeout=None):
        return self.pieces.pop(0) if self.pieces else b""


def test_upgrade_tunnels_bytes_both_ways():
    """A 101 from the server: the head goes back with its Upgrade headers, then the
    client's stream bytes reach the server and the server's bytes come back as items
    until it closes; a refused upgrade is passed on as a plain response."""
    got = {}

    def tunnel_server(c):
        got["head"], _ = read_request(c)
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nhello ")
        data = b""
        while True:  # echoes in upper case until the client's side ends
            d = c.recv(65536)
            if not d:
                break
            data += d
            c.sendall(d.upper())
        c.sendall(b" bye")
        got["data"] = data
    srv = RawServer(tunnel_server)
    req = cweb.Request(envelope(headers=[(b"Upgrade", b"echo"), (b"Connection", b"upgrade")]))
    items = list(ws.handle(None, req, pool=ws.Pool(srv.port, 1), stream=ListStream([b"abc", b"def"])))
    status, headers, first = decode_head(items[0])
    assert status == 101 and ("Upgrade", "echo") in headers and first == b"hello ", (status, headers, first)
    assert b"".join(items[1:]) == b"ABCDEF bye", items
    assert got["data"] == b"abcdef"
    assert b"\r\nUpgrade: echo" in got["head"] and b"\r\nConnection: Upgrade" in got["head"], got["head"]
    srv.close()
    srv = RawServer(lambda c: (read_request(c), c.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno")))
    items = list(ws.handle(None, req, pool=ws.Pool(srv.port, 1), stream=ListStream([])))
    assert decode_head(items[0])[0] == 403 and decode_head(items[0])[2] + b"".join(items[1:]) == b"no", items
    srv.close()


def test_cancel_wakes_a_request_blocked_on_its_server():
    """A cancelled call's request, blocked reading an idle stream, ends at once (the
    runner calls cancel() on a CANCEL frame) and the server sees its client go."""
    from gust import _runtime
    from gust.exception import InputCancellation
    gone = threading.Event()

    def serve(c):
        read_request(c)
        c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        if c.recv(1) == b"":  # nothing more is written: this waits for the proxy to let go
            gone.set()
    srv = RawServer(serve)
    out, headed = {}, threading.Event()

    def run():
        token = _runtime.enter_input(77, None)
        try:
            gen = ws.handle(None, cweb.Request(envelope()), pool=ws.Pool(srv.port, 1))
            out["head"] = next(gen)
            headed.set()
            out["items"] = list(gen)
        except BaseException as e:  # noqa: B902 - the cancellation is what this looks for
            out["exc"] = e
        finally:
            _runtime.leave_input(token)
    t = threading.Thread(target=run)
    t.start()
    assert headed.wait(60)
    ws.cancel(_runtime.input_name(77))
    t.join(60)
    assert isinstance(out.get("exc"), InputCancellation), out
    assert gone.wait(60)
    srv.close()


def test_startup_wait_names_the_port():
    dead = socket.create_server(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    with pytest.raises(ws.StartupError, match=f"nothing accepted connections on port {port} within 0.2 s"):
        ws.wait_for_port(port, 0.2)
    # A server that starts listening while the wait goes on is found.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    threading.Timer(0.1, s.listen).start()
    ws.wait_for_port(port, 60)
    s.close()


def test_decorator_validation():
    import gust
    from gust.exception import InvalidError
    for bad in (0, 65536, "8000", 80.0, True):
        with pytest.raises(InvalidError, match="port must be a TCP port"):
            gust.web_server(bad)
    for bad in (0, -1, "5", 4000):
        with pytest.raises(InvalidError, match="startup_timeout must be a positive number"):
            gust.web_server(8000, startup_timeout=bad)

    def f():
        pass
    gust.web_server(8000, startup_timeout=2, label="srv")(f)
    from gust import _web
    assert _web.spec_of(f) == {"kind": "web_server", "method": "*", "public": False, "docs": False,
                               "label": "srv", "port": 8000, "startup_timeout": 2.0}


# ---------------------------------------------------------------- through gustd

from test_web import deploy, jbody, load_example, request  # noqa: E402


@pytest.fixture(scope="module")
def example(shared_gust):
    return deploy(shared_gust.use_for_sdk(), load_example("web_server.py"))


def test_example_file_server_with_curl_and_http_client(shared_gust, example):
    g = shared_gust
    url = example.files.get_web_url()
    assert url == f"http://127.0.0.1:{g.web_port}/default/web-server/files", url
    ls = g.cli("ls")
    assert ls.rc == 0 and url in ls.out, ls
    fns = {f["name"]: f for f in g.get_json("/v1/functions")["functions"] if f["app"] == "web-server"}
    web = fns["files"]["spec"]["web"]
    assert web["kind"] == "web_server" and web["port"] == 8000 and web["startup_timeout"] == 10.0, web
    out = subprocess.run(["curl", "-sS", "-i", "-H", f"Authorization: Bearer {g.admin_token}", url + "/hello.txt"],
                         capture_output=True, timeout=120)
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and body == b"hello from a web server\n", out
    assert b"Server: SimpleHTTP" in head, head  # http.server's own header, passed through
    # The upstream's 404 as it is, keep-alive on the client's side.
    c = http.client.HTTPConnection("127.0.0.1", g.web_port, timeout=120)
    auth = {"Authorization": f"Bearer {g.admin_token}"}
    for path, status in (("/nope.txt", 404), ("/index.html", 200), ("/", 200), ("/hello.txt?x=1", 200)):
        c.request("GET", "/default/web-server/files" + path, headers=auth)
        r = c.getresponse()
        data = r.read()
        assert r.status == status, (path, r.status, data)
        if path in ("/index.html", "/"):
            assert data == b"<h1>files</h1>\n" and r.getheader("Content-Type") == "text/html", r.getheaders()
    c.close()
    # Many at once (max_inputs=8 on one container): every answer is its own.
    results = [None] * 24

    def get(i):
        results[i] = request(g, "GET", f"/default/web-server/files/hello.txt?i={i}")
    ts = [threading.Thread(target=get, args=(i,)) for i in range(len(results))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert all(r and r[0] == 200 and r[2] == b"hello from a web server\n" for r in results), results
    # http.server logs each request to its stderr: the container's logs.
    wait_until(lambda: "GET /hello.txt?i=23" in g.http("GET", "/v1/functions/web-server/files/logs").body.decode(),
               30, msg="http.server's access log in gust logs")


def test_example_post_body_reaches_the_server(shared_gust, example):
    g = shared_gust
    body = os.urandom(3 << 20).hex().encode()[:5 << 20]  # several item windows' worth of request
    st, _, data = request(g, "POST", "/default/web-server/echo/some/path?q=1", body=body,
                          headers={"Content-Type": "application/octet-stream"})
    got = jbody(data)
    assert st == 200 and got["length"] == len(body) and got["body"] == body.decode(), (st, len(data))
    assert got["path"] == "/some/path?q=1" and got["content_type"] == "application/octet-stream", got
    assert got["forwarded_proto"] == "http" and got["forwarded_for"] == "127.0.0.1", got
    # A client's own X-Forwarded-For is kept, the address gustd saw appended.
    out = subprocess.run(["curl", "-sS", "-H", f"Authorization: Bearer {g.admin_token}", "--data-binary", "a=1&b=2",
                          "-H", "X-Forwarded-For: 203.0.113.9", example.echo.get_web_url() + "/"],
                         capture_output=True, timeout=120)
    got = json.loads(out.stdout)
    assert got["body"] == "a=1&b=2" and got["content_type"] == "application/x-www-form-urlencoded", out
    assert got["forwarded_for"] == "203.0.113.9, 127.0.0.1", got


STREAMS = '''
import gust

app = gust.App("web-srv-stream")


@app.function(max_containers=1)
@gust.concurrent(max_inputs=6)
@gust.web_server(8002)
def stream():
    """/events writes event i, then waits for /release?i=<i> before event i+1 (so a
    client that has event i before it releases it saw it streamed); /barrier answers
    once 4 requests are in it at once."""
    import http.server
    import os
    import threading
    import urllib.parse

    released = [threading.Event() for _ in range(20)]
    barrier = threading.Barrier(4)

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            q = urllib.parse.parse_qs(url.query)
            if url.path == "/events":  # HTTP/1.0: the body ends when the server closes
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                first = int(q.get("from", ["0"])[0])
                for i in range(first, first + int(q["n"][0])):
                    self.wfile.write(b"data: tick %d\\n\\n" % i)
                    self.wfile.flush()
                    if not released[i].wait(120):
                        return
            elif url.path == "/release":
                released[int(q["i"][0])].set()
                self._answer(b"released")
            elif url.path == "/pid":
                self._answer(str(os.getpid()).encode())
            elif url.path == "/barrier":
                barrier.wait(120)
                self._answer(b"together")

        def _answer(self, body):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 8002), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()


@app.function()
@gust.web_server(8003, startup_timeout=0.5)
def never():
    print("starting nothing")
'''


@pytest.fixture(scope="module")
def streams(shared_gust, tmp_path_factory):
    return deploy(shared_gust.use_for_sdk(), sdk_module(tmp_path_factory.mktemp("wsrv"), "wsrvstream", STREAMS))


def test_server_sent_events_arrive_one_by_one(shared_gust, streams):
    g = shared_gust
    c = http.client.HTTPConnection("127.0.0.1", g.web_port, timeout=120)
    c.request("GET", "/default/web-srv-stream/stream/events?n=3", headers={"Authorization": f"Bearer {g.admin_token}"})
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream"
    for i in range(3):
        # Event i is here while the server waits for its release to write event i+1.
        assert r.readline() == b"data: tick %d\n" % i
        assert r.readline() == b"\n"
        st, _, data = request(g, "GET", f"/default/web-srv-stream/stream/release?i={i}")
        assert st == 200 and data == b"released", (st, data)
    assert r.read() == b""
    c.close()


def test_a_client_leaving_an_event_stream_leaves_the_server_running(shared_gust, streams):
    """The client goes away while the server holds its stream open: gustd cancels the
    call, the runner shuts the request's connection (the server's handler sees it go)
    and the container is idle again, the same one with the same server, not killed."""
    g = shared_gust
    st, _, pid = request(g, "GET", "/default/web-srv-stream/stream/pid")
    assert st == 200

    def ctr():
        ks = [k for k in g.get_json("/v1/containers")["containers"]
              if k["app"] == "web-srv-stream" and k["function"] == "stream"]
        assert len(ks) == 1, ks  # max_containers=1: a killed one would be replaced
        return ks[0]
    before = ctr()
    c = http.client.HTTPConnection("127.0.0.1", g.web_port, timeout=120)
    c.request("GET", "/default/web-srv-stream/stream/events?from=10&n=3",
              headers={"Authorization": f"Bearer {g.admin_token}"})
    r = c.getresponse()
    assert r.status == 200 and r.readline() == b"data: tick 10\n"
    wait_until(lambda: ctr()["state"] == "busy", 60, msg="the stream's container busy")
    c.sock.shutdown(socket.SHUT_RDWR)
    c.close()
    wait_until(lambda: ctr()["state"] == "idle", 60, msg="the container idle after the client left")
    assert ctr()["id"] == before["id"]
    st, _, pid2 = request(g, "GET", "/default/web-srv-stream/stream/pid")
    assert st == 200 and pid2 == pid, (pid, pid2)
    logs = g.http("GET", "/v1/functions/web-srv-stream/stream/logs").body.decode()
    assert "killing it" not in logs


def test_concurrent_requests_reach_the_server_together(shared_gust, streams):
    """Four requests that the server answers only once all four are in it at once."""
    g = shared_gust
    results = [None] * 4

    def get(i):
        results[i] = request(g, "GET", "/default/web-srv-stream/stream/barrier")
    ts = [threading.Thread(target=get, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(150)
    assert all(r and r[0] == 200 and r[2] == b"together" for r in results), results


def test_startup_timeout_fails_the_container(shared_gust, streams):
    g = shared_gust
    st, _, data = request(g, "GET", "/default/web-srv-stream/never/")
    assert st == 502 and jbody(data)["error"]["code"] == "container_failed", (st, data)
    want = "web_server: nothing accepted connections on port 8003 within 0.5 s"

    def logged():
        logs = g.http("GET", "/v1/functions/web-srv-stream/never/logs").body.decode()
        return want in logs and "starting nothing" in logs
    wait_until(logged, 30, msg="the startup failure in gust logs")


WS_SERVER = '''
import gust

app = gust.App("web-srv-ws")
# The examples' FastAPI image (its build cached) plus Debian's websockets library.
IMAGE = gust.Image.debian_slim().apt_install("python3-fastapi").apt_install("python3-websockets")


@app.function(image=IMAGE, max_containers=1)
@gust.concurrent(max_inputs=4)
@gust.web_server(8010)
def chat():
    """A WebSocket echo server of the websockets library on a loop thread: any server
    that upgrades works behind web_server."""
    import asyncio
    import threading

    import websockets

    async def echo(ws, path=None):
        async for msg in ws:
            await ws.send(msg.upper() if isinstance(msg, str) else msg[::-1])

    async def main():
        async with websockets.serve(echo, "0.0.0.0", 8010):
            await asyncio.Future()
    threading.Thread(target=asyncio.run, args=(main(),), daemon=True).start()
'''


def test_websocket_through_a_web_server(shared_gust, tmp_path):
    """A real WebSocket client to a real WebSocket server in the container: gustd
    answers the server's 101 and tunnels the bytes; the runner pipes them to the port."""
    import asyncio

    import websockets
    g = shared_gust.use_for_sdk()
    mod = sdk_module(tmp_path, "wssrv", WS_SERVER)
    mod.app.addr = g.addr
    mod.app.deploy(progress=io.StringIO())
    url = f"ws://127.0.0.1:{g.web_port}/default/web-srv-ws/chat/room"

    async def go():
        async with websockets.connect(url, extra_headers={"Authorization": f"Bearer {g.admin_token}"}) as sock:
            for i in range(3):
                await sock.send(f"hello {i}")
                assert await sock.recv() == f"HELLO {i}"
            await sock.send(b"\x01\x02\x03" * 30000)
            assert await sock.recv() == (b"\x01\x02\x03" * 30000)[::-1]
        return sock.close_code
    try:
        assert asyncio.run(asyncio.wait_for(go(), 120)) == 1000
    finally:
        g.http("POST", "/v1/apps/web-srv-ws/stop")
