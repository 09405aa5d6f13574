/* A web endpoint in C (examples/web_c/web_c.toml deploys it): a runner-protocol
 * program (proto/runner.h) whose inputs are web requests (proto/web.h).
 *
 *   GET  /hello?name=x   {"greeting": "hello, x"} (JSON)
 *   GET  /count?n=5      "1\n" .. "5\n", each line one item: one HTTP chunk each
 *   GET  /big?mib=N      N MiB of the bytes 0..250 repeated, in 64 KiB items (the
 *                        item window makes a slow client slow this down)
 *   POST /echo           the request's body back, with its Content-Type
 *   GET  /shout          with "Connection: Upgrade" and "Upgrade: websocket": a 101,
 *                        then every byte the client sends comes back upper-cased (raw
 *                        bytes, no WebSocket framing) until the client half-closes
 *   anything else        404 (405 for a known path and another method), JSON */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/util.h"
#include "proto/runner.h"
#include "proto/web.h"

/* /big's item size: far under the 8 MiB item window, large enough to keep the
 * per-item cost small. */
#define BIG_ITEM (64u * 1024u)
/* /big's and /count's caps, so that one request cannot run for ever. */
#define BIG_MAX_MIB 256
#define COUNT_MAX 10000

static const struct web_header json_type[] = {{"Content-Type", 12, "application/json", 16}};
static const struct web_header text_type[] = {{"Content-Type", 12, "text/plain", 10}};

/* s as a JSON string (quotes included), escaped. */
static void json_string(struct buf *b, const char *s)
{
    buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};
            buf_append(b, esc, 2);
        } else if (*p < 0x20) {
            buf_printf(b, "\\u%04x", *p);
        } else {
            buf_append(b, p, 1);
        }
    }
    buf_append(b, "\"", 1);
}

static int respond_json(struct runner *r, uint64_t id, int status, const char *json)
{
    return runner_web_respond(r, id, status, json_type, 1, json, strlen(json), NULL);
}

static int error_json(struct runner *r, uint64_t id, int status, const char *code, const char *message)
{
    AUTO_BUF struct buf b = {0};
    buf_printf(&b, "{\"error\": {\"code\": \"%s\", \"message\": ", code);
    json_string(&b, message);
    buf_append_str(&b, "}}");
    return respond_json(r, id, status, b.data);
}

static int hello(struct runner *r, uint64_t id, const struct web_request *req)
{
    char name[256];
    int n = url_query_param(req->query, "name", name, sizeof name);
    if (n == -ENOENT)
        snprintf(name, sizeof name, "world");
    else if (n < 0)
        return error_json(r, id, 400, "invalid_argument", "name is badly encoded or longer than 255 bytes");
    AUTO_BUF struct buf b = {0};
    buf_append_str(&b, "{\"greeting\": ");
    char text[300];
    snprintf(text, sizeof text, "hello, %s", name);
    json_string(&b, text);
    buf_append_str(&b, "}");
    return respond_json(r, id, 200, b.data);
}

/* A number parameter in [1, max]; def when absent; -1 when malformed. */
static long num_param(const struct web_request *req, const char *name, long def, long max)
{
    char v[24];
    int n = url_query_param(req->query, name, v, sizeof v);
    if (n == -ENOENT)
        return def;
    int64_t x;
    if (n <= 0 || parse_i64(v, 1, max, &x) < 0)
        return -1;
    return (long)x;
}

/* A streamed body: the head alone, then one item per piece, then the end. */
static int count(struct runner *r, uint64_t id, const struct web_request *req)
{
    long n = num_param(req, "n", 5, COUNT_MAX);
    if (n < 0)
        return error_json(r, id, 422, "invalid_argument", "n must be an integer from 1 to 10000");
    int rc = runner_web_head(r, id, 200, text_type, 1, NULL, 0, NULL);
    for (long i = 1; i <= n && rc == 0; i++) {
        char line[24];
        int len = snprintf(line, sizeof line, "%ld\n", i);
        rc = runner_item(r, id, line, (size_t)len);
    }
    return rc < 0 ? rc : runner_end(r, id);
}

static int big(struct runner *r, uint64_t id, const struct web_request *req)
{
    long mib = num_param(req, "mib", 1, BIG_MAX_MIB);
    if (mib < 0)
        return error_json(r, id, 422, "invalid_argument", "mib must be an integer from 1 to 256");
    static unsigned char piece[BIG_ITEM];
    int rc = runner_web_head(r, id, 200, (const struct web_header[]){{"Content-Type", 12, "application/octet-stream", 24}},
                             1, NULL, 0, NULL);
    size_t total = (size_t)mib << 20;
    for (size_t off = 0; off < total && rc == 0; off += BIG_ITEM) {
        for (size_t i = 0; i < BIG_ITEM; i++)
            piece[i] = (unsigned char)((off + i) % 251);
        rc = runner_item(r, id, piece, BIG_ITEM);
    }
    return rc < 0 ? rc : runner_end(r, id);
}

