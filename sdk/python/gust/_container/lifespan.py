"""The ASGI lifespan protocol for @gust.asgi_app (and fastapi_endpoint) apps, as Modal and
uvicorn run it: the app gets a "lifespan" scope once per container, its startup runs
before the container takes requests (a failed startup fails the container's start, so
no request meets a half-started app), and its shutdown when the container stops, before
the @exit hooks. What the startup puts in scope["state"] is copied into each request's
scope["state"] (Starlette's lifespan state).

An app that does not speak lifespan (it raises on the scope, as plain ASGI callables
do) is served without it, as uvicorn's default "auto" mode does."""
import asyncio
import sys

# How long the shutdown may take before the container goes on stopping: inside
# gustd's stop grace (SCHED_STOP_GRACE_MS, 3 s) less what the exit hooks need.
SHUTDOWN_WAIT_S = 2.0


class LifespanError(Exception):
    """The app's startup failed (lifespan.startup.failed, or it raised after starting)."""


class Lifespan:
    """One app's lifespan task on the container's event loop."""

    def __init__(self, app):
        self.app = app
        self.state = {}
        self._events = None
        self._started = None
        self._stopped = None
        self._task = None
        self.supported = True

    async def startup(self):
        """Runs the app's startup; returns when it completed. LifespanError if it
        failed; an app without lifespan support returns at once (supported False)."""
        loop = asyncio.get_running_loop()
        self._events = asyncio.Queue()
        self._started, self._stopped = loop.create_future(), loop.create_future()
        await self._events.put({"type": "lifespan.startup"})
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.3"}, "state": self.state}
        self._task = asyncio.ensure_future(self._run(scope))
        await self._started

    async def _run(self, scope):
        try:
            await self.app(scope, self._events.get, self._send)
        except BaseException as exc:  # noqa: B902 - before startup: no lifespan; after: a failure
            if not self._started.done():
                self.supported = False
                self._started.set_result(None)
                return
            if not self._stopped.done():
                self._stopped.set_exception(LifespanError(f"{type(exc).__name__}: {exc}"))
            return
        for fut in (self._started, self._stopped):  # returned without completing: nothing to wait for
            if not fut.done():
                fut.set_result(None)

    async def _send(self, msg):
        t = msg.get("type")
        if t == "lifespan.startup.complete":
            self._started.set_result(None)
        elif t == "lifespan.startup.failed":
            self._started.set_exception(LifespanError(msg.get("message") or "the app's startup failed"))
        elif t == "lifespan.shutdown.complete":
            self._stopped.set_result(None)
        elif t == "lifespan.shutdown.failed":
            self._stopped.set_exception(LifespanError(msg.get("message") or "the app's shutdown failed"))

    async def shutdown(self):
        """Asks the app to shut down and waits for it (SHUTDOWN_WAIT_S at most); a
        failure is printed to the container's stderr, not raised: the container stops
        either way."""
        if not self.supported or self._task is None or self._task.done() and self._stopped.done():
            return
        await self._events.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(asyncio.shield(self._stopped), SHUTDOWN_WAIT_S)
        except asyncio.TimeoutError:
            print(f"gust: the ASGI app's shutdown did not finish within {SHUTDOWN_WAIT_S} s", file=sys.stderr)
        except LifespanError as exc:
            print(f"gust: the ASGI app's shutdown failed: {exc}", file=sys.stderr)
