"""A web endpoint written in C (examples/web_c: the runner library's web part,
src/proto/runner.h and web.h) behind gustd's web listener, deployed from its TOML
spec as a user would, requested with curl, http.client and a raw socket: a JSON
answer built from the query, a body streamed as several items (one HTTP chunk each),
a POST body echoed, an upgraded connection whose bytes reach the runner as its input
stream, and the item window: a body far larger than the window, read slowly, arrives
whole (the runner waits for acknowledgements instead of failing the call with
items_overflow), and a client that goes away mid-body cancels the call, which the
runner gives up while it waits for room."""
import http.client
import json
import os
import socket
import subprocess
import time

import pytest

from gustlib import make_rootfs, wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC = os.path.join(REPO, "examples", "web_c", "web_c.toml")
PREFIX = "/default/web-c/api"


@pytest.fixture(scope="session")
def web_c_rootfs(build_dir, tmp_path_factory):
    d = str(tmp_path_factory.mktemp("rootfs-web-c"))
    make_rootfs(d, {os.path.join(build_dir, "examples/web_c/web_c"): "usr/local/bin/gust-web-c"})
    return d


def deploy_web_c(g, rootfs):
    g.add_image("web-c", rootfs)
    with open(SPEC) as f:
        g.deploy(f.read())


def containers(g):
    return [c for c in g.get_json("/v1/containers")["containers"] if c["app"] == "web-c"]


