/* libgust against a scripted fake gustd: a thread serving loopback connections one
 * at a time, parsing requests with src/http and answering by path. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/util.h"
#include "client/pyjson.h"
#include "gust.h"
#include "http/http.h"
#include "unit.h"

struct fake {
    int lfd;
    int port;
    char addr[64];
    pthread_t th;
    /* behaviour */
    bool close_after_each; /* close silently after each answer (still saying keep-alive) */
    bool drop_second;      /* on every connection, read the 2nd request and close without answering */
    /* observations (read after fake_stop) */
    int accepts;
    int requests;
    char last_path[256];
    char last_ct[128];
    struct buf last_body;
};

static void send_str(int fd, const char *s)
{
    write_full(fd, s, strlen(s));
}

static void send_json(int fd, int status, const char *json, const char *extra)
{
    struct buf b = {0};
    http_write_head(&b, status, "application/json", (int64_t)strlen(json), true, extra);
    buf_append_str(&b, json);
    write_full(fd, b.data, b.len);
    buf_free(&b);
}

/* The map answer: chunks cut in the middle of lines and of a multi-byte run. */
static void send_map(int fd, bool with_done)
{
    static const char *lines =
        "{\"index\": 1, \"call_id\": \"fc-b\", \"status\": \"failed\", \"error\": {\"code\": \"exit_status\", "
        "\"message\": \"exit 3\"}}\n"
        "{\"index\": 0, \"call_id\": \"fc-a\", \"status\": \"succeeded\", \"output\": \"h\\u00e9llo\"}\n"
        "{\"index\": 2, \"call_id\": \"fc-c\", \"status\": \"succeeded\", \"output_b64\": \"AAEC/w==\"}\n";
    struct buf b = {0};
    http_write_head(&b, 200, "application/x-ndjson", -1, true, NULL);
    size_t n = strlen(lines), cuts[] = {7, 50, 51, 130, n};
    size_t at = 0;
    for (size_t i = 0; i < ARRAY_LEN(cuts); i++) {
        http_write_chunk(&b, lines + at, cuts[i] - at);
        at = cuts[i];
    }
    if (with_done)
        http_write_chunk(&b, "{\"done\": true, \"succeeded\": 2, \"failed\": 1}\n", 44);
    http_write_chunk_end(&b);
    /* Send in small pieces so the client parses across reads. */
    for (size_t off = 0; off < b.len; off += 40) {
        write_full(fd, b.data + off, b.len - off < 40 ? b.len - off : 40);
        usleep(200);
    }
    buf_free(&b);
}

/* Answers one request; returns false to close the connection without answering. */
static bool answer(struct fake *f, int fd, const struct http_request *rq)
{
    const char *p = rq->path;
    if (!strcmp(p, "/v1/health")) {
        send_json(fd, 200, "{\"ok\": true, \"version\": \"0.1.0\"}", NULL);
    } else if (!strcmp(p, "/v1/deploy")) {
        if (memmem(rq->body.data, rq->body.len, "lots", 4))
            send_json(fd, 400,
                      "{\"error\": {\"code\": \"invalid_spec\", \"message\": \"functions[0].resources.memory: must "
                      "be an integer\", \"field\": \"functions[0].resources.memory\"}}",
                      NULL);
        else
            send_json(fd, 200, "{\"app\": \"demo\", \"functions\": [{\"name\": \"echo\", \"version\": 3}]}", NULL);
    } else if (!strcmp(p, "/v1/functions/demo/echo/call")) {
        struct buf b = {0};
        http_write_head(&b, 200, "application/octet-stream", (int64_t)rq->body.len, true,
                        "Gust-Call-Id: fc-echo1\r\nGust-Status: succeeded\r\n");
        buf_append(&b, rq->body.data, rq->body.len);
        write_full(fd, b.data, b.len);
        buf_free(&b);
    } else if (!strcmp(p, "/v1/functions/demo/slow/call")) {
        send_json(fd, 202, "{\"call_id\": \"fc-slow\", \"status\": \"running\"}", NULL);
    } else if (!strcmp(p, "/v1/functions/demo/bad/call")) {
        send_json(fd, 502,
                  "{\"error\": {\"code\": \"exit_status\", \"message\": \"command exited with status 3\"}, "
                  "\"call_id\": \"fc-bad\", \"status\": \"failed\"}",
                  NULL);
    } else if (!strcmp(p, "/v1/functions/demo/echo/spawn")) {
        send_json(fd, 202, "{\"call_id\": \"fc-sp\", \"status\": \"pending\"}", NULL);
    } else if (!strcmp(p, "/v1/calls/fc-sp")) {
        send_json(fd, 202, "{\"call_id\": \"fc-sp\", \"status\": \"pending\"}", NULL);
    } else if (!strcmp(p, "/v1/functions/demo/echo/map")) {
        send_map(fd, true);
    } else if (!strcmp(p, "/v1/functions/demo/trunc/map")) {
        send_map(fd, false);
    } else if (!strcmp(p, "/v1/functions/demo/echo/logs")) {
        send_str(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "6\r\nline1\n\r\n6\r\nline2\n\r\n0\r\n\r\n");
    } else if (!strcmp(p, "/v1/hang")) {
        return false; /* caller waits for the client to give up */
    } else {
        send_str(fd, "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nnope\n");
    }
    return true;
}

