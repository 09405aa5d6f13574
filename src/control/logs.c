/* Log lines of functions: fanned out at once to followers (gust logs -f), batched
 * into the store on a short timer so a chatty function costs one transaction per
 * batch, not one per line. Each app's lines are numbered (seq) in the order they
 * come, so that a follower of the whole app (gust run) that lost its stream resumes
 * from the last line it saw, from the store, without a gap or a repeat. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "control/internal.h"

/* A batch is written 200 ms after its first line: `gust logs` of a call that just
 * ended sees its lines (ctl_logs flushes first anyway), and a burst of lines costs
 * one transaction. */
#define CTL_LOG_FLUSH_MS 200
/* At most this many lines wait in memory; a fuller queue is written at once. */
#define CTL_LOG_QUEUE_MAX 65536

void ctl_log_flush(struct ctl *c)
{
    if (!c->logq_len)
        return;
    struct gerr err;
    store_begin(c->store, &err);
    for (size_t i = 0; i < c->logq_len; i++) {
        struct ctl_log_line *l = &c->logq[i];
        const struct store_log_row row = {.app = l->app, .function = l->function, .container_id = l->container,
                                          .call_id = l->call_id, .seq = (int64_t)l->seq, .ts = l->ts,
                                          .stream = l->stream, .concurrent = l->concurrent, .line = l->line,
                                          .len = l->len};
        if (store_log_append(c->store, &row, &err) < 0)
            log_error("control", "store log line: %s", err.msg);
        free(l->line);
    }
    if (store_commit(c->store, &err) < 0)
        log_error("control", "store logs: %s", err.msg);
    c->logq_len = 0;
}

static void log_flush_timer(struct ev_loop *loop, void *data)
{
    struct ctl *c = data;
    (void)loop;
    c->log_timer = 0;
    ctl_log_flush(c);
}

uint64_t ctl_app_log_seq_of(struct ctl *c, struct ctl_app *a)
{
    if (!a->log_seq_loaded) {
        /* Lines are numbered on from the newest stored one: the trim keeps the newest
         * lines of each function, so the app's highest seq survives it and a restart. */
        int64_t seq = 0;
        struct gerr err;
        if (store_logs_app_seq(c->store, a->name, &seq, &err) < 0)
            log_warn("control", "log position of %s: %s", a->name, err.msg);
        a->log_seq = seq > 0 ? (uint64_t)seq : 0;
        a->log_seq_loaded = true;
    }
    return a->log_seq;
}

static void push_line(struct ctl *c, struct ctl_fn *fn, const char *ctr_id, const char *call_id, bool concurrent,
                      int stream, const char *line, size_t len);

void ctl_log_push(struct ctl *c, struct ctl_ctr *k, int stream, uint64_t input_id, const char *line, size_t len)
{
    struct ctl_fn *fn = k->fv->fn;
    const struct ctl_call *call = NULL;
    for (uint32_t i = 0; input_id && i < k->nslots; i++)
        if (k->slots[i].input_id == input_id && k->slots[i].call)
            call = k->slots[i].call;
    bool concurrent = call ? call->started_in_company || fn->call_starts > call->start_no : ctl_fn_running(fn) > 1;
    push_line(c, fn, k->id, call ? call->id : "", concurrent, stream, line, len);
}

void ctl_log_push_line(struct ctl *c, struct ctl_fn *fn, const char *ctr_id, const char *call_id, int stream,
                       const char *line, size_t len)
{
    push_line(c, fn, ctr_id, call_id, ctl_fn_running(fn) > 1, stream, line, len);
}

static void push_line(struct ctl *c, struct ctl_fn *fn, const char *ctr_id, const char *call_id, bool concurrent,
                      int stream, const char *line, size_t len)
{
    double ts = wall_s();
    fn->logs_dirty = true;
    list_for_each(s, &fn->subs, struct ctl_log_sub, link)
        s->cb(s->ud, ts, ctr_id, call_id, stream, line, len);
    struct ctl_app *a = fn->app;
    const struct ctl_log_entry ent = {.seq = ctl_app_log_seq_of(c, a) + 1, .ts = ts, .function = fn->name,
                                      .container_id = ctr_id, .call_id = call_id, .stream = stream,
                                      .concurrent = concurrent, .line = line, .len = len};
    a->log_seq = ent.seq;
    list_for_each_safe(s, &a->log_subs, struct ctl_app_log_sub, link)
        s->cb(s->ud, &ent);
    if (c->logq_len == CTL_LOG_QUEUE_MAX)
        ctl_log_flush(c);
    if (c->logq_len == c->logq_cap) {
        c->logq_cap = c->logq_cap ? c->logq_cap * 2 : 64;
        c->logq = xreallocarray(c->logq, c->logq_cap, sizeof *c->logq);
    }
    struct ctl_log_line *l = &c->logq[c->logq_len++];
    memset(l, 0, sizeof *l);
    snprintf(l->app, sizeof l->app, "%s", fn->app->name);
    snprintf(l->function, sizeof l->function, "%s", fn->name);
    snprintf(l->container, sizeof l->container, "%s", ctr_id);
    snprintf(l->call_id, sizeof l->call_id, "%s", call_id);
    l->ts = ts;
    l->stream = stream;
    l->seq = ent.seq;
    l->concurrent = concurrent;
    l->line = xmemdup(line, len);
    l->len = len;
    if (!c->log_timer)
        c->log_timer = ev_timer_add(c->loop, CTL_LOG_FLUSH_MS, log_flush_timer, c);
}

