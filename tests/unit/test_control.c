/* Control against a fake worker behind the seam of worker/ops.h: no root, no
 * sandboxes, a real store, event loop and clock. The fake records what control asks
 * for (starts, inputs, cancels, stops) and the tests play the worker's part (ready,
 * outputs, errors, exits). A scheduler change is tested here first. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "base/cleanup.h"

#include "base/util.h"
#include "control/control.h"
#include "control/internal.h"
#include "unit.h"

/* ------------------------------------------------------------------ the fake worker */

#define FAKE_MAX_CTRS 64
#define FAKE_MAX_INPUTS 32

struct fake_ctr {
    char id[64];
    bool restored;              /* from a snapshot */
    char from_snap[64];         /* which one */
    bool stop_asked, kill_asked, exited;
    uint32_t cpu, memory;
    int ngpus, gpus[CTR_MAX_GPUS];
    uint64_t inputs[FAKE_MAX_INPUTS]; /* sent and not answered, 0 = free */
    uint64_t cancelled[FAKE_MAX_INPUTS];
    size_t ncancelled;
    uint64_t inputs_total;
    uint64_t acked_input, acked_bytes; /* the last item_ack */
    int nacks;
    /* Input streams (send_input_more): bytes received, the first ones, the end, and
     * whether any came for an input the container did not have (out of order). */
    uint64_t more_bytes;
    char more_head[32];
    bool more_end, more_stray;
};

struct fake {
    struct ev_loop *loop;
    const struct worker_events *ev;
    void *ud;
    struct worker_inventory inv;
    struct fake_ctr ctrs[FAKE_MAX_CTRS];
    int nctrs;
    int fail_next_start;        /* starts to refuse synchronously */
    bool hold_stops;            /* stops do not exit by themselves (fake_exit ends them) */
    char snap_id[64];           /* the latest taken */
    int snap_takes;
    struct {
        char id[64];
        bool dropped;
    } snaps[32];
};

static struct fake_ctr *fake_find(struct fake *f, const char *id)
{
    for (int i = 0; i < f->nctrs; i++)
        if (!strcmp(f->ctrs[i].id, id) && !f->ctrs[i].exited)
            return &f->ctrs[i];
    return NULL;
}

static void op_attach(void *w, const struct worker_events *ev, void *ud)
{
    struct fake *f = w;
    f->ev = ev;
    f->ud = ud;
}

static void op_inventory(void *w, struct worker_inventory *out)
{
    *out = ((struct fake *)w)->inv;
}

static int fake_add(struct fake *f, const struct ctr_spec *spec, bool restored, struct gerr *err)
{
    if (f->fail_next_start > 0) {
        f->fail_next_start--;
        return gerr_set(err, EIO, "fake start failure");
    }
    CHECK(f->nctrs < FAKE_MAX_CTRS);
    struct fake_ctr *k = &f->ctrs[f->nctrs++];
    memset(k, 0, sizeof *k);
    snprintf(k->id, sizeof k->id, "%s", spec->id);
    k->restored = restored;
    k->cpu = spec->cpu_millicores;
    k->memory = spec->memory_mib;
    k->ngpus = spec->ngpus;
    memcpy(k->gpus, spec->gpu_indices, sizeof k->gpus);
    return 0;
}

static int op_start(void *w, const struct ctr_spec *spec, struct gerr *err)
{
    return fake_add(w, spec, false, err);
}

static int op_send_input(void *w, const char *id, uint64_t input_id, const char *call_id, const void *data, size_t len,
                         struct gerr *err)
{
    (void)call_id;
    struct fake_ctr *k = fake_find(w, id);
    (void)data;
    (void)len;
    if (!k)
        return gerr_set(err, ESRCH, "gone");
    for (int i = 0; i < FAKE_MAX_INPUTS; i++)
        if (!k->inputs[i]) {
            k->inputs[i] = input_id;
            k->inputs_total++;
            return 0;
        }
    return gerr_set(err, ENOSPC, "fake: too many inputs");
}

static int op_cancel_input(void *w, const char *id, uint64_t input_id)
{
    struct fake_ctr *k = fake_find(w, id);
    if (!k)
        return -ESRCH;
    if (k->ncancelled < FAKE_MAX_INPUTS)
        k->cancelled[k->ncancelled++] = input_id;
    return 0;
}

static int op_item_ack(void *w, const char *id, uint64_t input_id, uint64_t bytes)
{
    struct fake_ctr *k = fake_find(w, id);
    if (!k)
        return -ESRCH;
    k->acked_input = input_id;
    k->acked_bytes = bytes;
    k->nacks++;
    return 0;
}

static int op_send_input_more(void *w, const char *id, uint64_t input_id, const void *data, size_t len)
{
    struct fake_ctr *k = fake_find(w, id);
    if (!k)
        return -ESRCH;
    bool known = false;
    for (int i = 0; i < FAKE_MAX_INPUTS; i++)
        known |= k->inputs[i] == input_id;
    k->more_stray |= !known || k->more_end;
    if (!len)
        k->more_end = true;
    size_t have = k->more_bytes < sizeof k->more_head - 1 ? (size_t)k->more_bytes : sizeof k->more_head - 1;
    size_t n = len < sizeof k->more_head - 1 - have ? len : sizeof k->more_head - 1 - have;
    if (n)
        memcpy(k->more_head + have, data, n);
    k->more_bytes += len;
    return 0;
}

struct fake_exit {
    struct fake *f;
    char id[64];
};

/* A stop or kill: the container's exit comes on a later loop turn, as ops.h promises. */
static void fake_exit_later(struct ev_loop *loop, void *data)
{
    struct fake_exit *x = data;
    struct fake_ctr *k = fake_find(x->f, x->id);
    (void)loop;
    if (k) {
        k->exited = true;
        struct ctr_stats st = {0};
        x->f->ev->exit(x->f->ud, x->id, 0, NULL, &st);
    }
    free(x);
}

static void fake_schedule_exit(struct fake *f, const char *id)
{
    struct fake_exit *x = calloc(1, sizeof *x);
    x->f = f;
    snprintf(x->id, sizeof x->id, "%s", id);
    ev_defer(f->loop, fake_exit_later, x);
}

static void op_stop(void *w, const char *id, uint32_t grace_ms)
{
    struct fake_ctr *k = fake_find(w, id);
    (void)grace_ms;
    if (k && !k->stop_asked && !k->kill_asked) {
        k->stop_asked = true;
        if (!((struct fake *)w)->hold_stops)
            fake_schedule_exit(w, id);
    }
}

static void op_kill(void *w, const char *id)
{
    struct fake_ctr *k = fake_find(w, id);
    if (k && !k->stop_asked && !k->kill_asked) {
        k->kill_asked = true;
        fake_schedule_exit(w, id);
    }
}

static int op_info(void *w, const char *id, struct ctr_info *out)
{
    memset(out, 0, sizeof *out);
    return fake_find(w, id) ? 0 : -ESRCH;
}

static void op_tick(void *w)
{
    (void)w;
}

static int op_snapshot_take(void *w, const struct ctr_spec *spec, struct gerr *err)
{
    struct fake *f = w;
    (void)err;
    CHECK(f->snap_takes < 32);
    snprintf(f->snap_id, sizeof f->snap_id, "%s", spec->id);
    snprintf(f->snaps[f->snap_takes].id, sizeof f->snaps[0].id, "%s", spec->id);
    f->snap_takes++;
    return 0;
}

/* Whether the snapshot with this id was taken and then dropped. */
static bool fake_snap_dropped(struct fake *f, const char *id)
{
    for (int i = 0; i < f->snap_takes; i++)
        if (!strcmp(f->snaps[i].id, id))
            return f->snaps[i].dropped;
    return false;
}

static int op_snapshot_restore(void *w, const char *snap_id, const struct ctr_spec *spec, struct gerr *err)
{
    struct fake *f = w;
    int i = 0;
    while (i < f->snap_takes && strcmp(f->snaps[i].id, snap_id))
        i++;
    if (i == f->snap_takes || f->snaps[i].dropped)
        return gerr_set(err, EAGAIN, "unknown snapshot");
    int r = fake_add(f, spec, true, err);
    if (r == 0)
        snprintf(f->ctrs[f->nctrs - 1].from_snap, sizeof f->ctrs[0].from_snap, "%s", snap_id);
    return r;
}

static void op_snapshot_drop(void *w, const char *snap_id)
{
    struct fake *f = w;
    for (int i = 0; i < f->snap_takes; i++)
        if (!strcmp(f->snaps[i].id, snap_id))
            f->snaps[i].dropped = true;
}

static int op_snapshot_info(void *w, const char *snap_id, struct snapshot_info *out)
{
    (void)w;
    (void)snap_id;
    memset(out, 0, sizeof *out);
    out->state = SNAPSHOT_READY;
    return 0;
}

static const struct worker_ops fake_ops = {
    .attach = op_attach,
    .inventory = op_inventory,
    .start = op_start,
    .send_input = op_send_input,
    .cancel_input = op_cancel_input,
    .item_ack = op_item_ack,
    .send_input_more = op_send_input_more,
    .stop = op_stop,
    .kill = op_kill,
    .info = op_info,
    .tick = op_tick,
    .snapshot_take = op_snapshot_take,
    .snapshot_restore = op_snapshot_restore,
    .snapshot_drop = op_snapshot_drop,
    .snapshot_info = op_snapshot_info,
};

/* --------------------------------------------------- playing the worker's part */

static int live_ctrs(struct fake *f)
{
    int n = 0;
    for (int i = 0; i < f->nctrs; i++)
        n += !f->ctrs[i].exited;
    return n;
}

static void fake_ready_all(struct fake *f)
{
    for (int i = 0; i < f->nctrs; i++)
        if (!f->ctrs[i].exited)
            f->ev->ready(f->ud, f->ctrs[i].id);
}

static int inflight(const struct fake_ctr *k)
{
    int n = 0;
    for (int i = 0; i < FAKE_MAX_INPUTS; i++)
        n += k->inputs[i] != 0;
    return n;
}

/* Answers the first unanswered input of container k: output text, or an error. */
static uint64_t fake_answer(struct fake *f, struct fake_ctr *k, const char *out, enum ctr_fail fail)
{
    for (int i = 0; i < FAKE_MAX_INPUTS; i++) {
        uint64_t id = k->inputs[i];
        if (!id)
            continue;
        k->inputs[i] = 0;
        if (fail)
            f->ev->input_error(f->ud, k->id, id, fail, "fake failure");
        else
            f->ev->output(f->ud, k->id, id, out, strlen(out));
        return id;
    }
    return 0;
}

static void fake_exit(struct fake *f, struct fake_ctr *k, int kind)
{
    struct ctr_stats st = {0};
    k->exited = true;
    f->ev->exit(f->ud, k->id, kind, kind ? "fake exit" : NULL, &st);
}

/* ------------------------------------------------------------------ harness */

struct env {
    char dir[64];
    struct ev_loop *loop;
    struct store *store;
    struct fake fake;
    struct ctl *ctl;
    bool shutdown_done;
    struct ctl_config bounds; /* log_lines_per_fn, calls_per_fn, trim_interval_ms (0: defaults) */
};

static void stop_loop(struct ev_loop *loop, void *data)
{
    (void)data;
    ev_stop(loop);
}

struct stop_after {
    struct ev_loop *loop;
    uint64_t ms;
};

/* Armed from inside the loop, where its clock is fresh (the loop's clock is cached
 * between iterations, like libuv's uv_now). */
static void arm_stop(struct ev_loop *loop, void *data)
{
    struct stop_after *s = data;
    ev_timer_add(loop, s->ms, stop_loop, NULL);
}

/* Runs the loop for ms milliseconds (timers, deferred work, scheduling passes). */
static void run_for(struct env *e, uint64_t ms)
{
    struct stop_after s = {e->loop, ms};
    ev_defer(e->loop, arm_stop, &s);
    ev_run(e->loop);
}

static void env_open_ctl(struct env *e)
{
    char images[128], cas[128];
    snprintf(images, sizeof images, "%s/images", e->dir);
    snprintf(cas, sizeof cas, "%s/cas", e->dir);
    mkdir_p(images, 0755);
    struct ctl_config cfg = {
        .data_dir = e->dir,
        .images_dir = images,
        .cas_dir = cas,
        .max_payload = 1 << 20,
        .stop_grace_ms = 1000,
        .no_builtin_images = true,
        .log_lines_per_fn = e->bounds.log_lines_per_fn,
        .calls_per_fn = e->bounds.calls_per_fn,
        .trim_interval_ms = e->bounds.trim_interval_ms,
        .snapshot_spare_ms = e->bounds.snapshot_spare_ms,
    };
    ctl_rates_default(&cfg.rates);
    struct gerr err;
    CHECK(ctl_new(e->loop, e->store, &fake_ops, &e->fake, &cfg, &e->ctl, &err) == 0);
    CHECK(ctl_recover(e->ctl, &err) == 0);
}

/* A fresh control on a fresh store, with a worker of cpu millicores, memory MiB and
 * gpus ("H100" entries). The image "img" is registered (a directory: no sandbox will
 * ever use it). */
static void env_init_bounded(struct env *e, uint32_t cpu, uint64_t memory, int h100s,
                             const struct ctl_config *bounds)
{
    memset(e, 0, sizeof *e);
    if (bounds)
        e->bounds = *bounds;
    snprintf(e->dir, sizeof e->dir, "/tmp/gust-ctl-XXXXXX");
    CHECK(mkdtemp(e->dir));
    CHECK(ev_loop_new(&e->loop) == 0);
    e->fake.loop = e->loop;
    e->fake.inv.cpu_millicores = cpu;
    e->fake.inv.memory_mib = memory;
    for (int i = 0; i < h100s; i++) {
        snprintf(e->fake.inv.gpus[i].type, sizeof e->fake.inv.gpus[i].type, "H100");
        e->fake.inv.gpus[i].index = i;
        e->fake.inv.gpus[i].simulated = true;
    }
    e->fake.inv.ngpus = h100s;
    char path[128];
    struct gerr err;
    snprintf(path, sizeof path, "%s/gust.db", e->dir);
    CHECK(store_open(path, &e->store, &err) == 0);
    snprintf(path, sizeof path, "%s/rootfs", e->dir);
    mkdir_p(path, 0755);
    CHECK(store_image_put(e->store, "img", path, false, NULL, wall_s(), &err) == 0);
    env_open_ctl(e);
}

static void env_init(struct env *e, uint32_t cpu, uint64_t memory, int h100s)
{
    env_init_bounded(e, cpu, memory, h100s, NULL);
}

static void env_free(struct env *e)
{
    ctl_free(e->ctl);
    store_close(e->store);
    ev_loop_free(e->loop);
    rm_rf(e->dir);
}

/* Deploys app "a" with one function "f" whose extra spec fields are the JSON object
 * members in extra (without braces). */
static void deploy(struct env *e, const char *extra)
{
    char text[2048];
    snprintf(text, sizeof text,
             "{\"app\":\"a\",\"functions\":[{\"name\":\"f\",\"kind\":\"exec\",\"command\":[\"x\"],"
             "\"image\":\"img\"%s%s}]}",
             extra[0] ? "," : "", extra);
    json_error_t jerr;
    json_t *spec = json_loads(text, 0, &jerr);
    CHECK(spec);
    json_t *res = NULL;
    struct ctl_error ce = {0};
    int r = ctl_deploy(e->ctl, "default", spec, &res, &ce);
    if (r < 0)
        fprintf(stderr, "  deploy: %s: %s\n", ce.field, ce.message);
    CHECK(r == 0);
    json_decref(res);
    json_decref(spec);
}

static void submit(struct env *e, const char *input, bool durable, char id[64])
{
    struct ctl_error ce;
    CHECK(ctl_submit(e->ctl, "default/a", "f", input, strlen(input), durable, id, &ce) == 0);
}

static enum ctl_call_state call_state(struct env *e, const char *id, struct ctl_call_view *v)
{
    struct ctl_error ce;
    struct ctl_call_view tmp;
    if (!v)
        v = &tmp;
    CHECK(ctl_call_status(e->ctl, NULL, id, v, &ce) == 0);
    return v->state;
}

static struct ctl_fn *fn(struct env *e)
{
    struct ctl_fn *f = ctl_find_fn(e->ctl, "default/a", "f");
    CHECK(f);
    return f;
}

/* ------------------------------------------------------------------ tests */

/* Lets the scheduler start containers for what is queued, makes them all ready, and
 * lets it dispatch. */
