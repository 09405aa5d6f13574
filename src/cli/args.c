/* The command line of one command (options, positionals, APP.FN targets) and the
 * input files it names. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "cli/cli.h"

bool cli_take_global_opt(int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    if (!strcmp(a, "--json")) {
        cli_opts.json = true;
        return true;
    }
    static const struct {
        const char *name;
        const char **dst;
    } valued[] = {{"--addr", &cli_opts.addr}, {"--token", &cli_opts.token}, {"--ca-file", &cli_opts.ca_file}};
    for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++) {
        size_t n = strlen(valued[k].name);
        if (strncmp(a, valued[k].name, n))
            continue;
        if (!a[n] && *i + 1 < argc) {
            *valued[k].dst = argv[++*i];
            return true;
        }
        if (a[n] == '=') {
            *valued[k].dst = a + n + 1;
            return true;
        }
    }
    return false;
}

/* Parses argv[1..argc) (argv[0] is the command name) into options and exactly npos
 * positionals (pos may be NULL when npos is 0). Global options are accepted
 * anywhere. Returns 0, 1 if --help was shown, or EXIT_USAGE after reporting the
 * problem. */
static int parse_opts(const struct cli_cmd *c, int argc, char **argv, const struct cli_opt *opts, char **pos,
                      int npos)
{
    int seen = 0;
    bool only_pos = false;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (only_pos || a[0] != '-' || !a[1]) {
            if (seen >= npos)
                return cli_usage_error(c, "unexpected argument \"%s\"", a);
            pos[seen++] = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            only_pos = true;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            cli_print_usage(stdout, c);
            return 1;
        }
        const char *name = NULL, *inline_val = NULL;
        char shrt = 0;
        char namebuf[64];
        if (a[1] == '-') {
            const char *eq = strchr(a + 2, '=');
            size_t n = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
            if (n >= sizeof namebuf)
                return cli_usage_error(c, "unknown option \"%s\"", a);
            memcpy(namebuf, a + 2, n);
            namebuf[n] = '\0';
            name = namebuf;
            inline_val = eq ? eq + 1 : NULL;
        } else {
            shrt = a[1];
            inline_val = a[2] ? a + 2 : NULL;
        }
        if (name && !strcmp(name, "json")) {
            cli_opts.json = true;
            continue;
        }
        if (name && !strcmp(name, "addr")) {
            if (inline_val) {
                cli_opts.addr = inline_val;
            } else {
                if (i + 1 >= argc)
                    return cli_usage_error(c, "--addr needs a value (HOST:PORT)");
                cli_opts.addr = argv[++i];
            }
            continue;
        }
        const struct cli_opt *o = NULL;
        for (const struct cli_opt *p = opts; p && (p->name || p->short_name); p++)
            if ((name && p->name && !strcmp(name, p->name)) || (shrt && p->short_name == shrt))
                o = p;
        if (!o)
            return cli_usage_error(c, "unknown option \"%s\"", a);
        if (o->flag) {
            if (inline_val)
                return cli_usage_error(c, "option \"%s\" takes no value", a);
            *o->flag = true;
            continue;
        }
        if (inline_val) {
            *o->val = inline_val;
        } else {
            if (i + 1 >= argc)
                return cli_usage_error(c, "option \"%s\" needs a value", a);
            *o->val = argv[++i];
        }
    }
    if (seen < npos)
        return cli_usage_error(c, "missing argument%s", npos - seen > 1 ? "s" : "");
    return 0;
}

bool cli_parse_args(const struct cli_cmd *c, int argc, char **argv, const struct cli_opt *opts, char **pos, int npos,
                    int *rc)
{
    int r = parse_opts(c, argc, argv, opts, pos, npos);
    *rc = r == 1 ? EXIT_OK : r;
    return r == 0;
}

bool cli_parse_seconds(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < 0)
        return false;
    *out = v;
    return true;
}

/* Splits "APP.FN" into t. */
static bool parse_target(const char *s, struct cli_target *t)
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

bool cli_parse_target_args(const struct cli_cmd *c, int argc, char **argv, const struct cli_opt *opts,
                           struct cli_target *t, int *rc)
{
    char *pos[1];
    if (!cli_parse_args(c, argc, argv, opts, pos, 1, rc))
        return false;
    if (!parse_target(pos[0], t)) {
        *rc = cli_usage_error(c, "\"%s\" is not APP.FN", pos[0]);
        return false;
    }
    return true;
}

/* Reads all of fd into b. Returns 0 or -errno. */
static int read_fd_all(int fd, struct buf *b)
{
    for (;;) {
        buf_reserve(b, 65536);
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

bool cli_read_input_file(const char *path, struct buf *b)
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
