"""Dicts and queues (Modal's modal.Dict and modal.Queue): named objects of the
token's workspace that gustd keeps in its database, shared by every client and every
function of the workspace, surviving restarts.

    d = gust.Dict.from_name("cache", create_if_missing=True)
    d["k"] = {"any": "picklable"}; d.put("k", 2, skip_if_exists=True); d.pop("k")

    q = gust.Queue.from_name("jobs", create_if_missing=True)
    q.put_many([1, 2, 3]); q.get(timeout=5)   # queue.Empty when nothing came in 5 s

Keys and values travel as pickles (protocol 5; keys compare by their pickled bytes,
so 1 and 1.0 are different keys). Limits are Modal's: a key, value or item is at most
1 MiB pickled; a queue partition holds 5,000 items; a partition key is 1 to 64 bytes.
Only gustd's HTTP API is used, so the same code runs on the host and in a function."""
from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import json
import pickle
import queue as _queue
import time
import urllib.parse
import uuid
from typing import Any, Iterator, List, Optional, Tuple

from . import _net
from .app import _raise_for
from .exception import GustError, InvalidError

# Mirrors gustd's limits (src/control/control.h) so that the SDK says what is wrong
# before sending a megabyte; gustd checks them again.
_VALUE_MAX = 1 << 20
# The longest wait one request asks gustd for (CTL_QUEUE_WAIT_MAX_S): longer waits
# are several requests, as Modal's client does.
_WAIT_MAX_S = 50.0
# put(block=True) on a full partition asks again after this long at first, doubling
# up to _PUT_RETRY_MAX_S: gustd has no waiters for room, only for items.
_PUT_RETRY_S = 0.05
_PUT_RETRY_MAX_S = 1.0


def _dumps(obj: Any, what: str) -> str:
    data = pickle.dumps(obj, protocol=5)
    if len(data) > _VALUE_MAX:
        raise GustError(f"{what} is {len(data)} bytes pickled, over the limit of {_VALUE_MAX} bytes (1 MiB)",
                        "too_large")
    return base64.b64encode(data).decode()


def _loads(text: str) -> Any:
    return pickle.loads(base64.b64decode(text))


@dataclasses.dataclass
class DictInfo:
    """What .info() says of a Dict (Modal's modal.DictInfo). gust records no creator:
    created_by is None."""
    name: Optional[str]
    created_at: datetime.datetime
    created_by: Optional[str]


@dataclasses.dataclass
class QueueInfo:
    """What .info() says of a Queue (Modal's modal.QueueInfo); created_by is None."""
    name: Optional[str]
    created_at: datetime.datetime
    created_by: Optional[str]


