/* Calls and their lifecycle. A call is pending (in its version's queue, or waiting on
 * a retry timer), running (in a container slot) or final. Whoever cares about the end
 * of a call (a waiter, a map stream) observes it: ctl_call_finish tells the observers
 * and never reaches into them. Asking for a scheduling pass goes through c->kick.
 *
 * Allowed state changes, checked by call_set_state:
 *   pending -> running (dispatch) -> pending (requeue, failed attempt to be retried)
 *   pending | running -> succeeded | failed | timed_out | cancelled (final, once)
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "control/internal.h"

/* Finished calls kept in memory for result lookups (older ones are read back from the
 * store): 20,000 small results is a few MB, and covers a map of that many inputs whose
 * client reads its results after they all finished. */
#define CTL_FINISHED_KEEP 20000
/* Stored finished calls older than this are deleted on the trim tick (docs/API.md). */
#define CTL_CALLS_MAX_AGE_S (7 * 86400.0)

bool ctl_call_state_is_final(enum ctl_call_state s)
{
    return s >= CTL_CALL_SUCCEEDED;
}

static void call_set_state(struct ctl_call *call, enum ctl_call_state to)
{
    assert(!ctl_call_state_is_final(call->state));
    assert(to != CTL_CALL_RUNNING || call->state == CTL_CALL_PENDING);
    call->state = to;
}

static enum ctl_call_state state_from_name(const char *s)
{
    static const char *names[] = {"pending", "running", "succeeded", "failed", "timed_out", "cancelled"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++)
        if (!strcmp(s, names[i]))
            return (enum ctl_call_state)i;
    return CTL_CALL_FAILED;
}

static bool call_eq(const struct hmap_node *n, const void *key)
{
    return !strcmp(((const struct ctl_call *)n)->id, key);
}

struct ctl_call *ctl_call_find(struct ctl *c, const char *id)
{
    return (struct ctl_call *)hmap_find(&c->calls, hmap_hash_str(id), call_eq, id);
}

void ctl_call_free(struct ctl_call *call)
{
    if (call->items)
        ctl_items_free(call->items);
    free(call->input);
    free(call->output);
    free(call->error_message);
    free(call->timeline_text);
    buf_free(&call->more_held);
    free(call);
}

static struct ctl_call *call_alloc(struct ctl *c)
{
    struct ctl_call *call = xcalloc(1, sizeof *call);
    call->ctl = c;
    list_init(&call->qlink);
    list_init(&call->flink);
    list_init(&call->observers);
    call->tl.first_output_us = -1;
    call->tl.ended_us = -1;
    return call;
}

struct ctl_call *ctl_call_new(struct ctl *c, struct ctl_fver *fv, const void *input, size_t len, bool durable)
{
    struct ctl_call *call = call_alloc(c);
    call->input = xmemdup(input, len);
    call->input_len = len;
    memcpy(call->id, "fc-", 3);
    random_id(call->id + 3, 20);
    snprintf(call->app, sizeof call->app, "%s", fv->fn->app->name);
    snprintf(call->function, sizeof call->function, "%s", fv->fn->name);
    call->version = fv->version;
    call->fv = fv;
    call->durable = durable;
    call->state = CTL_CALL_PENDING;
    call->created_at = wall_s();
    call->tl.submit_ns = mono_ns();
    hmap_insert(&c->calls, &call->node, hmap_hash_str(call->id));
    return call;
}

void ctl_call_view_fill(struct ctl_call *call, struct ctl_call_view *v)
{
    memset(v, 0, sizeof *v);
    v->id = call->id;
    v->app = ctl_local_name(call->app);
    v->function = call->function;
    v->version = call->version;
    v->state = call->state;
    v->output = call->output;
    v->output_len = call->output_len;
    v->error_code = call->error_code[0] ? call->error_code : NULL;
    v->error_message = call->error_message;
    v->attempts = call->attempts;
    v->created_at = call->created_at;
    v->started_at = call->started_at;
    v->finished_at = call->finished_at;
}

