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

import base64
import contextlib
import json
import os
import pickle
import re
import shlex
import shutil
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, TextIO, Tuple, Union

from . import _mount, _net, _runtime, _sources
from ._net import DEFAULT_ADDR  # noqa: F401 - kept for callers of gust.image
from .exception import InvalidError

# The gust package (this SDK), as Image.run_function copies it into a build step.
_SDK_PACKAGE = os.path.dirname(os.path.abspath(__file__))
# Where Image.run_function puts the SDK and the function's source during its step.
_RUN_FUNCTION_DIR = "/opt/gust-build"


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


def _upload_path(addr: Optional[str], path: str, ignore: Any = None, exact: bool = True) -> str:
    """The tree id of a local file (a tree holding it alone, under its name) or
    directory (ignore: gust._sources.ignore_fn's), uploaded to gustd at addr. exact=False:
    caches left out, as for mounts."""
    if os.path.isdir(path):
        return _mount.upload(addr, [("", path, ignore)] if ignore else [("", path)], exact=exact)
    return _mount.upload(addr, [(os.path.basename(path), path)], exact=exact)


# Debian's pip, installed first when the image's python3 has none (and it has apt-get),
# as the builder does for pip_install steps: Modal's debian_slim has pip.
_PIP_ENSURE = ("python3 -m pip --version >/dev/null 2>&1 || ! command -v apt-get >/dev/null || "
               "{ apt-get update -q && apt-get install -y -q --no-install-recommends python3-pip && apt-get clean && "
               "rm -rf /var/lib/apt/lists/*; }")
# A copy step's private mark (never sent): its source is code, copied without caches
# (__pycache__, *.pyc), so that running it here does not change the step.
_CLEAN = "_clean"
# A pip_install step whose requirements are those of this local file, read when the
# definition is made (not in containers, which do not have the file).
_REQUIREMENTS = "_requirements"


def _public(step: Mapping[str, Any]) -> Dict[str, Any]:
    """A step as the definition has it: private marks left out, requirements read."""
    out = {k: v for k, v in step.items() if k not in (_CLEAN, _REQUIREMENTS, "_ignore")}
    if _REQUIREMENTS in step:
        out = dict(pip_install=_requirements(step[_REQUIREMENTS], set()), **out)
    return out


def source_tree(module_file: str) -> Tuple[Tuple[str, str], str]:
    """((tree path, local path), path of the module in that tree) of the source a
    module brings along: its package directory when it is in one (its siblings import
    as pkg.x), else the file alone."""
    src_dir = os.path.dirname(module_file)
    if os.path.isfile(os.path.join(src_dir, "__init__.py")):
        pkg = os.path.basename(src_dir)
        return (pkg, src_dir), f"{pkg}/{os.path.basename(module_file)}"
    rel = os.path.basename(module_file)
    return (rel, module_file), rel


