/* HTTP server over the event loop (see server.h for the contract).
 *
 * Per connection: an input buffer fed to a reusable request parser, an output buffer
 * holding only what the socket did not take. Responses go out with sendmsg right
 * away; EV_WRITE is registered only while output is pending. Close callbacks and the
 * dispatch of further pipelined requests happen from loop callbacks (deferred when
 * triggered inside an api_conn_* call), so user code is never re-entered. */
#include "api/server.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "api/tls.h"
#include "base/buf.h"
#include "base/cleanup.h"
#include "base/list.h"
#include "base/log.h"
#include "base/xalloc.h"

#define API_READ_CHUNK (16u * 1024u)
#define API_IN_PAUSE (64u * 1024u)       /* stop reading while a request is handled */
/* Stop reading and parsing pipelined requests while this much output is pending (see
 * server.h, API_OUT_PAUSE). */
#define API_KEEP_OUT_CAP (256u * 1024u)  /* larger output buffers are freed when drained */
#define API_KEEP_IN_CAP (64u * 1024u)
#define API_LINGER_MS 2000u
#define API_LINGER_MAX (1024u * 1024u)
#define API_ACCEPT_RETRY_MS 100u
/* A TLS client has this long from accept to a finished handshake: the idle timeout
 * would let a peer that trickles handshake bytes hold a connection far longer. */
#define API_TLS_HANDSHAKE_MS 10000u

enum conn_state {
    C_READING,   /* waiting for (the rest of) a request */
    C_HANDLING,  /* dispatched; no response yet */
    C_STREAMING, /* chunked response under way */
    C_TUNNEL,    /* after a 101: raw bytes both ways (api_conn_tunnel_begin) */
};

struct api_conn {
    struct api_server *srv; /* NULL once closed */
    struct ev_loop *loop;
    int fd;
    unsigned refs;
    enum conn_state state;
    bool open;
    bool closing;           /* a deferred close is queued */
    bool dispatching;       /* inside process_input */
    bool resume_pending;    /* a deferred process_input is queued */
    bool close_after_flush;
    bool lingering;
    bool want_write;
    bool keep_alive;        /* of the current response */
    bool head_req;          /* no body goes out: the request is HEAD, or the answer 204/304 */
    bool raw_stream;        /* HTTP/1.0 stream: no chunk framing */
    bool continue_sent;
    bool corked;            /* output queued until the end of this loop pass (api_conn_cork) */
    /* C_TUNNEL: the reader of the client's bytes; it took less than it was offered
     * (reading waits for api_conn_tunnel_resume); the client's EOF came, and was told. */
    api_tunnel_fn tunnel_fn;
    void *tunnel_ud;
    bool tunnel_paused, tunnel_eof, tunnel_eof_told;
    bool deliver_pending;       /* a deferred tunnel_deliver / body_deliver is queued */
    /* Streamed request bodies (api_server_stream_bodies): the request was handed on
     * before its body was complete, and the body has not ended; its reader
     * (api_conn_body_read) and whether it took less than it was offered; after the
     * response, the rest of the body is read and dropped (body_discard). */
    bool body_streaming, body_paused, body_discard;
    api_body_fn body_fn;
    api_body_end_fn body_end;
    void *body_ud;
    uint32_t watched;
    struct buf in;
    size_t in_off;
    struct buf out;
    size_t out_off;
    size_t linger_bytes;
    struct http_request_parser parser;
    void (*close_cb)(struct api_conn *c, void *data);
    void *close_data;
    uint64_t idle_timer;
    uint64_t last_active;
    struct list_node link;      /* in srv->conns while the server knows it */
    /* TLS (NULL for plain HTTP): the record layer between fd and in/out. Output is
     * queued in out whole and SSL_write drains it from out_off, so a write retried
     * after WANT_WRITE/WANT_READ starts at the same bytes (the mode allows the buffer
     * to move and grow between tries). */
    SSL *ssl;
    bool tls_rd_wants_write;    /* SSL_read (handshake) waits for the socket to take bytes */
    bool tls_wr_wants_read;     /* SSL_write waits for bytes from the peer */
    bool tls_sniffed;           /* the first byte was checked for plain HTTP */
    uint64_t born_ms;
    int tag;                    /* the handler's api_conn_set_tag for this request; -1: none */
};

struct api_server {
    struct ev_loop *loop;
    int fd;
    int port;
    bool accepting;
    uint64_t accept_timer;
    uint64_t idle_ms;
    struct http_limits limits;
    api_handler_fn handler;
    void *ud;
    struct list_node conns;     /* struct api_conn */
    size_t nconns;
    size_t max_conns;           /* accepted beyond: 503 and close */
    char *refuse_resp;          /* the whole 503 response */
    size_t refuse_len;
    uint64_t refused;           /* connections refused so far */
    uint64_t refuse_logged_ms;
    size_t out_high;            /* most output pending on one connection */
    SSL_CTX *tls;               /* non-NULL: every connection speaks TLS */
    bool stream_bodies;         /* api_server_stream_bodies */
    api_status_fn on_status;    /* api_server_on_status */
    void *status_ud;
};

static void process_input(struct api_conn *c);
static void conn_close(struct api_conn *c);

/* The streamed body's reader is told nothing more. */
static void body_forget(struct api_conn *c)
{
    c->body_fn = NULL;
    c->body_end = NULL;
    c->body_ud = NULL;
    c->body_paused = false;
}

/* ---------- references and closing ---------- */

void api_conn_ref(struct api_conn *c)
{
    c->refs++;
}

static void conn_destroy(struct api_conn *c)
{
    http_request_parser_free(&c->parser);
    buf_free(&c->in);
    buf_free(&c->out);
    free(c);
}

void api_conn_unref(struct api_conn *c)
{
    if (!c)
        return;
    if (--c->refs == 0)
        conn_destroy(c);
}

void api_conn_set_close_cb(struct api_conn *c, void (*cb)(struct api_conn *c, void *data), void *data)
{
    c->close_cb = cb;
    c->close_data = cb ? data : NULL;
}

bool api_conn_is_open(const struct api_conn *c)
{
    return c->open && !c->closing;
}

void api_conn_peer(const struct api_conn *c, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (cap)
        out[0] = '\0';
    if (!cap || c->fd < 0 || getpeername(c->fd, (struct sockaddr *)&ss, &sl) < 0)
        return;
    const void *addr = NULL;
    int af = ss.ss_family;
    if (af == AF_INET) {
        addr = &((const struct sockaddr_in *)&ss)->sin_addr;
    } else if (af == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)&ss)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            af = AF_INET;
            addr = &a6->s6_addr[12];
        } else {
            addr = a6;
        }
    }
    if (!addr || !inet_ntop(af, addr, out, (socklen_t)cap))
        out[0] = '\0';
}

