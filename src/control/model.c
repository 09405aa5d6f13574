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

/* ctl->fns is keyed by (app name, function name): every call looks its function up,
 * and a walk of the apps and their functions would cost each call time in proportion
 * to the functions deployed. */
struct fn_key {
    const char *app, *name;
};

/* The two strings' hashes combined as trace.c's index combines them (x 31, then +). */
static uint64_t fn_hash(const char *app, const char *name)
{
    return hmap_hash_str(app) * 31 + hmap_hash_str(name);
}

static bool fn_eq(const struct hmap_node *n, const void *key)
{
    const struct ctl_fn *f = (const struct ctl_fn *)n;
    const struct fn_key *k = key;
    return !strcmp(f->name, k->name) && !strcmp(f->app->name, k->app);
}

struct ctl_fn *ctl_find_fn(struct ctl *c, const char *app, const char *fn)
{
    struct fn_key k = {app, fn};
    return (struct ctl_fn *)hmap_find(&c->fns, fn_hash(app, fn), fn_eq, &k);
}

struct ctl_app *ctl_app_get_or_add(struct ctl *c, const char *name, double created_at)
{
    struct ctl_app *a = ctl_find_app(c, name);
    if (a)
        return a;
    a = xcalloc(1, sizeof *a);
    a->ctl = c;
    snprintf(a->name, sizeof a->name, "%s", name);
    a->created_at = created_at;
    list_init(&a->fns);
    list_init(&a->log_subs);
    list_push_front(&c->apps, &a->link);
    return a;
}

