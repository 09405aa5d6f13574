/* Schedules (docs/SPEC.md "schedule"): a deployed function whose latest version has
 * one is called, with no input (no arguments), at each of its fires.
 *
 * Durability: a fire stores its call and the schedule's next fire time in one store
 * transaction, so after a crash either both happened or neither: a restart never runs
 * a fire twice. At recovery a stored next fire time in the past (gustd was down through
 * it, maybe through several) runs once, at once, and the next is counted from then.
 *
 * Times: fires are wall-clock instants (Unix seconds); the timer waits on the loop's
 * monotonic clock for what is left, and a timer that comes early (the clocks drift)
 * waits again for the rest rather than firing before the instant.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "control/internal.h"
#include "evloop/evloop.h"
#include "spec/cron.h"
#include "store/store.h"

/* How many of a schedule's latest fires are kept, stored and shown: enough to see its
 * rhythm in `gust ls` and the API, few enough that the row stays small. */
#define CTL_SCHEDULE_RUNS_KEPT 10

struct ctl_schedule {
    struct ctl *c;
    struct ctl_fn *fn;
    char *spec;                 /* the schedule's normalised JSON (compact, sorted keys) */
    struct spec_schedule def;
    struct cron_expr expr;      /* cron schedules */
    struct cron_tz *tz;         /* cron schedules; NULL for every */
    double next_at;             /* the next fire, Unix seconds */
    json_t *runs;               /* [{"at": T, "call_id": ID}], oldest first */
    uint64_t timer;             /* 0: none */
};

/* The schedule part of a function's normalised spec as text, or NULL when it has none. */
static char *schedule_spec_text(const struct spec_function *f)
{
    if (f->schedule.kind == SPEC_SCHEDULE_NONE)
        return NULL;
    json_t *j = f->schedule.kind == SPEC_SCHEDULE_CRON
                    ? json_pack("{s:s,s:s}", "cron", f->schedule.cron, "timezone", f->schedule.timezone)
                    : json_pack("{s:I}", "every", (json_int_t)f->schedule.every_s);
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(j);
    if (!s)
        xalloc_die(0);
    return s;
}

/* The first fire after `after` (Unix seconds). -ENOENT: a cron expression with no fire
 * within the search bound (cron_parse refuses the ones that never fire). */
static int schedule_next(const struct ctl_schedule *s, double after, double *out)
{
    if (s->def.kind == SPEC_SCHEDULE_EVERY) {
        *out = after + s->def.every_s;
        return 0;
    }
    int64_t t;
    int r = cron_next(&s->expr, s->tz, (int64_t)floor(after), &t);
    if (r == 0)
        *out = (double)t;
    return r;
}

static void schedule_free(struct ctl_schedule *s)
{
    if (!s)
        return;
    if (s->timer)
        ev_timer_cancel(s->c->loop, s->timer);
    free(s->spec);
    free(s->tz);
    json_decref(s->runs);
    free(s);
}

static void schedule_fire_cb(struct ev_loop *loop, void *data);

static void schedule_arm(struct ctl_schedule *s)
{
    if (s->timer)
        ev_timer_cancel(s->c->loop, s->timer);
    double left = s->next_at - wall_s();
    /* Whole milliseconds, rounded up, so that the timer is not early by rounding. */
    uint64_t ms = left > 0 ? (uint64_t)ceil(left * 1000.0) : 0;
    s->timer = ev_timer_add(s->c->loop, ms, schedule_fire_cb, s);
}

