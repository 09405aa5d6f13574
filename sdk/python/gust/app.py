"""Client side of Python functions: an App of decorated functions and classes,
deployed to gustd, called with .remote() / .spawn() / .map(). Arguments and results
travel as pickle (protocol 5). The function's source (its module file, or its package
directory) and this SDK travel as content-addressed trees, uploaded only where gustd
lacks a chunk, and are mounted read-only into every container of the function
(/opt/gust/app and /opt/gust/sdk), so a change of source needs no image build."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import inspect
import json
import os
import pickle
import queue
import struct
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import (TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Dict, Generic, Iterable, Iterator, List,
                    Literal, Mapping, NoReturn, Optional, Sequence, TextIO, Tuple, TypeVar, Union, overload)

from . import _inputs, _mount, _net, _output, _params, _sources, _web
from ._container.proto import EXC_TAG
from ._container.sources import APP_DIR, FILES_DIR
from .exception import ERRORS_BY_CODE as _ERRORS_BY_CODE
from .exception import (ContainerCrashError, FunctionTimeoutError, GustError, InvalidError,  # noqa: F401 - re-exported
                        NotFoundError, OutOfMemoryError, OutputExpiredError, RemoteError)
from .image import BuildError, Image, _BuildView
from .schedule import Schedule
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
# Requests at once for FunctionCall.gather and Function.spawn_map.
_WAITERS = 16
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
    """A call started with .spawn(): .get() waits for its result, .cancel() stops it.
    .spawn_map() gives one for all its inputs: .get(index=i), .iter(), .num_inputs().
    object_id is gustd's call id ("fc-..."; for a spawn_map, its inputs' call ids
    joined by commas): FunctionCall.from_id(object_id) gets the call back anywhere,
    another process included."""

    def __init__(self, fn: Optional[Function[..., R]], call_id: str, addr: Optional[str] = None) -> None:
        self.function = fn
        self.object_id = call_id
        self._addr = fn.app.addr if fn is not None else addr
        self._ids = call_id.split(",") if call_id else []

    @staticmethod
    def from_id(function_call_id: str, addr: Optional[str] = None) -> FunctionCall[Any]:
        """The call of that id (what .spawn() / .spawn_map() gave as object_id), on gustd
        at addr ($GUST_ADDR, else 127.0.0.1:8470); its result is fetched by the id."""
        if not isinstance(function_call_id, str) or not function_call_id.startswith("fc-"):
            raise InvalidError(f"FunctionCall.from_id: not a call id: {function_call_id!r} (ids start with fc-)")
        return FunctionCall(None, function_call_id, addr)

    def num_inputs(self) -> int:
        """1 for a .spawn(), the number of inputs for a .spawn_map()."""
        return len(self._ids)

    @_aio()
    def get(self, timeout: Optional[float] = None, *, index: int = 0) -> R:
        """The result of input index (0 for a .spawn()), waiting for it at most timeout
        seconds (builtins.TimeoutError after that; None: until done). A failed input
        raises its exception; a result gustd no longer keeps, OutputExpiredError."""
        if not 0 <= index < len(self._ids):
            raise IndexError(f"FunctionCall.get: index {index} is out of range ({len(self._ids)} inputs)")
        call_id = self._ids[index]
        what = self.function.name if self.function is not None else call_id
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 600.0 if deadline is None else max(0.0, min(600.0, deadline - time.monotonic()))
            st, _, body = _request(self._addr, "GET", f"/v1/calls/{call_id}?wait={left:g}")
            if st == 200:
                return _load_result(body, what)
            if st == 202:
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"call {call_id} is not done after {timeout} s")
                continue
            if st == 404:
                raise OutputExpiredError(f"call {call_id}: gustd has no such call (a finished call's result is "
                                         f"kept 7 days; or the id is wrong)", "not_found", call_id)
            _raise_for(st, body)

    def iter(self, *, start: int = 0, end: Optional[int] = None) -> Iterator[R]:
        """The results of inputs start..end-1 (all by default), in order."""
        for i in range(start, len(self._ids) if end is None else end):
            yield self.get(index=i)

    @_aio()
    def cancel(self, terminate_containers: bool = False) -> None:
        """Cancels every input of the call. A running input gets InputCancellation
        raised in it (an async one's task is cancelled) and its container goes on
        serving others; terminate_containers=True stops the containers running them
        instead (what else they ran is retried elsewhere, as after any stop)."""
        body_out = json.dumps({"terminate_containers": True}).encode() if terminate_containers else None
        for call_id in self._ids:
            st, _, body = _request(self._addr, "POST", f"/v1/calls/{call_id}/cancel", body_out,
                                   {"Content-Type": "application/json"} if body_out else None)
            if st not in (200, 404):
                _raise_for(st, body)

    @staticmethod
    def gather(*function_calls: FunctionCall[Any]) -> List[Any]:
        """Waits for every call, at once, and returns their results in the calls'
        order; the first call seen failing raises its exception at once (the others
        go on running, as in Modal)."""
        n = len(function_calls)
        results: List[Any] = [None] * n
        if not n:
            return results
        todo: "queue.Queue[int]" = queue.Queue()
        for i in range(n):
            todo.put(i)
        done: "queue.Queue[Tuple[int, bool, Any]]" = queue.Queue()

        def waiter() -> None:
            while True:
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    done.put((i, True, function_calls[i].get()))
                except BaseException as e:  # handed to the caller's thread, raised there
                    done.put((i, False, e))
        # Daemon threads: a call still running after another failed does not keep this
        # process from exiting.
        for _ in range(min(_WAITERS, n)):
            threading.Thread(target=waiter, daemon=True, name="gust-gather").start()
        for _ in range(n):
            i, ok, value = done.get()
            if not ok:
                raise value
            results[i] = value
        return results


def _request_limit(name: str, v: Any, conv: Callable[[Any], int]) -> Any:
    """A cpu or memory option as the spec takes it: N or (request, limit) -> N or
    [REQUEST, LIMIT], each converted by conv (gustd checks the ranges and that the
    request does not exceed the limit)."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name}: expected a number or a (request, limit) pair, got {v!r}")
        return [conv(v[0]), conv(v[1])]
    return conv(v)


