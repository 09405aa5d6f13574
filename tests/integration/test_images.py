"""Images in the content-addressed store: ids by content, dedup, inspect, rm while in
use, gc that keeps what is used, and a corrupt object that is never served."""
import json
import os
import shutil

from gustlib import fn_spec, make_rootfs

SH = ["sh", "-c", 'eval "$(cat)"']


def add(g, name, rootfs):
    """Uploads rootfs as a tree (as gust image add does) and adds it as name."""
    tree = g.upload_tree(rootfs)
    return g.http("POST", "/v1/images", json.dumps({"name": name, "tree": tree}),
                  {"Content-Type": "application/json"})


def test_same_content_same_id_and_dedup(gust, tmp_path):
    src = str(tmp_path / "img")
    make_rootfs(src)
    a = add(gust, "one", src).json()
    b = add(gust, "two", src).json()
    assert a["id"].startswith("sha256:") and a["id"] == b["id"], (a, b)
    assert a["rootfs"] == b["rootfs"] and a["rootfs"].endswith("/rootfs")
    # Host users cannot reach materialised images (their setuid files among them).
    by_id = os.path.dirname(os.path.dirname(a["rootfs"]))
    assert os.path.basename(by_id) == "by-id" and os.stat(by_id).st_mode & 0o777 == 0o700
    # The container runs on the store's copy, not the source.
    with open(os.path.join(src, "etc", "marker"), "w") as f:
        f.write("changed after add\n")
    gust.deploy(fn_spec("img", "cat", SH, image="one", timeout=30))
    out = gust.call_ok("img", "cat", b"cat /etc/marker 2>&1; cat /etc/passwd").decode()
    assert "No such file" in out and "root:x:0:0" in out, out
    # New content, new id; unchanged files are not uploaded again.
    c = add(gust, "one", src).json()
    assert c["id"] != a["id"], c
    r = gust.cli("image", "add", "one", src)
    assert r.rc == 0 and "uploaded 0 of" in r.out, r
    gust.deploy(fn_spec("img", "cat", SH, image="one", timeout=30))
    assert gust.call_ok("img", "cat", b"cat /etc/marker").decode() == "changed after add\n"
    ls = gust.cli("image", "ls")
    assert ls.rc == 0 and c["id"][7:19] in ls.out, ls
    info = gust.cli("--json", "image", "inspect", "one").json()
    assert info["id"] == c["id"] and info["files"] >= 3 and info["bytes"] > 1000, info


def test_rm_refused_while_used_and_gc(gust, tmp_path):
    src = str(tmp_path / "img")
    make_rootfs(src)
    with open(os.path.join(src, "only-here.bin"), "wb") as f:
        f.write(os.urandom(300000))
    im = add(gust, "tmpimg", src).json()
    gust.deploy(fn_spec("gcapp", "f", SH, image="tmpimg", timeout=30))
    assert gust.call_ok("gcapp", "f", b"wc -c < /only-here.bin").strip() == b"300000"
    r = gust.http("DELETE", "/v1/images/tmpimg")
    assert r.status == 409 and "used by a deployed function" in r.text, r
    # gc while it is used keeps it.
    g1 = gust.http("POST", "/v1/images/gc").json()
    assert g1["images_removed"] == 0, g1
    assert gust.call_ok("gcapp", "f", b"wc -c < /only-here.bin").strip() == b"300000"
    assert gust.cli("stop", "gcapp").rc == 0
    rm = gust.cli("image", "rm", "tmpimg")
    assert rm.rc == 0, rm
    assert gust.http("GET", "/v1/images/tmpimg").status == 404
    g2 = gust.cli("--json", "image", "gc").json()
    assert g2["images_removed"] == 1 and g2["objects_removed"] >= 2 and g2["bytes_removed"] >= 100000, g2
    assert not os.path.exists(im["rootfs"])
    # What is still named keeps working.
    gust.deploy(fn_spec("gcapp2", "f", SH, timeout=30))
    assert gust.call_ok("gcapp2", "f", b"echo ok") == b"ok\n"


def test_corrupt_object_is_never_served(gust, tmp_path):
    src = str(tmp_path / "img")
    make_rootfs(src)
    with open(os.path.join(src, "data.txt"), "w") as f:
        f.write("precious data " * 1000)
    im = add(gust, "c1", src).json()
    objects = os.path.join(gust.data_dir, "cas", "objects")
    # Find the object of data.txt by its size class: corrupt every object written for it.
    info = gust.get_json("/v1/images/c1")
    assert info["id"] == im["id"]
    victims = []
    for sub in os.listdir(objects):
        for name in os.listdir(os.path.join(objects, sub)):
            p = os.path.join(objects, sub, name)
            with open(p, "rb") as f:
                data = f.read()
            if len(data) < 2000 and data[4] == 1:      # the small zstd object: data.txt's chunk
                victims.append(p)
    assert victims, "no zstd object found"
    for p in victims:
        with open(p, "r+b") as f:
            f.seek(-1, 2)
            b = f.read(1)
            f.seek(-1, 2)
            f.write(bytes([b[0] ^ 0xFF]))
    # A worker without the materialised copy must fetch from the store: it refuses.
    shutil.rmtree(os.path.dirname(im["rootfs"]))
    r = add(gust, "c2", src)
    assert r.status == 500 and "corrupt" in r.text, r
    assert not os.path.exists(im["rootfs"])
