"""Memory snapshots (docs/ARCHITECTURE.md "Snapshots"): a snapshot=True function's init
runs once in a template, and its containers are forked from it copy-on-write, each
into a sandbox of its own. These tests use the SDK against a real gustd with the host's
Python (image "python"); the sandbox's hostile tests also run against forked
containers (test_hostile.py, the "forked" cases)."""
import concurrent.futures as cf
import io
import os
import re
import signal
import subprocess
import time

import pytest

from gustlib import cgroup_mounts, read_until, sdk_module, wait_until

MODULE = '''
import os, random, socket, time
import gust

app = gust.App("{app}")


@app.cls(image={image}, snapshot=True, timeout=120, max_containers=3, cpu=0.1,
         memory=768, env={env!r}, gpu={gpu!r})
class Model:
    @gust.enter(snap=True)
    def load(self):
        self.init_at = time.time()
        self.init_pid = os.getpid()
        self.template = os.environ.get("GUST_CONTAINER_ID")
        self.template_cuda = os.environ.get("CUDA_VISIBLE_DEVICES")
        self.blob = bytearray(b"\\x01") * ({blob_mib} << 20)   # the "model": written, so resident
        with open("/root/weights.txt", "w") as f:            # init's files are in every container
            f.write("{marker}")
        self.version = "{marker}"
        {extra_init}

    @gust.enter()
    def per_container(self):
        self.enter_ctr = os.environ.get("GUST_CONTAINER_ID")
        self.enter_pid = os.getpid()
        self.mine = None

    @gust.method()
    def info(self, hold=0.0, write_tmp=None, grow_mib=0):
        if write_tmp:
            with open("/tmp/" + write_tmp, "w") as f:
                f.write(write_tmp)
        if grow_mib:
            self.mine = bytearray(b"\\x02") * (grow_mib << 20)
        time.sleep(hold)
        import sys
        np = None
        try:
            import numpy
            np = float(numpy.random.random())
        except ImportError:
            pass
        return dict(ctr=os.environ.get("GUST_CONTAINER_ID"), snap=os.environ.get("GUST_SNAPSHOT"),
                    snap_id=os.environ.get("GUST_SNAPSHOT_ID"), enter_ctr=self.enter_ctr,
                    pid=os.getpid(), enter_pid=self.enter_pid, init_pid=self.init_pid,
                    init_at=self.init_at, now=time.time(), template=self.template,
                    template_cuda=self.template_cuda, cuda=os.environ.get("CUDA_VISIBLE_DEVICES"),
                    rand=random.random(), np=np, hash=hash("gust-snapshot"),
                    procs=sorted(p for p in os.listdir("/proc") if p.isdigit()),
                    host=os.uname().nodename, weights=open("/root/weights.txt").read(),
                    tmp=sorted(os.listdir("/tmp")), version=self.version,
                    nets=sorted(os.listdir("/sys/class/net")), uid_map=open("/proc/self/uid_map").read().split())
'''


HOST_PYTHON = 'gust.Image.from_name("python")'
NUMPY = 'gust.Image.debian_slim().apt_install("python3-numpy")'


def deploy(g, tmp_path, app, marker="v1", env=None, blob_mib=8, extra_init="pass", name=None, image=HOST_PYTHON,
           gpu=None):
    text = MODULE.format(app=app, marker=marker, env=env or {}, blob_mib=blob_mib, extra_init=extra_init,
                         image=image, gpu=gpu)
    mod = sdk_module(tmp_path, name or f"{app}_{marker}", text)
    mod.app.addr = g.addr
    mod.app.deploy(progress=io.StringIO())
    return mod


@pytest.fixture(autouse=True)
def stop_snapshot_apps(request):
    """Each test's apps are stopped after it, so their containers' reservations do not
    keep the next test's containers from starting on the shared daemon."""
    yield
    if "shared_gust" in request.fixturenames:
        g = request.getfixturevalue("shared_gust")
        for a in g.get_json("/v1/apps")["apps"]:
            if a["name"].startswith("snap") and a["state"] != "stopped":
                g.http("POST", f"/v1/apps/{a['name']}/stop")


def function(g, app, name="Model"):
    return [f for f in g.get_json("/v1/functions")["functions"] if f["app"] == app and f["name"] == name][0]


def spread(mod, n, **kw):
    """n calls at once, each holding its container a moment, so n containers serve them."""
    with cf.ThreadPoolExecutor(n) as ex:
        return list(ex.map(lambda _: mod.Model().info.remote(hold=1.5, **kw), range(n)))


