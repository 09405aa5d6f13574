/* Unit tests for src/http: request parser, writer, response parser. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "http/http.h"
#include "unit.h"

#define ARRAY_LEN_(a) (sizeof(a) / sizeof((a)[0]))

/* Feeds s in pieces of `step` bytes (0: all at once) until a result other than
 * NEED_MORE; returns it and the total consumed. */
static int feed_req(struct http_request_parser *p, const char *s, size_t len, size_t step, size_t *consumed)
{
    size_t off = 0;
    int r = HTTP_NEED_MORE;
    while (off < len) {
        size_t n = step ? (len - off < step ? len - off : step) : len - off;
        size_t used = 0;
        r = http_request_feed(p, s + off, n, &used);
        if (used > n)
            return -100;
        off += used;
        if (r != HTTP_NEED_MORE)
            break;
        if (used != n)
            return -101; /* NEED_MORE must consume everything */
    }
    *consumed = off;
    return r;
}

/* Parses s with the limits given (NULL: defaults) at every step size in steps; the
 * result must agree. Returns the result; the parser holds the last parse. */
static const size_t steps[] = {0, 1, 2, 3, 7, 64};

static int parse_all_ways(struct http_request_parser *p, const struct http_limits *lim, const char *s, size_t len,
                          size_t *consumed)
{
    int first = 0;
    size_t first_used = 0;
    for (size_t i = 0; i < ARRAY_LEN_(steps); i++) {
        http_request_parser_free(p);
        http_request_parser_init(p, lim);
        size_t used = 0;
        int r = feed_req(p, s, len, steps[i], &used);
        if (i == 0) {
            first = r;
            first_used = used;
        } else if (r != first || (r == HTTP_DONE && used != first_used)) {
            fprintf(stderr, "  step %zu: r=%d used=%zu, at once: r=%d used=%zu\n", steps[i], r, used, first, first_used);
            return -102;
        }
    }
    *consumed = first_used;
    return first;
}


static int expect_status(const char *s, const struct http_limits *lim)
{
    struct http_request_parser p;
    http_request_parser_init(&p, lim);
    size_t used;
    int r = parse_all_ways(&p, lim, s, strlen(s), &used);
    int st = r == HTTP_ERROR ? p.error_status : r == HTTP_DONE ? 200 : r == HTTP_NEED_MORE ? 0 : r;
    http_request_parser_free(&p);
    return st;
}

UNIT_TEST(test_simple_get)
{
    const char *s = "GET /v1/health?x=1&y=%41b HTTP/1.1\r\nHost: a\r\nX-Thing:  hello world  \r\n\r\n";
    struct http_request_parser p;
    http_request_parser_init(&p, NULL);
    size_t used;
    CHECK_EQ_INT(parse_all_ways(&p, NULL, s, strlen(s), &used), HTTP_DONE);
    CHECK_EQ_INT(used, strlen(s));
    CHECK_STR(p.req.method, "GET");
    CHECK_STR(p.req.path, "/v1/health");
    CHECK_STR(p.req.query, "x=1&y=%41b");
    CHECK_EQ_INT(p.req.version_minor, 1);
    CHECK(p.req.keep_alive);
    CHECK(!p.req.expect_continue);
    CHECK_EQ_INT(p.req.content_length, -1);
    CHECK_EQ_INT(p.req.body.len, 0);
    CHECK_STR(http_request_header(&p.req, "x-thing"), "hello world");
    CHECK_STR(http_request_header(&p.req, "HOST"), "a");
    CHECK(http_request_header(&p.req, "missing") == NULL);
    char v[16];
    CHECK_EQ_INT(http_query_get(&p.req, "y", v, sizeof v), 2);
    CHECK_STR(v, "Ab");
    CHECK_EQ_INT(http_query_get(&p.req, "x", v, sizeof v), 1);
    CHECK_EQ_INT(http_query_get(&p.req, "z", v, sizeof v), -ENOENT);
    CHECK_EQ_INT(http_query_get(&p.req, "y", v, 2), -ENOSPC);
    http_request_parser_free(&p);
}