static void start_and_dispatch(struct env *e)
{
    run_for(e, 5);
    fake_ready_all(&e->fake);
    run_for(e, 5);
}


/* Three inputs, two slots per container, at most two containers: two start; once ready,
 * the busiest container with room is filled first (packing), so one holds two. */
UNIT_TEST(test_dispatch_and_packing)
{
    struct env e;
    env_init(&e, 4000, 4096, 0);
    deploy(&e, "\"scaling\":{\"max_containers\":2,\"max_inputs\":2},\"resources\":{\"cpu\":100,\"memory\":64}");
    char ids[3][64];
    for (int i = 0; i < 3; i++)
        submit(&e, "in", false, ids[i]);
    run_for(&e, 5);
    CHECK_EQ_INT(e.fake.nctrs, 2);
    fake_ready_all(&e.fake);
    run_for(&e, 5);
    int a = inflight(&e.fake.ctrs[0]), b = inflight(&e.fake.ctrs[1]);
    CHECK_EQ_INT(a + b, 3);
    CHECK((a == 2 && b == 1) || (a == 1 && b == 2));
    for (int k = 0; k < 2; k++)
        while (inflight(&e.fake.ctrs[k]))
            fake_answer(&e.fake, &e.fake.ctrs[k], "out", 0);
    for (int i = 0; i < 3; i++) {
        struct ctl_call_view v;
        CHECK_EQ_INT(call_state(&e, ids[i], &v), CTL_CALL_SUCCEEDED);
        CHECK_EQ_INT(v.output_len, 3);
        CHECK(!memcmp(v.output, "out", 3));
    }
    /* Reservations: both containers hold their CPU and memory until they exit. */
    CHECK_EQ_INT(e.ctl->cpu_used, 200);
    CHECK_EQ_INT(e.ctl->mem_used, 128);
    env_free(&e);
}

/* target_inputs sizes the autoscaler (10 calls at 5 per container: 2 containers) while
 * a container still takes up to max_inputs: on a worker with room for one container,
 * that one serves all 10 at once. */
UNIT_TEST(test_target_inputs)
{
    static const char *spec = "\"scaling\":{\"max_containers\":4,\"max_inputs\":10,\"target_inputs\":5},"
                              "\"resources\":{\"cpu\":100,\"memory\":64}";
    struct env e;
    env_init(&e, 4000, 4096, 0);
    deploy(&e, spec);
    char id[64];
    for (int i = 0; i < 10; i++)
        submit(&e, "x", false, id);
    run_for(&e, 5);
    CHECK_EQ_INT(ctl_fn_level(fn(&e), ctl_fn_work(fn(&e))), 2);
    CHECK_EQ_INT(e.fake.nctrs, 2);
    env_free(&e);

    env_init(&e, 100, 4096, 0);
    deploy(&e, spec);
    for (int i = 0; i < 10; i++)
        submit(&e, "x", false, id);
    start_and_dispatch(&e);
    CHECK_EQ_INT(e.fake.nctrs, 1);
    CHECK_EQ_INT(inflight(&e.fake.ctrs[0]), 10);
    CHECK_EQ_INT(fn(&e)->latest->queued, 0);
    env_free(&e);
}

UNIT_TEST(test_max_containers_caps_starts)
{
    struct env e;
    env_init(&e, 4000, 4096, 0);
    deploy(&e, "\"scaling\":{\"max_containers\":1},\"resources\":{\"cpu\":100,\"memory\":64}");
    char id[64];
    for (int i = 0; i < 5; i++)
        submit(&e, "x", false, id);
    run_for(&e, 5);
    CHECK_EQ_INT(e.fake.nctrs, 1);
    fake_ready_all(&e.fake);
    run_for(&e, 5);
    /* One slot: one input at a time, the other four wait in the queue. */
    CHECK_EQ_INT(inflight(&e.fake.ctrs[0]), 1);
    CHECK_EQ_INT(fn(&e)->latest->queued, 4);
    env_free(&e);
}

/* min_containers start with no calls; buffer_containers keep idle capacity beside
 * busy containers. */
UNIT_TEST(test_min_and_buffer_containers)
{
    struct env e;
    env_init(&e, 4000, 4096, 0);
    deploy(&e, "\"scaling\":{\"min_containers\":2},\"resources\":{\"cpu\":100,\"memory\":64}");
    run_for(&e, 5);
    CHECK_EQ_INT(e.fake.nctrs, 2);
    env_free(&e);

    env_init(&e, 4000, 4096, 0);
    deploy(&e, "\"scaling\":{\"buffer_containers\":1},\"resources\":{\"cpu\":100,\"memory\":64}");
    run_for(&e, 5);
    CHECK_EQ_INT(e.fake.nctrs, 1);
    fake_ready_all(&e.fake);
    char id[64];
    submit(&e, "x", false, id);
    run_for(&e, 5);
    /* The buffer container took the input; a new one starts to be the buffer. */
    CHECK_EQ_INT(inflight(&e.fake.ctrs[0]), 1);
    CHECK_EQ_INT(e.fake.nctrs, 2);
    env_free(&e);
}

/* An idle container past scaledown_window is stopped; the version's floor stays. */
UNIT_TEST(test_scale_down_after_window)
{
    struct env e;
    env_init(&e, 4000, 4096, 0);
    deploy(&e, "\"scaling\":{\"scaledown_window\":1},\"resources\":{\"cpu\":100,\"memory\":64}");
    char id[64];
    submit(&e, "x", false, id);
    start_and_dispatch(&e);
    fake_answer(&e.fake, &e.fake.ctrs[0], "ok", 0);
    run_for(&e, 500);
    CHECK(!e.fake.ctrs[0].stop_asked);
    run_for(&e, 900);
    CHECK(e.fake.ctrs[0].stop_asked);
    CHECK_EQ_INT(live_ctrs(&e.fake), 0);
    CHECK_EQ_INT(sched_live_containers(e.ctl), 0);
    CHECK_EQ_INT(e.ctl->cpu_used, 0);
    env_free(&e);
}

/* A failing input is retried after initial_delay * backoff^(attempt-1), then fails
 * for good with its attempts counted. */
UNIT_TEST(test_retries_with_backoff)
{
    struct env e;
    env_init(&e, 4000, 4096, 0);
    deploy(&e, "\"retries\":{\"max_retries\":2,\"initial_delay\":0.2,\"backoff_coefficient\":2},"
               "\"resources\":{\"cpu\":100,\"memory\":64}");
    char id[64];
    submit(&e, "x", true, id);
    start_and_dispatch(&e);
    struct fake_ctr *k = &e.fake.ctrs[0];
    CHECK(fake_answer(&e.fake, k, NULL, CTR_FAIL_EXIT_STATUS));
    run_for(&e, 50);
    /* Waiting on its backoff: pending, not queued, not on the container. */
    CHECK_EQ_INT(call_state(&e, id, NULL), CTL_CALL_PENDING);
    CHECK_EQ_INT(inflight(k), 0);
    CHECK_EQ_INT(fn(&e)->latest->retry_waiting, 1);
    run_for(&e, 250);
    CHECK_EQ_INT(inflight(k), 1);
    CHECK(fake_answer(&e.fake, k, NULL, CTR_FAIL_EXIT_STATUS));
    run_for(&e, 200);
    CHECK_EQ_INT(inflight(k), 0); /* the second delay is 0.4 s */
    run_for(&e, 300);
    CHECK_EQ_INT(inflight(k), 1);
    CHECK(fake_answer(&e.fake, k, NULL, CTR_FAIL_EXIT_STATUS));
    struct ctl_call_view v;
    CHECK_EQ_INT(call_state(&e, id, &v), CTL_CALL_FAILED);
    CHECK_EQ_INT(v.attempts, 3);
    CHECK_STR(v.error_code, "exit_status");
    CHECK_EQ_INT(k->inputs_total, 3);
    /* Its timeline: three attempts on the one container (cold only the first), in order
     * and apart (the backoff), whose times are its running part, and queued + running is
     * the whole, in the record and in its text. */
    const struct ctl_tl *tl = &ctl_call_find(e.ctl, id)->tl;
    CHECK_EQ_INT(tl->nattempts, 3);
    CHECK(tl->att[0].cold && !tl->att[1].cold && !tl->att[2].cold && !tl->att[0].snapshot);
    CHECK(!strcmp(tl->att[0].ctr, tl->att[2].ctr) && tl->has_start);
    int64_t ran = 0, prev = 0;
    for (int i = 0; i < 3; i++) {
        CHECK(prev <= tl->att[i].dispatched_us && tl->att[i].dispatched_us <= tl->att[i].ended_us);
        ran += tl->att[i].ended_us - tl->att[i].dispatched_us;
        prev = tl->att[i].ended_us;
    }
    CHECK(ran == tl->running_us && tl->ended_us == prev && tl->first_output_us == -1);
    CHECK(tl->ctr_started_us <= tl->ctr_ready_us && tl->ctr_ready_us <= tl->att[0].dispatched_us);
    char text[CTL_TIMELINE_MAX];
    CHECK_EQ_INT(ctl_call_timeline_text(ctl_call_find(e.ctl, id), text, sizeof text), 0);
    json_t *j = json_loads(text, 0, NULL);
    CHECK(j);
    CHECK(json_integer_value(json_object_get(j, "queued_us")) + json_integer_value(json_object_get(j, "running_us")) ==
          json_integer_value(json_object_get(j, "ended_us")));
    CHECK_EQ_INT(json_array_size(json_object_get(j, "attempts")), 3);
    json_decref(j);
    env_free(&e);
}

/* An input past the function's timeout is timed out; a per-input container is told
 * to give it up (and keeps serving). */
UNIT_TEST(test_timeout)
{
    struct env e;
    env_init(&e, 4000, 4096, 0);
    deploy(&e, "\"timeout\":1,\"resources\":{\"cpu\":100,\"memory\":64}");
    char id[64];
    submit(&e, "x", false, id);
    start_and_dispatch(&e);
    struct fake_ctr *k = &e.fake.ctrs[0];
    CHECK_EQ_INT(inflight(k), 1);
    run_for(&e, 1100);
    struct ctl_call_view v;
    CHECK_EQ_INT(call_state(&e, id, &v), CTL_CALL_TIMED_OUT);
    CHECK_STR(v.error_code, "timeout");
    CHECK_EQ_INT(k->ncancelled, 1);
    CHECK(!k->kill_asked);
    env_free(&e);
}

/* Cancelling a queued call and a running one: a runner container is told to drop the
 * input and killed when it still holds it after the grace; terminate_container kills
 * at once. */
UNIT_TEST(test_cancel)
{
    struct env e;
    env_init(&e, 4000, 4096, 0);
    deploy(&e, "\"mode\":\"runner\",\"scaling\":{\"max_containers\":1},\"resources\":{\"cpu\":100,\"memory\":64}");
    char running[64], queued[64];
    submit(&e, "x", true, running);
    submit(&e, "y", true, queued);
    start_and_dispatch(&e);
    struct ctl_call_view v;
    struct ctl_error ce;
    CHECK(ctl_cancel(e.ctl, NULL, queued, &v, &ce) == 0);
    CHECK_EQ_INT(v.state, CTL_CALL_CANCELLED);
    CHECK_EQ_INT(fn(&e)->latest->queued, 0);
    CHECK(ctl_cancel(e.ctl, NULL, running, &v, &ce) == 0);
    CHECK_EQ_INT(v.state, CTL_CALL_CANCELLED);
    CHECK_EQ_INT(e.fake.ctrs[0].ncancelled, 1);
    CHECK(!e.fake.ctrs[0].kill_asked);
    run_for(&e, SCHED_CANCEL_GRACE_MS + 100);
    CHECK(e.fake.ctrs[0].kill_asked);
    CHECK_EQ_INT(sched_live_containers(e.ctl), 0);
    /* terminate_container: the container goes at once, without the grace. */
    char third[64];
    submit(&e, "z", true, third);
    start_and_dispatch(&e);
    struct fake_ctr *k = &e.fake.ctrs[e.fake.nctrs - 1];
    CHECK_EQ_INT(inflight(k), 1);
    CHECK(ctl_cancel_call(e.ctl, NULL, third, true, &v, &ce) == 0);
    CHECK_EQ_INT(v.state, CTL_CALL_CANCELLED);
    CHECK(k->kill_asked);
    CHECK_EQ_INT(k->ncancelled, 0);
    run_for(&e, 5);
    CHECK_EQ_INT(sched_live_containers(e.ctl), 0);
    /* Unknown ids are a not-found, not a crash. */
    CHECK(ctl_cancel(e.ctl, NULL, "fc-nope", &v, &ce) == -ENOENT);
    CHECK_EQ_INT(ce.kind, CTL_E_NOT_FOUND);
    env_free(&e);
}

/* lifetime_inputs (Modal's function max_inputs): a container takes that many inputs,
 * takes no more (a fresh one serves the next), and stops once they are done. */
UNIT_TEST(test_lifetime_inputs_replace_containers)
{
    struct env e;
    env_init(&e, 4000, 4096, 0);
    deploy(&e, "\"scaling\":{\"max_containers\":2,\"max_inputs\":2,\"lifetime_inputs\":2},"
               "\"resources\":{\"cpu\":100,\"memory\":64}");
    char a[64], b[64], c[64];
    submit(&e, "a", false, a);
    start_and_dispatch(&e);
    struct fake_ctr *first = &e.fake.ctrs[0];
    CHECK_EQ_INT(inflight(first), 1);
    submit(&e, "b", false, b);
    run_for(&e, 5);
    CHECK_EQ_INT(inflight(first), 2); /* its second and last input */
    submit(&e, "c", false, c);
    start_and_dispatch(&e);
    CHECK_EQ_INT(e.fake.nctrs, 2); /* it had room left, but no inputs: c went to a new one */
    CHECK_EQ_INT(inflight(&e.fake.ctrs[1]), 1);
    fake_answer(&e.fake, first, "ok", 0);
    run_for(&e, 5);
    CHECK(!first->stop_asked); /* one input still runs */
    fake_answer(&e.fake, first, "ok", 0);
    CHECK(first->stop_asked);
    CHECK_EQ_INT(call_state(&e, a, NULL), CTL_CALL_SUCCEEDED);
    CHECK_EQ_INT(call_state(&e, b, NULL), CTL_CALL_SUCCEEDED);
    run_for(&e, 5);
    env_free(&e);
}

/* A container that crashes with an input fails that input; one that is stopped (kind 0)
 * puts it back at the front of the queue without counting the attempt. */
UNIT_TEST(test_container_exit_with_inputs)
{
    struct env e;
    env_init(&e, 4000, 4096, 0);
    deploy(&e, "\"scaling\":{\"max_containers\":1},\"resources\":{\"cpu\":100,\"memory\":64}");
    char a[64], b[64];
    submit(&e, "a", false, a);
    start_and_dispatch(&e);
    fake_exit(&e.fake, &e.fake.ctrs[0], CTR_FAIL_CRASHED);
    struct ctl_call_view v;
    CHECK_EQ_INT(call_state(&e, a, &v), CTL_CALL_FAILED);
    CHECK_STR(v.error_code, "crashed");

    submit(&e, "b", false, b);
    run_for(&e, 5);
    CHECK_EQ_INT(e.fake.nctrs, 2);
    e.fake.ev->ready(e.fake.ud, e.fake.ctrs[1].id);
    run_for(&e, 5);
    CHECK_EQ_INT(inflight(&e.fake.ctrs[1]), 1);
    fake_exit(&e.fake, &e.fake.ctrs[1], 0);
    CHECK_EQ_INT(call_state(&e, b, &v), CTL_CALL_PENDING);
    CHECK_EQ_INT(v.attempts, 0);
    run_for(&e, 5);
    CHECK_EQ_INT(e.fake.nctrs, 3); /* a new container for the requeued input */
    env_free(&e);
}

/* A start refused by the worker fails the oldest queued call (spawn_failed) instead of
 * restarting forever; so does a container that exits before it is ready. */
UNIT_TEST(test_start_failures_fail_a_call)
{
    struct env e;
    env_init(&e, 4000, 4096, 0);
    deploy(&e, "\"resources\":{\"cpu\":100,\"memory\":64}");
    e.fake.fail_next_start = 1;
    char a[64], b[64];
    submit(&e, "a", false, a);
    run_for(&e, 5);
    struct ctl_call_view v;
    CHECK_EQ_INT(call_state(&e, a, &v), CTL_CALL_FAILED);
    CHECK_STR(v.error_code, "spawn_failed");
    CHECK_EQ_INT(e.ctl->cpu_used, 0);

    submit(&e, "b", false, b);
    run_for(&e, 5);
    CHECK_EQ_INT(e.fake.nctrs, 1);
    fake_exit(&e.fake, &e.fake.ctrs[0], CTR_FAIL_START);
    CHECK_EQ_INT(call_state(&e, b, &v), CTL_CALL_FAILED);
    CHECK_STR(v.error_code, "spawn_failed");
    env_free(&e);
}