def test_init_runs_once_and_containers_are_forked_into_their_own_sandboxes(shared_gust, tmp_path):
    g = shared_gust
    mod = deploy(g, tmp_path, "snapiso")
    outs = spread(mod, 3)
    ctrs = {o["ctr"] for o in outs}
    assert len(ctrs) == 3, outs
    for o in outs:
        assert o["snap"] == "restored" and o["snap_id"].startswith("tp-"), o
        # The init ran once, in the template (a container of its own), before the fork.
        assert o["template"] == o["snap_id"] and o["init_pid"] == 1, o
        assert o["init_at"] == outs[0]["init_at"], outs
        # enter(snap=False) ran in this container; its pid is the runner's, PID 2 under
        # its own PID 1 (gust-init), alone in its PID namespace.
        assert o["enter_ctr"] == o["ctr"] and o["pid"] == o["enter_pid"] == 2, o
        assert o["procs"] == ["1", "2"], o
        # Own UTS and network namespaces: its hostname, loopback only.
        assert o["host"] == o["ctr"] and o["nets"] == ["lo"], o
        # Files the init wrote are there; time is the real time.
        assert o["weights"] == "v1" and abs(o["now"] - time.time()) < 60, o
        assert o["uid_map"][0] == "0" and int(o["uid_map"][1]) >= 1000000, o
    # Each has a writable layer of its own: a file one writes in /tmp, the others lack.
    with cf.ThreadPoolExecutor(3) as ex:
        w = list(ex.map(lambda i: mod.Model().info.remote(hold=1.0, write_tmp=f"mark{i}"), range(3)))
    by_ctr = {}
    for o in w:
        by_ctr.setdefault(o["ctr"], set()).update(o["tmp"])
    assert all(len([m for m in tmp if m.startswith("mark")]) <= len(w) for tmp in by_ctr.values())
    assert len(by_ctr) >= 2, w
    seen = [tmp for tmp in by_ctr.values()]
    assert all(a.isdisjoint(b) for i, a in enumerate(seen) for b in seen[i + 1:]), by_ctr
    # Each forked container has its own cgroup: the API lists it with its own memory.
    listed = {c["id"]: c for c in g.get_json("/v1/containers")["containers"] if c["app"] == "snapiso"}
    assert ctrs <= set(listed), listed
    assert all(listed[c]["snapshot"] == outs[0]["snap_id"] and listed[c]["memory_bytes"] > 0 for c in ctrs)
    # Its CPU request is its weight, as for a container started from scratch, with no
    # quota (docs/SPEC.md "Requests and limits"): cpu=0.1, 100 millicores.
    for c in ctrs:
        checked = 0
        for m in cgroup_mounts():
            d = os.path.join(m, g.cgparent, c)
            for name, want in (("cpu.shares", "102"), ("cpu.cfs_quota_us", "-1"), ("cpu.weight", "10"),
                               ("cpu.max", "max 100000")):
                if os.path.exists(os.path.join(d, name)):
                    with open(os.path.join(d, name)) as f:
                        assert f.read().strip() == want, (c, name)
                    checked += 1
        assert checked >= 2, c
    fn = function(g, "snapiso")
    assert fn["snapshot"]["state"] == "ready" and fn["snapshot"]["id"] == outs[0]["snap_id"], fn
    # The calls' timelines say their containers were forked from the snapshot.
    calls = g.get_json("/v1/functions/snapiso/Model/calls?limit=50")["calls"]
    tried = [a["container"] for c in calls for a in c["timeline"]["attempts"] if a["container"]["id"] in ctrs]
    assert tried and all(t["snapshot"] for t in tried), calls
    assert any(t["cold"] for t in tried), calls


def test_random_streams_reseeded_and_hash_seed_honoured(shared_gust, tmp_path):
    g = shared_gust
    mod = deploy(g, tmp_path, "snaprng", extra_init="import numpy; self.np0 = numpy.random.random()",
                 image=NUMPY)
    outs = spread(mod, 3)
    assert len({o["ctr"] for o in outs}) == 3, outs
    # A fork copies the template's generator state: without reseeding, every container
    # would draw the same numbers.
    assert len({o["rand"] for o in outs}) == 3, outs
    assert len({o["np"] for o in outs}) == 3, outs
    # str hashes are fixed when the interpreter starts: the template's, shared by all
    # its containers (hash randomisation is per template)...
    assert len({o["hash"] for o in outs}) == 1, outs
    # ...and PYTHONHASHSEED in the function's env is honoured.
    mod2 = deploy(g, tmp_path, "snaphash", env={"PYTHONHASHSEED": "123"})
    o = mod2.Model().info.remote()
    local = subprocess.run(["python3", "-c", "print(hash('gust-snapshot'))"], capture_output=True, text=True,
                           env=dict(os.environ, PYTHONHASHSEED="123"), check=True).stdout.strip()
    assert o["hash"] == int(local), (o, local)