UNIT_TEST(test_query_and_path_helpers)
{
    const char *s = "GET //v1/calls/fc%2Dab//x%20y/?flag&a+b=c+d&bad=%zz&nul=%00&empty= HTTP/1.1\r\n\r\n";
    struct http_request_parser p;
    http_request_parser_init(&p, NULL);
    size_t used;
    CHECK_EQ_INT(parse_all_ways(&p, NULL, s, strlen(s), &used), HTTP_DONE);
    CHECK_STR(p.req.path, "//v1/calls/fc%2Dab//x%20y/");
    CHECK_EQ_INT(http_path_segment_count(&p.req), 4);
    char seg[32];
    CHECK_EQ_INT(http_path_segment(&p.req, 0, seg, sizeof seg), 2);
    CHECK_STR(seg, "v1");
    CHECK_EQ_INT(http_path_segment(&p.req, 2, seg, sizeof seg), 5);
    CHECK_STR(seg, "fc-ab");
    CHECK_EQ_INT(http_path_segment(&p.req, 3, seg, sizeof seg), 3);
    CHECK_STR(seg, "x y");
    CHECK_EQ_INT(http_path_segment(&p.req, 4, seg, sizeof seg), -ENOENT);
    char v[16];
    CHECK_EQ_INT(http_query_get(&p.req, "flag", v, sizeof v), 0);
    CHECK_STR(v, "");
    CHECK_EQ_INT(http_query_get(&p.req, "a b", v, sizeof v), 3);
    CHECK_STR(v, "c d");
    CHECK_EQ_INT(http_query_get(&p.req, "bad", v, sizeof v), -EINVAL);
    CHECK_EQ_INT(http_query_get(&p.req, "nul", v, sizeof v), -EINVAL);
    CHECK_EQ_INT(http_query_get(&p.req, "empty", v, sizeof v), 0);
    http_request_parser_free(&p);

    /* Whole numbers: digits only, up to UINT64_MAX. */
    s = "GET /i?a=0&b=18446744073709551615&c=18446744073709551616&d=-1&e=1x&f=&g=%31%32&h=+1 HTTP/1.1\r\n\r\n";
    http_request_parser_init(&p, NULL);
    CHECK_EQ_INT(parse_all_ways(&p, NULL, s, strlen(s), &used), HTTP_DONE);
    uint64_t u = 7;
    CHECK_EQ_INT(http_query_u64(&p.req, "a", &u), 0);
    CHECK(u == 0);
    CHECK_EQ_INT(http_query_u64(&p.req, "b", &u), 0);
    CHECK(u == UINT64_MAX);
    CHECK_EQ_INT(http_query_u64(&p.req, "g", &u), 0);
    CHECK(u == 12);
    for (const char *bad = "cdefh"; *bad; bad++) {
        char name[2] = {*bad, 0};
        CHECK_EQ_INT(http_query_u64(&p.req, name, &u), -EINVAL);
    }
    CHECK_EQ_INT(http_query_u64(&p.req, "missing", &u), -ENOENT);
    http_request_parser_free(&p);

    s = "GET /a%2Fb HTTP/1.1\r\n\r\n";
    http_request_parser_init(&p, NULL);
    CHECK_EQ_INT(parse_all_ways(&p, NULL, s, strlen(s), &used), HTTP_DONE);
    CHECK_EQ_INT(http_path_segment(&p.req, 0, seg, sizeof seg), -EINVAL);
    http_request_parser_free(&p);

    char out[8];
    CHECK_EQ_INT(url_pct_decode("%4", 2, false, out, sizeof out), -EINVAL);
    CHECK_EQ_INT(url_pct_decode("%", 1, false, out, sizeof out), -EINVAL);
    CHECK_EQ_INT(url_pct_decode("a+b", 3, false, out, sizeof out), 3);
    CHECK_STR(out, "a+b");
    CHECK_EQ_INT(url_pct_decode("12345678", 8, false, out, sizeof out), -ENOSPC);
    CHECK_EQ_INT(url_pct_decode("1234567", 7, false, out, sizeof out), 7);
}