static void serve_conn(struct fake *f, int fd)
{
    struct http_request_parser rp;
    http_request_parser_init(&rp, NULL);
    char rb[4096];
    size_t have = 0, on_conn = 0;
    for (;;) {
        size_t used = 0;
        int r = have ? http_request_feed(&rp, rb, have, &used) : HTTP_NEED_MORE;
        memmove(rb, rb + used, have - used);
        have -= used;
        if (r == HTTP_ERROR)
            break;
        if (r == HTTP_NEED_MORE) {
            ssize_t n = read(fd, rb + have, sizeof rb - have);
            if (n <= 0)
                break;
            have += (size_t)n;
            continue;
        }
        const struct http_request *rq = &rp.req;
        f->requests++;
        on_conn++;
        snprintf(f->last_path, sizeof f->last_path, "%s%s%s", rq->path, rq->query[0] ? "?" : "", rq->query);
        const char *ct = http_request_header(rq, "Content-Type");
        snprintf(f->last_ct, sizeof f->last_ct, "%s", ct ? ct : "");
        buf_reset(&f->last_body);
        buf_append(&f->last_body, rq->body.data, rq->body.len);
        if (f->drop_second && on_conn == 2)
            break;
        if (!answer(f, fd, rq)) {
            while (read(fd, rb, sizeof rb) > 0) {
            }
            break;
        }
        if (f->close_after_each)
            break;
        http_request_parser_reset(&rp);
    }
    http_request_parser_free(&rp);
    close(fd);
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    for (;;) {
        int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return NULL; /* listening socket shut down */
        }
        f->accepts++;
        serve_conn(f, fd);
    }
}

static void fake_start(struct fake *f)
{
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(f->lfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(f->lfd, (struct sockaddr *)&sa, sizeof sa) == 0);
    CHECK(listen(f->lfd, 16) == 0);
    socklen_t sl = sizeof sa;
    CHECK(getsockname(f->lfd, (struct sockaddr *)&sa, &sl) == 0);
    f->port = ntohs(sa.sin_port);
    snprintf(f->addr, sizeof f->addr, "127.0.0.1:%d", f->port);
    CHECK(pthread_create(&f->th, NULL, fake_main, f) == 0);
}

/* Stops the server; call after the client is freed (the server may be blocked on
 * its connection until the client closes it). */
static void fake_stop(struct fake *f)
{
    shutdown(f->lfd, SHUT_RDWR);
    pthread_join(f->th, NULL);
    close(f->lfd);
    buf_free(&f->last_body);
}

/* Starts the fake server f and a client for it. */
static gust_client *fake_client(struct fake *f)
{
    fake_start(f);
    gust_client *c = gust_client_new(f->addr);
    CHECK(c);
    return c;
}

/* Frees the client and stops the fake; its observations can be read after. */
static void fake_done(struct fake *f, gust_client *c)
{
    gust_client_free(c);
    fake_stop(f);
}

