/* Watching gustd and its functions: gust health, ls, ps, logs and usage. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/json_cleanup.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "cli/cli.h"
#include "gust.h"

/* gust health: gustd's version and worker capacity. */
void cmd_print_health(json_t *j, const char *arg, const gust_client *c)
{
    const char *ver = json_string_value(json_object_get(j, "version"));
    printf("gustd %s at %s: %s\n", ver ? ver : "?", gust_client_addr(c),
           json_is_true(json_object_get(j, "ok")) ? "ok" : "NOT ok");
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(j, "worker"), k, v)
    {
        AUTO_FREE char *txt = cell_json(v);
        printf("  %s: %s\n", k, txt ? txt : "?");
    }
}

/* ---------- ls ---------- */

/* "3 (1 busy, 2 idle)" from {"starting", "idle", "busy"}. */
static char *containers_cell(json_t *cs)
{
    long long st = json_integer_value(json_object_get(cs, "starting"));
    long long id = json_integer_value(json_object_get(cs, "idle"));
    long long bz = json_integer_value(json_object_get(cs, "busy"));
    if (st + id + bz == 0)
        return xstrdup("0");
    struct buf b = {0};
    buf_printf(&b, "%lld (", st + id + bz);
    const char *sep = "";
    if (bz) {
        buf_printf(&b, "%lld busy", bz);
        sep = ", ";
    }
    if (id) {
        buf_printf(&b, "%s%lld idle", sep, id);
        sep = ", ";
    }
    if (st)
        buf_printf(&b, "%s%lld starting", sep, st);
    buf_append_str(&b, ")");
    return buf_steal(&b, NULL);
}

static const char *const FUNCTION_TITLES[] = {"APP",    "FUNCTION", "VERSION",    "IMAGE",     "QUEUED",
                                              "RUNNING", "CONTAINERS", "KEEPALIVE", "EVICTED", "WAITING",
                                              "NEXT RUN", "LAST RUN", "WEB URL"};

/* "60s", or "396s, pre-warm in 12s" while a pre-warm is due, from the keep-alive fields
 * of GET /v1/functions ("-" from a daemon without them). */
static char *keepalive_cell(json_t *f)
{
    json_t *ka = json_object_get(f, "keepalive_s"), *pre = json_object_get(f, "next_prewarm_in_s");
    if (!json_is_number(ka))
        return xstrdup("-");
    if (json_is_number(pre))
        return xasprintf("%.0fs, pre-warm in %.0fs", json_number_value(ka), json_number_value(pre));
    return xasprintf("%.0fs", json_number_value(ka));
}

/* A Unix time as "2026-12-05 14:00:00Z" (UTC, which every reader can convert). */
static char *utc_text(double t)
{
    time_t s = (time_t)t;
    struct tm tm;
    char out[32];
    if (!gmtime_r(&s, &tm) || !strftime(out, sizeof out, "%Y-%m-%d %H:%M:%SZ", &tm))
        return xstrdup("-");
    return xstrdup(out);
}

/* A scheduled function's next fire, or its latest one (last), from the "schedule" of
 * GET /v1/functions; "" for a function without one. */
static char *schedule_cell(json_t *f, bool last)
{
    json_t *s = json_object_get(f, "schedule");
    if (!json_is_object(s))
        return xstrdup("");
    json_t *runs = json_object_get(s, "last_runs");
    json_t *v = last ? json_object_get(json_array_get(runs, json_array_size(runs) - 1), "at")
                     : json_object_get(s, "next_run");
    return json_is_number(v) ? utc_text(json_number_value(v)) : xstrdup("-");
}

/* gust ls: one row a deployed function. */
void cmd_print_functions(json_t *j, const char *arg, const gust_client *c)
{
    struct table t = table_new(FUNCTION_TITLES, ARRAY_LEN(FUNCTION_TITLES));
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(j, "functions"), i, f)
    {
        json_t *wr = json_object_get(f, "waiting_reason"), *url = json_object_get(f, "web_url");
        char *row[] = {cell_field(f, "app"),    cell_field(f, "name"),    cell_field(f, "version"),
                       cell_field(f, "image"),  cell_field(f, "queued"),  cell_field(f, "running"),
                       containers_cell(json_object_get(f, "containers")), keepalive_cell(f),
                       cell_field(f, "evictions"), xstrdup(json_is_string(wr) ? json_string_value(wr) : ""),
                       schedule_cell(f, false), schedule_cell(f, true),
                       xstrdup(json_is_string(url) ? json_string_value(url) : "")};
        table_add(&t, row);
    }
    table_print(&t, "no functions deployed (deploy an app with `gust deploy SPEC`)");
}