UNIT_TEST(test_absolute_and_asterisk_targets)
{
    struct http_request_parser p;
    size_t used;
    http_request_parser_init(&p, NULL);
    const char *s = "GET http://example.com/a/b?q=1 HTTP/1.1\r\n\r\n";
    CHECK_EQ_INT(parse_all_ways(&p, NULL, s, strlen(s), &used), HTTP_DONE);
    CHECK_STR(p.req.path, "/a/b");
    CHECK_STR(p.req.query, "q=1");
    s = "GET http://example.com HTTP/1.1\r\n\r\n";
    CHECK_EQ_INT(parse_all_ways(&p, NULL, s, strlen(s), &used), HTTP_DONE);
    CHECK_STR(p.req.path, "/");
    s = "OPTIONS * HTTP/1.1\r\n\r\n";
    CHECK_EQ_INT(parse_all_ways(&p, NULL, s, strlen(s), &used), HTTP_DONE);
    CHECK_STR(p.req.path, "*");
    http_request_parser_free(&p);
}

UNIT_TEST(test_content_length_body_and_pipelining)
{
    const char *s = "POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel\0o"
                    "GET /b HTTP/1.1\r\nConnection: close\r\n\r\n"
                    "PUT /c HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
                    "GET /d HTTP/1.0\r\n\r\n";
    size_t total = 44 + strlen("GET /b HTTP/1.1\r\nConnection: close\r\n\r\n") +
                   strlen("PUT /c HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n") +
                   strlen("GET /d HTTP/1.0\r\n\r\n");
    for (size_t si = 0; si < ARRAY_LEN_(steps); si++) {
        struct http_request_parser p;
        http_request_parser_init(&p, NULL);
        size_t off = 0, used;
        CHECK_EQ_INT(feed_req(&p, s + off, total - off, steps[si], &used), HTTP_DONE);
        CHECK_STR(p.req.method, "POST");
        CHECK_EQ_INT(p.req.content_length, 5);
        CHECK_EQ_INT(p.req.body.len, 5);
        CHECK(!memcmp(p.req.body.data, "hel\0o", 5));
        CHECK(p.req.keep_alive);
        off += used;
        CHECK_EQ_INT(off, 44);
        /* Feeding again without reset: same answer, nothing consumed. */
        CHECK_EQ_INT(http_request_feed(&p, s + off, total - off, &used), HTTP_DONE);
        CHECK_EQ_INT(used, 0);
        http_request_parser_reset(&p);
        CHECK_EQ_INT(feed_req(&p, s + off, total - off, steps[si], &used), HTTP_DONE);
        CHECK_STR(p.req.path, "/b");
        CHECK(!p.req.keep_alive);
        off += used;
        http_request_parser_reset(&p);
        CHECK_EQ_INT(feed_req(&p, s + off, total - off, steps[si], &used), HTTP_DONE);
        CHECK_STR(p.req.method, "PUT");
        CHECK_EQ_INT(p.req.version_minor, 0);
        CHECK(p.req.keep_alive);
        CHECK_EQ_INT(p.req.content_length, 0);
        off += used;
        http_request_parser_reset(&p);
        CHECK_EQ_INT(feed_req(&p, s + off, total - off, steps[si], &used), HTTP_DONE);
        CHECK(!p.req.keep_alive);
        off += used;
        CHECK_EQ_INT(off, total);
        http_request_parser_free(&p);
    }
}

UNIT_TEST(test_chunked_body)
{
    const char *s = "POST /m HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5;ext=1;q=\"x\"\r\nhello\r\n"
                    "A \r\n0123456789\r\n"
                    "000\r\nX-Trailer: yes\r\nY: z\r\n\r\nNEXT";
    struct http_request_parser p;
    http_request_parser_init(&p, NULL);
    size_t used;
    CHECK_EQ_INT(parse_all_ways(&p, NULL, s, strlen(s), &used), HTTP_DONE);
    CHECK_EQ_INT(used, strlen(s) - 4);
    CHECK(p.req.chunked);
    CHECK_EQ_INT(p.req.body.len, 15);
    CHECK_STR(p.req.body.data, "hello0123456789");
    http_request_parser_free(&p);

    s = "POST /m HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n";
    CHECK_EQ_INT(expect_status(s, NULL), 200);
}

/* A reader of a streamed body that takes at most 4 bytes per offer. */
static size_t take4(void *ud, const void *data, size_t len)
{
    struct buf *b = ud;
    size_t n = len < 4 ? len : 4;
    buf_append(b, data, n);
    return n;
}

