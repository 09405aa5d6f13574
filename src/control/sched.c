/* Scheduler and autoscaler: places queued calls onto container slots, starts and stops
 * containers within each function's scaling knobs and the worker's capacity, and turns
 * worker events (ready, output, errors, exits) into call state changes. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "cas/cas.h"
#include "control/internal.h"

/* Scale-down and version changes stop idle containers: SIGTERM, then SIGKILL after
 * this; an @exit hook gets 3 s, like a short Lambda extension shutdown. */
#define SCHED_STOP_GRACE_MS 3000
/* Metering records queued before they are written at once whatever their age: a
 * transaction of this many rows is ~1 MiB of records and a few ms of SQLite. */
#define SCHED_ROWS_MAX 4096

/* ---------- capacity ---------- */

/* Picks GPUs for f: the first option in its preference list that has enough free
 * devices. Returns the option index, -1 if none fits now. idx receives indices. */
static int pick_gpus(struct ctl *c, const struct spec_function *f, int *idx, int *n, char *type, size_t type_cap)
{
    const struct worker_inventory *cap = &c->inv;
    for (size_t o = 0; o < f->ngpu_options; o++) {
        int got = 0;
        for (int g = 0; g < cap->ngpus && got < (int)f->gpus[o].count; g++)
            if (!c->gpu_used[g] && !strcmp(cap->gpus[g].type, f->gpus[o].type))
                idx[got++] = g;
        if (got == (int)f->gpus[o].count) {
            *n = got;
            snprintf(type, type_cap, "%s", f->gpus[o].type);
            return (int)o;
        }
    }
    return -1;
}

static int count_gpus_of(struct ctl *c, const char *type, bool free_only)
{
    const struct worker_inventory *cap = &c->inv;
    int n = 0;
    for (int g = 0; g < cap->ngpus; g++)
        if (!strcmp(cap->gpus[g].type, type) && (!free_only || !c->gpu_used[g]))
            n++;
    return n;
}

int sched_fits_total(struct ctl *c, const struct spec_function *f, char *why, size_t why_len)
{
    const struct worker_inventory *cap = &c->inv;
    if (f->cpu_millicores > cap->cpu_millicores) {
        snprintf(why, why_len, "cpu %u millicores is more than the worker has (%u); lower resources.cpu",
                 f->cpu_millicores, cap->cpu_millicores);
        return -1;
    }
    if (f->memory_mib > cap->memory_mib) {
        snprintf(why, why_len, "memory %u MiB is more than the worker has (%llu MiB); lower resources.memory",
                 f->memory_mib, (unsigned long long)cap->memory_mib);
        return -1;
    }
    if (f->ngpu_options == 0)
        return 0;
    for (size_t o = 0; o < f->ngpu_options; o++)
        if (count_gpus_of(c, f->gpus[o].type, false) >= (int)f->gpus[o].count)
            return 0;
    struct buf b = {0};
    buf_printf(&b, "no worker has ");
    for (size_t o = 0; o < f->ngpu_options; o++)
        buf_printf(&b, "%s%u x %s (it has %d)", o ? " or " : "", f->gpus[o].count, f->gpus[o].type,
                   count_gpus_of(c, f->gpus[o].type, false));
    buf_printf(&b, "; ask for fewer GPUs, add a fallback type, or start gustd with --gpus");
    snprintf(why, why_len, "%s", b.data);
    buf_free(&b);
    return -1;
}

/* Reserves the container's resources or explains (in fv->waiting_reason) why not. */
/* Whether one more container of f fits its workspace's quotas; else says which quota
 * it waits for in fv->waiting_reason. */
static bool quota_allows(struct ctl_ws *w, struct ctl_fver *fv)
{
    const struct spec_function *f = &fv->spec;
    const struct ctl_quotas *q = &w->quotas;
    uint32_t gpus = f->ngpu_options ? f->gpus[0].count : 0;
    const char *which = NULL;
    char have[96] = "";
    if (q->containers && w->containers + 1 > q->containers) {
        which = "containers";
        snprintf(have, sizeof have, "%u of %u in use", w->containers, q->containers);
    } else if (q->cpu_millicores && w->cpu_used + f->cpu_millicores > q->cpu_millicores) {
        which = "cpu";
        snprintf(have, sizeof have, "needs %um, %um of %um in use", f->cpu_millicores, w->cpu_used, q->cpu_millicores);
    } else if (q->memory_mib && w->mem_used + f->memory_mib > q->memory_mib) {
        which = "memory";
        snprintf(have, sizeof have, "needs %u MiB, %llu of %llu MiB in use", f->memory_mib,
                 (unsigned long long)w->mem_used, (unsigned long long)q->memory_mib);
    } else if (q->gpus && w->gpus_used + gpus > q->gpus) {
        which = "gpus";
        snprintf(have, sizeof have, "needs %u, %u of %u in use", gpus, w->gpus_used, q->gpus);
    }
    if (!which)
        return true;
    snprintf(fv->waiting_reason, sizeof fv->waiting_reason,
             "workspace %s is at its %s quota (%s); waits for its other containers to stop", w->name, which, have);
    return false;
}

/* Whether the worker's free cpu and memory hold one more container of f. */
static bool worker_fits(const struct ctl *c, const struct spec_function *f)
{
    return c->cpu_used + f->cpu_millicores <= c->inv.cpu_millicores &&
           c->mem_used + f->memory_mib <= c->inv.memory_mib;
}

static bool reserve(struct ctl *c, struct ctl_fver *fv, struct ctl_ctr *k)
{
    const struct worker_inventory *cap = &c->inv;
    const struct spec_function *f = &fv->spec;
    struct ctl_ws *w = fv->fn->app->ws;
    if (w && !quota_allows(w, fv))
        return false;
    if (!worker_fits(c, f)) {
        snprintf(fv->waiting_reason, sizeof fv->waiting_reason,
                 "needs cpu %um + memory %u MiB; worker has %um + %llu MiB free", f->cpu_millicores, f->memory_mib,
                 cap->cpu_millicores - c->cpu_used, (unsigned long long)(cap->memory_mib - c->mem_used));
        return false;
    }
    if (f->ngpu_options) {
        if (pick_gpus(c, f, k->gpu_idx, &k->ngpu, k->gpu_type, sizeof k->gpu_type) < 0) {
            snprintf(fv->waiting_reason, sizeof fv->waiting_reason, "needs %u x %s, worker has %d free",
                     f->gpus[0].count, f->gpus[0].type, count_gpus_of(c, f->gpus[0].type, true));
            return false;
        }
        for (int g = 0; g < k->ngpu; g++) {
            c->gpu_used[k->gpu_idx[g]] = true;
            c->gpu_holder[k->gpu_idx[g]] = k;
        }
    }
    c->cpu_used += f->cpu_millicores;
    c->mem_used += f->memory_mib;
    k->cpu_millicores = f->cpu_millicores;
    k->memory_mib = f->memory_mib;
    if (w) {
        w->containers++;
        w->cpu_used += k->cpu_millicores;
        w->mem_used += k->memory_mib;
        w->gpus_used += (uint32_t)k->ngpu;
    }
    fv->waiting_reason[0] = '\0';
    return true;
}

static void release(struct ctl *c, struct ctl_ctr *k)
{
    assert(c->cpu_used >= k->cpu_millicores && c->mem_used >= k->memory_mib);
    c->cpu_used -= k->cpu_millicores;
    c->mem_used -= k->memory_mib;
    struct ctl_ws *w = k->fv->fn->app->ws;
    if (w) {
        assert(w->containers > 0 && w->cpu_used >= k->cpu_millicores && w->mem_used >= k->memory_mib &&
               w->gpus_used >= (uint32_t)k->ngpu);
        w->containers--;
        w->cpu_used -= k->cpu_millicores;
        w->mem_used -= k->memory_mib;
        w->gpus_used -= (uint32_t)k->ngpu;
    }
    for (int g = 0; g < k->ngpu; g++) {
        c->gpu_used[k->gpu_idx[g]] = false;
        c->gpu_holder[k->gpu_idx[g]] = NULL;
    }
    ctl_sched_room_grew(c);
    k->cpu_millicores = 0;
    k->memory_mib = 0;
    k->ngpu = 0;
}

