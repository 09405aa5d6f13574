"""gustd never opens a host path a client names (docs/SECURITY.md): an unprivileged
local user cannot have gustd (root) read a file for them, through the CLI or through
hand-made requests naming host paths (rootfs, oci, copy with a context, find_links,
from_oci). And image ingest runs off the event loop: /v1/health answers while a large
image is being added."""
import json
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import time

from gustlib import BUILD, make_rootfs, sanitizer_env, wait_until

SECRET = "root-only-" + os.urandom(16).hex()


def world_dir():
    """A directory everyone may enter (pytest's tmp_path is root's alone)."""
    d = tempfile.mkdtemp(prefix="gust-hostpaths-")
    os.chmod(d, 0o755)
    return d


def secret_under(d):
    """d/secret/key.txt, 0600 in a 0700 directory, owned by root."""
    sd = os.path.join(d, "secret")
    os.mkdir(sd, 0o700)
    key = os.path.join(sd, "key.txt")
    with open(key, "w") as f:
        f.write(SECRET + "\n")
    os.chmod(key, 0o600)
    return sd, key


def write_spec(path, copy_src):
    """An app whose inline image copies copy_src to /k."""
    with open(path, "w") as f:
        f.write('app = "steal"\n[[functions]]\nname = "f"\nkind = "exec"\ncommand = ["cat", "/k"]\n'
                '[functions.image]\nbase = "busybox"\n[[functions.image.steps]]\n'
                f'copy = "{copy_src}"\nto = "/k"\n')
    os.chmod(path, 0o644)


def as_nobody(g, exe, *args):
    """The CLI run as user nobody (no groups)."""
    e = sanitizer_env()
    e["GUST_ADDR"] = g.addr
    e.pop("HOME", None)
    cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", exe, "--addr", g.addr] + list(args)
    p = subprocess.run(cmd, capture_output=True, timeout=60, env=e, cwd="/")
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def store_objects(g):
    out = set()
    root = os.path.join(g.data_dir, "cas", "objects")
    for sub in os.listdir(root):
        out.update(os.listdir(os.path.join(root, sub)))
    return out


def secret_anywhere(g):
    """Paths under the data directory (the store, materialised images) that hold SECRET."""
    found = []
    needle = SECRET.encode()
    for d, _dirs, files in os.walk(g.data_dir):
        for name in files:
            p = os.path.join(d, name)
            try:
                if not stat.S_ISREG(os.lstat(p).st_mode) or os.lstat(p).st_size > (64 << 20):
                    continue
                with open(p, "rb") as f:
                    if needle in f.read():
                        found.append(p)
            except OSError:
                pass
    return found


