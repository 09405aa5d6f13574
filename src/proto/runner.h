/* Client side of the runner protocol for long-lived user programs written in C
 * (examples/echo uses it). Blocking, single-threaded, one input at a time.
 *
 * Life: runner_open() (reads GUST_RUNNER_FD) -> do your init -> runner_ready() ->
 * loop { runner_next(&in) ; runner_reply(...) or runner_fail(...) }.
 */
#ifndef GUST_PROTO_RUNNER_H
#define GUST_PROTO_RUNNER_H

#include <stddef.h>
#include <stdint.h>

#include "proto/frame.h"

struct runner {
    int fd;
    uint8_t *rxbuf;           /* FRAME_MAX_DATAGRAM bytes */
    struct frame_asm asm_;
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
/* Blocks for the next input. CANCEL frames for inputs not yet taken are dropped.
 * Returns 0, -EPIPE when the worker closed the channel or sent SHUTDOWN (the runner
 * should then exit), or -errno. An input over the runner's own size limit is answered
 * with an ERROR frame and skipped. */
int runner_next(struct runner *r, struct runner_input *in);
int runner_reply(struct runner *r, uint64_t id, const void *data, size_t len);
int runner_fail(struct runner *r, uint64_t id, const char *msg);
void runner_input_free(struct runner_input *in);
void runner_close(struct runner *r);

#endif