/* ---------- timeline ---------- */

int64_t ctl_call_tl_now(const struct ctl_call *call)
{
    return (int64_t)(mono_ns() - call->tl.submit_ns) / 1000;
}

/* t (mono_ns) from the call's submit, in µs: negative for a time before it. */
static int64_t tl_offset_us(const struct ctl_call *call, uint64_t t)
{
    return ((int64_t)t - (int64_t)call->tl.submit_ns) / 1000;
}

void ctl_call_output_seen(struct ctl_call *call)
{
    if (call->tl.first_output_us < 0)
        call->tl.first_output_us = ctl_call_tl_now(call);
}

/* An attempt begins on container k (before k counts it among its inputs taken). */
static void tl_attempt_begin(struct ctl_call *call, const struct ctl_ctr *k)
{
    struct ctl_tl *tl = &call->tl;
    struct ctl_tl_attempt *a = &tl->att[tl->nattempts < CTL_TL_ATTEMPTS ? tl->nattempts : CTL_TL_ATTEMPTS - 1];
    tl->nattempts++;
    memset(a, 0, sizeof *a);
    a->dispatched_us = ctl_call_tl_now(call);
    snprintf(a->ctr, sizeof a->ctr, "%s", k->id);
    a->cold = k->inputs_taken == 0;
    a->snapshot = k->from_snapshot;
    if (a->cold && !tl->has_start) {
        tl->has_start = true;
        tl->ctr_started_us = tl_offset_us(call, k->start_ns);
        tl->ctr_ready_us = tl_offset_us(call, k->ready_ns);
        memcpy(tl->breakdown_us, k->breakdown_us, sizeof tl->breakdown_us);
    }
}

/* The running attempt ends at now_us. */
static void tl_attempt_end(struct ctl_call *call, int64_t now_us)
{
    struct ctl_tl *tl = &call->tl;
    struct ctl_tl_attempt *a = &tl->att[tl->nattempts <= CTL_TL_ATTEMPTS ? tl->nattempts - 1 : CTL_TL_ATTEMPTS - 1];
    a->ended_us = now_us;
    tl->running_us += now_us - a->dispatched_us;
}

/* snprintf into buf at *off, never past cap (a truncated text is not stored: see the
 * caller). */
