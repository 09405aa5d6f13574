"""OCI images: an OCI image layout and a docker-archive, made here with Python's
tarfile/gzip/json (no registry), imported with whiteouts and opaque directories
applied, run as functions; malformed images get clear errors."""
import gzip
import hashlib
import io
import json
import os
import tarfile

from gustlib import fn_spec, make_rootfs

SH = ["sh", "-c", 'eval "$(cat)"']


def tar_bytes(members, base_dir=None):
    """A tar archive: base_dir's tree (if any) plus members (name, kind, payload)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        if base_dir:
            t.add(base_dir, arcname=".")
        for name, kind, payload in members:
            ti = tarfile.TarInfo(name)
            if kind == "file":
                ti.size = len(payload)
                ti.mode = 0o644
                t.addfile(ti, io.BytesIO(payload))
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                t.addfile(ti)
            elif kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = payload
                t.addfile(ti)
            elif kind == "hardlink":
                ti.type = tarfile.LNKTYPE
                ti.linkname = payload
                t.addfile(ti)
    return buf.getvalue()


def layers(tmp_path):
    base = str(tmp_path / "base")
    make_rootfs(base)
    l1 = tar_bytes([("app", "dir", None), ("app/a.txt", "file", b"layer one a\n"),
                    ("app/b.txt", "file", b"layer one b\n"), ("etc/conf", "dir", None),
                    ("etc/conf/old1", "file", b"old\n"), ("etc/conf/old2", "file", b"old\n"),
                    ("app/link", "symlink", "a.txt"), ("app/hard", "hardlink", "app/a.txt")], base_dir=base)
    l2 = tar_bytes([("app/.wh.b.txt", "file", b""), ("etc/conf/.wh..wh..opq", "file", b""),
                    ("etc/conf/new", "file", b"new\n"), ("app/a.txt", "file", b"layer two a\n")])
    return l1, l2


CONFIG = {"architecture": "amd64", "os": "linux",
          "config": {"Env": ["PATH=/bin", "GREETING=from-oci"], "WorkingDir": "/app", "Cmd": ["sh"]},
          "rootfs": {"type": "layers", "diff_ids": []}}


def blob(d, data):
    h = hashlib.sha256(data).hexdigest()
    os.makedirs(os.path.join(d, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(d, "blobs", "sha256", h), "wb") as f:
        f.write(data)
    return "sha256:" + h, len(data)


def oci_layout(d, l1, l2, tamper=False):
    os.makedirs(d)
    with open(os.path.join(d, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    cfg_d, cfg_n = blob(d, json.dumps(CONFIG).encode())
    lay = []
    for data, gz in ((l1, True), (l2, False)):
        payload = gzip.compress(data) if gz else data
        dg, n = blob(d, payload)
        lay.append({"mediaType": "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gz else ""),
                    "digest": dg, "size": n})
    if tamper:   # a layer whose bytes do not match its digest
        with open(os.path.join(d, "blobs", "sha256", lay[1]["digest"][7:]), "ab") as f:
            f.write(b"\0" * 1024)
    man = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_d, "size": cfg_n},
           "layers": lay}
    md, mn = blob(d, json.dumps(man).encode())
    with open(os.path.join(d, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn,
             "platform": {"architecture": "amd64", "os": "linux"}}]}, f)


def docker_archive(path, l1, l2):
    members = [("l1/layer.tar", "file", l1), ("l2/layer.tar", "file", l2),
               ("cfg.json", "file", json.dumps(CONFIG).encode()),
               ("manifest.json", "file", json.dumps([{"Config": "cfg.json", "RepoTags": ["t:1"],
                                                      "Layers": ["l1/layer.tar", "l2/layer.tar"]}]).encode())]
    with open(path, "wb") as f:
        f.write(tar_bytes(members))


def imp(g, name, path):
    """Uploads the layout directory or tarball at path as a tree (as gust image import
    does) and imports it as name."""
    tree = g.upload_tree(path)
    return g.http("POST", "/v1/images", json.dumps({"name": name, "oci": tree}), {"Content-Type": "application/json"})


CHECK = (b"cat /app/a.txt; cat /app/hard; cat /app/link; ls /app/b.txt 2>&1 | grep -c 'No such'; "
         b"ls /etc/conf; cat /etc/passwd | head -1")


def check_image(g, name):
    g.deploy(fn_spec("oci", name, SH, image=name, timeout=30))
    out = g.call_ok("oci", name, CHECK).decode()
    # a.txt was replaced in layer 2; the hardlink made in layer 1 keeps layer 1's file
    # (as with overlay-based runtimes); the symlink follows the name.
    assert out == ("layer two a\nlayer one a\nlayer two a\n1\nnew\nroot:x:0:0:root:/root:/bin/sh\n"), out


def test_oci_layout_with_whiteouts(gust, tmp_path):
    l1, l2 = layers(tmp_path)
    d = str(tmp_path / "layout")
    oci_layout(d, l1, l2)
    r = imp(gust, "ocimg", d)
    assert r.status == 200, r
    check_image(gust, "ocimg")
    info = gust.cli("--json", "image", "inspect", "ocimg").json()
    assert info["config"]["env"] == ["PATH=/bin", "GREETING=from-oci"] and info["config"]["workdir"] == "/app", info


def test_docker_archive_and_cli(gust, tmp_path):
    l1, l2 = layers(tmp_path)
    tarball = str(tmp_path / "img.tar")
    docker_archive(tarball, l1, l2)
    r = gust.cli("image", "import", "dockimg", tarball)
    assert r.rc == 0 and "sha256:" in r.out, r
    check_image(gust, "dockimg")
    # The same tree from the OCI layout has the same id.
    d = str(tmp_path / "layout")
    oci_layout(d, l1, l2)
    a = imp(gust, "same", d).json()
    ids = {i["name"]: i["id"] for i in gust.get_json("/v1/images")["images"]}
    assert a["id"] == ids["dockimg"] == ids["same"], ids


def test_bad_images_are_clear_errors(gust, tmp_path):
    l1, l2 = layers(tmp_path)
    d = str(tmp_path / "tampered")
    oci_layout(d, l1, l2, tamper=True)
    r = imp(gust, "bad", d)
    assert r.status == 400 and "does not match its digest" in r.text, r
    # A member that climbs out of the image.
    evil = str(tmp_path / "evil.tar")
    docker_archive(evil, tar_bytes([("../../escape.txt", "file", b"x")]), l2)
    r = imp(gust, "evil", evil)
    assert r.status == 400 and "leaves the image" in r.text, r
    assert not os.path.exists(str(tmp_path / "escape.txt"))
    # A directory that is neither (not tmp_path itself: gustd's live data dir is in it).
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "README").write_text("just a file\n")
    (plain / "NOTES").write_text("and another (one file alone is taken for a tarball)\n")
    r = imp(gust, "none", str(plain))
    assert r.status == 400 and "not an OCI or docker image" in r.text, r
    # Errors name files of the upload, never gustd's own directories.
    r2 = imp(gust, "one", str(plain / "README"))
    assert r2.status == 400 and gust.data_dir not in r2.text and "README" in r2.text, r2
    # A host path is refused: gustd never opens one a client names.
    r = gust.http("POST", "/v1/images", json.dumps({"name": "hp", "oci": d}), {"Content-Type": "application/json"})
    assert r.status == 400 and r.error()["field"] == "oci" and "upload" in r.text, r
    assert not [i for i in gust.get_json("/v1/images")["images"] if i["name"] in ("bad", "evil", "none", "hp")]
