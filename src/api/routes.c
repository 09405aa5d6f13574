/* HTTP routes of /v1 (docs/API.md) over the control plane. Each handler validates the
 * request, calls control, and answers — immediately, or later for waits, maps and log
 * follows, holding a connection reference and a close callback meanwhile. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/routes.h"
#include "api/server.h"
#include "api/ui.h"
#include "base/buf.h"
#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "cas/cas.h"
#include "spec/spec.h"

#define API_MAX_MAP_INPUTS 1000000
#define API_MAX_WAIT_S 600
#define API_PATH_MAX_SEGS 8
/* Item bytes in one answer of GET /v1/calls/{id}/items (beyond its first item, which
 * is always sent whole): 4 MiB answers quickly and keeps what one poll holds in the
 * connection's buffer small; a reader behind asks again. */
#define API_ITEMS_MAX_BYTES (4u << 20)
/* The per-item length prefix of that answer: u64 little endian. */
#define API_ITEM_LEN_SIZE 8

/* HTTP statuses counted per route: 100 to 599, every status HTTP defines, one
 * counter each (4 KiB a route, a fixed set for a bounded label). */
#define API_STATUS_MIN 100
#define API_STATUS_SPAN 500

struct api_ctx {
    struct ctl *ctl;
    struct api_guard guard;
    /* Responses by route (the table's index; the last row: no route) and status
     * (gust_http_requests_total). */
    uint64_t (*http_counts)[API_STATUS_SPAN];
};

static int kind_status(enum ctl_errkind k)
{
    switch (k) {
    case CTL_E_INVALID: return 400;
    case CTL_E_NOT_FOUND: return 404;
    case CTL_E_CONFLICT: return 409;
    case CTL_E_UNSCHEDULABLE: return 422;
    case CTL_E_TOO_LARGE: return 413;
    case CTL_E_SHUTTING_DOWN: return 503;
    case CTL_E_INTERNAL: return 500;
    case CTL_E_GONE: return 410;
    case CTL_E_OVERLOADED: return 503;
    }
    return 500;
}

static void respond_ctl_error(struct api_conn *conn, const struct ctl_error *e)
{
    api_conn_error(conn, kind_status(e->kind), e->code, e->message, e->field[0] ? e->field : NULL);
}

/* Status for a finished call's error code. */
static int call_error_status(const char *code)
{
    if (!strcmp(code, "timeout"))
        return 504;
    if (!strcmp(code, "cancelled"))
        return 409;
    if (!strcmp(code, "shutting_down"))
        return 503;
    return 502;
}

/* Answers with a call's outcome: 200 + raw output, the error, or 202 if not done. */
static void respond_call(struct api_conn *conn, bool done, const struct ctl_call_view *v)
{
    char hdr[256];
    if (!done) {
        api_conn_respond_json(conn, 202,
                              json_pack("{s:s,s:s}", "call_id", v->id, "status", ctl_call_state_name(v->state)),
                              NULL);
        return;
    }
    if (v->state == CTL_CALL_SUCCEEDED) {
        snprintf(hdr, sizeof hdr, "Gust-Call-Id: %s\r\nGust-Status: succeeded\r\nGust-Attempts: %u\r\n", v->id,
                 v->attempts);
        api_conn_respond(conn, 200, "application/octet-stream", v->output, v->output_len, hdr);
        return;
    }
    const char *code = v->error_code ? v->error_code : "failed";
    snprintf(hdr, sizeof hdr, "Gust-Call-Id: %s\r\nGust-Status: %s\r\n", v->id, ctl_call_state_name(v->state));
    json_t *body = json_pack("{s:{s:s,s:s},s:s,s:s,s:i}", "error", "code", code, "message",
                             v->error_message ? v->error_message : code, "call_id", v->id, "status",
                             ctl_call_state_name(v->state), "attempts", (int)v->attempts);
    api_conn_respond_json(conn, call_error_status(code), body, hdr);
}

/* ---------- deferred waits ---------- */

struct api_wait {
    struct api_conn *conn;
    struct ctl *ctl;
    struct ctl_waiter *waiter;
    bool answered;
};

static void wait_conn_closed(struct api_conn *conn, void *data)
{
    struct api_wait *w = data;
    if (w->waiter)
        ctl_waiter_cancel(w->ctl, w->waiter);
    w->waiter = NULL;
    api_conn_unref(conn);
    free(w);
}

static void wait_done(void *ud, bool done, const struct ctl_call_view *v)
{
    struct api_wait *w = ud;
    w->answered = true;
    if (!w->conn) {
        return; /* answered synchronously inside ctl_wait: the caller responds */
    }
    w->waiter = NULL;
    api_conn_set_close_cb(w->conn, NULL, NULL);
    respond_call(w->conn, done, v);
    api_conn_unref(w->conn);
    free(w);
}

struct api_sync_answer {
    struct api_conn *conn;
};

static void wait_immediate(void *ud, bool done, const struct ctl_call_view *v)
{
    struct api_sync_answer *a = ud;
    respond_call(a->conn, done, v);
}

/* Waits up to timeout_ms for call_id, then answers conn. */
static void wait_and_respond(struct api_ctx *ctx, struct api_conn *conn, const char *ws, const char *call_id,
                             uint64_t timeout_ms)
{
    struct ctl_error e;
    struct ctl_call_view v;
    if (ctl_call_status(ctx->ctl, ws, call_id, &v, &e) < 0) {
        respond_ctl_error(conn, &e);
        return;
    }
    if (v.state >= CTL_CALL_SUCCEEDED || timeout_ms == 0) {
        struct api_sync_answer a = {conn};
        struct ctl_waiter *unused;
        if (ctl_wait(ctx->ctl, ws, call_id, 0, wait_immediate, &a, &unused, &e) < 0)
            respond_ctl_error(conn, &e);
        return;
    }
    struct api_wait *w = xcalloc(1, sizeof *w);
    w->ctl = ctx->ctl;
    struct ctl_waiter *waiter = NULL;
    if (ctl_wait(ctx->ctl, ws, call_id, timeout_ms, wait_done, w, &waiter, &e) < 0) {
        free(w);
        respond_ctl_error(conn, &e);
        return;
    }
    if (!waiter) {
        /* ctl answered synchronously (w->conn was NULL so nothing was sent): ask again now. */
        free(w);
        struct api_sync_answer a = {conn};
        struct ctl_waiter *unused;
        ctl_wait(ctx->ctl, ws, call_id, 0, wait_immediate, &a, &unused, &e);
        return;
    }
    w->conn = conn;
    w->waiter = waiter;
    api_conn_ref(conn);
    api_conn_set_close_cb(conn, wait_conn_closed, w);
}

/* ---------- request helpers ---------- */

/* Query parameter name as a number between min and max into *out (left alone when
 * absent); otherwise answers 400 saying it must be `what` in that range. */
static bool query_number(struct http_request *req, const char *name, const char *what, double min, double max,
                         double *out, struct api_conn *conn)
{
    char v[64];
    int r = http_query_get(req, name, v, sizeof v);
    if (r == -ENOENT)
        return true;
    if (r < 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "%s: must be %s between %g and %g (the value is too long or badly encoded)", name,
                 what, min, max);
        api_conn_error(conn, 400, "invalid_argument", msg, name);
        return false;
    }
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || d < min || d > max) {
        char msg[200];
        snprintf(msg, sizeof msg, "%s: must be %s between %g and %g, got \"%s\"", name, what, min, max, v);
        api_conn_error(conn, 400, "invalid_argument", msg, name);
        return false;
    }
    *out = d;
    return true;
}

static bool query_double(struct http_request *req, const char *name, double min, double max, double *out,
                         struct api_conn *conn)
{
    return query_number(req, name, "a number of seconds", min, max, out, conn);
}

static bool query_flag(struct http_request *req, const char *name)
{
    char v[16];
    if (http_query_get(req, name, v, sizeof v) < 0)
        return false;
    return !strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes") || v[0] == '\0';
}

static json_t *parse_json_body(struct api_conn *conn, struct http_request *req)
{
    json_error_t jerr;
    json_t *j = json_loadb(req->body.data ? req->body.data : "", req->body.len, 0, &jerr);
    if (!j) {
        char msg[300];
        snprintf(msg, sizeof msg, "request body is not valid JSON: line %d, column %d: %s", jerr.line, jerr.column,
                 jerr.text);
        api_conn_error(conn, 400, "bad_request", msg, NULL);
    }
    return j;
}

/* Whether every key of body j is in fields (NULL-terminated); else answers 400 naming
 * the first unknown one, followed by hint. */
static bool known_fields(struct api_conn *conn, json_t *j, const char *const *fields, const char *hint)
{
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v) {
        bool known = false;
        for (size_t i = 0; fields[i] && !known; i++)
            known = !strcmp(key, fields[i]);
        if (!known) {
            char msg[300];
            snprintf(msg, sizeof msg, "%.64s: unknown field; %s", key, hint);
            api_conn_error(conn, 400, "invalid_argument", msg, key);
            return false;
        }
    }
    return true;
}

/* ---------- handlers ---------- */

/* A spec or image definition body: TOML when the Content-Type says so, else JSON
 * (check_body_type let only these two through). NULL after answering 400. */
static json_t *parse_spec_body(struct api_conn *conn, struct http_request *req)
{
    const char *ct = http_request_header(req, "Content-Type");
    json_t *spec = NULL;
    if (http_media_type_is(ct, "application/toml")) {
        struct gerr err;
        if (toml_parse(req->body.data ? req->body.data : "", req->body.len, &spec, &err) < 0) {
            api_conn_error(conn, 400, "invalid_spec", err.msg, NULL);
            return NULL;
        }
        return spec;
    }
    json_error_t jerr;
    spec = json_loadb(req->body.data ? req->body.data : "", req->body.len, 0, &jerr);
    if (!spec) {
        char msg[300];
        snprintf(msg, sizeof msg, "spec is not valid JSON: line %d, column %d: %s", jerr.line, jerr.column, jerr.text);
        api_conn_error(conn, 400, "invalid_spec", msg, NULL);
    }
    return spec;
}

/* ?context=DIR was where gustd once resolved relative image paths on its own machine;
 * it opens no host path a client names now, so the parameter is refused (false after
 * answering 400). */
static bool refuse_context(struct api_conn *conn, struct http_request *req)
{
    char dir[8];
    if (http_query_get(req, "context", dir, sizeof dir) == -ENOENT)
        return true;
    api_conn_error(conn, 400, "invalid_argument",
                   "context: gustd does not read files on its machine for a client; upload copy sources, wheel "
                   "directories and OCI images as trees (POST /v1/mounts) and name them in the image definition "
                   "(gust deploy, gust image build and the SDK do this)",
                   "context");
    return false;
}

/* A build streamed to its client as NDJSON: progress events, then the final one. */
struct api_build {
    struct api_conn *conn;
    struct ctl_build *handle;
    bool begun, finished;
    bool in_call;               /* stream_build is still in the control call */
};

