"""Web endpoints in the container: a web request arrives as an input that starts with
WEB_TAG (the envelope of src/proto/web.h), and its response goes back as the call's
items: the head (status, headers, maybe the first body bytes), then body chunks as the
handler produces them. handle() turns one request into a generator (or an async
generator, for ASGI apps and async handlers) of those items' bytes, which the runner
streams like any generator's values, within the item window.

Kinds (the _gust_web dict the decorators in gust.web put on the function):
- "function": the function handles the request itself: query parameters (GET) or the
  JSON object of the body (other methods) are its keyword arguments, its return value
  the JSON response (or a gust.Response; a generator result streams). With "fastapi"
  set, FastAPI does this instead (fastapi_endpoint), served as an ASGI app.
- "asgi" / "wsgi": the function returns an app, made once per container as it starts
  (prepare(), before it takes requests; an ASGI app's lifespan startup runs then, its
  shutdown when the container stops: .lifespan); each request is served to it directly
  (an ASGI http scope with receive/send, a WSGI environ with start_response), without
  an HTTP server in between. A WebSocket handshake to an ASGI app runs it with a
  websocket scope (.websocket); a web_server's goes to its server (.web_server); other
  kinds answer it 400.
- "web_server": the function started a server at container start; each request is
  proxied to it (.web_server)."""
import asyncio
import inspect
import io
import json
import struct
import sys
import traceback
import urllib.parse

from . import websocket
from .lifespan import Lifespan
from .proto import WEB_BODY_LEN_UNKNOWN, WEB_TAG, WEB_TAG_LEN

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class BadRequest(Exception):
    """A request the handler cannot take (its arguments): 4xx, not the handler's fault."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Request:
    """A decoded envelope: method, scheme, root_path, path (percent-encoded), query (raw),
    client, headers [(name bytes, value bytes)], body, body_length (None: sent chunked,
    unknown) and streamed. A streamed request's body is only its first bytes (those that
    came with the head): the rest arrives on the input's stream (.instream, gustd sends
    it as the client does), which body_pieces()/body_pieces_async() read in order and
    read_body() reads whole. gustd's --web-max-body bounds the whole body either way."""

    def __init__(self, payload, stream=None):
        if payload[:WEB_TAG_LEN] != WEB_TAG:
            raise ValueError("not a web request")
        off = WEB_TAG_LEN
        fields = []
        for _ in range(6):
            (n,) = _U32.unpack_from(payload, off)
            fields.append(bytes(payload[off + 4:off + 4 + n]))
            off += 4 + n
        (count,) = _U32.unpack_from(payload, off)
        off += 4
        headers = []
        for _ in range(count):
            pair = []
            for _ in range(2):
                (n,) = _U32.unpack_from(payload, off)
                pair.append(bytes(payload[off + 4:off + 4 + n]))
                off += 4 + n
            headers.append(tuple(pair))
        self.method, self.scheme, self.root_path, self.path, self.query, self.client = (
            f.decode("latin-1") for f in fields)
        self.headers = headers
        (total,) = _U64.unpack_from(payload, off)
        off += 8
        self.body = bytes(payload[off:])
        if len(self.body) > total:
            raise ValueError("the request envelope holds more body bytes than its body length")
        self.body_length = None if total == WEB_BODY_LEN_UNKNOWN else total
        self.streamed = len(self.body) < total
        self.stream = stream

    def _stream(self):
        if self.stream is None:
            raise RuntimeError("this request's body streams, but its input has no stream")
        return self.stream

    def body_pieces(self):
        """The body piece by piece as it arrives, blocking this thread for the next."""
        if self.body:
            yield self.body
        if self.streamed:
            stream = self._stream()
            while True:
                data = stream.read_sync()
                if not data:
                    return
                yield data

    async def body_pieces_async(self):
        """As body_pieces, on the event loop."""
        if self.body:
            yield self.body
        if self.streamed:
            stream = self._stream()
            while True:
                data = await stream.read()
                if not data:
                    return
                yield data

    def read_body(self):
        """The whole body (blocking until a streamed one has all come): handlers that
        take it as one value (web_endpoint's JSON arguments)."""
        if self.streamed:
            self.body = b"".join(self.body_pieces())
            self.streamed = False
        return self.body

    def header(self, name):
        name = name.lower().encode("latin-1")
        for k, v in self.headers:
            if k.lower() == name:
                return v.decode("latin-1")
        return None