size_t api_conn_pending_output(const struct api_conn *c)
{
    return c->out.len - c->out_off;
}

/* Enough output is pending: no further pipelined request is read or parsed. */
static bool out_full(const struct api_conn *c)
{
    return c->out.len - c->out_off >= API_OUT_PAUSE;
}

static void note_out(struct api_conn *c)
{
    size_t pending = c->out.len - c->out_off;
    if (c->srv && pending > c->srv->out_high)
        c->srv->out_high = pending;
}

/* No more input is read: the connection is ending, its output is backed up, or the
 * request being handled has enough pipelined bytes behind it. */
static bool in_paused(const struct api_conn *c)
{
    if (c->state == C_TUNNEL)
        return c->close_after_flush || c->closing || c->tunnel_paused || c->tunnel_eof ||
               c->in.len - c->in_off >= API_IN_PAUSE;
    /* A streamed body is read while its reader takes it, whatever the output does: the
     * reader's own backpressure bounds it. */
    if (c->body_fn)
        return c->close_after_flush || c->closing || c->body_paused || c->in.len - c->in_off >= API_IN_PAUSE;
    return c->close_after_flush || c->closing || out_full(c) ||
           (c->state != C_READING && c->in.len - c->in_off >= API_IN_PAUSE);
}

static void conn_watch(struct api_conn *c)
{
    if (!c->open)
        return;
    uint32_t want = 0;
    if (c->lingering) {
        want = EV_READ;
    } else {
        if (!in_paused(c))
            want |= EV_READ;
        if (c->want_write)
            want |= EV_WRITE;
        if (c->ssl) {
            /* A record layer blocked the other way round waits on the other event;
             * watching EV_WRITE for a write that needs input would spin. */
            if (c->tls_wr_wants_read)
                want = (want & ~(uint32_t)EV_WRITE) | EV_READ;
            if (c->tls_rd_wants_write)
                want |= EV_WRITE;
        }
    }
    if (want != c->watched && ev_io_mod(c->loop, c->fd, want) == 0)
        c->watched = want;
}

static void idle_fire(struct ev_loop *loop, void *data);

static void idle_arm(struct api_conn *c, uint64_t ms)
{
    if (c->idle_timer)
        ev_timer_cancel(c->loop, c->idle_timer);
    c->idle_timer = ev_timer_add(c->loop, ms, idle_fire, c);
}

/* Closes the socket now. The close callback runs if a response was in progress. */
static void conn_close(struct api_conn *c)
{
    if (!c->open)
        return;
    c->open = false;
    ev_io_del(c->loop, c->fd);
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    close(c->fd);
    c->fd = -1;
    if (c->idle_timer) {
        ev_timer_cancel(c->loop, c->idle_timer);
        c->idle_timer = 0;
    }
    struct api_server *s = c->srv;
    if (s) {
        list_remove(&c->link);
        s->nconns--;
        c->srv = NULL;
    }
    void (*cb)(struct api_conn *, void *) = c->close_cb;
    void *data = c->close_data;
    c->close_cb = NULL;
    c->close_data = NULL;
    body_forget(c);
    if (cb)
        cb(c, data);
    api_conn_unref(c); /* the socket's reference */
}

static void deferred_close(struct ev_loop *loop, void *data)
{
    struct api_conn *c = data;
    conn_close(c);
    api_conn_unref(c);
}

/* The connection failed inside an api_conn_* call: close it from the loop. */
static void conn_fail_later(struct api_conn *c)
{
    if (c->closing || !c->open)
        return;
    c->closing = true;
    c->refs++;
    ev_defer(c->loop, deferred_close, c);
    conn_watch(c);
}

/* Output is flushed and the connection is to end: half-close, then drain what the
 * client still sends (so it is not reset before reading our answer) for a while. */
static void conn_linger(struct api_conn *c)
{
    c->lingering = true;
    c->linger_bytes = 0;
    if (c->ssl) {
        /* close_notify, if the socket takes it now; the peer learns of the end from
         * the FIN either way, and lingering discards the raw bytes it still sends. */
        ERR_clear_error();
        SSL_shutdown(c->ssl);
        ERR_clear_error();
    }
    shutdown(c->fd, SHUT_WR);
    idle_arm(c, API_LINGER_MS);
    conn_watch(c);
}

/* ---------- output ---------- */

static void out_drained(struct api_conn *c)
{
    if (c->out.cap > API_KEEP_OUT_CAP)
        buf_free(&c->out);
    else
        buf_reset(&c->out);
    c->out_off = 0;
    c->want_write = false;
}

/* Encrypts and writes the queued output until the socket is full. Returns 0, or
 * -EPIPE when the TLS connection failed. */
static int tls_flush_out(struct api_conn *c)
{
    while (c->out.len > c->out_off) {
        size_t pending = c->out.len - c->out_off;
        ERR_clear_error();
        int n = SSL_write(c->ssl, c->out.data + c->out_off, pending > INT32_MAX ? INT32_MAX : (int)pending);
        if (n > 0) {
            c->out_off += (size_t)n;
            c->last_active = ev_now_ms(c->loop);
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
            c->want_write = true;
            c->tls_wr_wants_read = e == SSL_ERROR_WANT_READ;
            note_out(c);
            conn_watch(c);
            return 0;
        }
        char why[256];
        log_debug("api", "TLS write: %s", api_tls_last_error(why, sizeof why));
        return -EPIPE;
    }
    out_drained(c);
    c->tls_wr_wants_read = false;
    return 0;
}

/* conn_send over TLS: everything goes through the queue. */
static int tls_send(struct api_conn *c, const void *a, size_t alen, const void *b, size_t blen)
{
    buf_append(&c->out, a, alen);
    buf_append(&c->out, b, blen);
    if (c->want_write) {
        note_out(c);
        return 0;
    }
    return tls_flush_out(c);
}

/* Sends pending output then a and b, without blocking; what the socket does not take
 * is queued. Returns 0, or -errno of a broken connection. */
