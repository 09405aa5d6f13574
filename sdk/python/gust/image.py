"""Image definitions in code, the way Modal users write them:

    image = (gust.Image.debian_slim()
             .apt_install("python3-numpy")
             .pip_install("mypkg", find_links="wheels")
             .run_commands("echo ready > /ready")
             .add_local_dir("src", "/app", copy=True)
             .env({"MODE": "prod"})
             .workdir("/app")
             .add_local_file("config.json", "/etc/myapp/config.json"))
    image_id = image.build(name="np")

An Image is immutable: every method returns a new one. definition() is the same tree as
an image table of a spec (docs/SPEC.md "Images"), with local paths; build() uploads
those (gustd never opens a host path a client names: copy sources, wheel directories
and OCI images travel as content-addressed trees, only the chunks gustd lacks), sends
the definition to gustd (POST /v1/images/build), shows each step on stderr and
returns the image id. add_local_* with copy=False (the default, as in Modal) are no
build steps: App.deploy uploads those files and each container of the function gets
them as it starts (gust._sources), so build() leaves them out.
"""
from __future__ import annotations

import json
import os
import sys
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, TextIO, Tuple, Union

from . import _mount, _net, _sources
from ._net import DEFAULT_ADDR  # noqa: F401 - kept for callers of gust.image


class BuildError(Exception):
    """A build step failed, or gustd refused the definition. Attributes: message,
    step (description), command, exit_status, output_tail, event (the raw event)."""

    def __init__(self, event: Dict[str, Any]) -> None:
        self.event = event
        self.message = event.get("message") or event.get("error", {}).get("message") or "image build failed"
        self.step = event.get("step")
        self.command = event.get("command")
        self.exit_status = event.get("exit_status")
        self.output_tail = event.get("output_tail")
        super().__init__(self.message)


# Package names, commands: strings, or lists of them.
_Names = Union[str, Sequence[str]]
_Path = Union[str, "os.PathLike[str]"]


def _names(items: Iterable[Any]) -> List[str]:
    out: List[str] = []
    for x in items:
        if isinstance(x, (list, tuple)):
            out.extend(_names(x))
        else:
            if not isinstance(x, str):
                raise TypeError(f"expected a string, got {type(x).__name__}")
            out.append(x)
    return out


def _upload_path(addr: Optional[str], path: str, ignore: Any = None) -> str:
    """The tree id of a local file (a tree holding it alone, under its name) or
    directory (ignore: gust._sources.ignore_fn's), uploaded to gustd at addr."""
    if os.path.isdir(path):
        return _mount.upload(addr, [("", path, ignore)] if ignore else [("", path)], exact=True)
    return _mount.upload(addr, [(os.path.basename(path), path)], exact=True)


_Ignore = Union[Sequence[str], Callable[[Path], bool]]
# add_local_python_source's default ignore, as Modal's: every file but *.py (and dot
# names and caches, always).
NON_PYTHON_FILES = _sources.python_only
_MOUNTS_LAST = """An image tried to run a build step after using `image.add_local_*` to include local files.

Run `image.add_local_*` commands last in your image build: their files are then added to containers \
when they start, and changing them needs no image build. If you need to run other build steps after \
adding local files, set `copy=True` to copy the files into the image, at the expense of a build step.

Example:

my_image = (
    Image.debian_slim()
    .add_local_file("data.json", "/data.json", copy=True)
    .run_commands("python3 -m mypak")  # this now works!
)"""