/* One NDJSON line; the 200 stream starts with the first. */
static void build_write(struct api_build *ab, json_t *ev)
{
    if (!ab->begun) {
        api_conn_stream_begin(ab->conn, 200, "application/x-ndjson", NULL);
        ab->begun = true;
    }
    AUTO_FREE char *text = json_dumps(ev, JSON_COMPACT);
    if (!text)
        return;
    size_t n = strlen(text);
    text[n] = '\n';
    api_conn_stream_write(ab->conn, text, n + 1);
}

static void build_event(void *ud, json_t *ev)
{
    build_write(ud, ev);
}

static void build_done(void *ud, json_t *final)
{
    struct api_build *ab = ud;
    build_write(ab, final);
    api_conn_stream_end(ab->conn);
    api_conn_set_close_cb(ab->conn, NULL, NULL);
    api_conn_unref(ab->conn);
    ab->handle = NULL;
    ab->finished = true;
    if (!ab->in_call)
        free(ab);
}

static void build_conn_closed(struct api_conn *conn, void *data)
{
    struct api_build *ab = data;
    ctl_build_detach(ab->handle);
    api_conn_unref(conn);
    free(ab);
}

/* Starts the stream and the build (deploy: a building deploy); ab is freed when the
 * build ends or the client leaves. */
static void stream_build(struct api_ctx *ctx, struct api_conn *conn, const char *ws, json_t *doc, const char *name,
                         bool force, bool deploy)
{
    struct api_build *ab = xcalloc(1, sizeof *ab);
    ab->conn = conn;
    struct ctl_build_sink sink = {.event = build_event, .done = build_done, .ud = ab};
    struct ctl_error e;
    api_conn_ref(conn);
    /* The stream starts only once the request is accepted, so bad input gets a plain
     * 4xx answer. */
    ab->in_call = true;
    int r = deploy ? ctl_deploy_building(ctx->ctl, ws, doc, force, &sink, &ab->handle, &e)
                   : ctl_image_build(ctx->ctl, ws, doc, name, force, &sink, &ab->handle, &e);
    ab->in_call = false;
    if (r < 0) {
        api_conn_unref(conn);
        free(ab);
        respond_ctl_error(conn, &e);
        return;
    }
    if (ab->finished) {
        free(ab);
        return;
    }
    api_conn_set_close_cb(conn, build_conn_closed, ab);
}

static void h_deploy(struct api_ctx *ctx, struct api_conn *conn, struct http_request *req, const char *ws)
{
    if (!refuse_context(conn, req))
        return;
    json_t *spec = parse_spec_body(conn, req);
    if (!spec)
        return;
    if (query_flag(req, "build")) {
        stream_build(ctx, conn, ws, spec, NULL, query_flag(req, "force_build"), true);
        json_decref(spec);
        return;
    }
    json_t *result = NULL;
    struct ctl_error e;
    int r = ctl_deploy(ctx->ctl, ws, spec, &result, &e);
    json_decref(spec);
    if (r < 0) {
        respond_ctl_error(conn, &e);
        return;
    }
    api_conn_respond_json(conn, 200, result, NULL);
}

static void h_image_build(struct api_ctx *ctx, struct api_conn *conn, struct http_request *req, const char *ws)
{
    char name[128] = "";
    if (!refuse_context(conn, req))
        return;
    if (http_query_get(req, "name", name, sizeof name) < 0)
        name[0] = '\0';
    json_t *doc = parse_spec_body(conn, req);
    if (!doc)
        return;
    stream_build(ctx, conn, ws, doc, name, query_flag(req, "force_build"), false);
    json_decref(doc);
}

/* app: qualified ("<workspace>/<app>"). */
static void h_call(struct api_ctx *ctx, struct api_conn *conn, struct http_request *req, const char *ws,
                   const char *app, const char *fn, bool spawn)
{
    double timeout = -1;
    if (!spawn && !query_double(req, "timeout", 0, 86400, &timeout, conn))
        return;
    char id[64];
    struct ctl_error e;
    if (ctl_submit(ctx->ctl, app, fn, req->body.data, req->body.len, spawn, id, &e) < 0) {
        respond_ctl_error(conn, &e);
        return;
    }
    if (spawn) {
        api_conn_respond_json(conn, 202, json_pack("{s:s,s:s}", "call_id", id, "status", "pending"), NULL);
        return;
    }
    wait_and_respond(ctx, conn, ws, id, timeout < 0 ? UINT64_MAX : (uint64_t)(timeout * 1000.0));
}

static void h_result(struct api_ctx *ctx, struct api_conn *conn, struct http_request *req, const char *ws,
                     const char *id)
{
    double wait = 0;
    if (!query_double(req, "wait", 0, API_MAX_WAIT_S, &wait, conn))
        return;
    wait_and_respond(ctx, conn, ws, id, (uint64_t)(wait * 1000.0));
}

/* ---------- generator items (docs/API.md "Generator items") ---------- */

/* One answer: a JSON line (where the items start and end, whether the generator is
 * done, and its error if it failed), then each item as a u64 little-endian length and
 * its bytes. Binary items need no escaping or base64, so a client reads a burst of
 * small items at memory speed. */
static void respond_items(struct api_conn *conn, const struct ctl_items_view *v)
{
    size_t n = 0, bytes = 0;
    for (const struct ctl_item *i = v->first; i && (n == 0 || bytes + i->len <= API_ITEMS_MAX_BYTES); i = i->next) {
        bytes += i->len;
        n++;
    }
    uint64_t next = v->from + n;
    bool done = v->ended && next == v->total;
    const struct ctl_call_view *cv = &v->call;
    json_t *head = json_pack("{s:s,s:I,s:I,s:I,s:b,s:s}", "call_id", cv->id, "from", (json_int_t)v->from, "next",
                             (json_int_t)next, "total", (json_int_t)v->total, "done", done, "status",
                             ctl_call_state_name(cv->state));
    if (done && cv->error_code)
        json_object_set_new(head, "error", json_pack("{s:s,s:s}", "code", cv->error_code, "message",
                                                      cv->error_message ? cv->error_message : cv->error_code));
    char *line AUTO_FREE = json_dumps(head, JSON_COMPACT);
    json_decref(head);
    AUTO_BUF struct buf b = {0};
    buf_reserve(&b, strlen(line) + 1 + bytes + n * API_ITEM_LEN_SIZE);
    buf_append_str(&b, line);
    buf_append(&b, "\n", 1);
    const struct ctl_item *i = v->first;
    for (size_t k = 0; k < n; k++, i = i->next) {
        uint8_t len[API_ITEM_LEN_SIZE];
        for (size_t j = 0; j < sizeof len; j++)
            len[j] = (uint8_t)((uint64_t)i->len >> (8 * j));
        buf_append(&b, len, sizeof len);
        buf_append(&b, i->data, i->len);
    }
    api_conn_respond(conn, 200, "application/x-gust-items", b.data, b.len, NULL);
}

/* A long poll the answer of which comes later (deferred is set once ctl_items_wait
 * returned a waiter; before, the answer came inside the call). */
struct api_items_wait {
    struct api_conn *conn;
    struct ctl *ctl;
    struct ctl_items_waiter *waiter;
    bool deferred;
};

static void items_conn_closed(struct api_conn *conn, void *data)
{
    struct api_items_wait *w = data;
    ctl_items_waiter_cancel(w->ctl, w->waiter);
    api_conn_unref(conn);
    free(w);
}

static void items_ready(void *ud, const struct ctl_items_view *v)
{
    struct api_items_wait *w = ud;
    respond_items(w->conn, v);
    if (!w->deferred)
        return; /* answered inside ctl_items_wait: the caller frees w */
    api_conn_set_close_cb(w->conn, NULL, NULL);
    api_conn_unref(w->conn);
    free(w);
}

/* ?name=N: a whole number (http_query_u64). false after answering 400. */
static bool query_index(struct http_request *req, const char *name, uint64_t *out, struct api_conn *conn)
{
    if (http_query_u64(req, name, out) != -EINVAL)
        return true;
    char msg[160];
    snprintf(msg, sizeof msg, "%s: must be a whole number (an item index)", name);
    api_conn_error(conn, 400, "invalid_argument", msg, name);
    return false;
}

static void h_items(struct api_ctx *ctx, struct api_conn *conn, struct http_request *req, const char *ws,
                    const char *id)
{
    uint64_t from = 0;
    double timeout = 0;
    if (!query_index(req, "from", &from, conn) || !query_double(req, "timeout", 0, API_MAX_WAIT_S, &timeout, conn))
        return;
    struct api_items_wait *w = xcalloc(1, sizeof *w);
    w->conn = conn;
    w->ctl = ctx->ctl;
    struct ctl_error e;
    struct ctl_items_waiter *waiter = NULL;
    if (ctl_items_wait(ctx->ctl, ws, id, from, (uint64_t)(timeout * 1000.0), items_ready, w, &waiter, &e) < 0)
        respond_ctl_error(conn, &e);
    if (!waiter) {
        free(w);
        return;
    }
    w->waiter = waiter;
    w->deferred = true;
    api_conn_ref(conn);
    api_conn_set_close_cb(conn, items_conn_closed, w);
}

static void h_generate(struct api_ctx *ctx, struct api_conn *conn, struct http_request *req, const char *app,
                       const char *fn)
{
    char id[64];
    struct ctl_error e;
    if (ctl_submit_generator(ctx->ctl, app, fn, req->body.data, req->body.len, id, &e) < 0) {
        respond_ctl_error(conn, &e);
        return;
    }
    api_conn_respond_json(conn, 202, json_pack("{s:s,s:s}", "call_id", id, "status", "pending"), NULL);
}

static json_t *view_json(const struct ctl_call_view *v)
{
    json_t *o = json_object();
    json_object_set_new(o, "call_id", json_string(v->id));
    json_object_set_new(o, "app", json_string(v->app));
    json_object_set_new(o, "function", json_string(v->function));
    json_object_set_new(o, "version", json_integer(v->version));
    json_object_set_new(o, "status", json_string(ctl_call_state_name(v->state)));
    json_object_set_new(o, "attempts", json_integer(v->attempts));
    json_object_set_new(o, "created_at", json_real(v->created_at));
    json_object_set_new(o, "started_at", v->started_at > 0 ? json_real(v->started_at) : json_null());
    json_object_set_new(o, "finished_at", v->finished_at > 0 ? json_real(v->finished_at) : json_null());
    json_object_set_new(o, "error", v->error_code ? json_pack("{s:s,s:s}", "code", v->error_code, "message",
                                                               v->error_message ? v->error_message : "")
                                                  : json_null());
    json_object_set_new(o, "output_size", json_integer((json_int_t)v->output_len));
    json_t *tl = v->timeline ? json_loads(v->timeline, 0, NULL) : NULL;
    json_object_set_new(o, "timeline", tl ? tl : json_null());
    return o;
}

static void h_status(struct api_ctx *ctx, struct api_conn *conn, const char *ws, const char *id)
{
    struct ctl_call_view v;
    struct ctl_error e;
    if (ctl_call_status(ctx->ctl, ws, id, &v, &e) < 0) {
        respond_ctl_error(conn, &e);
        return;
    }
    api_conn_respond_json(conn, 200, view_json(&v), NULL);
}

