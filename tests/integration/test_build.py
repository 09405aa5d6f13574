"""Image builds through a real gustd: steps in sandboxes and on manifests, the step
cache (hits, misses, prefix reuse, --force-build), concurrent builds of one step,
failing steps, from_oci, gc safety, and debian_slim with apt_install and pip_install
from a local wheel directory."""
import json
import os
import threading
import zipfile

from gustlib import fn_spec
from test_oci import layers, oci_layout

SH = ["/bin/sh", "-c"]


def wire(g, definition, context=None):
    """The definition as gustd takes it: its host paths (relative to context) uploaded
    as trees, as the CLI and the SDK do; gustd never opens a host path a client names."""
    d = json.loads(json.dumps(definition))

    def up(p):
        return g.upload_tree(p if os.path.isabs(p) else os.path.join(context, p))
    if isinstance(d.get("from_oci"), str):
        d["from_oci"] = up(d["from_oci"])
    for s in d.get("steps", []):
        if isinstance(s.get("copy"), str):
            p = s["copy"]
            full = p if os.path.isabs(p) else os.path.join(context, p)
            s["copy"] = {"src": os.path.relpath(full, context or "/"), "tree": up(p), "file": os.path.isfile(full)}
        if isinstance(s.get("find_links"), str):
            s["find_links"] = up(s["find_links"])
    return d


def build(g, definition, name=None, force=False, context=None, expect=200):
    """Uploads the definition's host paths, then POST /v1/images/build; returns the
    list of NDJSON events."""
    q = []
    if name:
        q.append(f"name={name}")
    if force:
        q.append("force_build=1")
    r = g.http("POST", "/v1/images/build" + ("?" + "&".join(q) if q else ""), json.dumps(wire(g, definition, context)),
               {"Content-Type": "application/json"}, timeout=600)
    assert r.status == expect, r
    if expect != 200:
        return r
    return [json.loads(line) for line in r.body.decode().splitlines() if line.strip()]


def final(events):
    assert events and events[-1]["event"] in ("done", "error"), events
    return events[-1]


def ran(events):
    """Indices of the steps that ran (not from the cache)."""
    return sorted(e["index"] for e in events if e["event"] == "step_run")


def logs(events, index):
    return [e["line"] for e in events if e["event"] == "log" and e["index"] == index]


def test_busybox_steps_cache_and_function(gust, tmp_path):
    ctx = tmp_path / "ctx"
    (ctx / "app").mkdir(parents=True)
    (ctx / "app" / "main.txt").write_text("version one\n")
    (ctx / "note.txt").write_text("a note\n")
    d = {"base": "busybox", "steps": [
        {"run": ["echo built > /built.txt", "mkdir -p /data && chown 1000:1000 /data"]},
        {"env": {"GREETING": "hello", "PATH": "/usr/local/bin:/usr/bin:/bin"}},
        {"copy": "app", "to": "/srv/app"},
        {"copy": "note.txt", "to": "/srv/"},
        {"workdir": "/srv/app"},
        {"run": "echo $GREETING from $(pwd) > /srv/greeting; stat -c '%u:%g' /data /built.txt"},
    ]}
    ev = build(gust, d, name="bb1", context=str(ctx))
    fin = final(ev)
    assert fin["event"] == "done", fin
    assert ran(ev) == [1, 2, 3, 4, 5, 6] and fin["steps_run"] == 6, ev
    # Ownership made by the namespaced root comes back as the ids it wrote.
    assert logs(ev, 6)[-2:] == ["1000:1000", "0:0"], logs(ev, 6)
    steps = [e for e in ev if e["event"] == "step"]
    assert [s["index"] for s in steps] == [0, 1, 2, 3, 4, 5, 6] and steps[0]["step"] == "FROM busybox"

    # Fully cached: nothing runs, same id.
    ev2 = build(gust, d, name="bb1", context=str(ctx))
    assert ran(ev2) == [] and final(ev2)["image_id"] == fin["image_id"], ev2

    # Change a copied file: the steps before the copy stay cached.
    (ctx / "app" / "main.txt").write_text("version two\n")
    ev3 = build(gust, d, name="bb1", context=str(ctx))
    assert ran(ev3) == [3, 4, 5, 6], ev3
    assert final(ev3)["image_id"] != fin["image_id"]

    # Change the env step: only from there on.
    d2 = json.loads(json.dumps(d))
    d2["steps"][1]["env"]["GREETING"] = "bonjour"
    ev4 = build(gust, d2, context=str(ctx))
    assert ran(ev4) == [2, 3, 4, 5, 6], ev4

    # --force-build runs everything again.
    ev5 = build(gust, d, force=True, context=str(ctx))
    assert ran(ev5) == [1, 2, 3, 4, 5, 6], ev5

    # The built image carries env and workdir into functions; files are there.
    gust.deploy(fn_spec("img", "show", SH + ["cat main.txt /srv/note.txt /srv/greeting /built.txt; echo $GREETING"],
                        image="bb1", timeout=30))
    out = gust.call_ok("img", "show").decode()
    assert out == "version two\na note\nhello from /srv/app\nbuilt\nhello\n", out
    insp = gust.get_json("/v1/images/bb1")
    assert insp["id"] == final(ev3)["image_id"] and insp["config"]["workdir"] == "/srv/app"


