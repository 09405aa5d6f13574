/* One simulated run (sim.h): a temp directory for control's store and image dirs, a
 * virtual loop, the simulated worker, a control deployed with one function per trace
 * function, and the arrivals of one minute at a time submitted from timers as
 * non-durable calls whose completion comes back through ctl_wait.
 *
 * Cost per call in this file is O(1) plus a sort of its minute's arrivals: arrivals
 * are generated a minute at a time (never the whole day), and function names are
 * computed once. */
#include "sim/sim.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/cleanup.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "control/control.h"
#include "evloop/evloop.h"
#include "sim/simworker.h"
#include "store/store.h"

/* Gust's measured cold start: a no-op exec function in busybox, HTTP call to result,
 * p50 7.7 ms (README, bench cold_start); rounded up to 8 ms. */
#define SIM_COLD_START_MS 8
/* A function's own init (runtime boot, imports, loading its data) by its memory: the
 * README's torch function without a snapshot takes 1.74 s to its first result with
 * about 1.5 GiB resident, so about 1 s per GiB read and initialised. */
#define SIM_INIT_MS_PER_GIB 1000
/* Functions missing from *_run.csv run for 1 s: "Serverless in the Wild" (Fig. 7)
 * finds half of all functions average under 1 s. */
#define SIM_DEFAULT_DURATION_MS 1000
/* Functions missing from *_mem.csv reserve the spec's default memory, 128 MiB. */
#define SIM_DEFAULT_MEMORY_MIB 128
/* A pool large enough that the trace is served as it came: the policies are compared
 * on keep-alive alone, as ATC'20 does (its simulation has no capacity limit), not on
 * how they fare when memory runs out. 640 cores and 2.5 TiB: the shared 100-function
 * day peaks at 1,286 containers under the hungriest policy (hybrid), and results no
 * longer change from this size up (checked at 2x and 10x). Smaller --cpu/--memory
 * study a full worker (eviction). Every function reserves a tenth of a core
 * (SIM_FN_CPU), so memory, not CPU, binds first, as in Azure's consumption plan. */
#define SIM_CPU_MILLICORES 640000
#define SIM_MEMORY_MIB (2560u * 1024)
#define SIM_FN_CPU 100
/* The most containers a spec lets one function have (spec.c's max_containers bound). */
#define SIM_MAX_CONTAINERS 1000
/* A spec's app holds at most SPEC_MAX_FUNCTIONS (64) functions: the trace's functions
 * go to apps of 64. */
#define SIM_FNS_PER_APP 64
/* After the last minute, calls still running get at most this long to finish (the
 * longest timeout a spec allows). */
#define SIM_DRAIN_MAX_MS (86400ull * 1000)

void sim_config_default(struct sim_config *cfg)
{
    *cfg = (struct sim_config){
        .cpu_millicores = SIM_CPU_MILLICORES,
        .memory_mib = SIM_MEMORY_MIB,
        .ngpus = WORKER_MAX_GPUS,
        .cold_start_ms = SIM_COLD_START_MS,
        .init_ms_per_gib = SIM_INIT_MS_PER_GIB,
        .fn_cpu_millicores = SIM_FN_CPU,
        .scaledown_window_s = 0, /* unset: the keep-alive policy under test decides */
        .seed = 1,
        .time_scale = 1,
    };
}

/* Uniform in [0, 1): the top 53 bits of splitmix64 (a fixed seed gives the same
 * arrivals and durations on every run) over 2^53. */
static double rng_unit(uint64_t *s)
{
    return (double)(rng_splitmix64(s) >> 11) * (1.0 / 9007199254740992.0);
}

struct arrival {
    uint64_t t_ms;
    uint32_t fn;
};

struct sim_fn {
    char app[32];
    char name[32];
    uint32_t memory_mib;
    bool gpu;
};

struct sim {
    const struct sim_config *cfg;
    const struct trace *t;
    struct ev_loop *loop;
    struct ctl *ctl;
    struct sim_fn *fns;
    uint64_t rng;
    uint32_t minute;          /* the minute whose arrivals are in arr */
    struct arrival *arr;
    size_t narr, arr_cap, next;
    uint64_t outstanding;     /* submitted and not finished */
    struct sim_result *res;
    int err;                  /* first submit failure */
    struct gerr gerr;
};

static uint64_t minute_ms(const struct sim *s)
{
    return (uint64_t)llround(60000.0 / s->cfg->time_scale);
}

