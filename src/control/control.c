#include <errno.h>
#include <malloc.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "cas/cas.h"
#include "control/internal.h"
#include "image/image.h"

#define CTL_FINISHED_KEEP 20000 /* finished calls kept in memory for result lookups */
#define CTL_TICK_MS 200
#define CTL_LOG_FLUSH_MS 200
#define CTL_LOG_KEEP_PER_FN 10000

void ctl_err(struct ctl_error *e, enum ctl_errkind kind, const char *code, const char *field, const char *fmt,
                    ...)
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

static enum ctl_call_state state_from_name(const char *s)
{
    static const char *names[] = {"pending", "running", "succeeded", "failed", "timed_out", "cancelled"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++)
        if (!strcmp(s, names[i]))
            return (enum ctl_call_state)i;
    return CTL_CALL_FAILED;
}

/* ---------- apps, functions, versions ---------- */

static struct ctl_app *find_app(struct ctl *c, const char *name)
{
    for (struct ctl_app *a = c->apps; a; a = a->next)
        if (!strcmp(a->name, name))
            return a;
    return NULL;
}

struct ctl_fn *ctl_find_fn(struct ctl *c, const char *app, const char *fn)
{
    struct ctl_app *a = find_app(c, app);
    if (!a)
        return NULL;
    for (struct ctl_fn *f = a->fns; f; f = f->next)
        if (!strcmp(f->name, fn))
            return f;
    return NULL;
}

static struct ctl_app *get_or_add_app(struct ctl *c, const char *name, double created_at)
{
    struct ctl_app *a = find_app(c, name);
    if (a)
        return a;
    a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    snprintf(a->name, sizeof a->name, "%s", name);
    a->created_at = created_at;
    a->next = c->apps;
    c->apps = a;
    return a;
}

static struct ctl_fn *get_or_add_fn(struct ctl_app *a, const char *name)
{
    for (struct ctl_fn *f = a->fns; f; f = f->next)
        if (!strcmp(f->name, name))
            return f;
    struct ctl_fn *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    snprintf(f->name, sizeof f->name, "%s", name);
    f->app = a;
    f->next = a->fns;
    a->fns = f;
    return f;
}

bool ctl_fver_is_current(const struct ctl_fver *fv)
{
    return fv->fn->latest == fv && !fv->fn->app->stopped;
}

static int resolve_image(struct ctl *c, const char *name, char *rootfs, size_t cap, bool *host_usr,
                         struct gerr *err)
{
    AUTO_FREE char *path = NULL;
    int r = store_image_get(c->store, name, &path, host_usr, err);
    if (r < 0)
        return r;
    snprintf(rootfs, cap, "%s", path);
    return 0;
}

void fver_free_env(struct ctl_fver *fv)
{
    for (size_t i = 0; fv->env && fv->env[i]; i++)
        free(fv->env[i]);
    free(fv->env);
    free(fv->image_workdir);
    ctl_mounts_free(fv->mount_dirs);
    fv->env = NULL;
    fv->image_workdir = NULL;
    fv->mount_dirs = NULL;
}

/* The container environment of fv: the image's env (id "" for none), then the
 * function's, which wins on a name both set; the image's workdir unless the function
 * gave one other than "/". */
static int fver_image_config(struct ctl *c, struct ctl_fver *fv, const char *id, struct gerr *err)
{
    json_t *config = NULL;
    if (id[0] && image_config(c->cas, id, &config, err) < 0)
        return gerr_prefix(err, "image %s", id);
    json_t *ienv = json_object_get(config, "env");
    size_t n = json_array_size(ienv) + fv->spec.nenv, k = 0;
    fv->env = calloc(n + 1, sizeof *fv->env);
    int r = fv->env ? 0 : -ENOMEM;
    for (size_t i = 0; r == 0 && i < json_array_size(ienv); i++) {
        const char *kv = json_string_value(json_array_get(ienv, i));
        if (!kv || !strchr(kv, '='))
            continue;
        size_t kl = (size_t)(strchr(kv, '=') - kv);
        bool overridden = false;
        for (size_t j = 0; j < fv->spec.nenv && !overridden; j++)
            overridden = !strncmp(fv->spec.env[j], kv, kl + 1);
        if (!overridden && !(fv->env[k++] = strdup(kv)))
            r = -ENOMEM;
    }
    for (size_t j = 0; r == 0 && j < fv->spec.nenv; j++)
        if (!(fv->env[k++] = strdup(fv->spec.env[j])))
            r = -ENOMEM;
    const char *iwd = json_string_value(json_object_get(config, "workdir"));
    if (r == 0 && iwd && iwd[0] == '/' && !(fv->image_workdir = strdup(iwd)))
        r = -ENOMEM;
    json_decref(config);
    /* The manifest parsed for the config can be large: give its pages back, since
     * sandboxes are cloned fork-style from this process (cost grows with its RSS). */
    if (id[0])
        malloc_trim(0);
    if (r < 0)
        return gerr_set(err, ENOMEM, "out of memory");
    fv->workdir = fv->image_workdir && (!fv->spec.workdir || !strcmp(fv->spec.workdir, "/")) ? fv->image_workdir
                                                                                          : fv->spec.workdir;
    return 0;
}

/* Builds an in-memory version from its stored normalised spec JSON. */
static struct ctl_fver *fver_new(struct ctl *c, struct ctl_fn *fn, uint32_t version, json_t *spec_json,
                                 struct gerr *err)
{
    struct ctl_fver *fv = calloc(1, sizeof *fv);
    if (!fv) {
        gerr_set(err, ENOMEM, "out of memory");
        return NULL;
    }
    char field[SPEC_FIELD_MAX] = "";
    if (spec_function_from_json(spec_json, &fv->spec, field, err) < 0) {
        free(fv);
        return NULL;
    }
    char id[IMAGE_ID_MAX];
    int r = fv->spec.image_def
                ? ctl_inline_image(c, fv->spec.image_def, id, fv->rootfs, sizeof fv->rootfs, err)
                : resolve_image(c, fv->spec.image, fv->rootfs, sizeof fv->rootfs, &fv->host_usr, err);
    if (r == 0 && !fv->spec.image_def && image_id_of_rootfs(c->images_dir, fv->rootfs, id) < 0)
        id[0] = '\0';
    if (r == 0)
        r = fver_image_config(c, fv, id, err);
    if (r == 0)
        r = ctl_mounts_resolve(c, &fv->spec, &fv->mount_dirs, err);
    if (r < 0) {
        fver_free_env(fv);
        spec_function_free(&fv->spec);
        free(fv);
        return NULL;
    }
    fv->fn = fn;
    fv->ctl = c;
    fv->version = version;
    fv->spec_json = json_incref(spec_json);
    fv->next = fn->versions;
    fn->versions = fv;
    return fv;
}

static struct ctl_fver *find_version(struct ctl_fn *fn, uint32_t version)
{
    for (struct ctl_fver *v = fn->versions; v; v = v->next)
        if (v->version == version)
            return v;
    return NULL;
}

/* Frees a version once nothing uses it: not the latest, no queue, no running or
 * retrying calls, no containers. */
void ctl_fver_maybe_free(struct ctl *c, struct ctl_fver *fv)
{
    if (fv->fn->latest == fv || fv->queued || fv->running || fv->retry_waiting || fv->ctrs)
        return;
    struct ctl_fver **p = &fv->fn->versions;
    while (*p && *p != fv)
        p = &(*p)->next;
    if (*p)
        *p = fv->next;
    sched_snapshot_drop(fv);
    fver_free_env(fv);
    spec_function_free(&fv->spec);
    json_decref(fv->spec_json);
    free(fv);
}

/* ---------- calls ---------- */

static bool call_eq(const struct hmap_node *n, const void *key)
{
    return !strcmp(((const struct ctl_call *)n)->id, key);
}

static struct ctl_call *find_call(struct ctl *c, const char *id)
{
    return (struct ctl_call *)hmap_find(&c->calls, hmap_hash_str(id), call_eq, id);
}

static void call_free(struct ctl_call *call)
{
    free(call->input);
    free(call->output);
    free(call->error_message);
    free(call);
}