/* A durable call running when the daemon died is queued again by the next control on
 * the same store, and runs to completion. */
UNIT_TEST(test_requeue_after_restart)
{
    struct env e;
    env_init(&e, 4000, 4096, 0);
    deploy(&e, "\"resources\":{\"cpu\":100,\"memory\":64}");
    char id[64];
    submit(&e, "x", true, id);
    start_and_dispatch(&e);
    CHECK_EQ_INT(call_state(&e, id, NULL), CTL_CALL_RUNNING);
    /* The daemon dies: its control goes away without a graceful stop, and so do the
     * worker's containers. */
    ctl_free(e.ctl);
    memset(e.fake.ctrs, 0, sizeof e.fake.ctrs);
    e.fake.nctrs = 0;
    env_open_ctl(&e);
    CHECK_EQ_INT(call_state(&e, id, NULL), CTL_CALL_PENDING);
    run_for(&e, 5);
    CHECK_EQ_INT(e.fake.nctrs, 1);
    fake_ready_all(&e.fake);
    run_for(&e, 5);
    fake_answer(&e.fake, &e.fake.ctrs[0], "done", 0);
    struct ctl_call_view v;
    CHECK_EQ_INT(call_state(&e, id, &v), CTL_CALL_SUCCEEDED);
    CHECK_EQ_INT(v.attempts, 2);
    env_free(&e);
}

/* A redeploy: new calls go to the new version; the old version's busy container
 * finishes its input, then is stopped, and the old version is freed. */
UNIT_TEST(test_versions_drain)
{
    struct env e;
    env_init(&e, 4000, 4096, 0);
    deploy(&e, "\"resources\":{\"cpu\":100,\"memory\":64}");
    char old_call[64], new_call[64];
    submit(&e, "old", false, old_call);
    start_and_dispatch(&e);
    deploy(&e, "\"resources\":{\"cpu\":100,\"memory\":64},\"env\":{\"V\":\"2\"}");
    submit(&e, "new", false, new_call);
    run_for(&e, 5);
    CHECK_EQ_INT(e.fake.nctrs, 2);
    CHECK_EQ_INT(fn(&e)->latest->version, 2);
    CHECK_EQ_INT(list_length(&fn(&e)->versions), 2);
    CHECK(!e.fake.ctrs[0].stop_asked); /* busy: it finishes first */
    fake_answer(&e.fake, &e.fake.ctrs[0], "v1", 0);
    run_for(&e, 5);
    CHECK(e.fake.ctrs[0].stop_asked);
    run_for(&e, 5);
    CHECK_EQ_INT(list_length(&fn(&e)->versions), 1);
    e.fake.ev->ready(e.fake.ud, e.fake.ctrs[1].id);
    run_for(&e, 5);
    fake_answer(&e.fake, &e.fake.ctrs[1], "v2", 0);
    struct ctl_call_view v;
    CHECK_EQ_INT(call_state(&e, old_call, &v), CTL_CALL_SUCCEEDED);
    CHECK_EQ_INT(v.version, 1);
    CHECK_EQ_INT(call_state(&e, new_call, &v), CTL_CALL_SUCCEEDED);
    CHECK_EQ_INT(v.version, 2);
    env_free(&e);
}

/* A version no longer current whose last queued call fails to start is freed once its
 * visit of the pass is over, not in the middle of it (the pass goes on with it). */
UNIT_TEST(test_old_version_freed_after_its_visit)
{
    struct env e;
    env_init(&e, 4000, 4096, 0);
    deploy(&e, "\"resources\":{\"cpu\":100,\"memory\":64}");
    char id[64];
    submit(&e, "x", false, id); /* queued on version 1; no pass has run yet */
    deploy(&e, "\"resources\":{\"cpu\":100,\"memory\":64},\"env\":{\"V\":\"2\"}");
    e.fake.fail_next_start = 1;
    run_for(&e, 5);
    struct ctl_call_view v;
    CHECK_EQ_INT(call_state(&e, id, &v), CTL_CALL_FAILED);
    CHECK_STR(v.error_code, "spawn_failed");
    CHECK_EQ_INT(v.version, 1);
    CHECK_EQ_INT(list_length(&fn(&e)->versions), 1);
    env_free(&e);
}

/* What does not fit waits with a reason naming what is missing; what can never fit
 * is refused at deploy with the field to fix. */
UNIT_TEST(test_capacity_waiting_reasons)
{
    struct env e;
    env_init(&e, 1000, 4096, 1);
    deploy(&e, "\"scaling\":{\"max_containers\":3},\"resources\":{\"cpu\":600,\"memory\":64}");
    char id[64];
    submit(&e, "x", false, id);
    submit(&e, "y", false, id);
    run_for(&e, 5);
    CHECK_EQ_INT(e.fake.nctrs, 1);
    CHECK(strstr(fn(&e)->latest->waiting_reason, "needs cpu 600m"));
    json_t *j = ctl_function_json(e.ctl, "default/a", "f", NULL);
    CHECK(strstr(json_string_value(json_object_get(j, "waiting_reason")), "free"));
    json_decref(j);
    env_free(&e);

    env_init(&e, 4000, 4096, 1);
    deploy(&e, "\"resources\":{\"cpu\":100,\"memory\":64,\"gpu\":\"H100:1\"},\"scaling\":{\"max_containers\":2}");
    submit(&e, "x", false, id);
    submit(&e, "y", false, id);
    run_for(&e, 5);
    CHECK_EQ_INT(e.fake.nctrs, 1);
    CHECK_EQ_INT(e.fake.ctrs[0].ngpus, 1);
    CHECK_EQ_INT(e.fake.ctrs[0].gpus[0], 0);
    CHECK(strstr(fn(&e)->latest->waiting_reason, "needs 1 x H100, worker has 0 free"));
    /* Two H100s on a worker that has one: refused at deploy, naming the field. */
    json_t *spec = json_loads("{\"app\":\"b\",\"functions\":[{\"name\":\"g\",\"kind\":\"exec\",\"command\":[\"x\"],"
                              "\"image\":\"img\",\"resources\":{\"gpu\":\"H100:2\"}}]}",
                              0, NULL);
    json_t *res = NULL;
    struct ctl_error ce = {0};
    CHECK(ctl_deploy(e.ctl, "default", spec, &res, &ce) < 0);
    CHECK_EQ_INT(ce.kind, CTL_E_UNSCHEDULABLE);
    CHECK_STR(ce.field, "functions[0].resources");
    json_decref(spec);
    env_free(&e);
}

/* Deploys the snapshot function of test_snapshot_versions; env_value makes its content
 * differ ("" for none). */
static void deploy_snap_fn(struct env *e, const char *env_value)
{
    char extra[512];
    snprintf(extra, sizeof extra,
             "\"mode\":\"runner\",\"snapshot\":true,\"scaling\":{\"max_containers\":2,\"max_inputs\":1},"
             "\"resources\":{\"cpu\":100,\"memory\":64}%s%s%s",
             env_value[0] ? ",\"env\":{\"V\":\"" : "", env_value, env_value[0] ? "\"}" : "");
    deploy(e, extra);
}

/* Snapshot functions: the snapshot is taken at deploy, before any call; containers are
 * restored from it once it is ready; a redeploy of the same content shares it (the
 * init does not run again), one of other content takes its own; a snapshot nothing
 * uses is a spare for snapshot_spare_ms (a redeploy takes it back), at most
 * CTL_SNAP_SPARES of them; one that fails before it is ready fails a queued call. */
UNIT_TEST(test_snapshot_versions)
{
    struct env e;
    struct ctl_config bounds = {.snapshot_spare_ms = 300};
    env_init_bounded(&e, 4000, 4096, 0, &bounds);
    deploy_snap_fn(&e, "");
    CHECK_EQ_INT(e.fake.snap_takes, 1);
    char first[64], a[64], b[64], d[64];
    snprintf(first, sizeof first, "%s", e.fake.snap_id);
    submit(&e, "a", false, a);
    run_for(&e, 5);
    CHECK_EQ_INT(e.fake.nctrs, 0);
    CHECK(strstr(fn(&e)->latest->waiting_reason, "snapshot"));
    e.fake.ev->snapshot_state(e.fake.ud, first, SNAPSHOT_READY, NULL);
    run_for(&e, 5);
    CHECK_EQ_INT(e.fake.nctrs, 1);
    CHECK(e.fake.ctrs[0].restored);
    fake_ready_all(&e.fake);
    run_for(&e, 5);
    fake_answer(&e.fake, &e.fake.ctrs[0], "ok", 0);
    CHECK_EQ_INT(call_state(&e, a, NULL), CTL_CALL_SUCCEEDED);

    /* The same content again: the new version's first container comes from the
     * snapshot the first deploy warmed. */
    deploy_snap_fn(&e, "");
    CHECK_EQ_INT(e.fake.snap_takes, 1);
    CHECK(fn(&e)->latest->snap && !strcmp(fn(&e)->latest->snap->id, first));
    CHECK_EQ_INT(fn(&e)->latest->snap->state, SNAPSHOT_READY);
    submit(&e, "b", false, b);
    run_for(&e, 5);
    CHECK_EQ_INT(e.fake.nctrs, 2);
    CHECK(e.fake.ctrs[1].restored);
    CHECK_STR(e.fake.ctrs[1].from_snap, first);
    fake_ready_all(&e.fake);
    run_for(&e, 5);
    fake_answer(&e.fake, &e.fake.ctrs[1], "ok", 0);

    /* Other content takes its own at deploy; the first, unused once the old versions
     * are gone, is a spare, and a deploy of its content takes it back. */
    deploy_snap_fn(&e, "2");
    CHECK_EQ_INT(e.fake.snap_takes, 2);
    char second[64];
    snprintf(second, sizeof second, "%s", e.fake.snap_id);
    run_for(&e, 50);
    struct ctl_snap *s = ctl_snap_by_id(e.ctl, first);
    CHECK(s && s->refs == 0 && !fake_snap_dropped(&e.fake, first));
    deploy_snap_fn(&e, "");
    CHECK_EQ_INT(e.fake.snap_takes, 2);
    CHECK(fn(&e)->latest->snap == s && s->refs == 1);
    /* Now the second is the spare: dropped once snapshot_spare_ms passed unused. */
    run_for(&e, 50);
    CHECK(ctl_snap_by_id(e.ctl, second) && !fake_snap_dropped(&e.fake, second));
    run_for(&e, 400);
    CHECK(fake_snap_dropped(&e.fake, second) && !ctl_snap_by_id(e.ctl, second));
    CHECK(!fake_snap_dropped(&e.fake, first));

    /* Past CTL_SNAP_SPARES spares, the oldest goes first. */
    int takes = e.fake.snap_takes;
    for (int i = 0; i < CTL_SNAP_SPARES + 2; i++) {
        char v[16];
        snprintf(v, sizeof v, "x%d", i);
        deploy_snap_fn(&e, v);
        run_for(&e, 5);
    }
    CHECK_EQ_INT(e.fake.snap_takes, takes + CTL_SNAP_SPARES + 2);
    CHECK_EQ_INT((int)e.ctl->nspare, CTL_SNAP_SPARES);
    CHECK(fake_snap_dropped(&e.fake, first));
    CHECK(fake_snap_dropped(&e.fake, e.fake.snaps[takes].id));
    CHECK(!fake_snap_dropped(&e.fake, e.fake.snaps[takes + 1].id));

    /* A snapshot that fails before it is ready fails the oldest queued call. */
    deploy_snap_fn(&e, "3");
    submit(&e, "d", false, d);
    run_for(&e, 5);
    e.fake.ev->snapshot_state(e.fake.ud, e.fake.snap_id, SNAPSHOT_GONE, "init raised ImportError");
    struct ctl_call_view v;
    CHECK_EQ_INT(call_state(&e, d, &v), CTL_CALL_FAILED);
    CHECK_STR(v.error_code, "spawn_failed");
    CHECK(strstr(v.error_message, "init raised ImportError"));
    CHECK(!fn(&e)->latest->snap);

    /* After a restart (templates die with the daemon), the deployed snapshot function
     * gets its snapshot again at recovery, before any call. */
    ctl_free(e.ctl);
    takes = e.fake.snap_takes;
    env_open_ctl(&e);
    CHECK_EQ_INT(e.fake.snap_takes, takes + 1);
    CHECK(fn(&e)->latest->snap && !strcmp(fn(&e)->latest->snap->id, e.fake.snap_id));
    env_free(&e);
}

static void on_shutdown(void *ud)
{
    *(bool *)ud = true;
}

/* A graceful stop lets the running input finish, answers sync calls that never
 * started, stops the containers, then reports done. */
UNIT_TEST(test_shutdown_drains)
{
    struct env e;
    env_init(&e, 4000, 4096, 0);
    deploy(&e, "\"scaling\":{\"max_containers\":1},\"resources\":{\"cpu\":100,\"memory\":64}");
    char running[64], waiting[64];
    submit(&e, "r", false, running);
    submit(&e, "w", false, waiting);
    start_and_dispatch(&e);
    bool done = false;
    ctl_shutdown(e.ctl, on_shutdown, &done);
    struct ctl_call_view v;
    CHECK_EQ_INT(call_state(&e, waiting, &v), CTL_CALL_CANCELLED);
    CHECK_STR(v.error_code, "shutting_down");
    char id[64];
    struct ctl_error ce;
    CHECK(ctl_submit(e.ctl, "default/a", "f", "z", 1, false, id, &ce) == -ESHUTDOWN);
    run_for(&e, 5);
    CHECK(!done);
    fake_answer(&e.fake, &e.fake.ctrs[0], "fin", 0);
    run_for(&e, 5);
    CHECK(done);
    CHECK_EQ_INT(call_state(&e, running, NULL), CTL_CALL_SUCCEEDED);
    env_free(&e);
}

struct map_seen {
    size_t results, ends;
    size_t order[8];
};

static void map_cb(void *ud, size_t index, const struct ctl_call_view *v)
{
    struct map_seen *m = ud;
    if (!v) {
        m->ends++;
        return;
    }
    if (m->results < 8)
        m->order[m->results] = index;
    m->results++;
}

/* An ordered map emits in input order whatever order the results come in. */
UNIT_TEST(test_map_ordered)
{
    struct env e;
    env_init(&e, 4000, 4096, 0);
    deploy(&e, "\"scaling\":{\"max_containers\":3},\"resources\":{\"cpu\":100,\"memory\":64}");
    struct ctl_input in[3] = {{"0", 1}, {"1", 1}, {"2", 1}};
    struct map_seen seen = {0};
    struct ctl_map *m = NULL;
    struct ctl_error ce;
    CHECK(ctl_map(e.ctl, "default/a", "f", in, 3, true, map_cb, &seen, &m, &ce) == 0);
    run_for(&e, 5);
    CHECK_EQ_INT(e.fake.nctrs, 3);
    fake_ready_all(&e.fake);
    run_for(&e, 5);
    /* Answer the containers last to first: results arrive out of order. */
    for (int k = 2; k >= 0; k--)
        fake_answer(&e.fake, &e.fake.ctrs[k], "r", 0);
    CHECK_EQ_INT(seen.results, 3);
    CHECK_EQ_INT(seen.ends, 1);
    for (size_t i = 0; i < 3; i++)
        CHECK_EQ_INT(seen.order[i], i);
    env_free(&e);
}

static void count_line(void *ud, double ts, const char *ctr, const char *call, int stream, const char *line,
                       size_t len)
{
    ++*(int *)ud;
}

/* The store keeps at most log_lines_per_fn lines and calls_per_fn finished calls of a
 * function, trimmed on the tick: the newest stay. */
