"""What `gust run` shows: the app's remote stdout and stderr as it happens, each line
prefixed with its function (and the call when several run at once), nothing lost before
the follower connected or right before the entrypoint returned; image builds quiet by
default and in full with -v, a failing step's command and output always. Under it, the
route GET /v1/apps/{app}/logs: numbered lines, since/tail/follow, and a slow reader that
gets {"more": true} instead of making gustd buffer without bound."""
import json
import os
import re
import socket
import time

from gustlib import fn_spec, read_until, wait_until

RUN_APP = '''
import glob, sys, time
import gust

app = gust.App("runout")


@app.function()
def say(x):
    print(f"out-line {x}")
    print(f"err-line {x}", file=sys.stderr)
    return x * 2


@app.function(max_containers=1)
@gust.concurrent(max_inputs=2)
def pair(tag):
    # Both inputs run in the one container, in threads: each waits for the other, so
    # each prints while two calls of pair are running.
    open(f"/tmp/started-{tag}", "w").close()
    deadline = time.time() + 30
    while len(glob.glob("/tmp/started-*")) < 2 and time.time() < deadline:
        time.sleep(0.02)
    print(f"pair {tag} together")
    return tag


@app.function()
def slow():
    print("before the pause")
    time.sleep(4)
    return "slept"


@app.function()
def last():
    for i in range(300):
        print(f"burst {i}")
    print("the last words")
    return "done"


@app.local_entrypoint()
def main():
    print("say ->", say.remote(21))
    a, b = pair.spawn("a"), pair.spawn("b")
    print("pair calls", a.object_id, b.object_id)
    print("pair ->", a.get(timeout=60), b.get(timeout=60))
    print("slow ->", slow.remote())
    print("last ->", last.remote())
'''


def test_run_shows_remote_output(shared_gust, tmp_path):
    g = shared_gust
    (tmp_path / "runout.py").write_text(RUN_APP)
    p = g.cli_popen("run", str(tmp_path / "runout.py"))
    try:
        # As it happens: slow's line shows while slow still sleeps, before its result.
        early = read_until(p, b"[slow] before the pause", 600)
        assert b"[slow] before the pause" in early, early[-2000:]
        assert b"slow ->" not in early, early[-2000:]
        rest, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    out, err = (early + rest).decode(), err.decode()
    assert p.returncode == 0, (out, err[-3000:])
    lines = out.splitlines()
    # stdout lines on stdout, stderr lines on stderr, prefixed with the function.
    assert "[say] out-line 21" in lines and "[say] err-line 21" not in out, out
    assert "[say] err-line 21" in err.splitlines(), err[-3000:]
    assert "say -> 42" in lines and "pair -> a b" in lines and "slow -> slept" in lines, out
    # Two calls running at once: each line names its call.
    ids = re.search(r"^pair calls (fc-\S+) (fc-\S+)$", out, re.M)
    assert ids, out
    for tag, cid in zip("ab", ids.groups()):
        assert f"[pair {cid[:9]}] pair {tag} together" in lines, (cid, out)
    # Nothing lost at the end: every line of the last call, its last one included.
    assert "[last] the last words" in lines and "last -> done" in lines, out[-2000:]
    assert [x for x in lines if x.startswith("[last] burst ")] == [f"[last] burst {i}" for i in range(300)]
    # Each remote line shows once.
    assert lines.count("[say] out-line 21") == 1 and lines.count("[last] the last words") == 1, out


def build_app(nonce, fail=False):
    one = f"for i in $(seq 1 40); do echo one-{nonce}-$i; done"
    two = f"echo oops-{nonce}; echo on-stderr-{nonce} >&2; exit 3" if fail else f"echo two-{nonce}"
    return f'''
import gust

app = gust.App("buildout")


@app.function(image=gust.Image.debian_slim().run_commands({one!r}))
def first():
    return 1


@app.function(image=gust.Image.debian_slim().run_commands({two!r}))
def second():
    return 2


@app.local_entrypoint()
def main():
    print(first.remote(), second.remote())
'''