/* ---------- ps ---------- */

static const char *const CONTAINER_TITLES[] = {"ID",        "APP",  "FUNCTION", "VERSION",  "STATE",
                                               "PID",       "IN-FLIGHT", "DONE", "CPU(m)", "MEM(MiB)",
                                               "GPUS",      "CPU-USED(s)", "MEM-PEAK(MiB)", "OOM", "GPU-UTIL",
                                               "AGE"};

/* "37%" from a percent field, "-" when absent (no NVML samples). */
static char *gpu_util_cell(json_t *ct)
{
    json_t *v = json_object_get(ct, "gpu_util_pct");
    return v ? xasprintf("%d%%", (int)json_integer_value(v)) : xstrdup("-");
}

/* gust ps: one row a container. */
void cmd_print_containers(json_t *j, const char *arg, const gust_client *c)
{
    struct table t = table_new(CONTAINER_TITLES, ARRAY_LEN(CONTAINER_TITLES));
    size_t i;
    json_t *ct;
    json_array_foreach(json_object_get(j, "containers"), i, ct)
    {
        char *row[] = {cell_field(ct, "id"),
                       cell_field(ct, "app"),
                       cell_field(ct, "function"),
                       cell_field(ct, "version"),
                       cell_field(ct, "state"),
                       cell_field(ct, "pid"),
                       cell_field(ct, "inputs_in_flight"),
                       cell_field(ct, "inputs_done"),
                       cell_field(ct, "cpu"),
                       cell_field(ct, "memory"),
                       cell_list(json_object_get(ct, "gpus")),
                       xasprintf("%.2f", json_number_value(json_object_get(ct, "cpu_s"))),
                       xasprintf("%.1f", (double)json_integer_value(json_object_get(ct, "memory_peak_bytes")) / (1 << 20)),
                       cell_field(ct, "oom_kills"),
                       gpu_util_cell(ct),
                       cell_age(json_object_get(ct, "started_at"))};
        table_add(&t, row);
    }
    table_print(&t, "no containers running");
}

/* ---------- logs ---------- */

/* gust_request_stream's callback: the log lines as they come. */
static int write_log_data(void *ud, const char *data, size_t len)
{
    fwrite(data, 1, len, stdout);
    fflush(stdout);
    return ferror(stdout) ? 1 : 0;
}

/* Appends "?name=value" or "&name=value" to path, value percent-encoded. */
static void query_add(struct buf *path, const char *name, const char *value)
{
    buf_printf(path, "%s%s=", strchr(path->data, '?') ? "&" : "?", name);
    cli_path_seg(path, value);
}

int cmd_logs(const struct cli_cmd *cmd, int argc, char **argv)
{
    bool follow = false;
    const char *tail = NULL, *since = NULL, *until = NULL, *search = NULL, *call = NULL, *container = NULL;
    struct cli_opt opts[] = {{"follow", 'f', NULL, &follow}, {"tail", 'n', &tail, NULL},
                             {"since", 's', &since, NULL},   {"until", 'u', &until, NULL},
                             {"search", 0, &search, NULL},   {"call", 0, &call, NULL},
                             {"container", 0, &container, NULL}, {0}};
    struct cli_target t;
    int rc;
    if (!cli_parse_target_args(cmd, argc, argv, opts, &t, &rc))
        return rc;
    int64_t tail_n = -1;
    if (tail && parse_i64(tail, 0, 100000, &tail_n) < 0)
        return cli_usage_error(cmd, "--tail wants a line count 0..100000, got \"%s\"", tail);
    double now = wall_s(), since_s = 0, until_s = 0;
    if (since && !parse_when(since, now, &since_s))
        return cli_usage_error(cmd, "--since wants a time (RFC 3339), UNIX seconds or a duration back like 10m, 2h; "
                               "got \"%s\"", since);
    if (until && !parse_when(until, now, &until_s))
        return cli_usage_error(cmd, "--until wants a time (RFC 3339), UNIX seconds or a duration back like 10m, 2h; "
                               "got \"%s\"", until);
    AUTO_CLIENT gust_client *c = cli_open_client();
    if (!c)
        return EXIT_USAGE;
    AUTO_BUF struct buf path = {0};
    cli_api_path(&path, "/v1/functions/%s/%s/logs", t.app, t.fn);
    if (follow)
        query_add(&path, "follow", "1");
    char num[64];
    if (tail_n >= 0) {
        snprintf(num, sizeof num, "%lld", (long long)tail_n);
        query_add(&path, "tail", num);
    }
    if (since) {
        snprintf(num, sizeof num, "%.3f", since_s);
        query_add(&path, "since", num);
    }
    if (until) {
        snprintf(num, sizeof num, "%.3f", until_s);
        query_add(&path, "until", num);
    }
    if (search)
        query_add(&path, "search", search);
    if (call)
        query_add(&path, "call", call);
    if (container)
        query_add(&path, "container", container);
    gust_error e;
    int r = gust_request_stream(c, "GET", path.data, NULL, NULL, 0, write_log_data, NULL, &e);
    if (r == -ECANCELED)
        return EXIT_OK; /* stdout went away */
    return r < 0 ? cli_report(&e) : EXIT_OK;
}