static int conn_send(struct api_conn *c, const void *a, size_t alen, const void *b, size_t blen)
{
    if (!c->open || c->closing)
        return -EPIPE;
    if (c->corked) {
        buf_append(&c->out, a, alen);
        buf_append(&c->out, b, blen);
        note_out(c);
        return 0;
    }
    if (c->ssl)
        return tls_send(c, a, alen, b, blen);
    size_t pending = c->out.len - c->out_off;
    if (c->want_write) {
        /* Socket known full: queue. */
        buf_append(&c->out, a, alen);
        buf_append(&c->out, b, blen);
        note_out(c);
        return 0;
    }
    struct iovec iov[3];
    int n = 0;
    if (pending)
        iov[n++] = (struct iovec){c->out.data + c->out_off, pending};
    if (alen)
        iov[n++] = (struct iovec){(void *)a, alen};
    if (blen)
        iov[n++] = (struct iovec){(void *)b, blen};
    if (n == 0)
        return 0;
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
    ssize_t w;
    do {
        w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
    } while (w < 0 && errno == EINTR);
    if (w < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        w = 0;
    }
    size_t sent = (size_t)w;
    if (sent)
        c->last_active = ev_now_ms(c->loop);
    /* Pending output first. */
    if (sent >= pending) {
        sent -= pending;
        out_drained(c);
    } else {
        c->out_off += sent;
        sent = 0;
    }
    const char *pa = a, *pb = b;
    if (sent >= alen) {
        sent -= alen;
        alen = 0;
    } else {
        pa += sent;
        alen -= sent;
        sent = 0;
    }
    if (sent >= blen) {
        blen = 0;
    } else {
        pb += sent;
        blen -= sent;
    }
    if (alen)
        buf_append(&c->out, pa, alen);
    if (blen)
        buf_append(&c->out, pb, blen);
    assert(c->out_off <= c->out.len);
    if (c->out.len > c->out_off) {
        note_out(c);
        c->want_write = true;
        conn_watch(c);
    }
    return 0;
}

/* Writes pending output from the loop (EV_WRITE). Closes on failure. */
static void conn_flush(struct api_conn *c)
{
    if (c->out.len > c->out_off) {
        c->want_write = false;
        if (conn_send(c, NULL, 0, NULL, 0) < 0) {
            conn_close(c);
            return;
        }
    }
    if (c->out.len == c->out_off && c->want_write)
        c->want_write = false;
    if (c->close_after_flush && !c->lingering && c->out.len == c->out_off) {
        conn_linger(c);
        return;
    }
    conn_watch(c);
    /* Output drained below the bound: parse the pipelined requests that waited. */
    if (c->open && !c->closing && c->state == C_READING && !out_full(c) && c->in.len > c->in_off)
        process_input(c);
}

static void uncork_cb(struct ev_loop *loop, void *data)
{
    struct api_conn *c = data;
    (void)loop;
    c->corked = false;
    if (c->open && !c->closing && !c->want_write && c->out.len > c->out_off)
        conn_flush(c);
    api_conn_unref(c);
}

void api_conn_cork(struct api_conn *c)
{
    if (c->corked || !c->open || c->closing)
        return;
    c->corked = true;
    c->refs++;
    ev_defer(c->loop, uncork_cb, c);
}

static void resume_cb(struct ev_loop *loop, void *data)
{
    struct api_conn *c = data;
    c->resume_pending = false;
    if (c->open && !c->closing && c->state == C_READING)
        process_input(c);
    api_conn_unref(c);
}

/* Pipelined bytes wait for the next loop pass, outside the caller's code. */
static void resume_later(struct api_conn *c)
{
    if (!c->dispatching && c->in.len > c->in_off && !c->resume_pending) {
        c->refs++;
        ev_defer(c->loop, resume_cb, c);
        c->resume_pending = true;
    }
}

static size_t body_take(void *ud, const void *data, size_t len);

/* The current response is fully queued. */
static void response_done(struct api_conn *c)
{
    c->state = C_READING;
    c->close_cb = NULL;
    c->close_data = NULL;
    c->raw_stream = false;
    c->continue_sent = false;
    c->last_active = ev_now_ms(c->loop);
    bool body_left = c->body_streaming;
    c->body_streaming = false;
    body_forget(c);
    if (!c->keep_alive || (c->srv && !c->srv->accepting))
        c->close_after_flush = true;
    if (body_left && !c->close_after_flush) {
        /* The client is still sending a body nobody reads: it is read and dropped
         * (bounded by max_body, as any body) before the next request is parsed. */
        c->body_discard = true;
        http_request_parser_stream_body(&c->parser, body_take, c);
    } else {
        http_request_parser_reset(&c->parser);
    }
    if (!c->open || c->closing)
        return;
    if (c->close_after_flush) {
        if (c->out.len == c->out_off)
            conn_linger(c);
        else
            conn_watch(c);
        return;
    }
    conn_watch(c);
    resume_later(c);
}

/* Settles keep_alive for the response about to start. */
static void settle_keep_alive(struct api_conn *c)
{
    if (c->srv && !c->srv->accepting)
        c->keep_alive = false;
    /* A body the client holds back until our 100 Continue never comes: the
     * connection cannot be read past it, so it carries no further request. */
    if (c->body_streaming && c->parser.req.expect_continue && !c->continue_sent)
        c->keep_alive = false;
}

/* Tells the server's status observer of a response's head going out, once per
 * response, with the request's tag (cleared: a parse error's answer, which no handler
 * saw, carries none). */
static void note_status(struct api_conn *c, int status)
{
    if (c->srv && c->srv->on_status)
        c->srv->on_status(c->srv->status_ud, c->tag, status);
    c->tag = -1;
}

void api_conn_set_tag(struct api_conn *c, int tag)
{
    c->tag = tag;
}

void api_server_on_status(struct api_server *s, api_status_fn fn, void *ud)
{
    s->on_status = fn;
    s->status_ud = ud;
}

/* Queues a whole response without state checks. */
static void send_response(struct api_conn *c, int status, const char *content_type, const void *body, size_t len,
                          const char *extra_headers)
{
    note_status(c, status);
    http_write_head(&c->out, status, content_type, (int64_t)len, c->keep_alive, extra_headers);
    /* The head went into out; it leaves as pending output together with the body. */
    int r = conn_send(c, c->head_req ? NULL : body, c->head_req ? 0 : len, NULL, 0);
    if (r < 0)
        conn_fail_later(c);
}

static bool can_respond(struct api_conn *c, const char *what)
{
    if (!c->open || c->closing)
        return false;
    if (c->state != C_HANDLING) {
        log_warn("api", "%s: no request awaits a response on this connection; ignored", what);
        return false;
    }
    return true;
}

void api_conn_respond(struct api_conn *c, int status, const char *content_type, const void *body, size_t len,
                      const char *extra_headers)
{
    if (!can_respond(c, "respond"))
        return;
    settle_keep_alive(c);
    send_response(c, status, content_type, body, len, extra_headers);
    response_done(c);
}

/* For a NULL obj: a jansson constructor refused its input (text that is not UTF-8);
 * allocation failure aborts under gustd's allocator, so that is not the cause. */
static const char unencodable_body[] =
    "{\"error\":{\"code\":\"internal\",\"message\":\"the response could not be encoded as JSON\"}}";

