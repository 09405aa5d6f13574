"""How the web listener frames an endpoint's response on the wire, read with a raw
socket (what any HTTP client relies on): a 204 or 304 has no body and no framing
header and its connection serves the next request; HEAD gets the head of GET without
a body; an HTTP/1.0 client gets the body delimited by the connection's close."""
import io
import socket

import pytest

from gustlib import sdk_module

MODULE = '''
import gust
app = gust.App("web-framing")
IMAGE = gust.Image.from_name("python")

@app.function(image=IMAGE)
@gust.web_endpoint()
def status(code: int = 200):
    return gust.Response(b"" if code in (204, 304) else b"body of " + str(code).encode(), status_code=code,
                         media_type="text/plain")
'''


@pytest.fixture(scope="module")
def framing(shared_gust, tmp_path_factory):
    g = shared_gust.use_for_sdk()
    mod = sdk_module(tmp_path_factory.mktemp("framing"), "framingmod", MODULE)
    mod.app.addr = g.addr
    mod.app.deploy(progress=io.StringIO())
    yield g
    g.http("POST", "/v1/apps/web-framing/stop")


def _read_response(f):
    """Status, headers (lower-case names) and body of one response on file f, framed
    as its headers say (Content-Length, chunked, or none at all for a bodyless one)."""
    status = int(f.readline().split()[1])
    headers = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        k, v = line.decode().split(":", 1)
        headers[k.strip().lower()] = v.strip()
    body = b""
    if "content-length" in headers:
        body = f.read(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while (n := int(f.readline().strip(), 16)):
            body += f.read(n)
            f.readline()
        f.readline()
    return status, headers, body


def _head(g, method, query, version="1.1"):
    return (f"{method} /default/web-framing/status{query} HTTP/{version}\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {g.admin_token}\r\n\r\n").encode()


@pytest.mark.parametrize("code", [204, 304])
def test_a_bodyless_status_has_no_framing_and_keeps_the_connection(framing, code):
    g = framing
    with socket.create_connection(("127.0.0.1", g.web_port), timeout=60) as s:
        f = s.makefile("rb")
        s.sendall(_head(g, "GET", f"?code={code}"))
        st, h, body = _read_response(f)
        assert st == code and body == b"", (st, h, body)
        assert "transfer-encoding" not in h and "content-length" not in h, h
        # The same connection: the next response starts right after the head.
        s.sendall(_head(g, "GET", "?code=200"))
        st, h, body = _read_response(f)
        assert (st, body) == (200, b"body of 200"), (st, h, body)


def test_head_has_no_body_and_http10_ends_at_close(framing):
    g = framing
    with socket.create_connection(("127.0.0.1", g.web_port), timeout=60) as s:
        f = s.makefile("rb")
        s.sendall(_head(g, "HEAD", "?code=200"))
        status = int(f.readline().split()[1])
        lines = []
        while (line := f.readline()) != b"\r\n":
            lines.append(line)
        assert status == 200, lines
        s.sendall(_head(g, "GET", "?code=201"))
        st, h, body = _read_response(f)  # nothing of HEAD's body came before this head
        assert (st, body) == (201, b"body of 201"), (st, h, body)
    with socket.create_connection(("127.0.0.1", g.web_port), timeout=60) as s:
        s.sendall(_head(g, "GET", "?code=200", version="1.0"))
        data = s.makefile("rb").read()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"chunked" not in head.lower(), head
    assert body == b"body of 200", data
