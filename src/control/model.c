/* The model at the bottom of control: apps own functions, functions own versions,
 * versions own container records; plus control's error object. Nothing here calls
 * another file of control (internal.h has the order). */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"
#include "control/internal.h"

void ctl_err(struct ctl_error *e, enum ctl_errkind kind, const char *code, const char *field, const char *fmt, ...)
{
    if (!e)
        return;
    e->kind = kind;
    snprintf(e->code, sizeof e->code, "%s", code);
    snprintf(e->field, sizeof e->field, "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

const char *ctl_call_state_name(enum ctl_call_state s)
{
    switch (s) {
    case CTL_CALL_PENDING: return "pending";
    case CTL_CALL_RUNNING: return "running";
    case CTL_CALL_SUCCEEDED: return "succeeded";
    case CTL_CALL_FAILED: return "failed";
    case CTL_CALL_TIMED_OUT: return "timed_out";
    case CTL_CALL_CANCELLED: return "cancelled";
    }
    return "unknown";
}

struct ctl_app *ctl_find_app(struct ctl *c, const char *name)
{
    list_for_each(a, &c->apps, struct ctl_app, link)
        if (!strcmp(a->name, name))
            return a;
    return NULL;
}

static struct ctl_fn *find_fn_in(struct ctl_app *a, const char *name)
{
    list_for_each(f, &a->fns, struct ctl_fn, link)
        if (!strcmp(f->name, name))
            return f;
    return NULL;
}

struct ctl_fn *ctl_find_fn(struct ctl *c, const char *app, const char *fn)
{
    struct ctl_app *a = ctl_find_app(c, app);
    return a ? find_fn_in(a, fn) : NULL;
}

struct ctl_app *ctl_app_get_or_add(struct ctl *c, const char *name, double created_at)
{
    struct ctl_app *a = ctl_find_app(c, name);
    if (a)
        return a;
    a = xcalloc(1, sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", name);
    a->created_at = created_at;
    a->ctl = c;
    list_init(&a->fns);
    list_init(&a->log_subs);
    list_push_front(&c->apps, &a->link);
    return a;
}

struct ctl_fn *ctl_fn_get_or_add(struct ctl_app *a, const char *name, enum ka_policy policy)
{
    struct ctl_fn *f = find_fn_in(a, name);
    if (f)
        return f;
    f = xcalloc(1, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", name);
    f->app = a;
    ka_init(&f->ka, policy);
    list_init(&f->versions);
    list_init(&f->subs);
    list_push_front(&a->fns, &f->link);
    return f;
}

uint32_t ctl_inputs_per_ctr(const struct spec_function *f)
{
    uint32_t per = f->target_inputs ? f->target_inputs : f->max_inputs;
    return per ? per : 1;
}

uint32_t ctl_fn_level(const struct ctl_fn *fn)
{
    uint64_t work = 0;
    list_for_each(fv, &fn->versions, struct ctl_fver, link)
        work += fv->queued + fv->running + fv->retry_waiting;
    uint32_t per = fn->latest ? ctl_inputs_per_ctr(&fn->latest->spec) : 1;
    uint64_t n = (work + per - 1) / per;
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

bool ctl_fn_has_work(const struct ctl_fn *fn)
{
    list_for_each(fv, &fn->versions, struct ctl_fver, link)
        if (fv->queued || fv->running || fv->retry_waiting)
            return true;
    return false;
}

size_t ctl_fn_running(const struct ctl_fn *fn)
{
    size_t n = 0;
    list_for_each(fv, &fn->versions, struct ctl_fver, link)
        n += fv->running;
    return n;
}

struct ctl_fver *ctl_find_version(struct ctl_fn *fn, uint32_t version)
{
    list_for_each(v, &fn->versions, struct ctl_fver, link)
        if (v->version == version)
            return v;
    return NULL;
}

/* ---- snapshots shared by content ---- */

struct ctl_snap *ctl_snap_by_id(struct ctl *c, const char *snap_id)
{
    list_for_each(s, &c->snaps, struct ctl_snap, link)
        if (!strcmp(s->id, snap_id))
            return s;
    return NULL;
}

struct ctl_snap *ctl_snap_by_key(struct ctl *c, const char *key)
{
    list_for_each(s, &c->snaps, struct ctl_snap, link)
        if (!strcmp(s->key, key))
            return s;
    return NULL;
}

struct ctl_snap *ctl_snap_new(struct ctl *c, struct ctl_fver *fv, const char *key, const char *id)
{
    struct ctl_snap *s = xcalloc(1, sizeof *s);
    list_init(&s->spare_link);
    s->ctl = c;
    snprintf(s->key, sizeof s->key, "%s", key);
    snprintf(s->id, sizeof s->id, "%s", id);
    s->state = SNAPSHOT_TAKING;
    list_push_back(&c->snaps, &s->link);
    ctl_snap_attach(fv, s);
    return s;
}

static void snap_free(struct ctl *c, struct ctl_snap *s)
{
    if (s->spare_timer)
        ev_timer_cancel(c->loop, s->spare_timer);
    if (!list_unlinked(&s->spare_link)) {
        list_remove(&s->spare_link);
        c->nspare--;
    }
    list_remove(&s->link);
    free(s);
}

/* A spare is dropped on the worker and forgotten. */
static void snap_drop_spare(struct ctl *c, struct ctl_snap *s)
{
    assert(s->refs == 0);
    c->wops->snapshot_drop(c->worker, s->id);
    snap_free(c, s);
}

static void snap_spare_expired(struct ev_loop *loop, void *ud)
{
    (void)loop;
    struct ctl_snap *s = ud;
    s->spare_timer = 0;
    snap_drop_spare(s->ctl, s);
}

void ctl_snap_attach(struct ctl_fver *fv, struct ctl_snap *s)
{
    struct ctl *c = fv->ctl;
    assert(!fv->snap);
    if (!list_unlinked(&s->spare_link)) {
        list_remove(&s->spare_link);
        c->nspare--;
        if (s->spare_timer)
            ev_timer_cancel(c->loop, s->spare_timer);
        s->spare_timer = 0;
    }
    s->refs++;
    fv->snap = s;
}

void ctl_fver_forget_snapshot(struct ctl_fver *fv)
{
    if (fv->snap)
        fv->snap->refs--;
    fv->snap = NULL;
}

void ctl_snap_gone(struct ctl *c, struct ctl_snap *s)
{
    ctl_for_each_version(fv, c)
        if (fv->snap == s)
            ctl_fver_forget_snapshot(fv);
    assert(s->refs == 0);
    snap_free(c, s);
}

void ctl_snaps_free(struct ctl *c)
{
    ctl_for_each_version(fv, c)
        fv->snap = NULL;
    list_for_each_safe(s, &c->snaps, struct ctl_snap, link) {
        if (s->spare_timer)
            ev_timer_cancel(c->loop, s->spare_timer);
        free(s);
    }
    list_init(&c->snaps);
    list_init(&c->snaps_spare);
    c->nspare = 0;
}

static bool ctr_eq(const struct hmap_node *n, const void *key)
{
    return !strcmp(((const struct ctl_ctr *)n)->id, key);
}

struct ctl_ctr *ctl_find_ctr(struct ctl *c, const char *id)
{
    return (struct ctl_ctr *)hmap_find(&c->ctrs, hmap_hash_str(id), ctr_eq, id);
}

bool ctl_fver_is_current(const struct ctl_fver *fv)
{
    return fv->fn->latest == fv && !fv->fn->app->stopped;
}

bool ctl_fver_live(const struct ctl_fver *fv)
{
    return ctl_fver_is_current(fv) || !list_empty(&fv->ctrs) || fv->queued;
}

void ctl_fver_drop_snapshot(struct ctl_fver *fv)
{
    struct ctl_snap *s = fv->snap;
    if (!s)
        return;
    struct ctl *c = fv->ctl;
    fv->snap = NULL;
    if (--s->refs > 0)
        return;
    if (c->shutting_down) {
        c->wops->snapshot_drop(c->worker, s->id);
        snap_free(c, s);
        return;
    }
    list_push_back(&c->snaps_spare, &s->spare_link);
    c->nspare++;
    s->spare_timer = ev_timer_add(c->loop, c->cfg.snapshot_spare_ms, snap_spare_expired, s);
    while (c->nspare > CTL_SNAP_SPARES)
        snap_drop_spare(c, list_first_entry(&c->snaps_spare, struct ctl_snap, spare_link));
}

void ctl_fver_free_env(struct ctl_fver *fv)
{
    for (size_t i = 0; fv->env && fv->env[i]; i++)
        free(fv->env[i]);
    free(fv->env);
    free(fv->image_workdir);
    for (size_t i = 0; fv->mount_dirs && fv->mount_dirs[i]; i++)
        free(fv->mount_dirs[i]);
    free(fv->mount_dirs);
    fv->env = NULL;
    fv->image_workdir = NULL;
    fv->mount_dirs = NULL;
}

void ctl_fver_free(struct ctl_fver *fv)
{
    list_remove(&fv->link);
    ctl_fver_free_env(fv);
    spec_function_free(&fv->spec);
    json_decref(fv->spec_json);
    free(fv);
}

void ctl_fver_maybe_free(struct ctl *c, struct ctl_fver *fv)
{
    (void)c;
    if (fv->fn->latest == fv || fv->queued || fv->running || fv->retry_waiting || !list_empty(&fv->ctrs))
        return;
    assert(list_empty(&fv->queue));
    ctl_fver_drop_snapshot(fv);
    ctl_fver_free(fv);
}

void ctl_model_free(struct ctl *c)
{
    list_for_each_safe(a, &c->apps, struct ctl_app, link) {
        list_for_each_safe(f, &a->fns, struct ctl_fn, link) {
            list_for_each_safe(fv, &f->versions, struct ctl_fver, link) {
                list_for_each_safe(k, &fv->ctrs, struct ctl_ctr, link) {
                    hmap_remove(&c->ctrs, &k->node);
                    free(k->slots);
                    free(k);
                }
                ctl_fver_free(fv);
            }
            list_for_each_safe(s, &f->subs, struct ctl_log_sub, link)
                free(s);
            if (f->ka_timer)
                ev_timer_cancel(c->loop, f->ka_timer);
            ka_free(&f->ka);
            free(f);
        }
        list_for_each_safe(s, &a->log_subs, struct ctl_app_log_sub, link)
            free(s);
        free(a);
    }
    list_init(&c->apps);
}
