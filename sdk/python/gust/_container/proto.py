"""The runner protocol as the SDK speaks it: the one Python copy of the constants of
src/proto/frame.h and src/proto/snap.h (and of src/base/caps.h's CAPS_CONTAINER, which
a container forked from a snapshot keeps), under their C names.
scripts/check-proto-py.py (run by `make test`) compares each of them, and HEADER and
EXIT_BODY field by field, with the headers: change a value there first, then here.

EXC_TAG and JSON_TAG are the Python runner's (src/client/pyjson.h, GUST_PY_EXC_TAG and
GUST_PY_JSON_TAG): the runner puts EXC_TAG in an ERROR frame's text before the pickled
exception, and the SDK and the CLI look for it there; JSON_TAG starts an input of JSON
arguments (from `gust call` and the like) and the runner's JSON answer to it."""
import struct

# frame.h: datagrams of a 16-byte header and at most FRAME_MAX_BODY bytes of body.
FRAME_HEADER_SIZE = 16
FRAME_MAX_BODY = 60 * 1024
FRAME_CHILD_FD = 3  # the channel's fd in the container: $GUST_RUNNER_FD's default

# enum frame_type
FRAME_HELLO = 1
FRAME_READY = 2
FRAME_INPUT = 3
FRAME_OUTPUT = 4
FRAME_ERROR = 5
FRAME_LOG = 6
FRAME_CANCEL = 7
FRAME_EXIT = 8
FRAME_SHUTDOWN = 9
FRAME_INPUT_LOG = 10
FRAME_FORK = 11
FRAME_CHILD_EXIT = 12
FRAME_RESUME = 13
FRAME_ITEM = 14
FRAME_ITEM_ACK = 15
FRAME_INPUT_CALL = 16
FRAME_INPUT_MORE = 17  # more bytes of an input's stream (an empty body: its end)
FRAME_INPUT_MORE_ACK = 18  # stream bytes of the input taken: u64 LE

FRAME_F_MORE = 0x01  # more frames of this (type, id) follow
# A generator input's item bytes sent beyond the last ITEM_ACK before the runner waits;
# an ITEM_ACK body is the u64 count of item bytes taken.
FRAME_ITEM_WINDOW = 8 << 20
FRAME_ITEM_ACK_SIZE = 8
# An input's stream bytes gustd sends beyond the last INPUT_MORE_ACK, at most.
FRAME_INPUT_WINDOW = 1 << 20
FRAME_INPUT_MORE_ACK_SIZE = 8
FRAME_ERR_USER = 3  # enum frame_error_kind: the first byte of a runner's ERROR body
FRAME_ERR_CANCELLED = 5

# frame_exit_body.kind
FRAME_EXIT_EXITED = 1
FRAME_EXIT_SIGNALED = 2

HEADER = struct.Struct("<BBHIQ")  # struct frame_header: type, flags, reserved, body_len, id
EXIT_BODY = struct.Struct("<B3xi")  # struct frame_exit_body: kind, pad[3], code

# snap.h
SNAP_MSG_RUNNER = b"c"  # forked runner -> worker on the sync socket
SNAP_EXIT_FORK_FAILED = 3  # frame_exit_body.kind in FRAME_CHILD_EXIT: the fork failed
SNAP_SYNC_FD = 4  # fds of gust-init --mode snap_child
SNAP_STDOUT_FD = 5
SNAP_STDERR_FD = 6

# base/caps.h: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
# NET_BIND_SERVICE, as a bit mask of capability numbers.
CAPS_CONTAINER = 0x5fb

EXC_TAG = "GUSTEXC1:"
# A NUL byte is no pickle opcode, so no pickle starts with this.
JSON_TAG = b"\x00GUSTJSON1\n"

# web.h: a web request's envelope starts with WEB_TAG (the layout is web.h's; the
# runner's reader is gust/_container/web.py); the response head's limits.
WEB_TAG = b"\x00GUSTWEB2\n"
WEB_TAG_LEN = 10
WEB_MAX_HEADERS = 100
WEB_STATUS_MIN = 100
WEB_STATUS_MAX = 599
WEB_MAX_HEADER_BYTES = 16 * 1024
# The envelope's body length of a chunked body still arriving (streamed bodies).
WEB_BODY_LEN_UNKNOWN = (1 << 64) - 1


def send_frame(sock, ftype, fid, body):
    """Sends body as one frame of (ftype, fid), or as several when it is longer than
    FRAME_MAX_BODY, each but the last with FRAME_F_MORE."""
    off = 0
    while True:
        chunk = body[off:off + FRAME_MAX_BODY]
        off += len(chunk)
        more = off < len(body)
        sock.send(HEADER.pack(ftype, FRAME_F_MORE if more else 0, 0, len(chunk), fid) + chunk)
        if not more:
            return