struct log_tail_ctx {
    ctl_log_cb cb;
    void *ud;
};

static int log_tail_row(int64_t id, double ts, const char *container_id, const char *call_id, int stream,
                        const char *line, size_t len, void *ud)
{
    struct log_tail_ctx *t = ud;
    (void)id;
    t->cb(t->ud, ts, container_id, call_id, stream, line, len);
    return 0;
}

int ctl_logs(struct ctl *c, const char *app, const char *fn, int tail, const struct store_log_filter *f, ctl_log_cb cb,
             void *ud, struct ctl_error *e)
{
    if (!ctl_find_fn(c, app, fn)) {
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", NULL, "function %s.%s not found", app, fn);
        return -ENOENT;
    }
    ctl_log_flush(c);
    struct log_tail_ctx t = {cb, ud};
    struct gerr err;
    int r = f ? store_logs_find(c->store, app, fn, f, tail, log_tail_row, &t, &err)
              : store_logs_tail(c->store, app, fn, tail, log_tail_row, &t, &err);
    if (r < 0) {
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "%s", err.msg);
        return -EIO;
    }
    return 0;
}

int ctl_log_subscribe(struct ctl *c, const char *app, const char *fn, ctl_log_cb cb, void *ud,
                      struct ctl_log_sub **out, struct ctl_error *e)
{
    struct ctl_fn *f = ctl_find_fn(c, app, fn);
    if (!f) {
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", NULL, "function %s.%s not found", app, fn);
        return -ENOENT;
    }
    struct ctl_log_sub *s = xcalloc(1, sizeof *s);
    s->fn = f;
    s->cb = cb;
    s->ud = ud;
    list_push_front(&f->subs, &s->link);
    *out = s;
    return 0;
}

void ctl_log_unsubscribe(struct ctl *c, struct ctl_log_sub *s)
{
    (void)c;
    list_remove(&s->link);
    free(s);
}

/* The app named app (qualified), or NULL with *e saying it is not found. */
static struct ctl_app *app_or_error(struct ctl *c, const char *app, struct ctl_error *e)
{
    struct ctl_app *a = ctl_find_app(c, app);
    if (!a)
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", NULL, "app %s not found", ctl_local_name(app));
    return a;
}

int ctl_app_log_seq(struct ctl *c, const char *app, uint64_t *seq, struct ctl_error *e)
{
    struct ctl_app *a = app_or_error(c, app, e);
    if (!a)
        return -ENOENT;
    *seq = ctl_app_log_seq_of(c, a);
    return 0;
}

struct app_logs_ctx {
    ctl_log_entry_cb cb;
    void *ud;
    int n;
};

static int app_log_row(const struct store_log_row *row, void *ud)
{
    struct app_logs_ctx *t = ud;
    const struct ctl_log_entry ent = {.seq = (uint64_t)row->seq, .ts = row->ts, .function = row->function,
                                      .container_id = row->container_id, .call_id = row->call_id,
                                      .stream = row->stream, .concurrent = row->concurrent, .line = row->line,
                                      .len = row->len};
    t->cb(t->ud, &ent);
    t->n++;
    return 0;
}

int ctl_app_logs(struct ctl *c, const char *app, uint64_t since, int limit, ctl_log_entry_cb cb, void *ud,
                 struct ctl_error *e)
{
    if (!app_or_error(c, app, e))
        return -ENOENT;
    ctl_log_flush(c);
    struct app_logs_ctx t = {cb, ud, 0};
    struct gerr err;
    if (store_logs_app_after(c->store, app, since > INT64_MAX ? INT64_MAX : (int64_t)since, limit, app_log_row, &t,
                             &err) < 0) {
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "%s", err.msg);
        return -EIO;
    }
    return t.n;
}

int ctl_app_log_subscribe(struct ctl *c, const char *app, ctl_log_entry_cb cb, void *ud,
                          struct ctl_app_log_sub **out, struct ctl_error *e)
{
    struct ctl_app *a = app_or_error(c, app, e);
    if (!a)
        return -ENOENT;
    struct ctl_app_log_sub *s = xcalloc(1, sizeof *s);
    s->cb = cb;
    s->ud = ud;
    list_push_back(&a->log_subs, &s->link);
    *out = s;
    return 0;
}

void ctl_app_log_unsubscribe(struct ctl *c, struct ctl_app_log_sub *s)
{
    (void)c;
    list_remove(&s->link);
    free(s);
}

void ctl_logs_trim(struct ctl *c)
{
    ctl_log_flush(c);
    list_for_each(a, &c->apps, struct ctl_app, link)
        list_for_each(f, &a->fns, struct ctl_fn, link) {
            if (!f->logs_dirty)
                continue;
            f->logs_dirty = false;
            struct gerr err;
            if (store_logs_trim_fn(c->store, a->name, f->name, c->cfg.log_lines_per_fn, &err) < 0)
                log_warn("control", "trim logs of %s.%s: %s", a->name, f->name, err.msg);
        }
}

void ctl_logs_free(struct ctl *c)
{
    if (c->log_timer)
        ev_timer_cancel(c->loop, c->log_timer);
    c->log_timer = 0;
    ctl_log_flush(c);
    free(c->logq);
    c->logq = NULL;
}
