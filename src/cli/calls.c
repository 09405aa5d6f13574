/* Calls: gust call, spawn, result, cancel (its printer) and map. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/util.h"
#include "cli/cli.h"
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

/* Prints a finished call's output: raw bytes, or a JSON object with --json. */
static void print_output(const char *call_id, const void *out, size_t len)
{
    if (!cli_opts.json) {
        fflush(stdout);
        write_full(STDOUT_FILENO, out, len);
        return;
    }
    json_t *o = json_pack("{s:s, s:s}", "call_id", call_id, "status", "succeeded");
    json_set_output(o, out, len);
    cli_print_json(o);
    json_decref(o);
}

/* Reports a call failure; with --json also prints it as a JSON object on stdout. */
static int report_call(const gust_error *e)
{
    if (cli_opts.json && (e->kind == GUST_ERR_FUNCTION || e->kind == GUST_ERR_PENDING)) {
        json_t *o = json_pack("{s:s, s:s}", "call_id", e->call_id, "status",
                              e->status[0] ? e->status : e->kind == GUST_ERR_PENDING ? "running" : "failed");
        if (e->kind == GUST_ERR_FUNCTION)
            json_object_set_new(o, "error", json_pack("{s:s, s:s}", "code", e->code, "message", e->message));
        cli_print_json(o);
        json_decref(o);
        if (e->kind == GUST_ERR_PENDING) {
            cli_print_pending(e);
            return EXIT_TIMEOUT;
        }
        fprintf(stderr, "error: call %s failed (%s): %s\n", e->call_id, e->code, e->message);
        return EXIT_FAILED;
    }
    return cli_report(e);
}

int cmd_call(const struct cli_cmd *cmd, int argc, char **argv)
{
    const char *data = NULL, *timeout = NULL;
    struct cli_opt opts[] = {{"data", 'd', &data, NULL}, {"timeout", 't', &timeout, NULL}, {0}};
    struct cli_target t;
    int rc;
    if (!cli_parse_target_args(cmd, argc, argv, opts, &t, &rc))
        return rc;
    double secs = -1;
    if (timeout && !cli_parse_seconds(timeout, &secs))
        return cli_usage_error(cmd, "--timeout wants seconds (a number >= 0), got \"%s\"", timeout);
    AUTO_BUF struct buf in = {0};
    AUTO_CLIENT gust_client *c = open_with_input(data, &in, &rc);
    if (!c)
        return rc;
    AUTO_FREE void *out = NULL;
    size_t out_len;
    char id[64];
    gust_error e;
    if (gust_call(c, t.app, t.fn, in.data, in.len, secs, &out, &out_len, id, &e) < 0)
        return report_call(&e);
    print_output(id, out, out_len);
    return EXIT_OK;
}

int cmd_spawn(const struct cli_cmd *cmd, int argc, char **argv)
{
    const char *data = NULL;
    struct cli_opt opts[] = {{"data", 'd', &data, NULL}, {0}};
    struct cli_target t;
    int rc;
    if (!cli_parse_target_args(cmd, argc, argv, opts, &t, &rc))
        return rc;
    AUTO_BUF struct buf in = {0};
    AUTO_CLIENT gust_client *c = open_with_input(data, &in, &rc);
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
    struct cli_opt opts[] = {{"wait", 'w', &wait, NULL}, {0}};
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
            return report_call(&e);
        if (done) {
            print_output(pos[0], out, out_len);
            return EXIT_OK;
        }
        if (left <= 600)
            break;
    }
    e.kind = GUST_ERR_PENDING;
    if (!e.call_id[0])
        snprintf(e.call_id, sizeof e.call_id, "%s", pos[0]);
    return report_call(&e);
}

/* ---------- map ---------- */

struct map_state {
    size_t total, done, failed;
    uint64_t start_ns, last_progress_ns;
    bool tty;
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
    json_t *o = json_pack("{s:I, s:s, s:s}", "index", (json_int_t)index, "call_id", call_id, "status", status);
    if (ok)
        json_set_output(o, out, out_len);
    else
        json_object_set_new(o, "error", json_pack("{s:s, s:s}", "code", err_code ? err_code : "unknown", "message",
                                                  err_message ? err_message : ""));
    cli_print_json(o);
    json_decref(o);
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
    struct cli_opt opts[] = {{"ordered", 0, NULL, &ordered}, {"input", 'i', &input, NULL}, {0}};
    struct cli_target t;
    int rc;
    if (!cli_parse_target_args(cmd, argc, argv, opts, &t, &rc))
        return rc;
    if (!input && isatty(STDIN_FILENO))
        return cli_usage_error(cmd, "give the inputs on stdin (one JSON value a line) or with --input FILE");
    AUTO_BUF struct buf in = {0};
    if (!cli_read_input_file(input ? input : "-", &in))
        return EXIT_USAGE;
    struct map_state m = {.tty = isatty(STDERR_FILENO), .total = count_inputs(&in)};
    AUTO_CLIENT gust_client *c = cli_open_client();
    if (!c)
        return EXIT_USAGE;
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
