/* Listings as clients see them: apps, functions (with queue, containers, waiting
 * reason and snapshot), containers (with live numbers from the worker), health, usage. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/util.h"
#include "control/internal.h"

json_t *ctl_apps_json(struct ctl *c, const char *ws)
{
    json_t *arr = json_array();
    list_for_each(a, &c->apps, struct ctl_app, link) {
        const char *local = ctl_unqualify(a->name, ws);
        if (!local)
            continue;
        int n = 0;
        list_for_each(f, &a->fns, struct ctl_fn, link)
            n += !f->retired;
        json_array_append_new(arr, json_pack("{s:s,s:s,s:i,s:f}", "name", local, "state",
                                             a->stopped ? "stopped" : "deployed", "functions", n, "created_at",
                                             a->created_at));
    }
    return json_pack("{s:o}", "apps", arr);
}

/* The function's keep-alive as it stands, for its last container (level 1): the window
 * it is kept idle (its scaledown_window, else the policy's), the pre-warm window, and
 * when the next pre-warm starts (null: none due in this idle period). */
static json_t *keepalive_json(struct ctl *c, struct ctl_fn *f)
{
    const struct ctl_fver *l = f->latest;
    uint32_t window = l ? l->spec.scaledown_window_s : 0;
    uint64_t keep = window ? (uint64_t)window * 1000 : ka_keepalive_ms(&f->ka, 1);
    uint64_t pre = window ? 0 : ka_prewarm_ms(&f->ka, 1);
    json_t *next = json_null();
    uint64_t now = ev_now_ms(c->loop);
    uint64_t idle = ka_idle_for_ms(&f->ka, 1, now);
    /* Level 1 idle (the function has no work) and inside its pre-warm gap. */
    if (pre && l && f->ka.level == 0 && f->ka.nlevels && l->nstarting + l->nready == 0 && idle < keep)
        next = json_real(idle < pre ? (double)(pre - idle) / 1000.0 : 0.0);
    /* The default policy's valuation of a cold start for this function, in seconds of
     * its idle container (keepalive.c, ka_solve_value); null for the others and
     * before the control plane has set one. */
    json_t *worth = !window && f->ka.policy == KA_DEFAULT && f->ka.value_ms > 0 ? json_real(f->ka.value_ms / 1000.0)
                                                                                : json_null();
    return json_pack("{s:s,s:f,s:f,s:o,s:o,s:I,s:I}", "keepalive_policy",
                     window ? "scaledown_window" : ka_policy_name(f->ka.policy), "keepalive_s", (double)keep / 1000.0,
                     "prewarm_s", (double)pre / 1000.0, "next_prewarm_in_s", next, "cold_start_worth_s", worth,
                     "evictions", (json_int_t)f->evictions, "prewarms", (json_int_t)f->prewarms);
}

/* The autoscaler's view (kpa.c) as it would decide now, read on a copy so that a
 * listing moves no state: its stable window, both windows' average concurrency, the
 * containers it wants and whether it is panicking. */
static json_t *autoscaler_json(struct ctl *c, struct ctl_fn *f)
{
    const struct ctl_fver *l = f->latest;
    struct kpa_state copy = f->kpa;
    struct kpa_view v;
    kpa_decide(&copy, l ? ctl_inputs_per_ctr(&l->spec) : 1, l ? l->nready : 0, ev_now_ms(c->loop), &v);
    return json_pack("{s:f,s:i,s:f,s:f,s:i,s:b}", "stable_window_s", (double)copy.window_ms / 1000.0,
                     "target_inputs", (int)(l ? ctl_inputs_per_ctr(&l->spec) : 1), "concurrency_stable",
                     (double)v.stable_milli / 1000.0, "concurrency_panic", (double)v.panic_milli / 1000.0,
                     "desired_containers", (int)v.desired, "panicking", v.panicking);
}

static json_t *web_url_json(struct ctl *c, const struct ctl_fn *f);