def test_redeploy_takes_a_new_snapshot(shared_gust, tmp_path):
    g = shared_gust
    mod = deploy(g, tmp_path, "snapver", marker="v1")
    a = mod.Model().info.remote()
    assert a["version"] == "v1" and a["weights"] == "v1", a
    first = a["snap_id"]
    mod2 = deploy(g, tmp_path, "snapver", marker="v2")
    b = mod2.Model().info.remote()
    # The new version's containers come from a new template that ran the new code.
    assert b["version"] == "v2" and b["weights"] == "v2" and b["snap_id"] != first, (a, b)
    assert function(g, "snapver")["snapshot"]["id"] == b["snap_id"]
    # The old template goes once the old version has nothing left (its containers
    # scale down with it); no container of the old version is started from it again.
    listed = [c for c in g.get_json("/v1/containers")["containers"] if c["app"] == "snapver"]
    assert all(c["snapshot"] in (first, b["snap_id"]) for c in listed), listed


def test_crashed_template_is_rebuilt(shared_gust, tmp_path):
    g = shared_gust
    mod = deploy(g, tmp_path, "snapcrash")
    a = mod.Model().info.remote()
    snap = function(g, "snapcrash")["snapshot"]
    assert snap["state"] == "ready" and snap["pid"] > 0, snap
    os.kill(snap["pid"], signal.SIGKILL)   # the template's PID 1, as a crash would
    wait_until(lambda: (function(g, "snapcrash")["snapshot"] or {}).get("id") != a["snap_id"], 30,
               msg="the dead template to be dropped")
    # The next call needs a container, so a new template runs the init again.
    b = mod.Model().info.remote()
    assert b["snap_id"] != a["snap_id"] and b["snap"] == "restored", (a, b)
    assert b["init_at"] > a["init_at"], (a, b)
    assert function(g, "snapcrash")["snapshot"]["state"] == "ready"


def test_shared_pages_are_accounted_to_the_template_once(shared_gust, tmp_path):
    g = shared_gust
    mod = deploy(g, tmp_path, "snapmem", blob_mib=256)
    outs = spread(mod, 2)
    ctrs = {o["ctr"] for o in outs}
    assert len(ctrs) == 2, outs
    tmpl = function(g, "snapmem")["snapshot"]
    assert tmpl["memory_bytes"] >= 256 << 20, tmpl          # the model lives in the template's cgroup
    def usage():
        return {c["id"]: c["memory_bytes"] for c in g.get_json("/v1/containers")["containers"] if c["id"] in ctrs}
    before = usage()
    # A forked container is charged for what it writes, not for what it shares.
    assert all(v < 64 << 20 for v in before.values()), (before, tmpl)
    o = mod.Model().info.remote(grow_mib=48)
    after = usage()
    assert after[o["ctr"]] >= before[o["ctr"]] + (40 << 20), (before, after)
    assert function(g, "snapmem")["snapshot"]["memory_bytes"] < tmpl["memory_bytes"] + (16 << 20)


def test_open_socket_at_snapshot_time_is_refused(shared_gust, tmp_path):
    g = shared_gust
    mod = deploy(g, tmp_path, "snapsock",
                 extra_init="self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)")
    import gust as gsdk
    try:
        mod.Model().info.remote()
        raise AssertionError("a snapshot holding a socket was accepted")
    except gsdk.GustError as e:
        msg = str(e)
    assert "snapshot refused" in msg and "socket" in msg and "enter(snap=False)" in msg, msg


def test_gpus_reach_enter_snap_false_not_the_template(gust_factory, tmp_path):
    # A worker with one declared (simulated) H100: the template initialises without it;
    # the forked container's environment names its GPU.
    g = gust_factory("--gpus", "H100:1")
    mod = deploy(g, tmp_path, "snapgpu", gpu="H100")
    o = mod.Model().info.remote()
    assert o["snap"] == "restored", o
    assert o["template_cuda"] == "", o
    assert o["cuda"] not in (None, ""), o
    ctr = [c for c in g.get_json("/v1/containers")["containers"] if c["id"] == o["ctr"]][0]
    assert ctr["gpus"] == ["H100:0"] and ctr["snapshot"] == o["snap_id"], ctr


# A hostile init replaces the SDK's privilege drop of the forked runner (code in the
# function's image, so the function's to change): the worker's check of every task
# before READY must catch each variant, kill the container and fail the call with a
# message naming the task.
SKIP_DROP = {
    # keeps everything: the template's SYS_ADMIN, NET_ADMIN, SYS_CHROOT, no filter of its own
    "skip": "S._drop_privileges = lambda filt: None",
    # drops capabilities and sets no_new_privs but installs no filter of its own
    "no_filter": "S._drop_privileges = (lambda orig: lambda filt: orig(b''))(S._drop_privileges)",
    # drops, but first forks a process that keeps the template's privileges
    "child": "S._drop_privileges = (lambda orig: lambda filt: (os.fork() == 0 and (time.sleep(600), os._exit(0)))"
             " or orig(filt))(S._drop_privileges)",
}
EXPECT = {
    "skip": ["kept capabilities", "cap_net_admin", "cap_sys_chroot", "cap_sys_admin", "(python3)"],
    "no_filter": ["has 1 seccomp filter where the container installs 2"],
    "child": ["kept capabilities", "cap_sys_admin", "(python3)"],
}


