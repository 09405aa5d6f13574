"""Which local code and files travel with a Python function (`gust run`, as a user runs
it): the module's sibling modules and local packages that it imports go along
(automount), a folder or file of the app's directory named like a library of the image
that the app does not import does not shadow the library, templates travel with
Image.add_local_dir / add_local_file (mounted at start, merged into the image's
directories, later layers winning), a module outside the app's directory travels with
add_local_python_source (and copy=True builds it in), and a missing local module or
file fails with an error that says what was sent and how to send more."""
import json
import sys

import pytest

from gustlib import SDK_DIR

APP = '''
import json, os, sys
import gust
import helper                      # a sibling module
from pkg import util               # a local package

here = os.path.dirname(os.path.abspath(__file__))
image = (gust.Image.debian_slim()
         .add_local_dir(os.path.join(here, "templates"), "/opt/gust/app/templates")
         .add_local_file(os.path.join(here, "data.txt"), "/srv/data/")
         .add_local_file(os.path.join(here, "data.txt"), "/etc/gust-automount.conf")
         .add_local_dir(os.path.join(here, "templates"), "/srv/tpl")
         .add_local_file(os.path.join(here, "data.txt"), "/srv/tpl/page.html"))
app = gust.App("automount")


@app.function(image=image)
def use():
    from pkg.sub import deep       # the package travelled whole, not just what was imported
    import email.utils, colorsys   # the image's, not the folder email/ or colorsys.py here
    with open(os.path.join(os.path.dirname(__file__), "templates", "page.html")) as f:
        page = f.read()
    with open("/srv/data/data.txt") as f:
        data = f.read()
    with open("/etc/gust-automount.conf") as f:
        conf = f.read()
    with open("/srv/tpl/page.html") as f:   # the later layer wins
        over = f.read()
    with open("/srv/data/mine.txt", "w") as f:  # /srv/data was made, not mounted: writable
        f.write("x")
    return {"sum": helper.X + util.Y + deep.Z, "email": email.utils.__file__, "colorsys": colorsys.__file__,
            "page": page, "data": data, "conf": conf, "over": over, "passwd": os.path.exists("/etc/passwd"),
            "sent": sorted(os.listdir("/opt/gust/app")), "pkg": sorted(os.listdir("/opt/gust/app/pkg"))}


@app.local_entrypoint()
def main():
    print(json.dumps(use.remote()))
'''

MISSING = '''
import json, os, sys
import gust
sys.path.insert(0, os.environ.get("SHARED_DIR", "/nonexistent"))
import shared                      # a module outside the app's directory

image = gust.Image.debian_slim()
if os.environ.get("ADD_SHARED") == "mount":
    image = image.add_local_python_source("shared")
elif os.environ.get("ADD_SHARED") == "copy":
    image = image.add_local_python_source("shared", copy=True)
app = gust.App(os.environ.get("APP_NAME", "automiss"))


@app.function(image=image)
def shared_value():
    return shared.VALUE


@app.function(image=image)
def late():
    import late_helper             # next to this file, never imported here: not sent
    return late_helper.X


@app.function(image=image)
def template():
    with open(os.path.join(os.path.dirname(__file__), "notes.txt")) as f:
        return f.read()


def outcome(f):
    try:
        return {"ok": f.remote()}
    except Exception as e:
        return {"type": type(e).__name__, "file_not_found": isinstance(e, FileNotFoundError), "message": str(e)}


@app.local_entrypoint()
def main():
    print(json.dumps({f.name: outcome(f) for f in (shared_value, late, template)}))
'''


def write(d, files):
    for name, text in files.items():
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def run(g, path, env=None):
    r = g.cli("run", str(path), timeout=900, env=env)
    assert r.rc == 0, r
    return json.loads(r.out.strip().splitlines()[-1])