def encode_head(status, headers, body=b""):
    """Item 0: u32 status, u32 count, (name, value) strings, then the first body bytes."""
    parts = [_U32.pack(int(status)), _U32.pack(len(headers))]
    for k, v in headers:
        for s in (k, v):
            b = s if isinstance(s, bytes) else str(s).encode("latin-1")
            parts += [_U32.pack(len(b)), b]
    parts.append(body)
    return b"".join(parts)


class Response:
    """A response of a web_endpoint other than JSON: content is bytes, str, or an
    iterable (a generator) of them, streamed chunk by chunk (server-sent events:
    media_type="text/event-stream"). The names are Starlette's Response's, which
    fastapi_endpoint handlers return instead."""

    def __init__(self, content=b"", status_code=200, headers=None, media_type=None):
        self.content, self.status_code = content, int(status_code)
        self.headers = dict(headers or {})
        self.media_type = media_type


def _chunk(x):
    return x if isinstance(x, bytes) else str(x).encode("utf-8")


def json_error(status, code, message):
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return encode_head(status, [("Content-Type", "application/json")], body)


# ---------------------------------------------------------------- stdlib functions

def _coerce(value, annotation):
    """A query string value typed as the parameter's annotation says (int, float, bool)."""
    try:
        if annotation is int:
            return int(value)
        if annotation is float:
            return float(value)
        if annotation is bool:
            return value.lower() in ("1", "true", "yes", "on")
    except ValueError:
        raise BadRequest(422, f"{value!r} is not a valid {annotation.__name__}") from None
    return value


def _element_type(annotation):
    """list[int] -> int: a batched handler's parameters are lists of what one request gives."""
    args = getattr(annotation, "__args__", None)
    return args[0] if getattr(annotation, "__origin__", None) is list and args else inspect.Parameter.empty


def request_kwargs(fn, req, batched=False):
    """The handler's keyword arguments: the query's (GET, HEAD, DELETE) or the JSON body's.
    batched: fn takes a list per parameter (@gust.batched), a request gives one element."""
    sig = inspect.signature(fn)
    if req.method in ("GET", "HEAD", "DELETE") or not req.body:
        q = urllib.parse.parse_qs(req.query, keep_blank_values=True)
        kwargs = {}
        for k, vs in q.items():
            p = sig.parameters.get(k)
            ann = p.annotation if p is not None else inspect.Parameter.empty
            if batched:
                ann = _element_type(ann)
            vals = [_coerce(v, ann) for v in vs]
            kwargs[k] = vals if len(vals) > 1 or getattr(ann, "__origin__", None) is list else vals[0]
    else:
        try:
            kwargs = json.loads(req.body)
        except ValueError as e:
            raise BadRequest(400, f"the body is not JSON: {e}") from None
        if not isinstance(kwargs, dict):
            raise BadRequest(422, "the JSON body must be an object of the handler's arguments")
    try:
        sig.bind(**kwargs)
    except TypeError as e:
        raise BadRequest(422, str(e)) from None
    return kwargs


def result_items(result):
    """Items of a handler's result: a Response, a generator (streamed), or JSON."""
    if isinstance(result, Response):
        headers = list(result.headers.items())
        content = result.content
        if result.media_type and not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("Content-Type", result.media_type))
        if isinstance(content, (bytes, str)):
            yield encode_head(result.status_code, headers, _chunk(content))
            return
        if not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("Content-Type", "application/octet-stream"))
        yield encode_head(result.status_code, headers)
        for part in content:
            yield _chunk(part)
        return
    if inspect.isgenerator(result):
        yield encode_head(200, [("Content-Type", "text/plain; charset=utf-8")])
        for part in result:
            yield _chunk(part)
        return
    body = json.dumps(result).encode("utf-8")
    yield encode_head(200, [("Content-Type", "application/json")], body)


def _function_items(fn, req):
    req.read_body()
    try:
        kwargs = request_kwargs(fn, req)
    except BadRequest as e:
        yield json_error(e.status, "invalid_argument", str(e))
        return
    result = fn(**kwargs)
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    yield from result_items(result)


# ---------------------------------------------------------------- WSGI

