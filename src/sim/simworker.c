/* The simulated worker (simworker.h). Containers live in a hash map by id; each has
 * at most one pending lifecycle timer (ready or exit) and one timer per input in
 * flight, all cancelled before the container is freed, so no timer ever sees a freed
 * record. */
#include "sim/simworker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/hmap.h"
#include "base/list.h"
#include "base/xalloc.h"

struct sim_ctr;

struct sim_in {
    struct list_node link;
    struct sim_ctr *k;
    uint64_t input_id;
    uint64_t timer;
};

struct sim_ctr {
    struct hmap_node node;
    struct simworker *w;
    char id[64];
    uint32_t memory_mib;
    int ngpus;
    uint64_t start_ms, ready_ms; /* ready_ms 0: not ready yet */
    uint64_t busy_since_ms;
    uint32_t inflight;
    bool stopping;
    uint64_t life_timer; /* ready (while starting) or exit (once stopping) */
    struct list_node inputs;
};

struct simworker {
    struct ev_loop *loop;
    struct simworker_config cfg;
    const struct worker_events *ev;
    void *ud;
    struct hmap ctrs;
    struct simworker_stats st;
};

void sim_input_encode(const struct sim_input *in, unsigned char out[SIM_INPUT_LEN])
{
    for (int i = 0; i < 8; i++)
        out[i] = (unsigned char)(in->submit_ms >> (8 * i));
    for (int i = 0; i < 4; i++)
        out[8 + i] = (unsigned char)(in->duration_ms >> (8 * i));
}

bool sim_input_decode(const void *data, size_t len, struct sim_input *out)
{
    const unsigned char *p = data;
    if (len != SIM_INPUT_LEN)
        return false;
    out->submit_ms = 0;
    out->duration_ms = 0;
    for (int i = 0; i < 8; i++)
        out->submit_ms |= (uint64_t)p[i] << (8 * i);
    for (int i = 0; i < 4; i++)
        out->duration_ms |= (uint32_t)p[8 + i] << (8 * i);
    return true;
}

static bool ctr_eq(const struct hmap_node *n, const void *key)
{
    return !strcmp(((const struct sim_ctr *)n)->id, key);
}

static struct sim_ctr *ctr_find(struct simworker *w, const char *id)
{
    return (struct sim_ctr *)hmap_find(&w->ctrs, hmap_hash_str(id), ctr_eq, id);
}

/* ---------- accounting ---------- */

static void busy_end(struct sim_ctr *k, uint64_t now)
{
    double ms = (double)(now - k->busy_since_ms);
    k->w->st.busy_mib_ms += ms * k->memory_mib;
    k->w->st.gpu_busy_ms += ms * k->ngpus;
}

/* Adds k's life up to now to the totals (at exit, or at the end of the run). */
static void account_life(struct sim_ctr *k, uint64_t now)
{
    struct simworker_stats *st = &k->w->st;
    double alive = (double)(now - k->start_ms);
    st->alive_mib_ms += alive * k->memory_mib;
    st->gpu_alive_ms += alive * k->ngpus;
    if (k->ready_ms)
        st->ready_mib_ms += (double)(now - k->ready_ms) * k->memory_mib;
    if (k->inflight)
        busy_end(k, now);
}

static void ctr_free(struct sim_ctr *k)
{
    struct simworker *w = k->w;
    ev_timer_cancel(w->loop, k->life_timer);
    list_for_each_safe(in, &k->inputs, struct sim_in, link) {
        ev_timer_cancel(w->loop, in->timer);
        list_remove(&in->link);
        free(in);
    }
    hmap_remove(&w->ctrs, &k->node);
    w->st.live--;
    free(k);
}

/* ---------- events, from timers ---------- */

static void fire_ready(struct ev_loop *loop, void *data)
{
    struct sim_ctr *k = data;
    k->life_timer = 0;
    k->ready_ms = ev_now_ms(loop);
    k->w->st.ready++;
    k->w->ev->ready(k->w->ud, k->id);
}

static void fire_exit(struct ev_loop *loop, void *data)
{
    struct sim_ctr *k = data;
    struct simworker *w = k->w;
    char id[64];
    k->life_timer = 0;
    account_life(k, ev_now_ms(loop));
    w->st.exited++;
    snprintf(id, sizeof id, "%s", k->id);
    ctr_free(k);
    struct ctr_stats final = {0};
    w->ev->exit(w->ud, id, 0, NULL, &final);
}

static void fire_output(struct ev_loop *loop, void *data)
{
    struct sim_in *in = data;
    struct sim_ctr *k = in->k;
    struct simworker *w = k->w;
    uint64_t input_id = in->input_id;
    list_remove(&in->link);
    free(in);
    if (--k->inflight == 0)
        busy_end(k, ev_now_ms(loop));
    w->st.outputs++;
    w->ev->output(w->ud, k->id, input_id, NULL, 0);
}

