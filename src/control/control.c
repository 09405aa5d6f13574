/* The facade of control: what gustd and the api layer call to create, recover,
 * tick, stop and free it, and the operations that span the layers below (cancel).
 * The rest of the public API (control.h) is implemented by the file of its concern;
 * internal.h lists the files in their one-way order. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "cas/cas.h"
#include "control/internal.h"

/* The control tick: scale-down and pre-warm decisions, GPU samples, usage flush and
 * heartbeat. 200 ms bounds how late an idle container past its keep-alive is stopped
 * and how late a pre-warm starts (small beside the 1-minute bins of the policy). */
#define CTL_TICK_MS 200
/* Defaults of the store bounds (control.h, struct ctl_config, says why). */
#define CTL_LOG_LINES_PER_FN 10000
#define CTL_CALLS_PER_FN 100000
#define CTL_TRIM_INTERVAL_MS 60000
/* Keep-alive histories are saved once a minute: their bins are a minute wide, so a
 * crash loses at most about one bin's worth of idle times, and a busy function's
 * history is written 1,440 times a day rather than on every call. */
#define CTL_KEEPALIVE_SAVE_MS 60000

/* Saves the keep-alive history of every function whose history changed since its
 * last save, in one transaction. */
static void keepalive_save(struct ctl *c)
{
    struct gerr err;
    bool began = false;
    struct buf b = {0};
    list_for_each(a, &c->apps, struct ctl_app, link)
        list_for_each(f, &a->fns, struct ctl_fn, link) {
            if (f->ka.changes == f->ka_saved)
                continue;
            if (!began && store_begin(c->store, &err) < 0) {
                log_warn("control", "saving keep-alive histories: %s", err.msg);
                buf_free(&b);
                return;
            }
            began = true;
            buf_reset(&b);
            ka_encode(&f->ka, &b);
            if (store_keepalive_put(c->store, a->name, f->name, ka_policy_name(f->ka.policy), b.data, b.len,
                                    wall_s(), &err) < 0)
                log_warn("control", "saving the keep-alive history of %s.%s: %s", a->name, f->name, err.msg);
            else
                f->ka_saved = f->ka.changes;
        }
    buf_free(&b);
    if (began && store_commit(c->store, &err) < 0)
        log_warn("control", "saving keep-alive histories: %s", err.msg);
}

/* The exchange rate is solved again when the idle times recorded since the last solve
 * reach 1/16 of those it saw: often while histories are young, then rarely (each solve
 * walks every function's histograms about 40 times), and never for a change that moves
 * the rate by less than one new idle time in 16 could. */
#define CTL_KA_SOLVE_FRACTION 16

/* A function's containers reserve this much memory (the request), in GiB; at least
 * 1 MiB, so that a value is always finite. */
static double fn_gib(const struct ctl_fn *f)
{
    uint32_t mib = f->latest ? f->latest->spec.memory_mib : 0;
    return (double)(mib ? mib : 1) / 1024.0;
}

/* The default policy's exchange rate across this control plane's functions (keepalive.c,
 * ka_solve_value), solved again when due, and each function's valuation from it (a
 * function deployed or resized since gets its own at once). Functions with a
 * scaledown_window are left out: their window is theirs. */
static void keepalive_revalue(struct ctl *c)
{
    if (c->ka_policy != KA_DEFAULT)
        return;
    size_t n = 0, cap = 0;
    uint64_t samples = 0;
    struct ctl_fn **fns = NULL;
    const struct ka_state **states = NULL;
    double *gib = NULL;
    list_for_each(a, &c->apps, struct ctl_app, link)
        list_for_each(f, &a->fns, struct ctl_fn, link) {
            if (f->latest && f->latest->spec.scaledown_window_s)
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                fns = xreallocarray(fns, cap, sizeof *fns);
                states = xreallocarray(states, cap, sizeof *states);
                gib = xreallocarray(gib, cap, sizeof *gib);
            }
            fns[n] = f;
            states[n] = &f->ka;
            gib[n++] = fn_gib(f);
            samples += f->ka.changes;
        }
    if (samples > c->ka_solved_samples &&
        (samples - c->ka_solved_samples) * CTL_KA_SOLVE_FRACTION >= c->ka_solved_samples) {
        c->ka_solved_samples = samples;
        c->ka_lambda = ka_solve_value(states, gib, n, c->ka_lambda);
    }
    if (c->ka_lambda > 0)
        for (size_t i = 0; i < n; i++)
            if (fns[i]->ka.value_ms != c->ka_lambda / gib[i]) {
                ka_set_value(&fns[i]->ka, c->ka_lambda / gib[i]);
                c->keepalive_kick(c, fns[i]);
            }
    free(fns);
    free(states);
    free(gib);
}

