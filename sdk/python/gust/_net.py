"""HTTP(S) to gustd over kept-alive connections: one per thread and address, so a warm
.remote() costs one request on an open socket. A request on a reused connection that
the server had closed (idle timeout, restart) is sent again once on a fresh one; the
server closes idle connections only between requests, so nothing was received.

Where gustd is and who we are, as the gust CLI finds them:
- address: the addr argument, else $GUST_ADDR, else 127.0.0.1:8470; "HOST:PORT",
  "http://HOST:PORT" or "https://HOST:PORT" (TLS, certificate and host name verified
  against $GUST_CA_FILE if set, else the system's CAs), or "unix:/PATH", gustd's API
  socket (what a function's container is given: /run/gust/api.sock);
- token: $GUST_TOKEN, else the first line of $XDG_CONFIG_HOME/gust/token (else
  ~/.config/gust/token), trimmed; sent as "Authorization: Bearer ...", never logged
  nor put in an exception's message."""
import http.client
import os
import socket
import ssl
import threading

DEFAULT_ADDR = "127.0.0.1:8470"
_local = threading.local()
_ssl_contexts = {}
_token_files = {}
_lock = threading.Lock()


def split_addr(addr):
    """(scheme, host, port) of addr ($GUST_ADDR, else the default)."""
    a = (addr or os.environ.get("GUST_ADDR") or DEFAULT_ADDR).strip()
    if a.startswith("unix:"):
        path = a[len("unix:"):]
        if not path.startswith("/"):
            raise ValueError(f"gustd address {a!r}: a unix socket's path must be absolute (unix:/PATH)")
        return "unix", path, 0
    a = a.rstrip("/")
    scheme = "http"
    if "://" in a:
        scheme, _, a = a.partition("://")
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"gustd address {addr!r}: the scheme must be http:// or https://")
    if a.startswith("["):
        host, _, rest = a[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = a.rpartition(":") if ":" in a else (a, "", "")
    return scheme, host or "127.0.0.1", int(port) if port else 8470


def _token_path():
    xdg = os.environ.get("XDG_CONFIG_HOME")
    if xdg:
        return os.path.join(xdg, "gust", "token")
    home = os.environ.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".config", "gust", "token")


def token():
    """The bearer token to send, or None."""
    t = os.environ.get("GUST_TOKEN")
    if t:
        return t.strip()
    path = _token_path()
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (path, st.st_mtime_ns, st.st_size)
    with _lock:
        if key not in _token_files:
            try:
                with open(path, encoding="utf-8") as f:
                    line = f.readline().strip()
            except (OSError, UnicodeDecodeError):
                line = ""
            _token_files.clear()
            _token_files[key] = line or None
        return _token_files[key]


def _ssl_context():
    ca = os.environ.get("GUST_CA_FILE") or None
    with _lock:
        ctx = _ssl_contexts.get(ca)
        if ctx is None:
            ctx = ssl.create_default_context(cafile=ca)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            _ssl_contexts[ca] = ctx
        return ctx


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over gustd's unix socket; the Host header says localhost."""

    def __init__(self, path, timeout=None):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(self.timeout)
            s.connect(self._path)
        except BaseException:
            s.close()
            raise
        self.sock = s


def _connect(target, timeout=None):
    scheme, host, port = target
    if scheme == "unix":
        return _UnixConnection(host, timeout=timeout)
    if scheme == "https":
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=_ssl_context())
    return http.client.HTTPConnection(host, port, timeout=timeout)


def _headers(headers):
    h = dict(headers or {})
    t = token()
    if t and "Authorization" not in h:
        h["Authorization"] = "Bearer " + t
    return h


def _pool():
    p = getattr(_local, "conns", None)
    if p is None:
        p = _local.conns = {}
    return p


def request(addr, method, path, body=None, headers=None, timeout=None):
    """Returns (status, headers with lower-case names, body bytes)."""
    target = split_addr(addr)
    key = (target, os.environ.get("GUST_CA_FILE"))
    hdrs = _headers(headers)
    pool = _pool()
    for attempt in (0, 1):
        conn = pool.pop(key, None)
        reused = conn is not None
        if conn is None:
            conn = _connect(target)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, ssl.SSLEOFError):
            conn.close()
            if reused and attempt == 0:
                continue
            raise
        except BaseException:
            conn.close()
            raise
        if r.will_close:
            conn.close()
        else:
            pool[key] = conn
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    raise AssertionError("unreachable")


def stream(addr, method, path, body=None, headers=None, timeout=None):
    """A fresh connection for a streamed answer (NDJSON): returns (conn, response);
    the caller closes conn."""
    conn = _connect(split_addr(addr), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=_headers(headers))
        return conn, conn.getresponse()
    except BaseException:
        conn.close()
        raise
