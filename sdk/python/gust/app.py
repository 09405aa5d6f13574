"""Client side of Python functions: an App of decorated functions and classes,
deployed to gustd, called with .remote() / .spawn() / .map(). Arguments and results
travel as pickle (protocol 5). The function's source (its module file, or its package
directory) and this SDK travel as content-addressed trees, uploaded only where gustd
lacks a chunk, and are mounted read-only into every container of the function
(/opt/gust/app and /opt/gust/sdk), so a change of source needs no image build."""
from __future__ import annotations

import asyncio
import base64
import functools
import inspect
import json
import os
import pickle
import struct
import sys
import threading
import time
import urllib.parse
from typing import (TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Dict, Generic, Iterable, Iterator,
                    Literal, Mapping, NoReturn, Optional, Sequence, TextIO, Tuple, TypeVar, Union, overload)

from . import _mount, _net, _sources
from ._container.proto import EXC_TAG
from ._container.sources import APP_DIR, FILES_DIR
from .image import BuildError, Image, _show
from .secret import Secret, resolve as _resolve_secrets

if TYPE_CHECKING:  # type checkers know typing_extensions whatever the Python version
    from typing_extensions import Concatenate, ParamSpec
elif sys.version_info >= (3, 10):
    from typing import ParamSpec
else:  # Python 3.9: no ParamSpec, and at run time P only has to be a type variable
    ParamSpec = TypeVar
P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)

SDK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class GustError(Exception):
    """gustd refused a request, or a call failed in a way that is not the function's
    own exception. code: gustd's error code."""

    def __init__(self, message: str, code: Optional[str] = None, call_id: Optional[str] = None) -> None:
        super().__init__(message)
        self.code = code
        self.call_id = call_id


class FunctionTimeoutError(GustError):
    """The input ran past the function's timeout and was stopped."""


class OutOfMemoryError(GustError):
    """The container ran out of its memory limit while running the input."""


class ContainerCrashError(GustError):
    """The function's process died (a signal, or it exited) while running the input."""


class RemoteError(GustError):
    """The function raised an exception that cannot be rebuilt here."""


class InvalidError(GustError):
    """The call does not fit the function, as in Modal: .remote() of a generator function
    (use .remote_gen()), .remote_gen() of one that is not, .spawn() or .map() of a
    generator."""


_ERRORS_BY_CODE: Dict[Optional[str], type] = {"timeout": FunctionTimeoutError, "oom": OutOfMemoryError,
                                               "crashed": ContainerCrashError, "not_generator": InvalidError,
                                               "not_generator_call": InvalidError}


class Retries:
    """How a failed input is retried: gust.Retries(max_retries=3, backoff_coefficient=2.0,
    initial_delay=1.0, max_delay=60.0); retries=N is the same with the defaults."""

    def __init__(self, max_retries: int, backoff_coefficient: float = 2.0, initial_delay: float = 1.0,
                 max_delay: float = 60.0) -> None:
        self.max_retries = int(max_retries)
        self.backoff_coefficient = float(backoff_coefficient)
        self.initial_delay = float(initial_delay)
        self.max_delay = float(max_delay)

    def spec(self) -> Dict[str, Any]:
        return {"max_retries": self.max_retries, "backoff_coefficient": self.backoff_coefficient,
                "initial_delay": self.initial_delay, "max_delay": self.max_delay}


_request = _net.request
# Inputs are pickled bytes; gustd answers 415 to a body without its media type.
_INPUT_HEADERS = {"Content-Type": "application/octet-stream"}
SDK_MOUNT = "/opt/gust/sdk"


class _MapProgress:
    """"map: 120/1000 done (3 failed)" on stderr, redrawn at most 5 times a second,
    when stderr is a terminal or GUST_PROGRESS=1."""

    def __init__(self, name, total):
        self.on = total > 1 and (os.environ.get("GUST_PROGRESS") == "1" or
                                 (os.environ.get("GUST_PROGRESS") != "0" and sys.stderr.isatty()))
        self.name, self.total, self.done, self.failed, self.last = name, total, 0, 0, 0.0

    def step(self, ok):
        self.done += 1
        self.failed += 0 if ok else 1
        now = time.monotonic()
        if self.on and (now - self.last >= 0.2 or self.done == self.total):
            self.last = now
            fail = f" ({self.failed} failed)" if self.failed else ""
            end = "\n" if self.done == self.total else ""
            sys.stderr.write(f"\r{self.name}.map: {self.done}/{self.total} done{fail}{end}")
            sys.stderr.flush()