static json_t *fn_json(struct ctl *c, struct ctl_fn *f)
{
    size_t queued = 0, running = 0;
    uint32_t starting = 0, idle = 0, busy = 0;
    const char *reason = NULL;
    list_for_each(fv, &f->versions, struct ctl_fver, link) {
        queued += fv->queued + fv->retry_waiting;
        running += fv->running;
        list_for_each(k, &fv->ctrs, struct ctl_ctr, link) {
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
    /* The latest version's snapshot, for snapshot functions: its template's id, state,
     * the containers forked from it that are alive, how many versions share it (same
     * content) and how many containers it has started. */
    json_t *snap = json_null();
    struct snapshot_info si;
    if (l && l->spec.snapshot && l->snap && c->wops->snapshot_info(c->worker, l->snap->id, &si) == 0)
        snap = json_pack("{s:s,s:s,s:i,s:i,s:I,s:i,s:I,s:s}", "id", l->snap->id, "state",
                         si.state == SNAPSHOT_READY    ? "ready"
                         : si.state == SNAPSHOT_TAKING ? "taking"
                                                       : "gone",
                         "pid", si.pid, "containers", si.children, "memory_bytes", (json_int_t)si.memory_bytes,
                         "versions", (int)l->snap->refs, "restores", (json_int_t)l->snap->restores, "key",
                         l->snap->key);
    json_t *j = json_pack("{s:s,s:s,s:i,s:s,s:s,s:s,s:I,s:I,s:{s:i,s:i,s:i},s:s?,s:O,s:I,s:o}", "app",
                     ctl_local_name(f->app->name), "name", f->name, "version", (json_int_t)(l ? l->version : 0), "kind", l ? l->spec.kind : "exec", "image",
                     !l ? ""
                     : l->spec.image ? l->spec.image
                     : json_string_value(json_object_get(l->spec.image_def, "built_id"))
                         ? json_string_value(json_object_get(l->spec.image_def, "built_id"))
                         : "",
                     "state", f->app->stopped ? "stopped" : "deployed", "queued",
                     (json_int_t)queued, "running", (json_int_t)running, "containers", "starting", starting, "idle",
                     idle, "busy", busy, "waiting_reason", reason, "spec", l ? l->spec_json : json_null(),
                     "calls_total", (json_int_t)f->calls_total, "snapshot", snap);
    if (j) {
        json_object_update_new(j, keepalive_json(c, f));
        json_object_set_new(j, "autoscaler", autoscaler_json(c, f));
    }
    json_t *sched = ctl_schedule_json(f);
    if (j && sched)
        json_object_set_new(j, "schedule", sched);
    else
        json_decref(sched);
    json_t *url = web_url_json(c, f);
    if (j && url)
        json_object_set_new(j, "web_url", url);
    else
        json_decref(url);
    return j;
}

/* ---------- web endpoints ---------- */

void ctl_web_set_urls(struct ctl *c, const char *base, const char *domain, const char *scheme, const char *port)
{
    snprintf(c->web_base, sizeof c->web_base, "%s", base ? base : "");
    snprintf(c->web_domain, sizeof c->web_domain, "%s", domain ? domain : "");
    snprintf(c->web_scheme, sizeof c->web_scheme, "%s", scheme ? scheme : "http");
    snprintf(c->web_port, sizeof c->web_port, "%s", port ? port : "");
}

/* The URL of f's endpoint, or NULL when it is none or there is no web listener. */
static json_t *web_url_json(struct ctl *c, const struct ctl_fn *f)
{
    const struct ctl_fver *l = f->latest;
    if (!l || l->spec.web.kind == SPEC_WEB_NONE || !c->web_base[0])
        return NULL;
    const char *qapp = f->app->name, *app = ctl_local_name(qapp);
    size_t wslen = (size_t)(app - qapp) - 1;
    if (c->web_domain[0]) {
        /* DNS names are case-insensitive: the Host form is written in lower case. */
        char url[512];
        int n = snprintf(url, sizeof url, "%s://%.*s--%s-%s.%s%s%s", c->web_scheme, (int)wslen, qapp, app,
                         l->spec.web.label, c->web_domain, c->web_port[0] ? ":" : "", c->web_port);
        for (char *p = url + strlen(c->web_scheme) + 3; n > 0 && *p; p++)
            *p = (char)tolower((unsigned char)*p);
        return json_string(url);
    }
    return json_sprintf("%s/%.*s/%s/%s", c->web_base, (int)wslen, qapp, app, l->spec.web.label);
}

static bool fill_endpoint(const struct ctl_fn *f, const char *label, struct ctl_web_endpoint *out)
{
    const struct ctl_fver *l = f->latest;
    if (!l || l->spec.web.kind == SPEC_WEB_NONE || strcasecmp(l->spec.web.label, label))
        return false;
    snprintf(out->app, sizeof out->app, "%s", f->app->name);
    snprintf(out->function, sizeof out->function, "%s", f->name);
    out->web = l->spec.web;
    out->timeout_s = l->spec.timeout_s;
    return true;
}

int ctl_web_find(struct ctl *c, const char *ws, const char *app, const char *label, struct ctl_web_endpoint *out)
{
    if (!ctl_ws_name_valid(ws) || !name_is_valid(app))
        return -ENOENT;
    char q[CTL_QNAME_MAX];
    ctl_qualify(q, ws, app);
    list_for_each(a, &c->apps, struct ctl_app, link) {
        if (a->stopped || strcasecmp(a->name, q))
            continue;
        list_for_each(f, &a->fns, struct ctl_fn, link)
            if (fill_endpoint(f, label, out))
                return 0;
    }
    return -ENOENT;
}

int ctl_web_find_joined(struct ctl *c, const char *ws, const char *app_label, struct ctl_web_endpoint *out)
{
    for (const char *dash = strchr(app_label, '-'); dash; dash = strchr(dash + 1, '-')) {
        char app[CTL_QNAME_MAX];
        size_t n = (size_t)(dash - app_label);
        if (n == 0 || n >= sizeof app)
            continue;
        memcpy(app, app_label, n);
        app[n] = '\0';
        if (ctl_web_find(c, ws, app, dash + 1, out) == 0)
            return 0;
    }
    return -ENOENT;
}

json_t *ctl_functions_json(struct ctl *c, const char *ws)
{
    json_t *arr = json_array();
    list_for_each(a, &c->apps, struct ctl_app, link)
        if (ctl_unqualify(a->name, ws))
            list_for_each(f, &a->fns, struct ctl_fn, link)
                if (!f->retired)
                    json_array_append_new(arr, fn_json(c, f));
    return json_pack("{s:o}", "functions", arr);
}

json_t *ctl_function_json(struct ctl *c, const char *app, const char *fn, struct ctl_error *e)
{
    struct ctl_fn *f = ctl_find_fn(c, app, fn);
    if (!f || f->retired) {
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", NULL, "function %s.%s not found%s", ctl_local_name(app), fn,
                f ? " (a deploy of its app removed it)" : "");
        return NULL;
    }
    return fn_json(c, f);
}

static json_t *container_json(struct ctl *c, struct ctl_ctr *k)
{
    static const char *states[] = {"", "starting", "idle", "stopping"};
    struct ctl_fver *fv = k->fv;
    const char *st = states[k->state];
    if (k->state == CTR_READY && k->inflight)
        st = "busy";
    json_t *gpus = json_array();
    for (int g = 0; g < k->ngpu; g++) {
        char s[48];
        snprintf(s, sizeof s, "%s:%d", k->gpu_type, k->gpu_idx[g]);
        json_array_append_new(gpus, json_string(s));
    }
    struct ctr_info info;
    bool known = c->wops->info(c->worker, k->id, &info) == 0;
    const struct ctr_stats *cs = &info.stats;
    json_t *cj = json_pack("{s:s,s:s,s:s,s:i,s:s,s:i,s:i,s:I,s:f,s:i,s:i,s:o,s:I,s:f}", "id", k->id, "app",
                           ctl_local_name(fv->fn->app->name), "function", fv->fn->name, "version", (json_int_t)fv->version, "state", st,
                           "pid", info.pid, "inputs_in_flight", (int)k->inflight, "inputs_done",
                           (json_int_t)k->inputs_done, "started_at", k->started_at, "cpu", (int)k->cpu_millicores,
                           "memory", (int)k->memory_mib, "gpus", gpus, "memory_bytes", (json_int_t)cs->memory_bytes,
                           "cpu_s", (double)cs->cpu_ns / 1e9);
    json_object_update_new(cj, json_pack("{s:I,s:I,s:I}", "memory_peak_bytes", (json_int_t)cs->memory_peak_bytes,
                                         "oom_kills", (json_int_t)cs->oom_kills, "host_uid",
                                         (json_int_t)info.host_uid));
    if (info.snapshot_of[0])
        json_object_set_new(cj, "snapshot", json_string(info.snapshot_of));
    if (cs->gpu_samples)
        json_object_update_new(cj, json_pack("{s:i,s:I,s:I,s:f}", "gpu_util_pct", (int)cs->gpu_util_pct,
                                             "gpu_memory_bytes", (json_int_t)cs->gpu_mem_bytes,
                                             "gpu_memory_peak_bytes", (json_int_t)cs->gpu_mem_peak_bytes,
                                             "gpu_util_avg_pct", cs->gpu_util_avg_pct));
    if (known) {
        const struct sandbox_timing *t = &info.timing;
        json_object_set_new(cj, "start_breakdown_us",
                            json_pack("{s:f,s:f,s:f,s:f,s:f,s:f,s:f}", "cgroups", t->cgroups_ns / 1e3, "namespaces",
                                      t->clone_ns / 1e3, "network", t->network_ns / 1e3, "mounts", t->mounts_ns / 1e3,
                                      "user_namespace", t->userns_ns / 1e3, "seccomp_caps", t->security_ns / 1e3,
                                      "exec", t->exec_ns / 1e3));
    }
    return cj;
}

json_t *ctl_containers_json(struct ctl *c, const char *ws)
{
    json_t *arr = json_array();
    ctl_for_each_version(fv, c)
        if (ctl_unqualify(fv->fn->app->name, ws))
            list_for_each(k, &fv->ctrs, struct ctl_ctr, link)
            json_array_append_new(arr, container_json(c, k));
    return json_pack("{s:o}", "containers", arr);
}

json_t *ctl_health_json(struct ctl *c)
{
    const struct worker_inventory *cap = &c->inv;
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

json_t *ctl_usage_json(struct ctl *c, const char *ws, double since, struct ctl_error *e)
{
    struct gerr err;
    sched_flush_usage(c);
    json_t *j = meter_usage_json(c, ws, since, &err);
    if (!j)
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "%s", err.msg);
    return j;
}

