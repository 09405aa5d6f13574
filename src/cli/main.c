/* gust: the command-line client of gustd, built on libgust (include/gust.h).
 * docs/CLI.md documents the commands, their output and the exit codes. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/util.h"
#include "gust.h"

/* Exit codes (docs/CLI.md). */
enum {
    EXIT_OK = 0,
    EXIT_FAILED = 1,  /* the function failed */
    EXIT_USAGE = 2,   /* bad command line */
    EXIT_API = 3,     /* gustd refused the request (4xx, 503) */
    EXIT_CONNECT = 4, /* cannot reach gustd / broken connection */
    EXIT_TIMEOUT = 5, /* the call is still going after the wait */
};

#define CLI_MAX_INPUT (1024u * 1024u * 1024u)

/* Global options, valid before or after the command. */
static struct {
    const char *addr;
    bool json;
} g;

/* ---------- commands table and usage ---------- */

struct cmd {
    const char *name;
    const char *usage; /* synopsis line(s) after "gust " */
    const char *help;  /* description and options */
    int (*run)(const struct cmd *cmd, int argc, char **argv);
};

static const char GLOBAL_HELP[] = "Global options:\n"
                                  "  --addr HOST:PORT  gustd address (default $GUST_ADDR, else 127.0.0.1:8470)\n"
                                  "  --json            print the API's JSON answers as they are\n"
                                  "  --help            show help\n";

static void print_usage(FILE *f, const struct cmd *c)
{
    fprintf(f, "usage: gust %s\n\n%s\n%s", c->usage, c->help, GLOBAL_HELP);
}

/* Reports a usage error for c; returns EXIT_USAGE. */
static int usage_error(const struct cmd *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const struct cmd *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "gust %s: ", c->name);
    vfprintf(stderr, fmt, ap);
    fputs("\n\n", stderr);
    va_end(ap);
    print_usage(stderr, c);
    return EXIT_USAGE;
}

/* ---------- option parsing ---------- */

struct opt {
    const char *name;  /* long name without "--" */
    char short_name;   /* or 0 */
    const char **val;  /* option with an argument */
    bool *flag;        /* flag without one */
};

/* Parses argv[1..argc) (argv[0] is the command name) into options and positionals.
 * Global options are accepted anywhere. Returns 0, 1 if --help was shown, or
 * EXIT_USAGE after reporting the problem; *npos gets the positional count, which
 * must lie in [min_pos, max_pos]. */
static int parse_opts(const struct cmd *c, int argc, char **argv, const struct opt *opts, char **pos, int min_pos,
                      int max_pos, int *npos)
{
    *npos = 0;
    bool only_pos = false;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (only_pos || a[0] != '-' || !a[1]) {
            if (*npos >= max_pos)
                return usage_error(c, "unexpected argument \"%s\"", a);
            pos[(*npos)++] = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            only_pos = true;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            print_usage(stdout, c);
            return 1;
        }
        const char *name = NULL, *inline_val = NULL;
        char shrt = 0;
        char namebuf[64];
        if (a[1] == '-') {
            const char *eq = strchr(a + 2, '=');
            size_t n = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
            if (n >= sizeof namebuf)
                return usage_error(c, "unknown option \"%s\"", a);
            memcpy(namebuf, a + 2, n);
            namebuf[n] = '\0';
            name = namebuf;
            inline_val = eq ? eq + 1 : NULL;
        } else {
            shrt = a[1];
            inline_val = a[2] ? a + 2 : NULL;
        }
        if (name && !strcmp(name, "json")) {
            g.json = true;
            continue;
        }
        if (name && !strcmp(name, "addr")) {
            if (inline_val) {
                g.addr = inline_val;
            } else {
                if (i + 1 >= argc)
                    return usage_error(c, "--addr needs a value (HOST:PORT)");
                g.addr = argv[++i];
            }
            continue;
        }
        const struct opt *o = NULL;
        for (const struct opt *p = opts; p && (p->name || p->short_name); p++)
            if ((name && p->name && !strcmp(name, p->name)) || (shrt && p->short_name == shrt))
                o = p;
        if (!o)
            return usage_error(c, "unknown option \"%s\"", a);
        if (o->flag) {
            if (inline_val)
                return usage_error(c, "option \"%s\" takes no value", a);
            *o->flag = true;
            continue;
        }
        if (inline_val) {
            *o->val = inline_val;
        } else {
            if (i + 1 >= argc)
                return usage_error(c, "option \"%s\" needs a value", a);
            *o->val = argv[++i];
        }
    }
    if (*npos < min_pos)
        return usage_error(c, "missing argument%s", min_pos - *npos > 1 ? "s" : "");
    return 0;
}

/* Parses a non-negative number of seconds. */
static bool parse_seconds(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < 0)
        return false;
    *out = v;
    return true;
}

/* Splits "APP.FN" into app and fn (pointing into a copy kept in buf). */
static bool parse_target(const char *s, char *buf, size_t cap, const char **app, const char **fn)
{
    if (strlen(s) >= cap)
        return false;
    strcpy(buf, s);
    char *dot = strchr(buf, '.');
    if (!dot || dot == buf || !dot[1] || strchr(dot + 1, '.'))
        return false;
    *dot = '\0';
    *app = buf;
    *fn = dot + 1;
    return true;
}

/* Appends s percent-encoded as a path segment. */
static int path_seg(struct buf *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int r = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                        *p == '_' || *p == '.' || *p == '~'
                    ? buf_append(b, p, 1)
                    : buf_printf(b, "%%%02X", *p);
        if (r < 0)
            return r;
    }
    return 0;
}