class Image:
    def __init__(self, base: Optional[str] = None, from_oci: Optional[str] = None,
                 steps: Iterable[Dict[str, Any]] = (), mounts: Iterable[Tuple[Any, ...]] = ()) -> None:
        self._base = base
        self._oci = from_oci
        self._steps = tuple(steps)
        # add_local_* layers with copy=False, added when a function's container starts
        # (gust._sources.layout): ("python", names, ignore), ("file", local, remote),
        # ("dir", local, remote, ignore).
        self._mounts = tuple(mounts)

    # ---- bases
    @classmethod
    def debian_slim(cls) -> Image:
        """Debian 12 minbase from the host's apt mirror, python3 included."""
        return cls(base="debian_slim")

    @classmethod
    def busybox(cls) -> Image:
        return cls(base="busybox")

    @classmethod
    def scratch(cls) -> Image:
        return cls(base="scratch")

    @classmethod
    def from_name(cls, name: str) -> Image:
        """A registered image (gust image add / import / build --name)."""
        return cls(base=name)

    @classmethod
    def from_oci(cls, path: _Path) -> Image:
        """An OCI image layout directory, or a tarball (docker save, skopeo oci-archive)."""
        return cls(from_oci=os.path.abspath(path))

    # ---- steps
    def _with(self, step: Dict[str, Any]) -> Image:
        if self._mounts:
            from .app import InvalidError  # app imports this module
            raise InvalidError(_MOUNTS_LAST)
        return Image(self._base, self._oci, self._steps + (step,))

    def _with_mount(self, layer: Tuple[Any, ...]) -> Image:
        return Image(self._base, self._oci, self._steps, self._mounts + (layer,))

    def apt_install(self, *packages: _Names) -> Image:
        return self._with({"apt_install": _names(packages)})

    def pip_install(self, *requirements: _Names, find_links: Optional[_Path] = None) -> Image:
        step: Dict[str, Any] = {"pip_install": _names(requirements)}
        if find_links is not None:
            step["find_links"] = os.path.abspath(find_links)
        return self._with(step)

    def run_commands(self, *commands: _Names) -> Image:
        return self._with({"run": _names(commands)})

    def add_local_file(self, local_path: _Path, remote_path: str, *, copy: bool = False) -> Image:
        """Adds a local file at remote_path (absolute; ending in "/": inside that
        directory, under the file's name), as in Modal. copy=False (the default): the
        file is uploaded at deploy and added to each container as it starts (no image
        build when it changes); it must then be the image's last kind of step. copy=True:
        a build step copies it into the image, so later steps see it."""
        inside = isinstance(remote_path, str) and remote_path.endswith("/")
        remote = _sources.check_remote_path("add_local_file", remote_path, not inside)
        if inside:
            remote = remote.rstrip("/") + "/" + os.path.basename(os.fspath(local_path))
        if copy:
            return self._with({"copy": os.path.abspath(local_path), "to": remote})
        return self._with_mount(("file", os.path.abspath(local_path), remote))

    def add_local_dir(self, local_path: _Path, remote_path: str, *, copy: bool = False,
                      ignore: _Ignore = ()) -> Image:
        """Adds a local directory's contents at remote_path (absolute), as in Modal;
        copy as for add_local_file. ignore: glob patterns of paths to leave out (relative
        to the directory), or a callable given each file's relative Path that returns
        True to leave it out."""
        remote = _sources.check_remote_path("add_local_dir", remote_path, False)
        if copy:
            step: Dict[str, Any] = {"copy": os.path.abspath(local_path), "to": remote}
            if ignore:
                step["_ignore"] = ignore
            return self._with(step)
        return self._with_mount(("dir", os.path.abspath(local_path), remote, ignore or None))

    def add_local_python_source(self, *module_names: str, copy: bool = False,
                                ignore: _Ignore = NON_PYTHON_FILES) -> Image:
        """Adds local Python modules or packages by import name, found as `import NAME`
        finds them here at deploy, so that the container imports them by that name, as
        in Modal. For modules that the app's module does not import from its own
        directory tree (those travel on their own): a module elsewhere, or one imported
        only inside a function. Only .py files travel unless ignore says otherwise
        (ignore=[]: every file). copy=True builds them into the image (under
        /opt/gust/python, on the runner's sys.path) instead of adding them at start."""
        for n in module_names:
            if not isinstance(n, str) or not all(p.isidentifier() for p in n.split(".")):
                from .app import InvalidError
                raise InvalidError(f"Local Python modules must be specified as strings of import names, got {n!r}")
        if copy:
            img = self
            for n in module_names:
                img = img._with({"copy": None, "to": None, "_python": n, "_ignore": ignore})
            return img
        return self._with_mount(("python", tuple(module_names), ignore))

    def env(self, variables: Mapping[str, str]) -> Image:
        return self._with({"env": {str(k): str(v) for k, v in dict(variables).items()}})

    def workdir(self, path: str) -> Image:
        return self._with({"workdir": path})

    # ---- use
    def _expanded_steps(self) -> List[Dict[str, Any]]:
        """The steps, each add_local_python_source(copy=True) one as the copy steps of
        the module's files (found here, now), with their ignore functions ("_ignore")."""
        out: List[Dict[str, Any]] = []
        for s in self._steps:
            if "_python" not in s:
                out.append(dict(s, _ignore=_sources.ignore_fn(s["_ignore"])) if "_ignore" in s else s)
                continue
            for item in _sources.python_source(s["_python"], s["_ignore"]):
                step = {"copy": item[1], "to": f"{_sources.PYSRC_DIR}/{item[0]}"}
                if len(item) > 2:
                    step["_ignore"] = item[2]
                out.append(step)
        return out

    def definition(self) -> Dict[str, Any]:
        """The image table of a spec. Files added with copy=False are not part of it:
        they are added to a function's containers at start (App.deploy uploads them)."""
        d: Dict[str, Any] = {"from_oci": self._oci} if self._oci else {"base": self._base}
        d["steps"] = [json.loads(json.dumps({k: v for k, v in s.items() if k != "_ignore"}))
                      for s in self._expanded_steps()]
        return d

    def wire_definition(self, addr: Optional[str] = None) -> Dict[str, Any]:
        """definition() as gustd takes it: each local path uploaded to gustd at addr
        (only the chunks it lacks) and named by its tree id; a copy step's source as
        {"src": its name, "tree": id, "file": bool}."""
        d = self.definition()
        if self._oci:
            d["from_oci"] = _upload_path(addr, self._oci)
        for s, orig in zip(d["steps"], self._expanded_steps()):
            if isinstance(s.get("copy"), str):
                p = s["copy"]
                s["copy"] = {"src": os.path.basename(p.rstrip("/")) or "root",
                             "tree": _upload_path(addr, p, orig.get("_ignore")), "file": os.path.isfile(p)}
            if isinstance(s.get("find_links"), str):
                s["find_links"] = _upload_path(addr, s["find_links"])
        return d

    def spec_value(self, addr: Optional[str] = None) -> Union[str, Dict[str, Any]]:
        """What a function spec's image field takes: a registered image's name as is
        (it may be one that lives outside the store, such as "python"), else the
        definition, built at deploy; with addr, its local paths uploaded there
        (wire_definition), as gustd takes it."""
        if self._base and not self._oci and not self._steps and self._base not in ("debian_slim", "busybox",
                                                                                   "scratch"):
            return self._base
        return self.wire_definition(addr) if addr is not None else self.definition()

    def build(self, name: Optional[str] = None, force_build: bool = False, addr: Optional[str] = None,
              progress: Optional[TextIO] = sys.stderr) -> str:
        """Builds the image on gustd at addr ($GUST_ADDR, else 127.0.0.1:8470) and
        returns its id ("sha256:..."). Raises BuildError with the failing step."""
        q = {}
        if name:
            q["name"] = name
        if force_build:
            q["force_build"] = "1"
        path = "/v1/images/build" + ("?" + urllib.parse.urlencode(q) if q else "")
        conn, resp = _net.stream(addr, "POST", path, json.dumps(self.wire_definition(addr)).encode(),
                                 {"Content-Type": "application/json"})
        try:
            if resp.status != 200:
                body = resp.read()
                try:
                    raise BuildError(json.loads(body))
                except ValueError:
                    raise BuildError({"message": f"HTTP {resp.status}: {body[:300]!r}"}) from None
            final = None
            for raw in resp:
                if not raw.strip():
                    continue
                ev = json.loads(raw)
                _show(ev, progress)
                if ev.get("event") in ("done", "error"):
                    final = ev
            if final is None:
                raise BuildError({"message": "gustd ended the build without a result"})
            if final["event"] == "error":
                raise BuildError(final)
            return final["image_id"]
        finally:
            conn.close()

    def __repr__(self) -> str:
        return f"Image({json.dumps(self.definition())})"


def _show(ev: Dict[str, Any], out: Optional[TextIO]) -> None:
    if out is None:
        return
    kind = ev.get("event")
    if kind == "step":
        print(f"[{ev['index']}/{ev['of']}] {ev['step']}", file=out)
    elif kind == "log":
        print(f"  | {ev['line']}", file=out)
    elif kind == "step_wait":
        print("  waiting: another build is running this step", file=out)
    elif kind == "step_done":
        print(f"  cached ({ev['image_id'][:19]})" if ev.get("cached")
              else f"  done in {ev.get('seconds', 0):.1f} s ({ev['image_id'][:19]})", file=out)
    out.flush()
