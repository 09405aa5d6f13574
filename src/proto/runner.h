/* Client side of the runner protocol for long-lived user programs written in C
 * (examples/echo and examples/web_c use it). Blocking and single-threaded: the
 * library reads the channel only inside its calls, never behind the program's back.
 *
 * Life: runner_open() (reads GUST_RUNNER_FD) -> do your init -> runner_ready() ->
 * loop { runner_next(&in) ; answer in.id } where an answer is one of
 *   - runner_reply(...) (a result) or runner_fail(...) (an error), or
 *   - for a generator call (a web request is one: docs/API.md "Web endpoints"), any
 *     number of runner_item(...) then runner_end(...) (or runner_fail(...)).
 * A web request's input is an envelope (proto/web.h): web_request_decode() reads it,
 * runner_web_head() / runner_web_respond() answer it, and runner_stream_read() reads
 * what the client sends after it (a WebSocket's bytes, FRAME_INPUT_MORE).
 *
 * Frames that arrive while the program is inside any of these calls are kept for the
 * inputs they are for (state per input from its arrival to its answer; at most
 * RUNNER_MAX_LIVE inputs): item acknowledgements, stream bytes, cancellations, other
 * inputs (queued in order for runner_next) and SHUTDOWN (runner_next says -EPIPE once
 * the queued inputs are taken). */
#ifndef GUST_PROTO_RUNNER_H
#define GUST_PROTO_RUNNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto/frame.h"
#include "proto/web.h"

/* Inputs the library tracks at once (received and not yet answered): above the most
 * a container is sent at once (a spec's max_inputs is at most 1000), so an input the
 * worker sends is never refused for want of a slot. */
#define RUNNER_MAX_LIVE 1024

/* The library's state of one input, from its arrival to its answer. */
struct runner_live {
    uint64_t id;
    bool used;
    bool queued;            /* arrived, not yet returned by runner_next */
    bool cancelled;         /* the worker sent CANCEL */
    bool stream_end;        /* the empty INPUT_MORE came */
    bool stream_overflow;   /* the worker sent past FRAME_INPUT_WINDOW */
    uint64_t seq;           /* arrival order, for runner_next */
    uint8_t *data;          /* a queued input's payload (handed over by runner_next) */
    size_t len;
    uint64_t item_sent, item_acked;   /* item body bytes sent / acknowledged (ITEM_ACK) */
    uint64_t stream_taken;            /* stream bytes runner_stream_read returned */
    uint8_t *sbuf;                    /* stream bytes not read yet: sbuf[soff, slen) */
    size_t soff, slen, scap;
};

struct runner {
    int fd;
    uint8_t *rxbuf;           /* FRAME_MAX_DATAGRAM bytes */
    struct frame_asm asm_;
    struct runner_live *live; /* RUNNER_MAX_LIVE entries */
    size_t live_hw;           /* entries at and past it were never used: scans stop there
                               * (a free slot is the lowest, so one input at a time scans one) */
    uint64_t next_seq;
    bool shutdown;            /* SHUTDOWN came: no input follows the queued ones */
};

struct runner_input {
    uint64_t id;
    uint8_t *data;  /* malloc'd, NUL-terminated; runner_input_free releases it */
    size_t len;
};

/* Returns 0, or -errno if GUST_RUNNER_FD is missing or not a socket. */
int runner_open(struct runner *r);
/* Says the init is done. In a snapshot template (env GUST_SNAPSHOT=template, a
 * function with snapshot = true) it does not return there: the process then forks
 * itself into each new container of the function, and runner_ready returns 0 in
 * every such container, whose memory is the template's at this call (copy-on-write):
 * what the init built is there, open sockets and threads are not. */
int runner_ready(struct runner *r);
/* Blocks for the next input (inputs that came while the program was busy first, in
 * the order they came). An input cancelled before it is taken is answered (a
 * cancelled ERROR) and skipped, a partial one dropped. Returns 0, -EPIPE when the
 * worker closed the channel or sent SHUTDOWN (the runner should then exit), or
 * -errno. An input over the runner's own size limit is answered with an ERROR frame
 * and skipped. The input stays known to the library (its items, its stream) until it
 * is answered. */
int runner_next(struct runner *r, struct runner_input *in);
/* Answers input id with a result (an OUTPUT frame). Returns 0 or -errno. */
int runner_reply(struct runner *r, uint64_t id, const void *data, size_t len);
/* Answers input id with an error, msg its text (NULL: none). For an input the worker
 * cancelled the error is a cancelled one, as gustd expects of a runner giving it up.
 * Returns 0 or -errno. */
int runner_fail(struct runner *r, uint64_t id, const char *msg);

/* Sends one value of generator input id (a FRAME_ITEM; a web response's head or a
 * piece of its body). Flow control: while the item bytes sent for the input, less
 * what the worker acknowledged (its consumer took: a web client read), reach
 * FRAME_ITEM_WINDOW, it blocks reading the channel until an ITEM_ACK makes room, so a
 * slow consumer slows the program instead of failing the call (items_overflow). Keep
 * items well under the window (a few KiB to 1 MiB): one item may go past it by its
 * own size. Returns 0; -ECANCELED when the worker cancelled the input (the client
 * went away, the call timed out): stop and runner_fail it; -ENOENT for an input not
 * taken by runner_next or already answered; -EPIPE when the channel closed; or
 * -errno. */
int runner_item(struct runner *r, uint64_t id, const void *data, size_t len);
/* Ends generator input id (its items are all sent): the empty OUTPUT frame. After it
 * the input is forgotten. Returns 0 or -errno. */
int runner_end(struct runner *r, uint64_t id);

/* Reads up to cap bytes of input id's stream (FRAME_INPUT_MORE: for a web request,
 * what the client sends after an upgrade's 101), blocking until some arrive, and
 * acknowledges them (INPUT_MORE_ACK), which lets the worker send more: at most
 * FRAME_INPUT_WINDOW bytes wait here unread. Returns the count (> 0), 0 at the
 * stream's end (the client half-closed or went away), -ECANCELED when the input was
 * cancelled, -EPROTO when the worker sent more than the window allows, -ENOENT for an
 * input not taken or already answered, -EPIPE when the channel closed, or -errno. */
ssize_t runner_stream_read(struct runner *r, uint64_t id, void *buf, size_t cap);

/* Starts the response of web request id: item 0, the head (status, n headers, then the
 * first body bytes, which may be none). Later body pieces are runner_item()s, the end
 * runner_end(). Returns 0, -EINVAL (with a static reason in *why, when why is not
 * NULL) for a head gustd would refuse (proto/web.h: a status out of 100..599, more
 * than WEB_MAX_HEADERS headers, a name that is not a token, a value with CR, LF or
 * NUL), or runner_item's errors. */
int runner_web_head(struct runner *r, uint64_t id, int status, const struct web_header *headers, size_t n,
                    const void *body, size_t len, const char **why);
/* A whole response in one: runner_web_head then runner_end. Returns as they do. */
int runner_web_respond(struct runner *r, uint64_t id, int status, const struct web_header *headers, size_t n,
                       const void *body, size_t len, const char **why);

void runner_input_free(struct runner_input *in);
void runner_close(struct runner *r);

#endif