/* ---------- input ---------- */

/* Reads all of fd into b. Returns 0 or -errno. */
static int read_fd_all(int fd, struct buf *b)
{
    for (;;) {
        if (buf_reserve(b, 65536) < 0)
            return -ENOMEM;
        ssize_t n = read(fd, b->data + b->len, 65536);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return 0;
        b->len += (size_t)n;
        b->data[b->len] = '\0';
        if (b->len > CLI_MAX_INPUT)
            return -EFBIG;
    }
}

/* Reads a file ("-" = stdin) into b; on failure prints why and returns false. */
static bool read_input_file(const char *path, struct buf *b)
{
    int r;
    if (!strcmp(path, "-")) {
        r = read_fd_all(STDIN_FILENO, b);
    } else {
        AUTO_FD int fd = open(path, O_RDONLY | O_CLOEXEC);
        r = fd < 0 ? -errno : read_fd_all(fd, b);
    }
    if (r < 0) {
        fprintf(stderr, "gust: cannot read %s: %s\n", strcmp(path, "-") ? path : "stdin", strerror(-r));
        return false;
    }
    return true;
}

/* The call input: -d DATA, -d @FILE, -d @- or (without -d) stdin unless it is a
 * terminal. Returns 0 or EXIT_USAGE. */
static int read_call_input(const char *data, struct buf *b)
{
    if (data && data[0] == '@')
        return read_input_file(data + 1, b) ? 0 : EXIT_USAGE;
    if (data)
        return buf_append_str(b, data) < 0 ? EXIT_USAGE : 0;
    if (isatty(STDIN_FILENO))
        return 0;
    return read_input_file("-", b) ? 0 : EXIT_USAGE;
}

/* ---------- errors and output ---------- */

static gust_client *open_client(void)
{
    gust_client *c = gust_client_new(g.addr);
    if (!c)
        fprintf(stderr, "gust: invalid gustd address \"%s\" (want HOST:PORT)\n",
                g.addr ? g.addr : getenv("GUST_ADDR") ? getenv("GUST_ADDR") : "");
    return c;
}

static void cleanup_clientp(gust_client **c)
{
    gust_client_free(*c);
}
#define AUTO_CLIENT __attribute__((cleanup(cleanup_clientp)))

/* Prints e and returns the exit code for it. */
static int report(const gust_error *e)
{
    switch (e->kind) {
    case GUST_ERR_CONNECT:
        fprintf(stderr, "%s \xe2\x80\x94 is it running? start it with `gustd` or `make run`\n", e->message);
        return EXIT_CONNECT;
    case GUST_ERR_TRANSPORT:
        fprintf(stderr, "error: %s\n", e->message);
        return EXIT_CONNECT;
    case GUST_ERR_TIMEOUT:
        fprintf(stderr, "error: %s\n", e->message);
        return EXIT_TIMEOUT;
    case GUST_ERR_PENDING:
        fprintf(stderr, "call %s is still %s; fetch it later with `gust result %s`\n", e->call_id,
                e->status[0] ? e->status : "running", e->call_id);
        printf("%s\n", e->call_id);
        return EXIT_TIMEOUT;
    case GUST_ERR_FUNCTION:
        fprintf(stderr, "error: call %s %s (%s): %s\n", e->call_id[0] ? e->call_id : "", e->status[0] ? e->status : "failed",
                e->code, e->message);
        return EXIT_FAILED;
    case GUST_ERR_API:
        fprintf(stderr, "error: %s\n", e->message);
        if (e->field[0])
            fprintf(stderr, "  field: %s\n", e->field);
        return EXIT_API;
    case GUST_ERR_ARG:
    case GUST_ERR_NONE:
        break;
    }
    fprintf(stderr, "error: %s\n", e->message);
    return EXIT_USAGE;
}

/* Prints a JSON value compactly with a newline. */
static void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (s) {
        puts(s);
        free(s);
    }
}

/* Adds "output" (valid UTF-8) or "output_b64" to o. */
static void json_set_output(json_t *o, const void *out, size_t len)
{
    if (utf8_valid(out, len)) {
        json_object_set_new(o, "output", json_stringn(out, len));
        return;
    }
    char *b64 = NULL;
    size_t n;
    if (base64_encode(out, len, &b64, &n) == 0)
        json_object_set_new(o, "output_b64", json_stringn(b64, n));
    free(b64);
}

/* Writes raw bytes to stdout. */
static void write_stdout(const void *data, size_t len)
{
    fflush(stdout);
    write_full(STDOUT_FILENO, data, len);
}

/* Runs a GET and parses the JSON answer; with --json prints it raw and returns
 * NULL with *rc = EXIT_OK. Failures print and set *rc. */
