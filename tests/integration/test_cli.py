"""The gust CLI: --help everywhere, --json output, exit codes."""
import json

from gustlib import free_port, fn_spec

COMMANDS = [["deploy"], ["call"], ["spawn"], ["result"], ["cancel"], ["map"], ["ls"], ["ps"], ["logs"],
            ["usage"], ["stop"], ["image"], ["image", "add"], ["health"]]


def test_help_for_every_command(gust):
    c = gust.cli("--help")
    assert c.rc == 0 and c.out.strip(), c
    for cmd in COMMANDS:
        assert cmd[0] in c.out, f"`gust --help` does not list {cmd[0]}"
        c2 = gust.cli(*cmd, "--help")
        assert c2.rc == 0, c2
        assert c2.out.strip() or c2.err.strip(), c2
    bad = gust.cli("no-such-command")
    assert bad.rc == 2, bad
    bad = gust.cli("call")  # missing argument
    assert bad.rc == 2, bad


def test_json_output_parses(gust):
    spec = fn_spec("cj", "cat", ["cat"], timeout=30, scaling={"scaledown_window": 30})
    r = gust.deploy(spec)
    assert r["app"] == "cj"
    gust.call_ok("cj", "cat", b"x")
    for cmd in (["health"], ["ls"], ["ps"], ["usage"]):
        c = gust.cli(*cmd, "--json")
        assert c.rc == 0, c
        c.json()
    ls = gust.cli("ls", "--json").json()
    fns = ls["functions"] if isinstance(ls, dict) else ls
    assert any(f["app"] == "cj" and f["name"] == "cat" for f in fns), ls
    ps = gust.cli("ps", "--json").json()
    cts = ps["containers"] if isinstance(ps, dict) else ps
    assert any(c["app"] == "cj" for c in cts), ps
    c = gust.cli("call", "cj.cat", "-d", "hi", "--json")
    assert c.rc == 0, c
    j = c.json()
    assert isinstance(j, dict) and "hi" in json.dumps(j), j
    c = gust.cli("spawn", "cj.cat", "-d", "later", "--json")
    assert c.rc == 0 and c.json()["call_id"].startswith("fc-"), c


def test_exit_codes(gust, tmp_path):
    spec = fn_spec("ce", "ok", ["cat"], timeout=30)
    spec["functions"] += fn_spec("ce", "bad", ["sh", "-c", "cat >/dev/null; exit 7"], timeout=30)["functions"]
    gust.deploy(spec)  # one app, both functions: a deploy is the app's whole set
    c = gust.cli("call", "ce.ok", "-d", "fine")
    assert c.rc == 0 and c.stdout == b"fine", c
    c = gust.cli("call", "ce.nope", "-d", "x")
    assert c.rc == 3, c
    assert c.err.strip(), "no message for an unknown function"
    c = gust.cli("call", "ce.bad", "-d", "x")
    assert c.rc == 1, c
    # A bad spec is an API error too.
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"app": "ce", "functions": [{"name": "x", "kind": "exec", "command": ["cat"], "bogus": 1}]}))
    c = gust.cli("deploy", str(p))
    assert c.rc == 3 and "bogus" in c.err, c
    # gustd unreachable.
    down = f"127.0.0.1:{free_port()}"
    for cmd in (["health"], ["ls"], ["call", "ce.ok", "-d", "x"]):
        c = gust.cli(*cmd, addr=down)
        assert c.rc == 4, c
    # result --wait that runs out: 5.
    gust.deploy(fn_spec("ce", "slow", ["sh", "-c", "cat >/dev/null; sleep 5; echo late"], timeout=30))
    cid = gust.spawn("ce", "slow", b"")
    c = gust.cli("result", cid, "--wait", "1")
    assert c.rc == 5, c
    assert gust.http("POST", f"/v1/calls/{cid}/cancel").status == 200