class _Object:
    _kind = ""  # "dicts" or "queues"
    _info_class: Any = None

    def __init__(self, name: str, create_if_missing: bool, addr: Optional[str], ephemeral: bool = False) -> None:
        self.name = name
        self._create = create_if_missing
        self._addr = addr
        self._hydrated = False
        self._ephemeral = ephemeral
        self._created_at = 0.0

    @classmethod
    def from_name(cls, name: str, *, environment_name: Optional[str] = None, create_if_missing: bool = False,
                  addr: Optional[str] = None):
        """A reference to the named object, looked up (or created, with
        create_if_missing) on first use, as in Modal. environment_name is accepted for
        Modal's signature; gust has one environment per workspace."""
        return cls(name, create_if_missing, addr)

    @classmethod
    @contextlib.contextmanager
    def ephemeral(cls, *, addr: Optional[str] = None):
        """An object that exists for the `with` block only (deleted at its end; that
        needs a developer token, else it stays and `gust dict|queue delete` removes it)."""
        obj = cls(f"ephemeral-{uuid.uuid4().hex[:16]}", True, addr, ephemeral=True)
        obj._hydrate()
        try:
            yield obj
        finally:
            try:
                cls.delete(obj.name, addr=addr)
            except GustError:
                pass

    @classmethod
    def delete(cls, name: str, *, environment_name: Optional[str] = None, addr: Optional[str] = None) -> None:
        """Deletes the named object and everything in it."""
        st, _, body = _net.request(addr, "DELETE", f"/v1/{cls._kind}/" + urllib.parse.quote(name, safe=""))
        if st != 200:
            _raise_for(st, body)

    @classmethod
    def list(cls, *, addr: Optional[str] = None) -> List[dict]:
        """[{"name", "created_at", "len"}] of the workspace's objects of this kind."""
        st, _, body = _net.request(addr, "GET", f"/v1/{cls._kind}")
        if st != 200:
            _raise_for(st, body)
        return json.loads(body)[cls._kind]

    def _path(self, op: str = "") -> str:
        return f"/v1/{self._kind}/" + urllib.parse.quote(self.name, safe="") + (f"/{op}" if op else "")

    def _hydrate(self) -> None:
        if self._hydrated:
            return
        st, _, body = _net.request(self._addr, "PUT" if self._create else "GET", self._path())
        if st != 200:
            _raise_for(st, body)
        self._created_at = json.loads(body).get("created_at", 0.0)
        self._hydrated = True

    def info(self):
        """The object's name, creation time (local time zone) and creator (None), as
        Modal's .info(): what does not change while it exists."""
        self._hydrate()
        created = datetime.datetime.fromtimestamp(self._created_at, tz=datetime.timezone.utc).astimezone()
        return self._info_class(name=None if self._ephemeral else self.name, created_at=created, created_by=None)

    def _op(self, op: str, fields: Optional[dict] = None, timeout: Optional[float] = None) -> dict:
        self._hydrate()
        st, _, body = _net.request(self._addr, "POST", self._path(op), json.dumps(fields or {}).encode(),
                                   {"Content-Type": "application/json"}, timeout=timeout)
        if st != 200:
            _raise_for(st, body)
        return json.loads(body)

    def __repr__(self) -> str:
        return f"{type(self).__name__}.from_name({self.name!r})"


class Dict(_Object):
    """A persisted dict of picklable keys and values (Modal's modal.Dict)."""
    _kind = "dicts"
    _info_class = DictInfo

    def get(self, key: Any, default: Optional[Any] = None) -> Any:
        r = self._op("get", {"key": _dumps(key, "the key")})
        return _loads(r["value"]) if r["found"] else default

    def __getitem__(self, key: Any) -> Any:
        r = self._op("get", {"key": _dumps(key, "the key")})
        if not r["found"]:
            raise KeyError(key)
        return _loads(r["value"])

    def contains(self, key: Any) -> bool:
        return self._op("contains", {"key": _dumps(key, "the key")})["found"]

    __contains__ = contains

    def put(self, key: Any, value: Any, *, skip_if_exists: bool = False) -> bool:
        """Sets key to value; with skip_if_exists, leaves an existing key as it is.
        Returns whether the value was written."""
        return self._op("put", {"key": _dumps(key, "the key"), "value": _dumps(value, "the value"),
                                "skip_if_exists": skip_if_exists})["written"]

    def __setitem__(self, key: Any, value: Any) -> None:
        self.put(key, value)

    def pop(self, key: Any) -> Any:
        """Removes key and returns its value; KeyError if it is not there."""
        r = self._op("pop", {"key": _dumps(key, "the key")})
        if not r["found"]:
            raise KeyError(key)
        return _loads(r["value"])

    def __delitem__(self, key: Any) -> None:
        self.pop(key)

    def update(self, other: Optional[Any] = None, /, **kwargs: Any) -> None:
        """Sets every pair of other (a mapping or pairs) and kwargs, all or none."""
        pairs = list((other.items() if hasattr(other, "items") else other) or []) + list(kwargs.items())
        self._op("update", {"items": [[_dumps(k, "a key"), _dumps(v, "a value")] for k, v in pairs]})

    def len(self) -> int:
        return self._op("len")["len"]

    __len__ = len

    def clear(self) -> None:
        self._op("clear")

    def _pages(self) -> Iterator[Tuple[Any, Any]]:
        after = None
        while True:
            r = self._op("items", {"after": after})
            for k, v in r["items"]:
                yield _loads(k), _loads(v)
            after = r["next"]
            if after is None:
                return

    def items(self) -> Iterator[Tuple[Any, Any]]:
        return self._pages()

    def keys(self) -> Iterator[Any]:
        return (k for k, _ in self._pages())

    def values(self) -> Iterator[Any]:
        return (v for _, v in self._pages())

    def __iter__(self) -> Iterator[Any]:
        return self.keys()