static struct ctl_call *call_new(struct ctl *c, struct ctl_fver *fv, const void *input, size_t len, bool durable)
{
    struct ctl_call *call = calloc(1, sizeof *call);
    if (!call)
        return NULL;
    call->input = malloc(len ? len : 1);
    if (!call->input) {
        free(call);
        return NULL;
    }
    if (len)
        memcpy(call->input, input, len);
    call->input_len = len;
    memcpy(call->id, "fc-", 3);
    random_id(call->id + 3, 20);
    snprintf(call->app, sizeof call->app, "%s", fv->fn->app->name);
    snprintf(call->function, sizeof call->function, "%s", fv->fn->name);
    call->version = fv->version;
    call->fv = fv;
    call->ctl = c;
    call->durable = durable;
    call->state = CTL_CALL_PENDING;
    call->created_at = wall_s();
    if (hmap_insert(&c->calls, &call->node, hmap_hash_str(call->id)) < 0) {
        call_free(call);
        return NULL;
    }
    return call;
}

void ctl_call_view_fill(struct ctl_call *call, struct ctl_call_view *v)
{
    memset(v, 0, sizeof *v);
    v->id = call->id;
    v->app = call->app;
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

static void queue_push(struct ctl_fver *fv, struct ctl_call *call, bool front)
{
    call->queued = true;
    call->state = CTL_CALL_PENDING;
    if (front) {
        call->qnext = fv->q_head;
        fv->q_head = call;
        if (!fv->q_tail)
            fv->q_tail = call;
    } else {
        call->qnext = NULL;
        if (fv->q_tail)
            fv->q_tail->qnext = call;
        else
            fv->q_head = call;
        fv->q_tail = call;
    }
    fv->queued++;
}

static void queue_remove(struct ctl_fver *fv, struct ctl_call *call)
{
    struct ctl_call **p = &fv->q_head, *prev = NULL;
    while (*p && *p != call) {
        prev = *p;
        p = &(*p)->qnext;
    }
    if (!*p)
        return;
    *p = call->qnext;
    if (fv->q_tail == call)
        fv->q_tail = prev;
    call->qnext = NULL;
    call->queued = false;
    fv->queued--;
}

void ctl_call_requeue(struct ctl *c, struct ctl_call *call, bool front)
{
    queue_push(call->fv, call, front);
    if (call->durable) {
        struct gerr err;
        if (store_call_set_pending(c->store, call->id, call->attempts, 0, &err) < 0)
            log_error("control", "requeue %s: %s", call->id, err.msg);
    }
    sched_kick(c);
}

static void map_on_result(struct ctl *c, struct ctl_call *call);

/* Appends a final call to the FIFO that bounds how many finished calls stay in memory. */
static void finished_push(struct ctl *c, struct ctl_call *call)
{
    call->fnext = NULL;
    if (c->fin_tail)
        c->fin_tail->fnext = call;
    else
        c->fin_head = call;
    c->fin_tail = call;
    c->fin_count++;
}

static void evict_finished(struct ctl *c)
{
    while (c->fin_count > CTL_FINISHED_KEEP && c->fin_head) {
        struct ctl_call *old = c->fin_head;
        if (old->waiters || old->map)
            break;
        c->fin_head = old->fnext;
        if (!c->fin_head)
            c->fin_tail = NULL;
        c->fin_count--;
        hmap_remove(&c->calls, &old->node);
        call_free(old);
    }
}

/* Final state: store it (durable calls), answer waiters and maps, keep the call in the
 * finished FIFO for later lookups. */
void ctl_call_finish(struct ctl *c, struct ctl_call *call, enum ctl_call_state state, const void *out, size_t out_len,
                     const char *code, const char *msg)
{
    struct ctl_fver *fv = call->fv;
    if (call->queued && fv)
        queue_remove(fv, call);
    if (call->timeout_timer) {
        ev_timer_cancel(c->loop, call->timeout_timer);
        call->timeout_timer = 0;
    }
    if (call->retry_timer) {
        ev_timer_cancel(c->loop, call->retry_timer);
        call->retry_timer = 0;
        if (fv)
            fv->retry_waiting--;
    }
    if (call->state == CTL_CALL_RUNNING && fv)
        fv->running--;
    call->state = state;
    call->finished_at = wall_s();
    if (out && out_len) {
        call->output = malloc(out_len);
        if (call->output) {
            memcpy(call->output, out, out_len);
            call->output_len = out_len;
        }
    }
    snprintf(call->error_code, sizeof call->error_code, "%s", code ? code : "");
    free(call->error_message);
    call->error_message = msg ? strdup(msg) : NULL;
    free(call->input);
    call->input = NULL;
    call->ctr = NULL;
    call->fv = NULL;
    if (call->durable) {
        struct gerr err;
        if (store_call_finish(c->store, call->id, ctl_call_state_name(state), call->output, call->output_len,
                              code, msg, call->finished_at, &err) < 0)
            log_error("control", "store result of %s: %s", call->id, err.msg);
    }
    finished_push(c, call);

    struct ctl_call_view v;
    ctl_call_view_fill(call, &v);
    while (call->waiters) {
        struct ctl_waiter *w = call->waiters;
        call->waiters = w->next;
        if (w->timer)
            ev_timer_cancel(c->loop, w->timer);
        w->cb(w->ud, true, &v);
        free(w);
    }
    if (call->map)
        map_on_result(c, call);
    if (fv)
        ctl_fver_maybe_free(c, fv);
    evict_finished(c);
}

static void retry_fire(struct ev_loop *loop, void *data)
{
    struct ctl_call *call = data;
    struct ctl *c = call->ctl;
    (void)loop;
    call->retry_timer = 0;
    call->fv->retry_waiting--;
    queue_push(call->fv, call, false);
    if (call->durable) {
        struct gerr err;
        if (store_call_set_pending(c->store, call->id, call->attempts, 0, &err) < 0)
            log_error("control", "retry %s: %s", call->id, err.msg);
    }
    sched_kick(c);
}

/* An attempt failed: retry with backoff if the policy allows, else finish. */
void ctl_call_failed_attempt(struct ctl *c, struct ctl_call *call, enum ctl_call_state state, const char *code,
                             const char *msg)
{
    struct ctl_fver *fv = call->fv;
    if (call->queued)
        queue_remove(fv, call);
    if (call->state == CTL_CALL_RUNNING) {
        fv->running--;
        call->state = CTL_CALL_PENDING;
    }
    if (call->timeout_timer) {
        ev_timer_cancel(c->loop, call->timeout_timer);
        call->timeout_timer = 0;
    }
    call->ctr = NULL;
    const struct spec_function *s = &fv->spec;
    bool app_live = !fv->fn->app->stopped && !c->shutting_down;
    if (app_live && call->attempts <= s->max_retries) {
        double delay = s->initial_delay_s * pow(s->backoff_coefficient, (double)call->attempts - 1);
        if (delay > s->max_delay_s)
            delay = s->max_delay_s;
        if (delay < 0)
            delay = 0;
        log_info("control", "call %s attempt %u failed (%s: %s); retrying in %.2fs", call->id, call->attempts,
                 code, msg ? msg : "", delay);
        fv->retry_waiting++;
        call->retry_timer = ev_timer_add(c->loop, (uint64_t)(delay * 1000.0), retry_fire, call);
        if (call->durable) {
            struct gerr err;
            store_call_set_pending(c->store, call->id, call->attempts, wall_s() + delay, &err);
        }
        return;
    }
    ctl_call_finish(c, call, state, NULL, 0, code, msg);
}

int ctl_submit(struct ctl *c, const char *app, const char *fn, const void *input, size_t len, bool durable,
               char call_id_out[64], struct ctl_error *e)
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
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", NULL, "function %s.%s not found; deploy it first (gust ls lists functions)",
                app, fn);
        return -ENOENT;
    }
    if (f->app->stopped) {
        ctl_err(e, CTL_E_CONFLICT, "conflict", NULL, "app %s is stopped; deploy it again to call it", app);
        return -ESHUTDOWN;
    }
    struct ctl_call *call = call_new(c, f->latest, input, len, durable);
    if (!call) {
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "out of memory");
        return -ENOMEM;
    }
    if (durable) {
        struct store_call sc = {0};
        snprintf(sc.id, sizeof sc.id, "%s", call->id);
        snprintf(sc.app, sizeof sc.app, "%s", app);
        snprintf(sc.function, sizeof sc.function, "%s", fn);
        sc.version = call->version;
        snprintf(sc.state, sizeof sc.state, "pending");
        sc.input = call->input;
        sc.input_len = len;
        sc.created_at = call->created_at;
        sc.map_index = -1;
        struct gerr err;
        if (store_call_insert(c->store, &sc, &err) < 0) {
            hmap_remove(&c->calls, &call->node);
            call_free(call);
            ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "storing the call failed: %s", err.msg);
            return -EIO;
        }
    }
    f->calls_total++;
    queue_push(f->latest, call, false);
    snprintf(call_id_out, 64, "%s", call->id);
    sched_kick(c);
    return 0;
}