/* A stored history goes to its function when the function still exists and the
 * history was kept under the policy now in force (the policies keep different ones). */
static int load_keepalive_row(const char *app, const char *function, const char *policy, const void *history,
                              size_t len, void *ud)
{
    struct ctl *c = ud;
    struct ctl_fn *f = ctl_find_fn(c, app, function);
    if (!f || strcmp(policy, ka_policy_name(f->ka.policy)))
        return 0;
    if (ka_decode(&f->ka, history, len) < 0)
        log_warn("control", "the stored keep-alive history of %s.%s is malformed; starting it afresh", app, function);
    f->ka_saved = f->ka.changes;
    evict_update_fn(f);
    return 0;
}

/* Busy time of live containers reaches the store this often, with the heartbeat that
 * crash recovery closes open container records at: how stale `gust usage` may be, and
 * how much metering a crash may lose. */
#define CTL_FLUSH_INTERVAL_MS 5000

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
        c->wops->tick(c->worker);
    }
    if (now - c->last_trim_ms >= c->cfg.trim_interval_ms) {
        c->last_trim_ms = now;
        ctl_logs_trim(c);
        ctl_calls_trim(c);
    }
    /* Metering records, the usage flush and the heartbeat are for readers outside the
     * loop (a client, the next daemon after a crash), so they are paced by the
     * monotonic clock: the loop's own clock in gustd; real time under a virtual loop
     * (gust-sim), whose 5 s pass in microseconds while nobody reads the store. */
    uint64_t mono = mono_ms();
    if (c->nrows && mono - c->rows_since_ms >= SCHED_ROWS_WAIT_MS)
        sched_write_rows(c);
    if (mono - c->last_flush_ms >= CTL_FLUSH_INTERVAL_MS) {
        c->last_flush_ms = mono;
        sched_flush_usage(c);
        char hb[32];
        snprintf(hb, sizeof hb, "%.3f", wall_s());
        struct gerr err;
        if (store_kv_set(c->store, "heartbeat", hb, &err) < 0)
            log_warn("control", "heartbeat: %s", err.msg);
    }
    /* Queue partitions past their partition_ttl (wall-clock times, so paced by real
     * time too): a second late at most, which a TTL of whole seconds (Modal's are
     * ints) hardly notices; a use of one checks it at once. */
    if (mono - c->last_kv_sweep_ms >= 1000) {
        c->last_kv_sweep_ms = mono;
        ctl_kv_tick(c);
    }
    if (now - c->last_ka_save_ms >= CTL_KEEPALIVE_SAVE_MS) {
        c->last_ka_save_ms = now;
        keepalive_revalue(c);
        keepalive_save(c);
    }
}

int ctl_new(struct ev_loop *loop, struct store *store, const struct worker_ops *ops, void *worker,
            const struct ctl_config *cfg, struct ctl **out, struct gerr *err)
{
    struct ctl *c = xcalloc(1, sizeof *c);
    c->loop = loop;
    c->store = store;
    c->wops = ops;
    c->worker = worker;
    c->cfg = *cfg;
    snprintf(c->images_dir, sizeof c->images_dir, "%s", cfg->images_dir);
    c->cfg.images_dir = c->images_dir;
    c->cfg.cas_dir = NULL;
    c->next_input_id = 1;
    c->kick = sched_kick;
    c->keepalive_kick = sched_keepalive_kick;
    if (ka_policy_parse(cfg->keepalive_policy, &c->ka_policy) < 0) {
        free(c);
        return gerr_set(err, EINVAL,
                        "keep-alive policy \"%s\": unknown; one of default, fixed_10min, knative, hybrid_histogram",
                        cfg->keepalive_policy);
    }
    c->cfg.keepalive_policy = ka_policy_name(c->ka_policy);
    if (!c->cfg.log_lines_per_fn)
        c->cfg.log_lines_per_fn = CTL_LOG_LINES_PER_FN;
    if (!c->cfg.calls_per_fn)
        c->cfg.calls_per_fn = CTL_CALLS_PER_FN;
    if (!c->cfg.trim_interval_ms)
        c->cfg.trim_interval_ms = CTL_TRIM_INTERVAL_MS;
    if (!c->cfg.snapshot_spare_ms)
        c->cfg.snapshot_spare_ms = CTL_SNAP_SPARE_MS_DEFAULT;
    list_init(&c->apps);
    hmap_init(&c->fns, 64);
    list_init(&c->sched_blocked);
    c->room_queued.kind = c->room_idle.kind = CTL_VHEAP_ROOM;
    evict_init(c);
    list_init(&c->snaps);
    list_init(&c->snaps_spare);
    list_init(&c->maps);
    list_init(&c->finished);
    list_init(&c->secrets);
    list_init(&c->kv_waiters);
    c->vol_last = json_object();
    list_init(&c->deploy_builds);
    list_init(&c->workspaces);
    hmap_init(&c->tokens, 64);
    int r = cas_open(cfg->cas_dir, &c->cas, err);
    if (r < 0) {
        free(c);
        return gerr_prefix(err, "image store");
    }
    hmap_init(&c->calls, 4096);
    hmap_init(&c->ctrs, 256);
    ops->inventory(worker, &c->inv);
    ops->attach(worker, &ctl_worker_events, c);
    *out = c;
    return 0;
}

