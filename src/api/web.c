/* The web listener's handler (api/web.h): route, authorise, submit the request as a
 * call (proto/web.h's envelope), stream the call's items back as the response.
 *
 * Authorisation order, so that an unauthenticated client learns nothing about
 * endpoints that are not public: Host guard (403) → route (404 only when the URL has no
 * endpoint form) → the endpoint looked up in the URL's workspace; a public one is served
 * as it is; for anything else (a private endpoint or none) the token is checked first:
 * none or invalid → 401, another workspace's → 403, and only then "no such endpoint" →
 * 404. */
#include "api/web.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/log.h"
#include "base/xalloc.h"
#include "proto/web.h"

/* While this much of a response is waiting for the client, its call's next items
 * are not taken (so the container's item window fills and it waits: backpressure);
 * the output is looked at again every API_WEB_DRAIN_POLL_MS. */
#define API_WEB_PAUSE (1024u * 1024u)
#define API_WEB_DRAIN_POLL_MS 5u
/* A tunnel's (or a streamed body's) client bytes that control has no room for (its
 * container is behind) wait in the kernel; whether room opened is looked at this
 * often. The same 5 ms as the other way: short next to a person's typing, long next to
 * a loop turn. */
#define API_WEB_ROOM_POLL_MS 5u

struct api_web {
    struct ev_loop *loop;
    struct ctl *ctl;
    struct api_guard guard;
    const char *domain;
    bool tls;
    uint32_t queue_ms;
};

/* One request in flight: from its submit to its response's end (or its client's). */
struct web_req {
    struct api_web *w;
    struct api_conn *conn;
    char call_id[64];
    struct ctl_items_waiter *waiter;
    uint64_t next;              /* index of the next item to send on */
    uint64_t queue_timer, drain_timer, room_timer;
    bool upgrade;               /* a WebSocket handshake: a 101 makes the connection a tunnel */
    bool tunnel;                /* the 101 went out: items are raw bytes, the client's go to the call */
    bool head_sent;
    bool pulling;               /* inside ctl_items_wait */
    bool again;                 /* a synchronous answer asks for another pull */
    bool finished;
};

struct api_web *api_web_new(struct ev_loop *loop, struct ctl *ctl, const struct api_web_config *cfg)
{
    struct api_web *w = xcalloc(1, sizeof *w);
    w->loop = loop;
    w->ctl = ctl;
    if (cfg->guard)
        w->guard = *cfg->guard;
    w->domain = cfg->domain && cfg->domain[0] ? cfg->domain : NULL;
    w->tls = cfg->tls;
    w->queue_ms = cfg->queue_ms ? cfg->queue_ms : API_WEB_QUEUE_MS_DEFAULT;
    return w;
}

void api_web_free(struct api_web *w)
{
    free(w);
}

/* Whether Host names this gustd: what the API's guard allows, or the web domain itself. */
static bool host_allowed(const struct api_guard *guard, const char *domain, const char *host)
{
    if (api_guard_host_ok(guard, host))
        return true;
    size_t n = strcspn(host, ":");
    return domain && strlen(domain) == n && !strncasecmp(host, domain, n);
}

int api_web_route(const struct api_guard *guard, const char *domain, const struct http_request *req,
                  struct api_web_route *out)
{
    memset(out, 0, sizeof *out);
    const char *host = http_request_header(req, "Host");
    if (domain && host) {
        int r = web_split_host(host, domain, out->ws, out->app_label, sizeof out->app_label);
        if (r == 0) {
            out->by_host = true;
            out->rest = req->path[0] ? req->path : "/";
            return 0;
        }
        if (r != -ENOENT)
            return -ENOENT;
    }
    if (host && !host_allowed(guard, domain, host))
        return -EACCES;
    if (web_split_path(req->path, out->ws, out->app, out->label, sizeof out->app, &out->rest) < 0)
        return -ENOENT;
    snprintf(out->root_path, sizeof out->root_path, "/%s/%s/%s", out->ws, out->app, out->label);
    if (!out->rest[0])
        out->rest = "/";
    return 0;
}

/* ---------- the response ---------- */