def _resources(o: Mapping[str, Any]) -> Dict[str, Any]:
    """The spec's resources table of the options cpu, memory and gpu."""
    res: Dict[str, Any] = {}
    if o.get("cpu") is not None:
        # Cores, as in Modal; the spec takes millicores.
        res["cpu"] = _request_limit("cpu", o["cpu"], lambda x: int(round(float(x) * 1000)))
    if o.get("memory") is not None:
        res["memory"] = _request_limit("memory", o["memory"], int)  # MiB
    if o.get("gpu"):
        res["gpu"] = o["gpu"]
    if o.get("ephemeral_disk") is not None:
        # Modal's name, in MiB: the writable root layer, /tmp, and the uncommitted
        # changes to the function's volumes are each at most this much.
        d = o["ephemeral_disk"]
        if not isinstance(d, int) or isinstance(d, bool) or d < 1:
            raise InvalidError(f"ephemeral_disk: expected a positive integer number of MiB, got {d!r}")
        res["disk"] = d
    return res


# Spec scaling fields from options; "max_inputs" here is inputs at once (@gust.concurrent),
# "lifetime_inputs" what App.function(max_inputs=) means in Modal: inputs per container.
_SCALING = ("min_containers", "max_containers", "buffer_containers", "scaledown_window", "max_inputs",
            "target_inputs", "lifetime_inputs")


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

    def get_web_url(self) -> Optional[str]:
        """The URL of the function's web endpoint as gustd serves it (None when it is no
        endpoint), as Modal's Function.get_web_url(). The function must be deployed."""
        return _base_view(self).get("web_url")

    @property
    def web_url(self) -> Optional[str]:
        """Modal's older name of get_web_url()."""
        return self.get_web_url()

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
        return FunctionCall(self, self._spawn_input(self._path("spawn"), pickle.dumps((args, kwargs), protocol=5)))

    def _spawn_input(self, path: str, body: bytes) -> str:
        """Spawns one pickled input at path (self._path("spawn")); its call id."""
        st, _, out = _request(self.app.addr, "POST", path, body, _INPUT_HEADERS)
        if st != 202:
            _raise_for(st, out)
        return json.loads(out)["call_id"]

    def spawn_map(self, *input_iterators: Iterable[Any], kwargs: Optional[Mapping[str, Any]] = None
                  ) -> FunctionCall[R]:
        """Spawns f(*args) for each args of zip(*input_iterators) and returns as soon as
        every input is stored, without waiting for them to run. Modal's stable API
        returns None; here, as in its newer one, a FunctionCall of all the inputs
        (.get(index=i), .iter(), .num_inputs()), which a caller may ignore."""
        kw = dict(kwargs or {})
        bodies = [pickle.dumps((tuple(a), kw), protocol=5) for a in zip(*input_iterators)]
        if not bodies:
            return FunctionCall(self, "")
        path = self._path("spawn")
        with ThreadPoolExecutor(max_workers=min(_WAITERS, len(bodies))) as pool:
            ids = list(pool.map(lambda b: self._spawn_input(path, b), bodies))
        return FunctionCall(self, ",".join(ids))

    def with_options(self, *, cpu: Union[float, Tuple[float, float], None] = None,
                     memory: Union[int, Tuple[int, int], None] = None, gpu: Union[str, Sequence[str], None] = None,
                     env: Optional[Mapping[str, str]] = None, secrets: Optional[Sequence[Secret]] = None,
                     retries: Union[int, Retries, None] = None, max_containers: Optional[int] = None,
                     buffer_containers: Optional[int] = None, scaledown_window: Optional[int] = None,
                     timeout: Optional[int] = None, **unsupported: Any) -> Function[P, R]:
        """This function with some of its options changed, as its own function with
        containers of its own (Modal: "autoscales independently"): f.with_options(gpu="H100").remote(x).
        It is deployed next to f, under a derived name (f's name, "-v" and a digest
        of the options), on its first call, from f's deployed spec; a later deploy of
        f makes the next process that calls it redeploy it. Options that are not
        given keep f's values; secrets replace f's; env adds to f's. Calls chain:
        f.with_options(gpu="A100").with_options(timeout=600)."""
        o = _modal_options(unsupported, "with_options")
        o.update((k, v) for k, v in dict(cpu=cpu, memory=memory, gpu=gpu, env=env, secrets=secrets,
                                         retries=retries, max_containers=max_containers,
                                         buffer_containers=buffer_containers, scaledown_window=scaledown_window,
                                         timeout=timeout).items() if v is not None)
        return _Variant.of(self, o, None)

    def with_concurrency(self, *, max_inputs: int, target_inputs: Optional[int] = None) -> Function[P, R]:
        """with_options for the inputs a container serves at once, as @gust.concurrent
        says them: up to max_inputs, the autoscaler aiming at target_inputs each."""
        return _Variant.of(self, _concurrency_options(max_inputs, target_inputs), None)

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
        res = _resources(o)
        if res:
            f["resources"] = res
        sc = {k: o[k] for k in _SCALING if o.get(k) is not None}
        # @gust.concurrent / @gust.batched win over a variant's concurrency (Modal's
        # allow_concurrent_inputs gives way to @concurrent alike).
        marks = _inputs.scaling_of(self.raw_f)
        if marks:
            sc.pop("target_inputs", None)
            sc.update(marks)
        if sc.get("max_inputs"):
            f["env"]["GUST_MAX_INPUTS"] = str(int(sc["max_inputs"]))
        if sc:
            f["scaling"] = sc
        if o.get("timeout") is not None:
            f["timeout"] = int(o["timeout"])
        if o.get("snapshot"):
            f["snapshot"] = True
        if o.get("volumes"):
            # Looked up (or created, with create_if_missing) now: gustd checks at
            # deploy that each one exists.
            vols = []
            for p, v in sorted(o["volumes"].items()):
                if v._addr is None and addr:
                    v._addr = addr  # the deploying app's gustd (in a container: its own)
                vols.append({"path": p.rstrip("/") or "/", "name": v.hydrate().name})
            f["volumes"] = vols
        web = _web.spec_of(self.raw_f)
        if web:
            f["web"] = web
        if o.get("schedule") is not None:
            f["schedule"] = o["schedule"].spec()
        if isinstance(o.get("retries"), Retries):
            f["retries"] = o["retries"].spec()
        elif o.get("retries") is not None:
            f["retries"] = int(o["retries"])
        return f