/* ---------- operations ---------- */

static void op_attach(void *wp, const struct worker_events *ev, void *ud)
{
    struct simworker *w = wp;
    w->ev = ev;
    w->ud = ud;
}

static void op_inventory(void *wp, struct worker_inventory *out)
{
    struct simworker *w = wp;
    memset(out, 0, sizeof *out);
    out->cpu_millicores = w->cfg.cpu_millicores;
    out->memory_mib = w->cfg.memory_mib;
    out->ngpus = w->cfg.ngpus;
    for (int i = 0; i < out->ngpus; i++) {
        snprintf(out->gpus[i].type, sizeof out->gpus[i].type, "H100");
        out->gpus[i].index = i;
        out->gpus[i].minor = i;
        out->gpus[i].simulated = true;
    }
}

static int op_start(void *wp, const struct ctr_spec *spec, struct gerr *err)
{
    struct simworker *w = wp;
    if (strlen(spec->id) >= sizeof ((struct sim_ctr *)0)->id)
        return gerr_set(err, EINVAL, "container id too long");
    if (ctr_find(w, spec->id))
        return gerr_set(err, EEXIST, "container %s exists", spec->id);
    struct sim_ctr *k = xcalloc(1, sizeof *k);
    k->w = w;
    snprintf(k->id, sizeof k->id, "%s", spec->id);
    k->memory_mib = spec->memory_mib;
    k->ngpus = spec->ngpus;
    k->start_ms = ev_now_ms(w->loop);
    list_init(&k->inputs);
    hmap_insert(&w->ctrs, &k->node, hmap_hash_str(k->id));
    w->st.started++;
    if (++w->st.live > w->st.peak_live)
        w->st.peak_live = w->st.live;
    /* At least 1 ms: ready is an event of a later loop turn, and control's busy
     * accounting takes virtual time 0 as "not busy" (sched.c). */
    uint64_t delay = w->cfg.cold_start_ms + (uint64_t)w->cfg.init_ms_per_gib * spec->memory_mib / 1024;
    k->life_timer = ev_timer_add(w->loop, delay ? delay : 1, fire_ready, k);
    return 0;
}

static int op_send_input(void *wp, const char *ctr_id, uint64_t input_id, const char *call_id, const void *data,
                         size_t len, struct gerr *err)
{
    (void)call_id;
    struct simworker *w = wp;
    struct sim_ctr *k = ctr_find(w, ctr_id);
    if (!k || k->stopping)
        return gerr_set(err, ESRCH, "container %s is gone", ctr_id);
    if (!k->ready_ms)
        return gerr_set(err, EAGAIN, "container %s is not ready", ctr_id);
    struct sim_input si;
    if (!sim_input_decode(data, len, &si))
        return gerr_set(err, EINVAL, "input of %zu bytes is not a simulated input", len);
    uint64_t now = ev_now_ms(w->loop);
    struct sim_in *in = xcalloc(1, sizeof *in);
    in->k = k;
    in->input_id = input_id;
    list_push_back(&k->inputs, &in->link);
    if (k->inflight++ == 0)
        k->busy_since_ms = now;
    w->st.inputs++;
    if (k->ready_ms > si.submit_ms)
        w->st.cold_inputs++;
    in->timer = ev_timer_add(w->loop, si.duration_ms, fire_output, in);
    return 0;
}

/* A simulated input has no process to interrupt: it is given up at once. */
static void fire_cancelled(struct ev_loop *loop, void *data);

struct sim_cancel {
    struct simworker *w;
    char id[64];
    uint64_t input_id;
};

static int op_cancel_input(void *wp, const char *ctr_id, uint64_t input_id)
{
    struct simworker *w = wp;
    struct sim_ctr *k = ctr_find(w, ctr_id);
    if (!k)
        return -ESRCH;
    list_for_each(in, &k->inputs, struct sim_in, link) {
        if (in->input_id != input_id)
            continue;
        ev_timer_cancel(w->loop, in->timer);
        list_remove(&in->link);
        free(in);
        if (--k->inflight == 0)
            busy_end(k, ev_now_ms(w->loop));
        struct sim_cancel *x = xcalloc(1, sizeof *x);
        x->w = w;
        snprintf(x->id, sizeof x->id, "%s", ctr_id);
        x->input_id = input_id;
        ev_timer_add(w->loop, 0, fire_cancelled, x);
        return 0;
    }
    return -ESRCH;
}

static void fire_cancelled(struct ev_loop *loop, void *data)
{
    struct sim_cancel *x = data;
    (void)loop;
    if (ctr_find(x->w, x->id))
        x->w->ev->input_error(x->w->ud, x->id, x->input_id, CTR_FAIL_CANCELLED, "cancelled");
    free(x);
}

/* Stop and kill end the container on the next loop turn: inputs in flight are dropped
 * (their timers cancelled; control settles them on exit, as ops.h says). The grace
 * period is not simulated: control stops containers that are idle. */
