"""Container side of a Python function: gust-init starts
`python3 -m gust._container.runner MODULE_FILE QUALNAME` in runner mode. It imports the
module once, then serves inputs over the runner protocol (src/proto/frame.h; the
constants are in .proto) on $GUST_RUNNER_FD: an input is pickle((args, kwargs)), a
result pickle(value) (protocol 5), or JSON both (.jsonargs). An exception becomes an
ERROR frame whose message carries the pickled exception and the remote traceback (see
gust.RemoteError).

A generator function's input answers with one ITEM frame per yielded value, then an
empty OUTPUT, and waits while a window of its items is unacknowledged (FRAME_ITEM_WINDOW:
gustd acknowledges what the consumer took). A CANCEL frame stops one input and leaves the
container's others running (_Cancels). `async def` functions (and async
generators) run on one asyncio event loop per container, in a thread of its own, so
several inputs of a container with max_inputs > 1 await concurrently; they take no
thread each. An ASGI app's container, whose requests are all coroutines, reads its
channel on that loop's thread too (read_on_loop). A batched function's inputs go to a
.batch.Batcher instead."""
import asyncio
import base64
import concurrent.futures
import contextvars
import copy
import ctypes
import functools
import importlib
import importlib.util
import inspect
import os
import pickle
import signal
import socket
import sys
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor

from .. import _params, _runtime
from ..exception import InputCancellation
from . import instream, web, web_server
from .batch import Batcher
from .jsonargs import decode_input
from .proto import (EXC_TAG, FRAME_CANCEL, FRAME_CHILD_FD, FRAME_ERR_CANCELLED, FRAME_ERR_USER, FRAME_ERROR, FRAME_F_MORE,
                    FRAME_INPUT, FRAME_INPUT_CALL, FRAME_INPUT_LOG, FRAME_INPUT_MORE, FRAME_ITEM, FRAME_ITEM_ACK,
                    FRAME_ITEM_ACK_SIZE, FRAME_ITEM_WINDOW, FRAME_MAX_BODY,
                    FRAME_OUTPUT, FRAME_READY, FRAME_SHUTDOWN, HEADER, send_frame)
from .sources import APP_DIR, PYSRC_DIR, explain, place_files

_send_lock = threading.Lock()
# The input the running code serves: a thread's own, or an asyncio task's (each task
# runs in a copy of the context).
_fid = contextvars.ContextVar("gust_input", default=None)
_CALL_IDS = {}  # input id -> its call's id, from the INPUT_CALL frame sent before the input


class _InputStream:
    """sys.stdout / sys.stderr while inputs run: text written by code serving an input
    (a thread, or an asyncio task) goes out as INPUT_LOG frames of that input (whole
    lines; the rest at the input's end), so its log lines carry the call id; other text
    goes to the real stream (gust-init logs it without a call)."""

    def __init__(self, real, stream, sock):
        self._real, self._stream, self._sock = real, stream, sock
        self._parts = {}  # input id -> text written and not sent yet (its last partial line)
        self._lock = threading.Lock()

    def write(self, text):
        fid = _fid.get()
        if fid is None:
            return self._real.write(text)
        with self._lock:
            self._parts.setdefault(fid, []).append(text)
        if "\n" in text:
            self._emit(fid, final=False)
        return len(text)

    def _emit(self, fid, final):
        with self._lock:
            parts = self._parts.pop(fid, None)
            if not parts:
                return
            data = "".join(parts)
            cut = len(data) if final else data.rfind("\n") + 1
            head, rest = data[:cut], data[cut:]
            if rest:
                self._parts[fid] = [rest]
        raw = head.encode("utf-8", "replace")
        for off in range(0, len(raw), FRAME_MAX_BODY - 1):  # frames of whole lines where they fit
            send(self._sock, FRAME_INPUT_LOG, fid, bytes([self._stream]) + raw[off:off + FRAME_MAX_BODY - 1])

    def end_input(self, fid):
        self._emit(fid, final=True)

    def flush(self):
        fid = _fid.get()
        if fid is None:
            self._real.flush()

    def __getattr__(self, name):
        return getattr(self._real, name)


