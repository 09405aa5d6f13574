/* A call's input stream (control.h, ctl_call_input_more): bytes that follow its
 * input, for code that reads a byte stream while it runs (a WebSocket's client bytes).
 *
 * Bytes wait in call->more_held until the call runs on a container and that
 * container's window has room: what was sent (more_sent) less what it acknowledged
 * (more_acked) stays below WORKER_INPUT_WINDOW, so the worker's channel and the runner
 * hold at most that much; more_held itself is bounded by CTL_STREAM_HELD_MAX, and a
 * writer is told the room left. The end of the stream (an empty send) goes out after
 * the last byte. calls.c frees what is held when the call ends and refuses to run a
 * call again once its container was sent stream bytes (call_streamed). */
#include <errno.h>
#include <string.h>

#include "base/log.h"
#include "control/internal.h"

static bool stream_open(const struct ctl_call *call)
{
    return !ctl_call_state_is_final(call->state) && !call->more_end_asked;
}

size_t ctl_call_input_room(struct ctl *c, const char *call_id)
{
    struct ctl_call *call = ctl_call_find(c, call_id);
    if (!call || !stream_open(call))
        return 0;
    size_t held = call->more_held.len - call->more_held_off;
    return held >= CTL_STREAM_HELD_MAX ? 0 : CTL_STREAM_HELD_MAX - held;
}

int ctl_call_input_more(struct ctl *c, const char *call_id, const void *data, size_t len, struct ctl_error *e)
{
    struct ctl_call *call = ctl_call_find(c, call_id);
    if (!call) {
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", NULL, "call %s not found", call_id);
        return -ENOENT;
    }
    if (!c->wops->send_input_more) {
        ctl_err(e, CTL_E_INVALID, "invalid_argument", NULL, "this worker carries no input streams");
        return -ENOTSUP;
    }
    if (!stream_open(call)) {
        ctl_err(e, CTL_E_CONFLICT, "conflict", NULL, "call %s %s", call_id,
                call->more_end_asked ? "has ended its input stream" : "has ended");
        return -EPIPE;
    }
    if (len == 0) {
        call->more_end_asked = true;
    } else {
        if (len > ctl_call_input_room(c, call_id)) {
            ctl_err(e, CTL_E_TOO_LARGE, "payload_too_large", NULL,
                    "call %s holds %zu stream bytes its container did not take; %zu more exceed %u", call_id,
                    call->more_held.len - call->more_held_off, len, CTL_STREAM_HELD_MAX);
            return -ENOBUFS;
        }
        /* What was sent goes from the front once it is at least what is left: the
         * buffer stays within twice CTL_STREAM_HELD_MAX however long a slow reader
         * keeps bytes held, at an amortised copy of each byte at most once. */
        size_t left = call->more_held.len - call->more_held_off;
        if (call->more_held_off && call->more_held_off >= left) {
            buf_consume(&call->more_held, call->more_held_off);
            call->more_held_off = 0;
        }
        buf_append(&call->more_held, data, len);
    }
    ctl_stream_flush(c, call);
    return 0;
}

void ctl_stream_flush(struct ctl *c, struct ctl_call *call)
{
    if (call->state != CTL_CALL_RUNNING || !call->ctr)
        return;
    const char *ctr = call->ctr->id;
    while (call->more_held.len > call->more_held_off) {
        uint64_t inflight = call->more_sent - call->more_acked;
        if (inflight >= WORKER_INPUT_WINDOW)
            return; /* the ack that makes room flushes again */
        size_t n = call->more_held.len - call->more_held_off;
        if (n > WORKER_INPUT_WINDOW - inflight)
            n = (size_t)(WORKER_INPUT_WINDOW - inflight);
        int r = c->wops->send_input_more(c->worker, ctr, call->input_id,
                                         call->more_held.data + call->more_held_off, n);
        if (r < 0) {
            /* The container is going away: its exit settles the call. */
            log_debug("control", "call %s: stream bytes to %s: %s", call->id, ctr, strerror(-r));
            return;
        }
        call->more_sent += n;
        call->more_held_off += n;
    }
    buf_reset(&call->more_held);
    call->more_held_off = 0;
    if (call->more_end_asked && !call->more_end_sent &&
        c->wops->send_input_more(c->worker, ctr, call->input_id, NULL, 0) == 0)
        call->more_end_sent = true;
}

void ctl_stream_acked(struct ctl *c, struct ctl_call *call, uint64_t bytes)
{
    /* A runner cannot take what it was not sent; a stale (smaller) count changes nothing. */
    if (bytes > call->more_sent)
        bytes = call->more_sent;
    if (bytes <= call->more_acked)
        return;
    call->more_acked = bytes;
    ctl_stream_flush(c, call);
}