def test_imported_local_code_and_added_files_travel_and_nothing_shadows(shared_gust, tmp_path):
    proj = tmp_path / "proj"
    write(proj, {
        "__init__.py": "",          # the app's directory is a package: it used to travel whole
        "main.py": APP,
        "helper.py": "X = 1\n",
        "pkg/__init__.py": "",
        "pkg/util.py": "Y = 20\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/deep.py": "Z = 300\n",
        "pkg/notes.txt": "not Python: stays here\n",
        "email/__init__.py": "raise ImportError('the local email/ folder shadowed the standard library')\n",
        "colorsys.py": "raise ImportError('the local colorsys.py shadowed the standard library')\n",
        "unused.py": "raise ImportError('never imported, never sent')\n",
        "templates/page.html": "<h1>{title}</h1>\n",
        "data.txt": "some data\n",
    })
    out = run(shared_gust, proj / "main.py")
    assert out["sum"] == 321, out
    assert out["email"].startswith("/usr/lib/python3") and out["colorsys"].startswith("/usr/lib/python3"), out
    assert out["page"] == "<h1>{title}</h1>\n" and out["data"] == "some data\n" == out["conf"] == out["over"], out
    assert out["passwd"], out   # the file was added to /etc, which keeps the image's files
    assert out["sent"] == ["helper.py", "main.py", "pkg", "templates"], out
    assert out["pkg"] == ["__init__.py", "sub", "util.py"], out


def test_missing_local_code_says_what_was_sent_and_add_local_python_source(shared_gust, tmp_path):
    g = shared_gust
    lib = tmp_path / "lib"
    write(lib, {"shared.py": "VALUE = 'from outside the app directory'\n"})
    proj = tmp_path / "app"
    write(proj, {"main.py": MISSING, "late_helper.py": "X = 1\n", "notes.txt": "notes\n"})
    env = {"SHARED_DIR": str(lib)}
    out = run(g, proj / "main.py", env)
    # The module imports `shared` at its top level: in the container that fails, and each
    # call gets the ModuleNotFoundError with what was sent and how to add more.
    for name in ("shared_value", "late", "template"):
        o = out[name]
        assert o.get("type") == "ModuleNotFoundError", out
        assert "No module named 'shared'" in o["message"], o
        assert "add_local_python_source('shared')" in o["message"], o
        assert "main.py (in /opt/gust/app)" in o["message"] and o["message"].count("add_local") == 1, o
    # With add_local_python_source it travels; a module imported only inside a function
    # and a data file do not, and their errors say so.
    for how in ("mount", "copy"):
        out = run(g, proj / "main.py", dict(env, ADD_SHARED=how, APP_NAME=f"automiss{how}"))
        assert out["shared_value"] == {"ok": "from outside the app directory"}, (how, out)
        late = out["late"]
        assert late["type"] == "ModuleNotFoundError" and "No module named 'late_helper'" in late["message"], late
        assert "add_local_python_source('late_helper')" in late["message"], late
        sent = "main.py, shared.py (in /opt/gust/app)" if how == "mount" else "main.py (in /opt/gust/app)"
        assert sent in late["message"], late
        tpl = out["template"]
        assert tpl["file_not_found"] and "/opt/gust/app/notes.txt" in tpl["message"], tpl
        assert "Image.add_local_file(local_path, \"/opt/gust/app/notes.txt\")" in tpl["message"], tpl
        assert "add_local_dir" in tpl["message"], tpl


def test_image_local_layers_follow_modal(tmp_path):
    if SDK_DIR not in sys.path:
        sys.path.insert(0, SDK_DIR)
    import gust
    (tmp_path / "d").mkdir()
    img = gust.Image.debian_slim().apt_install("curl").add_local_dir(str(tmp_path / "d"), "/data")
    # Files added at start are no build steps, and build steps may not follow them.
    assert img.definition() == {"base": "debian_slim", "steps": [{"apt_install": ["curl"]}]}
    with pytest.raises(gust.InvalidError, match="copy=True"):
        img.run_commands("ls /data")
    built = gust.Image.debian_slim().add_local_dir(str(tmp_path / "d"), "/data", copy=True).run_commands("ls /data")
    assert [list(s)[0] for s in built.definition()["steps"]] == ["copy", "run"]
    with pytest.raises(gust.InvalidError, match="absolute remote_path"):
        gust.Image.debian_slim().add_local_file("x.txt", "x.txt")
    with pytest.raises(gust.InvalidError, match="/opt/gust/sdk"):
        gust.Image.debian_slim().add_local_dir(str(tmp_path / "d"), "/opt/gust/sdk/x")
    with pytest.raises(gust.InvalidError, match="import names"):
        gust.Image.debian_slim().add_local_python_source("not a module")