/* Calls one listing answers at most (GET .../calls?limit=N): each is a status object
 * of about 1 KB with its timeline, so a listing stays under a megabyte. */
#define API_CALLS_LIST_MAX 1000

static void calls_collect(void *ud, const struct ctl_call_view *v)
{
    json_array_append_new(ud, view_json(v));
}

static void h_calls_list(struct api_ctx *ctx, struct api_conn *conn, struct http_request *req, const char *app,
                         const char *fn)
{
    double limit = 20;
    if (!query_number(req, "limit", "a whole number", 1, API_CALLS_LIST_MAX, &limit, conn))
        return;
    if (limit != (double)(size_t)limit) {
        api_conn_error(conn, 400, "invalid_argument", "limit: must be a whole number", "limit");
        return;
    }
    json_t *arr = json_array();
    struct ctl_error e;
    if (ctl_calls_list(ctx->ctl, app, fn, (size_t)limit, calls_collect, arr, &e) < 0) {
        json_decref(arr);
        respond_ctl_error(conn, &e);
        return;
    }
    api_conn_respond_json(conn, 200, json_pack("{s:o}", "calls", arr), NULL);
}

/* POST /v1/calls/{id}/cancel, with an optional body {"terminate_containers": bool}; an
 * unknown call is a 404 whatever the body. */
static void h_cancel(struct api_ctx *ctx, struct api_conn *conn, struct http_request *req, const char *ws,
                     const char *id)
{
    struct ctl_call_view v;
    struct ctl_error e;
    if (ctl_call_status(ctx->ctl, ws, id, &v, &e) < 0) {
        respond_ctl_error(conn, &e);
        return;
    }
    bool terminate = false;
    if (req->body.len) {
        json_t *j = parse_json_body(conn, req);
        if (!j)
            return;
        static const char *const fields[] = {"terminate_containers", NULL};
        json_t *t = json_object_get(j, "terminate_containers");
        bool ok = known_fields(conn, j, fields, "the body is {\"terminate_containers\": true|false} or empty");
        if (ok && t && !json_is_boolean(t)) {
            api_conn_error(conn, 400, "invalid_argument", "terminate_containers: must be true or false",
                           "terminate_containers");
            ok = false;
        }
        terminate = t && json_is_true(t);
        json_decref(j);
        if (!ok)
            return;
    }
    if (ctl_cancel_call(ctx->ctl, ws, id, terminate, &v, &e) < 0) {
        respond_ctl_error(conn, &e);
        return;
    }
    api_conn_respond_json(conn, 200, json_pack("{s:s,s:s}", "call_id", v.id, "status", ctl_call_state_name(v.state)),
                          NULL);
}

/* ---------- map ---------- */

struct api_map {
    struct api_conn *conn;
    struct ctl *ctl;
    struct ctl_map *map;
    size_t ok, failed;
    struct buf line;
};

static void map_conn_closed(struct api_conn *conn, void *data)
{
    struct api_map *am = data;
    if (am->map)
        ctl_map_detach(am->ctl, am->map);
    api_conn_unref(conn);
    buf_free(&am->line);
    free(am);
}

static void map_result(void *ud, size_t index, const struct ctl_call_view *v)
{
    struct api_map *am = ud;
    if (!v) {
        char end[128];
        int n = snprintf(end, sizeof end, "{\"done\":true,\"succeeded\":%zu,\"failed\":%zu}\n", am->ok, am->failed);
        if (am->conn) {
            api_conn_stream_write(am->conn, end, (size_t)n);
            api_conn_stream_end(am->conn);
            api_conn_set_close_cb(am->conn, NULL, NULL);
            api_conn_unref(am->conn);
        }
        buf_free(&am->line);
        free(am);
        return;
    }
    json_t *o = json_pack("{s:I,s:s,s:s}", "index", (json_int_t)index, "call_id", v->id, "status",
                          ctl_call_state_name(v->state));
    if (v->state == CTL_CALL_SUCCEEDED) {
        am->ok++;
        if (utf8_valid(v->output, v->output_len)) {
            json_object_set_new(o, "output", json_stringn(v->output ? v->output : "", v->output_len));
        } else {
            char *b64 = NULL;
            base64_encode(v->output, v->output_len, &b64, NULL);
            json_object_set_new(o, "output_b64", json_string(b64));
            free(b64);
        }
    } else {
        am->failed++;
        json_object_set_new(o, "error", json_pack("{s:s,s:s}", "code", v->error_code ? v->error_code : "failed",
                                                  "message", v->error_message ? v->error_message : ""));
    }
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (s && am->conn) {
        buf_reset(&am->line);
        buf_append_str(&am->line, s);
        buf_append(&am->line, "\n", 1);
        api_conn_stream_write(am->conn, am->line.data, am->line.len);
    }
    free(s);
}

/* Splits the NDJSON body into inputs. Decoded bytes live in *arena (one allocation per
 * decoded input, freed by the caller through the parallel `owned` array). */
static int parse_map_inputs(struct http_request *req, struct ctl_input **out, char ***owned, size_t *n,
                            char *msg, size_t msg_cap)
{
    const char *p = req->body.data ? req->body.data : "";
    const char *end = p + req->body.len;
    size_t cap = 0, count = 0, lineno = 0;
    struct ctl_input *in = NULL;
    char **own = NULL;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        lineno++;
        const char *s = p, *e = le;
        while (s < e && (*s == ' ' || *s == '\t' || *s == '\r'))
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
            e--;
        p = nl ? nl + 1 : end;
        if (s == e)
            continue;
        if (count == API_MAX_MAP_INPUTS) {
            snprintf(msg, msg_cap, "at most %d inputs per map; split the inputs into several maps",
                     API_MAX_MAP_INPUTS);
            goto fail;
        }
        /* cap never passes API_MAX_MAP_INPUTS rounded up to a power of two: the
         * bound above stops the loop first. */
        if (count == cap) {
            cap = cap ? cap * 2 : 256;
            in = xreallocarray(in, cap, sizeof *in);
            own = xreallocarray(own, cap, sizeof *own);
        }
        json_error_t jerr;
        json_t *j = json_loadb(s, (size_t)(e - s), JSON_DECODE_ANY, &jerr);
        if (!j) {
            snprintf(msg, msg_cap, "line %zu: not valid JSON (column %d: %s); each line must be one JSON value",
                     lineno, jerr.column, jerr.text);
            goto fail;
        }
        own[count] = NULL;
        if (json_is_string(j)) {
            size_t len = json_string_length(j);
            own[count] = xmemdup(json_string_value(j), len);
            in[count].data = own[count];
            in[count].len = len;
        } else if (json_is_object(j) && json_object_size(j) == 1 && json_is_string(json_object_get(j, "b64"))) {
            json_t *b = json_object_get(j, "b64");
            size_t len;
            if (base64_decode(json_string_value(b), json_string_length(b), &own[count], &len) < 0) {
                json_decref(j);
                snprintf(msg, msg_cap, "line %zu: \"b64\" is not valid base64", lineno);
                goto fail;
            }
            in[count].data = own[count];
            in[count].len = len;
        } else {
            in[count].data = s;
            in[count].len = (size_t)(e - s);
        }
        json_decref(j);
        count++;
    }
    *out = in;
    *owned = own;
    *n = count;
    return 0;
fail:
    for (size_t i = 0; i < count; i++)
        free(own[i]);
    free(own);
    free(in);
    return -EINVAL;
}

/* app: qualified ("<workspace>/<app>"). */
static void h_map(struct api_ctx *ctx, struct api_conn *conn, struct http_request *req, const char *app,
                  const char *fn)
{
    struct ctl_error fe;
    json_t *exists = ctl_function_json(ctx->ctl, app, fn, &fe);
    if (!exists) {
        respond_ctl_error(conn, &fe);
        return;
    }
    json_decref(exists);
    struct ctl_input *inputs = NULL;
    char **owned = NULL;
    size_t n = 0;
    char msg[300];
    if (parse_map_inputs(req, &inputs, &owned, &n, msg, sizeof msg) < 0) {
        api_conn_error(conn, 400, "invalid_argument", msg, "body");
        return;
    }
    struct api_map *am = xcalloc(1, sizeof *am);
    struct ctl_error e;
    struct ctl_map *m = NULL;
    am->ctl = ctx->ctl;
    /* Stream headers go out only once the inputs are stored. */
    int r = ctl_map(ctx->ctl, app, fn, inputs, n, query_flag(req, "ordered"), map_result, am, &m, &e);
    for (size_t i = 0; i < n; i++)
        free(owned[i]);
    free(owned);
    free(inputs);
    if (r < 0) {
        free(am);
        respond_ctl_error(conn, &e);
        return;
    }
    api_conn_stream_begin(conn, 200, "application/x-ndjson", NULL);
    if (!m) {
        /* Empty map: ctl already called map_result(NULL) before conn was set. */
        api_conn_stream_write(conn, "{\"done\":true,\"succeeded\":0,\"failed\":0}\n", 39);
        api_conn_stream_end(conn);
        return;
    }
    am->conn = conn;
    am->map = m;
    api_conn_ref(conn);
    api_conn_set_close_cb(conn, map_conn_closed, am);
}

/* ---------- logs ---------- */

/* The longest search text of GET .../logs?search=: a line's fragment, not a document. */
#define API_LOG_SEARCH_MAX 256
/* The newest lines of a function one filtered log read looks at: twice what the store
 * keeps of a function after a trim (cfg.log_lines_per_fn, 10,000 by default), so a
 * filter sees every kept line, and a bound on one request's work whatever arrived
 * since the last trim. */
#define API_LOG_SCAN_MAX 20000

/* "TIMESTAMP CONTAINER CALL STREAM TEXT"; CALL is "-" when not known. */
static void format_log_line(struct buf *b, double ts, const char *ctr, const char *call, int stream, const char *line,
                            size_t len)
{
    time_t sec = (time_t)ts;
    struct tm tm;
    gmtime_r(&sec, &tm);
    char when[40];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    buf_printf(b, "%s.%03dZ %s %s %s ", when, (int)((ts - (double)sec) * 1000.0), ctr, call[0] ? call : "-",
               stream == 2 ? "stderr" : "stdout");
    buf_append(b, line, len);
    buf_append(b, "\n", 1);
}

static void log_collect(void *ud, double ts, const char *ctr, const char *call, int stream, const char *line,
                        size_t len)
{
    format_log_line(ud, ts, ctr, call, stream, line, len);
}

/* The filters of GET .../logs (docs/API.md): the store applies them to stored lines
 * (store_log_filter, pointing into this), log_passes to the lines a follower gets. */
struct log_query {
    bool any;                   /* some filter was given */
    char search[API_LOG_SEARCH_MAX + 1], call[64], container[64];
    struct store_log_filter f;
};

/* Reads the text query parameter name into out: true when present and it fits, false
 * with *ok set when absent (*ok true) or bad (*ok false: answered 400 naming it). */
