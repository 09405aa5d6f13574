"""WebSockets for @gust.asgi_app: a handshake request (gustd passes its Upgrade and
Sec-WebSocket-* headers in the envelope) runs the app with an ASGI "websocket" scope.
The response's items are the 101 head (with Sec-WebSocket-Accept), then raw RFC 6455
frames the app sends; the client's bytes arrive as the input's stream (.instream),
parsed here as RFC 6455 frames. gustd turns the connection into a byte tunnel after
the 101 and closes it when the call ends (docs/API.md "Web endpoints").

Bounds, since the client's bytes are outside input: a message (all its fragments) is
at most MAX_MESSAGE bytes, refused at its frame header with close 1009 (no byte of it
is held); a frame header is at most 14 bytes; a control frame at most 125; the parser
holds at most one frame header, one control payload and the message being assembled,
and a complete message waits for the app's receive() before more bytes are read (so
the stream's window, not this module, bounds what a slow app leaves unread)."""
import asyncio
import base64
import binascii
import hashlib
import struct
import urllib.parse

# RFC 6455 1.3: the GUID appended to Sec-WebSocket-Key for Sec-WebSocket-Accept.
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# The largest message the app receives: 16 MiB, uvicorn's default (--ws-max-size), so
# an app that works under uvicorn works here; it bounds what a client makes a
# container hold per connection.
MAX_MESSAGE = 16 << 20
# How long, after our close frame, the client has to answer with its own before the
# call ends anyway: the 10 s that the websockets library waits (close_timeout).
CLOSE_TIMEOUT_S = 10.0

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class ProtocolError(Exception):
    """The client broke RFC 6455: code is the close code to answer with."""

    def __init__(self, code, reason):
        super().__init__(reason)
        self.code, self.reason = code, reason


class ClientDisconnected(OSError):
    """send() after the connection closed (the ASGI spec's IOError subclass)."""


def accept_key(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode("latin-1") + GUID).digest()).decode("ascii")