def send(sock, ftype, fid, body):
    with _send_lock:
        send_frame(sock, ftype, fid, body)


def error_message(exc):
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        blob = base64.b64encode(pickle.dumps(exc, protocol=5)).decode()
    except Exception:  # unpicklable exception: the client raises a RemoteError with the text
        blob = ""
    head = f"{type(exc).__name__}: {exc}"
    return f"{head}\n{EXC_TAG}{blob}\n{tb}"


def import_module(module_file):
    """Imports the app's module by the name the client imported it by: its path in the
    app tree (mypkg/main.py is mypkg.main, so its relative imports work), the tree's
    root first on sys.path. The tree holds only what the client imported (and what the
    image adds), so nothing in it merely shares a name with a library of the image; a
    module outside the tree (run by hand) is imported from its own directory."""
    root = APP_DIR if module_file.startswith(APP_DIR + "/") else os.path.dirname(module_file)
    sys.path.insert(0, root)
    if os.path.isdir(PYSRC_DIR):  # add_local_python_source(copy=True)
        sys.path.insert(1, PYSRC_DIR)
    rel = os.path.relpath(module_file, root)
    if os.sep in rel:
        parts = rel[:-3].split(os.sep)
        return importlib.import_module(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    name = os.path.splitext(rel)[0]
    spec = importlib.util.spec_from_file_location(name, module_file)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


class _ImportFailed:
    """Stands for the function when its module failed to import: each input fails with
    that exception (a copy of it, with its traceback), as the caller's error."""

    def __init__(self, exc):
        self.exc, self.tb = exc, exc.__traceback__

    def __call__(self, *args, **kwargs):
        try:
            e = copy.copy(self.exc)
        except Exception:  # an exception type copy cannot rebuild
            e = self.exc
        raise e.with_traceback(self.tb)


def load(module_file, qualname, post_enter=True):
    """The function (or a Cls's method dispatch) from the app's module. A module that
    fails to import gives an _ImportFailed: the container becomes ready and every
    input gets the error, which says which local files were sent (explain)."""
    try:
        place_files()
        mod = import_module(module_file)
    except Exception as exc:
        exc = explain(exc)
        traceback.print_exception(type(exc), exc, exc.__traceback__)
        return _ImportFailed(exc)
    obj = mod
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if hasattr(obj, "_user_cls"):  # a gust Cls: one instance per container
        try:
            return instance_dispatch(obj._user_cls, post_enter)
        except Exception as exc:  # the container fails to start: say what was sent
            new = explain(exc)
            if new is exc:
                raise
            raise new from exc.__cause__
    return getattr(obj, "raw_f", obj)  # a gust Function wraps the plain function


EXIT_HOOKS = []


def instance_dispatch(user_cls, post_enter=True):
    """Makes the container's instance, runs its enter hooks (snap=True ones first;
    the others now, or through call.enter_post() in a container forked from a
    snapshot), and returns a callable taking (method name, *args)."""
    # A parameter set's containers have its values in the environment (gust/_params.py).
    inst = _params.new_instance(user_cls, os.environ.get(_params.PARAMS_ENV))
    members = [getattr(user_cls, n) for n in dir(user_cls)]

    def run_enter(kind):
        for m in members:
            if getattr(m, "_gust_enter", None) == kind:
                run_hook(m, inst)
    run_enter("snap")
    if post_enter:
        run_enter("post")
    EXIT_HOOKS.extend(m for m in members if getattr(m, "_gust_exit", False))

    def call(method_name, *args, **kwargs):
        m = getattr(user_cls, method_name, None)
        if m is None or not getattr(m, "_gust_method", False):
            raise AttributeError(f"{user_cls.__name__}.{method_name} is not a @gust.method()")
        return m(inst, *args, **kwargs)
    call.instance = inst
    call.enter_post = lambda: run_enter("post")
    return call


def main():
    module_file, qualname = sys.argv[1], sys.argv[2]
    sock = socket.socket(fileno=int(os.environ.get("GUST_RUNNER_FD", str(FRAME_CHILD_FD))))
    os.environ[_runtime.IN_CONTAINER_ENV] = "1"
    template = os.environ.get("GUST_SNAPSHOT") == "template"
    fn = load(module_file, qualname, post_enter=not template)
    if template:
        from . import snapshot
        snapshot.check(sock.fileno())
        snapshot.compact()
        send(sock, FRAME_READY, 0, b"")
        sock = snapshot.serve(sock)
        if hasattr(fn, "enter_post"):
            fn.enter_post()
    sys.stdout = _InputStream(sys.stdout, 1, sock)
    sys.stderr = _InputStream(sys.stderr, 2, sock)
    batcher = make_batcher(sock, fn)
    web.prepare(fn, _run_on_loop)
    # max_inputs > 1: that many inputs at once, sync ones each on a thread of its own.
    workers = int(os.environ.get("GUST_MAX_INPUTS", "1") or "1")
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 and batcher is None else None
    stop_on_signals(sock)
    if web_server.is_server(fn) and start_web_server(fn) < 0:
        return 1
    on_loop = batcher is None and web.serves_on_loop(fn)
    send(sock, FRAME_READY, 0, b"")
    take = frame_taker(sock, fn, batcher, pool)
    if on_loop:
        read_on_loop(sock, take)
    else:
        while take(sock.recv(HEADER.size + FRAME_MAX_BODY)):
            pass
    if batcher is not None:
        batcher.close()  # serve the inputs it holds
    if pool:
        pool.shutdown(wait=True)  # finish the inputs in flight
    _streams.shutdown(wait=True)
    _wait_async_inputs()
    web.finish(_run_on_loop)
    run_exit_hooks(getattr(fn, "instance", None))
    return 0


def start_web_server(fn):
    """@gust.web_server: the function starts its server, which must accept connections
    before the container is READY. On failure, -1 after a last stderr line saying why
    (gustd's "exited before it was ready" message carries it)."""
    try:
        web_server.start(fn, _run_on_loop)
    except web_server.StartupError as exc:
        print(exc, file=sys.stderr, flush=True)
        return -1
    except Exception as exc:  # the function's own failure: its traceback, then the reason
        traceback.print_exc()
        print(f"web_server: {getattr(fn, '__name__', 'the function')} raised {type(exc).__name__}: {exc} before its "
              f"server was up", file=sys.stderr, flush=True)
        return -1
    return 0


def frame_taker(sock, fn, batcher, pool):
    """The channel's receiving side: a function that acts on one datagram read from it
    (b"" at its end) and returns False once the channel is over (its end, SHUTDOWN)."""
    pending = {}

    def take(data):
        if not data:
            return False
        ftype, flags, _, blen, fid = HEADER.unpack_from(data)
        body = data[HEADER.size:HEADER.size + blen]
        if ftype == FRAME_SHUTDOWN:
            return False
        if ftype == FRAME_ITEM_ACK and blen >= FRAME_ITEM_ACK_SIZE:
            _window.ack(fid, int.from_bytes(body[:FRAME_ITEM_ACK_SIZE], "little"))
        elif ftype == FRAME_INPUT_CALL:
            _CALL_IDS[fid] = body.decode("ascii", "replace")
        elif ftype == FRAME_CANCEL:
            if pending.pop(fid, None) is None:
                _cancels.cancel(fid)
                instream.cancel(fid)  # code blocked reading its stream (a request body)
                web_server.cancel(_runtime.input_name(fid))  # a proxied request blocked on its server
        elif ftype == FRAME_INPUT_MORE:  # a byte stream: frame boundaries (and F_MORE) mean nothing
            instream.feed(fid, body)
        elif ftype == FRAME_INPUT:
            pending.setdefault(fid, []).append(body)
            if flags & FRAME_F_MORE:
                return True
            payload = b"".join(pending.pop(fid))
            if web.is_request(payload):  # before its code runs: its stream's first bytes follow at once
                instream.open_stream(functools.partial(send, sock), fid)
            if batcher is not None:
                batcher.put(fid, _CALL_IDS.pop(fid, None), payload)
            elif pool and not is_async_input(fn, payload):
                pool.submit(serve, sock, fn, fid, payload)
            else:
                serve(sock, fn, fid, payload)
        return True
    return take


def read_on_loop(sock, take):
    """Reads the channel on the event loop's thread, for an ASGI app's container (whose
    requests are all coroutines of that loop): a request's task starts where its frame
    was read. Read on the main thread instead, each request costs a hand-over to the
    loop's thread -- a wakeup of the loop and the GIL passed between the threads --
    which was a third of such a runner's CPU per request. The main thread waits for the
    channel's end (a signal's handler, run there, shuts the channel: stop_on_signals)."""
    loop = _event_loop().loop
    fd = sock.fileno()
    ended = threading.Event()

    def readable():
        try:
            while True:
                try:
                    data = sock.recv(HEADER.size + FRAME_MAX_BODY, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    return  # all read: the loop calls again when more comes
                except OSError:
                    data = b""  # the worker's end is gone: as the channel's end
                if not take(data):
                    break
        except BaseException:  # a bug of ours: the container ends, with its traceback
            traceback.print_exc()
        loop.remove_reader(fd)
        ended.set()
    loop.call_soon_threadsafe(loop.add_reader, fd, readable)
    ended.wait()


def is_async_input(fn, payload):
    """Whether fn serves this input as a coroutine (an async function, method or web
    handler; an ASGI app): serve() only starts it on the event loop, so it runs on the
    receiving thread and takes no thread of the pool. A sync handler may block, so it
    gets a thread."""
    if web.is_request(payload):
        cfg = getattr(fn, "_gust_web", None) or {}
        return cfg.get("kind") == "asgi" or bool(cfg.get("fastapi"))
    target = fn
    inst = getattr(fn, "instance", None)
    if inst is not None:  # a class: the input names its method first
        if not _has_async_methods(type(inst)):
            return False
        try:
            name = decode_input(payload)[0][0]
        except Exception:  # a malformed input: serve() answers it, on a thread as any
            return False
        target = getattr(type(inst), name, None) if isinstance(name, str) else None
    return inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)


@functools.lru_cache(maxsize=None)
def _has_async_methods(user_cls):
    """Whether a class has async methods (else its inputs need no decoding to tell)."""
    return any(inspect.iscoroutinefunction(m) or inspect.isasyncgenfunction(m)
               for m in (getattr(user_cls, n, None) for n in dir(user_cls)) if getattr(m, "_gust_method", False))


def make_batcher(sock, fn):
    """A Batcher for a @gust.batched function (or class method), else None."""
    inst = getattr(fn, "instance", None)
    if inst is not None:
        marked = [n for n in dir(type(inst)) if getattr(getattr(type(inst), n, None), "_gust_batched", None)]
        if not marked:
            return None
        method, target = marked[0], getattr(inst, marked[0])
        cfg = getattr(type(inst), method)._gust_batched
    else:
        cfg = getattr(fn, "_gust_batched", None)
        if cfg is None:
            return None
        method, target = None, fn

    def answer(fid, ok, value, encode):
        try:
            ftype, body = (FRAME_OUTPUT, encode(value)) if ok else (FRAME_ERROR, _error_body(value))
        except Exception as exc:  # this element cannot be sent in the input's form
            ftype, body = FRAME_ERROR, _error_body(exc)
        _end_output(fid)
        send(sock, ftype, fid, body)

    def stream(fid, call_id, gen):
        _streams.submit(_stream, sock, fid, call_id, gen, bytes)

    def run_coro(coro):
        return asyncio.run_coroutine_threadsafe(coro, _event_loop().loop).result()
    return Batcher(target, cfg["max_batch_size"], cfg["wait_ms"], method, answer, stream, run_coro)


def stop_on_signals(sock):
    """SIGTERM (and SIGINT), which gust-init passes on when the worker stops the
    container (scale-down, `gust stop`), at about the time its SHUTDOWN frame comes:
    take no new input, so that main() finishes the inputs in flight and runs the exit
    hooks, instead of dying at once as Python's default does. Shutting the socket's
    reading side makes the receive loop end once the frames already queued are read."""
    def handler(signum, frame):
        try:
            sock.shutdown(socket.SHUT_RD)
        except OSError:  # already shut, or the worker is gone: the loop ends either way
            pass
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_hook(hook, inst):
    """Runs an @enter/@exit hook; an async one (as Modal allows) is awaited on the
    container's event loop, where its async methods run, so what it makes for them
    (a client session, a lock) belongs to their loop. In a snapshot template, which
    must have no thread when it forks, it runs on a loop of its own that ends with it:
    what a snap=True hook leaves must not need a running loop anyway."""
    result = hook(inst)
    if not inspect.iscoroutine(result):
        return
    if os.environ.get("GUST_SNAPSHOT") == "template":
        asyncio.run(result)
    else:
        _run_on_loop(result)


def _run_on_loop(coro):
    """Runs coro on the container's event loop and returns its result (or raises)."""
    return asyncio.run_coroutine_threadsafe(coro, _event_loop().loop).result()


def run_exit_hooks(inst):
    """The @exit() hooks, each even when one before it failed (its traceback goes to
    the container's stderr); what they print goes to the function's logs."""
    for hook in EXIT_HOOKS:
        try:
            run_hook(hook, inst)
        except Exception:  # one hook's failure must not skip the others
            traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()


def _end_output(fid):
    """What the input printed and did not end with a newline goes out before its answer;
    its input stream, if any, goes (later bytes for it are dropped)."""
    instream.close_stream(fid)
    for s in (sys.stdout, sys.stderr):
        if isinstance(s, _InputStream):
            s.end_input(fid)


def _error_body(exc):
    if isinstance(exc, (InputCancellation, asyncio.CancelledError)):
        return bytes([FRAME_ERR_CANCELLED]) + b"cancelled"
    return bytes([FRAME_ERR_USER]) + error_message(explain(exc)).encode("utf-8", "replace")


class _Cancels:
    """What a CANCEL frame stops: the input's asyncio task is cancelled; code of the
    input running on a thread gets InputCancellation raised in it (Modal's exception,
    a BaseException) at its next Python instruction, and a generator waiting for its
    consumer is woken to see it. Code blocked in C (a sleep, a socket read) sees it only
    when it returns; gustd kills the container if the input is not given up within its
    grace (2 s), as it does for a runner that ignores CANCEL. Either way the input
    answers with a cancelled ERROR, which gustd, having let the call go, ignores."""

    def __init__(self):
        self._lock = threading.Lock()
        self._threads = {}  # input id -> [ident of the thread running its code, cancel raised there]
        self._tasks = {}  # input id -> the concurrent future of its task on the event loop
        self._cancelled = set()  # input ids cancelled while they run

    def thread_begin(self, fid):
        with self._lock:
            self._threads[fid] = [threading.get_ident(), False]

    def thread_end(self, fid):
        """The thread leaves fid's code: a cancellation raised there and not yet seen
        must not hit the next input the thread runs, so it is withdrawn."""
        with self._lock:
            entry = self._threads.pop(fid, None)
            self._cancelled.discard(fid)
            if entry and entry[1]:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(entry[0]), None)

    def task_begin(self, fid, fut):
        with self._lock:
            self._tasks[fid] = fut
        fut.add_done_callback(lambda _f: self._task_end(fid))

    def _task_end(self, fid):
        with self._lock:
            self._tasks.pop(fid, None)
            self._cancelled.discard(fid)

    def cancelled(self, fid):
        return fid in self._cancelled

    def cancel(self, fid):
        with self._lock:
            fut, entry = self._tasks.get(fid), self._threads.get(fid)
            if fut is None and entry is None:
                return  # done already, or never seen: nothing runs it
            self._cancelled.add(fid)
            if entry and not entry[1]:
                entry[1] = True
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(entry[0]),
                                                           ctypes.py_object(InputCancellation))
        if fut is not None:
            fut.cancel()  # cancels the task on its loop
        _window.wake(fid)