@pytest.mark.parametrize("variant", sorted(SKIP_DROP))
def test_runner_that_skips_the_privilege_drop_is_killed(shared_gust, tmp_path, variant):
    g = shared_gust
    app = f"snapnodrop{variant.replace('_', '')}"
    mod = deploy(g, tmp_path, app, extra_init="import gust._container.snapshot as S; " + SKIP_DROP[variant])
    import gust as gsdk
    t0 = time.monotonic()
    with pytest.raises(gsdk.GustError) as e:
        mod.Model().info.remote()
    msg = str(e.value)
    assert time.monotonic() - t0 < 60, msg    # fails, does not hang
    assert "container task" in msg, msg
    for part in EXPECT[variant]:
        assert part in msg, (part, msg)
    # gustd is healthy and a proper function works.
    assert g.http("GET", "/v1/health").status == 200
    ok = deploy(g, tmp_path, "snapafter", marker=variant)
    o = ok.Model().info.remote()
    assert o["snap"] == "restored" and o["version"] == variant, o


RUN_SNAP = '''
import os, sys, time
import gust

app = gust.App("snaprun")


@app.cls(image=gust.Image.from_name("python"), snapshot=True, cpu=0.1, memory=512)
class Slow:
    @gust.enter(snap=True)
    def load(self):
        time.sleep(1.0)   # the init a snapshot saves: imports, a model load
        self.init_at = time.time()

    @gust.method()
    def info(self):
        return dict(ctr=os.environ["GUST_CONTAINER_ID"], snap=os.environ.get("GUST_SNAPSHOT"),
                    snap_id=os.environ.get("GUST_SNAPSHOT_ID"), init_at=self.init_at)


@app.local_entrypoint()
def main():
    t0 = time.monotonic()
    r = Slow().info.remote()
    print("first-call", r["ctr"], r["snap"], r["snap_id"], repr(r["init_at"]), f"{time.monotonic() - t0:.3f}")
    sys.stdout.flush()
    gate = os.environ.get("SNAPRUN_GATE")
    while gate and not os.path.exists(gate):
        time.sleep(0.05)
'''


def test_gust_run_of_unchanged_code_starts_from_the_last_runs_snapshot(shared_gust, tmp_path):
    """Snapshots are taken at deploy and named by content: `gust run` again with the
    same code finds the template the last run warmed (stopping an app keeps it a
    while as a spare), so its first call is a restore, not the init again."""
    g = shared_gust
    src = tmp_path / "snaprun.py"
    src.write_text(RUN_SNAP)
    r = g.cli("run", str(src), timeout=600)
    assert r.rc == 0, r
    first = [l.split() for l in r.out.splitlines() if l.startswith("first-call ")]
    assert len(first) == 1 and first[0][2] == "restored", r.out
    _, ctr1, _, snap1, init1, _ = first[0]
    gate = tmp_path / "gate"
    p = g.cli_popen("run", str(src), env={"SNAPRUN_GATE": str(gate)})
    try:
        out = read_until(p, b"first-call ", 600)
        while not re.search(rb"first-call [^\n]*\n", out) and p.poll() is None:
            out += read_until(p, b"\n", 60)
        line = [l for l in out.decode().splitlines() if l.startswith("first-call ")][0].split()
        _, ctr2, how, snap2, init2, _ = line
        # A new container of the new version, forked from the first run's template:
        # the init did not run again.
        assert ctr2 != ctr1 and how == "restored" and snap2 == snap1 and init2 == init1, (first, line)
        # The container API says where it came from; the function shares the snapshot.
        ctr = [c for c in g.get_json("/v1/containers")["containers"] if c["id"] == ctr2]
        assert ctr and ctr[0]["snapshot"] == snap1, ctr
        snap = function(g, "snaprun", "Slow")["snapshot"]
        assert snap["id"] == snap1 and snap["state"] == "ready" and snap["restores"] >= 2, snap
        gate.write_text("go")
        rest, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, (out, rest, err[-3000:])


def test_snapshot_is_taken_at_deploy(shared_gust, tmp_path):
    """No call needed: deploying a snapshot function starts its template."""
    g = shared_gust
    deploy(g, tmp_path, "snapdeploy", marker="d1")
    wait_until(lambda: (function(g, "snapdeploy")["snapshot"] or {}).get("state") == "ready", 120,
               msg="the template taken at deploy to be ready")
    assert function(g, "snapdeploy")["calls_total"] == 0