/* ---------- busy-time accounting ----------
 * On the loop's clock (ev_now_ns): monotonic ns on gustd's loop, virtual time under
 * gust-sim. busy_since_ns 0 means "not busy"; no input starts at a loop time of 0 ns
 * (a real loop's monotonic clock is past boot, and a simulated container is ready only
 * after its cold start, later than virtual time 0). */

static void busy_begin(struct ctl *c, struct ctl_ctr *k)
{
    if (k->inflight == 0)
        k->busy_since_ns = ev_now_ns(c->loop);
}

static void busy_end(struct ctl *c, struct ctl_ctr *k)
{
    if (k->inflight == 0 && k->busy_since_ns) {
        k->busy_ns += ev_now_ns(c->loop) - k->busy_since_ns;
        k->busy_since_ns = 0;
        k->idle_since_ms = ev_now_ms(c->loop);
    }
}

static double busy_seconds(struct ctl *c, const struct ctl_ctr *k)
{
    uint64_t ns = k->busy_ns;
    if (k->busy_since_ns)
        ns += ev_now_ns(c->loop) - k->busy_since_ns;
    return (double)ns / 1e9;
}

/* ---------- metering records ----------
 * Queued (internal.h, sched_write_rows) in the order they happened, so a container's
 * stop is never written before its start. A crash loses what is queued: at most
 * SCHED_ROWS_WAIT_MS plus one tick of container starts and stops, whose usage is
 * then as lost as that of the containers the crash took. */

static struct ctl_ctr_row *row_push(struct ctl *c, enum ctl_ctr_row_kind kind, const char *id)
{
    if (c->nrows == SCHED_ROWS_MAX)
        sched_write_rows(c);
    if (c->nrows == c->rows_cap) {
        c->rows_cap = c->rows_cap ? c->rows_cap * 2 : 64;
        c->ctr_rows = xreallocarray(c->ctr_rows, c->rows_cap, sizeof *c->ctr_rows);
    }
    if (!c->nrows)
        c->rows_since_ms = mono_ms();
    struct ctl_ctr_row *row = &c->ctr_rows[c->nrows++];
    memset(row, 0, sizeof *row);
    row->kind = kind;
    snprintf(row->rec.id, sizeof row->rec.id, "%s", id);
    return row;
}

static int row_write(struct ctl *c, const struct ctl_ctr_row *row, struct gerr *err)
{
    const struct store_container *r = &row->rec;
    switch (row->kind) {
    case CTR_ROW_START: return store_container_start(c->store, r, err);
    case CTR_ROW_READY: return store_container_ready(c->store, r->id, r->ready_at, err);
    case CTR_ROW_STOP:
        return store_container_stop(c->store, r->id, r->stopped_at, r->busy_s, r->inputs_done, r->stop_reason,
                                    &r->usage, err);
    }
    return 0;
}

void sched_write_rows(struct ctl *c)
{
    if (!c->nrows)
        return;
    struct gerr err;
    /* Without a transaction each row still goes, in its own. */
    bool txn = store_begin(c->store, &err) == 0;
    if (!txn)
        log_error("sched", "metering records: %s", err.msg);
    for (size_t i = 0; i < c->nrows; i++)
        if (row_write(c, &c->ctr_rows[i], &err) < 0)
            log_error("sched", "metering record of %s: %s", c->ctr_rows[i].rec.id, err.msg);
    if (txn && store_commit(c->store, &err) < 0)
        log_error("sched", "metering records: %s", err.msg);
    c->nrows = 0;
}

static void row_stop(struct ctl *c, const char *id, double busy_s, uint64_t inputs, const char *reason,
                     const struct store_ctr_usage *u)
{
    struct ctl_ctr_row *row = row_push(c, CTR_ROW_STOP, id);
    row->rec.stopped_at = wall_s();
    row->rec.busy_s = busy_s;
    row->rec.inputs_done = inputs;
    snprintf(row->rec.stop_reason, sizeof row->rec.stop_reason, "%s", reason);
    if (u)
        row->rec.usage = *u;
}

/* Writes the busy time and inputs of containers whose counters moved since they were
 * last written: an idle container's row is already current. */
void sched_flush_usage(struct ctl *c)
{
    sched_write_rows(c);
    struct gerr err;
    bool began = false;
    for (size_t b = 0; b < c->ctrs.nbuckets; b++)
        for (struct hmap_node *n = c->ctrs.buckets[b]; n; n = n->next) {
            struct ctl_ctr *k = (struct ctl_ctr *)n;
            double busy = busy_seconds(c, k);
            if (busy == k->flushed_busy_s && k->inputs_done == k->flushed_inputs)
                continue;
            if (!began) {
                if (store_begin(c->store, &err) < 0) {
                    log_error("sched", "usage flush: %s", err.msg);
                    return;
                }
                began = true;
            }
            if (store_container_update(c->store, k->id, busy, k->inputs_done, &err) < 0) {
                log_error("sched", "usage of %s: %s", k->id, err.msg);
                continue;
            }
            k->flushed_busy_s = busy;
            k->flushed_inputs = k->inputs_done;
        }
    if (began && store_commit(c->store, &err) < 0)
        log_error("sched", "usage flush: %s", err.msg);
}

/* ---------- containers ---------- */

/* Whether k is ready with nothing in flight: what fv->nidle counts. */
static bool ctr_idle(const struct ctl_ctr *k)
{
    return k->state == CTR_READY && k->inflight == 0;
}

/* After a change of k's state, inflight or its version's counts, k having been idle
 * (ctr_idle) or not: keeps its version's idle list and the eviction ranking. */
static void idle_adjust(struct ctl_ctr *k, bool was_idle)
{
    bool idle = ctr_idle(k);
    if (idle && !was_idle)
        evict_idle_add(k);
    else if (!idle && was_idle)
        evict_idle_del(k);
    evict_update(k->fv);
}

/* Whether k took as many inputs as its function's lifetime_inputs allows (Modal's
 * function max_inputs): it takes no more, and stops once they are done. */
static bool ctr_spent(const struct ctl_ctr *k)
{
    uint32_t n = k->fv->spec.lifetime_inputs;
    return n && k->inputs_taken >= n;
}

static struct ctl_slot *slot_find(struct ctl_ctr *k, uint64_t input_id)
{
    for (uint32_t i = 0; i < k->nslots; i++)
        if (k->slots[i].input_id == input_id)
            return &k->slots[i];
    return NULL;
}

static void ctr_forget(struct ctl *c, struct ctl_ctr *k)
{
    ctl_token_ephemeral_drop(c, k->token_id);
    list_remove(&k->link);
    hmap_remove(&c->ctrs, &k->node);
    ctl_volumes_release(c, k, false);
    free(k->slots);
    free(k);
}

/* A start that failed, or a container that never came up, fails the oldest queued call
 * (its retry policy applies) so that a broken function does not restart containers or
 * templates forever. */
static void fail_oldest_queued(struct ctl *c, struct ctl_fver *fv)
{
    struct ctl_call *call = list_first_entry(&fv->queue, struct ctl_call, qlink);
    if (!call || c->shutting_down)
        return;
    call->attempts++;
    ctl_call_failed_attempt(c, call, CTL_CALL_FAILED, "spawn_failed", fv->waiting_reason);
}

/* ---- snapshots ---- */

static void ev_snapshot_state(void *ud, const char *snap_id, enum snapshot_state st, const char *msg)
{
    struct ctl *c = ud;
    struct ctl_snap *s = ctl_snap_by_id(c, snap_id);
    if (!s)
        return;
    if (st == SNAPSHOT_READY) {
        s->state = SNAPSHOT_READY;
        ctl_for_each_version(fv, c)
            if (fv->snap == s) {
                fv->waiting_reason[0] = '\0';
                ctl_sched_mark(fv); /* its starts can go */
            }
        log_info("sched", "snapshot %s ready", snap_id);
        sched_kick(c);
        return;
    }
    /* The worker has let it go (ops.h): the versions that used it say why, and one
     * that never had it ready fails its oldest queued call (a broken init does not
     * retake templates forever); the next start takes a new one. */
    bool never_ready = s->state == SNAPSHOT_TAKING;
    ctl_for_each_version(fv, c) {
        if (fv->snap != s)
            continue;
        ctl_fver_forget_snapshot(fv);
        snprintf(fv->waiting_reason, sizeof fv->waiting_reason, "snapshot failed: %.440s", msg ? msg : "unknown error");
        ctl_sched_mark(fv); /* its next start takes a new one */
        if (never_ready)
            fail_oldest_queued(c, fv); /* may free fv */
    }
    ctl_snap_gone(c, s);
    sched_kick(c);
}