_cancels = _Cancels()


def serve(sock, fn, fid, payload):
    """Runs one input and answers it; what it printed goes out before the answer. A
    coroutine or async generator goes on to the event loop; a generator streams its
    items, on a thread of the stream pool when this is the main thread (which must go
    on reading the acknowledgements it waits for). The code sees its input and call
    (gust.current_input_id(), current_function_call_id()) wherever it runs."""
    call_id = _CALL_IDS.pop(fid, None)
    token = _fid.set(fid)
    rtoken = _runtime.enter_input(fid, call_id)
    try:
        _cancels.thread_begin(fid)
        try:
            if web.is_request(payload):  # its items are the response's bytes, not pickles
                result, encode, item = web.handle(fn, payload, instream.stream_of(fid)), None, bytes
            else:
                args, kwargs, encode = decode_input(payload)
                result, item = fn(*args, **kwargs), _pickle_item
        finally:
            _cancels.thread_end(fid)
        if inspect.iscoroutine(result) or inspect.isasyncgen(result):
            _event_loop().run(sock, fid, call_id, result, encode, item)
            return
        if inspect.isgenerator(result):
            if threading.current_thread() is threading.main_thread():
                _streams.submit(_stream, sock, fid, call_id, result, item)
            else:
                _stream(sock, fid, call_id, result, item)
            return
        ftype, body = FRAME_OUTPUT, encode(result)
    except BaseException as exc:  # the function's failure is the caller's to see
        ftype, body = FRAME_ERROR, _error_body(exc)
    finally:
        _fid.reset(token)
        _runtime.leave_input(rtoken)
    _end_output(fid)
    send(sock, ftype, fid, body)