static int load_fn_row(const char *app, const char *name, uint32_t version, const char *spec_json, void *ud)
{
    struct ctl *c = ud;
    struct ctl_app *a = ctl_find_app(c, app);
    if (!a)
        return 0;
    struct ctl_fn *f = ctl_fn_get_or_add(a, name, c->ka_policy);
    json_error_t jerr;
    json_t *j = json_loads(spec_json, 0, &jerr);
    struct gerr err;
    struct ctl_fver *fv = j ? ctl_fver_new(c, f, version, j, &err) : NULL;
    json_decref(j);
    if (!fv) {
        log_error("control", "cannot load %s.%s v%u: %s", app, name, version, j ? err.msg : jerr.text);
        return 0;
    }
    f->latest = fv;
    kpa_set_window(&f->kpa, ctl_fn_kpa_window_ms(f));
    return 0;
}

static int load_app_row(const char *name, const char *state, double created_at, int nfunctions, void *ud)
{
    struct ctl *c = ud;
    (void)nfunctions;
    struct ctl_app *a = ctl_app_get_or_add(c, name, created_at);
    a->ws = ctl_ws_of_name(c, name);
    a->stopped = !strcmp(state, "stopped");
    return 0;
}

static int recover_call_row(const struct store_call *sc, void *ud)
{
    struct ctl *c = ud;
    struct ctl_fn *f = ctl_find_fn(c, sc->app, sc->function);
    struct gerr err;
    if (!f || f->app->stopped) {
        store_call_finish(c->store, sc->id, "cancelled", NULL, 0, "cancelled", "the app was stopped", wall_s(), NULL, &err);
        return 0;
    }
    struct ctl_fver *fv = ctl_find_version(f, sc->version);
    if (!fv) {
        AUTO_FREE char *text = NULL;
        if (store_function_get_version(c->store, sc->app, sc->function, sc->version, &text, &err) < 0) {
            log_error("control", "recover %s: %s", sc->id, err.msg);
            return 0;
        }
        json_t *j = json_loads(text, 0, NULL);
        fv = j ? ctl_fver_new(c, f, sc->version, j, &err) : NULL;
        json_decref(j);
        if (!fv) {
            store_call_finish(c->store, sc->id, "failed", NULL, 0, "spawn_failed",
                              "the function version could not be restored after a restart", wall_s(), NULL, &err);
            return 0;
        }
    }
    ctl_call_restore(c, fv, sc);
    if (!strcmp(sc->state, "running"))
        store_call_set_pending(c->store, sc->id, sc->attempts, 0, &err);
    return 0;
}

int ctl_recover(struct ctl *c, struct gerr *err)
{
    int r = ctl_ident_load(c, err);
    if (r < 0)
        return gerr_prefix(err, "loading workspaces and tokens");
    if ((r = c->cfg.no_builtin_images ? 0 : ctl_images_builtin(c, err)) < 0)
        return r;
    if ((r = ctl_builder_start(c, err)) < 0)
        return r;
    if ((r = ctl_secrets_load(c, err)) < 0)
        return gerr_prefix(err, "loading secrets");
    ctl_volumes_recover(c);

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
    if ((r = store_keepalive_list(c->store, load_keepalive_row, c, err)) < 0)
        return r;
    if ((r = store_calls_unfinished(c->store, recover_call_row, c, err)) < 0)
        return r;
    if ((r = ctl_schedules_recover(c, err)) < 0)
        return gerr_prefix(err, "loading schedules");
    size_t n = 0;
    ctl_for_each_version(fv, c) {
        n += fv->queued;
        /* Templates died with the earlier daemon: the deployed snapshot functions get
         * theirs again now, as at deploy, not at their first call. */
        if (ctl_fver_is_current(fv))
            sched_snapshot_prepare(c, fv);
    }
    if (n)
        log_info("control", "recovered %zu unfinished calls", n);
    /* What an earlier daemon left beyond the bounds goes now; later, on the tick. */
    list_for_each(a, &c->apps, struct ctl_app, link)
        list_for_each(f, &a->fns, struct ctl_fn, link)
            f->logs_dirty = f->calls_dirty = true;
    ctl_logs_trim(c);
    ctl_calls_trim(c);
    c->last_trim_ms = c->last_ka_save_ms = ev_now_ms(c->loop);
    c->last_flush_ms = mono_ms();
    c->tick_timer = ev_timer_add(c->loop, CTL_TICK_MS, tick, c);
    ctl_sched_mark_all(c);
    sched_kick(c);
    return 0;
}

