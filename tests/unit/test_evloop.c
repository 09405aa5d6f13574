/* Unit tests for src/evloop: timers (order, cancel), fd watches (deletion from inside
 * callbacks), deferred callbacks. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/util.h"
#include "evloop/evloop.h"
#include "unit.h"

struct order {
    struct ev_loop *loop;
    int seq[64];
    int n;
    int stop_at;
};

struct tag {
    struct order *o;
    int id;
};

static void record(struct ev_loop *loop, void *data)
{
    struct tag *t = data;
    t->o->seq[t->o->n++] = t->id;
    if (t->o->n == t->o->stop_at)
        ev_stop(loop);
}

UNIT_TEST(test_timer_order)
{
    struct ev_loop *loop;
    CHECK_EQ_INT(ev_loop_new(&loop), 0);
    struct order o = {.loop = loop, .stop_at = 5};
    struct tag t[5];
    uint64_t delays[5] = {30, 10, 20, 10, 0};
    for (int i = 0; i < 5; i++) {
        t[i] = (struct tag){&o, i};
        CHECK(ev_timer_add(loop, delays[i], record, &t[i]) > 0);
    }
    uint64_t start = mono_ms();
    CHECK_EQ_INT(ev_run(loop), 0);
    CHECK(mono_ms() - start >= 29);
    /* Equal deadlines fire in creation order. */
    int want[5] = {4, 1, 3, 2, 0};
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(o.seq[i], want[i]);
    ev_loop_free(loop);
}

struct cancel_ctx {
    struct ev_loop *loop;
    uint64_t victim;
    int fired;
};

static void victim_cb(struct ev_loop *loop, void *data)
{
    struct cancel_ctx *c = data;
    c->fired++;
}

static void canceller_cb(struct ev_loop *loop, void *data)
{
    struct cancel_ctx *c = data;
    ev_timer_cancel(loop, c->victim); /* due in the same pass, but cancelled */
    ev_timer_cancel(loop, c->victim); /* twice is a no-op */
}

static void stop_cb(struct ev_loop *loop, void *data)
{
    ev_stop(loop);
}

UNIT_TEST(test_timer_cancel)
{
    struct ev_loop *loop;
    CHECK_EQ_INT(ev_loop_new(&loop), 0);
    struct cancel_ctx c = {.loop = loop};
    /* Cancel before firing. */
    uint64_t id = ev_timer_add(loop, 5, victim_cb, &c);
    ev_timer_cancel(loop, id);
    /* Cancel from a callback of the same pass. */
    ev_timer_add(loop, 10, canceller_cb, &c);
    c.victim = ev_timer_add(loop, 10, victim_cb, &c);
    ev_timer_add(loop, 30, stop_cb, NULL);
    CHECK_EQ_INT(ev_run(loop), 0);
    CHECK_EQ_INT(c.fired, 0);
    /* Cancelling fired / bogus ids is harmless, also after the slot is reused. */
    uint64_t a = ev_timer_add(loop, 0, victim_cb, &c);
    ev_timer_add(loop, 1, stop_cb, NULL);
    CHECK_EQ_INT(ev_run(loop), 0);
    CHECK_EQ_INT(c.fired, 1);
    uint64_t b = ev_timer_add(loop, 1, victim_cb, &c);
    CHECK(a != b);
    ev_timer_cancel(loop, a); /* stale id of a reused slot: b must still fire */
    ev_timer_cancel(loop, 0);
    ev_timer_cancel(loop, UINT64_MAX);
    ev_timer_add(loop, 5, stop_cb, NULL);
    CHECK_EQ_INT(ev_run(loop), 0);
    CHECK_EQ_INT(c.fired, 2);
    ev_loop_free(loop);
}

/* Many timers in random order, random cancels: the rest fire sorted by deadline. */
struct many {
    uint64_t last_deadline;
    int fired;
    bool bad;
    int remaining;
};