def test_unprivileged_user_cannot_read_root_files_through_gustd(gust):
    d = world_dir()
    try:
        # The CLI in a place nobody may run it from.
        exe = os.path.join(d, "gust")
        shutil.copy(os.path.join(BUILD, "gust"), exe)
        os.chmod(exe, 0o755)
        sd, key = secret_under(d)
        spec = os.path.join(d, "app.toml")
        write_spec(spec, "secret/key.txt")
        img = os.path.join(d, "img.json")
        with open(img, "w") as f:
            json.dump({"base": "busybox", "steps": [{"copy": "secret", "to": "/s"}]}, f)
        os.chmod(img, 0o644)
        before = store_objects(gust)
        # Through the CLI: it reads the files itself, as nobody, and fails before sending anything.
        for args in (["deploy", spec], ["image", "build", img], ["image", "add", "stolen", sd],
                     ["image", "import", "stolen", key]):
            rc, out, err = as_nobody(gust, exe, *args)
            assert rc != 0 and "Permission denied" in err, (args, rc, out, err)
        assert store_objects(gust) == before, "the CLI sent something to gustd"
        assert "steal" not in [a["name"] for a in gust.get_json("/v1/apps")["apps"]]
        # A copy source outside the spec's directory is refused by the client, with gustd's words.
        write_spec(spec, "/etc/shadow")
        rc, out, err = as_nobody(gust, exe, "deploy", spec)
        assert rc == 3 and "functions[0].image.steps[0].copy.src" in err and "absolute" in err, (rc, err)
        write_spec(spec, "sub/../../etc/shadow")
        rc, out, err = as_nobody(gust, exe, "deploy", spec)
        assert rc == 3 and "functions[0].image.steps[0].copy.src" in err and '".."' in err, (rc, err)

        # Hand-made requests naming host paths: each a 400 naming the field.
        hj = {"Content-Type": "application/json"}
        cases = [
            ("/v1/images", {"name": "stolen", "rootfs": sd}, "rootfs"),
            ("/v1/images", {"name": "stolen", "oci": key}, "oci"),
            (f"/v1/images/build?name=stolen&context={d}",
             {"base": "busybox", "steps": [{"copy": "secret/key.txt", "to": "/k"}]}, "context"),
            ("/v1/images/build?name=stolen", {"base": "busybox", "steps": [{"copy": key, "to": "/k"}]},
             "image.steps[0].copy"),
            ("/v1/images/build?name=stolen",
             {"base": "busybox", "steps": [{"copy": {"src": "/etc/shadow", "tree": "sha256:" + "0" * 64},
                                            "to": "/k"}]}, "image.steps[0].copy.src"),
            ("/v1/images/build?name=stolen",
             {"base": "busybox", "steps": [{"copy": {"src": "a/../../x", "tree": "sha256:" + "0" * 64},
                                            "to": "/k"}]}, "image.steps[0].copy.src"),
            ("/v1/images/build?name=stolen", {"base": "busybox", "steps": [{"pip_install": "x", "find_links": sd}]},
             "image.steps[0].find_links"),
            ("/v1/images/build?name=stolen", {"from_oci": key}, "image.from_oci"),
            (f"/v1/deploy?build=1&context={d}",
             {"app": "steal", "functions": [{"name": "f", "kind": "exec", "command": ["cat", "/k"], "image": {
                 "base": "busybox", "steps": [{"copy": "secret/key.txt", "to": "/k"}]}}]}, "context"),
            ("/v1/deploy?build=1",
             {"app": "steal", "functions": [{"name": "f", "kind": "exec", "command": ["cat", "/k"], "image": {
                 "base": "busybox", "steps": [{"copy": key, "to": "/k"}]}}]}, "functions[0].image.steps[0].copy"),
        ]
        for path, body, field in cases:
            r = gust.http("POST", path, json.dumps(body), hj)
            assert r.status == 400 and r.error()["field"] == field, (path, body, r)
            assert "upload" in r.error()["message"] or "relative" in r.error()["message"], r.error()
        assert "stolen" not in [i["name"] for i in gust.get_json("/v1/images")["images"]]
        assert "steal" not in [a["name"] for a in gust.get_json("/v1/apps")["apps"]]
        assert secret_anywhere(gust) == [], "the secret reached gustd's data"
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_health_answers_while_a_large_image_is_added(gust, tmp_path):
    src = str(tmp_path / "big")
    make_rootfs(src)
    # 1 GiB of zeros: one chunk to upload, 256 to verify and write when materialised.
    with open(os.path.join(src, "zeros.bin"), "wb") as f:
        f.truncate(1 << 30)
    tree = gust.upload_tree(src)
    hexdir = os.path.join(gust.data_dir, "images", "by-id", tree[7:])
    done = {}

    def materialising():
        try:
            return any(n.startswith("rootfs.tmp-") for n in os.listdir(hexdir))
        except FileNotFoundError:
            return False

    def add():
        done["r"] = gust.http("POST", "/v1/images", json.dumps({"name": "big", "tree": tree}),
                              {"Content-Type": "application/json"}, timeout=600)
        done["at"] = time.monotonic()

    t = threading.Thread(target=add)
    t.start()
    # Once the job is materialising (its scratch directory exists), health still answers.
    wait_until(lambda: materialising() or "r" in done, 60, interval=0.01, msg="the image add to start materialising")
    assert "r" not in done, "the add finished before it could be observed; make the image larger"
    h = gust.http("GET", "/v1/health", timeout=60)
    answered = time.monotonic()
    assert h.status == 200, h
    t.join(600)
    assert done["r"].status == 200, done["r"]
    assert answered < done["at"], "health answered only after the image add"
    assert done["r"].json()["files"] >= 2 and done["r"].json()["bytes"] >= (1 << 30), done["r"].json()
