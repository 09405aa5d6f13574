/* epoll event loop: fd watches in an fd-indexed table, one-shot timers in a binary
 * min-heap over a slab of timer slots, and a deferred-callback queue.
 *
 * Safe deletion: every watch slot carries a generation that is bumped on each add and
 * delete, and the generation travels in epoll_event.data next to the fd. An event of
 * the current batch whose generation no longer matches (the watch was deleted, or
 * deleted and re-added) is skipped. Timer ids are (slot generation << 32 | slot + 1),
 * so a fired or cancelled id never matches a reused slot. */
#include "evloop/evloop.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/util.h"
#include "base/xalloc.h"

#define EV_BATCH_MIN 64
#define EV_BATCH_MAX 4096

struct ev_watch {
    ev_io_cb cb;
    void *data;
    uint32_t events; /* EV_READ|EV_WRITE asked for */
    uint32_t gen;    /* bumped on add and del */
    bool active;
};

struct ev_timer {
    uint64_t deadline;
    uint64_t seq; /* tie-break: equal deadlines fire in creation order */
    ev_cb cb;
    void *data;
    uint32_t gen;
    uint32_t heap_idx; /* position in loop->heap while armed; next free slot otherwise */
    bool armed;
};

struct ev_deferred {
    ev_cb cb;
    void *data;
};

struct ev_loop {
    int epfd;
    bool stop;
    bool virt;       /* virtual time (evloop.h): now moves only to timer deadlines */
    uint64_t now;
    size_t nactive;  /* active fd watches: a virtual loop polls only when there are some */

    struct ev_watch *watches; /* indexed by fd */
    size_t nwatches;

    struct ev_timer *timers; /* slab */
    size_t ntimers, timers_cap;
    uint32_t free_timer; /* head of the free list, UINT32_MAX when empty */
    uint32_t *heap;      /* slot indices, min-heap on (deadline, seq) */
    size_t heap_len;
    uint64_t timer_seq;

    struct ev_deferred *defer, *defer_run; /* pending queue and the one being run */
    size_t defer_len, defer_cap, defer_run_cap;

    struct epoll_event *batch;
    size_t batch_cap;
};

#define EV_NO_SLOT UINT32_MAX

int ev_loop_new(struct ev_loop **out)
{
    struct ev_loop *l = xcalloc(1, sizeof *l);
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        int e = errno;
        free(l);
        return -e;
    }
    l->batch_cap = EV_BATCH_MIN;
    l->batch = xcalloc(l->batch_cap, sizeof *l->batch);
    l->free_timer = EV_NO_SLOT;
    l->now = mono_ms();
    *out = l;
    return 0;
}

int ev_loop_new_virtual(struct ev_loop **out)
{
    int r = ev_loop_new(out);
    if (r < 0)
        return r;
    (*out)->virt = true;
    (*out)->now = 0;
    return 0;
}

bool ev_loop_is_virtual(const struct ev_loop *loop)
{
    return loop->virt;
}

void ev_loop_free(struct ev_loop *loop)
{
    if (!loop)
        return;
    close(loop->epfd);
    free(loop->watches);
    free(loop->timers);
    free(loop->heap);
    free(loop->defer);
    free(loop->defer_run);
    free(loop->batch);
    free(loop);
}

uint64_t ev_now_ms(struct ev_loop *loop)
{
    return loop->now;
}

uint64_t ev_now_ns(struct ev_loop *loop)
{
    if (loop->virt)
        return loop->now * 1000000ull;
    return mono_ns();
}

void ev_stop(struct ev_loop *loop)
{
    loop->stop = true;
}

/* ---------- fd watches ---------- */

static uint32_t to_epoll(uint32_t events)
{
    uint32_t e = 0;
    if (events & EV_READ)
        e |= EPOLLIN;
    if (events & EV_WRITE)
        e |= EPOLLOUT;
    return e;
}

/* Grows the watch table so that fd is a valid index. */
static void watches_fit(struct ev_loop *loop, int fd)
{
    size_t need = (size_t)fd + 1;
    if (need <= loop->nwatches)
        return;
    size_t n = loop->nwatches ? loop->nwatches : 64;
    while (n < need)
        n *= 2;
    struct ev_watch *w = xreallocarray(loop->watches, n, sizeof *w);
    memset(w + loop->nwatches, 0, (n - loop->nwatches) * sizeof *w);
    loop->watches = w;
    loop->nwatches = n;
}