static void req_free(struct web_req *r)
{
    struct ctl *ctl = r->w->ctl;
    struct ev_loop *loop = r->w->loop;
    if (r->waiter)
        ctl_items_waiter_cancel(ctl, r->waiter);
    if (r->queue_timer)
        ev_timer_cancel(loop, r->queue_timer);
    if (r->drain_timer)
        ev_timer_cancel(loop, r->drain_timer);
    if (r->room_timer)
        ev_timer_cancel(loop, r->room_timer);
    api_conn_set_close_cb(r->conn, NULL, NULL);
    api_conn_unref(r->conn);
    free(r);
}

/* The call is over for this request; the client's connection goes on. */
static void req_done(struct web_req *r)
{
    r->finished = true;
    if (!r->pulling)
        req_free(r);
}

static void web_error(struct api_conn *conn, int status, const char *code, const char *msg)
{
    if (status == 503) {
        json_t *j = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
        api_conn_respond_json(conn, status, j, "Retry-After: 1\r\n");
        return;
    }
    api_conn_error(conn, status, code, msg, NULL);
}

/* What a client is told of a call that ended before the response started. */
static void answer_failed(struct web_req *r, const struct ctl_call_view *v)
{
    const char *code = v->error_code ? v->error_code : "";
    if (v->state == CTL_CALL_TIMED_OUT) {
        web_error(r->conn, 504, "timeout", "the endpoint did not answer within its function's timeout");
    } else if (v->state == CTL_CALL_CANCELLED) {
        web_error(r->conn, 503, "unavailable", "the request was cancelled (gustd is stopping); retry shortly");
    } else if (!strcmp(code, "function_error")) {
        web_error(r->conn, 500, "handler_error",
                  "the endpoint's handler raised an exception; its traceback is in the function's logs (gust logs)");
    } else if (!strcmp(code, "crashed") || !strcmp(code, "oom") || !strcmp(code, "exit_status") ||
               !strcmp(code, "spawn_failed")) {
        char msg[200];
        snprintf(msg, sizeof msg, "the endpoint's container ended before it answered (%s); see gust logs", code);
        web_error(r->conn, 502, "container_failed", msg);
    } else if (v->state == CTL_CALL_SUCCEEDED) {
        web_error(r->conn, 502, "bad_response", "the endpoint ended without a response");
    } else {
        char msg[200];
        snprintf(msg, sizeof msg, "the endpoint failed (%.32s); see gust logs", code);
        web_error(r->conn, 500, "endpoint_failed", msg);
    }
}

static void pull(struct web_req *r);

/* ---------- the client's bytes: tunnels (WebSockets) and streamed bodies ---------- */

static void room_fire(struct ev_loop *loop, void *data)
{
    struct web_req *r = data;
    r->room_timer = 0;
    if (ctl_call_input_room(r->w->ctl, r->call_id) > 0) {
        if (r->tunnel)
            api_conn_tunnel_resume(r->conn);
        else
            api_conn_body_resume(r->conn);
    } else {
        r->room_timer = ev_timer_add(loop, API_WEB_ROOM_POLL_MS, room_fire, r);
    }
}

/* The client's bytes after the 101, or its request body after the head, become the
 * call's input stream, as fast as control takes them (its room): the rest waits,
 * unread, until room opens (backpressure on the client). len 0 (the tunnel's EOF, the
 * body's end) ends the stream. An api_tunnel_fn and an api_body_fn. */
static size_t on_client_bytes(struct api_conn *c, const void *data, size_t len, void *ud)
{
    struct web_req *r = ud;
    struct ctl_error e;
    (void)c;
    if (r->finished)
        return len; /* the call is over: nobody reads them */
    if (!len) {
        if (ctl_call_input_more(r->w->ctl, r->call_id, NULL, 0, &e) < 0)
            log_debug("web", "call %s: end of its input stream: %s", r->call_id, e.message);
        return 0;
    }
    size_t room = ctl_call_input_room(r->w->ctl, r->call_id);
    size_t n = len < room ? len : room;
    if (n && ctl_call_input_more(r->w->ctl, r->call_id, data, n, &e) < 0) {
        log_debug("web", "call %s: its input stream: %s", r->call_id, e.message);
        return len;
    }
    if (n < len && !r->room_timer)
        r->room_timer = ev_timer_add(r->w->loop, API_WEB_ROOM_POLL_MS, room_fire, r);
    return n;
}

static void on_body_end(struct api_conn *c, void *ud)
{
    on_client_bytes(c, NULL, 0, ud);
}