class Queue(_Object):
    """A persisted FIFO queue of picklable items, in partitions (Modal's modal.Queue).
    A blocked get is answered by gustd as soon as another client puts an item.
    A partition not put into for partition_ttl seconds (a day unless a put says
    otherwise) is removed with its items, as in Modal."""
    _kind = "queues"
    _info_class = QueueInfo

    def put(self, v: Any, block: bool = True, timeout: Optional[float] = None, *, partition: Optional[str] = None,
            partition_ttl: int = 24 * 3600) -> None:
        self.put_many([v], block, timeout, partition=partition, partition_ttl=partition_ttl)

    def put_many(self, vs: List[Any], block: bool = True, timeout: Optional[float] = None, *,
                 partition: Optional[str] = None, partition_ttl: int = 24 * 3600) -> None:
        """Adds vs at the end (all or none). A full partition (5,000 items) raises
        queue.Full at once without block, else when timeout passes (None: never).
        The partition is removed, items and all, once partition_ttl seconds pass
        without a put into it (each put starts the time again)."""
        fields = {"values": [_dumps(v, "an item") for v in vs], "partition": partition,
                  "partition_ttl": partition_ttl}
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = _PUT_RETRY_S
        while True:
            try:
                self._op("put", fields)
                return
            except GustError as e:
                if e.code != "queue_full":
                    raise
                if not block or (deadline is not None and time.monotonic() >= deadline):
                    raise _queue.Full(str(e)) from None
            time.sleep(pause if deadline is None else max(0.0, min(pause, deadline - time.monotonic())))
            pause = min(pause * 2, _PUT_RETRY_MAX_S)

    def _get(self, n: int, block: bool, timeout: Optional[float], partition: Optional[str]) -> List[Any]:
        if not block:
            return [_loads(v) for v in self._op("get", {"n": n, "partition": partition, "timeout": 0})["values"]]
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = _WAIT_MAX_S if deadline is None else max(0.0, min(_WAIT_MAX_S, deadline - time.monotonic()))
            # The socket waits a little longer than gustd, which answers at the end.
            r = self._op("get", {"n": n, "partition": partition, "timeout": wait}, timeout=wait + 30)
            if r["values"]:
                return [_loads(v) for v in r["values"]]
            if deadline is not None and time.monotonic() >= deadline:
                raise _queue.Empty()

    def get(self, block: bool = True, timeout: Optional[float] = None, *, partition: Optional[str] = None) -> Any:
        """Removes and returns the first item. Without block: None when empty. With
        block: waits (for ever when timeout is None) and raises queue.Empty after
        timeout seconds with nothing."""
        values = self._get(1, block, timeout, partition)
        return values[0] if values else None

    def get_many(self, n_values: int, block: bool = True, timeout: Optional[float] = None, *,
                 partition: Optional[str] = None) -> List[Any]:
        """Removes and returns up to n_values items, as soon as there is one (as get)."""
        return self._get(n_values, block, timeout, partition)

    def len(self, *, partition: Optional[str] = None, total: bool = False) -> int:
        """Items in partition (None: the default one), or in all partitions with total."""
        if partition and total:
            raise InvalidError("Partition must be null when requesting total length.")
        return self._op("len", {"partition": partition, "total": total})["len"]

    __len__ = len

    def clear(self, *, partition: Optional[str] = None, all: bool = False) -> None:  # noqa: A002 - Modal's name
        if partition and all:
            raise InvalidError("Partition must be null when requesting to clear all.")
        self._op("clear", {"partition": partition, "all": all})

    def iterate(self, *, partition: Optional[str] = None, item_poll_timeout: float = 0.0) -> Iterator[Any]:
        """Yields the items without taking them, oldest first; then, with
        item_poll_timeout, those put later, until none came for that long."""
        after = 0
        idle_since = time.monotonic()
        while True:
            r = self._op("items", {"partition": partition, "after": after})
            for v in r["values"]:
                yield _loads(v)
            if r["values"]:
                idle_since = time.monotonic()
            if r["next"] is not None:
                after = r["next"]
                continue
            if r["values"]:
                after = r.get("last", after)
            if time.monotonic() - idle_since >= item_poll_timeout:
                return
            time.sleep(min(0.1, item_poll_timeout))
