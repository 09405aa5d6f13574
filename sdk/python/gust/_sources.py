"""Which local files travel with a function, as in Modal.

Automount: the function's module, and every local module or package that was imported
here by the time the app deploys (sys.modules, top-level names) whose files lie in the
module's own directory tree (the sys.path entry its top-level package was imported
from) and not in the standard library or an environment's site-packages. Packages
travel whole, Python files only. They land at the root of the app tree
(/opt/gust/app, first on the container's sys.path) under their import names, so the
container imports what the client imported; a directory of the tree that was not
imported (a folder named json/ or email/, say) is not sent and cannot shadow a library
of the image. Anything else travels through the image: add_local_python_source for more
modules, add_local_dir / add_local_file for data (gust.image)."""
import fnmatch
import importlib.util
import json
import os
import site
import sys
import sysconfig
import tempfile
from pathlib import Path

from . import _mount
from ._container.sources import APP_DIR, PYSRC_DIR, RESERVED, TARGETS
from ._mount import MountError


def _sys_dirs():
    """The standard library's and the environments' library directories (not whole
    prefixes: an app may live in /usr/src, under Debian's prefix /usr)."""
    paths = sysconfig.get_paths()
    dirs = {paths.get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    try:
        dirs.update(site.getsitepackages())
        dirs.add(site.getusersitepackages())
    except AttributeError:  # an old virtualenv's site module lacks them
        pass
    return {os.path.realpath(d) for d in dirs if d}


_SYS_DIRS = _sys_dirs()
# The SDK itself has a mount of its own (/opt/gust/sdk).
_NOT_LOCAL = {"gust"}


def _under(path, root):
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _is_installed(path):
    """In the standard library or an environment (this one's, or a virtualenv's inside
    the app's tree): never sent by automount."""
    parts = path.split(os.sep)
    return any(_under(path, d) for d in _SYS_DIRS) or "site-packages" in parts or "dist-packages" in parts


def python_only(rel, is_dir):
    """The default filter of Python sources (Modal's NON_PYTHON_FILES): .py files only,
    and no dot-named files or directories."""
    name = os.path.basename(rel)
    return name.startswith(".") or (not is_dir and not name.endswith(".py"))


def ignore_fn(ignore, python=False):
    """_mount's ignore(rel, is_dir) from Modal's ignore argument: glob patterns (fnmatch,
    against the path relative to the directory; a pattern matching a directory leaves
    it out whole) or a callable given each file's relative pathlib.Path. python: dot
    names are always left out, as Modal does for Python sources."""
    if ignore is python_only:
        return python_only
    if not ignore:
        return _dot_names if python else None
    if callable(ignore):
        def test(rel, is_dir):
            return not is_dir and bool(ignore(Path(rel)))
    else:
        pats = [ignore] if isinstance(ignore, str) else list(ignore)
        if not all(isinstance(p, str) for p in pats):
            raise TypeError("ignore: expected glob patterns (strings) or a callable")
        pats = [p.rstrip("/") for p in pats]

        def test(rel, is_dir):
            return any(fnmatch.fnmatch(rel, p) for p in pats)
    if not python:
        return test
    return lambda rel, is_dir: _dot_names(rel, is_dir) or test(rel, is_dir)


def _dot_names(rel, is_dir):
    return os.path.basename(rel).startswith(".")


def module_root(obj, module_file):
    """The directory the top-level package of obj's module was imported from here (its
    sys.path entry): /src for /src/pkg/main.py imported as pkg.main, so that the
    module's path under it is its import name. A module loaded from a file under a name
    its path does not end with (gust run FILE.py, __main__) is a top-level module named
    after its file, rooted in its directory."""
    name = getattr(obj, "__module__", None) or ""
    if name in ("__main__", "__mp_main__"):
        spec = getattr(sys.modules.get(name), "__spec__", None)
        name = getattr(spec, "name", None) or ""
    stem = os.path.dirname(module_file) if os.path.basename(module_file) == "__init__.py" else module_file[:-3]
    parts = name.split(".") if name else []
    have = stem.split(os.sep)
    if parts and all(p.isidentifier() for p in parts) and have[-len(parts):] == parts:
        return os.sep.join(have[:-len(parts)]) or os.sep
    return os.path.dirname(module_file)


def _top_level_paths(mod):
    """The local paths a module's code comes from: its package directories, or its .py
    file; none for built-in, frozen and compiled modules."""
    path = getattr(mod, "__path__", None)
    if path is not None:
        try:
            return [os.path.abspath(p) for p in list(path) if os.path.isdir(p)]
        except (TypeError, ValueError):  # an odd __path__: not a plain package
            return []
    f = getattr(mod, "__file__", None)
    return [os.path.abspath(f)] if isinstance(f, str) and f.endswith(".py") and os.path.isfile(f) else []


def automounted(root):
    """[(tree path, local path, ignore)] of the local modules imported so far from
    root's tree, by top-level name (a package as its directory, Python files only)."""
    root = os.path.realpath(root)
    out = []
    for name, mod in sorted(list(sys.modules.items())):
        if "." in name or name.startswith("__") or name in _NOT_LOCAL or mod is None:
            continue
        paths = _top_level_paths(mod)
        real = [os.path.realpath(p) for p in paths]
        if not paths or any(_is_installed(p) for p in real) or not all(_under(p, root) for p in real):
            continue
        if getattr(mod, "__path__", None) is not None:
            out.extend((name, p, python_only) for p in paths)
        else:
            out.append((name + ".py", paths[0]))
    return out


def python_source(name, ignore=python_only):
    """[(tree path, local path[, ignore])] of a module or package by import name, found
    as an import here would find it (Image.add_local_python_source)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError) as e:
        raise MountError(f"add_local_python_source({name!r}): {e}") from e
    if spec is None:
        raise MountError(f"add_local_python_source({name!r}): no module of that name can be imported here; is "
                         f"its directory on sys.path?")
    tree = name.replace(".", "/")
    if spec.submodule_search_locations:
        return [(tree, os.path.abspath(d), ignore_fn(ignore, python=True))
                for d in spec.submodule_search_locations if os.path.isdir(d)]
    if spec.origin and spec.origin.endswith(".py") and os.path.isfile(spec.origin):
        return [(tree + ".py", os.path.abspath(spec.origin))]
    raise MountError(f"add_local_python_source({name!r}): not Python source ({spec.origin}); install it in the "
                     f"image instead")


def check_remote_path(method, remote_path, is_file):
    """The normalised remote path of add_local_dir / add_local_file, or InvalidError
    saying why it cannot be one (Modal's rule: absolute paths only)."""
    from .app import InvalidError  # app imports image, which imports this module
    if not isinstance(remote_path, str) or not remote_path.startswith("/"):
        raise InvalidError(f"image.{method}() currently only supports absolute remote_path values, got "
                           f"{remote_path!r}")
    if ".." in remote_path.split("/"):
        raise InvalidError(f"image.{method}(): remote_path may not contain '..': {remote_path!r}")
    norm = "/" + os.path.normpath(remote_path).lstrip("/")
    if is_file and norm in ("/", APP_DIR):
        raise InvalidError(f"image.{method}(): {remote_path!r} is a directory; name the file, or end the path "
                           f"with '/' to keep the file's name")
    for r in RESERVED + (PYSRC_DIR,):
        if _under(norm, r):
            raise InvalidError(f"image.{method}(): {remote_path!r} overlaps {r}, which gust keeps for itself")
    return norm


def layout(mounts):
    """Splits an image's mount layers into (app tree items, files tree items, targets):
    what goes under /opt/gust/app (Python sources, and add_local_* targets there) and
    what is linked into place from /opt/gust/files at container start (targets: the
    paths to place; one inside an earlier directory target travels in its tree). A later
    layer wins over an earlier one at the same path. Local paths are checked here, at
    deploy, not when the image is defined (the container defines it too)."""
    app, files, targets, dirs = [], [], [], []
    for m in mounts:
        kind = m[0]
        if kind == "python":
            for name in m[1]:
                app.extend(python_source(name, m[2]))
            continue
        local, remote = m[1], m[2]
        if kind == "file" and not os.path.isfile(local):
            raise MountError(f"add_local_file: {local} is not a file")
        if kind == "dir" and not os.path.isdir(local):
            raise MountError(f"add_local_dir: {local} is not a directory")
        rest = [ignore_fn(m[3])] if kind == "dir" and m[3] is not None else []
        if _under(remote, APP_DIR):
            app.append(tuple([os.path.relpath(remote, APP_DIR) if remote != APP_DIR else "", local] + rest))
            continue
        files.append(tuple([remote.lstrip("/"), local] + rest))
        if not any(_under(remote, d) for d in dirs):
            targets.append(remote)
        if kind == "dir":
            dirs.append(remote)
    # _mount.upload keeps the first item at a path: later layers first.
    return app, files[::-1], targets


def upload_files(addr, items, targets):
    """The files tree's id: items, and the list of targets for the runner."""
    fd, path = tempfile.mkstemp(prefix="gust-targets-")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(targets, f)
        return _mount.upload(addr, [(TARGETS, path)] + list(items))
    finally:
        os.unlink(path)