/* Duration of one call of function i, drawn from its percentiles: u uniform in
 * [0,100) is located between the two percentile points around it and interpolated
 * linearly (the inverse CDF through the 7 points). */
static uint32_t draw_duration(struct sim *s, size_t i)
{
    const struct trace_fn *f = &s->t->fns[i];
    double ms = SIM_DEFAULT_DURATION_MS;
    if (f->has_duration) {
        double u = rng_unit(&s->rng) * 100.0;
        int k = 1;
        while (k < TRACE_NPCT - 1 && u > trace_pct_at[k])
            k++;
        double lo = trace_pct_at[k - 1], hi = trace_pct_at[k];
        double frac = hi > lo ? (u - lo) / (hi - lo) : 0;
        ms = f->duration_pct[k - 1] + frac * (f->duration_pct[k] - f->duration_pct[k - 1]);
    }
    ms /= s->cfg->time_scale;
    if (ms < 1)
        ms = 1;
    if (ms > (double)UINT32_MAX)
        ms = (double)UINT32_MAX;
    return (uint32_t)ms;
}

static int arrival_cmp(const void *a, const void *b)
{
    const struct arrival *x = a, *y = b;
    if (x->t_ms != y->t_ms)
        return x->t_ms < y->t_ms ? -1 : 1;
    return x->fn < y->fn ? -1 : x->fn > y->fn;
}

/* Fills arr with minute m's arrivals, in time order. */
static void gen_minute(struct sim *s, uint32_t m)
{
    const struct trace *t = s->t;
    uint64_t len = minute_ms(s), base = (uint64_t)m * len;
    s->narr = s->next = 0;
    for (size_t i = 0; i < t->nfns; i++) {
        uint32_t n = t->counts[i * t->nminutes + m];
        for (uint32_t j = 0; j < n; j++) {
            double off = s->cfg->even_arrivals ? ((double)j + 0.5) / n : rng_unit(&s->rng);
            if (s->narr == s->arr_cap) {
                s->arr_cap = s->arr_cap ? s->arr_cap * 2 : 1024;
                s->arr = xreallocarray(s->arr, s->arr_cap, sizeof *s->arr);
            }
            s->arr[s->narr++] = (struct arrival){base + (uint64_t)(off * (double)len), (uint32_t)i};
        }
    }
    qsort(s->arr, s->narr, sizeof *s->arr, arrival_cmp);
}

static void call_done(void *ud, bool done, const struct ctl_call_view *v)
{
    struct sim *s = ud;
    s->outstanding--;
    if (done && v->state == CTL_CALL_SUCCEEDED)
        s->res->succeeded++;
    else
        s->res->failed++;
}

static void submit(struct sim *s, uint32_t fi)
{
    struct sim_input in = {.submit_ms = ev_now_ms(s->loop), .duration_ms = draw_duration(s, fi)};
    unsigned char payload[SIM_INPUT_LEN];
    sim_input_encode(&in, payload);
    char id[64];
    struct ctl_error ce = {0};
    const struct sim_fn *f = &s->fns[fi];
    if (ctl_submit(s->ctl, f->app, f->name, payload, sizeof payload, false, id, &ce) < 0 ||
        ctl_wait(s->ctl, NULL, id, UINT64_MAX, call_done, s, &(struct ctl_waiter *){NULL}, &ce) < 0) {
        if (!s->err) {
            s->err = -EIO;
            gerr_set(&s->gerr, EIO, "submit to %s.%s: %s", f->app, f->name, ce.message);
        }
        ev_stop(s->loop);
        return;
    }
    s->res->calls++;
    s->outstanding++;
}

/* Submits what is due now, then waits (a timer) for the next arrival, moving on to the
 * next minute when this one is done. */
static void arrivals(struct ev_loop *loop, void *data)
{
    struct sim *s = data;
    uint64_t now = ev_now_ms(loop);
    for (;;) {
        while (s->next < s->narr && s->arr[s->next].t_ms <= now)
            submit(s, s->arr[s->next++].fn);
        if (s->err)
            return;
        if (s->next < s->narr) {
            ev_timer_add(loop, s->arr[s->next].t_ms - now, arrivals, s);
            return;
        }
        if (++s->minute >= s->t->nminutes)
            return;
        gen_minute(s, s->minute);
    }
}

