"""`gust serve FILE.py` (python3 -m gust.cli serve FILE.py), as `modal serve`: deploys
the file's apps as ephemeral copies (each App's name plus DEV_SUFFIX, as Modal's
served apps get "-dev" URLs, so a deployed app of the same name is left alone), prints
each web endpoint's URL, shows what the functions print (as `gust run`), and redeploys
when a Python source changes, until Ctrl-C (SIGINT) or SIGTERM, which stop the copies.

What is watched is what travels with the functions: each function's module, the
local modules automount sends (gust._sources.automounted), and the local files of its
image's add_local_file / add_local_dir / add_local_python_source layers and copy steps
(as `modal serve` watches mounts), recomputed after each deploy, since an edit may
import another local module or add a file. A redeploy imports the file
afresh (the local modules with it), so changed decorators count too; it uploads only
the chunks gustd lacks (the changed files) and makes new versions: new containers run
the new code, requests in flight finish on the old version's containers.

The files are polled (their mtimes and sizes every POLL_S) rather than watched with
inotify: the SDK is stdlib only, inotify needs ctypes and misses changes on network
and some bind-mounted filesystems, and stat()ing an app's few hundred sources twice a
second costs next to nothing."""
import os
import signal
import stat
import sys
import time

from . import _mount, _sources, _web
from ._output import RemoteOutput
from .app import App, GustError

POLL_S = 0.5
# An editor may save in several writes: a change is deployed once the files have
# stayed as they are for this long.
SETTLE_S = 0.2
# Modal serves an app under its name with "-dev"; app names are at most 63 characters.
DEV_SUFFIX = "-dev"
_NAME_MAX = 63


class _Stop(Exception):
    """SIGTERM, raised in the main thread as Ctrl-C raises KeyboardInterrupt."""


def _import_fresh(path, load_module):
    """The module at path imported again, with the local modules it imported (those
    under its directory that automount would send) dropped first, so they are read
    again too."""
    root = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    for item in _sources.automounted(root):
        name = item[0]
        sys.modules.pop(name[:-3] if name.endswith(".py") else name, None)
    for name in [n for n in sys.modules if "." in n and n.split(".")[0] not in sys.modules]:
        sys.modules.pop(name, None)  # submodules of the packages just dropped
    return load_module(path)


def _apps_of(mod):
    return list({id(v): v for v in vars(mod).values() if isinstance(v, App)}.values())


def _watched(path, apps):
    """The Python files whose change redeploys: each function's module and the local
    modules that travel with it."""
    files = {os.path.abspath(path)}
    for app in apps:
        for fn in app.registered_functions.values():
            module_file, _ = fn._source()
            files.add(module_file)
            root = _sources.module_root(fn.raw_f, module_file)
            for item in _sources.automounted(root):
                local = item[1]
                if os.path.isdir(local):
                    for d, dirs, names in os.walk(local):
                        dirs[:] = [x for x in dirs if not x.startswith(".")]
                        files.update(os.path.join(d, n) for n in names if n.endswith(".py"))
                else:
                    files.add(local)
            files.update(_image_files(fn.options.get("image")))
    return files


def _local_tree(local, ignore=None):
    """local's regular files (all of a directory's, as _mount sends them)."""
    if not os.path.isdir(local):
        return [local]
    return [p for _, p, st in _mount._walk(local, "", ignore=ignore) if p and stat.S_ISREG(st.st_mode)]


def _image_files(image):
    """The local files an image sends: its add_local_* layers (added at container start)
    and its copy steps (built in). A path that is gone is left to the deploy to report."""
    if image is None:
        return set()
    out = set()
    try:
        app_items, file_items, _ = _sources.layout(image._mounts)
        for item in app_items + file_items:
            out.update(_local_tree(item[1], item[2] if len(item) > 2 else None))
        for step in image._steps:
            if step.get("copy"):
                out.update(_local_tree(step["copy"]))
    except (_mount.MountError, OSError):
        pass
    return out


def _snapshot(files):
    out = {}
    for f in files:
        try:
            st = os.stat(f)
            out[f] = (st.st_mtime_ns, st.st_size)
        except OSError:  # removed (or renamed by an editor's save): a change
            out[f] = None
    return out


def _deploy(apps, verbose, serve_name):
    """Deploys each app under its served name; {app name: deploy result}."""
    results = {}
    for app in apps:
        app.name = serve_name(app)
        results[app.name] = app.deploy(verbose=verbose)
    return results


def _print_urls(apps):
    for app in apps:
        for fn in app.registered_functions.values():
            if _web.spec_of(getattr(fn, "raw_f", None)):
                print(f"  web endpoint {app.name}.{fn.name}: {fn.get_web_url()}", flush=True)


def serve(path, load_module, verbose=False):
    """The serve loop; returns the exit code."""
    def serve_name(app):
        # Each import makes new App objects, named as the file names them.
        return app.name[:_NAME_MAX - len(DEV_SUFFIX)] + DEV_SUFFIX

    def on_term(signum, frame):
        raise _Stop()
    signal.signal(signal.SIGTERM, on_term)
    apps, outputs = [], {}
    try:
        mod = load_module(path)
        apps = _apps_of(mod)
        if not apps:
            print(f"error: {path} defines no gust.App at its top level", file=sys.stderr)
            return 2
        results = _deploy(apps, verbose, serve_name)
        for app in apps:
            print(f"serving app {app.name} (Ctrl-C stops it)", flush=True)
            outputs[app.name] = RemoteOutput(app.addr, app.name, results[app.name].get("log_seq")).start()
        _print_urls(apps)
        files = _watched(path, apps)
        seen = _snapshot(files)
        deploys = 1
        while True:
            time.sleep(POLL_S)
            now = _snapshot(files)
            if now == seen:
                continue
            time.sleep(SETTLE_S)
            before, seen = seen, _snapshot(files)
            changed = sorted(f for f in files if before.get(f) != seen.get(f))
            try:
                fresh = _apps_of(_import_fresh(path, load_module))
                _deploy(fresh, verbose, serve_name)
            except Exception as e:  # a broken edit: say so, keep serving the last good version
                print(f"error: redeploying {path}: {type(e).__name__}: {e}; still serving the last version",
                      file=sys.stderr, flush=True)
                continue
            deploys += 1
            for app in fresh:
                if app.name not in outputs:  # an App the edit added
                    outputs[app.name] = RemoteOutput(app.addr, app.name, None).start()
            gone = {a.name for a in apps} - {a.name for a in fresh}
            for name in gone:
                _stop_app(next(a for a in apps if a.name == name), outputs)
            apps = fresh
            files = _watched(path, apps)
            seen = _snapshot(files)
            what = ", ".join(os.path.relpath(f) for f in changed[:3]) or path
            print(f"redeployed ({deploys}): {what} changed", flush=True)
    except (KeyboardInterrupt, _Stop):
        pass
    except (GustError, OSError, SyntaxError) as e:
        print(f"error: {path}: {e}", file=sys.stderr)
        for app in apps:
            _stop_app(app, outputs)
        return 1
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stopping is not to be cut short
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for app in apps:
        _stop_app(app, outputs)
    return 0


def _stop_app(app, outputs):
    out = outputs.pop(app.name, None)
    if out is not None:
        out.stop()
    try:
        app.stop()
        app.drop_inline_secrets()
        print(f"stopped app {app.name}", flush=True)
    except (GustError, OSError) as e:
        print(f"warning: stopping app {app.name}: {e}", file=sys.stderr)