UNIT_TEST(test_addr_parsing)
{
    gust_client *c = gust_client_new("localhost:9000");
    CHECK(c);
    CHECK_STR(gust_client_addr(c), "localhost:9000");
    gust_client_free(c);
    c = gust_client_new("http://10.0.0.1:81/");
    CHECK(c);
    CHECK_STR(gust_client_addr(c), "10.0.0.1:81");
    gust_client_free(c);
    c = gust_client_new("[::1]:8470");
    CHECK(c);
    CHECK_STR(gust_client_addr(c), "[::1]:8470");
    gust_client_free(c);
    c = gust_client_new("somehost");
    CHECK(c);
    CHECK_STR(gust_client_addr(c), "somehost:8470");
    gust_client_free(c);
    setenv("GUST_ADDR", "127.0.0.2:1234", 1);
    c = gust_client_new(NULL);
    CHECK(c);
    CHECK_STR(gust_client_addr(c), "127.0.0.2:1234");
    gust_client_free(c);
    unsetenv("GUST_ADDR");
    c = gust_client_new(NULL);
    CHECK(c);
    CHECK_STR(gust_client_addr(c), "127.0.0.1:8470");
    gust_client_free(c);
    CHECK(gust_client_new("host:99999") == NULL);
    CHECK(gust_client_new("host:") == NULL);
    CHECK(gust_client_new("::1") == NULL);
}

UNIT_TEST(test_keepalive_reuse)
{
    struct fake f = {0};
    gust_client *c = fake_client(&f);
    for (int i = 0; i < 5; i++) {
        int status = 0;
        char *body = NULL;
        size_t len = 0;
        gust_error e;
        CHECK_EQ_INT(gust_request(c, "GET", "/v1/health", NULL, NULL, 0, &status, &body, &len, &e), 0);
        CHECK_EQ_INT(status, 200);
        CHECK(strstr(body, "\"ok\": true"));
        CHECK_EQ_INT(len, strlen(body));
        free(body);
    }
    fake_done(&f, c);
    CHECK_EQ_INT(f.accepts, 1);
    CHECK_EQ_INT(f.requests, 5);
}

UNIT_TEST(test_reconnect_after_server_close)
{
    struct fake f = {.close_after_each = true};
    gust_client *c = fake_client(&f);
    for (int i = 0; i < 3; i++) {
        int status = 0;
        gust_error e;
        usleep(i ? 20000 : 0);
        CHECK_EQ_INT(gust_request(c, "GET", "/v1/health", NULL, NULL, 0, &status, NULL, NULL, &e), 0);
        CHECK_EQ_INT(status, 200);
    }
    fake_done(&f, c);
    CHECK_EQ_INT(f.accepts, 3);
    CHECK_EQ_INT(f.requests, 3);
}

UNIT_TEST(test_retry_when_request_dropped)
{
    /* The connection looks alive, takes the request, then closes unanswered: the
     * client must resend once on a fresh connection. */
    struct fake f = {.drop_second = true};
    gust_client *c = fake_client(&f);
    char id[64];
    gust_error e;
    CHECK_EQ_INT(gust_spawn(c, "demo", "echo", "x", 1, id, &e), 0);
    CHECK_STR(id, "fc-sp");
    CHECK_EQ_INT(gust_spawn(c, "demo", "echo", "y", 1, id, &e), 0);
    CHECK_STR(id, "fc-sp");
    CHECK_STR(f.last_body.data, "y");
    fake_done(&f, c);
    CHECK_EQ_INT(f.accepts, 2);
    CHECK_EQ_INT(f.requests, 3);
}

