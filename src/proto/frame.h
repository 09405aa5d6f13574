/* Runner protocol: how the worker (in gustd) and the code in a container talk.
 *
 * Transport: one AF_UNIX SOCK_SEQPACKET socketpair per container. The container end
 * is inherited by gust-init (PID 1) as fd 3 and, for long-lived runners, passed on to
 * the user process as fd GUST_RUNNER_FD (env var, default 3). SEQPACKET keeps every
 * message whole and atomic, so gust-init (LOG, EXIT frames) and the user process
 * (READY, OUTPUT, ERROR frames) can both write to the same socket without a relay.
 *
 * Every message is one datagram: a 16-byte header followed by at most
 * FRAME_MAX_BODY bytes of body. Payloads larger than that are sent as several
 * frames of the same type and id; every frame but the last has FRAME_F_MORE set.
 * A receiver reassembles per (type, id) and enforces its own total size limit.
 *
 * Header (little endian):
 *   u8  type      enum frame_type
 *   u8  flags     FRAME_F_*
 *   u16 reserved  0
 *   u32 body_len  bytes after the header in this datagram (<= FRAME_MAX_BODY)
 *   u64 id        input id (INPUT, INPUT_CALL, OUTPUT, ERROR, CANCEL, INPUT_LOG, ITEM, ITEM_ACK,
 *                 INPUT_MORE, INPUT_MORE_ACK) or
 *                 stream (LOG: 1 stdout, 2 stderr)
 *
 * Generators. An input whose function is a generator answers with one ITEM frame (or
 * FRAME_F_MORE chunks of one) per value it yields, in order, then an OUTPUT with an
 * empty body that says it finished (or an ERROR). The worker acknowledges what the
 * consumer has taken with ITEM_ACK: its body is the u64 (little endian) count of item
 * body bytes of that input taken so far. A runner sends another item only while the
 * item bytes it sent for the input, less the last acknowledged count, are below
 * FRAME_ITEM_WINDOW; so a slow consumer slows the generator (backpressure) instead of
 * making gustd buffer without bound. gustd fails a call whose runner sends more than
 * that window allows (docs/API.md "Generator items").
 *
 * Input streams: more input for a running call, the other way round. After an input's
 * INPUT frames the worker may send INPUT_MORE frames of the same id: further bytes of
 * that input, a byte stream in order (frame boundaries mean nothing, FRAME_F_MORE
 * included); one with an empty body ends the stream (the client half-closed or went
 * away). A runner that takes them acknowledges with INPUT_MORE_ACK, whose body is the
 * u64 (little endian) count of stream bytes of that input its code has taken so far;
 * the worker sends stream bytes only while those it sent, less the last acknowledged
 * count, are below FRAME_INPUT_WINDOW, so a runner holds at most that much of a stream
 * its code has not read (it may fail an input whose worker sends more). Frames for an
 * input the runner does not know (it ended) are dropped. gustd uses them for
 * WebSockets (docs/API.md "Web endpoints"); control's ctl_call_input_more sends them.
 */
#ifndef GUST_PROTO_FRAME_H
#define GUST_PROTO_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_HEADER_SIZE 16
#define FRAME_MAX_BODY (60 * 1024)
#define FRAME_MAX_DATAGRAM (FRAME_HEADER_SIZE + FRAME_MAX_BODY)
#define FRAME_CHILD_FD 3 /* the fd number of the channel inside the container */

enum frame_type {
    FRAME_HELLO = 1,    /* init -> worker: gust-init is running. body: empty */
    FRAME_READY = 2,    /* container -> worker: user init done, inputs welcome. body: empty */
    FRAME_INPUT = 3,    /* worker -> container: an input. body: payload bytes */
    FRAME_OUTPUT = 4,   /* container -> worker: success result of input id. body: payload */
    FRAME_ERROR = 5,    /* container -> worker: input id failed. body: struct frame_error_body + text */
    FRAME_LOG = 6,      /* container -> worker: captured output. id: 1 stdout, 2 stderr */
    FRAME_CANCEL = 7,   /* worker -> container: stop working on input id */
    FRAME_EXIT = 8,     /* init -> worker: the user process exited. body: struct frame_exit_body */
    FRAME_SHUTDOWN = 9, /* worker -> init: finish in-flight inputs and exit */
    /* container -> worker: output printed while serving input id, so that its log
     * lines carry the call. body: 1 byte stream (1 stdout, 2 stderr), then text; the
     * frame's text ends its last line (a runner sends whole lines). */
    FRAME_INPUT_LOG = 10,
    /* Snapshots (proto/snap.h): worker -> template "fork a container" (SCM_RIGHTS),
     * template -> worker "that fork's runner exited", worker -> forked runner "your
     * namespaces are ready: join them and go". */
    FRAME_FORK = 11,
    FRAME_CHILD_EXIT = 12,
    FRAME_RESUME = 13,
    FRAME_ITEM = 14,     /* container -> worker: one value yielded by input id. body: payload */
    FRAME_ITEM_ACK = 15, /* worker -> container: item bytes of input id taken. body: u64 LE */
    /* worker -> container: the call that input id belongs to, sent just before the
     * input's INPUT frames so that code in the container can name it (the Python
     * SDK's current_function_call_id()). body: the call id ("fc-..."), no NUL.
     * A runner that has no use for it ignores it, as any frame it does not handle. */
    FRAME_INPUT_CALL = 16,
    FRAME_INPUT_MORE = 17,     /* worker -> container: more bytes of input id's stream; empty: its end */
    FRAME_INPUT_MORE_ACK = 18, /* container -> worker: stream bytes of input id taken. body: u64 LE */
};
#define FRAME_TYPE_MAX FRAME_INPUT_MORE_ACK