static bool query_text(struct http_request *req, const char *name, char *out, size_t cap, bool *ok,
                       struct api_conn *conn)
{
    int r = http_query_get(req, name, out, cap);
    *ok = r >= 0 || r == -ENOENT;
    if (r == 0) {
        char msg[120];
        snprintf(msg, sizeof msg, "%s: must not be empty", name);
        api_conn_error(conn, 400, "invalid_argument", msg, name);
        *ok = false;
        return false;
    }
    if (!*ok) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s: must be at most %zu bytes, with no NUL", name, cap - 1);
        api_conn_error(conn, 400, "invalid_argument", msg, name);
    }
    return r > 0;
}

/* Fills q from req's since, until, search, call and container; false when one is bad
 * (answered 400). */
static bool log_query_parse(struct http_request *req, struct log_query *q, struct api_conn *conn)
{
    memset(q, 0, sizeof *q);
    q->f.scan = API_LOG_SCAN_MAX;
    bool ok;
    double since = 0, until = 0;
    if (!query_number(req, "since", "a Unix time in seconds", 0, 1e11, &since, conn) ||
        !query_number(req, "until", "a Unix time in seconds", 0, 1e11, &until, conn))
        return false;
    q->f.since = since;
    q->f.until = until;
    q->any = since > 0 || until > 0;
    if (query_text(req, "search", q->search, sizeof q->search, &ok, conn))
        q->f.search = q->search;
    if (!ok)
        return false;
    if (query_text(req, "call", q->call, sizeof q->call, &ok, conn))
        q->f.call_id = q->call;
    if (!ok)
        return false;
    if (query_text(req, "container", q->container, sizeof q->container, &ok, conn))
        q->f.container_id = q->container;
    if (!ok)
        return false;
    q->any = q->any || q->f.search || q->f.call_id || q->f.container_id;
    return true;
}

/* Whether a line passes q's filters, as the store's query decides for stored lines. */
static bool log_passes(const struct log_query *q, double ts, const char *ctr, const char *call, const char *line,
                       size_t len)
{
    const struct store_log_filter *f = &q->f;
    if (ts < f->since || (f->until > 0 && ts >= f->until))
        return false;
    if (f->call_id && strcmp(call, f->call_id))
        return false;
    if (f->container_id && strcmp(ctr, f->container_id))
        return false;
    return !f->search || memmem(line, len, f->search, strlen(f->search));
}

struct api_follow {
    struct api_conn *conn;
    struct ctl *ctl;
    struct ctl_log_sub *sub;
    struct buf line;
    struct log_query q;
};

static void follow_line(void *ud, double ts, const char *ctr, const char *call, int stream, const char *line,
                        size_t len)
{
    struct api_follow *f = ud;
    if (f->q.any && !log_passes(&f->q, ts, ctr, call, line, len))
        return;
    buf_reset(&f->line);
    format_log_line(&f->line, ts, ctr, call, stream, line, len);
    api_conn_stream_write(f->conn, f->line.data, f->line.len);
}

static void follow_closed(struct api_conn *conn, void *data)
{
    struct api_follow *f = data;
    ctl_log_unsubscribe(f->ctl, f->sub);
    buf_free(&f->line);
    api_conn_unref(conn);
    free(f);
}

/* app: qualified ("<workspace>/<app>"). */
static void h_logs(struct api_ctx *ctx, struct api_conn *conn, struct http_request *req, const char *app,
                   const char *fn)
{
    double tail = 100;
    if (!query_double(req, "tail", 0, 100000, &tail, conn))
        return;
    bool follow = query_flag(req, "follow");
    struct log_query q;
    if (!log_query_parse(req, &q, conn))
        return;
    AUTO_BUF struct buf b = {0};
    struct ctl_error e;
    if (ctl_logs(ctx->ctl, app, fn, (int)tail, q.any ? &q.f : NULL, log_collect, &b, &e) < 0) {
        respond_ctl_error(conn, &e);
        return;
    }
    if (!follow) {
        api_conn_respond(conn, 200, "text/plain; charset=utf-8", b.data ? b.data : "", b.len, NULL);
        return;
    }
    struct api_follow *f = xcalloc(1, sizeof *f);
    f->conn = conn;
    f->ctl = ctx->ctl;
    f->q = q;
    /* Its filter's strings are its own copies now. */
    f->q.f.search = q.f.search ? f->q.search : NULL;
    f->q.f.call_id = q.f.call_id ? f->q.call : NULL;
    f->q.f.container_id = q.f.container_id ? f->q.container : NULL;
    if (ctl_log_subscribe(ctx->ctl, app, fn, follow_line, f, &f->sub, &e) < 0) {
        free(f);
        respond_ctl_error(conn, &e);
        return;
    }
    api_conn_stream_begin(conn, 200, "text/plain; charset=utf-8", NULL);
    if (b.len)
        api_conn_stream_write(conn, b.data, b.len);
    api_conn_ref(conn);
    api_conn_set_close_cb(conn, follow_closed, f);
}

/* ---------- app logs ---------- */

/* Lines one app-log request reads from the store at most, so that a request costs the
 * loop a bounded time whatever the backlog; a client with more to read is told so
 * ({"more":true}) and asks again from its last seq. */
#define API_APP_LOGS_BATCH 1000
/* Lines per store read within a request, between looks at the output pending. */
#define API_APP_LOGS_PAGE 100
/* A client that leaves this much of a log stream unread gets {"more":true} and the end
 * of the stream instead of more buffering: the lines are in the store, and it reads
 * them again from its last seq. 1 MiB is thousands of lines, far beyond what a reading
 * client has pending; a follower holds at most this plus one line (a line is at most
 * 16 KiB of text, the worker's WORKER_LINE_MAX, and its JSON at most 6 times that). */
#define API_APP_LOGS_PENDING_MAX (1024u * 1024u)
/* Larger seqs than any app will reach, and exact in a double. */
#define API_APP_LOGS_SEQ_MAX 1e15

struct api_app_logs {
    struct api_conn *conn;
    struct ctl *ctl;
    struct ctl_app_log_sub *sub; /* following: the live lines */
    bool ref;                    /* holds a reference on conn */
    struct buf line;
    uint64_t last;               /* seq of the last line written (or where to start) */
};

/* One line as NDJSON: seq, ts, function, container, call_id (null when not known),
 * stream, concurrent, and line (its text; line_b64 when it is not UTF-8). */
static void app_log_write(void *ud, const struct ctl_log_entry *l)
{
    struct api_app_logs *f = ud;
    json_t *o = json_pack("{s:I,s:f,s:s,s:s,s:s,s:b}", "seq", (json_int_t)l->seq, "ts", l->ts, "function",
                          l->function, "container", l->container_id, "stream", l->stream == 2 ? "stderr" : "stdout",
                          "concurrent", l->concurrent);
    if (!o)
        return;
    json_object_set_new(o, "call_id", l->call_id[0] ? json_string(l->call_id) : json_null());
    if (utf8_valid(l->line, l->len)) {
        json_object_set_new(o, "line", json_stringn(l->line, l->len));
    } else {
        char *b64 = NULL;
        base64_encode(l->line, l->len, &b64, NULL);
        json_object_set_new(o, "line_b64", json_string(b64));
        free(b64);
    }
    AUTO_FREE char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    f->last = l->seq;
    if (!text)
        return;
    buf_reset(&f->line);
    buf_append_str(&f->line, text);
    buf_append(&f->line, "\n", 1);
    api_conn_stream_write(f->conn, f->line.data, f->line.len);
}

/* Ends the stream (after {"more":true} when lines are left to read) and frees f. */
static void app_logs_end(struct api_app_logs *f, bool more)
{
    static const char more_line[] = "{\"more\":true}\n";
    if (more)
        api_conn_stream_write(f->conn, more_line, sizeof more_line - 1);
    api_conn_stream_end(f->conn);
    if (f->sub)
        ctl_app_log_unsubscribe(f->ctl, f->sub);
    if (f->ref) {
        api_conn_set_close_cb(f->conn, NULL, NULL);
        api_conn_unref(f->conn);
    }
    buf_free(&f->line);
    free(f);
}

static void app_log_live(void *ud, const struct ctl_log_entry *l)
{
    struct api_app_logs *f = ud;
    if (api_conn_pending_output(f->conn) > API_APP_LOGS_PENDING_MAX) {
        app_logs_end(f, true);
        return;
    }
    app_log_write(f, l);
}

static void app_logs_closed(struct api_conn *conn, void *data)
{
    struct api_app_logs *f = data;
    if (f->sub)
        ctl_app_log_unsubscribe(f->ctl, f->sub);
    buf_free(&f->line);
    api_conn_unref(conn);
    free(f);
}

/* Writes app's stored lines after f->last, at most API_APP_LOGS_BATCH and fewer when
 * the client leaves output unread. Returns 1 when none is left, 0 when some are, or
 * -errno. */
static int app_logs_catch_up(struct api_app_logs *f, const char *app, struct ctl_error *e)
{
    for (int done = 0;;) {
        if (done >= API_APP_LOGS_BATCH || api_conn_pending_output(f->conn) > API_APP_LOGS_PENDING_MAX)
            return 0;
        int n = ctl_app_logs(f->ctl, app, f->last, API_APP_LOGS_PAGE, app_log_write, f, e);
        if (n < 0)
            return n;
        if (n < API_APP_LOGS_PAGE)
            return 1;
        done += n;
    }
}

/* app: qualified ("<workspace>/<app>"). */
static void h_app_logs(struct api_ctx *ctx, struct api_conn *conn, struct http_request *req, const char *app)
{
    double tail = 100, since = -1;
    if (!query_number(req, "tail", "a number of lines", 0, 100000, &tail, conn) ||
        !query_number(req, "since", "a log seq", 0, API_APP_LOGS_SEQ_MAX, &since, conn))
        return;
    bool follow = query_flag(req, "follow");
    uint64_t seq;
    struct ctl_error e;
    if (ctl_app_log_seq(ctx->ctl, app, &seq, &e) < 0) {
        respond_ctl_error(conn, &e);
        return;
    }
    struct api_app_logs *f = xcalloc(1, sizeof *f);
    f->conn = conn;
    f->ctl = ctx->ctl;
    f->last = since >= 0 ? (uint64_t)since : seq > (uint64_t)tail ? seq - (uint64_t)tail : 0;
    api_conn_stream_begin(conn, 200, "application/x-ndjson", NULL);
    int r = app_logs_catch_up(f, app, &e);
    if (r < 0) {
        json_t *err = json_pack("{s:{s:s,s:s}}", "error", "code", e.code, "message", e.message);
        AUTO_FREE char *text = err ? json_dumps(err, JSON_COMPACT) : NULL;
        json_decref(err);
        if (text) {
            api_conn_stream_write(conn, text, strlen(text));
            api_conn_stream_write(conn, "\n", 1);
        }
        app_logs_end(f, false);
        return;
    }
    /* Catching up and subscribing happen in one turn of the loop: no line falls
     * between them. */
    if (r == 0 || !follow || ctl_app_log_subscribe(ctx->ctl, app, app_log_live, f, &f->sub, &e) < 0) {
        app_logs_end(f, r == 0);
        return;
    }
    f->ref = true;
    api_conn_ref(conn);
    api_conn_set_close_cb(conn, app_logs_closed, f);
}