/* Memory of each function and which are GPU functions. */
static void plan_functions(struct sim *s)
{
    const struct trace *t = s->t;
    const struct sim_config *cfg = s->cfg;
    s->fns = xcalloc(t->nfns, sizeof *s->fns);
    for (size_t i = 0; i < t->nfns; i++) {
        struct sim_fn *f = &s->fns[i];
        snprintf(f->app, sizeof f->app, "default/sim%zu", i / SIM_FNS_PER_APP);
        snprintf(f->name, sizeof f->name, "f%zu", i);
        uint32_t mem = t->fns[i].memory_mib ? t->fns[i].memory_mib : SIM_DEFAULT_MEMORY_MIB;
        f->memory_mib = mem < 16 ? 16 : mem; /* the spec's smallest memory */
        if (cfg->gpu_min_memory_mib)
            f->gpu = f->memory_mib >= cfg->gpu_min_memory_mib;
    }
    if (!cfg->gpu_min_memory_mib && cfg->gpu_fraction > 0) {
        /* The heaviest fraction by memory (ties: trace order). */
        size_t n = t->nfns, want = (size_t)ceil(cfg->gpu_fraction * (double)n);
        struct arrival *by_mem = xcalloc(n, sizeof *by_mem); /* (memory, index) pairs */
        for (size_t i = 0; i < n; i++)
            by_mem[i] = (struct arrival){UINT32_MAX - s->fns[i].memory_mib, (uint32_t)i};
        qsort(by_mem, n, sizeof *by_mem, arrival_cmp);
        for (size_t k = 0; k < want && k < n; k++)
            s->fns[by_mem[k].fn].gpu = true;
        free(by_mem);
    }
}

static int deploy_all(struct sim *s, struct gerr *err)
{
    const struct sim_config *cfg = s->cfg;
    size_t n = s->t->nfns;
    for (size_t a = 0; a * SIM_FNS_PER_APP < n; a++) {
        json_t *fns = json_array();
        for (size_t i = a * SIM_FNS_PER_APP; i < n && i < (a + 1) * SIM_FNS_PER_APP; i++) {
            const struct sim_fn *f = &s->fns[i];
            json_t *res = json_pack("{s:i,s:i}", "cpu", (json_int_t)cfg->fn_cpu_millicores, "memory",
                                    (json_int_t)f->memory_mib);
            if (f->gpu)
                json_object_set_new(res, "gpu", json_string("H100"));
            json_t *fj = json_pack("{s:s,s:s,s:[s],s:s,s:i,s:o}", "name", f->name, "kind", "exec", "command", "sim",
                                   "image", "img", "timeout", 86400, "resources", res);
            /* The trace's calls were all served as they came (Azure scales a function
             * out without a cap), so no function is capped below the spec's largest
             * max_containers: under the default of 10, a function with 56 calls a
             * minute of 28 s each (the sample has one) queues for hours and its calls
             * are never measured. The scaledown window is unset unless asked: the
             * keep-alive policy under test decides. */
            json_t *scaling = json_pack("{s:i}", "max_containers", (json_int_t)SIM_MAX_CONTAINERS);
            if (cfg->scaledown_window_s)
                json_object_set_new(scaling, "scaledown_window", json_integer((json_int_t)cfg->scaledown_window_s));
            json_object_set_new(fj, "scaling", scaling);
            json_array_append_new(fns, fj);
        }
        json_t *spec = json_pack("{s:s,s:o}", "app", ctl_local_name(s->fns[a * SIM_FNS_PER_APP].app), "functions", fns);
        json_t *out = NULL;
        struct ctl_error ce = {0};
        int r = ctl_deploy(s->ctl, "default", spec, &out, &ce);
        json_decref(spec);
        json_decref(out);
        if (r < 0)
            return gerr_set(err, EINVAL, "deploy: %s: %s", ce.field, ce.message);
    }
    return 0;
}

