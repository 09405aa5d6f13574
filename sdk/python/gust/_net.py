"""HTTP to gustd over kept-alive connections: one per thread and address, so a warm
.remote() costs one request on an open socket. A request on a reused connection that
the server had closed (idle timeout, restart) is sent again once on a fresh one; the
server closes idle connections only between requests, so nothing was received."""
import http.client
import os
import threading

DEFAULT_ADDR = "127.0.0.1:8470"
_local = threading.local()


def split_addr(addr):
    host, _, port = (addr or os.environ.get("GUST_ADDR") or DEFAULT_ADDR).rpartition(":")
    return host or "127.0.0.1", int(port)


def _pool():
    p = getattr(_local, "conns", None)
    if p is None:
        p = _local.conns = {}
    return p


def request(addr, method, path, body=None, headers=None, timeout=None):
    """Returns (status, headers with lower-case names, body bytes)."""
    hp = split_addr(addr)
    pool = _pool()
    for attempt in (0, 1):
        conn = pool.pop(hp, None)
        reused = conn is not None
        if conn is None:
            conn = http.client.HTTPConnection(hp[0], hp[1])
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
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
            pool[hp] = conn
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    raise AssertionError("unreachable")


def stream(addr, method, path, body=None, headers=None, timeout=None):
    """A fresh connection for a streamed answer (NDJSON): returns (conn, response);
    the caller closes conn."""
    host, port = split_addr(addr)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        return conn, conn.getresponse()
    except BaseException:
        conn.close()
        raise