UNIT_TEST(test_store_bounds_trimmed_on_tick)
{
    struct env e;
    struct ctl_config bounds = {.log_lines_per_fn = 3, .calls_per_fn = 2, .trim_interval_ms = 100};
    env_init_bounded(&e, 4000, 4096, 0, &bounds);
    deploy(&e, "\"resources\":{\"cpu\":100,\"memory\":64}");
    char ids[5][64];
    submit(&e, "0", true, ids[0]);
    start_and_dispatch(&e);
    struct fake_ctr *k = &e.fake.ctrs[0];
    for (int i = 0; i < 10; i++) {
        char line[16];
        int n = snprintf(line, sizeof line, "line %d", i);
        e.fake.ev->log(e.fake.ud, k->id, 1, 0, line, (size_t)n);
    }
    fake_answer(&e.fake, k, "r", 0);
    for (int i = 1; i < 5; i++) {
        submit(&e, "x", true, ids[i]);
        run_for(&e, 5);
        fake_answer(&e.fake, k, "r", 0);
        usleep(2000); /* distinct finish times */
    }
    run_for(&e, 250);
    int lines = 0;
    struct ctl_error ce;
    CHECK(ctl_logs(e.ctl, "default/a", "f", -1, NULL, count_line, &lines, &ce) == 0);
    CHECK_EQ_INT(lines, 3);
    struct store_call sc;
    struct gerr err;
    for (int i = 0; i < 5; i++) {
        int r = store_call_get(e.store, ids[i], &sc, false, &err);
        CHECK_EQ_INT(r, i < 3 ? -ENOENT : 0);
        if (r == 0)
            store_call_free(&sc);
    }
    env_free(&e);
}

struct app_log_seen {
    int n;
    uint64_t seq[8];
    bool concurrent[8];
    char call[8][64];
    char text[256];
    struct ctl *ctl;
    struct ctl_app_log_sub *sub;
    bool unsubscribe_self; /* after the first line */
};

static void app_log_collect(void *ud, const struct ctl_log_entry *l)
{
    struct app_log_seen *s = ud;
    if (s->n < 8) {
        s->seq[s->n] = l->seq;
        s->concurrent[s->n] = l->concurrent;
        snprintf(s->call[s->n], sizeof s->call[s->n], "%s", l->call_id);
    }
    size_t used = strlen(s->text);
    snprintf(s->text + used, sizeof s->text - used, "%s/%d/%.*s;", l->function, l->stream, (int)l->len, l->line);
    s->n++;
    if (s->unsubscribe_self) {
        ctl_app_log_unsubscribe(s->ctl, s->sub);
        s->unsubscribe_self = false;
    }
}

/* An app's lines are numbered in order, with the call that printed each and whether
 * another call of its function ran at the same time; a follower hears them live, the
 * store gives the same lines after a seq, and the numbering goes on after a restart. */
UNIT_TEST(test_app_logs_numbered)
{
    struct env e;
    env_init(&e, 4000, 4096, 0);
    deploy(&e, "\"scaling\":{\"max_containers\":1,\"max_inputs\":2},\"resources\":{\"cpu\":100,\"memory\":64}");
    struct ctl_error ce;
    uint64_t seq = 99;
    CHECK(ctl_app_log_seq(e.ctl, "default/a", &seq, &ce) == 0);
    CHECK(seq == 0);
    CHECK_EQ_INT(ctl_app_log_seq(e.ctl, "default/nope", &seq, &ce), -ENOENT);
    CHECK_EQ_INT(ctl_app_log_seq(e.ctl, "team/a", &seq, &ce), -ENOENT);
    struct app_log_seen live = {.ctl = e.ctl}, once = {.ctl = e.ctl, .unsubscribe_self = true};
    CHECK(ctl_app_log_subscribe(e.ctl, "default/a", app_log_collect, &once, &once.sub, &ce) == 0);
    CHECK(ctl_app_log_subscribe(e.ctl, "default/a", app_log_collect, &live, &live.sub, &ce) == 0);
    CHECK_EQ_INT(ctl_app_log_subscribe(e.ctl, "default/nope", app_log_collect, &live, &live.sub, &ce), -ENOENT);
    char ids[2][64];
    submit(&e, "0", false, ids[0]);
    submit(&e, "1", false, ids[1]);
    start_and_dispatch(&e);
    CHECK_EQ_INT(e.fake.nctrs, 1);
    struct fake_ctr *k = &e.fake.ctrs[0];
    uint64_t in0 = k->inputs[0];
    CHECK(in0 && k->inputs[1]);
    e.fake.ev->log(e.fake.ud, k->id, 1, in0, "both running", 12);
    e.fake.ev->log(e.fake.ud, k->id, 2, 0, "no call", 7);
    fake_answer(&e.fake, k, "r", 0);
    run_for(&e, 5);
    e.fake.ev->log(e.fake.ud, k->id, 1, k->inputs[1], "after the other", 15);
    fake_answer(&e.fake, k, "r", 0);
    run_for(&e, 5);
    char third[64];
    submit(&e, "2", false, third);
    run_for(&e, 5);
    e.fake.ev->log(e.fake.ud, k->id, 2, k->inputs[0], "alone", 5);
    CHECK_EQ_INT(once.n, 1);
    CHECK_EQ_INT(live.n, 4);
    CHECK_STR(live.text, "f/1/both running;f/2/no call;f/1/after the other;f/2/alone;");
    CHECK(live.seq[0] == 1 && live.seq[1] == 2 && live.seq[2] == 3 && live.seq[3] == 4);
    /* The first call had company once the second started; the second from its start
     * (both still count after the other ended); the third ran alone. */
    CHECK(live.concurrent[0] && live.concurrent[1] && live.concurrent[2] && !live.concurrent[3]);
    CHECK(live.call[0][0] && !live.call[1][0] && live.call[2][0] && strcmp(live.call[0], live.call[2]));
    CHECK(!strcmp(live.call[2], ids[0]) || !strcmp(live.call[2], ids[1]));
    CHECK_STR(live.call[3], third);
    ctl_app_log_unsubscribe(e.ctl, live.sub);

    /* The store gives the same lines from a seq on, in pages. */
    struct app_log_seen stored = {0};
    CHECK_EQ_INT(ctl_app_logs(e.ctl, "default/a", 2, -1, app_log_collect, &stored, &ce), 2);
    CHECK_STR(stored.text, "f/1/after the other;f/2/alone;");
    CHECK(stored.seq[0] == 3 && stored.seq[1] == 4 && stored.concurrent[0] && !stored.concurrent[1]);
    CHECK(!strcmp(stored.call[0], live.call[2]) && !strcmp(stored.call[1], third));
    memset(&stored, 0, sizeof stored);
    CHECK_EQ_INT(ctl_app_logs(e.ctl, "default/a", 0, 1, app_log_collect, &stored, &ce), 1);
    CHECK(stored.seq[0] == 1 && stored.concurrent[0]);
    CHECK_EQ_INT(ctl_app_logs(e.ctl, "default/a", 4, -1, app_log_collect, &stored, &ce), 0);
    CHECK_EQ_INT(ctl_app_logs(e.ctl, "default/nope", 0, -1, app_log_collect, &stored, &ce), -ENOENT);
    fake_answer(&e.fake, k, "r", 0);
    run_for(&e, 5);

    /* After a restart the numbering goes on, and a deploy says where it stands. */
    ctl_free(e.ctl);
    env_open_ctl(&e);
    CHECK(ctl_app_log_seq(e.ctl, "default/a", &seq, &ce) == 0);
    CHECK(seq == 4);
    json_t *spec = json_loads("{\"app\":\"a\",\"functions\":[{\"name\":\"f\",\"kind\":\"exec\","
                              "\"command\":[\"x\"],\"image\":\"img\"}]}",
                              0, NULL);
    json_t *res = NULL;
    CHECK(ctl_deploy(e.ctl, "default", spec, &res, &ce) == 0);
    CHECK_EQ_INT((int)json_integer_value(json_object_get(res, "log_seq")), 4);
    json_decref(res);
    json_decref(spec);
    env_free(&e);
}

/* Reads the first line of <dir>/admin.token. */
static void read_admin_token(struct env *e, char *out, size_t cap)
{
    char path[160];
    snprintf(path, sizeof path, "%s/admin.token", e->dir);
    struct stat st;
    CHECK(stat(path, &st) == 0);
    CHECK_EQ_INT(st.st_mode & 0777, 0600);
    FILE *f = fopen(path, "re");
    CHECK(f);
    CHECK(fgets(out, (int)cap, f));
    fclose(f);
    out[strcspn(out, "\n")] = '\0';
}

/* The first start writes an admin token; tokens authenticate by id and secret, carry
 * their workspace and role, stop working when revoked or expired, and only their
 * hash is stored (a restart on the same store still accepts them). */
UNIT_TEST(test_tokens_and_roles)
{
    struct env e;
    env_init(&e, 4000, 4096, 0);
    char admin[128];
    read_admin_token(&e, admin, sizeof admin);
    struct ctl_principal who;
    CHECK(ctl_authenticate(e.ctl, admin, &who) == 0);
    CHECK_STR(who.ws, "default");
    CHECK_EQ_INT(who.role, CTL_ROLE_ADMIN);
    /* A wrong secret with a right id, a truncated token, and none at all. */
    char forged[128];
    snprintf(forged, sizeof forged, "%s", admin);
    forged[strlen(forged) - 1] = forged[strlen(forged) - 1] == 'a' ? 'b' : 'a';
    CHECK(ctl_authenticate(e.ctl, forged, &who) == -EACCES);
    forged[10] = '\0';
    CHECK(ctl_authenticate(e.ctl, forged, &who) == -EACCES);
    CHECK(ctl_authenticate(e.ctl, NULL, &who) == -EACCES);

    struct ctl_error ce;
    json_t *body = json_pack("{s:s}", "name", "team-b");
    json_t *w = ctl_workspace_create(e.ctl, body, &ce);
    CHECK(w);
    json_decref(w);
    CHECK(!ctl_workspace_create(e.ctl, body, &ce));
    CHECK_EQ_INT(ce.kind, CTL_E_CONFLICT);
    json_decref(body);
    body = json_pack("{s:s}", "name", "Bad/Name");
    CHECK(!ctl_workspace_create(e.ctl, body, &ce));
    CHECK_STR(ce.field, "name");
    json_decref(body);

    body = json_pack("{s:s,s:s}", "workspace", "team-b", "role", "invoker");
    json_t *t = ctl_token_create(e.ctl, body, &ce);
    json_decref(body);
    CHECK(t);
    char inv[128], inv_id[32];
    snprintf(inv, sizeof inv, "%s", json_string_value(json_object_get(t, "token")));
    snprintf(inv_id, sizeof inv_id, "%s", json_string_value(json_object_get(t, "id")));
    json_decref(t);
    CHECK(ctl_authenticate(e.ctl, inv, &who) == 0);
    CHECK_STR(who.ws, "team-b");
    CHECK_EQ_INT(who.role, CTL_ROLE_INVOKER);
    /* Listings never carry a secret. */
    json_t *all = ctl_tokens_json(e.ctl);
    AUTO_FREE char *text = json_dumps(all, 0);
    json_decref(all);
    CHECK(!strstr(text, inv + 22));
    CHECK(!strstr(text, admin + 22));

    body = json_pack("{s:s,s:s}", "workspace", "nope", "role", "developer");
    CHECK(!ctl_token_create(e.ctl, body, &ce));
    CHECK_EQ_INT(ce.kind, CTL_E_NOT_FOUND);
    json_decref(body);
    body = json_pack("{s:s,s:s}", "workspace", "team-b", "role", "root");
    CHECK(!ctl_token_create(e.ctl, body, &ce));
    CHECK_STR(ce.field, "role");
    json_decref(body);

    body = json_pack("{s:s,s:s,s:f}", "workspace", "team-b", "role", "developer", "expires_in", 0.05);
    t = ctl_token_create(e.ctl, body, &ce);
    json_decref(body);
    CHECK(t);
    char shortlived[128];
    snprintf(shortlived, sizeof shortlived, "%s", json_string_value(json_object_get(t, "token")));
    json_decref(t);
    CHECK(ctl_authenticate(e.ctl, shortlived, &who) == 0);
    usleep(80 * 1000);
    CHECK(ctl_authenticate(e.ctl, shortlived, &who) == -EKEYEXPIRED);

    /* A restart keeps tokens (by hash) and does not mint another admin token. */
    ctl_free(e.ctl);
    env_open_ctl(&e);
    CHECK(ctl_authenticate(e.ctl, inv, &who) == 0);
    CHECK(ctl_authenticate(e.ctl, admin, &who) == 0);
    CHECK(ctl_token_revoke(e.ctl, inv_id, &ce) == 0);
    CHECK(ctl_authenticate(e.ctl, inv, &who) == -EACCES);
    CHECK(ctl_token_revoke(e.ctl, inv_id, &ce) == -ENOENT);
    env_free(&e);
}

/* A container's token (ctl_token_ephemeral): an invoker of its workspace while it is
 * kept, in no listing, not revocable through the API, refused once dropped, and gone
 * after a restart (it was never stored). */
UNIT_TEST(test_ephemeral_tokens)
{
    struct env e;
    env_init(&e, 4000, 4096, 0);
    char tok[CTL_TOKEN_LEN + 1], id[CTL_TOKEN_ID_LEN + 1], tok2[CTL_TOKEN_LEN + 1], id2[CTL_TOKEN_ID_LEN + 1];
    CHECK(ctl_token_ephemeral(e.ctl, "default", "ct-one", tok, id) == 0);
    CHECK(ctl_token_ephemeral(e.ctl, "default", "ct-two", tok2, id2) == 0);
    CHECK_EQ_INT((int)strlen(tok), CTL_TOKEN_LEN);
    struct ctl_principal who;
    CHECK(ctl_authenticate(e.ctl, tok, &who) == 0);
    CHECK_STR(who.ws, "default");
    CHECK_EQ_INT(who.role, CTL_ROLE_INVOKER);
    json_t *all = ctl_tokens_json(e.ctl);
    AUTO_FREE char *text = json_dumps(all, 0);
    json_decref(all);
    CHECK(!strstr(text, id) && !strstr(text, id2));
    struct ctl_error ce;
    CHECK(ctl_token_revoke(e.ctl, id, &ce) == -ENOENT);
    CHECK(ctl_authenticate(e.ctl, tok, &who) == 0);
    ctl_token_ephemeral_drop(e.ctl, id);
    CHECK(ctl_authenticate(e.ctl, tok, &who) == -EACCES);
    CHECK(ctl_authenticate(e.ctl, tok2, &who) == 0);
    ctl_token_ephemeral_drop(e.ctl, id); /* twice, or "": nothing */
    ctl_token_ephemeral_drop(e.ctl, "");
    ctl_free(e.ctl);
    env_open_ctl(&e);
    CHECK(ctl_authenticate(e.ctl, tok2, &who) == -EACCES);
    env_free(&e);
}

/* Creates workspace "small", whose quota is one container. */
static void add_small_workspace(struct env *e)
{
    struct ctl_error ce;
    json_t *body = json_pack("{s:s,s:{s:i}}", "name", "small", "quotas", "containers", 1);
    json_t *w = ctl_workspace_create(e->ctl, body, &ce);
    CHECK(w);
    json_decref(w);
    json_decref(body);
}

/* Objects are keyed by workspace: another workspace's call is not found; a workspace
 * at its containers quota waits, saying so, and goes on when the quota is raised. */
