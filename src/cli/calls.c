/* Calls: gust call, spawn, result, cancel (its printer) and map. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/json_cleanup.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "cli/cli.h"
#include "client/pyjson.h"
#include "gust.h"

/* gust cancel ID: the call's status. */
void cmd_print_cancelled(json_t *j, const char *id, const gust_client *c)
{
    const char *st = json_string_value(json_object_get(j, "status"));
    printf("%s: %s\n", id, st ? st : "cancelled");
}

/* The call input: -d DATA, -d @FILE, -d @- or (without -d) stdin unless it is a
 * terminal. Returns 0 or EXIT_USAGE. */
static int read_call_input(const char *data, struct buf *b)
{
    if (data && data[0] == '@')
        return cli_read_input_file(data + 1, b) ? 0 : EXIT_USAGE;
    if (data)
    {
        buf_append_str(b, data);
        return 0;
    }
    if (isatty(STDIN_FILENO))
        return 0;
    return cli_read_input_file("-", b) ? 0 : EXIT_USAGE;
}

/* Reads the call input (see read_call_input) into in and opens the client.
 * Returns NULL with *rc set when the command should end. */
static gust_client *open_with_input(const char *data, struct buf *in, int *rc)
{
    *rc = read_call_input(data, in);
    if (*rc)
        return NULL;
    *rc = EXIT_USAGE;
    return cli_open_client();
}

/* ---------- Python functions: JSON in, JSON out (client/pyjson.h) ---------- */

/* The options call, spawn and map share for Python functions. */
struct py_opts {
    bool args; /* --args: an array is the positional arguments, an object the keyword ones */
    bool raw;  /* --raw: bytes as they are, whatever the function */
};

/* Whether t is a Python function, from GET /v1/functions/{app}/{fn}: EXIT_OK with
 * *py set, or the exit code of the failure it reported (an unknown function: 3). */
static int lookup_python(gust_client *c, const struct cli_target *t, bool *py)
{
    *py = false;
    int rc;
    json_t *fn AUTO_JSON = cli_api_get(c, &rc, "/v1/functions/%s/%s", t->app, t->fn);
    if (!fn)
        return rc;
    *py = gust_py_is_function(fn);
    return EXIT_OK;
}

/* Tells whether the input goes to t as JSON (*py: a Python function, without --raw)
 * and checks the options against that. EXIT_OK, or the exit code of what it
 * reported. */
static int python_target(const struct cli_cmd *cmd, gust_client *c, const struct cli_target *t,
                         const struct py_opts *po, bool *py)
{
    *py = false;
    if (po->raw && po->args)
        return cli_usage_error(cmd, "--args and --raw do not go together: --raw sends the input as it is");
    if (po->raw)
        return EXIT_OK;
    int rc = lookup_python(c, t, py);
    if (rc == EXIT_OK && po->args && !*py)
        return cli_usage_error(cmd, "--args is for Python functions; %s.%s takes its input as bytes", t->app, t->fn);
    return rc;
}

/* Replaces in (the JSON the user gave) with the tagged input of a Python function
 * t. EXIT_OK or EXIT_USAGE after saying what is wrong. */
static int python_input(const struct cli_cmd *cmd, const struct cli_target *t, const struct py_opts *po,
                        struct buf *in)
{
    AUTO_BUF struct buf tagged = {0};
    struct gerr err;
    if (gust_py_json_input(in->data, in->len, po->args ? GUST_PY_SPREAD : GUST_PY_ONE_ARG, &tagged, &err) < 0)
        return cli_usage_error(cmd,
                               "%s.%s is a Python function, which takes JSON: %s (a string needs JSON quotes: "
                               "-d '\"text\"'; --raw sends bytes as they are)",
                               t->app, t->fn, err.msg);
    struct buf old = *in;
    *in = tagged;
    tagged = old;
    return EXIT_OK;
}

/* Prints object o compactly with "result": json[0..len) added, the JSON text as the
 * function's runner wrote it (numbers keep every digit). */
static void print_json_with_result(json_t *o, const char *json, size_t len)
{
    AUTO_FREE char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (!s)
        return;
    size_t n = strlen(s); /* an object: "{...}" */
    fwrite(s, 1, n - 1, stdout);
    fputs(n > 2 ? ",\"result\":" : "\"result\":", stdout);
    fwrite(json, 1, len, stdout);
    fputs("}\n", stdout);
}