def _requirements(path: str, seen: set) -> List[str]:
    """The requirements of a requirements file, following -r / --requirement."""
    if path in seen:
        return []
    seen.add(path)
    out: List[str] = []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise InvalidError(f"pip_install_from_requirements: {e}") from e
    for n, raw in enumerate(lines, 1):
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        m = re.fullmatch(r"(?:-r|--requirement)(?:\s+|=)(\S+)", line)
        if m:
            out.extend(_requirements(os.path.join(os.path.dirname(path), m.group(1)), seen))
            continue
        if line.startswith("-"):
            raise InvalidError(f"pip_install_from_requirements: {path}:{n}: pip option {line.split()[0]} is not "
                               f"supported (give find_links= for a local wheel directory)")
        out.append(line)
    return out


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
    def debian_slim(cls, python_version: Optional[str] = None, force_build: bool = False) -> Image:
        """Debian minbase from the host's apt mirror, python3 included: Debian's own
        Python (3.11 on gustd's default suite, bookworm), as the builder debootstraps
        it. python_version ("3.11"), as in Modal, says which Python the code needs: a
        first build step checks it and fails, naming the field, when the image's
        Python is another. force_build is accepted for Modal's sake (the builder's
        cache decides)."""
        img = cls(base="debian_slim")
        if python_version is None:
            return img
        if not isinstance(python_version, str) or not re.fullmatch(r"3\.\d{1,2}", python_version):
            raise InvalidError(f"Image.debian_slim(python_version={python_version!r}): give a Python version as "
                               f"\"3.N\" (the image has Debian's python3: 3.11 on bookworm)")
        check = ('import sys; v = "%d.%d" % sys.version_info[:2]; '
                 f'sys.exit(0 if v == "{python_version}" else '
                 f'"Image.debian_slim(python_version=\\"{python_version}\\"): '
                 'this image builder provides Python " + v + " (the python3 of its Debian release), not '
                 f'{python_version}; give python_version=\\"" + v + "\\" or leave it out")')
        return img._with({"run": [f"python3 -c {shlex.quote(check)}"]})

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

    def pip_install(self, *packages: _Names, find_links: Optional[_Path] = None, index_url: Optional[str] = None,
                    extra_index_url: Optional[str] = None, pre: bool = False, extra_options: str = "",
                    force_build: bool = False, env: Optional[Mapping[str, Optional[str]]] = None,
                    secrets: Optional[Sequence[Any]] = None, gpu: Any = None) -> Image:
        """A build step installing packages with the image's pip, as Modal's: on
        debian_slim pip comes first from Debian (python3-pip) when the image lacks it.
        find_links: a local directory of wheels, uploaded, installed from alone
        (--no-index). index_url, extra_index_url, pre (--pre), extra_options (more pip
        options, as one string) and env (variables for the step) are passed to pip.
        force_build is accepted for Modal's sake (the builder's cache decides);
        secrets and gpu are refused: a build step runs with the image alone. No
        packages: the image itself, as in Modal."""
        return self._pip("pip_install", _names(packages), find_links, index_url, extra_index_url, pre,
                         extra_options, env, secrets, gpu)

    def uv_pip_install(self, *packages: _Names, requirements: Optional[Sequence[_Path]] = None,
                       find_links: Optional[_Path] = None, index_url: Optional[str] = None,
                       extra_index_url: Optional[str] = None, pre: bool = False, extra_options: str = "",
                       force_build: bool = False, uv_version: Optional[str] = None,
                       env: Optional[Mapping[str, Optional[str]]] = None, secrets: Optional[Sequence[Any]] = None,
                       gpu: Any = None) -> Image:
        """Modal's uv_pip_install, done with the image's pip (Gust's images have no uv;
        what ends up installed is the same): pip_install's arguments, plus
        requirements, local requirements files installed as
        pip_install_from_requirements does. uv_version is accepted for Modal's sake."""
        img = self
        for req in requirements or ():
            if index_url or extra_index_url or pre or extra_options or env:
                raise InvalidError("Image.uv_pip_install: requirements= cannot be combined with index_url, "
                                   "extra_index_url, pre, extra_options or env on Gust (give the packages instead)")
            img = img.pip_install_from_requirements(req, find_links=find_links)
        return img._pip("uv_pip_install", _names(packages), find_links, index_url, extra_index_url, pre,
                        extra_options, env, secrets, gpu)

    def _pip(self, what: str, packages: List[str], find_links: Optional[_Path], index_url: Optional[str],
             extra_index_url: Optional[str], pre: bool, extra_options: str,
             env: Optional[Mapping[str, Optional[str]]], secrets: Optional[Sequence[Any]], gpu: Any) -> Image:
        for name, v in (("secrets", secrets), ("gpu", gpu)):
            if v:
                raise InvalidError(f"Image.{what}: {name} is not supported by Gust's image builder (a build step "
                                   f"runs with the image alone)")
        if not packages:
            return self
        options = [] if index_url is None else ["--index-url", index_url]
        options += [] if extra_index_url is None else ["--extra-index-url", extra_index_url]
        options += ["--pre"] if pre else []
        if find_links is not None:
            if options or extra_options or env:
                raise InvalidError(f"Image.{what}: find_links installs from that local directory alone (--no-index): "
                                   f"index_url, extra_index_url, pre, extra_options and env cannot be combined with "
                                   f"it on Gust")
            return self._with({"pip_install": packages, "find_links": os.path.abspath(find_links)})
        if not (options or extra_options or env):
            return self._with({"pip_install": packages})
        # pip's options make it a run step: the pip_install step takes requirements alone.
        assign = [f"{k}={v}" for k, v in (env or {}).items() if v is not None]
        cmd = " ".join((["env"] + [shlex.quote(a) for a in assign] if assign else []) +
                       ["python3 -m pip install --no-cache-dir --break-system-packages"] +
                       [shlex.quote(o) for o in options] + ([extra_options] if extra_options else []) +
                       [shlex.quote(p) for p in packages])
        return self._with({"run": [_PIP_ENSURE, cmd]})

    def pip_install_from_requirements(self, requirements_txt: _Path, find_links: Optional[_Path] = None) -> Image:
        """pip_install of the requirements a local requirements file lists (read here;
        "-r other.txt" lines are followed, relative to the file). Other pip options in
        the file are refused, naming the line: give find_links instead of
        --find-links, and Gust's pip takes no other index options. The file is read
        here, and again when the image is sent to gustd: not in a container, which
        imports the module without it."""
        path = os.path.abspath(requirements_txt)
        if _runtime.is_local():
            _requirements(path, set())  # a bad file is an error here and now
        step: Dict[str, Any] = {_REQUIREMENTS: path}
        if find_links is not None:
            step["find_links"] = os.path.abspath(find_links)
        return self._with(step)

    def run_commands(self, *commands: _Names) -> Image:
        return self._with({"run": _names(commands)})

    def run_function(self, raw_f: Callable[..., Any], *, secrets: Sequence[Any] = (), gpu: Any = None,
                     args: Sequence[Any] = (), kwargs: Optional[Mapping[str, Any]] = None,
                     **unsupported: Any) -> Image:
        """A build step that runs raw_f(*args, **kwargs) in the image (egress network,
        as other build steps): what it writes stays in the image (downloaded model
        weights, say). Its module is imported there as in a container, so its module
        file (or package) and this SDK are copied in for the step and removed after
        it; a change to either, or to the arguments, runs the step again.
        Modal's secrets, gpu, volumes and the like are refused: a build step has none."""
        for name, v in dict(unsupported, secrets=secrets, gpu=gpu).items():
            if name in ("timeout", "force_build", "include_source", "cpu", "memory"):
                continue  # the builder's own step timeout and cache decide these
            if v:
                raise InvalidError(f"Image.run_function: {name} is not supported by Gust's image builder "
                                   f"(a build step runs with the image alone)")
        f = getattr(raw_f, "raw_f", raw_f)  # a gust Function: its plain function
        code = getattr(f, "__code__", None)
        module_file = os.path.abspath(code.co_filename) if code else ""
        if not module_file.endswith(".py") or not os.path.isfile(module_file):
            raise InvalidError(f"Image.run_function: {getattr(f, '__qualname__', f)!r} is not a function of a .py "
                               f"module file")
        (tree_path, local), rel = source_tree(module_file)
        blob = base64.b64encode(pickle.dumps((tuple(args), dict(kwargs or {})), protocol=5)).decode()
        app_dir, sdk_dir = f"{_RUN_FUNCTION_DIR}/app", f"{_RUN_FUNCTION_DIR}/sdk"
        to = f"{app_dir}/{tree_path}" if os.path.isdir(local) else f"{app_dir}/"
        cmd = (f"cd / && {_runtime.IN_CONTAINER_ENV}=1 PYTHONPATH={sdk_dir} PYTHONDONTWRITEBYTECODE=1 "
               f"python3 -m gust._container.run_function {shlex.quote(app_dir + '/' + rel)} "
               f"{shlex.quote(f.__qualname__)} {blob}; s=$?; rm -rf {_RUN_FUNCTION_DIR}; exit $s")
        return (self._with({"copy": _SDK_PACKAGE, "to": f"{sdk_dir}/gust", _CLEAN: True})
                ._with({"copy": local, "to": to, _CLEAN: True})
                ._with({"run": [cmd]}))

    @contextlib.contextmanager
    def imports(self) -> Iterator[None]:
        """with image.imports(): import torch -- imports of packages that only the
        image has: here (gust.is_local()) a failure is ignored, in the container
        (and in a run_function step) it is raised."""
        try:
            yield
        except Exception:
            if not _runtime.is_local():
                raise

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
        d["steps"] = [json.loads(json.dumps(_public(s))) for s in self._expanded_steps()]
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
                             "tree": _upload_path(addr, p, orig.get("_ignore"), exact=not orig.get(_CLEAN)),
                             "file": os.path.isfile(p)}
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
              progress: Optional[TextIO] = sys.stderr, verbose: bool = False) -> str:
        """Builds the image on gustd at addr ($GUST_ADDR, else 127.0.0.1:8470) and
        returns its id ("sha256:..."). Progress on progress: steps, cache hits and
        durations, and with verbose every line the steps print. Raises BuildError with
        the failing step (its command, exit status and last output)."""
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
            view = _BuildView(progress, verbose)
            for raw in resp:
                if not raw.strip():
                    continue
                ev = json.loads(raw)
                view.show(ev)
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