/* The body back as it comes: the bytes in the envelope in items of at most 1 MiB (a
 * body may be larger than one item should), then, for a body still arriving
 * (body_total set), what the input's stream brings, a read at a time. */
static int echo(struct runner *r, uint64_t id, const struct web_request *req)
{
    const struct web_header *ct = web_request_header(req, "Content-Type");
    struct web_header h = {"Content-Type", 12, ct ? ct->value : "application/octet-stream",
                           ct ? ct->value_len : 24};
    const unsigned char *body = req->body;
    size_t first = req->body_len < (1u << 20) ? req->body_len : (1u << 20);
    int rc = runner_web_head(r, id, 200, &h, 1, body, first, NULL);
    for (size_t off = first; off < req->body_len && rc == 0; off += 1u << 20) {
        size_t n = req->body_len - off < (1u << 20) ? req->body_len - off : (1u << 20);
        rc = runner_item(r, id, body + off, n);
    }
    static char buf[64 * 1024];
    ssize_t n;
    while (rc == 0 && req->body_total && (n = runner_stream_read(r, id, buf, sizeof buf)) != 0) {
        if (n < 0)
            return (int)n;
        rc = runner_item(r, id, buf, (size_t)n);
    }
    return rc < 0 ? rc : runner_end(r, id);
}

/* An upgraded connection: the client's bytes arrive as the input's stream. */
static int shout(struct runner *r, uint64_t id, const struct web_request *req)
{
    const struct web_header *up = web_request_header(req, "Upgrade");
    if (!up || !web_header_has_token(up->value, up->value_len, "websocket"))
        return error_json(r, id, 426, "upgrade_required", "send Connection: Upgrade and Upgrade: websocket");
    static const struct web_header h[] = {{"Upgrade", 7, "websocket", 9}};
    int rc = runner_web_head(r, id, 101, h, 1, NULL, 0, NULL);
    char buf[4096];
    ssize_t n;
    while (rc == 0 && (n = runner_stream_read(r, id, buf, sizeof buf)) != 0) {
        if (n < 0)
            return (int)n;
        for (ssize_t i = 0; i < n; i++)
            buf[i] = (char)toupper((unsigned char)buf[i]);
        rc = runner_item(r, id, buf, (size_t)n);
    }
    return rc < 0 ? rc : runner_end(r, id);
}

static const struct route {
    const char *path, *method;
    int (*serve)(struct runner *r, uint64_t id, const struct web_request *req);
} routes[] = {
    {"/hello", "GET", hello}, {"/count", "GET", count}, {"/big", "GET", big},
    {"/echo", "POST", echo},  {"/shout", "GET", shout},
};

static int serve(struct runner *r, struct runner_input *in)
{
    struct web_header headers[WEB_MAX_HEADERS];
    struct web_request req;
    const char *why;
    if (web_request_decode(in->data, in->len, &req, headers, &why) < 0)
        return runner_fail(r, in->id, why); /* not a web request: a plain call */
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(req.path, routes[i].path))
            continue;
        if (strcmp(req.method, routes[i].method))
            return error_json(r, in->id, 405, "method_not_allowed", routes[i].method);
        return routes[i].serve(r, in->id, &req);
    }
    return error_json(r, in->id, 404, "not_found", req.path);
}

int main(void)
{
    struct runner r;
    int rc = runner_open(&r);
    if (rc < 0) {
        fprintf(stderr, "web_c: runner_open: %s\n", strerror(-rc));
        return 1;
    }
    if (runner_ready(&r) < 0)
        return 1;
    struct runner_input in;
    while ((rc = runner_next(&r, &in)) == 0) {
        rc = serve(&r, &in);
        if (rc == -ECANCELED) /* the client went away: give the request up */
            rc = runner_fail(&r, in.id, "cancelled");
        else if (rc == -EINVAL) /* a head gustd would refuse: a bug here, said as an error */
            rc = runner_fail(&r, in.id, "web_c: a malformed response head");
        runner_input_free(&in);
        if (rc < 0)
            break;
    }
    runner_close(&r);
    return rc == -EPIPE || rc == 0 ? 0 : 1;
}