int sim_run(const struct sim_config *cfg, const char *policy, struct sim_result *out, struct gerr *err)
{
    memset(out, 0, sizeof *out);
    snprintf(out->policy, sizeof out->policy, "%s", policy ? policy : "default");
    if (!cfg->trace || !cfg->trace->nfns || !cfg->trace->nminutes || !(cfg->time_scale > 0))
        return gerr_set(err, EINVAL, "nothing to simulate");
    uint64_t wall0 = mono_ns();
    /* Control's store is SQLite on a file (store_open refuses :memory:, which has no
     * WAL); in /dev/shm its writes (every container start and stop, the usage flush
     * every 5 virtual seconds) cost no disk I/O. /tmp when there is no /dev/shm. */
    char dir[] = "/dev/shm/gust-sim-XXXXXX";
    if (!mkdtemp(dir)) {
        snprintf(dir, sizeof dir, "/tmp/gust-sim-XXXXXX");
        if (!mkdtemp(dir))
            return gerr_sys(err, errno, "temp directory");
    }
    char images[64], cas[64], db[64], rootfs[64];
    snprintf(images, sizeof images, "%s/images", dir);
    snprintf(cas, sizeof cas, "%s/cas", dir);
    snprintf(db, sizeof db, "%s/gust.db", dir);
    snprintf(rootfs, sizeof rootfs, "%s/rootfs", dir);
    mkdir_p(images, 0755);
    mkdir_p(rootfs, 0755);

    struct sim s = {.cfg = cfg, .t = cfg->trace, .rng = cfg->seed, .res = out};
    struct store *store = NULL;
    struct simworker *w = NULL;
    int r = ev_loop_new_virtual(&s.loop);
    if (r < 0) {
        gerr_sys(err, -r, "event loop");
        goto out;
    }
    struct simworker_config wc = {
        .cpu_millicores = cfg->cpu_millicores,
        .memory_mib = cfg->memory_mib,
        .ngpus = cfg->ngpus,
        .cold_start_ms = (uint32_t)llround(cfg->cold_start_ms / cfg->time_scale),
        .init_ms_per_gib = (uint32_t)llround(cfg->init_ms_per_gib / cfg->time_scale),
    };
    simworker_new(s.loop, &wc, &w);
    if ((r = store_open(db, &store, err)) < 0 ||
        (r = store_image_put(store, "img", rootfs, false, NULL, wall_s(), err)) < 0)
        goto out;
    struct ctl_config cc = {
        .data_dir = dir,
        .images_dir = images,
        .cas_dir = cas,
        .max_payload = 1 << 10,
        .stop_grace_ms = 1000,
        .no_builtin_images = true,
        .keepalive_policy = policy,
    };
    ctl_rates_default(&cc.rates);
    if ((r = ctl_new(s.loop, store, &simworker_ops, w, &cc, &s.ctl, err)) < 0 ||
        (r = ctl_recover(s.ctl, err)) < 0)
        goto out;
    plan_functions(&s);
    if ((r = deploy_all(&s, err)) < 0)
        goto out;

    gen_minute(&s, 0);
    ev_timer_add(s.loop, 0, arrivals, &s);
    uint64_t end = (uint64_t)s.t->nminutes * minute_ms(&s);
    ev_run_until(s.loop, end);
    for (uint64_t waited = 0; !s.err && s.outstanding && waited < SIM_DRAIN_MAX_MS; waited += 60000)
        ev_run_until(s.loop, ev_now_ms(s.loop) + 60000);
    if (s.err) {
        r = s.err;
        *err = s.gerr;
        goto out;
    }
    struct simworker_stats st;
    simworker_finish(w, &st);
    /* MiB-ms to GiB-s. */
    const double gib_s = 1.0 / (1024.0 * 1000.0);
    out->inputs = st.inputs;
    out->cold_inputs = st.cold_inputs;
    out->cold_start_pct = st.inputs ? 100.0 * (double)st.cold_inputs / (double)st.inputs : 0;
    out->alive_gib_s = st.alive_mib_ms * gib_s * cfg->time_scale;
    out->busy_gib_s = st.busy_mib_ms * gib_s * cfg->time_scale;
    out->idle_gib_s = out->alive_gib_s - out->busy_gib_s;
    out->utilization = st.alive_mib_ms > 0 ? st.busy_mib_ms / st.alive_mib_ms : 0;
    out->containers = st.started;
    out->evictions = st.stopped;
    out->peak_containers = st.peak_live;
    for (size_t i = 0; i < s.t->nfns; i++)
        out->gpu |= s.fns[i].gpu;
    out->gpu_alive_s = st.gpu_alive_ms / 1000.0 * cfg->time_scale;
    out->gpu_busy_s = st.gpu_busy_ms / 1000.0 * cfg->time_scale;
    out->gpu_utilization = st.gpu_alive_ms > 0 ? st.gpu_busy_ms / st.gpu_alive_ms : 0;
    out->virtual_s = (double)ev_now_ms(s.loop) / 1000.0 * cfg->time_scale;
    r = 0;
out:
    ctl_free(s.ctl);
    simworker_free(w);
    store_close(store);
    ev_loop_free(s.loop);
    free(s.arr);
    free(s.fns);
    rm_rf(dir);
    out->wall_s = (double)(mono_ns() - wall0) / 1e9;
    return r;
}