/* Starts the response from item 0; -1 when the head is malformed (502 sent). */
static int send_head(struct web_req *r, const void *data, size_t len)
{
    struct web_head h;
    const char *why;
    if (web_head_decode(data, len, &h, &why) < 0) {
        log_warn("web", "call %s: bad response head: %s", r->call_id, why);
        char msg[200];
        snprintf(msg, sizeof msg, "the endpoint's runner sent a malformed response head: %s", why);
        web_error(r->conn, 502, "bad_response", msg);
        return -1;
    }
    if (h.status == 101 && !r->upgrade) {
        log_warn("web", "call %s: a 101 answers a request that asked for no upgrade", r->call_id);
        web_error(r->conn, 502, "bad_response",
                  "the endpoint's runner switched protocols (101) on a request that asked for no upgrade");
        return -1;
    }
    bool switching = h.status == 101;
    AUTO_BUF struct buf hdrs = {0};
    bool have_upgrade = false;
    for (size_t i = 0; i < h.nheaders; i++) {
        const struct web_header *x = &h.headers[i];
        /* A 101 names the protocol it switches to: the runner's Upgrade goes out. */
        bool upgrade_hdr = x->name_len == 7 && !strncasecmp(x->name, "Upgrade", 7);
        if (web_header_reserved(x->name, x->name_len) && !(switching && upgrade_hdr))
            continue;
        have_upgrade |= upgrade_hdr;
        buf_append(&hdrs, x->name, x->name_len);
        buf_append(&hdrs, ": ", 2);
        buf_append(&hdrs, x->value, x->value_len);
        buf_append(&hdrs, "\r\n", 2);
    }
    r->head_sent = true;
    if (switching) {
        buf_printf(&hdrs, "%sConnection: Upgrade\r\n", have_upgrade ? "" : "Upgrade: websocket\r\n");
        if (api_conn_tunnel_begin(r->conn, hdrs.data, on_client_bytes, r) < 0)
            return -1;
        r->tunnel = true;
        if (h.body_len)
            api_conn_tunnel_write(r->conn, h.body, h.body_len);
        return 0;
    }
    if (api_conn_stream_begin(r->conn, h.status, NULL, hdrs.len ? hdrs.data : NULL) < 0)
        return -1;
    if (h.body_len)
        api_conn_stream_write(r->conn, h.body, h.body_len);
    return 0;
}

static void drain_fire(struct ev_loop *loop, void *data)
{
    struct web_req *r = data;
    (void)loop;
    r->drain_timer = 0;
    pull(r);
}

static void on_items(void *ud, const struct ctl_items_view *v)
{
    struct web_req *r = ud;
    r->waiter = NULL;
    api_conn_cork(r->conn);
    uint64_t idx = v->from;
    for (const struct ctl_item *it = v->first; it; it = it->next, idx++) {
        if (!r->head_sent) {
            if (send_head(r, it->data, it->len) < 0) {
                struct ctl_call_view cv;
                struct ctl_error e;
                ctl_cancel(r->w->ctl, NULL, r->call_id, &cv, &e);
                if (r->head_sent)
                    api_conn_abort(r->conn);
                req_done(r);
                return;
            }
        } else if ((r->tunnel ? api_conn_tunnel_write(r->conn, it->data, it->len)
                              : api_conn_stream_write(r->conn, it->data, it->len)) < 0) {
            break; /* the close callback follows */
        }
    }
    bool took = idx != r->next;
    r->next = idx;
    if (v->ended && !took) {
        if (!r->head_sent)
            answer_failed(r, &v->call);
        else if (r->tunnel)
            api_conn_tunnel_end(r->conn); /* the bytes sent stand (the runner framed its close) */
        else if (v->call.state == CTL_CALL_SUCCEEDED)
            api_conn_stream_end(r->conn);
        else
            api_conn_abort(r->conn); /* the body stops short: the client sees the failure */
        req_done(r);
        return;
    }
    /* More to take (or the items just sent to free, once the call ended). */
    if (api_conn_pending_output(r->conn) >= API_WEB_PAUSE) {
        r->drain_timer = ev_timer_add(r->w->loop, API_WEB_DRAIN_POLL_MS, drain_fire, r);
        return;
    }
    if (r->pulling)
        r->again = true;
    else
        pull(r);
}

/* Asks for the items from r->next on; an answer that is ready at once comes back here
 * as a loop, not as recursion. */