def test_build_output_quiet_by_default_full_with_v(shared_gust, tmp_path):
    g = shared_gust
    app = tmp_path / "buildout.py"
    nonce = os.urandom(4).hex()
    app.write_text(build_app(nonce))
    r = g.cli("deploy", str(app), timeout=900)
    assert r.rc == 0, r
    # Both images built, each line labelled with its function; the steps' output hidden.
    assert "first: [1/1] RUN" in r.err and "second: [1/1] RUN" in r.err, r.err
    assert f"one-{nonce}-7" not in r.err, r.err
    done = [x for x in r.err.splitlines() if x.startswith("first:   done in ")]
    hidden = re.search(r", (\d+) output lines \(-v shows them\)", done[0] if done else "")
    assert hidden and int(hidden.group(1)) >= 40, r.err  # the 40 echoes (and what the step says of itself)
    for line in r.err.splitlines():
        assert line.startswith(("first: ", "second: ")), line
    # -v: every line, labelled.
    nonce = os.urandom(4).hex()
    app.write_text(build_app(nonce))
    r = g.cli("run", "-v", str(app), timeout=900)
    assert r.rc == 0 and r.out == "1 2\n", r
    assert f"first:   | one-{nonce}-7" in r.err and f"second:   | two-{nonce}" in r.err, r.err
    # The C CLI's own builds: quiet by default too.
    spec = tmp_path / "img.json"
    spec.write_text(json.dumps({"base": "busybox", "steps": [{"run": f"printf 'c-out-%s\\n' {nonce}"}]}))
    r = g.cli("image", "build", str(spec))
    assert r.rc == 0 and f"c-out-{nonce}" not in r.err and re.search(r"done in .* output lines? \(-v", r.err), r
    spec.write_text(json.dumps({"base": "busybox", "steps": [{"run": f"printf 'c-out-v-%s\\n' {nonce}"}]}))
    r = g.cli("image", "build", "-v", str(spec))
    assert r.rc == 0 and f"| c-out-v-{nonce}" in r.err, r


def test_failing_build_shows_command_and_output(shared_gust, tmp_path):
    g = shared_gust
    app = tmp_path / "buildout.py"
    nonce = os.urandom(4).hex()
    app.write_text(build_app(nonce, fail=True))
    r = g.cli("run", str(app), timeout=900)
    assert r.rc == 1 and r.out == "", r
    assert "error: second: " in r.err and "exited with status 3" in r.err, r.err
    assert f"  command: echo oops-{nonce}; echo on-stderr-{nonce} >&2; exit 3" in r.err, r.err
    assert "  exit status: 3" in r.err, r.err
    tail = r.err.split("  last output:", 1)[1]
    assert f"oops-{nonce}" in tail and f"on-stderr-{nonce}" in tail, r.err


# ---- the route

def app_logs(g, app, query=""):
    r = g.http("GET", f"/v1/apps/{app}/logs{query}")
    assert r.status == 200 and r.headers["content-type"].startswith("application/x-ndjson"), r
    return [json.loads(x) for x in r.text.splitlines() if x.strip()]


STDERR_LINE = ["sh", "-c", "read x; echo line-of-$x >&2; echo result"]