static void tl_put(char *buf, size_t cap, size_t *off, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void tl_put(char *buf, size_t cap, size_t *off, const char *fmt, ...)
{
    if (*off >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *off, cap - *off, fmt, ap);
    va_end(ap);
    *off += n > 0 ? (size_t)n : 0;
}

int ctl_call_timeline_text(const struct ctl_call *call, char *buf, size_t cap)
{
    const struct ctl_tl *tl = &call->tl;
    size_t off = 0;
    bool ended = tl->ended_us >= 0;
    int64_t elapsed = ended ? tl->ended_us : ctl_call_tl_now(call);
    int64_t running = tl->running_us;
    size_t listed = tl->nattempts < CTL_TL_ATTEMPTS ? tl->nattempts : CTL_TL_ATTEMPTS;
    const struct ctl_tl_attempt *cur = listed ? &tl->att[listed - 1] : NULL;
    if (!ended && call->state == CTL_CALL_RUNNING && cur)
        running += elapsed - cur->dispatched_us; /* the running attempt so far */
    tl_put(buf, cap, &off, "{\"submitted_at\":%.6f,\"elapsed_us\":%" PRId64 ",\"ended_us\":", call->created_at, elapsed);
    tl_put(buf, cap, &off, ended ? "%" PRId64 : "null", tl->ended_us);
    tl_put(buf, cap, &off, ",\"queued_us\":%" PRId64 ",\"running_us\":%" PRId64 ",\"first_output_us\":",
           elapsed - running, running);
    tl_put(buf, cap, &off, tl->first_output_us >= 0 ? "%" PRId64 : "null", tl->first_output_us);
    tl_put(buf, cap, &off, ",\"attempts_total\":%" PRIu32 ",\"attempts\":[", tl->nattempts);
    for (size_t i = 0; i < listed; i++) {
        const struct ctl_tl_attempt *a = &tl->att[i];
        bool done = i + 1 < listed || call->state != CTL_CALL_RUNNING;
        tl_put(buf, cap, &off, "%s{\"dispatched_us\":%" PRId64 ",\"ended_us\":", i ? "," : "", a->dispatched_us);
        tl_put(buf, cap, &off, done ? "%" PRId64 : "null", a->ended_us);
        tl_put(buf, cap, &off, ",\"container\":{\"id\":\"%s\",\"cold\":%s,\"snapshot\":%s}}", a->ctr,
               a->cold ? "true" : "false", a->snapshot ? "true" : "false");
    }
    tl_put(buf, cap, &off, "],\"container_start\":");
    if (tl->has_start) {
        const uint32_t *b = tl->breakdown_us;
        tl_put(buf, cap, &off,
               "{\"started_us\":%" PRId64 ",\"ready_us\":%" PRId64 ",\"start_breakdown_us\":{\"cgroups\":%" PRIu32
               ",\"namespaces\":%" PRIu32 ",\"network\":%" PRIu32 ",\"mounts\":%" PRIu32
               ",\"user_namespace\":%" PRIu32 ",\"seccomp_caps\":%" PRIu32 ",\"exec\":%" PRIu32 "}}}",
               tl->ctr_started_us, tl->ctr_ready_us, b[0], b[1], b[2], b[3], b[4], b[5], b[6]);
    } else {
        tl_put(buf, cap, &off, "null}");
    }
    return off < cap ? 0 : -ENOSPC;
}

const char *ctl_call_timeline(struct ctl *c, const struct ctl_call *call)
{
    if (call->timeline_text)
        return call->timeline_text;
    if (!call->tl.submit_ns || ctl_call_timeline_text(call, c->timeline_buf, sizeof c->timeline_buf) < 0)
        return NULL;
    return c->timeline_buf;
}

void ctl_call_observe(struct ctl_call *call, struct ctl_call_obs *o)
{
    list_push_back(&call->observers, &o->link);
}

void ctl_call_unobserve(struct ctl *c, struct ctl_call_obs *o)
{
    list_remove(&o->link);
    ctl_calls_evict(c);
}

/* ---------- queues ---------- */

void ctl_queue_push(struct ctl_fver *fv, struct ctl_call *call, bool front)
{
    assert(!call->queued && list_unlinked(&call->qlink));
    call->queued = true;
    call_set_state(call, CTL_CALL_PENDING);
    if (front)
        list_push_front(&fv->queue, &call->qlink);
    else
        list_push_back(&fv->queue, &call->qlink);
    fv->queued++;
    ctl_sched_mark(fv);
    evict_update(fv);
}

static void queue_unlink(struct ctl_fver *fv, struct ctl_call *call)
{
    assert(call->queued && fv->queued > 0);
    list_remove(&call->qlink);
    call->queued = false;
    fv->queued--;
    evict_update(fv);
}

/* A queued call leaves without being dispatched (finished or failed): what the
 * version's idle containers may do changes (internal.h, scheduling sets). */
static void queue_remove(struct ctl_fver *fv, struct ctl_call *call)
{
    queue_unlink(fv, call);
    ctl_sched_mark(fv);
}

/* Only dispatch pops, inside the version's own visit: no mark. */
struct ctl_call *ctl_queue_pop(struct ctl_fver *fv)
{
    struct ctl_call *call = list_first_entry(&fv->queue, struct ctl_call, qlink);
    if (call)
        queue_unlink(fv, call);
    return call;
}

static void store_pending(struct ctl *c, struct ctl_call *call, double retry_at, const char *what)
{
    if (!call->durable)
        return;
    struct gerr err;
    if (store_call_set_pending(c->store, call->id, call->attempts, retry_at, &err) < 0)
        log_error("control", "%s %s: %s", what, call->id, err.msg);
}

void ctl_call_start(struct ctl *c, struct ctl_call *call, struct ctl_ctr *k)
{
    call->input_id = c->next_input_id++;
    call->attempts++;
    call_set_state(call, CTL_CALL_RUNNING);
    call->started_at = wall_s();
    tl_attempt_begin(call, k);
    call->ctr = k;
    call->started_in_company = ctl_fn_running(call->fv->fn) > 0;
    call->start_no = ++call->fv->fn->call_starts;
    call->fv->running++;
    metrics_call_started(call->fv->fn, call);
    if (call->durable) {
        struct gerr err;
        if (store_call_set_running(c->store, call->id, call->attempts, call->started_at, &err) < 0)
            log_error("control", "store %s running: %s", call->id, err.msg);
    }
}

/* Leaves the running state (the slot was already given back by the scheduler); its
 * attempt ends at now_us (ctl_call_tl_now). */
static void call_stop_running(struct ctl *c, struct ctl_call *call, int64_t now_us)
{
    if (call->state == CTL_CALL_RUNNING) {
        assert(call->fv && call->fv->running > 0);
        tl_attempt_end(call, now_us);
        call->fv->running--;
        call->state = CTL_CALL_PENDING;
    }
    if (call->timeout_timer) {
        ev_timer_cancel(c->loop, call->timeout_timer);
        call->timeout_timer = 0;
    }
    call->ctr = NULL;
}

/* Whether the call is a generator call whose consumer may have seen items (running it
 * again would yield them again), or one whose container was sent bytes of its input
 * stream (stream.c: they are not kept, so its next container would miss them): such a
 * call is not retried nor requeued. */
static bool call_streamed(const struct ctl_call *call)
{
    return (call->items && call->items->total > 0) || call->more_sent > 0;
}

void ctl_call_requeue(struct ctl *c, struct ctl_call *call, bool front)
{
    if (call_streamed(call)) {
        ctl_call_finish(c, call, CTL_CALL_FAILED, NULL, 0, "interrupted",
                        call->more_sent ? "the call's container stopped after it had taken part of its input "
                                          "stream; a call that did is not run again"
                                        : "the generator's container stopped after it had yielded items; a "
                                          "generator that yielded is not run again");
        return;
    }
    call_stop_running(c, call, ctl_call_tl_now(call));
    ctl_queue_push(call->fv, call, front);
    store_pending(c, call, 0, "requeue");
    c->kick(c);
}

void ctl_call_park(struct ctl *c, struct ctl_call *call)
{
    call_stop_running(c, call, ctl_call_tl_now(call));
    store_pending(c, call, 0, "park");
}

/* ---------- final states ---------- */

void ctl_calls_evict(struct ctl *c)
{
    while (c->fin_count > CTL_FINISHED_KEEP) {
        struct ctl_call *old = list_first_entry(&c->finished, struct ctl_call, flink);
        /* Unread generator items keep their call until read or dropped (items.c). */
        if (!list_empty(&old->observers) || (old->items && old->items->head))
            break;
        list_remove(&old->flink);
        c->fin_count--;
        hmap_remove(&c->calls, &old->node);
        ctl_call_free(old);
    }
}

void ctl_fn_work_changed(struct ctl *c, struct ctl_fn *fn)
{
    uint64_t now = ev_now_ms(c->loop), work = ctl_fn_work(fn);
    ka_set_level(&fn->ka, ctl_fn_level(fn, work), now);
    kpa_observe(&fn->kpa, work > UINT32_MAX ? UINT32_MAX : (uint32_t)work, now);
    c->keepalive_kick(c, fn);
}

static void finished_push(struct ctl *c, struct ctl_call *call)
{
    list_push_back(&c->finished, &call->flink);
    c->fin_count++;
}

void ctl_call_finish(struct ctl *c, struct ctl_call *call, enum ctl_call_state state, const void *out, size_t out_len,
                     const char *code, const char *msg)
{
    assert(ctl_call_state_is_final(state));
    struct ctl_fver *fv = call->fv;
    assert(fv);
    if (call->queued)
        queue_remove(fv, call);
    if (call->retry_timer) {
        ev_timer_cancel(c->loop, call->retry_timer);
        call->retry_timer = 0;
        assert(fv->retry_waiting > 0);
        fv->retry_waiting--;
    }
    int64_t now_us = ctl_call_tl_now(call);
    call_stop_running(c, call, now_us);
    call_set_state(call, state);
    call->finished_at = wall_s();
    call->tl.ended_us = now_us;
    if (state == CTL_CALL_SUCCEEDED && call->tl.first_output_us < 0)
        call->tl.first_output_us = now_us;
    metrics_call_finished(fv->fn, call);
    if (out && out_len) {
        call->output = xmemdup(out, out_len);
        call->output_len = out_len;
    }
    snprintf(call->error_code, sizeof call->error_code, "%s", code ? code : "");
    free(call->error_message);
    call->error_message = msg ? xstrdup(msg) : NULL;
    free(call->input);
    call->input = NULL;
    buf_free(&call->more_held);
    call->more_held_off = 0;
    call->fv = NULL;
    if (call->items)
        ctl_items_ended(call->items);
    if (call->durable) {
        fv->fn->calls_dirty = true;
        struct gerr err;
        char tl[CTL_TIMELINE_MAX];
        bool tl_ok = ctl_call_timeline_text(call, tl, sizeof tl) == 0;
        if (store_call_finish(c->store, call->id, ctl_call_state_name(state), call->output, call->output_len, code,
                              msg, call->finished_at, tl_ok ? tl : NULL, &err) < 0)
            log_error("control", "store result of %s: %s", call->id, err.msg);
    }
    finished_push(c, call);
    ctl_fn_work_changed(c, fv->fn);
    list_for_each_safe(o, &call->observers, struct ctl_call_obs, link)
        o->on_final(o, call);
    ctl_fver_maybe_free(c, fv);
    ctl_calls_evict(c);
}

static void retry_fire(struct ev_loop *loop, void *data)
{
    struct ctl_call *call = data;
    struct ctl *c = call->ctl;
    (void)loop;
    call->retry_timer = 0;
    assert(call->fv->retry_waiting > 0);
    call->fv->retry_waiting--;
    ctl_queue_push(call->fv, call, false);
    store_pending(c, call, 0, "retry");
    c->kick(c);
}

void ctl_call_failed_attempt(struct ctl *c, struct ctl_call *call, enum ctl_call_state state, const char *code,
                             const char *msg)
{
    struct ctl_fver *fv = call->fv;
    if (call->queued)
        queue_remove(fv, call);
    const struct spec_function *s = &fv->spec;
    bool app_live = !fv->fn->app->stopped && !c->shutting_down;
    if (app_live && !call->no_retry && call->attempts <= s->max_retries && !call_streamed(call)) {
        call_stop_running(c, call, ctl_call_tl_now(call));
        double delay = s->initial_delay_s * pow(s->backoff_coefficient, (double)call->attempts - 1);
        if (delay > s->max_delay_s)
            delay = s->max_delay_s;
        if (delay < 0)
            delay = 0;
        log_info("control", "call %s attempt %u failed (%s: %s); retrying in %.2fs", call->id, call->attempts, code,
                 msg ? msg : "", delay);
        fv->retry_waiting++;
        call->retry_timer = ev_timer_add(c->loop, (uint64_t)(delay * 1000.0), retry_fire, call);
        store_pending(c, call, wall_s() + delay, "retry");
        return;
    }
    /* Its last attempt ends with it (ctl_call_finish stops it running at its end). */
    ctl_call_finish(c, call, state, NULL, 0, code, msg);
}

/* ---------- submit and lookup ---------- */

int ctl_call_store_new(struct ctl *c, const struct ctl_call *call, const char *map_id, int64_t map_index,
                       struct gerr *err)
{
    struct store_call sc = {0};
    snprintf(sc.id, sizeof sc.id, "%s", call->id);
    snprintf(sc.app, sizeof sc.app, "%s", call->app);
    snprintf(sc.function, sizeof sc.function, "%s", call->function);
    sc.version = call->version;
    snprintf(sc.state, sizeof sc.state, "pending");
    sc.input = call->input;
    sc.input_len = call->input_len;
    sc.created_at = call->created_at;
    snprintf(sc.map_id, sizeof sc.map_id, "%s", map_id ? map_id : "");
    sc.map_index = map_index;
    return store_call_insert(c->store, &sc, err);
}

static int submit(struct ctl *c, const char *app, const char *fn, const void *input, size_t len, bool durable,
                  bool generator, bool no_retry, char call_id_out[64], struct ctl_error *e)
{
    if (c->shutting_down) {
        ctl_err(e, CTL_E_SHUTTING_DOWN, "shutting_down", NULL, "gustd is shutting down; retry shortly");
        return -ESHUTDOWN;
    }
    if (len > c->cfg.max_payload) {
        ctl_err(e, CTL_E_TOO_LARGE, "payload_too_large", NULL, "input is %zu bytes; the limit is %zu", len,
                c->cfg.max_payload);
        return -E2BIG;
    }
    struct ctl_fn *f = ctl_find_fn(c, app, fn);
    if (!f || !f->latest) {
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", NULL, "function %s.%s not found; %s (gust ls lists functions)",
                app, fn, f && f->retired ? "the last deploy of its app removed it" : "deploy it first");
        return -ENOENT;
    }
    if (f->app->stopped) {
        ctl_err(e, CTL_E_CONFLICT, "conflict", NULL, "app %s is stopped; deploy it again to call it", app);
        return -ESHUTDOWN;
    }
    struct ctl_call *call = ctl_call_new(c, f->latest, input, len, durable);
    if (generator)
        call->items = ctl_items_new(c);
    call->no_retry = no_retry;
    if (durable) {
        struct gerr err;
        if (ctl_call_store_new(c, call, NULL, -1, &err) < 0) {
            hmap_remove(&c->calls, &call->node);
            ctl_call_free(call);
            ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "storing the call failed: %s", err.msg);
            return -EIO;
        }
    }
    f->calls_total++;
    ctl_queue_push(f->latest, call, false);
    ctl_fn_work_changed(c, f);
    snprintf(call_id_out, 64, "%s", call->id);
    c->kick(c);
    return 0;
}

