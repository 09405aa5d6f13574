"""Volumes (Modal's modal.Volume): named, versioned file trees of the token's
workspace that functions mount writable.

    vol = gust.Volume.from_name("weights", create_if_missing=True)

    @app.function(volumes={"/weights": vol})
    def train():
        open("/weights/model.bin", "wb").write(...)
        vol.commit()            # publish this container's changes as a new version

    @app.function(volumes={"/weights": vol})
    def serve():
        vol.reload()            # see the latest committed version
        return open("/weights/model.bin", "rb").read()

A container sees the version current when it started; its writes go to a layer of
its own until commit() publishes them (per file, the last commit wins) or the
container stops normally (a scale-down, an app stop: its changes are committed). A
crash commits nothing. commit() and reload() are refused while the container has a
file of the volume open. From anywhere: read_file, listdir, remove_file and
batch_upload, which sends only the chunks gustd lacks. Only gustd's HTTP API is used,
so the same code runs on the host and in a function."""
from __future__ import annotations

import contextlib
import enum
import json
import os
import tempfile
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import IO, Iterator, List, Optional, Sequence

from . import _mount, _net
from .app import _raise_for
from .exception import GustError, InvalidError

_CHUNK = _mount.CHUNK


class FileEntryType(enum.IntEnum):
    """Modal's api_pb2.FileEntry.FileType values."""
    UNSPECIFIED = 0
    FILE = 1
    DIRECTORY = 2
    SYMLINK = 3


_TYPES = {"file": FileEntryType.FILE, "directory": FileEntryType.DIRECTORY, "symlink": FileEntryType.SYMLINK}


@dataclass(frozen=True)
class FileEntry:
    """An entry of a volume: its path from the volume's root, type, mtime (the time
    of the version it was listed in) and size in bytes."""
    path: str
    type: FileEntryType
    mtime: int
    size: int


def _remote(path: str) -> str:
    """A path in the volume as gustd takes it: relative to the root ("" the root)."""
    return path.strip("/")


