"""Transport: gustd over HTTPS (--tls-cert/--tls-key) with the CLI, the SDK and plain
HTTP clients against it; gustd's refusal to serve plain HTTP off loopback; 415 for
bodies without their media type; the bearer token every client sends (found as
--token, $GUST_TOKEN, then the token file) and never shows."""
import http.client
import http.server
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import warnings

import pytest

from gustlib import BUILD, SDK_DIR, Gust, TlsFiles, fn_spec, free_port, sanitizer_env

CAT = fn_spec("tls", "cat", ["cat"], image="busybox")


@pytest.fixture
def tls_files(tmp_path):
    return TlsFiles(tmp_path)


@pytest.fixture
def tls_gust(tmp_path, tls_files, request):
    g = Gust(tmp_path, name="tls", tls=tls_files)
    g.start()
    yield g
    problems = g.check_after_stop()
    if problems:
        pytest.fail("gustd teardown checks failed:\n" + "\n".join(problems), pytrace=False)


def _sdk():
    if SDK_DIR not in sys.path:
        sys.path.insert(0, SDK_DIR)
    import gust as gsdk
    from gust import _net
    return gsdk, _net


def test_cli_over_https_with_ca_file(tls_gust, tls_files):
    g = tls_gust
    assert g.addr.startswith("https://")
    # --ca-file rather than $GUST_CA_FILE (which cli() also sets): both work.
    r = g.cli("--ca-file", tls_files.ca, "health", env={"GUST_CA_FILE": ""})
    assert r.rc == 0 and "ok" in r.out, r
    spec = os.path.join(g.tmpdir, "cat.json")
    with open(spec, "w") as f:
        json.dump(CAT, f)
    r = g.cli("deploy", spec)
    assert r.rc == 0, r
    r = g.cli("call", "tls.cat", "-d", "over tls")
    assert r.rc == 0 and r.out == "over tls", r
    # localhost is in the certificate too.
    r = g.cli("health", addr=f"https://localhost:{g.port}")
    assert r.rc == 0, r


def test_client_without_the_ca_refuses(tls_gust):
    g = tls_gust
    r = g.cli("health", env={"GUST_CA_FILE": ""})
    assert r.rc == 4, r
    assert "not trusted" in r.err and "--ca-file" in r.err and "is it running" not in r.err, r.err
    # A CA file that is not there is named.
    r = g.cli("--ca-file", "/nonexistent/ca.pem", "health")
    assert r.rc == 4 and "/nonexistent/ca.pem" in r.err, r
    # Python's default trust refuses too.
    conn = http.client.HTTPSConnection("127.0.0.1", g.port, timeout=10)
    with pytest.raises(ssl.SSLCertVerificationError):
        conn.request("GET", "/v1/health")
    conn.close()
    # A name the certificate does not carry fails the host check.
    ctx = ssl.create_default_context(cafile=g.tls.ca)
    s = socket.create_connection(("127.0.0.1", g.port))
    with pytest.raises(ssl.SSLCertVerificationError):
        ctx.wrap_socket(s, server_hostname="gust.example")
    s.close()
    assert g.http("GET", "/v1/health").status == 200


def test_plain_http_to_the_tls_port(tls_gust):
    g = tls_gust
    conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=10)
    conn.request("GET", "/v1/health")
    r = conn.getresponse()
    body = r.read()
    conn.close()
    assert r.status == 400, body
    err = json.loads(body)["error"]
    assert err["code"] == "tls_required" and "https://" in err["message"], err
    # The CLI given http:// says so; garbage and a half handshake do no harm.
    r = g.cli("health", addr=f"http://127.0.0.1:{g.port}")
    assert r.rc == 3 and "https://" in r.err, r
    for junk in (b"\x16\x03\x01\x00\x05hello", b"\x00" * 64, b"\x16"):
        s = socket.create_connection(("127.0.0.1", g.port))
        s.sendall(junk)
        s.close()
    # TLS below 1.2 is refused.
    ctx = ssl.create_default_context(cafile=g.tls.ca)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    s = socket.create_connection(("127.0.0.1", g.port))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        ctx.wrap_socket(s, server_hostname="127.0.0.1")
    s.close()
    assert g.http("GET", "/v1/health").status == 200
    assert g.alive()