/* The JSON error object of a failed call: {"code", "message"}, and for a Python
 * function's exception its "type" and "traceback", with "message" its first part
 * ("ValueError: ...") rather than the runner's whole text. */
static json_t *error_json(const char *code, const char *message)
{
    struct gust_py_error pe;
    if (!gust_py_error_split(message, strlen(message), &pe))
        return json_pack("{s:s, s:s}", "code", code, "message", message);
    return json_pack("{s:s, s:s%, s:s%, s:s%}", "code", code, "message", pe.message, pe.message_len, "type", pe.type,
                     pe.type_len, "traceback", pe.traceback, pe.traceback_len);
}

/* A failed call's error text: e's, or when libgust had to cut it (its message field
 * is full) the whole text from GET /v1/calls/{id}/status, so that a Python traceback
 * is there in full (when that fetch fails, it is reported and the cut text used).
 * Malloc'd. */
static char *call_error_text(gust_client *c, const gust_error *e)
{
    if (strlen(e->message) + 1 < sizeof e->message || !e->call_id[0])
        return xstrdup(e->message);
    int rc;
    json_t *st AUTO_JSON = cli_api_get(c, &rc, "/v1/calls/%s/status", e->call_id);
    const char *full = json_string_value(json_object_get(json_object_get(st, "error"), "message"));
    return xstrdup(full ? full : e->message);
}

/* Adds "output" (valid UTF-8) or "output_b64" to o. */
static void json_set_output(json_t *o, const void *out, size_t len)
{
    if (utf8_valid(out, len)) {
        json_object_set_new(o, "output", json_stringn(out, len));
        return;
    }
    AUTO_FREE char *b64 = NULL;
    size_t n;
    base64_encode(out, len, &b64, &n);
    json_object_set_new(o, "output_b64", json_stringn(b64, n));
}

/* Prints a finished call's output: raw bytes, or a JSON object with --json. A Python
 * function's JSON result (unless raw) is printed as JSON and a newline, or with
 * --json as the object's "result". */
static void print_output(const char *call_id, const void *out, size_t len, bool raw)
{
    const char *res = NULL;
    size_t res_len = 0;
    bool is_json = !raw && gust_py_json_output(out, len, &res, &res_len);
    if (!cli_opts.json) {
        fflush(stdout);
        if (!is_json) {
            write_full(STDOUT_FILENO, out, len);
            return;
        }
        write_full(STDOUT_FILENO, res, res_len);
        write_full(STDOUT_FILENO, "\n", 1);
        return;
    }
    json_t *o AUTO_JSON = json_pack("{s:s, s:s}", "call_id", call_id, "status", "succeeded");
    if (is_json) {
        print_json_with_result(o, res, res_len);
        return;
    }
    json_set_output(o, out, len);
    cli_print_json(o);
}

/* Reports a call failure (stderr; with --json also a JSON object on stdout). A
 * Python function's exception is shown as its type and message, then the remote
 * traceback. */
static int report_call(gust_client *c, const gust_error *e)
{
    if (e->kind == GUST_ERR_PENDING && cli_opts.json) {
        const char *st = e->status[0] ? e->status : "running";
        json_t *o AUTO_JSON = json_pack("{s:s, s:s}", "call_id", e->call_id, "status", st);
        cli_print_json(o);
        cli_print_pending(e);
        return EXIT_TIMEOUT;
    }
    if (e->kind != GUST_ERR_FUNCTION)
        return cli_report(e);
    AUTO_FREE char *text = call_error_text(c, e);
    const char *what = e->status[0] ? e->status : "failed";
    if (cli_opts.json) {
        json_t *o AUTO_JSON = json_pack("{s:s, s:s}", "call_id", e->call_id, "status", what);
        json_object_set_new(o, "error", error_json(e->code, text));
        cli_print_json(o);
    }
    struct gust_py_error pe;
    if (!gust_py_error_split(text, strlen(text), &pe)) {
        fprintf(stderr, "error: call %s %s (%s): %s\n", e->call_id, what, e->code, text);
        return EXIT_FAILED;
    }
    fprintf(stderr, "error: call %s %s (%s): %.*s\n", e->call_id, what, e->code, (int)pe.message_len, pe.message);
    if (pe.traceback_len)
        fprintf(stderr, "remote traceback:\n%.*s\n", (int)pe.traceback_len, pe.traceback);
    return EXIT_FAILED;
}