void api_conn_respond_json(struct api_conn *c, int status, json_t *obj, const char *extra_headers)
{
    if (!obj) {
        api_conn_respond(c, 500, "application/json", unencodable_body, sizeof unencodable_body - 1, extra_headers);
        return;
    }
    if (!c->open || c->closing || c->state != C_HANDLING) {
        json_decref(obj);
        can_respond(c, "respond_json");
        return;
    }
    /* NULL only for an obj that is not an object or array (a caller bug). */
    char *s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (!s) {
        api_conn_respond(c, 500, "application/json", unencodable_body, sizeof unencodable_body - 1, extra_headers);
        return;
    }
    api_conn_respond(c, status, "application/json", s, strlen(s), extra_headers);
    free(s);
}

static json_t *error_json(const char *code, const char *message, const char *field)
{
    json_t *e = json_object();
    json_object_set_new(e, "code", json_string(code ? code : "internal"));
    json_object_set_new(e, "message", json_string(message ? message : ""));
    if (field)
        json_object_set_new(e, "field", json_string(field));
    json_t *o = json_object();
    json_object_set_new(o, "error", e);
    return o;
}

void api_conn_error(struct api_conn *c, int status, const char *code, const char *message, const char *field)
{
    api_conn_respond_json(c, status, error_json(code, message, field), NULL);
}

void api_conn_abort(struct api_conn *c)
{
    c->close_cb = NULL;
    c->close_data = NULL;
    body_forget(c);
    conn_fail_later(c);
}

int api_conn_stream_begin(struct api_conn *c, int status, const char *content_type, const char *extra_headers)
{
    if (!c->open || c->closing)
        return -EPIPE;
    if (!can_respond(c, "stream_begin"))
        return -EINVAL;
    settle_keep_alive(c);
    /* 204 and 304 have no body, and no framing header may say otherwise (RFC 9110
     * 6.4.1, RFC 9112 6.1): what is written is dropped, as for HEAD, and the
     * connection stays reusable. */
    bool bodyless = status == 204 || status == 304;
    c->raw_stream = !bodyless && c->parser.req.version_minor == 0;
    if (c->raw_stream)
        c->keep_alive = false;
    if (bodyless)
        c->head_req = true;
    int64_t framing = c->raw_stream || bodyless ? HTTP_LENGTH_NONE : HTTP_LENGTH_CHUNKED;
    note_status(c, status);
    http_write_head(&c->out, status, content_type, framing, c->keep_alive, extra_headers);
    if (conn_send(c, NULL, 0, NULL, 0) < 0) {
        conn_fail_later(c);
        return -EPIPE;
    }
    c->state = C_STREAMING;
    return 0;
}

int api_conn_stream_write(struct api_conn *c, const void *data, size_t len)
{
    if (!c->open || c->closing)
        return -EPIPE;
    if (c->state != C_STREAMING)
        return -EINVAL;
    if (!len || c->head_req)
        return 0;
    if (c->out.len - c->out_off + len > API_OUT_MAX) {
        log_warn("api", "client not reading a stream (%zu bytes pending); closing", c->out.len - c->out_off);
        conn_fail_later(c);
        return -ENOBUFS;
    }
    int r;
    if (c->raw_stream) {
        r = conn_send(c, data, len, NULL, 0);
    } else {
        /* Chunk-size line into out (as pending output), then data and CRLF. */
        http_write_chunk_header(&c->out, len);
        if (c->want_write) {
            buf_append(&c->out, data, len);
            buf_append(&c->out, "\r\n", 2);
            note_out(c);
            r = 0;
        } else {
            r = conn_send(c, data, len, "\r\n", 2);
        }
    }
    if (r < 0) {
        conn_fail_later(c);
        return -EPIPE;
    }
    return 0;
}

void api_conn_stream_end(struct api_conn *c)
{
    if (!c->open || c->closing || c->state != C_STREAMING)
        return;
    if (!c->raw_stream && !c->head_req && conn_send(c, "0\r\n\r\n", 5, NULL, 0) < 0) {
        conn_fail_later(c);
        return;
    }
    response_done(c);
}

/* ---------- tunnels ---------- */

/* Offers the client's buffered bytes to the tunnel's reader, then its EOF once they
 * are all taken. A reader that takes less pauses reading until it resumes. */
static void tunnel_deliver(struct api_conn *c)
{
    c->refs++;
    while (c->open && !c->closing && c->state == C_TUNNEL && !c->tunnel_paused && !c->close_after_flush) {
        size_t avail = c->in.len - c->in_off;
        if (!avail) {
            if (c->tunnel_eof && !c->tunnel_eof_told) {
                c->tunnel_eof_told = true;
                c->tunnel_fn(c, NULL, 0, c->tunnel_ud);
            }
            break;
        }
        size_t n = c->tunnel_fn(c, c->in.data + c->in_off, avail, c->tunnel_ud);
        if (n > avail)
            n = avail;
        c->in_off += n;
        if (c->in_off == c->in.len) {
            c->in.len = 0;
            c->in_off = 0;
        }
        if (n < avail)
            c->tunnel_paused = true;
    }
    conn_watch(c);
    api_conn_unref(c);
}

static void body_deliver(struct api_conn *c);

static void deliver_cb(struct ev_loop *loop, void *data)
{
    struct api_conn *c = data;
    (void)loop;
    c->deliver_pending = false;
    if (c->state == C_TUNNEL)
        tunnel_deliver(c);
    else if (c->body_fn)
        body_deliver(c);
    api_conn_unref(c);
}

/* Delivery of buffered client bytes (a tunnel's, a streamed body's) from the loop,
 * never inside the caller's api_conn_* call. */
static void deliver_later(struct api_conn *c)
{
    if (c->deliver_pending)
        return;
    c->deliver_pending = true;
    c->refs++;
    ev_defer(c->loop, deliver_cb, c);
}

int api_conn_tunnel_begin(struct api_conn *c, const char *extra_headers, api_tunnel_fn on_read, void *ud)
{
    if (!c->open || c->closing)
        return -EPIPE;
    if (!can_respond(c, "tunnel_begin"))
        return -EINVAL;
    static const char line[] = "HTTP/1.1 101 Switching Protocols\r\n";
    note_status(c, 101);
    buf_append(&c->out, line, sizeof line - 1);
    if (extra_headers)
        buf_append(&c->out, extra_headers, strlen(extra_headers));
    buf_append(&c->out, "\r\n", 2);
    c->keep_alive = false;
    c->state = C_TUNNEL;
    c->tunnel_fn = on_read;
    c->tunnel_ud = ud;
    if (conn_send(c, NULL, 0, NULL, 0) < 0) {
        conn_fail_later(c);
        return -EPIPE;
    }
    /* Bytes the client sent right behind its request are the tunnel's first. */
    if (c->in.len > c->in_off)
        deliver_later(c);
    conn_watch(c);
    return 0;
}

