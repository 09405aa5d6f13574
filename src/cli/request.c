/* Requests to gustd: the client, API paths, JSON answers, and the report of a failed
 * request with its exit code (docs/CLI.md "Exit codes"). */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/util.h"
#include "cli/cli.h"
#include "gust.h"

/* The first line of $XDG_CONFIG_HOME/gust/token (else ~/.config/gust/token),
 * trimmed, into out[cap]; "" when there is no such file. Returns 0, or -1 after
 * reporting a file that cannot be read or holds a token too long for out. */
static int token_from_file(char *out, size_t cap, char *where, size_t where_cap)
{
    out[0] = '\0';
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    if (xdg && *xdg)
        snprintf(where, where_cap, "%s/gust/token", xdg);
    else if (home && *home)
        snprintf(where, where_cap, "%s/.config/gust/token", home);
    else
        return 0;
    AUTO_FREE char *text = NULL;
    size_t len = 0;
    int r = file_read_all(where, 64 * 1024, &text, &len);
    if (r == -ENOENT || r == -ENOTDIR)
        return 0;
    if (r < 0) {
        fprintf(stderr, "gust: token file %s: %s\n", where, strerror(-r));
        return -1;
    }
    char *s = text;
    s[strcspn(s, "\r\n")] = '\0';
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n >= cap) {
        fprintf(stderr, "gust: token file %s: the token is longer than %zu bytes\n", where, cap - 1);
        explicit_bzero(text, len);
        return -1;
    }
    memcpy(out, s, n);
    out[n] = '\0';
    explicit_bzero(text, len);
    return 0;
}

gust_client *cli_open_client(void)
{
    gust_client *c = gust_client_new(cli_opts.addr);
    if (!c) {
        fprintf(stderr, "gust: invalid gustd address \"%s\" (want HOST:PORT, http://HOST:PORT or https://HOST:PORT)\n",
                cli_opts.addr ? cli_opts.addr : getenv("GUST_ADDR") ? getenv("GUST_ADDR") : "");
        return NULL;
    }
    if (cli_opts.ca_file)
        gust_client_set_ca_file(c, cli_opts.ca_file);
    /* Discovery order: --token, $GUST_TOKEN, the token file; none found: no header. */
    char file_token[4096], where[4200] = "";
    const char *token = cli_opts.token, *from = "--token";
    if (!token && (token = getenv("GUST_TOKEN")) && *token) {
        from = "$GUST_TOKEN";
    } else if (!token) {
        if (token_from_file(file_token, sizeof file_token, where, sizeof where) < 0) {
            gust_client_free(c);
            return NULL;
        }
        token = file_token;
        from = where;
    }
    int r = gust_client_set_token(c, token);
    if (token == file_token)
        explicit_bzero(file_token, sizeof file_token);
    if (r < 0) {
        fprintf(stderr, "gust: the token from %s has characters other than visible ASCII (spaces, control "
                        "characters); it was not sent\n", from);
        gust_client_free(c);
        return NULL;
    }
    return c;
}

int cli_path_seg(struct buf *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        bool plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                     *p == '_' || *p == '.' || *p == '~';
        if (plain)
            buf_append(b, p, 1);
        else if (buf_printf(b, "%%%02X", *p) < 0)
            return -EINVAL;
    }
    return 0;
}

/* cli_api_path with the segments in ap. */
static int api_vpath(struct buf *b, const char *fmt, va_list ap)
{
    for (const char *p = fmt; *p;) {
        const char *conv = strstr(p, "%s");
        size_t n = conv ? (size_t)(conv - p) : strlen(p);
        buf_append(b, p, n);
        if (!conv)
            break;
        if (cli_path_seg(b, va_arg(ap, const char *)) < 0)
            return -ENOMEM;
        p = conv + 2;
    }
    return 0;
}

int cli_api_path(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = api_vpath(b, fmt, ap);
    va_end(ap);
    return r;
}

void cli_print_pending(const gust_error *e)
{
    fprintf(stderr, "call %s is still %s; fetch it later with `gust result %s`\n", e->call_id,
            e->status[0] ? e->status : "running", e->call_id);
}

int cli_report(const gust_error *e)
{
    switch (e->kind) {
    case GUST_ERR_CONNECT:
        /* TLS failures (EPROTO) and bad CA files reached or named the server: the
         * hint to start it would mislead. */
        if (e->sys_errno == ECONNREFUSED || e->sys_errno == EHOSTUNREACH || e->sys_errno == ENETUNREACH ||
            e->sys_errno == ETIMEDOUT)
            fprintf(stderr, "%s \xe2\x80\x94 is it running? start it with `gustd` or `make run`\n", e->message);
        else
            fprintf(stderr, "error: %s\n", e->message);
        return EXIT_CONNECT;
    case GUST_ERR_TRANSPORT:
        fprintf(stderr, "error: %s\n", e->message);
        return EXIT_CONNECT;
    case GUST_ERR_TIMEOUT:
        fprintf(stderr, "error: %s\n", e->message);
        return EXIT_TIMEOUT;
    case GUST_ERR_PENDING:
        cli_print_pending(e);
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
        if (e->http_status == 401)
            fprintf(stderr, "hint: set $GUST_TOKEN or write your token to ~/.config/gust/token; the admin token "
                            "of a gustd is in <data-dir>/admin.token\n");
        return EXIT_API;
    case GUST_ERR_ARG:
    case GUST_ERR_NONE:
        break;
    }
    fprintf(stderr, "error: %s\n", e->message);
    return EXIT_USAGE;
}

void cli_print_json(json_t *j)
{
    AUTO_FREE char *s = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (s)
        puts(s);
}

/* Hands over a successful JSON answer (answer[0..len)) from the request named
 * what. With print_json (--json) prints it as it came and returns NULL with *rc =
 * EXIT_OK; otherwise returns it parsed (the caller json_decref's it), or reports
 * that it is not JSON and returns NULL with *rc = EXIT_CONNECT. */
static json_t *take_answer(const char *answer, size_t len, const char *what, bool print_json, int *rc)
{
    if (print_json) {
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

/* cli_api_json and cli_api_get: the request, then take_answer. */
static json_t *api_vjson(gust_client *c, int *rc, const char *method, const char *body, bool print_json,
                         const char *fmt, va_list ap)
{
    AUTO_BUF struct buf path = {0};
    if (api_vpath(&path, fmt, ap) < 0) {
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
        *rc = cli_report(&e);
        return NULL;
    }
    return take_answer(answer, len, path.data, print_json, rc);
}

json_t *cli_api_json(gust_client *c, int *rc, const char *method, const char *body, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *j = api_vjson(c, rc, method, body, cli_opts.json, fmt, ap);
    va_end(ap);
    return j;
}

json_t *cli_api_get(gust_client *c, int *rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *j = api_vjson(c, rc, "GET", NULL, false, fmt, ap);
    va_end(ap);
    return j;
}

int cmd_request(const struct cli_cmd *cmd, int argc, char **argv)
{
    char *pos[1] = {NULL};
    int rc;
    if (!cli_parse_args(cmd, argc, argv, NULL, pos, strstr(cmd->path, "%s") ? 1 : 0, &rc))
        return rc;
    AUTO_CLIENT gust_client *c = cli_open_client();
    if (!c)
        return EXIT_USAGE;
    json_t *answer = cli_api_json(c, &rc, cmd->method, NULL, cmd->path, pos[0]);
    if (!answer)
        return rc;
    cmd->print(answer, pos[0], c);
    json_decref(answer);
    return EXIT_OK;
}