UNIT_TEST(test_call_and_spawn_result)
{
    struct fake f = {0};
    gust_client *c = fake_client(&f);
    gust_error e;
    char id[64];
    void *out = NULL;
    size_t out_len = 0;
    const char in[] = {'a', 0, 'b', '\n', (char)0xff};
    CHECK_EQ_INT(gust_call(c, "demo", "echo", in, sizeof in, -1, &out, &out_len, id, &e), 0);
    CHECK_EQ_INT(out_len, sizeof in);
    CHECK(!memcmp(out, in, sizeof in));
    CHECK_STR(id, "fc-echo1");
    CHECK_STR(f.last_ct, "application/octet-stream");
    CHECK_STR(f.last_path, "/v1/functions/demo/echo/call");
    free(out);

    CHECK_EQ_INT(gust_call(c, "demo", "echo", NULL, 0, 2.5, &out, &out_len, id, &e), 0);
    CHECK_EQ_INT(out_len, 0);
    CHECK(out != NULL);
    CHECK_STR(f.last_path, "/v1/functions/demo/echo/call?timeout=2.5");
    free(out);

    CHECK_EQ_INT(gust_call(c, "demo", "slow", "x", 1, 0, &out, &out_len, id, &e), -EINPROGRESS);
    CHECK_EQ_INT(e.kind, GUST_ERR_PENDING);
    CHECK_STR(id, "fc-slow");
    CHECK_STR(e.call_id, "fc-slow");
    CHECK_STR(e.status, "running");
    CHECK(out == NULL);

    CHECK_EQ_INT(gust_spawn(c, "demo", "echo", "x", 1, id, &e), 0);
    CHECK_STR(id, "fc-sp");
    int done = -1;
    CHECK_EQ_INT(gust_result(c, id, 1, &out, &out_len, &done, &e), 0);
    CHECK_EQ_INT(done, 0);
    CHECK(out == NULL);
    CHECK_STR(e.status, "pending");
    CHECK_STR(f.last_path, "/v1/calls/fc-sp?wait=1");

    /* Path segments are percent-encoded. */
    CHECK(gust_cancel(c, "fc x/y", &e) < 0);
    CHECK_STR(f.last_path, "/v1/calls/fc%20x%2Fy/cancel");
    fake_done(&f, c);
}

UNIT_TEST(test_error_bodies)
{
    struct fake f = {0};
    gust_client *c = fake_client(&f);
    gust_error e;
    const char *bad = "app = \"demo\"\n[[functions]]\nname = \"echo\"\nresources = { memory = \"lots\" }\n";
    char *resp = NULL;
    CHECK_EQ_INT(gust_deploy(c, bad, strlen(bad), NULL, &resp, &e), -EINVAL);
    CHECK(resp != NULL); /* the error body is still handed out */
    free(resp);
    CHECK_STR(f.last_ct, "application/toml");
    CHECK_EQ_INT(e.kind, GUST_ERR_API);
    CHECK_EQ_INT(e.http_status, 400);
    CHECK_STR(e.code, "invalid_spec");
    CHECK_STR(e.field, "functions[0].resources.memory");
    CHECK(strstr(e.message, "must be an integer"));

    const char *good = " {\"app\": \"demo\"}";
    CHECK_EQ_INT(gust_deploy(c, good, strlen(good), NULL, &resp, &e), 0);
    CHECK_STR(f.last_ct, "application/json");
    CHECK(strstr(resp, "\"version\": 3"));
    free(resp);

    char id[64];
    void *out = (void *)1;
    size_t out_len;
    CHECK_EQ_INT(gust_call(c, "demo", "bad", "x", 1, -1, &out, &out_len, id, &e), -EREMOTEIO);
    CHECK(out == NULL);
    CHECK_EQ_INT(e.kind, GUST_ERR_FUNCTION);
    CHECK_EQ_INT(e.http_status, 502);
    CHECK_STR(e.code, "exit_status");
    CHECK_STR(e.call_id, "fc-bad");
    CHECK_STR(e.status, "failed");
    CHECK_STR(id, "fc-bad");
    CHECK_STR(e.field, "");

    /* A non-JSON error body still gives a usable message. */
    int status;
    CHECK_EQ_INT(gust_request(c, "GET", "/v1/nothing", NULL, NULL, 0, &status, NULL, NULL, &e), -ENOENT);
    CHECK_EQ_INT(status, 404);
    CHECK_EQ_INT(e.kind, GUST_ERR_API);
    CHECK_STR(e.code, "http_404");
    CHECK_STR(e.message, "HTTP 404: nope");

    CHECK_EQ_INT(gust_deploy(c, good, strlen(good), "yaml", NULL, &e), -EINVAL);
    CHECK_EQ_INT(e.kind, GUST_ERR_ARG);
    fake_done(&f, c);
}

