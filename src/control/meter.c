/* Metering: cost and allocation utilization per app and function, computed from the
 * container records (start, stop, reserved resources, busy time) in the store plus the
 * live containers' in-memory busy time (flushed to the store before a query). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/util.h"
#include "base/xalloc.h"
#include "control/internal.h"

/* Defaults: public per-second list prices of a well-known serverless GPU cloud (2025). */
void ctl_rates_default(struct ctl_rates *r)
{
    static const struct {
        const char *type;
        double per_s;
    } gpus[] = {
        {"B200", 0.001736}, {"H200", 0.001261}, {"H100", 0.001097}, {"A100-80GB", 0.000694},
        {"A100-40GB", 0.000583}, {"L40S", 0.000542}, {"A10G", 0.000306}, {"L4", 0.000222}, {"T4", 0.000164},
    };
    memset(r, 0, sizeof *r);
    r->cpu_core_s = 0.0000131;
    r->memory_gib_s = 0.00000222;
    for (size_t i = 0; i < ARRAY_LEN(gpus); i++) {
        snprintf(r->gpu_type[i], sizeof r->gpu_type[i], "%s", gpus[i].type);
        r->gpu_s[i] = gpus[i].per_s;
    }
    r->ngpu = (int)ARRAY_LEN(gpus);
}

static double gpu_rate(const struct ctl_rates *r, const char *type)
{
    for (int i = 0; i < r->ngpu; i++)
        if (!strcmp(r->gpu_type[i], type))
            return r->gpu_s[i];
    return 0;
}

int ctl_rates_load_json(struct ctl_rates *r, const char *text, size_t len, struct gerr *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return gerr_set(err, EINVAL, "rates: not a JSON object (line %d: %s)", jerr.line, jerr.text);
    }
    const char *key;
    json_t *v;
    int rc = 0;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "cpu_core_s") && json_is_number(v)) {
            r->cpu_core_s = json_number_value(v);
        } else if (!strcmp(key, "memory_gib_s") && json_is_number(v)) {
            r->memory_gib_s = json_number_value(v);
        } else if (!strcmp(key, "gpu_s") && json_is_object(v)) {
            const char *t;
            json_t *p;
            json_object_foreach(v, t, p) {
                if (!json_is_number(p)) {
                    rc = gerr_set(err, EINVAL, "rates.gpu_s.%s: must be a number (price per GPU-second)", t);
                    goto out;
                }
                int i;
                for (i = 0; i < r->ngpu; i++)
                    if (!strcmp(r->gpu_type[i], t))
                        break;
                if (i == r->ngpu) {
                    if (r->ngpu == CTL_MAX_RATE_GPUS) {
                        rc = gerr_set(err, EINVAL, "rates.gpu_s: at most %d GPU types", CTL_MAX_RATE_GPUS);
                        goto out;
                    }
                    snprintf(r->gpu_type[i], sizeof r->gpu_type[i], "%s", t);
                    r->ngpu++;
                }
                r->gpu_s[i] = json_number_value(p);
            }
        } else {
            rc = gerr_set(err, EINVAL,
                          "rates.%s: unknown or mistyped field; allowed: cpu_core_s (number), memory_gib_s "
                          "(number), gpu_s (object of numbers)",
                          key);
            goto out;
        }
    }
out:
    json_decref(root);
    return rc;
}

struct meter_fn {
    char app[CTL_QNAME_MAX], function[64];
    uint64_t containers, calls;
    double alive_s, busy_s, cpu_core_s, memory_gib_s, gpu_s, gpu_busy_s, cost;
    /* Measured (recorded when each container stopped). */
    double cpu_used_s, memory_peak_mib, gpu_mem_peak_mib, gpu_util_weighted, gpu_util_weight;
    uint64_t oom_kills;
    uint64_t evictions;         /* containers stopped to make room for other work */
};

struct meter_acc {
    const char *ws;             /* only this workspace's containers */
    const struct ctl_rates *rates;
    struct meter_fn *fns;
    size_t n, cap;
    double since, now;
    int err;
};

