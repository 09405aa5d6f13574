"""@gust.web_server in the container: the runner is the reverse proxy to the server
the function starts. It runs in the container's network namespace, so it reaches the
server on 127.0.0.1:port, and gustd goes on seeing a web request as one generator call
(src/proto/web.h): its per-container input accounting, queueing and 502/504 answers
are the same as for every other kind of endpoint.

- start(): at container start, before the runner reports READY, the function is
  called once (it starts the server: a subprocess, a thread, a task on the
  container's event loop) and returns; then the runner waits until 127.0.0.1:port
  accepts a TCP connection, for at most startup_timeout seconds. Only then is the
  container ready, so gustd sends requests only to containers whose server is up;
  otherwise the container's start fails with StartupError's message.
- handle(): one request → a generator of the call's items. It takes a connection
  (from a small keep-alive pool, or a new one), sends the request as HTTP/1.1, parses
  the response head itself (bounded), yields item 0 (the head, with the body bytes
  already read) and then each piece of the body as it arrives from the server:
  Content-Length, chunked (de-chunked: items are raw body bytes, gustd frames them
  again) or until-close. Server-sent events thus reach the client one by one while
  the server still writes.

Each request runs on a thread of the runner (a @gust.concurrent function's inputs run
on up to max_inputs threads at once); requests share only the pool, under its lock.

Errors: nothing to connect to, or a malformed or missing response head → item 0 is a
502 with a JSON error naming what happened (the message also goes to the function's
logs); the server closing or resetting the connection after the head → the call fails
(UpstreamError), which gustd turns into a cut-short response, as for any endpoint that
fails mid-body.

A cancelled call (its client went away) shuts its connection to the server (cancel()),
so the input ends at once and the container, with the server, goes on serving.

Upgrades (WebSocket): a request asking for one goes to upgrade(), on a connection of
its own; a 101 switches it to raw piping in both directions (the call's input stream to
the server, the server's bytes back as items), which gustd tunnels to the client."""
import inspect
import os
import select
import socket
import sys
import threading
import time
import traceback

from .. import _runtime
from ..exception import InputCancellation
from .proto import WEB_MAX_HEADER_BYTES, WEB_MAX_HEADERS
from .web import encode_head, json_error

HOST = "127.0.0.1"
# How often the startup wait tries to connect: short so that the container is ready
# soon after the server listens, long enough that a slow start costs no noticeable CPU.
_STARTUP_POLL_S = 0.02
# The most bytes of a response head (status line and headers) the proxy reads before
# it gives up with a 502: gustd's own HTTP parser allows a request head as much, and a
# response head that fits gustd's item-0 limits (WEB_MAX_HEADERS headers of at most
# WEB_MAX_HEADER_BYTES each) is well under it in practice.
HEAD_MAX = 64 * 1024
# A chunk-size line is a hex number and maybe extensions; none real is near this. The
# trailer section (read and dropped: gustd sends no trailers) is bounded as a head is.
_CHUNK_LINE_MAX = 4096
# One recv: an item is what one recv returned, so a streamed response's pieces go on
# as they come; 64 KiB is a socket's usual receive buffer, big enough that a large
# download is not split into many small items.
_READ = 64 * 1024
# Request headers that belong to one connection (RFC 9110 7.6.1) or that this proxy
# sets itself; gustd drops most of them already (web_header_reserved). Expect: gustd
# answered the client's 100 itself, and the body is sent on as it comes.
_HOP = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
                  b"upgrade", b"content-length", b"expect", b"x-forwarded-proto", b"x-forwarded-prefix"))
# Methods whose requests carry no body unless the client sent one; the others get a
# Content-Length even when it is 0 (servers may insist on it for POST).
_NO_BODY_METHODS = frozenset(("GET", "HEAD", "DELETE", "OPTIONS", "TRACE"))
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class StartupError(Exception):
    """The server did not come up: the container's start fails with this message."""


class UpstreamError(Exception):
    """The server broke the HTTP exchange (refused, closed, malformed response)."""


# ---------------------------------------------------------------- startup

def is_server(fn):
    return (getattr(fn, "_gust_web", None) or {}).get("kind") == "web_server"