static void ev_snapshot_log(void *ud, const char *snap_id, int stream, const char *line, size_t len)
{
    struct ctl *c = ud;
    struct ctl_snap *s = ctl_snap_by_id(c, snap_id);
    if (!s)
        return;
    /* The init's output goes to the functions of the versions that use the template
     * (one line per function: versions of one function share its log). */
    struct ctl_fn *last = NULL;
    ctl_for_each_version(fv, c)
        if (fv->snap == s && fv->fn != last) {
            ctl_log_push_line(c, fv->fn, snap_id, "", stream, line, len);
            last = fv->fn;
        }
}

/* The container spec of fv (resources, env with secrets, mounts); *env_out is what
 * to free after the start. */
static int version_ctr_spec(struct ctl *c, struct ctl_fver *fv, const char *id, struct ctr_spec *cs,
                            char ***env_out, struct gerr *err)
{
    const struct spec_function *f = &fv->spec;
    char **secret_env = NULL;
    if (ctl_secrets_env(c, fv, &secret_env, err) < 0)
        return -1;
    *env_out = secret_env;
    *cs = (struct ctr_spec){
        .id = id,
        .rootfs = fv->rootfs,
        .host_usr = fv->host_usr,
        .command = f->command,
        .env = secret_env ? secret_env : fv->env,
        .mount_dirs = fv->mount_dirs,
        .mount_paths = f->mount_paths,
        .nmounts = f->nmounts,
        .workdir = fv->workdir,
        .mode = f->mode == SPEC_MODE_RUNNER ? CTR_MODE_RUNNER : CTR_MODE_PER_INPUT,
        .max_inputs = f->max_inputs,
        .cpu_millicores = f->cpu_millicores,
        .cpu_limit_millicores = f->cpu_limit_millicores,
        .memory_mib = f->memory_limit_mib,
        .disk_mib = f->disk_mib,
        .pids_max = f->pids_max,
        .open_files = f->open_files,
        .network = f->network == SPEC_NET_EGRESS ? CTR_NET_EGRESS : CTR_NET_NONE,
        .deny_syscalls = (const char *const *)f->deny_syscalls,
        .ndeny_syscalls = f->ndeny_syscalls,
    };
    return 0;
}

static void snapshot_taking_reason(struct ctl_fver *fv)
{
    snprintf(fv->waiting_reason, sizeof fv->waiting_reason,
             "snapshot: the template %s is running the init (import, enter(snap=True))", fv->snap->id);
}

static void key_field(struct buf *b, const char *name, const char *value)
{
    buf_printf(b, "%s=%s", name, value ? value : "");
    buf_append(b, "", 1);
}

static void key_list(struct buf *b, const char *name, const char *const *v, size_t n)
{
    for (size_t i = 0; v && (n == SIZE_MAX ? v[i] != NULL : i < n); i++)
        key_field(b, name, v[i]);
}

/* The content key of the containers cs describes for workspace ws: the SHA-256 of
 * everything a template's init can observe -- the root filesystem (a content-named
 * image), the command, the environment with its secrets' values, the mounted trees
 * (content-named), the working directory, the limits and the sandbox's rules. Not
 * the names of the app and function: the same code deployed again, or under another
 * app of the same workspace, inits the same. The workspace is in it: no template is
 * shared across workspaces, whatever their code. */
static void snapshot_key(const char *ws, const struct ctr_spec *cs, char key[CAS_HEX_LEN + 1])
{
    struct buf b = {0};
    key_field(&b, "workspace", ws);
    key_field(&b, "rootfs", cs->rootfs);
    buf_printf(&b, "host_usr=%d mode=%d max_inputs=%u cpu=%u cpu_limit=%u memory=%u disk=%u pids=%u files=%u net=%d",
               cs->host_usr, (int)cs->mode, cs->max_inputs, cs->cpu_millicores, cs->cpu_limit_millicores,
               cs->memory_mib, cs->disk_mib, cs->pids_max, cs->open_files, (int)cs->network);
    buf_append(&b, "", 1);
    key_list(&b, "argv", (const char *const *)cs->command, SIZE_MAX);
    key_list(&b, "env", (const char *const *)cs->env, SIZE_MAX);
    key_field(&b, "workdir", cs->workdir);
    key_list(&b, "mount_dir", (const char *const *)cs->mount_dirs, cs->nmounts);
    key_list(&b, "mount_path", (const char *const *)cs->mount_paths, cs->nmounts);
    key_list(&b, "deny", cs->deny_syscalls, cs->ndeny_syscalls);
    struct cas_digest d;
    cas_digest_of(b.data, b.len, &d);
    cas_digest_hex(&d, key);
    buf_free(&b);
}

int sched_snapshot_prepare(struct ctl *c, struct ctl_fver *fv)
{
    if (!fv->spec.snapshot || fv->snap)
        return 0;
    char id[64] = "tp-";
    random_id(id + 3, 12);
    struct ctr_spec cs;
    char **env = NULL;
    struct gerr err;
    int r = version_ctr_spec(c, fv, id, &cs, &env, &err);
    if (r == 0) {
        char ws[CTL_WS_NAME_MAX + 1], key[CAS_HEX_LEN + 1];
        ctl_ws_of(fv->fn->app->name, ws);
        snapshot_key(ws, &cs, key);
        struct ctl_snap *s = ctl_snap_by_key(c, key);
        if (s) {
            ctl_snap_attach(fv, s);
            log_info("sched", "%s.%s v%u: uses snapshot %s (%s, same content)", fv->fn->app->name, fv->fn->name,
                     fv->version, s->id, s->state == SNAPSHOT_READY ? "ready" : "being taken");
        } else if ((r = c->wops->snapshot_take(c->worker, &cs, &err)) == 0) {
            ctl_snap_new(c, fv, key, id);
            log_info("sched", "%s.%s v%u: taking snapshot %s", fv->fn->app->name, fv->fn->name, fv->version, id);
        }
    }
    free(env);
    if (r < 0) {
        log_error("sched", "snapshot for %s.%s: %s", fv->fn->app->name, fv->fn->name, err.msg);
        snprintf(fv->waiting_reason, sizeof fv->waiting_reason, "snapshot cannot start: %.400s", err.msg);
        return r;
    }
    if (fv->snap->state != SNAPSHOT_READY)
        snapshot_taking_reason(fv);
    return 0;
}

/* Whether fv's snapshot can be restored now; starts taking one when there is none
 * (the scheduler is kicked when it is ready). */
static bool snapshot_ready(struct ctl *c, struct ctl_fver *fv)
{
    if (!fv->snap && sched_snapshot_prepare(c, fv) < 0) {
        fail_oldest_queued(c, fv);
        return false;
    }
    if (fv->snap->state == SNAPSHOT_READY)
        return true;
    snapshot_taking_reason(fv);
    return false;
}

static void record_container_start(struct ctl *c, struct ctl_ctr *k)
{
    struct ctl_fver *fv = k->fv;
    struct store_container *sc = &row_push(c, CTR_ROW_START, k->id)->rec;
    snprintf(sc->app, sizeof sc->app, "%s", fv->fn->app->name);
    snprintf(sc->function, sizeof sc->function, "%s", fv->fn->name);
    sc->version = fv->version;
    sc->cpu_millicores = k->cpu_millicores;
    sc->memory_mib = k->memory_mib;
    snprintf(sc->gpu_type, sizeof sc->gpu_type, "%s", k->ngpu ? k->gpu_type : "");
    sc->gpu_count = (uint32_t)k->ngpu;
    sc->started_at = k->started_at;
}

/* Starts a container of fv; NULL when it did not fit or failed (waiting_reason says
 * why; *no_room, when no_room is not NULL: because the worker's capacity or a quota
 * did not hold it). */