static int meter_row(const struct store_container *sc, void *ud)
{
    struct meter_acc *m = ud;
    if (!ctl_unqualify(sc->app, m->ws))
        return 0;
    struct meter_fn *f = NULL;
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->fns[i].app, sc->app) && !strcmp(m->fns[i].function, sc->function))
            f = &m->fns[i];
    if (!f) {
        if (m->n == m->cap) {
            m->cap = m->cap ? m->cap * 2 : 16;
            m->fns = xreallocarray(m->fns, m->cap, sizeof *m->fns);
        }
        f = &m->fns[m->n++];
        memset(f, 0, sizeof *f);
        snprintf(f->app, sizeof f->app, "%s", sc->app);
        snprintf(f->function, sizeof f->function, "%s", sc->function);
    }
    double start = sc->started_at > m->since ? sc->started_at : m->since;
    double end = sc->stopped_at > 0 ? sc->stopped_at : m->now;
    double alive = end > start ? end - start : 0;
    /* Busy time is recorded per container lifetime; clip it to the window. */
    double busy = sc->busy_s < alive ? sc->busy_s : alive;
    f->containers++;
    f->calls += sc->inputs_done;
    f->alive_s += alive;
    f->busy_s += busy;
    f->cpu_core_s += alive * sc->cpu_millicores / 1000.0;
    f->memory_gib_s += alive * sc->memory_mib / 1024.0;
    f->gpu_s += alive * sc->gpu_count;
    f->gpu_busy_s += busy * sc->gpu_count;
    f->cpu_used_s += sc->usage.cpu_s;
    f->oom_kills += sc->usage.oom_kills;
    if (!strcmp(sc->stop_reason, "evicted"))
        f->evictions++;
    if (sc->usage.memory_peak_mib > f->memory_peak_mib)
        f->memory_peak_mib = sc->usage.memory_peak_mib;
    if (sc->usage.gpu_mem_peak_mib > f->gpu_mem_peak_mib)
        f->gpu_mem_peak_mib = sc->usage.gpu_mem_peak_mib;
    if (sc->gpu_count && sc->usage.gpu_util_avg > 0) {
        f->gpu_util_weighted += sc->usage.gpu_util_avg * alive * sc->gpu_count;
        f->gpu_util_weight += alive * sc->gpu_count;
    }
    f->cost += alive * (sc->cpu_millicores / 1000.0 * m->rates->cpu_core_s +
                        sc->memory_mib / 1024.0 * m->rates->memory_gib_s +
                        sc->gpu_count * gpu_rate(m->rates, sc->gpu_type));
    return 0;
}

json_t *meter_usage_json(struct ctl *c, const char *ws, double since, struct gerr *err)
{
    struct meter_acc m = {.ws = ws, .rates = &c->cfg.rates, .since = since, .now = wall_s()};
    if (store_usage_rows(c->store, since, meter_row, &m, err) < 0) {
        free(m.fns);
        return NULL;
    }
    json_t *gpu_rates = json_object();
    for (int i = 0; i < c->cfg.rates.ngpu; i++)
        json_object_set_new(gpu_rates, c->cfg.rates.gpu_type[i], json_real(c->cfg.rates.gpu_s[i]));
    json_t *apps = json_array();
    double total = 0;
    for (size_t i = 0; i < m.n; i++) {
        struct meter_fn *f = &m.fns[i];
        json_t *app = NULL;
        size_t k;
        json_t *a;
        const char *local = ctl_local_name(f->app);
        json_array_foreach(apps, k, a) if (!strcmp(json_string_value(json_object_get(a, "app")), local)) app = a;
        if (!app) {
            app = json_pack("{s:s,s:f,s:[]}", "app", local, "cost", 0.0, "functions");
            json_array_append_new(apps, app);
        }
        json_t *util = f->alive_s > 0 ? json_real(f->busy_s / f->alive_s) : json_null();
        json_t *gutil = f->gpu_s > 0 ? json_real(f->gpu_busy_s / f->gpu_s) : json_null();
        json_t *gmeas = f->gpu_util_weight > 0 ? json_real(f->gpu_util_weighted / f->gpu_util_weight) : json_null();
        json_t *fj = json_pack("{s:s,s:I,s:I,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:o,s:o}", "function", f->function,
                               "containers", (json_int_t)f->containers, "calls", (json_int_t)f->calls, "alive_s",
                               f->alive_s, "busy_s", f->busy_s, "cpu_core_s", f->cpu_core_s, "memory_gib_s",
                               f->memory_gib_s, "gpu_s", f->gpu_s, "gpu_busy_s", f->gpu_busy_s, "cost", f->cost,
                               "utilization", util, "gpu_utilization", gutil);
        json_object_update_new(fj, json_pack("{s:f,s:f,s:I,s:f,s:o,s:I}", "cpu_used_s", f->cpu_used_s,
                                             "memory_peak_mib", f->memory_peak_mib, "oom_kills",
                                             (json_int_t)f->oom_kills, "gpu_mem_peak_mib", f->gpu_mem_peak_mib,
                                             "gpu_util_measured", gmeas, "evictions", (json_int_t)f->evictions));
        json_array_append_new(json_object_get(app, "functions"), fj);
        json_object_set_new(app, "cost", json_real(json_real_value(json_object_get(app, "cost")) + f->cost));
        total += f->cost;
    }
    free(m.fns);
    return json_pack("{s:{s:f,s:f,s:o},s:o,s:f,s:f}", "rates", "cpu_core_s", c->cfg.rates.cpu_core_s, "memory_gib_s",
                     c->cfg.rates.memory_gib_s, "gpu_s", gpu_rates, "apps", apps, "total_cost", total, "since", since);
}