def _concurrency_options(max_inputs: int, target_inputs: Optional[int]) -> Dict[str, Any]:
    """with_concurrency's options, checked as @gust.concurrent checks them."""
    _inputs.concurrent(max_inputs=max_inputs, target_inputs=target_inputs)
    o: Dict[str, Any] = {"max_inputs": max_inputs}
    if target_inputs is not None:
        o["target_inputs"] = target_inputs
    return o


# In a variant's spec: "<base name>@<base version>", the version of the base it was
# derived from; a variant of an older version is deployed again.
_VARIANT_ENV = "GUST_VARIANT_OF"
# Modal's older names of with_options arguments.
_RENAMED_OPTIONS = {"concurrency_limit": "max_containers", "container_idle_timeout": "scaledown_window",
                    "allow_concurrent_inputs": "max_inputs"}


def _modal_options(extra: Mapping[str, Any], where: str) -> Dict[str, Any]:
    """with_options arguments beyond Gust's own: Modal's older names, taken as Gust's;
    volumes, region and cloud, which Gust has not, refused when set."""
    out: Dict[str, Any] = {}
    for k, v in extra.items():
        if k in _RENAMED_OPTIONS:
            if v is not None:
                out[_RENAMED_OPTIONS[k]] = v
        elif k in ("volumes", "region", "cloud"):
            if v:
                raise InvalidError(f"{where}: {k} is not supported by Gust (its workers are one pool, "
                                   f"without volumes)")
        else:
            raise TypeError(f"{where}() got an unexpected keyword argument {k!r}")
    return out


