/* Maps: every input a durable call, submitted in one store transaction; each result
 * streamed to the client as its call ends (in input order when ordered). Each input's
 * entry observes its call until the result was emitted, so the call stays in memory
 * until then. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/util.h"
#include "base/xalloc.h"
#include "control/internal.h"

static void map_free(struct ctl_map *m)
{
    list_remove(&m->link);
    free(m->entries);
    free(m);
}

static void map_emit(struct ctl_map *m, size_t index)
{
    struct ctl_map_entry *en = &m->entries[index];
    struct ctl_call_view v;
    ctl_call_view_fill(en->call, &v);
    en->call = NULL;
    list_remove(&en->obs.link);
    if (!m->detached)
        m->cb(m->ud, index, &v);
}

static void map_on_final(struct ctl_call_obs *o, struct ctl_call *call)
{
    struct ctl_map_entry *en = (struct ctl_map_entry *)o;
    struct ctl_map *m = en->map;
    struct ctl *c = m->ctl;
    size_t idx = (size_t)(en - m->entries);
    (void)call;
    en->finished = true;
    m->done++;
    if (!m->ordered) {
        map_emit(m, idx);
    } else {
        while (m->next_emit < m->n && m->entries[m->next_emit].finished) {
            map_emit(m, m->next_emit);
            m->next_emit++;
        }
    }
    if (m->done == m->n) {
        if (!m->detached)
            m->cb(m->ud, 0, NULL);
        map_free(m);
    }
    ctl_calls_evict(c);
}

int ctl_map(struct ctl *c, const char *app, const char *fn, const struct ctl_input *inputs, size_t n, bool ordered,
            ctl_map_cb cb, void *ud, struct ctl_map **out, struct ctl_error *e)
{
    *out = NULL;
    if (c->shutting_down) {
        ctl_err(e, CTL_E_SHUTTING_DOWN, "shutting_down", NULL, "gustd is shutting down; retry shortly");
        return -ESHUTDOWN;
    }
    struct ctl_fn *f = ctl_find_fn(c, app, fn);
    if (!f || !f->latest) {
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", NULL, "function %s.%s not found; %s", app, fn,
                f && f->retired ? "the last deploy of its app removed it" : "deploy it first");
        return -ENOENT;
    }
    if (f->app->stopped) {
        ctl_err(e, CTL_E_CONFLICT, "conflict", NULL, "app %s is stopped; deploy it again to call it", app);
        return -ESHUTDOWN;
    }
    if (n == 0) {
        cb(ud, 0, NULL);
        return 0;
    }
    struct ctl_map *m = xcalloc(1, sizeof *m);
    m->entries = xcalloc(n, sizeof *m->entries);
    m->ctl = c;
    m->cb = cb;
    m->ud = ud;
    m->ordered = ordered;
    m->n = n;
    list_push_front(&c->maps, &m->link);
    char map_id[32] = "fm-";
    random_id(map_id + 3, 20);
    struct gerr err;
    int r = store_begin(c->store, &err);
    for (size_t i = 0; r >= 0 && i < n; i++) {
        struct ctl_call *call = ctl_call_new(c, f->latest, inputs[i].data, inputs[i].len, true);
        struct ctl_map_entry *en = &m->entries[i];
        en->map = m;
        en->call = call;
        en->obs.on_final = map_on_final;
        ctl_call_observe(call, &en->obs);
        r = ctl_call_store_new(c, call, map_id, (int64_t)i, &err);
    }
    if (r >= 0)
        r = store_commit(c->store, &err);
    if (r < 0) {
        store_rollback(c->store, NULL);
        for (size_t i = 0; i < n && m->entries[i].call; i++) {
            hmap_remove(&c->calls, &m->entries[i].call->node);
            ctl_call_free(m->entries[i].call);
        }
        map_free(m);
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "storing map inputs failed: %s", err.msg);
        return r;
    }
    f->calls_total += n;
    for (size_t i = 0; i < n; i++)
        ctl_queue_push(f->latest, m->entries[i].call, false);
    ctl_fn_work_changed(c, f);
    *out = m;
    c->kick(c);
    return 0;
}

void ctl_map_detach(struct ctl *c, struct ctl_map *m)
{
    (void)c;
    m->detached = true;
}

void ctl_maps_free(struct ctl *c)
{
    list_for_each_safe(m, &c->maps, struct ctl_map, link)
        map_free(m);
}
