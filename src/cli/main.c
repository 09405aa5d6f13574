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
    /* For run = cmd_request only: one request, method to the API path path (an
     * api_path format whose "%s", if any, takes the one positional argument), whose
     * parsed answer print prints; arg is that argument or NULL. */
    const char *method;
    const char *path;
    void (*print)(json_t *answer, const char *arg, const gust_client *c);
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

/* Parses argv[1..argc) (argv[0] is the command name) into options and exactly npos
 * positionals (pos may be NULL when npos is 0). Global options are accepted
 * anywhere. Returns 0, 1 if --help was shown, or EXIT_USAGE after reporting the
 * problem. */
static int parse_opts(const struct cmd *c, int argc, char **argv, const struct opt *opts, char **pos, int npos)
{
    int seen = 0;
    bool only_pos = false;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (only_pos || a[0] != '-' || !a[1]) {
            if (seen >= npos)
                return usage_error(c, "unexpected argument \"%s\"", a);
            pos[seen++] = a;
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
    if (seen < npos)
        return usage_error(c, "missing argument%s", npos - seen > 1 ? "s" : "");
    return 0;
}

/* parse_opts for a command's run function. Returns true to go on; false when the
 * command should end now with exit code *rc (EXIT_OK after --help). */
static bool parse_args(const struct cmd *c, int argc, char **argv, const struct opt *opts, char **pos, int npos,
                       int *rc)
{
    int r = parse_opts(c, argc, argv, opts, pos, npos);
    *rc = r == 1 ? EXIT_OK : r;
    return r == 0;
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

/* An "APP.FN" argument split in two; app and fn point into buf. */
struct target {
    char buf[256];
    const char *app, *fn;
};

/* Splits "APP.FN" into t. */
static bool parse_target(const char *s, struct target *t)
{
    if (strlen(s) >= sizeof t->buf)
        return false;
    strcpy(t->buf, s);
    char *dot = strchr(t->buf, '.');
    if (!dot || dot == t->buf || !dot[1] || strchr(dot + 1, '.'))
        return false;
    *dot = '\0';
    t->app = t->buf;
    t->fn = dot + 1;
    return true;
}

/* parse_args for a command whose one positional argument is APP.FN, split into t. */
static bool parse_target_args(const struct cmd *c, int argc, char **argv, const struct opt *opts, struct target *t,
                              int *rc)
{
    char *pos[1];
    if (!parse_args(c, argc, argv, opts, pos, 1, rc))
        return false;
    if (!parse_target(pos[0], t)) {
        *rc = usage_error(c, "\"%s\" is not APP.FN", pos[0]);
        return false;
    }
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

/* Appends to b the API path fmt in which each "%s" stands for the next argument
 * (a const char *), percent-encoded as one path segment; "%s" is the only
 * conversion. Returns 0 or -ENOMEM. */
static int api_vpath(struct buf *b, const char *fmt, va_list ap)
{
    for (const char *p = fmt; *p;) {
        const char *conv = strstr(p, "%s");
        size_t n = conv ? (size_t)(conv - p) : strlen(p);
        if (buf_append(b, p, n) < 0)
            return -ENOMEM;
        if (!conv)
            break;
        if (path_seg(b, va_arg(ap, const char *)) < 0)
            return -ENOMEM;
        p = conv + 2;
    }
    return 0;
}

/* api_vpath with the segments as arguments. */
static int api_path(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = api_vpath(b, fmt, ap);
    va_end(ap);
    return r;
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

/* Tells on stderr that call e->call_id is still going (kind GUST_ERR_PENDING). */
static void print_pending(const gust_error *e)
{
    fprintf(stderr, "call %s is still %s; fetch it later with `gust result %s`\n", e->call_id,
            e->status[0] ? e->status : "running", e->call_id);
}

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
        print_pending(e);
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

/* Hands over a successful JSON answer (answer[0..len)) from the request named
 * what. With --json prints it as it came and returns NULL with *rc = EXIT_OK;
 * otherwise returns it parsed (the caller json_decref's it), or reports that it
 * is not JSON and returns NULL with *rc = EXIT_CONNECT. */
static json_t *take_answer(const char *answer, size_t len, const char *what, int *rc)
{
    if (g.json) {
        fwrite(answer, 1, len, stdout);
        if (!len || answer[len - 1] != '\n')
            putchar('\n');
        *rc = EXIT_OK;
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(answer, len, 0, &je);
    if (!j) {
        fprintf(stderr, "error: gustd sent malformed JSON for %s: %s\n", what, je.text);
        *rc = EXIT_CONNECT;
    }
    return j;
}

/* Sends method to the API path built from fmt and the segments after it (see
 * api_vpath), with a JSON body (NULL for none), and returns take_answer's result.
 * A failed request is reported: NULL with *rc its exit code. */
static json_t *api_json(gust_client *c, int *rc, const char *method, const char *body, const char *fmt, ...)
{
    AUTO_BUF struct buf path = {0};
    va_list ap;
    va_start(ap, fmt);
    int r = api_vpath(&path, fmt, ap);
    va_end(ap);
    if (r < 0) {
        fprintf(stderr, "error: out of memory\n");
        *rc = EXIT_USAGE;
        return NULL;
    }
    int status;
    AUTO_FREE char *answer = NULL;
    size_t len;
    gust_error e;
    if (gust_request(c, method, path.data, body ? "application/json" : NULL, body, body ? strlen(body) : 0, &status,
                     &answer, &len, &e) < 0) {
        *rc = report(&e);
        return NULL;
    }
    return take_answer(answer, len, path.data, rc);
}

/* ---------- tables ---------- */

#define TABLE_MAX_COLS 16

/* Rows of cells; the first row holds the column titles. */
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

/* A table of ncols (at most TABLE_MAX_COLS) columns with titles as its first row. */
static struct table table_new(const char *const *titles, size_t ncols)
{
    struct table t = {.ncols = ncols};
    char *row[TABLE_MAX_COLS];
    for (size_t i = 0; i < ncols; i++)
        row[i] = strdup(titles[i]);
    table_add(&t, row);
    return t;
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

/* Prints aligned columns (two spaces apart; the last column unpadded) and frees t.
 * A table without rows under its titles prints the line if_empty instead, unless
 * if_empty is NULL. */
static void table_print(struct table *t, const char *if_empty)
{
    if (t->nrows <= 1 && if_empty) {
        printf("%s\n", if_empty);
        table_free(t);
        return;
    }
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

/* jcell of member key of object o. */
static char *jfield(json_t *o, const char *key)
{
    return jcell(json_object_get(o, key));
}

/* Member key of object o as "%.1f" (a missing one is 0.0). */
static char *jfield_1f(json_t *o, const char *key)
{
    return fmt_cell("%.1f", json_number_value(json_object_get(o, key)));
}

/* A fraction as a whole percentage ("42%"); a non-number is "-". */
static char *percent_cell(json_t *v)
{
    return json_is_number(v) ? fmt_cell("%.0f%%", json_number_value(v) * 100) : strdup("-");
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

/* The run function of the table's request commands (see struct cmd): no options,
 * one positional argument if cmd->path has a "%s", else none. */
static int cmd_request(const struct cmd *cmd, int argc, char **argv)
{
    char *pos[1] = {NULL};
    int rc;
    if (!parse_args(cmd, argc, argv, NULL, pos, strstr(cmd->path, "%s") ? 1 : 0, &rc))
        return rc;
    AUTO_CLIENT gust_client *c = open_client();
    if (!c)
        return EXIT_USAGE;
    json_t *answer = api_json(c, &rc, cmd->method, NULL, cmd->path, pos[0]);
    if (!answer)
        return rc;
    cmd->print(answer, pos[0], c);
    json_decref(answer);
    return EXIT_OK;
}

/* gust health: gustd's version and worker capacity. */
static void print_health(json_t *j, const char *arg, const gust_client *c)
{
    const char *ver = json_string_value(json_object_get(j, "version"));
    printf("gustd %s at %s: %s\n", ver ? ver : "?", gust_client_addr(c),
           json_is_true(json_object_get(j, "ok")) ? "ok" : "NOT ok");
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(j, "worker"), k, v)
    {
        AUTO_FREE char *txt = jcell(v);
        printf("  %s: %s\n", k, txt ? txt : "?");
    }
}

/* gust cancel ID: the call's status. */
static void print_cancelled(json_t *j, const char *id, const gust_client *c)
{
    const char *st = json_string_value(json_object_get(j, "status"));
    printf("%s: %s\n", id, st ? st : "cancelled");
}

/* gust stop APP. */
static void print_stopped(json_t *j, const char *app, const gust_client *c)
{
    printf("stopped app %s\n", app);
}

/* ---------- image builds (streamed NDJSON, docs/API.md) ---------- */

/* Progress of a build on stderr; the final event is kept for the caller. */
struct build_view {
    struct buf line;
    json_t *final;
    bool quiet_logs;
};

static void build_show(struct build_view *v, json_t *ev)
{
    const char *kind = json_string_value(json_object_get(ev, "event"));
    const char *fn = json_string_value(json_object_get(ev, "function"));
    char who[80] = "";
    if (fn)
        snprintf(who, sizeof who, "%s: ", fn);
    int idx = (int)json_integer_value(json_object_get(ev, "index"));
    if (!kind)
        return;
    if (!strcmp(kind, "image")) {
        fprintf(stderr, "%simage %s (cached)\n", who, json_string_value(json_object_get(ev, "image_id")));
    } else if (!strcmp(kind, "step")) {
        fprintf(stderr, "%s[%d/%d] %s\n", who, idx, (int)json_integer_value(json_object_get(ev, "of")),
                json_string_value(json_object_get(ev, "step")));
    } else if (!strcmp(kind, "step_wait")) {
        fprintf(stderr, "%s  waiting: another build is running this step\n", who);
    } else if (!strcmp(kind, "log")) {
        if (!v->quiet_logs)
            fprintf(stderr, "%s  | %s\n", who, json_string_value(json_object_get(ev, "line")));
    } else if (!strcmp(kind, "step_done")) {
        const char *id = json_string_value(json_object_get(ev, "image_id"));
        if (json_is_true(json_object_get(ev, "cached")))
            fprintf(stderr, "%s  cached (%.19s)\n", who, id ? id : "?");
        else
            fprintf(stderr, "%s  done in %.1f s (%.19s)\n", who, json_number_value(json_object_get(ev, "seconds")),
                    id ? id : "?");
    } else if (!strcmp(kind, "done") || !strcmp(kind, "error") || !strcmp(kind, "deployed")) {
        json_decref(v->final);
        v->final = json_incref(ev);
    }
    fflush(stderr);
}

static int build_data(void *ud, const char *data, size_t len)
{
    struct build_view *v = ud;
    for (size_t i = 0; i < len; i++) {
        if (data[i] != '\n') {
            if (buf_append(&v->line, data + i, 1) < 0)
                return 1;
            continue;
        }
        json_t *ev = json_loadb(v->line.data ? v->line.data : "", v->line.len, 0, NULL);
        v->line.len = 0;
        if (ev)
            build_show(v, ev);
        json_decref(ev);
    }
    return 0;
}

/* Reports a failed build from its error event; returns the exit code. */
static int build_failed(json_t *fin)
{
    const char *msg = json_string_value(json_object_get(fin, "message"));
    const char *fn = json_string_value(json_object_get(fin, "function"));
    fprintf(stderr, "error: %s%s%s\n", fn ? fn : "", fn ? ": " : "", msg ? msg : "the build failed");
    const char *cmd = json_string_value(json_object_get(fin, "command"));
    if (cmd)
        fprintf(stderr, "  command: %s\n  exit status: %lld\n", cmd,
                (long long)json_integer_value(json_object_get(fin, "exit_status")));
    const char *tail = json_string_value(json_object_get(fin, "output_tail"));
    if (tail && *tail)
        fprintf(stderr, "  last output:\n%s%s", tail, tail[strlen(tail) - 1] == '\n' ? "" : "\n");
    if (g.json)
        print_json(fin);
    return json_string_value(json_object_get(fin, "code")) &&
                   strcmp(json_string_value(json_object_get(fin, "code")), "internal")
               ? EXIT_API
               : EXIT_FAILED;
}

/* The directory relative paths of the spec file pos are resolved against. */
static bool spec_context(const char *pos, char *out, size_t cap)
{
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return false;
    if (!strcmp(pos, "-")) {
        snprintf(out, cap, "%s", cwd);
        return true;
    }
    char full[PATH_MAX * 2];
    if (pos[0] == '/')
        snprintf(full, sizeof full, "%s", pos);
    else
        snprintf(full, sizeof full, "%s/%s", cwd, pos);
    char *slash = strrchr(full, '/');
    if (slash == full)
        slash[1] = '\0';
    else
        *slash = '\0';
    if (strlen(full) >= cap)
        return false;
    memcpy(out, full, strlen(full) + 1);
    return true;
}

/* Reads spec file pos; *fmt gets the content type. */
static bool read_spec(const char *pos, struct buf *spec, const char **ctype)
{
    if (!read_input_file(pos, spec))
        return false;
    if (!spec->len) {
        fprintf(stderr, "error: %s is empty\n", pos);
        return false;
    }
    const char *dot = strrchr(pos, '.');
    bool json = dot && !strcmp(dot, ".json");
    bool toml = dot && !strcmp(dot, ".toml");
    if (!json && !toml)
        json = spec->data[strspn(spec->data, " \t\r\n")] == '{';
    *ctype = json ? "application/json" : "application/toml";
    return true;
}

/* Streams a build request and reports its result; *final gets the last event. */
static int run_build_request(gust_client *c, const char *path, const struct buf *spec, const char *ctype,
                             json_t **final)
{
    struct build_view v = {.quiet_logs = false};
    gust_error e;
    int r = gust_request_stream(c, "POST", path, ctype, spec->data, spec->len, build_data, &v, &e);
    buf_free(&v.line);
    if (r < 0) {
        json_decref(v.final);
        return report(&e);
    }
    if (!v.final) {
        fprintf(stderr, "error: gustd ended the build stream without a result\n");
        return EXIT_CONNECT;
    }
    *final = v.final;
    return EXIT_OK;
}

/* The common start of deploy and image build: reads spec file pos, opens the client
 * and starts path with endpoint + "context=<SPEC's directory>". NULL (with *rc) when
 * the command should end. */
static gust_client *open_build(const char *pos, const char *endpoint, struct buf *spec, const char **ctype,
                               struct buf *path, int *rc)
{
    char context[PATH_MAX];
    *rc = EXIT_USAGE;
    if (!read_spec(pos, spec, ctype) || !spec_context(pos, context, sizeof context))
        return NULL;
    gust_client *c = open_client();
    if (!c)
        return NULL;
    buf_append_str(path, endpoint);
    buf_append_str(path, "context=");
    path_seg(path, context);
    return c;
}

/* The Python SDK's directory: $GUST_SDK_DIR, else sdk/python beside the directory
 * this binary is in (a build tree of the repository). */
static bool sdk_dir(char *out, size_t cap)
{
    const char *env = getenv("GUST_SDK_DIR");
    if (env && *env) {
        snprintf(out, cap, "%s", env);
        return true;
    }
    char exe[PATH_MAX - 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return false;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return false;
    *slash = '\0';
    char cand[PATH_MAX + 32];
    snprintf(cand, sizeof cand, "%s/../sdk/python/gust/cli.py", exe);
    if (access(cand, R_OK) < 0)
        return false;
    return snprintf(out, cap, "%s/../sdk/python", exe) < (int)cap;
}

/* gust deploy FILE.py / gust run FILE.py[::ENTRY]: the SDK does it (verb "deploy" or
 * "run"). */
static int hand_to_python(const char *verb, const char *file)
{
    char sdk[PATH_MAX];
    if (!sdk_dir(sdk, sizeof sdk)) {
        fprintf(stderr, "error: cannot find the Python SDK for %s; set GUST_SDK_DIR to its directory "
                        "(sdk/python of the Gust repository)\n", file);
        return EXIT_USAGE;
    }
    const char *old = getenv("PYTHONPATH");
    AUTO_BUF struct buf pp = {0};
    buf_printf(&pp, "%s%s%s", sdk, old && *old ? ":" : "", old && *old ? old : "");
    if (setenv("PYTHONPATH", pp.data, 1) < 0 || (g.addr && setenv("GUST_ADDR", g.addr, 1) < 0))
        return EXIT_USAGE;
    fflush(stdout);
    char *argv[] = {"python3", "-m", "gust.cli", (char *)verb, (char *)file, g.json ? "--json" : NULL, NULL};
    execvp("python3", argv);
    fprintf(stderr, "error: cannot run python3 for %s: %s\n", file, strerror(errno));
    return EXIT_USAGE;
}

static int cmd_run(const struct cmd *cmd, int argc, char **argv)
{
    char *pos[1];
    int rc;
    if (!parse_args(cmd, argc, argv, NULL, pos, 1, &rc))
        return rc;
    const char *sep = strstr(pos[0], "::");
    size_t flen = sep ? (size_t)(sep - pos[0]) : strlen(pos[0]);
    if (flen < 4 || strncmp(pos[0] + flen - 3, ".py", 3))
        return usage_error(cmd, "want a Python file, FILE.py or FILE.py::ENTRYPOINT, got \"%s\"", pos[0]);
    return hand_to_python("run", pos[0]);
}

static int cmd_deploy(const struct cmd *cmd, int argc, char **argv)
{
    char *pos[1];
    bool force = false;
    struct opt opts[] = {{"force-build", 0, NULL, &force}, {0}};
    int rc;
    if (!parse_args(cmd, argc, argv, opts, pos, 1, &rc))
        return rc;
    size_t plen = strlen(pos[0]);
    if (plen > 3 && !strcmp(pos[0] + plen - 3, ".py"))
        return hand_to_python("deploy", pos[0]);
    AUTO_BUF struct buf spec = {0};
    AUTO_BUF struct buf path = {0};
    const char *ctype;
    AUTO_CLIENT gust_client *c = open_build(pos[0], "/v1/deploy?build=1&", &spec, &ctype, &path, &rc);
    if (!c)
        return rc;
    if (force)
        buf_append_str(&path, "&force_build=1");
    json_t *j = NULL;
    if ((rc = run_build_request(c, path.data, &spec, ctype, &j)) != EXIT_OK)
        return rc;
    if (strcmp(json_string_value(json_object_get(j, "event")), "deployed")) {
        rc = build_failed(j);
        json_decref(j);
        return rc;
    }
    json_object_del(j, "event");
    if (g.json) {
        print_json(j);
        json_decref(j);
        return EXIT_OK;
    }
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

static int cmd_image_build(const struct cmd *cmd, int argc, char **argv)
{
    char *pos[1];
    bool force = false;
    const char *name = NULL;
    struct opt opts[] = {{"name", 't', &name, NULL}, {"force-build", 0, NULL, &force}, {0}};
    int rc;
    if (!parse_args(cmd, argc, argv, opts, pos, 1, &rc))
        return rc;
    AUTO_BUF struct buf spec = {0};
    AUTO_BUF struct buf path = {0};
    const char *ctype;
    AUTO_CLIENT gust_client *c = open_build(pos[0], "/v1/images/build?", &spec, &ctype, &path, &rc);
    if (!c)
        return rc;
    if (name) {
        buf_append_str(&path, "&name=");
        path_seg(&path, name);
    }
    if (force)
        buf_append_str(&path, "&force_build=1");
    json_t *j = NULL;
    if ((rc = run_build_request(c, path.data, &spec, ctype, &j)) != EXIT_OK)
        return rc;
    if (strcmp(json_string_value(json_object_get(j, "event")), "done")) {
        rc = build_failed(j);
        json_decref(j);
        return rc;
    }
    if (g.json) {
        print_json(j);
    } else {
        printf("built image %s%s%s in %.2f s (%lld steps run, %lld cached)\n", name ? name : "",
               name ? " = " : "", json_string_value(json_object_get(j, "image_id")),
               json_number_value(json_object_get(j, "seconds")),
               (long long)json_integer_value(json_object_get(j, "steps_run")),
               (long long)json_integer_value(json_object_get(j, "steps_cached")));
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
            print_pending(e);
            return EXIT_TIMEOUT;
        }
        fprintf(stderr, "error: call %s failed (%s): %s\n", e->call_id, e->code, e->message);
        return EXIT_FAILED;
    }
    return report(e);
}

/* Reads the call input (see read_call_input) into in and opens the client.
 * Returns NULL with *rc set when the command should end. */
static gust_client *open_with_input(const char *data, struct buf *in, int *rc)
{
    *rc = read_call_input(data, in);
    if (*rc)
        return NULL;
    *rc = EXIT_USAGE;
    return open_client();
}

static int cmd_call(const struct cmd *cmd, int argc, char **argv)
{
    const char *data = NULL, *timeout = NULL;
    struct opt opts[] = {{"data", 'd', &data, NULL}, {"timeout", 't', &timeout, NULL}, {0}};
    struct target t;
    int rc;
    if (!parse_target_args(cmd, argc, argv, opts, &t, &rc))
        return rc;
    double secs = -1;
    if (timeout && !parse_seconds(timeout, &secs))
        return usage_error(cmd, "--timeout wants seconds (a number >= 0), got \"%s\"", timeout);
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

static int cmd_spawn(const struct cmd *cmd, int argc, char **argv)
{
    const char *data = NULL;
    struct opt opts[] = {{"data", 'd', &data, NULL}, {0}};
    struct target t;
    int rc;
    if (!parse_target_args(cmd, argc, argv, opts, &t, &rc))
        return rc;
    AUTO_BUF struct buf in = {0};
    AUTO_CLIENT gust_client *c = open_with_input(data, &in, &rc);
    if (!c)
        return rc;
    char id[64];
    gust_error e;
    if (gust_spawn(c, t.app, t.fn, in.data, in.len, id, &e) < 0)
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
    int rc;
    if (!parse_args(cmd, argc, argv, opts, pos, 1, &rc))
        return rc;
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
    struct target t;
    int rc;
    if (!parse_target_args(cmd, argc, argv, opts, &t, &rc))
        return rc;
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
    int r = gust_map(c, t.app, t.fn, in.data, in.len, ordered, map_cb, &m, &e);
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

/* "0,1" from a JSON array of GPU names; "-" for none. */
static char *gpus_cell(json_t *gpus)
{
    struct buf b = {0};
    size_t k;
    json_t *gv;
    json_array_foreach(gpus, k, gv)
        buf_printf(&b, "%s%s", k ? "," : "", json_is_string(gv) ? json_string_value(gv) : "?");
    char *s = b.len ? buf_steal(&b, NULL) : strdup("-");
    buf_free(&b);
    return s;
}

static const char *const FUNCTION_TITLES[] = {"APP",    "FUNCTION", "VERSION",    "IMAGE",
                                              "QUEUED", "RUNNING",  "CONTAINERS", "WAITING"};

/* gust ls: one row a deployed function. */
static void print_functions(json_t *j, const char *arg, const gust_client *c)
{
    struct table t = table_new(FUNCTION_TITLES, ARRAY_LEN(FUNCTION_TITLES));
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(j, "functions"), i, f)
    {
        json_t *wr = json_object_get(f, "waiting_reason");
        char *row[] = {jfield(f, "app"),    jfield(f, "name"),    jfield(f, "version"),
                       jfield(f, "image"),  jfield(f, "queued"),  jfield(f, "running"),
                       containers_cell(json_object_get(f, "containers")),
                       strdup(json_is_string(wr) ? json_string_value(wr) : "")};
        table_add(&t, row);
    }
    table_print(&t, "no functions deployed (deploy an app with `gust deploy SPEC`)");
}

static const char *const CONTAINER_TITLES[] = {"ID",        "APP",  "FUNCTION", "VERSION",  "STATE",
                                               "PID",       "IN-FLIGHT", "DONE", "CPU(m)", "MEM(MiB)",
                                               "GPUS",      "CPU-USED(s)", "MEM-PEAK(MiB)", "OOM", "GPU-UTIL",
                                               "AGE"};

/* "37%" from a percent field, "-" when absent (no NVML samples). */
static char *gpu_util_cell(json_t *ct)
{
    json_t *v = json_object_get(ct, "gpu_util_pct");
    return v ? fmt_cell("%d%%", (int)json_integer_value(v)) : fmt_cell("-");
}

/* gust ps: one row a container. */
static void print_containers(json_t *j, const char *arg, const gust_client *c)
{
    struct table t = table_new(CONTAINER_TITLES, ARRAY_LEN(CONTAINER_TITLES));
    size_t i;
    json_t *ct;
    json_array_foreach(json_object_get(j, "containers"), i, ct)
    {
        char *row[] = {jfield(ct, "id"),
                       jfield(ct, "app"),
                       jfield(ct, "function"),
                       jfield(ct, "version"),
                       jfield(ct, "state"),
                       jfield(ct, "pid"),
                       jfield(ct, "inputs_in_flight"),
                       jfield(ct, "inputs_done"),
                       jfield(ct, "cpu"),
                       jfield(ct, "memory"),
                       gpus_cell(json_object_get(ct, "gpus")),
                       fmt_cell("%.2f", json_number_value(json_object_get(ct, "cpu_s"))),
                       fmt_cell("%.1f", (double)json_integer_value(json_object_get(ct, "memory_peak_bytes")) / (1 << 20)),
                       jfield(ct, "oom_kills"),
                       gpu_util_cell(ct),
                       age_cell(json_object_get(ct, "started_at"))};
        table_add(&t, row);
    }
    table_print(&t, "no containers running");
}

static const char *const IMAGE_TITLES[] = {"NAME", "ID", "HOST-USR", "ROOTFS"};

/* The first 12 hex digits of an image id ("sha256:..."), "-" for none. */
static char *short_id_cell(json_t *im)
{
    const char *id = json_string_value(json_object_get(im, "id"));
    if (!id)
        return fmt_cell("-");
    if (!strncmp(id, "sha256:", 7))
        id += 7;
    return fmt_cell("%.12s", id);
}

/* gust image inspect NAME. */
static void print_image(json_t *j, const char *name, const gust_client *c)
{
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v)
    {
        AUTO_FREE char *txt = jcell(v);
        printf("%-16s %s\n", k, txt ? txt : "?");
    }
}

/* gust image rm NAME. */
static void print_image_removed(json_t *j, const char *name, const gust_client *c)
{
    printf("removed image %s (its files stay in the store until `gust image gc`)\n", name);
}

/* gust image gc. */
static void print_image_gc(json_t *j, const char *arg, const gust_client *c)
{
    printf("removed %lld objects (%.1f MB) and %lld materialised images; %lld images kept\n",
           (long long)json_integer_value(json_object_get(j, "objects_removed")),
           (double)json_integer_value(json_object_get(j, "bytes_removed")) / 1e6,
           (long long)json_integer_value(json_object_get(j, "images_removed")),
           (long long)json_integer_value(json_object_get(j, "images_live")));
}

/* gust image ls: one row an image (the titles alone when there is none). */
static void print_images(json_t *j, const char *arg, const gust_client *c)
{
    struct table t = table_new(IMAGE_TITLES, ARRAY_LEN(IMAGE_TITLES));
    size_t i;
    json_t *im;
    json_array_foreach(json_object_get(j, "images"), i, im)
    {
        char *row[] = {jfield(im, "name"), short_id_cell(im), jfield(im, "host_usr"), jfield(im, "rootfs")};
        table_add(&t, row);
    }
    table_print(&t, NULL);
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
    struct target t;
    int rc;
    if (!parse_target_args(cmd, argc, argv, opts, &t, &rc))
        return rc;
    int64_t tail_n = -1;
    if (tail && parse_i64(tail, 0, 100000, &tail_n) < 0)
        return usage_error(cmd, "--tail wants a line count 0..100000, got \"%s\"", tail);
    AUTO_CLIENT gust_client *c = open_client();
    if (!c)
        return EXIT_USAGE;
    AUTO_BUF struct buf path = {0};
    api_path(&path, "/v1/functions/%s/%s/logs", t.app, t.fn);
    if (follow)
        buf_append_str(&path, "?follow=1");
    if (tail_n >= 0)
        buf_printf(&path, "%stail=%lld", follow ? "&" : "?", (long long)tail_n);
    gust_error e;
    int r = gust_request_stream(c, "GET", path.data, NULL, NULL, 0, write_log_data, NULL, &e);
    if (r == -ECANCELED)
        return EXIT_OK; /* stdout went away */
    return r < 0 ? report(&e) : EXIT_OK;
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

static const char *const USAGE_TITLES[] = {"APP",        "FUNCTION",   "CALLS",  "CONTAINERS",
                                           "ALIVE(s)",   "BUSY(s)",    "CPU(core-s)", "MEM(GiB-s)",
                                           "GPU(s)",     "UTIL",       "GPU-UTIL",    "CPU-USED(s)",
                                           "MEM-PEAK(MiB)", "OOM",     "COST($)"};

static int cmd_usage(const struct cmd *cmd, int argc, char **argv)
{
    const char *since = NULL;
    struct opt opts[] = {{"since", 's', &since, NULL}, {0}};
    int rc;
    if (!parse_args(cmd, argc, argv, opts, NULL, 0, &rc))
        return rc;
    double since_s = 0;
    if (since && !parse_since(since, &since_s))
        return usage_error(cmd, "--since wants UNIX seconds or a duration like 90s, 15m, 2h, 7d; got \"%s\"", since);
    AUTO_CLIENT gust_client *c = open_client();
    if (!c)
        return EXIT_USAGE;
    /* Whole seconds: digits, which api_path keeps as they are. */
    char since_arg[400];
    snprintf(since_arg, sizeof since_arg, "%.0f", since_s);
    json_t *j = api_json(c, &rc, "GET", NULL, since ? "/v1/usage?since=%s" : "/v1/usage", since_arg);
    if (!j)
        return rc;
    struct table t = table_new(USAGE_TITLES, ARRAY_LEN(USAGE_TITLES));
    size_t i, k;
    json_t *a, *f;
    json_array_foreach(json_object_get(j, "apps"), i, a)
    {
        json_array_foreach(json_object_get(a, "functions"), k, f)
        {
            char *row[] = {jfield(a, "app"),
                           jfield(f, "function"),
                           jfield(f, "calls"),
                           jfield(f, "containers"),
                           jfield_1f(f, "alive_s"),
                           jfield_1f(f, "busy_s"),
                           jfield_1f(f, "cpu_core_s"),
                           jfield_1f(f, "memory_gib_s"),
                           jfield_1f(f, "gpu_s"),
                           percent_cell(json_object_get(f, "utilization")),
                           percent_cell(json_object_get(f, "gpu_utilization")),
                           jfield_1f(f, "cpu_used_s"),
                           jfield_1f(f, "memory_peak_mib"),
                           jfield(f, "oom_kills"),
                           fmt_cell("%.6f", json_number_value(json_object_get(f, "cost")))};
            table_add(&t, row);
        }
    }
    table_print(&t, since ? "no usage recorded in that period" : "no usage recorded");
    printf("total cost: $%.6f\n", json_number_value(json_object_get(j, "total_cost")));
    json_decref(j);
    return EXIT_OK;
}

static int cmd_image_add(const struct cmd *cmd, int argc, char **argv)
{
    bool host_usr = false;
    bool oci = !strcmp(cmd->name, "image import");
    struct opt opts[] = {{"host-usr", 0, NULL, &host_usr}, {0}};
    char *pos[2];
    int rc;
    if (!parse_args(cmd, argc, argv, opts, pos, 2, &rc))
        return rc;
    AUTO_FREE char *abs = realpath(pos[1], NULL);
    if (!abs) {
        fprintf(stderr, "error: rootfs %s: %s\n", pos[1], strerror(errno));
        return EXIT_USAGE;
    }
    AUTO_CLIENT gust_client *c = open_client();
    if (!c)
        return EXIT_USAGE;
    json_t *req = oci ? json_pack("{s:s, s:s}", "name", pos[0], "oci", abs)
                      : json_pack("{s:s, s:s, s:b}", "name", pos[0], "rootfs", abs, "host_usr", host_usr);
    AUTO_FREE char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!body) {
        fprintf(stderr, "error: out of memory\n");
        return EXIT_USAGE;
    }
    json_t *j = api_json(c, &rc, "POST", body, "/v1/images");
    if (!j)
        return rc;
    printf("added image %s = %s (%s%s): %lld files, %.1f MB, %lld new objects\n", pos[0],
           json_string_value(json_object_get(j, "id")), abs, host_usr ? ", host /usr" : "",
           (long long)json_integer_value(json_object_get(j, "files")),
           (double)json_integer_value(json_object_get(j, "bytes")) / 1e6,
           (long long)json_integer_value(json_object_get(j, "objects_written")));
    json_decref(j);
    return EXIT_OK;
}

/* ---------- secrets ---------- */

/* gust secret create NAME KEY=VALUE... | KEY... : a bare KEY takes its value from
 * this process's environment, so values need not appear in argv (or shell history). */
static int cmd_secret_create(const struct cmd *cmd, int argc, char **argv)
{
    const char *name = NULL;
    json_t *env = json_object();
    json_t *req = json_pack("{s:o}", "env", env);
    int rc = EXIT_OK;
    for (int i = 1; i < argc && rc == EXIT_OK; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            print_usage(stdout, cmd);
            json_decref(req);
            return EXIT_OK;
        }
        if (!strcmp(a, "--json")) {
            g.json = true;
        } else if (!strncmp(a, "--addr=", 7)) {
            g.addr = a + 7;
        } else if (!strcmp(a, "--addr") && i + 1 < argc) {
            g.addr = argv[++i];
        } else if (a[0] == '-') {
            rc = usage_error(cmd, "unknown option \"%s\"", a);
        } else if (!name) {
            name = a;
        } else {
            const char *eq = strchr(a, '=');
            char key[256];
            size_t kl = eq ? (size_t)(eq - a) : strlen(a);
            if (kl == 0 || kl >= sizeof key) {
                rc = usage_error(cmd, "\"%.40s\": give KEY=VALUE, or KEY to take its value from the environment", a);
                break;
            }
            memcpy(key, a, kl);
            key[kl] = '\0';
            const char *val = eq ? eq + 1 : getenv(key);
            if (!val)
                rc = usage_error(cmd, "%s: not set in the environment; give %s=VALUE or export it", key, key);
            else
                json_object_set_new(env, key, json_string(val));
        }
    }
    if (rc == EXIT_OK && (!name || json_object_size(env) == 0))
        rc = usage_error(cmd, "give a NAME and at least one KEY=VALUE");
    if (rc != EXIT_OK) {
        json_decref(req);
        return rc;
    }
    AUTO_FREE char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    AUTO_CLIENT gust_client *c = open_client();
    if (!c || !body)
        return EXIT_USAGE;
    json_t *j = api_json(c, &rc, "PUT", body, "/v1/secrets/%s", name);
    if (!j)
        return rc;
    if (g.json) {
        print_json(j);
    } else {
        AUTO_FREE char *keys = json_dumps(json_object_get(j, "keys"), JSON_COMPACT);
        printf("%s secret %s with %s\n", json_is_true(json_object_get(j, "created")) ? "created" : "updated", name,
               keys ? keys : "its keys");
    }
    json_decref(j);
    return EXIT_OK;
}

static const char *const SECRET_TITLES[] = {"NAME", "KEYS", "USED-BY"};

/* gust secret ls: names, keys and users; never values (gustd does not return them). */
static void print_secrets(json_t *j, const char *arg, const gust_client *c)
{
    struct table t = table_new(SECRET_TITLES, ARRAY_LEN(SECRET_TITLES));
    size_t i;
    json_t *sec;
    json_array_foreach(json_object_get(j, "secrets"), i, sec)
    {
        struct buf keys = {0}, users = {0};
        size_t k;
        json_t *v;
        json_array_foreach(json_object_get(sec, "keys"), k, v) buf_printf(&keys, "%s%s", k ? "," : "",
                                                                         json_string_value(v));
        json_array_foreach(json_object_get(sec, "used_by"), k, v) buf_printf(&users, "%s%s", k ? "," : "",
                                                                            json_string_value(v));
        char *row[] = {jfield(sec, "name"), fmt_cell("%s", keys.data ? keys.data : "-"),
                       fmt_cell("%s", users.data ? users.data : "-")};
        table_add(&t, row);
        buf_free(&keys);
        buf_free(&users);
    }
    table_print(&t, NULL);
}

static void print_secret_removed(json_t *j, const char *name, const gust_client *c)
{
    printf("deleted secret %s\n", name);
}

/* ---------- main ---------- */

static const struct cmd CMDS[] = {
    {"deploy", "deploy SPEC [--force-build]",
     "Deploys the app in SPEC (a .json or .toml file, or - for stdin; other names are\n"
     "read as JSON if they start with '{', else TOML; a .py file goes to the Python SDK,\n"
     "which deploys every gust.App it defines). Every function gets a new version.\n"
     "Inline image definitions are built first (cached steps are reused), with progress\n"
     "on stderr; relative paths in them are taken from SPEC's directory.\n"
     "  --force-build       run every build step again, ignoring the cache\n",
     .run = cmd_deploy},
    {"run", "run FILE.py[::ENTRYPOINT]",
     "Runs a Python app: deploys the gust.App in FILE.py (building its images), calls its\n"
     "@app.local_entrypoint() (ENTRYPOINT picks one when there are several) on this\n"
     "machine, then stops the app.\n",
     .run = cmd_run},
    {"call", "call APP.FN [-d DATA | -d @FILE | -d @-] [--timeout S]",
     "Calls APP.FN and writes its output bytes to stdout. The input is DATA, the\n"
     "contents of FILE, or stdin (when no -d is given and stdin is not a terminal).\n"
     "  -d, --data DATA     input bytes; @FILE reads a file, @- stdin\n"
     "  -t, --timeout S     wait at most S seconds; if the call is still going, print\n"
     "                      its id and exit 5 (default: wait until done)\n",
     .run = cmd_call},
    {"spawn", "spawn APP.FN [-d DATA | -d @FILE | -d @-]",
     "Queues a call of APP.FN and prints its call id at once.\n"
     "  -d, --data DATA     input bytes; @FILE reads a file, @- stdin\n",
     .run = cmd_spawn},
    {"result", "result ID [--wait S]",
     "Writes the output of call ID to stdout. Exits 5 if the call is still going\n"
     "after the wait, 1 if it failed.\n"
     "  -w, --wait S        wait up to S seconds for the call to finish (default 0)\n",
     .run = cmd_result},
    {"cancel", "cancel ID", "Cancels call ID (a running input is stopped) and prints its status.\n",
     .run = cmd_request, .method = "POST", .path = "/v1/calls/%s/cancel", .print = print_cancelled},
    {"map", "map APP.FN [--ordered] [--input FILE] < inputs.jsonl",
     "Calls APP.FN once per input line (NDJSON: a JSON string is passed as its UTF-8\n"
     "bytes, {\"b64\": \"...\"} as the decoded bytes, other JSON as its text). Prints one\n"
     "JSON line per result as it completes, and progress on stderr. Exits 1 if any\n"
     "input failed.\n"
     "  --ordered           print results in input order\n"
     "  -i, --input FILE    read the inputs from FILE instead of stdin\n",
     .run = cmd_map},
    {"ls", "ls", "Lists deployed functions: version, queue, running inputs, containers and why\n"
                 "queued inputs wait, if they do.\n",
     .run = cmd_request, .method = "GET", .path = "/v1/functions", .print = print_functions},
    {"ps", "ps", "Lists containers.\n",
     .run = cmd_request, .method = "GET", .path = "/v1/containers", .print = print_containers},
    {"logs", "logs APP.FN [-f] [--tail N]",
     "Prints the function's log lines (TIMESTAMP CONTAINER CALL STREAM TEXT; CALL is\n"
     "the call that printed the line, or - when not known).\n"
     "  -f, --follow        keep streaming new lines (Ctrl-C to stop)\n"
     "  -n, --tail N        only the last N lines\n",
     .run = cmd_logs},
    {"stop", "stop APP", "Stops every container of APP, cancels its pending calls and refuses new calls\n"
                         "until the next deploy.\n",
     .run = cmd_request, .method = "POST", .path = "/v1/apps/%s/stop", .print = print_stopped},
    {"usage", "usage [--since S]",
     "Prints resource usage and cost per function.\n"
     "  -s, --since S       only usage after S: UNIX seconds, or a duration back from\n"
     "                      now such as 90s, 15m, 2h, 7d\n",
     .run = cmd_usage},
    {"image ls", "image ls", "Lists registered images.\n",
     .run = cmd_request, .method = "GET", .path = "/v1/images", .print = print_images},
    {"image add", "image add NAME ROOTFS [--host-usr]",
     "Stores the directory ROOTFS in the content-addressed image store as image NAME\n"
     "(same content, same id: unchanged files are not stored twice).\n"
     "  --host-usr          bind-mount the host's /usr read-only into it\n",
     .run = cmd_image_add},
    {"image import", "image import NAME PATH",
     "Imports an OCI image: PATH is an OCI image layout directory, or a tarball made by\n"
     "`skopeo copy ... oci-archive:` or `docker save`. Layers are applied with whiteouts.\n",
     .run = cmd_image_add},
    {"image build", "image build FILE [--name NAME] [--force-build]",
     "Builds the image definition in FILE (.json or .toml: base or from_oci, and steps;\n"
     "see docs/SPEC.md), showing each step and its output on stderr. Unchanged steps come\n"
     "from the cache. Relative paths in FILE are taken from FILE's directory.\n"
     "  -t, --name NAME     register the result under NAME (usable as image = \"NAME\")\n"
     "  --force-build       run every step again, ignoring the cache\n",
     .run = cmd_image_build},
    {"image inspect", "image inspect NAME", "Shows an image: id, rootfs, files, bytes, config.\n",
     .run = cmd_request, .method = "GET", .path = "/v1/images/%s", .print = print_image},
    {"image rm", "image rm NAME", "Removes the name NAME (refused while a deployed function uses it).\n",
     .run = cmd_request, .method = "DELETE", .path = "/v1/images/%s", .print = print_image_removed},
    {"image gc", "image gc",
     "Deletes from the store every image no name, deployed function or container uses.\n",
     .run = cmd_request, .method = "POST", .path = "/v1/images/gc", .print = print_image_gc},
    {"secret create", "secret create NAME KEY=VALUE... | KEY...",
     "Creates (or replaces) secret NAME: environment variables that functions naming it\n"
     "in `secrets` get in every new container. A bare KEY takes its value from this\n"
     "shell's environment, keeping the value out of argv. gustd never shows values.\n",
     .run = cmd_secret_create},
    {"secret ls", "secret ls", "Lists secrets: names, keys and the functions using them (never values).\n",
     .run = cmd_request, .method = "GET", .path = "/v1/secrets", .print = print_secrets},
    {"secret rm", "secret rm NAME", "Deletes secret NAME (refused while a deployed function uses it).\n",
     .run = cmd_request, .method = "DELETE", .path = "/v1/secrets/%s", .print = print_secret_removed},
    {"health", "health", "Checks that gustd answers and prints its version and worker capacity.\n",
     .run = cmd_request, .method = "GET", .path = "/v1/health", .print = print_health},
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

/* A command of a group ("image", "secret"): the group and its subcommand argv[1]
 * joined into name. Returns -1 to go on, or the exit code after printing the group's
 * commands (for --help, or when the subcommand is missing). */
static int group_name(const char *group, const char *subs, int argc, char **argv, char *name, size_t cap)
{
    if (argc < 2 || argv[1][0] == '-') {
        bool help = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
        FILE *f = help ? stdout : stderr;
        if (!help)
            fprintf(f, "gust %s: missing subcommand (%s)\n\n", group, subs);
        size_t gl = strlen(group);
        for (size_t k = 0; k < ARRAY_LEN(CMDS); k++)
            if (!strncmp(CMDS[k].name, group, gl) && CMDS[k].name[gl] == ' ')
                fprintf(f, "  gust %s\n", CMDS[k].usage);
        return help ? EXIT_OK : EXIT_USAGE;
    }
    snprintf(name, cap, "%s %s", group, argv[1]);
    return -1;
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
                    (!strcmp(argv[i + 1], "image") && !strncmp(CMDS[k].name, "image", 5)) ||
                    (!strcmp(argv[i + 1], "secret") && !strncmp(CMDS[k].name, "secret", 6))) {
                    print_usage(stdout, &CMDS[k]);
                    return EXIT_OK;
                }
        print_main_help(stdout);
        return EXIT_OK;
    }
    char name[64];
    int skip = 0;
    if (!strcmp(argv[i], "secret") || !strcmp(argv[i], "image")) {
        int rc = group_name(argv[i], !strcmp(argv[i], "secret") ? "create, ls or rm"
                                                                  : "ls, build, add, import, inspect, rm or gc",
                            argc - i, argv + i, name, sizeof name);
        if (rc >= 0)
            return rc;
        skip = 1;    } else {
        snprintf(name, sizeof name, "%s", argv[i]);
    }
    for (size_t k = 0; k < ARRAY_LEN(CMDS); k++)
        if (!strcmp(CMDS[k].name, name))
            return CMDS[k].run(&CMDS[k], argc - i - skip, argv + i + skip);
    fprintf(stderr, "gust: unknown command \"%s\"\n\n", name);
    print_main_help(stderr);
    return EXIT_USAGE;
}