static struct ctl_ctr *start_container(struct ctl *c, struct ctl_fver *fv, bool *no_room)
{
    if (no_room)
        *no_room = false;
    if (fv->spec.snapshot && !snapshot_ready(c, fv))
        return NULL;
    struct ctl_ctr *k = xcalloc(1, sizeof *k);
    list_init(&k->link);
    list_init(&k->idle_link);
    if (!reserve(c, fv, k)) {
        free(k);
        if (no_room)
            *no_room = true;
        return NULL;
    }
    const struct spec_function *f = &fv->spec;
    k->fv = fv;
    k->ctl = c;
    memcpy(k->id, "ct-", 3);
    random_id(k->id + 3, 12);
    k->nslots = f->max_inputs;
    k->slots = xcalloc(k->nslots, sizeof *k->slots);
    struct gerr err;
    char **secret_env = NULL;
    struct ctr_spec cs;
    if (version_ctr_spec(c, fv, k->id, &cs, &secret_env, &err) < 0) {
        log_error("sched", "start container for %s.%s: %s", fv->fn->app->name, fv->fn->name, err.msg);
        snprintf(fv->waiting_reason, sizeof fv->waiting_reason, "container cannot start: %.400s", err.msg);
        release(c, k);
        free(k->slots);
        free(k);
        return NULL;
    }
    AUTO_FREE char **env_to_free = secret_env;
    if (ctl_volumes_for_start(c, k, f, &cs, &err) < 0) {
        log_error("sched", "start container for %s.%s: %s", fv->fn->app->name, fv->fn->name, err.msg);
        snprintf(fv->waiting_reason, sizeof fv->waiting_reason, "container cannot start: %.400s", err.msg);
        ctl_volumes_release(c, k, false);
        release(c, k);
        free(k->slots);
        free(k);
        fail_oldest_queued(c, fv);
        return NULL;
    }
    /* Code inside calls other functions of its workspace (invoker), with a token that
     * lives as long as the container (dropped at its exit). */
    char ws[CTL_WS_NAME_MAX + 1], token[CTL_TOKEN_LEN + 1];
    ctl_ws_of(fv->fn->app->name, ws);
    if (ctl_token_ephemeral(c, ws, k->id, token, k->token_id) == 0)
        cs.api_token = token;
    else
        log_warn("sched", "%s: no API token for it (calls from inside will be refused)", k->id);
    cs.ngpus = k->ngpu;
    for (int g = 0; g < k->ngpu; g++)
        cs.gpu_indices[g] = k->gpu_idx[g];
    k->state = CTR_STARTING;
    k->started_at = wall_s();
    k->start_ns = mono_ns();
    k->seq = ++c->ctr_seq;
    list_push_front(&fv->ctrs, &k->link);
    ctl_sched_mark(fv);
    hmap_insert(&c->ctrs, &k->node, hmap_hash_str(k->id));
    fv->nstarting++;
    metrics_ctr_started(fv->fn);
    evict_update(fv);
    record_container_start(c, k);
    int sr = -ENOTSUP;
    if (fv->spec.snapshot && fv->snap && fv->snap->state == SNAPSHOT_READY) {
        fv->snap->restores++;
        sr = c->wops->snapshot_restore(c->worker, fv->snap->id, &cs, &err);
        k->from_snapshot = sr == 0;
        if (sr == -ENOTSUP)
            log_info("sched", "%s: %s; starting it from scratch", k->id, err.msg);
    }
    if (sr == -ENOTSUP)
        sr = c->wops->start(c->worker, &cs, &err);
    explicit_bzero(token, sizeof token);
    if (sr < 0) {
        log_error("sched", "start container for %s.%s: %s", fv->fn->app->name, fv->fn->name, err.msg);
        snprintf(fv->waiting_reason, sizeof fv->waiting_reason, "container failed to start: %.400s", err.msg);
        fv->nstarting--;
        release(c, k);
        row_stop(c, k->id, 0, 0, "start_failed", NULL);
        ctr_forget(c, k);
        evict_update(fv);
        /* A start that fails synchronously would fail again. */
        fail_oldest_queued(c, fv);
        return NULL;
    }
    log_debug("sched", "starting %s for %s.%s v%u", k->id, fv->fn->app->name, fv->fn->name, fv->version);
    return k;
}

/* A container that was stopping exited: what it held is no longer on its way back. */
static void stopping_done(struct ctl *c, const struct ctl_ctr *k)
{
    assert(c->nstopping > 0 && c->stopping_cpu >= k->cpu_millicores && c->stopping_mem >= k->memory_mib);
    c->stopping_cpu -= k->cpu_millicores;
    c->stopping_mem -= k->memory_mib;
    c->nstopping--;
}

/* Takes k out of its version's live counts (and the eviction ranking): CTR_STOPPING. */
static void leave_live(struct ctl_ctr *k)
{
    bool was_idle = ctr_idle(k);
    if (k->state == CTR_STARTING)
        k->fv->nstarting--;
    else if (k->state == CTR_READY)
        k->fv->nready--;
    k->state = CTR_STOPPING;
    idle_adjust(k, was_idle);
}

/* Asks the worker to stop k, which left the live counts (leave_live): what it holds is
 * on its way back, and its version may start another (a pass visits it). */
static void stop_asked(struct ctl *c, struct ctl_ctr *k, bool hard)
{
    c->stopping_cpu += k->cpu_millicores;
    c->stopping_mem += k->memory_mib;
    c->nstopping++;
    ctl_sched_mark(k->fv);
    ctl_sched_room_grew(c);
    if (hard)
        c->wops->kill(c->worker, k->id);
    else
        c->wops->stop(c->worker, k->id, SCHED_STOP_GRACE_MS);
}

static void stop_container(struct ctl *c, struct ctl_ctr *k, bool hard)
{
    if (k->state == CTR_STOPPING)
        return;
    leave_live(k);
    stop_asked(c, k, hard);
}

void sched_stop_all(struct ctl *c)
{
    ctl_for_each_version(fv, c)
        list_for_each(k, &fv->ctrs, struct ctl_ctr, link)
            stop_container(c, k, false);
}

size_t sched_live_containers(struct ctl *c)
{
    return c->ctrs.count;
}

/* ---------- dispatch ---------- */

/* ---------- the autoscaler's count (kpa.c) ---------- */

/* The containers fn's autoscaler wants for its latest version now (kpa.c; 0 when its
 * stable window holds no work). A decision: the panic state may move. */
static uint32_t kpa_wanted(struct ctl *c, struct ctl_fn *fn)
{
    const struct ctl_fver *fv = fn->latest;
    return kpa_decide(&fn->kpa, ctl_inputs_per_ctr(&fv->spec), fv->nready, ev_now_ms(c->loop), NULL);
}

/* When to ask fn's autoscaler again if no call event comes first (UINT64_MAX: at the
 * next event): at Knative's tick while its count holds containers that the keep-alive
 * alone would let go (`holds`: the stable average falls as time passes), or while its
 * work is more than its live containers hold at target inputs each and they may take
 * up to max_inputs (the averages rise while the work stays, and no event says so).
 * With target_inputs = max_inputs queued calls start containers and each event
 * decides again, so a busy function costs no timer. */
/* Whether f's containers may take more than the target the autoscaler sizes for. */
static bool kpa_overpacks(const struct spec_function *f)
{
    return f->target_inputs && f->target_inputs < f->max_inputs;
}

static uint64_t kpa_next(const struct ctl_fn *fn, bool holds, uint32_t live, uint64_t now)
{
    const struct spec_function *f = &fn->latest->spec;
    if (!holds && !kpa_overpacks(f))
        return UINT64_MAX;
    bool may_grow = ctl_fn_work(fn) > (uint64_t)ctl_inputs_per_ctr(f) * live;
    return holds || may_grow ? now + kpa_recheck_ms(&fn->kpa) : UINT64_MAX;
}

/* The autoscaler's count where it can change what keep-alive does: when keep-alive
 * alone would stop containers (it is then a floor), or when containers may take more
 * than their target (it may then start some). Else 0, and no decision is paid for:
 * the next one integrates what passed. A count of one is no floor: the stable window
 * brings a function down to one container, and whether that one stays is the
 * keep-alive policy's call (scale to zero: its histories know this function's idle
 * times, an average of the last minute does not). */
static uint32_t kpa_floor(struct ctl *c, struct ctl_fn *fn, uint32_t ka_want, uint32_t live)
{
    if (live <= ka_want && !kpa_overpacks(&fn->latest->spec))
        return 0;
    uint32_t n = kpa_wanted(c, fn);
    return n > 1 ? n : 0;
}

static void sched_call_timeout(struct ev_loop *loop, void *data);