class _BuildView:
    """Shows the events of image builds on out (None: nothing). Each line is labelled
    with the function whose image it is ("fn: "), so that builds running at once in a
    deploy stay apart. Quiet (the default): step names, cache hits, durations, how many
    output lines a step printed, and on a terminal (or with GUST_PROGRESS=1) one status
    line, redrawn in place, of the steps running; verbose: every output line too. A
    failing step's command, status and last output come with its error (BuildError),
    whichever it is."""

    REDRAW_S = 0.2  # the status line is redrawn at most 5 times a second, as map progress

    def __init__(self, out: Optional[TextIO], verbose: bool = False) -> None:
        self.out, self.verbose = out, verbose
        env = os.environ.get("GUST_PROGRESS")
        self.live = out is not None and not verbose and (
            env == "1" or (env != "0" and hasattr(out, "isatty") and out.isatty()))
        self.running: Dict[str, List[Any]] = {}  # label -> [step, started (monotonic), lines]
        self.shown = False  # a status line is on the screen
        self.drawn_at = 0.0

    def _say(self, text: str) -> None:
        assert self.out is not None
        if self.shown:
            self.out.write("\r\x1b[K")
            self.shown = False
        self.out.write(text + "\n")

    def _status(self) -> None:
        now = time.monotonic()
        if not self.live or not self.running or now - self.drawn_at < self.REDRAW_S:
            return
        self.drawn_at = now
        parts = [f"{label or ''}{step} {now - t0:.0f} s, {n} lines" for label, (step, t0, n) in self.running.items()]
        width = shutil.get_terminal_size().columns - 1
        assert self.out is not None
        self.out.write("\r\x1b[K" + "; ".join(parts)[:max(width, 20)])
        self.shown = True

    def show(self, ev: Dict[str, Any]) -> None:
        if self.out is None:
            return
        kind = ev.get("event")
        label = f"{ev['function']}: " if ev.get("function") else ""
        if kind == "step":
            self._say(f"{label}[{ev['index']}/{ev['of']}] {ev['step']}")
            self.running[label] = [f"[{ev['index']}/{ev['of']}]", time.monotonic(), 0]
        elif kind == "log":
            if self.verbose:
                self._say(f"{label}  | {ev['line']}")
            elif label in self.running:
                self.running[label][2] += 1
                self._status()
        elif kind == "step_wait":
            self._say(f"{label}  waiting: another build is running this step")
        elif kind == "step_done":
            lines = self.running.pop(label, [None, 0, 0])[2]
            hidden = (f", {lines} output line{'s' if lines != 1 else ''} (-v shows {'them' if lines != 1 else 'it'})"
                      if lines else "")
            self._say(f"{label}  cached ({ev['image_id'][:19]})" if ev.get("cached")
                      else f"{label}  done in {ev.get('seconds', 0):.1f} s{hidden} ({ev['image_id'][:19]})")
        elif kind == "image":
            self._say(f"{label}image {ev.get('image_id', '?')} (cached)")
        elif kind in ("done", "error", "deployed"):
            self.running.pop(label, None)
            if self.shown:
                self.out.write("\r\x1b[K")
                self.shown = False
        self.out.flush()