def start(fn, run_coro):
    """Calls fn once (an async one through run_coro, on the container's event loop, so
    a server it starts there keeps running) and waits for its port. Raises
    StartupError when nothing listens on it in time; fn's own exception as it is."""
    cfg = fn._gust_web
    result = fn()
    if inspect.iscoroutine(result):
        run_coro(result)
    wait_for_port(cfg["port"], cfg["startup_timeout"])
    global _pool
    _pool = Pool(cfg["port"], pool_size())


def wait_for_port(port, timeout, host=HOST):
    """Returns once host:port accepts a TCP connection; StartupError after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise StartupError(f"web_server: nothing accepted connections on port {port} within {float(timeout)} s "
                               f"(the function must start a server listening on 0.0.0.0:{port} or {host}:{port})")
        try:
            socket.create_connection((host, port), timeout=left).close()
            return
        except OSError:  # refused (nothing listens yet) or timed out: try again until the deadline
            time.sleep(min(_STARTUP_POLL_S, max(0.0, deadline - time.monotonic())))


def pool_size():
    """Idle connections kept: as many as the container serves requests at once
    (@gust.concurrent's max_inputs), since no more can be in use together; more would
    only hold sockets, and a thread each in a threading server, for nothing."""
    try:
        return max(1, int(os.environ.get("GUST_MAX_INPUTS", "1") or "1"))
    except ValueError:
        return 1


_pool = None


# ---------------------------------------------------------------- connections

class Conn:
    """A connection to the server and the bytes read from it but not used yet."""

    def __init__(self, sock):
        self.sock, self.buf, self.reused, self.cancelled = sock, b"", False, False

    def recv(self):
        return self.sock.recv(_READ)

    def idle_ok(self):
        """Whether an idle connection is still usable: readable means the server closed
        it (or sent bytes nobody asked for), either way it cannot carry a request."""
        try:
            return not select.select([self.sock], [], [], 0)[0]
        except (OSError, ValueError):
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Pool:
    """Keep-alive connections to host:port, shared by the requests' threads."""

    def __init__(self, port, size, host=HOST):
        self.port, self.size, self.host = port, size, host
        self._idle = []
        self._lock = threading.Lock()

    def get(self):
        with self._lock:
            while self._idle:
                c = self._idle.pop()
                if c.idle_ok():
                    c.reused = True
                    return c
                c.close()
        return self.connect()

    def connect(self):
        try:
            sock = socket.create_connection((self.host, self.port))
        except OSError as e:
            raise UpstreamError(f"web_server: cannot connect to {self.host}:{self.port}: {e.strerror or e}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return Conn(sock)

    def put(self, c):
        c.buf = b""
        with self._lock:
            if len(self._idle) < self.size:
                self._idle.append(c)
                return
        c.close()


# ---------------------------------------------------------------- the request

def request_bytes(req, port, upgrade=None):
    """The request as the server gets it: method and target as the client sent them
    (the part after the endpoint's prefix), the client's headers with Host as it sent
    it, X-Forwarded-For/-Proto/-Prefix, and the body with its Content-Length. upgrade:
    the client's Upgrade value, passed on with Connection: Upgrade (a tunnel's request)."""
    target = (req.path or "/") + ("?" + req.query if req.query else "")
    lines = [f"{req.method} {target} HTTP/1.1".encode("latin-1")]
    if upgrade is not None:
        lines += [b"Connection: Upgrade", b"Upgrade: " + upgrade]
    host = xff = None
    for k, v in req.headers:
        lk = k.lower()
        if lk in _HOP:
            continue
        if lk == b"host":
            host = v
            continue
        if lk == b"x-forwarded-for":
            xff = v if xff is None else xff + b", " + v
            continue
        lines.append(k + b": " + v)
    lines.insert(1, b"Host: " + (host if host is not None else f"{HOST}:{port}".encode()))
    client = req.client.encode("latin-1")
    if client:
        xff = client if xff is None else xff + b", " + client
    if xff is not None:
        lines.append(b"X-Forwarded-For: " + xff)
    lines.append(b"X-Forwarded-Proto: " + req.scheme.encode("latin-1"))
    if req.root_path:
        lines.append(b"X-Forwarded-Prefix: " + req.root_path.encode("latin-1"))
    chunked = _chunked(req)
    if chunked:
        lines.append(b"Transfer-Encoding: chunked")
    elif req.streamed or req.body or req.method not in _NO_BODY_METHODS:
        lines.append(b"Content-Length: " + str(req.body_length).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + (_chunk(req.body) if chunked else req.body)


def _chunked(req):
    """A streamed body of no known length (the client sent it chunked) goes on chunked;
    any other with its Content-Length, the client's."""
    return req.streamed and req.body_length is None


def _chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


def _header_bytes(req, name):
    v = req.header(name)
    return v if v is None or isinstance(v, bytes) else v.encode("latin-1")


def wants_upgrade(req):
    return req.header("Upgrade") is not None


# ---------------------------------------------------------------- the response head

class Head:
    def __init__(self, version, status, headers):
        self.version, self.status, self.headers = version, status, headers

    def values(self, name):
        return [v for k, v in self.headers if k.lower() == name]

    def tokens(self, name):
        return {t.strip().lower() for v in self.values(name) for t in v.split(b",") if t.strip()}


def parse_head(data):
    """A response head: its bytes up to and without the empty line. Raises
    UpstreamError for anything gustd could not pass on (a bad status line, more than
    WEB_MAX_HEADERS headers, a header over WEB_MAX_HEADER_BYTES, a name that is not a
    token, a NUL in a value, an obsolete folded line)."""
    lines = data.split(b"\n")
    first = lines[0].rstrip(b"\r")
    parts = first.split(b" ", 2)
    if (len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0") or len(parts[1]) != 3
            or not parts[1].isdigit() or not 100 <= int(parts[1]) <= 599):
        raise UpstreamError(f"web_server: the server's response does not start with an HTTP/1.x status line: "
                            f"{first[:80]!r}")
    headers = []
    for raw in lines[1:]:
        line = raw.rstrip(b"\r")
        if line[:1] in (b" ", b"\t"):
            raise UpstreamError("web_server: the server's response head has a folded header line (obsolete)")
        name, sep, value = line.partition(b":")
        if not sep or not name or not all(ch in _TOKEN for ch in name):
            raise UpstreamError(f"web_server: the server's response head has a malformed header line: {line[:80]!r}")
        value = value.strip(b" \t")
        if b"\0" in value:
            raise UpstreamError(f"web_server: the server's header {name[:80]!r} has a NUL byte")
        if len(name) + len(value) > WEB_MAX_HEADER_BYTES:
            raise UpstreamError(f"web_server: the server's header {name[:80]!r} is over {WEB_MAX_HEADER_BYTES} bytes")
        headers.append((name, value))
        if len(headers) > WEB_MAX_HEADERS:
            raise UpstreamError(f"web_server: the server's response has more than {WEB_MAX_HEADERS} headers")
    return Head(parts[0], int(parts[1]), headers)


def read_head(conn):
    """Reads one response head from conn (the bytes after it stay in conn.buf).
    Returns None when the server closed the connection before sending a byte."""
    buf = conn.buf
    while True:
        end = _head_end(buf)
        if end is not None:
            head_bytes, conn.buf = buf[:end[0]], buf[end[1]:]
            return parse_head(head_bytes)
        if len(buf) > HEAD_MAX:
            raise UpstreamError(f"web_server: the server's response head is over {HEAD_MAX} bytes")
        data = conn.recv()
        if not data:
            if buf:
                raise UpstreamError("web_server: the server closed the connection in the middle of the response head")
            return None
        buf += data


def _head_end(buf):
    """(end of the head, start of the body) in buf, or None: the first empty line, CRLF
    or a bare LF as RFC 9112 lets a recipient accept."""
    i = buf.find(b"\n\r\n")
    j = buf.find(b"\n\n")
    if i < 0 and j < 0:
        return None
    if j < 0 or (0 <= i < j):
        return i, i + 3
    return j, j + 2


# ---------------------------------------------------------------- the body

class Length:
    """A body of Content-Length bytes."""

    def __init__(self, n):
        self.left, self.done, self.extra = n, n == 0, b""

    def feed(self, data):
        take = data[:self.left]
        self.left -= len(take)
        if self.left == 0:
            self.done, self.extra = True, data[len(take):]
        return take

    def eof(self):
        if not self.done:
            raise UpstreamError(f"web_server: the server closed the connection with {self.left} bytes of its "
                                f"Content-Length body still to come")


class UntilClose:
    """A body that ends when the server closes the connection."""
    done, extra = False, b""

    def feed(self, data):
        return data

    def eof(self):
        self.done = True


class Chunked:
    """Transfer-Encoding: chunked, decoded incrementally: feed() returns the body bytes
    the data completes, whatever way the stream is split."""

    def __init__(self):
        self.state, self.line, self.left, self.trailer = "size", b"", 0, 0
        self.done, self.extra = False, b""

    def feed(self, data):
        out = []
        pos, n = 0, len(data)
        while pos < n and not self.done:
            if self.state == "data":
                take = data[pos:pos + self.left]
                out.append(take)
                pos += len(take)
                self.left -= len(take)
                if self.left == 0:
                    self.state = "crlf"
                continue
            nl = data.find(b"\n", pos)
            end = n if nl < 0 else nl
            self.line += data[pos:end]
            pos = end if nl < 0 else nl + 1
            bound = HEAD_MAX if self.state == "trailer" else _CHUNK_LINE_MAX
            if len(self.line) > bound:
                raise UpstreamError(f"web_server: a chunked body's {self.state} line is over {bound} bytes")
            if nl >= 0:
                line, self.line = self.line.rstrip(b"\r"), b""
                self._line(line)
        if self.done:
            self.extra = data[pos:]
        return b"".join(out)

    def _line(self, line):
        if self.state == "size":
            size = line.split(b";", 1)[0].strip(b" \t")
            if not size or len(size) > 16 or any(ch not in b"0123456789abcdefABCDEF" for ch in size):
                raise UpstreamError(f"web_server: a bad chunk size line in the server's chunked body: {line[:40]!r}")
            self.left = int(size, 16)
            self.state = "data" if self.left else "trailer"
        elif self.state == "crlf":
            if line:
                raise UpstreamError("web_server: a chunk of the server's chunked body is longer than its size")
            self.state = "size"
        else:  # trailer fields: read and dropped, up to the empty line
            self.trailer += len(line)
            if self.trailer > HEAD_MAX:
                raise UpstreamError(f"web_server: the chunked body's trailer is over {HEAD_MAX} bytes")
            if not line:
                self.done = True

    def eof(self):
        if not self.done:
            raise UpstreamError("web_server: the server closed the connection before the end of its chunked body")


def body_decoder(method, head):
    """How the body of this response ends (RFC 9112 6.3); UpstreamError for a
    Content-Length that cannot be trusted."""
    if method == "HEAD" or head.status < 200 or head.status in (204, 304):
        return Length(0)
    te = head.values(b"transfer-encoding")
    if te:
        last = te[-1].split(b",")[-1].strip().lower()
        return Chunked() if last == b"chunked" else UntilClose()
    cl = {v.strip() for v in head.values(b"content-length")}
    if not cl:
        return UntilClose()
    if len(cl) > 1 or not all(v.isdigit() for v in cl) or len(next(iter(cl))) > 18:
        raise UpstreamError(f"web_server: the server sent a bad Content-Length: {sorted(cl)!r}")
    return Length(int(next(iter(cl))))


def keeps_alive(head, decoder):
    """Whether the connection can carry another request once this response is read."""
    if isinstance(decoder, UntilClose) or decoder.extra or b"close" in head.tokens(b"connection"):
        return False
    return head.version == b"HTTP/1.1" or b"keep-alive" in head.tokens(b"connection")


# ---------------------------------------------------------------- cancellation

_active_lock = threading.Lock()
_active = {}  # input id (current_input_id()) -> the Conn its request is on


def cancel(input_id):
    """The call of input_id was cancelled (its client went away): its connection is
    shut, so a thread blocked reading from the server (an idle event stream) wakes and
    the input ends at once, instead of gustd killing the container, and the server with
    it, after its grace. The server sees its client go, as behind any proxy."""
    with _active_lock:
        conn = _active.get(input_id)
        if conn is None:
            return
        conn.cancelled = True
    try:
        conn.sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed: the input is ending anyway
        pass


def _track(conn):
    key = _runtime.current_input_id()
    if key is not None:
        with _active_lock:
            _active[key] = conn
    return key


def _untrack(key):
    if key is not None:
        with _active_lock:
            _active.pop(key, None)


# ---------------------------------------------------------------- one exchange

def exchange(pool, req):
    """The items of one request through pool: the head item (with the body bytes
    already at hand), then body pieces as they arrive. A streamed request body goes to
    the server as it arrives, from a thread (_BodyPump), on a new connection (it cannot
    be sent twice, so no idle one that may have just closed). Raises UpstreamError;
    before the first item, the caller answers with a 502."""
    data = request_bytes(req, pool.port)
    conn = pool.connect() if req.streamed else pool.get()
    key = _track(conn)
    pump = _BodyPump(req, conn) if req.streamed else None
    try:
        try:
            head = _send_and_read_head(conn, data, req, pump)
            if head is None and conn.reused and not conn.cancelled:
                # An idle keep-alive connection the server closed just as it was taken
                # (nothing came back, so the server did not act on the request): once
                # more on a new one, as HTTP clients do.
                conn.close()
                conn = pool.connect()
                _track(conn)
                head = _send_and_read_head(conn, data, req)
        except UpstreamError:
            _check_cancelled(conn)
            raise
        _check_cancelled(conn)
        if head is None:
            raise UpstreamError("web_server: the server closed the connection without a response")
        if head.status == 101:
            raise UpstreamError("web_server: the server switched protocols (101) without an upgrade request")
        decoder = yield from _relay(conn, req, head)
        if keeps_alive(head, decoder) and (pump is None or pump.finish()):
            pool.put(conn)
            conn = None
    finally:
        _untrack(key)
        if pump is not None:
            pump.stop()
        if conn is not None:
            conn.close()


class _BodyPump:
    """A streamed request body's pieces after its first bytes, sent to the server as
    they arrive (chunked again when the client sent no length), on a thread, so that a
    server that answers before the body ended, or answers while it comes, is read
    meanwhile. Its end: sent whole (the connection may be reused) or not."""

    def __init__(self, req, conn):
        self.req, self.conn = req, conn
        self.chunked = _chunked(req)
        self.stopping = threading.Event()
        self.done = threading.Event()
        self.sent = False

    def start(self):
        threading.Thread(target=self._run, name="gust-body", daemon=True).start()

    def _run(self):
        try:
            stream = self.req._stream()
            while not self.stopping.is_set():
                data = stream.read_sync(_PUMP_POLL_S)
                if data is None:
                    continue
                if not data:
                    if self.chunked:
                        self.conn.sock.sendall(b"0\r\n\r\n")
                    self.sent = True
                    return
                self.conn.sock.sendall(_chunk(data) if self.chunked else data)
        except (OSError, InputCancellation):  # the server or the call is gone: nothing more to carry
            pass
        finally:
            self.done.set()

    def finish(self):
        """After the response: whether the whole body went (the connection is clean)."""
        return self.done.is_set() and self.sent

    def stop(self):
        self.stopping.set()


def _relay(conn, req, head):
    """The items of a response whose head was read: the head item (with the body bytes
    at hand), then body pieces as they arrive; returns the body's decoder."""
    decoder = body_decoder(req.method, head)
    first, conn.buf = decoder.feed(conn.buf), b""
    yield encode_head(head.status, _response_headers(head), first)
    while not decoder.done:
        piece = _recv(conn, "the server's response")
        if not piece:
            decoder.eof()
            break
        body = decoder.feed(piece)
        if body:
            yield body
    return decoder


def _recv(conn, what):
    try:
        piece = conn.recv()
    except OSError as e:
        _check_cancelled(conn)
        raise UpstreamError(f"web_server: reading {what}: {e.strerror or e}") from None
    _check_cancelled(conn)
    return piece


def _check_cancelled(conn):
    """cancel() shut conn: what its reads return now says nothing of the server."""
    if conn.cancelled:
        raise InputCancellation("the call was cancelled")


def _send_and_read_head(conn, data, req, pump=None):
    """Sends the request and reads the final response head (1xx interim ones, such as
    103 Early Hints, are skipped: gustd answers the client once). A server may answer
    before it has read the whole body (a 413, say) and close: its answer still counts.
    pump: the rest of a streamed body, sent from its thread while the head is awaited."""
    try:
        conn.sock.sendall(data)
    except OSError as e:
        send_error = e
    else:
        send_error = None
        if pump is not None:
            pump.start()
    try:
        while True:
            head = read_head(conn)
            if head is None or not (100 <= head.status < 200 and head.status != 101):
                break
    except OSError as e:
        if send_error is None and not conn.reused:
            raise UpstreamError(f"web_server: reading the server's response head: {e.strerror or e}") from None
        head = None
    if head is None and send_error is not None and not conn.reused:
        raise UpstreamError(f"web_server: sending the request to the server: {send_error.strerror or send_error}")
    return head


# Response headers of this hop only (RFC 9110 7.6.1): the body is de-chunked here and
# gustd frames the response to its client itself.
_HOP_RESPONSE = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"trailer",
                           b"upgrade"))


def _response_headers(head):
    """The head's headers but this connection's (those above, and those Connection names)."""
    drop = _HOP_RESPONSE | head.tokens(b"connection")
    return [(k, v) for k, v in head.headers if k.lower() not in drop]


# A tunnel's pump looks this often whether its input ended while it waits for client
# bytes: the end of the call must not leave a thread behind for long, and a wake-up
# every 0.5 s costs nothing.
_PUMP_POLL_S = 0.5


def upgrade(req, stream, pool):
    """A protocol upgrade (WebSocket) through the server: the request goes on a
    connection of its own with its Upgrade and Connection headers. A 101 goes back as
    the head item (gustd answers the client's handshake with it and tunnels the
    connection), and from then on the connection carries raw bytes both ways: the
    call's input stream (the client's bytes, .instream) to the server on a thread, the
    server's bytes back as items, until the server closes (or the client: its end of
    the stream shuts the server's side for writing). Any other answer (a refused
    handshake) is passed on as a plain response."""
    if stream is None:
        yield json_error(501, "not_implemented", "web_server: this request has no input stream for a tunnel")
        return
    conn = pool.connect()
    key = _track(conn)
    done = threading.Event()
    try:
        head = _send_and_read_head(conn, request_bytes(req, pool.port, _header_bytes(req, "Upgrade")), req)
        _check_cancelled(conn)
        if head is None:
            raise UpstreamError("web_server: the server closed the connection without answering the upgrade")
        if head.status != 101:
            yield from _relay(conn, req, head)
            return
        keep = [(k, v) for k, v in head.headers if k.lower() not in (b"connection", b"keep-alive",
                                                                         b"transfer-encoding", b"content-length")]
        first, conn.buf = conn.buf, b""
        yield encode_head(101, keep, first)
        threading.Thread(target=_pump, args=(stream, conn, done), name="gust-tunnel", daemon=True).start()
        while True:
            piece = _recv(conn, "the server's side of the tunnel")
            if not piece:
                return
            yield piece
    finally:
        done.set()
        _untrack(key)
        conn.close()


def _pump(stream, conn, done):
    """The client's bytes to the server until the stream ends (then the server sees
    the end of its input) or the tunnel is over."""
    try:
        while not done.is_set():
            data = stream.read_sync(_PUMP_POLL_S)
            if data is None:
                continue
            if not data:
                conn.sock.shutdown(socket.SHUT_WR)
                return
            conn.sock.sendall(data)
    except OSError:  # the server or the tunnel is gone: nothing more to carry
        pass


# ---------------------------------------------------------------- dispatch

def handle(fn, req, pool=None, stream=None):
    """The items of one request to a web_server endpoint (web.handle's dispatch);
    stream: the input's stream, which carries a tunnel's client bytes."""
    pool = pool or _pool
    if pool is None:
        raise RuntimeError("web_server: the server was not started (start() runs before the container is ready)")
    started = False
    try:
        for item in (upgrade(req, stream, pool) if wants_upgrade(req) else exchange(pool, req)):
            started = True
            yield item
    except UpstreamError as e:
        print(str(e), file=sys.stderr, flush=True)
        if started:
            raise  # the response is under way: gustd cuts it short
        yield json_error(502, "bad_gateway", str(e))
    except Exception:
        traceback.print_exc()
        raise