def _load_result(data, what):
    """Unpickles a result; a type that does not exist here is a clear error, not a bare
    ModuleNotFoundError from deep inside pickle."""
    try:
        return pickle.loads(data)
    except (ModuleNotFoundError, AttributeError) as e:
        raise GustError(f"the result of {what} cannot be unpickled here ({e}): return plain Python types, or "
                        f"install that module on this machine too", "unpicklable_result") from e


def _raise_for(status: int, body: bytes) -> NoReturn:
    try:
        j = json.loads(body)
    except ValueError:
        raise GustError(f"HTTP {status}: {body[:300]!r}") from None
    err = j.get("error") or {}
    code, msg = err.get("code"), err.get("message", "")
    _raise_error(code, msg, j.get("call_id"))


def _raise_error(code: Optional[str], msg: str, call_id: Optional[str] = None) -> NoReturn:
    if EXC_TAG in msg:
        head, _, rest = msg.partition(EXC_TAG)
        blob, _, tb = rest.partition("\n")
        exc = None
        if blob:
            try:
                exc = pickle.loads(base64.b64decode(blob))
            except Exception:  # its type is not importable here
                exc = None
        if isinstance(exc, BaseException):
            exc.__cause__ = RemoteError("remote traceback:\n" + tb, code, call_id)
            raise exc
        raise RemoteError(head.strip() + "\n" + tb, code, call_id)
    raise _ERRORS_BY_CODE.get(code, GustError)(msg, code, call_id)