UNIT_TEST(test_workspace_isolation_and_quotas)
{
    struct env e;
    env_init(&e, 4000, 4096, 0);
    struct ctl_error ce;
    add_small_workspace(&e);
    const char *text = "{\"app\":\"a\",\"functions\":[{\"name\":\"f\",\"kind\":\"exec\",\"command\":[\"x\"],"
                       "\"image\":\"img\",\"resources\":{\"cpu\":100,\"memory\":64}},"
                       "{\"name\":\"g\",\"kind\":\"exec\",\"command\":[\"x\"],"
                       "\"image\":\"img\",\"resources\":{\"cpu\":100,\"memory\":64}}]}";
    json_t *spec = json_loads(text, 0, NULL);
    json_t *res = NULL;
    CHECK(ctl_deploy(e.ctl, "small", spec, &res, &ce) == 0);
    json_decref(res);
    json_decref(spec);
    char f_id[64], g_id[64];
    CHECK(ctl_submit(e.ctl, "small/a", "f", "x", 1, false, f_id, &ce) == 0);
    CHECK(ctl_submit(e.ctl, "small/a", "g", "x", 1, false, g_id, &ce) == 0);
    run_for(&e, 5);
    CHECK_EQ_INT(e.fake.nctrs, 1);
    json_t *fns = ctl_functions_json(e.ctl, "small");
    size_t i;
    json_t *fj;
    const char *reason = NULL;
    json_array_foreach(json_object_get(fns, "functions"), i, fj) {
        CHECK_STR(json_string_value(json_object_get(fj, "app")), "a");
        if (json_is_string(json_object_get(fj, "waiting_reason")))
            reason = json_string_value(json_object_get(fj, "waiting_reason"));
    }
    CHECK(reason && strstr(reason, "containers quota"));
    json_decref(fns);
    /* Nothing of it is visible from "default". */
    fns = ctl_functions_json(e.ctl, "default");
    CHECK_EQ_INT(json_array_size(json_object_get(fns, "functions")), 0);
    json_decref(fns);
    struct ctl_call_view v;
    CHECK(ctl_call_status(e.ctl, "default", f_id, &v, &ce) == -ENOENT);
    CHECK_EQ_INT(ce.kind, CTL_E_NOT_FOUND);
    CHECK(ctl_cancel(e.ctl, "default", f_id, &v, &ce) == -ENOENT);
    CHECK(ctl_call_status(e.ctl, "small", f_id, &v, &ce) == 0);
    CHECK_STR(v.app, "a");
    /* Raising the quota lets the waiting call start. */
    json_t *q = json_pack("{s:i}", "containers", 2);
    json_t *w = ctl_workspace_set_quotas(e.ctl, "small", q, &ce);
    CHECK(w);
    json_decref(w);
    json_decref(q);
    run_for(&e, 5);
    CHECK_EQ_INT(e.fake.nctrs, 2);
    q = json_pack("{s:i}", "bogus", 2);
    CHECK(!ctl_workspace_set_quotas(e.ctl, "small", q, &ce));
    CHECK_STR(ce.field, "quotas");
    json_decref(q);
    env_free(&e);
}

/* ---------------------------------------------- keep-alive, eviction, pre-warm */

/* Deploys the app spec text (JSON) into workspace "default". */
static void deploy_text(struct env *e, const char *text)
{
    json_t *spec = json_loads(text, 0, NULL);
    CHECK(spec);
    json_t *res = NULL;
    struct ctl_error ce = {0};
    CHECK(ctl_deploy(e->ctl, "default", spec, &res, &ce) == 0);
    json_decref(res);
    json_decref(spec);
}

/* Deploys app "a" with n functions f0..f<n-1>, each of cpu millicores and 64 MiB. */
static void deploy_many(struct env *e, int n, uint32_t cpu)
{
    struct buf b = {0};
    buf_printf(&b, "{\"app\":\"a\",\"functions\":[");
    for (int i = 0; i < n; i++)
        buf_printf(&b, "%s{\"name\":\"f%d\",\"kind\":\"exec\",\"command\":[\"x\"],\"image\":\"img\","
                   "\"resources\":{\"cpu\":%u,\"memory\":64}}", i ? "," : "", i, cpu);
    buf_printf(&b, "]}");
    deploy_text(e, b.data);
    buf_free(&b);
}

static struct ctl_fn *fn_n(struct env *e, int i)
{
    char name[16];
    snprintf(name, sizeof name, "f%d", i);
    struct ctl_fn *f = ctl_find_fn(e->ctl, "default/a", name);
    CHECK(f);
    return f;
}

static void submit_n(struct env *e, int i, char id[64])
{
    char name[16];
    snprintf(name, sizeof name, "f%d", i);
    struct ctl_error ce;
    CHECK(ctl_submit(e->ctl, "default/a", name, "x", 1, false, id, &ce) == 0);
}

static struct fake_ctr *busy_ctr(struct fake *f);

/* Calls function i and answers the call once its container is up: i is then idle. */
static void call_to_idle(struct env *e, int i, char id[64])
{
    submit_n(e, i, id);
    start_and_dispatch(e);
    fake_answer(&e->fake, busy_ctr(&e->fake), "ok", 0);
    CHECK_EQ_INT(call_state(e, id, NULL), CTL_CALL_SUCCEEDED);
}

/* The fake container that holds an input (NULL if none). */
static struct fake_ctr *busy_ctr(struct fake *f)
{
    for (int i = 0; i < f->nctrs; i++)
        if (!f->ctrs[i].exited && inflight(&f->ctrs[i]))
            return &f->ctrs[i];
    return NULL;
}

/* The live fake container of function i (NULL if none). */
static struct fake_ctr *ctr_of(struct env *e, int i)
{
    struct ctl_fver *fv = fn_n(e, i)->latest;
    list_for_each(k, &fv->ctrs, struct ctl_ctr, link)
        if (k->state != CTR_STOPPING)
            return fake_find(&e->fake, k->id);
    return NULL;
}

static uint64_t total_evictions(struct env *e, int n)
{
    uint64_t t = 0;
    for (int i = 0; i < n; i++)
        t += fn_n(e, i)->evictions;
    return t;
}

/* 20 functions of 250 m on a 2000 m worker, each called once and then again: a call that
 * does not fit evicts the least recently used idle container instead of waiting for a
 * scale-down window. The worker never holds more than 8. */
UNIT_TEST(test_evict_instead_of_waiting)
{
    struct env e;
    env_init(&e, 2000, 8192, 0);
    deploy_many(&e, 20, 250);
    char id[64];
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 20; i++) {
            struct fake_ctr *oldest = NULL;
            if (round == 0 && i == 8)
                oldest = ctr_of(&e, 0); /* all idle, f0 the longest */
            submit_n(&e, i, id);
            /* Until its container starts (an evicted one's exit comes on a later turn). */
            for (int n = 0; n < 50 && !ctr_of(&e, i); n++) {
                run_for(&e, 2);
                const char *why = fn_n(&e, i)->latest->waiting_reason;
                CHECK(!strstr(why, "scale") && !strstr(why, "worker has"));
            }
            CHECK(ctr_of(&e, i));
            fake_ready_all(&e.fake);
            run_for(&e, 5);
            struct fake_ctr *k = busy_ctr(&e.fake);
            CHECK(k);
            fake_answer(&e.fake, k, "ok", 0);
            CHECK_EQ_INT(call_state(&e, id, NULL), CTL_CALL_SUCCEEDED);
            CHECK(live_ctrs(&e.fake) <= 8);
            CHECK(e.ctl->cpu_used <= 2000);
            if (oldest)
                CHECK(oldest->exited && oldest->stop_asked);
            run_for(&e, 2); /* idle times differ: LRU is well defined */
        }
    /* Round one evicted 12 (f8..f19 each made room); round two: f0..f11 were gone and
     * evicted 12 more, f12..f19 were evicted by them in turn and evicted 8 more. */
    CHECK(total_evictions(&e, 20) == 32);
    struct ctl_error ce;
    json_t *u = ctl_usage_json(e.ctl, "default", 0, &ce);
    CHECK(u);
    json_t *fns = json_object_get(json_array_get(json_object_get(u, "apps"), 0), "functions");
    json_int_t stored = 0;
    size_t i;
    json_t *fj;
    json_array_foreach(fns, i, fj) stored += json_integer_value(json_object_get(fj, "evictions"));
    CHECK_EQ_INT(stored, 32);
    json_decref(u);
    json_t *j = ctl_function_json(e.ctl, "default/a", "f0", NULL);
    CHECK(json_integer_value(json_object_get(j, "evictions")) >= 1);
    CHECK(json_real_value(json_object_get(j, "keepalive_s")) == 600.0); /* one idle time: the unknown window */
    CHECK(json_is_null(json_object_get(j, "next_prewarm_in_s")));
    json_decref(j);
    env_free(&e);
}

/* While an evicted container is still stopping, the call says it waits for it; its exit
 * lets the start go. */
UNIT_TEST(test_evict_waiting_reason)
{
    struct env e;
    env_init(&e, 500, 8192, 0);
    deploy_many(&e, 3, 250);
    char id[64];
    for (int i = 0; i < 2; i++) {
        call_to_idle(&e, i, id);
        run_for(&e, 2);
    }
    e.fake.hold_stops = true;
    submit_n(&e, 2, id);
    run_for(&e, 5);
    CHECK_STR(fn_n(&e, 2)->latest->waiting_reason,
              "waiting for 1 evicted idle container to stop (needs cpu 250m + memory 64 MiB)");
    CHECK_EQ_INT(e.fake.nctrs, 2);
    CHECK(e.fake.ctrs[0].stop_asked && !e.fake.ctrs[1].stop_asked); /* f0: idle the longest */
    fake_exit(&e.fake, &e.fake.ctrs[0], 0);
    run_for(&e, 5);
    CHECK_EQ_INT(e.fake.nctrs, 3);
    CHECK_EQ_INT(fn_n(&e, 0)->evictions, 1);
    env_free(&e);
}

/* Replaces f's history with n idle times of idle_ms for its one container (level 1),
 * the function idle since since_ms. */
static void seed_history(struct ctl_fn *f, int n, uint64_t idle_ms, uint64_t since_ms)
{
    ka_free(&f->ka);
    uint64_t t = 0;
    ka_set_level(&f->ka, 1, t);
    ka_set_level(&f->ka, 0, t);
    for (int i = 0; i < n; i++) {
        t += idle_ms;
        ka_set_level(&f->ka, 1, t);
        ka_set_level(&f->ka, 0, t);
    }
    f->ka.idle_since[0] = since_ms;
}

/* The victim is the idle container least likely to be used soon, not the least recently
 * used: f1's calls come hours apart, f0's a minute apart. */
UNIT_TEST(test_eviction_order)
{
    struct env e;
    env_init(&e, 750, 8192, 0);
    deploy_many(&e, 5, 250);
    char id[64];
    for (int i = 0; i < 3; i++) {
        call_to_idle(&e, i, id);
        run_for(&e, 2);
    }
    uint64_t now = ev_now_ms(e.loop);
    seed_history(fn_n(&e, 0), 30, 60000 + 5000, now - 3); /* next call in about a minute */
    seed_history(fn_n(&e, 1), 30, 180 * 60000ull, now - 2); /* in about 3 hours */
    /* f2: no history; LRU says it was idle for a few ms. */
    submit_n(&e, 3, id);
    run_for(&e, 5);
    CHECK(e.fake.ctrs[1].stop_asked && !e.fake.ctrs[0].stop_asked && !e.fake.ctrs[2].stop_asked);
    fake_ready_all(&e.fake);
    run_for(&e, 5);
    fake_answer(&e.fake, busy_ctr(&e.fake), "ok", 0);
    submit_n(&e, 4, id);
    run_for(&e, 5);
    /* f0 (a minute away) before f2 and f3 (idle for milliseconds). */
    CHECK(e.fake.ctrs[0].stop_asked && !e.fake.ctrs[2].stop_asked && !e.fake.ctrs[3].stop_asked);
    env_free(&e);
}

/* A GPU held by an idle container of another function is freed for queued work: cpu and
 * memory are plentiful, the one H100 is not. */
UNIT_TEST(test_evict_for_a_gpu)
{
    struct env e;
    env_init(&e, 8000, 8192, 1);
    deploy_text(&e, "{\"app\":\"a\",\"functions\":[{\"name\":\"f0\",\"kind\":\"exec\",\"command\":[\"x\"],"
                    "\"image\":\"img\",\"resources\":{\"cpu\":100,\"memory\":64,\"gpu\":\"H100\"}},"
                    "{\"name\":\"f1\",\"kind\":\"exec\",\"command\":[\"x\"],\"image\":\"img\","
                    "\"resources\":{\"cpu\":100,\"memory\":64,\"gpu\":\"H100\"}},"
                    "{\"name\":\"f2\",\"kind\":\"exec\",\"command\":[\"x\"],\"image\":\"img\","
                    "\"resources\":{\"cpu\":100,\"memory\":64}}]}");
    char id[64];
    call_to_idle(&e, 2, id); /* an idle CPU-only container: no use to a GPU function */
    run_for(&e, 2);
    call_to_idle(&e, 0, id);
    CHECK_EQ_INT(e.fake.nctrs, 2);
    CHECK_EQ_INT(e.fake.ctrs[1].ngpus, 1);
    e.fake.hold_stops = true;
    submit_n(&e, 1, id);
    run_for(&e, 5);
    CHECK(e.fake.ctrs[1].stop_asked && !e.fake.ctrs[0].stop_asked);
    CHECK(strstr(fn_n(&e, 1)->latest->waiting_reason, "1 x H100"));
    fake_exit(&e.fake, &e.fake.ctrs[1], 0);
    run_for(&e, 5);
    CHECK_EQ_INT(e.fake.nctrs, 3);
    CHECK_EQ_INT(e.fake.ctrs[2].ngpus, 1);
    CHECK_EQ_INT(fn_n(&e, 0)->evictions, 1);
    env_free(&e);
}

/* Min and buffer containers are not evicted: the call waits with the capacity reason. */
UNIT_TEST(test_no_eviction_below_floor)
{
    struct env e;
    env_init(&e, 500, 8192, 0);
    deploy_text(&e, "{\"app\":\"a\",\"functions\":[{\"name\":\"f0\",\"kind\":\"exec\",\"command\":[\"x\"],"
                    "\"image\":\"img\",\"resources\":{\"cpu\":250,\"memory\":64},"
                    "\"scaling\":{\"min_containers\":2}},{\"name\":\"f1\",\"kind\":\"exec\","
                    "\"command\":[\"x\"],\"image\":\"img\",\"resources\":{\"cpu\":250,\"memory\":64}}]}");
    start_and_dispatch(&e);
    CHECK_EQ_INT(e.fake.nctrs, 2);
    char id[64];
    submit_n(&e, 1, id);
    run_for(&e, 5);
    CHECK_EQ_INT(e.fake.nctrs, 2);
    CHECK(!e.fake.ctrs[0].stop_asked && !e.fake.ctrs[1].stop_asked);
    CHECK(strstr(fn_n(&e, 1)->latest->waiting_reason, "needs cpu 250m"));
    env_free(&e);
}

/* A function whose idle times are 5 minutes: released when it goes idle, a container
 * pre-warmed at 5 minutes (the loop's clock: the start of the bin the idle times fall
 * in), and the next call lands on it warm. */
UNIT_TEST(test_prewarm)
{
    struct env e;
    env_init(&e, 2000, 8192, 0);
    deploy_many(&e, 1, 250);
    char id[64];
    call_to_idle(&e, 0, id);
    uint64_t now = ev_now_ms(e.loop);
    CHECK(now > 300000); /* the monotonic clock runs since boot */
    struct ctl_fn *f = fn_n(&e, 0);
    /* Pre-warm at 300 s after going idle: due 500 ms from now; keep-alive 360 s. */
    seed_history(f, 30, 5 * 60000, now - 300000 + 500);
    CHECK(ka_prewarm_ms(&f->ka, 1) == 300000 && ka_keepalive_ms(&f->ka, 1) == 360000);
    sched_keepalive_kick(e.ctl, f);
    run_for(&e, 5); /* the idle container goes (in the pre-warm gap) */
    CHECK(e.fake.ctrs[0].stop_asked);
    CHECK_EQ_INT(e.fake.nctrs, 1);
    json_t *j = ctl_function_json(e.ctl, "default/a", "f0", NULL);
    double in = json_real_value(json_object_get(j, "next_prewarm_in_s"));
    CHECK(in > 0 && in <= 0.5);
    json_decref(j);
    run_for(&e, 750);
    CHECK_EQ_INT(e.fake.nctrs, 2);
    CHECK_EQ_INT(f->prewarms, 1);
    fake_ready_all(&e.fake);
    run_for(&e, 450); /* kept: within the keep-alive */
    CHECK(!e.fake.ctrs[1].stop_asked);
    submit_n(&e, 0, id);
    run_for(&e, 5);
    CHECK_EQ_INT(e.fake.nctrs, 2); /* warm: no new start */
    CHECK_EQ_INT(inflight(&e.fake.ctrs[1]), 1);
    fake_answer(&e.fake, &e.fake.ctrs[1], "ok", 0);
    CHECK_EQ_INT(call_state(&e, id, NULL), CTL_CALL_SUCCEEDED);
    CHECK_EQ_INT(f->prewarms, 1);
    /* A new idle period, in its pre-warm gap: the container goes until the next one. */
    run_for(&e, 5);
    CHECK(e.fake.ctrs[1].stop_asked);
    CHECK_EQ_INT(e.fake.nctrs, 2);
    env_free(&e);
}

/* Keep-alive histories survive a restart: the pre-warm window learned before is the
 * window after. */