struct many_tag {
    struct many *m;
    uint64_t deadline;
    bool cancelled;
};

static void many_cb(struct ev_loop *loop, void *data)
{
    struct many_tag *t = data;
    if (t->cancelled || t->deadline < t->m->last_deadline)
        t->m->bad = true;
    t->m->last_deadline = t->deadline;
    t->m->fired++;
    if (--t->m->remaining == 0)
        ev_stop(loop);
}

UNIT_TEST(test_timer_heap_stress)
{
    struct ev_loop *loop;
    CHECK_EQ_INT(ev_loop_new(&loop), 0);
    enum { N = 2000 };
    static struct many_tag tags[N];
    static uint64_t ids[N];
    struct many m = {0};
    srand(7);
    uint64_t base = ev_now_ms(loop);
    for (int i = 0; i < N; i++) {
        uint64_t d = (uint64_t)(rand() % 40);
        tags[i] = (struct many_tag){&m, base + d, false};
        ids[i] = ev_timer_add(loop, d, many_cb, &tags[i]);
        CHECK(ids[i] > 0);
    }
    int live = N;
    for (int i = 0; i < N; i += 3) {
        tags[i].cancelled = true;
        ev_timer_cancel(loop, ids[i]);
        live--;
    }
    m.remaining = live;
    CHECK_EQ_INT(ev_run(loop), 0);
    CHECK(!m.bad);
    CHECK_EQ_INT(m.fired, live);
    ev_loop_free(loop);
}

/* A zero-delay timer re-adding itself must not starve I/O or the loop. */
struct readd {
    int count;
};

static void readd_cb(struct ev_loop *loop, void *data)
{
    struct readd *r = data;
    if (++r->count < 100)
        ev_timer_add(loop, 0, readd_cb, r);
    else
        ev_stop(loop);
}

UNIT_TEST(test_timer_readd_zero)
{
    struct ev_loop *loop;
    CHECK_EQ_INT(ev_loop_new(&loop), 0);
    struct readd r = {0};
    ev_timer_add(loop, 0, readd_cb, &r);
    CHECK_EQ_INT(ev_run(loop), 0);
    CHECK_EQ_INT(r.count, 100);
    ev_loop_free(loop);
}

/* ---------- io ---------- */

struct pipes {
    struct ev_loop *loop;
    int a[2], b[2];
    int a_calls, b_calls;
    bool del_other; /* a's callback deletes b's watch */
    bool del_self;
};

static void a_cb(struct ev_loop *loop, int fd, uint32_t events, void *data)
{
    struct pipes *p = data;
    char ch;
    CHECK_EQ_INT(read(fd, &ch, 1), 1);
    p->a_calls++;
    if (p->del_other)
        CHECK_EQ_INT(ev_io_del(loop, p->b[0]), 0);
    if (p->del_self)
        CHECK_EQ_INT(ev_io_del(loop, fd), 0);
}

static void b_cb(struct ev_loop *loop, int fd, uint32_t events, void *data)
{
    struct pipes *p = data;
    char ch;
    CHECK_EQ_INT(read(fd, &ch, 1), 1);
    p->b_calls++;
    if (p->del_other)
        CHECK_EQ_INT(ev_io_del(loop, p->a[0]), 0);
}