/* ---------- waiting ---------- */

static void waiter_timeout(struct ev_loop *loop, void *data)
{
    struct ctl_waiter *w = data;
    (void)loop;
    struct ctl_call *call = w->call;
    struct ctl_waiter **p = &call->waiters;
    while (*p && *p != w)
        p = &(*p)->next;
    if (*p)
        *p = w->next;
    w->timer = 0;
    struct ctl_call_view v;
    ctl_call_view_fill(call, &v);
    w->cb(w->ud, false, &v);
    free(w);
}

static bool state_is_final(enum ctl_call_state s)
{
    return s >= CTL_CALL_SUCCEEDED;
}

/* The call with this id: in memory, or loaded from the store into the finished-calls
 * cache (unfinished stored calls are all in memory since ctl_recover, so a stored call
 * found here is final). NULL with e set if there is none. */
static struct ctl_call *lookup_call(struct ctl *c, const char *id, struct ctl_error *e)
{
    struct ctl_call *call = find_call(c, id);
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
    call = calloc(1, sizeof *call);
    if (!call) {
        store_call_free(&sc);
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "out of memory");
        return NULL;
    }
    call->ctl = c;
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
    store_call_free(&sc);
    if (hmap_insert(&c->calls, &call->node, hmap_hash_str(call->id)) < 0) {
        call_free(call);
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "out of memory");
        return NULL;
    }
    if (state_is_final(call->state)) {
        finished_push(c, call);
        evict_finished(c);
    }
    return call;
}

int ctl_wait(struct ctl *c, const char *call_id, uint64_t timeout_ms, ctl_wait_cb cb, void *ud,
             struct ctl_waiter **out, struct ctl_error *e)
{
    *out = NULL;
    struct ctl_call *call = lookup_call(c, call_id, e);
    struct ctl_call_view v;
    if (!call)
        return -ENOENT;
    if (state_is_final(call->state) || timeout_ms == 0) {
        ctl_call_view_fill(call, &v);
        cb(ud, state_is_final(call->state), &v);
        return 0;
    }
    struct ctl_waiter *w = calloc(1, sizeof *w);
    if (!w) {
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "out of memory");
        return -ENOMEM;
    }
    w->call = call;
    w->cb = cb;
    w->ud = ud;
    w->ctl = c;
    w->next = call->waiters;
    call->waiters = w;
    if (timeout_ms != UINT64_MAX)
        w->timer = ev_timer_add(c->loop, timeout_ms, waiter_timeout, w);
    *out = w;
    return 0;
}

void ctl_waiter_cancel(struct ctl *c, struct ctl_waiter *w)
{
    struct ctl_call *call = w->call;
    struct ctl_waiter **p = &call->waiters;
    while (*p && *p != w)
        p = &(*p)->next;
    if (*p)
        *p = w->next;
    if (w->timer)
        ev_timer_cancel(c->loop, w->timer);
    free(w);
    evict_finished(c);
}

int ctl_call_status(struct ctl *c, const char *call_id, struct ctl_call_view *out, struct ctl_error *e)
{
    struct ctl_call *call = lookup_call(c, call_id, e);
    if (!call)
        return -ENOENT;
    ctl_call_view_fill(call, out);
    return 0;
}

int ctl_cancel(struct ctl *c, const char *call_id, struct ctl_call_view *out, struct ctl_error *e)
{
    struct ctl_call *call = lookup_call(c, call_id, e);
    if (!call)
        return -ENOENT;
    if (!state_is_final(call->state)) {
        if (call->state == CTL_CALL_RUNNING)
            sched_cancel_running(c, call);
        ctl_call_finish(c, call, CTL_CALL_CANCELLED, NULL, 0, "cancelled", "the call was cancelled");
        sched_kick(c);
    }
    ctl_call_view_fill(call, out);
    return 0;
}

/* ---------- map ---------- */

static void map_free(struct ctl_map *m)
{
    struct ctl_map **p = &m->ctl->maps;
    while (*p && *p != m)
        p = &(*p)->next;
    if (*p)
        *p = m->next;
    free(m->calls);
    free(m->finished);
    free(m);
}

static void map_emit(struct ctl *c, struct ctl_map *m, size_t index)
{
    struct ctl_call *call = m->calls[index];
    struct ctl_call_view v;
    ctl_call_view_fill(call, &v);
    call->map = NULL;
    m->calls[index] = NULL;
    if (!m->detached)
        m->cb(m->ud, index, &v);
}

static void map_on_result(struct ctl *c, struct ctl_call *call)
{
    struct ctl_map *m = call->map;
    size_t idx = call->map_index;
    m->finished[idx] = true;
    m->done++;
    if (!m->ordered) {
        map_emit(c, m, idx);
    } else {
        while (m->next_emit < m->n && m->finished[m->next_emit]) {
            map_emit(c, m, m->next_emit);
            m->next_emit++;
        }
    }
    if (m->done == m->n) {
        if (!m->detached)
            m->cb(m->ud, 0, NULL);
        map_free(m);
    }
    evict_finished(c);
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
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", NULL, "function %s.%s not found; deploy it first", app, fn);
        return -ENOENT;
    }
    if (f->app->stopped) {
        ctl_err(e, CTL_E_CONFLICT, "conflict", NULL, "app %s is stopped; deploy it again to call it", app);
        return -ESHUTDOWN;
    }
    struct ctl_map *m = calloc(1, sizeof *m);
    if (m)
        m->ctl = c;
    if (!m || !(m->calls = calloc(n ? n : 1, sizeof *m->calls)) ||
        !(m->finished = calloc(n ? n : 1, sizeof *m->finished))) {
        if (m)
            map_free(m);
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "out of memory");
        return -ENOMEM;
    }
    m->ctl = c;
    m->next = c->maps;
    c->maps = m;
    m->cb = cb;
    m->ud = ud;
    m->ordered = ordered;
    m->n = n;
    char map_id[32] = "fm-";
    random_id(map_id + 3, 20);
    struct gerr err;
    int r = store_begin(c->store, &err);
    for (size_t i = 0; r >= 0 && i < n; i++) {
        struct ctl_call *call = call_new(c, f->latest, inputs[i].data, inputs[i].len, true);
        if (!call) {
            r = -ENOMEM;
            gerr_set(&err, ENOMEM, "out of memory");
            break;
        }
        call->map = m;
        call->map_index = i;
        m->calls[i] = call;
        struct store_call sc = {0};
        snprintf(sc.id, sizeof sc.id, "%s", call->id);
        snprintf(sc.app, sizeof sc.app, "%s", app);
        snprintf(sc.function, sizeof sc.function, "%s", fn);
        sc.version = call->version;
        snprintf(sc.state, sizeof sc.state, "pending");
        sc.input = call->input;
        sc.input_len = call->input_len;
        sc.created_at = call->created_at;
        snprintf(sc.map_id, sizeof sc.map_id, "%s", map_id);
        sc.map_index = (int64_t)i;
        r = store_call_insert(c->store, &sc, &err);
    }
    if (r >= 0)
        r = store_commit(c->store, &err);
    if (r < 0) {
        store_rollback(c->store, NULL);
        for (size_t i = 0; i < n && m->calls[i]; i++) {
            hmap_remove(&c->calls, &m->calls[i]->node);
            call_free(m->calls[i]);
        }
        map_free(m);
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "storing map inputs failed: %s", err.msg);
        return r;
    }
    f->calls_total += n;
    for (size_t i = 0; i < n; i++)
        queue_push(f->latest, m->calls[i], false);
    *out = m;
    if (n == 0) {
        cb(ud, 0, NULL);
        map_free(m);
        *out = NULL;
        return 0;
    }
    sched_kick(c);
    return 0;
}

void ctl_map_detach(struct ctl *c, struct ctl_map *m)
{
    (void)c;
    m->detached = true;
}