def _options_key(o: Mapping[str, Any]) -> Dict[str, Any]:
    """The options as JSON, for a variant's name: secrets by name, or by their keys
    (never their values) for inline ones."""
    out: Dict[str, Any] = {}
    for k, v in o.items():
        if k == "secrets":
            v = [s.name if s._env is None else sorted(s._env) for s in v]
        elif isinstance(v, Retries):
            v = v.spec()
        elif isinstance(v, tuple):
            v = list(v)
        out[k] = v
    return out


def _function_view(addr: Optional[str], app: str, name: str) -> Optional[Dict[str, Any]]:
    """GET /v1/functions/APP/NAME, None when gustd has no such function."""
    st, _, body = _request(addr, "GET", f"/v1/functions/{urllib.parse.quote(app)}/{urllib.parse.quote(name)}")
    if st == 404:
        return None
    if st != 200:
        _raise_for(st, body)
    return json.loads(body)


def _base_view(fn: Function[..., Any]) -> Dict[str, Any]:
    view = _function_view(fn.app.addr, fn.app.name, fn.name)
    if view is None:
        raise NotFoundError(f"function {fn.app.name}.{fn.name} is not deployed: deploy its app first (gust deploy, "
                            f"or app.deploy())", "not_found")
    return view


def _derive_spec(spec: Dict[str, Any], name: str, o: Mapping[str, Any], secret_names: Optional[List[str]],
                 params: Optional[Dict[str, Any]], marker: str) -> Dict[str, Any]:
    """A variant's spec: the base's deployed (normalised) spec, renamed, with the
    options o and the class parameter values applied."""
    f = json.loads(json.dumps(spec))
    f["name"] = name
    res, sc = f.setdefault("resources", {}), f.setdefault("scaling", {})
    env = f.setdefault("env", {})
    res.update(_resources(o))
    if o.get("max_inputs") is not None and o.get("target_inputs") is None:
        sc.pop("target_inputs", None)  # the base's target belongs to its max_inputs
    sc.update({k: int(o[k]) for k in _SCALING if o.get(k) is not None})
    if o.get("max_inputs"):
        env["GUST_MAX_INPUTS"] = str(int(o["max_inputs"]))
    env.update({str(k): str(v) for k, v in dict(o.get("env") or {}).items()})
    if o.get("timeout") is not None:
        f["timeout"] = int(o["timeout"])
    if o.get("retries") is not None:
        f["retries"] = o["retries"].spec() if isinstance(o["retries"], Retries) else int(o["retries"])
    if secret_names is not None:
        f["secrets"] = secret_names
    if params is not None:
        env[_params.PARAMS_ENV] = json.dumps(params, sort_keys=True)
    env[_VARIANT_ENV] = marker
    return f


