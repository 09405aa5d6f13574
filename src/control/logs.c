/* Log lines of functions: fanned out at once to followers (gust logs -f), batched
 * into the store on a short timer so a chatty function costs one transaction per
 * batch, not one per line. */
#include <errno.h>
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
        if (store_log_append(c->store, l->app, l->function, l->container, l->call_id, l->ts, l->stream, l->line,
                             l->len, &err) < 0)
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

void ctl_log_push(struct ctl *c, struct ctl_ctr *k, int stream, uint64_t input_id, const char *line, size_t len)
{
    const char *call_id = "";
    for (uint32_t i = 0; input_id && i < k->nslots; i++)
        if (k->slots[i].input_id == input_id && k->slots[i].call)
            call_id = k->slots[i].call->id;
    ctl_log_push_line(c, k->fv->fn, k->id, call_id, stream, line, len);
}

void ctl_log_push_line(struct ctl *c, struct ctl_fn *fn, const char *ctr_id, const char *call_id, int stream,
                       const char *line, size_t len)
{
    double ts = wall_s();
    fn->logs_dirty = true;
    list_for_each(s, &fn->subs, struct ctl_log_sub, link)
        s->cb(s->ud, ts, ctr_id, call_id, stream, line, len);
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

int ctl_logs(struct ctl *c, const char *app, const char *fn, int tail, ctl_log_cb cb, void *ud, struct ctl_error *e)
{
    if (!ctl_find_fn(c, app, fn)) {
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", NULL, "function %s.%s not found", app, fn);
        return -ENOENT;
    }
    ctl_log_flush(c);
    struct log_tail_ctx t = {cb, ud};
    struct gerr err;
    if (store_logs_tail(c->store, app, fn, tail, log_tail_row, &t, &err) < 0) {
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
