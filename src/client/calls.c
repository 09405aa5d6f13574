/* libgust API calls: deploy, call, spawn, result, cancel, map. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cleanup.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "client/internal.h"

/* Extra seconds the client waits beyond a server-side wait. */
#define WAIT_GRACE_S 30.0

/* Checks the common arguments of gust_{action} (the client, input in[0..len)) and
 * builds its path "/v1/functions/{app}/{fn}/{action}". Returns 0 or a negative
 * errno (err). */
static int fn_path(struct buf *b, const gust_client *c, const char *app, const char *fn, const char *action,
                   const void *in, size_t len, gust_error *err)
{
    if (!c || (len && !in))
        return gust_fail_(err, GUST_ERR_ARG, EINVAL, "gust_%s: bad arguments", action);
    if (!app || !*app || !fn || !*fn)
        return gust_fail_(err, GUST_ERR_ARG, EINVAL, "app and function names must be non-empty");
    buf_append_str(b, "/v1/functions/");
    gust_path_escape_(b, app);
    buf_append_str(b, "/");
    gust_path_escape_(b, fn);
    buf_append_str(b, "/");
    buf_append_str(b, action);
    return 0;
}

/* Builds "/v1/calls/{id}{suffix}". */
static int call_path(struct buf *b, const char *call_id, const char *suffix, gust_error *err)
{
    if (!call_id || !*call_id)
        return gust_fail_(err, GUST_ERR_ARG, EINVAL, "call id must be non-empty");
    buf_append_str(b, "/v1/calls/");
    gust_path_escape_(b, call_id);
    buf_append_str(b, suffix);
    return 0;
}

/* A POST of input bytes in[0..len) to path, with deadline timeout_s. */
static struct gust_req input_req(const char *path, const void *in, size_t len, double timeout_s)
{
    return (struct gust_req){.method = "POST",
                             .path = path,
                             .content_type = "application/octet-stream",
                             .body = in,
                             .len = len,
                             .timeout_s = timeout_s};
}

/* Client deadline for a server-side wait of wait_s (< 0: unbounded). */
static double wait_deadline(const gust_client *c, double wait_s)
{
    if (wait_s < 0)
        return 0;
    return wait_s + (c->timeout_s > 0 ? c->timeout_s : WAIT_GRACE_S);
}

/* Appends "?{name}={seconds}" to path unless seconds is negative (or, when
 * skip_zero, zero). */
static void add_seconds_query(struct buf *path, const char *name, double seconds, bool skip_zero)
{
    if (seconds < 0 || (skip_zero && seconds == 0))
        return;
    /* A plain %s and %g cannot fail to format. */
    buf_printf(path, "?%s=%g", name, seconds);
}

/* gust_exchange_ that frees resp's body when it fails. */
static int exchange(gust_client *c, const struct gust_req *req, struct gust_resp *resp, gust_error *err)
{
    int r = gust_exchange_(c, req, resp, err);
    if (r < 0)
        buf_free(&resp->body);
    return r;
}

/* Reads {"call_id", "status"} of a 2xx JSON answer into resp's fields. */
static void parse_call_json(struct gust_resp *resp)
{
    json_t *root = resp->body.len ? json_loadb(resp->body.data, resp->body.len, 0, NULL) : NULL;
    json_t *id = json_object_get(root, "call_id"), *st = json_object_get(root, "status");
    if (json_is_string(id))
        gust_copy_(resp->call_id, sizeof resp->call_id, json_string_value(id));
    if (json_is_string(st))
        gust_copy_(resp->call_status, sizeof resp->call_status, json_string_value(st));
    json_decref(root);
}

/* Hands resp's body out as a never-NULL malloc'd buffer (resp keeps none). */
static void take_output(struct gust_resp *resp, void **out, size_t *out_len)
{
    size_t n = 0;
    char *data = buf_steal(&resp->body, &n);
    if (!data)
        data = xcalloc(1, 1);
    if (out)
        *out = data;
    else
        free(data);
    if (out_len)
        *out_len = n;
}

int gust_deploy(gust_client *c, const char *spec, size_t len, const char *format, char **response_json,
                gust_error *err)
{
    if (response_json)
        *response_json = NULL;
    if (!c || !spec || !len)
        return gust_fail_(err, GUST_ERR_ARG, EINVAL, "empty app spec");
    if (!format) {
        size_t i = 0;
        while (i < len && (spec[i] == ' ' || spec[i] == '\t' || spec[i] == '\r' || spec[i] == '\n'))
            i++;
        format = i < len && spec[i] == '{' ? "json" : "toml";
    }
    const char *ct;
    if (!strcmp(format, "json"))
        ct = "application/json";
    else if (!strcmp(format, "toml"))
        ct = "application/toml";
    else
        return gust_fail_(err, GUST_ERR_ARG, EINVAL, "spec format must be \"json\" or \"toml\", got \"%s\"", format);
    int status;
    size_t n;
    return gust_request(c, "POST", "/v1/deploy", ct, spec, len, &status, response_json, &n, err);
}