class _BodyFile(io.RawIOBase):
    """A streamed body as a file (wsgi.input): reads take the pieces as they come."""

    def __init__(self, pieces):
        self._pieces = pieces
        self._buf = memoryview(b"")

    def readable(self):
        return True

    def readinto(self, b):
        if not self._buf:
            self._buf = memoryview(next(self._pieces, b""))
            if not self._buf:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def _wsgi_environ(req):
    path = urllib.parse.unquote(req.path, encoding="latin-1")
    env = {
        "REQUEST_METHOD": req.method, "SCRIPT_NAME": req.root_path, "PATH_INFO": path,
        "QUERY_STRING": req.query, "SERVER_NAME": "gust", "SERVER_PORT": "443" if req.scheme == "https" else "80",
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": req.client,
        "wsgi.version": (1, 0), "wsgi.url_scheme": req.scheme,
        "wsgi.input": io.BufferedReader(_BodyFile(req.body_pieces())) if req.streamed else io.BytesIO(req.body),
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
    }
    if req.body_length is not None:
        env["CONTENT_LENGTH"] = str(req.body_length)
    else:
        # No length (the client sent it chunked): the input ends at the body's end, as
        # the servers that set this extension (mod_wsgi, gunicorn) promise.
        env["wsgi.input_terminated"] = True
    for k, v in req.headers:
        name = k.decode("latin-1").upper().replace("-", "_")
        value = v.decode("latin-1")
        if name == "CONTENT_TYPE":
            env["CONTENT_TYPE"] = value
        elif name != "CONTENT_LENGTH":
            key = "HTTP_" + name
            env[key] = env[key] + "," + value if key in env else value
    return env


def _wsgi_items(app, req):
    head = {}
    written = []

    def start_response(status, headers, exc_info=None):
        if exc_info and head.get("sent"):
            raise exc_info[1].with_traceback(exc_info[2])
        head["status"], head["headers"] = int(status.split(" ", 1)[0]), headers
        return written.append

    result = app(_wsgi_environ(req), start_response)
    try:
        for part in result:
            if written:
                part, written[:] = b"".join(written) + part, []
            if not part and not head.get("sent"):
                continue
            if not head.get("sent"):
                head["sent"] = True
                yield encode_head(head["status"], head["headers"], part)
            elif part:
                yield part
        if not head.get("sent"):
            yield encode_head(head["status"], head["headers"], b"".join(written))
        elif written:
            yield b"".join(written)
    finally:
        close = getattr(result, "close", None)
        if close:
            close()


# ---------------------------------------------------------------- ASGI

async def _asgi_body(req):
    """The request's http.request messages: the whole body in one, or a streamed body
    piece by piece as it arrives (more_body=True), then an empty last one."""
    if not req.streamed:
        yield {"type": "http.request", "body": req.body, "more_body": False}
        return
    async for piece in req.body_pieces_async():
        yield {"type": "http.request", "body": piece, "more_body": True}
    yield {"type": "http.request", "body": b"", "more_body": False}


async def _asgi_items(app, req):
    """Runs the app on the request as an ASGI http scope; yields the head (with the first
    body bytes) and each further body message as it is sent."""
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": req.method, "scheme": req.scheme, "root_path": req.root_path,
        "path": urllib.parse.unquote(req.path), "raw_path": req.path.encode("latin-1"),
        "query_string": req.query.encode("latin-1"),
        "headers": [(k.lower(), v) for k, v in req.headers], "client": None, "server": None,
        "state": dict(_lifespans[id(app)].state) if id(app) in _lifespans else {},
    }
    out = asyncio.Queue()
    done = asyncio.Event()
    requests = _asgi_body(req)
    body_left = True
    body_lock = asyncio.Lock()  # an app may wait in receive() from two tasks (a disconnect watcher)

    async def receive():
        nonlocal body_left
        async with body_lock:
            if body_left:
                msg = await requests.__anext__()
                body_left = msg["more_body"]
                return msg
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(msg):
        await out.put(msg)

    async def run():
        try:
            await app(scope, receive, send)
        finally:
            await out.put(None)

    task = asyncio.ensure_future(run())
    head = None
    try:
        while True:
            msg = await out.get()
            if msg is None:
                break
            t = msg.get("type")
            if t == "http.response.start":
                head = (msg["status"], msg.get("headers", []))
            elif t == "http.response.body":
                body = msg.get("body", b"")
                if head is not None:
                    yield encode_head(head[0], head[1], body)
                    head = None
                elif body:
                    yield body
                if not msg.get("more_body", False):
                    break
        if head is not None:
            yield encode_head(head[0], head[1])
    finally:
        done.set()
        await task  # its exception (if any) is the call's error


# ---------------------------------------------------------------- dispatch