/* Reads the input, opens the client and, for a Python function (see python_target),
 * turns the input into its tagged JSON. NULL with *rc set when the command should
 * end. */
static gust_client *open_call(const struct cli_cmd *cmd, const struct cli_target *t, const char *data,
                              const struct py_opts *po, struct buf *in, int *rc)
{
    AUTO_CLIENT gust_client *c = open_with_input(data, in, rc);
    if (!c)
        return NULL;
    bool py;
    if ((*rc = python_target(cmd, c, t, po, &py)) != EXIT_OK)
        return NULL;
    if (py && (*rc = python_input(cmd, t, po, in)) != EXIT_OK)
        return NULL;
    return TAKE_PTR(c);
}

int cmd_call(const struct cli_cmd *cmd, int argc, char **argv)
{
    const char *data = NULL, *timeout = NULL;
    struct py_opts po = {0};
    struct cli_opt opts[] = {{"data", 'd', &data, NULL},
                             {"timeout", 't', &timeout, NULL},
                             {"args", 0, NULL, &po.args},
                             {"raw", 0, NULL, &po.raw},
                             {0}};
    struct cli_target t;
    int rc;
    if (!cli_parse_target_args(cmd, argc, argv, opts, &t, &rc))
        return rc;
    double secs = -1;
    if (timeout && !cli_parse_seconds(timeout, &secs))
        return cli_usage_error(cmd, "--timeout wants seconds (a number >= 0), got \"%s\"", timeout);
    AUTO_BUF struct buf in = {0};
    AUTO_CLIENT gust_client *c = open_call(cmd, &t, data, &po, &in, &rc);
    if (!c)
        return rc;
    AUTO_FREE void *out = NULL;
    size_t out_len;
    char id[64];
    gust_error e;
    if (gust_call(c, t.app, t.fn, in.data, in.len, secs, &out, &out_len, id, &e) < 0)
        return report_call(c, &e);
    print_output(id, out, out_len, po.raw);
    return EXIT_OK;
}

int cmd_spawn(const struct cli_cmd *cmd, int argc, char **argv)
{
    const char *data = NULL;
    struct py_opts po = {0};
    struct cli_opt opts[] = {
        {"data", 'd', &data, NULL}, {"args", 0, NULL, &po.args}, {"raw", 0, NULL, &po.raw}, {0}};
    struct cli_target t;
    int rc;
    if (!cli_parse_target_args(cmd, argc, argv, opts, &t, &rc))
        return rc;
    AUTO_BUF struct buf in = {0};
    AUTO_CLIENT gust_client *c = open_call(cmd, &t, data, &po, &in, &rc);
    if (!c)
        return rc;
    char id[64];
    gust_error e;
    if (gust_spawn(c, t.app, t.fn, in.data, in.len, id, &e) < 0)
        return cli_report(&e);
    if (cli_opts.json)
        printf("{\"call_id\":\"%s\",\"status\":\"pending\"}\n", id);
    else
        printf("%s\n", id);
    return EXIT_OK;
}