static struct ev_watch *watch_get(struct ev_loop *loop, int fd)
{
    if (fd < 0 || (size_t)fd >= loop->nwatches || !loop->watches[fd].active)
        return NULL;
    return &loop->watches[fd];
}

int ev_io_add(struct ev_loop *loop, int fd, uint32_t events, ev_io_cb cb, void *data)
{
    if (fd < 0 || !cb)
        return -EINVAL;
    watches_fit(loop, fd);
    struct ev_watch *w = &loop->watches[fd];
    if (w->active)
        return -EEXIST;
    uint32_t gen = w->gen + 1;
    struct epoll_event ev = {.events = to_epoll(events), .data.u64 = ((uint64_t)gen << 32) | (uint32_t)fd};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -errno;
    w->gen = gen;
    w->cb = cb;
    w->data = data;
    w->events = events & (EV_READ | EV_WRITE);
    w->active = true;
    loop->nactive++;
    return 0;
}

int ev_io_mod(struct ev_loop *loop, int fd, uint32_t events)
{
    struct ev_watch *w = watch_get(loop, fd);
    if (!w)
        return -ENOENT;
    events &= EV_READ | EV_WRITE;
    if (events == w->events)
        return 0;
    struct epoll_event ev = {.events = to_epoll(events), .data.u64 = ((uint64_t)w->gen << 32) | (uint32_t)fd};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
        return -errno;
    w->events = events;
    return 0;
}

int ev_io_del(struct ev_loop *loop, int fd)
{
    struct ev_watch *w = watch_get(loop, fd);
    if (!w)
        return -ENOENT;
    /* A caller that closed fd first has already lost the epoll registration; the
     * slot is released either way. */
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
    w->active = false;
    loop->nactive--;
    w->gen++;
    w->cb = NULL;
    w->data = NULL;
    w->events = 0;
    return 0;
}

/* ---------- timers ---------- */

static bool timer_less(const struct ev_loop *loop, uint32_t a, uint32_t b)
{
    const struct ev_timer *ta = &loop->timers[a], *tb = &loop->timers[b];
    if (ta->deadline != tb->deadline)
        return ta->deadline < tb->deadline;
    return ta->seq < tb->seq;
}

static void heap_set(struct ev_loop *loop, size_t i, uint32_t slot)
{
    loop->heap[i] = slot;
    loop->timers[slot].heap_idx = (uint32_t)i;
}

static void heap_up(struct ev_loop *loop, size_t i)
{
    uint32_t slot = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_less(loop, slot, loop->heap[parent]))
            break;
        heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_set(loop, i, slot);
}

static void heap_down(struct ev_loop *loop, size_t i)
{
    uint32_t slot = loop->heap[i];
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= loop->heap_len)
            break;
        size_t m = l;
        if (l + 1 < loop->heap_len && timer_less(loop, loop->heap[l + 1], loop->heap[l]))
            m = l + 1;
        if (!timer_less(loop, loop->heap[m], slot))
            break;
        heap_set(loop, i, loop->heap[m]);
        i = m;
    }
    heap_set(loop, i, slot);
}

/* Removes heap entry i, keeping the heap property. */
static void heap_remove(struct ev_loop *loop, size_t i)
{
    assert(i < loop->heap_len && loop->timers[loop->heap[i]].heap_idx == i);
    loop->heap_len--;
    if (i == loop->heap_len)
        return;
    heap_set(loop, i, loop->heap[loop->heap_len]);
    if (i > 0 && timer_less(loop, loop->heap[i], loop->heap[(i - 1) / 2]))
        heap_up(loop, i);
    else
        heap_down(loop, i);
}

/* Returns slot to the free list; its generation moves on so stale ids miss. */
static void timer_release(struct ev_loop *loop, uint32_t slot)
{
    struct ev_timer *t = &loop->timers[slot];
    t->armed = false;
    t->gen++;
    if (t->gen == 0)
        t->gen = 1;
    t->cb = NULL;
    t->data = NULL;
    t->heap_idx = loop->free_timer;
    loop->free_timer = slot;
}

/* Grows the slab and the heap together: the heap holds at most one entry per slot. */
static void timers_grow(struct ev_loop *loop)
{
    size_t n = loop->timers_cap ? loop->timers_cap * 2 : 64;
    /* Slots are 32-bit ids: more timers than that is more memory (over 100 GiB of
     * slots) than a loop can have, so it is handled as allocation failure. */
    if (n > EV_NO_SLOT)
        xalloc_die(n * sizeof *loop->timers);
    loop->timers = xreallocarray(loop->timers, n, sizeof *loop->timers);
    loop->heap = xreallocarray(loop->heap, n, sizeof *loop->heap);
    loop->timers_cap = n;
}

