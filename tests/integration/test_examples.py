"""The Python examples (examples/python/*.py), each run with `gust run` against a real
gustd as a user would, checking what they print and what gustd recorded."""
import hashlib
import json
import os
import re
import subprocess

from gustlib import BUILD, sanitizer_env, wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EX = os.path.join(REPO, "examples", "python")


def run_example(g, name, env=None, timeout=900):
    r = g.cli("run", os.path.join(EX, name), timeout=timeout, env=env)
    assert r.rc == 0, r
    return r


def remote_lines(r, fn):
    """What gust run showed of fn's output ("[fn] text", "[fn fc-…] text"): the texts."""
    return [m.group(1) for m in re.finditer(rf"^\[{fn}(?: fc-\w+)?\] (.*)$", r.out, re.M)]


def local_out(r):
    """stdout without the lines gust run showed of the remote functions."""
    return "".join(x for x in r.out.splitlines(True) if not re.match(r"\[[\w.-]+(?: fc-\w+)?\] ", x))


def test_hello_world(shared_gust):
    r = run_example(shared_gust, "hello.py")
    assert local_out(r) == "hello, world!\nhello, ada!\nhello, grace!\n", r
    assert sorted(remote_lines(r, "hello")) == [f"saying hello to {n}" for n in ("ada", "grace", "world")], r
    logs = shared_gust.http("GET", "/v1/functions/hello/hello/logs").body.decode()
    assert "saying hello to world" in logs and "saying hello to grace" in logs, logs
    apps = {a["name"]: a["state"] for a in shared_gust.get_json("/v1/apps")["apps"]}
    assert apps["hello"] == "stopped", apps                             # gust run tears the app down


def test_app_of_several_files_with_templates(shared_gust):
    r = run_example(shared_gust, "project/app.py")
    assert r.out == "HELLO, ADA!\n", r


def test_generators_and_async(shared_gust):
    r = run_example(shared_gust, "generators.py")
    assert local_out(r) == "3\n2\n1\nliftoff\nSTREAMED AS THEY ARE PRODUCED\n[9, 10]\n[0, 1, 4, 9]\n", r
    assert "t-minus 1" in remote_lines(r, "countdown"), r
    logs = shared_gust.http("GET", "/v1/functions/generators/countdown/logs").body.decode()
    assert re.search(r" fc-\w+ stdout t-minus 1$", logs, re.M), logs


def collatz(n):
    s = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        s += 1
    return s


def test_fanout_map_over_1000_inputs(shared_gust):
    r = run_example(shared_gust, "fanout.py", env={"GUST_PROGRESS": "1"})
    steps = [collatz(n) for n in range(1, 1001)]
    best = max(range(1000), key=lambda i: steps[i])
    assert r.out == f"1000 results; longest chain below 1001 starts at {best + 1} ({steps[best]} steps)\n", r
    assert "collatz_steps.map: 1000/1000 done" in r.err, r.err[-2000:]   # map progress on stderr
    # It fanned out: more than one container served the map.
    def containers():
        used = [f["containers"] for a in shared_gust.get_json("/v1/usage")["apps"] if a["app"] == "fanout"
                for f in a["functions"] if f["function"] == "collatz_steps"]
        return used[0] if used else 0
    wait_until(lambda: containers() > 1, 30, msg="more than one container recorded for the map")


def test_torch_model_class(shared_gust):
    r = run_example(shared_gust, "model.py", timeout=1800)
    lines = r.out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("model: "), r
    info = eval(lines[0][len("model: "):], {})                          # a dict literal printed by the example
    assert info["torch"].startswith("1.13"), info                       # Debian bookworm's python3-torch
    assert abs(info["weight"] - 3) < 0.01 and abs(info["bias"] - 2) < 0.01, info
    pred = eval(lines[1].split(": ", 1)[1], {})
    assert all(abs(p - w) < 0.02 for p, w in zip(pred, [2.0, 5.0, 8.0])) and len(pred) == 3, pred


def test_torch_weights_in_a_volume(shared_gust):
    """Issue 18's example: one function writes a torch model into a volume, a class in
    another container serves predictions from it; nothing is downloaded at run time."""
    r = run_example(shared_gust, "model_volume.py", timeout=1800)
    lines = r.out.splitlines()
    assert len(lines) == 3 and lines[0].startswith("trained: "), r
    info = eval(lines[0][len("trained: "):], {})
    assert info["torch"].startswith("1.13"), info                       # Debian bookworm's python3-torch
    assert abs(info["weight"] - 3) < 0.01 and abs(info["bias"] - 2) < 0.01, info
    pred = eval(lines[1].split(": ", 1)[1], {})
    assert len(pred) == 3 and all(abs(p - w) < 0.02 for p, w in zip(pred, [2.0, 5.0, 8.0])), pred
    assert lines[2] == "volume: ['linear.pt']", r
    # The weights are the volume's committed version, readable from the host too.
    got = shared_gust.cli("volume", "ls", "torch-weights")
    assert got.rc == 0 and "linear.pt" in got.out, got