struct map_seen {
    int n;
    bool got[3];
    int stop_after;
};

static int map_cb(void *ud, size_t index, const char *call_id, const char *status, const void *out, size_t out_len,
                  const char *err_code, const char *err_message)
{
    struct map_seen *s = ud;
    s->n++;
    if (index == 0) {
        s->got[0] = !strcmp(call_id, "fc-a") && !strcmp(status, "succeeded") && out_len == 6 &&
                    !memcmp(out, "h\xc3\xa9llo", 6) && !err_code;
    } else if (index == 1) {
        s->got[1] = !strcmp(status, "failed") && !out && err_code && !strcmp(err_code, "exit_status") &&
                    !strcmp(err_message, "exit 3");
    } else if (index == 2) {
        s->got[2] = out_len == 4 && !memcmp(out, "\x00\x01\x02\xff", 4);
    }
    return s->stop_after && s->n >= s->stop_after;
}

UNIT_TEST(test_map_stream)
{
    struct fake f = {0};
    gust_client *c = fake_client(&f);
    gust_error e;
    const char *in = "\"a\"\n\"b\"\n{\"b64\": \"AA==\"}\n";
    struct map_seen s = {0};
    CHECK_EQ_INT(gust_map(c, "demo", "echo", in, strlen(in), 1, map_cb, &s, &e), 0);
    CHECK_EQ_INT(s.n, 3);
    CHECK(s.got[0] && s.got[1] && s.got[2]);
    CHECK_STR(f.last_path, "/v1/functions/demo/echo/map?ordered=1");
    CHECK_STR(f.last_ct, "application/x-ndjson");
    CHECK_EQ_INT(f.last_body.len, strlen(in));

    /* The connection stays usable after a chunked stream. */
    int status;
    CHECK_EQ_INT(gust_request(c, "GET", "/v1/health", NULL, NULL, 0, &status, NULL, NULL, &e), 0);

    struct map_seen t = {0};
    CHECK_EQ_INT(gust_map(c, "demo", "trunc", in, strlen(in), 0, map_cb, &t, &e), -EPROTO);
    CHECK_EQ_INT(e.kind, GUST_ERR_TRANSPORT);
    CHECK_EQ_INT(t.n, 3);

    struct map_seen u = {.stop_after = 1};
    CHECK_EQ_INT(gust_map(c, "demo", "echo", in, strlen(in), 0, map_cb, &u, &e), -ECANCELED);
    CHECK_EQ_INT(u.n, 1);

    /* Unknown function: the error body is parsed, the callback never runs. */
    struct map_seen v = {0};
    CHECK_EQ_INT(gust_map(c, "demo", "nope", in, strlen(in), 0, map_cb, &v, &e), -ENOENT);
    CHECK_EQ_INT(v.n, 0);
    CHECK_EQ_INT(e.http_status, 404);
    fake_done(&f, c);
    CHECK_EQ_INT(f.accepts, 2); /* the cancelled stream closed its connection */
}

static int collect(void *ud, const char *data, size_t len)
{
    buf_append(ud, data, len);
    return 0;
}

UNIT_TEST(test_request_stream)
{
    struct fake f = {0};
    gust_client *c = fake_client(&f);
    gust_error e;
    struct buf b = {0};
    CHECK_EQ_INT(gust_request_stream(c, "GET", "/v1/functions/demo/echo/logs", NULL, NULL, 0, collect, &b, &e), 0);
    CHECK_STR(b.data, "line1\nline2\n");
    buf_free(&b);
    fake_done(&f, c);
}