int ctl_submit(struct ctl *c, const char *app, const char *fn, const void *input, size_t len, bool durable,
               char call_id_out[64], struct ctl_error *e)
{
    return submit(c, app, fn, input, len, durable, false, false, call_id_out, e);
}

int ctl_submit_generator(struct ctl *c, const char *app, const char *fn, const void *input, size_t len,
                         char call_id_out[64], struct ctl_error *e)
{
    return submit(c, app, fn, input, len, false, true, false, call_id_out, e);
}

int ctl_submit_web(struct ctl *c, const char *app, const char *fn, const void *input, size_t len,
                   char call_id_out[64], struct ctl_error *e)
{
    struct ctl_fn *f = ctl_find_fn(c, app, fn);
    if (f && f->latest) {
        const struct spec_function *s = &f->latest->spec;
        uint64_t bound = (uint64_t)CTL_WEB_QUEUE_ROUNDS * (s->max_inputs ? s->max_inputs : 1) * s->max_containers;
        uint64_t queued = 0;
        list_for_each(fv, &f->versions, struct ctl_fver, link)
            queued += fv->queued;
        if (queued >= bound) {
            ctl_err(e, CTL_E_OVERLOADED, "overloaded", NULL,
                    "%" PRIu64 " requests are already queued for this endpoint (its bound: %u x max_inputs x "
                    "max_containers); retry shortly",
                    queued, CTL_WEB_QUEUE_ROUNDS);
            return -EBUSY;
        }
    }
    return submit(c, app, fn, input, len, false, true, true, call_id_out, e);
}