def test_inline_image_in_a_deploy_with_the_cli(gust, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "prog.sh").write_text("echo inline $MODE\n")
    spec = tmp_path / "app.toml"
    spec.write_text("""
app = "inl"
[[functions]]
name = "go"
kind = "exec"
command = ["/bin/sh", "/opt/prog.sh"]
env = { MODE = "from-function" }
[functions.image]
base = "busybox"
[[functions.image.steps]]
copy = "src/prog.sh"
to = "/opt/prog.sh"
[[functions.image.steps]]
env = { MODE = "from-image", OTHER = "kept" }
""")
    # gustd reads no host path: neither the old context parameter nor a copy path.
    r = gust.http("POST", f"/v1/deploy?context={tmp_path}", spec.read_bytes(), {"Content-Type": "application/toml"})
    assert r.status == 400 and r.error()["field"] == "context", r
    r = gust.http("POST", "/v1/deploy", spec.read_bytes(), {"Content-Type": "application/toml"})
    assert r.status == 400 and r.error()["field"] == "functions[0].image.steps[0].copy", r
    assert "upload" in r.error()["message"], r
    # Without building, the API says what to do.
    wired = {"app": "inl", "functions": [{"name": "go", "kind": "exec", "command": ["/bin/sh", "/opt/prog.sh"],
                                          "image": wire(gust, {"base": "busybox", "steps": [
                                              {"copy": "src/prog.sh", "to": "/opt/prog.sh"}]}, str(tmp_path))}]}
    r = gust.http("POST", "/v1/deploy", json.dumps(wired), {"Content-Type": "application/json"})
    assert r.status == 409 and r.error()["code"] == "image_not_built", r
    assert r.error()["field"] == "functions[0].image" and "build=1" in r.error()["message"]
    res = gust.cli("deploy", str(spec))
    assert res.rc == 0, res
    assert "[0/2] FROM busybox" in res.err and "[1/2] COPY" in res.err and "deployed app inl" in res.out, res
    # The function's env wins over the image's.
    assert gust.call_ok("inl", "go") == b"inline from-function\n"
    fn = gust.function("inl", "go")
    assert fn["image"].startswith("sha256:") and fn["spec"]["image"]["built_id"] == fn["image"], fn
    # A second deploy reuses every step.
    res = gust.cli("deploy", str(spec))
    assert res.rc == 0 and "go: image sha256:" in res.err and "(cached)" in res.err, res
    res = gust.cli("--json", "image", "build", "--name", "viacli", str(tmp_path / "img.json"))
    assert res.rc == 2 and "img.json" in res.err, res  # no such file: a usage error
    (tmp_path / "img.json").write_text(json.dumps({"base": "busybox", "steps": [{"run": "echo cli-build"}]}))
    res = gust.cli("--json", "image", "build", "-v", "--name", "viacli", str(tmp_path / "img.json"))
    assert res.rc == 0 and res.json()["event"] == "done" and res.json()["name"] == "viacli", res
    assert "| cli-build" in res.err, res  # -v: the step's output (quiet by default: test_run_output.py)