/* Streamed request bodies: after the head, the body goes to the reader, not
 * req.body (which keeps what came before); a reader that takes less stops the feed
 * there (the rest fed again); max_body counts both, 413 past it. */
UNIT_TEST(test_streamed_request_body)
{
    struct http_limits lim = {.max_body = 20};
    struct http_request_parser p;
    http_request_parser_init(&p, &lim);
    struct buf got = {0};
    const char *s = "POST /m HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc";
    size_t used;
    CHECK_EQ_INT(http_request_feed(&p, s, strlen(s), &used), HTTP_NEED_MORE);
    CHECK(p.head_done);
    CHECK_STR(p.req.body.data, "abc");
    http_request_parser_stream_body(&p, take4, &got);
    const char *rest = "\r\na\r\n0123456789\r\n0\r\n\r\nNEXT";
    size_t off = 0, len = strlen(rest);
    int r = HTTP_NEED_MORE, feeds = 0;
    while (r == HTTP_NEED_MORE && off < len) {
        r = http_request_feed(&p, rest + off, len - off, &used);
        off += used;
        feeds++;
    }
    CHECK_EQ_INT(r, HTTP_DONE);
    CHECK(feeds > 1);
    CHECK_EQ_INT(off, len - 4);
    CHECK_STR(got.data, "0123456789");
    CHECK_STR(p.req.body.data, "abc");
    CHECK_EQ_INT(p.streamed, 10);
    /* Past max_body, what came before and what streamed together: 413. */
    http_request_parser_reset(&p);
    CHECK(p.body_fn == NULL);
    buf_reset(&got);
    s = "POST /m HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n01234567\r\n";
    CHECK_EQ_INT(http_request_feed(&p, s, strlen(s), &used), HTTP_NEED_MORE);
    http_request_parser_stream_body(&p, take4, &got);
    s = "8\r\n89abcdef\r\n5\r\nghijk\r\n";
    off = 0;
    r = HTTP_NEED_MORE;
    while (r == HTTP_NEED_MORE && off < strlen(s)) {
        r = http_request_feed(&p, s + off, strlen(s) - off, &used);
        off += used;
    }
    CHECK_EQ_INT(r, HTTP_ERROR);
    CHECK_EQ_INT(p.error_status, 413);
    CHECK_STR(got.data, "89abcdef");
    buf_free(&got);
    http_request_parser_free(&p);
}

UNIT_TEST(test_chunked_errors)
{
    const char *h = "POST /m HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    const char *bad[] = {
        "x\r\n",              /* not hex */
        "\r\n",               /* no digits */
        "5\r\nhelloX\r\n",    /* missing CRLF after data */
        "5\r\nhello\r\n0\r\nbad trailer\r\n\r\n",
        "5\r\nhello\r\n0\r\n folded: x\r\n\r\n",
        "1 2\r\n",            /* digits after whitespace */
        "5\nhello",           /* bare LF */
        "5;a\x01\r\n",        /* control char in extension */
    };
    char req[512];
    for (size_t i = 0; i < ARRAY_LEN_(bad); i++) {
        snprintf(req, sizeof req, "%s%s", h, bad[i]);
        int st = expect_status(req, NULL);
        if (st != 400)
            fprintf(stderr, "  case %zu: %d\n", i, st);
        CHECK_EQ_INT(st, 400);
    }
    struct http_limits lim = {.max_body = 10};
    snprintf(req, sizeof req, "%s6\r\nhello \r\n5\r\n", h);
    CHECK_EQ_INT(expect_status(req, &lim), 413);
    snprintf(req, sizeof req, "%sfffffffffffffffffffff\r\n", h);
    CHECK_EQ_INT(expect_status(req, NULL), 413);
    /* Trailers are bounded by max_header_bytes. */
    struct http_limits small = {.max_header_bytes = 100};
    snprintf(req, sizeof req, "%s0\r\nA: %0100d\r\n\r\n", h, 0);
    CHECK_EQ_INT(expect_status(req, &small), 431);
}