/* ---------- logs ---------- */

static void log_flush(struct ctl *c)
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
    log_flush(c);
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
    for (struct ctl_log_sub *s = fn->subs; s; s = s->next)
        s->cb(s->ud, ts, ctr_id, call_id, stream, line, len);
    if (c->logq_len == c->logq_cap) {
        size_t cap = c->logq_cap ? c->logq_cap * 2 : 64;
        if (cap > 65536) {
            log_flush(c);
            cap = c->logq_cap;
        } else {
            struct ctl_log_line *q = realloc(c->logq, cap * sizeof *q);
            if (!q)
                return;
            c->logq = q;
            c->logq_cap = cap;
        }
    }
    struct ctl_log_line *l = &c->logq[c->logq_len];
    memset(l, 0, sizeof *l);
    snprintf(l->app, sizeof l->app, "%s", fn->app->name);
    snprintf(l->function, sizeof l->function, "%s", fn->name);
    snprintf(l->container, sizeof l->container, "%s", ctr_id);
    snprintf(l->call_id, sizeof l->call_id, "%s", call_id);
    l->ts = ts;
    l->stream = stream;
    l->line = malloc(len + 1);
    if (!l->line)
        return;
    memcpy(l->line, line, len);
    l->line[len] = '\0';
    l->len = len;
    c->logq_len++;
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
    log_flush(c);
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
    struct ctl_log_sub *s = calloc(1, sizeof *s);
    if (!s) {
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "out of memory");
        return -ENOMEM;
    }
    s->fn = f;
    s->cb = cb;
    s->ud = ud;
    s->next = f->subs;
    f->subs = s;
    *out = s;
    return 0;
}

void ctl_log_unsubscribe(struct ctl *c, struct ctl_log_sub *s)
{
    (void)c;
    struct ctl_log_sub **p = &s->fn->subs;
    while (*p && *p != s)
        p = &(*p)->next;
    if (*p)
        *p = s->next;
    free(s);
}

/* ---------- deploy, apps, listings ---------- */

int ctl_parse_app(struct ctl *c, json_t *spec, struct spec_app *app, struct ctl_error *e)
{
    if (c->shutting_down) {
        ctl_err(e, CTL_E_SHUTTING_DOWN, "shutting_down", NULL, "gustd is shutting down; retry shortly");
        return -ESHUTDOWN;
    }
    char field[SPEC_FIELD_MAX] = "";
    struct gerr err;
    if (spec_app_from_json(spec, app, field, &err) < 0) {
        ctl_err(e, CTL_E_INVALID, "invalid_spec", field, "%s", err.msg);
        return -EINVAL;
    }
    return 0;
}

int ctl_deploy(struct ctl *c, json_t *spec, const char *context, json_t **result, struct ctl_error *e)
{
    *result = NULL;
    struct spec_app app = {0};
    char field[SPEC_FIELD_MAX] = "";
    struct gerr err;
    int r0 = ctl_parse_app(c, spec, &app, e);
    if (r0 < 0)
        return r0;
    int r = 0;
    /* Validate everything before changing anything: images exist, resources fit. */
    for (size_t i = 0; i < app.nfunctions; i++) {
        struct spec_function *f = &app.functions[i];
        char rootfs[512];
        bool host_usr;
        if (f->image_def) {
            char fld[64], id[IMAGE_ID_MAX];
            snprintf(fld, sizeof fld, "functions[%zu].image", i);
            if (spec_image_resolve_paths(f->image_def, fld, context, field, &err) < 0) {
                ctl_err(e, CTL_E_INVALID, "invalid_spec", field, "%s", err.msg);
                r = -EINVAL;
                goto out;
            }
            r = ctl_inline_image(c, f->image_def, id, rootfs, sizeof rootfs, &err);
            if (r == -ENOENT) {
                ctl_err(e, CTL_E_CONFLICT, "image_not_built", fld,
                        "%s: this image is not built yet (%s); build it first: deploy with ?build=1 (gust deploy "
                        "does), or POST /v1/images/build with the definition",
                        fld, err.msg);
                goto out;
            }
            if (r < 0) {
                ctl_err(e, CTL_E_INVALID, "invalid_spec", fld, "%s: %s", fld, err.msg);
                goto out;
            }
            /* The version keeps the image it was deployed with. */
            json_object_set_new(f->image_def, "built_id", json_string(id));
        } else if (resolve_image(c, f->image, rootfs, sizeof rootfs, &host_usr, &err) < 0) {
            char fld[64];
            snprintf(fld, sizeof fld, "functions[%zu].image", i);
            json_t *names = ctl_images_json(c);
            struct buf list = {0};
            size_t k;
            json_t *img;
            json_array_foreach(json_object_get(names, "images"), k, img)
                buf_printf(&list, "%s%s", k ? ", " : "", json_string_value(json_object_get(img, "name")));
            ctl_err(e, CTL_E_INVALID, "invalid_spec", fld,
                    "%s: unknown image \"%s\"; registered images: %s (add one with `gust image add`)", fld, f->image,
                    list.data ? list.data : "none");
            buf_free(&list);
            json_decref(names);
            r = -EINVAL;
            goto out;
        }
        if ((r = ctl_secrets_check(c, f, i, e)) < 0)
            goto out;
        char **mdirs = NULL;
        if ((r = ctl_mounts_resolve(c, f, &mdirs, &err)) < 0) {
            char fld[64];
            snprintf(fld, sizeof fld, "functions[%zu].mounts", i);
            ctl_err(e, CTL_E_INVALID, "invalid_spec", fld, "functions[%zu].%s", i, err.msg);
            goto out;
        }
        ctl_mounts_free(mdirs);
        char why[256];
        if (sched_fits_total(c, f, why, sizeof why) < 0) {
            char fld[64];
            snprintf(fld, sizeof fld, "functions[%zu].resources", i);
            ctl_err(e, CTL_E_UNSCHEDULABLE, "unschedulable", fld, "%s: %s", fld, why);
            r = -ENOSPC;
            goto out;
        }
    }
    double now = wall_s();
    if ((r = store_begin(c->store, &err)) < 0 || (r = store_app_upsert(c->store, app.name, "deployed", now, &err)) < 0)
        goto store_fail;
    uint32_t versions[64] = {0};
    json_t *specs[64] = {0};
    for (size_t i = 0; i < app.nfunctions && i < 64; i++) {
        specs[i] = spec_function_to_json(&app.functions[i]);
        AUTO_FREE char *text = json_dumps(specs[i], JSON_COMPACT | JSON_SORT_KEYS);
        if (!text) {
            r = gerr_set(&err, ENOMEM, "out of memory");
            break;
        }
        r = store_function_add_version(c->store, app.name, app.functions[i].name, text, now, &versions[i], &err);
        if (r < 0)
            break;
    }
    if (r >= 0)
        r = store_commit(c->store, &err);
    if (r < 0) {
        store_rollback(c->store, NULL);
        for (size_t i = 0; i < 64; i++)
            json_decref(specs[i]);
        goto store_fail;
    }
    struct ctl_app *a = get_or_add_app(c, app.name, now);
    json_t *fns = json_array();
    for (size_t i = 0; a && i < app.nfunctions && i < 64; i++) {
        struct ctl_fn *fn = get_or_add_fn(a, app.functions[i].name);
        struct ctl_fver *fv = fn ? fver_new(c, fn, versions[i], specs[i], &err) : NULL;
        if (!fv) {
            log_error("control", "deploy %s.%s: %s", app.name, app.functions[i].name, err.msg);
        } else {
            struct ctl_fver *old = fn->latest;
            fn->latest = fv;
            if (old)
                ctl_fver_maybe_free(c, old);
        }
        json_array_append_new(fns, json_pack("{s:s,s:i}", "name", app.functions[i].name, "version",
                                             (json_int_t)versions[i]));
        json_decref(specs[i]);
    }
    if (a)
        a->stopped = false;
    *result = json_pack("{s:s,s:o}", "app", app.name, "functions", fns);
    log_info("control", "deployed app %s (%zu functions)", app.name, app.nfunctions);
    sched_kick(c);
    goto out;
store_fail:
    ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "storing the deploy failed: %s", err.msg);
out:
    spec_app_free(&app);
    return r < 0 ? r : 0;
}