static void dispatch(struct ctl *c, struct ctl_fver *fv)
{
    /* With no target_inputs below max_inputs the target is max_inputs: packing alone. */
    uint32_t target = kpa_overpacks(&fv->spec) ? fv->spec.target_inputs : UINT32_MAX;
    while (fv->queued) {
        /* Pack up to the target: the ready container with the most inputs below its
         * target keeps others idle so they can scale down. Past every container's
         * target (a burst the autoscaler is catching up with), the least loaded one
         * with room up to max_inputs takes it, spreading the excess. */
        struct ctl_ctr *best = NULL, *over = NULL;
        if (target == UINT32_MAX) {
            list_for_each(k, &fv->ctrs, struct ctl_ctr, link)
                if (k->state == CTR_READY && k->inflight < k->nslots && !ctr_spent(k) &&
                    (!best || k->inflight > best->inflight))
                    best = k;
        } else {
            list_for_each(k, &fv->ctrs, struct ctl_ctr, link) {
                if (k->state != CTR_READY || k->inflight >= k->nslots || ctr_spent(k))
                    continue;
                if (k->inflight >= target) {
                    if (!over || k->inflight < over->inflight)
                        over = k;
                } else if (!best || k->inflight > best->inflight) {
                    best = k;
                }
            }
            if (!best)
                best = over;
        }
        if (!best)
            return;
        struct ctl_slot *slot = slot_find(best, 0);
        assert(slot);
        struct ctl_call *call = ctl_queue_pop(fv);
        ctl_call_start(c, call, best);
        slot->input_id = call->input_id;
        slot->call = call;
        busy_begin(c, best);
        bool was_idle = ctr_idle(best);
        best->inflight++;
        best->inputs_taken++;
        idle_adjust(best, was_idle);
        if (fv->spec.timeout_s)
            call->timeout_timer = ev_timer_add(c->loop, (uint64_t)fv->spec.timeout_s * 1000, sched_call_timeout, call);
        struct gerr err;
        if (c->wops->send_input(c->worker, best->id, call->input_id, call->id, call->input, call->input_len,
                                &err) < 0) {
            /* The container is going away; its exit event requeues what it held. */
            log_warn("sched", "send input to %s: %s", best->id, err.msg);
            stop_container(c, best, true);
        } else {
            ctl_stream_flush(c, call); /* input stream bytes that came while it was pending */
        }
    }
}

static uint32_t idle_ready(const struct ctl_fver *fv)
{
    return fv->nidle;
}

/* ---------- eviction ---------- */

/* What a container of f needs, against what is free plus what is on its way to being
 * freed (containers stopping, victims chosen). */
struct room {
    uint64_t need_cpu, need_mem, cap_cpu, cap_mem;
    int gpus[SPEC_MAX_GPU_OPTIONS]; /* per GPU option of f: free + freed GPUs of its type */
};

static bool room_gpus_fit(const struct spec_function *f, const struct room *r)
{
    if (!f->ngpu_options)
        return true;
    for (size_t o = 0; o < f->ngpu_options; o++)
        if (r->gpus[o] >= (int)f->gpus[o].count)
            return true;
    return false;
}

static void room_add(const struct spec_function *f, struct room *r, const struct ctl_ctr *k)
{
    r->cap_cpu += k->cpu_millicores;
    r->cap_mem += k->memory_mib;
    for (size_t o = 0; o < f->ngpu_options; o++)
        r->gpus[o] += evict_gpus_for(f, k, o);
}

/* Before a container of fv with queued calls starts: when the worker's free cpu,
 * memory or GPUs do not hold it, stops idle containers of any function (any
 * workspace: they hold nothing but capacity, and quotas are checked separately) until
 * what is stopping does. Returns whether to try the start now (it fits, or eviction
 * cannot make it fit: the start then says what it needs); false when it waits for
 * stopping containers to exit (fv->waiting_reason says so; their exits kick the
 * scheduler). */
static bool make_room(struct ctl *c, struct ctl_fver *fv)
{
    const struct spec_function *f = &fv->spec;
    struct ctl_ws *w = fv->fn->app->ws;
    struct room r = {
        .need_cpu = (uint64_t)c->cpu_used + f->cpu_millicores,
        .need_mem = c->mem_used + f->memory_mib,
        .cap_cpu = c->inv.cpu_millicores,
        .cap_mem = c->inv.memory_mib,
    };
    for (size_t o = 0; o < f->ngpu_options; o++)
        r.gpus[o] = count_gpus_of(c, f->gpus[o].type, true);
    bool cpu_mem_fit = r.need_cpu <= r.cap_cpu && r.need_mem <= r.cap_mem;
    if ((cpu_mem_fit && room_gpus_fit(f, &r)) || (w && !quota_allows(w, fv)))
        return true;
    /* What containers already stopping will free, less what this pass counted on. */
    uint32_t stopping = c->nstopping;
    r.cap_cpu += c->stopping_cpu > c->claimed_cpu ? c->stopping_cpu - c->claimed_cpu : 0;
    r.cap_mem += c->stopping_mem > c->claimed_mem ? c->stopping_mem - c->claimed_mem : 0;
    for (int g = 0; g < c->inv.ngpus; g++) {
        const struct ctl_ctr *k = c->gpu_holder[g];
        if (k && k->state == CTR_STOPPING)
            for (size_t o = 0; o < f->ngpu_options; o++)
                r.gpus[o] += !strcmp(c->inv.gpus[g].type, f->gpus[o].type);
    }
    for (size_t o = 0; o < f->ngpu_options; o++)
        r.gpus[o] = r.gpus[o] > (int)c->claimed_gpus ? r.gpus[o] - (int)c->claimed_gpus : 0;
    /* Choose victims without stopping them yet: if all the evictable ones together do
     * not make room, stopping some would only cost their functions a cold start. Once
     * cpu and memory suffice, only GPU holders help. What all of them hold is known
     * (evict.c): when that is not enough cpu or memory, choosing them one by one would
     * take every one, in vain. */
    if (r.need_cpu > r.cap_cpu + c->ev_cpu || r.need_mem > r.cap_mem + c->ev_mem)
        return true;
    uint64_t now = ev_now_ms(c->loop);
    AUTO_FREE struct ctl_ctr **victims = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        cpu_mem_fit = r.need_cpu <= r.cap_cpu && r.need_mem <= r.cap_mem;
        if (cpu_mem_fit && room_gpus_fit(f, &r))
            break;
        struct ctl_ctr *k = evict_victim(c, now, cpu_mem_fit ? f : NULL);
        if (!k)
            break;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            victims = xreallocarray(victims, cap, sizeof *victims);
        }
        /* Taken out of the ranking (and of its version's counts) for the next pick. */
        leave_live(k);
        victims[n++] = k;
        room_add(f, &r, k);
    }
    if (!(r.need_cpu <= r.cap_cpu && r.need_mem <= r.cap_mem && room_gpus_fit(f, &r))) {
        for (size_t i = 0; i < n; i++) {
            victims[i]->state = CTR_READY;
            victims[i]->fv->nready++;
            idle_adjust(victims[i], false);
        }
        return true;
    }
    for (size_t i = 0; i < n; i++) {
        struct ctl_ctr *k = victims[i];
        log_info("sched", "evicting idle %s of %s.%s for %s.%s", k->id, k->fv->fn->app->name, k->fv->fn->name,
                 fv->fn->app->name, fv->fn->name);
        k->evicted = true;
        k->fv->fn->evictions++;
        stop_asked(c, k, false);
    }
    c->claimed_cpu += f->cpu_millicores;
    c->claimed_mem += f->memory_mib;
    c->claimed_gpus += f->ngpu_options ? f->gpus[0].count : 0;
    char gpus[64] = "";
    if (f->ngpu_options)
        snprintf(gpus, sizeof gpus, " + %u x %s", f->gpus[0].count, f->gpus[0].type);
    if (n)
        snprintf(fv->waiting_reason, sizeof fv->waiting_reason,
                 "waiting for %zu evicted idle container%s to stop (needs cpu %um + memory %u MiB%s)", n,
                 n == 1 ? "" : "s", f->cpu_millicores, f->memory_mib, gpus);
    else
        snprintf(fv->waiting_reason, sizeof fv->waiting_reason,
                 "waiting for %u stopping container%s to free cpu %um + memory %u MiB%s", stopping,
                 stopping == 1 ? "" : "s", f->cpu_millicores, f->memory_mib, gpus);
    return false;
}