UNIT_TEST(test_io_delete_inside_callbacks)
{
    struct ev_loop *loop;
    CHECK_EQ_INT(ev_loop_new(&loop), 0);
    struct pipes p = {.loop = loop, .del_other = true};
    CHECK_EQ_INT(pipe2(p.a, O_CLOEXEC | O_NONBLOCK), 0);
    CHECK_EQ_INT(pipe2(p.b, O_CLOEXEC | O_NONBLOCK), 0);
    CHECK_EQ_INT(ev_io_add(loop, p.a[0], EV_READ, a_cb, &p), 0);
    CHECK_EQ_INT(ev_io_add(loop, p.b[0], EV_READ, b_cb, &p), 0);
    CHECK_EQ_INT(ev_io_add(loop, p.b[0], EV_READ, b_cb, &p), -EEXIST);
    CHECK_EQ_INT(write(p.a[1], "x", 1), 1);
    CHECK_EQ_INT(write(p.b[1], "x", 1), 1);
    ev_timer_add(loop, 30, stop_cb, NULL);
    CHECK_EQ_INT(ev_run(loop), 0);
    /* Both were ready in the same batch; whichever ran first deleted the other. */
    CHECK_EQ_INT(p.a_calls + p.b_calls, 1);
    int ra = ev_io_del(loop, p.a[0]), rb = ev_io_del(loop, p.b[0]);
    CHECK((ra == -ENOENT) != (rb == -ENOENT));

    /* Delete self, and a delete + re-add of the same fd within one batch. */
    p.del_other = false;
    p.del_self = true;
    p.a_calls = p.b_calls = 0;
    char tmp[2];
    CHECK(read(p.a[0], tmp, sizeof tmp) <= 1); /* the byte left if b ran first */
    CHECK_EQ_INT(write(p.a[1], "x", 1), 1);
    CHECK_EQ_INT(ev_io_add(loop, p.a[0], EV_READ, a_cb, &p), 0);
    ev_timer_add(loop, 30, stop_cb, NULL);
    CHECK_EQ_INT(ev_run(loop), 0);
    CHECK_EQ_INT(p.a_calls, 1);
    CHECK_EQ_INT(ev_io_mod(loop, p.a[0], EV_READ), -ENOENT);
    for (int i = 0; i < 2; i++) {
        close(p.a[i]);
        close(p.b[i]);
    }
    ev_loop_free(loop);
}

struct reuse {
    int fds[2];
    int old_calls, new_calls;
};

static void reuse_new_cb(struct ev_loop *loop, int fd, uint32_t events, void *data)
{
    struct reuse *r = data;
    r->new_calls++;
}

static void reuse_old_cb(struct ev_loop *loop, int fd, uint32_t events, void *data)
{
    struct reuse *r = data;
    r->old_calls++;
    /* Delete and re-add the same fd: a stale event of this batch must not reach the
     * new watch's callback with the old data. */
    ev_io_del(loop, fd);
    ev_io_add(loop, fd, 0, reuse_new_cb, r);
}

UNIT_TEST(test_io_readd_same_fd)
{
    struct ev_loop *loop;
    CHECK_EQ_INT(ev_loop_new(&loop), 0);
    struct reuse r = {0};
    CHECK_EQ_INT(pipe2(r.fds, O_CLOEXEC | O_NONBLOCK), 0);
    CHECK_EQ_INT(ev_io_add(loop, r.fds[0], EV_READ, reuse_old_cb, &r), 0);
    CHECK_EQ_INT(write(r.fds[1], "x", 1), 1);
    ev_timer_add(loop, 20, stop_cb, NULL);
    CHECK_EQ_INT(ev_run(loop), 0);
    CHECK_EQ_INT(r.old_calls, 1);
    CHECK_EQ_INT(r.new_calls, 0); /* no interest: no EV_READ delivered */
    CHECK_EQ_INT(ev_io_mod(loop, r.fds[0], EV_READ), 0);
    ev_timer_add(loop, 20, stop_cb, NULL);
    CHECK_EQ_INT(ev_run(loop), 0);
    CHECK(r.new_calls >= 1);
    ev_io_del(loop, r.fds[0]);
    close(r.fds[0]);
    close(r.fds[1]);
    ev_loop_free(loop);
}

struct wr {
    int calls;
    uint32_t events;
};

static void wr_cb(struct ev_loop *loop, int fd, uint32_t events, void *data)
{
    struct wr *w = data;
    w->calls++;
    w->events |= events;
    ev_io_mod(loop, fd, 0);
}

