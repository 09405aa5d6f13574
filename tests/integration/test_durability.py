"""Durability across kill -9 and graceful stop on SIGTERM."""
import http.client
import os
import signal
import time

from gustlib import cgroup_mounts, fn_spec, wait_until

ONE_SEC = fn_spec("du", "sec", ["sh", "-c", "read x; sleep 1; echo done-$x"], timeout=30,
                  resources={"cpu": 100, "memory": 64}, scaling={"max_containers": 1, "scaledown_window": 30})


def _ct_cgroups(g):
    out = []
    for m in cgroup_mounts():
        top = os.path.join(m, g.cgparent)
        if os.path.isdir(top):
            out += [os.path.join(top, d) for d in os.listdir(top) if os.path.isdir(os.path.join(top, d))]
    return out


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def test_kill9_restart_completes_all_calls(gust_factory):
    g = gust_factory()
    g.deploy(ONE_SEC)
    ids = [g.spawn("du", "sec", f"{i}\n".encode()) for i in range(20)]
    wait_until(lambda: g.status(ids[1])["status"] in ("running", "succeeded"), 15, msg="the second call to start")
    cts = g.containers("du", "sec")
    pids = [c["pid"] for c in cts if c.get("pid")]
    assert pids, cts
    assert _ct_cgroups(g), "no container cgroups under the cgroup parent while a container runs"
    g.kill9()
    # The containers die with gustd.
    wait_until(lambda: not [p for p in pids if _alive(p)], 5, msg=f"container processes {pids} to die with gustd")
    g.start()
    # The restarted daemon removes what the killed one left.
    wait_until(lambda: not [d for d in _ct_cgroups(g) if not any(c["id"] in d for c in g.containers())], 10,
               msg="stale container cgroups to be removed")
    for i, cid in enumerate(ids):
        r = g.result(cid, wait=60)
        assert r.status == 200 and r.body == f"done-{i}\n".encode(), (i, cid, r)
    live = [c["id"] for c in g.containers()]
    with open("/proc/self/mountinfo") as f:
        stale = [ln for ln in f if g.data_dir in ln and not any(i in ln for i in live)]
    assert not stale, stale

def test_sigterm_graceful_stop(gust_factory):
    g = gust_factory()
    g.deploy(fn_spec("gs", "f", ["sh", "-c", "read x; sleep 2; echo done-$x"], timeout=30,
                     resources={"cpu": 100, "memory": 64}, scaling={"max_containers": 3, "scaledown_window": 30}))
    ids = [g.spawn("gs", "f", f"{i}\n".encode()) for i in range(5)]
    wait_until(lambda: g.function("gs", "f")["running"] >= 3, 15, msg="3 running calls")
    t0 = time.monotonic()
    g.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    # New work is refused while stopping (or the listener is already closed).
    try:
        r = g.call("gs", "f", b"late\n", timeout=5)
        assert r.status == 503 and r.error()["code"] == "shutting_down", r
    except (ConnectionError, http.client.HTTPException, OSError):
        pass
    rc = g.proc.wait(30)
    g.runs[-1].update(end="sigterm", rc=rc)
    assert rc == 0, f"gustd exited {rc} on SIGTERM:\n{g.stderr_tail()}"
    assert time.monotonic() - t0 < 15
    left = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        left = g.leftovers()
        if not left:
            break
        time.sleep(0.1)
    assert not left, left
    # Every call either finished before the stop or was kept and runs after a restart.
    g.start()
    for i, cid in enumerate(ids):
        r = g.result(cid, wait=60)
        assert r.status == 200 and r.body == f"done-{i}\n".encode(), (i, r)


def test_finished_results_survive_restart(gust_factory):
    """A finished spawned call is answered from the store after a restart: output bytes,
    failure details, status JSON; cancel of a finished call leaves it as it was."""
    g = gust_factory()
    g.deploy(fn_spec("fr", "f", ["sh", "-c", "read x; [ \"$x\" = bad ] && { echo no >&2; exit 3; }; printf 'out-%s' $x"],
                     timeout=30, resources={"cpu": 100, "memory": 64}))
    ok = g.spawn("fr", "f", b"good\n")
    bad = g.spawn("fr", "f", b"bad\n")
    assert g.result(ok, wait=30).status == 200
    assert g.result(bad, wait=30).status == 502
    g.restart()
    r = g.result(ok, wait=0)
    assert r.status == 200 and r.body == b"out-good", r
    r = g.result(bad, wait=0)
    assert r.status == 502 and r.error()["code"] == "exit_status" and "exit status 3" in r.error()["message"], r
    st = g.status(bad)
    assert st["status"] == "failed" and st["attempts"] == 1 and st["error"]["code"] == "exit_status", st
    r = g.http("POST", f"/v1/calls/{ok}/cancel")
    assert r.status == 200 and r.json()["status"] == "succeeded", r