class _Window:
    """Flow control of generator inputs: each may have FRAME_ITEM_WINDOW item bytes
    sent that gustd has not acknowledged (its consumer has not taken) before it waits;
    a thread waits on a condition, an async generator on a future of its loop."""

    def __init__(self):
        self._cond = threading.Condition()
        self._acked = {}  # input id -> item bytes acknowledged
        self._futures = {}  # input id -> [(loop, future)] of async generators waiting

    def start(self, fid):
        with self._cond:
            self._acked[fid] = 0

    def end(self, fid):
        with self._cond:
            self._acked.pop(fid, None)
            self._futures.pop(fid, None)

    def full(self, fid, sent):
        return sent - self._acked.get(fid, 0) >= FRAME_ITEM_WINDOW

    def ack(self, fid, taken):
        with self._cond:
            if fid not in self._acked:
                return
            self._acked[fid] = max(self._acked[fid], taken)
            self._cond.notify_all()
            waiting = self._futures.pop(fid, [])
        for loop, fut in waiting:
            loop.call_soon_threadsafe(_resolve, fut)

    def wait(self, fid, sent):
        with self._cond:
            while fid in self._acked and self.full(fid, sent) and not _cancels.cancelled(fid):
                self._cond.wait()

    def wake(self, fid):
        """fid was cancelled: a thread waiting for its acknowledgements looks again."""
        with self._cond:
            self._cond.notify_all()
            waiting = self._futures.pop(fid, [])
        for loop, fut in waiting:
            loop.call_soon_threadsafe(_resolve, fut)

    async def wait_async(self, fid, sent):
        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                if fid not in self._acked or not self.full(fid, sent):
                    return
                fut = loop.create_future()
                self._futures.setdefault(fid, []).append((loop, fut))
            await fut