static json_t *get_json(gust_client *c, const char *path, int *rc)
{
    int status;
    AUTO_FREE char *body = NULL;
    size_t len;
    gust_error e;
    if (gust_request(c, "GET", path, NULL, NULL, 0, &status, &body, &len, &e) < 0) {
        *rc = report(&e);
        return NULL;
    }
    if (g.json) {
        fwrite(body, 1, len, stdout);
        if (!len || body[len - 1] != '\n')
            putchar('\n');
        *rc = EXIT_OK;
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(body, len, 0, &je);
    if (!j) {
        fprintf(stderr, "error: gustd sent malformed JSON for %s: %s\n", path, je.text);
        *rc = EXIT_CONNECT;
    }
    return j;
}

/* ---------- tables ---------- */

#define TABLE_MAX_COLS 16

struct table {
    size_t ncols;
    size_t nrows;
    char **cells; /* nrows * ncols malloc'd strings (NULL prints as "") */
};

/* Appends a row of ncols cells, taking ownership of the malloc'd strings. */
static void table_add(struct table *t, char **row)
{
    char **cells = realloc(t->cells, (t->nrows + 1) * t->ncols * sizeof *cells);
    if (!cells) {
        for (size_t i = 0; i < t->ncols; i++)
            free(row[i]);
        return;
    }
    t->cells = cells;
    memcpy(t->cells + t->nrows * t->ncols, row, t->ncols * sizeof *row);
    t->nrows++;
}

/* Frees t's cells without printing. */
static void table_free(struct table *t)
{
    for (size_t k = 0; k < t->nrows * t->ncols; k++)
        free(t->cells[k]);
    free(t->cells);
    t->cells = NULL;
    t->nrows = 0;
}

/* Prints aligned columns (two spaces apart; the last column unpadded) and frees t. */
static void table_print(struct table *t)
{
    size_t w[TABLE_MAX_COLS] = {0};
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t i = 0; i < t->ncols; i++) {
            const char *s = t->cells[r * t->ncols + i];
            size_t n = s ? strlen(s) : 0;
            if (n > w[i])
                w[i] = n;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t i = 0; i < t->ncols; i++) {
            const char *s = t->cells[r * t->ncols + i];
            if (i + 1 < t->ncols)
                printf("%-*s  ", (int)w[i], s ? s : "");
            else
                printf("%s\n", s ? s : "");
        }
    }
    table_free(t);
}