def test_failing_step_reports_and_cache_stays_consistent(gust, tmp_path):
    d = {"base": "busybox", "steps": [{"run": "echo first > /first"},
                                      {"run": ["echo about to fail", "echo oops >&2; exit 7", "echo never"]}]}
    ev = build(gust, d)
    fin = final(ev)
    assert fin["event"] == "error" and fin["index"] == 2, fin
    assert fin["command"] == "echo oops >&2; exit 7" and fin["exit_status"] == 7, fin
    assert "oops" in fin["output_tail"] and "never" not in fin["output_tail"], fin
    assert "exited with status 7" in fin["message"] and "step 2/2" in fin["message"], fin
    ev2 = build(gust, d)
    assert ran(ev2) == [2] and final(ev2)["event"] == "error", ev2   # step 1 cached, the failure is not
    r = gust.cli("image", "build", str(tmp_path / "missing.json"))
    assert r.rc == 2, r
    bad = build(gust, {"base": "busybox", "steps": [{"apt_install": ["Bad Name"]}]}, expect=400)
    assert bad.error()["field"] == "image.steps[0].apt_install[0]", bad.error()
    bad = build(gust, {"base": "nosuch"}, expect=400)
    assert "nosuch" in bad.error()["message"], bad.error()
    bad = build(gust, {"base": "scratch", "steps": [{"run": "true"}]})
    assert "no /bin/sh" in final(bad)["message"], bad


def test_concurrent_builds_run_a_step_once(gust):
    d = {"base": "busybox", "steps": [{"run": "sleep 2; date +%s%N > /stamp"}, {"env": {"X": "1"}}]}
    results = [None, None]

    def one(i):
        results[i] = build(gust, d)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert all(final(r)["event"] == "done" for r in results), results
    assert final(results[0])["image_id"] == final(results[1])["image_id"]
    runs = [1 in ran(r) for r in results]
    assert sorted(runs) == [False, True], results          # exactly one ran the slow step
    waiter = results[runs.index(False)]
    assert any(e["event"] == "step_wait" for e in waiter), waiter


def test_from_oci_base_with_whiteouts(gust, tmp_path):
    l1, l2 = layers(tmp_path)
    lay = str(tmp_path / "layout")
    oci_layout(lay, l1, l2)
    d = {"from_oci": lay, "steps": [{"run": "ls /app; cat /app/a.txt; echo $GREETING"}]}
    ev = build(gust, d, name="fromoci")
    fin = final(ev)
    assert fin["event"] == "done", fin
    # b.txt was whited out in layer 2, a.txt replaced, the config env kept.
    assert logs(ev, 1)[1:] == ["a.txt", "hard", "link", "layer two a", "from-oci"], logs(ev, 1)
    assert ran(build(gust, d)) == []          # the import itself is cached by content


def test_gc_keeps_what_is_used_and_the_cache_of_live_images(gust, tmp_path):
    keep = {"base": "busybox", "steps": [{"run": "echo keep > /k"}, {"env": {"K": "1"}}]}
    drop = {"base": "busybox", "steps": [{"run": "echo drop > /d"}]}
    k = final(build(gust, keep, name="keepme"))["image_id"]
    dropped = final(build(gust, drop))["image_id"]
    gust.deploy(fn_spec("gcapp", "f", SH + ["cat /k"], image={"base": "busybox", "steps": keep["steps"]}))
    gc = gust.post_json("/v1/images/gc", {})
    assert gc["images_live"] >= 3, gc
    assert gust.call_ok("gcapp", "f") == b"keep\n"
    assert ran(build(gust, keep)) == []               # every step of a live image stays cached
    assert not os.path.exists(os.path.join(gust.data_dir, "images", "by-id", dropped[7:]))
    assert ran(build(gust, drop)) == [1]              # the unreferenced image was collected
    assert os.path.isdir(os.path.join(gust.data_dir, "images", "by-id", k[7:], "rootfs"))