/* ---------- images ---------- */

/* An image add or import answered when its job finishes (control's job thread). */
struct api_image_job {
    struct api_conn *conn;
    struct ctl_image_job *job;
};

static void image_job_done(void *ud, json_t *out, const struct ctl_error *e)
{
    struct api_image_job *aj = ud;
    if (out)
        api_conn_respond_json(aj->conn, 200, json_incref(out), NULL);
    else
        respond_ctl_error(aj->conn, e);
    api_conn_set_close_cb(aj->conn, NULL, NULL);
    api_conn_unref(aj->conn);
    free(aj);
}

static void image_job_conn_closed(struct api_conn *conn, void *data)
{
    struct api_image_job *aj = data;
    ctl_image_job_detach(aj->job);
    api_conn_unref(conn);
    free(aj);
}

/* The host path forms gustd had before: each is refused naming the field and what to
 * send instead (gustd never opens a host path a client names). */
static bool refuse_host_path(struct api_conn *conn, json_t *j, const char *field, const char *instead)
{
    json_t *v = json_object_get(j, field);
    if (!v)
        return false;
    char msg[600];
    snprintf(msg, sizeof msg,
             "%s: gustd does not open files on its machine for a client; upload them (POST /v1/blobs/missing, PUT "
             "/v1/blobs/DIGEST, POST /v1/mounts) and send %s (gust image add/import and the SDK do this)",
             field, instead);
    api_conn_error(conn, 400, "invalid_argument", msg, field);
    return true;
}

/* POST /v1/images {"name", "tree": "sha256:…", "host_usr"} or {"name", "oci":
 * "sha256:…"}: answered when the image is stored and materialised. */
static void h_image_add(struct api_ctx *ctx, struct api_conn *conn, struct http_request *req, const char *ws)
{
    json_t *j = parse_json_body(conn, req);
    if (!j)
        return;
    static const char *const fields[] = {"name", "tree", "host_usr", "oci", "rootfs", NULL};
    if (!known_fields(conn, j, fields, "allowed: name, tree, host_usr, oci") ||
        refuse_host_path(conn, j, "rootfs", "\"tree\": the tree's id") ||
        (json_is_string(json_object_get(j, "oci")) &&
         !spec_image_id_valid(json_string_value(json_object_get(j, "oci"))) &&
         refuse_host_path(conn, j, "oci", "\"oci\": the id of the uploaded tree (a layout directory, or one tarball)"))) {
        json_decref(j);
        return;
    }
    json_t *name = json_object_get(j, "name"), *tree = json_object_get(j, "tree");
    json_t *host_usr = json_object_get(j, "host_usr"), *oci = json_object_get(j, "oci");
    const char *bad = !json_is_string(name)                         ? "name"
                      : oci && (!json_is_string(oci) || tree || host_usr) ? "oci"
                      : !oci && !json_is_string(tree)                ? "tree"
                      : host_usr && !json_is_boolean(host_usr)       ? "host_usr"
                                                                     : NULL;
    if (bad) {
        char msg[300];
        snprintf(msg, sizeof msg,
                 "%s: give name and tree (a tree id from POST /v1/mounts; host_usr a boolean), or name and oci "
                 "(the id of an uploaded OCI image tree) alone",
                 bad);
        api_conn_error(conn, 400, "invalid_argument", msg, bad);
        json_decref(j);
        return;
    }
    struct api_image_job *aj = xcalloc(1, sizeof *aj);
    aj->conn = conn;
    struct ctl_image_sink sink = {.done = image_job_done, .ud = aj};
    struct ctl_error e;
    int r = oci ? ctl_image_import_oci(ctx->ctl, ws, json_string_value(name), json_string_value(oci), &sink,
                                       &aj->job, &e)
                : ctl_image_add(ctx->ctl, ws, json_string_value(name), json_string_value(tree), json_is_true(host_usr),
                                &sink, &aj->job, &e);
    json_decref(j);
    if (r < 0) {
        free(aj);
        respond_ctl_error(conn, &e);
        return;
    }
    api_conn_ref(conn);
    api_conn_set_close_cb(conn, image_job_conn_closed, aj);
}

/* Answers with j, or the control error when j is NULL. */
static void respond_json_or_error(struct api_conn *conn, json_t *j, const struct ctl_error *e)
{
    if (j)
        api_conn_respond_json(conn, 200, j, NULL);
    else
        respond_ctl_error(conn, e);
}

/* Answers a DELETE: {"name": name, flag: true}, or the control error when r < 0. */
static void respond_removed(struct api_conn *conn, int r, const struct ctl_error *e, const char *name,
                            const char *flag)
{
    if (r < 0)
        respond_ctl_error(conn, e);
    else
        api_conn_respond_json(conn, 200, json_pack("{s:s,s:b}", "name", name, flag, 1), NULL);
}

/* ---------- secrets and mounts ---------- */

/* PUT /v1/secrets/{name} {"env":{...}}. Bodies are never logged or echoed. */
static void h_secret_put(struct api_ctx *ctx, struct api_conn *conn, struct http_request *req, const char *ws,
                         const char *name)
{
    struct ctl_error e;
    json_t *j = parse_json_body(conn, req);
    if (!j)
        return;
    static const char *const fields[] = {"env", NULL};
    if (!known_fields(conn, j, fields, "the body is {\"env\": {\"NAME\": \"value\"}}")) {
        json_decref(j);
        return;
    }
    respond_json_or_error(conn, ctl_secret_put(ctx->ctl, ws, name, json_object_get(j, "env"), &e), &e);
    json_decref(j);
}

/* POST /v1/blobs/missing {"digests":[...]}. */
static void h_blobs_missing(struct api_ctx *ctx, struct api_conn *conn, struct http_request *req, const char *ws)
{
    struct ctl_error e;
    json_t *j = parse_json_body(conn, req);
    if (!j)
        return;
    respond_json_or_error(conn, ctl_blobs_missing(ctx->ctl, ws, json_object_get(j, "digests"), &e), &e);
    json_decref(j);
}

/* PUT /v1/blobs/sha256:<hex> (raw chunk). */
static void h_blob_put(struct api_ctx *ctx, struct api_conn *conn, struct http_request *req, const char *ws,
                       const char *what)
{
    struct ctl_error e;
    if (ctl_blob_put(ctx->ctl, ws, what, req->body.data ? req->body.data : "", req->body.len, &e) < 0)
        respond_ctl_error(conn, &e);
    else
        api_conn_respond_json(conn, 201, json_pack("{s:s,s:I}", "digest", what, "size", (json_int_t)req->body.len),
                              NULL);
}

/* POST /v1/mounts {"entries":[...]}: a tree of stored chunks -> {"id"}. */
static void h_mounts(struct api_ctx *ctx, struct api_conn *conn, struct http_request *req, const char *ws)
{
    json_t *j = parse_json_body(conn, req);
    if (!j)
        return;
    struct ctl_error e;
    respond_json_or_error(conn, ctl_mount_create(ctx->ctl, ws, json_object_get(j, "entries"), &e), &e);
    json_decref(j);
}

/* ---------- identity ---------- */

static void h_workspace_create(struct api_ctx *ctx, struct api_conn *conn, struct http_request *req)
{
    json_t *j = parse_json_body(conn, req);
    if (!j)
        return;
    static const char *const fields[] = {"name", "quotas", NULL};
    if (known_fields(conn, j, fields, "the body is {\"name\": \"team-a\", \"quotas\": {...}}")) {
        struct ctl_error e;
        json_t *w = ctl_workspace_create(ctx->ctl, j, &e);
        if (w)
            api_conn_respond_json(conn, 201, w, NULL);
        else
            respond_ctl_error(conn, &e);
    }
    json_decref(j);
}

static void h_workspace_quotas(struct api_ctx *ctx, struct api_conn *conn, struct http_request *req,
                               const char *name)
{
    json_t *j = parse_json_body(conn, req);
    if (!j)
        return;
    struct ctl_error e;
    respond_json_or_error(conn, ctl_workspace_set_quotas(ctx->ctl, name, j, &e), &e);
    json_decref(j);
}

static void h_token_create(struct api_ctx *ctx, struct api_conn *conn, struct http_request *req)
{
    json_t *j = parse_json_body(conn, req);
    if (!j)
        return;
    static const char *const fields[] = {"workspace", "role", "name", "expires_in", NULL};
    if (known_fields(conn, j, fields,
                     "the body is {\"workspace\": \"W\", \"role\": \"developer\", \"name\": \"ci\", "
                     "\"expires_in\": 86400}")) {
        struct ctl_error e;
        json_t *t = ctl_token_create(ctx->ctl, j, &e);
        if (t)
            api_conn_respond_json(conn, 201, t, NULL);
        else
            respond_ctl_error(conn, &e);
    }
    json_decref(j);
}

/* ---------- router ---------- */

/* One request being routed: who asks, and the path's segments. */
struct api_rq {
    struct api_ctx *ctx;
    struct api_conn *conn;
    struct http_request *req;
    const struct ctl_principal *who;
    char (*segs)[128];
    int nsegs;
};

/* segs[i] qualified with the asker's workspace. */
static void rq_qualified(const struct api_rq *r, int i, char out[CTL_QNAME_MAX])
{
    ctl_qualify(out, r->who->ws, r->segs[i]);
}

static void r_function(struct api_rq *r)
{
    char app[CTL_QNAME_MAX];
    rq_qualified(r, 2, app);
    struct ctl_error e;
    respond_json_or_error(r->conn, ctl_function_json(r->ctx->ctl, app, r->segs[3], &e), &e);
}

static void r_health(struct api_rq *r)
{
    api_conn_respond_json(r->conn, 200, ctl_health_json(r->ctx->ctl), NULL);
}

static void write_http_metrics(struct api_ctx *ctx, struct buf *out);

/* GET /metrics: control's metrics, then the API's own. */
static void metrics_respond(struct api_ctx *ctx, struct api_conn *conn)
{
    AUTO_BUF struct buf out = {0};
    ctl_metrics_write(ctx->ctl, &out);
    write_http_metrics(ctx, &out);
    api_conn_respond(conn, 200, "text/plain; version=0.0.4; charset=utf-8", out.data, out.len, NULL);
}

static void r_metrics(struct api_rq *r)
{
    metrics_respond(r->ctx, r->conn);
}

static void r_whoami(struct api_rq *r)
{
    api_conn_respond_json(r->conn, 200,
                          json_pack("{s:s,s:s,s:s}", "workspace", r->who->ws, "role", ctl_role_name(r->who->role),
                                    "token_id", r->who->token_id),
                          NULL);
}

static void r_deploy(struct api_rq *r)
{
    h_deploy(r->ctx, r->conn, r->req, r->who->ws);
}

static void r_apps(struct api_rq *r)
{
    api_conn_respond_json(r->conn, 200, ctl_apps_json(r->ctx->ctl, r->who->ws), NULL);
}