void ctl_call_restore(struct ctl *c, struct ctl_fver *fv, const struct store_call *sc)
{
    struct ctl_call *call = ctl_call_new(c, fv, sc->input, sc->input_len, true);
    /* Keep the stored identity. */
    hmap_remove(&c->calls, &call->node);
    snprintf(call->id, sizeof call->id, "%s", sc->id);
    hmap_insert(&c->calls, &call->node, hmap_hash_str(call->id));
    call->attempts = sc->attempts;
    call->created_at = sc->created_at;
    ctl_queue_push(fv, call, false);
    ctl_fn_work_changed(c, fv->fn);
}

/* The call with this id, from memory or the store. */
static struct ctl_call *call_lookup_any(struct ctl *c, const char *id, struct ctl_error *e)
{
    struct ctl_call *call = ctl_call_find(c, id);
    if (call)
        return call;
    struct store_call sc;
    struct gerr err;
    int r = store_call_get(c->store, id, &sc, true, &err);
    if (r == -ENOENT) {
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", NULL, "call %s not found", id);
        return NULL;
    }
    if (r < 0) {
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "%s", err.msg);
        return NULL;
    }
    call = call_alloc(c);
    call->durable = true;
    snprintf(call->id, sizeof call->id, "%s", sc.id);
    snprintf(call->app, sizeof call->app, "%s", sc.app);
    snprintf(call->function, sizeof call->function, "%s", sc.function);
    snprintf(call->error_code, sizeof call->error_code, "%s", sc.error_code);
    call->version = sc.version;
    call->state = state_from_name(sc.state);
    call->output = TAKE_PTR(sc.output);
    call->output_len = call->output ? sc.output_len : 0;
    call->error_message = TAKE_PTR(sc.error_message);
    call->attempts = sc.attempts;
    call->created_at = sc.created_at;
    call->started_at = sc.started_at;
    call->finished_at = sc.finished_at;
    call->timeline_text = TAKE_PTR(sc.timeline);
    store_call_free(&sc);
    hmap_insert(&c->calls, &call->node, hmap_hash_str(call->id));
    if (ctl_call_state_is_final(call->state)) {
        finished_push(c, call);
        ctl_calls_evict(c);
    }
    return call;
}

