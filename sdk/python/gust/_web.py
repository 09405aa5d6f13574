"""Web endpoint decorators, with Modal's names and arguments (stacked under
@app.function(), as in Modal): the decorated function's requests come to it through
gustd's web listener (docs/API.md "Web endpoints"). They only mark the function
(_gust_web, which Function.spec turns into the spec's `web` table and the container's
runner reads); they change nothing when it is called locally.

public=True (Gust's own) serves the endpoint without a token; otherwise a request
needs `Authorization: Bearer <token>` of an invoker (or higher) of its workspace.
web_server (Modal's) proxies to a server the function starts: the container's runner
is the proxy (gust/_container/web_server.py).

Modal's requires_proxy_auth=True asks for what Gust does by default, so it is
accepted; custom_domains is not supported (gustd --web-domain routes by Host)."""
from typing import Any, Callable, Iterable, Optional

from .exception import InvalidError


def _marker(kind: str, where: str, warn: Any, method: str, label: Optional[str], docs: bool,
            custom_domains: Optional[Iterable[str]], requires_proxy_auth: bool, public: bool,
            fastapi: bool = False) -> Callable[[Any], Any]:
    if warn is not None:
        raise InvalidError(f"use @gust.{where}() with parentheses, as in Modal")
    if custom_domains:
        raise InvalidError(f"{where}: custom_domains is not supported by Gust (start gustd with --web-domain "
                           f"to route by Host)")
    if requires_proxy_auth and public:
        raise InvalidError(f"{where}: requires_proxy_auth=True and public=True contradict each other")
    if not isinstance(method, str) or not method:
        raise InvalidError(f"{where}: method must be an HTTP method such as \"GET\", got {method!r}")
    cfg = {"kind": kind, "method": method.upper(), "label": label, "public": bool(public), "docs": bool(docs),
           "fastapi": fastapi}

    def wrap(f: Any) -> Any:
        raw = getattr(f, "raw_f", f)  # decorators given in the other order still work
        raw._gust_web = cfg
        return f
    return wrap


def web_endpoint(_warn_parentheses_missing: Any = None, *, method: str = "GET", label: Optional[str] = None,
                 custom_domains: Optional[Iterable[str]] = None, docs: bool = False,
                 requires_proxy_auth: bool = False, public: bool = False) -> Callable[[Any], Any]:
    """A plain function as an HTTP endpoint, stdlib only: query parameters (GET) or the
    JSON object of the body (POST, ...) are its keyword arguments, its return value the
    JSON response (or a gust.Response: other content types, streaming)."""
    return _marker("function", "web_endpoint", _warn_parentheses_missing, method, label, docs, custom_domains,
                   requires_proxy_auth, public)


def fastapi_endpoint(_warn_parentheses_missing: Any = None, *, method: str = "GET", label: Optional[str] = None,
                     custom_domains: Optional[Iterable[str]] = None, docs: bool = False,
                     requires_proxy_auth: bool = False, public: bool = False) -> Callable[[Any], Any]:
    """As web_endpoint, through FastAPI (which the image must have, e.g.
    apt_install("python3-fastapi")), as Modal's: FastAPI validates the arguments and
    serialises the result; docs=True serves /docs."""
    return _marker("function", "fastapi_endpoint", _warn_parentheses_missing, method, label, docs, custom_domains,
                   requires_proxy_auth, public, fastapi=True)


def asgi_app(_warn_parentheses_missing: Any = None, *, label: Optional[str] = None,
             custom_domains: Optional[Iterable[str]] = None, requires_proxy_auth: bool = False,
             public: bool = False) -> Callable[[Any], Any]:
    """The function returns an ASGI app (FastAPI, Starlette, ...), made once per
    container; every request under the endpoint's URL goes to it."""
    return _marker("asgi", "asgi_app", _warn_parentheses_missing, "*", label, False, custom_domains,
                   requires_proxy_auth, public)


def wsgi_app(_warn_parentheses_missing: Any = None, *, label: Optional[str] = None,
             custom_domains: Optional[Iterable[str]] = None, requires_proxy_auth: bool = False,
             public: bool = False) -> Callable[[Any], Any]:
    """The function returns a WSGI app (Flask, ...), made once per container."""
    return _marker("wsgi", "wsgi_app", _warn_parentheses_missing, "*", label, False, custom_domains,
                   requires_proxy_auth, public)


# The spec's bound on web.startup_timeout (src/spec/spec.c: an hour covers a server that
# loads a large model before it listens); checked here too so the error comes at import.
_STARTUP_TIMEOUT_MAX = 3600.0


def web_server(port: int, *, startup_timeout: float = 5.0, label: Optional[str] = None,
               custom_domains: Optional[Iterable[str]] = None, requires_proxy_auth: bool = False,
               public: bool = False) -> Callable[[Any], Any]:
    """The function starts an HTTP server of any kind in its container (a subprocess, a
    thread) listening on `port`, and returns. The container is ready once the port
    accepts a connection (within startup_timeout seconds, or its start fails); every
    request under the endpoint's URL is then proxied to it by the container's runner."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidError(f"web_server: port must be a TCP port from 1 to 65535 that the server listens on "
                           f"in the container, such as @gust.web_server(8000); got {port!r}")
    if (isinstance(startup_timeout, bool) or not isinstance(startup_timeout, (int, float))
            or not 0 < startup_timeout <= _STARTUP_TIMEOUT_MAX):
        raise InvalidError(f"web_server: startup_timeout must be a positive number of seconds (at most "
                           f"{_STARTUP_TIMEOUT_MAX:g}); got {startup_timeout!r}")
    mark = _marker("web_server", "web_server", None, "*", label, False, custom_domains, requires_proxy_auth,
                   public)

    def wrap(f: Any) -> Any:
        f = mark(f)
        getattr(f, "raw_f", f)._gust_web.update(port=port, startup_timeout=float(startup_timeout))
        return f
    return wrap


def spec_of(f: Any) -> Optional[dict]:
    """The spec's web table for a function marked by one of the decorators, else None."""
    cfg = getattr(f, "_gust_web", None)
    if cfg is None:
        return None
    out = {"kind": cfg["kind"], "method": cfg["method"], "public": cfg["public"], "docs": cfg["docs"]}
    if cfg["label"]:
        out["label"] = cfg["label"]
    if cfg["kind"] == "web_server":
        out["port"], out["startup_timeout"] = cfg["port"], cfg["startup_timeout"]
    return out