def _resolve(fut):
    if not fut.done():
        fut.set_result(None)


_window = _Window()
# Generator inputs of a container that serves one input at a time are streamed here,
# not on the main thread; one thread, since it has one such input at a time.
_streams = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gust-gen")


def _pickle_item(value):
    return pickle.dumps(value, protocol=5)


def _thrown_in(gen, exc):
    """A cancellation that came while the generator was suspended (waiting for its
    consumer, or between values) is raised at its yield, so that its code sees it as
    Modal's does; returns what the generator ends with."""
    if not isinstance(exc, InputCancellation) or getattr(gen, "gi_frame", None) is None:
        return exc
    try:
        gen.throw(exc)
    except BaseException as raised:  # noqa: B902 - whatever it ends with is its answer
        return raised
    return exc  # it yielded again: it is closed all the same


def _stream(sock, fid, call_id, gen, item=_pickle_item):
    """Sends each value gen yields as an ITEM frame (its bytes: item(value)), then the
    end (or its error)."""
    token = _fid.set(fid)
    rtoken = _runtime.enter_input(fid, call_id)
    _window.start(fid)
    sent = 0
    try:
        _cancels.thread_begin(fid)
        try:
            for value in gen:
                data = item(value)
                if _window.full(fid, sent):
                    _window.wait(fid, sent)
                if _cancels.cancelled(fid):
                    raise InputCancellation("the call was cancelled")
                send(sock, FRAME_ITEM, fid, data)
                sent += len(data)
        finally:
            _cancels.thread_end(fid)
        ftype, body = FRAME_OUTPUT, b""
    except BaseException as exc:
        ftype, body = FRAME_ERROR, _error_body(_thrown_in(gen, exc))
    finally:
        gen.close()
        _window.end(fid)
        _fid.reset(token)
        _runtime.leave_input(rtoken)
    _end_output(fid)
    send(sock, ftype, fid, body)


