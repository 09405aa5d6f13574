/* Prometheus metrics (docs/API.md "Metrics"): counters and histograms per function,
 * updated where calls start and finish and containers start, become ready and exit,
 * and the text exposition (format 0.0.4) of them and of gauges computed at scrape time
 * from the model (queues, containers by state, resources reserved and used) and the
 * store's size.
 *
 * The recording functions run on every call, so each is a few additions on memory the
 * function already owns: no allocation, no lock, no store write. Label sets are
 * bounded by what exists: app and function are the qualified names of functions
 * deployed since this daemon started, the other labels take the fixed values below. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "control/internal.h"

/* The buckets' upper bounds in seconds (internal.h, METRICS_NBUCKETS, says why these). */
static const double METRICS_BUCKETS[METRICS_NBUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
};

static const char *const METRICS_OUTCOMES[METRICS_NOUTCOMES] = {"success", "failure", "timeout", "cancelled"};

/* ---------- recording ---------- */

void metrics_observe(struct metrics_hist *h, double seconds)
{
    if (!(seconds >= 0)) /* a clock step back (wall time) or NaN: counted as 0 */
        seconds = 0;
    size_t i = 0;
    while (i < METRICS_NBUCKETS && seconds > METRICS_BUCKETS[i])
        i++;
    h->n[i]++;
    h->sum += seconds;
}

void metrics_call_started(struct ctl_fn *fn, const struct ctl_call *call)
{
    if (call->attempts == 1)
        metrics_observe(&fn->metrics.queue_wait, call->started_at - call->created_at);
}

void metrics_call_finished(struct ctl_fn *fn, const struct ctl_call *call)
{
    size_t o;
    switch (call->state) {
    case CTL_CALL_SUCCEEDED: o = 0; break;
    case CTL_CALL_TIMED_OUT: o = 2; break;
    case CTL_CALL_CANCELLED: o = 3; break;
    default: o = 1; break;
    }
    fn->metrics.calls[o]++;
    if (call->started_at > 0)
        metrics_observe(&fn->metrics.run, call->finished_at - call->started_at);
}

void metrics_ctr_started(struct ctl_fn *fn)
{
    fn->metrics.cold_starts++;
}

void metrics_ctr_ready(struct ctl_fn *fn, double seconds)
{
    metrics_observe(&fn->metrics.cold_start, seconds);
}

void metrics_ctr_gone(struct ctl_fn *fn, uint64_t cpu_ns)
{
    fn->metrics.cpu_ns_gone += cpu_ns;
}

/* ---------- the exposition format ---------- */

/* Appends s with the escapes of the format: in a label value backslash, double quote
 * and newline; in HELP text backslash and newline. */
static void append_escaped(struct buf *out, const char *s, bool quote)
{
    for (const char *p = s; *p; p++) {
        if (*p == '\\')
            buf_append_str(out, "\\\\");
        else if (*p == '\n')
            buf_append_str(out, "\\n");
        else if (*p == '"' && quote)
            buf_append_str(out, "\\\"");
        else
            buf_append(out, p, 1);
    }
}

void ctl_metrics_family(struct buf *out, const char *name, const char *type, const char *help)
{
    buf_printf(out, "# HELP %s ", name);
    append_escaped(out, help, false);
    buf_printf(out, "\n# TYPE %s %s\n", name, type);
}

void ctl_metrics_sample(struct buf *out, const char *name, const char *const *labels, size_t nlabels, double value)
{
    buf_append_str(out, name);
    for (size_t i = 0; i < nlabels; i++) {
        buf_append_str(out, i ? "," : "{");
        buf_append_str(out, labels[2 * i]);
        buf_append_str(out, "=\"");
        append_escaped(out, labels[2 * i + 1], true);
        buf_append_str(out, "\"");
    }
    if (nlabels)
        buf_append_str(out, "}");
    /* %.17g prints every integer a double holds exactly (counters below 2^53) as the
     * integer, and any other value so that it reads back the same. */
    if (isinf(value))
        buf_append_str(out, value > 0 ? " +Inf\n" : " -Inf\n");
    else if (isnan(value))
        buf_append_str(out, " NaN\n");
    else
        buf_printf(out, " %.17g\n", value);
}

/* A histogram's _bucket (cumulative, with le), _sum and _count lines under the labels
 * app and function. */