bool ctl_shutting_down(const struct ctl *c)
{
    return c->shutting_down;
}

int ctl_cancel(struct ctl *c, const char *ws, const char *call_id, struct ctl_call_view *out, struct ctl_error *e)
{
    return ctl_cancel_call(c, ws, call_id, false, out, e);
}

int ctl_cancel_call(struct ctl *c, const char *ws, const char *call_id, bool terminate_container,
                    struct ctl_call_view *out, struct ctl_error *e)
{
    struct ctl_call *call = ctl_call_lookup(c, ws, call_id, e);
    if (!call)
        return -ENOENT;
    if (!ctl_call_state_is_final(call->state)) {
        if (call->state == CTL_CALL_RUNNING)
            sched_cancel_running(c, call, terminate_container);
        ctl_call_finish(c, call, CTL_CALL_CANCELLED, NULL, 0, "cancelled", "the call was cancelled");
        ctl_sched_mark_all(c);
        sched_kick(c);
    }
    ctl_call_view_fill(call, out);
    return 0;
}

/* The grace period is over: whatever still runs goes back to the store as pending (it
 * runs after the restart), and every container is stopped. */
static void shutdown_grace_over(struct ev_loop *loop, void *data)
{
    struct ctl *c = data;
    (void)loop;
    for (size_t b = 0; b < c->calls.nbuckets; b++)
        for (struct hmap_node *n = c->calls.buckets[b]; n; n = n->next) {
            struct ctl_call *call = (struct ctl_call *)n;
            if (call->state == CTL_CALL_RUNNING && call->durable) {
                struct gerr err;
                store_call_set_pending(c->store, call->id, call->attempts > 0 ? call->attempts - 1 : 0, 0, &err);
            }
        }
    sched_stop_all(c);
    sched_drain_check(c);
}

void ctl_shutdown(struct ctl *c, void (*done_cb)(void *ud), void *ud)
{
    c->shutting_down = true;
    ctl_sched_mark_all(c); /* every pass from now on stops idle containers */
    c->shutdown_cb = done_cb;
    c->shutdown_ud = ud;
    /* Sync callers waiting on queued (never started) calls get an answer now. */
    ctl_for_each_version(fv, c) {
        list_for_each_safe(call, &fv->queue, struct ctl_call, qlink) {
            bool last = fv->queued == 1; /* finishing the last one may free fv */
            if (!call->durable)
                ctl_call_finish(c, call, CTL_CALL_CANCELLED, NULL, 0, "shutting_down",
                                "gustd shut down before the call started");
            if (last)
                break;
        }
    }
    /* Blocked queue gets are answered now rather than cut off with their connection. */
    ctl_kv_shutdown(c);
    ev_timer_add(c->loop, c->cfg.stop_grace_ms, shutdown_grace_over, c);
    sched_drain_check(c);
}

void ctl_free(struct ctl *c)
{
    if (!c)
        return;
    ctl_builds_free(c);
    ctl_image_jobs_free(c);
    ctl_builder_stop(c);
    ctl_kv_free(c);
    json_decref(c->vol_last);
    ctl_secrets_free(c);
    cas_close(c->cas);
    c->cas = NULL;
    if (c->tick_timer)
        ev_timer_cancel(c->loop, c->tick_timer);
    ctl_schedules_free(c);
    keepalive_save(c);
    sched_write_rows(c);
    free(c->ctr_rows);
    evict_free(c);
    ctl_logs_free(c);
    ctl_calls_free(c);
    ctl_maps_free(c);
    ctl_snaps_free(c);
    ctl_model_free(c);
    ctl_ident_free(c);
    hmap_free(&c->ctrs);
    free(c);
}