class _AioBound(Generic[P, R]):
    """A method with its asyncio form, as Modal's objects have them: f.remote(x) blocks
    here; `await f.remote.aio(x)` (or `async for v in f.map.aio(...)`) does the same from
    a coroutine without blocking its event loop."""

    __slots__ = ("_f", "aio")

    def __init__(self, f: Callable[P, R], aio: Callable[P, Any]) -> None:
        self._f = f
        self.aio = aio

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._f(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<{self._f!r} with .aio>"


class _AioMethod(Generic[P, R]):
    """The descriptor @_aio makes of a method: on an object, an _AioBound."""

    def __init__(self, f: Callable[..., R], kind: str) -> None:
        self._f = f
        self._kind = kind
        functools.update_wrapper(self, f)

    @overload
    def __get__(self, obj: None, objtype: Any = None) -> _AioMethod[P, R]: ...
    @overload
    def __get__(self, obj: Any, objtype: Any = None) -> _AioBound[P, R]: ...

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return self
        bound = self._f.__get__(obj, objtype)
        return _AioBound(bound, _aio_form(bound, self._kind))


def _aio(kind: str = "call") -> Callable[[Callable[Concatenate[Any, P], R]], _AioMethod[P, R]]:
    """Gives a method an .aio form. kind "call": an awaitable of its result (the blocking
    request runs on a thread of the loop's default executor); "iter": an async iterator
    over what its iterator yields; "map": the same, and async iterables among the
    arguments are read first."""
    def wrap(f):
        return _AioMethod(f, kind)
    return wrap


# Values a thread reading a blocking iterator may hold for an async consumer before
# it waits for the consumer (bounds the memory of a slow consumer).
_AIO_AHEAD = 1024


def _aio_form(bound: Callable[..., Any], kind: str) -> Callable[..., Any]:
    if kind == "call":
        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.get_running_loop().run_in_executor(None, functools.partial(bound, *args, **kwargs))
        return call

    async def iterate(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        if kind == "map":
            read = []
            for a in args:
                read.append([v async for v in a] if hasattr(a, "__aiter__") else a)
            args = tuple(read)
        async for v in _thread_iter(lambda: bound(*args, **kwargs)):
            yield v
    return iterate


async def _thread_iter(make: Callable[[], Iterable[Any]]) -> AsyncIterator[Any]:
    """What make()'s iterator yields, read on a thread of its own (the blocking requests
    stay off the event loop) and handed over through a queue; at most _AIO_AHEAD
    values ahead of the consumer. A consumer that stops early stops the thread after
    its next value, which closes the iterator (a remote_gen's call is cancelled)."""
    loop = asyncio.get_running_loop()
    q: asyncio.Queue = asyncio.Queue()
    room = threading.Semaphore(_AIO_AHEAD)
    stop = threading.Event()
    end = object()

    def put(v: Any, exc: Optional[BaseException] = None) -> None:
        try:
            loop.call_soon_threadsafe(q.put_nowait, (v, exc))
        except RuntimeError:  # the loop is closed: nobody is reading
            stop.set()

    def pump() -> None:
        try:
            it = iter(make())
            try:
                for v in it:
                    room.acquire()
                    if stop.is_set():
                        break
                    put(v)
            finally:
                close = getattr(it, "close", None)
                if close:
                    close()
            put(end)
        except BaseException as e:  # raised on the consumer's side
            put(end, e)

    threading.Thread(target=pump, name="gust-aio", daemon=True).start()
    try:
        while True:
            v, exc = await q.get()
            if v is end:
                if exc is not None:
                    raise exc
                return
            room.release()
            yield v
    finally:
        stop.set()
        room.release()


# GET /v1/calls/{id}/items: each item is a u64 little-endian length and its bytes
# after the JSON line (docs/API.md "Generator items").
_ITEM_LEN = struct.Struct("<Q")
# Seconds one poll for items waits when there are none (the server answers as soon as
# one arrives); a poll that ends empty is simply repeated.
_ITEMS_POLL_S = 30


def _parse_items(body: bytes) -> Tuple[Dict[str, Any], list]:
    """The JSON line and the items of an items answer."""
    nl = body.index(b"\n")
    head = json.loads(body[:nl])
    off, items = nl + 1, []
    for _ in range(head["next"] - head["from"]):
        (n,) = _ITEM_LEN.unpack_from(body, off)
        off += _ITEM_LEN.size
        items.append(body[off:off + n])
        off += n
    return head, items


def _read_items(addr: Optional[str], call_id: str, name: str) -> Iterator[Any]:
    """The values of generator call call_id as the function yields them; its exception
    at the end if it failed. Closed early, the call is cancelled."""
    nxt, finished = 0, False
    try:
        while True:
            st, _, body = _request(addr, "GET", f"/v1/calls/{call_id}/items?from={nxt}&timeout={_ITEMS_POLL_S}")
            if st != 200:
                finished = True
                _raise_for(st, body)
            head, items = _parse_items(body)
            if head["done"]:
                finished = True
            for data in items:
                yield _load_result(data, name)
            nxt = head["next"]
            if head["done"]:
                if items:  # says the last items were taken, so gustd lets them go now
                    _request(addr, "GET", f"/v1/calls/{call_id}/items?from={nxt}&timeout=0")
                err = head.get("error")
                if err:
                    _raise_error(err.get("code"), err.get("message", ""), call_id)
                return
    finally:
        if not finished:
            try:
                _request(addr, "POST", f"/v1/calls/{call_id}/cancel")
            except OSError:
                pass


def _is_generator_function(f: Any) -> bool:
    return inspect.isgeneratorfunction(f) or inspect.isasyncgenfunction(f)


class FunctionCall(Generic[R]):
    """A call started with .spawn(): .get() waits for its result, .cancel() stops it."""

    def __init__(self, fn: Function[..., R], call_id: str) -> None:
        self.function = fn
        self.object_id = call_id

    @_aio()
    def get(self, timeout: Optional[float] = None) -> R:
        wait = 600 if timeout is None else min(600, timeout)
        while True:
            st, _, body = _request(self.function.app.addr, "GET", f"/v1/calls/{self.object_id}?wait={wait:g}")
            if st == 200:
                return _load_result(body, self.function.name)
            if st == 202:
                if timeout is not None:
                    raise TimeoutError(f"call {self.object_id} is not done after {timeout} s")
                continue
            _raise_for(st, body)

    @_aio()
    def cancel(self) -> None:
        _request(self.function.app.addr, "POST", f"/v1/calls/{self.object_id}/cancel")


def _request_limit(name: str, v: Any, conv: Callable[[Any], int]) -> Any:
    """A cpu or memory option as the spec takes it: N or (request, limit) -> N or
    [REQUEST, LIMIT], each converted by conv (gustd checks the ranges and that the
    request does not exceed the limit)."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name}: expected a number or a (request, limit) pair, got {v!r}")
        return [conv(v[0]), conv(v[1])]
    return conv(v)


class Function(Generic[P, R]):
    """A function of an App (what @app.function() returns): .remote() runs it in a
    container and returns its result, .local() (or a plain call) runs it here."""

    def __init__(self, app: App, f: Optional[Callable[P, R]], options: Dict[str, Any],
                 name: Optional[str] = None) -> None:
        self.app = app
        self.raw_f = f
        self.name: str = name or f.__name__  # type: ignore[union-attr]  # f is None only with a name
        self.options = options

    @classmethod
    def from_name(cls, app_name: str, name: str, addr: Optional[str] = None) -> Function[..., Any]:
        """A deployed function, to call without its source: Function.from_name("demo", "square")."""
        return cls(App(app_name, addr=addr), None, {}, name=name)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.local(*args, **kwargs)

    def local(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self.raw_f is None:
            raise GustError(f"{self.app.name}.{self.name} was looked up by name: it has no local code")
        return self.raw_f(*args, **kwargs)

    @property
    def is_generator(self) -> Optional[bool]:
        """Whether the function is a generator (def with yield, or async def with yield):
        call it with .remote_gen(). None when it was looked up by name (gustd then tells
        a misuse apart: InvalidError); None for a class too (its methods tell)."""
        if self.raw_f is None or isinstance(self.raw_f, type):
            return None
        return _is_generator_function(self.raw_f)

    def _path(self, what: str) -> str:
        return f"/v1/functions/{urllib.parse.quote(self.app.name)}/{urllib.parse.quote(self.name)}/{what}"

    @_aio()
    def remote(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self.is_generator:
            raise InvalidError("A generator function cannot be called with `.remote(...)`. Use `.remote_gen(...)` "
                               "instead.")
        body = pickle.dumps((args, kwargs), protocol=5)
        st, _, out = _request(self.app.addr, "POST", self._path("call"), body, _INPUT_HEADERS)
        if st == 200:
            return _load_result(out, self.name)
        _raise_for(st, out)

    @_aio()
    def spawn(self, *args: P.args, **kwargs: P.kwargs) -> FunctionCall[R]:
        if self.is_generator:
            raise InvalidError("Cannot `spawn` a generator function.")
        body = pickle.dumps((args, kwargs), protocol=5)
        st, _, out = _request(self.app.addr, "POST", self._path("spawn"), body, _INPUT_HEADERS)
        if st != 202:
            _raise_for(st, out)
        return FunctionCall(self, json.loads(out)["call_id"])

    @_aio("iter")
    def remote_gen(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        """Runs a generator function remotely and yields its values as it yields them
        (`for v in f.remote_gen(x)` while it still runs; `async for v in
        f.remote_gen.aio(x)` from a coroutine). Its exception is raised after the values
        it yielded before it. Stopping early cancels the call."""
        if self.is_generator is False:
            raise InvalidError("A non-generator function cannot be called with `.remote_gen(...)`. Use "
                               "`.remote(...)` instead.")
        body = pickle.dumps((args, kwargs), protocol=5)
        st, _, out = _request(self.app.addr, "POST", self._path("generate"), body, _INPUT_HEADERS)
        if st != 202:
            _raise_for(st, out)
        yield from _read_items(self.app.addr, json.loads(out)["call_id"], self.name)

    @overload
    def starmap(self, arg_tuples: Iterable[Sequence[Any]], order_outputs: bool = ...,
                return_exceptions: Literal[False] = ..., kwargs: Optional[Mapping[str, Any]] = ...) -> Iterator[R]: ...
    @overload
    def starmap(self, arg_tuples: Iterable[Sequence[Any]], order_outputs: bool = ..., *,
                return_exceptions: Literal[True], kwargs: Optional[Mapping[str, Any]] = ...
                ) -> Iterator[Union[R, BaseException]]: ...

    @_aio("map")
    def starmap(self, arg_tuples: Iterable[Sequence[Any]], order_outputs: bool = True, return_exceptions: bool = False,
                kwargs: Optional[Mapping[str, Any]] = None) -> Iterator[Any]:
        """Calls the function once per tuple of arguments, in parallel; yields the results
        (in input order unless order_outputs=False). A failed input raises its exception,
        or with return_exceptions=True is yielded as it."""
        self._check_map("starmap")
        return self._starmap(arg_tuples, order_outputs, return_exceptions, kwargs)

    def _starmap(self, arg_tuples: Iterable[Sequence[Any]], order_outputs: bool, return_exceptions: bool,
                 kwargs: Optional[Mapping[str, Any]]) -> Iterator[Any]:
        lines = []
        kw = dict(kwargs or {})
        for a in arg_tuples:
            blob = pickle.dumps((tuple(a), kw), protocol=5)
            lines.append(b'{"b64":"' + base64.b64encode(blob) + b'"}')
        if not lines:
            return
        body = b"\n".join(lines) + b"\n"
        progress = _MapProgress(self.name, len(lines))
        conn, r = _net.stream(self.app.addr, "POST", self._path("map") + ("?ordered=1" if order_outputs else ""),
                              body, {"Content-Type": "application/x-ndjson"})
        try:
            if r.status != 200:
                _raise_for(r.status, r.read())
            for raw in r:
                ev = json.loads(raw)
                if ev.get("done"):
                    return
                if ev["status"] == "succeeded":
                    progress.step(True)
                    data = base64.b64decode(ev["output_b64"]) if "output_b64" in ev else ev["output"].encode()
                    yield _load_result(data, self.name)
                    continue
                progress.step(False)
                err = ev.get("error") or {}
                try:
                    _raise_error(err.get("code"), err.get("message", ""), ev.get("call_id"))
                except BaseException as exc:
                    if not return_exceptions:
                        raise
                    yield exc
        finally:
            conn.close()

    @overload
    def map(self, *iterables: Iterable[Any], order_outputs: bool = ..., return_exceptions: Literal[False] = ...,
            kwargs: Optional[Mapping[str, Any]] = ...) -> Iterator[R]: ...
    @overload
    def map(self, *iterables: Iterable[Any], order_outputs: bool = ..., return_exceptions: Literal[True],
            kwargs: Optional[Mapping[str, Any]] = ...) -> Iterator[Union[R, BaseException]]: ...

    @_aio("map")
    def map(self, *iterables: Iterable[Any], order_outputs: bool = True, return_exceptions: bool = False,
            kwargs: Optional[Mapping[str, Any]] = None) -> Iterator[Any]:
        """starmap over zip(*iterables): f.map([1, 2], [3, 4]) calls f(1, 3) and f(2, 4)."""
        self._check_map("map")
        return self._starmap(zip(*iterables), order_outputs, return_exceptions, kwargs)

    def _check_map(self, how: str) -> None:
        if self.is_generator:
            raise InvalidError(f"A generator function cannot be called with `.{how}(...)`.")

    @_aio()
    def for_each(self, *iterables: Iterable[Any], kwargs: Optional[Mapping[str, Any]] = None) -> None:
        """map, for the side effects: waits for every input, ignores results and failures."""
        for _ in self.map(*iterables, kwargs=kwargs, order_outputs=False, return_exceptions=True):
            pass

    def _source(self) -> Tuple[str, str]:
        """(module file, qualified name) of the decorated function or class."""
        code = getattr(self.raw_f, "__code__", None)
        if code is None:  # a class: the file of one of its methods
            code = next((v.__code__ for v in vars(self.raw_f).values() if hasattr(v, "__code__")), None)
        if code is None:
            raise GustError(f"{self.name}: cannot tell which file defines it")
        module_file = os.path.abspath(code.co_filename)
        if not module_file.endswith(".py") or not os.path.isfile(module_file):
            raise GustError(f"{self.name}: defined in {module_file}, not a .py file; define functions in a module file")
        return module_file, self.raw_f.__qualname__  # type: ignore[union-attr]

    def spec(self, mounts: Optional[Tuple[str, str, str, Optional[str]]] = None, secrets: Sequence[str] = (),
             addr: Optional[str] = None) -> Dict[str, Any]:
        """The function's spec. mounts: (sdk tree id, app tree id, path of the module
        in the app tree, files tree id or None), as App.deploy uploads them; addr:
        where the image's local paths are uploaded (App.deploy's gustd), None to leave
        them as paths."""
        module_file, qualname = self._source()
        sdk_id, app_id, rel, files_id = mounts or ("sha256:" + "0" * 64, "sha256:" + "0" * 64,
                                                   os.path.basename(module_file), None)
        o = self.options
        image = o.get("image") or Image.debian_slim()
        f: Dict[str, Any] = {"name": self.name, "kind": "exec", "mode": "runner",
             "command": ["python3", "-m", "gust._container.runner", f"{APP_DIR}/{rel}", qualname],
             "image": image.spec_value(addr),
             "mounts": [{"path": SDK_MOUNT, "image": sdk_id}, {"path": APP_DIR, "image": app_id}] +
                       ([{"path": FILES_DIR, "image": files_id}] if files_id else []),
             "env": dict(o.get("env") or {}, PYTHONPATH=SDK_MOUNT, PYTHONUNBUFFERED="1",
                         PYTHONDONTWRITEBYTECODE="1")}
        if secrets:
            f["secrets"] = list(secrets)
        res = {}
        if o.get("cpu") is not None:
            # Cores, as in Modal; the spec takes millicores.
            res["cpu"] = _request_limit("cpu", o["cpu"], lambda x: int(round(float(x) * 1000)))
        if o.get("memory") is not None:
            res["memory"] = _request_limit("memory", o["memory"], int)  # MiB
        if o.get("gpu"):
            res["gpu"] = o["gpu"]
        if res:
            f["resources"] = res
        sc = {k: o[k] for k in ("min_containers", "max_containers", "buffer_containers", "scaledown_window",
                                "max_inputs") if o.get(k) is not None}
        if o.get("max_inputs"):
            f["env"]["GUST_MAX_INPUTS"] = str(int(o["max_inputs"]))
        if sc:
            f["scaling"] = sc
        if o.get("timeout") is not None:
            f["timeout"] = int(o["timeout"])
        if o.get("snapshot"):
            f["snapshot"] = True
        if isinstance(o.get("retries"), Retries):
            f["retries"] = o["retries"].spec()
        elif o.get("retries") is not None:
            f["retries"] = int(o["retries"])
        return f


def enter(snap: bool = False) -> Callable[[F], F]:
    """Marks a method of an @app.cls class that runs once per container before inputs.
    snap=True hooks run first; with snapshot=True they run once, in the snapshot
    template (no GPUs there), and every container forked from it starts after them.
    snap=False hooks run in every container (with its GPUs)."""
    def wrap(f):
        f._gust_enter = "snap" if snap else "post"
        return f
    return wrap


def exit() -> Callable[[F], F]:  # noqa: A001 - the name Modal users know
    """Marks a method that runs when the container stops."""
    def wrap(f):
        f._gust_exit = True
        return f
    return wrap


def method() -> Callable[[Callable[Concatenate[Any, P], R]], _Method[P, R]]:
    """Marks a method callable remotely: Model().predict.remote(x)."""
    def wrap(f):
        f._gust_method = True
        return f
    return wrap


class _BoundMethod(Generic[P, R]):
    """A @gust.method() of the object Cls() gives: .remote / .spawn / .map."""

    def __init__(self, fn: Function[..., Any], method_name: str) -> None:
        self._fn = fn
        self._method = method_name

    def _wrap(self, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
        return ((self._method,) + tuple(args), kwargs)

    @property
    def is_generator(self) -> Optional[bool]:
        if self._fn.raw_f is None:
            return None
        return _is_generator_function(getattr(self._fn.raw_f, self._method, None))

    @_aio()
    def remote(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self.is_generator:
            raise InvalidError("A generator method cannot be called with `.remote(...)`. Use `.remote_gen(...)` "
                               "instead.")
        a, k = self._wrap(args, kwargs)
        return self._fn.remote(*a, **k)

    @_aio()
    def spawn(self, *args: P.args, **kwargs: P.kwargs) -> FunctionCall[R]:
        if self.is_generator:
            raise InvalidError("Cannot `spawn` a generator method.")
        a, k = self._wrap(args, kwargs)
        return self._fn.spawn(*a, **k)

    @_aio("iter")
    def remote_gen(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        """A generator method's values as it yields them (Function.remote_gen)."""
        if self.is_generator is False:
            raise InvalidError("A non-generator method cannot be called with `.remote_gen(...)`. Use "
                               "`.remote(...)` instead.")
        a, k = self._wrap(args, kwargs)
        yield from self._fn.remote_gen(*a, **k)

    @_aio("map")
    def map(self, *iterables: Iterable[Any], **kw: Any) -> Iterator[Any]:
        if self.is_generator:
            raise InvalidError("A generator method cannot be called with `.map(...)`.")
        return self._fn.starmap(((self._method,) + tuple(t) for t in zip(*iterables)), **kw)