int ctl_app_stop(struct ctl *c, const char *name, struct ctl_error *e)
{
    struct ctl_app *a = find_app(c, name);
    if (!a) {
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", NULL, "app %s not found", name);
        return -ENOENT;
    }
    a->stopped = true;
    struct gerr err;
    double now = wall_s();
    if (store_app_upsert(c->store, name, "stopped", now, &err) < 0)
        log_error("control", "stop app %s: %s", name, err.msg);
    for (struct ctl_fn *f = a->fns; f; f = f->next) {
        for (struct ctl_fver *fv = f->versions, *nextv; fv; fv = nextv) {
            nextv = fv->next;
            /* Cancel queued calls; running ones are cancelled through their containers. */
            while (fv->q_head)
                ctl_call_finish(c, fv->q_head, CTL_CALL_CANCELLED, NULL, 0, "cancelled", "the app was stopped");
            sched_snapshot_drop(fv);
        }
    }
    /* Running and retry-waiting calls. */
    for (size_t b = 0; b < c->calls.nbuckets; b++) {
        for (struct hmap_node *n = c->calls.buckets[b], *next; n; n = next) {
            next = n->next;
            struct ctl_call *call = (struct ctl_call *)n;
            if (call->fv && call->fv->fn->app == a && !state_is_final(call->state)) {
                if (call->state == CTL_CALL_RUNNING)
                    sched_cancel_running(c, call);
                ctl_call_finish(c, call, CTL_CALL_CANCELLED, NULL, 0, "cancelled", "the app was stopped");
                next = NULL; /* the table may have changed (eviction): restart this bucket */
                b = (size_t)-1;
                break;
            }
        }
    }
    store_calls_cancel_app(c->store, name, now, &err);
    sched_kick(c);
    return 0;
}

json_t *ctl_apps_json(struct ctl *c)
{
    json_t *arr = json_array();
    for (struct ctl_app *a = c->apps; a; a = a->next) {
        int n = 0;
        for (struct ctl_fn *f = a->fns; f; f = f->next)
            n++;
        json_array_append_new(arr, json_pack("{s:s,s:s,s:i,s:f}", "name", a->name, "state",
                                             a->stopped ? "stopped" : "deployed", "functions", n, "created_at",
                                             a->created_at));
    }
    return json_pack("{s:o}", "apps", arr);
}

static json_t *fn_json(struct ctl *c, struct ctl_fn *f)
{
    size_t queued = 0, running = 0;
    uint32_t starting = 0, idle = 0, busy = 0;
    const char *reason = NULL;
    for (struct ctl_fver *fv = f->versions; fv; fv = fv->next) {
        queued += fv->queued + fv->retry_waiting;
        running += fv->running;
        for (struct ctl_ctr *k = fv->ctrs; k; k = k->next) {
            if (k->state == CTR_STARTING)
                starting++;
            else if (k->state == CTR_READY && k->inflight == 0)
                idle++;
            else if (k->state == CTR_READY)
                busy++;
        }
        if (fv->waiting_reason[0] && fv->queued)
            reason = fv->waiting_reason;
    }
    struct ctl_fver *l = f->latest;
    /* The latest version's snapshot, for snapshot functions: its template's id, state
     * and the containers forked from it that are alive. */
    json_t *snap = json_null();
    if (l && l->spec.snapshot && l->snap) {
        enum snapshot_state st = worker_snapshot_state(l->snap);
        struct ctr *t = worker_snapshot_ctr(l->snap);
        uint64_t mem = 0, cpu = 0;
        if (t)
            ctr_usage(t, &mem, &cpu);
        snap = json_pack("{s:s,s:s,s:i,s:i,s:I}", "id", l->snap_id, "state",
                         st == SNAPSHOT_READY ? "ready" : st == SNAPSHOT_TAKING ? "taking" : "gone", "pid",
                         t ? ctr_pid(t) : 0, "containers", worker_snapshot_children(l->snap), "memory_bytes",
                         (json_int_t)mem);
    }
    return json_pack("{s:s,s:s,s:i,s:s,s:s,s:s,s:I,s:I,s:{s:i,s:i,s:i},s:s?,s:O,s:I,s:o}", "app", f->app->name, "name",
                     f->name, "version", (json_int_t)(l ? l->version : 0), "kind", l ? l->spec.kind : "exec", "image",
                     !l ? ""
                     : l->spec.image ? l->spec.image
                     : json_string_value(json_object_get(l->spec.image_def, "built_id"))
                         ? json_string_value(json_object_get(l->spec.image_def, "built_id"))
                         : "",
                     "state", f->app->stopped ? "stopped" : "deployed", "queued",
                     (json_int_t)queued, "running", (json_int_t)running, "containers", "starting", starting, "idle",
                     idle, "busy", busy, "waiting_reason", reason, "spec", l ? l->spec_json : json_null(),
                     "calls_total", (json_int_t)f->calls_total, "snapshot", snap);
}

json_t *ctl_functions_json(struct ctl *c)
{
    json_t *arr = json_array();
    for (struct ctl_app *a = c->apps; a; a = a->next)
        for (struct ctl_fn *f = a->fns; f; f = f->next)
            json_array_append_new(arr, fn_json(c, f));
    return json_pack("{s:o}", "functions", arr);
}

json_t *ctl_function_json(struct ctl *c, const char *app, const char *fn, struct ctl_error *e)
{
    struct ctl_fn *f = ctl_find_fn(c, app, fn);
    if (!f) {
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", NULL, "function %s.%s not found", app, fn);
        return NULL;
    }
    return fn_json(c, f);
}

json_t *ctl_containers_json(struct ctl *c)
{
    json_t *arr = json_array();
    static const char *states[] = {"", "starting", "idle", "stopping"};
    for (struct ctl_app *a = c->apps; a; a = a->next)
        for (struct ctl_fn *f = a->fns; f; f = f->next)
            for (struct ctl_fver *fv = f->versions; fv; fv = fv->next)
                for (struct ctl_ctr *k = fv->ctrs; k; k = k->next) {
                    const char *st = states[k->state];
                    if (k->state == CTR_READY && k->inflight)
                        st = "busy";
                    json_t *gpus = json_array();
                    for (int g = 0; g < k->ngpu; g++) {
                        char s[48];
                        snprintf(s, sizeof s, "%s:%d", k->gpu_type, k->gpu_idx[g]);
                        json_array_append_new(gpus, json_string(s));
                    }
                    struct ctr_stats cs = {0};
                    if (k->w)
                        ctr_stats(k->w, &cs);
                    json_t *cj = json_pack("{s:s,s:s,s:s,s:i,s:s,s:i,s:i,s:I,s:f,s:i,s:i,s:o,s:I,s:f}", "id", k->id,
                                           "app", a->name, "function", f->name, "version", (json_int_t)fv->version,
                                           "state", st, "pid", k->w ? ctr_pid(k->w) : 0, "inputs_in_flight",
                                           (int)k->inflight, "inputs_done", (json_int_t)k->inputs_done, "started_at",
                                           k->started_at, "cpu", (int)k->cpu_millicores, "memory", (int)k->memory_mib,
                                           "gpus", gpus, "memory_bytes", (json_int_t)cs.memory_bytes, "cpu_s",
                                           (double)cs.cpu_ns / 1e9);
                    json_object_update_new(cj, json_pack("{s:I,s:I,s:I}", "memory_peak_bytes",
                                                         (json_int_t)cs.memory_peak_bytes, "oom_kills",
                                                         (json_int_t)cs.oom_kills, "host_uid",
                                                         k->w ? (json_int_t)ctr_host_uid(k->w) : 0));
                    const char *snap = k->w ? ctr_snapshot_of(k->w) : NULL;
                    if (snap)
                        json_object_set_new(cj, "snapshot", json_string(snap));
                    if (cs.gpu_samples)
                        json_object_update_new(cj, json_pack("{s:i,s:I,s:I,s:f}", "gpu_util_pct", (int)cs.gpu_util_pct,
                                                             "gpu_memory_bytes", (json_int_t)cs.gpu_mem_bytes,
                                                             "gpu_memory_peak_bytes", (json_int_t)cs.gpu_mem_peak_bytes,
                                                             "gpu_util_avg_pct", cs.gpu_util_avg_pct));
                    if (k->w) {
                        const struct sandbox_timing *t = ctr_timing(k->w);
                        json_object_set_new(cj, "start_breakdown_us",
                                            json_pack("{s:f,s:f,s:f,s:f,s:f,s:f,s:f}", "cgroups", t->cgroups_ns / 1e3,
                                                      "namespaces", t->clone_ns / 1e3, "network", t->network_ns / 1e3,
                                                      "mounts", t->mounts_ns / 1e3, "user_namespace",
                                                      t->userns_ns / 1e3, "seccomp_caps", t->security_ns / 1e3, "exec",
                                                      t->exec_ns / 1e3));
                    }
                    json_array_append_new(arr, cj);
                }
    return json_pack("{s:o}", "containers", arr);
}

