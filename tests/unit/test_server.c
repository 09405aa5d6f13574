/* Unit tests for src/api/server.c: a real server on 127.0.0.1 (ephemeral port) with its
 * event loop in a thread; blocking clients in the test thread. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "api/guard.h"
#include "api/server.h"
#include "base/util.h"
#include "evloop/evloop.h"
#include "http/http.h"
#include "unit.h"

/* ---------- the server side (loop thread) ---------- */

struct srv {
    struct ev_loop *loop;
    struct api_server *server;
    pthread_t thread;
    int stop_pipe[2];
    int close_cbs;      /* close callbacks seen */
    int requests;
    int json_reqs;      /* of them, to /json */
};

static struct srv S;
static size_t start_max_conns; /* for the next server_start; 0: the default */
static bool start_stream_bodies; /* for the next server_start: api_server_stream_bodies */
static const char *start_tls_cert, *start_tls_key; /* for the next server_start: serve TLS */
static SSL_CTX *client_tls;     /* non-NULL: client_open speaks TLS (no verification) */

/* CHECK longjmps into the test thread; the loop thread aborts instead. */
#define LOOP_ASSERT(cond)                                                              \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "loop thread: %s:%d: %s\n", __FILE__, __LINE__, #cond);     \
            abort();                                                                   \
        }                                                                              \
    } while (0)

struct later {
    struct api_conn *c;
    int n;             /* chunks left to stream */
    bool forever;
    uint64_t timer;
};

static void later_closed(struct api_conn *c, void *data)
{
    struct later *l = data;
    S.close_cbs++;
    if (l->timer)
        ev_timer_cancel(S.loop, l->timer);
    api_conn_unref(c);
    free(l);
}

static void later_respond(struct ev_loop *loop, void *data)
{
    struct later *l = data;
    l->timer = 0;
    api_conn_set_close_cb(l->c, NULL, NULL);
    api_conn_respond(l->c, 200, "text/plain", "deferred", 8, "X-Later: 1\r\n");
    api_conn_unref(l->c);
    free(l);
}

static void stream_tick(struct ev_loop *loop, void *data)
{
    struct later *l = data;
    l->timer = 0;
    char line[64];
    int n = snprintf(line, sizeof line, "{\"n\":%d}\n", l->n);
    LOOP_ASSERT(api_conn_stream_write(l->c, line, (size_t)n) == 0);
    if (l->forever || --l->n > 0) {
        l->timer = ev_timer_add(loop, 5, stream_tick, l);
        return;
    }
    api_conn_stream_end(l->c);
    api_conn_set_close_cb(l->c, NULL, NULL);
    api_conn_unref(l->c);
    free(l);
}

static struct later *later_new(struct api_conn *c)
{
    struct later *l = calloc(1, sizeof *l);
    l->c = c;
    api_conn_ref(c);
    api_conn_set_close_cb(c, later_closed, l);
    return l;
}

/* /tunnel: after the 101, the client's bytes come back as they are, but at most three
 * per offer (the rest pauses reading until a timer resumes it), and its EOF is
 * answered with "<EOF>" and the tunnel's end. */
static void tunnel_resume(struct ev_loop *loop, void *data)
{
    struct later *l = data;
    l->timer = 0;
    api_conn_tunnel_resume(l->c);
}

static size_t tunnel_read(struct api_conn *c, const void *data, size_t len, void *ud)
{
    struct later *l = ud;
    if (!len) {
        LOOP_ASSERT(api_conn_tunnel_write(c, "<EOF>", 5) == 0);
        api_conn_set_close_cb(c, NULL, NULL);
        api_conn_tunnel_end(c);
        if (l->timer)
            ev_timer_cancel(S.loop, l->timer);
        api_conn_unref(c);
        free(l);
        return 0;
    }
    size_t n = len < 3 ? len : 3;
    LOOP_ASSERT(api_conn_tunnel_write(c, data, n) == 0);
    if (n < len && !l->timer)
        l->timer = ev_timer_add(S.loop, 1, tunnel_resume, l);
    return n;
}

/* /body and /progress on a server that streams bodies: the reader takes at most 7
 * bytes per offer (the rest pauses reading until a timer resumes it). /body answers
 * the whole body at its end with X-First (the bytes that came with the head) and
 * X-Streamed; /progress starts its response at the first bytes ("got N\n") and ends it
 * with "end N\n" at the body's end. */
struct bodyrd {
    struct api_conn *c;
    struct buf got;
    size_t first;
    uint64_t timer;
    bool progress, begun;
};

static void bodyrd_free(struct bodyrd *b)
{
    if (b->timer)
        ev_timer_cancel(S.loop, b->timer);
    api_conn_unref(b->c);
    buf_free(&b->got);
    free(b);
}

static void body_closed(struct api_conn *c, void *data)
{
    S.close_cbs++;
    bodyrd_free(data);
}

static void body_resume(struct ev_loop *loop, void *data)
{
    struct bodyrd *b = data;
    b->timer = 0;
    api_conn_body_resume(b->c);
}

/* /progress's answer starts at the first body bytes it has. */
static void progress_begin(struct bodyrd *b)
{
    if (!b->progress || b->begun || !b->got.len)
        return;
    b->begun = true;
    LOOP_ASSERT(api_conn_stream_begin(b->c, 200, "text/plain", NULL) == 0);
    char line[64];
    int k = snprintf(line, sizeof line, "got %zu\n", b->got.len);
    LOOP_ASSERT(api_conn_stream_write(b->c, line, (size_t)k) == 0);
}

static size_t body_take_some(struct api_conn *c, const void *data, size_t len, void *ud)
{
    struct bodyrd *b = ud;
    LOOP_ASSERT(len > 0);
    size_t n = len < 7 ? len : 7;
    buf_append(&b->got, data, n);
    progress_begin(b);
    if (n < len && !b->timer)
        b->timer = ev_timer_add(S.loop, 0, body_resume, b);
    return n;
}

static void body_ended(struct api_conn *c, void *ud)
{
    struct bodyrd *b = ud;
    api_conn_set_close_cb(c, NULL, NULL);
    if (b->progress) {
        char line[64];
        int k = snprintf(line, sizeof line, "end %zu\n", b->got.len);
        LOOP_ASSERT(api_conn_stream_write(c, line, (size_t)k) == 0);
        api_conn_stream_end(c);
    } else {
        char hdr[96];
        snprintf(hdr, sizeof hdr, "X-First: %zu\r\nX-Streamed: 1\r\n", b->first);
        api_conn_respond(c, 200, "application/octet-stream", b->got.data, b->got.len, hdr);
    }
    bodyrd_free(b);
}