def request(g, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", g.web_port, timeout=120)
    h = {"Authorization": f"Bearer {g.admin_token}"}
    h.update(headers or {})
    c.request(method, PREFIX + path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, dict(r.getheaders()), data


def raw_request(g, lines):
    """Sends a request head over a new socket; returns the socket."""
    s = socket.create_connection(("127.0.0.1", g.web_port), timeout=120)
    head = "\r\n".join(lines + [f"Host: 127.0.0.1:{g.web_port}", f"Authorization: Bearer {g.admin_token}", "", ""])
    s.sendall(head.encode())
    return s


def read_head(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        assert chunk, f"connection closed inside the head: {data!r}"
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


def read_chunks(s, rest):
    """The chunks of a chunked body (up to the last, empty one), as the wire has them."""
    buf, chunks = rest, []
    while True:
        while b"\r\n" not in buf:
            buf += s.recv(65536)
        size_line, buf = buf.split(b"\r\n", 1)
        n = int(size_line.split(b";")[0], 16)
        while len(buf) < n + 2:
            more = s.recv(65536)
            assert more, "connection closed inside a chunk"
            buf += more
        if n == 0:
            return chunks
        chunks.append(buf[:n])
        buf = buf[n + 2:]


def test_c_endpoint_json_stream_echo_and_upgrade(gust, web_c_rootfs):
    g = gust
    deploy_web_c(g, web_c_rootfs)
    url = f"http://127.0.0.1:{g.web_port}{PREFIX}"
    fns = {f["name"]: f for f in g.get_json("/v1/functions")["functions"] if f["app"] == "web-c"}
    assert fns["api"]["web_url"] == url, fns
    # curl: the query's parameter, percent-decoded, in a JSON answer (escaped).
    out = subprocess.run(["curl", "-sS", "-H", f"Authorization: Bearer {g.admin_token}",
                          url + "/hello?name=a%22da+l"], capture_output=True, timeout=120)
    assert json.loads(out.stdout) == {"greeting": 'hello, a"da l'}, out
    # http.client with keep-alive: several requests on one connection, one container.
    c = http.client.HTTPConnection("127.0.0.1", g.web_port, timeout=120)
    for name in ("x", "y"):
        c.request("GET", f"{PREFIX}/hello?name={name}", headers={"Authorization": f"Bearer {g.admin_token}"})
        r = c.getresponse()
        assert r.status == 200 and r.getheader("Content-Type") == "application/json"
        assert json.loads(r.read()) == {"greeting": f"hello, {name}"}
    c.close()
    st, _, data = request(g, "GET", "/hello")
    assert st == 200 and json.loads(data) == {"greeting": "hello, world"}
    # A streamed body: the head item, then one item per line, each its own HTTP chunk.
    s = raw_request(g, [f"GET {PREFIX}/count?n=5 HTTP/1.1", "Connection: close"])
    head, rest = read_head(s)
    assert head.startswith("HTTP/1.1 200") and "transfer-encoding: chunked" in head.lower(), head
    chunks = read_chunks(s, rest)
    s.close()
    assert chunks == [b"1\n", b"2\n", b"3\n", b"4\n", b"5\n"], chunks
    st, h, data = request(g, "GET", "/count?n=1000")
    assert st == 200 and data == b"".join(b"%d\n" % i for i in range(1, 1001)) and h["Content-Type"] == "text/plain"
    # POST: the body back with its type, a body of several items included.
    body = os.urandom(3 << 20)
    st, h, data = request(g, "POST", "/echo", body=body, headers={"Content-Type": "application/x-test"})
    assert st == 200 and data == body and h["Content-Type"] == "application/x-test", (st, h, len(data))
    st, _, data = request(g, "POST", "/echo", body=b"")
    assert st == 200 and data == b""
    # The runner's own errors: JSON with the status it chose.
    st, _, data = request(g, "GET", "/nope")
    assert st == 404 and json.loads(data)["error"]["code"] == "not_found", data
    st, _, data = request(g, "GET", "/echo")
    assert st == 405 and json.loads(data)["error"]["code"] == "method_not_allowed", data
    st, _, data = request(g, "GET", "/count?n=zero")
    assert st == 422 and json.loads(data)["error"]["code"] == "invalid_argument", data
    st, _, data = request(g, "GET", "/shout")  # no upgrade asked for
    assert st == 426, (st, data)
    # An upgrade: a 101, then the client's bytes are the input's stream (read by
    # runner_stream_read) and come back upper-cased; a half-close ends the call.
    s = raw_request(g, [f"GET {PREFIX}/shout HTTP/1.1", "Connection: Upgrade", "Upgrade: websocket",
                        "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="])
    head, rest = read_head(s)
    assert head.startswith("HTTP/1.1 101") and "upgrade: websocket" in head.lower(), head
    got = rest
    for word in (b"hello ", b"from ", b"a raw stream"):
        s.sendall(word)
    want = b"HELLO FROM A RAW STREAM"
    while len(got) < len(want):
        more = s.recv(4096)
        assert more, got
        got += more
    assert got == want, got
    # More than the stream window (1 MiB) in one go: the runner acknowledges what it
    # reads, so gustd keeps sending.
    big = b"abc" * (700 * 1024)
    s.sendall(big)
    got = b""
    while len(got) < len(big):
        more = s.recv(65536)
        assert more, len(got)
        got += more
    assert got == big.upper()
    s.shutdown(socket.SHUT_WR)
    assert s.recv(4096) == b""  # the call ended: the connection closes
    s.close()
    # The container served all of it: one, never restarted.
    assert len(containers(g)) == 1, containers(g)


def test_item_window_with_a_slow_client(gust_factory, web_c_rootfs):
    """A 48 MiB body, read slowly: gustd holds at most the window (8 MiB) and one
    payload (here 4 MiB: --max-payload) of a call's unread items before it fails the call
    with items_overflow, so only a runner that waits for ITEM_ACKs gets it all through."""
    g = gust_factory("--max-payload", str(4 << 20))
    deploy_web_c(g, web_c_rootfs)
    mib = 48
    s = raw_request(g, [f"GET {PREFIX}/big?mib={mib} HTTP/1.1", "Connection: close"])
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    head, rest = read_head(s)
    assert head.startswith("HTTP/1.1 200"), head
    # The client pauses: the runner fills the window and waits, gustd stops taking.
    time.sleep(3)
    data = bytearray()
    buf = rest
    # De-chunk while reading slowly (small reads, a pause now and then).
    reads = 0
    while True:
        while b"\r\n" not in buf:
            more = s.recv(16384)
            assert more, f"closed after {len(data)} bytes"
            buf += more
        size_line, buf = buf.split(b"\r\n", 1)
        n = int(size_line, 16)
        while len(buf) < n + 2:
            more = s.recv(16384)
            assert more, f"closed inside a chunk after {len(data)} bytes"
            buf += more
            reads += 1
            if reads % 64 == 0:
                time.sleep(0.05)
        if n == 0:
            break
        data += buf[:n]
        buf = buf[n + 2:]
    s.close()
    assert len(data) == mib << 20, len(data)
    want = bytes(i % 251 for i in range(251)) * ((mib << 20) // 251 + 1)
    assert data == want[:mib << 20]
    # A client that goes away mid-body cancels the call: the runner, waiting for room
    # in the window, sees the CANCEL and gives the request up (a runner that did not
    # would be killed after the cancel grace), so its container serves on.
    ct = containers(g)[0]["id"]
    s = raw_request(g, [f"GET {PREFIX}/big?mib=256 HTTP/1.1"])
    assert read_head(s)[0].startswith("HTTP/1.1 200")
    s.close()
    wait_until(lambda: [c for c in containers(g) if c["id"] == ct and c["state"] == "idle"
                        and c["inputs_in_flight"] == 0], 60, msg="the container idle again")
    st, _, data = request(g, "GET", "/hello?name=after")
    assert st == 200 and json.loads(data) == {"greeting": "hello, after"}
    assert [c["id"] for c in containers(g)] == [ct]
    log = open(g.runs[-1]["stderr"]).read()
    assert "did not give up a cancelled input" not in log