int cmd_result(const struct cli_cmd *cmd, int argc, char **argv)
{
    const char *wait = NULL;
    bool raw = false;
    struct cli_opt opts[] = {{"wait", 'w', &wait, NULL}, {"raw", 0, NULL, &raw}, {0}};
    char *pos[1];
    int rc;
    if (!cli_parse_args(cmd, argc, argv, opts, pos, 1, &rc))
        return rc;
    double w = 0;
    if (wait && !cli_parse_seconds(wait, &w))
        return cli_usage_error(cmd, "--wait wants seconds (a number >= 0), got \"%s\"", wait);
    AUTO_CLIENT gust_client *c = cli_open_client();
    if (!c)
        return EXIT_USAGE;
    /* The server waits at most 600 s per request: longer waits take several. */
    uint64_t end = mono_ns() + (uint64_t)(w * 1e9);
    gust_error e;
    for (;;) {
        double left = (double)(end > mono_ns() ? end - mono_ns() : 0) / 1e9;
        double step = left > 600 ? 600 : left;
        AUTO_FREE void *out = NULL;
        size_t out_len;
        int done = 0;
        if (gust_result(c, pos[0], step, &out, &out_len, &done, &e) < 0)
            return report_call(c, &e);
        if (done) {
            print_output(pos[0], out, out_len, raw);
            return EXIT_OK;
        }
        if (left <= 600)
            break;
    }
    e.kind = GUST_ERR_PENDING;
    if (!e.call_id[0])
        snprintf(e.call_id, sizeof e.call_id, "%s", pos[0]);
    return report_call(c, &e);
}

/* ---------- map ---------- */

struct map_state {
    size_t total, done, failed;
    uint64_t start_ns, last_progress_ns;
    bool tty;
    bool raw; /* --raw: outputs as bytes even when they are a Python function's JSON */
};

/* Progress on stderr: redrawn in place at most every 0.1 s on a terminal, else a
 * line every 5 s; always when final. */
static void map_progress(struct map_state *m, bool final)
{
    uint64_t now = mono_ns();
    uint64_t every = m->tty ? 100000000ull : 5000000000ull;
    if (!final && now - m->last_progress_ns < every)
        return;
    m->last_progress_ns = now;
    double secs = (double)(now - m->start_ns) / 1e9;
    double rate = secs > 0 ? (double)m->done / secs : 0;
    fprintf(stderr, "%smap: %zu/%zu done, %zu failed, %.0f/s%s", m->tty ? "\r" : "", m->done, m->total, m->failed,
            rate, m->tty ? (final ? "\033[K\n" : "\033[K") : "\n");
}

/* gust_map's callback: one JSON line a result. */
static int map_cb(void *ud, size_t index, const char *call_id, const char *status, const void *out, size_t out_len,
                  const char *err_code, const char *err_message)
{
    struct map_state *m = ud;
    m->done++;
    bool ok = !strcmp(status, "succeeded");
    if (!ok)
        m->failed++;
    json_t *o AUTO_JSON =
        json_pack("{s:I, s:s, s:s}", "index", (json_int_t)index, "call_id", call_id, "status", status);
    const char *res;
    size_t res_len;
    if (ok && !m->raw && gust_py_json_output(out, out_len, &res, &res_len)) {
        print_json_with_result(o, res, res_len);
    } else {
        if (ok)
            json_set_output(o, out, out_len);
        else
            json_object_set_new(o, "error",
                                error_json(err_code ? err_code : "unknown", err_message ? err_message : ""));
        cli_print_json(o);
    }
    map_progress(m, false);
    return 0;
}

/* The number of lines of in that are not blank (the inputs map will send). */
static size_t count_inputs(const struct buf *in)
{
    size_t total = 0;
    for (size_t i = 0; i < in->len;) {
        const char *nl = memchr(in->data + i, '\n', in->len - i);
        size_t end = nl ? (size_t)(nl - in->data) : in->len;
        for (size_t k = i; k < end; k++)
            if (in->data[k] != ' ' && in->data[k] != '\t' && in->data[k] != '\r') {
                total++;
                break;
            }
        i = end + 1;
    }
    return total;
}