UNIT_TEST(test_keepalive_history_persists)
{
    struct env e;
    env_init(&e, 2000, 8192, 0);
    deploy_many(&e, 2, 250);
    struct ctl_fn *f = fn_n(&e, 0);
    seed_history(f, 30, 5 * 60000, 0);
    CHECK(ka_prewarm_ms(&f->ka, 1) == 300000);
    ctl_free(e.ctl); /* saves */
    env_open_ctl(&e);
    f = fn_n(&e, 0);
    CHECK(ka_prewarm_ms(&f->ka, 1) == 300000 && ka_keepalive_ms(&f->ka, 1) == 360000);
    CHECK(f->ka.hist[0] && f->ka.hist[0]->samples == 30);
    CHECK_EQ_INT(f->ka.nlevels, 0); /* levels are of the old daemon's clock */
    CHECK(!fn_n(&e, 1)->ka.hist[0]);
    env_free(&e);
}

/* Without scaling.scaledown_window the policy decides: the default keeps an unknown
 * function's idle container for 10 minutes (not stopped within a second). */
UNIT_TEST(test_default_keepalive_without_window)
{
    struct env e;
    env_init(&e, 2000, 8192, 0);
    deploy_many(&e, 1, 250);
    CHECK_EQ_INT(fn_n(&e, 0)->latest->spec.scaledown_window_s, 0);
    char id[64];
    call_to_idle(&e, 0, id);
    run_for(&e, 1000);
    CHECK(!e.fake.ctrs[0].stop_asked);
    /* Idle for 10 minutes (its idle start moved back): stopped at once. */
    struct ctl_fn *f = fn_n(&e, 0);
    f->ka.idle_since[0] = ev_now_ms(e.loop) - 600000;
    sched_keepalive_kick(e.ctl, f);
    run_for(&e, 5);
    CHECK(e.fake.ctrs[0].stop_asked);
    env_free(&e);
}

/* ------------------------------------------------------------------ generator items */

/* The first input in flight on k (0: none). */
static uint64_t fake_input(const struct fake_ctr *k)
{
    for (int i = 0; i < FAKE_MAX_INPUTS; i++)
        if (k->inputs[i])
            return k->inputs[i];
    return 0;
}

/* The worker's part: input input_id of k yields text. */
static void fake_item(struct fake *f, struct fake_ctr *k, uint64_t input_id, const char *text, size_t len)
{
    f->ev->item(f->ud, k->id, input_id, text, len);
}

/* What an items answer held, copied out of the borrowed view. */
struct items_got {
    int answers;
    uint64_t from, total;
    bool ended;
    enum ctl_call_state state;
    char code[32];
    int n;
    char items[8][16];
};

static void items_got_cb(void *ud, const struct ctl_items_view *v)
{
    struct items_got *g = ud;
    g->answers++;
    g->from = v->from;
    g->total = v->total;
    g->ended = v->ended;
    g->state = v->call.state;
    snprintf(g->code, sizeof g->code, "%s", v->call.error_code ? v->call.error_code : "");
    g->n = 0;
    for (const struct ctl_item *i = v->first; i && g->n < 8; i = i->next, g->n++)
        snprintf(g->items[g->n], sizeof g->items[0], "%.*s", (int)i->len, (const char *)i->data);
}

static void submit_gen(struct env *e, const char *input, char id[64])
{
    struct ctl_error ce;
    CHECK(ctl_submit_generator(e->ctl, "default/a", "f", input, strlen(input), id, &ce) == 0);
}

/* env with a runner-mode generator call running on its first container: the call's id
 * and its input there. */
static struct fake_ctr *gen_started(struct env *e, char id[64], uint64_t *in)
{
    env_init(e, 4000, 4096, 0);
    deploy(e, "\"mode\":\"runner\",\"scaling\":{\"max_containers\":1},\"resources\":{\"cpu\":100,\"memory\":64}");
    submit_gen(e, "x", id);
    start_and_dispatch(e);
    struct fake_ctr *k = &e->fake.ctrs[0];
    *in = fake_input(k);
    CHECK(*in != 0);
    return k;
}

/* The container is told what was taken once a quarter window more was: a runner at
 * the window's edge goes on after a quarter of it is read, not after each item. */
UNIT_TEST(test_generator_items_acknowledged_in_steps)
{
    struct env e;
    char id[64];
    uint64_t in;
    struct fake_ctr *k = gen_started(&e, id, &in);
    size_t quarter = WORKER_ITEM_WINDOW / 4u, chunk = quarter / 2; /* within the env's 1 MiB payloads */
    char *big = calloc(1, chunk);
    CHECK(big != NULL);
    struct items_got g = {0};
    struct ctl_items_waiter *w;
    struct ctl_error ce;
    for (uint64_t step = 1; step <= 2; step++) {
        fake_item(&e.fake, k, in, big, chunk);
        fake_item(&e.fake, k, in, big, chunk - 1);
        fake_item(&e.fake, k, in, "b", 1);
        uint64_t from = 3 * step;
        CHECK(ctl_items_wait(e.ctl, "default", id, from - 1, 0, items_got_cb, &g, &w, &ce) == 0);
        CHECK_EQ_INT(k->nacks, (int)step - 1); /* one byte short of the step */
        CHECK(ctl_items_wait(e.ctl, "default", id, from, 0, items_got_cb, &g, &w, &ce) == 0);
        CHECK_EQ_INT(k->nacks, (int)step);
        CHECK(k->acked_input == in && k->acked_bytes == step * quarter);
    }
    free(big);
    env_free(&e);
}

/* Items are kept in order with absolute indices; asking from N takes what is before N
 * (freed, acknowledged to the container); a long poll is answered by the next items
 * (one answer for a burst) and by the end; indices past the end or already taken are
 * refused. */
UNIT_TEST(test_generator_items)
{
    struct env e;
    char id[64];
    uint64_t in;
    struct fake_ctr *k = gen_started(&e, id, &in);
    fake_item(&e.fake, k, in, "a", 1);
    fake_item(&e.fake, k, in, "bb", 2);
    struct items_got g = {0};
    struct ctl_items_waiter *w;
    struct ctl_error ce;
    CHECK(ctl_items_wait(e.ctl, "default", id, 0, 1000, items_got_cb, &g, &w, &ce) == 0);
    CHECK(w == NULL); /* items were there: answered at once */
    CHECK_EQ_INT(g.answers, 1);
    CHECK_EQ_INT(g.n, 2);
    CHECK_STR(g.items[0], "a");
    CHECK_STR(g.items[1], "bb");
    CHECK(!g.ended && g.total == 2 && g.from == 0);
    CHECK_EQ_INT(e.ctl->items_held, 3);
    CHECK_EQ_INT(k->nacks, 0); /* nothing taken yet */
    /* Reading on from 2 takes both and waits for more; 3 bytes are less than the step
     * of acknowledgements (a quarter window): the container is not told yet. */
    memset(&g, 0, sizeof g);
    CHECK(ctl_items_wait(e.ctl, "default", id, 2, 1000, items_got_cb, &g, &w, &ce) == 0);
    CHECK(w != NULL);
    CHECK_EQ_INT(g.answers, 0);
    CHECK_EQ_INT(e.ctl->items_held, 0);
    CHECK_EQ_INT(k->nacks, 0);
    fake_item(&e.fake, k, in, "c", 1);
    fake_item(&e.fake, k, in, "d", 1);
    CHECK_EQ_INT(g.answers, 0); /* answered at the end of the loop turn, with both */
    run_for(&e, 5);
    CHECK_EQ_INT(g.answers, 1);
    CHECK(g.from == 2 && g.n == 2 && g.total == 4 && !g.ended);
    CHECK_STR(g.items[0], "c");
    CHECK_STR(g.items[1], "d");
    /* Asking from 2 again (a lost answer) gets the same items. */
    memset(&g, 0, sizeof g);
    CHECK(ctl_items_wait(e.ctl, "default", id, 2, 0, items_got_cb, &g, &w, &ce) == 0);
    CHECK(g.answers == 1 && g.n == 2);
    /* A long poll from 4 is answered by the end: an empty output. */
    memset(&g, 0, sizeof g);
    CHECK(ctl_items_wait(e.ctl, "default", id, 4, 1000, items_got_cb, &g, &w, &ce) == 0);
    CHECK(w != NULL);
    CHECK_EQ_INT(k->nacks, 0);
    CHECK(fake_answer(&e.fake, k, "", 0));
    CHECK_EQ_INT(g.answers, 1);
    CHECK(g.ended && g.n == 0 && g.total == 4);
    CHECK_EQ_INT(g.state, CTL_CALL_SUCCEEDED);
    /* Past the end, and before what was taken: refused. */
    CHECK(ctl_items_wait(e.ctl, "default", id, 5, 0, items_got_cb, &g, &w, &ce) < 0);
    CHECK_EQ_INT(ce.kind, CTL_E_INVALID);
    CHECK(ctl_items_wait(e.ctl, "default", id, 1, 0, items_got_cb, &g, &w, &ce) < 0);
    CHECK_EQ_INT(ce.kind, CTL_E_GONE);
    /* Another workspace does not find the call; a call that is not a generator call
     * has no items. */
    CHECK(ctl_items_wait(e.ctl, "other", id, 0, 0, items_got_cb, &g, &w, &ce) == -ENOENT);
    CHECK_EQ_INT(ce.kind, CTL_E_NOT_FOUND);
    char plain[64];
    submit(&e, "y", false, plain);
    CHECK(ctl_items_wait(e.ctl, "default", plain, 0, 0, items_got_cb, &g, &w, &ce) < 0);
    CHECK_EQ_INT(ce.kind, CTL_E_CONFLICT);
    CHECK_STR(ce.code, "not_generator");
    /* A long poll whose client goes away is cancelled; its deadline answers with none. */
    char id2[64];
    submit_gen(&e, "z", id2);
    run_for(&e, 5);
    CHECK(ctl_items_wait(e.ctl, "default", id2, 0, 1000, items_got_cb, &g, &w, &ce) == 0 && w);
    ctl_items_waiter_cancel(e.ctl, w);
    memset(&g, 0, sizeof g);
    CHECK(ctl_items_wait(e.ctl, "default", id2, 0, 20, items_got_cb, &g, &w, &ce) == 0 && w);
    run_for(&e, 40);
    CHECK(g.answers == 1 && g.n == 0 && !g.ended);
    env_free(&e);
}

/* A runner that sends more than the item window allows fails its call (items_overflow)
 * and is stopped; the items accepted before stay readable. An item for a call that is
 * not a generator call, and a result for one that is, fail the call. */
UNIT_TEST(test_generator_bounds_and_misuse)
{
    struct env e;
    env_init(&e, 4000, 4096, 0);
    deploy(&e, "\"mode\":\"runner\",\"scaling\":{\"max_containers\":3},\"resources\":{\"cpu\":100,\"memory\":64}");
    char id[64];
    submit_gen(&e, "x", id);
    start_and_dispatch(&e);
    struct fake_ctr *k = &e.fake.ctrs[0];
    uint64_t in = fake_input(k);
    size_t chunk = 1 << 20; /* the env's payload limit */
    char *big = calloc(1, chunk);
    CHECK(big);
    size_t bound = WORKER_ITEM_WINDOW + chunk, sent = 0;
    int accepted = 0;
    while (sent + chunk <= bound) {
        fake_item(&e.fake, k, in, big, chunk);
        sent += chunk;
        accepted++;
    }
    CHECK_EQ_INT(call_state(&e, id, NULL), CTL_CALL_RUNNING);
    fake_item(&e.fake, k, in, big, chunk);
    free(big);
    struct ctl_call_view v;
    CHECK_EQ_INT(call_state(&e, id, &v), CTL_CALL_FAILED);
    CHECK_STR(v.error_code, "items_overflow");
    CHECK_EQ_INT(k->ncancelled, 1);
    struct items_got g = {0};
    struct ctl_items_waiter *w;
    struct ctl_error ce;
    CHECK(ctl_items_wait(e.ctl, "default", id, 0, 0, items_got_cb, &g, &w, &ce) == 0);
    CHECK(g.total == (uint64_t)accepted && g.ended);
    CHECK(ctl_items_wait(e.ctl, "default", id, (uint64_t)accepted, 0, items_got_cb, &g, &w, &ce) == 0);
    CHECK_EQ_INT(e.ctl->items_held, 0);
    run_for(&e, 5);
    /* Misuse: an item for a plain call (its container is told to drop the input, and
     * killed after the grace as this fake runner does not), then a result for a
     * generator call. */
    char plain[64], gen[64];
    submit(&e, "p", false, plain);
    start_and_dispatch(&e);
    k = &e.fake.ctrs[e.fake.nctrs - 1];
    CHECK(!k->exited && fake_input(k));
    fake_item(&e.fake, k, fake_input(k), "i", 1);
    CHECK_EQ_INT(k->ncancelled, 1);
    run_for(&e, SCHED_CANCEL_GRACE_MS + 100);
    CHECK(k->kill_asked);
    submit_gen(&e, "g", gen);
    start_and_dispatch(&e);
    k = &e.fake.ctrs[e.fake.nctrs - 1];
    CHECK(!k->exited && fake_input(k));
    CHECK(fake_answer(&e.fake, k, "result", 0));
    CHECK_EQ_INT(call_state(&e, plain, &v), CTL_CALL_FAILED);
    CHECK_STR(v.error_code, "not_generator_call");
    CHECK_EQ_INT(call_state(&e, gen, &v), CTL_CALL_FAILED);
    CHECK_STR(v.error_code, "not_generator");
    env_free(&e);
}

/* A generator that fails before it yielded is retried as the policy says; one that
 * yielded is not (the consumer saw its items), and is not put back in the queue when
 * its container stops either. */
UNIT_TEST(test_generator_no_retry_after_items)
{
    struct env e;
    env_init(&e, 4000, 4096, 0);
    deploy(&e, "\"retries\":{\"max_retries\":2,\"initial_delay\":0},\"scaling\":{\"max_containers\":1},"
               "\"resources\":{\"cpu\":100,\"memory\":64}");
    char id[64];
    submit_gen(&e, "x", id);
    start_and_dispatch(&e);
    struct fake_ctr *k = &e.fake.ctrs[0];
    CHECK(fake_answer(&e.fake, k, NULL, CTR_FAIL_USER));
    run_for(&e, 20);
    CHECK_EQ_INT(call_state(&e, id, NULL), CTL_CALL_RUNNING); /* retried */
    fake_item(&e.fake, k, fake_input(k), "a", 1);
    CHECK(fake_answer(&e.fake, k, NULL, CTR_FAIL_USER));
    run_for(&e, 20);
    struct ctl_call_view v;
    CHECK_EQ_INT(call_state(&e, id, &v), CTL_CALL_FAILED);
    CHECK_EQ_INT(v.attempts, 2);
    CHECK_STR(v.error_code, "function_error");
    /* Stopped under a call that yielded: failed, not requeued. */
    char id2[64];
    submit_gen(&e, "y", id2);
    run_for(&e, 5);
    CHECK_EQ_INT(call_state(&e, id2, NULL), CTL_CALL_RUNNING);
    fake_item(&e.fake, k, fake_input(k), "b", 1);
    fake_exit(&e.fake, k, 0);
    CHECK_EQ_INT(call_state(&e, id2, &v), CTL_CALL_FAILED);
    CHECK_STR(v.error_code, "interrupted");
    env_free(&e);
}

/* ------------------------------------------------------------------ input streams */

/* A call's input stream: bytes sent while it is pending are held and reach its
 * container right after the input, in order; while running, what the container has
 * not acknowledged stays within WORKER_INPUT_WINDOW, what is beyond waits in control
 * up to CTL_STREAM_HELD_MAX (the room says so, and more is refused), and an ack sends
 * what waited; the end goes after the last byte; a call whose container got stream
 * bytes is not requeued when that container stops. */