def make_wheel(d, name="gustdemo", version="1.0"):
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, f"{name}-{version}-py3-none-any.whl")
    dist = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": "def hello():\n    return 'hello from the wheel'\n",
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: gust-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{n},,\n" for n in files) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for n, text in files.items():
            z.writestr(n, text)
        z.writestr(f"{dist}/RECORD", record)
    return path


def test_debian_slim_apt_and_pip_from_local_wheels(gust, tmp_path):
    wheels = str(tmp_path / "wheels")
    make_wheel(wheels)
    d = {"base": "debian_slim", "steps": [{"apt_install": ["python3-pip"]},
                                          {"pip_install": ["gustdemo"], "find_links": wheels}]}
    ev = build(gust, d, name="deb")
    fin = final(ev)
    assert fin["event"] == "done", fin
    assert ran(ev) == [0, 1, 2], ev
    # `python` is Debian's python3, as in Modal's images (python-is-python3 in the base).
    gust.deploy(fn_spec("deb", "py", ["python", "-c",
                                      "import gustdemo, sys; print(gustdemo.hello(), sys.version_info[:2])"],
                        image="deb", timeout=60))
    assert gust.call_ok("deb", "py") == b"hello from the wheel (3, 11)\n"
    # A new wheel in the directory changes the pip step's id, not the apt step's.
    make_wheel(wheels, version="1.1")
    ev2 = build(gust, d)
    assert ran(ev2) == [2], ev2


def test_python_sdk_image_builder(gust, tmp_path):
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "sdk", "python"))
    import gust as gsdk
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "run.sh").write_text("echo sdk $MODE\n")
    img = (gsdk.Image.busybox()
           .run_commands("echo one > /one", "echo two >> /one")
           .add_local_dir(str(tmp_path / "app"), "/app", copy=True)
           .env({"MODE": "built-in-python"})
           .workdir("/app"))
    d = img.definition()
    assert d["base"] == "busybox" and [list(s)[0] for s in d["steps"]] == ["run", "copy", "env", "workdir"], d
    import io
    progress = io.StringIO()
    image_id = img.build(name="sdkimg", addr=gust.addr, progress=progress)
    assert image_id.startswith("sha256:") and "[2/4] COPY" in progress.getvalue(), progress.getvalue()
    assert gust.get_json("/v1/images/sdkimg")["id"] == image_id
    gust.deploy(fn_spec("sdk", "f", SH + ["cat /one; sh run.sh"], image="sdkimg"))
    assert gust.call_ok("sdk", "f") == b"one\ntwo\nsdk built-in-python\n"
    # Same definition again: cached, same id. A failing step raises with its details.
    assert img.build(addr=gust.addr, progress=None) == image_id
    try:
        img.run_commands("exit 3").build(addr=gust.addr, progress=None)
        raise AssertionError("the failing build did not raise")
    except gsdk.BuildError as e:
        assert e.command == "exit 3" and e.exit_status == 3, e.event


def test_cache_survives_a_restart(gust):
    d = {"base": "busybox", "steps": [{"run": "echo persisted > /p"}, {"workdir": "/w"}]}
    first = final(build(gust, d, name="persist"))
    gust.restart()
    ev = build(gust, d)
    assert ran(ev) == [] and final(ev)["image_id"] == first["image_id"], ev
    gust.deploy(fn_spec("per", "f", SH + ["cat /p; pwd"], image="persist"))
    assert gust.call_ok("per", "f") == b"persisted\n/w\n"