static void r_app_stop(struct api_rq *r)
{
    char app[CTL_QNAME_MAX];
    rq_qualified(r, 2, app);
    struct ctl_error e;
    if (ctl_app_stop(r->ctx->ctl, app, &e) < 0)
        respond_ctl_error(r->conn, &e);
    else
        api_conn_respond_json(r->conn, 200, json_pack("{s:s,s:s}", "app", r->segs[2], "state", "stopped"), NULL);
}

static void r_functions(struct api_rq *r)
{
    api_conn_respond_json(r->conn, 200, ctl_functions_json(r->ctx->ctl, r->who->ws), NULL);
}

static void r_call(struct api_rq *r)
{
    char app[CTL_QNAME_MAX];
    rq_qualified(r, 2, app);
    h_call(r->ctx, r->conn, r->req, r->who->ws, app, r->segs[3], !strcmp(r->segs[4], "spawn"));
}

static void r_generate(struct api_rq *r)
{
    char app[CTL_QNAME_MAX];
    rq_qualified(r, 2, app);
    h_generate(r->ctx, r->conn, r->req, app, r->segs[3]);
}

static void r_map(struct api_rq *r)
{
    char app[CTL_QNAME_MAX];
    rq_qualified(r, 2, app);
    h_map(r->ctx, r->conn, r->req, app, r->segs[3]);
}

static void r_logs(struct api_rq *r)
{
    char app[CTL_QNAME_MAX];
    rq_qualified(r, 2, app);
    h_logs(r->ctx, r->conn, r->req, app, r->segs[3]);
}

static void r_calls_list(struct api_rq *r)
{
    char app[CTL_QNAME_MAX];
    rq_qualified(r, 2, app);
    h_calls_list(r->ctx, r->conn, r->req, app, r->segs[3]);
}

static void r_app_logs(struct api_rq *r)
{
    char app[CTL_QNAME_MAX];
    rq_qualified(r, 2, app);
    h_app_logs(r->ctx, r->conn, r->req, app);
}

static void r_result(struct api_rq *r)
{
    h_result(r->ctx, r->conn, r->req, r->who->ws, r->segs[2]);
}

static void r_items(struct api_rq *r)
{
    h_items(r->ctx, r->conn, r->req, r->who->ws, r->segs[2]);
}

static void r_status(struct api_rq *r)
{
    h_status(r->ctx, r->conn, r->who->ws, r->segs[2]);
}

static void r_cancel(struct api_rq *r)
{
    h_cancel(r->ctx, r->conn, r->req, r->who->ws, r->segs[2]);
}

static void r_containers(struct api_rq *r)
{
    api_conn_respond_json(r->conn, 200, ctl_containers_json(r->ctx->ctl, r->who->ws), NULL);
}

static void r_usage(struct api_rq *r)
{
    double since = 0;
    if (!query_double(r->req, "since", 0, 1e12, &since, r->conn))
        return;
    struct ctl_error e;
    respond_json_or_error(r->conn, ctl_usage_json(r->ctx->ctl, r->who->ws, since, &e), &e);
}

static void r_images(struct api_rq *r)
{
    api_conn_respond_json(r->conn, 200, ctl_images_json(r->ctx->ctl, r->who->ws), NULL);
}

static void r_image_add(struct api_rq *r)
{
    h_image_add(r->ctx, r->conn, r->req, r->who->ws);
}

static void r_image_build(struct api_rq *r)
{
    h_image_build(r->ctx, r->conn, r->req, r->who->ws);
}

static void r_image_gc(struct api_rq *r)
{
    struct ctl_error e;
    respond_json_or_error(r->conn, ctl_image_gc(r->ctx->ctl, &e), &e);
}

static void r_image_inspect(struct api_rq *r)
{
    struct ctl_error e;
    respond_json_or_error(r->conn, ctl_image_inspect(r->ctx->ctl, r->who->ws, r->segs[2], &e), &e);
}

static void r_image_rm(struct api_rq *r)
{
    struct ctl_error e;
    respond_removed(r->conn, ctl_image_rm(r->ctx->ctl, r->who->ws, r->segs[2], &e), &e, r->segs[2], "removed");
}

static void r_secrets(struct api_rq *r)
{
    api_conn_respond_json(r->conn, 200, ctl_secrets_json(r->ctx->ctl, r->who->ws), NULL);
}

static void r_secret_put(struct api_rq *r)
{
    h_secret_put(r->ctx, r->conn, r->req, r->who->ws, r->segs[2]);
}

static void r_secret_delete(struct api_rq *r)
{
    struct ctl_error e;
    respond_removed(r->conn, ctl_secret_delete(r->ctx->ctl, r->who->ws, r->segs[2], &e), &e, r->segs[2],
                    "deleted");
}

static void r_blobs_missing(struct api_rq *r)
{
    h_blobs_missing(r->ctx, r->conn, r->req, r->who->ws);
}

static void r_blob_put(struct api_rq *r)
{
    h_blob_put(r->ctx, r->conn, r->req, r->who->ws, r->segs[2]);
}

static void r_mounts(struct api_rq *r)
{
    h_mounts(r->ctx, r->conn, r->req, r->who->ws);
}

static void r_workspaces(struct api_rq *r)
{
    api_conn_respond_json(r->conn, 200, ctl_workspaces_json(r->ctx->ctl), NULL);
}

static void r_workspace_create(struct api_rq *r)
{
    h_workspace_create(r->ctx, r->conn, r->req);
}

static void r_workspace(struct api_rq *r)
{
    struct ctl_error e;
    respond_json_or_error(r->conn, ctl_workspace_json(r->ctx->ctl, r->segs[2], &e), &e);
}

static void r_workspace_quotas(struct api_rq *r)
{
    h_workspace_quotas(r->ctx, r->conn, r->req, r->segs[2]);
}

static void r_tokens(struct api_rq *r)
{
    api_conn_respond_json(r->conn, 200, ctl_tokens_json(r->ctx->ctl), NULL);
}

static void r_token_create(struct api_rq *r)
{
    h_token_create(r->ctx, r->conn, r->req);
}

static void r_token_revoke(struct api_rq *r)
{
    struct ctl_error e;
    respond_removed(r->conn, ctl_token_revoke(r->ctx->ctl, r->segs[2], &e), &e, r->segs[2], "revoked");
}

/* The media types a route's body may have. Besides telling the parsers what they
 * get, requiring one is a defence: a web page can send a cross-origin POST without a
 * preflight only as text/plain, a form or multipart, never as any of these. */
static const char *const body_json[] = {"application/json", NULL};
static const char *const body_spec[] = {"application/json", "application/toml", NULL};
static const char *const body_input[] = {"application/octet-stream", "application/json", NULL};
static const char *const body_ndjson[] = {"application/x-ndjson", NULL};
static const char *const body_bytes[] = {"application/octet-stream", NULL};

/* ---------- dicts and queues (docs/API.md "Dicts", "Queues") ---------- */

/* segs[1] is "dicts" or "queues". */
static enum ctl_kv_kind rq_kv_kind(const struct api_rq *r)
{
    return !strcmp(r->segs[1], "dicts") ? CTL_KV_DICT : CTL_KV_QUEUE;
}

static void r_kv_list(struct api_rq *r)
{
    struct ctl_error e;
    respond_json_or_error(r->conn, ctl_kv_list(r->ctx->ctl, r->who->ws, rq_kv_kind(r), &e), &e);
}

/* GET looks the object up, PUT creates it unless it exists (Modal's from_name with
 * create_if_missing). */
static void r_kv_lookup(struct api_rq *r)
{
    struct ctl_error e;
    bool create = !strcmp(r->req->method, "PUT");
    respond_json_or_error(r->conn, ctl_kv_create(r->ctx->ctl, r->who->ws, rq_kv_kind(r), r->segs[2], create, &e),
                          &e);
}

static void r_kv_delete(struct api_rq *r)
{
    struct ctl_error e;
    respond_removed(r->conn, ctl_kv_delete(r->ctx->ctl, r->who->ws, rq_kv_kind(r), r->segs[2], &e), &e, r->segs[2],
                    "deleted");
}

/* A blocked queue get whose answer comes later (deferred once ctl_queue_get returned
 * a waiter; before that the answer came inside the call). */
struct api_kv_wait {
    struct api_conn *conn;
    struct ctl *ctl;
    struct ctl_kv_waiter *waiter;
    bool deferred;
};

static void kv_conn_closed(struct api_conn *conn, void *data)
{
    struct api_kv_wait *w = data;
    ctl_kv_waiter_cancel(w->ctl, w->waiter);
    api_conn_unref(conn);
    free(w);
}

static void kv_answered(void *ud, json_t *answer, const struct ctl_error *e)
{
    struct api_kv_wait *w = ud;
    respond_json_or_error(w->conn, answer, e);
    if (!w->deferred)
        return; /* answered inside ctl_queue_get: the caller frees w */
    api_conn_set_close_cb(w->conn, NULL, NULL);
    api_conn_unref(w->conn);
    free(w);
}

static void queue_get(struct api_rq *r, const struct spec_kv_req *q)
{
    struct api_kv_wait *w = xcalloc(1, sizeof *w);
    w->conn = r->conn;
    w->ctl = r->ctx->ctl;
    struct ctl_error e;
    struct ctl_kv_waiter *waiter = NULL;
    if (ctl_queue_get(r->ctx->ctl, r->who->ws, r->segs[2], q, kv_answered, w, &waiter, &e) < 0)
        respond_ctl_error(r->conn, &e);
    if (!waiter) {
        free(w);
        return;
    }
    w->waiter = waiter;
    w->deferred = true;
    api_conn_ref(r->conn);
    api_conn_set_close_cb(r->conn, kv_conn_closed, w);
}

/* POST /v1/dicts/{name}/{op}, /v1/queues/{name}/{op}: a JSON body (values base64;
 * an empty body is {}). Bodies are never logged or echoed. */
static void r_kv_op(struct api_rq *r)
{
    json_t *j = r->req->body.len ? parse_json_body(r->conn, r->req) : json_object();
    if (!j)
        return;
    enum ctl_kv_kind kind = rq_kv_kind(r);
    const char *op = r->segs[3];
    struct spec_kv_req q;
    struct ctl_error e;
    int rc = ctl_kv_req_parse(kind, op, j, &q, &e);
    json_decref(j);
    if (rc < 0) {
        respond_ctl_error(r->conn, &e);
        return;
    }
    if (kind == CTL_KV_QUEUE && !strcmp(op, "get"))
        queue_get(r, &q);
    else if (kind == CTL_KV_QUEUE)
        respond_json_or_error(r->conn, ctl_queue_op(r->ctx->ctl, r->who->ws, r->segs[2], op, &q, &e), &e);
    else
        respond_json_or_error(r->conn, ctl_dict_op(r->ctx->ctl, r->who->ws, r->segs[2], op, &q, &e), &e);
    spec_kv_req_free(&q);
}

/* ---------- volumes (docs/API.md "Volumes") ---------- */

static void r_volume_list(struct api_rq *r)
{
    struct ctl_error e;
    respond_json_or_error(r->conn, ctl_volume_list(r->ctx->ctl, r->who->ws, &e), &e);
}