struct ctl_fn *ctl_fn_get_or_add(struct ctl_app *a, const char *name, enum ka_policy policy)
{
    struct ctl_fn *f = ctl_find_fn(a->ctl, a->name, name);
    if (f)
        return f;
    f = xcalloc(1, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", name);
    f->app = a;
    ka_init(&f->ka, policy);
    kpa_init(&f->kpa, KPA_STABLE_MS);
    list_init(&f->versions);
    list_init(&f->subs);
    list_push_front(&a->fns, &f->link);
    hmap_insert(&a->ctl->fns, &f->node, fn_hash(a->name, f->name));
    return f;
}

uint32_t ctl_inputs_per_ctr(const struct spec_function *f)
{
    uint32_t per = f->target_inputs ? f->target_inputs : f->max_inputs;
    return per ? per : 1;
}

uint64_t ctl_fn_work(const struct ctl_fn *fn)
{
    uint64_t work = 0;
    list_for_each(fv, &fn->versions, struct ctl_fver, link)
        work += fv->queued + fv->running + fv->retry_waiting;
    return work;
}

uint64_t ctl_fn_kpa_window_ms(const struct ctl_fn *fn)
{
    uint64_t w = fn->latest ? (uint64_t)fn->latest->spec.scaledown_window_s * 1000 : 0;
    return w && w < KPA_STABLE_MS ? w : KPA_STABLE_MS;
}

uint32_t ctl_fn_level(const struct ctl_fn *fn, uint64_t work)
{
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

/* Takes fv out of every scheduling set. */
static void sched_sets_leave(struct ctl_fver *fv);

void ctl_fver_free(struct ctl_fver *fv)
{
    if (fv->ctl)
        sched_sets_leave(fv);
    list_remove(&fv->link);
    ctl_fver_free_env(fv);
    spec_function_free(&fv->spec);
    json_decref(fv->spec_json);
    free(fv);
}

void ctl_fver_maybe_free(struct ctl *c, struct ctl_fver *fv)
{
    if (fv == c->sched_visiting || fv->fn->latest == fv || fv->queued || fv->running || fv->retry_waiting ||
        !list_empty(&fv->ctrs))
        return;
    assert(list_empty(&fv->queue));
    /* With no containers it left the eviction ranking (evict.c) at its last update. */
    assert(!fv->ev_count && !fv->ev_rank_pos && !fv->ev_end_pos && list_unlinked(&fv->ev_dirty_link));
    ctl_fver_drop_snapshot(fv);
    ctl_fver_free(fv);
}

void ctl_ctr_vols_free(struct ctl_ctr *k)
{
    for (size_t i = 0; k->vol_lowers && k->vol_lowers[i]; i++)
        free(k->vol_lowers[i]);
    free(k->vol_lowers);
    free(k->vol_paths);
    free(k->vol_dirs);
    free(k->vols);
    k->vol_lowers = k->vol_paths = k->vol_dirs = NULL;
    k->vols = NULL;
    k->nvols = 0;
}

void ctl_model_free(struct ctl *c)
{
    list_for_each_safe(a, &c->apps, struct ctl_app, link) {
        list_for_each_safe(f, &a->fns, struct ctl_fn, link) {
            list_for_each_safe(fv, &f->versions, struct ctl_fver, link) {
                list_for_each_safe(k, &fv->ctrs, struct ctl_ctr, link) {
                    hmap_remove(&c->ctrs, &k->node);
                    ctl_ctr_vols_free(k);
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
    hmap_free(&c->fns);
    free(c->sched_next);
    free(c->pass);
    c->sched_next = c->pass = NULL;
    c->nnext = c->next_cap = c->npass = c->pass_cap = c->pass_pos = 0;
    list_init(&c->sched_blocked);
    ctl_vheap_free(&c->room_queued);
    ctl_vheap_free(&c->room_idle);
}

/* ---------- scheduling sets ---------- */

void ctl_sched_reorder(struct ctl *c)
{
    uint32_t n = 0;
    ctl_for_each_version(fv, c)
        fv->order = n++;
    /* No pass runs while versions are added (deploys and recovery run between
     * passes); the next pass sorts what is marked by the new numbers. */
    assert(!c->pass_active);
}

/* Inserts fv into the unvisited part of the running pass, keeping it in order. */
static void pass_insert(struct ctl *c, struct ctl_fver *fv)
{
    if (c->npass == c->pass_cap) {
        c->pass_cap = c->pass_cap ? c->pass_cap * 2 : 16;
        c->pass = xreallocarray(c->pass, c->pass_cap, sizeof *c->pass);
    }
    size_t lo = c->pass_pos, hi = c->npass;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->pass[mid]->order < fv->order)
            lo = mid + 1;
        else
            hi = mid;
    }
    memmove(&c->pass[lo + 1], &c->pass[lo], (c->npass - lo) * sizeof *c->pass);
    c->pass[lo] = fv;
    c->npass++;
}

void ctl_sched_mark(struct ctl_fver *fv)
{
    struct ctl *c = fv->ctl;
    if (fv->sched_marked)
        return;
    fv->sched_marked = true;
    if (c->pass_active && fv->order > c->pass_cursor) {
        pass_insert(c, fv);
        return;
    }
    if (c->nnext == c->next_cap) {
        c->next_cap = c->next_cap ? c->next_cap * 2 : 16;
        c->sched_next = xreallocarray(c->sched_next, c->next_cap, sizeof *c->sched_next);
    }
    c->sched_next[c->nnext++] = fv;
}

void ctl_sched_mark_all(struct ctl *c)
{
    ctl_for_each_version(fv, c)
        ctl_sched_mark(fv);
}

/* ---------- heaps of versions ---------- */

static size_t *vheap_pos(const struct ctl_vheap *h, struct ctl_fver *fv)
{
    switch (h->kind) {
    case CTL_VHEAP_RANK: return &fv->ev_rank_pos;
    case CTL_VHEAP_END: return &fv->ev_end_pos;
    case CTL_VHEAP_ROOM: break;
    }
    return &fv->room_pos;
}

/* Whether a goes above b in h (internal.h, struct ctl_vheap). */
static bool vheap_above(const struct ctl_vheap *h, const struct ctl_fver *a, const struct ctl_fver *b)
{
    switch (h->kind) {
    case CTL_VHEAP_RANK:
        if (a->ev_line.base != b->ev_line.base)
            return a->ev_line.base > b->ev_line.base;
        if (a->ev_since_ms != b->ev_since_ms)
            return a->ev_since_ms < b->ev_since_ms;
        return a->order < b->order;
    case CTL_VHEAP_END: return a->ev_line.until_ms < b->ev_line.until_ms;
    case CTL_VHEAP_ROOM: break;
    }
    if (a->spec.memory_mib != b->spec.memory_mib)
        return a->spec.memory_mib < b->spec.memory_mib;
    return a->spec.cpu_millicores < b->spec.cpu_millicores;
}

static void vheap_set(struct ctl_vheap *h, size_t i, struct ctl_fver *fv)
{
    h->v[i] = fv;
    *vheap_pos(h, fv) = i + 1;
}

static void vheap_up(struct ctl_vheap *h, size_t i)
{
    struct ctl_fver *fv = h->v[i];
    while (i > 0 && vheap_above(h, fv, h->v[(i - 1) / 2])) {
        vheap_set(h, i, h->v[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    vheap_set(h, i, fv);
}

static void vheap_down(struct ctl_vheap *h, size_t i)
{
    struct ctl_fver *fv = h->v[i];
    for (;;) {
        size_t kid = 2 * i + 1;
        if (kid >= h->n)
            break;
        if (kid + 1 < h->n && vheap_above(h, h->v[kid + 1], h->v[kid]))
            kid++;
        if (!vheap_above(h, h->v[kid], fv))
            break;
        vheap_set(h, i, h->v[kid]);
        i = kid;
    }
    vheap_set(h, i, fv);
}

void ctl_vheap_push(struct ctl_vheap *h, struct ctl_fver *fv)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 64;
        h->v = xreallocarray(h->v, h->cap, sizeof *h->v);
    }
    h->v[h->n++] = fv;
    vheap_up(h, h->n - 1);
}

void ctl_vheap_remove(struct ctl_vheap *h, struct ctl_fver *fv)
{
    size_t *pos = vheap_pos(h, fv);
    if (!*pos)
        return;
    size_t i = *pos - 1;
    assert(i < h->n && h->v[i] == fv);
    *pos = 0;
    struct ctl_fver *last = h->v[--h->n];
    if (i == h->n)
        return;
    vheap_set(h, i, last);
    vheap_up(h, i);
    vheap_down(h, *vheap_pos(h, last) - 1);
}

void ctl_vheap_free(struct ctl_vheap *h)
{
    free(h->v);
    h->v = NULL;
    h->n = h->cap = 0;
}

/* ---------- blocked versions ---------- */

void ctl_sched_set_blocked(struct ctl_fver *fv, enum ctl_blocked b)
{
    struct ctl *c = fv->ctl;
    /* Blocked on room again: with or without queued calls, it may change heaps. */
    if ((enum ctl_blocked)fv->sched_blocked == b && (b != CTL_BLOCKED_ON_ROOM || fv->room_queued == (fv->queued > 0)))
        return;
    list_remove(&fv->blocked_link);
    ctl_vheap_remove(fv->room_queued ? &c->room_queued : &c->room_idle, fv);
    fv->sched_blocked = (uint8_t)b;
    if (b == CTL_BLOCKED)
        list_push_back(&c->sched_blocked, &fv->blocked_link);
    else if (b == CTL_BLOCKED_ON_ROOM) {
        fv->room_queued = fv->queued > 0;
        ctl_vheap_push(fv->room_queued ? &c->room_queued : &c->room_idle, fv);
    }
}

/* What is free, and what could be with the containers stopping and every evictable one
 * gone: more than make_room counts (it takes off this pass's claims), so a version
 * that does not fit in it cannot start, whether by evicting or not. */
static void room_now(const struct ctl *c, uint64_t *free_cpu, uint64_t *free_mem, uint64_t *all_cpu,
                     uint64_t *all_mem)
{
    *free_cpu = c->inv.cpu_millicores > c->cpu_used ? c->inv.cpu_millicores - c->cpu_used : 0;
    *free_mem = c->inv.memory_mib > c->mem_used ? c->inv.memory_mib - c->mem_used : 0;
    *all_cpu = *free_cpu + c->stopping_cpu + c->ev_cpu;
    *all_mem = *free_mem + c->stopping_mem + c->ev_mem;
}

/* Marks the versions of h (from index i down) whose cpu and memory fit in cpu and mem:
 * a subtree whose top asks for more memory than mem holds none. Fitting is what any
 * start needs, whatever else it waits for (GPUs, a quota), so a version not marked
 * would get no further. */
static void mark_fitting(const struct ctl_vheap *h, size_t i, uint64_t cpu, uint64_t mem)
{
    if (i >= h->n || h->v[i]->spec.memory_mib > mem)
        return;
    if (h->v[i]->spec.cpu_millicores <= cpu)
        ctl_sched_mark(h->v[i]);
    mark_fitting(h, 2 * i + 1, cpu, mem);
    mark_fitting(h, 2 * i + 2, cpu, mem);
}

void ctl_sched_room_grew(struct ctl *c)
{
    uint64_t free_cpu, free_mem, all_cpu, all_mem;
    room_now(c, &free_cpu, &free_mem, &all_cpu, &all_mem);
    /* With queued calls a version may evict; without (min_containers,
     * buffer_containers) it only takes what is free. */
    mark_fitting(&c->room_queued, 0, all_cpu, all_mem);
    mark_fitting(&c->room_idle, 0, free_cpu, free_mem);
}

void ctl_sched_evictable_grew(struct ctl *c)
{
    uint64_t free_cpu, free_mem, all_cpu, all_mem;
    room_now(c, &free_cpu, &free_mem, &all_cpu, &all_mem);
    if (c->room_queued.n && c->room_queued.v[0]->spec.memory_mib <= all_mem)
        ctl_sched_room_grew(c);
}

static int order_cmp(const void *a, const void *b)
{
    const struct ctl_fver *x = *(struct ctl_fver *const *)a, *y = *(struct ctl_fver *const *)b;
    return x->order < y->order ? -1 : x->order > y->order;
}

void ctl_sched_pass_begin(struct ctl *c)
{
    assert(!c->pass_active);
    list_for_each(fv, &c->sched_blocked, struct ctl_fver, blocked_link)
        ctl_sched_mark(fv);
    /* The marked become the pass; the pass's array (empty) takes the next marks. */
    struct ctl_fver **a = c->pass;
    size_t cap = c->pass_cap;
    c->pass = c->sched_next;
    c->pass_cap = c->next_cap;
    c->npass = c->nnext;
    c->sched_next = a;
    c->next_cap = cap;
    c->nnext = 0;
    if (c->npass > 1)
        qsort(c->pass, c->npass, sizeof *c->pass, order_cmp);
    c->pass_pos = 0;
    c->pass_active = true;
}

struct ctl_fver *ctl_sched_pass_next(struct ctl *c)
{
    if (c->pass_pos == c->npass) {
        c->pass_active = false;
        c->npass = c->pass_pos = 0;
        return NULL;
    }
    struct ctl_fver *fv = c->pass[c->pass_pos++];
    fv->sched_marked = false;
    c->pass_cursor = fv->order;
    return fv;
}

/* Removes fv from arr[from..*n) (it is there when marked). */
static bool array_remove(struct ctl_fver **arr, size_t from, size_t *n, const struct ctl_fver *fv)
{
    for (size_t i = from; i < *n; i++)
        if (arr[i] == fv) {
            memmove(&arr[i], &arr[i + 1], (*n - i - 1) * sizeof *arr);
            (*n)--;
            return true;
        }
    return false;
}

static void sched_sets_leave(struct ctl_fver *fv)
{
    struct ctl *c = fv->ctl;
    if (fv->sched_marked && !array_remove(c->sched_next, 0, &c->nnext, fv))
        array_remove(c->pass, c->pass_pos, &c->npass, fv);
    fv->sched_marked = false;
    ctl_sched_set_blocked(fv, CTL_UNBLOCKED);
}