int api_conn_tunnel_write(struct api_conn *c, const void *data, size_t len)
{
    if (!c->open || c->closing)
        return -EPIPE;
    if (c->state != C_TUNNEL || c->close_after_flush)
        return -EINVAL;
    if (!len)
        return 0;
    if (c->out.len - c->out_off + len > API_OUT_MAX) {
        log_warn("api", "client not reading a tunnel (%zu bytes pending); closing", c->out.len - c->out_off);
        conn_fail_later(c);
        return -ENOBUFS;
    }
    if (conn_send(c, data, len, NULL, 0) < 0) {
        conn_fail_later(c);
        return -EPIPE;
    }
    return 0;
}

void api_conn_tunnel_resume(struct api_conn *c)
{
    if (!c->open || c->closing || c->state != C_TUNNEL || !c->tunnel_paused)
        return;
    c->tunnel_paused = false;
    deliver_later(c);
}

void api_conn_tunnel_end(struct api_conn *c)
{
    if (!c->open || c->closing || c->state != C_TUNNEL || c->close_after_flush)
        return;
    c->close_after_flush = true;
    if (c->out.len == c->out_off)
        conn_linger(c);
    else
        conn_watch(c);
}

/* ---------- input ---------- */

static const char *parse_error_code(int status)
{
    switch (status) {
    case 413:
        return "payload_too_large";
    case 431:
        return "headers_too_large";
    case 501:
        return "not_implemented";
    case 505:
        return "http_version_not_supported";
    case 500:
        return "internal";
    default:
        return "bad_request";
    }
}

/* Answers a request the parser rejected, then ends the connection. */
static void parse_failed(struct api_conn *c)
{
    int status = c->parser.error_status ? c->parser.error_status : 400;
    json_t *j = error_json(parse_error_code(status), c->parser.error_msg, NULL);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    c->keep_alive = false;
    c->head_req = false;
    c->close_after_flush = true;
    if (s)
        send_response(c, status, "application/json", s, strlen(s), NULL);
    else
        send_response(c, status, NULL, NULL, 0, NULL);
    free(s);
    if (c->open && !c->closing && c->out.len == c->out_off)
        conn_linger(c);
}

/* ---------- streamed request bodies ---------- */

/* The parser's sink while a body streams: offers the bytes to the reader, or drops
 * them after the response. A reader that takes fewer pauses reading the client. */
static size_t body_take(void *ud, const void *data, size_t len)
{
    struct api_conn *c = ud;
    if (c->body_discard)
        return len;
    if (!c->body_fn || !c->open || c->closing || c->body_paused)
        return 0;
    size_t n = c->body_fn(c, data, len, c->body_ud);
    if (n > len)
        n = len;
    if (n < len && c->body_fn)
        c->body_paused = true;
    return n;
}

/* The streamed body ended: its reader is told; or the dropped rest of one ended, and
 * the requests behind it are parsed. */
static void body_done(struct api_conn *c)
{
    if (c->body_discard) {
        c->body_discard = false;
        http_request_parser_reset(&c->parser);
        resume_later(c);
        return;
    }
    api_body_end_fn end = c->body_end;
    void *ud = c->body_ud;
    c->body_streaming = false;
    body_forget(c);
    http_request_parser_stream_body(&c->parser, NULL, NULL);
    if (end)
        end(c, ud);
}

static void parse_failed(struct api_conn *c);

/* The streamed body is malformed or over max_body: answered as any such request (when
 * no response began; a response under way is cut short instead) and the connection
 * ends. The handler learns of it from its close callback, as of a client gone. */
static void body_failed(struct api_conn *c)
{
    if (c->body_discard) {
        c->body_discard = false;
        conn_fail_later(c);
        return;
    }
    void (*cb)(struct api_conn *, void *) = c->close_cb;
    void *data = c->close_data;
    c->close_cb = NULL;
    c->close_data = NULL;
    c->body_streaming = false;
    body_forget(c);
    if (c->state == C_HANDLING) {
        c->state = C_READING; /* the handler's own answer, should one come, is ignored */
        parse_failed(c);
    } else {
        conn_fail_later(c);
    }
    if (cb)
        cb(c, data);
}

/* Gives the parser the client bytes buffered and not yet fed (some are), and drops
 * them from the buffer once all are taken; the parser's result. */
static int feed_buffered(struct api_conn *c)
{
    size_t used = 0;
    int r = http_request_feed(&c->parser, c->in.data + c->in_off, c->in.len - c->in_off, &used);
    c->in_off += used;
    if (c->in_off == c->in.len) {
        c->in.len = 0;
        c->in_off = 0;
    }
    return r;
}

/* Feeds buffered client bytes to the parser while a body streams: to its reader until
 * they run out, it pauses or the body ends (or dropped, after the response). Runs from
 * the loop. */
static void body_deliver(struct api_conn *c)
{
    c->refs++;
    while (c->open && !c->closing && (c->body_discard || (c->body_fn && !c->body_paused))) {
        if (c->in.len == c->in_off)
            break;
        int r = feed_buffered(c);
        if (r == HTTP_ERROR) {
            body_failed(c);
            break;
        }
        if (r == HTTP_DONE) {
            body_done(c);
            break;
        }
    }
    conn_watch(c);
    api_conn_unref(c);
}

void api_server_stream_bodies(struct api_server *s, bool on)
{
    s->stream_bodies = on;
}

bool api_conn_body_streaming(const struct api_conn *c)
{
    return c->body_streaming && (c->state == C_HANDLING || c->state == C_STREAMING);
}

int api_conn_body_read(struct api_conn *c, api_body_fn on_data, api_body_end_fn on_end, void *ud)
{
    if (!c->open || c->closing)
        return -EPIPE;
    if (!api_conn_body_streaming(c) || c->body_fn || !on_data)
        return -EINVAL;
    c->body_fn = on_data;
    c->body_end = on_end;
    c->body_ud = ud;
    c->body_paused = false;
    http_request_parser_stream_body(&c->parser, body_take, c);
    if (c->parser.req.expect_continue && !c->continue_sent && c->state == C_HANDLING) {
        /* The client waits for this before it sends the body (RFC 9110 10.1.1). */
        c->continue_sent = true;
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (conn_send(c, cont, sizeof cont - 1, NULL, 0) < 0) {
            conn_fail_later(c);
            return -EPIPE;
        }
    }
    if (c->in.len > c->in_off)
        deliver_later(c);
    conn_watch(c);
    return 0;
}

void api_conn_body_resume(struct api_conn *c)
{
    if (!c->open || c->closing || !c->body_fn || !c->body_paused)
        return;
    c->body_paused = false;
    deliver_later(c);
    conn_watch(c);
}