if TYPE_CHECKING:
    class _Method(Generic[P, R]):
        """What type checkers see of a @gust.method() (at run time it stays the plain
        function): on an instance, the method itself (self.predict(x) in the class)
        with .remote / .spawn / .map (Model().predict.remote(x))."""

        def __get__(self, obj: Any, objtype: Any = None) -> _MethodCall[P, R]: ...

    class _MethodCall(_BoundMethod[P, R]):
        def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...


class Cls:
    """A deployed class: Cls() gives an object whose @gust.method()s have .remote()."""

    def __init__(self, fn: Function[..., Any], user_cls: type) -> None:
        self._fn = fn
        self._user_cls = user_cls

    def __call__(self) -> Any:
        obj = self

        class _Obj:
            def __getattr__(self, name: str) -> _BoundMethod[..., Any]:
                m = getattr(obj._user_cls, name, None)
                if m is None or not getattr(m, "_gust_method", False):
                    raise AttributeError(f"{obj._user_cls.__name__}.{name} is not a @gust.method()")
                return _BoundMethod(obj._fn, name)
        return _Obj()


class App:
    """A named group of functions and classes, deployed together. addr: gustd's
    "host:port" ($GUST_ADDR, else 127.0.0.1:8470)."""

    def __init__(self, name: str, addr: Optional[str] = None) -> None:
        self.name = name
        self.addr = addr
        self.registered_functions: Dict[str, Function[..., Any]] = {}
        self.local_entrypoints: Dict[str, Callable[..., Any]] = {}

    def local_entrypoint(self) -> Callable[[F], F]:
        """Marks the function `gust run FILE.py` calls (after deploying the app, which
        is stopped again when it returns)."""
        def wrap(f):
            self.local_entrypoints[f.__name__] = f
            return f
        return wrap

    def stop(self) -> None:
        st, _, body = _request(self.addr, "POST", f"/v1/apps/{urllib.parse.quote(self.name)}/stop")
        if st != 200:
            _raise_for(st, body)

    def function(self, image: Optional[Image] = None, cpu: Union[float, Tuple[float, float], None] = None,
                 memory: Union[int, Tuple[int, int], None] = None,
                 gpu: Union[str, Sequence[str], None] = None, min_containers: Optional[int] = None,
                 max_containers: Optional[int] = None, buffer_containers: Optional[int] = None,
                 scaledown_window: Optional[int] = None, timeout: Optional[int] = None,
                 retries: Union[int, Retries, None] = None, env: Optional[Mapping[str, str]] = None,
                 max_inputs: Optional[int] = None, secrets: Sequence[Secret] = (),
                 snapshot: bool = False) -> Callable[[Callable[P, R]], Function[P, R]]:
        """cpu (cores) and memory (MiB) are what is reserved for each container; as in
        Modal, (request, limit) adds a hard limit. CPU beyond the request is used when
        the worker has it idle (no limit: as much as is idle), memory beyond the
        request up to the limit. A plain memory is both request and limit; the default
        cpu is 0.125 cores, burstable.
        max_inputs > 1: a container serves that many inputs at once, in threads.
        secrets: gust.Secret objects, injected as env. snapshot=True: the init (module
        import and @gust.enter(snap=True) hooks) runs once in a snapshot template and
        new containers are forked from it, copy-on-write, in milliseconds (see
        docs/ARCHITECTURE.md "Snapshots" for what a snapshot may not hold)."""
        for s in secrets or ():
            if not isinstance(s, Secret):
                raise TypeError(f"secrets: expected gust.Secret objects, got {type(s).__name__}")
        options = dict(image=image, cpu=cpu, memory=memory, gpu=gpu, min_containers=min_containers,
                       max_containers=max_containers, buffer_containers=buffer_containers,
                       scaledown_window=scaledown_window, timeout=timeout, retries=retries, env=env,
                       max_inputs=max_inputs, secrets=list(secrets or ()), snapshot=bool(snapshot))

        def wrap(f: Callable[P, R]) -> Function[P, R]:
            fn = Function(self, f, options)
            self.registered_functions[fn.name] = fn
            return fn
        return wrap

    def cls(self, **options: Any) -> Callable[[C], C]:
        """A class whose instance lives in the container: @gust.enter() hooks run once
        per container, @gust.method()s serve inputs. Same knobs as function().
        (Type checkers see the class itself, as with Modal; at run time it is a Cls.)"""
        def wrap(user_cls: C) -> C:
            fn: Function[..., Any] = self.function(**options)(user_cls)
            return Cls(fn, user_cls)  # type: ignore[return-value]
        return wrap

    def _upload_sources(self) -> Dict[str, Tuple[str, str, str, Optional[str]]]:
        """Uploads the SDK and each function's trees; {function name: (sdk id, app id,
        module path in the app tree, files id or None)}. The app tree holds the
        function's module and the local Python sources that travel with it (automount,
        see gust._sources; and the image's add_local_python_source), the files tree
        the image's add_local_dir / add_local_file layers (copy=False)."""
        sdk_id = _mount.upload(self.addr, [("gust", os.path.join(SDK_DIR, "gust"))])
        trees: Dict[Tuple[Any, ...], str] = {}

        def tree(items: Sequence[Tuple[Any, ...]], targets: Optional[Sequence[str]] = None) -> str:
            key = (tuple(items), tuple(targets or ()))
            if key not in trees:
                trees[key] = (_mount.upload(self.addr, items) if targets is None else
                              _sources.upload_files(self.addr, items, targets))
            return trees[key]
        out: Dict[str, Tuple[str, str, str, Optional[str]]] = {}
        for fn in self.registered_functions.values():
            module_file, _ = fn._source()
            root = _sources.module_root(fn.raw_f, module_file)
            rel = os.path.relpath(module_file, root)
            top = rel.split(os.sep)[0]
            own = (top, os.path.join(root, top), _sources.python_only) if os.sep in rel else (rel, module_file)
            image = fn.options.get("image") or Image.debian_slim()
            app_items, file_items, targets = _sources.layout(image._mounts)
            app_id = tree([own] + app_items + _sources.automounted(root))
            out[fn.name] = (sdk_id, app_id, rel.replace(os.sep, "/"), tree(file_items, targets) if file_items else None)
        return out

    def spec(self) -> Dict[str, Any]:
        """The app spec deploy() sends (uploading sources and inline secrets first)."""
        mounts = self._upload_sources()
        inline: Dict[int, str] = {}
        fns = []
        for f in self.registered_functions.values():
            names = _resolve_secrets(self.name, f.options.get("secrets"), self.addr, inline)
            # The image's local paths go to the same gustd ($GUST_ADDR when addr is None).
            fns.append(f.spec(mounts[f.name], names, addr=self.addr or os.environ.get("GUST_ADDR") or
                              _net.DEFAULT_ADDR))
        self._inline_secrets = list(inline.values())
        return {"app": self.name, "functions": fns}

    def drop_inline_secrets(self) -> None:
        """Deletes the secrets the last deploy stored for Secret.from_dict /
        from_local_environ (gust run does, after stopping the app)."""
        for name in getattr(self, "_inline_secrets", ()):
            st, _, body = _request(self.addr, "DELETE", "/v1/secrets/" + urllib.parse.quote(name, safe=""))
            if st not in (200, 404):
                _raise_for(st, body)
        self._inline_secrets = []

    def deploy(self, progress: Optional[TextIO] = sys.stderr) -> Dict[str, Any]:
        """Uploads what gustd lacks of the sources, builds the functions' images
        (progress on stderr) and deploys a new version."""
        try:
            spec = self.spec()
        except (_mount.MountError, OSError) as e:
            raise GustError(f"uploading the sources of app {self.name}: {e}") from e
        conn, r = _net.stream(self.addr, "POST", "/v1/deploy?build=1", json.dumps(spec).encode(),
                              {"Content-Type": "application/json"})
        final = None
        try:
            if r.status != 200:
                _raise_for(r.status, r.read())
            for line in r:  # build progress as it happens
                if not line.strip():
                    continue
                ev = json.loads(line)
                _show(ev, progress)
                final = ev
        finally:
            conn.close()
        if not final:
            raise GustError("gustd ended the deploy without a result")
        if final.get("event") == "error" and final.get("code"):  # refused, not a failed build step
            raise GustError(final.get("message", "deploy failed"), final["code"])
        if final.get("event") != "deployed":
            raise BuildError(final)
        return final