UNIT_TEST(test_input_stream_buffering)
{
    struct env e;
    env_init(&e, 4000, 4096, 0);
    deploy(&e, "\"mode\":\"runner\",\"scaling\":{\"max_containers\":1},\"resources\":{\"cpu\":100,\"memory\":64}");
    char id[64];
    struct ctl_error ce;
    submit_gen(&e, "x", id);
    CHECK(ctl_call_input_more(e.ctl, id, "ab", 2, &ce) == 0);
    CHECK(ctl_call_input_more(e.ctl, id, "cd", 2, &ce) == 0);
    CHECK_EQ_INT(ctl_call_input_room(e.ctl, id), CTL_STREAM_HELD_MAX - 4);
    CHECK(ctl_call_input_more(e.ctl, "fc-nope", "x", 1, &ce) == -ENOENT && ce.kind == CTL_E_NOT_FOUND);
    start_and_dispatch(&e);
    struct fake_ctr *k = &e.fake.ctrs[0];
    uint64_t in = fake_input(k);
    CHECK(in != 0);
    CHECK_STR(k->more_head, "abcd");
    CHECK(k->more_bytes == 4 && !k->more_stray && !k->more_end);
    CHECK_EQ_INT(ctl_call_input_room(e.ctl, id), CTL_STREAM_HELD_MAX);
    /* Fill the container's window, then control's hold. */
    char *big = calloc(1, CTL_STREAM_HELD_MAX);
    CHECK(big);
    size_t room;
    int rounds = 0;
    while ((room = ctl_call_input_room(e.ctl, id)) > 0 && rounds++ < 100)
        CHECK(ctl_call_input_more(e.ctl, id, big, room, &ce) == 0);
    CHECK_EQ_INT(k->more_bytes, WORKER_INPUT_WINDOW);
    CHECK(ctl_call_input_more(e.ctl, id, "y", 1, &ce) == -ENOBUFS && ce.kind == CTL_E_TOO_LARGE);
    /* The end waits behind the held bytes. */
    CHECK(ctl_call_input_more(e.ctl, id, NULL, 0, &ce) == 0);
    CHECK(!k->more_end);
    CHECK(ctl_call_input_more(e.ctl, id, "z", 1, &ce) == -EPIPE && ce.kind == CTL_E_CONFLICT);
    /* A stale or excessive ack changes nothing beyond what was sent; a real one sends on. */
    e.fake.ev->input_more_ack(e.fake.ud, k->id, in, 0);
    CHECK_EQ_INT(k->more_bytes, WORKER_INPUT_WINDOW);
    e.fake.ev->input_more_ack(e.fake.ud, k->id, in, 100);
    CHECK_EQ_INT(k->more_bytes, WORKER_INPUT_WINDOW + 100);
    CHECK(!k->more_end);
    e.fake.ev->input_more_ack(e.fake.ud, k->id, in, UINT64_MAX);
    CHECK_EQ_INT(k->more_bytes, WORKER_INPUT_WINDOW + CTL_STREAM_HELD_MAX);
    CHECK(k->more_end && !k->more_stray);
    free(big);
    /* Its container stops under it: failed, not run again without the bytes sent. */
    fake_exit(&e.fake, k, 0);
    struct ctl_call_view v;
    CHECK_EQ_INT(call_state(&e, id, &v), CTL_CALL_FAILED);
    CHECK_STR(v.error_code, "interrupted");
    CHECK_EQ_INT(ctl_call_input_room(e.ctl, id), 0);
    CHECK(ctl_call_input_more(e.ctl, id, "w", 1, &ce) == -EPIPE);
    /* Another call, pending while its container starts: its held bytes follow its input. */
    char id2[64];
    submit_gen(&e, "y", id2);
    CHECK(ctl_call_input_more(e.ctl, id2, "held", 4, &ce) == 0);
    start_and_dispatch(&e);
    k = &e.fake.ctrs[e.fake.nctrs - 1];
    CHECK_STR(k->more_head, "held");
    CHECK(fake_answer(&e.fake, k, "", 0));
    CHECK_EQ_INT(call_state(&e, id2, NULL), CTL_CALL_SUCCEEDED);
    env_free(&e);
}

/* ------------------------------------------------------- scheduling sets */

/* Deploys app app (in workspace ws) with one function "f" of resources (a JSON object);
 * extra: more members of the function's object (without braces), or "". */
static void deploy_app_with(struct env *e, const char *ws, const char *app, const char *resources,
                            const char *extra)
{
    char text[1024];
    snprintf(text, sizeof text,
             "{\"app\":\"%s\",\"functions\":[{\"name\":\"f\",\"kind\":\"exec\",\"command\":[\"x\"],"
             "\"image\":\"img\",\"resources\":%s%s%s}]}",
             app, resources, extra[0] ? "," : "", extra);
    json_t *spec = json_loads(text, 0, NULL);
    CHECK(spec);
    json_t *res = NULL;
    struct ctl_error ce = {0};
    CHECK(ctl_deploy(e->ctl, ws, spec, &res, &ce) == 0);
    json_decref(res);
    json_decref(spec);
}

/* The same with 250 m and 64 MiB. */
static void deploy_app_in(struct env *e, const char *ws, const char *app, const char *extra)
{
    deploy_app_with(e, ws, app, "{\"cpu\":250,\"memory\":64}", extra);
}

static struct ctl_fver *app_version(struct env *e, const char *qapp)
{
    struct ctl_fn *f = ctl_find_fn(e->ctl, qapp, "f");
    CHECK(f && f->latest);
    return f->latest;
}

static void submit_app(struct env *e, const char *qapp, char id[64])
{
    struct ctl_error ce;
    CHECK(ctl_submit(e->ctl, qapp, "f", "x", 1, false, id, &ce) == 0);
}

/* The live fake container of app qapp's function (NULL if none). */
static struct fake_ctr *app_ctr(struct env *e, const char *qapp)
{
    list_for_each(k, &app_version(e, qapp)->ctrs, struct ctl_ctr, link)
        if (k->state != CTR_STOPPING)
            return fake_find(&e->fake, k->id);
    return NULL;
}

/* Calls app qapp's function and answers the call once its container is up: the
 * container is then idle. */
static void call_app_to_idle(struct env *e, const char *qapp)
{
    char id[64];
    submit_app(e, qapp, id);
    start_and_dispatch(e);
    fake_answer(&e->fake, app_ctr(e, qapp), "ok", 0);
    CHECK_EQ_INT(call_state(e, id, NULL), CTL_CALL_SUCCEEDED);
}

/* Container k (just started) comes up, takes the call id that waited for it, answers. */
static void serve_waiting_call(struct env *e, struct fake_ctr *k, const char *id)
{
    fake_ready_all(&e->fake);
    run_for(e, 5);
    fake_answer(&e->fake, k, "ok", 0);
    CHECK_EQ_INT(call_state(e, id, NULL), CTL_CALL_SUCCEEDED);
}

static uint64_t fn_evictions(struct env *e, const char *qapp)
{
    struct ctl_fn *f = ctl_find_fn(e->ctl, qapp, "f");
    CHECK(f);
    return f->evictions;
}

/* A pass visits only the versions that changed and those blocked on capacity, so what
 * one app's container frees (here: its idle container evicted, then another's) must
 * reach functions of other apps that wait for it with no call or event of their own.
 * They are served in walk order, newest app first, as when every pass visited every
 * version: c, then b. */
UNIT_TEST(test_freed_capacity_reaches_other_apps)
{
    struct env e;
    env_init(&e, 250, 8192, 0); /* one container at a time */
    deploy_app_in(&e, "default", "a", "");
    deploy_app_in(&e, "default", "b", "");
    deploy_app_in(&e, "default", "c", "");
    char ida[64], idb[64], idc[64];
    submit_app(&e, "default/a", ida);
    start_and_dispatch(&e);
    struct fake_ctr *ka = app_ctr(&e, "default/a");
    CHECK(ka && inflight(ka) == 1);
    submit_app(&e, "default/b", idb);
    submit_app(&e, "default/c", idc);
    run_for(&e, 5);
    CHECK_EQ_INT(e.fake.nctrs, 1); /* a's container is busy: nothing to evict */
    struct ctl_fver *vb = app_version(&e, "default/b"), *vc = app_version(&e, "default/c");
    CHECK(vb->sched_blocked && vc->sched_blocked);
    CHECK(strstr(vb->waiting_reason, "needs cpu 250m"));
    /* a's call ends: its idle container is evicted for c (first in walk order), whose
     * container starts once the evicted one exited; b still waits. */
    fake_answer(&e.fake, ka, "ok", 0);
    run_for(&e, 5);
    CHECK(ka->exited);
    struct fake_ctr *kc = app_ctr(&e, "default/c");
    CHECK(kc && !app_ctr(&e, "default/b"));
    CHECK(!vc->sched_blocked && vb->sched_blocked);
    fake_ready_all(&e.fake);
    run_for(&e, 5);
    CHECK_EQ_INT(inflight(kc), 1);
    /* c's call ends: b gets c's room the same way. */
    fake_answer(&e.fake, kc, "ok", 0);
    run_for(&e, 5);
    struct fake_ctr *kb = app_ctr(&e, "default/b");
    CHECK(kb && kc->exited);
    fake_ready_all(&e.fake);
    run_for(&e, 5);
    fake_answer(&e.fake, kb, "ok", 0);
    CHECK_EQ_INT(call_state(&e, ida, NULL), CTL_CALL_SUCCEEDED);
    CHECK_EQ_INT(call_state(&e, idb, NULL), CTL_CALL_SUCCEEDED);
    CHECK_EQ_INT(call_state(&e, idc, NULL), CTL_CALL_SUCCEEDED);
    CHECK(!vb->sched_blocked && list_empty(&e.ctl->sched_blocked));
    env_free(&e);
}

/* Workspace "small" (one container) with apps x (x_extra: more members of its
 * function) and y: x's container idle, y's call (idy) waiting on the quota, blocked on
 * room (visited when room grows, not by every pass). */
static struct ctl_fver *wait_on_quota(struct env *e, const char *x_extra, char idy[64])
{
    env_init(e, 4000, 8192, 0);
    add_small_workspace(e);
    deploy_app_in(e, "small", "x", x_extra);
    deploy_app_in(e, "small", "y", "");
    call_app_to_idle(e, "small/x");
    submit_app(e, "small/y", idy);
    run_for(e, 5);
    struct ctl_fver *vy = app_version(e, "small/y");
    CHECK(!app_ctr(e, "small/y") && strstr(vy->waiting_reason, "containers quota"));
    CHECK_EQ_INT(vy->sched_blocked, CTL_BLOCKED_ON_ROOM);
    CHECK(list_empty(&e->ctl->sched_blocked));
    return vy;
}

/* A quota frees when keep-alive scales another app's idle container down (quotas do
 * not evict): the waiting function of the other app starts on that container's exit. */
UNIT_TEST(test_quota_freed_by_scale_down_reaches_other_apps)
{
    struct env e;
    char idy[64];
    struct ctl_fver *vy = wait_on_quota(&e, "\"scaling\":{\"scaledown_window\":1}", idy);
    /* Past x's 1 s window its keep-alive timer stops the idle container; its exit lets
     * y start. */
    for (int n = 0; n < 20 && !app_ctr(&e, "small/y"); n++)
        run_for(&e, 100);
    CHECK(app_ctr(&e, "small/y"));
    CHECK(!vy->sched_blocked);
    serve_waiting_call(&e, app_ctr(&e, "small/y"), idy);
    env_free(&e);
}

/* Moves the idle start of app qapp's function 10 minutes back and tells keep-alive: the
 * default policy's window for a function it knows nothing of is over, so its timer
 * stops the idle container at once. */
static void keepalive_expire(struct env *e, const char *qapp)
{
    struct ctl_fn *f = ctl_find_fn(e->ctl, qapp, "f");
    CHECK(f && f->ka.nlevels >= 1 && f->ka.level == 0);
    f->ka.idle_since[0] = ev_now_ms(e->loop) - 600000;
    sched_keepalive_kick(e->ctl, f);
}

/* The same under the keep-alive policy (no scaledown_window): passes leave the
 * waiting call alone until the other app's keep-alive timer stops its idle container;
 * the exit gives the quota back and the call starts. */
UNIT_TEST(test_keepalive_stop_frees_quota_for_queued_call)
{
    struct env e;
    char idy[64];
    struct ctl_fver *vy = wait_on_quota(&e, "", idy);
    run_for(&e, 1000); /* passes come and go (the tick's): still waiting */
    CHECK(!app_ctr(&e, "small/y") && app_ctr(&e, "small/x"));
    keepalive_expire(&e, "small/x");
    run_for(&e, 5);
    CHECK(!app_ctr(&e, "small/x"));
    struct fake_ctr *ky = app_ctr(&e, "small/y");
    CHECK(ky);
    CHECK_EQ_INT(vy->sched_blocked, CTL_UNBLOCKED);
    serve_waiting_call(&e, ky, idy);
    env_free(&e);
}

/* A min_containers start does not evict (it is a guess, not queued work): on a full
 * worker it waits, blocked on room, until the keep-alive timer of another function
 * stops that function's idle container. */
UNIT_TEST(test_keepalive_stop_frees_room_for_min_containers)
{
    struct env e;
    env_init(&e, 250, 8192, 0); /* one container at a time */
    deploy_app_in(&e, "default", "a", "");
    call_app_to_idle(&e, "default/a");
    deploy_app_in(&e, "default", "b", "\"scaling\":{\"min_containers\":1}");
    run_for(&e, 5);
    struct ctl_fver *vb = app_version(&e, "default/b");
    CHECK(!app_ctr(&e, "default/b") && strstr(vb->waiting_reason, "needs cpu 250m"));
    CHECK_EQ_INT(vb->sched_blocked, CTL_BLOCKED_ON_ROOM);
    CHECK_EQ_INT(app_version(&e, "default/a")->ev_count, 1); /* evictable, but nothing queued asks */
    keepalive_expire(&e, "default/a");
    run_for(&e, 5);
    CHECK(!app_ctr(&e, "default/a") && app_ctr(&e, "default/b"));
    CHECK_EQ_INT(fn_evictions(&e, "default/a"), 0);
    env_free(&e);
}

/* Room that comes back without a stop (a container that crashed) reaches a version
 * blocked on room as well. */
UNIT_TEST(test_crash_frees_room_for_min_containers)
{
    struct env e;
    env_init(&e, 250, 8192, 0);
    deploy_app_in(&e, "default", "a", "");
    char id[64];
    submit_app(&e, "default/a", id);
    start_and_dispatch(&e);
    struct fake_ctr *ka = app_ctr(&e, "default/a");
    CHECK(ka && inflight(ka) == 1);
    deploy_app_in(&e, "default", "b", "\"scaling\":{\"min_containers\":1}");
    run_for(&e, 5);
    CHECK_EQ_INT(app_version(&e, "default/b")->sched_blocked, CTL_BLOCKED_ON_ROOM);
    fake_exit(&e.fake, ka, CTR_FAIL_CRASHED);
    run_for(&e, 5);
    CHECK(app_ctr(&e, "default/b"));
    env_free(&e);
}

/* A queued call that needs more than all idle containers together hold evicts none
 * (a cold start for them, no start for it) and is blocked on room; when enough has
 * gone idle, the eviction ranking tells the scheduler, and the call evicts what it
 * needs, in the ranking's order. */
UNIT_TEST(test_eviction_once_enough_is_idle)
{
    struct env e;
    env_init(&e, 500, 8192, 0);
    deploy_app_in(&e, "default", "a", "");
    deploy_app_in(&e, "default", "b", "");
    deploy_app_with(&e, "default", "c", "{\"cpu\":500,\"memory\":64}", "");
    char ida[64], idb[64], idc[64];
    submit_app(&e, "default/a", ida);
    submit_app(&e, "default/b", idb);
    start_and_dispatch(&e);
    struct fake_ctr *ka = app_ctr(&e, "default/a"), *kb = app_ctr(&e, "default/b");
    CHECK(ka && kb && inflight(ka) == 1 && inflight(kb) == 1);
    submit_app(&e, "default/c", idc);
    run_for(&e, 5);
    struct ctl_fver *vc = app_version(&e, "default/c");
    CHECK_EQ_INT(vc->sched_blocked, CTL_BLOCKED_ON_ROOM);
    CHECK(e.ctl->room_queued.n == 1 && e.ctl->ev_cpu == 0);
    fake_answer(&e.fake, ka, "ok", 0); /* 250 m idle: not enough */
    run_for(&e, 5);
    CHECK(e.ctl->ev_cpu == 250 && !ka->stop_asked && !app_ctr(&e, "default/c"));
    CHECK_EQ_INT(vc->sched_blocked, CTL_BLOCKED_ON_ROOM);
    run_for(&e, 2);
    fake_answer(&e.fake, kb, "ok", 0); /* 500 m idle: enough */
    run_for(&e, 5);
    CHECK(ka->stop_asked && kb->stop_asked);
    CHECK(ka->exited && kb->exited);
    struct fake_ctr *kc = app_ctr(&e, "default/c");
    CHECK(kc);
    CHECK_EQ_INT(fn_evictions(&e, "default/a") + fn_evictions(&e, "default/b"), 2);
    serve_waiting_call(&e, kc, idc);
    env_free(&e);
}

/* A GPU function's call waits while the only H100 is busy, blocked on room (cpu and
 * memory are plentiful); when the H100's container goes idle, the call evicts it. */