struct ctl_call *ctl_call_lookup(struct ctl *c, const char *ws, const char *id, struct ctl_error *e)
{
    struct ctl_call *call = call_lookup_any(c, id, e);
    /* Another workspace's call is not found, with the same answer as a missing one. */
    if (call && ws && !ctl_unqualify(call->app, ws)) {
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", NULL, "call %s not found", id);
        return NULL;
    }
    return call;
}

/* ---------- listing ---------- */

/* A call of the listing: one in memory, or one read from the store (sc). */
struct list_row {
    double created_at;
    struct ctl_call *call;
    struct store_call sc;
};

struct list_ctx {
    struct ctl *c;
    struct list_row *rows;
    size_t n, cap;
};

static struct list_row *list_add(struct list_ctx *l)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->rows = xreallocarray(l->rows, l->cap, sizeof *l->rows);
    }
    struct list_row *r = &l->rows[l->n++];
    memset(r, 0, sizeof *r);
    return r;
}

static int list_stored(const struct store_call *sc, void *ud)
{
    struct list_ctx *l = ud;
    if (ctl_call_find(l->c, sc->id))
        return 0; /* listed from memory */
    struct list_row *r = list_add(l);
    r->sc = *sc;
    r->sc.input = r->sc.output = NULL;
    r->sc.error_message = sc->error_message ? xstrdup(sc->error_message) : NULL;
    r->sc.timeline = sc->timeline ? xstrdup(sc->timeline) : NULL;
    r->created_at = sc->created_at;
    return 0;
}