class _EventLoop:
    """The container's asyncio loop, on a thread of its own, made at the first async
    input (a snapshot template, which must have no threads when it forks, makes none)."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="gust-asyncio", daemon=True)
        self.thread.start()

    def run(self, sock, fid, call_id, aw, encode, item=_pickle_item):
        """Starts the input's task: at once on the loop's own thread (read_on_loop; a
        task, which only that thread may cancel), else handed over to it (a
        concurrent future of the task)."""
        coro = _serve_async(sock, fid, call_id, aw, encode, item)
        if threading.current_thread() is self.thread:
            fut = self.loop.create_task(coro)
        else:
            fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        _cancels.task_begin(fid, fut)
        _async_inputs.add(fut)
        fut.add_done_callback(_input_done)


_loop_lock = threading.Lock()
_loop = None
_async_inputs = set()  # the async inputs in flight: tasks, or concurrent futures of tasks (_EventLoop.run)


def _input_done(fut):
    _async_inputs.discard(fut)
    if not fut.cancelled():
        fut.exception()  # only a send to a channel gone gets here: no "never retrieved" log


def _wait_async_inputs():
    """Returns once the async inputs in flight are done; called off the loop's thread."""
    futs = list(_async_inputs)
    tasks = [f for f in futs if isinstance(f, asyncio.Future)]
    concurrent.futures.wait([f for f in futs if not isinstance(f, asyncio.Future)])
    if tasks:
        asyncio.run_coroutine_threadsafe(asyncio.wait(tasks), _loop.loop).result()


def _event_loop():
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = _EventLoop()
        return _loop


async def _serve_async(sock, fid, call_id, aw, encode, item=_pickle_item):
    """Awaits a coroutine, or streams an async generator, and answers the input (a
    coroutine's result in the input's own form: encode, from decode_input)."""
    _fid.set(fid)  # this task's context only
    _runtime.enter_input(fid, call_id)
    try:
        if inspect.isasyncgen(aw):
            _window.start(fid)
            sent = 0
            try:
                async for value in aw:
                    data = item(value)
                    if _window.full(fid, sent):
                        await _window.wait_async(fid, sent)
                    send(sock, FRAME_ITEM, fid, data)
                    sent += len(data)
            finally:
                _window.end(fid)
            ftype, body = FRAME_OUTPUT, b""
        else:
            ftype, body = FRAME_OUTPUT, encode(await aw)
    except BaseException as exc:
        ftype, body = FRAME_ERROR, _error_body(exc)
    _end_output(fid)
    send(sock, ftype, fid, body)


if __name__ == "__main__":
    sys.exit(main())
