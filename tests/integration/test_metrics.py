"""Prometheus metrics: GET /metrics on the API (admin token), --metrics-listen (loopback,
no token), the text format, and a real Prometheus server scraping a gustd."""
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import urllib.parse

import pytest

from gustlib import fn_spec, free_port, wait_until

CAT = fn_spec("m", "cat", ["cat"], timeout=60, resources={"cpu": 250, "memory": 128},
              scaling={"max_containers": 2, "scaledown_window": 60})

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def parse(text):
    """The samples of a text exposition as {(name, frozenset(labels)): value}; checks
    that every sample's family has # HELP and # TYPE lines before it."""
    typed, samples = set(), {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels, value = m.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or family in typed, f"{name}: no # TYPE line before it"
        lab = {}
        if labels:
            consumed = "".join(x.group(0) for x in LABEL.finditer(labels))
            assert consumed == labels, f"bad labels in {line!r}"
            lab = {k: v.encode().decode("unicode_escape") for k, v in LABEL.findall(labels)}
        samples[(name, frozenset(lab.items()))] = float(value)
    return samples


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def get_metrics(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type"), r.read().decode()
    finally:
        conn.close()


def test_metrics_auth_format_and_counts(gust_factory):
    mport = free_port()
    g = gust_factory("--metrics-listen", f"127.0.0.1:{mport}")
    g.deploy(CAT)
    n = 5
    for i in range(n):
        assert g.call_ok("m", "cat", f"x{i}".encode()) == f"x{i}".encode()

    assert g.http("GET", "/metrics", token="").status == 401
    invoker = g.token_for("default", "invoker")
    r = g.http("GET", "/metrics", token=invoker)
    assert r.status == 403, r
    r = g.http("GET", "/metrics")
    assert r.status == 200, r
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    s = parse(r.body.decode())
    labels = {"app": "default/m", "function": "cat"}
    assert value(s, "gust_calls_total", outcome="success", **labels) == n
    assert value(s, "gust_calls_total", outcome="failure", **labels) == 0
    assert value(s, "gust_call_run_seconds_count", **labels) == n
    assert value(s, "gust_call_run_seconds_bucket", le="+Inf", **labels) == n
    assert value(s, "gust_call_queue_wait_seconds_count", **labels) == n
    # Buckets are cumulative.
    buckets = sorted((float(dict(k[1])["le"]), v) for k, v in s.items()
                     if k[0] == "gust_call_run_seconds_bucket" and dict(k[1])["function"] == "cat")
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)
    starts = value(s, "gust_cold_starts_total", **labels)
    assert starts >= 1
    assert value(s, "gust_cold_start_seconds_count", **labels) == starts
    ctrs = sum(value(s, "gust_containers", state=st, **labels) for st in ("starting", "busy", "idle", "stopping"))
    assert ctrs >= 1
    assert value(s, "gust_function_cpu_reserved_cores", **labels) == 0.25 * ctrs
    assert value(s, "gust_function_memory_reserved_bytes", **labels) == 128 * 1048576 * ctrs
    assert value(s, "gust_function_memory_used_bytes", **labels) > 0
    assert value(s, "gust_queue_depth", **labels) == 0
    assert value(s, "gust_store_size_bytes", file="db") > 0
    # The calls went through the call route; the invoker's 403 and the 401 are counted.
    assert value(s, "gust_http_requests_total", method="POST", route="/v1/functions/*/*/call", status="200") == n
    assert value(s, "gust_http_requests_total", method="GET", route="/metrics", status="403") == 1
    assert value(s, "gust_http_requests_total", method="GET", route="/metrics", status="401") == 1
    g.http("GET", "/nowhere/at/all")
    s = parse(g.http("GET", "/metrics").body.decode())
    assert value(s, "gust_http_requests_total", method="other", route="other", status="404") == 1

    # The metrics listener: no token, /metrics only.
    status, ctype, text = get_metrics(mport)
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    assert value(parse(text), "gust_calls_total", outcome="success", **labels) == n
    conn = http.client.HTTPConnection("127.0.0.1", mport, timeout=30)
    conn.request("GET", "/v1/apps")
    assert conn.getresponse().status == 404
    conn.close()


def test_metrics_listen_refuses_non_loopback(gust_factory):
    g = gust_factory("--metrics-listen", "0.0.0.0:9999", start=False)
    with pytest.raises(AssertionError, match="exited with 2"):
        g.start(timeout=10)
    assert "not a loopback address" in g.stderr_text()


PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


@pytest.mark.skipif(not os.access(PROMETHEUS, os.X_OK), reason="Debian's prometheus is not installed (make deps)")
def test_prometheus_scrapes_gustd(gust_factory, tmp_path):
    mport, pport = free_port(), free_port()
    g = gust_factory("--metrics-listen", f"127.0.0.1:{mport}")
    g.deploy(CAT)
    n = 3
    for i in range(n):
        g.call_ok("m", "cat", b"p")
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(json.dumps({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [{"job_name": "gust", "static_configs": [{"targets": [f"127.0.0.1:{mport}"]}]}],
    }))
    log = open(tmp_path / "prometheus.log", "wb")
    prom = subprocess.Popen([PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{pport}"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def query():
            q = urllib.parse.quote('gust_calls_total{app="default/m",function="cat",outcome="success"}')
            conn = http.client.HTTPConnection("127.0.0.1", pport, timeout=5)
            try:
                conn.request("GET", f"/api/v1/query?query={q}")
                r = conn.getresponse()
                if r.status != 200:
                    return None
                res = json.loads(r.read())["data"]["result"]
                return float(res[0]["value"][1]) if res else None
            except (ConnectionError, OSError):
                return None
            finally:
                conn.close()

        wait_until(lambda: prom.poll() is None and query() == n, 60, interval=0.5,
                   msg=f"prometheus to report {n} calls")
        g.call_ok("m", "cat", b"q")
        wait_until(lambda: query() == n + 1, 60, interval=0.5, msg="prometheus to see the next call")
    finally:
        os.killpg(prom.pid, signal.SIGTERM)
        try:
            prom.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(prom.pid, signal.SIGKILL)
            prom.wait()
        log.close()
