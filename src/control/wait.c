/* Waiting on one call: a waiter observes the call until it is final or its timeout
 * passes, and answers its callback exactly once (or never, when cancelled). A long poll
 * on a generator call's items is such a waiter that an arriving item answers too. */
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
    out->timeline = ctl_call_timeline(c, call);
    return 0;
}

/* ---------- generator items ---------- */

static void items_view_fill(struct ctl_call *call, uint64_t from, struct ctl_items_view *v)
{
    const struct ctl_items *it = call->items;
    ctl_call_view_fill(call, &v->call);
    v->from = from;
    v->first = it->first == from ? it->head : NULL;
    v->total = it->total;
    v->ended = ctl_call_state_is_final(call->state);
}

/* Unlinks a waiter from everything it watches; the caller frees it. */
static void items_waiter_unlink(struct ctl_items_waiter *w)
{
    struct ev_loop *loop = w->ctl->loop;
    if (w->timer)
        ev_timer_cancel(loop, w->timer);
    if (w->soon)
        ev_timer_cancel(loop, w->soon);
    w->timer = w->soon = 0;
    list_remove(&w->poller.link);
    list_remove(&w->obs.link);
}

/* Answers with what there is now. The callback runs before the call may be evicted
 * (its view's pointers are the call's). */
static void items_waiter_answer(struct ctl_items_waiter *w, bool evict)
{
    struct ctl *c = w->ctl;
    struct ctl_items_view v;
    items_waiter_unlink(w);
    items_view_fill(w->call, w->from, &v);
    w->cb(w->ud, &v);
    free(w);
    if (evict)
        ctl_calls_evict(c);
}

static void items_waiter_final(struct ctl_call_obs *o, struct ctl_call *call)
{
    (void)call;
    /* ctl_call_finish evicts once its observers were told. */
    items_waiter_answer((struct ctl_items_waiter *)o, false);
}

static void items_waiter_release(struct ctl_call_obs *o)
{
    struct ctl_items_waiter *w = (struct ctl_items_waiter *)o;
    items_waiter_unlink(w);
    free(w);
}

/* The poll's deadline: answers with no items. */
static void items_waiter_deadline(struct ev_loop *loop, void *data)
{
    struct ctl_items_waiter *w = data;
    (void)loop;
    w->timer = 0;
    items_waiter_answer(w, true);
}

static void items_waiter_soon(struct ev_loop *loop, void *data)
{
    struct ctl_items_waiter *w = data;
    (void)loop;
    w->soon = 0;
    items_waiter_answer(w, true);
}

/* Items arrived: answer at the end of this loop turn, with every item that the turn
 * reads from the container's channel (one answer for a burst, not one per item). */
static void items_waiter_item(struct ctl_items_poller *p)
{
    struct ctl_items_waiter *w = list_entry(p, struct ctl_items_waiter, poller);
    if (!w->soon)
        w->soon = ev_timer_add(w->ctl->loop, 0, items_waiter_soon, w);
}

/* The container is told what the consumer took once that is this much more than it was
 * last told. A runner waits only with a whole window (WORKER_ITEM_WINDOW) unacknowledged,
 * so a quarter of it lets a generator at the window's edge go on after a quarter was
 * read (the window is never shorter than three quarters of itself); an
 * acknowledgement of each item taken would cost a frame each way and a wakeup of the
 * runner per item: per request of a web endpoint (its response head is an item), or
 * per value of a stream of small ones. */
#define CTL_ITEMS_ACK_STEP (WORKER_ITEM_WINDOW / 4u)

int ctl_items_wait(struct ctl *c, const char *ws, const char *call_id, uint64_t from, uint64_t timeout_ms,
                   ctl_items_cb cb, void *ud, struct ctl_items_waiter **out, struct ctl_error *e)
{
    *out = NULL;
    struct ctl_call *call = ctl_call_lookup(c, ws, call_id, e);
    if (!call)
        return -ENOENT;
    struct ctl_items *it = call->items;
    if (!it) {
        ctl_err(e, CTL_E_CONFLICT, "not_generator", NULL,
                "call %s is not a generator call: its result is at GET /v1/calls/%s", call_id, call_id);
        return -EINVAL;
    }
    if (from > it->total) {
        ctl_err(e, CTL_E_INVALID, "invalid_argument", "from",
                "from: %llu is past the %llu items the generator yielded so far", (unsigned long long)from,
                (unsigned long long)it->total);
        return -ERANGE;
    }
    if (from < it->first || (it->expired && from < it->total)) {
        ctl_err(e, CTL_E_GONE, "items_gone", "from",
                it->expired ? "the items from %llu on were dropped: nobody read them within %u s of the call's end"
                            : "the items before %llu were taken already (a request with a later from took them)",
                (unsigned long long)(it->expired ? from : it->first), CTL_ITEMS_KEEP_MS / 1000);
        return -ESTALE;
    }
    ctl_items_take(it, from);
    if (it->taken_bytes - it->acked_bytes >= CTL_ITEMS_ACK_STEP && call->state == CTL_CALL_RUNNING && call->ctr) {
        c->wops->item_ack(c->worker, call->ctr->id, call->input_id, it->taken_bytes);
        it->acked_bytes = it->taken_bytes;
    }
    if (it->head || ctl_call_state_is_final(call->state) || timeout_ms == 0) {
        struct ctl_items_view v;
        items_view_fill(call, from, &v);
        cb(ud, &v);
        return 0;
    }
    struct ctl_items_waiter *w = xcalloc(1, sizeof *w);
    w->obs.on_final = items_waiter_final;
    w->obs.release = items_waiter_release;
    w->poller.on_item = items_waiter_item;
    w->ctl = c;
    w->call = call;
    w->from = from;
    w->cb = cb;
    w->ud = ud;
    ctl_call_observe(call, &w->obs);
    list_push_back(&it->pollers, &w->poller.link);
    if (timeout_ms != UINT64_MAX)
        w->timer = ev_timer_add(c->loop, timeout_ms, items_waiter_deadline, w);
    *out = w;
    return 0;
}

void ctl_items_waiter_cancel(struct ctl *c, struct ctl_items_waiter *w)
{
    items_waiter_unlink(w);
    free(w);
    ctl_calls_evict(c);
}