/* ---------- dispatch ---------- */

/* Hands the parsed request (head_done; its body whole, or streaming) to the handler. */
static void dispatch(struct api_conn *c)
{
    struct http_request *req = &c->parser.req;
    c->state = C_HANDLING;
    c->keep_alive = req->keep_alive && c->srv->accepting;
    c->head_req = !strcmp(req->method, "HEAD");
    c->tag = -1;
    c->srv->handler(c, req, c->srv->ud);
}

/* Parses buffered input and dispatches requests, one at a time. */
static void process_input(struct api_conn *c)
{
    if (c->dispatching)
        return;
    c->dispatching = true;
    c->refs++;
    while (c->open && !c->closing && c->state == C_READING && !c->close_after_flush && !out_full(c)) {
        if (c->body_discard) {
            body_deliver(c);
            if (c->body_discard)
                break;
            continue;
        }
        if (c->in.len == c->in_off)
            break;
        int r = feed_buffered(c);
        if (r == HTTP_NEED_MORE) {
            if (c->parser.head_done && c->srv->stream_bodies) {
                /* The body is not all here: the handler has the head (and the body's
                 * first bytes) now, and the rest as it comes. */
                c->body_streaming = true;
                dispatch(c);
                break;
            }
            if (c->parser.head_done && c->parser.req.expect_continue && !c->continue_sent) {
                c->continue_sent = true;
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                if (conn_send(c, cont, sizeof cont - 1, NULL, 0) < 0)
                    conn_fail_later(c);
            }
            break;
        }
        if (r == HTTP_ERROR) {
            parse_failed(c);
            break;
        }
        dispatch(c);
    }
    c->dispatching = false;
    conn_watch(c);
    api_conn_unref(c);
}

/* Reads and discards while lingering. */
static void linger_read(struct api_conn *c)
{
    char tmp[16384];
    ssize_t n = read(c->fd, tmp, sizeof tmp);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0 || (c->linger_bytes += (size_t)n) > API_LINGER_MAX)
        conn_close(c);
}

/* Room for the next read at the end of the input buffer (at least API_READ_CHUNK,
 * less one byte for the NUL that keeps the buffer a string). */
static size_t in_room(struct api_conn *c)
{
    if (c->in_off && c->in.cap - c->in.len < API_READ_CHUNK) {
        buf_consume(&c->in, c->in_off);
        c->in_off = 0;
    }
    buf_reserve(&c->in, API_READ_CHUNK);
    return c->in.cap - c->in.len - 1;
}

/* Bytes were appended to the input: parse them, or wait while a request is handled. */
static void input_arrived(struct api_conn *c)
{
    c->in.data[c->in.len] = '\0';
    c->last_active = ev_now_ms(c->loop);
    if (c->state == C_READING)
        process_input(c);
    else if (c->state == C_TUNNEL)
        tunnel_deliver(c);
    else if (c->body_fn)
        body_deliver(c);
    else
        conn_watch(c);
}

/* A plain HTTP request on the TLS port: one clear answer in plain HTTP (the client
 * reads it; a TLS alert would look like garbage to it), then the connection ends. */
static void tls_refuse_plain(struct api_conn *c)
{
    SSL_free(c->ssl);
    c->ssl = NULL;
    c->keep_alive = false;
    c->head_req = false;
    c->close_after_flush = true;
    json_t *j = error_json("tls_required", "this gustd serves HTTPS only: use https:// in the address", NULL);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    send_response(c, 400, "application/json", s, strlen(s), NULL);
    free(s);
    if (c->open && !c->closing && c->out.len == c->out_off)
        conn_linger(c);
}

/* conn_read over TLS. One SSL_read (which also drives the handshake), then whatever
 * the record layer still holds decrypted: epoll cannot see those bytes, so leaving
 * them would stall the connection. Without read-ahead OpenSSL reads no further than
 * the record it returns from, so the socket's readiness says the rest. */