_apps = {}  # id(function) -> the app it returned (one per container)
_lifespans = {}  # id(app) -> its Lifespan, once started


def prepare(fn, run_coro):
    """At container start, before it takes requests: makes fn's app if fn is an ASGI or
    WSGI endpoint and runs an ASGI app's lifespan startup on the container's event loop
    (run_coro runs a coroutine there and returns its result). Raises what the app's
    making or startup raised: the container fails to start."""
    cfg = getattr(fn, "_gust_web", None)
    if cfg is None or not (cfg.get("kind") in ("asgi", "wsgi") or cfg.get("fastapi")):
        return
    app = _app_of(fn, cfg, run_coro)
    if cfg.get("kind") == "wsgi":
        return
    ls = Lifespan(app)
    run_coro(ls.startup())
    if ls.supported:
        _lifespans[id(app)] = ls


def finish(run_coro):
    """As the container stops: the ASGI apps' lifespan shutdown."""
    for ls in list(_lifespans.values()):
        run_coro(ls.shutdown())
    _lifespans.clear()


def _app_of(fn, cfg, run_coro=None):
    """fn's app, made once per container (prepare() makes it at the start); an async
    factory runs on the container's loop (run_coro), where the app's requests run, so
    what it makes (locks, clients) belongs to their loop."""
    app = _apps.get(id(fn))
    if app is None:
        if cfg.get("fastapi"):
            app = _fastapi_app(fn, cfg)
        else:
            app = fn()
            if inspect.iscoroutine(app):
                app = run_coro(app) if run_coro else asyncio.run(app)
        _apps[id(fn)] = app
    return app


def serves_on_loop(fn):
    """Whether every request to fn is a coroutine of the container's event loop (an ASGI
    app, fastapi_endpoint included): the runner then reads its channel on that loop."""
    cfg = getattr(fn, "_gust_web", None) or {}
    return cfg.get("kind") == "asgi" or bool(cfg.get("fastapi"))


def _fastapi_app(fn, cfg):
    """fastapi_endpoint: the function as the one route of a FastAPI app, as Modal does."""
    from fastapi import FastAPI
    app = FastAPI(docs_url="/docs" if cfg.get("docs") else None, redoc_url=None,
                  openapi_url="/openapi.json" if cfg.get("docs") else None)
    method = cfg.get("method") or "GET"
    methods = None if method == "*" else [method]
    app.add_api_route("/", fn, methods=methods or ["GET", "POST", "PUT", "PATCH", "DELETE"])
    return app


def _logged(gen):
    """Passes gen's items on; an exception's traceback goes to the function's logs
    (stderr) before it fails the call, which gustd answers with a 500 without it."""
    try:
        yield from gen
    except BaseException:
        traceback.print_exc()
        raise


async def _logged_async(agen):
    try:
        async for item in agen:
            yield item
    except BaseException:
        traceback.print_exc()
        raise


def is_request(payload):
    return payload[:WEB_TAG_LEN] == WEB_TAG


def _no_websocket():
    yield json_error(400, "websocket_unsupported",
                     "this endpoint does not take WebSocket connections (serve them with @gust.asgi_app)")


def handle(fn, payload, stream=None):
    """The items of one request to the endpoint fn: a generator, or an async generator
    for ASGI apps (fastapi_endpoint included), to be run on the container's loop.
    stream: the input's stream (.instream), which carries a WebSocket's client bytes."""
    cfg = getattr(fn, "_gust_web", None)
    if cfg is None:
        raise TypeError("this function is not a web endpoint (decorate it with @gust.web_endpoint, "
                        "@gust.fastapi_endpoint, @gust.asgi_app, @gust.wsgi_app or @gust.web_server)")
    req = Request(payload, stream)
    kind = cfg.get("kind")
    if websocket.is_upgrade(req) and kind != "web_server":
        if kind != "asgi":
            return _no_websocket()
        return _logged_async(websocket.websocket_items(_app_of(fn, cfg), req, stream, encode_head, json_error))
    if kind == "asgi" or cfg.get("fastapi"):
        return _logged_async(_asgi_items(_app_of(fn, cfg), req))
    if kind == "wsgi":
        return _logged(_wsgi_items(_app_of(fn, cfg), req))
    if kind == "web_server":
        from . import web_server  # it builds on this module's heads and errors
        return web_server.handle(fn, req, stream=stream)
    return _logged(_function_items(fn, req))