UNIT_TEST(test_io_write_and_hup)
{
    struct ev_loop *loop;
    CHECK_EQ_INT(ev_loop_new(&loop), 0);
    int fds[2];
    CHECK_EQ_INT(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
    struct wr w = {0};
    CHECK_EQ_INT(ev_io_add(loop, fds[1], EV_WRITE, wr_cb, &w), 0);
    ev_timer_add(loop, 20, stop_cb, NULL);
    CHECK_EQ_INT(ev_run(loop), 0);
    CHECK_EQ_INT(w.calls, 1);
    CHECK(w.events & EV_WRITE);
    ev_io_del(loop, fds[1]);
    /* Reader sees the writer's close as EV_READ (EOF) with EV_ERROR (HUP). */
    struct wr r = {0};
    CHECK_EQ_INT(ev_io_add(loop, fds[0], EV_READ, wr_cb, &r), 0);
    close(fds[1]);
    ev_timer_add(loop, 20, stop_cb, NULL);
    CHECK_EQ_INT(ev_run(loop), 0);
    CHECK(r.events & EV_READ);
    CHECK(r.events & EV_ERROR);
    ev_io_del(loop, fds[0]);
    close(fds[0]);
    ev_loop_free(loop);
}

/* ---------- defer and now ---------- */

struct dctx {
    int order[16];
    int n;
};

static void d2(struct ev_loop *loop, void *data)
{
    struct dctx *d = data;
    d->order[d->n++] = 2;
    ev_stop(loop);
}

static void d1(struct ev_loop *loop, void *data)
{
    struct dctx *d = data;
    d->order[d->n++] = 1;
    ev_defer(loop, d2, d); /* runs in the next iteration, which does not block */
}

static void t_defer(struct ev_loop *loop, void *data)
{
    struct dctx *d = data;
    d->order[d->n++] = 0;
    ev_defer(loop, d1, d);
}

UNIT_TEST(test_defer)
{
    struct ev_loop *loop;
    CHECK_EQ_INT(ev_loop_new(&loop), 0);
    struct dctx d = {0};
    ev_timer_add(loop, 1, t_defer, &d);
    uint64_t guard = ev_timer_add(loop, 5000, stop_cb, NULL);
    uint64_t start = mono_ms();
    CHECK_EQ_INT(ev_run(loop), 0);
    CHECK(mono_ms() - start < 1000);
    CHECK_EQ_INT(d.n, 3);
    CHECK_EQ_INT(d.order[0], 0);
    CHECK_EQ_INT(d.order[1], 1);
    CHECK_EQ_INT(d.order[2], 2);
    ev_timer_cancel(loop, guard);
    /* Deferred before ev_run: runs in the first iteration. */
    d.n = 0;
    ev_defer(loop, d2, &d);
    CHECK_EQ_INT(ev_run(loop), 0);
    CHECK_EQ_INT(d.n, 1);
    ev_loop_free(loop);
}

static void now_cb(struct ev_loop *loop, void *data)
{
    uint64_t *out = data;
    uint64_t a = ev_now_ms(loop);
    usleep(20000);
    out[0] = a;
    out[1] = ev_now_ms(loop); /* cached: unchanged within the iteration */
    ev_stop(loop);
}

UNIT_TEST(test_now_cached)
{
    struct ev_loop *loop;
    CHECK_EQ_INT(ev_loop_new(&loop), 0);
    uint64_t v[2];
    ev_timer_add(loop, 0, now_cb, v);
    CHECK_EQ_INT(ev_run(loop), 0);
    CHECK_EQ_INT(v[0], v[1]);
    CHECK(ev_now_ms(loop) <= mono_ms());
    ev_loop_free(loop);
}

/* Another thread sends wake-ups while the loop runs; the callback runs on the loop's
 * thread, sends coalesce, and the last one is never lost. */
struct actx {
    struct ev_async *a;
    pthread_t loop_thread;
    int calls;
    bool wrong_thread;
    int sent;            /* written by the sender before each send */
    int seen;            /* the highest sent value a callback observed */
};

static void async_cb(struct ev_loop *loop, void *data)
{
    struct actx *x = data;
    x->calls++;
    if (!pthread_equal(pthread_self(), x->loop_thread))
        x->wrong_thread = true;
    x->seen = __atomic_load_n(&x->sent, __ATOMIC_ACQUIRE);
    if (x->seen == 1000)
        ev_stop(loop);
}

static void *async_sender(void *data)
{
    struct actx *x = data;
    for (int i = 1; i <= 1000; i++) {
        __atomic_store_n(&x->sent, i, __ATOMIC_RELEASE);
        ev_async_send(x->a);
        if (i % 100 == 0)
            usleep(1000);
    }
    return NULL;
}

UNIT_TEST(test_async_from_another_thread)
{
    struct ev_loop *loop;
    CHECK_EQ_INT(ev_loop_new(&loop), 0);
    struct actx x = {.loop_thread = pthread_self()};
    CHECK_EQ_INT(ev_async_new(loop, NULL, &x, &x.a), -EINVAL);
    CHECK_EQ_INT(ev_async_new(loop, async_cb, &x, &x.a), 0);
    uint64_t guard = ev_timer_add(loop, 10000, stop_cb, NULL);
    pthread_t t;
    CHECK_EQ_INT(pthread_create(&t, NULL, async_sender, &x), 0);
    CHECK_EQ_INT(ev_run(loop), 0);
    pthread_join(t, NULL);
    ev_timer_cancel(loop, guard);
    CHECK_EQ_INT(x.seen, 1000);
    CHECK(!x.wrong_thread);
    CHECK(x.calls >= 1 && x.calls <= 1000);
    /* Sends before the loop runs again coalesce into one call. */
    int before = x.calls;
    ev_async_send(x.a);
    ev_async_send(x.a);
    ev_async_send(x.a);
    ev_timer_add(loop, 50, stop_cb, NULL);
    CHECK_EQ_INT(ev_run(loop), 0);
    CHECK_EQ_INT(x.calls, before + 1);
    ev_async_free(x.a);
    ev_loop_free(loop);
}

/* ---------- virtual time ---------- */

struct vrec {
    struct ev_loop *loop;
    uint64_t at[16];
    int n;
};

static void vrec_cb(struct ev_loop *loop, void *data)
{
    struct vrec *r = data;
    if (r->n < 16)
        r->at[r->n++] = ev_now_ms(loop);
}

/* A timer re-arming itself every 1000 ms, like control's tick. */
static void vtick_cb(struct ev_loop *loop, void *data)
{
    vrec_cb(loop, data);
    ev_timer_add(loop, 1000, vtick_cb, data);
}

static void vdefer_then_timer(struct ev_loop *loop, void *data)
{
    vrec_cb(loop, data);
    ev_timer_add(loop, 5, vrec_cb, data);
}

UNIT_TEST(test_virtual_jumps_to_deadlines)
{
    struct ev_loop *loop;
    CHECK_EQ_INT(ev_loop_new_virtual(&loop), 0);
    CHECK(ev_loop_is_virtual(loop));
    CHECK_EQ_INT(ev_now_ms(loop), 0);
    struct vrec r = {.loop = loop};
    /* A day of virtual time passes without sleeping. */
    ev_timer_add(loop, 86400000, vrec_cb, &r);
    ev_timer_add(loop, 30, vrec_cb, &r);
    ev_timer_add(loop, 30, vrec_cb, &r);
    ev_timer_add(loop, 7, vrec_cb, &r);
    uint64_t t0 = mono_ms();
    CHECK_EQ_INT(ev_run_until(loop, 100), 0);
    CHECK_EQ_INT(r.n, 3);
    CHECK_EQ_INT(r.at[0], 7);
    CHECK_EQ_INT(r.at[1], 30);
    CHECK_EQ_INT(r.at[2], 30);
    CHECK_EQ_INT(ev_now_ms(loop), 100);
    CHECK_EQ_INT(ev_now_ns(loop), 100000000ull);
    /* Due exactly at t: fires. */
    CHECK_EQ_INT(ev_run_until(loop, 86400000), 0);
    CHECK_EQ_INT(r.n, 4);
    CHECK_EQ_INT(r.at[3], 86400000);
    CHECK(mono_ms() - t0 < 1000);
    /* Nothing left: the clock goes to t; a t in the past does not move it back. */
    CHECK_EQ_INT(ev_run_until(loop, 90000000), 0);
    CHECK_EQ_INT(ev_now_ms(loop), 90000000);
    CHECK_EQ_INT(ev_run_until(loop, 5), 0);
    CHECK_EQ_INT(ev_now_ms(loop), 90000000);
    /* ev_run on a real loop is refused. */
    struct ev_loop *real;
    CHECK_EQ_INT(ev_loop_new(&real), 0);
    CHECK_EQ_INT(ev_run_until(real, 10), -EINVAL);
    CHECK(!ev_loop_is_virtual(real));
    ev_loop_free(real);
    ev_loop_free(loop);
}

UNIT_TEST(test_virtual_periodic_and_deferred)
{
    struct ev_loop *loop;
    CHECK_EQ_INT(ev_loop_new_virtual(&loop), 0);
    struct vrec tick = {.loop = loop}, d = {.loop = loop};
    ev_timer_add(loop, 1000, vtick_cb, &tick);
    /* Deferred work runs at the current virtual time, before the clock moves. */
    ev_defer(loop, vdefer_then_timer, &d);
    CHECK_EQ_INT(ev_run_until(loop, 3500), 0);
    CHECK_EQ_INT(d.n, 2);
    CHECK_EQ_INT(d.at[0], 0);
    CHECK_EQ_INT(d.at[1], 5);
    CHECK_EQ_INT(tick.n, 3);
    CHECK_EQ_INT(tick.at[2], 3000);
    CHECK_EQ_INT(ev_now_ms(loop), 3500);
    /* A periodic timer never lets ev_run_until(UINT64_MAX) end on its own: ev_stop does. */
    ev_timer_add(loop, 10000, stop_cb, NULL);
    CHECK_EQ_INT(ev_run(loop), 0);
    CHECK_EQ_INT(ev_now_ms(loop), 13500);
    CHECK_EQ_INT(tick.n, 13);
    ev_loop_free(loop);
}

/* With nothing scheduled, ev_run on a virtual loop returns instead of waiting forever. */
UNIT_TEST(test_virtual_run_ends_when_idle)
{
    struct ev_loop *loop;
    CHECK_EQ_INT(ev_loop_new_virtual(&loop), 0);
    struct vrec r = {.loop = loop};
    ev_timer_add(loop, 42, vrec_cb, &r);
    CHECK_EQ_INT(ev_run(loop), 0);
    CHECK_EQ_INT(r.n, 1);
    CHECK_EQ_INT(ev_now_ms(loop), 42);
    ev_loop_free(loop);
}

int main(void)
{
    UNIT_RUN(test_timer_order);
    UNIT_RUN(test_timer_cancel);
    UNIT_RUN(test_timer_heap_stress);
    UNIT_RUN(test_timer_readd_zero);
    UNIT_RUN(test_io_delete_inside_callbacks);
    UNIT_RUN(test_io_readd_same_fd);
    UNIT_RUN(test_io_write_and_hup);
    UNIT_RUN(test_defer);
    UNIT_RUN(test_now_cached);
    UNIT_RUN(test_async_from_another_thread);
    UNIT_RUN(test_virtual_jumps_to_deadlines);
    UNIT_RUN(test_virtual_periodic_and_deferred);
    UNIT_RUN(test_virtual_run_ends_when_idle);
    UNIT_MAIN_END();
}