static int newest_first(const void *a, const void *b)
{
    double x = ((const struct list_row *)a)->created_at, y = ((const struct list_row *)b)->created_at;
    return x < y ? 1 : x > y ? -1 : 0;
}

int ctl_calls_list(struct ctl *c, const char *app, const char *fn, size_t limit, ctl_calls_cb cb, void *ud,
                   struct ctl_error *e)
{
    if (!ctl_find_fn(c, app, fn)) {
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", NULL, "function %s.%s not found", ctl_local_name(app), fn);
        return -ENOENT;
    }
    struct list_ctx l = {.c = c};
    /* Unfinished calls are all in memory (recovery loads them), as are the newest
     * finished ones (durable or not); older finished ones are read from the store. */
    for (size_t b = 0; b < c->calls.nbuckets; b++)
        for (struct hmap_node *n = c->calls.buckets[b]; n; n = n->next) {
            struct ctl_call *call = (struct ctl_call *)n;
            if (!strcmp(call->function, fn) && !strcmp(call->app, app)) {
                struct list_row *r = list_add(&l);
                r->call = call;
                r->created_at = call->created_at;
            }
        }
    struct gerr err;
    int rc = store_calls_recent(c->store, app, fn, (int64_t)limit, list_stored, &l, &err);
    if (rc < 0)
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "%s", err.msg);
    else if (l.n)
        qsort(l.rows, l.n, sizeof *l.rows, newest_first);
    for (size_t i = 0; i < l.n; i++) {
        struct list_row *r = &l.rows[i];
        if (rc == 0 && i < limit) {
            struct ctl_call_view v;
            if (r->call) {
                ctl_call_view_fill(r->call, &v);
                v.timeline = ctl_call_timeline(c, r->call);
            } else {
                memset(&v, 0, sizeof v);
                v.id = r->sc.id;
                v.app = ctl_local_name(r->sc.app);
                v.function = r->sc.function;
                v.version = r->sc.version;
                v.state = state_from_name(r->sc.state);
                v.output_len = r->sc.output_len;
                v.error_code = r->sc.error_code[0] ? r->sc.error_code : NULL;
                v.error_message = r->sc.error_message;
                v.attempts = r->sc.attempts;
                v.created_at = r->sc.created_at;
                v.started_at = r->sc.started_at;
                v.finished_at = r->sc.finished_at;
                v.timeline = r->sc.timeline;
            }
            cb(ud, &v);
        }
        if (!r->call)
            store_call_free(&r->sc);
    }
    free(l.rows);
    return rc < 0 ? -EIO : 0;
}

void ctl_calls_trim(struct ctl *c)
{
    struct gerr err;
    if (store_calls_prune(c->store, wall_s() - CTL_CALLS_MAX_AGE_S, &err) < 0)
        log_warn("control", "prune old calls: %s", err.msg);
    list_for_each(a, &c->apps, struct ctl_app, link)
        list_for_each(f, &a->fns, struct ctl_fn, link) {
            if (!f->calls_dirty)
                continue;
            f->calls_dirty = false;
            if (store_calls_trim_fn(c->store, a->name, f->name, c->cfg.calls_per_fn, &err) < 0)
                log_warn("control", "trim calls of %s.%s: %s", a->name, f->name, err.msg);
        }
}

void ctl_calls_free(struct ctl *c)
{
    for (size_t b = 0; b < c->calls.nbuckets; b++) {
        for (struct hmap_node *n = c->calls.buckets[b], *next; n; n = next) {
            next = n->next;
            struct ctl_call *call = (struct ctl_call *)n;
            list_for_each_safe(o, &call->observers, struct ctl_call_obs, link) {
                list_remove(&o->link);
                if (o->release)
                    o->release(o);
            }
            ctl_call_free(call);
        }
    }
    hmap_free(&c->calls);
}
