/* libFuzzer target for the HTTP response parser, in accumulating and streaming mode.
 * Invariants: piecewise feeding gives the same results as feeding at once, streamed
 * bytes equal the accumulated body, consumed is bounded, limits hold. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "http_fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MSGS 32

struct result {
    int rc[MAX_MSGS * 2];
    size_t n;
    bool body_limit; /* failed on max_body: streaming (unbounded) may differ */
    struct buf body; /* bodies of all responses, concatenated */
};

static int sink(void *ud, const struct http_response *resp, const void *d, size_t len)
{
    struct result *r = ud;
    if (!len || resp->status < 100)
        abort();
    buf_append(&r->body, d, len);
    return 0;
}

/* With partial, the body bytes parsed before a failure count too (as a streaming sink
 * has seen them); only comparable when the body limit cannot be what failed. */
static void run(const struct http_limits *lim, bool stream, bool head, bool partial, const uint8_t *msg, size_t len,
                const uint8_t *cuts, size_t ncuts, struct result *res)
{
    struct http_response_parser p;
    http_response_parser_init(&p, lim);
    if (stream)
        http_response_parser_set_body_cb(&p, sink, res);
    http_response_parser_set_head(&p, head);
    size_t off = 0, ci = 0;
    int r = HTTP_NEED_MORE;
    while (res->n + 2 <= MAX_MSGS * 2) {
        if (off == len) {
            r = http_response_eof(&p);
            if (r == HTTP_DONE) {
                if (!stream)
                    buf_append(&res->body, p.resp.body.data, p.resp.body.len);
                res->rc[res->n++] = p.resp.status;
            } else if (p.head_done || p.st.head.len) {
                /* Streaming has delivered the partial body already. */
                if (!stream && partial)
                    buf_append(&res->body, p.resp.body.data, p.resp.body.len);
                res->rc[res->n++] = -1;
            }
            break;
        }
        size_t piece = http_fuzz_piece(cuts, ncuts, &ci, len - off);
        size_t used = 0;
        r = http_response_feed(&p, msg + off, piece, &used);
        if (used > piece || (r == HTTP_NEED_MORE && used != piece))
            abort();
        off += used;
        if (r == HTTP_NEED_MORE)
            continue;
        if (r == HTTP_ERROR) {
            if (!p.error_msg)
                abort();
            if (!strcmp(p.error_msg, "response body too large"))
                res->body_limit = true;
            if (!stream && partial)
                buf_append(&res->body, p.resp.body.data, p.resp.body.len);
            res->rc[res->n++] = -1;
            break;
        }
        const struct http_response *rs = &p.resp;
        if (rs->status < 100 || rs->status > 599 || rs->nheaders > lim->max_headers)
            abort();
        if (!stream && rs->body.len > lim->max_body)
            abort();
        if (stream && rs->body.len)
            abort();
        if (rs->content_length >= 0 && !rs->chunked && !head && rs->status >= 200 && rs->status != 204 &&
            rs->status != 304 && !stream && (size_t)rs->content_length != rs->body.len)
            abort();
        if (!stream)
            buf_append(&res->body, rs->body.data, rs->body.len);
        http_response_header(rs, "content-type");
        res->rc[res->n++] = rs->status;
        res->rc[res->n++] = (int)off;
        http_response_parser_reset(&p);
        http_response_parser_set_head(&p, head);
    }
    http_response_parser_free(&p);
}

static bool same(const struct result *a, const struct result *b)
{
    return a->n == b->n && !memcmp(a->rc, b->rc, a->n * sizeof a->rc[0]) && a->body.len == b->body.len &&
           (a->body.len == 0 || !memcmp(a->body.data, b->body.data, a->body.len));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct http_fuzz_case fc;
    if (!http_fuzz_case_init(&fc, data, size))
        return 0;
    /* A body limit the input cannot reach keeps accumulating and streaming comparable. */
    bool tight = fc.mode & 0x80;
    if (tight)
        fc.lim.max_body = 1 + (size_t)fc.arg;
    bool head = fc.mode & 0x40;
    const uint8_t *msg = fc.msg;
    size_t len = fc.len;
    struct result a = {0}, b = {0}, c = {0}, s = {0};
    run(&fc.lim, false, head, !tight, msg, len, NULL, 0, &a);
    run(&fc.lim, false, head, !tight, msg, len, fc.cuts, fc.ncuts, &b);
    run(&fc.lim, false, head, !tight, msg, len, (const uint8_t[]){0}, 1, &c);
    run(&fc.lim, true, head, false, msg, len, fc.cuts, fc.ncuts, &s);
    if (!same(&a, &b) || !same(&a, &c))
        abort();
    if (!tight && !a.body_limit && !same(&a, &s))
        abort();
    buf_free(&a.body);
    buf_free(&b.body);
    buf_free(&c.body);
    buf_free(&s.body);
    return 0;
}
