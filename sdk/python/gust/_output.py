"""What the remote code of an app prints, shown here as it happens (gust run).

One streaming connection per app: GET /v1/apps/{app}/logs?follow=1&since=SEQ sends every
function's lines as NDJSON, each numbered (seq) in the order gustd received it. The
follower starts from the deploy's "log_seq", so what the first containers print is not
missed even though it connects after the deploy; a stream that ends with {"more": true}
(gustd will not buffer more for a slow reader, or has more stored than one answer holds)
or breaks is opened again from the last seq shown.

Each line is prefixed with its function, "[square] text"; when another call of that
function ran at the same time as the one that printed it (gustd says so: "concurrent"),
with the call too, "[square fc-3kq9xz] text" (the call id's first 6 characters after
"fc-": enough to tell calls running together apart, and a prefix of what `gust logs`
prints). So calls one after the other read plainly, and once calls overlap every line
of theirs printed from then on says whose it is. Lines printed outside an input (module
import, enter hooks) have no call. stdout lines go to stdout, stderr lines to stderr.

While it follows, sys.stdout and sys.stderr pass what the entrypoint itself prints on in
whole lines (a partial line at a flush, or at the end), so that a remote line never
lands in the middle of one of them.

stop() makes sure the last lines are shown: it waits until no line has come for
QUIET_S (at most MAX_WAIT_S), which covers output still on its way from a container's
pipes, then stops following and reads, without following, whatever gustd holds after
the last line shown. A Python function's print()s reach gustd before its result, so
everything a finished call printed is shown.
"""
import base64
import contextlib
import http.client
import json
import socket
import sys
import threading
import time
import urllib.parse

from . import _net

QUIET_S = 0.25  # no line for this long after the entrypoint returned: output is over
MAX_WAIT_S = 2.0  # however chatty the app still is, stop waiting after this long
RETRY_MAX_S = 5.0  # longest pause between attempts to reconnect a broken stream
SHORT_CALL = 6  # characters of a call id shown after "fc-"


_enabled = 0  # enable_output() blocks entered and not left


@contextlib.contextmanager
def enable_output(show_progress: bool = True):
    """Modal's modal.enable_output(): inside it, App.run() shows image builds on stderr
    and what the app's functions print, as `gust run` does; outside, it prints nothing.
    show_progress is accepted for Modal's sake."""
    global _enabled
    _enabled += 1
    try:
        yield
    finally:
        _enabled -= 1


def output_enabled() -> bool:
    return _enabled > 0


class RemoteOutput:
    """Follows app's logs on gustd at addr from seq `since` (None: from now) on a
    thread of its own; start(), then stop()."""

    def __init__(self, addr, app, since):
        self.addr, self.app = addr, app
        self._out_lock = threading.Lock()  # whole lines: ours and the entrypoint's
        self._streams = (sys.stdout, sys.stderr)
        self.seq = since
        self.last_line_at = 0.0
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # _conn, seq; stopping is set under it
        self._conn = None
        self._thread = threading.Thread(target=self._follow, name="gust-remote-output", daemon=True)
        self._disabled = None  # why the logs cannot be read (said once)

    def start(self):
        sys.stdout, sys.stderr = (_Lines(s, self._out_lock) for s in self._streams)
        self._thread.start()
        return self

    def stop(self):
        ended = time.monotonic()
        deadline = ended + MAX_WAIT_S
        while not self._disabled:
            now = time.monotonic()
            quiet_at = max(ended, self.last_line_at) + QUIET_S
            if now >= quiet_at or now >= deadline:
                break
            time.sleep(min(quiet_at, deadline) - now)
        with self._lock:
            self._stopping.set()
            sock = self._conn.sock if self._conn is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the follower's read
            except OSError:
                pass
        self._thread.join(timeout=5)
        try:
            while not self._disabled and self._read(follow=False):
                pass
        except (OSError, http.client.HTTPException, ValueError) as e:
            print(f"gust: reading the last output of app {self.app}: {e}", file=sys.stderr)
        finally:
            for s in (sys.stdout, sys.stderr):
                if isinstance(s, _Lines):
                    s.flush()
            sys.stdout, sys.stderr = self._streams

    # ---- the follower thread

    def _follow(self):
        pause = 0.2
        while True:
            try:
                more = self._read(follow=True)
                pause = 0.2
                if more:
                    continue
            except _Refused as e:
                self._disabled = str(e)
                print(f"gust: remote output is not shown: {e}", file=sys.stderr)
                return
            except (OSError, http.client.HTTPException, ValueError):
                pass
            if self._stopping.wait(pause):
                return
            pause = min(pause * 2, RETRY_MAX_S)

    def _read(self, follow):
        """Shows the lines of one answer; returns whether gustd said there are more."""
        q = {"since": self.seq} if self.seq is not None else {"tail": 0}
        if follow:
            q["follow"] = 1
        path = f"/v1/apps/{urllib.parse.quote(self.app, safe='')}/logs?" + urllib.parse.urlencode(q)
        conn, resp = _net.stream(self.addr, "GET", path)
        try:
            with self._lock:
                if follow and self._stopping.is_set():
                    return False
                self._conn = conn
            if resp.status != 200:
                body = resp.read()
                try:
                    msg = json.loads(body)["error"]["message"]
                except (ValueError, KeyError, TypeError):
                    msg = f"HTTP {resp.status}"
                if resp.status in (401, 403, 404):
                    raise _Refused(msg)
                raise OSError(msg)
            more = False
            for raw in resp:
                if not raw.strip():
                    continue
                ev = json.loads(raw)
                if ev.get("more"):
                    more = True
                elif "error" in ev:
                    raise OSError(ev["error"].get("message", "reading logs failed"))
                else:
                    self._show(ev)
            return more
        finally:
            with self._lock:
                self._conn = None
            conn.close()

    def _show(self, ev):
        with self._lock:
            seq = ev["seq"]
            if self.seq is not None and seq <= self.seq:
                return  # shown already (the follower and the last read overlap)
            if self.seq is not None and seq > self.seq + 1:
                print(f"gust: {seq - self.seq - 1} lines of remote output of app {self.app} were trimmed from "
                      "gustd's log store before they could be shown", file=sys.stderr)
            self.seq = seq
            self.last_line_at = time.monotonic()
            if "line" in ev:
                text = ev["line"]
            else:
                text = base64.b64decode(ev.get("line_b64", "")).decode("utf-8", "replace")
            call = ev.get("call_id")
            who = ev.get("function", "?")
            if call and ev.get("concurrent"):
                who += " " + call[:3 + SHORT_CALL]
            out = self._streams[1] if ev.get("stream") == "stderr" else self._streams[0]
            with self._out_lock:
                out.write(f"[{who}] {text}\n")
                out.flush()


class _Lines:
    """sys.stdout or sys.stderr while remote output is shown: writes go on to the real
    stream in whole lines, under the lock the remote lines are written with; the rest
    of a line waits for its end or a flush."""

    def __init__(self, real, lock):
        self._real, self._lock, self._part = real, lock, []

    def write(self, text):
        with self._lock:
            self._part.append(text)
            if "\n" in text:
                data = "".join(self._part)
                cut = data.rfind("\n") + 1
                self._real.write(data[:cut])
                self._part = [data[cut:]] if cut < len(data) else []
        return len(text)

    def flush(self):
        with self._lock:
            if self._part:
                self._real.write("".join(self._part))
                self._part = []
            self._real.flush()

    def __getattr__(self, name):
        return getattr(self._real, name)


class _Refused(Exception):
    """gustd will not show these logs (no developer token, or no such app)."""