int gust_call(gust_client *c, const char *app, const char *fn, const void *in, size_t len, double timeout_s,
              void **out, size_t *out_len, char call_id[64], gust_error *err)
{
    if (out)
        *out = NULL;
    if (out_len)
        *out_len = 0;
    if (call_id)
        call_id[0] = '\0';
    AUTO_BUF struct buf path = {0};
    int r = fn_path(&path, c, app, fn, "call", in, len, err);
    if (r < 0)
        return r;
    add_seconds_query(&path, "timeout", timeout_s, false);
    struct gust_req req = input_req(path.data, in, len, wait_deadline(c, timeout_s));
    struct gust_resp resp = {0};
    if ((r = exchange(c, &req, &resp, err)) < 0)
        return r;
    if (resp.status == 202) {
        parse_call_json(&resp);
        buf_free(&resp.body);
        if (call_id)
            gust_copy_(call_id, 64, resp.call_id);
        r = gust_fail_(err, GUST_ERR_PENDING, EINPROGRESS, "call %s still %s after %g s", resp.call_id,
                       resp.call_status[0] ? resp.call_status : "running", timeout_s);
        if (err) {
            err->http_status = 202;
            gust_copy_(err->call_id, sizeof err->call_id, resp.call_id);
            gust_copy_(err->status, sizeof err->status, resp.call_status[0] ? resp.call_status : "running");
            gust_copy_(err->code, sizeof err->code, "pending");
        }
        return r;
    }
    if (resp.status >= 300 || resp.status < 200) {
        r = gust_error_from_response_(&resp, err);
        if (call_id && err)
            gust_copy_(call_id, 64, err->call_id);
        buf_free(&resp.body);
        return r;
    }
    if (call_id)
        gust_copy_(call_id, 64, resp.call_id);
    take_output(&resp, out, out_len);
    return 0;
}

int gust_spawn(gust_client *c, const char *app, const char *fn, const void *in, size_t len, char call_id[64],
               gust_error *err)
{
    if (call_id)
        call_id[0] = '\0';
    AUTO_BUF struct buf path = {0};
    int r = fn_path(&path, c, app, fn, "spawn", in, len, err);
    if (r < 0)
        return r;
    struct gust_req req = input_req(path.data, in, len, c->timeout_s);
    struct gust_resp resp = {0};
    r = gust_exchange_(c, &req, &resp, err);
    if (r >= 0 && resp.status >= 300)
        r = gust_error_from_response_(&resp, err);
    if (r >= 0) {
        parse_call_json(&resp);
        if (!resp.call_id[0])
            r = gust_fail_(err, GUST_ERR_TRANSPORT, EPROTO, "spawn answer (HTTP %d) carries no call_id", resp.status);
        else if (call_id)
            gust_copy_(call_id, 64, resp.call_id);
    }
    buf_free(&resp.body);
    return r;
}

int gust_result(gust_client *c, const char *call_id, double wait_s, void **out, size_t *out_len, int *done,
                gust_error *err)
{
    if (out)
        *out = NULL;
    if (out_len)
        *out_len = 0;
    if (done)
        *done = 0;
    if (!c)
        return gust_fail_(err, GUST_ERR_ARG, EINVAL, "gust_result: no client");
    if (wait_s < 0)
        wait_s = 0;
    AUTO_BUF struct buf path = {0};
    int r = call_path(&path, call_id, "", err);
    if (r < 0)
        return r;
    add_seconds_query(&path, "wait", wait_s, true);
    struct gust_req req = {.method = "GET", .path = path.data, .timeout_s = wait_deadline(c, wait_s)};
    struct gust_resp resp = {0};
    if ((r = exchange(c, &req, &resp, err)) < 0)
        return r;
    if (resp.status == 202) {
        parse_call_json(&resp);
        if (err) {
            memset(err, 0, sizeof *err);
            err->http_status = 202;
            gust_copy_(err->call_id, sizeof err->call_id, resp.call_id[0] ? resp.call_id : call_id);
            gust_copy_(err->status, sizeof err->status, resp.call_status[0] ? resp.call_status : "pending");
        }
        buf_free(&resp.body);
        return 0;
    }
    if (resp.status >= 300 || resp.status < 200) {
        r = gust_error_from_response_(&resp, err);
        if (done && (resp.status == 502 || resp.status == 504 || r == -ECANCELED))
            *done = 1; /* the call finished, unsuccessfully */
        buf_free(&resp.body);
        return r;
    }
    if (done)
        *done = 1;
    take_output(&resp, out, out_len);
    return 0;
}

int gust_cancel(gust_client *c, const char *call_id, gust_error *err)
{
    if (!c)
        return gust_fail_(err, GUST_ERR_ARG, EINVAL, "gust_cancel: no client");
    AUTO_BUF struct buf path = {0};
    int r = call_path(&path, call_id, "/cancel", err);
    if (r < 0)
        return r;
    int status;
    return gust_request(c, "POST", path.data, NULL, NULL, 0, &status, NULL, NULL, err);
}

/* ---------- map ---------- */