json_t *ctl_health_json(struct ctl *c)
{
    const struct worker_config *cap = worker_capacity(c->worker);
    json_t *gpus = json_array();
    for (int i = 0; i < cap->ngpus; i++)
        json_array_append_new(gpus, json_pack("{s:s,s:i,s:b,s:b}", "type", cap->gpus[i].type, "index",
                                              cap->gpus[i].index, "simulated", cap->gpus[i].simulated, "in_use",
                                              c->gpu_used[i]));
    return json_pack("{s:b,s:s,s:b,s:{s:i,s:i,s:I,s:I,s:o,s:I}}", "ok", 1, "version", "0.1.0", "shutting_down",
                     c->shutting_down, "worker", "cpu_millicores", (int)cap->cpu_millicores, "cpu_used",
                     (int)c->cpu_used, "memory_mib", (json_int_t)cap->memory_mib, "memory_used_mib",
                     (json_int_t)c->mem_used, "gpus", gpus, "containers", (json_int_t)sched_live_containers(c));
}

json_t *ctl_usage_json(struct ctl *c, double since, struct ctl_error *e)
{
    struct gerr err;
    sched_flush_usage(c);
    json_t *j = meter_usage_json(c, since, &err);
    if (!j)
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "%s", err.msg);
    return j;
}

/* ---------- images ---------- */

static bool image_name_ok(const char *name, struct ctl_error *e)
{
    if (name_is_valid(name))
        return true;
    ctl_err(e, CTL_E_INVALID, "invalid_argument", "name",
            "name: \"%s\" is not a valid image name; use 1-63 characters [A-Za-z0-9_-], starting alphanumeric", name);
    return false;
}

/* The answer to an image add or import. */
static json_t *image_added_json(const char *name, const char *id, const char *rootfs, bool host_usr,
                                const struct cas_stats *cs)
{
    return json_pack("{s:s,s:s,s:s,s:b,s:I,s:I,s:I,s:I}", "name", name, "id", id, "rootfs", rootfs, "host_usr",
                     host_usr, "files", (json_int_t)cs->files, "bytes", (json_int_t)cs->bytes_in, "objects_written",
                     (json_int_t)cs->objects_written, "objects_reused", (json_int_t)cs->objects_reused);
}

/* Ingests dir and registers it as name. */
static int image_register(struct ctl *c, const char *name, const char *dir, bool host_usr, char id[IMAGE_ID_MAX],
                          char *rootfs, size_t rootfs_cap, struct cas_stats *st, struct gerr *err)
{
    int r = image_import(c->cas, c->images_dir, dir, id, rootfs, rootfs_cap, st, err);
    if (r < 0)
        return r;
    return store_image_put(c->store, name, rootfs, host_usr, id, wall_s(), err);
}

int ctl_image_add(struct ctl *c, const char *name, const char *rootfs, bool host_usr, json_t **out,
                  struct ctl_error *e)
{
    if (!image_name_ok(name, e))
        return -EINVAL;
    if (rootfs[0] != '/') {
        ctl_err(e, CTL_E_INVALID, "invalid_argument", "rootfs", "rootfs: must be an absolute path, got \"%s\"",
                rootfs);
        return -EINVAL;
    }
    struct stat st;
    if (stat(rootfs, &st) < 0 || !S_ISDIR(st.st_mode)) {
        ctl_err(e, CTL_E_INVALID, "invalid_argument", "rootfs", "rootfs: \"%s\" is not a directory on the worker",
                rootfs);
        return -EINVAL;
    }
    struct gerr err;
    char id[IMAGE_ID_MAX], path[PATH_MAX];
    struct cas_stats cs;
    uint64_t t0 = mono_ns();
    if (image_register(c, name, rootfs, host_usr, id, path, sizeof path, &cs, &err) < 0) {
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "image %s: %s", name, err.msg);
        return -EIO;
    }
    log_info("control", "image %s = %s: %llu files, %.1f MB, %llu new objects, %.0f ms", name, id,
             (unsigned long long)cs.files, (double)cs.bytes_in / 1e6, (unsigned long long)cs.objects_written,
             (double)(mono_ns() - t0) / 1e6);
    *out = image_added_json(name, id, path, host_usr, &cs);
    return 0;
}

int ctl_image_import_oci(struct ctl *c, const char *name, const char *path, json_t **out, struct ctl_error *e)
{
    if (!image_name_ok(name, e))
        return -EINVAL;
    if (path[0] != '/') {
        ctl_err(e, CTL_E_INVALID, "invalid_argument", "oci", "oci: must be an absolute path, got \"%s\"", path);
        return -EINVAL;
    }
    struct gerr err;
    char id[IMAGE_ID_MAX], rootfs[PATH_MAX];
    struct cas_stats cs;
    int r = image_import_oci(c->cas, c->images_dir, path, id, rootfs, sizeof rootfs, &cs, &err);
    if (r == 0)
        r = store_image_put(c->store, name, rootfs, false, id, wall_s(), &err);
    if (r < 0) {
        bool bad_input = r == -EBADMSG || r == -EINVAL || r == -ENOENT || r == -ENOTDIR;
        ctl_err(e, bad_input ? CTL_E_INVALID : CTL_E_INTERNAL, bad_input ? "invalid_argument" : "internal",
                bad_input ? "oci" : NULL, "oci: %s", err.msg);
        return r;
    }
    log_info("control", "image %s = %s from %s: %llu files, %.1f MB", name, id, path, (unsigned long long)cs.files,
             (double)cs.bytes_in / 1e6);
    *out = image_added_json(name, id, rootfs, false, &cs);
    return 0;
}

static int image_row(const char *name, const char *rootfs, bool host_usr, const char *id, double created_at,
                     void *ud)
{
    json_t *j = json_pack("{s:s,s:s,s:b,s:f}", "name", name, "rootfs", rootfs, "host_usr", host_usr, "created_at",
                          created_at);
    json_object_set_new(j, "id", id ? json_string(id) : json_null());
    json_array_append_new(ud, j);
    return 0;
}

json_t *ctl_images_json(struct ctl *c)
{
    json_t *arr = json_array();
    struct gerr err;
    if (store_image_list(c->store, image_row, arr, &err) < 0)
        log_error("control", "list images: %s", err.msg);
    return json_pack("{s:o}", "images", arr);
}

/* The listed image called name (a new reference), or NULL. */
static json_t *image_find(struct ctl *c, const char *name)
{
    json_t *all = ctl_images_json(c);
    json_t *found = NULL;
    size_t i;
    json_t *im;
    json_array_foreach(json_object_get(all, "images"), i, im) {
        if (!strcmp(json_string_value(json_object_get(im, "name")), name))
            found = json_incref(im);
    }
    json_decref(all);
    return found;
}

json_t *ctl_image_inspect(struct ctl *c, const char *name, struct ctl_error *e)
{
    json_t *im = image_find(c, name);
    if (!im) {
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", NULL, "image %s not found", name);
        return NULL;
    }
    struct cas_digest d;
    json_t *m = NULL;
    struct gerr err;
    if (cas_digest_parse(json_string_value(json_object_get(im, "id")), &d) == 0 &&
        cas_manifest_load(c->cas, &d, &m, &err) == 0) {
        json_int_t files = 0, bytes = 0;
        size_t i;
        json_t *en;
        json_array_foreach(json_object_get(m, "entries"), i, en) {
            if (!strcmp(json_string_value(json_object_get(en, "type")), "file")) {
                files++;
                bytes += json_integer_value(json_object_get(en, "size"));
            }
        }
        json_object_set_new(im, "files", json_integer(files));
        json_object_set_new(im, "bytes", json_integer(bytes));
        json_object_set_new(im, "entries", json_integer((json_int_t)json_array_size(json_object_get(m, "entries"))));
        json_object_set(im, "config", json_object_get(m, "config"));
        json_decref(m);
    } else if (json_is_string(json_object_get(im, "id"))) {
        json_object_set_new(im, "store_error", json_string(err.msg));
    }
    return im;
}