/* ---------- usage ---------- */

static const char *const USAGE_TITLES[] = {"APP",        "FUNCTION",   "CALLS",  "CONTAINERS",
                                           "ALIVE(s)",   "BUSY(s)",    "CPU(core-s)", "MEM(GiB-s)",
                                           "GPU(s)",     "UTIL",       "GPU-UTIL",    "CPU-USED(s)",
                                           "MEM-PEAK(MiB)", "OOM",     "EVICTED",     "COST($)"};

int cmd_usage(const struct cli_cmd *cmd, int argc, char **argv)
{
    const char *since = NULL;
    struct cli_opt opts[] = {{"since", 's', &since, NULL}, {0}};
    int rc;
    if (!cli_parse_args(cmd, argc, argv, opts, NULL, 0, &rc))
        return rc;
    double since_s = 0;
    if (since && !parse_when(since, wall_s(), &since_s))
        return cli_usage_error(cmd, "--since wants a time (RFC 3339), UNIX seconds or a duration like 90s, 15m, 2h, 7d; got \"%s\"",
                               since);
    AUTO_CLIENT gust_client *c = cli_open_client();
    if (!c)
        return EXIT_USAGE;
    /* Whole seconds: digits, which cli_api_path keeps as they are. */
    char since_arg[400];
    snprintf(since_arg, sizeof since_arg, "%.0f", since_s);
    json_t *j AUTO_JSON = cli_api_json(c, &rc, "GET", NULL, since ? "/v1/usage?since=%s" : "/v1/usage", since_arg);
    if (!j)
        return rc;
    struct table t = table_new(USAGE_TITLES, ARRAY_LEN(USAGE_TITLES));
    size_t i, k;
    json_t *a, *f;
    json_array_foreach(json_object_get(j, "apps"), i, a)
    {
        json_array_foreach(json_object_get(a, "functions"), k, f)
        {
            char *row[] = {cell_field(a, "app"),
                           cell_field(f, "function"),
                           cell_field(f, "calls"),
                           cell_field(f, "containers"),
                           cell_field_1f(f, "alive_s"),
                           cell_field_1f(f, "busy_s"),
                           cell_field_1f(f, "cpu_core_s"),
                           cell_field_1f(f, "memory_gib_s"),
                           cell_field_1f(f, "gpu_s"),
                           cell_percent(json_object_get(f, "utilization")),
                           cell_percent(json_object_get(f, "gpu_utilization")),
                           cell_field_1f(f, "cpu_used_s"),
                           cell_field_1f(f, "memory_peak_mib"),
                           cell_field(f, "oom_kills"),
                           cell_field(f, "evictions"),
                           xasprintf("%.6f", json_number_value(json_object_get(f, "cost")))};
            table_add(&t, row);
        }
    }
    table_print(&t, since ? "no usage recorded in that period" : "no usage recorded");
    printf("total cost: $%.6f\n", json_number_value(json_object_get(j, "total_cost")));
    return EXIT_OK;
}