def test_app_logs_route(gust):
    spec = {"app": "al", "functions": [{"name": "f", "kind": "exec", "command": STDERR_LINE},
                                       {"name": "g", "kind": "exec", "command": STDERR_LINE}]}
    assert gust.deploy(spec)["log_seq"] == 0
    gust.call_ok("al", "f", b"one\n")
    gust.call_ok("al", "g", b"two\n")
    gust.call_ok("al", "f", b"three\n")
    got = wait_until(lambda: (lambda ls: ls if len(ls) == 3 else None)(app_logs(gust, "al")), 10, 0.1,
                     msg="three lines of app al")
    assert [(x["seq"], x["function"], x["line"], x["stream"]) for x in got] == [
        (1, "f", "line-of-one", "stderr"), (2, "g", "line-of-two", "stderr"), (3, "f", "line-of-three", "stderr")]
    assert all(x["container"].startswith("ct-") and x["concurrent"] is False and "call_id" in x for x in got), got
    assert [x["seq"] for x in app_logs(gust, "al", "?since=1")] == [2, 3]
    assert [x["seq"] for x in app_logs(gust, "al", "?tail=1")] == [3]
    assert app_logs(gust, "al", "?since=3") == []
    # A deploy says where the new version's output starts.
    assert gust.deploy(spec)["log_seq"] == 3
    for q in ("?since=-1", "?since=x", "?tail=-2"):
        r = gust.http("GET", "/v1/apps/al/logs" + q)
        assert r.status == 400 and r.error()["code"] == "invalid_argument", (q, r)
    r = gust.http("GET", "/v1/apps/nope/logs")
    assert r.status == 404, r
    # Another workspace's app is not found; an invoker may not read logs.
    other = gust.token_for("team-b", "developer")
    r = gust.http("GET", "/v1/apps/al/logs", token=other)
    assert r.status == 404 and r.error()["code"] == "not_found", r
    inv = gust.token_for("default", "invoker")
    assert gust.http("GET", "/v1/apps/al/logs", token=inv).status == 403
    # Following: new lines come on the open stream, from the seq asked for.
    s = raw_get(gust, "/v1/apps/al/logs?follow=1&since=2")
    try:
        gust.call_ok("al", "g", b"four\n")
        body = read_stream(s, lambda b: b"line-of-four" in b, 10)
    finally:
        s.close()
    lines = [json.loads(x) for x in body.split(b"\n") if x.startswith(b"{")]
    assert [x["line"] for x in lines] == ["line-of-three", "line-of-four"], body


def raw_get(g, path, rcvbuf=None):
    """A GET on a raw socket (its receive buffer small when rcvbuf is given), the
    response left unread."""
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", g.port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {g.admin_token}\r\n\r\n".encode())
    return s


def read_stream(s, done, timeout):
    """Reads a chunked response until done(body so far) or its end; returns the body."""
    buf = b""
    deadline = time.monotonic() + timeout
    s.settimeout(0.5)
    while not done(buf) and not buf.endswith(b"\r\n0\r\n\r\n") and time.monotonic() < deadline:
        try:
            chunk = s.recv(1 << 20)
        except socket.timeout:
            continue
        if not chunk:
            break
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    out, rest = b"", body
    while rest:
        size, _, rest = rest.partition(b"\r\n")
        n = int(size, 16) if size else 0
        if n == 0:
            break
        out, rest = out + rest[:n], rest[n + 2:]
    return out


LINES, PAD = 8000, 1000


def test_app_logs_slow_reader_gets_more_not_buffering(gust):
    # ~9 MB of log lines against a follower that reads nothing: the socket buffers take a
    # few MB, then gustd ends the stream with {"more": true} instead of holding the rest.
    loud = ["sh", "-c", f"read x; pad=$(printf '%0{PAD}d' 0); i=1; "
                        f"while [ $i -le {LINES} ]; do echo \"$i $pad\" >&2; i=$((i+1)); done; echo ok"]
    gust.deploy(fn_spec("loud", "f", loud, timeout=120))
    s = raw_get(gust, "/v1/apps/loud/logs?follow=1&since=0", rcvbuf=4096)
    try:
        gust.call_ok("loud", "f", b"go\n")
        time.sleep(1)
        body = read_stream(s, lambda b: False, 60)
    finally:
        s.close()
    lines = [json.loads(x) for x in body.split(b"\n") if x.strip()]
    assert lines[-1] == {"more": True}, lines[-1]
    seen = [x["seq"] for x in lines[:-1]]
    assert seen == list(range(1, len(seen) + 1)) and len(seen) < LINES, len(seen)
    # Nothing is lost: asking again from the last seq gives the rest, in order.
    while True:
        page = app_logs(gust, "loud", f"?since={seen[-1]}")
        more = page and page[-1] == {"more": True}
        got = [x["seq"] for x in page if "seq" in x]
        assert got == list(range(seen[-1] + 1, seen[-1] + 1 + len(got))), got[:5]
        seen += got
        if not more:
            break
    assert seen == list(range(1, LINES + 1)), len(seen)
