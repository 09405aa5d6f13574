/* Waiting on one call: a waiter observes the call until it is final or its timeout
 * passes, and answers its callback exactly once (or never, when cancelled). */
#include <errno.h>
#include <stdlib.h>

#include "base/xalloc.h"
#include "control/internal.h"

static void waiter_final(struct ctl_call_obs *o, struct ctl_call *call)
{
    struct ctl_waiter *w = (struct ctl_waiter *)o;
    list_remove(&w->obs.link);
    if (w->timer)
        ev_timer_cancel(w->ctl->loop, w->timer);
    struct ctl_call_view v;
    ctl_call_view_fill(call, &v);
    w->cb(w->ud, true, &v);
    free(w);
}

static void waiter_release(struct ctl_call_obs *o)
{
    struct ctl_waiter *w = (struct ctl_waiter *)o;
    if (w->timer)
        ev_timer_cancel(w->ctl->loop, w->timer);
    free(w);
}

static void waiter_timeout(struct ev_loop *loop, void *data)
{
    struct ctl_waiter *w = data;
    struct ctl *c = w->ctl;
    (void)loop;
    w->timer = 0;
    struct ctl_call_view v;
    ctl_call_view_fill(w->call, &v);
    ctl_call_unobserve(c, &w->obs);
    /* The view's pointers are the call's; it stays until the next eviction, which
     * runs on later calls only (this is a finished-or-not call we still observe). */
    w->cb(w->ud, false, &v);
    free(w);
}

int ctl_wait(struct ctl *c, const char *ws, const char *call_id, uint64_t timeout_ms, ctl_wait_cb cb, void *ud,
             struct ctl_waiter **out, struct ctl_error *e)
{
    *out = NULL;
    struct ctl_call *call = ctl_call_lookup(c, ws, call_id, e);
    if (!call)
        return -ENOENT;
    if (ctl_call_state_is_final(call->state) || timeout_ms == 0) {
        struct ctl_call_view v;
        ctl_call_view_fill(call, &v);
        cb(ud, ctl_call_state_is_final(call->state), &v);
        return 0;
    }
    struct ctl_waiter *w = xcalloc(1, sizeof *w);
    w->obs.on_final = waiter_final;
    w->obs.release = waiter_release;
    w->call = call;
    w->cb = cb;
    w->ud = ud;
    w->ctl = c;
    ctl_call_observe(call, &w->obs);
    if (timeout_ms != UINT64_MAX)
        w->timer = ev_timer_add(c->loop, timeout_ms, waiter_timeout, w);
    *out = w;
    return 0;
}

void ctl_waiter_cancel(struct ctl *c, struct ctl_waiter *w)
{
    if (w->timer)
        ev_timer_cancel(c->loop, w->timer);
    ctl_call_unobserve(c, &w->obs);
    free(w);
}

int ctl_call_status(struct ctl *c, const char *ws, const char *call_id, struct ctl_call_view *out,
                    struct ctl_error *e)
{
    struct ctl_call *call = ctl_call_lookup(c, ws, call_id, e);
    if (!call)
        return -ENOENT;
    ctl_call_view_fill(call, out);
    return 0;
}