uint64_t ev_timer_add(struct ev_loop *loop, uint64_t delay_ms, ev_cb cb, void *data)
{
    uint32_t slot;
    if (loop->free_timer != EV_NO_SLOT) {
        slot = loop->free_timer;
        loop->free_timer = loop->timers[slot].heap_idx;
    } else {
        if (loop->ntimers == loop->timers_cap)
            timers_grow(loop);
        slot = (uint32_t)loop->ntimers++;
        loop->timers[slot] = (struct ev_timer){.gen = 1};
    }
    struct ev_timer *t = &loop->timers[slot];
    t->deadline = delay_ms > UINT64_MAX - loop->now ? UINT64_MAX : loop->now + delay_ms;
    t->seq = loop->timer_seq++;
    t->cb = cb;
    t->data = data;
    t->armed = true;
    /* The new slot is counted in ntimers and not yet in the heap. */
    assert(loop->heap_len < loop->ntimers && loop->ntimers <= loop->timers_cap);
    loop->heap[loop->heap_len++] = slot;
    heap_up(loop, loop->heap_len - 1);
    return ((uint64_t)t->gen << 32) | ((uint64_t)slot + 1);
}

void ev_timer_cancel(struct ev_loop *loop, uint64_t id)
{
    uint32_t low = (uint32_t)id;
    if (low == 0 || low > loop->ntimers)
        return;
    uint32_t slot = low - 1;
    struct ev_timer *t = &loop->timers[slot];
    if (!t->armed || t->gen != (uint32_t)(id >> 32))
        return;
    heap_remove(loop, t->heap_idx);
    timer_release(loop, slot);
}

/* Fires every timer due at loop->now that existed before this pass began, so a
 * callback re-adding a zero-delay timer cannot starve the loop. */
static void run_timers(struct ev_loop *loop)
{
    uint64_t seq_limit = loop->timer_seq;
    while (loop->heap_len && !loop->stop) {
        uint32_t slot = loop->heap[0];
        struct ev_timer *t = &loop->timers[slot];
        assert(t->armed && t->heap_idx == 0);
        if (t->deadline > loop->now || t->seq >= seq_limit)
            break;
        ev_cb cb = t->cb;
        void *data = t->data;
        heap_remove(loop, 0);
        timer_release(loop, slot);
        cb(loop, data);
    }
}

/* ---------- deferred ---------- */

int ev_defer(struct ev_loop *loop, ev_cb cb, void *data)
{
    if (!cb)
        return -EINVAL;
    if (loop->defer_len == loop->defer_cap) {
        size_t n = loop->defer_cap ? loop->defer_cap * 2 : 16;
        loop->defer = xreallocarray(loop->defer, n, sizeof *loop->defer);
        loop->defer_cap = n;
    }
    loop->defer[loop->defer_len++] = (struct ev_deferred){cb, data};
    return 0;
}

/* Runs the callbacks queued so far; ones they queue wait for the next iteration,
 * which then does not block. */
static void run_deferred(struct ev_loop *loop)
{
    if (!loop->defer_len)
        return;
    struct ev_deferred *run = loop->defer;
    size_t n = loop->defer_len, run_cap = loop->defer_cap;
    loop->defer = loop->defer_run;
    loop->defer_cap = loop->defer_run_cap;
    loop->defer_len = 0;
    loop->defer_run = run;
    loop->defer_run_cap = run_cap;
    for (size_t i = 0; i < n; i++)
        run[i].cb(loop, run[i].data);
}

/* ---------- async wake-ups ---------- */

struct ev_async {
    struct ev_loop *loop;
    int efd;
    ev_cb cb;
    void *data;
};

static void async_ready(struct ev_loop *loop, int fd, uint32_t events, void *data)
{
    struct ev_async *a = data;
    uint64_t n;
    /* Reading resets the counter first, so a send that lands while cb runs wakes the
     * loop again rather than being lost. EAGAIN: a spurious wake-up, nothing sent. */
    if (read(fd, &n, sizeof n) != (ssize_t)sizeof n)
        return;
    a->cb(loop, a->data);
}

int ev_async_new(struct ev_loop *loop, ev_cb cb, void *data, struct ev_async **out)
{
    if (!cb)
        return -EINVAL;
    struct ev_async *a = xcalloc(1, sizeof *a);
    a->loop = loop;
    a->cb = cb;
    a->data = data;
    a->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (a->efd < 0) {
        int e = errno;
        free(a);
        return -e;
    }
    int r = ev_io_add(loop, a->efd, EV_READ, async_ready, a);
    if (r < 0) {
        close(a->efd);
        free(a);
        return r;
    }
    *out = a;
    return 0;
}