static void pull(struct web_req *r)
{
    do {
        r->again = false;
        r->pulling = true;
        struct ctl_error e;
        int rc = ctl_items_wait(r->w->ctl, NULL, r->call_id, r->next, UINT64_MAX, on_items, r, &r->waiter, &e);
        r->pulling = false;
        if (rc < 0) {
            log_warn("web", "call %s: reading its items: %s", r->call_id, e.message);
            if (!r->head_sent)
                web_error(r->conn, 502, "bad_response", "the endpoint's response was lost");
            else
                api_conn_abort(r->conn);
            r->finished = true;
        }
        if (r->finished) {
            req_free(r);
            return;
        }
    } while (r->again);
}

/* The client went away: the call is cancelled (its container stops serving it). The
 * items waiter goes first: cancelling ends the call at once, which would answer the
 * waiter, and on_items would free r under us. */
static void on_client_gone(struct api_conn *c, void *data)
{
    struct web_req *r = data;
    (void)c;
    if (r->waiter) {
        ctl_items_waiter_cancel(r->w->ctl, r->waiter);
        r->waiter = NULL;
    }
    struct ctl_call_view v;
    struct ctl_error e;
    /* Not told of the call's end that the cancel brings (it would free r first). */
    if (r->waiter) {
        ctl_items_waiter_cancel(r->w->ctl, r->waiter);
        r->waiter = NULL;
    }
    ctl_cancel(r->w->ctl, NULL, r->call_id, &v, &e);
    req_free(r);
}

/* A request no container took within queue_ms: overload, 503 with Retry-After. */
static void queue_fire(struct ev_loop *loop, void *data)
{
    struct web_req *r = data;
    (void)loop;
    r->queue_timer = 0;
    struct ctl_call_view v;
    struct ctl_error e;
    if (ctl_call_status(r->w->ctl, NULL, r->call_id, &v, &e) < 0 || v.state != CTL_CALL_PENDING)
        return;
    if (r->waiter) {
        ctl_items_waiter_cancel(r->w->ctl, r->waiter);
        r->waiter = NULL;
    }
    ctl_cancel(r->w->ctl, NULL, r->call_id, &v, &e);
    web_error(r->conn, 503, "overloaded", "no container took the request in time; retry shortly");
    req_free(r);
}

/* ---------- the request ---------- */

/* Whether some header name of req holds token in its list. */
static bool header_has(const struct http_request *req, const char *name, const char *token)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (!strcasecmp(req->headers[i].name, name) &&
            web_header_has_token(req->headers[i].value, req->headers[i].value_len, token))
            return true;
    return false;
}

/* A WebSocket handshake (RFC 6455 4.1): a GET without a body, with Connection: upgrade
 * and Upgrade: websocket. Other upgrades (h2c) are plain requests here, their headers
 * dropped. */
static bool is_websocket(const struct http_request *req)
{
    return !strcmp(req->method, "GET") && req->content_length <= 0 && !req->chunked &&
           header_has(req, "Connection", "upgrade") && header_has(req, "Upgrade", "websocket");
}