def test_failing_job_is_retried(shared_gust):
    r = run_example(shared_gust, "retry.py")
    assert remote_lines(r, "flaky_job") == ["job nightly: attempt 1 fails", "job nightly: attempt 2 fails"], r
    assert local_out(r) == ("job nightly succeeded on attempt 3\n"
                     "always_fails gave up after its retry: ValueError: this job cannot succeed\n"), r
    logs = shared_gust.http("GET", "/v1/functions/retry-job/flaky_job/logs").body.decode()
    assert "attempt 1 fails" in logs and "attempt 2 fails" in logs, logs


def test_secret_read_from_env(shared_gust):
    token = "tok-" + os.urandom(8).hex()
    want = {"api_base": "https://weather.invalid/v1", "token_sha256": hashlib.sha256(token.encode()).hexdigest()[:12],
            "token_length": len(token)}
    # From this shell's environment (Secret.from_local_environ).
    r = run_example(shared_gust, "secret.py", env={"API_TOKEN": token})
    assert eval(r.out, {}) == want, r
    # gust run does not keep an ephemeral app's inline secrets.
    names = [s["name"] for s in shared_gust.get_json("/v1/secrets")["secrets"]]
    assert not [n for n in names if n.startswith("inline.secret-demo.")], names
    # Stored by name with the CLI (the value from the environment, not argv), then used.
    stored = "st-" + os.urandom(8).hex()
    c = shared_gust.cli("secret", "create", "weather-api", "API_TOKEN", env={"API_TOKEN": stored})
    assert c.rc == 0 and "created secret weather-api" in c.out and stored not in c.out, c
    e = sanitizer_env()  # this time without API_TOKEN: the example uses Secret.from_name
    e.pop("API_TOKEN", None)
    e["GUST_ADDR"] = shared_gust.addr
    e["GUST_TOKEN"] = shared_gust.admin_token
    p = subprocess.run([os.path.join(BUILD, "gust"), "--addr", shared_gust.addr, "run",
                        os.path.join(EX, "secret.py")], capture_output=True, timeout=900, env=e)
    assert p.returncode == 0, p
    got = eval(p.stdout.decode(), {})
    assert got["token_sha256"] == hashlib.sha256(stored.encode()).hexdigest()[:12], got
    # Values appear nowhere gustd shows or logs.
    ls = shared_gust.cli("secret", "ls")
    assert ls.rc == 0 and "weather-api" in ls.out and "API_TOKEN" in ls.out, ls
    listing = json.dumps(shared_gust.get_json("/v1/secrets"))
    fn = json.dumps(shared_gust.get_json("/v1/functions/secret-demo/fetch_config"))
    log = shared_gust.stderr_text()
    for text in (ls.out, listing, fn, log):
        assert token not in text and stored not in text
    # gustd's log names objects with their workspace.
    assert re.search(r"secret default/weather-api created", log), log[-2000:]


def test_spawn_gather_from_id_and_spawn_map(shared_gust):
    r = run_example(shared_gust, "gather.py")
    assert r.out == ("foofoo\n['bar', 4]\ngather raised: custom error\nfrom_id: True\n"
                     "spawn_map: 3 inputs -> [1, 2, 3]\n"), r


def test_class_parameters(shared_gust):
    r = run_example(shared_gust, "parameters.py")
    assert local_out(r) == ("small: [9, 1]\nbig: [9, 2500]\nseparate containers: True\n"
                            "same set, same containers: True\n"), r
    # The big set's container loaded its table with its parameters, once.
    fns = [f["name"] for f in shared_gust.get_json("/v1/functions")["functions"] if f["app"] == "params-demo"]
    logs = "".join(shared_gust.http("GET", f"/v1/functions/params-demo/{f}/logs").body.decode() for f in fns)
    assert logs.count("loading big squares table of size 100") == 1, logs
    assert logs.count("loading squares table of size 4") == 1, logs


def test_with_options(shared_gust):
    r = run_example(shared_gust, "with_options.py")
    lines = r.out.splitlines()
    assert lines[0] == "base: default" and lines[2] == "timeout=1 stopped the call", r
    assert re.fullmatch(r"with_options: big as work-v[0-9a-f]{10}", lines[1]), r
    spec = shared_gust.get_json(f"/v1/functions/options-demo/{lines[1].rsplit(' ', 1)[1]}")["spec"]
    assert spec["resources"]["memory"] == 512 and spec["env"]["MODE"] == "big", spec


def test_exit_hook_runs_when_the_app_stops(shared_gust):
    r = run_example(shared_gust, "lifecycle.py")
    assert local_out(r) == "items so far: 1\nitems so far: 2\nitems so far: 3\n", r

    def logs():
        return shared_gust.http("GET", "/v1/functions/lifecycle-demo/Counter/logs").body.decode()
    wait_until(lambda: "container stopping after 3 items: a, b, c" in logs(), 30, msg="the exit hook's output")


def test_batched(shared_gust):
    r = run_example(shared_gust, "batched.py")
    assert local_out(r) == ("products: " + str([i * 10 for i in range(16)]) + "\nbatched: True\nmap: 2450\n"
                            "embed: [1, 2, 3]\n"), r