/* GET looks it up, PUT creates it unless it exists (from_name(create_if_missing)). */
static void r_volume_lookup(struct api_rq *r)
{
    struct ctl_error e;
    bool create = !strcmp(r->req->method, "PUT");
    respond_json_or_error(r->conn, ctl_volume_create(r->ctx->ctl, r->who->ws, r->segs[2], create, &e), &e);
}

static void r_volume_delete(struct api_rq *r)
{
    struct ctl_error e;
    respond_removed(r->conn, ctl_volume_delete(r->ctx->ctl, r->who->ws, r->segs[2], &e), &e, r->segs[2],
                    "deleted");
}

/* The query parameter "path" (a path in a volume) into out: "" when absent, 400 when
 * it does not fit. */
static bool query_path(struct api_rq *r, char *out, size_t cap)
{
    int n = http_query_get(r->req, "path", out, cap);
    if (n == -ENOENT) {
        out[0] = '\0';
        return true;
    }
    if (n < 0) {
        api_conn_error(r->conn, 400, "invalid_argument", "path: must be a URL-encoded path of at most 4095 bytes",
                       "path");
        return false;
    }
    return true;
}

static void r_volume_entries(struct api_rq *r)
{
    char path[PATH_MAX];
    if (!query_path(r, path, sizeof path))
        return;
    struct ctl_error e;
    respond_json_or_error(r->conn,
                          ctl_volume_listdir(r->ctx->ctl, r->who->ws, r->segs[2], path, query_flag(r->req, "recursive"),
                                             &e),
                          &e);
}

/* GET /v1/volumes/{name}/file?path=P&chunk=K: the bytes of the file's chunk K. */
static void r_volume_file(struct api_rq *r)
{
    char path[PATH_MAX];
    double chunk = 0;
    if (!query_path(r, path, sizeof path) ||
        !query_number(r->req, "chunk", "a chunk index", 0, (double)(CAS_MAX_FILE_SIZE / CAS_CHUNK_SIZE), &chunk,
                      r->conn))
        return;
    struct ctl_error e;
    uint8_t *data = NULL;
    size_t len = 0;
    if (ctl_volume_read(r->ctx->ctl, r->who->ws, r->segs[2], path, (uint64_t)chunk, &data, &len, &e) < 0) {
        respond_ctl_error(r->conn, &e);
        return;
    }
    api_conn_respond(r->conn, 200, "application/octet-stream", data, len, NULL);
    free(data);
}

/* POST /v1/volumes/{name}/{files|remove|copy|commit|reload}. */
static void r_volume_op(struct api_rq *r)
{
    const char *op = r->segs[3];
    json_t *j = r->req->body.len ? parse_json_body(r->conn, r->req) : json_object();
    if (!j)
        return;
    struct ctl_error e;
    json_t *out = NULL;
    static const char *const files_keys[] = {"changes", "force", NULL};
    static const char *const remove_keys[] = {"path", "recursive", NULL};
    static const char *const copy_keys[] = {"src_paths", "dst_path", "recursive", NULL};
    static const char *const none[] = {NULL};
    const char *const *keys = !strcmp(op, "files")    ? files_keys
                              : !strcmp(op, "remove") ? remove_keys
                              : !strcmp(op, "copy")   ? copy_keys
                                                      : none;
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v) {
        bool known = false;
        for (size_t i = 0; keys[i]; i++)
            known |= !strcmp(keys[i], key);
        if (!known) {
            char msg[200];
            snprintf(msg, sizeof msg, "%.64s: unknown field for %s", key, op);
            api_conn_error(r->conn, 400, "invalid_argument", msg, key);
            json_decref(j);
            return;
        }
    }
    json_t *force = json_object_get(j, "force"), *rec = json_object_get(j, "recursive");
    json_t *path = json_object_get(j, "path");
    if ((force && !json_is_boolean(force)) || (rec && !json_is_boolean(rec)) || (path && !json_is_string(path))) {
        api_conn_error(r->conn, 400, "invalid_argument",
                       force && !json_is_boolean(force) ? "force: must be true or false"
                       : rec && !json_is_boolean(rec)   ? "recursive: must be true or false"
                                                        : "path: must be a string",
                       force && !json_is_boolean(force) ? "force" : rec && !json_is_boolean(rec) ? "recursive" : "path");
        json_decref(j);
        return;
    }
    if (!strcmp(op, "files"))
        out = ctl_volume_put(r->ctx->ctl, r->who->ws, r->segs[2], json_object_get(j, "changes"), json_is_true(force),
                             &e);
    else if (!strcmp(op, "remove"))
        out = ctl_volume_remove(r->ctx->ctl, r->who->ws, r->segs[2], json_string_value(path), json_is_true(rec),
                                &e);
    else if (!strcmp(op, "copy")) {
        json_t *dst = json_object_get(j, "dst_path");
        if (!json_is_string(dst)) {
            json_decref(j);
            api_conn_error(r->conn, 400, "invalid_argument", "dst_path: a path in the volume is required",
                           "dst_path");
            return;
        }
        out = ctl_volume_copy(r->ctx->ctl, r->who->ws, r->segs[2], json_object_get(j, "src_paths"),
                              json_string_value(dst), json_is_true(rec), &e);
    } else if (!strcmp(op, "commit") || !strcmp(op, "reload"))
        out = (op[0] == 'c' ? ctl_volume_commit : ctl_volume_reload)(r->ctx->ctl, r->who->ctr_id, r->segs[2], &e);
    else {
        char msg[160];
        snprintf(msg, sizeof msg, "unknown volume operation %.64s (files, remove, copy, commit, reload)", op);
        json_decref(j);
        api_conn_error(r->conn, 404, "not_found", msg, NULL);
        return;
    }
    json_decref(j);
    respond_json_or_error(r->conn, out, &e);
}

/* Every route, with the least role that may use it (docs/API.md "Roles"): invokers
 * call functions of their workspace and read what they need for that, and use its
 * dicts and queues (a function's code does, with an invoker's token); developers
 * also deploy, stop, read logs, manage images, secrets and uploads, delete dicts and
 * queues; admins also
 * manage workspaces, tokens and quotas, run image gc (it spans workspaces) and read
 * /metrics (every workspace's functions). "*" matches one path segment. A path that matches with another method is 405. */
struct api_route {
    const char *method;
    const char *path;
    enum ctl_role role;
    void (*handle)(struct api_rq *r);
    const char *const *body; /* the media types its body may have, if it has one */
};
static const struct api_route api_route_table[] = {
    {"GET", "/v1/health", CTL_ROLE_INVOKER, r_health, body_json},
    {"GET", "/metrics", CTL_ROLE_ADMIN, r_metrics, body_json},
    {"GET", "/v1/whoami", CTL_ROLE_INVOKER, r_whoami, body_json},
    {"POST", "/v1/deploy", CTL_ROLE_DEVELOPER, r_deploy, body_spec},
    {"GET", "/v1/apps", CTL_ROLE_INVOKER, r_apps, body_json},
    {"POST", "/v1/apps/*/stop", CTL_ROLE_DEVELOPER, r_app_stop, body_json},
    {"GET", "/v1/apps/*/logs", CTL_ROLE_DEVELOPER, r_app_logs, body_json},
    {"GET", "/v1/functions", CTL_ROLE_INVOKER, r_functions, body_json},
    {"GET", "/v1/functions/*/*", CTL_ROLE_INVOKER, r_function, body_json},
    {"POST", "/v1/functions/*/*/call", CTL_ROLE_INVOKER, r_call, body_input},
    {"POST", "/v1/functions/*/*/spawn", CTL_ROLE_INVOKER, r_call, body_input},
    {"POST", "/v1/functions/*/*/generate", CTL_ROLE_INVOKER, r_generate, body_input},
    {"POST", "/v1/functions/*/*/map", CTL_ROLE_INVOKER, r_map, body_ndjson},
    {"GET", "/v1/functions/*/*/logs", CTL_ROLE_DEVELOPER, r_logs, body_json},
    {"GET", "/v1/functions/*/*/calls", CTL_ROLE_DEVELOPER, r_calls_list, body_json},
    {"GET", "/v1/calls/*", CTL_ROLE_INVOKER, r_result, body_json},
    {"GET", "/v1/calls/*/status", CTL_ROLE_INVOKER, r_status, body_json},
    {"GET", "/v1/calls/*/items", CTL_ROLE_INVOKER, r_items, body_json},
    {"POST", "/v1/calls/*/cancel", CTL_ROLE_INVOKER, r_cancel, body_json},
    {"GET", "/v1/containers", CTL_ROLE_DEVELOPER, r_containers, body_json},
    {"GET", "/v1/usage", CTL_ROLE_DEVELOPER, r_usage, body_json},
    {"GET", "/v1/images", CTL_ROLE_DEVELOPER, r_images, body_json},
    {"POST", "/v1/images", CTL_ROLE_DEVELOPER, r_image_add, body_json},
    {"POST", "/v1/images/build", CTL_ROLE_DEVELOPER, r_image_build, body_spec},
    {"POST", "/v1/images/gc", CTL_ROLE_ADMIN, r_image_gc, body_json},
    {"GET", "/v1/images/*", CTL_ROLE_DEVELOPER, r_image_inspect, body_json},
    {"DELETE", "/v1/images/*", CTL_ROLE_DEVELOPER, r_image_rm, body_json},
    {"GET", "/v1/secrets", CTL_ROLE_DEVELOPER, r_secrets, body_json},
    {"PUT", "/v1/secrets/*", CTL_ROLE_DEVELOPER, r_secret_put, body_json},
    {"DELETE", "/v1/secrets/*", CTL_ROLE_DEVELOPER, r_secret_delete, body_json},
    {"POST", "/v1/blobs/missing", CTL_ROLE_DEVELOPER, r_blobs_missing, body_json},
    {"PUT", "/v1/blobs/*", CTL_ROLE_DEVELOPER, r_blob_put, body_bytes},
    {"POST", "/v1/mounts", CTL_ROLE_DEVELOPER, r_mounts, body_json},
    {"GET", "/v1/workspaces", CTL_ROLE_ADMIN, r_workspaces, body_json},
    {"POST", "/v1/workspaces", CTL_ROLE_ADMIN, r_workspace_create, body_json},
    {"GET", "/v1/workspaces/*", CTL_ROLE_ADMIN, r_workspace, body_json},
    {"PUT", "/v1/workspaces/*/quotas", CTL_ROLE_ADMIN, r_workspace_quotas, body_json},
    {"GET", "/v1/tokens", CTL_ROLE_ADMIN, r_tokens, body_json},
    {"POST", "/v1/tokens", CTL_ROLE_ADMIN, r_token_create, body_json},
    {"DELETE", "/v1/tokens/*", CTL_ROLE_ADMIN, r_token_revoke, body_json},
    {"GET", "/v1/dicts", CTL_ROLE_INVOKER, r_kv_list, body_json},
    {"GET", "/v1/dicts/*", CTL_ROLE_INVOKER, r_kv_lookup, body_json},
    {"PUT", "/v1/dicts/*", CTL_ROLE_INVOKER, r_kv_lookup, body_json},
    {"DELETE", "/v1/dicts/*", CTL_ROLE_DEVELOPER, r_kv_delete, body_json},
    {"POST", "/v1/dicts/*/*", CTL_ROLE_INVOKER, r_kv_op, body_json},
    {"GET", "/v1/queues", CTL_ROLE_INVOKER, r_kv_list, body_json},
    {"GET", "/v1/queues/*", CTL_ROLE_INVOKER, r_kv_lookup, body_json},
    {"PUT", "/v1/queues/*", CTL_ROLE_INVOKER, r_kv_lookup, body_json},
    {"DELETE", "/v1/queues/*", CTL_ROLE_DEVELOPER, r_kv_delete, body_json},
    {"POST", "/v1/queues/*/*", CTL_ROLE_INVOKER, r_kv_op, body_json},
    {"GET", "/v1/volumes", CTL_ROLE_INVOKER, r_volume_list, body_json},
    {"GET", "/v1/volumes/*", CTL_ROLE_INVOKER, r_volume_lookup, body_json},
    {"PUT", "/v1/volumes/*", CTL_ROLE_INVOKER, r_volume_lookup, body_json},
    {"DELETE", "/v1/volumes/*", CTL_ROLE_DEVELOPER, r_volume_delete, body_json},
    {"GET", "/v1/volumes/*/entries", CTL_ROLE_INVOKER, r_volume_entries, body_json},
    {"GET", "/v1/volumes/*/file", CTL_ROLE_INVOKER, r_volume_file, body_json},
    {"POST", "/v1/volumes/*/files", CTL_ROLE_DEVELOPER, r_volume_op, body_json},
    {"POST", "/v1/volumes/*/*", CTL_ROLE_INVOKER, r_volume_op, body_json},
};