static void tls_read(struct api_conn *c)
{
    if (!c->tls_sniffed) {
        unsigned char first;
        ssize_t p = recv(c->fd, &first, 1, MSG_PEEK);
        if (p < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        if (p <= 0) {
            conn_close(c);
            return;
        }
        c->tls_sniffed = true;
        /* Every TLS connection opens with a handshake record (content type 22);
         * every HTTP request with a method name. */
        if (first >= 'A' && first <= 'Z') {
            tls_refuse_plain(c);
            return;
        }
    }
    c->tls_rd_wants_write = false;
    size_t got = 0;
    for (;;) {
        size_t room = in_room(c);
        ERR_clear_error();
        int n = SSL_read(c->ssl, c->in.data + c->in.len, room > INT32_MAX ? INT32_MAX : (int)room);
        if (n > 0) {
            c->in.len += (size_t)n;
            got += (size_t)n;
            if (SSL_pending(c->ssl) > 0)
                continue;
            break;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ)
            break;
        if (e == SSL_ERROR_WANT_WRITE) {
            c->tls_rd_wants_write = true;
            break;
        }
        if (e == SSL_ERROR_ZERO_RETURN && c->state == C_TUNNEL) {
            /* close_notify: the client's end of the tunnel's input; it may still read. */
            c->tunnel_eof = true;
            tunnel_deliver(c);
            return;
        }
        if (e != SSL_ERROR_ZERO_RETURN && log_get_level() <= LOG_DEBUG) {
            char why[256];
            log_debug("api", "TLS connection failed: %s",
                      e == SSL_ERROR_SSL ? api_tls_last_error(why, sizeof why) : "closed by the client");
        }
        ERR_clear_error();
        conn_close(c);
        return;
    }
    if (got)
        input_arrived(c);
    else
        conn_watch(c);
}

static void conn_read(struct api_conn *c)
{
    if (c->lingering) {
        linger_read(c);
        return;
    }
    if (c->ssl) {
        tls_read(c);
        return;
    }
    size_t room = in_room(c);
    ssize_t n;
    do {
        n = read(c->fd, c->in.data + c->in.len, room);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            conn_close(c);
        return;
    }
    if (n == 0) {
        if (c->state == C_TUNNEL) {
            /* The end of the client's bytes; it may still read the other way. */
            c->tunnel_eof = true;
            tunnel_deliver(c);
            return;
        }
        /* The client went away (or half-closed: it cannot expect more from us). */
        conn_close(c);
        return;
    }
    assert((size_t)n <= room);
    c->in.len += (size_t)n;
    input_arrived(c);
}

static void conn_io(struct ev_loop *loop, int fd, uint32_t events, void *data)
{
    struct api_conn *c = data;
    if (c->closing)
        return;
    c->refs++;
    if (events & EV_ERROR)
        conn_close(c);
    if (c->ssl && c->open && !c->lingering) {
        /* The record layer may wait on the event opposite to its operation's. */
        if ((events & EV_WRITE) && c->tls_rd_wants_write)
            conn_read(c);
        if (c->ssl && c->open && (events & EV_READ) && c->tls_wr_wants_read) {
            conn_flush(c);
            if (c->ssl && c->open && !c->closing && !c->lingering && in_paused(c))
                events &= ~(uint32_t)EV_READ;
        }
    }
    if (c->open && (events & EV_WRITE))
        conn_flush(c);
    if (c->open && !c->closing && (events & EV_READ))
        conn_read(c);
    if (c->open && c->in.cap > API_KEEP_IN_CAP && c->in.len == 0) {
        buf_free(&c->in);
        c->in_off = 0;
    }
    api_conn_unref(c);
}

static void idle_fire(struct ev_loop *loop, void *data)
{
    struct api_conn *c = data;
    c->idle_timer = 0;
    if (!c->open)
        return;
    if (c->lingering) {
        conn_close(c);
        return;
    }
    struct api_server *s = c->srv;
    uint64_t idle_ms = s ? s->idle_ms : API_IDLE_TIMEOUT_MS;
    if (c->ssl && !SSL_is_init_finished(c->ssl)) {
        uint64_t limit = idle_ms < API_TLS_HANDSHAKE_MS ? idle_ms : API_TLS_HANDSHAKE_MS;
        uint64_t age = ev_now_ms(loop) - c->born_ms;
        if (age >= limit) {
            log_debug("api", "TLS handshake not finished within %llu ms; closing", (unsigned long long)limit);
            conn_close(c);
            return;
        }
        idle_arm(c, limit - age);
        return;
    }
    bool pending = c->out.len > c->out_off;
    bool body_waits = c->body_fn && !c->body_paused; /* on the client's next body bytes */
    if (c->state != C_READING && !pending && !body_waits) {
        /* The handler is working (or a stream is quiet): not idle. */
        idle_arm(c, idle_ms);
        return;
    }
    uint64_t now = ev_now_ms(loop), quiet = now - c->last_active;
    if (quiet >= idle_ms) {
        conn_close(c);
        return;
    }
    idle_arm(c, idle_ms - quiet);
}

/* ---------- listening ---------- */

static void accept_resume(struct ev_loop *loop, void *data)
{
    struct api_server *s = data;
    s->accept_timer = 0;
    if (s->fd >= 0)
        ev_io_mod(loop, s->fd, EV_READ);
}

static void conn_new(struct api_server *s, int fd)
{
    struct api_conn *c = xcalloc(1, sizeof *c);
    list_init(&c->link);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->srv = s;
    c->loop = s->loop;
    c->fd = fd;
    c->tag = -1;
    c->refs = 1;
    c->open = true;
    c->watched = EV_READ;
    c->last_active = ev_now_ms(s->loop);
    c->born_ms = c->last_active;
    if (s->tls) {
        c->ssl = SSL_new(s->tls);
        if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
            char why[256];
            log_warn("api", "TLS connection: %s", api_tls_last_error(why, sizeof why));
            SSL_free(c->ssl);
            close(fd);
            free(c);
            return;
        }
        SSL_set_accept_state(c->ssl);
    }
    http_request_parser_init(&c->parser, &s->limits);
    if (ev_io_add(s->loop, fd, EV_READ, conn_io, c) < 0) {
        http_request_parser_free(&c->parser);
        SSL_free(c->ssl);
        close(fd);
        free(c);
        return;
    }
    list_push_front(&s->conns, &c->link);
    s->nconns++;
    idle_arm(c, s->tls && s->idle_ms > API_TLS_HANDSHAKE_MS ? API_TLS_HANDSHAKE_MS : s->idle_ms);
}

/* Over the connection cap: discard what the client already sent (so closing does not
 * reset the connection), answer 503 if the socket takes it whole, and close. Nothing is
 * kept for it: a refused connection costs one accept, one send and one close. Over
 * TLS it is closed unanswered: a 503 would need a handshake, the very cost refused. */
static void conn_refuse(struct api_server *s, int fd)
{
    char tmp[4096];
    for (int i = 0; i < 16 && recv(fd, tmp, sizeof tmp, MSG_DONTWAIT) > 0; i++)
        ;
    if (!s->tls) {
        ssize_t w = send(fd, s->refuse_resp, s->refuse_len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w == (ssize_t)s->refuse_len)
            shutdown(fd, SHUT_WR);
    }
    close(fd);
    s->refused++;
    uint64_t now = ev_now_ms(s->loop);
    if (s->refused == 1 || now - s->refuse_logged_ms >= 10000) {
        s->refuse_logged_ms = now;
        log_warn("api", "%zu connections open (the limit): refusing new ones with 503 (%llu so far)",
                 s->max_conns, (unsigned long long)s->refused);
    }
}

static void server_accept(struct ev_loop *loop, int fd, uint32_t events, void *data)
{
    struct api_server *s = data;
    for (;;) {
        int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (cfd >= 0) {
            if (s->nconns >= s->max_conns)
                conn_refuse(s, cfd);
            else
                conn_new(s, cfd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            log_warn("api", "accept: %s; pausing accepts for %u ms", strerror(errno), API_ACCEPT_RETRY_MS);
            if (!s->accept_timer && ev_io_mod(loop, fd, 0) == 0)
                s->accept_timer = ev_timer_add(loop, API_ACCEPT_RETRY_MS, accept_resume, s);
        } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
            log_warn("api", "accept: %s", strerror(errno));
        }
        return;
    }
}

/* Splits "host:port", "[v6]:port" or ":port" into host (empty for none) and port. */
static int split_hostport(const char *hp, char *host, size_t host_cap, char *port, size_t port_cap,
                          struct gerr *err)
{
    const char *colon;
    const char *h = hp;
    size_t hl;
    if (hp[0] == '[') {
        const char *rb = strchr(hp, ']');
        if (!rb || rb[1] != ':')
            return gerr_set(err, EINVAL, "listen address \"%s\": expected [IPv6]:PORT", hp);
        h = hp + 1;
        hl = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(hp, ':');
        if (!colon)
            return gerr_set(err, EINVAL, "listen address \"%s\": expected HOST:PORT (e.g. 127.0.0.1:8470)", hp);
        hl = (size_t)(colon - hp);
    }
    const char *p = colon + 1;
    if (!*p || strlen(p) >= port_cap || strspn(p, "0123456789") != strlen(p) || atoi(p) > 65535)
        return gerr_set(err, EINVAL, "listen address \"%s\": port must be a number 0-65535", hp);
    if (hl >= host_cap)
        return gerr_set(err, EINVAL, "listen address \"%s\": host too long", hp);
    memcpy(host, h, hl);
    host[hl] = '\0';
    strcpy(port, p);
    return 0;
}