/* Starts what fv's queue, min_containers and buffer_containers ask for. Returns
 * whether it tried to start a container and could not, and what could change that
 * (internal.h, scheduling sets). */
static enum ctl_blocked autoscale(struct ctl *c, struct ctl_fver *fv)
{
    const struct spec_function *f = &fv->spec;
    bool current = ctl_fver_is_current(fv);
    if (c->shutting_down || fv->fn->app->stopped)
        return CTL_UNBLOCKED;
    uint32_t live = fv->nstarting + fv->nready;
    uint32_t per = ctl_inputs_per_ctr(f);
    uint32_t demand = (uint32_t)((fv->queued + per - 1) / per);
    int64_t want_new = (int64_t)demand - fv->nstarting;
    if (current) {
        uint32_t spare = idle_ready(fv) + (fv->nstarting > demand ? fv->nstarting - demand : 0);
        if (spare < f->buffer_containers)
            want_new += f->buffer_containers - spare;
        if ((int64_t)live + want_new < (int64_t)f->min_containers)
            want_new = (int64_t)f->min_containers - live;
    }
    if (current && kpa_overpacks(f) && (fv->queued || fv->running)) {
        /* The autoscaler's count from the work averaged over its windows (kpa.c): more
         * than the queue asks for when its containers took more than their target
         * (dispatch fills them to max_inputs in a burst). With target_inputs =
         * max_inputs no container takes more than its target, so the queued calls are
         * exactly the work beyond what the live containers hold: the queue's count is
         * the windows' at this instant, sooner than any average, and the windows only
         * hold containers on the way down (keep-alive, below). */
        uint32_t want = kpa_wanted(c, fv->fn);
        if ((int64_t)want - (int64_t)live > want_new)
            want_new = (int64_t)want - (int64_t)live;
    }
    if (want_new <= 0) {
        if (!fv->queued)
            fv->waiting_reason[0] = '\0';
        return CTL_UNBLOCKED;
    }
    if ((int64_t)live + want_new > (int64_t)f->max_containers)
        want_new = (int64_t)f->max_containers - live;
    for (int64_t i = 0; i < want_new; i++) {
        /* Only queued work evicts: min, buffer and pre-warm containers are guesses. */
        if (fv->queued && !make_room(c, fv))
            return CTL_BLOCKED; /* evictions or stops to wait for: this pass's claims */
        bool no_room;
        if (!start_container(c, fv, &no_room))
            return no_room ? CTL_BLOCKED_ON_ROOM : CTL_BLOCKED; /* waiting_reason says why */
    }
    return CTL_UNBLOCKED;
}

/* One pass: visits the versions marked since the last pass and the blocked ones, in
 * walk order (internal.h, scheduling sets); any other version's visit would do
 * nothing. */
static void sched_run(struct ev_loop *loop, void *data)
{
    struct ctl *c = data;
    (void)loop;
    c->sched_pending = false;
    /* What the last pass claimed of stopping containers is free to claim again. */
    if (c->claimed_cpu || c->claimed_mem || c->claimed_gpus)
        ctl_sched_room_grew(c);
    c->claimed_cpu = 0;
    c->claimed_mem = 0;
    c->claimed_gpus = 0;
    ctl_sched_pass_begin(c);
    for (struct ctl_fver *fv; (fv = ctl_sched_pass_next(c));) {
        c->sched_visiting = fv;
        if (!c->shutting_down)
            dispatch(c, fv);
        ctl_sched_set_blocked(fv, autoscale(c, fv));
        if (!ctl_fver_is_current(fv) || c->shutting_down) {
            /* Old versions and stopped apps: idle containers go now. */
            list_for_each(k, &fv->ctrs, struct ctl_ctr, link)
                if ((k->state == CTR_READY && k->inflight == 0 && !fv->queued) ||
                    (fv->fn->app->stopped && k->state != CTR_STOPPING))
                    stop_container(c, k, false);
        }
        c->sched_visiting = NULL;
        ctl_fver_maybe_free(c, fv);
    }
    if (c->shutting_down)
        sched_drain_check(c);
}

void sched_kick(struct ctl *c)
{
    if (c->sched_pending)
        return;
    c->sched_pending = true;
    ev_defer(c->loop, sched_run, c);
}

/* ---------- keep-alive: scale-down and pre-warm ----------
 * Each function has one timer, armed at the next moment its keep-alive decision can
 * change (keepalive.c's ka_wanted, or the earliest scaledown_window end); work arriving
 * or ending re-arms it (sched_keepalive_kick). No pass walks every function. */

static void keepalive_fire(struct ev_loop *loop, void *data);

/* Makes fn's keep-alive pass run at `at` (ms on the loop's clock) or sooner. */
static void keepalive_arm(struct ctl *c, struct ctl_fn *fn, uint64_t at)
{
    if (at == UINT64_MAX || (fn->ka_timer && fn->ka_timer_at <= at))
        return;
    if (fn->ka_timer)
        ev_timer_cancel(c->loop, fn->ka_timer);
    uint64_t now = ev_now_ms(c->loop);
    fn->ka_timer_at = at > now ? at : now;
    fn->ka_timer = ev_timer_add(c->loop, fn->ka_timer_at - now, keepalive_fire, fn);
}

/* fn's autoscaler wants more containers than its latest version has while it has
 * work: the averages rose with no call event to say so. A pass starts them. */
static void kpa_scale_up(struct ctl *c, struct ctl_fver *fv, uint32_t wanted)
{
    if (wanted > fv->nstarting + fv->nready && (fv->queued || fv->running)) {
        ctl_sched_mark(fv);
        sched_kick(c);
    }
}

/* An explicit scaledown_window: each idle container goes when it has been idle that
 * long, but never below what the autoscaler wants (its stable window is at most this
 * one, ctl_fn_kpa_window_ms, so that count comes down to the work's within it).
 * Returns when to look again. */
static uint64_t window_pass(struct ctl *c, struct ctl_fver *fv, uint64_t now)
{
    const struct spec_function *s = &fv->spec;
    uint64_t window = (uint64_t)s->scaledown_window_s * 1000, next = UINT64_MAX;
    uint32_t live = fv->nstarting + fv->nready, idle = idle_ready(fv);
    uint32_t floor = kpa_floor(c, fv->fn, 0, live);
    bool held = false;
    list_for_each(k, &fv->ctrs, struct ctl_ctr, link) {
        if (k->state != CTR_READY || k->inflight)
            continue;
        if (now - k->idle_since_ms < window) {
            if (k->idle_since_ms + window < next)
                next = k->idle_since_ms + window;
            continue;
        }
        if (live <= s->min_containers || idle <= s->buffer_containers)
            continue;
        if (live <= floor) {
            held = true;
            continue;
        }
        log_debug("sched", "scaling down idle %s", k->id);
        stop_container(c, k, false);
        live--;
        idle--;
    }
    kpa_scale_up(c, fv, floor);
    uint64_t again = kpa_next(fv->fn, held, live, now);
    return again < next ? again : next;
}

/* Brings the current version's containers to what the keep-alive policy wants now, and
 * never below what the autoscaler wants (kpa.c): idle containers above both stop (the
 * longest idle first: dispatch packs onto the others), and levels whose pre-warm point
 * came since the last pass get a container when fewer are live than wanted and
 * nothing is queued (guesses: they never evict, and stop at the first that does not
 * fit). Never below min_containers or buffer_containers. Re-arms the function's timer. */
static void keepalive_pass(struct ctl *c, struct ctl_fn *fn)
{
    struct ctl_fver *fv = fn->latest;
    if (!fv || c->shutting_down || fn->app->stopped)
        return;
    uint64_t now = ev_now_ms(c->loop), next;
    if (fv->spec.scaledown_window_s) {
        keepalive_arm(c, fn, window_pass(c, fv, now));
        return;
    }
    uint32_t live = fv->nstarting + fv->nready;
    uint32_t ka_want = ka_wanted(&fn->ka, now, &next);
    uint32_t floor = kpa_floor(c, fn, ka_want, live);
    uint32_t want = floor > ka_want ? floor : ka_want;
    uint32_t due = ka_prewarms_due(&fn->ka, fn->ka_pass_ms, now);
    fn->ka_pass_ms = now;
    if (!fv->queued) {
        const struct spec_function *s = &fv->spec;
        uint32_t idle = idle_ready(fv);
        while (live > want && live > s->min_containers && idle > s->buffer_containers) {
            struct ctl_ctr *k = evict_longest_idle(fv);
            if (!k)
                break;
            log_debug("sched", "scaling down idle %s", k->id);
            stop_container(c, k, false);
            live--;
            idle--;
        }
        for (; due && live < want && live < s->max_containers; live++, due--) {
            struct ctl_ctr *k = start_container(c, fv, NULL);
            if (!k)
                break;
            k->prewarm = true;
            fn->prewarms++;
            log_debug("sched", "pre-warming %s for %s.%s", k->id, fn->app->name, fn->name);
        }
    }
    kpa_scale_up(c, fv, floor);
    uint64_t again = kpa_next(fn, floor > ka_want && live > ka_want, live, now);
    keepalive_arm(c, fn, again < next ? again : next);
}

