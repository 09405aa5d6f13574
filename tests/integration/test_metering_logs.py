"""Metering (GET /v1/usage, gust usage) and logs (gust logs, -f)."""
import time

from gustlib import echo_fn, fn_spec, read_until, wait_until


def _usage_fn(usage, app, fn):
    for a in usage["apps"]:
        if a["app"] == app:
            for f in a["functions"]:
                if f["function"] == fn:
                    return f
    return None


def _check_usage(f, calls):
    assert f["alive_s"] > 0 and f["busy_s"] > 0, f
    assert f["busy_s"] <= f["alive_s"] + 1e-6, f
    assert 0 < f["utilization"] <= 1, f
    assert f["cost"] > 0, f
    assert f["cpu_core_s"] > 0 and f["memory_gib_s"] > 0, f
    assert f["calls"] >= calls, f
    assert f["containers"] >= 1, f


def test_usage_after_calls(gust):
    gust.deploy(fn_spec("m", "work", ["sh", "-c", "cat >/dev/null; sleep 0.3; echo ok"], timeout=30,
                        resources={"cpu": 250, "memory": 128}, scaling={"scaledown_window": 2}))
    for _ in range(4):
        gust.call_ok("m", "work", b"")

    def ready():
        f = _usage_fn(gust.get_json("/v1/usage"), "m", "work")
        return f if f and f["busy_s"] >= 1.0 and f["calls"] >= 4 else None

    f = wait_until(ready, 10, 0.2, msg="usage of m.work")
    _check_usage(f, 4)
    assert f["gpu_s"] == 0 and f["gpu_utilization"] is None, f
    u = gust.get_json("/v1/usage")
    assert set(u["rates"]) >= {"cpu_core_s", "memory_gib_s", "gpu_s"}
    app = [a for a in u["apps"] if a["app"] == "m"][0]
    assert app["cost"] >= f["cost"] - 1e-12 and u["total_cost"] >= app["cost"] - 1e-12
    # CLI, JSON output.
    c = gust.cli("usage", "--json")
    assert c.rc == 0, c
    fc = _usage_fn(c.json(), "m", "work")
    assert fc is not None, c.out
    _check_usage(fc, 4)
    # Human output names the function.
    c = gust.cli("usage")
    assert c.rc == 0 and "work" in c.out, c
    # since= in the future: nothing used yet.
    u = gust.get_json(f"/v1/usage?since={int(time.time()) + 3600}")
    f2 = _usage_fn(u, "m", "work")
    assert f2 is None or f2["busy_s"] == 0, f2


def test_gpu_usage(gust_factory):
    g = gust_factory("--gpus", "H100:2")
    g.deploy(fn_spec("mg", "gpu", ["sh", "-c", "cat >/dev/null; sleep 0.5; echo ok"], timeout=30,
                     resources={"cpu": 100, "memory": 64, "gpu": "H100:1"}, scaling={"scaledown_window": 2}))
    for _ in range(2):
        g.call_ok("mg", "gpu", b"")

    def ready():
        f = _usage_fn(g.get_json("/v1/usage"), "mg", "gpu")
        return f if f and f["gpu_s"] and f["gpu_s"] > 0 and f["busy_s"] >= 0.9 else None

    f = wait_until(ready, 10, 0.2, msg="GPU usage")
    _check_usage(f, 2)
    assert f["gpu_utilization"] is not None and 0 < f["gpu_utilization"] <= 1, f
    assert f["gpu_s"] >= f["busy_s"] * 0.9, f


LOGGER = ["sh", "-c", "read x; echo out-line-$x; echo err-line-$x >&2; echo result-$x"]


def test_logs_show_output_lines(gust, echo_rootfs):
    gust.deploy(fn_spec("lg", "f", LOGGER, timeout=30))
    gust.call_ok("lg", "f", b"one\n")

    def got():
        c = gust.cli("logs", "lg.f")
        assert c.rc == 0, c
        return c.out if "err-line-one" in c.out else None

    wait_until(got, 10, 0.2, msg="stderr line in gust logs")
    r = gust.http("GET", "/v1/functions/lg/f/logs?tail=50")
    assert r.status == 200 and b"err-line-one" in r.body, r
    line = [x for x in r.text.splitlines() if "err-line-one" in x][0]
    assert " stderr " in line and " ct-" in line, line
    # stdout of a long-lived process (before it becomes the echo runner) is logged as stdout.
    gust.add_image("echo", echo_rootfs)
    gust.deploy(echo_fn("lg", "runner", command=["sh", "-c", "echo boot-stdout-line; echo boot-stderr-line >&2; exec /usr/local/bin/gust-echo"]))
    assert gust.call_ok("lg", "runner", b"hi") == b"hi"
    out = wait_until(lambda: (lambda o: o if "boot-stdout-line" in o and "boot-stderr-line" in o else None)(
        gust.http("GET", "/v1/functions/lg/runner/logs").text), 10, 0.2, msg="runner stdout/stderr lines in logs")
    so = [x for x in out.splitlines() if "boot-stdout-line" in x][0]
    assert " stdout " in so, so
    c = gust.cli("logs", "lg.runner")
    assert c.rc == 0 and "boot-stdout-line" in c.out, c


def test_logs_follow_streams_new_lines(gust):
    gust.deploy(fn_spec("lg", "f", LOGGER, timeout=30))
    gust.call_ok("lg", "f", b"early\n")
    p = gust.cli_popen("logs", "lg.f", "-f")
    try:
        gust.call_ok("lg", "f", b"streamed\n")
        buf = read_until(p, b"err-line-streamed", 10)
        assert b"err-line-streamed" in buf, (buf[-500:], p.poll())
        assert p.poll() is None, "gust logs -f exited"
    finally:
        p.terminate()
        p.wait(5)
