"""Local files to a content-addressed tree on gustd, sending only what it lacks:
the files are cut into the store's 4 MiB chunks and hashed here, gustd says which
chunks it is missing (POST /v1/blobs/missing), those are uploaded
(PUT /v1/blobs/sha256:...), and the tree is described by its manifest entries
(POST /v1/mounts), which returns its id. Functions mount trees read-only."""
import hashlib
import json
import os
import stat

from . import _net

CHUNK = 4 << 20
SKIP_DIRS = {"__pycache__", ".git", ".hg", ".svn", ".mypy_cache", ".pytest_cache", ".tox", ".venv", "node_modules"}
MAX_FILES = 100000


class MountError(Exception):
    pass


def _chunks(path):
    """(hex digest, data) of each chunk; an empty file is one empty chunk, as the store
    keeps it."""
    with open(path, "rb") as f:
        first = True
        while True:
            b = f.read(CHUNK)
            if not b and not first:
                return
            first = False
            yield hashlib.sha256(b).hexdigest(), b
            if len(b) < CHUNK:
                return


def _raise(e):
    """os.walk's error handler: a directory that cannot be read is an error, not a
    silent gap in the tree."""
    raise e


def _walk(root, prefix, skip=True, ignore=None):
    """(relative path, absolute path, lstat) of every entry under root, parents first,
    sorted by path; prefix (e.g. "gust") names root itself in the tree. skip: leave
    out caches and version-control directories (SKIP_DIRS, *.pyc). ignore(path
    relative to root, is_dir) -> True leaves a file or a whole directory out; with it,
    a directory is listed only as the parent of a file kept, so a filter such as
    "Python files only" sends no empty directories."""
    out, parents = [], set()
    if prefix:
        parts = prefix.split("/")
        for i in range(1, len(parts)):
            out.append(("/".join(parts[:i]), None, None))
        out.append((prefix, root, os.lstat(root)))
    for d, dirs, files in os.walk(root, onerror=_raise):
        rel = os.path.relpath(d, root)
        rel = "" if rel == "." else rel
        dirs[:] = sorted(x for x in dirs if not (skip and x in SKIP_DIRS) and
                         not (ignore and ignore(os.path.join(rel, x), True)))
        # With ignore, a directory is listed as a parent of what it keeps; a link to
        # one is an entry of its own (os.walk does not go into it).
        listed = [x for x in dirs if os.path.islink(os.path.join(d, x))] if ignore else dirs
        for name in listed + sorted(files):
            r = os.path.join(rel, name)
            if skip and name.endswith((".pyc", ".pyo")) or ignore and ignore(r, False):
                continue
            p = os.path.join(d, name)
            out.append((f"{prefix}/{r}" if prefix else r, p, os.lstat(p)))
            up = os.path.dirname(r) if ignore else ""
            while up and up not in parents:  # its directories, not listed on their own
                parents.add(up)
                out.append((f"{prefix}/{up}" if prefix else up, os.path.join(root, up),
                            os.lstat(os.path.join(root, up))))
                up = os.path.dirname(up)
            if len(out) > MAX_FILES:
                raise MountError(f"{root}: more than {MAX_FILES} files; mount a smaller directory")
    out.sort(key=lambda e: e[0])
    return out


def collect(items, exact=False):
    """The manifest entries of items (as upload takes them), sorted by path without
    the root, and the chunks they need: {hex digest: (local file, offset, length)}."""
    entries, blobs = [], {}
    seen = set()
    for tree_path, local, *rest in items:
        if os.path.isdir(local):
            listing = _walk(local, tree_path, skip=not exact, ignore=rest[0] if rest else None)
        else:
            parts = tree_path.split("/")
            listing = [("/".join(parts[:i]), None, None) for i in range(1, len(parts))]
            listing.append((tree_path, local, os.lstat(local)))
        for rel, path, st in listing:
            if rel in seen:
                continue
            seen.add(rel)
            if st is None or stat.S_ISDIR(st.st_mode):
                mode = st.st_mode & 0o1777 if exact and st is not None else 0o755
                entries.append({"path": rel, "type": "dir", "mode": mode})
            elif stat.S_ISLNK(st.st_mode):
                entries.append({"path": rel, "type": "symlink", "mode": 0o777, "target": os.readlink(path)})
            elif stat.S_ISREG(st.st_mode):
                chunks, size = [], 0
                for digest, data in _chunks(path):
                    chunks.append(digest)
                    blobs.setdefault(digest, (path, size, len(data)))
                    size += len(data)
                mode = st.st_mode & 0o1777 if exact else 0o755 if st.st_mode & 0o111 else 0o644
                entries.append({"path": rel, "type": "file", "mode": mode, "size": size, "chunks": chunks})
    entries = [e for e in entries if e["path"]]     # the root ("" for a directory item) is implied
    entries.sort(key=lambda e: e["path"])
    return entries, blobs


def send_blobs(addr, blobs):
    """Uploads the chunks of blobs (collect's) that gustd says it lacks."""
    if not blobs:
        return
    st_, _, body = _net.request(addr, "POST", "/v1/blobs/missing",
                                json.dumps({"digests": ["sha256:" + d for d in sorted(blobs)]}).encode(),
                                {"Content-Type": "application/json"})
    if st_ != 200:
        raise MountError(f"gustd refused the chunk list: HTTP {st_}: {body[:300]!r}")
    for digest in json.loads(body)["missing"]:
        path, off, n = blobs[digest[len("sha256:"):]]
        with open(path, "rb") as f:
            f.seek(off)
            data = f.read(n)
        st_, _, body = _net.request(addr, "PUT", "/v1/blobs/" + digest, data,
                                    {"Content-Type": "application/octet-stream"})
        if st_ != 201:
            raise MountError(f"uploading {path}: HTTP {st_}: {body[:300]!r}")


def upload(addr, items, exact=False):
    """items: (tree path, local file or directory) pairs, or (tree path, local
    directory, ignore) with _walk's ignore; a directory brings its whole tree under its
    tree path ("" for the root). A tree path given twice keeps its first item. Returns
    the tree id ("sha256:..."). exact (image contents: copy sources, wheels, OCI
    images, a rootfs): every file, with its permission and sticky bits; otherwise
    caches are left out and modes are 0755 or 0644. Every file is read before anything
    is sent, so an unreadable one sends nothing."""
    entries, blobs = collect(items, exact)
    send_blobs(addr, blobs)
    st_, _, body = _net.request(addr, "POST", "/v1/mounts", json.dumps({"entries": entries}).encode(),
                                {"Content-Type": "application/json"})
    if st_ != 200:
        raise MountError(f"gustd refused the tree: HTTP {st_}: {body[:500]!r}")
    return json.loads(body)["id"]