static void submit(struct api_web *w, struct api_conn *conn, struct http_request *req,
                   const struct api_web_route *rt, const struct ctl_web_endpoint *ep)
{
    struct web_header hs[WEB_MAX_HEADERS];
    size_t nh = 0;
    bool upgrade = is_websocket(req);
    for (size_t i = 0; i < req->nheaders && nh < WEB_MAX_HEADERS; i++) {
        const struct http_header *h = &req->headers[i];
        /* A handshake's Connection and Upgrade are the runner's to see (it answers
         * them); a token gustd checked is the invoker's, not the endpoint's to see. */
        bool handshake = upgrade && (!strcasecmp(h->name, "Connection") || !strcasecmp(h->name, "Upgrade"));
        if ((web_header_reserved(h->name, h->name_len) && !handshake) ||
            (!ep->web.public_ && !strcasecmp(h->name, "Authorization")))
            continue;
        hs[nh++] = (struct web_header){h->name, h->name_len, h->value, h->value_len};
    }
    char client[64]; /* INET6_ADDRSTRLEN (46) and more */
    api_conn_peer(conn, client, sizeof client);
    /* A body still arriving streams to the call; its first bytes (those that came with
     * the head) go in the envelope, and so does a whole body that came with its head:
     * one input, no stream, for the small bodies of most requests. */
    bool streamed = api_conn_body_streaming(conn);
    uint64_t total = !streamed     ? req->body.len
                     : req->chunked ? WEB_BODY_LEN_UNKNOWN
                                    : (uint64_t)req->content_length;
    struct web_request wr = {
        .method = req->method,
        .scheme = w->tls ? "https" : "http",
        .root_path = rt->root_path,
        .path = rt->rest,
        .query = req->query,
        .client = client,
        .headers = hs,
        .nheaders = nh,
        .body = req->body.data,
        .body_len = req->body.len,
        .body_total = total,
    };
    AUTO_BUF struct buf env = {0};
    web_request_encode(&env, &wr);
    struct web_req *r = xcalloc(1, sizeof *r);
    struct ctl_error e;
    if (ctl_submit_web(w->ctl, ep->app, ep->function, env.data, env.len, r->call_id, &e) < 0) {
        free(r);
        int status = e.kind == CTL_E_NOT_FOUND      ? 404
                     : e.kind == CTL_E_TOO_LARGE    ? 413
                     : e.kind == CTL_E_SHUTTING_DOWN ? 503
                     : e.kind == CTL_E_OVERLOADED   ? 503
                     : e.kind == CTL_E_CONFLICT     ? 404
                                                    : 500;
        web_error(conn, status, status == 404 ? "not_found" : e.code, e.message);
        return;
    }
    r->w = w;
    r->conn = conn;
    r->upgrade = upgrade;
    api_conn_ref(conn);
    api_conn_set_close_cb(conn, on_client_gone, r);
    r->queue_timer = ev_timer_add(w->loop, w->queue_ms, queue_fire, r);
    /* Held by control until a container runs the call (bounded: its room). */
    if (streamed)
        api_conn_body_read(conn, on_client_bytes, on_body_end, r);
    pull(r);
}

void api_web_handle(struct api_conn *conn, struct http_request *req, void *ud)
{
    struct api_web *w = ud;
    struct api_web_route rt;
    int r = api_web_route(&w->guard, w->domain, req, &rt);
    if (r == -EACCES) {
        api_conn_error(conn, 403, "host_not_allowed",
                       "Host does not name this gustd (an IP address, localhost, a --allow-host name, or a name "
                       "under --web-domain is needed; refused to stop DNS rebinding)",
                       NULL);
        return;
    }
    if (r < 0) {
        api_conn_error(conn, 404, "not_found",
                       "no web endpoint here: URLs are /<workspace>/<app>/<label>/... (gust ls shows them)", NULL);
        return;
    }
    struct ctl_web_endpoint ep;
    bool found = (rt.by_host ? ctl_web_find_joined(w->ctl, rt.ws, rt.app_label, &ep)
                             : ctl_web_find(w->ctl, rt.ws, rt.app, rt.label, &ep)) == 0;
    if (!found || !ep.web.public_) {
        struct ctl_principal who;
        const char *token = api_bearer_token(req);
        int ar = ctl_authenticate(w->ctl, token, &who);
        if (ar < 0) {
            json_t *j = json_pack("{s:{s:s,s:s}}", "error", "code", "unauthorized", "message",
                                  ar == -EKEYEXPIRED ? "the token has expired"
                                  : token ? "the token is not valid"
                                          : "this endpoint needs a token: send Authorization: Bearer <token> (an "
                                            "invoker token of its workspace)");
            api_conn_respond_json(conn, 401, j, "WWW-Authenticate: Bearer\r\n");
            return;
        }
        if (strcmp(who.ws, rt.ws) || who.role < CTL_ROLE_INVOKER) {
            api_conn_error(conn, 403, "forbidden", "this token is not one of the endpoint's workspace", NULL);
            return;
        }
        if (!found) {
            api_conn_error(conn, 404, "not_found", "no such web endpoint in this workspace (gust ls shows them)",
                           NULL);
            return;
        }
    }
    bool head_of_get = !strcmp(req->method, "HEAD") && !strcmp(ep.web.method, "GET");
    if (strcmp(ep.web.method, "*") && strcmp(ep.web.method, req->method) && !head_of_get) {
        char allow[40], msg[80];
        snprintf(allow, sizeof allow, "Allow: %s\r\n", ep.web.method);
        snprintf(msg, sizeof msg, "this endpoint takes %s", ep.web.method);
        json_t *j = json_pack("{s:{s:s,s:s}}", "error", "code", "method_not_allowed", "message", msg);
        api_conn_respond_json(conn, 405, j, allow);
        return;
    }
    submit(w, conn, req, &rt, &ep);
}
