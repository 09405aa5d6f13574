/* A generator call's items: the values its function yielded that the consumer has not
 * taken yet, oldest first, each one allocation. Indices are absolute (the n-th value
 * the generator yielded is item n whatever was freed before it), so a consumer names
 * where it is with one number and a repeated request after a lost answer gets the
 * same items again. What a call may hold is bounded twice: by what a runner that keeps
 * the item window can have in flight, and by CTL_ITEMS_MAX_TOTAL over all calls; the
 * item that would go past either is refused and the caller fails the call, so nothing
 * that was accepted is dropped, except unread items of a call that ended
 * CTL_ITEMS_KEEP_MS ago (a reader asking for them is told they are gone). */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"
#include "control/internal.h"

struct ctl_items *ctl_items_new(struct ctl *c)
{
    struct ctl_items *it = xcalloc(1, sizeof *it);
    it->ctl = c;
    list_init(&it->pollers);
    return it;
}

/* Frees every item held. */
static void items_drop(struct ctl_items *it)
{
    for (struct ctl_item *i = it->head, *next; i; i = next) {
        next = i->next;
        free(i);
    }
    assert(it->ctl->items_held >= it->held);
    it->ctl->items_held -= it->held;
    it->held = 0;
    it->head = it->tail = NULL;
}

void ctl_items_free(struct ctl_items *it)
{
    if (it->expire_timer)
        ev_timer_cancel(it->ctl->loop, it->expire_timer);
    items_drop(it);
    free(it);
}

/* The most one call may hold: a runner sends another item only while less than the
 * window is unacknowledged, and acknowledgements follow what the consumer took, so
 * the window and one item of at most a payload. */
static size_t items_call_bound(const struct ctl *c)
{
    return (size_t)WORKER_ITEM_WINDOW + c->cfg.max_payload;
}

int ctl_items_push(struct ctl_items *it, const void *data, size_t len)
{
    struct ctl *c = it->ctl;
    if (it->held + len > items_call_bound(c))
        return -EMSGSIZE;
    /* One call's full bound is always allowed, so a payload limit above the total
     * bound still lets a call stream. */
    size_t total_bound = CTL_ITEMS_MAX_TOTAL > items_call_bound(c) ? CTL_ITEMS_MAX_TOTAL : items_call_bound(c);
    if (c->items_held + len > total_bound)
        return -ENOBUFS;
    struct ctl_item *i = xmalloc(sizeof *i + len);
    i->next = NULL;
    i->len = len;
    if (len)
        memcpy(i->data, data, len);
    if (it->tail)
        it->tail->next = i;
    else
        it->head = i;
    it->tail = i;
    it->total++;
    it->held += len;
    c->items_held += len;
    list_for_each_safe(p, &it->pollers, struct ctl_items_poller, link)
        p->on_item(p);
    return 0;
}

void ctl_items_take(struct ctl_items *it, uint64_t upto)
{
    assert(upto <= it->total);
    while (it->first < upto && it->head) {
        struct ctl_item *i = it->head;
        it->head = i->next;
        if (!it->head)
            it->tail = NULL;
        it->held -= i->len;
        it->ctl->items_held -= i->len;
        it->taken_bytes += i->len;
        it->first++;
        free(i);
    }
    /* Items dropped at expiry count as passed, so indices stay absolute. */
    if (it->first < upto)
        it->first = upto;
    if (!it->head && it->expire_timer) {
        ev_timer_cancel(it->ctl->loop, it->expire_timer);
        it->expire_timer = 0;
    }
}

static void items_expire(struct ev_loop *loop, void *data)
{
    struct ctl_items *it = data;
    (void)loop;
    it->expire_timer = 0;
    it->expired = it->head != NULL;
    items_drop(it);
}

void ctl_items_ended(struct ctl_items *it)
{
    if (it->head && !it->expire_timer)
        it->expire_timer = ev_timer_add(it->ctl->loop, CTL_ITEMS_KEEP_MS, items_expire, it);
}