static void handler(struct api_conn *c, struct http_request *req, void *ud)
{
    S.requests++;
    const char *p = req->path;
    if (!strcmp(p, "/echo")) {
        char hdr[128];
        snprintf(hdr, sizeof hdr, "X-Method: %s\r\n", req->method);
        api_conn_respond(c, 200, "application/octet-stream", req->body.data, req->body.len, hdr);
    } else if (!strcmp(p, "/json")) {
        S.json_reqs++;
        char v[32] = "";
        http_query_get(req, "v", v, sizeof v);
        api_conn_respond_json(c, 200, json_pack("{s:s}", "v", v), NULL);
    } else if (!strcmp(p, "/stats")) {
        api_conn_respond_json(c, 200,
                              json_pack("{s:i,s:i,s:i,s:i,s:i}", "conns", (int)api_server_conn_count(S.server),
                                        "close_cbs", S.close_cbs, "requests", S.requests, "json_reqs", S.json_reqs,
                                        "out_high", (int)api_server_out_high(S.server)),
                              NULL);
    } else if (!strcmp(p, "/defer")) {
        struct later *l = later_new(c);
        l->timer = ev_timer_add(S.loop, 30, later_respond, l);
    } else if (!strcmp(p, "/never")) {
        later_new(c); /* answered never; freed by the close callback */
    } else if (!strcmp(p, "/stream") || !strcmp(p, "/stream_forever")) {
        LOOP_ASSERT(api_conn_stream_begin(c, 200, "application/x-ndjson", NULL) == 0);
        struct later *l = later_new(c);
        l->n = 5;
        l->forever = !strcmp(p, "/stream_forever");
        l->timer = ev_timer_add(S.loop, 5, stream_tick, l);
    } else if (!strcmp(p, "/tunnel")) {
        struct later *l = later_new(c);
        LOOP_ASSERT(api_conn_tunnel_begin(c, "Upgrade: test\r\nConnection: Upgrade\r\n", tunnel_read, l) == 0);
    } else if (!strcmp(p, "/body") || !strcmp(p, "/progress")) {
        if (!api_conn_body_streaming(c)) {
            LOOP_ASSERT(api_conn_body_read(c, body_take_some, NULL, NULL) == -EINVAL);
            api_conn_respond(c, 200, "application/octet-stream", req->body.data, req->body.len, "X-Streamed: 0\r\n");
            return;
        }
        struct bodyrd *b = calloc(1, sizeof *b);
        b->c = c;
        api_conn_ref(c);
        api_conn_set_close_cb(c, body_closed, b);
        buf_append(&b->got, req->body.data, req->body.len);
        b->first = req->body.len;
        b->progress = !strcmp(p, "/progress");
        LOOP_ASSERT(api_conn_body_read(c, body_take_some, body_ended, b) == 0);
        LOOP_ASSERT(api_conn_body_read(c, body_take_some, body_ended, b) == -EINVAL);
        progress_begin(b);
    } else if (!strcmp(p, "/early")) {
        api_conn_respond(c, 200, "text/plain", "early", 5, NULL); /* the body unread */
    } else if (!strcmp(p, "/twice")) {
        api_conn_error(c, 409, "conflict", "first", "f");
        api_conn_respond(c, 200, NULL, "x", 1, NULL); /* ignored */
    } else {
        api_conn_error(c, 404, "not_found", "no such path", NULL);
    }
}

static void stop_cb(struct ev_loop *loop, int fd, uint32_t events, void *data)
{
    ev_stop(loop);
}

static void *loop_thread(void *arg)
{
    ev_run(S.loop);
    return NULL;
}