def test_keepalive_calls_and_large_bodies_over_tls(tls_gust):
    g = tls_gust
    g.deploy(CAT)
    ctx = g.tls.context()
    conn = http.client.HTTPSConnection("127.0.0.1", g.port, timeout=60, context=ctx)
    conn.connect()
    sock = conn.sock
    for i in range(200):
        data = b"call %d" % i
        conn.request("POST", "/v1/functions/tls/cat/call", body=data,
                     headers={"Content-Type": "application/octet-stream", "Authorization": f"Bearer {g.admin_token}"})
        r = conn.getresponse()
        assert r.status == 200 and r.read() == data
        assert conn.sock is sock, "the connection was not kept alive"
    # Bodies of many records each way (several MiB in, the same out).
    big = os.urandom(3 << 20)
    conn.request("POST", "/v1/functions/tls/cat/call", body=big,
                 headers={"Content-Type": "application/octet-stream", "Authorization": f"Bearer {g.admin_token}"})
    r = conn.getresponse()
    assert r.status == 200 and r.read() == big
    # Pipelined requests on one TLS connection are answered in order.
    raw = ctx.wrap_socket(socket.create_connection(("127.0.0.1", g.port)), server_hostname="127.0.0.1")
    auth = f"Authorization: Bearer {g.admin_token}\r\n".encode()
    reqs = b"".join(b"POST /v1/functions/tls/cat/call HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth +
                    b"Content-Type: application/octet-stream\r\nContent-Length: 2\r\n\r\n%02d" % i for i in range(20))
    raw.sendall(reqs + b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth + b"Connection: close\r\n\r\n")
    got = b""
    raw.settimeout(60)
    while True:
        chunk = raw.recv(65536)
        if not chunk:
            break
        got += chunk
    raw.close()
    assert got.count(b"HTTP/1.1 200") == 21, got[:500]
    bodies = [part.split(b"\r\n\r\n", 1)[1][:2] for part in got.split(b"HTTP/1.1 200")[1:-1]]
    assert bodies == [b"%02d" % i for i in range(20)], bodies
    conn.close()
    assert g.alive()


def test_sdk_over_https(tls_gust, monkeypatch):
    g = tls_gust
    g.deploy(CAT)
    gsdk, _net = _sdk()
    monkeypatch.setenv("GUST_CA_FILE", g.tls.ca)
    monkeypatch.setenv("GUST_TOKEN", g.admin_token)
    f = gsdk.Function.from_name("tls", "cat", addr=g.addr)
    # cat hands back the pickled (args, kwargs) the SDK sent.
    for i in range(20):
        assert f.remote(i, k="v") == ((i,), {"k": "v"})
    assert f.spawn(5).get(timeout=60) == ((5,), {})
    assert list(f.map([1, 2, 3])) == [((1,),  {}), ((2,), {}), ((3,), {})]
    # Without the CA the SDK refuses the server.
    monkeypatch.delenv("GUST_CA_FILE")
    _net._local.conns = {}
    with pytest.raises(ssl.SSLCertVerificationError):
        f.remote(1)


def test_nonloopback_listen_needs_tls_or_insecure_listen(tmp_path, tls_files):
    exe = os.path.join(BUILD, "gustd")
    port = free_port()
    for listen in (f"0.0.0.0:{port}", f"[::]:{port}", f"10.1.2.3:{port}", f"gust.example:{port}"):
        p = subprocess.run([exe, "--data-dir", str(tmp_path / "d"), "--listen", listen], capture_output=True,
                           timeout=30, env=sanitizer_env())
        err = p.stderr.decode()
        assert p.returncode == 2, (listen, err)
        assert "--tls-cert" in err and "--insecure-listen" in err and "loopback" in err, err
    p = subprocess.run([exe, "--data-dir", str(tmp_path / "d"), "--tls-cert", tls_files.cert], capture_output=True,
                       timeout=30, env=sanitizer_env())
    assert p.returncode == 2 and "--tls-key" in p.stderr.decode(), p
    # A key that does not match the certificate is named.
    other = TlsFiles(tmp_path / "other")
    g = Gust(tmp_path, name="mismatch", extra_args=["--tls-cert", tls_files.cert, "--tls-key", other.key])
    with pytest.raises(AssertionError, match="does not match"):
        g.start(timeout=20)
    g.stop()