class _Variant(Function[P, R]):
    """A deployed function's variant: other options (with_options) and/or the values
    of a class's parameters (Model(x=1)), with containers of its own, as Modal gives
    each. Gust deploys it as a function of the same app, named after its base plus
    "-v" and a digest of what differs, on its first call in a process (when gustd
    does not have it for the base's current version yet), from the base's deployed
    spec: so it works for Function.from_name / Cls.from_name too."""

    def __init__(self, base: Function[..., Any], overrides: Dict[str, Any], params: Optional[Dict[str, Any]]):
        key = json.dumps({"o": _options_key(overrides), "p": params}, sort_keys=True, default=repr)
        self._digest = hashlib.sha256(key.encode()).hexdigest()[:10]
        super().__init__(base.app, base.raw_f, dict(base.options, **overrides),
                         name=f"{base.name[:51]}-v{self._digest}")
        self._base, self._overrides, self._params = base, overrides, params
        self._lock = threading.Lock()
        self._deployed = False

    @staticmethod
    def of(fn: Function[..., Any], overrides: Mapping[str, Any], params: Optional[Dict[str, Any]]) -> Any:
        """fn with overrides added to its own (fn may be a variant) and, unless None,
        these parameter values; fn's base itself when nothing differs from it."""
        base = fn._base if isinstance(fn, _Variant) else fn
        merged = dict(fn._overrides) if isinstance(fn, _Variant) else {}
        merged.update(overrides)
        if params is None and isinstance(fn, _Variant):
            params = fn._params
        if not merged and params is None:
            return base
        return _Variant(base, merged, params)

    def _path(self, what: str) -> str:
        self._ensure_deployed()
        return super()._path(what)

    def _ensure_deployed(self) -> None:
        with self._lock:
            if self._deployed:
                return
            app, addr = self.app.name, self.app.addr
            base = _base_view(self._base)
            names = None
            if "secrets" in self._overrides:
                inline: Dict[int, str] = {}
                names = _resolve_secrets(f"{app}.{self._digest[:8]}", self._overrides["secrets"], addr, inline)
                # gust run deletes them with the app's own when it ends.
                self.app._inline_secrets = list(getattr(self.app, "_inline_secrets", [])) + list(inline.values())
            marker = f"{self._base.name}@{base['version']}"
            have = _function_view(addr, app, self.name)
            if not have or (have.get("spec") or {}).get("env", {}).get(_VARIANT_ENV) != marker:
                spec = _derive_spec(base["spec"], self.name, self._overrides, names, self._params, marker)
                _deploy_spec(addr, {"app": app, "functions": [spec]}, None)
            self._deployed = True


