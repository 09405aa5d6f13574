"""Container side of a Python function: gust-init starts
`python3 -m gust._container.runner MODULE_FILE QUALNAME` in runner mode. It imports the
module once, then serves inputs over the runner protocol (src/proto/frame.h; the
constants are in .proto) on $GUST_RUNNER_FD: an input is pickle((args, kwargs)), a
result pickle(value) (protocol 5). An exception becomes an ERROR frame whose message
carries the pickled exception and the remote traceback (see gust.RemoteError)."""
import base64
import importlib.util
import os
import pickle
import signal
import socket
import sys
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor

from .. import _params, _runtime
from .proto import (EXC_TAG, FRAME_CHILD_FD, FRAME_ERR_USER, FRAME_ERROR, FRAME_F_MORE, FRAME_INPUT, FRAME_INPUT_CALL,
                    FRAME_INPUT_LOG, FRAME_MAX_BODY, FRAME_OUTPUT, FRAME_READY, FRAME_SHUTDOWN, HEADER, send_frame)

_send_lock = threading.Lock()
_current = threading.local()  # .fid: the input this thread serves
_CALL_IDS = {}  # input id -> its call's id, from the INPUT_CALL frame sent before the input


class _InputStream:
    """sys.stdout / sys.stderr while inputs run: text written by a thread serving an
    input goes out as INPUT_LOG frames of that input (whole lines; the rest at the
    input's end), so its log lines carry the call id; other text goes to the real
    stream (gust-init logs it without a call)."""

    def __init__(self, real, stream, sock):
        self._real, self._stream, self._sock = real, stream, sock
        self._parts = threading.local()

    def write(self, text):
        fid = getattr(_current, "fid", None)
        if fid is None:
            return self._real.write(text)
        parts = getattr(self._parts, "buf", None)
        if parts is None:
            parts = self._parts.buf = []
        parts.append(text)
        if "\n" in text:
            self._emit(fid, final=False)
        return len(text)

    def _emit(self, fid, final):
        parts = getattr(self._parts, "buf", None)
        if not parts:
            return
        data = "".join(parts)
        cut = len(data) if final else data.rfind("\n") + 1
        head, rest = data[:cut], data[cut:]
        parts[:] = [rest] if rest else []
        raw = head.encode("utf-8", "replace")
        for off in range(0, len(raw), FRAME_MAX_BODY - 1):  # frames of whole lines where they fit
            send(self._sock, FRAME_INPUT_LOG, fid, bytes([self._stream]) + raw[off:off + FRAME_MAX_BODY - 1])

    def end_input(self, fid):
        self._emit(fid, final=True)

    def flush(self):
        fid = getattr(_current, "fid", None)
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


def load(module_file, qualname, post_enter=True):
    src_dir = os.path.dirname(module_file)
    sys.path.insert(0, src_dir)
    if os.path.isfile(os.path.join(src_dir, "__init__.py")):  # its package's siblings import as pkg.x
        sys.path.insert(1, os.path.dirname(src_dir))
    name = os.path.splitext(os.path.basename(module_file))[0]
    spec = importlib.util.spec_from_file_location(name, module_file)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    obj = mod
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if hasattr(obj, "_user_cls"):  # a gust Cls: one instance per container
        return instance_dispatch(obj._user_cls, post_enter)
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
                m(inst)
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
    # max_inputs > 1: that many inputs at once, each on a thread of its own.
    workers = int(os.environ.get("GUST_MAX_INPUTS", "1") or "1")
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
    stop_on_signals(sock)
    send(sock, FRAME_READY, 0, b"")
    pending = {}
    while True:
        data = sock.recv(HEADER.size + FRAME_MAX_BODY)
        if not data:
            break
        ftype, flags, _, blen, fid = HEADER.unpack_from(data)
        body = data[HEADER.size:HEADER.size + blen]
        if ftype == FRAME_SHUTDOWN:
            break
        if ftype == FRAME_INPUT_CALL:
            _CALL_IDS[fid] = body.decode("ascii", "replace")
            continue
        if ftype != FRAME_INPUT:
            continue
        pending.setdefault(fid, []).append(body)
        if flags & FRAME_F_MORE:
            continue
        payload = b"".join(pending.pop(fid))
        if pool:
            pool.submit(serve, sock, fn, fid, payload)
        else:
            serve(sock, fn, fid, payload)
    if pool:
        pool.shutdown(wait=True)  # finish the inputs in flight
    run_exit_hooks(getattr(fn, "instance", None))
    return 0


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


def run_exit_hooks(inst):
    """The @exit() hooks, each even when one before it failed (its traceback goes to
    the container's stderr); what they print goes to the function's logs."""
    for hook in EXIT_HOOKS:
        try:
            hook(inst)
        except Exception:  # one hook's failure must not skip the others
            traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()


def serve(sock, fn, fid, payload):
    """Runs one input and answers it; what it printed goes out before the answer."""
    _current.fid = fid
    token = _runtime.enter_input(fid, _CALL_IDS.pop(fid, None))
    try:
        args, kwargs = pickle.loads(payload)
        out = pickle.dumps(fn(*args, **kwargs), protocol=5)
        ftype, body = FRAME_OUTPUT, out
    except BaseException as exc:  # the function's failure is the caller's to see
        ftype, body = FRAME_ERROR, bytes([FRAME_ERR_USER]) + error_message(exc).encode("utf-8", "replace")
    finally:
        _runtime.leave_input(token)
        _current.fid = None
        for s in (sys.stdout, sys.stderr):
            if isinstance(s, _InputStream):
                s.end_input(fid)
    send(sock, ftype, fid, body)


if __name__ == "__main__":
    sys.exit(main())