bool api_listen_is_loopback(const char *hostport)
{
    char host[256], port[8];
    struct gerr err;
    if (split_hostport(hostport, host, sizeof host, port, sizeof port, &err) < 0)
        return false;
    if (!host[0] || !strcasecmp(host, "localhost"))
        return true;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) ||
               (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    return false;
}

static int server_new(struct ev_loop *loop, int lfd, int port, const struct http_limits *limits,
                      api_handler_fn handler, void *ud, struct api_server **out, struct gerr *err);

int api_server_listen(struct ev_loop *loop, const char *hostport, const struct http_limits *limits,
                      api_handler_fn handler, void *ud, struct api_server **out, struct gerr *err)
{
    char host[256], port[8];
    int r = split_hostport(hostport, host, sizeof host, port, sizeof port, err);
    if (r < 0)
        return r;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int g = getaddrinfo(host[0] ? host : "127.0.0.1", port, &hints, &ai);
    if (g != 0)
        return gerr_set(err, EINVAL, "listen address \"%s\": %s", hostport, gai_strerror(g));
    AUTO_FD int fd = -1;
    int last = 0;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            last = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 1024) == 0)
            break;
        last = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0)
        return gerr_sys(err, last ? last : EADDRNOTAVAIL, "listen on %s", hostport);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        return gerr_sys(err, errno, "getsockname");
    int bound = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                         : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return server_new(loop, TAKE_FD(fd), bound, limits, handler, ud, out, err);
}

int api_server_listen_unix(struct ev_loop *loop, const char *path, mode_t mode, const struct http_limits *limits,
                           api_handler_fn handler, void *ud, struct api_server **out, struct gerr *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return gerr_set(err, ENAMETOOLONG, "socket path \"%s\": longer than %zu bytes", path,
                        sizeof sa.sun_path - 1);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    AUTO_FD int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return gerr_sys(err, errno, "socket for %s", path);
    struct stat st;
    /* A socket left by a previous run is replaced; anything else there is not ours. */
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return gerr_set(err, EEXIST, "%s exists and is not a socket", path);
        if (unlink(path) < 0)
            return gerr_sys(err, errno, "removing the old socket %s", path);
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        return gerr_sys(err, errno, "bind %s", path);
    if (chmod(path, mode) < 0 || listen(fd, 1024) < 0) {
        int e = errno;
        unlink(path);
        return gerr_sys(err, e, "listen on %s", path);
    }
    int r = server_new(loop, TAKE_FD(fd), 0, limits, handler, ud, out, err);
    if (r < 0)
        unlink(path);
    return r;
}

static int server_new(struct ev_loop *loop, int lfd, int port, const struct http_limits *limits,
                      api_handler_fn handler, void *ud, struct api_server **out, struct gerr *err)
{
    AUTO_FD int fd = lfd;
    int r;
    struct api_server *s = xcalloc(1, sizeof *s);
    list_init(&s->conns);
    s->port = port;
    s->loop = loop;
    s->handler = handler;
    s->ud = ud;
    s->idle_ms = API_IDLE_TIMEOUT_MS;
    s->accepting = true;
    api_server_set_max_conns(s, API_MAX_CONNS_DEFAULT);
    http_limits_default(&s->limits);
    if (limits) {
        if (limits->max_header_bytes)
            s->limits.max_header_bytes = limits->max_header_bytes;
        if (limits->max_headers)
            s->limits.max_headers = limits->max_headers;
        if (limits->max_body)
            s->limits.max_body = limits->max_body;
    }
    if ((r = ev_io_add(loop, fd, EV_READ, server_accept, s)) < 0) {
        free(s);
        return gerr_set(err, -r, "watch listening socket: %s", strerror(-r));
    }
    s->fd = TAKE_FD(fd);
    *out = s;
    return 0;
}

int api_server_port(const struct api_server *s)
{
    return s->port;
}

int api_server_use_tls(struct api_server *s, const char *cert_file, const char *key_file, struct gerr *err)
{
    SSL_CTX *ctx = api_tls_ctx_new(cert_file, key_file, err);
    if (!ctx)
        return -1;
    SSL_CTX_free(s->tls);
    s->tls = ctx;
    return 0;
}

bool api_server_tls(const struct api_server *s)
{
    return s->tls != NULL;
}

void api_server_set_idle_timeout(struct api_server *s, uint64_t ms)
{
    s->idle_ms = ms ? ms : API_IDLE_TIMEOUT_MS;
}

size_t api_server_conn_count(const struct api_server *s)
{
    return s->nconns;
}

void api_server_set_max_conns(struct api_server *s, size_t n)
{
    s->max_conns = n ? n : API_MAX_CONNS_DEFAULT;
    char msg[160];
    snprintf(msg, sizeof msg, "too many open connections: the limit is %zu (gustd --max-connections); retry later",
             s->max_conns);
    json_t *j = error_json("too_many_connections", msg, NULL);
    json_object_set_new(json_object_get(j, "error"), "limit", json_integer((json_int_t)s->max_conns));
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    struct buf b = {0};
    http_write_head(&b, 503, "application/json", (int64_t)strlen(body), false, "Retry-After: 1\r\n");
    buf_append(&b, body, strlen(body));
    free(body);
    free(s->refuse_resp);
    s->refuse_resp = b.data;
    s->refuse_len = b.len;
}

size_t api_server_max_conns(const struct api_server *s)
{
    return s->max_conns;
}

size_t api_server_out_high(const struct api_server *s)
{
    return s->out_high;
}

void api_server_stop_accepting(struct api_server *s)
{
    if (!s || !s->accepting)
        return;
    s->accepting = false;
    if (s->fd >= 0) {
        ev_io_del(s->loop, s->fd);
        close(s->fd);
        s->fd = -1;
    }
    if (s->accept_timer) {
        ev_timer_cancel(s->loop, s->accept_timer);
        s->accept_timer = 0;
    }
    list_for_each_safe(c, &s->conns, struct api_conn, link)
        if (c->state == C_READING && c->parser.st.head.len == 0 && c->in.len == c->in_off &&
            c->out.len == c->out_off && !c->close_after_flush && !c->closing)
            conn_close(c);
}

void api_server_free(struct api_server *s)
{
    if (!s)
        return;
    api_server_stop_accepting(s);
    while (!list_empty(&s->conns)) {
        struct api_conn *c = list_first_entry(&s->conns, struct api_conn, link);
        c->refs++;
        conn_close(c);
        api_conn_unref(c);
    }
    free(s->refuse_resp);
    SSL_CTX_free(s->tls);
    free(s);
}