/* One fire: the call and the schedule's next state, stored together. */
static void schedule_fire(struct ctl_schedule *s, double now)
{
    struct ctl *c = s->c;
    struct ctl_fn *fn = s->fn;
    double tick = s->next_at, next;
    if (s->def.kind == SPEC_SCHEDULE_EVERY) {
        /* Counted from the tick, not from when the timer ran; ticks missed while
         * gustd was down are not made up (this one fire stands for them). */
        next = tick + s->def.every_s;
        if (next <= now)
            next = now + s->def.every_s;
    } else if (schedule_next(s, now, &next) < 0) {
        next = INFINITY;
    }
    struct gerr err;
    struct ctl_error e;
    char call_id[64] = "";
    if (store_begin(c->store, &err) < 0) {
        log_error("control", "schedule of %s.%s: %s", fn->app->name, fn->name, err.msg);
        s->next_at = now + 1; /* try again in a second: the store may recover */
        schedule_arm(s);
        return;
    }
    int r = ctl_submit(c, fn->app->name, fn->name, "", 0, true, call_id, &e);
    if (r == -ESHUTDOWN && c->shutting_down) {
        /* Not a fire: the next daemon runs it (its stored time is past). */
        store_rollback(c->store, NULL);
        return;
    }
    if (r < 0)
        log_error("control", "schedule of %s.%s: the call was not submitted: %s", fn->app->name, fn->name, e.message);
    else
        json_array_append_new(s->runs, json_pack("{s:f,s:s}", "at", tick, "call_id", call_id));
    while (json_array_size(s->runs) > CTL_SCHEDULE_RUNS_KEPT)
        json_array_remove(s->runs, 0);
    AUTO_FREE char *runs = json_dumps(s->runs, JSON_COMPACT);
    s->next_at = next;
    if (!runs || store_schedule_put(c->store, fn->app->name, fn->name, s->spec, isinf(next) ? 0 : next, runs, &err) < 0 ||
        store_commit(c->store, &err) < 0) {
        store_rollback(c->store, NULL);
        log_error("control", "schedule of %s.%s: storing the fire failed: %s", fn->app->name, fn->name,
                  runs ? err.msg : "out of memory");
    }
    if (!isinf(next))
        schedule_arm(s);
    else
        log_error("control", "schedule of %s.%s: no further fire within %lld days", fn->app->name, fn->name,
                  (long long)(CRON_SEARCH_SECS / 86400));
}

static void schedule_fire_cb(struct ev_loop *loop, void *data)
{
    (void)loop;
    struct ctl_schedule *s = data;
    s->timer = 0;
    if (s->c->shutting_down)
        return;
    double now = wall_s();
    if (now < s->next_at) {
        schedule_arm(s);
        return;
    }
    schedule_fire(s, now);
}

/* A new schedule for fn from its latest spec (spec: its text, taken), next_at < 0:
 * the first fire counted from now; runs: the history to keep (taken; NULL: none). */
static struct ctl_schedule *schedule_new(struct ctl *c, struct ctl_fn *fn, char *spec, double next_at, json_t *runs)
{
    struct ctl_schedule *s = xcalloc(1, sizeof *s);
    s->c = c;
    s->fn = fn;
    s->spec = spec;
    s->def = fn->latest->spec.schedule;
    s->runs = runs && json_is_array(runs) ? runs : json_array();
    if (runs && s->runs != runs)
        json_decref(runs);
    if (!s->runs)
        xalloc_die(0);
    struct gerr err;
    if (s->def.kind == SPEC_SCHEDULE_CRON) {
        s->tz = xmalloc(sizeof *s->tz);
        /* Deploy validated both; a zone removed from tzdata since falls back to UTC. */
        if (cron_parse(s->def.cron, &s->expr, &err) < 0) {
            log_error("control", "schedule of %s.%s: %s", fn->app->name, fn->name, err.msg);
            schedule_free(s);
            return NULL;
        }
        if (cron_tz_load(s->def.timezone, s->tz, &err) < 0) {
            log_error("control", "schedule of %s.%s: %s; using UTC", fn->app->name, fn->name, err.msg);
            cron_tz_load("UTC", s->tz, NULL);
        }
    }
    double now = wall_s();
    if (next_at < 0 && schedule_next(s, now, &next_at) < 0) {
        log_error("control", "schedule of %s.%s: no fire within %lld days", fn->app->name, fn->name,
                  (long long)(CRON_SEARCH_SECS / 86400));
        schedule_free(s);
        return NULL;
    }
    s->next_at = next_at;
    return s;
}