static void write_hist(struct buf *out, const char *name, const char *app, const char *fn,
                       const struct metrics_hist *h)
{
    char bname[128], le[32];
    const char *labels[] = {"app", app, "function", fn, "le", le};
    snprintf(bname, sizeof bname, "%s_bucket", name);
    uint64_t cum = 0;
    for (size_t i = 0; i <= METRICS_NBUCKETS; i++) {
        cum += h->n[i];
        if (i < METRICS_NBUCKETS)
            snprintf(le, sizeof le, "%g", METRICS_BUCKETS[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        ctl_metrics_sample(out, bname, labels, 3, (double)cum);
    }
    snprintf(bname, sizeof bname, "%s_sum", name);
    ctl_metrics_sample(out, bname, labels, 2, h->sum);
    snprintf(bname, sizeof bname, "%s_count", name);
    ctl_metrics_sample(out, bname, labels, 2, (double)cum);
}

/* ---------- the scrape ---------- */

/* What a scrape reads of one function: its counters, and the gauges summed over its
 * versions and their containers. */
struct metrics_agg {
    const struct ctl_fn *fn;
    uint64_t queued, running, retry_waiting;
    uint64_t starting, busy, idle, stopping;
    uint64_t cpu_millicores, memory_mib, gpus;   /* reserved by its containers */
    uint64_t cpu_ns, memory_bytes, gpu_mem_bytes; /* used (cpu_ns: in all, exited ones too) */
    double gpus_busy;                            /* GPUs x their utilization */
};

static void agg_fill(struct ctl *c, struct metrics_agg *a)
{
    a->cpu_ns = a->fn->metrics.cpu_ns_gone;
    list_for_each(fv, &a->fn->versions, struct ctl_fver, link) {
        a->queued += fv->queued;
        a->running += fv->running;
        a->retry_waiting += fv->retry_waiting;
        list_for_each(k, &fv->ctrs, struct ctl_ctr, link) {
            if (k->state == CTR_STARTING)
                a->starting++;
            else if (k->state == CTR_STOPPING)
                a->stopping++;
            else if (k->inflight)
                a->busy++;
            else
                a->idle++;
            a->cpu_millicores += k->cpu_millicores;
            a->memory_mib += k->memory_mib;
            a->gpus += (uint64_t)k->ngpu;
            struct ctr_info info;
            if (c->wops->info(c->worker, k->id, &info) < 0)
                continue;
            a->cpu_ns += info.stats.cpu_ns;
            a->memory_bytes += info.stats.memory_bytes;
            a->gpu_mem_bytes += info.stats.gpu_mem_bytes;
            a->gpus_busy += info.stats.ngpus * info.stats.gpu_util_pct / 100.0;
        }
    }
}

/* One gauge or counter family with a sample per function (value picked by off, the
 * offset of a uint64_t in struct metrics_agg, scaled by mul). */
static void write_per_fn(struct buf *out, const struct metrics_agg *aggs, size_t n, const char *name,
                         const char *type, const char *help, size_t off, double mul)
{
    ctl_metrics_family(out, name, type, help);
    for (size_t i = 0; i < n; i++) {
        uint64_t v;
        memcpy(&v, (const char *)&aggs[i] + off, sizeof v);
        const char *labels[] = {"app", aggs[i].fn->app->name, "function", aggs[i].fn->name};
        ctl_metrics_sample(out, name, labels, 2, (double)v * mul);
    }
}

void ctl_metrics_write(struct ctl *c, struct buf *out)
{
    size_t n = 0;
    list_for_each(app, &c->apps, struct ctl_app, link)
        list_for_each(fn, &app->fns, struct ctl_fn, link)
            n++;
    struct metrics_agg *aggs = xcalloc(n ? n : 1, sizeof *aggs);
    size_t i = 0;
    list_for_each(app, &c->apps, struct ctl_app, link)
        list_for_each(fn, &app->fns, struct ctl_fn, link) {
            aggs[i].fn = fn;
            agg_fill(c, &aggs[i]);
            i++;
        }

    ctl_metrics_family(out, "gust_calls_total", "counter",
                       "Calls that reached a final state, by function and outcome (success, failure, timeout, "
                       "cancelled).");
    for (i = 0; i < n; i++)
        for (size_t o = 0; o < METRICS_NOUTCOMES; o++) {
            const char *labels[] = {"app", aggs[i].fn->app->name, "function", aggs[i].fn->name, "outcome",
                                    METRICS_OUTCOMES[o]};
            ctl_metrics_sample(out, "gust_calls_total", labels, 3, (double)aggs[i].fn->metrics.calls[o]);
        }
    static const struct {
        const char *name, *help;
        size_t off;
    } hists[] = {
        {"gust_call_queue_wait_seconds", "Time from a call's submission to the start of its first attempt.",
         offsetof(struct metrics_fn, queue_wait)},
        {"gust_call_run_seconds", "Time from the start of a call's last attempt to its final state.",
         offsetof(struct metrics_fn, run)},
        {"gust_cold_start_seconds", "Time from a container's start to its ready (the runner took the function).",
         offsetof(struct metrics_fn, cold_start)},
    };
    for (size_t h = 0; h < ARRAY_LEN(hists); h++) {
        ctl_metrics_family(out, hists[h].name, "histogram", hists[h].help);
        for (i = 0; i < n; i++)
            write_hist(out, hists[h].name, aggs[i].fn->app->name, aggs[i].fn->name,
                       (const struct metrics_hist *)((const char *)&aggs[i].fn->metrics + hists[h].off));
    }

    ctl_metrics_family(out, "gust_cold_starts_total", "counter", "Containers started (each one a cold start).");
    for (i = 0; i < n; i++) {
        const char *labels[] = {"app", aggs[i].fn->app->name, "function", aggs[i].fn->name};
        ctl_metrics_sample(out, "gust_cold_starts_total", labels, 2, (double)aggs[i].fn->metrics.cold_starts);
    }
    ctl_metrics_family(out, "gust_evictions_total", "counter",
                       "Idle containers stopped to make room for queued work of another function.");
    for (i = 0; i < n; i++) {
        const char *labels[] = {"app", aggs[i].fn->app->name, "function", aggs[i].fn->name};
        ctl_metrics_sample(out, "gust_evictions_total", labels, 2, (double)aggs[i].fn->evictions);
    }
    write_per_fn(out, aggs, n, "gust_queue_depth", "gauge", "Calls queued, waiting for a container.",
                 offsetof(struct metrics_agg, queued), 1);
    write_per_fn(out, aggs, n, "gust_calls_running", "gauge", "Calls running in a container.",
                 offsetof(struct metrics_agg, running), 1);
    write_per_fn(out, aggs, n, "gust_calls_retry_waiting", "gauge", "Calls waiting for their retry's backoff.",
                 offsetof(struct metrics_agg, retry_waiting), 1);

    ctl_metrics_family(out, "gust_containers", "gauge",
                       "Containers by state: starting, busy (ready, with inputs), idle (ready, none), stopping.");
    static const struct {
        const char *state;
        size_t off;
    } states[] = {
        {"starting", offsetof(struct metrics_agg, starting)},
        {"busy", offsetof(struct metrics_agg, busy)},
        {"idle", offsetof(struct metrics_agg, idle)},
        {"stopping", offsetof(struct metrics_agg, stopping)},
    };
    for (i = 0; i < n; i++)
        for (size_t s = 0; s < ARRAY_LEN(states); s++) {
            uint64_t v;
            memcpy(&v, (const char *)&aggs[i] + states[s].off, sizeof v);
            const char *labels[] = {"app", aggs[i].fn->app->name, "function", aggs[i].fn->name, "state",
                                    states[s].state};
            ctl_metrics_sample(out, "gust_containers", labels, 3, (double)v);
        }

    write_per_fn(out, aggs, n, "gust_function_cpu_reserved_cores", "gauge",
                 "CPU cores reserved by the function's containers.", offsetof(struct metrics_agg, cpu_millicores),
                 1e-3);
    write_per_fn(out, aggs, n, "gust_function_cpu_used_seconds_total", "counter",
                 "CPU time used by the function's containers, live and exited (its rate is the cores used).",
                 offsetof(struct metrics_agg, cpu_ns), 1e-9);
    write_per_fn(out, aggs, n, "gust_function_memory_reserved_bytes", "gauge",
                 "Memory reserved (the limit) of the function's containers.",
                 offsetof(struct metrics_agg, memory_mib), 1048576.0);
    write_per_fn(out, aggs, n, "gust_function_memory_used_bytes", "gauge",
                 "Memory the function's containers use now (their cgroups' current usage).",
                 offsetof(struct metrics_agg, memory_bytes), 1);
    write_per_fn(out, aggs, n, "gust_function_gpus_reserved", "gauge", "GPUs reserved by the function's containers.",
                 offsetof(struct metrics_agg, gpus), 1);
    ctl_metrics_family(out, "gust_function_gpus_used", "gauge",
                       "GPUs busy: the function's GPUs, each weighted by its latest utilization sample (NVML).");
    for (i = 0; i < n; i++) {
        const char *labels[] = {"app", aggs[i].fn->app->name, "function", aggs[i].fn->name};
        ctl_metrics_sample(out, "gust_function_gpus_used", labels, 2, aggs[i].gpus_busy);
    }
    write_per_fn(out, aggs, n, "gust_function_gpu_memory_used_bytes", "gauge",
                 "GPU memory the function's containers use (latest NVML sample).",
                 offsetof(struct metrics_agg, gpu_mem_bytes), 1);
    free(aggs);

    uint64_t db = 0, wal = 0;
    struct gerr err;
    if (store_size_bytes(c->store, &db, &wal, &err) < 0)
        log_warn("metrics", "store size: %s", err.msg);
    ctl_metrics_family(out, "gust_store_size_bytes", "gauge",
                       "Size of gustd's SQLite store on disk: the database file and its write-ahead log.");
    const char *ldb[] = {"file", "db"}, *lwal[] = {"file", "wal"};
    ctl_metrics_sample(out, "gust_store_size_bytes", ldb, 1, (double)db);
    ctl_metrics_sample(out, "gust_store_size_bytes", lwal, 1, (double)wal);
}