UNIT_TEST(test_timeout)
{
    struct fake f = {0};
    gust_client *c = fake_client(&f);
    gust_client_set_timeout(c, 0.2);
    gust_error e;
    int status;
    uint64_t t0 = mono_ms();
    CHECK_EQ_INT(gust_request(c, "GET", "/v1/hang", NULL, NULL, 0, &status, NULL, NULL, &e), -ETIMEDOUT);
    CHECK(mono_ms() - t0 < 2000);
    CHECK_EQ_INT(e.kind, GUST_ERR_TIMEOUT);
    CHECK_EQ_INT(status, 0);
    /* The next request works on a fresh connection. */
    CHECK_EQ_INT(gust_request(c, "GET", "/v1/health", NULL, NULL, 0, &status, NULL, NULL, &e), 0);
    fake_done(&f, c);
    CHECK_EQ_INT(f.accepts, 2);
}

UNIT_TEST(test_connection_refused)
{
    /* A port nobody listens on: bind one, note it, close it. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    socklen_t sl = sizeof sa;
    CHECK(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
    close(fd);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(sa.sin_port));
    gust_client *c = gust_client_new(addr);
    CHECK(c);
    gust_error e;
    char id[64];
    CHECK_EQ_INT(gust_spawn(c, "demo", "echo", "x", 1, id, &e), -ECONNREFUSED);
    CHECK_EQ_INT(e.kind, GUST_ERR_CONNECT);
    CHECK_EQ_INT(e.sys_errno, ECONNREFUSED);
    CHECK_EQ_INT(e.http_status, 0);
    CHECK(strstr(e.message, "cannot connect to gustd at"));
    CHECK(strstr(e.message, addr));
    CHECK_STR(id, "");
    gust_client_free(c);
}

/* ---------- JSON for Python functions (client/pyjson.h) ---------- */

/* The tagged input of text, as a C string after the tag ("" after a failure, with err). */
static const char *py_input(const char *text, enum gust_py_args how, struct buf *b, struct gerr *err)
{
    buf_reset(b);
    if (gust_py_json_input(text, strlen(text), how, b, err) < 0)
        return "";
    CHECK(b->len >= GUST_PY_JSON_TAG_LEN && !memcmp(b->data, "\0GUSTJSON1\n", 11));
    return b->data + GUST_PY_JSON_TAG_LEN;
}

UNIT_TEST(test_py_json_input)
{
    struct buf b = {0};
    struct gerr err;
    CHECK_EQ_INT(GUST_PY_JSON_TAG_LEN, 11);
    /* One argument: the value, whatever its type; the text as given (big numbers kept). */
    CHECK_STR(py_input("7", GUST_PY_ONE_ARG, &b, &err), "{\"args\":[7],\"kwargs\":{}}");
    CHECK_STR(py_input(" [1, 2]\n", GUST_PY_ONE_ARG, &b, &err), "{\"args\":[[1, 2]],\"kwargs\":{}}");
    CHECK_STR(py_input("{\"a\": null}", GUST_PY_ONE_ARG, &b, &err), "{\"args\":[{\"a\": null}],\"kwargs\":{}}");
    CHECK_STR(py_input("123456789012345678901234567890", GUST_PY_ONE_ARG, &b, &err),
              "{\"args\":[123456789012345678901234567890],\"kwargs\":{}}");
    CHECK_STR(py_input("\"a\\u0000b\"", GUST_PY_ONE_ARG, &b, &err), "{\"args\":[\"a\\u0000b\"],\"kwargs\":{}}");
    /* No input: no arguments. */
    CHECK_STR(py_input("", GUST_PY_ONE_ARG, &b, &err), "{\"args\":[],\"kwargs\":{}}");
    CHECK_STR(py_input(" \r\n\t", GUST_PY_SPREAD, &b, &err), "{\"args\":[],\"kwargs\":{}}");
    /* Spread: an array is the positional arguments, an object the keyword ones. */
    CHECK_STR(py_input("[1, \"x\"]", GUST_PY_SPREAD, &b, &err), "{\"args\":[1, \"x\"],\"kwargs\":{}}");
    CHECK_STR(py_input("{\"x\": 1}", GUST_PY_SPREAD, &b, &err), "{\"args\":[],\"kwargs\":{\"x\": 1}}");
    /* Errors leave out unchanged and say what is wrong. */
    buf_reset(&b);
    CHECK_EQ_INT(gust_py_json_input("7", 1, GUST_PY_SPREAD, &b, &err), -EINVAL);
    CHECK(strstr(err.msg, "array") && strstr(err.msg, "not a number"));
    CHECK_EQ_INT(b.len, 0);
    CHECK_EQ_INT(gust_py_json_input("hello", 5, GUST_PY_ONE_ARG, &b, &err), -EINVAL);
    CHECK(strstr(err.msg, "not JSON"));
    CHECK_EQ_INT(gust_py_json_input("[1] [2]", 7, GUST_PY_ONE_ARG, &b, &err), -EINVAL);
    CHECK_EQ_INT(gust_py_json_input("{\"a\": }", 7, GUST_PY_ONE_ARG, &b, &err), -EINVAL);
    CHECK_EQ_INT(gust_py_json_input(NULL, 0, GUST_PY_ONE_ARG, &b, &err), 0);
    buf_reset(&b);
    CHECK_EQ_INT(gust_py_json_input("1", GUST_PY_JSON_MAX + 1, GUST_PY_ONE_ARG, &b, &err), -E2BIG);
    CHECK(strstr(err.msg, "64 MiB"));
    CHECK_EQ_INT(b.len, 0);
    buf_free(&b);
}

UNIT_TEST(test_py_map_inputs)
{
    struct buf b = {0};
    struct gerr err;
    const char *in = "1\n\n  \r\n[2, 3]\r\n\"x\"";
    CHECK_EQ_INT(gust_py_map_inputs(in, strlen(in), GUST_PY_ONE_ARG, &b, &err), 0);
    /* Three inputs, each {"b64": ...} of its tagged input; blank lines skipped. */
    const char *want[] = {"{\"args\":[1],\"kwargs\":{}}", "{\"args\":[[2, 3]],\"kwargs\":{}}",
                          "{\"args\":[\"x\"],\"kwargs\":{}}"};
    const char *p = b.data;
    for (int i = 0; i < 3; i++) {
        CHECK(!strncmp(p, "{\"b64\":\"", 8));
        const char *q = strchr(p + 8, '"');
        CHECK(q && !strncmp(q, "\"}\n", 3));
        char *dec = NULL;
        size_t n;
        CHECK_EQ_INT(base64_decode(p + 8, (size_t)(q - p - 8), &dec, &n), 0);
        CHECK(n == GUST_PY_JSON_TAG_LEN + strlen(want[i]) && !memcmp(dec, GUST_PY_JSON_TAG, GUST_PY_JSON_TAG_LEN) &&
              !memcmp(dec + GUST_PY_JSON_TAG_LEN, want[i], strlen(want[i])));
        free(dec);
        p = q + 3;
    }
    CHECK_EQ_INT(*p, 0);
    buf_reset(&b);
    const char *bad = "1\n\n{\"x\": 1}\nnope\n";
    CHECK_EQ_INT(gust_py_map_inputs(bad, strlen(bad), GUST_PY_ONE_ARG, &b, &err), -EINVAL);
    CHECK(!strncmp(err.msg, "line 4: ", 8));
    buf_reset(&b);
    CHECK_EQ_INT(gust_py_map_inputs(bad, strlen(bad), GUST_PY_SPREAD, &b, &err), -EINVAL);
    CHECK(!strncmp(err.msg, "line 1: ", 8));
    buf_free(&b);
}

UNIT_TEST(test_py_json_output)
{
    const char *json;
    size_t n;
    static const char ok[] = "\0GUSTJSON1\n{\"a\": [1, 2.5, \"\\u00e9\"]}";
    CHECK(gust_py_json_output(ok, sizeof ok - 1, &json, &n));
    CHECK(n == strlen("{\"a\": [1, 2.5, \"\\u00e9\"]}") && !memcmp(json, "{\"a\":", 5));
    static const char big[] = "\0GUSTJSON1\n123456789012345678901234567890";
    CHECK(gust_py_json_output(big, sizeof big - 1, &json, &n) && n == 30);
    static const char bad[] = "\0GUSTJSON1\n{";
    CHECK(!gust_py_json_output(bad, sizeof bad - 1, &json, &n));
    static const char two_lines[] = "\0GUSTJSON1\n[1,\n2]";
    CHECK(!gust_py_json_output(two_lines, sizeof two_lines - 1, &json, &n));
    CHECK(!gust_py_json_output("\x80\x05K\x07.", 5, &json, &n)); /* pickle of 7 */
    CHECK(!gust_py_json_output("", 0, &json, &n));
    CHECK(!gust_py_json_output("\0GUSTJSON1", 10, &json, &n));
}

UNIT_TEST(test_py_error_split)
{
    struct gust_py_error e;
    const char *msg = "ValueError: remote says no\nGUSTEXC1:gASV\nTraceback (most recent call last):\n"
                      "  File \"m.py\", line 3, in boom\nValueError: remote says no\n";
    CHECK(gust_py_error_split(msg, strlen(msg), &e));
    CHECK(e.type_len == 10 && !memcmp(e.type, "ValueError", 10));
    CHECK(e.message_len == 26 && !memcmp(e.message, "ValueError: remote says no", 26));
    CHECK(e.traceback_len > 0 && !strncmp(e.traceback, "Traceback (most", 15) &&
          e.traceback[e.traceback_len - 1] == 'o');
    /* A message over lines; an empty blob (an exception that does not pickle). */
    msg = "KeyError: 'a\nb'\nGUSTEXC1:\nTraceback\n";
    CHECK(gust_py_error_split(msg, strlen(msg), &e));
    CHECK(e.type_len == 8 && e.message_len == 15 && e.traceback_len == 9);
    /* Cut short in the tag's line: no traceback. */
    msg = "RuntimeError: x\nGUSTEXC1:gAS";
    CHECK(gust_py_error_split(msg, strlen(msg), &e));
    CHECK(e.message_len == 15 && e.traceback_len == 0);
    /* No type separator: the first line is the type. */
    msg = "Oops\nGUSTEXC1:\n";
    CHECK(gust_py_error_split(msg, strlen(msg), &e));
    CHECK(e.type_len == 4 && e.traceback_len == 0);
    /* Not a Python runner's text: the tag must start a line. */
    msg = "command exited with status 3";
    CHECK(!gust_py_error_split(msg, strlen(msg), &e));
    msg = "x GUSTEXC1:abc\n";
    CHECK(!gust_py_error_split(msg, strlen(msg), &e));
}

UNIT_TEST(test_py_is_function)
{
    json_t *fn = json_loads("{\"spec\": {\"command\": [\"python3\", \"-m\", \"gust._container.runner\", "
                            "\"/opt/gust/app/m.py\", \"f\"]}}",
                            0, NULL);
    CHECK(gust_py_is_function(fn));
    json_decref(fn);
    fn = json_loads("{\"spec\": {\"command\": [\"cat\", \"-m\"]}}", 0, NULL);
    CHECK(!gust_py_is_function(fn));
    json_decref(fn);
    fn = json_loads("{\"spec\": {\"command\": [\"gust._container.runner\", \"-m\"]}}", 0, NULL);
    CHECK(!gust_py_is_function(fn));
    json_decref(fn);
    CHECK(!gust_py_is_function(NULL));
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* the fake server writes to clients that hung up */
    UNIT_RUN(test_addr_parsing);
    UNIT_RUN(test_keepalive_reuse);
    UNIT_RUN(test_reconnect_after_server_close);
    UNIT_RUN(test_retry_when_request_dropped);
    UNIT_RUN(test_call_and_spawn_result);
    UNIT_RUN(test_error_bodies);
    UNIT_RUN(test_map_stream);
    UNIT_RUN(test_request_stream);
    UNIT_RUN(test_timeout);
    UNIT_RUN(test_connection_refused);
    UNIT_RUN(test_py_json_input);
    UNIT_RUN(test_py_map_inputs);
    UNIT_RUN(test_py_json_output);
    UNIT_RUN(test_py_error_split);
    UNIT_RUN(test_py_is_function);
    UNIT_MAIN_END();
}