static int server_start(const struct http_limits *lim, uint64_t idle_ms)
{
    memset(&S, 0, sizeof S);
    if (ev_loop_new(&S.loop) < 0)
        return -1;
    struct gerr err;
    if (api_server_listen(S.loop, "127.0.0.1:0", lim, handler, NULL, &S.server, &err) < 0) {
        fprintf(stderr, "listen: %s\n", err.msg);
        return -1;
    }
    if (idle_ms)
        api_server_set_idle_timeout(S.server, idle_ms);
    if (start_max_conns)
        api_server_set_max_conns(S.server, start_max_conns);
    api_server_stream_bodies(S.server, start_stream_bodies);
    if (start_tls_cert && api_server_use_tls(S.server, start_tls_cert, start_tls_key, &err) < 0) {
        fprintf(stderr, "tls: %s\n", err.msg);
        return -1;
    }
    if (pipe2(S.stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        return -1;
    ev_io_add(S.loop, S.stop_pipe[0], EV_READ, stop_cb, NULL);
    pthread_create(&S.thread, NULL, loop_thread, NULL);
    return api_server_port(S.server);
}

static void server_stop(void)
{
    if (write(S.stop_pipe[1], "x", 1) != 1)
        abort();
    pthread_join(S.thread, NULL);
    api_server_free(S.server);
    ev_io_del(S.loop, S.stop_pipe[0]);
    close(S.stop_pipe[0]);
    close(S.stop_pipe[1]);
    ev_loop_free(S.loop);
}

/* ---------- clients (test thread) ---------- */

struct client {
    int fd;
    SSL *ssl;
    char buf[65536];
    size_t len;
    struct http_response_parser p;
};

static int client_open(struct client *c, int port)
{
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    http_response_parser_init(&c->p, NULL);
    int r = connect(c->fd, (struct sockaddr *)&sa, sizeof sa);
    if (r < 0 || !client_tls)
        return r;
    c->ssl = SSL_new(client_tls);
    SSL_set_fd(c->ssl, c->fd);
    return SSL_connect(c->ssl) == 1 ? 0 : -1;
}

static void client_close(struct client *c)
{
    if (c->ssl)
        SSL_free(c->ssl);
    c->ssl = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    http_response_parser_free(&c->p);
}

static int client_send(struct client *c, const char *s, size_t len)
{
    if (c->ssl)
        return len == 0 || SSL_write(c->ssl, s, (int)len) == (int)len ? 0 : -EIO;
    return write_full(c->fd, s, len);
}

static ssize_t client_recv(struct client *c, void *buf, size_t cap)
{
    if (!c->ssl)
        return read(c->fd, buf, cap);
    int n = SSL_read(c->ssl, buf, (int)cap);
    if (n > 0)
        return n;
    ERR_clear_error();
    return SSL_get_error(c->ssl, n) == SSL_ERROR_ZERO_RETURN ? 0 : -1;
}

/* Reads one response into c->p (reset first). Returns HTTP_DONE, HTTP_ERROR, or -1
 * on EOF/timeout before completion. */
static int client_read(struct client *c)
{
    http_response_parser_reset(&c->p);
    for (;;) {
        if (c->len) {
            size_t used;
            int r = http_response_feed(&c->p, c->buf, c->len, &used);
            memmove(c->buf, c->buf + used, c->len - used);
            c->len -= used;
            if (r != HTTP_NEED_MORE)
                return r;
        }
        ssize_t n = client_recv(c, c->buf + c->len, sizeof c->buf - c->len);
        if (n <= 0)
            return n == 0 && http_response_eof(&c->p) == HTTP_DONE ? HTTP_DONE : -1;
        c->len += (size_t)n;
    }
}

/* Sends the request text and reads one complete response (the test fails otherwise). */
static void client_roundtrip(struct client *c, const char *req)
{
    CHECK_EQ_INT(client_send(c, req, strlen(req)), 0);
    CHECK_EQ_INT(client_read(c), HTTP_DONE);
}

/* True if the server closed the connection (EOF or reset) within the timeout. */
static bool client_sees_eof(struct client *c)
{
    char tmp[4096];
    for (;;) {
        errno = 0;
        ssize_t n = client_recv(c, tmp, sizeof tmp);
        if (n == 0 || (n < 0 && (errno == ECONNRESET || (c->ssl && errno != EAGAIN))))
            return true;
        if (n < 0)
            return false;
    }
}

static int stats(int port, const char *field)
{
    struct client c;
    if (client_open(&c, port) < 0)
        return -1;
    const char *req = "GET /stats HTTP/1.1\r\nConnection: close\r\n\r\n";
    client_send(&c, req, strlen(req));
    int v = -1;
    if (client_read(&c) == HTTP_DONE) {
        json_t *j = json_loads(c.p.resp.body.data, 0, NULL);
        v = (int)json_integer_value(json_object_get(j, field));
        json_decref(j);
    }
    client_close(&c);
    return v;
}

/* Polls a stat until it equals want (up to ~2 s). */
static bool wait_stat(int port, const char *field, int want)
{
    for (int i = 0; i < 200; i++) {
        if (stats(port, field) == want)
            return true;
        usleep(10000);
    }
    return false;
}

/* ---------- tests ---------- */

UNIT_TEST(test_keepalive_requests)
{
    int port = server_start(NULL, 0);
    CHECK(port > 0);
    struct client c;
    CHECK_EQ_INT(client_open(&c, port), 0);
    for (int i = 0; i < 20; i++) {
        char req[128];
        int n = snprintf(req, sizeof req, "GET /json?v=r%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
        CHECK_EQ_INT(client_send(&c, req, (size_t)n), 0);
        CHECK_EQ_INT(client_read(&c), HTTP_DONE);
        CHECK_EQ_INT(c.p.resp.status, 200);
        CHECK(c.p.resp.keep_alive);
        CHECK_STR(http_response_header(&c.p.resp, "Content-Type"), "application/json");
        char want[32];
        snprintf(want, sizeof want, "{\"v\":\"r%d\"}", i);
        CHECK_STR(c.p.resp.body.data, want);
    }
    /* Pipelined: several requests in one write, answered in order. */
    const char *pipe = "POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nonePOST /echo HTTP/1.1\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\nGET /nope HTTP/1.1\r\n\r\n"
                       "HEAD /echo HTTP/1.1\r\n\r\n";
    client_roundtrip(&c, pipe);
    CHECK_STR(c.p.resp.body.data, "one");
    CHECK_STR(http_response_header(&c.p.resp, "X-Method"), "POST");
    CHECK_EQ_INT(client_read(&c), HTTP_DONE);
    CHECK_STR(c.p.resp.body.data, "two");
    CHECK_EQ_INT(client_read(&c), HTTP_DONE);
    CHECK_EQ_INT(c.p.resp.status, 404);
    CHECK(strstr(c.p.resp.body.data, "\"code\":\"not_found\"") != NULL);
    http_response_parser_set_head(&c.p, true);
    c.p.head_request = true;
    http_response_parser_reset(&c.p);
    /* client_read resets; feed manually for HEAD. */
    size_t used;
    int r = HTTP_NEED_MORE;
    while (r == HTTP_NEED_MORE) {
        http_response_parser_set_head(&c.p, true);
        if (c.len) {
            r = http_response_feed(&c.p, c.buf, c.len, &used);
            memmove(c.buf, c.buf + used, c.len - used);
            c.len -= used;
            if (r != HTTP_NEED_MORE)
                break;
        }
        ssize_t n = read(c.fd, c.buf + c.len, sizeof c.buf - c.len);
        CHECK(n > 0);
        c.len += (size_t)n;
    }
    CHECK_EQ_INT(r, HTTP_DONE);
    CHECK_EQ_INT(c.p.resp.content_length, 0);
    CHECK_EQ_INT(c.len, 0);
    /* Connection: close is honoured. */
    const char *bye = "GET /json HTTP/1.1\r\nConnection: close\r\n\r\n";
    client_roundtrip(&c, bye);
    CHECK(!c.p.resp.keep_alive);
    CHECK(client_sees_eof(&c));
    client_close(&c);
    /* HTTP/1.0 without keep-alive closes too. */
    CHECK_EQ_INT(client_open(&c, port), 0);
    const char *old = "GET /json HTTP/1.0\r\n\r\n";
    client_roundtrip(&c, old);
    CHECK(client_sees_eof(&c));
    client_close(&c);
    /* A second response to one request is ignored. */
    CHECK_EQ_INT(client_open(&c, port), 0);
    const char *tw = "GET /twice HTTP/1.1\r\n\r\nGET /json?v=after HTTP/1.1\r\n\r\n";
    client_roundtrip(&c, tw);
    CHECK_EQ_INT(c.p.resp.status, 409);
    CHECK_STR(c.p.resp.body.data, "{\"error\":{\"code\":\"conflict\",\"message\":\"first\",\"field\":\"f\"}}");
    CHECK_EQ_INT(client_read(&c), HTTP_DONE);
    CHECK_STR(c.p.resp.body.data, "{\"v\":\"after\"}");
    client_close(&c);
    CHECK(wait_stat(port, "conns", 1));
    server_stop();
}

UNIT_TEST(test_deferred_response)
{
    int port = server_start(NULL, 0);
    struct client c;
    CHECK_EQ_INT(client_open(&c, port), 0);
    /* The deferred one, with a pipelined request waiting behind it. */
    const char *req = "GET /defer HTTP/1.1\r\n\r\nGET /json?v=2 HTTP/1.1\r\n\r\n";
    client_roundtrip(&c, req);
    CHECK_EQ_INT(c.p.resp.status, 200);
    CHECK_STR(c.p.resp.body.data, "deferred");
    CHECK_STR(http_response_header(&c.p.resp, "X-Later"), "1");
    CHECK_EQ_INT(client_read(&c), HTTP_DONE);
    CHECK_STR(c.p.resp.body.data, "{\"v\":\"2\"}");
    client_close(&c);
    CHECK_EQ_INT(stats(port, "close_cbs"), 0);
    server_stop();
}

static int stream_cb(void *ud, const struct http_response *resp, const void *data, size_t len)
{
    struct buf *b = ud;
    buf_append(b, data, len);
    return 0;
}

UNIT_TEST(test_streaming_response)
{
    int port = server_start(NULL, 0);
    struct client c;
    CHECK_EQ_INT(client_open(&c, port), 0);
    struct buf got = {0};
    http_response_parser_set_body_cb(&c.p, stream_cb, &got);
    const char *req = "GET /stream HTTP/1.1\r\n\r\n";
    client_roundtrip(&c, req);
    CHECK(c.p.resp.chunked);
    CHECK_STR(got.data, "{\"n\":5}\n{\"n\":4}\n{\"n\":3}\n{\"n\":2}\n{\"n\":1}\n");
    buf_free(&got);
    /* The connection is reusable after the stream. */
    http_response_parser_set_body_cb(&c.p, NULL, NULL);
    const char *again = "GET /json?v=x HTTP/1.1\r\n\r\n";
    client_roundtrip(&c, again);
    CHECK_STR(c.p.resp.body.data, "{\"v\":\"x\"}");
    client_close(&c);
    /* HTTP/1.0: unframed, ended by close. */
    CHECK_EQ_INT(client_open(&c, port), 0);
    const char *old = "GET /stream HTTP/1.0\r\n\r\n";
    client_roundtrip(&c, old);
    CHECK(c.p.resp.until_close);
    CHECK(strstr(c.p.resp.body.data, "{\"n\":1}\n") != NULL);
    client_close(&c);
    CHECK_EQ_INT(stats(port, "close_cbs"), 0);
    server_stop();
}

UNIT_TEST(test_client_disconnects)
{
    int port = server_start(NULL, 0);
    struct client c;
    /* Mid-request (partial head, then partial body). */
    CHECK_EQ_INT(client_open(&c, port), 0);
    CHECK_EQ_INT(client_send(&c, "POST /echo HTTP/1.1\r\nContent-Le", 31), 0);
    client_close(&c);
    CHECK_EQ_INT(client_open(&c, port), 0);
    const char *part = "POST /echo HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc";
    CHECK_EQ_INT(client_send(&c, part, strlen(part)), 0);
    client_close(&c);
    /* While the handler holds the request (deferred, never answered). */
    CHECK_EQ_INT(client_open(&c, port), 0);
    const char *nv = "GET /never HTTP/1.1\r\n\r\n";
    CHECK_EQ_INT(client_send(&c, nv, strlen(nv)), 0);
    usleep(20000);
    client_close(&c);
    CHECK(wait_stat(port, "close_cbs", 1));
    /* Mid-stream. */
    CHECK_EQ_INT(client_open(&c, port), 0);
    const char *sf = "GET /stream_forever HTTP/1.1\r\n\r\n";
    CHECK_EQ_INT(client_send(&c, sf, strlen(sf)), 0);
    char tmp[256];
    CHECK(read(c.fd, tmp, sizeof tmp) > 0);
    client_close(&c);
    CHECK(wait_stat(port, "close_cbs", 2));
    CHECK(wait_stat(port, "conns", 1));
    server_stop();
}

/* A tunnel: the 101 and its headers, bytes sent behind the request and after it come
 * back in order through a reader that takes three at a time (paused and resumed),
 * the client's EOF reaches the reader while the tunnel still writes, and its end
 * closes the connection; a client that goes away runs the close callback. Plain and
 * TLS. */
static void tunnel_once(int port)
{
    struct client c;
    CHECK_EQ_INT(client_open(&c, port), 0);
    const char *req = "GET /tunnel HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: test\r\n\r\nearly,";
    CHECK_EQ_INT(client_send(&c, req, strlen(req)), 0);
    CHECK_EQ_INT(client_send(&c, "hello tunnel", 12), 0);
    if (c.ssl)
        SSL_shutdown(c.ssl); /* close_notify: the end of the client's bytes */
    else
        shutdown(c.fd, SHUT_WR);
    char all[512];
    size_t got = 0;
    ssize_t n;
    while (got < sizeof all - 1 && (n = client_recv(&c, all + got, sizeof all - 1 - got)) > 0)
        got += (size_t)n;
    all[got] = 0;
    CHECK(!strncmp(all, "HTTP/1.1 101 Switching Protocols\r\n", 34));
    CHECK(strstr(all, "\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n") != NULL);
    const char *body = strstr(all, "\r\n\r\n") + 4;
    CHECK_STR(body, "early,hello tunnel<EOF>");
    client_close(&c);
}

UNIT_TEST(test_tunnel)
{
    int port = server_start(NULL, 0);
    tunnel_once(port);
    struct client c;
    CHECK_EQ_INT(client_open(&c, port), 0);
    const char *req = "GET /tunnel HTTP/1.1\r\n\r\n";
    CHECK_EQ_INT(client_send(&c, req, strlen(req)), 0);
    char tmp[256];
    CHECK(client_recv(&c, tmp, sizeof tmp) > 0);
    client_close(&c);
    /* A reset (not an EOF): the client is gone. */
    CHECK_EQ_INT(client_open(&c, port), 0);
    CHECK_EQ_INT(client_send(&c, req, strlen(req)), 0);
    CHECK(client_recv(&c, tmp, sizeof tmp) > 0);
    struct linger lg = {1, 0};
    setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    client_close(&c);
    CHECK(wait_stat(port, "close_cbs", 1));
    CHECK(wait_stat(port, "conns", 1));
    server_stop();
}

/* Reads from c until text appears in what came (kept in all, NUL-terminated). */
static bool client_wait_text(struct client *c, char *all, size_t cap, size_t *got, const char *text)
{
    while (!strstr(all, text)) {
        ssize_t n = client_recv(c, all + *got, cap - 1 - *got);
        if (n <= 0)
            return false;
        *got += (size_t)n;
        all[*got] = 0;
    }
    return true;
}

static const char *resp_header(struct client *c, const char *name)
{
    const char *v = http_response_header(&c->p.resp, name);
    return v ? v : "";
}

/* Streamed request bodies (api_server_stream_bodies): a body that came whole with its
 * head is handled as on any server; one still arriving reaches the handler at its
 * head, then its reader in order (Content-Length and chunked, paused and resumed),
 * with the 100 Continue sent when the reader starts; the handler answers while the
 * body still comes (shown by ordering: the client sends the rest only once it read
 * the answer's start); an answer that leaves the body unread has the rest dropped and
 * the connection serves on, or closes when the client waits for a 100; a chunked body
 * over max_body is answered 413 mid-way and the handler's close callback runs, as it
 * does for a client gone mid-body or idle past the timeout mid-body. */
UNIT_TEST(test_streamed_bodies)
{
    struct http_limits lim = {.max_body = 1000};
    start_stream_bodies = true;
    int port = server_start(&lim, 300);
    start_stream_bodies = false;
    struct client c;
    CHECK_EQ_INT(client_open(&c, port), 0);
    /* Whole with the head: buffered. */
    client_roundtrip(&c, "POST /body HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    CHECK_EQ_INT(c.p.resp.status, 200);
    CHECK_STR(resp_header(&c, "X-Streamed"), "0");
    CHECK_STR(c.p.resp.body.data, "hello");
    /* The head first, then the body in pieces: streamed, whole and in order. */
    const char *head = "POST /body HTTP/1.1\r\nContent-Length: 62\r\n\r\n0123456789";
    CHECK_EQ_INT(client_send(&c, head, strlen(head)), 0);
    usleep(20000);
    CHECK_EQ_INT(client_send(&c, "abcdefghijklmnopqrstuvwxyz", 26), 0);
    usleep(20000);
    CHECK_EQ_INT(client_send(&c, "ABCDEFGHIJKLMNOPQRSTUVWXYZ", 26), 0);
    CHECK_EQ_INT(client_read(&c), HTTP_DONE);
    CHECK_STR(resp_header(&c, "X-Streamed"), "1");
    CHECK_STR(resp_header(&c, "X-First"), "10");
    CHECK_STR(c.p.resp.body.data, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ");
    CHECK(c.p.resp.keep_alive);
    /* Chunked, its chunks split anywhere; then a pipelined request behind it. */
    const char *ch = "POST /body HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    CHECK_EQ_INT(client_send(&c, ch, strlen(ch)), 0);
    usleep(20000);
    const char *chunks = "a\r\n0123456789\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\nGET /json?v=after HTTP/1.1\r\n\r\n";
    for (const char *q = chunks; *q; q += 9) {
        size_t n = strlen(q) < 9 ? strlen(q) : 9;
        CHECK_EQ_INT(client_send(&c, q, n), 0);
        if (strlen(q) < 9)
            break;
    }
    CHECK_EQ_INT(client_read(&c), HTTP_DONE);
    CHECK_STR(resp_header(&c, "X-Streamed"), "1");
    CHECK_STR(c.p.resp.body.data, "0123456789abcdefghijklmnopqrstuvwxyz");
    CHECK_EQ_INT(client_read(&c), HTTP_DONE);
    CHECK_STR(c.p.resp.body.data, "{\"v\":\"after\"}");
    /* Expect: 100-continue: the 100 comes once the handler reads the body. */
    client_roundtrip(&c, "POST /body HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    CHECK_EQ_INT(c.p.resp.status, 100);
    CHECK_EQ_INT(client_send(&c, "data", 4), 0);
    CHECK_EQ_INT(client_read(&c), HTTP_DONE);
    CHECK_STR(c.p.resp.body.data, "data");
    /* The answer starts while the body is still to come. */
    const char *pr = "POST /progress HTTP/1.1\r\nContent-Length: 20\r\n\r\n0123456789";
    CHECK_EQ_INT(client_send(&c, pr, strlen(pr)), 0);
    char all[4096] = "";
    size_t got = 0;
    CHECK(client_wait_text(&c, all, sizeof all, &got, "got 10\n"));
    CHECK_EQ_INT(client_send(&c, "abcdefghij", 10), 0);
    CHECK(client_wait_text(&c, all, sizeof all, &got, "end 20\n\r\n0\r\n\r\n"));
    /* Answered with the body unread: the rest is dropped, the connection serves on. */
    client_roundtrip(&c, "POST /early HTTP/1.1\r\nContent-Length: 30\r\n\r\n0123456789");
    CHECK_STR(c.p.resp.body.data, "early");
    CHECK(c.p.resp.keep_alive);
    CHECK_EQ_INT(client_send(&c, "abcdefghijklmnopqrst", 20), 0);
    client_roundtrip(&c, "GET /json?v=next HTTP/1.1\r\n\r\n");
    CHECK_STR(c.p.resp.body.data, "{\"v\":\"next\"}");
    /* ... unless the client waits for a 100 that never came: the connection closes. */
    client_roundtrip(&c, "POST /early HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 30\r\n\r\n");
    CHECK_EQ_INT(c.p.resp.status, 200);
    CHECK(!c.p.resp.keep_alive);
    CHECK(client_sees_eof(&c));
    client_close(&c);
    /* A chunked body over max_body: 413 mid-way, the handler told by its close callback. */
    int closes = stats(port, "close_cbs");
    struct buf b = {0};
    buf_append_str(&b, "POST /body HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    CHECK_EQ_INT(client_open(&c, port), 0);
    CHECK_EQ_INT(client_send(&c, b.data, b.len), 0);
    usleep(20000);
    buf_reset(&b);
    for (int i = 0; i < 15; i++) {
        http_write_chunk_header(&b, 100);
        for (int k = 0; k < 100; k++)
            buf_append(&b, "z", 1);
        buf_append(&b, "\r\n", 2);
    }
    client_send(&c, b.data, b.len);
    buf_free(&b);
    CHECK_EQ_INT(client_read(&c), HTTP_DONE);
    CHECK_EQ_INT(c.p.resp.status, 413);
    CHECK(client_sees_eof(&c));
    client_close(&c);
    CHECK(wait_stat(port, "close_cbs", closes + 1));
    /* A client gone mid-body, and one idle mid-body past the timeout: the same. */
    CHECK_EQ_INT(client_open(&c, port), 0);
    CHECK_EQ_INT(client_send(&c, head, strlen(head)), 0);
    usleep(20000);
    client_close(&c);
    CHECK(wait_stat(port, "close_cbs", closes + 2));
    CHECK_EQ_INT(client_open(&c, port), 0);
    CHECK_EQ_INT(client_send(&c, head, strlen(head)), 0);
    CHECK(client_sees_eof(&c));
    client_close(&c);
    CHECK(wait_stat(port, "close_cbs", closes + 3));
    server_stop();
}

/* Checks an error answer: status, JSON code, and that the server then closes. */
static void expect_error(int port, const char *req, size_t len, int status, const char *code)
{
    struct client c;
    CHECK_EQ_INT(client_open(&c, port), 0);
    client_send(&c, req, len);
    CHECK_EQ_INT(client_read(&c), HTTP_DONE);
    CHECK_EQ_INT(c.p.resp.status, status);
    CHECK(!c.p.resp.keep_alive);
    json_t *j = json_loads(c.p.resp.body.data, 0, NULL);
    CHECK(j != NULL);
    CHECK_STR(json_string_value(json_object_get(json_object_get(j, "error"), "code")), code);
    CHECK(json_string_value(json_object_get(json_object_get(j, "error"), "message")) != NULL);
    json_decref(j);
    CHECK(client_sees_eof(&c));
    client_close(&c);
}

UNIT_TEST(test_limits_and_errors)
{
    struct http_limits lim = {.max_header_bytes = 4096, .max_headers = 20, .max_body = 1024};
    int port = server_start(&lim, 0);
    /* 413: declared too large (answered before the body is sent). */
    const char *big = "POST /echo HTTP/1.1\r\nContent-Length: 5000\r\n\r\n";
    expect_error(port, big, strlen(big), 413, "payload_too_large");
    /* 413 while sending the body anyway (chunked) — the client is not reset. */
    struct buf b = {0};
    buf_append_str(&b, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 40; i++) {
        http_write_chunk_header(&b, 100);
        for (int k = 0; k < 100; k++)
            buf_append(&b, "z", 1);
        buf_append(&b, "\r\n", 2);
    }
    expect_error(port, b.data, b.len, 413, "payload_too_large");
    /* 431: head too large, too many headers. */
    buf_reset(&b);
    buf_append_str(&b, "GET /json HTTP/1.1\r\nX-Big: ");
    for (int i = 0; i < 5000; i++)
        buf_append(&b, "a", 1);
    buf_append_str(&b, "\r\n\r\n");
    expect_error(port, b.data, b.len, 431, "headers_too_large");
    buf_reset(&b);
    buf_append_str(&b, "GET /json HTTP/1.1\r\n");
    for (int i = 0; i < 30; i++)
        buf_printf(&b, "X-H%d: v\r\n", i);
    buf_append_str(&b, "\r\n");
    expect_error(port, b.data, b.len, 431, "headers_too_large");
    buf_free(&b);
    /* 400 malformed, 505 version. */
    const char *bad = "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n";
    expect_error(port, bad, strlen(bad), 400, "bad_request");
    const char *v2 = "GET / HTTP/2.0\r\n\r\n";
    expect_error(port, v2, strlen(v2), 505, "http_version_not_supported");
    /* A body within the limit still works, and 100-continue is answered. */
    struct client c;
    CHECK_EQ_INT(client_open(&c, port), 0);
    const char *ec = "POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
    client_roundtrip(&c, ec);
    CHECK_EQ_INT(c.p.resp.status, 100);
    CHECK_EQ_INT(client_send(&c, "data", 4), 0);
    CHECK_EQ_INT(client_read(&c), HTTP_DONE);
    CHECK_EQ_INT(c.p.resp.status, 200);
    CHECK_STR(c.p.resp.body.data, "data");
    client_close(&c);
    server_stop();
}

UNIT_TEST(test_idle_timeout_and_stop)
{
    int port = server_start(NULL, 100);
    struct client idle, busy;
    CHECK_EQ_INT(client_open(&idle, port), 0);
    uint64_t t0 = mono_ms();
    CHECK(client_sees_eof(&idle));
    uint64_t dt = mono_ms() - t0;
    CHECK(dt >= 80 && dt < 3000);
    client_close(&idle);
    /* A request in progress (deferred) is not idle. */
    CHECK_EQ_INT(client_open(&busy, port), 0);
    const char *nv = "GET /never HTTP/1.1\r\n\r\n";
    CHECK_EQ_INT(client_send(&busy, nv, strlen(nv)), 0);
    usleep(300000);
    CHECK(wait_stat(port, "conns", 2));
    /* Stop accepting: new connects fail; idle keep-alive ones are closed. */
    CHECK_EQ_INT(client_open(&idle, port), 0);
    usleep(20000);
    /* Ask the loop to stop accepting via its thread: stop the loop, call, restart. */
    if (write(S.stop_pipe[1], "x", 1) != 1)
        abort();
    pthread_join(S.thread, NULL);
    char drain[8];
    CHECK_EQ_INT(read(S.stop_pipe[0], drain, sizeof drain), 1);
    api_server_stop_accepting(S.server);
    CHECK_EQ_INT(api_server_conn_count(S.server), 1); /* the busy one */
    pthread_create(&S.thread, NULL, loop_thread, NULL);
    CHECK(client_sees_eof(&idle));
    client_close(&idle);
    struct client late;
    CHECK(client_open(&late, port) < 0);
    client_close(&late);
    client_close(&busy);
    server_stop();
    CHECK_EQ_INT(S.close_cbs, 1);
}

/* Many sequential keep-alive requests; prints the rate (not a benchmark: ASan). */
UNIT_TEST(test_throughput)
{
    int port = server_start(NULL, 0);
    struct client c;
    CHECK_EQ_INT(client_open(&c, port), 0);
    const char *req = "GET /json?v=1 HTTP/1.1\r\nHost: x\r\n\r\n";
    size_t len = strlen(req);
    int n = 5000;
    uint64_t t0 = mono_ns();
    for (int i = 0; i < n; i++) {
        CHECK_EQ_INT(client_send(&c, req, len), 0);
        CHECK_EQ_INT(client_read(&c), HTTP_DONE);
        CHECK_EQ_INT(c.p.resp.status, 200);
    }
    double s = (double)(mono_ns() - t0) / 1e9;
    fprintf(stderr, "  info: %d sequential keep-alive requests in %.3f s (%.0f req/s)\n", n, s, n / s);
    client_close(&c);
    server_stop();
}

struct writer {
    int fd;
    const char *data;
    size_t len;
    int rc;
};

static void *writer_thread(void *arg)
{
    struct writer *w = arg;
    w->rc = write_full(w->fd, w->data, w->len);
    return NULL;
}

/* A client pipelines many requests and reads nothing: the server stops parsing them
 * once about API_OUT_PAUSE bytes of responses wait, so its buffer stays bounded; when
 * the client reads, every response comes, in order. */
UNIT_TEST(test_pipelined_flood_bounded)
{
    int port = server_start(NULL, 0);
    struct client c;
    CHECK_EQ_INT(client_open(&c, port), 0);
    int small = 16 * 1024;
    setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    enum { N = 100000 };
    const size_t rlen = strlen("GET /json?v=000000 HTTP/1.1\r\n\r\n");
    char *all = malloc(N * rlen + 1);
    for (int i = 0; i < N; i++) {
        char one[64];
        snprintf(one, sizeof one, "GET /json?v=%06d HTTP/1.1\r\n\r\n", i);
        memcpy(all + (size_t)i * rlen, one, rlen);
    }
    struct writer w = {.fd = c.fd, .data = all, .len = N * rlen, .rc = -1};
    pthread_t wt;
    pthread_create(&wt, NULL, writer_thread, &w);
    /* Wait until the server stops answering (paused), at most ~5 s. */
    int last = -1, handled = 0;
    for (int i = 0; i < 50; i++) {
        usleep(100000);
        handled = stats(port, "json_reqs");
        if (handled == last)
            break;
        last = handled;
    }
    int high = stats(port, "out_high");
    fprintf(stderr, "  info: paused after %d of %d pipelined requests; at most %d bytes buffered\n", handled, N,
            high);
    CHECK(handled > 0 && handled < N);
    CHECK(high >= (int)API_OUT_PAUSE && high <= (int)API_OUT_PAUSE + 4096);
    /* Now read: every response, in order. */
    for (int i = 0; i < N; i++) {
        CHECK_EQ_INT(client_read(&c), HTTP_DONE);
        CHECK_EQ_INT(c.p.resp.status, 200);
        char want[32];
        snprintf(want, sizeof want, "{\"v\":\"%06d\"}", i);
        if (strcmp(c.p.resp.body.data, want) != 0)
            CHECK_STR(c.p.resp.body.data, want);
    }
    pthread_join(wt, NULL);
    CHECK_EQ_INT(w.rc, 0);
    CHECK_EQ_INT(stats(port, "json_reqs"), N);
    CHECK(stats(port, "out_high") <= (int)API_OUT_PAUSE + 4096);
    free(all);
    client_close(&c);
    server_stop();
}

/* Over the connection cap: a clean 503 with the JSON error naming the limit, then
 * close; the open connections keep working, and a slot freed is usable again. */
UNIT_TEST(test_connection_cap)
{
    start_max_conns = 8;
    int port = server_start(NULL, 0);
    start_max_conns = 0;
    CHECK_EQ_INT(api_server_max_conns(S.server), 8);
    struct client cs[8];
    for (int i = 0; i < 8; i++) {
        CHECK_EQ_INT(client_open(&cs[i], port), 0);
        client_roundtrip(&cs[i], "GET /json?v=a HTTP/1.1\r\n\r\n");
        CHECK_EQ_INT(cs[i].p.resp.status, 200);
    }
    struct client extra;
    CHECK_EQ_INT(client_open(&extra, port), 0);
    CHECK_EQ_INT(client_read(&extra), HTTP_DONE);
    CHECK_EQ_INT(extra.p.resp.status, 503);
    CHECK(!extra.p.resp.keep_alive);
    CHECK_STR(http_response_header(&extra.p.resp, "Content-Type"), "application/json");
    json_t *j = json_loads(extra.p.resp.body.data, 0, NULL);
    json_t *e = json_object_get(j, "error");
    CHECK_STR(json_string_value(json_object_get(e, "code")), "too_many_connections");
    CHECK_EQ_INT(json_integer_value(json_object_get(e, "limit")), 8);
    CHECK(strstr(json_string_value(json_object_get(e, "message")), "limit is 8") != NULL);
    json_decref(j);
    CHECK(client_sees_eof(&extra));
    client_close(&extra);
    for (int i = 0; i < 8; i++) {
        client_roundtrip(&cs[i], "GET /json?v=b HTTP/1.1\r\n\r\n");
        CHECK_EQ_INT(cs[i].p.resp.status, 200);
        CHECK_STR(cs[i].p.resp.body.data, "{\"v\":\"b\"}");
    }
    /* One closes: its slot is free again (once the server saw the close). */
    client_close(&cs[0]);
    int status = 0;
    for (int i = 0; i < 200 && status != 200; i++) {
        struct client again;
        CHECK_EQ_INT(client_open(&again, port), 0);
        const char *req = "GET /json?v=c HTTP/1.1\r\nConnection: close\r\n\r\n";
        CHECK_EQ_INT(client_send(&again, req, strlen(req)), 0);
        status = client_read(&again) == HTTP_DONE ? again.p.resp.status : -1;
        client_close(&again);
        if (status != 200)
            usleep(10000);
    }
    CHECK_EQ_INT(status, 200);
    for (int i = 1; i < 8; i++)
        client_close(&cs[i]);
    server_stop();
}

/* Host names: IP literals and localhost always; other names only when listed. */
UNIT_TEST(test_guard_host_names)
{
    struct api_guard g = {.hosts = {"gust.internal"}, .nhosts = 1};
    const char *ok[] = {"127.0.0.1:8470", "127.0.0.1", "localhost:8470", "LOCALHOST", "10.1.2.3:80", "[::1]:8470",
                        "[::1]", "gust.internal:8470", "Gust.Internal"};
    const char *bad[] = {"evil.example:8470", "evil.example", "localhost.evil.example", "127.0.0.1.evil.example",
                         "[::1", "[::1]x", "", ":8470", "gust.internal.evil.example", "[evil]:80"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        CHECK(api_guard_host_ok(&g, ok[i]));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(!api_guard_host_ok(&g, bad[i]));
}

/* gustd's own origin (the dashboard's): scheme and exactly the Host, nothing else. */
UNIT_TEST(test_guard_same_origin)
{
    CHECK(api_guard_same_origin("http://127.0.0.1:8470", "127.0.0.1:8470"));
    CHECK(api_guard_same_origin("https://Gust.Internal:8470", "gust.internal:8470"));
    CHECK(api_guard_same_origin("http://[::1]:8470", "[::1]:8470"));
    CHECK(api_guard_same_origin("http://localhost", "localhost"));
    CHECK(!api_guard_same_origin("http://127.0.0.1:8480", "127.0.0.1:8470"));
    CHECK(!api_guard_same_origin("http://127.0.0.1", "127.0.0.1:8470"));
    CHECK(!api_guard_same_origin("http://127.0.0.1:8470/", "127.0.0.1:8470"));
    CHECK(!api_guard_same_origin("null", "127.0.0.1:8470"));
    CHECK(!api_guard_same_origin("ftp://127.0.0.1:8470", "127.0.0.1:8470"));
    CHECK(!api_guard_same_origin("127.0.0.1:8470", "127.0.0.1:8470"));
    CHECK(!api_guard_same_origin("http://evil.example:8470", "127.0.0.1:8470"));
    CHECK(!api_guard_same_origin("http://", ""));
    CHECK(!api_guard_same_origin("http://127.0.0.1:8470", NULL));
}

/* A self-signed P-256 certificate for 127.0.0.1 and its key, as PEM files in dir. */
static int make_cert(const char *dir, char *cert, char *key, size_t cap)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (!pk || !x)
        return -1;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, pk);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)"gust unit", -1, -1, 0);
    X509_set_issuer_name(x, nm);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, "IP:127.0.0.1");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    int ok = X509_sign(x, pk, EVP_sha256()) > 0;
    snprintf(cert, cap, "%s/cert.pem", dir);
    snprintf(key, cap, "%s/key.pem", dir);
    FILE *fc = fopen(cert, "we"), *fk = fopen(key, "we");
    ok = ok && fc && fk && PEM_write_X509(fc, x) == 1 && PEM_write_PrivateKey(fk, pk, NULL, NULL, 0, NULL, NULL) == 1;
    if (fc)
        fclose(fc);
    if (fk)
        fclose(fk);
    X509_free(x);
    EVP_PKEY_free(pk);
    return ok ? 0 : -1;
}

UNIT_TEST(test_listen_is_loopback)
{
    CHECK(api_listen_is_loopback("127.0.0.1:8470"));
    CHECK(api_listen_is_loopback("127.9.8.7:1"));
    CHECK(api_listen_is_loopback(":0"));
    CHECK(api_listen_is_loopback("localhost:8470"));
    CHECK(api_listen_is_loopback("LocalHost:8470"));
    CHECK(api_listen_is_loopback("[::1]:8470"));
    CHECK(api_listen_is_loopback("[::ffff:127.0.0.1]:8470"));
    CHECK(!api_listen_is_loopback("0.0.0.0:8470"));
    CHECK(!api_listen_is_loopback("[::]:8470"));
    CHECK(!api_listen_is_loopback("10.0.0.1:8470"));
    CHECK(!api_listen_is_loopback("128.0.0.1:8470"));
    CHECK(!api_listen_is_loopback("gust.example:8470"));
    CHECK(!api_listen_is_loopback("localhost.example:8470"));
    CHECK(!api_listen_is_loopback("garbage"));
}

/* The server over TLS: keep-alive, bodies larger than the socket buffers both ways
 * (writes that wait for EV_WRITE), pipelining, streams, plain HTTP refused with a
 * plain answer, and a connection that never handshakes closed at the idle timeout. */
UNIT_TEST(test_tls)
{
    char dir[] = "/tmp/gust-unit-tls-XXXXXX", cert[128], key[128];
    CHECK(mkdtemp(dir) != NULL);
    CHECK_EQ_INT(make_cert(dir, cert, key, sizeof cert), 0);
    start_tls_cert = cert;
    start_tls_key = key;
    int port = server_start(NULL, 300);
    start_tls_cert = start_tls_key = NULL;
    CHECK(port > 0);
    client_tls = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(client_tls, SSL_VERIFY_NONE, NULL);
    struct client c;
    CHECK_EQ_INT(client_open(&c, port), 0);
    CHECK(SSL_version(c.ssl) >= TLS1_2_VERSION);
    for (int i = 0; i < 50; i++) {
        char req[128], want[32];
        int n = snprintf(req, sizeof req, "GET /json?v=t%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
        CHECK_EQ_INT(client_send(&c, req, (size_t)n), 0);
        CHECK_EQ_INT(client_read(&c), HTTP_DONE);
        snprintf(want, sizeof want, "{\"v\":\"t%d\"}", i);
        CHECK_STR(c.p.resp.body.data, want);
    }
    /* 8 MiB echoed: the response waits on a full socket until the client reads. */
    size_t big = 8u << 20;
    char *body = malloc(big);
    for (size_t i = 0; i < big; i++)
        body[i] = (char)('a' + i % 23);
    char head[128];
    int hn = snprintf(head, sizeof head, "POST /echo HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", big);
    CHECK_EQ_INT(client_send(&c, head, (size_t)hn), 0);
    CHECK_EQ_INT(client_send(&c, body, big), 0);
    http_response_parser_free(&c.p);
    struct http_limits lim;
    http_limits_default(&lim);
    lim.max_body = 16u << 20;
    http_response_parser_init(&c.p, &lim);
    CHECK_EQ_INT(client_read(&c), HTTP_DONE);
    CHECK_EQ_INT(c.p.resp.status, 200);
    CHECK(c.p.resp.body.len == big && !memcmp(c.p.resp.body.data, body, big));
    free(body);
    /* Pipelined requests in one write, answered in order; then a stream. */
    char pipe_req[4096];
    size_t pl = 0;
    for (int i = 0; i < 30; i++)
        pl += (size_t)snprintf(pipe_req + pl, sizeof pipe_req - pl, "GET /json?v=p%d HTTP/1.1\r\n\r\n", i);
    CHECK_EQ_INT(client_send(&c, pipe_req, pl), 0);
    for (int i = 0; i < 30; i++) {
        char want[32];
        CHECK_EQ_INT(client_read(&c), HTTP_DONE);
        snprintf(want, sizeof want, "{\"v\":\"p%d\"}", i);
        CHECK_STR(c.p.resp.body.data, want);
    }
    client_roundtrip(&c, "GET /stream HTTP/1.1\r\n\r\n");
    CHECK_EQ_INT(c.p.resp.status, 200);
    CHECK(c.p.resp.body.len > 0);
    client_close(&c);
    tunnel_once(port); /* a tunnel under TLS, its EOF a close_notify */
    /* Plain HTTP on the TLS port: a plain 400 that says so, then the end. */
    SSL_CTX *saved = client_tls;
    client_tls = NULL;
    CHECK_EQ_INT(client_open(&c, port), 0);
    client_roundtrip(&c, "GET /json HTTP/1.1\r\n\r\n");
    CHECK_EQ_INT(c.p.resp.status, 400);
    CHECK(strstr(c.p.resp.body.data, "\"tls_required\"") != NULL);
    CHECK(!c.p.resp.keep_alive);
    CHECK(client_sees_eof(&c));
    client_close(&c);
    /* A connection that never starts its handshake is closed at the idle timeout. */
    CHECK_EQ_INT(client_open(&c, port), 0);
    uint64_t t0 = mono_ms();
    CHECK(client_sees_eof(&c));
    CHECK(mono_ms() - t0 < 3000);
    client_close(&c);
    client_tls = saved;
    CHECK(wait_stat(port, "conns", 1));
    server_stop();
    SSL_CTX_free(client_tls);
    client_tls = NULL;
    unlink(cert);
    unlink(key);
    rmdir(dir);
}

int main(void)
{
    UNIT_RUN(test_listen_is_loopback);
    UNIT_RUN(test_tls);
    UNIT_RUN(test_guard_host_names);
    UNIT_RUN(test_guard_same_origin);
    UNIT_RUN(test_keepalive_requests);
    UNIT_RUN(test_deferred_response);
    UNIT_RUN(test_streaming_response);
    UNIT_RUN(test_client_disconnects);
    UNIT_RUN(test_limits_and_errors);
    UNIT_RUN(test_idle_timeout_and_stop);
    UNIT_RUN(test_pipelined_flood_bounded);
    UNIT_RUN(test_connection_cap);
    UNIT_RUN(test_tunnel);
    UNIT_RUN(test_streamed_bodies);
    UNIT_RUN(test_throughput);
    UNIT_MAIN_END();
}