void ev_async_send(struct ev_async *a)
{
    uint64_t one = 1;
    /* Only fails with EAGAIN when the counter is at its maximum, and then a wake-up is
     * pending already. */
    ssize_t w = write(a->efd, &one, sizeof one);
    (void)w;
}

void ev_async_free(struct ev_async *a)
{
    if (!a)
        return;
    ev_io_del(a->loop, a->efd);
    close(a->efd);
    free(a);
}

/* ---------- run ---------- */

static int next_timeout(struct ev_loop *loop)
{
    if (loop->defer_len)
        return 0;
    if (!loop->heap_len)
        return -1;
    uint64_t d = loop->timers[loop->heap[0]].deadline;
    uint64_t now = mono_ms();
    if (d <= now)
        return 0;
    uint64_t wait = d - now;
    return wait > 1000000000u ? 1000000000 : (int)wait;
}

static void dispatch_io(struct ev_loop *loop, int n)
{
    for (int i = 0; i < n && !loop->stop; i++) {
        uint64_t u = loop->batch[i].data.u64;
        int fd = (int)(uint32_t)u;
        struct ev_watch *w = watch_get(loop, fd);
        if (!w || w->gen != (uint32_t)(u >> 32))
            continue;
        uint32_t e = loop->batch[i].events, got = 0;
        if (e & (EPOLLIN | EPOLLHUP | EPOLLRDHUP))
            got |= EV_READ;
        if (e & EPOLLOUT)
            got |= EV_WRITE;
        got &= w->events;
        if (e & (EPOLLERR | EPOLLHUP))
            got |= EV_ERROR;
        if (got)
            w->cb(loop, fd, got, w->data);
    }
}

int ev_run(struct ev_loop *loop)
{
    if (loop->virt)
        return ev_run_until(loop, UINT64_MAX);
    loop->stop = false;
    while (!loop->stop) {
        int n = epoll_wait(loop->epfd, loop->batch, (int)loop->batch_cap, next_timeout(loop));
        if (n < 0) {
            if (errno != EINTR)
                return -errno;
            n = 0;
        }
        loop->now = mono_ms();
        dispatch_io(loop, n);
        assert(n >= 0 && (size_t)n <= loop->batch_cap);
        if ((size_t)n == loop->batch_cap && loop->batch_cap < EV_BATCH_MAX) {
            loop->batch = xreallocarray(loop->batch, loop->batch_cap * 2, sizeof *loop->batch);
            loop->batch_cap *= 2;
        }
        if (!loop->stop)
            run_timers(loop);
        if (!loop->stop)
            run_deferred(loop);
    }
    return 0;
}

/* ---------- virtual time ---------- */

/* One pass over ready fds without waiting; growing the batch as ev_run does. */
static int poll_io_now(struct ev_loop *loop)
{
    int n = epoll_wait(loop->epfd, loop->batch, (int)loop->batch_cap, 0);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    dispatch_io(loop, n);
    if ((size_t)n == loop->batch_cap && loop->batch_cap < EV_BATCH_MAX) {
        loop->batch = xreallocarray(loop->batch, loop->batch_cap * 2, sizeof *loop->batch);
        loop->batch_cap *= 2;
    }
    return 0;
}

int ev_run_until(struct ev_loop *loop, uint64_t t_ms)
{
    if (!loop->virt)
        return -EINVAL;
    loop->stop = false;
    while (!loop->stop) {
        if (loop->nactive) {
            int r = poll_io_now(loop);
            if (r < 0)
                return r;
            if (loop->stop)
                break;
        }
        /* Nothing ready now: jump to the next deadline, or stop at t_ms. Deferred work
         * (and ready fds, handled above) runs at the current time first. */
        if (!loop->defer_len) {
            if (!loop->heap_len) {
                if (t_ms != UINT64_MAX && t_ms > loop->now)
                    loop->now = t_ms;
                break;
            }
            uint64_t d = loop->timers[loop->heap[0]].deadline;
            if (d > t_ms) {
                if (t_ms > loop->now)
                    loop->now = t_ms;
                break;
            }
            if (d > loop->now)
                loop->now = d;
        }
        run_timers(loop);
        if (!loop->stop)
            run_deferred(loop);
    }
    return 0;
}