void ctl_schedule_sync(struct ctl *c, struct ctl_fn *fn)
{
    bool want = !fn->app->stopped && fn->latest && fn->latest->spec.schedule.kind != SPEC_SCHEDULE_NONE;
    char *spec = want ? schedule_spec_text(&fn->latest->spec) : NULL;
    struct ctl_schedule *old = fn->schedule;
    if (old && spec && !strcmp(old->spec, spec)) {
        free(spec);
        return;
    }
    struct gerr err;
    json_t *runs = old ? json_incref(old->runs) : NULL;
    schedule_free(old);
    fn->schedule = NULL;
    if (!spec) {
        json_decref(runs);
        if (old && store_schedule_delete(c->store, fn->app->name, fn->name, &err) < 0)
            log_error("control", "schedule of %s.%s: %s", fn->app->name, fn->name, err.msg);
        return;
    }
    struct ctl_schedule *s = schedule_new(c, fn, spec, -1, runs);
    if (!s)
        return;
    AUTO_FREE char *text = json_dumps(s->runs, JSON_COMPACT);
    if (!text || store_schedule_put(c->store, fn->app->name, fn->name, s->spec, s->next_at, text, &err) < 0)
        log_error("control", "schedule of %s.%s: %s", fn->app->name, fn->name, text ? err.msg : "out of memory");
    fn->schedule = s;
    schedule_arm(s);
}

struct schedule_recover {
    struct ctl *c;
    int stale;
};

static int schedule_recover_row(const char *app, const char *function, const char *spec, double next_at,
                                const char *last_runs, void *ud)
{
    struct schedule_recover *rc = ud;
    struct ctl_fn *fn = ctl_find_fn(rc->c, app, function);
    AUTO_FREE char *want = fn && !fn->app->stopped && fn->latest ? schedule_spec_text(&fn->latest->spec) : NULL;
    json_t *runs = json_loads(last_runs, 0, NULL);
    if (!fn || fn->schedule || !want || strcmp(want, spec)) {
        /* Not this schedule any more: ctl_schedule_sync starts the current one afresh
         * (keeping the history) or the row goes. */
        if (fn && want && !fn->schedule) {
            fn->schedule = schedule_new(rc->c, fn, TAKE_PTR(want), -1, runs);
            if (fn->schedule) {
                AUTO_FREE char *text = json_dumps(fn->schedule->runs, JSON_COMPACT);
                store_schedule_put(rc->c->store, app, function, fn->schedule->spec, fn->schedule->next_at,
                                   text ? text : "[]", NULL);
            }
        } else {
            json_decref(runs);
            store_schedule_delete(rc->c->store, app, function, NULL);
        }
        rc->stale++;
        return 0;
    }
    fn->schedule = schedule_new(rc->c, fn, TAKE_PTR(want), next_at, runs);
    return 0;
}

int ctl_schedules_recover(struct ctl *c, struct gerr *err)
{
    struct schedule_recover rc = {.c = c};
    int r = store_schedule_list(c->store, schedule_recover_row, &rc, err);
    if (r < 0)
        return r;
    size_t n = 0;
    list_for_each(a, &c->apps, struct ctl_app, link) {
        list_for_each(f, &a->fns, struct ctl_fn, link) {
            if (!f->schedule)
                ctl_schedule_sync(c, f); /* deployed with a schedule but not stored: start it */
            if (f->schedule) {
                n++;
                /* A fire missed while gustd was down runs now (its timer is due). */
                schedule_arm(f->schedule);
            }
        }
    }
    if (n)
        log_info("control", "recovered %zu schedules", n);
    return 0;
}

json_t *ctl_schedule_json(const struct ctl_fn *fn)
{
    const struct ctl_schedule *s = fn->schedule;
    if (!s)
        return NULL;
    json_t *spec = json_loads(s->spec, 0, NULL);
    return json_pack("{s:o,s:o,s:O}", "spec", spec ? spec : json_object(), "next_run",
                     isinf(s->next_at) ? json_null() : json_real(s->next_at), "last_runs", s->runs);
}

void ctl_schedules_free(struct ctl *c)
{
    list_for_each(a, &c->apps, struct ctl_app, link) {
        list_for_each(f, &a->fns, struct ctl_fn, link) {
            schedule_free(f->schedule);
            f->schedule = NULL;
        }
    }
}