/* A version that can still start containers: the deployed one of a running app, or
 * any with containers or queued calls (in-flight calls finish on their version). */
static bool fver_live(const struct ctl_fver *fv)
{
    return ctl_fver_is_current(fv) || fv->ctrs || fv->queued;
}

/* Whether a live version runs on the image called name. */
static bool image_in_use(struct ctl *c, const char *name)
{
    for (struct ctl_app *a = c->apps; a; a = a->next)
        for (struct ctl_fn *f = a->fns; f; f = f->next)
            for (struct ctl_fver *fv = f->versions; fv; fv = fv->next)
                if (fver_live(fv) && fv->spec.image && !strcmp(fv->spec.image, name))
                    return true;
    return false;
}

int ctl_image_rm(struct ctl *c, const char *name, struct ctl_error *e)
{
    if (image_in_use(c, name)) {
        ctl_err(e, CTL_E_CONFLICT, "conflict", NULL,
                "image %s is used by a deployed function; deploy it with another image or stop its app first", name);
        return -EBUSY;
    }
    struct gerr err;
    int r = store_image_delete(c->store, name, &err);
    if (r == -ENOENT) {
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", NULL, "image %s not found", name);
        return r;
    }
    if (r < 0) {
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "%s", err.msg);
        return r;
    }
    return 0;
}

struct gc_dropped {
    char *const *live;
    size_t n;
    json_t *steps;
};

static void gc_collect_dropped(void *ud, const char *step_id, const char *parent_id, const char *image_id)
{
    struct gc_dropped *d = ud;
    for (size_t i = 0; i < d->n; i++)
        if (!strcmp(d->live[i], image_id))
            return;
    json_array_append_new(d->steps, json_string(step_id));
}

json_t *ctl_image_gc(struct ctl *c, struct ctl_error *e)
{
    if (c->builder && build_running(c->builder)) {
        ctl_err(e, CTL_E_CONFLICT, "build_running",
                NULL, "an image build is running; run gc when it has finished (its steps are not referenced yet)");
        return NULL;
    }
    /* Live: every named image, the image of every live version (fver_live: a re-added
     * or removed name may leave such versions on an older image), and the images
     * their build steps started from, so rebuilds stay cached. */
    json_t *ids = json_object();
    json_t *all = ctl_images_json(c);
    size_t i;
    json_t *im;
    json_array_foreach(json_object_get(all, "images"), i, im) {
        const char *id = json_string_value(json_object_get(im, "id"));
        if (id)
            json_object_set_new(ids, id, json_true());
    }
    json_decref(all);
    for (struct ctl_app *a = c->apps; a; a = a->next)
        for (struct ctl_fn *f = a->fns; f; f = f->next)
            for (struct ctl_fver *fv = f->versions; fv; fv = fv->next) {
                char id[IMAGE_ID_MAX];
                if (fver_live(fv) && image_id_of_rootfs(c->images_dir, fv->rootfs, id) == 0)
                    json_object_set_new(ids, id, json_true());
                for (size_t m = 0; (fver_live(fv) || fv->ctrs) && m < fv->spec.nmounts; m++)
                    json_object_set_new(ids, fv->spec.mount_images[m], json_true());
            }
    size_t n = 0, cap = json_object_size(ids) + 16;
    char **live = calloc(cap, sizeof *live);
    const char *key;
    json_t *v;
    int r = live ? 0 : -ENOMEM;
    json_object_foreach(ids, key, v) {
        if (r == 0 && !(live[n++] = strdup(key)))
            r = -ENOMEM;
    }
    json_decref(ids);
    if (r == 0 && c->builder)
        r = ctl_build_live_ancestors(c, &live, &n, &cap);
    struct image_gc_result res;
    struct gerr err;
    if (r == 0)
        r = image_gc(c->cas, c->images_dir, live, n, &res, &err);
    else
        gerr_set(&err, ENOMEM, "out of memory");
    if (r == 0 && c->builder) {
        struct gc_dropped d = {live, n, json_array()};
        build_cache_each(c->builder, gc_collect_dropped, &d);
        json_t *sid;
        json_array_foreach(d.steps, i, sid) store_build_step_delete(c->store, json_string_value(sid), NULL);
        json_decref(d.steps);
        build_cache_retain(c->builder, live, n);
    }
    for (size_t k = 0; live && k < n; k++)
        free(live[k]);
    free(live);
    if (r < 0) {
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "image gc: %s", err.msg);
        return NULL;
    }
    log_info("control", "image gc: %llu objects (%.1f MB) and %llu materialised images removed, %zu images live",
             (unsigned long long)res.objects, (double)res.bytes / 1e6, (unsigned long long)res.images, n);
    return json_pack("{s:I,s:I,s:I,s:I}", "objects_removed", (json_int_t)res.objects, "bytes_removed",
                     (json_int_t)res.bytes, "images_removed", (json_int_t)res.images, "images_live", (json_int_t)n);
}

/* ---------- lifecycle ---------- */

static void tick(struct ev_loop *loop, void *data)
{
    struct ctl *c = data;
    (void)loop;
    c->tick_timer = ev_timer_add(c->loop, CTL_TICK_MS, tick, c);
    sched_tick(c);
    uint64_t now = ev_now_ms(c->loop);
    /* GPU utilization and memory of containers with NVML-visible GPUs, once a second. */
    if (now - c->last_gpu_sample_ms >= 1000) {
        c->last_gpu_sample_ms = now;
        worker_sample_gpus(c->worker);
    }
    if (now - c->last_flush_ms >= 5000) {
        c->last_flush_ms = now;
        sched_flush_usage(c);
        char hb[32];
        snprintf(hb, sizeof hb, "%.3f", wall_s());
        struct gerr err;
        if (store_kv_set(c->store, "heartbeat", hb, &err) < 0)
            log_warn("control", "heartbeat: %s", err.msg);
    }
}

int ctl_new(struct ev_loop *loop, struct store *store, struct worker *worker, const struct ctl_config *cfg,
            struct ctl **out, struct gerr *err)
{
    struct ctl *c = calloc(1, sizeof *c);
    if (!c)
        return gerr_set(err, ENOMEM, "out of memory");
    c->loop = loop;
    c->store = store;
    c->worker = worker;
    c->cfg = *cfg;
    snprintf(c->images_dir, sizeof c->images_dir, "%s", cfg->images_dir);
    c->cfg.images_dir = c->images_dir;
    c->cfg.cas_dir = NULL;
    c->next_input_id = 1;
    int r = cas_open(cfg->cas_dir, &c->cas, err);
    if (r < 0) {
        free(c);
        return gerr_prefix(err, "image store");
    }
    if (hmap_init(&c->calls, 4096) < 0) {
        cas_close(c->cas);
        free(c);
        return gerr_set(err, ENOMEM, "out of memory");
    }
    *out = c;
    return 0;
}

static int load_fn_row(const char *app, const char *name, uint32_t version, const char *spec_json, void *ud)
{
    struct ctl *c = ud;
    struct ctl_app *a = find_app(c, app);
    if (!a)
        return 0;
    struct ctl_fn *f = get_or_add_fn(a, name);
    if (!f)
        return -ENOMEM;
    json_error_t jerr;
    json_t *j = json_loads(spec_json, 0, &jerr);
    struct gerr err;
    struct ctl_fver *fv = j ? fver_new(c, f, version, j, &err) : NULL;
    json_decref(j);
    if (!fv) {
        log_error("control", "cannot load %s.%s v%u: %s", app, name, version, j ? err.msg : jerr.text);
        return 0;
    }
    f->latest = fv;
    return 0;
}

static int load_app_row(const char *name, const char *state, double created_at, int nfunctions, void *ud)
{
    struct ctl *c = ud;
    (void)nfunctions;
    struct ctl_app *a = get_or_add_app(c, name, created_at);
    if (!a)
        return -ENOMEM;
    a->stopped = !strcmp(state, "stopped");
    return 0;
}