def valid_key(key):
    try:
        return key is not None and len(base64.b64decode(key.strip(), validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


def encode_frame(opcode, payload=b""):
    """A server frame: final, unmasked (RFC 6455 5.1: servers do not mask)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


def close_frame(code, reason=""):
    if code in (1005, 1006, 1015):  # reserved: never sent on the wire
        return encode_frame(OP_CLOSE)
    return encode_frame(OP_CLOSE, struct.pack("!H", code) + reason.encode("utf-8")[:123])


def _unmask(data, mask, pos):
    """data XOR the 4-byte mask, starting at mask offset pos (as whole integers: fast)."""
    n = len(data)
    if not n:
        return b""
    k = pos % 4
    key = (mask[k:] + mask[:k]) * (n // 4 + 1)
    return (int.from_bytes(data, "little") ^ int.from_bytes(key[:n], "little")).to_bytes(n, "little")


def _valid_close_code(code):
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014) or 3000 <= code <= 4999


class Parser:
    """RFC 6455 frames of a client, incrementally: feed() takes any bytes and returns the
    events they complete: ("text", str), ("binary", bytes), ("ping", bytes),
    ("close", code, reason), ("too_big",) for a message over the bound (its bytes are
    skipped, and the parser stays in step). Raises ProtocolError on anything else."""

    def __init__(self, max_message=MAX_MESSAGE):
        self.max = max_message
        self.head = bytearray()  # a frame header being read (at most 14 bytes)
        self.left = None  # payload bytes of the current frame still to come; None: in a header
        self.op = self.fin = self.mask = None
        self.pos = 0
        self.ctl = []  # the current control frame's payload
        self.msg_op = None  # the message being assembled (its first frame's opcode)
        self.msg = []
        self.msg_len = 0
        self.skip = False  # the current message is over the bound: its payloads are dropped

    def feed(self, data):
        events = []
        mv = memoryview(data)
        i = 0
        while i < len(mv):
            if self.left is None:
                i = self._header(mv, i)
                if self.left == 0:
                    self._frame_done(events)
                continue
            n = min(self.left, len(mv) - i)
            chunk = mv[i:i + n]
            i += n
            self.left -= n
            if self.op >= OP_CLOSE:
                self.ctl.append(_unmask(chunk, self.mask, self.pos))
            elif not self.skip:
                self.msg.append(_unmask(chunk, self.mask, self.pos))
            self.pos += n
            if self.left == 0:
                self._frame_done(events)
        return events

    def _header(self, mv, i):
        """Reads header bytes from mv[i:]; when the header is whole, checks it and starts
        its payload. Returns the new offset."""
        while i < len(mv):
            self.head.append(mv[i])
            i += 1
            h = self.head
            if len(h) < 2:
                continue
            ln = h[1] & 0x7F
            need = 2 + (2 if ln == 126 else 8 if ln == 127 else 0) + 4
            if len(h) < need:
                continue
            self._start_frame(bytes(h), ln, need)
            self.head = bytearray()
            break
        return i

    def _start_frame(self, h, ln, need):
        b0, b1 = h[0], h[1]
        if b0 & 0x70:
            raise ProtocolError(1002, "reserved bits set (no extension was agreed)")
        if not b1 & 0x80:
            raise ProtocolError(1002, "a client frame must be masked")
        op, fin = b0 & 0x0F, bool(b0 & 0x80)
        if ln == 126:
            ln = struct.unpack("!H", h[2:4])[0]
        elif ln == 127:
            ln = struct.unpack("!Q", h[2:10])[0]
            if ln >> 63:
                raise ProtocolError(1002, "a frame length has its top bit set")
        if op >= OP_CLOSE:
            if op not in (OP_CLOSE, OP_PING, OP_PONG):
                raise ProtocolError(1002, f"unknown opcode {op}")
            if not fin or ln > 125:
                raise ProtocolError(1002, "a control frame must be final and at most 125 bytes")
        elif op == OP_CONT:
            if self.msg_op is None:
                raise ProtocolError(1002, "a continuation frame without a message to continue")
        elif op in (OP_TEXT, OP_BINARY):
            if self.msg_op is not None:
                raise ProtocolError(1002, "a new message before the last one's final frame")
            self.msg_op = op
        else:
            raise ProtocolError(1002, f"unknown opcode {op}")
        if op < OP_CLOSE:
            self.msg_len += ln
            if self.msg_len > self.max:
                self.skip = True
        self.op, self.fin, self.mask, self.pos, self.left = op, fin, h[need - 4:need], 0, ln

    def _frame_done(self, events):
        op = self.op
        self.left = None
        if op >= OP_CLOSE:
            payload, self.ctl = b"".join(self.ctl), []
            if op == OP_PING:
                events.append(("ping", payload))
            elif op == OP_CLOSE:
                events.append(self._close(payload))
            return
        if not self.fin:
            return
        skipped, kind = self.skip, self.msg_op
        payload = b"".join(self.msg)
        self.msg_op, self.msg, self.msg_len, self.skip = None, [], 0, False
        if skipped:
            events.append(("too_big",))
        elif kind == OP_TEXT:
            try:
                events.append(("text", payload.decode("utf-8")))
            except UnicodeDecodeError:
                raise ProtocolError(1007, "a text message that is not UTF-8") from None
        else:
            events.append(("binary", payload))

    @staticmethod
    def _close(payload):
        if not payload:
            return ("close", 1005, "")
        if len(payload) < 2:
            raise ProtocolError(1002, "a close frame of one byte")
        code = struct.unpack("!H", payload[:2])[0]
        if not _valid_close_code(code):
            raise ProtocolError(1002, f"close code {code} is not one a peer may send")
        try:
            return ("close", code, payload[2:].decode("utf-8"))
        except UnicodeDecodeError:
            raise ProtocolError(1007, "a close reason that is not UTF-8") from None


def is_upgrade(req):
    up = req.header("upgrade")
    return up is not None and "websocket" in [t.strip().lower() for t in up.split(",")]


async def websocket_items(app, req, stream, encode_head, json_error):
    """The items of one WebSocket connection served by an ASGI app: the 101 head at
    websocket.accept (or a 403 when the app closes first), then frames."""
    key, version = req.header("sec-websocket-key"), req.header("sec-websocket-version")
    if version is None or version.strip() != "13":
        yield encode_head(426, [("Sec-WebSocket-Version", "13"), ("Content-Type", "text/plain")],
                          b"this endpoint speaks WebSocket version 13\n")
        return
    if not valid_key(key) or stream is None:
        yield json_error(400, "bad_handshake", "Sec-WebSocket-Key must be 16 bytes in base64")
        return
    protos = req.header("sec-websocket-protocol")
    scope = {
        "type": "websocket", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "scheme": "wss" if req.scheme == "https" else "ws", "root_path": req.root_path,
        "path": urllib.parse.unquote(req.path), "raw_path": req.path.encode("latin-1"),
        "query_string": req.query.encode("latin-1"),
        "headers": [(k.lower(), v) for k, v in req.headers], "client": None, "server": None,
        "subprotocols": [p.strip() for p in protos.split(",") if p.strip()] if protos else [],
        "state": {},
    }
    conn = _Connection(stream, key, encode_head)
    task = asyncio.ensure_future(conn.run(app, scope))
    try:
        while True:
            item = await conn.out.get()
            if item is None:
                break
            yield item
        if not conn.accepted and not conn.refused:
            await asyncio.wait([task])  # an app that raised fails the call (gustd answers 500) instead
            if not task.cancelled() and task.exception() is None:
                yield json_error(500, "handler_error", "the app returned without accepting or closing the WebSocket")
    finally:
        conn.finished()
        await task  # the app's exception, if any, is the call's error


class _Connection:
    """The ASGI side of one connection: receive()/send() for the app, a reader of the
    client's frames, and the queue of items (None: the last)."""

    def __init__(self, stream, key, encode_head):
        self.stream, self.key, self.encode_head = stream, key, encode_head
        self.out = asyncio.Queue()
        self.inq = asyncio.Queue(maxsize=1)  # a message the app has not received: no more is read
        self.connected = False  # websocket.connect was received
        self.accepted = self.refused = False
        self.close_sent = self.close_received = False
        self.disconnect = None  # the disconnect message, once the connection is over
        self.reader = None
        self.close_timer = None

    async def run(self, app, scope):
        try:
            await app(scope, self.receive, self.send)
            if self.accepted and not self.close_sent:
                self._send_close(1000)
        except ClientDisconnected:
            pass  # the app sent after the end: it learnt the connection is gone
        except BaseException:
            if self.accepted and not self.close_sent:
                self._send_close(1011, "internal error")
            raise
        finally:
            self._end()

    # ---- the app's side

    async def receive(self):
        if not self.connected:
            self.connected = True
            return {"type": "websocket.connect"}
        if self.disconnect is not None and self.inq.empty():
            return self.disconnect
        return await self.inq.get()

    async def send(self, msg):
        t = msg.get("type")
        if t == "websocket.accept":
            if self.accepted or self.refused:
                raise RuntimeError("websocket.accept after the handshake was answered")
            headers = [("Upgrade", "websocket"), ("Sec-WebSocket-Accept", accept_key(self.key))]
            if msg.get("subprotocol"):
                headers.append(("Sec-WebSocket-Protocol", msg["subprotocol"]))
            headers += [(k, v) for k, v in msg.get("headers", [])]
            self.accepted = True
            self.out.put_nowait(self.encode_head(101, headers))
            self.reader = asyncio.ensure_future(self._read())
        elif t == "websocket.send":
            if not self.accepted:
                raise RuntimeError("websocket.send before websocket.accept")
            if self.close_sent or self.disconnect is not None:
                raise ClientDisconnected("the WebSocket is closed")
            if msg.get("bytes") is not None:
                self.out.put_nowait(encode_frame(OP_BINARY, bytes(msg["bytes"])))
            else:
                self.out.put_nowait(encode_frame(OP_TEXT, str(msg.get("text") or "").encode("utf-8")))
        elif t == "websocket.close":
            if not self.accepted:
                if not self.refused:  # a refused handshake (RFC 6455 4.2.2): 403
                    self.refused = True
                    self.out.put_nowait(self.encode_head(403, [("Content-Type", "text/plain")],
                                                         b"the app refused the WebSocket connection\n"))
                self._end()
            elif not self.close_sent:
                self._send_close(int(msg.get("code") or 1000), msg.get("reason") or "")
        else:
            raise RuntimeError(f"unsupported ASGI message {t!r} on a WebSocket")

    # ---- the client's side

    def _send_close(self, code, reason=""):
        self.close_sent = True
        self.out.put_nowait(close_frame(code, reason))
        if self.close_received:
            self._end()
        elif self.close_timer is None:
            self.close_timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S, self._end)

    def _end(self):
        """No more items: gustd closes the connection once the call ends."""
        if self.close_timer is not None:
            self.close_timer.cancel()
        self.out.put_nowait(None)

    async def _disconnected(self, code):
        if self.disconnect is None:
            self.disconnect = {"type": "websocket.disconnect", "code": code}
            if self.inq.empty():
                await self.inq.put(self.disconnect)

    async def _read(self):
        parser = Parser()
        broken = False  # after a protocol error the bytes are not frames any more
        while True:
            data = await self.stream.read()
            if not data:  # the client's end: without its close frame, an abnormal closure
                await self._disconnected(1006)
                self._end()
                return
            if broken:
                continue
            try:
                events = parser.feed(data)
            except ProtocolError as e:
                broken = True
                if not self.close_sent:
                    self._send_close(e.code, str(e))
                await self._disconnected(e.code)
                continue
            for ev in events:
                await self._event(ev)

    async def _event(self, ev):
        kind = ev[0]
        if kind == "ping":
            if not self.close_sent:
                self.out.put_nowait(encode_frame(OP_PONG, ev[1]))
        elif kind == "close":
            self.close_received = True
            if not self.close_sent:
                self._send_close(1000 if ev[1] == 1005 else ev[1])
            else:
                self._end()
            await self._disconnected(ev[1])
        elif kind == "too_big":
            if not self.close_sent:
                self._send_close(1009, f"a message is over {MAX_MESSAGE >> 20} MiB")
            await self._disconnected(1009)
        elif not self.close_sent and self.disconnect is None:
            key = "text" if kind == "text" else "bytes"
            await self.inq.put({"type": "websocket.receive", key: ev[1]})

    def finished(self):
        """The items ended (or their reader went away): stop reading the client."""
        if self.reader is not None and not self.reader.done():
            self.reader.cancel()
        if self.close_timer is not None:
            self.close_timer.cancel()