/* A malloc'd printf string for a table cell. */
static char *fmt_cell(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *fmt_cell(const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

/* A JSON scalar formatted for a table cell (malloc'd); null/missing is "-". */
static char *jcell(json_t *v)
{
    if (json_is_string(v))
        return strdup(json_string_value(v));
    if (json_is_integer(v))
        return fmt_cell("%lld", (long long)json_integer_value(v));
    if (json_is_real(v))
        return fmt_cell("%.4g", json_real_value(v));
    if (json_is_true(v))
        return strdup("yes");
    if (json_is_false(v))
        return strdup("no");
    if (!v || json_is_null(v))
        return strdup("-");
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

/* "12s", "5m", "3h", "2d" since the UNIX time in v (a number), else jcell(v). */
static char *age_cell(json_t *v)
{
    if (!json_is_number(v) || json_number_value(v) <= 0)
        return jcell(v);
    double d = wall_s() - json_number_value(v);
    if (d < 0)
        d = 0;
    if (d < 120)
        return fmt_cell("%.0fs", d);
    if (d < 7200)
        return fmt_cell("%.0fm", d / 60);
    if (d < 172800)
        return fmt_cell("%.0fh", d / 3600);
    return fmt_cell("%.0fd", d / 86400);
}

/* ---------- commands ---------- */

static int cmd_health(const struct cmd *cmd, int argc, char **argv)
{
    char *pos[1];
    int n, r = parse_opts(cmd, argc, argv, NULL, pos, 0, 0, &n);
    if (r)
        return r == 1 ? EXIT_OK : r;
    AUTO_CLIENT gust_client *c = open_client();
    if (!c)
        return EXIT_USAGE;
    int rc = EXIT_OK;
    json_t *j = get_json(c, "/v1/health", &rc);
    if (!j)
        return rc;
    const char *ver = json_string_value(json_object_get(j, "version"));
    printf("gustd %s at %s: %s\n", ver ? ver : "?", gust_client_addr(c),
           json_is_true(json_object_get(j, "ok")) ? "ok" : "NOT ok");
    json_t *w = json_object_get(j, "worker");
    const char *k;
    json_t *v;
    json_object_foreach(w, k, v)
    {
        AUTO_FREE char *txt = jcell(v);
        printf("  %s: %s\n", k, txt ? txt : "?");
    }
    json_decref(j);
    return EXIT_OK;
}

static int cmd_deploy(const struct cmd *cmd, int argc, char **argv)
{
    char *pos[1];
    int n, r = parse_opts(cmd, argc, argv, NULL, pos, 1, 1, &n);
    if (r)
        return r == 1 ? EXIT_OK : r;
    AUTO_BUF struct buf spec = {0};
    if (!read_input_file(pos[0], &spec))
        return EXIT_USAGE;
    const char *fmt = NULL, *dot = strrchr(pos[0], '.');
    if (dot && !strcmp(dot, ".json"))
        fmt = "json";
    else if (dot && !strcmp(dot, ".toml"))
        fmt = "toml";
    if (!spec.len) {
        fprintf(stderr, "error: %s is empty\n", pos[0]);
        return EXIT_USAGE;
    }
    AUTO_CLIENT gust_client *c = open_client();
    if (!c)
        return EXIT_USAGE;
    AUTO_FREE char *resp = NULL;
    gust_error e;
    if (gust_deploy(c, spec.data, spec.len, fmt, &resp, &e) < 0)
        return report(&e);
    if (g.json) {
        printf("%s\n", resp);
        return EXIT_OK;
    }
    json_t *j = json_loads(resp, 0, NULL);
    const char *app = json_string_value(json_object_get(j, "app"));
    printf("deployed app %s\n", app ? app : "?");
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(j, "functions"), i, f)
    {
        const char *name = json_string_value(json_object_get(f, "name"));
        printf("  %s.%s  version %lld\n", app ? app : "?", name ? name : "?",
               (long long)json_integer_value(json_object_get(f, "version")));
    }
    json_decref(j);
    return EXIT_OK;
}

/* Prints a finished call's output: raw bytes, or a JSON object with --json. */
static void print_output(const char *call_id, const void *out, size_t len)
{
    if (!g.json) {
        write_stdout(out, len);
        return;
    }
    json_t *o = json_pack("{s:s, s:s}", "call_id", call_id, "status", "succeeded");
    json_set_output(o, out, len);
    print_json(o);
    json_decref(o);
}

/* Reports a call failure; with --json also prints it as a JSON object on stdout. */
static int report_call(const gust_error *e)
{
    if (g.json && (e->kind == GUST_ERR_FUNCTION || e->kind == GUST_ERR_PENDING)) {
        json_t *o = json_pack("{s:s, s:s}", "call_id", e->call_id, "status",
                              e->status[0] ? e->status : e->kind == GUST_ERR_PENDING ? "running" : "failed");
        if (e->kind == GUST_ERR_FUNCTION)
            json_object_set_new(o, "error", json_pack("{s:s, s:s}", "code", e->code, "message", e->message));
        print_json(o);
        json_decref(o);
        if (e->kind == GUST_ERR_PENDING) {
            fprintf(stderr, "call %s is still %s; fetch it later with `gust result %s`\n", e->call_id,
                    e->status[0] ? e->status : "running", e->call_id);
            return EXIT_TIMEOUT;
        }
        fprintf(stderr, "error: call %s failed (%s): %s\n", e->call_id, e->code, e->message);
        return EXIT_FAILED;
    }
    return report(e);
}

static int cmd_call(const struct cmd *cmd, int argc, char **argv)
{
    const char *data = NULL, *timeout = NULL;
    struct opt opts[] = {{"data", 'd', &data, NULL}, {"timeout", 't', &timeout, NULL}, {0}};
    char *pos[1];
    int n, r = parse_opts(cmd, argc, argv, opts, pos, 1, 1, &n);
    if (r)
        return r == 1 ? EXIT_OK : r;
    char tbuf[256];
    const char *app, *fn;
    if (!parse_target(pos[0], tbuf, sizeof tbuf, &app, &fn))
        return usage_error(cmd, "\"%s\" is not APP.FN", pos[0]);
    double t = -1;
    if (timeout && !parse_seconds(timeout, &t))
        return usage_error(cmd, "--timeout wants seconds (a number >= 0), got \"%s\"", timeout);
    AUTO_BUF struct buf in = {0};
    if ((r = read_call_input(data, &in)))
        return r;
    AUTO_CLIENT gust_client *c = open_client();
    if (!c)
        return EXIT_USAGE;
    AUTO_FREE void *out = NULL;
    size_t out_len;
    char id[64];
    gust_error e;
    if (gust_call(c, app, fn, in.data, in.len, t, &out, &out_len, id, &e) < 0)
        return report_call(&e);
    print_output(id, out, out_len);
    return EXIT_OK;
}

static int cmd_spawn(const struct cmd *cmd, int argc, char **argv)
{
    const char *data = NULL;
    struct opt opts[] = {{"data", 'd', &data, NULL}, {0}};
    char *pos[1];
    int n, r = parse_opts(cmd, argc, argv, opts, pos, 1, 1, &n);
    if (r)
        return r == 1 ? EXIT_OK : r;
    char tbuf[256];
    const char *app, *fn;
    if (!parse_target(pos[0], tbuf, sizeof tbuf, &app, &fn))
        return usage_error(cmd, "\"%s\" is not APP.FN", pos[0]);
    AUTO_BUF struct buf in = {0};
    if ((r = read_call_input(data, &in)))
        return r;
    AUTO_CLIENT gust_client *c = open_client();
    if (!c)
        return EXIT_USAGE;
    char id[64];
    gust_error e;
    if (gust_spawn(c, app, fn, in.data, in.len, id, &e) < 0)
        return report(&e);
    if (g.json)
        printf("{\"call_id\":\"%s\",\"status\":\"pending\"}\n", id);
    else
        printf("%s\n", id);
    return EXIT_OK;
}

static int cmd_result(const struct cmd *cmd, int argc, char **argv)
{
    const char *wait = NULL;
    struct opt opts[] = {{"wait", 'w', &wait, NULL}, {0}};
    char *pos[1];
    int n, r = parse_opts(cmd, argc, argv, opts, pos, 1, 1, &n);
    if (r)
        return r == 1 ? EXIT_OK : r;
    double w = 0;
    if (wait && !parse_seconds(wait, &w))
        return usage_error(cmd, "--wait wants seconds (a number >= 0), got \"%s\"", wait);
    AUTO_CLIENT gust_client *c = open_client();
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

static int cmd_cancel(const struct cmd *cmd, int argc, char **argv)
{
    char *pos[1];
    int n, r = parse_opts(cmd, argc, argv, NULL, pos, 1, 1, &n);
    if (r)
        return r == 1 ? EXIT_OK : r;
    AUTO_CLIENT gust_client *c = open_client();
    if (!c)
        return EXIT_USAGE;
    AUTO_BUF struct buf path = {0};
    buf_append_str(&path, "/v1/calls/");
    path_seg(&path, pos[0]);
    buf_append_str(&path, "/cancel");
    int status;
    AUTO_FREE char *body = NULL;
    size_t len;
    gust_error e;
    if (gust_request(c, "POST", path.data, NULL, NULL, 0, &status, &body, &len, &e) < 0)
        return report(&e);
    if (g.json) {
        printf("%s\n", body);
        return EXIT_OK;
    }
    json_t *j = json_loadb(body, len, 0, NULL);
    const char *st = json_string_value(json_object_get(j, "status"));
    printf("%s: %s\n", pos[0], st ? st : "cancelled");
    json_decref(j);
    return EXIT_OK;
}

/* ---------- map ---------- */

struct map_state {
    size_t total, done, failed;
    uint64_t start_ns, last_progress_ns;
    bool tty;
};

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
    print_json(o);
    json_decref(o);
    map_progress(m, false);
    return 0;
}

static int cmd_map(const struct cmd *cmd, int argc, char **argv)
{
    bool ordered = false;
    const char *input = NULL;
    struct opt opts[] = {{"ordered", 0, NULL, &ordered}, {"input", 'i', &input, NULL}, {0}};
    char *pos[1];
    int n, r = parse_opts(cmd, argc, argv, opts, pos, 1, 1, &n);
    if (r)
        return r == 1 ? EXIT_OK : r;
    char tbuf[256];
    const char *app, *fn;
    if (!parse_target(pos[0], tbuf, sizeof tbuf, &app, &fn))
        return usage_error(cmd, "\"%s\" is not APP.FN", pos[0]);
    if (!input && isatty(STDIN_FILENO))
        return usage_error(cmd, "give the inputs on stdin (one JSON value a line) or with --input FILE");
    AUTO_BUF struct buf in = {0};
    if (!read_input_file(input ? input : "-", &in))
        return EXIT_USAGE;
    struct map_state m = {.tty = isatty(STDERR_FILENO)};
    for (size_t i = 0; i < in.len;) {
        const char *nl = memchr(in.data + i, '\n', in.len - i);
        size_t end = nl ? (size_t)(nl - in.data) : in.len;
        for (size_t k = i; k < end; k++)
            if (in.data[k] != ' ' && in.data[k] != '\t' && in.data[k] != '\r') {
                m.total++;
                break;
            }
        i = end + 1;
    }
    AUTO_CLIENT gust_client *c = open_client();
    if (!c)
        return EXIT_USAGE;
    m.start_ns = mono_ns();
    m.last_progress_ns = m.start_ns;
    gust_error e;
    r = gust_map(c, app, fn, in.data, in.len, ordered, map_cb, &m, &e);
    fflush(stdout);
    map_progress(&m, true);
    if (r < 0)
        return report(&e);
    return m.failed ? EXIT_FAILED : EXIT_OK;
}

/* ---------- listings ---------- */

/* "3 (1 busy, 2 idle)" from {"starting", "idle", "busy"}. */
static char *containers_cell(json_t *cs)
{
    long long st = json_integer_value(json_object_get(cs, "starting"));
    long long id = json_integer_value(json_object_get(cs, "idle"));
    long long bz = json_integer_value(json_object_get(cs, "busy"));
    if (st + id + bz == 0)
        return strdup("0");
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

/* Parses a command with no options and no positionals; opens the client. Returns
 * NULL with *rc set when the command should end. */
static gust_client *simple_start(const struct cmd *cmd, int argc, char **argv, int *rc)
{
    char *pos[1];
    int n, r = parse_opts(cmd, argc, argv, NULL, pos, 0, 0, &n);
    if (r) {
        *rc = r == 1 ? EXIT_OK : r;
        return NULL;
    }
    gust_client *c = open_client();
    *rc = EXIT_USAGE;
    return c;
}

static int cmd_ls(const struct cmd *cmd, int argc, char **argv)
{
    int rc;
    AUTO_CLIENT gust_client *c = simple_start(cmd, argc, argv, &rc);
    if (!c)
        return rc;
    json_t *j = get_json(c, "/v1/functions", &rc);
    if (!j)
        return rc;
    struct table t = {.ncols = 8};
    char *head[] = {strdup("APP"),     strdup("FUNCTION"),   strdup("VERSION"), strdup("IMAGE"),
                    strdup("QUEUED"),  strdup("RUNNING"),    strdup("CONTAINERS"), strdup("WAITING")};
    table_add(&t, head);
    size_t i;
    json_t *f;
    json_t *fns = json_object_get(j, "functions");
    json_array_foreach(fns, i, f)
    {
        json_t *wr = json_object_get(f, "waiting_reason");
        char *row[] = {jcell(json_object_get(f, "app")),    jcell(json_object_get(f, "name")),
                       jcell(json_object_get(f, "version")), jcell(json_object_get(f, "image")),
                       jcell(json_object_get(f, "queued")),  jcell(json_object_get(f, "running")),
                       containers_cell(json_object_get(f, "containers")),
                       strdup(json_is_string(wr) ? json_string_value(wr) : "")};
        table_add(&t, row);
    }
    if (json_array_size(fns))
        table_print(&t);
    else
        printf("no functions deployed (deploy an app with `gust deploy SPEC`)\n");
    table_free(&t);
    json_decref(j);
    return EXIT_OK;
}

static int cmd_ps(const struct cmd *cmd, int argc, char **argv)
{
    int rc;
    AUTO_CLIENT gust_client *c = simple_start(cmd, argc, argv, &rc);
    if (!c)
        return rc;
    json_t *j = get_json(c, "/v1/containers", &rc);
    if (!j)
        return rc;
    struct table t = {.ncols = 12};
    char *head[] = {strdup("ID"),     strdup("APP"),      strdup("FUNCTION"), strdup("VERSION"),
                    strdup("STATE"),  strdup("PID"),      strdup("IN-FLIGHT"), strdup("DONE"),
                    strdup("CPU(m)"), strdup("MEM(MiB)"), strdup("GPUS"),     strdup("AGE")};
    table_add(&t, head);
    size_t i;
    json_t *ct;
    json_t *cts = json_object_get(j, "containers");
    json_array_foreach(cts, i, ct)
    {
        struct buf gp = {0};
        size_t k;
        json_t *gv;
        json_array_foreach(json_object_get(ct, "gpus"), k, gv)
            buf_printf(&gp, "%s%s", k ? "," : "", json_is_string(gv) ? json_string_value(gv) : "?");
        char *gpus = gp.len ? buf_steal(&gp, NULL) : strdup("-");
        buf_free(&gp);
        char *row[] = {jcell(json_object_get(ct, "id")),          jcell(json_object_get(ct, "app")),
                       jcell(json_object_get(ct, "function")),    jcell(json_object_get(ct, "version")),
                       jcell(json_object_get(ct, "state")),       jcell(json_object_get(ct, "pid")),
                       jcell(json_object_get(ct, "inputs_in_flight")), jcell(json_object_get(ct, "inputs_done")),
                       jcell(json_object_get(ct, "cpu")),         jcell(json_object_get(ct, "memory")),
                       gpus,                                      age_cell(json_object_get(ct, "started_at"))};
        table_add(&t, row);
    }
    if (json_array_size(cts))
        table_print(&t);
    else
        printf("no containers running\n");
    table_free(&t);
    json_decref(j);
    return EXIT_OK;
}

static int write_log_data(void *ud, const char *data, size_t len)
{
    fwrite(data, 1, len, stdout);
    fflush(stdout);
    return ferror(stdout) ? 1 : 0;
}

static int cmd_logs(const struct cmd *cmd, int argc, char **argv)
{
    bool follow = false;
    const char *tail = NULL;
    struct opt opts[] = {{"follow", 'f', NULL, &follow}, {"tail", 'n', &tail, NULL}, {0}};
    char *pos[1];
    int n, r = parse_opts(cmd, argc, argv, opts, pos, 1, 1, &n);
    if (r)
        return r == 1 ? EXIT_OK : r;
    char tbuf[256];
    const char *app, *fn;
    if (!parse_target(pos[0], tbuf, sizeof tbuf, &app, &fn))
        return usage_error(cmd, "\"%s\" is not APP.FN", pos[0]);
    int64_t tail_n = -1;
    if (tail && parse_i64(tail, 0, 100000, &tail_n) < 0)
        return usage_error(cmd, "--tail wants a line count 0..100000, got \"%s\"", tail);
    AUTO_CLIENT gust_client *c = open_client();
    if (!c)
        return EXIT_USAGE;
    AUTO_BUF struct buf path = {0};
    buf_append_str(&path, "/v1/functions/");
    path_seg(&path, app);
    buf_append_str(&path, "/");
    path_seg(&path, fn);
    buf_append_str(&path, "/logs");
    const char *sep = "?";
    if (follow) {
        buf_append_str(&path, "?follow=1");
        sep = "&";
    }
    if (tail_n >= 0)
        buf_printf(&path, "%stail=%lld", sep, (long long)tail_n);
    gust_error e;
    r = gust_request_stream(c, "GET", path.data, NULL, NULL, 0, write_log_data, NULL, &e);
    if (r == -ECANCELED)
        return EXIT_OK; /* stdout went away */
    return r < 0 ? report(&e) : EXIT_OK;
}

static int cmd_stop(const struct cmd *cmd, int argc, char **argv)
{
    char *pos[1];
    int n, r = parse_opts(cmd, argc, argv, NULL, pos, 1, 1, &n);
    if (r)
        return r == 1 ? EXIT_OK : r;
    AUTO_CLIENT gust_client *c = open_client();
    if (!c)
        return EXIT_USAGE;
    AUTO_BUF struct buf path = {0};
    buf_append_str(&path, "/v1/apps/");
    path_seg(&path, pos[0]);
    buf_append_str(&path, "/stop");
    int status;
    AUTO_FREE char *body = NULL;
    size_t len;
    gust_error e;
    if (gust_request(c, "POST", path.data, NULL, NULL, 0, &status, &body, &len, &e) < 0)
        return report(&e);
    if (g.json)
        printf("%s\n", body);
    else
        printf("stopped app %s\n", pos[0]);
    return EXIT_OK;
}

/* Parses --since: a duration back from now ("90s", "15m", "2h", "7d") or UNIX
 * seconds (a plain number). */
static bool parse_since(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v < 0)
        return false;
    double mul = 0;
    if (!*end)
        mul = 0;
    else if (!strcmp(end, "s"))
        mul = 1;
    else if (!strcmp(end, "m"))
        mul = 60;
    else if (!strcmp(end, "h"))
        mul = 3600;
    else if (!strcmp(end, "d"))
        mul = 86400;
    else
        return false;
    *out = mul ? wall_s() - v * mul : v;
    if (*out < 0)
        *out = 0;
    return true;
}

static int cmd_usage(const struct cmd *cmd, int argc, char **argv)
{
    const char *since = NULL;
    struct opt opts[] = {{"since", 's', &since, NULL}, {0}};
    char *pos[1];
    int n, r = parse_opts(cmd, argc, argv, opts, pos, 0, 0, &n);
    if (r)
        return r == 1 ? EXIT_OK : r;
    double since_s = 0;
    if (since && !parse_since(since, &since_s))
        return usage_error(cmd, "--since wants UNIX seconds or a duration like 90s, 15m, 2h, 7d; got \"%s\"", since);
    AUTO_CLIENT gust_client *c = open_client();
    if (!c)
        return EXIT_USAGE;
    char path[96];
    if (since)
        snprintf(path, sizeof path, "/v1/usage?since=%.0f", since_s);
    else
        snprintf(path, sizeof path, "/v1/usage");
    int rc;
    json_t *j = get_json(c, path, &rc);
    if (!j)
        return rc;
    struct table t = {.ncols = 12};
    char *head[] = {strdup("APP"),      strdup("FUNCTION"),  strdup("CALLS"),     strdup("CONTAINERS"),
                    strdup("ALIVE(s)"), strdup("BUSY(s)"),   strdup("CPU(core-s)"), strdup("MEM(GiB-s)"),
                    strdup("GPU(s)"),   strdup("UTIL"),      strdup("GPU-UTIL"),  strdup("COST($)")};
    table_add(&t, head);
    size_t i, k;
    json_t *a, *f;
    json_array_foreach(json_object_get(j, "apps"), i, a)
    {
        json_array_foreach(json_object_get(a, "functions"), k, f)
        {
            json_t *u = json_object_get(f, "utilization"), *gu = json_object_get(f, "gpu_utilization");
            char *row[] = {jcell(json_object_get(a, "app")),
                           jcell(json_object_get(f, "function")),
                           jcell(json_object_get(f, "calls")),
                           jcell(json_object_get(f, "containers")),
                           fmt_cell("%.1f", json_number_value(json_object_get(f, "alive_s"))),
                           fmt_cell("%.1f", json_number_value(json_object_get(f, "busy_s"))),
                           fmt_cell("%.1f", json_number_value(json_object_get(f, "cpu_core_s"))),
                           fmt_cell("%.1f", json_number_value(json_object_get(f, "memory_gib_s"))),
                           fmt_cell("%.1f", json_number_value(json_object_get(f, "gpu_s"))),
                           json_is_number(u) ? fmt_cell("%.0f%%", json_number_value(u) * 100) : strdup("-"),
                           json_is_number(gu) ? fmt_cell("%.0f%%", json_number_value(gu) * 100) : strdup("-"),
                           fmt_cell("%.6f", json_number_value(json_object_get(f, "cost")))};
            table_add(&t, row);
        }
    }
    if (t.nrows > 1)
        table_print(&t);
    else
        printf("no usage recorded%s\n", since ? " in that period" : "");
    table_free(&t);
    printf("total cost: $%.6f\n", json_number_value(json_object_get(j, "total_cost")));
    json_decref(j);
    return EXIT_OK;
}

static int cmd_image_ls(const struct cmd *cmd, int argc, char **argv)
{
    int rc;
    AUTO_CLIENT gust_client *c = simple_start(cmd, argc, argv, &rc);
    if (!c)
        return rc;
    json_t *j = get_json(c, "/v1/images", &rc);
    if (!j)
        return rc;
    struct table t = {.ncols = 3};
    char *head[] = {strdup("NAME"), strdup("HOST-USR"), strdup("ROOTFS")};
    table_add(&t, head);
    size_t i;
    json_t *im;
    json_array_foreach(json_object_get(j, "images"), i, im)
    {
        char *row[] = {jcell(json_object_get(im, "name")), jcell(json_object_get(im, "host_usr")),
                       jcell(json_object_get(im, "rootfs"))};
        table_add(&t, row);
    }
    table_print(&t);
    json_decref(j);
    return EXIT_OK;
}

static int cmd_image_add(const struct cmd *cmd, int argc, char **argv)
{
    bool host_usr = false;
    struct opt opts[] = {{"host-usr", 0, NULL, &host_usr}, {0}};
    char *pos[2];
    int n, r = parse_opts(cmd, argc, argv, opts, pos, 2, 2, &n);
    if (r)
        return r == 1 ? EXIT_OK : r;
    AUTO_FREE char *abs = realpath(pos[1], NULL);
    if (!abs) {
        fprintf(stderr, "error: rootfs %s: %s\n", pos[1], strerror(errno));
        return EXIT_USAGE;
    }
    AUTO_CLIENT gust_client *c = open_client();
    if (!c)
        return EXIT_USAGE;
    json_t *req = json_pack("{s:s, s:s, s:b}", "name", pos[0], "rootfs", abs, "host_usr", host_usr);
    AUTO_FREE char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!body) {
        fprintf(stderr, "error: out of memory\n");
        return EXIT_USAGE;
    }
    int status;
    AUTO_FREE char *resp = NULL;
    size_t len;
    gust_error e;
    if (gust_request(c, "POST", "/v1/images", "application/json", body, strlen(body), &status, &resp, &len, &e) < 0)
        return report(&e);
    if (g.json)
        printf("%s\n", resp);
    else
        printf("added image %s (%s%s)\n", pos[0], abs, host_usr ? ", host /usr" : "");
    return EXIT_OK;
}

/* ---------- main ---------- */

static const struct cmd CMDS[] = {
    {"deploy", "deploy SPEC", "Deploys the app in SPEC (a .json or .toml file, or - for stdin; other names are\n"
                              "read as JSON if they start with '{', else TOML). Every function gets a new version.\n",
     cmd_deploy},
    {"call", "call APP.FN [-d DATA | -d @FILE | -d @-] [--timeout S]",
     "Calls APP.FN and writes its output bytes to stdout. The input is DATA, the\n"
     "contents of FILE, or stdin (when no -d is given and stdin is not a terminal).\n"
     "  -d, --data DATA     input bytes; @FILE reads a file, @- stdin\n"
     "  -t, --timeout S     wait at most S seconds; if the call is still going, print\n"
     "                      its id and exit 5 (default: wait until done)\n",
     cmd_call},
    {"spawn", "spawn APP.FN [-d DATA | -d @FILE | -d @-]",
     "Queues a call of APP.FN and prints its call id at once.\n"
     "  -d, --data DATA     input bytes; @FILE reads a file, @- stdin\n",
     cmd_spawn},
    {"result", "result ID [--wait S]",
     "Writes the output of call ID to stdout. Exits 5 if the call is still going\n"
     "after the wait, 1 if it failed.\n"
     "  -w, --wait S        wait up to S seconds for the call to finish (default 0)\n",
     cmd_result},
    {"cancel", "cancel ID", "Cancels call ID (a running input is stopped) and prints its status.\n", cmd_cancel},
    {"map", "map APP.FN [--ordered] [--input FILE] < inputs.jsonl",
     "Calls APP.FN once per input line (NDJSON: a JSON string is passed as its UTF-8\n"
     "bytes, {\"b64\": \"...\"} as the decoded bytes, other JSON as its text). Prints one\n"
     "JSON line per result as it completes, and progress on stderr. Exits 1 if any\n"
     "input failed.\n"
     "  --ordered           print results in input order\n"
     "  -i, --input FILE    read the inputs from FILE instead of stdin\n",
     cmd_map},
    {"ls", "ls", "Lists deployed functions: version, queue, running inputs, containers and why\n"
                 "queued inputs wait, if they do.\n",
     cmd_ls},
    {"ps", "ps", "Lists containers.\n", cmd_ps},
    {"logs", "logs APP.FN [-f] [--tail N]",
     "Prints the function's log lines (TIMESTAMP CONTAINER STREAM TEXT).\n"
     "  -f, --follow        keep streaming new lines (Ctrl-C to stop)\n"
     "  -n, --tail N        only the last N lines\n",
     cmd_logs},
    {"stop", "stop APP", "Stops every container of APP, cancels its pending calls and refuses new calls\n"
                         "until the next deploy.\n",
     cmd_stop},
    {"usage", "usage [--since S]",
     "Prints resource usage and cost per function.\n"
     "  -s, --since S       only usage after S: UNIX seconds, or a duration back from\n"
     "                      now such as 90s, 15m, 2h, 7d\n",
     cmd_usage},
    {"image ls", "image ls", "Lists registered images.\n", cmd_image_ls},
    {"image add", "image add NAME ROOTFS [--host-usr]",
     "Registers the directory ROOTFS as image NAME.\n"
     "  --host-usr          bind-mount the host's /usr read-only into it\n",
     cmd_image_add},
    {"health", "health", "Checks that gustd answers and prints its version and worker capacity.\n", cmd_health},
};

static void print_main_help(FILE *f)
{
    fprintf(f, "usage: gust [--addr HOST:PORT] [--json] COMMAND [ARGS]\n\n"
               "The command-line client of gustd.\n\nCommands:\n");
    for (size_t i = 0; i < ARRAY_LEN(CMDS); i++)
        fprintf(f, "  %s\n", CMDS[i].usage);
    fprintf(f, "\n%s"
               "  --version         print the version\n\n"
               "Run `gust COMMAND --help` for a command's options.\n"
               "Exit codes: 0 ok, 1 the function failed, 2 usage error, 3 API error,\n"
               "4 cannot reach gustd, 5 timed out with the call still going.\n",
            GLOBAL_HELP);
}

int main(int argc, char **argv)
{
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            print_main_help(stdout);
            return EXIT_OK;
        }
        if (!strcmp(a, "--version")) {
            printf("gust %s (libgust %s)\n", GUST_CLIENT_VERSION, gust_version());
            return EXIT_OK;
        }
        if (!strcmp(a, "--json")) {
            g.json = true;
        } else if (!strcmp(a, "--addr") && i + 1 < argc) {
            g.addr = argv[++i];
        } else if (!strncmp(a, "--addr=", 7)) {
            g.addr = a + 7;
        } else {
            fprintf(stderr, "gust: unknown option \"%s\"\n\n", a);
            print_main_help(stderr);
            return EXIT_USAGE;
        }
    }
    if (i >= argc) {
        fprintf(stderr, "gust: missing command\n\n");
        print_main_help(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[i], "help")) {
        if (i + 1 < argc)
            for (size_t k = 0; k < ARRAY_LEN(CMDS); k++)
                if (!strcmp(CMDS[k].name, argv[i + 1]) ||
                    (!strcmp(argv[i + 1], "image") && !strncmp(CMDS[k].name, "image", 5))) {
                    print_usage(stdout, &CMDS[k]);
                    return EXIT_OK;
                }
        print_main_help(stdout);
        return EXIT_OK;
    }
    char name[64];
    int skip = 0;
    if (!strcmp(argv[i], "image")) {
        if (i + 1 >= argc || argv[i + 1][0] == '-') {
            bool help = i + 1 < argc && (!strcmp(argv[i + 1], "--help") || !strcmp(argv[i + 1], "-h"));
            FILE *f = help ? stdout : stderr;
            if (!help)
                fprintf(f, "gust image: missing subcommand (ls or add)\n\n");
            print_usage(f, &CMDS[ARRAY_LEN(CMDS) - 3]);
            print_usage(f, &CMDS[ARRAY_LEN(CMDS) - 2]);
            return help ? EXIT_OK : EXIT_USAGE;
        }
        snprintf(name, sizeof name, "image %s", argv[i + 1]);
        skip = 1;
    } else {
        snprintf(name, sizeof name, "%s", argv[i]);
    }
    for (size_t k = 0; k < ARRAY_LEN(CMDS); k++)
        if (!strcmp(CMDS[k].name, name))
            return CMDS[k].run(&CMDS[k], argc - i - skip, argv + i + skip);
    fprintf(stderr, "gust: unknown command \"%s\"\n\n", name);
    print_main_help(stderr);
    return EXIT_USAGE;
}