/* Splits the decoded path into segments; returns the count or -1 if too many/too long. */
static int split_path(const char *path, char segs[API_PATH_MAX_SEGS][128])
{
    int n = 0;
    const char *p = path;
    while (*p == '/')
        p++;
    while (*p) {
        if (n == API_PATH_MAX_SEGS)
            return -1;
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len >= 128)
            return -1;
        memcpy(segs[n], p, len);
        segs[n][len] = '\0';
        n++;
        p += len;
        while (*p == '/')
            p++;
    }
    return n;
}

/* Whether route pattern (segments after the leading '/') matches segs[0..n). */
static bool route_matches(const char *pattern, char segs[][128], int n)
{
    const char *p = pattern + 1;
    for (int i = 0; i < n; i++) {
        if (!*p)
            return false;
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (!(len == 1 && p[0] == '*') && (strlen(segs[i]) != len || memcmp(segs[i], p, len)))
            return false;
        p += len;
        if (*p == '/')
            p++;
    }
    return *p == '\0';
}

/* The bearer token of req, or NULL. */
/* A request with a body (Content-Length above 0, or chunked) must name one of the
 * route's media types; else 415 unsupported_media_type naming them. */
static bool check_body_type(struct api_conn *conn, struct http_request *req, const struct api_route *route)
{
    if (!req->chunked && req->content_length <= 0)
        return true;
    const char *const *types = route->body;
    const char *ct = http_request_header(req, "Content-Type");
    for (size_t i = 0; types[i]; i++)
        if (http_media_type_is(ct, types[i]))
            return true;
    /* Echoed as printable ASCII only: the message is JSON and may be shown in a terminal. */
    char got[84] = "";
    size_t k = 0;
    for (const char *p = ct ? ct : ""; *p && k < sizeof got - 4; p++)
        got[k++] = *p >= 0x20 && *p < 0x7f ? *p : '?';
    got[k] = '\0';
    char msg[400];
    int len = snprintf(msg, sizeof msg, "%s %s takes a body of Content-Type %s", req->method, req->path, types[0]);
    for (size_t i = 1; types[i] && len > 0 && (size_t)len < sizeof msg; i++)
        len += snprintf(msg + len, sizeof msg - (size_t)len, " or %s", types[i]);
    if (len > 0 && (size_t)len < sizeof msg)
        snprintf(msg + len, sizeof msg - (size_t)len, ct ? "; got \"%s\"" : "; the request has none", got);
    api_conn_error(conn, 415, "unsupported_media_type", msg, "Content-Type");
    return false;
}

/* The route of req in the table (NULL: none); *allowed: another method its path takes. */
static const struct api_route *route_find(struct http_request *req, char segs[API_PATH_MAX_SEGS][128], int n,
                                          const char **allowed)
{
    *allowed = NULL;
    for (size_t i = 0; i < ARRAY_LEN(api_route_table); i++) {
        if (!route_matches(api_route_table[i].path, segs, n))
            continue;
        if (!strcmp(api_route_table[i].method, req->method))
            return &api_route_table[i];
        if (!*allowed)
            *allowed = api_route_table[i].method;
    }
    return NULL;
}

void api_routes_handle(struct api_conn *conn, struct http_request *req, void *ud)
{
    struct api_ctx *ctx = ud;
    char segs[API_PATH_MAX_SEGS][128];
    int n = split_path(req->path, segs);
    const char *allowed;
    const struct api_route *route = route_find(req, segs, n, &allowed);
    /* Counted under its route whatever the answer (gust_http_requests_total). */
    if (route)
        api_conn_set_tag(conn, (int)(route - api_route_table));
    const char *code;
    char why[600];
    int status = api_guard_check(&ctx->guard, req, &code, why, sizeof why);
    if (status) {
        api_conn_error(conn, status, code, why, NULL);
        return;
    }
    /* The dashboard's page and scripts (/ui) are the one exemption from the token, and
     * are outside the route table (tests/integration/test_authz.py reads it): they hold
     * no data, and every API call the page makes sends the user's token. */
    if (api_ui_handle(conn, req))
        return;
    /* Who asks comes first: without a valid token nothing else is answered, not even
     * whether a route exists. The token itself is never logged or echoed. */
    struct ctl_principal who;
    int ar = ctl_authenticate(ctx->ctl, api_bearer_token(req), &who);
    if (ar < 0) {
        api_conn_error(conn, 401, "unauthorized",
                       ar == -EKEYEXPIRED ? "the token has expired; ask an admin for a new one (gust token create)"
                       : api_bearer_token(req)
                           ? "the token is not valid (revoked, or not one of this gustd's); send a valid one as "
                             "Authorization: Bearer <token>"
                           : "send a token as Authorization: Bearer <token> (the CLI and SDK read $GUST_TOKEN, then "
                             "~/.config/gust/token; gustd's admin token is in <data-dir>/admin.token)",
                       NULL);
        return;
    }
    if (!route && !allowed && (n < 2 || strcmp(segs[0], "v1"))) {
        api_conn_error(conn, 404, "not_found", "no such endpoint; the API lives under /v1 (see docs/API.md)", NULL);
        return;
    }
    if (!route) {
        if (allowed) {
            char msg[128];
            snprintf(msg, sizeof msg, "this endpoint takes %s, not %.16s", allowed, req->method);
            api_conn_error(conn, 405, "method_not_allowed", msg, NULL);
        } else {
            api_conn_error(conn, 404, "not_found", "no such endpoint (see docs/API.md for the routes under /v1)",
                           NULL);
        }
        return;
    }
    if (who.role < route->role) {
        char msg[200];
        snprintf(msg, sizeof msg, "%s %s needs the %s role; this token has %s", route->method, route->path,
                 ctl_role_name(route->role), ctl_role_name(who.role));
        api_conn_error(conn, 403, "forbidden", msg, NULL);
        return;
    }
    if (ctl_shutting_down(ctx->ctl) && strcmp(req->method, "GET")) {
        api_conn_error(conn, 503, "shutting_down", "gustd is shutting down; retry shortly", NULL);
        return;
    }
    if (!check_body_type(conn, req, route))
        return;
    struct api_rq r = {.ctx = ctx, .conn = conn, .req = req, .who = &who, .segs = segs, .nsegs = n};
    route->handle(&r);
}

void api_routes_metrics_handle(struct api_conn *conn, struct http_request *req, void *ud)
{
    struct api_ctx *ctx = ud;
    char segs[API_PATH_MAX_SEGS][128];
    int n = split_path(req->path, segs);
    const char *allowed;
    const struct api_route *route = route_find(req, segs, n, &allowed);
    bool metrics = route && route->handle == r_metrics;
    if (metrics)
        api_conn_set_tag(conn, (int)(route - api_route_table));
    const char *code;
    char why[600];
    int status = api_guard_check(&ctx->guard, req, &code, why, sizeof why);
    if (status) {
        api_conn_error(conn, status, code, why, NULL);
        return;
    }
    if (!metrics && n == 1 && !strcmp(segs[0], "metrics")) {
        api_conn_error(conn, 405, "method_not_allowed", "this endpoint takes GET", NULL);
        return;
    }
    if (!metrics) {
        api_conn_error(conn, 404, "not_found", "this listener (--metrics-listen) serves GET /metrics only", NULL);
        return;
    }
    metrics_respond(ctx, conn);
}

void api_routes_count(void *ud, int tag, int status)
{
    struct api_ctx *ctx = ud;
    size_t row = tag >= 0 && (size_t)tag < ARRAY_LEN(api_route_table) ? (size_t)tag : ARRAY_LEN(api_route_table);
    if (status >= API_STATUS_MIN && status < API_STATUS_MIN + API_STATUS_SPAN)
        ctx->http_counts[row][status - API_STATUS_MIN]++;
}

/* gust_http_requests_total: a sample per route, method and status answered so far. */
static void write_http_metrics(struct api_ctx *ctx, struct buf *out)
{
    static const char name[] = "gust_http_requests_total";
    ctl_metrics_family(out, name, "counter",
                       "API responses by route (the route's pattern, \"other\" when none matched), method and "
                       "status.");
    for (size_t row = 0; row <= ARRAY_LEN(api_route_table); row++) {
        bool known = row < ARRAY_LEN(api_route_table);
        for (int st = 0; st < API_STATUS_SPAN; st++) {
            if (!ctx->http_counts[row][st])
                continue;
            char status[16];
            snprintf(status, sizeof status, "%d", st + API_STATUS_MIN);
            const char *labels[] = {"method", known ? api_route_table[row].method : "other", "route",
                                    known ? api_route_table[row].path : "other", "status", status};
            ctl_metrics_sample(out, name, labels, 3, (double)ctx->http_counts[row][st]);
        }
    }
}

struct api_ctx *api_routes_new(struct ctl *ctl, const struct api_guard *guard)
{
    struct api_ctx *ctx = xcalloc(1, sizeof *ctx);
    ctx->ctl = ctl;
    ctx->http_counts = xcalloc(ARRAY_LEN(api_route_table) + 1, sizeof *ctx->http_counts);
    if (guard)
        ctx->guard = *guard;
    return ctx;
}

void api_routes_free(struct api_ctx *ctx)
{
    if (!ctx)
        return;
    free(ctx->http_counts);
    free(ctx);
}