static void keepalive_fire(struct ev_loop *loop, void *data)
{
    struct ctl_fn *fn = data;
    (void)loop;
    fn->ka_timer = 0;
    keepalive_pass(fn->app->ctl, fn);
}

void sched_keepalive_kick(struct ctl *c, struct ctl_fn *fn)
{
    struct ctl_fver *fv = fn->latest;
    evict_update_fn(fn); /* its predictions moved with its level */
    if (!fv || c->shutting_down)
        return;
    uint64_t now = ev_now_ms(c->loop), next = UINT64_MAX;
    uint32_t live = fv->nstarting + fv->nready;
    if (fv->spec.scaledown_window_s) {
        /* A container going idle ends its window scaledown_window_s from now at the
         * earliest. */
        uint64_t at = now + (uint64_t)fv->spec.scaledown_window_s * 1000, again = kpa_next(fn, false, live, now);
        keepalive_arm(c, fn, again < at ? again : at);
        return;
    }
    /* A pass once the event's callback is over (its container is idle by then) when the
     * count may have to move now; else the timer at the next change. */
    uint32_t ka_want = ka_wanted(&fn->ka, now, &next);
    if (live <= ka_want && !kpa_overpacks(&fv->spec)) {
        /* The autoscaler's count cannot change what happens (kpa_floor): this event
         * pays for no decision. */
        keepalive_arm(c, fn, ka_want != live ? now : next);
        return;
    }
    uint32_t floor = kpa_floor(c, fn, ka_want, live);
    uint32_t want = floor > ka_want ? floor : ka_want;
    uint64_t again = kpa_next(fn, floor > ka_want && live > ka_want, live, now);
    keepalive_arm(c, fn, want != live ? now : again < next ? again : next);
}

/* Periodic: a scheduling pass (keep-alive has its own timers). */
void sched_tick(struct ctl *c)
{
    sched_kick(c);
}

/* ---------- timeouts and cancellation ---------- */

static void cancel_grace_over(struct ev_loop *loop, void *data)
{
    struct ctl_ctr *k = data;
    (void)loop;
    k->kill_timer = 0;
    for (uint32_t i = 0; i < k->nslots; i++)
        if (k->slots[i].input_id && !k->slots[i].call) {
            log_warn("sched", "%s did not give up a cancelled input in time; killing it", k->id);
            k->ctl->wops->kill(k->ctl->worker, k->id);
            return;
        }
}

void sched_cancel_running(struct ctl *c, struct ctl_call *call, bool terminate)
{
    struct ctl_ctr *k = call->ctr;
    if (!k)
        return;
    struct ctl_slot *slot = slot_find(k, call->input_id);
    if (slot)
        slot->call = NULL;
    call->ctr = NULL;
    if (terminate) {
        stop_container(c, k, true);
        return;
    }
    /* A runner serves other inputs beside this one (max_inputs > 1, a web endpoint's
     * other requests): it is asked to drop this one and killed only if it has not
     * within the grace, as gust-init's per-input mode is. */
    c->wops->cancel_input(c->worker, k->id, call->input_id);
    if (!k->kill_timer)
        k->kill_timer = ev_timer_add(c->loop, SCHED_CANCEL_GRACE_MS, cancel_grace_over, k);
}

static void sched_call_timeout(struct ev_loop *loop, void *data)
{
    struct ctl_call *call = data;
    struct ctl *c = call->ctl;
    (void)loop;
    call->timeout_timer = 0;
    if (call->state != CTL_CALL_RUNNING)
        return;
    char msg[160];
    snprintf(msg, sizeof msg, "the input ran longer than the function's timeout of %us", call->fv->spec.timeout_s);
    ctl_sched_mark(call->fv);
    sched_cancel_running(c, call, false);
    ctl_call_failed_attempt(c, call, CTL_CALL_TIMED_OUT, "timeout", msg);
    sched_kick(c);
}

/* ---------- worker events ---------- */

static void ev_ready(void *ud, const char *ctr_id)
{
    struct ctl *c = ud;
    struct ctl_ctr *k = ctl_find_ctr(c, ctr_id);
    if (!k || k->state != CTR_STARTING)
        return;
    k->state = CTR_READY;
    k->fv->nstarting--;
    k->fv->nready++;
    k->ready_at = wall_s();
    k->ready_ns = mono_ns();
    /* How it started, for the timelines of the calls it takes (once per container). */
    struct ctr_info info;
    if (c->wops->info(c->worker, k->id, &info) == 0) {
        const struct sandbox_timing *t = &info.timing;
        uint64_t ns[7] = {t->cgroups_ns, t->clone_ns,   t->network_ns, t->mounts_ns,
                          t->userns_ns,  t->security_ns, t->exec_ns};
        for (size_t i = 0; i < ARRAY_LEN(ns); i++)
            k->breakdown_us[i] = ns[i] / 1000 > UINT32_MAX ? UINT32_MAX : (uint32_t)(ns[i] / 1000);
    }
    k->idle_since_ms = ev_now_ms(c->loop);
    idle_adjust(k, false);
    row_push(c, CTR_ROW_READY, k->id)->rec.ready_at = k->ready_at;
    metrics_ctr_ready(k->fv->fn, k->ready_at - k->started_at);
    log_debug("sched", "%s ready in %.2f ms", k->id, (k->ready_at - k->started_at) * 1e3);
    ctl_sched_mark(k->fv);
    sched_kick(c);
}

/* Frees the slot of input_id and returns the call that was in it (NULL if detached).
 * The caller ends the busy time and tells the idle list (idle_adjust). */
static struct ctl_call *slot_take(struct ctl_ctr *k, uint64_t input_id, bool *found)
{
    struct ctl_slot *slot = slot_find(k, input_id);
    *found = slot != NULL;
    if (!slot)
        return NULL;
    struct ctl_call *call = slot->call;
    slot->input_id = 0;
    slot->call = NULL;
    assert(k->inflight > 0);
    k->inflight--;
    k->inputs_done++;
    if (k->kill_timer) {
        bool pending_cancel = false;
        for (uint32_t i = 0; i < k->nslots; i++)
            if (k->slots[i].input_id && !k->slots[i].call)
                pending_cancel = true;
        if (!pending_cancel) {
            ev_timer_cancel(k->ctl->loop, k->kill_timer);
            k->kill_timer = 0;
        }
    }
    return call;
}

/* An input came back (output or error): frees its slot and returns its call, NULL when
 * there is nothing to settle (unknown container or input, or a call already detached
 * by a cancel or timeout). */
static struct ctl_call *input_returned(struct ctl *c, const char *ctr_id, uint64_t input_id)
{
    struct ctl_ctr *k = ctl_find_ctr(c, ctr_id);
    if (!k)
        return NULL;
    bool found;
    struct ctl_call *call = slot_take(k, input_id, &found);
    if (!found)
        return NULL;
    busy_end(c, k);
    idle_adjust(k, false); /* it had the input in flight */
    if (ctr_spent(k) && !k->inflight && k->state == CTR_READY) {
        log_debug("sched", "%s served its %u inputs; replacing it", k->id, k->fv->spec.lifetime_inputs);
        stop_container(c, k, false);
    }
    ctl_sched_mark(k->fv);
    sched_kick(c);
    return call;
}