def test_insecure_listen_starts_and_warns(tmp_path):
    # Every address, plain HTTP; clients still reach it on 127.0.0.1.
    g = Gust(tmp_path, name="insecure", extra_args=["--insecure-listen"], listen_host="0.0.0.0")
    try:
        g.start()
        assert g.http("GET", "/v1/health").status == 200
        assert "--insecure-listen" in g.stderr_text() and "unencrypted" in g.stderr_text()
        g.restart()
        assert "unencrypted" in g.stderr_text(), "the warning is logged at every start"
    finally:
        g.stop()
    assert not g.check_after_stop()


def test_415_for_bodies_without_their_media_type(gust):
    g = gust
    spec = json.dumps(CAT)
    r = g.http("POST", "/v1/deploy", spec, {"Content-Type": "text/plain;charset=UTF-8"})
    assert r.status == 415, r
    e = r.error()
    assert e["code"] == "unsupported_media_type" and "application/json" in e["message"], e
    assert "application/toml" in e["message"] and "text/plain" in e["message"], e
    r = g.http("POST", "/v1/deploy", spec, auto_type=False)
    assert r.status == 415 and "none" in r.error()["message"], r
    r = g.http("POST", "/v1/deploy", spec, {"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 415, r
    # Parameters and case do not matter.
    r = g.http("POST", "/v1/deploy", spec, {"Content-Type": "Application/JSON; charset=utf-8"})
    assert r.status == 200, r
    # Call inputs are bytes (JSON inputs may say so); map inputs NDJSON; blobs bytes.
    for ct, want in (("application/octet-stream", 200), ("application/json", 200), ("text/plain", 415),
                     ("multipart/form-data; boundary=x", 415)):
        r = g.http("POST", "/v1/functions/tls/cat/call", b'"x"', {"Content-Type": ct})
        assert r.status == want, (ct, r)
    r = g.http("POST", "/v1/functions/tls/cat/spawn", b"x", {"Content-Type": "text/plain"})
    assert r.status == 415 and "application/octet-stream" in r.error()["message"], r
    r = g.http("POST", "/v1/functions/tls/cat/map", b'"a"\n', {"Content-Type": "text/plain"})
    assert r.status == 415 and "application/x-ndjson" in r.error()["message"], r
    r = g.http("PUT", "/v1/blobs/sha256:" + "0" * 64, b"x", {"Content-Type": "application/json"})
    assert r.status == 415, r
    r = g.http("PUT", "/v1/secrets/s", json.dumps({"env": {"A": "b"}}), {"Content-Type": "text/plain"})
    assert r.status == 415, r
    # No body, no type needed.
    assert g.http("POST", "/v1/apps/tls/stop", auto_type=False).status == 200
    # A chunked body counts as a body.
    conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=10)
    conn.request("POST", "/v1/deploy", body=iter([spec.encode()]),
                 headers={"Content-Type": "text/plain", "Authorization": f"Bearer {g.admin_token}"},
                 encode_chunked=True)
    r = conn.getresponse()
    assert r.status == 415, r.read()
    conn.close()


class _Recorder(http.server.BaseHTTPRequestHandler):
    """A stand-in for gustd that records each request's Authorization header and
    answers 401 (what gustd with auth says to a missing or wrong token)."""
    seen = []

    def do_GET(self):
        _Recorder.seen.append(self.headers.get("Authorization"))
        body = json.dumps({"error": {"code": "unauthorized", "message": "a valid API token is required"}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def recorder():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    _Recorder.seen = []
    yield srv
    srv.shutdown()
    srv.server_close()


def _gust_cli(args, env):
    e = sanitizer_env()
    e.pop("XDG_CONFIG_HOME", None)
    e.update(env)
    return subprocess.run([os.path.join(BUILD, "gust")] + args, capture_output=True, timeout=30, env=e)


def test_token_discovery_and_never_shown(recorder, tmp_path):
    addr = f"127.0.0.1:{recorder.server_address[1]}"
    home, xdg = tmp_path / "home", tmp_path / "xdg"
    (home / ".config" / "gust").mkdir(parents=True)
    (xdg / "gust").mkdir(parents=True)
    (home / ".config" / "gust" / "token").write_text("  tok-home-1234  \nsecond line\n")
    (xdg / "gust" / "token").write_text("tok-xdg-5678\n")
    cases = [
        (["--token", "tok-flag-0001"], {"GUST_TOKEN": "tok-env-9999", "HOME": str(home)}, "tok-flag-0001"),
        (["--token=tok-flag-0002"], {"HOME": str(home)}, "tok-flag-0002"),
        ([], {"GUST_TOKEN": "tok-env-9999", "HOME": str(home)}, "tok-env-9999"),
        ([], {"HOME": str(home)}, "tok-home-1234"),
        ([], {"HOME": str(home), "XDG_CONFIG_HOME": str(xdg)}, "tok-xdg-5678"),
        ([], {"HOME": str(tmp_path / "nohome")}, None),
    ]
    for args, env, want in cases:
        before = len(_Recorder.seen)
        p = _gust_cli(["--addr", addr] + args + ["health", "--json"], env)
        err = p.stderr.decode()
        assert p.returncode == 3, (args, env, err)
        assert _Recorder.seen[before:] == [f"Bearer {want}" if want else None], (args, _Recorder.seen)
        assert "GUST_TOKEN" in err and "admin.token" in err, err
        for secret in ("tok-flag", "tok-env", "tok-home", "tok-xdg"):
            assert secret not in err and secret not in p.stdout.decode(), err
    p = _gust_cli(["--addr", addr, "--token", "bad token", "health"], {"HOME": str(home)})
    assert p.returncode != 0 and "bad token" not in p.stderr.decode(), p


def test_sdk_sends_the_token(recorder, tmp_path, monkeypatch):
    gsdk, _net = _sdk()
    addr = f"http://127.0.0.1:{recorder.server_address[1]}"
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("GUST_TOKEN", "sdk-env-token")
    assert _net.request(addr, "GET", "/v1/health")[0] == 401
    (tmp_path / ".config" / "gust").mkdir(parents=True)
    (tmp_path / ".config" / "gust" / "token").write_text("sdk-file-token\n")
    monkeypatch.delenv("GUST_TOKEN")
    assert _net.request(addr, "GET", "/v1/health")[0] == 401
    assert _Recorder.seen[-2:] == ["Bearer sdk-env-token", "Bearer sdk-file-token"], _Recorder.seen
    with pytest.raises(gsdk.GustError) as ei:
        gsdk.Function.from_name("a", "f", addr=addr).spawn(1)
    assert "sdk-file-token" not in str(ei.value)


def test_deploy_py_hands_token_and_ca_to_python(tmp_path):
    # A stand-in SDK whose gust.cli reports what it was given.
    sdk = tmp_path / "sdk"
    (sdk / "gust").mkdir(parents=True)
    (sdk / "gust" / "__init__.py").write_text("")
    (sdk / "gust" / "cli.py").write_text(
        "import os, hashlib\n"
        "t = os.environ.get('GUST_TOKEN', '')\n"
        "print(os.environ.get('GUST_ADDR'), os.environ.get('GUST_CA_FILE'), hashlib.sha256(t.encode()).hexdigest())\n")
    app = tmp_path / "app.py"
    app.write_text("")
    p = _gust_cli(["--addr", "https://127.0.0.1:1", "--token", "py-token", "--ca-file", "/x/ca.pem", "deploy",
                   str(app)], {"GUST_SDK_DIR": str(sdk)})
    import hashlib
    out = p.stdout.decode().split()
    assert p.returncode == 0 and out == ["https://127.0.0.1:1", "/x/ca.pem",
                                         hashlib.sha256(b"py-token").hexdigest()], p
