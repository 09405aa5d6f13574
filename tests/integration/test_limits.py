"""Per-function limits and failures: memory (OOM), timeout, exit status, crash, retries."""
import time

from gustlib import ECHO_CRASH, echo_fn, fn_spec

DD_100M = ["sh", "-c", "cat >/dev/null; exec dd if=/dev/zero of=/dev/null bs=100M count=1"]


def test_memory_limit_oom(gust):
    # Control: the same command fits in 256 MiB, so the failure below is the limit's doing.
    gust.deploy(fn_spec("lim", "roomy", DD_100M, timeout=30, resources={"cpu": 250, "memory": 256}))
    r = gust.call("lim", "roomy", b"")
    assert r.status == 200, r
    gust.deploy(fn_spec("lim", "oom", DD_100M, timeout=30, resources={"cpu": 250, "memory": 32}))
    r = gust.call("lim", "oom", b"")
    assert r.status == 502, r
    e = r.error()
    assert e["code"] == "oom", e
    j = r.json()
    assert j["status"] == "failed" and j["call_id"].startswith("fc-"), j
    st = gust.status(j["call_id"])
    assert st["status"] == "failed" and st["error"]["code"] == "oom", st
    # A shell growing a 100 MB string is stopped too.
    gust.deploy(fn_spec("lim", "oom2", ["sh", "-c", "cat >/dev/null; x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo ${#x}"],
                        timeout=60, resources={"cpu": 250, "memory": 32}))
    r = gust.call("lim", "oom2", b"")
    assert r.status == 502 and r.error()["code"] == "oom", r
    # The function still works for inputs that fit.
    gust.deploy(fn_spec("lim", "oom", ["sh", "-c", "cat >/dev/null; echo fine"], timeout=30,
                        resources={"cpu": 250, "memory": 32}))
    assert gust.call_ok("lim", "oom") == b"fine\n"


def test_memory_request_below_limit(gust):
    # [request, limit]: 32 MiB reserved, 256 MiB allowed, so the 100 MB buffer that is
    # OOM-killed at a plain 32 fits.
    gust.deploy(fn_spec("lim", "grow", DD_100M, timeout=30, resources={"cpu": 250, "memory": [32, 256]},
                        scaling={"scaledown_window": 30}))
    r = gust.call("lim", "grow", b"")
    assert r.status == 200, r
    [c] = gust.containers("lim", "grow")
    assert c["memory"] == 32 and c["memory_peak_bytes"] > 64 << 20, c


def test_timeout_then_next_call_works(gust):
    gust.deploy(fn_spec("lim", "slow", ["sh", "-c", 'read x; [ "$x" = slow ] && sleep 30; echo ok'], timeout=1,
                        resources={"cpu": 100, "memory": 64}, scaling={"max_containers": 1}))
    t0 = time.monotonic()
    r = gust.call("lim", "slow", b"slow\n")
    took = time.monotonic() - t0
    assert r.status == 504, r
    assert r.error()["code"] == "timeout"
    assert r.json()["status"] == "timed_out"
    assert 0.9 <= took < 8, took
    st = gust.status(r.json()["call_id"])
    assert st["status"] == "timed_out", st
    r = gust.call("lim", "slow", b"fast\n")
    assert r.status == 200 and r.body == b"ok\n", r


def test_nonzero_exit_has_stderr_tail(gust):
    gust.deploy(fn_spec("lim", "bad", ["sh", "-c", "cat >/dev/null; echo first-line >&2; echo oops-stderr-tail >&2; exit 3"],
                        timeout=30))
    r = gust.call("lim", "bad", b"x")
    assert r.status == 502, r
    e = r.error()
    assert e["code"] == "exit_status", e
    assert "oops-stderr-tail" in e["message"] and "3" in e["message"], e
    assert r.json()["status"] == "failed"
    c = gust.cli("call", "lim.bad", "-d", "x")
    assert c.rc == 1, c
    assert "oops-stderr-tail" in c.err, c


def test_runner_crash(gust_echo):
    gust = gust_echo
    gust.deploy(echo_fn("lim", "echo"))
    assert gust.call_ok("lim", "echo", b"before") == b"before"
    r = gust.call("lim", "echo", ECHO_CRASH)
    assert r.status == 502, r
    assert r.error()["code"] == "crashed", r
    # A new container takes the next input.
    assert gust.call_ok("lim", "echo", b"after") == b"after"


COUNTER = ["sh", "-c", "cat >/dev/null; n=$(cat /tmp/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /tmp/n; "
                       "if [ $n -ge 3 ]; then echo ok-$n; else echo attempt $n failed >&2; exit 1; fi"]


def test_retries_succeed_on_third_attempt(gust):
    gust.deploy(fn_spec("rt", "flaky", COUNTER, timeout=30,
                        retries={"max_retries": 2, "initial_delay": 0.1, "backoff_coefficient": 1.0},
                        scaling={"max_containers": 1, "scaledown_window": 60}))
    r = gust.call("rt", "flaky", b"x")
    assert r.status == 200 and r.body == b"ok-3\n", r
    st = gust.status(r.headers["gust-call-id"])
    assert st["attempts"] == 3 and st["status"] == "succeeded", st


def test_no_retries_fails(gust):
    gust.deploy(fn_spec("rt", "flaky0", COUNTER, timeout=30, retries=0,
                        scaling={"max_containers": 1, "scaledown_window": 60}))
    r = gust.call("rt", "flaky0", b"x")
    assert r.status == 502 and r.error()["code"] == "exit_status", r
    st = gust.status(r.json()["call_id"])
    assert st["attempts"] == 1 and st["status"] == "failed", st