def _deploy_spec(addr: Optional[str], spec: Dict[str, Any], progress: Optional[TextIO],
                 verbose: bool = False) -> Dict[str, Any]:
    """POST /v1/deploy?build=1 with an app spec, its build progress shown on progress
    (steps, cache hits, durations; with verbose, every line the steps print); the final
    "deployed" event. BuildError for a failed image step."""
    conn, r = _net.stream(addr, "POST", "/v1/deploy?build=1", json.dumps(spec).encode(),
                          {"Content-Type": "application/json"})
    final = None
    view = _BuildView(progress, verbose)
    try:
        if r.status != 200:
            _raise_for(r.status, r.read())
        for line in r:  # build progress as it happens
            if not line.strip():
                continue
            ev = json.loads(line)
            view.show(ev)
            final = ev
    finally:
        conn.close()
    if not final:
        raise GustError("gustd ended the deploy without a result")
    if final.get("event") == "error" and final.get("code"):  # refused, not a failed build step
        raise _ERRORS_BY_CODE.get(final["code"], GustError)(final.get("message", "deploy failed"), final["code"])
    if final.get("event") != "deployed":
        raise BuildError(final)
    return final


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

    def __init__(self, fn: Function[..., Any], method_name: str,
                 local_instance: Optional[Callable[[], Any]] = None) -> None:
        self._fn = fn
        self._method = method_name
        self._local_instance = local_instance

    def local(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """The method run here, in this process, as Modal's .local(): on this object's
        local instance, made (and its enter hooks run) at its first local call."""
        if self._local_instance is None:
            raise GustError(f"{self._fn.app.name}.{self._fn.name} was looked up by name: it has no local code")
        return getattr(self._local_instance(), self._method)(*args, **kwargs)

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
    """A deployed class: Cls() gives an object whose @gust.method()s have .remote().
    With gust.parameter() attributes, Model(x=1) gives the instance of that parameter
    set: containers of its own, whose instance has x == 1 before its enter hooks run
    (a variant of the class's function, see Function.with_options; the parameter set
    of the defaults is the class's function itself)."""

    def __init__(self, fn: Function[..., Any], user_cls: Optional[type],
                 options: Optional[Dict[str, Any]] = None) -> None:
        self._fn = fn
        self._user_cls = user_cls
        self._options = dict(options or {})
        self._schema = _params.schema(user_cls) if user_cls is not None else None

    @classmethod
    def from_name(cls, app_name: str, name: str, addr: Optional[str] = None) -> Cls:
        """A deployed class, to call without its source: Cls.from_name("app", "Model")().predict.remote(x)."""
        return cls(Function.from_name(app_name, name, addr=addr), None)

    def _parameters(self) -> List[Dict[str, Any]]:
        if self._schema is None:  # looked up by name: its deployed function says
            env = (_base_view(self._fn).get("spec") or {}).get("env") or {}
            self._schema = json.loads(env.get(_params.SCHEMA_ENV) or "[]")
        return self._schema

    def with_options(self, **options: Any) -> Cls:
        """The class with some options changed (Function.with_options takes the same);
        its instances run in containers of their own. Calls chain."""
        known = ("cpu", "memory", "gpu", "env", "secrets", "retries", "max_containers", "buffer_containers",
                 "scaledown_window", "timeout")
        o = _modal_options({k: v for k, v in options.items() if k not in known}, "with_options")
        o.update((k, v) for k, v in options.items() if k in known and v is not None)
        return Cls(self._fn, self._user_cls, dict(self._options, **o))

    def with_concurrency(self, *, max_inputs: int, target_inputs: Optional[int] = None) -> Cls:
        return Cls(self._fn, self._user_cls, dict(self._options, **_concurrency_options(max_inputs, target_inputs)))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        obj = self
        cls_name = self._user_cls.__name__ if self._user_cls is not None else self._fn.name
        values, defaults = _params.bind(cls_name, self._parameters(), args, kwargs)
        fn = _Variant.of(self._fn, self._options, None if defaults else values)
        wire = values
        local: List[Any] = []

        def local_instance() -> Any:
            if not local:
                inst = _params.new_instance(obj._user_cls, json.dumps(wire))
                for kind in ("snap", "post"):  # as in a container: snap=True hooks first
                    for m in (getattr(obj._user_cls, n) for n in dir(obj._user_cls)):
                        if getattr(m, "_gust_enter", None) == kind:
                            r = m(inst)
                            if inspect.iscoroutine(r):
                                asyncio.run(r)
                local.append(inst)
            return local[0]

        class _Obj:
            def __getattr__(self, name: str) -> Any:
                if name in wire:  # a parameter's value
                    return _params.unwire(wire[name])
                if obj._user_cls is None:  # by name: gustd's runner checks the method
                    return _BoundMethod(fn, name)
                m = getattr(obj._user_cls, name, None)
                if m is None or not getattr(m, "_gust_method", False):
                    raise AttributeError(f"{obj._user_cls.__name__}.{name} is not a @gust.method()")
                return _BoundMethod(fn, name, local_instance)
        return _Obj()


def _name_from_caller(frame: Any) -> str:
    """An app name from the file whose code is running in frame: its base name without
    .py, reduced to what gustd accepts in a name (letters, digits, '_', '-'; 1 to 63,
    starting with a letter or digit)."""
    path = frame.f_globals.get("__file__") or frame.f_globals.get("__name__") or "app"
    base = os.path.splitext(os.path.basename(path))[0]
    name = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "-" for c in base).lstrip("_-")[:63]
    return name or "app"