class Volume:
    """A reference to a named volume, looked up (or created, with create_if_missing)
    on first use, as in Modal."""

    def __init__(self, name: str, create_if_missing: bool = False, addr: Optional[str] = None) -> None:
        self.name = name
        self._create = create_if_missing
        self._addr = addr
        self._hydrated = False

    @classmethod
    def from_name(cls, name: str, *, environment_name: Optional[str] = None, create_if_missing: bool = False,
                  version: Optional[int] = None, addr: Optional[str] = None) -> "Volume":
        """environment_name and version are accepted for Modal's signature (gust has
        one environment per workspace and one kind of volume)."""
        return cls(name, create_if_missing, addr)

    @classmethod
    @contextlib.contextmanager
    def ephemeral(cls, *, addr: Optional[str] = None) -> Iterator["Volume"]:
        """A volume that exists for the `with` block only."""
        vol = cls(f"ephemeral-{uuid.uuid4().hex[:16]}", True, addr)
        vol.hydrate()
        try:
            yield vol
        finally:
            try:
                cls.delete(vol.name, addr=addr)
            except GustError:
                pass

    @classmethod
    def delete(cls, name: str, *, environment_name: Optional[str] = None, addr: Optional[str] = None) -> None:
        """Deletes the named volume (refused while a running container mounts it)."""
        st, _, body = _net.request(addr, "DELETE", "/v1/volumes/" + urllib.parse.quote(name, safe=""))
        if st != 200:
            _raise_for(st, body)

    @classmethod
    def list(cls, *, addr: Optional[str] = None) -> List[dict]:
        """[{"name", "version", "created_at", "updated_at"}] of the workspace's volumes."""
        st, _, body = _net.request(addr, "GET", "/v1/volumes")
        if st != 200:
            _raise_for(st, body)
        return json.loads(body)["volumes"]

    def _path(self, op: str = "") -> str:
        return "/v1/volumes/" + urllib.parse.quote(self.name, safe="") + (f"/{op}" if op else "")

    def hydrate(self) -> "Volume":
        """Looks the volume up (creating it with create_if_missing): done on first use."""
        if not self._hydrated:
            st, _, body = _net.request(self._addr, "PUT" if self._create else "GET", self._path())
            if st != 200:
                _raise_for(st, body)
            self._hydrated = True
        return self

    def _request(self, method: str, op: str, fields: Optional[dict] = None, query: Optional[dict] = None):
        self.hydrate()
        path = self._path(op) + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(fields).encode() if fields is not None else None
        st, _, body = _net.request(self._addr, method, path, data,
                                   {"Content-Type": "application/json"} if data is not None else None)
        if st != 200:
            try:
                err = json.loads(body).get("error") or {}
            except ValueError:
                err = {}
            code, msg = err.get("code"), err.get("message", "")
            if code == "volume_busy":
                raise RuntimeError(msg)
            if st == 404 and err.get("field") == "path":
                raise FileNotFoundError(msg)
            if code == "file_exists":
                raise FileExistsError(msg)
            _raise_for(st, body)
        return body

    # ---- in a container --------------------------------------------------------

    def commit(self) -> None:
        """Publishes this container's changes to the volume as a new version (per
        file, the last commit wins) and moves the container onto it. Inside a
        function that mounts the volume; refused (RuntimeError) while one of its
        files is open."""
        self._request("POST", "commit", {})

    def reload(self) -> None:
        """Moves this container onto the volume's latest version; its uncommitted
        changes stay on top. Refused (RuntimeError) while one of its files is open."""
        self._request("POST", "reload", {})

    # ---- from anywhere ---------------------------------------------------------

    def iterdir(self, path: str, *, recursive: bool = True) -> Iterator[FileEntry]:
        """The entries under path (a file: that file), as listdir."""
        yield from self.listdir(path, recursive=recursive)

    def listdir(self, path: str, *, recursive: bool = False) -> List[FileEntry]:
        """The entries in the directory at path (all below it when recursive); for a
        file, that file alone. FileNotFoundError when there is nothing at path."""
        body = self._request("GET", "entries", query={"path": _remote(path), "recursive": int(recursive)})
        return [FileEntry(e["path"], _TYPES.get(e["type"], FileEntryType.UNSPECIFIED), int(e["mtime"]), e["size"])
                for e in json.loads(body)["entries"]]

    def read_file(self, path: str) -> Iterator[bytes]:
        """The file's bytes, a chunk (at most 4 MiB) at a time."""
        entries = self.listdir(path)
        if len(entries) != 1 or entries[0].type != FileEntryType.FILE or entries[0].path != _remote(path):
            raise FileNotFoundError(f"{path}: not a file in volume {self.name}")
        n = max(1, -(-entries[0].size // _CHUNK))
        for k in range(n):
            yield self._request("GET", "file", query={"path": _remote(path), "chunk": k})

    def read_file_into_fileobj(self, path: str, fileobj: IO[bytes]) -> int:
        """Writes the file to fileobj; returns the number of bytes."""
        n = 0
        for chunk in self.read_file(path):
            fileobj.write(chunk)
            n += len(chunk)
        return n

    def remove_file(self, path: str, recursive: bool = False) -> None:
        """Removes the file or directory at path (a directory that is not empty only
        with recursive=True), as a new version."""
        self._request("POST", "remove", {"path": _remote(path), "recursive": recursive})

    def copy_files(self, src_paths: Sequence[str], dst_path: str, recursive: bool = False) -> None:
        """Copies files within the volume as UNIX cp does: into dst_path when it is a
        directory (several sources need one), else to dst_path itself; a directory
        only with recursive=True. One new version; no file's bytes are copied (the
        chunks are shared). Inside a function that mounts the volume, use the file
        system and commit() instead, as in Modal."""
        if isinstance(src_paths, (str, bytes)):
            raise InvalidError("copy_files: src_paths is a list of paths (for one file: [path])")
        self._request("POST", "copy", {"src_paths": [_remote(p) for p in src_paths], "dst_path": _remote(dst_path),
                                       "recursive": recursive})

    def batch_upload(self, force: bool = False) -> "_BatchUpload":
        """with vol.batch_upload() as batch: batch.put_file(...); batch.put_directory(...)
        — the files are sent when the block ends, as one new version. Without force,
        a file that exists already is an error (FileExistsError) and nothing is
        changed."""
        return _BatchUpload(self, force)

    def __repr__(self) -> str:
        return f"Volume.from_name({self.name!r})"


class _BatchUpload:
    def __init__(self, vol: Volume, force: bool) -> None:
        self._vol = vol
        self._force = force
        self._items: list = []
        self._modes: dict = {}
        self._tmp: list = []

    def __enter__(self) -> "_BatchUpload":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            return
        vol = self._vol
        vol.hydrate()
        try:
            entries, blobs = _mount.collect(self._items, exact=True)
            for e in entries:
                if e["path"] in self._modes:
                    e["mode"] = self._modes[e["path"]] & 0o777
            _mount.send_blobs(vol._addr, blobs)
        except (_mount.MountError, OSError) as e:
            raise GustError(f"uploading to volume {vol.name}: {e}") from e
        finally:
            for t in self._tmp:
                os.unlink(t)
        vol._request("POST", "files", {"changes": entries, "force": self._force})

    def put_file(self, local_file, remote_path: str, mode: Optional[int] = None) -> None:
        """local_file: a path or a binary file object; remote_path: where in the volume."""
        remote = _remote(remote_path)
        if not remote:
            raise GustError("put_file: remote_path must name a file in the volume, not its root")
        if not isinstance(local_file, (str, os.PathLike)):
            with tempfile.NamedTemporaryFile(delete=False) as tmp:
                tmp.write(local_file.read())
            self._tmp.append(tmp.name)
            local_file = tmp.name
        if mode is not None:
            self._modes[remote] = mode
        self._items.append((remote, os.fspath(local_file)))

    def put_directory(self, local_path, remote_path: str, recursive: bool = True) -> None:
        """The directory's files (with recursive, everything below it) under remote_path."""
        local = os.fspath(local_path)
        if not os.path.isdir(local):
            raise NotADirectoryError(local)
        if recursive:
            self._items.append((_remote(remote_path), local))
            return
        for name in sorted(os.listdir(local)):
            p = os.path.join(local, name)
            if os.path.isfile(p):
                self._items.append(("/".join(x for x in (_remote(remote_path), name) if x), p))
