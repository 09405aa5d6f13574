"""Where a function's local files are in its container, and what the container says
when one is missing. The client (gust._sources, gust.image) lays the trees out and
imports this module too: LocalFileNotFoundError comes back to it pickled.

  /opt/gust/app     the app tree, first on sys.path: the function's module and the
                    local Python sources that travel with it (automount,
                    Image.add_local_python_source), and add_local_dir/add_local_file
                    targets under /opt/gust/app
  /opt/gust/files   the other add_local_dir/add_local_file targets, at their paths
                    below it, and their list (TARGETS); place_files links them
                    into place at start
  /opt/gust/python  add_local_python_source(..., copy=True): built into the image"""
import json
import os

APP_DIR = "/opt/gust/app"
FILES_DIR = "/opt/gust/files"
TARGETS = ".gust-targets"  # in the files tree: the JSON list of the paths to place
PYSRC_DIR = "/opt/gust/python"
# Paths under which no local file may be placed at container start: the SDK's and the
# files' own mounts, and the kernel's file systems.
RESERVED = ("/opt/gust/sdk", FILES_DIR, "/proc", "/sys", "/dev")

_LIST_MAX = 12  # names a hint lists before "and N more"


def place_files(src=FILES_DIR):
    """Makes each add_local_dir / add_local_file target (the list in TARGETS) appear at
    its path, as a COPY would: the directories above it are made, real and writable; a
    target the image lacks becomes a link into the tree (a whole directory at once); a
    directory the image has gets the target's entries merged into it; a file the image
    has is replaced by the link."""
    try:
        with open(os.path.join(src, TARGETS)) as f:
            targets = json.load(f)
    except FileNotFoundError:
        return
    for t in targets:
        _place(src + t, t)


def _place(s, d):
    if os.path.isdir(s) and not os.path.islink(s) and os.path.isdir(d):
        for name in sorted(os.listdir(s)):
            if name != TARGETS:  # a target of "/" holds the list too
                _place(os.path.join(s, name), os.path.join(d, name))
        return
    if os.path.isdir(d) and not os.path.islink(d):
        raise IsADirectoryError(f"{d}: the image has a directory where add_local_file puts a file")
    os.makedirs(os.path.dirname(d), exist_ok=True)
    tmp = f"{d}.gust-link"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(s, tmp)
    os.replace(tmp, d)  # atomically over a file the image has


def sent():
    """What was sent to the container, for hints: "main.py, util/ (in /opt/gust/app)"."""
    parts = []
    for d in (APP_DIR, PYSRC_DIR):
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        shown = [n + "/" if os.path.isdir(os.path.join(d, n)) else n for n in names[:_LIST_MAX]]
        more = f" and {len(names) - _LIST_MAX} more" if len(names) > _LIST_MAX else ""
        parts.append(f"{', '.join(shown) or 'nothing'}{more} (in {d})")
    return "; ".join(parts) or "nothing"


class LocalFileNotFoundError(FileNotFoundError):
    """A file missing under the app's directory: a FileNotFoundError whose message goes
    on with what was sent and how to send more (hint)."""

    hint = ""

    def __str__(self):
        return super().__str__() + ("\n" + self.hint if self.hint else "")


def explain(exc):
    """exc, or a copy of it whose message says which local files reached the container
    and how to add more: for a ModuleNotFoundError, and a FileNotFoundError of a path
    under the app's directory. The copy keeps exc's type (or a subclass of it), its
    attributes and its traceback."""
    if type(exc) is ModuleNotFoundError and not getattr(exc, "_gust_explained", False):
        top = (exc.name or "").split(".")[0] or "..."
        hint = (f"A local module travels when the app's module has imported it by deploy time from its own "
                f"directory tree; add others with Image.add_local_python_source({top!r}), and install libraries "
                f"in the image (Image.pip_install, apt_install). Sent to this container: {sent()}.")
        new = ModuleNotFoundError(f"{exc.msg}\n{hint}", name=exc.name, path=exc.path)
        new._gust_explained = True  # an import failure is explained once, then served
    elif type(exc) is FileNotFoundError and isinstance(exc.filename, str):
        path = os.path.abspath(exc.filename)
        if not path.startswith(APP_DIR + "/"):
            return exc
        new = LocalFileNotFoundError(exc.errno, exc.strerror, exc.filename)
        new.hint = (f"Only Python modules travel on their own: send data files with Image.add_local_file(local_path, "
                    f"\"{path}\") or Image.add_local_dir(local_dir, \"{os.path.dirname(path)}\"). Sent to this "
                    f"container: {sent()}.")
    else:
        return exc
    new.__cause__, new.__context__ = exc.__cause__, exc.__context__
    new.__suppress_context__ = exc.__suppress_context__
    return new.with_traceback(exc.__traceback__)
