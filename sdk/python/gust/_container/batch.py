"""Dynamic batching in the container (@gust.batched): the runner hands each input of a
batched function to a Batcher instead of serving it; the Batcher's thread collects up
to max_batch_size inputs, waiting at most wait_ms after the first of a batch, calls the
function once with a list per parameter (the inputs' values in arrival order) and
answers each input with its element of the returned list. gustd sends a container at
most max_inputs = max_batch_size inputs at once (Function.spec sets it), so a full
batch can form in one container.

An input whose arguments do not fit the function's parameters fails alone; an
exception of the function, or a result that is not a list of one element per input,
fails every input of the batch. Web requests (a batched web_endpoint) join batches
too: their query or JSON arguments are the values, each element their JSON response."""
import inspect
import threading
import time
import traceback

from ..exception import InvalidError
from . import instream, web
from .jsonargs import decode_input


class _Input:
    __slots__ = ("fid", "call_id", "values", "encode", "arrived")

    def __init__(self, fid, call_id, values, encode):
        self.fid, self.call_id, self.values, self.encode = fid, call_id, values, encode
        self.arrived = time.monotonic()


class Batcher:
    """target: the function (or the instance's bound method); method: for a class, the
    batched method's name, which each input names first. The runner's hooks: answer(fid,
    ok, value-or-exception, encode) sends one input's answer; stream(fid, call_id, gen)
    streams a web response's items; run_coro(coro) awaits a coroutine on the
    container's event loop."""

    def __init__(self, target, max_size, wait_ms, method, answer, stream, run_coro):
        self.target, self.max_size, self.wait_s = target, max_size, wait_ms / 1000.0
        self.method = method
        self.answer, self.stream, self.run_coro = answer, stream, run_coro
        self.sig = inspect.signature(target)
        self.names = list(self.sig.parameters)
        self.name = getattr(target, "__name__", "?")
        self._cond = threading.Condition()
        self._items = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="gust-batch", daemon=True)
        self._thread.start()

    def put(self, fid, call_id, payload):
        """Decodes one input and queues it; one that cannot join a batch is answered now.
        A web request whose body is still arriving is read on a thread of its own: this
        is the receiving thread, which must go on taking the body's stream frames."""
        if web.is_request(payload):
            req = web.Request(payload, instream.stream_of(fid))
            if req.streamed:
                threading.Thread(target=self._put, args=(fid, call_id, payload, req), name="gust-batch-body",
                                 daemon=True).start()
                return
        self._put(fid, call_id, payload)

    def _put(self, fid, call_id, payload, req=None):
        try:
            if web.is_request(payload):
                values, encode = self._web_values(req or web.Request(payload)), None
            else:
                args, kwargs, encode = decode_input(payload)
                values = self._values(args, kwargs)
        except web.BadRequest as e:
            self.stream(fid, call_id, iter([web.json_error(e.status, "invalid_argument", str(e))]))
            return
        except Exception as exc:  # the caller's arguments: this input fails alone
            self.answer(fid, False, exc, None)
            return
        with self._cond:
            self._items.append(_Input(fid, call_id, values, encode))
            self._cond.notify()

    def _values(self, args, kwargs):
        if self.method is not None:
            if not args or args[0] != self.method:
                got = args[0] if args else None
                raise AttributeError(f"{self.method} is the batched method of this class; {got!r} is not a method")
            args = args[1:]
        try:
            bound = self.sig.bind(*args, **kwargs)
        except TypeError as e:
            raise InvalidError(f"Gust batched function {self.name} takes {len(self.names)} argument(s) "
                               f"({', '.join(self.names)}) per call: {e}") from None
        return bound.arguments

    def _web_values(self, req):
        req.read_body()
        kwargs = web.request_kwargs(self.target, req, batched=True)
        missing = [n for n in self.names if n not in kwargs]
        if missing:
            raise web.BadRequest(422, f"missing argument(s): {', '.join(missing)}")
        return kwargs

    def close(self):
        """No more inputs: the thread serves what is queued, then ends."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _next_batch(self):
        with self._cond:
            while not self._items and not self._closed:
                self._cond.wait()
            if not self._items:
                return None
            deadline = self._items[0].arrived + self.wait_s
            while len(self._items) < self.max_size and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch, self._items = self._items[:self.max_size], self._items[self.max_size:]
            return batch

    def _run(self):
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._serve(batch)

    def _serve(self, batch):
        try:
            result = self.target(**{n: [i.values[n] for i in batch] for n in self.names})
            if inspect.iscoroutine(result):
                result = self.run_coro(result)
            if not isinstance(result, list):
                raise InvalidError(f"Output of batched function {self.name} must be a list, got "
                                   f"{type(result).__name__}.")
            if len(result) != len(batch):
                raise InvalidError(f"Output of batched function {self.name} must be a list of equal length as its "
                                   f"inputs: {len(batch)} input(s), {len(result)} result(s).")
        except BaseException as exc:  # the batch's failure is each of its callers'
            if any(i.encode is None for i in batch):  # a web caller gets a 500 without it: the logs have it
                traceback.print_exception(type(exc), exc, exc.__traceback__)
            for i in batch:
                self.answer(i.fid, False, exc, i.encode)
            return
        for i, value in zip(batch, result):
            if i.encode is None:
                self.stream(i.fid, i.call_id, web.result_items(value))
            else:
                self.answer(i.fid, True, value, i.encode)