UNIT_TEST(test_malformed_requests)
{
    struct {
        const char *s;
        int status;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400},        /* obs-fold */
        {"GET / HTTP/1.1\r\n leading: x\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nName : x\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\n: x\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nA: b\x01\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", 400},
        {"GET / HTTP/1.1\nA: b\r\n\r\n", 400},                        /* bare LF */
        {"G(T / HTTP/1.1\r\n\r\n", 400},
        {"GET  / HTTP/1.1\r\n\r\n", 400},
        {"GET / HTTP/1.1 \r\n\r\n", 400},
        {"GET /\x7f HTTP/1.1\r\n\r\n", 400},
        {"GET /a#b HTTP/1.1\r\n\r\n", 400},
        {"GET relative HTTP/1.1\r\n\r\n", 400},
        {"GET / HTTP/1.1x\r\n\r\n", 400},
        {"GET / http/1.1\r\n\r\n", 400},
        {"GET / HTTP/2.0\r\n\r\n", 505},
        {"GET / HTTP/1.2\r\n\r\n", 505},
        {"GET / HTTP/0.9\r\n\r\n", 505},
        {"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 200},
        {"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello", 400},
        {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413},
        {"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
        {"POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n", 400},
        {"\r\n\r\nGET / HTTP/1.1\r\n\r\n", 200}, /* leading empty lines are skipped */
        {"GET / HTTP/1.1\r\nA: \x80\xff ok\r\n\r\n", 200},
    };
    for (size_t i = 0; i < ARRAY_LEN_(cases); i++) {
        int st = expect_status(cases[i].s, NULL);
        if (st != cases[i].status)
            fprintf(stderr, "  case %zu: got %d want %d\n", i, st, cases[i].status);
        CHECK_EQ_INT(st, cases[i].status);
    }
}

UNIT_TEST(test_limits)
{
    struct http_limits lim = {.max_header_bytes = 256, .max_headers = 4, .max_body = 8};
    CHECK_EQ_INT(expect_status("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", &lim), 200);
    CHECK_EQ_INT(expect_status("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n", &lim), 431);
    char big[600];
    snprintf(big, sizeof big, "GET / HTTP/1.1\r\nA: %0300d\r\n\r\n", 0);
    CHECK_EQ_INT(expect_status(big, &lim), 431);
    /* Without the end of the head: 431 as soon as the limit is reached. */
    snprintf(big, sizeof big, "GET / HTTP/1.1\r\nA: %0300d", 0);
    CHECK_EQ_INT(expect_status(big, &lim), 431);
    /* Exactly at the limit is fine. */
    char exact[300];
    int n = snprintf(exact, sizeof exact, "GET / HTTP/1.1\r\nA: ");
    memset(exact + n, 'x', 256 - (size_t)n - 4);
    memcpy(exact + 252, "\r\n\r\n", 5);
    CHECK_EQ_INT(strlen(exact), 256);
    CHECK_EQ_INT(expect_status(exact, &lim), 200);
    CHECK_EQ_INT(expect_status("POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\n", &lim), 413);
    CHECK_EQ_INT(expect_status("POST / HTTP/1.1\r\nContent-Length: 8\r\n\r\n12345678", &lim), 200);
    CHECK_EQ_INT(expect_status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n0\r\n\r\n", &lim),
                 200);
    CHECK_EQ_INT(expect_status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n1234\r\n5\r\n", &lim), 413);
    /* Allocation stays bounded: capacity of head and body buffers. */
    struct http_request_parser p;
    http_request_parser_init(&p, &lim);
    size_t used;
    const char *s = "POST / HTTP/1.1\r\nContent-Length: 8\r\n\r\n12345678";
    CHECK_EQ_INT(feed_req(&p, s, strlen(s), 1, &used), HTTP_DONE);
    CHECK(p.req.body.cap <= 9);
    CHECK(p.st.head.cap <= 257);
    http_request_parser_free(&p);
}

UNIT_TEST(test_keepalive_and_expect)
{
    struct http_request_parser p;
    size_t used;
    http_request_parser_init(&p, NULL);
    const char *s = "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\nConnection: foo, Close\r\n\r\n";
    CHECK_EQ_INT(http_request_feed(&p, s, strlen(s), &used), HTTP_NEED_MORE);
    CHECK_EQ_INT(used, strlen(s));
    CHECK(p.head_done);
    CHECK(p.req.expect_continue);
    CHECK(!p.req.keep_alive);
    CHECK_EQ_INT(http_request_feed(&p, "abcdef", 6, &used), HTTP_DONE);
    CHECK_EQ_INT(used, 3);
    CHECK_STR(p.req.body.data, "abc");
    http_request_parser_reset(&p);
    s = "GET / HTTP/1.0\r\n\r\n";
    CHECK_EQ_INT(http_request_feed(&p, s, strlen(s), &used), HTTP_DONE);
    CHECK(!p.req.keep_alive);
    http_request_parser_reset(&p);
    s = "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n";
    CHECK_EQ_INT(http_request_feed(&p, s, strlen(s), &used), HTTP_DONE);
    CHECK(!p.req.keep_alive);
    http_request_parser_free(&p);
    CHECK(http_header_has_token(" a ,b,  keep-alive ", "Keep-Alive"));
    CHECK(!http_header_has_token("keep-alives", "keep-alive"));
}

UNIT_TEST(test_error_is_sticky)
{
    struct http_request_parser p;
    size_t used;
    http_request_parser_init(&p, NULL);
    CHECK_EQ_INT(http_request_feed(&p, "BAD\r\n\r\n", 7, &used), HTTP_ERROR);
    CHECK_EQ_INT(p.error_status, 400);
    CHECK(p.error_msg != NULL);
    CHECK_EQ_INT(http_request_feed(&p, "GET / HTTP/1.1\r\n\r\n", 18, &used), HTTP_ERROR);
    CHECK_EQ_INT(used, 0);
    http_request_parser_reset(&p);
    CHECK_EQ_INT(http_request_feed(&p, "GET / HTTP/1.1\r\n\r\n", 18, &used), HTTP_DONE);
    http_request_parser_free(&p);
}

/* ---------- writer ---------- */

UNIT_TEST(test_writer)
{
    struct buf b = {0};
    http_write_head(&b, 200, "application/json", 12, true, "X-A: 1\r\n");
    CHECK_STR(b.data, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n"
                      "Connection: keep-alive\r\nX-A: 1\r\n\r\n");
    buf_reset(&b);
    http_write_head(&b, 404, NULL, HTTP_LENGTH_CHUNKED, false, NULL);
    CHECK_STR(b.data, "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    buf_reset(&b);
    http_write_head(&b, 200, NULL, HTTP_LENGTH_NONE, false, NULL);
    CHECK_STR(b.data, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
    buf_reset(&b);
    http_write_chunk(&b, "hello world, this", 17);
    http_write_chunk(&b, "x", 0);
    http_write_chunk_end(&b);
    CHECK_STR(b.data, "11\r\nhello world, this\r\n0\r\n\r\n");
    CHECK_STR(http_reason(413), "Content Too Large");
    CHECK_STR(http_reason(431), "Request Header Fields Too Large");
    CHECK_STR(http_reason(799), "Unknown");
    buf_free(&b);
}

/* ---------- response parser ---------- */

struct collect {
    struct buf got;
    int calls;
    int stop_after;
};

static int collect_cb(void *ud, const struct http_response *resp, const void *data, size_t len)
{
    struct collect *c = ud;
    c->calls++;
    buf_append(&c->got, data, len);
    return c->stop_after && c->calls >= c->stop_after;
}

static int feed_resp(struct http_response_parser *p, const char *s, size_t len, size_t step, size_t *consumed)
{
    size_t off = 0;
    int r = HTTP_NEED_MORE;
    while (off < len) {
        size_t n = step ? (len - off < step ? len - off : step) : len - off;
        size_t used = 0;
        r = http_response_feed(p, s + off, n, &used);
        off += used;
        if (r != HTTP_NEED_MORE)
            break;
    }
    *consumed = off;
    return r;
}

UNIT_TEST(test_response_content_length)
{
    const char *s = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 204 No Content\r\n\r\n";
    for (size_t si = 0; si < ARRAY_LEN_(steps); si++) {
        struct http_response_parser p;
        http_response_parser_init(&p, NULL);
        size_t used;
        CHECK_EQ_INT(feed_resp(&p, s, strlen(s), steps[si], &used), HTTP_DONE);
        CHECK_EQ_INT(p.resp.status, 200);
        CHECK_STR(p.resp.reason, "OK");
        CHECK_STR(p.resp.body.data, "hello");
        CHECK_STR(http_response_header(&p.resp, "content-type"), "text/plain");
        CHECK(p.resp.keep_alive);
        size_t off = used;
        http_response_parser_reset(&p);
        CHECK_EQ_INT(feed_resp(&p, s + off, strlen(s) - off, steps[si], &used), HTTP_DONE);
        CHECK_EQ_INT(p.resp.status, 204);
        CHECK_EQ_INT(p.resp.body.len, 0);
        CHECK_EQ_INT(off + used, strlen(s));
        http_response_parser_free(&p);
    }
}

UNIT_TEST(test_response_chunked_streaming)
{
    const char *s = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "6\r\n{\"a\":1\r\n2\r\n}\n\r\n"
                    "9;x=y\r\n{\"done\":1\r\n2\r\n}\n\r\n0\r\nT: 1\r\n\r\n";
    for (size_t si = 0; si < ARRAY_LEN_(steps); si++) {
        struct http_response_parser p;
        struct collect c = {0};
        http_response_parser_init(&p, NULL);
        http_response_parser_set_body_cb(&p, collect_cb, &c);
        size_t used;
        CHECK_EQ_INT(feed_resp(&p, s, strlen(s), steps[si], &used), HTTP_DONE);
        CHECK_EQ_INT(used, strlen(s));
        CHECK(p.resp.chunked);
        CHECK_EQ_INT(p.resp.body.len, 0);
        CHECK_STR(c.got.data, "{\"a\":1}\n{\"done\":1}\n");
        CHECK(c.calls >= 4);
        buf_free(&c.got);
        http_response_parser_free(&p);
    }
    /* Accumulating mode, and a callback that stops the parse. */
    struct http_response_parser p;
    http_response_parser_init(&p, NULL);
    size_t used;
    CHECK_EQ_INT(feed_resp(&p, s, strlen(s), 0, &used), HTTP_DONE);
    CHECK_STR(p.resp.body.data, "{\"a\":1}\n{\"done\":1}\n");
    http_response_parser_free(&p);
    struct collect c = {.stop_after = 1};
    http_response_parser_init(&p, NULL);
    http_response_parser_set_body_cb(&p, collect_cb, &c);
    CHECK_EQ_INT(feed_resp(&p, s, strlen(s), 0, &used), HTTP_ERROR);
    CHECK(p.error_msg != NULL);
    buf_free(&c.got);
    http_response_parser_free(&p);
}

UNIT_TEST(test_response_until_close_and_misc)
{
    struct http_response_parser p;
    size_t used;
    http_response_parser_init(&p, NULL);
    const char *s = "HTTP/1.0 200 OK\r\n\r\nsome bytes";
    CHECK_EQ_INT(feed_resp(&p, s, strlen(s), 3, &used), HTTP_NEED_MORE);
    CHECK(p.resp.until_close);
    CHECK(!p.resp.keep_alive);
    CHECK_EQ_INT(http_response_eof(&p), HTTP_DONE);
    CHECK_STR(p.resp.body.data, "some bytes");

    http_response_parser_reset(&p);
    s = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort";
    CHECK_EQ_INT(feed_resp(&p, s, strlen(s), 0, &used), HTTP_NEED_MORE);
    CHECK_EQ_INT(http_response_eof(&p), HTTP_ERROR);

    /* HEAD: no body despite Content-Length. */
    http_response_parser_reset(&p);
    http_response_parser_set_head(&p, true);
    s = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    CHECK_EQ_INT(feed_resp(&p, s, strlen(s), 0, &used), HTTP_DONE);
    CHECK_EQ_INT(p.resp.content_length, 10);

    /* 100 Continue, then the final response. */
    http_response_parser_reset(&p);
    s = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    CHECK_EQ_INT(feed_resp(&p, s, strlen(s), 0, &used), HTTP_DONE);
    CHECK_EQ_INT(p.resp.status, 100);
    size_t off = used;
    http_response_parser_reset(&p);
    CHECK_EQ_INT(feed_resp(&p, s + off, strlen(s) - off, 0, &used), HTTP_DONE);
    CHECK_EQ_INT(p.resp.status, 201);
    CHECK(!p.resp.keep_alive);
    CHECK_STR(p.resp.body.data, "ok");

    const char *bad[] = {
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 200OK\r\n\r\n",
        "HTTP/1.1 099 X\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\n folded\r\n\r\n",
    };
    for (size_t i = 0; i < ARRAY_LEN_(bad); i++) {
        http_response_parser_reset(&p);
        CHECK_EQ_INT(feed_resp(&p, bad[i], strlen(bad[i]), 0, &used), HTTP_ERROR);
    }
    /* Status line without a reason. */
    http_response_parser_reset(&p);
    s = "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n";
    CHECK_EQ_INT(feed_resp(&p, s, strlen(s), 0, &used), HTTP_DONE);
    CHECK_EQ_INT(p.resp.status, 404);
    CHECK_STR(p.resp.reason, "");
    http_response_parser_free(&p);

    /* Body limit in accumulating mode; none when streaming. */
    struct http_limits lim = {.max_body = 4};
    http_response_parser_init(&p, &lim);
    s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    CHECK_EQ_INT(feed_resp(&p, s, strlen(s), 0, &used), HTTP_ERROR);
    http_response_parser_reset(&p);
    struct collect c = {0};
    http_response_parser_set_body_cb(&p, collect_cb, &c);
    CHECK_EQ_INT(feed_resp(&p, s, strlen(s), 0, &used), HTTP_DONE);
    CHECK_STR(c.got.data, "hello");
    buf_free(&c.got);
    http_response_parser_free(&p);
}

/* Round trip: what the writer produces, the response parser reads. */
UNIT_TEST(test_roundtrip)
{
    struct buf b = {0};
    http_write_head(&b, 200, "application/x-ndjson", HTTP_LENGTH_CHUNKED, true, NULL);
    char line[64];
    for (int i = 0; i < 100; i++) {
        int n = snprintf(line, sizeof line, "{\"index\":%d}\n", i);
        http_write_chunk(&b, line, (size_t)n);
    }
    http_write_chunk_end(&b);
    struct http_response_parser p;
    http_response_parser_init(&p, NULL);
    size_t used;
    CHECK_EQ_INT(feed_resp(&p, b.data, b.len, 5, &used), HTTP_DONE);
    CHECK_EQ_INT(used, b.len);
    CHECK(strstr(p.resp.body.data, "{\"index\":99}\n") != NULL);
    http_response_parser_free(&p);
    buf_free(&b);
}

UNIT_TEST(test_media_type)
{
    CHECK(http_media_type_is("application/json", "application/json"));
    CHECK(http_media_type_is("Application/JSON", "application/json"));
    CHECK(http_media_type_is("application/json; charset=utf-8", "application/json"));
    CHECK(http_media_type_is("  application/json ;charset=utf-8", "application/json"));
    CHECK(http_media_type_is("application/json;", "application/json"));
    CHECK(!http_media_type_is(NULL, "application/json"));
    CHECK(!http_media_type_is("", "application/json"));
    CHECK(!http_media_type_is("application/jsonx", "application/json"));
    CHECK(!http_media_type_is("application/json x", "application/json"));
    CHECK(!http_media_type_is("application/jso", "application/json"));
    CHECK(!http_media_type_is("text/plain;application/json", "application/json"));
    CHECK(!http_media_type_is("application/x-ndjson", "application/json"));
}

int main(void)
{
    UNIT_RUN(test_media_type);
    UNIT_RUN(test_simple_get);
    UNIT_RUN(test_query_and_path_helpers);
    UNIT_RUN(test_absolute_and_asterisk_targets);
    UNIT_RUN(test_content_length_body_and_pipelining);
    UNIT_RUN(test_chunked_body);
    UNIT_RUN(test_streamed_request_body);
    UNIT_RUN(test_chunked_errors);
    UNIT_RUN(test_malformed_requests);
    UNIT_RUN(test_limits);
    UNIT_RUN(test_keepalive_and_expect);
    UNIT_RUN(test_error_is_sticky);
    UNIT_RUN(test_writer);
    UNIT_RUN(test_response_content_length);
    UNIT_RUN(test_response_chunked_streaming);
    UNIT_RUN(test_response_until_close_and_misc);
    UNIT_RUN(test_roundtrip);
    UNIT_MAIN_END();
}