struct map_ctx {
    gust_map_cb cb;
    void *ud;
    struct buf line; /* partial line carried between chunks */
    bool done_seen;
    bool bad;        /* a malformed line was seen */
    bool user_stop;  /* cb returned non-zero */
    char bad_msg[256];
};

/* Handles one complete NDJSON line. Returns 0 to go on, 1 to stop. */
static int map_line(struct map_ctx *m, const char *s, size_t n)
{
    while (n && (s[n - 1] == '\r' || s[n - 1] == ' '))
        n--;
    if (!n)
        return 0;
    json_error_t je;
    json_t *o = json_loadb(s, n, 0, &je);
    if (!json_is_object(o)) {
        snprintf(m->bad_msg, sizeof m->bad_msg, "map stream: malformed line: %.80s", s);
        m->bad = true;
        json_decref(o);
        return 1;
    }
    if (json_is_true(json_object_get(o, "done"))) {
        m->done_seen = true;
        json_decref(o);
        return 0;
    }
    json_t *ix = json_object_get(o, "index");
    if (!json_is_integer(ix) || json_integer_value(ix) < 0) {
        snprintf(m->bad_msg, sizeof m->bad_msg, "map stream: line without an index: %.80s", s);
        m->bad = true;
        json_decref(o);
        return 1;
    }
    const char *call_id = json_string_value(json_object_get(o, "call_id"));
    const char *status = json_string_value(json_object_get(o, "status"));
    json_t *eo = json_object_get(o, "error");
    const char *ecode = json_string_value(json_object_get(eo, "code"));
    const char *emsg = json_string_value(json_object_get(eo, "message"));
    json_t *out = json_object_get(o, "output");
    json_t *out64 = json_object_get(o, "output_b64");
    AUTO_FREE char *decoded = NULL;
    const void *data = NULL;
    size_t dlen = 0;
    if (json_is_string(out)) {
        data = json_string_value(out);
        dlen = json_string_length(out);
    } else if (json_is_string(out64)) {
        if (base64_decode(json_string_value(out64), json_string_length(out64), &decoded, &dlen) < 0) {
            snprintf(m->bad_msg, sizeof m->bad_msg, "map stream: bad output_b64 for input %lld",
                     (long long)json_integer_value(ix));
            m->bad = true;
            json_decref(o);
            return 1;
        }
        data = decoded;
    }
    if (!status)
        status = eo ? "failed" : "succeeded";
    if (eo && !ecode)
        ecode = "unknown";
    if (eo && !emsg)
        emsg = "";
    int r = m->cb(m->ud, (size_t)json_integer_value(ix), call_id ? call_id : "", status, data, dlen, eo ? ecode : NULL,
                  eo ? emsg : NULL);
    json_decref(o);
    if (r) {
        m->user_stop = true;
        return 1;
    }
    return 0;
}

static int map_data(void *ud, const char *data, size_t len)
{
    struct map_ctx *m = ud;
    while (len) {
        const char *nl = memchr(data, '\n', len);
        if (!nl) {
            if (m->line.len + len > GUST_MAX_RESPONSE_BODY) {
                snprintf(m->bad_msg, sizeof m->bad_msg, "map stream: line too long");
                m->bad = true;
                return 1;
            }
            buf_append(&m->line, data, len);
            return 0;
        }
        size_t take = (size_t)(nl - data);
        int r;
        if (m->line.len) {
            buf_append(&m->line, data, take);
            r = map_line(m, m->line.data, m->line.len);
            buf_reset(&m->line);
        } else {
            r = map_line(m, data, take);
        }
        if (r)
            return 1;
        data = nl + 1;
        len -= take + 1;
    }
    return 0;
}

int gust_map(gust_client *c, const char *app, const char *fn, const char *ndjson_inputs, size_t len, int ordered,
             gust_map_cb cb, void *ud, gust_error *err)
{
    if (!cb)
        return gust_fail_(err, GUST_ERR_ARG, EINVAL, "gust_map: bad arguments");
    AUTO_BUF struct buf path = {0};
    int r = fn_path(&path, c, app, fn, "map", ndjson_inputs, len, err);
    if (r < 0)
        return r;
    if (ordered)
        buf_append_str(&path, "?ordered=1");
    struct map_ctx m = {.cb = cb, .ud = ud};
    r = gust_request_stream(c, "POST", path.data, "application/x-ndjson", ndjson_inputs, len, map_data, &m, err);
    if (r == 0 && m.line.len && !m.done_seen)
        map_line(&m, m.line.data, m.line.len); /* last line without its newline */
    buf_free(&m.line);
    if (m.bad)
        return gust_fail_(err, GUST_ERR_TRANSPORT, EPROTO, "%s", m.bad_msg);
    if (m.user_stop)
        return gust_fail_(err, GUST_ERR_NONE, ECANCELED, "map stopped by the callback");
    if (r < 0)
        return r;
    if (!m.done_seen)
        return gust_fail_(err, GUST_ERR_TRANSPORT, EPROTO, "map stream from gustd at %s ended before its final line",
                          gust_client_addr(c));
    return 0;
}
