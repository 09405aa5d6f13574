"""Input streams in the container: more input for a running input, after its INPUT
frames (FRAME_INPUT_MORE, src/proto/frame.h "Input streams"). gustd sends a web
request's WebSocket bytes this way; anything that reads a byte stream while its input
runs can use it (read() on an asyncio loop, read_sync() on a thread).

The runner's receiving thread feeds each INPUT_MORE body to the stream of its input
(feed; an empty body is the end); the code reads the bytes in order, and each read is
acknowledged to gustd (INPUT_MORE_ACK with the count taken so far), which sends at most
FRAME_INPUT_WINDOW bytes beyond the last acknowledged count. So a stream holds at most
that much that its code has not read, and a reader that stops reading stops the bytes
at gustd (which stops reading the client). A stream that is sent more than the window
allows fails its reader (StreamOverflow) instead of growing."""
import asyncio
import collections
import threading

from ..exception import InputCancellation
from .proto import FRAME_INPUT_MORE_ACK, FRAME_INPUT_MORE_ACK_SIZE, FRAME_INPUT_WINDOW


class StreamOverflow(Exception):
    """gustd sent more stream bytes than the window allows (a protocol violation)."""


class InputStream:
    """One input's stream. ack(n) is called with the bytes taken in all after each read."""

    def __init__(self, ack):
        self._ack = ack
        self._cond = threading.Condition()
        self._chunks = collections.deque()
        self._held = 0  # bytes fed and not read
        self._taken = 0
        self._eof = False
        self._overflow = False
        self._cancelled = False
        self._waiters = []  # (loop, future) of async readers waiting

    def feed(self, data):
        """From the receiving thread: the next bytes, or b"" for the end."""
        with self._cond:
            if self._eof:
                return
            if not data:
                self._eof = True
            else:
                self._held += len(data)
                if self._held > FRAME_INPUT_WINDOW:
                    self._overflow = True
                    self._chunks.clear()
                else:
                    self._chunks.append(bytes(data))
            self._cond.notify_all()
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_resolve, fut)

    def cancel(self):
        """The input was cancelled: its readers, waiting or to come, get InputCancellation
        (a reader blocked on a stream that will never end would outlive its input)."""
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_resolve, fut)

    def _take(self):
        """Under the lock: the next chunk, b"" at the end, None when there is none yet."""
        if self._cancelled:
            raise InputCancellation("the call was cancelled")
        if self._overflow:
            raise StreamOverflow(f"gustd sent more than {FRAME_INPUT_WINDOW} unacknowledged stream bytes")
        if self._chunks:
            data = self._chunks.popleft()
            self._held -= len(data)
            self._taken += len(data)
            return data
        return b"" if self._eof else None

    def _taken_now(self, data):
        if data:
            self._ack(self._taken)
        return data

    async def read(self):
        """The next bytes of the stream, b"" once it ended."""
        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                data = self._take()
                if data is None:
                    fut = loop.create_future()
                    self._waiters.append((loop, fut))
            if data is not None:
                return self._taken_now(data)
            await fut

    def read_sync(self, timeout=None):
        """As read(), blocking this thread; None when timeout passes first."""
        with self._cond:
            data = self._take()
            while data is None:
                if not self._cond.wait(timeout):
                    return None
                data = self._take()
        return self._taken_now(data)


def _resolve(fut):
    if not fut.done():
        fut.set_result(None)


_lock = threading.Lock()
_streams = {}  # input id -> InputStream, from its INPUT to its answer


def open_stream(sock_send, fid):
    """Makes input fid's stream, before its code runs (so no byte is missed); acks go out
    through sock_send(ftype, fid, body)."""
    def ack(n):
        sock_send(FRAME_INPUT_MORE_ACK, fid, n.to_bytes(FRAME_INPUT_MORE_ACK_SIZE, "little"))
    with _lock:
        _streams[fid] = InputStream(ack)


def feed(fid, data):
    """An INPUT_MORE frame's body; dropped for an input that has no stream (it ended)."""
    with _lock:
        s = _streams.get(fid)
    if s is not None:
        s.feed(data)


def cancel(fid):
    """Input fid was cancelled: its stream's readers stop (InputCancellation)."""
    with _lock:
        s = _streams.get(fid)
    if s is not None:
        s.cancel()


def stream_of(fid):
    with _lock:
        return _streams.get(fid)


def close_stream(fid):
    """The input was answered: its stream goes (later bytes for it are dropped)."""
    with _lock:
        _streams.pop(fid, None)