class App:
    """A named group of functions and classes, deployed together. addr: gustd's
    "host:port" ($GUST_ADDR, else 127.0.0.1:8470)."""

    def __init__(self, name: Optional[str] = None, addr: Optional[str] = None, *, image: Optional[Image] = None,
                 secrets: Sequence[Secret] = ()) -> None:
        """image and secrets, as in Modal, are defaults of every function and class of
        the app: a function's own image replaces the app's, its secrets add to the
        app's (which come first). Without a name (Modal allows App() for apps that are
        only run), the app is named after the file that makes it: app.py -> "app"."""
        self.name = name if name is not None else _name_from_caller(sys._getframe(1))
        self.addr = addr
        self.image = image
        self.secrets = list(secrets or ())
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

    @contextlib.contextmanager
    def run(self, *, client: Any = None, detach: bool = False, interactive: bool = False,
            environment_name: Optional[str] = None) -> Iterator[App]:
        """Modal's `with app.run(): f.remote()`, for scripts run with python3: deploys the
        app (building its images), runs the block, then stops the app (detach=True
        leaves it running) and drops the values of its Secret.from_dict secrets, as
        `gust run` does around a local entrypoint. Quiet, as in Modal, unless inside
        `with gust.enable_output():`, where image builds and what the functions print
        show here. client, interactive and environment_name are accepted for Modal's
        sake."""
        shown = _output.output_enabled()
        dep = self.deploy(progress=sys.stderr if shown else None)
        follow = _output.RemoteOutput(self.addr, self.name, dep.get("log_seq")).start() if shown else None
        try:
            yield self
        finally:
            if follow is not None:
                follow.stop()
            if not detach:
                self.stop()
                self.drop_inline_secrets()

    def function(self, image: Optional[Image] = None, cpu: Union[float, Tuple[float, float], None] = None,
                 memory: Union[int, Tuple[int, int], None] = None,
                 gpu: Union[str, Sequence[str], None] = None, min_containers: Optional[int] = None,
                 max_containers: Optional[int] = None, buffer_containers: Optional[int] = None,
                 scaledown_window: Optional[int] = None, timeout: Optional[int] = None,
                 retries: Union[int, Retries, None] = None, env: Optional[Mapping[str, str]] = None,
                 max_inputs: Optional[int] = None, secrets: Sequence[Secret] = (),
                 snapshot: bool = False, enable_memory_snapshot: bool = False,
                 schedule: Optional[Schedule] = None, volumes: Optional[Mapping[str, Any]] = None,
                 ephemeral_disk: Optional[int] = None
                 ) -> Callable[[Callable[P, R]], Function[P, R]]:
        """cpu (cores) and memory (MiB) are what is reserved for each container; as in
        Modal, (request, limit) adds a hard limit. CPU beyond the request is used when
        the worker has it idle (no limit: as much as is idle), memory beyond the
        request up to the limit. A plain memory is both request and limit; the default
        cpu is 0.125 cores, burstable.
        max_inputs, as in Modal: the inputs a container serves before it is replaced
        (1: a fresh container per input); inputs at once are @gust.concurrent's.
        secrets: gust.Secret objects, injected as env. snapshot=True: the init (module
        import and @gust.enter(snap=True) hooks) runs once in a snapshot template and
        new containers are forked from it, copy-on-write, in milliseconds (see
        docs/ARCHITECTURE.md "Snapshots" for what a snapshot may not hold);
        enable_memory_snapshot=True is Modal's name for it.
        schedule: a gust.Cron or gust.Period; gustd calls the function with no
        arguments at each fire while the app is deployed.
        volumes: {"/abs/path": gust.Volume}, mounted writable in each container (see
        gust.Volume: commit() publishes, reload() moves to the latest version).
        ephemeral_disk: MiB (default 512) for the container's writable root layer, its
        /tmp, and its volumes' uncommitted changes, each; all three are in memory
        (tmpfs), charged to the container's memory.
        The app's image and secrets (App(image=..., secrets=[...])) are the defaults."""
        if schedule is not None and not isinstance(schedule, Schedule):
            raise InvalidError(f"schedule: expected gust.Cron or gust.Period, got {type(schedule).__name__}")
        secrets = self.secrets + list(secrets or ())
        for s in secrets:
            if not isinstance(s, Secret):
                raise TypeError(f"secrets: expected gust.Secret objects, got {type(s).__name__}")
        image = image if image is not None else self.image
        snapshot = snapshot or enable_memory_snapshot
        if max_inputs is not None and (not isinstance(max_inputs, int) or isinstance(max_inputs, bool) or
                                       max_inputs < 1):
            raise InvalidError(f"max_inputs: the inputs a container serves before it is replaced, an integer >= 1; "
                               f"got {max_inputs!r} (inputs at once: @gust.concurrent(max_inputs=...))")
        from ._volume import Volume
        for path, vol in (volumes or {}).items():
            if not isinstance(path, str) or not path.startswith("/") or not isinstance(vol, Volume):
                raise InvalidError(f"volumes: expected {{\"/absolute/path\": gust.Volume}}, got {path!r}: {vol!r}")
        options = dict(image=image, cpu=cpu, memory=memory, gpu=gpu, min_containers=min_containers,
                       max_containers=max_containers, buffer_containers=buffer_containers,
                       scaledown_window=scaledown_window, timeout=timeout, retries=retries, env=env,
                       lifetime_inputs=max_inputs, secrets=secrets, snapshot=bool(snapshot), schedule=schedule,
                       volumes=dict(volumes or {}), ephemeral_disk=ephemeral_disk)

        def wrap(f: Callable[P, R]) -> Function[P, R]:
            _inputs.scaling_of(f)  # a misuse of @batched / @concurrent is refused here, as in Modal
            fn = Function(self, f, options)
            self.registered_functions[fn.name] = fn
            return fn
        return wrap

    def cls(self, **options: Any) -> Callable[[C], C]:
        """A class whose instance lives in the container: @gust.enter() hooks run once
        per container, @gust.method()s serve inputs. Same knobs as function().
        (Type checkers see the class itself, as with Modal; at run time it is a Cls.)"""
        def wrap(user_cls: C) -> C:
            for n in dir(user_cls):
                if getattr(getattr(user_cls, n, None), "_gust_concurrent", None) and n != "__call__":
                    raise InvalidError("The `@gust.concurrent` decorator cannot be used on methods; decorate the "
                                       "class instead.")
            sch = _params.schema(user_cls)
            opts = dict(options)
            if sch:  # for Cls.from_name clients, which lack the class
                opts["env"] = dict(options.get("env") or {}, **{_params.SCHEMA_ENV: json.dumps(sch)})
            fn: Function[..., Any] = self.function(**opts)(user_cls)
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
            # "" is the default address ($GUST_ADDR...), where None would leave the
            # image's local paths (copy steps, wheels) in the spec, unuploaded.
            fns.append(f.spec(mounts[f.name], names, addr=self.addr if self.addr is not None else ""))
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

    def deploy(self, progress: Optional[TextIO] = sys.stderr, verbose: bool = False) -> Dict[str, Any]:
        """Uploads what gustd lacks of the sources, builds the functions' images
        (progress on stderr: steps, cache hits, durations; with verbose, every line the
        steps print) and deploys a new version. The answer's "log_seq" is where the
        new version's output starts in the app's logs."""
        try:
            spec = self.spec()
        except (_mount.MountError, OSError) as e:
            raise GustError(f"uploading the sources of app {self.name}: {e}") from e
        return _deploy_spec(self.addr, spec, progress, verbose)