static void ev_output(void *ud, const char *ctr_id, uint64_t input_id, const void *data, size_t len)
{
    struct ctl *c = ud;
    struct ctl_call *call = input_returned(c, ctr_id, input_id);
    /* A generator ends with an empty output; a result means the function is not one. */
    if (call && call->items && len > 0)
        ctl_call_finish(c, call, CTL_CALL_FAILED, NULL, 0, "not_generator",
                        "the function is not a generator: call it with .remote() (POST .../call)");
    else if (call)
        ctl_call_finish(c, call, CTL_CALL_SUCCEEDED, data, len, NULL, NULL);
    if (c->shutting_down)
        sched_drain_check(c);
}

/* A value a generator input yielded: kept for the call's consumer. A call that cannot
 * take it ends failed, and its container lets the input go (sched_cancel_running). */
static void ev_item(void *ud, const char *ctr_id, uint64_t input_id, const void *data, size_t len)
{
    struct ctl *c = ud;
    struct ctl_ctr *k = ctl_find_ctr(c, ctr_id);
    struct ctl_slot *slot = k ? slot_find(k, input_id) : NULL;
    struct ctl_call *call = slot ? slot->call : NULL;
    if (!call)
        return; /* a call already detached (cancelled, timed out, failed): nobody reads it */
    const char *code;
    char msg[256];
    int r = call->items ? ctl_items_push(call->items, data, len) : -ENOTSUP;
    if (r == 0) {
        ctl_call_output_seen(call);
        return;
    }
    if (r == -ENOTSUP) {
        code = "not_generator_call";
        snprintf(msg, sizeof msg, "%s.%s is a generator function: call it with .remote_gen() (POST .../generate)",
                 ctl_local_name(call->app), call->function);
    } else if (r == -EMSGSIZE) {
        code = "items_overflow";
        snprintf(msg, sizeof msg, "the generator sent more than %u MiB of items beyond what its consumer took "
                 "(its runner ignores the item window)", WORKER_ITEM_WINDOW >> 20);
    } else {
        code = "items_overflow";
        snprintf(msg, sizeof msg, "gustd holds %zu MiB of unread generator items of all calls, its limit",
                 CTL_ITEMS_MAX_TOTAL >> 20);
    }
    log_warn("sched", "call %s: %s", call->id, msg);
    sched_cancel_running(c, call, false);
    ctl_call_finish(c, call, CTL_CALL_FAILED, NULL, 0, code, msg);
    sched_kick(c);
}

/* The code serving a call took more of its input stream: what waited may go. */
static void ev_input_more_ack(void *ud, const char *ctr_id, uint64_t input_id, uint64_t bytes)
{
    struct ctl *c = ud;
    struct ctl_ctr *k = ctl_find_ctr(c, ctr_id);
    struct ctl_slot *slot = k ? slot_find(k, input_id) : NULL;
    if (slot && slot->call)
        ctl_stream_acked(c, slot->call, bytes);
}

static void ev_input_error(void *ud, const char *ctr_id, uint64_t input_id, enum ctr_fail kind, const char *msg)
{
    struct ctl *c = ud;
    struct ctl_call *call = input_returned(c, ctr_id, input_id);
    if (call && kind == CTR_FAIL_CANCELLED)
        ctl_call_finish(c, call, CTL_CALL_CANCELLED, NULL, 0, "cancelled", msg);
    else if (call)
        ctl_call_failed_attempt(c, call, CTL_CALL_FAILED, ctr_fail_code(kind), msg);
    if (c->shutting_down)
        sched_drain_check(c);
}

static void ev_log(void *ud, const char *ctr_id, int stream, uint64_t input_id, const char *line, size_t len)
{
    struct ctl *c = ud;
    struct ctl_ctr *k = ctl_find_ctr(c, ctr_id);
    if (k)
        ctl_log_push(c, k, stream, input_id, line, len);
}

/* Inputs a gone container still held: a crash or OOM is the input's failure (retry
 * policy applies); a stop we asked for puts them back (at the front), or, while
 * shutting down, leaves durable ones pending in the store and cancels sync ones. */
static void settle_held_inputs(struct ctl *c, struct ctl_ctr *k, int kind, const char *msg)
{
    for (uint32_t i = 0; i < k->nslots; i++) {
        struct ctl_call *call = k->slots[i].call;
        if (!k->slots[i].input_id || !call)
            continue;
        if (kind != 0 && !c->shutting_down) {
            ctl_call_failed_attempt(c, call, CTL_CALL_FAILED, ctr_fail_code((enum ctr_fail)kind),
                                    msg ? msg : "the container exited");
            continue;
        }
        if (call->attempts)
            call->attempts--; /* the attempt did not count */
        if (!c->shutting_down)
            ctl_call_requeue(c, call, true);
        else if (!call->durable)
            ctl_call_finish(c, call, CTL_CALL_CANCELLED, NULL, 0, "shutting_down", "gustd shut down");
        else
            ctl_call_park(c, call);
    }
}

static void ev_exit(void *ud, const char *ctr_id, int kind, const char *msg, const struct ctr_stats *final)
{
    struct ctl *c = ud;
    struct ctl_ctr *k = ctl_find_ctr(c, ctr_id);
    if (!k)
        return;
    struct ctl_fver *fv = k->fv;
    if (ctr_idle(k))
        evict_idle_del(k);
    if (k->state == CTR_STARTING)
        fv->nstarting--;
    else if (k->state == CTR_READY)
        fv->nready--;
    else
        stopping_done(c, k);
    evict_update(fv);
    /* Its capacity comes back (release, below, marks the versions blocked on room that
     * it may serve); its version may start another. */
    ctl_sched_mark(fv);
    bool never_ready = k->state == CTR_STARTING || (k->state == CTR_STOPPING && k->ready_at == 0);
    bool was_stopping = k->state == CTR_STOPPING;
    if (k->kill_timer)
        ev_timer_cancel(c->loop, k->kill_timer);
    if (k->inflight) {
        k->inflight = 0;
        busy_end(c, k);
    }
    const char *reason = kind != 0 ? ctr_fail_code((enum ctr_fail)kind) : k->evicted ? "evicted" : "stopped";
    if (kind)
        log_warn("sched", "container %s of %s.%s exited: %s", k->id, fv->fn->app->name, fv->fn->name,
                 msg ? msg : reason);
    struct store_ctr_usage u = {
        .cpu_s = (double)final->cpu_ns / 1e9,
        .memory_peak_mib = (double)final->memory_peak_bytes / (1 << 20),
        .oom_kills = final->oom_kills,
        .gpu_util_avg = final->gpu_util_avg_pct,
        .gpu_mem_peak_mib = (double)final->gpu_mem_peak_bytes / (1 << 20),
    };
    row_stop(c, k->id, busy_seconds(c, k), k->inputs_done, reason, &u);
    metrics_ctr_gone(fv->fn, final->cpu_ns);
    ctl_token_ephemeral_drop(c, k->token_id);
    list_remove(&k->link);
    hmap_remove(&c->ctrs, &k->node);
    /* A container control stopped (scale-down, app stop, shutdown) commits its
     * volumes' changes; one that crashed or was killed for OOM does not. */
    ctl_volumes_release(c, k, kind == 0 && was_stopping);
    release(c, k);
    settle_held_inputs(c, k, kind, msg);
    if (never_ready && kind != 0) {
        snprintf(fv->waiting_reason, sizeof fv->waiting_reason, "container failed to start: %.400s",
                 msg ? msg : "unknown error");
        fail_oldest_queued(c, fv);
    }
    free(k->slots);
    free(k);
    ctl_fver_maybe_free(c, fv);
    if (c->shutting_down)
        sched_drain_check(c);
    sched_kick(c);
}

const struct worker_events ctl_worker_events = {
    .ready = ev_ready,
    .output = ev_output,
    .item = ev_item,
    .input_error = ev_input_error,
    .log = ev_log,
    .exit = ev_exit,
    .snapshot_state = ev_snapshot_state,
    .snapshot_log = ev_snapshot_log,
    .input_more_ack = ev_input_more_ack,
};

/* ---------- drain (graceful stop) ---------- */

void sched_drain_check(struct ctl *c)
{
    if (!c->shutdown_cb)
        return;
    size_t running = 0;
    ctl_for_each_version(fv, c)
        running += fv->running;
    if (running == 0)
        sched_stop_all(c);
    if (sched_live_containers(c))
        return;
    ctl_log_flush(c);
    sched_flush_usage(c);
    void (*cb)(void *) = c->shutdown_cb;
    c->shutdown_cb = NULL;
    cb(c->shutdown_ud);
}