static int recover_call_row(const struct store_call *sc, void *ud)
{
    struct ctl *c = ud;
    struct ctl_fn *f = ctl_find_fn(c, sc->app, sc->function);
    struct gerr err;
    if (!f || f->app->stopped) {
        store_call_finish(c->store, sc->id, "cancelled", NULL, 0, "cancelled", "the app was stopped", wall_s(), &err);
        return 0;
    }
    struct ctl_fver *fv = find_version(f, sc->version);
    if (!fv) {
        AUTO_FREE char *text = NULL;
        if (store_function_get_version(c->store, sc->app, sc->function, sc->version, &text, &err) < 0) {
            log_error("control", "recover %s: %s", sc->id, err.msg);
            return 0;
        }
        json_t *j = json_loads(text, 0, NULL);
        fv = j ? fver_new(c, f, sc->version, j, &err) : NULL;
        json_decref(j);
        if (!fv) {
            store_call_finish(c->store, sc->id, "failed", NULL, 0, "spawn_failed",
                              "the function version could not be restored after a restart", wall_s(), &err);
            return 0;
        }
    }
    struct ctl_call *call = call_new(c, fv, sc->input, sc->input_len, true);
    if (!call)
        return -ENOMEM;
    /* Keep the stored identity. */
    hmap_remove(&c->calls, &call->node);
    snprintf(call->id, sizeof call->id, "%s", sc->id);
    hmap_insert(&c->calls, &call->node, hmap_hash_str(call->id));
    call->attempts = sc->attempts;
    call->created_at = sc->created_at;
    queue_push(fv, call, false);
    if (!strcmp(sc->state, "running"))
        store_call_set_pending(c->store, sc->id, sc->attempts, 0, &err);
    return 0;
}

int ctl_recover(struct ctl *c, struct gerr *err)
{
    char path[600];
    /* The built-in images: sources built once, then stored like any added image. */
    char id[IMAGE_ID_MAX], rootfs[PATH_MAX];
    snprintf(path, sizeof path, "%s/src-busybox", c->images_dir);
    int r = image_build_busybox(path, err);
    if (r < 0)
        return gerr_prefix(err, "building the busybox image");
    if ((r = image_register(c, "busybox", path, false, id, rootfs, sizeof rootfs, NULL, err)) < 0)
        return gerr_prefix(err, "storing the busybox image");
    snprintf(path, sizeof path, "%s/src-python", c->images_dir);
    if ((r = image_build_host_python(path, err)) < 0)
        return gerr_prefix(err, "building the python image");
    if ((r = image_register(c, "python", path, true, id, rootfs, sizeof rootfs, NULL, err)) < 0)
        return gerr_prefix(err, "storing the python image");
    if ((r = ctl_builder_start(c, err)) < 0)
        return r;
    if ((r = ctl_secrets_load(c, err)) < 0)
        return gerr_prefix(err, "loading secrets");

    /* Containers of a dead daemon: they died with it (PDEATHSIG); close their metering
     * records at its last heartbeat. */
    AUTO_FREE char *hb = NULL;
    double last = wall_s();
    if (store_kv_get(c->store, "heartbeat", &hb, NULL) == 0 && hb)
        last = strtod(hb, NULL);
    if ((r = store_containers_close_open(c->store, last, "daemon_restart", err)) < 0)
        return r;
    if ((r = store_app_list(c->store, load_app_row, c, err)) < 0)
        return r;
    if ((r = store_function_list_latest(c->store, load_fn_row, c, err)) < 0)
        return r;
    if ((r = store_calls_unfinished(c->store, recover_call_row, c, err)) < 0)
        return r;
    size_t n = 0;
    for (struct ctl_app *a = c->apps; a; a = a->next)
        for (struct ctl_fn *f = a->fns; f; f = f->next)
            for (struct ctl_fver *fv = f->versions; fv; fv = fv->next)
                n += fv->queued;
    if (n)
        log_info("control", "recovered %zu unfinished calls", n);
    store_calls_prune(c->store, wall_s() - 7 * 86400.0, NULL);
    store_logs_trim(c->store, CTL_LOG_KEEP_PER_FN, NULL);
    c->last_flush_ms = ev_now_ms(c->loop);
    c->tick_timer = ev_timer_add(c->loop, CTL_TICK_MS, tick, c);
    sched_kick(c);
    return 0;
}

bool ctl_shutting_down(const struct ctl *c)
{
    return c->shutting_down;
}

static void shutdown_finish(struct ctl *c)
{
    if (!c->shutdown_cb || sched_live_containers(c))
        return;
    log_flush(c);
    sched_flush_usage(c);
    void (*cb)(void *) = c->shutdown_cb;
    c->shutdown_cb = NULL;
    cb(c->shutdown_ud);
}

/* Called by sched when a container is gone, and by the grace timer. */
static void shutdown_grace_over(struct ev_loop *loop, void *data)
{
    struct ctl *c = data;
    (void)loop;
    /* Whatever still runs goes back to the store as pending: it runs after restart. */
    for (size_t b = 0; b < c->calls.nbuckets; b++)
        for (struct hmap_node *n = c->calls.buckets[b]; n; n = n->next) {
            struct ctl_call *call = (struct ctl_call *)n;
            if (call->state == CTL_CALL_RUNNING && call->durable) {
                struct gerr err;
                store_call_set_pending(c->store, call->id, call->attempts > 0 ? call->attempts - 1 : 0, 0, &err);
            }
        }
    sched_stop_all(c);
    shutdown_finish(c);
}

void ctl_shutdown_check(struct ctl *c)
{
    if (!c->shutdown_cb)
        return;
    size_t running = 0;
    for (struct ctl_app *a = c->apps; a; a = a->next)
        for (struct ctl_fn *f = a->fns; f; f = f->next)
            for (struct ctl_fver *fv = f->versions; fv; fv = fv->next)
                running += fv->running;
    if (running == 0)
        sched_stop_all(c);
    shutdown_finish(c);
}

void ctl_shutdown(struct ctl *c, void (*done_cb)(void *ud), void *ud)
{
    c->shutting_down = true;
    c->shutdown_cb = done_cb;
    c->shutdown_ud = ud;
    /* Sync callers waiting on queued (never started) calls get an answer now. */
    for (struct ctl_app *a = c->apps; a; a = a->next)
        for (struct ctl_fn *f = a->fns; f; f = f->next)
            for (struct ctl_fver *fv = f->versions; fv; fv = fv->next)
                for (struct ctl_call *call = fv->q_head, *next; call; call = next) {
                    next = call->qnext;
                    if (!call->durable)
                        ctl_call_finish(c, call, CTL_CALL_CANCELLED, NULL, 0, "shutting_down",
                                        "gustd shut down before the call started");
                }
    ev_timer_add(c->loop, c->cfg.stop_grace_ms, shutdown_grace_over, c);
    ctl_shutdown_check(c);
}

void ctl_free(struct ctl *c)
{
    if (!c)
        return;
    ctl_builder_stop(c);
    ctl_secrets_free(c);
    cas_close(c->cas);
    c->cas = NULL;
    if (c->tick_timer)
        ev_timer_cancel(c->loop, c->tick_timer);
    if (c->log_timer)
        ev_timer_cancel(c->loop, c->log_timer);
    log_flush(c);
    free(c->logq);
    for (size_t b = 0; b < c->calls.nbuckets; b++) {
        struct hmap_node *n = c->calls.buckets[b];
        while (n) {
            struct hmap_node *next = n->next;
            struct ctl_call *call = (struct ctl_call *)n;
            while (call->waiters) {
                struct ctl_waiter *w = call->waiters;
                call->waiters = w->next;
                free(w);
            }
            call_free(call);
            n = next;
        }
    }
    hmap_free(&c->calls);
    while (c->maps)
        map_free(c->maps);
    while (c->apps) {
        struct ctl_app *a = c->apps;
        c->apps = a->next;
        while (a->fns) {
            struct ctl_fn *f = a->fns;
            a->fns = f->next;
            while (f->versions) {
                struct ctl_fver *fv = f->versions;
                f->versions = fv->next;
                fver_free_env(fv);
                spec_function_free(&fv->spec);
                json_decref(fv->spec_json);
                free(fv);
            }
            while (f->subs) {
                struct ctl_log_sub *s = f->subs;
                f->subs = s->next;
                free(s);
            }
            free(f);
        }
        free(a);
    }
    free(c);
}