/* The item bytes of one input a runner may have sent beyond the last ITEM_ACK before
 * it waits: 8 MiB keeps a fast generator of small items from ever waiting on a
 * consumer that polls every few milliseconds, and bounds what gustd holds per call. */
#define FRAME_ITEM_WINDOW (8u << 20)
#define FRAME_ITEM_ACK_SIZE 8 /* body of an ITEM_ACK */
/* The stream bytes of one input the worker may have sent beyond the last
 * INPUT_MORE_ACK: 1 MiB is many round trips' worth of a loopback channel (an ack comes
 * back within microseconds of the code reading), so a stream is not slowed by it, and
 * it bounds what a runner holds per stream of bytes its code has not read (a WebSocket
 * whose app does not call receive() stops the client's bytes at gustd, which stops
 * reading the client). */
#define FRAME_INPUT_WINDOW (1u << 20)
#define FRAME_INPUT_MORE_ACK_SIZE 8 /* body of an INPUT_MORE_ACK */

#define FRAME_F_MORE 0x01 /* more frames of this (type, id) follow */

struct frame_header {
    uint8_t type;
    uint8_t flags;
    uint16_t reserved;
    uint32_t body_len;
    uint64_t id;
};

/* Why an input failed, first byte of an ERROR body; the rest is a UTF-8 message
 * (for exec inputs: "exit status N" plus the tail of stderr). */
enum frame_error_kind {
    FRAME_ERR_EXIT_STATUS = 1, /* the per-input command exited non-zero */
    FRAME_ERR_SIGNAL = 2,      /* the per-input command was killed by a signal */
    FRAME_ERR_USER = 3,        /* a long-lived runner reported an error for the input */
    FRAME_ERR_SPAWN = 4,       /* the command could not be started (not found, ...) */
    FRAME_ERR_CANCELLED = 5,   /* stopped because the worker sent CANCEL */
};

/* EXIT body: 8 bytes. kind FRAME_EXIT_EXITED = exited with `code`, FRAME_EXIT_SIGNALED =
 * killed by signal `code`. */
#define FRAME_EXIT_EXITED 1
#define FRAME_EXIT_SIGNALED 2
struct frame_exit_body {
    uint8_t kind;
    uint8_t pad[3];
    int32_t code;
};

void frame_header_encode(const struct frame_header *h, uint8_t out[FRAME_HEADER_SIZE]);
/* Decodes and validates a header; returns 0 or -EPROTO (bad type, body_len too big,
 * reserved non-zero). */
int frame_header_decode(const uint8_t *in, size_t len, struct frame_header *h);

/* Sends one payload as one or more datagrams on a SEQPACKET fd. Blocking fds: loops
 * over EINTR. Non-blocking fds: returns -EAGAIN only if the first datagram could not
 * be sent; once started it waits (poll) for room so a payload is never half-sent.
 * Returns 0 or -errno. */
int frame_send(int fd, uint8_t type, uint64_t id, const void *body, size_t len);

/* Sends an ERROR frame: kind byte followed by msg. */
int frame_send_error(int fd, uint64_t id, enum frame_error_kind kind, const char *msg, size_t msg_len);

/* Receives one datagram into buf (FRAME_MAX_DATAGRAM bytes). Returns the body length
 * (>= 0) with *h filled and the body at buf + FRAME_HEADER_SIZE, 0-length EOF is
 * reported as -EPIPE, -EAGAIN on a non-blocking fd with nothing queued, -EPROTO on a
 * malformed datagram, or another -errno. */
int frame_recv(int fd, uint8_t *buf, struct frame_header *h);

/* Reassembly of chunked payloads, per (type, id). A fixed small table: at most
 * FRAME_ASM_SLOTS payloads in progress at once per channel. */
#define FRAME_ASM_SLOTS 64
struct frame_asm_slot {
    uint8_t type;
    uint64_t id;
    uint8_t *data;
    size_t len, cap;
    int used;
};
struct frame_asm {
    size_t max_payload;   /* total bytes allowed per payload */
    struct frame_asm_slot slots[FRAME_ASM_SLOTS];
};

void frame_asm_init(struct frame_asm *a, size_t max_payload);
/* Feeds one received frame (h as frame_header_decode leaves it: body_len <=
 * FRAME_MAX_BODY). Returns 1 when a payload is complete: *out (malloc'd,
 * NUL-terminated, caller frees) and *out_len are set. Returns 0 when more frames
 * are needed, -E2BIG when the payload exceeds max_payload (the partial payload is
 * dropped; later frames of it are ignored until its last frame), or -ENOSPC when all
 * slots are busy. A payload's buffer never grows past max_payload + 1 bytes. */
int frame_asm_feed(struct frame_asm *a, const struct frame_header *h, const uint8_t *body,
                   uint8_t **out, size_t *out_len);
/* Drops any partial payload for (type, id). */
void frame_asm_drop(struct frame_asm *a, uint8_t type, uint64_t id);
void frame_asm_free(struct frame_asm *a);

#endif