static void stop_now(struct simworker *w, const char *ctr_id)
{
    struct sim_ctr *k = ctr_find(w, ctr_id);
    if (!k || k->stopping)
        return;
    k->stopping = true;
    w->st.stopped++;
    ev_timer_cancel(w->loop, k->life_timer);
    uint64_t now = ev_now_ms(w->loop);
    list_for_each_safe(in, &k->inputs, struct sim_in, link) {
        ev_timer_cancel(w->loop, in->timer);
        list_remove(&in->link);
        free(in);
    }
    if (k->inflight) {
        busy_end(k, now);
        k->inflight = 0;
    }
    k->life_timer = ev_timer_add(w->loop, 0, fire_exit, k);
}

static void op_stop(void *wp, const char *ctr_id, uint32_t grace_ms)
{
    (void)grace_ms;
    stop_now(wp, ctr_id);
}

static void op_kill(void *wp, const char *ctr_id)
{
    stop_now(wp, ctr_id);
}

static int op_info(void *wp, const char *ctr_id, struct ctr_info *out)
{
    struct sim_ctr *k = ctr_find(wp, ctr_id);
    memset(out, 0, sizeof *out);
    if (!k)
        return -ESRCH;
    out->start_ns = k->ready_ms ? (k->ready_ms - k->start_ms) * 1000000ull : 0;
    out->stats.memory_bytes = (uint64_t)k->memory_mib << 20;
    out->stats.ngpus = k->ngpus;
    return 0;
}

static void op_tick(void *wp)
{
    (void)wp;
}

/* Snapshots are not simulated: control starts such functions from scratch. */
static int op_snapshot_take(void *wp, const struct ctr_spec *spec, struct gerr *err)
{
    (void)wp;
    (void)spec;
    return gerr_set(err, ENOTSUP, "the simulated worker takes no snapshots");
}

static int op_snapshot_restore(void *wp, const char *snap_id, const struct ctr_spec *spec, struct gerr *err)
{
    (void)wp;
    (void)snap_id;
    (void)spec;
    return gerr_set(err, ENOTSUP, "the simulated worker takes no snapshots");
}

static void op_snapshot_drop(void *wp, const char *snap_id)
{
    (void)wp;
    (void)snap_id;
}

static int op_snapshot_info(void *wp, const char *snap_id, struct snapshot_info *out)
{
    (void)wp;
    (void)snap_id;
    memset(out, 0, sizeof *out);
    return -ESRCH;
}

/* Simulated inputs yield no items, so there is nothing to let through. */
static int op_item_ack(void *wp, const char *ctr_id, uint64_t input_id, uint64_t bytes)
{
    struct simworker *w = wp;
    (void)input_id;
    (void)bytes;
    return ctr_find(w, ctr_id) ? 0 : -ESRCH;
}

const struct worker_ops simworker_ops = {
    .attach = op_attach,
    .inventory = op_inventory,
    .start = op_start,
    .send_input = op_send_input,
    .cancel_input = op_cancel_input,
    .item_ack = op_item_ack,
    .stop = op_stop,
    .kill = op_kill,
    .info = op_info,
    .tick = op_tick,
    .snapshot_take = op_snapshot_take,
    .snapshot_restore = op_snapshot_restore,
    .snapshot_drop = op_snapshot_drop,
    .snapshot_info = op_snapshot_info,
};

void simworker_new(struct ev_loop *loop, const struct simworker_config *cfg, struct simworker **out)
{
    struct simworker *w = xcalloc(1, sizeof *w);
    w->loop = loop;
    w->cfg = *cfg;
    if (w->cfg.ngpus > WORKER_MAX_GPUS)
        w->cfg.ngpus = WORKER_MAX_GPUS;
    if (w->cfg.ngpus < 0)
        w->cfg.ngpus = 0;
    hmap_init(&w->ctrs, 256);
    *out = w;
}

void simworker_finish(struct simworker *w, struct simworker_stats *out)
{
    uint64_t now = ev_now_ms(w->loop);
    for (size_t b = 0; b < w->ctrs.nbuckets; b++)
        for (struct hmap_node *n = w->ctrs.buckets[b]; n; n = n->next) {
            struct sim_ctr *k = (struct sim_ctr *)n;
            account_life(k, now);
            /* Not again at free, nor by a later exit. */
            k->inflight = 0;
            k->start_ms = now;
            k->ready_ms = k->ready_ms ? now : 0;
        }
    *out = w->st;
}

void simworker_free(struct simworker *w)
{
    if (!w)
        return;
    for (size_t b = 0; b < w->ctrs.nbuckets; b++)
        while (w->ctrs.buckets[b])
            ctr_free((struct sim_ctr *)w->ctrs.buckets[b]);
    hmap_free(&w->ctrs);
    free(w);
}
