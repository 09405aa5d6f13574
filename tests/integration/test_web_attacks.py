"""The web page as an attacker: a page in the user's browser can POST to gustd on
127.0.0.1 (a text/plain "simple" request needs no CORS preflight) and, through DNS
rebinding, read answers under its own name in Host. gustd refuses requests that carry an
Origin it was not told to allow, and Host names that are neither IP literals, localhost,
nor given with --allow-host (src/api/guard.h)."""
import http.client
import json

from gustlib import fn_spec


def request(g, method, path, body=None, headers=None, host=None):
    """One request with exactly the headers given (Host too, when host is not None) and
    the admin token: what is refused here is refused although the token is valid."""
    conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=10)
    conn.putrequest(method, path, skip_host=host is not None, skip_accept_encoding=True)
    if host is not None:
        conn.putheader("Host", host)
    conn.putheader("Authorization", f"Bearer {g.admin_token}")
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    data = body.encode() if isinstance(body, str) else body
    if data is not None:
        conn.putheader("Content-Length", str(len(data)))
    conn.endheaders(data)
    resp = conn.getresponse()
    out = resp.status, resp.read()
    conn.close()
    return out


def deploy_body():
    return json.dumps(fn_spec("web", "f", ["cat"], image="busybox"))


def test_foreign_origin_cannot_deploy(gust):
    # What a page's fetch("http://127.0.0.1:8470/v1/deploy", {method: "POST", body}) sends.
    status, body = request(gust, "POST", "/v1/deploy", deploy_body(),
                           {"Origin": "http://evil.example", "Content-Type": "text/plain;charset=UTF-8"})
    assert status == 403, body
    err = json.loads(body)["error"]
    assert err["code"] == "origin_not_allowed" and "--allow-origin" in err["message"], err
    # Nothing was deployed; the same deploy without an Origin (the CLI) works.
    assert not [a for a in gust.get_json("/v1/apps")["apps"] if a["name"] == "web"]
    status, body = request(gust, "POST", "/v1/deploy", deploy_body(), {"Content-Type": "application/json"})
    assert status == 200, body
    # Reads are refused too (a rebinding page would read them).
    status, _ = request(gust, "GET", "/v1/functions", headers={"Origin": "http://evil.example"})
    assert status == 403


def test_rebound_host_name_is_refused(gust):
    status, body = request(gust, "GET", "/v1/functions", host=f"evil.example:{gust.port}")
    assert status == 403, body
    assert json.loads(body)["error"]["code"] == "host_not_allowed"
    for host in (f"127.0.0.1:{gust.port}", f"localhost:{gust.port}", "127.0.0.1"):
        status, body = request(gust, "GET", "/v1/health", host=host)
        assert status == 200, (host, body)


def test_allowed_origin_and_host(gust_factory):
    g = gust_factory("--allow-origin", "https://dash.example", "--allow-host", "gust.internal")
    status, body = request(g, "GET", "/v1/health", headers={"Origin": "https://dash.example"},
                           host=f"gust.internal:{g.port}")
    assert status == 200, body
    status, _ = request(g, "GET", "/v1/health", headers={"Origin": "https://other.example"})
    assert status == 403
