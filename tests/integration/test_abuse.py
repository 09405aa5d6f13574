"""Connection abuse against a real gustd (issue 14, part 6): many idle connections meet the
connection cap with a clean 503 while calls keep working; a pipelined flood from a client
that reads nothing leaves gustd's memory bounded. Loopback only; bounded in count and time."""
import http.client
import json
import os
import resource
import selectors
import socket
import time

import pytest

from gustlib import fn_spec

CAT = fn_spec("ab", "cat", ["cat"], timeout=60, resources={"cpu": 250, "memory": 128},
              scaling={"max_containers": 1, "scaledown_window": 60})
IDLE = 10_000
CAP = 4096  # gustd's default --max-connections (API_MAX_CONNS_DEFAULT)


def _raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.fail(f"this test needs {need} open files; the hard RLIMIT_NOFILE is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return soft, hard


def _rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _persistent(gust):
    """A keep-alive connection, known to be accepted (one request answered on it)."""
    c = http.client.HTTPConnection("127.0.0.1", gust.port, timeout=60)
    c.request("GET", "/v1/health", headers={"Authorization": f"Bearer {gust.admin_token}"})
    r = c.getresponse()
    assert r.status == 200, r.status
    r.read()
    return c


def _collect_refusals(socks, quiet_s=1.5, deadline_s=30):
    """Reads every socket the server writes to or closes until quiet_s pass without any;
    returns {socket: bytes received before EOF/reset}."""
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    got, ended = {}, {}
    deadline = time.monotonic() + deadline_s
    last = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - last < quiet_s:
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            last = time.monotonic()
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                data = b""
            if data:
                got[s] = got.get(s, b"") + data
            else:
                sel.unregister(s)
                ended[s] = got.get(s, b"")
    sel.close()
    return ended


@pytest.mark.slow
def test_idle_connections_capped_and_calls_work(gust):
    old = _raise_nofile(IDLE + 512)
    gust.deploy(CAT)
    keep = _persistent(gust)
    socks = []
    try:
        t0 = time.monotonic()
        for _ in range(IDLE):
            socks.append(socket.create_connection(("127.0.0.1", gust.port), timeout=10))
            assert time.monotonic() - t0 < 60, "connecting took over 60 s"
        refused = _collect_refusals(socks)
        idle = len(socks) - len(refused)
        # The persistent connection holds one slot; the rest hold the others.
        assert idle == CAP - 1, (idle, len(refused))
        for data in refused.values():
            head, _, body = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503 "), data[:200]
            assert b"connection: close" in head.lower(), head
            e = json.loads(body)["error"]
            assert e["code"] == "too_many_connections" and e["limit"] == CAP, e
            assert str(CAP) in e["message"], e
        # Meanwhile: a container start and a call, on the connection held from before.
        keep.request("POST", "/v1/functions/ab/cat/call", body=b"still here",
                     headers={"Content-Type": "application/octet-stream",
                              "Authorization": f"Bearer {gust.admin_token}"})
        r = keep.getresponse()
        assert r.status == 200 and r.read() == b"still here", r.status
        assert gust.alive()
        # Still full: another newcomer is refused too.
        extra = socket.create_connection(("127.0.0.1", gust.port), timeout=10)
        extra.settimeout(10)
        assert extra.recv(65536).startswith(b"HTTP/1.1 503 ")
        extra.close()
    finally:
        for s in socks:
            s.close()
        keep.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, old)
    # Once the idle ones are gone, newcomers are served again.
    deadline = time.monotonic() + 20
    while True:
        try:
            if gust.http("GET", "/v1/health", timeout=5).status == 200:
                break
        except (OSError, http.client.HTTPException):
            pass
        assert time.monotonic() < deadline, "gustd does not serve new connections after the idle ones closed"
        time.sleep(0.1)
    assert "refusing new ones with 503" in gust.stderr_text()


@pytest.mark.slow
def test_pipelined_flood_from_non_reader_keeps_rss_bounded(gust_factory, monkeypatch):
    # ASan keeps freed memory in a quarantine (256 MiB by default), which would count every
    # request ever handled in RSS; a small one leaves what gustd actually holds on to.
    asan = os.environ.get("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    monkeypatch.setenv("ASAN_OPTIONS", asan + ":quarantine_size_mb=8")
    gust = gust_factory()
    for _ in range(50):  # warm up allocator and caches
        assert gust.http("GET", "/v1/health").status == 200
    before = _rss_kib(gust.proc.pid)
    # Authenticated, so each answer is a full health document (not a short 401).
    req = f"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {gust.admin_token}\r\n\r\n".encode()
    flood = req * 200_000
    s = socket.create_connection(("127.0.0.1", gust.port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    s.setblocking(False)
    sent = 0
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_WRITE)
    deadline = time.monotonic() + 5
    try:
        while sent < len(flood) and time.monotonic() < deadline:
            if not sel.select(timeout=0.2):
                continue
            try:
                sent += s.send(flood[sent:sent + (1 << 20)])
            except BlockingIOError:
                pass
        time.sleep(1)  # let gustd do whatever it will with what it read
        after = _rss_kib(gust.proc.pid)
        grew = (after - before) / 1024
        print(f"flood: sent {sent} of {len(flood)} bytes ({sent // len(req)} requests); "
              f"gustd RSS {before // 1024} -> {after // 1024} MiB (+{grew:.1f} MiB)")
        assert grew < 64, f"gustd grew by {grew:.1f} MiB under a pipelined flood"
        assert gust.alive()
        assert gust.http("GET", "/v1/health", timeout=10).status == 200
    finally:
        sel.close()
        s.close()
    assert gust.http("GET", "/v1/health", timeout=10).status == 200