int cmd_map(const struct cli_cmd *cmd, int argc, char **argv)
{
    bool ordered = false;
    const char *input = NULL;
    struct py_opts po = {0};
    struct cli_opt opts[] = {{"ordered", 0, NULL, &ordered},
                             {"input", 'i', &input, NULL},
                             {"args", 0, NULL, &po.args},
                             {"raw", 0, NULL, &po.raw},
                             {0}};
    struct cli_target t;
    int rc;
    if (!cli_parse_target_args(cmd, argc, argv, opts, &t, &rc))
        return rc;
    if (!input && isatty(STDIN_FILENO))
        return cli_usage_error(cmd, "give the inputs on stdin (one JSON value a line) or with --input FILE");
    AUTO_BUF struct buf in = {0};
    if (!cli_read_input_file(input ? input : "-", &in))
        return EXIT_USAGE;
    struct map_state m = {.tty = isatty(STDERR_FILENO), .total = count_inputs(&in), .raw = po.raw};
    AUTO_CLIENT gust_client *c = cli_open_client();
    if (!c)
        return EXIT_USAGE;
    bool py;
    if ((rc = python_target(cmd, c, &t, &po, &py)) != EXIT_OK)
        return rc;
    if (py) {
        /* Each line becomes its tagged input, as {"b64": ...} (it starts with a NUL). */
        AUTO_BUF struct buf tagged = {0};
        struct gerr err;
        if (gust_py_map_inputs(in.data, in.len, po.args ? GUST_PY_SPREAD : GUST_PY_ONE_ARG, &tagged, &err) < 0)
            return cli_usage_error(cmd, "%s.%s is a Python function, which takes JSON: %s", t.app, t.fn, err.msg);
        buf_free(&in);
        in = tagged;
        tagged = (struct buf){0};
    }
    m.start_ns = mono_ns();
    m.last_progress_ns = m.start_ns;
    gust_error e;
    int r = gust_map(c, t.app, t.fn, in.data, in.len, ordered, map_cb, &m, &e);
    fflush(stdout);
    map_progress(&m, true);
    if (r < 0)
        return cli_report(&e);
    return m.failed ? EXIT_FAILED : EXIT_OK;
}

/* ---------- gust calls APP.FN: recent calls and their timelines ---------- */

static const char *const CALLS_TITLES[] = {"ID", "STATUS", "QUEUED", "START", "RUN", "TOTAL", "CONTAINER", "COLD"};

/* A duration in µs as "850us", "12.3ms" or "1.52s"; "-" when not a number. */
static char *us_cell(json_t *v)
{
    if (!json_is_number(v))
        return xstrdup("-");
    double us = json_number_value(v);
    if (us < 1000)
        return xasprintf("%.0fus", us);
    if (us < 1e6)
        return xasprintf("%.1fms", us / 1e3);
    return xasprintf("%.2fs", us / 1e6);
}

int cmd_calls(const struct cli_cmd *cmd, int argc, char **argv)
{
    const char *limit = "20";
    struct cli_opt opts[] = {{"limit", 'n', &limit, NULL}, {0}};
    struct cli_target t;
    int rc;
    if (!cli_parse_target_args(cmd, argc, argv, opts, &t, &rc))
        return rc;
    int64_t n;
    if (parse_i64(limit, 1, 1000, &n) < 0)
        return cli_usage_error(cmd, "--limit wants a count 1..1000, got \"%s\"", limit);
    AUTO_CLIENT gust_client *c = cli_open_client();
    if (!c)
        return EXIT_USAGE;
    json_t *j AUTO_JSON = cli_api_json(c, &rc, "GET", NULL, "/v1/functions/%s/%s/calls?limit=%s", t.app, t.fn, limit);
    if (!j)
        return rc;
    struct table tb = table_new(CALLS_TITLES, ARRAY_LEN(CALLS_TITLES));
    size_t i;
    json_t *call;
    json_array_foreach(json_object_get(j, "calls"), i, call)
    {
        json_t *tl = json_object_get(call, "timeline");
        json_t *atts = json_object_get(tl, "attempts");
        json_t *last = json_array_get(atts, json_array_size(atts) ? json_array_size(atts) - 1 : 0);
        json_t *ctr = json_object_get(last, "container");
        json_t *cs = json_object_get(tl, "container_start");
        json_t *start AUTO_JSON = NULL;
        if (json_is_object(cs))
            start = json_real(json_number_value(json_object_get(cs, "ready_us")) -
                              json_number_value(json_object_get(cs, "started_us")));
        char *row[] = {cell_field(call, "call_id"),
                       cell_field(call, "status"),
                       us_cell(json_object_get(tl, "queued_us")),
                       us_cell(start),
                       us_cell(json_object_get(tl, "running_us")),
                       us_cell(json_object_get(tl, "elapsed_us")),
                       cell_field(ctr, "id"),
                       cell_field(ctr, "cold")};
        table_add(&tb, row);
    }
    table_print(&tb, "no calls");
    return EXIT_OK;
}
