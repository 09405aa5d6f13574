"""Volumes (docs/API.md "Volumes"): gust.Volume in real containers (a commit seen
after reload() in another container and in a new one, the later of two commits of a
file wins, a reload refused while a file is open, changes committed when the app
stops normally, delete refused while a container mounts it), and from the host: a
volume survives a restart, the same 100 MiB stored twice grows the store once, the
CLI's put/get/ls/rm round trip, bad paths refused naming the field, another
workspace's token cannot see or name the volume, and a container's uncommitted writes
into a volume are bounded by its disk size, not by the host's disk."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from gustlib import SDK_DIR, sdk_module, wait_until

if SDK_DIR not in sys.path:
    sys.path.insert(0, SDK_DIR)

import gust as gsdk  # noqa: E402 - after the SDK's path
from gust.exception import GustError, NotFoundError  # noqa: E402

MODULE = '''
import os

import gust

app = gust.App("voltest")
vol = gust.Volume.from_name("vt-shared", create_if_missing=True)


@app.function(volumes={"/data": vol}, max_containers=1)
def write(name, text, commit):
    if text is not None:
        with open("/data/" + name, "w") as f:
            f.write(text)
    if commit:
        vol.commit()
    return "written"


@app.function(volumes={"/data": vol}, max_containers=1)
def write_other(name, text, commit):
    with open("/data/" + name, "w") as f:
        f.write(text)
    if commit:
        vol.commit()
    return "written"


@app.function(volumes={"/data": vol}, max_containers=1)
def read(name, reload):
    if reload:
        vol.reload()
    try:
        with open("/data/" + name) as f:
            return f.read()
    except FileNotFoundError:
        return None


@app.function(volumes={"/data": vol})
def read_fresh(name):
    with open("/data/" + name) as f:
        return f.read()


@app.function(volumes={"/data": vol}, max_containers=1)
def reload_while_open(name):
    f = open("/data/" + name)
    try:
        vol.reload()
        refused = None
    except RuntimeError as e:
        refused = str(e)
    f.close()
    vol.reload()
    return refused


@app.function(volumes={"/data": vol}, max_containers=1)
def write_and_leave(name, text):
    with open("/data/" + name, "w") as f:
        f.write(text)
    return "left"
'''


def host_read(g, name, path):
    return b"".join(gsdk.Volume.from_name(name, addr=g.addr).read_file(path)).decode()


def test_volume_in_containers(shared_gust, tmp_path):
    g = shared_gust.use_for_sdk()
    mod = sdk_module(tmp_path, "voltest_mod", MODULE)
    mod.app.addr = g.addr
    mod.app.deploy(progress=None)
    try:
        # A container of read starts on the empty volume and stays (max_containers 1).
        assert mod.read.remote("f", False) is None
        # Another container writes and commits: the host sees it; read's container
        # sees it only after reload().
        assert mod.write.remote("f", "one", True) == "written"
        assert host_read(g, "vt-shared", "f") == "one"
        assert mod.read.remote("f", False) is None
        assert mod.read.remote("f", True) == "one"
        # A new container starts on the latest version.
        assert mod.read_fresh.remote("f") == "one"

        # Two containers change the same file: the later commit wins, whoever wrote first.
        assert mod.write.remote("g", "from write", False) == "written"
        assert mod.write_other.remote("g", "from write_other", True) == "written"
        assert host_read(g, "vt-shared", "g") == "from write_other"
        assert mod.write.remote("g", None, True) == "written"  # write's container commits last
        assert host_read(g, "vt-shared", "g") == "from write"
        assert mod.read.remote("g", True) == "from write"

        # reload() with a file of the volume open is refused, clearly; closed, it works.
        refused = mod.reload_while_open.remote("f")
        assert refused and "open files" in refused and "reload()" in refused, refused

        # Deleting a volume that running containers mount is refused.
        r = g.http("DELETE", "/v1/volumes/vt-shared")
        assert r.status == 409 and r.error()["code"] == "volume_in_use", r
        with pytest.raises(GustError, match="mounted by running container"):
            gsdk.Volume.delete("vt-shared", addr=g.addr)

        # Uncommitted changes are committed when the app stops normally.
        assert mod.write_and_leave.remote("h", "at stop") == "left"
        assert "h" not in [e.path for e in gsdk.Volume.from_name("vt-shared", addr=g.addr).listdir("/")]
    finally:
        g.http("POST", "/v1/apps/voltest/stop")
    wait_until(lambda: not [c for c in g.get_json("/v1/containers")["containers"] if c["app"] == "voltest"],
               60, msg="voltest's containers gone")
    assert host_read(g, "vt-shared", "h") == "at stop"
    entries = {e.path: e for e in gsdk.Volume.from_name("vt-shared", addr=g.addr).listdir("/")}
    assert set(entries) == {"f", "g", "h"}, entries
    assert entries["f"].type == gsdk.FileEntryType.FILE and entries["f"].size == 3
    # Not in use any more: delete works.
    gsdk.Volume.delete("vt-shared", addr=g.addr)
    with pytest.raises(NotFoundError):
        gsdk.Volume.from_name("vt-shared", addr=g.addr).listdir("/")


def test_volume_survives_a_restart_and_sdk_files(gust, tmp_path):
    a = gust.addr
    vol = gsdk.Volume.from_name("keep", create_if_missing=True, addr=a)
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "x.txt").write_text("x")
    (src / "top.bin").write_bytes(os.urandom(5 << 20))  # two chunks
    (tmp_path / "one.txt").write_text("one")
    with vol.batch_upload() as batch:
        batch.put_directory(str(src), "/dir")
        batch.put_file(str(tmp_path / "one.txt"), "/one.txt")
    with pytest.raises(FileExistsError):
        with vol.batch_upload() as batch:
            batch.put_file(str(tmp_path / "one.txt"), "/one.txt")
    with vol.batch_upload(force=True) as batch:
        batch.put_file(str(tmp_path / "one.txt"), "/dir/one-again.txt")
    names = sorted(e.path for e in vol.listdir("/dir", recursive=True))
    assert names == ["dir/one-again.txt", "dir/sub", "dir/sub/x.txt", "dir/top.bin"], names
    assert [e.path for e in vol.listdir("dir")] == ["dir/one-again.txt", "dir/sub", "dir/top.bin"]
    gust.restart()
    a = gust.addr
    vol = gsdk.Volume.from_name("keep", addr=a)
    assert b"".join(vol.read_file("/dir/top.bin")) == (src / "top.bin").read_bytes()
    assert b"".join(vol.read_file("one.txt")) == b"one"
    with pytest.raises(FileNotFoundError):
        list(vol.read_file("nope"))
    with pytest.raises(GustError, match="recursive"):
        vol.remove_file("/dir")
    vol.remove_file("/dir", recursive=True)
    assert [e.path for e in vol.listdir("/")] == ["one.txt"]
    # Paths that leave the volume are refused, naming the field.
    r = gust.http("GET", "/v1/volumes/keep/entries?path=a/../../etc")
    assert r.status == 400 and r.error()["field"] == "path", r
    r = gust.http("POST", "/v1/volumes/keep/files",
                  json.dumps({"changes": [{"path": "../x", "type": "dir", "mode": 493}]}))
    assert r.status == 400 and "changes[0].path" in r.error()["message"], r
    r = gust.http("PUT", "/v1/volumes/bad..name!")
    assert r.status == 400 and r.error()["field"] == "name", r


def test_copy_files_as_cp(shared_gust, tmp_path):
    """Volume.copy_files and gust volume cp: cp's semantics (into a directory, else to
    the path; a directory only recursively, never into itself), one version per copy,
    the bytes shared rather than copied."""
    g = shared_gust.use_for_sdk()
    vol = gsdk.Volume.from_name("vt-copy", create_if_missing=True, addr=g.addr)
    (tmp_path / "x.txt").write_text("x")
    (tmp_path / "z.txt").write_text("z")
    with vol.batch_upload() as batch:
        batch.put_file(str(tmp_path / "x.txt"), "/a/x.txt")
        batch.put_file(str(tmp_path / "z.txt"), "/z.txt")
    v0 = g.get_json("/v1/volumes/vt-copy")["version"]
    vol.copy_files(["z.txt"], "a")                     # into the directory a
    vol.copy_files(["/a/x.txt"], "/x2.txt")            # to a new path: a rename by copy
    assert g.get_json("/v1/volumes/vt-copy")["version"] == v0 + 2
    with pytest.raises(GustError, match="recursive"):
        vol.copy_files(["a"], "b")
    vol.copy_files(["a"], "b", recursive=True)
    names = sorted(e.path for e in vol.listdir("/", recursive=True))
    assert names == ["a", "a/x.txt", "a/z.txt", "b", "b/x.txt", "b/z.txt", "x2.txt", "z.txt"], names
    assert b"".join(vol.read_file("b/z.txt")) == b"z" and b"".join(vol.read_file("x2.txt")) == b"x"
    with pytest.raises(GustError, match="into itself"):
        vol.copy_files(["a"], "a/deeper", recursive=True)
    with pytest.raises(GustError, match="dst_path"):
        vol.copy_files(["z.txt", "x2.txt"], "not-a-dir.txt")
    with pytest.raises(NotFoundError):
        vol.copy_files(["nope"], "a")
    with pytest.raises(GustError, match="src_paths"):
        vol.copy_files(["../etc/passwd"], "a")
    # The CLI, in Modal's order: VOLUME SRC... DST.
    r = g.cli("volume", "cp", "vt-copy", "z.txt", "x2.txt", "b")
    assert r.rc == 0 and "copied 2 paths to b" in r.out, r
    r = g.cli("volume", "cp", "vt-copy", "a", "c")
    assert r.rc != 0 and "recursive" in r.err, r
    gsdk.Volume.delete("vt-copy", addr=g.addr)


def du(path):
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            total += os.lstat(os.path.join(d, f)).st_size
    return total


def test_same_100mib_twice_grows_the_store_once(gust, tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        for _ in range(25):
            f.write(os.urandom(4 << 20))
    cas = os.path.join(gust.data_dir, "cas")
    gust.cli("volume", "create", "v1")
    gust.cli("volume", "create", "v2")
    before = du(cas)
    r = gust.cli("volume", "put", "v1", str(big), "/a/big.bin")
    assert r.rc == 0, r.err
    once = du(cas)
    r = gust.cli("volume", "put", "v2", str(big), "/elsewhere.bin")
    assert r.rc == 0, r.err
    assert "0 of 25 chunks sent" in r.out, r.out
    twice = du(cas)
    assert once - before >= 100 << 20, (before, once)
    assert twice - once < 1 << 20, (once, twice)


def test_cli_round_trip(gust, tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f.txt").write_text("hello")
    (src / "g.txt").write_text("gee")
    assert gust.cli("volume", "create", "cv").rc == 0
    r = gust.cli("volume", "put", "cv", str(src), "/in")
    assert r.rc == 0, r.err
    r = gust.cli("volume", "put", "cv", str(src / "g.txt"), "/in/")
    assert r.rc != 0 and "already exists" in r.err, r
    assert gust.cli("volume", "put", "cv", str(src / "g.txt"), "/in/", "--force").rc == 0
    r = gust.cli("volume", "ls")
    assert r.rc == 0 and "cv" in r.out, r
    r = gust.cli("volume", "ls", "cv", "/in")
    assert r.rc == 0 and "in/d" in r.out and "in/g.txt" in r.out, r.out
    out = tmp_path / "out"
    out.mkdir()
    r = gust.cli("volume", "get", "cv", "/in", str(out))
    assert r.rc == 0, r.err
    assert (out / "d" / "f.txt").read_text() == "hello" and (out / "g.txt").read_text() == "gee"
    r = gust.cli("volume", "get", "cv", "/in/d/f.txt", "-")
    assert r.rc == 0 and r.out == "hello", r
    assert gust.cli("volume", "rm", "cv", "/in/d").rc != 0  # not empty
    assert gust.cli("volume", "rm", "cv", "/in/d", "-r").rc == 0
    r = gust.cli("volume", "ls", "cv", "/in")
    assert "in/d" not in r.out.split() and "in/g.txt" in r.out, r.out
    assert gust.cli("volume", "delete", "cv").rc == 0
    assert "cv" not in gust.cli("volume", "ls").out.split()


def test_another_workspace_cannot_see_or_name_it(gust, tmp_path, monkeypatch):
    a = gust.addr
    vol = gsdk.Volume.from_name("private", create_if_missing=True, addr=a)
    (tmp_path / "s").write_text("secret")
    with vol.batch_upload() as b:
        b.put_file(str(tmp_path / "s"), "/s")
    other = gust.token_for("wsb", "developer")
    for method, path in (("GET", "/v1/volumes/private"), ("GET", "/v1/volumes/private/entries"),
                         ("GET", "/v1/volumes/private/file?path=s"), ("DELETE", "/v1/volumes/private")):
        r = gust.http(method, path, token=other)
        assert r.status == 404 and r.error()["code"] == "not_found", (path, r)
    r = gust.http("POST", "/v1/volumes/private/remove", json.dumps({"path": "s"}), token=other)
    assert r.status == 404, r
    monkeypatch.setenv("GUST_TOKEN", other)
    assert gsdk.Volume.list(addr=a) == []
    # A function of the other workspace cannot mount it: the deploy names the field.
    spec = {"app": "nosy", "functions": [{"name": "f", "kind": "exec", "command": ["true"], "image": "busybox",
                                          "volumes": [{"path": "/v", "name": "private"}]}]}
    r = gust.http("POST", "/v1/deploy", json.dumps(spec), token=other)
    assert r.status == 400 and r.error()["field"] == "functions[0].volumes[0].name", r
    # Its own "private" is another volume.
    assert gsdk.Volume.from_name("private", create_if_missing=True, addr=a).listdir("/") == []
    monkeypatch.setenv("GUST_TOKEN", gust.admin_token)
    assert host_read(gust, "private", "s") == "secret"


FILL_MODULE = '''
import errno

import gust

app = gust.App("volfill")
vol = gust.Volume.from_name("vt-fill", create_if_missing=True)


@app.function(volumes={"/data": vol}, ephemeral_disk=64, memory=512, max_containers=1)
def fill(mib):
    written = 0
    try:
        with open("/data/big", "wb") as f:
            for _ in range(mib):
                f.write(b"x" * (1 << 20))
                f.flush()
                written += 1
    except OSError as e:
        return {"error": errno.errorcode.get(e.errno, str(e.errno)), "written_mib": written}
    return {"error": None, "written_mib": written}
'''


def test_volume_writes_are_bounded_by_the_container_disk(shared_gust, tmp_path):
    """An attacker's function writing into a volume cannot fill the host's disk: its
    uncommitted layer is a tmpfs of its ephemeral_disk (64 MiB here), so a 100 MiB write
    fails with ENOSPC inside the container and nothing of it lands in gustd's data
    directory."""
    g = shared_gust.use_for_sdk()
    mod = sdk_module(tmp_path, "volfill_mod", FILL_MODULE)
    mod.app.addr = g.addr
    mod.app.deploy(progress=None)
    try:
        before = shutil.disk_usage(g.data_dir).used
        got = mod.fill.remote(100)
        after = shutil.disk_usage(g.data_dir).used
        assert got["error"] == "ENOSPC" and 50 <= got["written_mib"] <= 64, got
        assert after - before < 32 << 20, (before, after)   # the 60-odd MiB stayed in the tmpfs
        # Within the bound, writes work and commit as usual.
        assert mod.fill.remote(8) == {"error": None, "written_mib": 8}
        ids = [c["id"] for c in g.get_json("/v1/containers")["containers"] if c["app"] == "volfill"]
        assert ids and all(i in open("/proc/self/mountinfo").read() for i in ids), ids
    finally:
        g.http("POST", "/v1/apps/volfill/stop")
    wait_until(lambda: not [c for c in g.get_json("/v1/containers")["containers"] if c["app"] == "volfill"],
               60, msg="volfill's containers gone")
    # The layers' tmpfs went with the containers.
    mounts = open("/proc/self/mountinfo").read()
    assert not [i for i in ids if os.path.join(g.data_dir, "volumes", "ctr", i) in mounts], mounts
    entries = {e.path: e for e in gsdk.Volume.from_name("vt-fill", addr=g.addr).listdir("/")}
    assert entries["big"].size == 8 << 20, entries     # committed at the normal stop
    gsdk.Volume.delete("vt-fill", addr=g.addr)


QUOTA_MODULE = '''
import os

import gust

app = gust.App("volquota")
vol = gust.Volume.from_name("vt-quota", create_if_missing=True)


@app.function(volumes={"/data": vol}, max_containers=1)
def write_and_commit(name, mib):
    with open("/data/" + name, "wb") as f:
        f.write(os.urandom(mib << 20))
    try:
        vol.commit()
        return "committed"
    except Exception as e:
        return str(e)
'''


def test_container_commits_count_toward_the_stored_bytes_quota(shared_gust, tmp_path, monkeypatch):
    """What a container commits to a volume is its workspace's, like an upload: it counts
    toward stored_bytes, and a commit past the quota is refused (the changes stay)."""
    g = shared_gust.use_for_sdk()
    r = g.http("POST", "/v1/workspaces", json.dumps({"name": "volq", "quotas": {"stored_bytes": 24 << 20}}),
               {"Content-Type": "application/json"})
    assert r.status in (201, 409), r
    monkeypatch.setenv("GUST_TOKEN", g.token_for("volq", "developer"))
    mod = sdk_module(tmp_path, "volquota_mod", QUOTA_MODULE)
    mod.app.addr = g.addr
    mod.app.deploy(progress=None)
    try:
        assert mod.write_and_commit.remote("small", 2) == "committed"
        refused = mod.write_and_commit.remote("big", 40)
        assert "quota" in refused and "stored_bytes" in refused, refused
        names = [e.path for e in gsdk.Volume.from_name("vt-quota", addr=g.addr).listdir("/")]
        assert names == ["small"], names
    finally:
        g.http("POST", "/v1/apps/volquota/stop")
    wait_until(lambda: not [c for c in g.get_json("/v1/containers")["containers"] if c["app"] == "volquota"],
               60, msg="volquota's containers gone")
    # The stop's commit is refused too: the 40 MiB never became the workspace's.
    assert [e.path for e in gsdk.Volume.from_name("vt-quota", addr=g.addr).listdir("/")] == ["small"]