UNIT_TEST(test_gpu_eviction_once_the_holder_is_idle)
{
    struct env e;
    env_init(&e, 8000, 8192, 1);
    deploy_app_with(&e, "default", "a", "{\"cpu\":100,\"memory\":64,\"gpu\":\"H100\"}", "");
    deploy_app_with(&e, "default", "b", "{\"cpu\":100,\"memory\":64,\"gpu\":\"H100\"}", "");
    char ida[64], idb[64];
    submit_app(&e, "default/a", ida);
    start_and_dispatch(&e);
    struct fake_ctr *ka = app_ctr(&e, "default/a");
    CHECK(ka && ka->ngpus == 1 && inflight(ka) == 1);
    submit_app(&e, "default/b", idb);
    run_for(&e, 5);
    struct ctl_fver *vb = app_version(&e, "default/b");
    CHECK_EQ_INT(vb->sched_blocked, CTL_BLOCKED_ON_ROOM);
    CHECK(e.ctl->room_queued.n == 1 && strstr(vb->waiting_reason, "1 x H100"));
    fake_answer(&e.fake, ka, "ok", 0);
    run_for(&e, 5);
    CHECK(ka->exited);
    struct fake_ctr *kb = app_ctr(&e, "default/b");
    CHECK(kb && kb->ngpus == 1);
    CHECK_EQ_INT(fn_evictions(&e, "default/a"), 1);
    env_free(&e);
}

/* ---------- dicts and queues (kv.c) ---------- */

/* Parses body for op of kind; the test fails on a refusal. */
static void kv_req(enum ctl_kv_kind kind, const char *op, const char *body, struct spec_kv_req *r)
{
    json_t *j = json_loads(body, 0, NULL);
    struct ctl_error ce;
    CHECK(j != NULL);
    CHECK_EQ_INT(ctl_kv_req_parse(kind, op, j, r, &ce), 0);
    json_decref(j);
}

/* What one waiter was answered: how many answers, the last one's values, its error. */
struct kv_seen {
    int answers;
    size_t nvalues;
    char first[32];
    char err[32];
};

static void kv_seen_cb(void *ud, json_t *answer, const struct ctl_error *e)
{
    struct kv_seen *s = ud;
    s->answers++;
    if (!answer) {
        snprintf(s->err, sizeof s->err, "%s", e->code);
        return;
    }
    json_t *v = json_object_get(answer, "values");
    s->nvalues = json_array_size(v);
    snprintf(s->first, sizeof s->first, "%s", s->nvalues ? json_string_value(json_array_get(v, 0)) : "");
    json_decref(answer);
}

static void kv_put(struct env *e, const char *queue, const char *body)
{
    struct spec_kv_req r;
    struct ctl_error ce;
    kv_req(CTL_KV_QUEUE, "put", body, &r);
    json_t *a = ctl_queue_op(e->ctl, "default", queue, "put", &r, &ce);
    CHECK(a != NULL);
    json_decref(a);
    spec_kv_req_free(&r);
}

static struct ctl_kv_waiter *kv_get(struct env *e, const char *ws, const char *queue, const char *body,
                                    struct kv_seen *s)
{
    struct spec_kv_req r;
    struct ctl_error ce;
    struct ctl_kv_waiter *w = NULL;
    kv_req(CTL_KV_QUEUE, "get", body, &r);
    CHECK_EQ_INT(ctl_queue_get(e->ctl, ws, queue, &r, kv_seen_cb, s, &w, &ce), 0);
    spec_kv_req_free(&r);
    return w;
}

UNIT_TEST(test_queue_waiters)
{
    struct env e;
    env_init(&e, 4000, 4096, 0);
    struct ctl_error ce;
    json_t *a = ctl_kv_create(e.ctl, "default", CTL_KV_QUEUE, "q", true, &ce);
    CHECK(a && json_is_true(json_object_get(a, "created")));
    json_decref(a);
    /* Two gets wait on the default partition, one on "p"; "YQ==" is "a". */
    struct kv_seen s1 = {0}, s2 = {0}, sp = {0}, st = {0}, sd = {0};
    CHECK(kv_get(&e, "default", "q", "{\"n\":2,\"timeout\":30}", &s1) != NULL);
    CHECK(kv_get(&e, "default", "q", "{\"n\":5,\"timeout\":30}", &s2) != NULL);
    CHECK(kv_get(&e, "default", "q", "{\"partition\":\"p\",\"timeout\":30}", &sp) != NULL);
    CHECK_EQ_INT(s1.answers + s2.answers + sp.answers, 0);
    /* A put of three answers the first two waiters oldest first, each up to its n;
     * the waiter on another partition is not woken. */
    kv_put(&e, "q", "{\"values\":[\"YQ==\",\"Yg==\",\"Yw==\"]}");
    CHECK_EQ_INT(s1.answers, 1);
    CHECK_EQ_INT((int)s1.nvalues, 2);
    CHECK_STR(s1.first, "YQ==");
    CHECK_EQ_INT(s2.answers, 1);
    CHECK_EQ_INT((int)s2.nvalues, 1);
    CHECK_STR(s2.first, "Yw==");
    CHECK_EQ_INT(sp.answers, 0);
    /* A get with items there answers at once; one with timeout 0 too, empty. */
    kv_put(&e, "q", "{\"values\":[\"ZA==\"]}");
    struct kv_seen now = {0};
    CHECK(kv_get(&e, "default", "q", "{}", &now) == NULL);
    CHECK(now.answers == 1 && now.nvalues == 1);
    CHECK(kv_get(&e, "default", "q", "{}", &now) == NULL);
    CHECK(now.answers == 2 && now.nvalues == 0);
    /* A waiter's timer answers it empty; a cancelled one is never answered. */
    CHECK(kv_get(&e, "default", "q", "{\"timeout\":0.01}", &st) != NULL);
    struct kv_seen sc = {0};
    struct ctl_kv_waiter *wc = kv_get(&e, "default", "q", "{\"timeout\":0.01}", &sc);
    ctl_kv_waiter_cancel(e.ctl, wc);
    run_for(&e, 100);
    CHECK(st.answers == 1 && st.nvalues == 0 && !st.err[0]);
    CHECK_EQ_INT(sc.answers, 0);
    /* Another workspace does not find the queue; deleting it answers its waiters. */
    struct spec_kv_req r;
    kv_req(CTL_KV_QUEUE, "get", "{\"timeout\":30}", &r);
    struct ctl_kv_waiter *w = NULL;
    CHECK(ctl_queue_get(e.ctl, "other", "q", &r, kv_seen_cb, &sd, &w, &ce) < 0 && ce.kind == CTL_E_NOT_FOUND);
    spec_kv_req_free(&r);
    CHECK_EQ_INT(ctl_kv_delete(e.ctl, "default", CTL_KV_QUEUE, "q", &ce), 0);
    CHECK(sp.answers == 1 && !strcmp(sp.err, "not_found"));
    env_free(&e);
}

UNIT_TEST(test_queue_limits_and_dict)
{
    struct env e;
    env_init(&e, 4000, 4096, 0);
    struct ctl_error ce;
    json_decref(ctl_kv_create(e.ctl, "default", CTL_KV_QUEUE, "q", true, &ce));
    /* A partition holds SPEC_QUEUE_PARTITION_ITEMS: a put past it is refused whole. */
    AUTO_BUF struct buf b = {0};
    buf_append_str(&b, "{\"values\":[");
    for (unsigned i = 0; i < SPEC_QUEUE_PARTITION_ITEMS; i++)
        buf_append_str(&b, i ? ",\"eA==\"" : "\"eA==\"");
    buf_append_str(&b, "]}");
    buf_append(&b, "", 1);
    kv_put(&e, "q", b.data);
    struct spec_kv_req r;
    kv_req(CTL_KV_QUEUE, "put", "{\"values\":[\"eA==\"]}", &r);
    CHECK(ctl_queue_op(e.ctl, "default", "q", "put", &r, &ce) == NULL);
    CHECK_STR(ce.code, "queue_full");
    spec_kv_req_free(&r);
    kv_put(&e, "q", "{\"values\":[\"eA==\"],\"partition\":\"other\"}");
    /* Blocked gets are bounded per workspace. */
    struct kv_seen seen[CTL_KV_WAITERS_MAX + 1];
    memset(seen, 0, sizeof seen);
    json_decref(ctl_kv_create(e.ctl, "default", CTL_KV_QUEUE, "empty", true, &ce));
    for (unsigned i = 0; i < CTL_KV_WAITERS_MAX; i++)
        CHECK(kv_get(&e, "default", "empty", "{\"timeout\":30}", &seen[i]) != NULL);
    kv_req(CTL_KV_QUEUE, "get", "{\"timeout\":30}", &r);
    struct ctl_kv_waiter *w = NULL;
    CHECK(ctl_queue_get(e.ctl, "default", "empty", &r, kv_seen_cb, &seen[CTL_KV_WAITERS_MAX], &w, &ce) < 0);
    CHECK_STR(ce.code, "too_many_waiters");
    spec_kv_req_free(&r);
    CHECK_EQ_INT(ctl_kv_delete(e.ctl, "default", CTL_KV_QUEUE, "empty", &ce), 0);
    /* Dict: skip_if_exists keeps the first value; pop removes; bad input names its field. */
    json_decref(ctl_kv_create(e.ctl, "default", CTL_KV_DICT, "d", true, &ce));
    const char *const puts[] = {"{\"key\":\"aw==\",\"value\":\"MQ==\"}",
                                "{\"key\":\"aw==\",\"value\":\"Mg==\",\"skip_if_exists\":true}"};
    for (int i = 0; i < 2; i++) {
        kv_req(CTL_KV_DICT, "put", puts[i], &r);
        json_t *a = ctl_dict_op(e.ctl, "default", "d", "put", &r, &ce);
        CHECK(a && json_is_true(json_object_get(a, "written")) == (i == 0));
        json_decref(a);
        spec_kv_req_free(&r);
    }
    for (int i = 0; i < 2; i++) {
        kv_req(CTL_KV_DICT, "pop", "{\"key\":\"aw==\"}", &r);
        json_t *a = ctl_dict_op(e.ctl, "default", "d", "pop", &r, &ce);
        CHECK(a && json_is_true(json_object_get(a, "found")) == (i == 0));
        if (i == 0)
            CHECK_STR(json_string_value(json_object_get(a, "value")), "MQ==");
        json_decref(a);
        spec_kv_req_free(&r);
    }
    json_t *j = json_loads("{\"key\":\"aw==\",\"value\":7}", 0, NULL);
    CHECK(ctl_kv_req_parse(CTL_KV_DICT, "put", j, &r, &ce) < 0);
    CHECK_STR(ce.field, "value");
    json_decref(j);
    CHECK(ctl_kv_create(e.ctl, "default", CTL_KV_DICT, "no-such", false, &ce) == NULL && ce.kind == CTL_E_NOT_FOUND);
    CHECK(ctl_kv_create(e.ctl, "default", CTL_KV_DICT, "bad name", true, &ce) == NULL);
    CHECK_STR(ce.field, "name");
    env_free(&e);
}

/* The exposition format: HELP and TYPE lines (HELP text escaped), label values
 * escaped (backslash, double quote, newline), integers printed whole; and after calls
 * of a function, gust_calls_total and the histograms count them. */
UNIT_TEST(test_metrics_exposition)
{
    struct buf b = {0};
    ctl_metrics_family(&b, "gust_x_total", "counter", "a \\ b\nc");
    const char *labels[] = {"app", "ws/a\"b\\c\nd", "function", "f"};
    ctl_metrics_sample(&b, "gust_x_total", labels, 2, 42);
    ctl_metrics_sample(&b, "gust_y", NULL, 0, 0.25);
    CHECK_STR(b.data, "# HELP gust_x_total a \\\\ b\\nc\n# TYPE gust_x_total counter\n"
                      "gust_x_total{app=\"ws/a\\\"b\\\\c\\nd\",function=\"f\"} 42\ngust_y 0.25\n");
    buf_free(&b);

    struct env e;
    env_init(&e, 4000, 4096, 0);
    deploy(&e, "\"resources\":{\"cpu\":100,\"memory\":64}");
    char ids[3][64];
    for (int i = 0; i < 3; i++)
        submit(&e, "in", false, ids[i]);
    run_for(&e, 5);
    fake_ready_all(&e.fake);
    run_for(&e, 5);
    for (int k = 0; k < e.fake.nctrs; k++)
        while (inflight(&e.fake.ctrs[k]))
            fake_answer(&e.fake, &e.fake.ctrs[k], "out", 0);
    ctl_metrics_write(e.ctl, &b);
    CHECK(strstr(b.data, "# TYPE gust_calls_total counter\n"));
    CHECK(strstr(b.data, "gust_calls_total{app=\"default/a\",function=\"f\",outcome=\"success\"} 3\n"));
    CHECK(strstr(b.data, "gust_calls_total{app=\"default/a\",function=\"f\",outcome=\"failure\"} 0\n"));
    CHECK(strstr(b.data, "# TYPE gust_call_run_seconds histogram\n"));
    CHECK(strstr(b.data, "gust_call_run_seconds_bucket{app=\"default/a\",function=\"f\",le=\"+Inf\"} 3\n"));
    CHECK(strstr(b.data, "gust_call_run_seconds_count{app=\"default/a\",function=\"f\"} 3\n"));
    CHECK(strstr(b.data, "gust_call_queue_wait_seconds_count{app=\"default/a\",function=\"f\"} 3\n"));
    CHECK(strstr(b.data, "gust_containers{app=\"default/a\",function=\"f\",state=\"idle\"} "));
    CHECK(strstr(b.data, "gust_store_size_bytes{file=\"db\"} "));
    buf_free(&b);
    env_free(&e);
}

int main(void)
{
    UNIT_RUN(test_dispatch_and_packing);
    UNIT_RUN(test_max_containers_caps_starts);
    UNIT_RUN(test_min_and_buffer_containers);
    UNIT_RUN(test_scale_down_after_window);
    UNIT_RUN(test_retries_with_backoff);
    UNIT_RUN(test_timeout);
    UNIT_RUN(test_cancel);
    UNIT_RUN(test_lifetime_inputs_replace_containers);
    UNIT_RUN(test_container_exit_with_inputs);
    UNIT_RUN(test_start_failures_fail_a_call);
    UNIT_RUN(test_requeue_after_restart);
    UNIT_RUN(test_versions_drain);
    UNIT_RUN(test_old_version_freed_after_its_visit);
    UNIT_RUN(test_target_inputs);
    UNIT_RUN(test_capacity_waiting_reasons);
    UNIT_RUN(test_snapshot_versions);
    UNIT_RUN(test_shutdown_drains);
    UNIT_RUN(test_queue_waiters);
    UNIT_RUN(test_queue_limits_and_dict);
    UNIT_RUN(test_map_ordered);
    UNIT_RUN(test_store_bounds_trimmed_on_tick);
    UNIT_RUN(test_app_logs_numbered);
    UNIT_RUN(test_tokens_and_roles);
    UNIT_RUN(test_ephemeral_tokens);
    UNIT_RUN(test_workspace_isolation_and_quotas);
    UNIT_RUN(test_evict_instead_of_waiting);
    UNIT_RUN(test_evict_waiting_reason);
    UNIT_RUN(test_eviction_order);
    UNIT_RUN(test_evict_for_a_gpu);
    UNIT_RUN(test_no_eviction_below_floor);
    UNIT_RUN(test_prewarm);
    UNIT_RUN(test_default_keepalive_without_window);
    UNIT_RUN(test_keepalive_history_persists);
    UNIT_RUN(test_generator_items);
    UNIT_RUN(test_generator_items_acknowledged_in_steps);
    UNIT_RUN(test_generator_bounds_and_misuse);
    UNIT_RUN(test_generator_no_retry_after_items);
    UNIT_RUN(test_input_stream_buffering);
    UNIT_RUN(test_freed_capacity_reaches_other_apps);
    UNIT_RUN(test_quota_freed_by_scale_down_reaches_other_apps);
    UNIT_RUN(test_keepalive_stop_frees_quota_for_queued_call);
    UNIT_RUN(test_keepalive_stop_frees_room_for_min_containers);
    UNIT_RUN(test_crash_frees_room_for_min_containers);
    UNIT_RUN(test_eviction_once_enough_is_idle);
    UNIT_RUN(test_gpu_eviction_once_the_holder_is_idle);
    UNIT_RUN(test_metrics_exposition);
    UNIT_MAIN_END();
}
