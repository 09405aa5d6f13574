/* libFuzzer target for the HTTP request parser. The first bytes choose the limits and
 * the piece sizes; the rest is fed in pieces. Invariants: feeding in pieces gives the
 * same result as feeding at once, consumed never exceeds what was given, NEED_MORE
 * takes everything (but where a streamed body's reader paused), limits hold, and the
 * helpers never fail on a parsed request. A fourth run streams each body once its head
 * is parsed (http_request_parser_stream_body) to a reader that takes a few bytes per
 * offer: the same requests, body lengths, body bytes (their hash) and errors. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "http_fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* FNV-1a over data, from h. */
static uint32_t fnv(uint32_t h, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

#define FNV_INIT 2166136261u

/* A streamed body's reader: takes at most take bytes per offer. */
struct reader {
    size_t take;
    uint32_t hash;     /* of the body so far: the parser's accumulated bytes, then these */
    bool paused;
};

static size_t reader_take(void *ud, const void *data, size_t len)
{
    struct reader *rd = ud;
    if (!len)
        abort();
    size_t n = len < rd->take ? len : rd->take;
    rd->hash = fnv(rd->hash, data, n);
    rd->paused = n < len;
    return n;
}

/* Parses all of msg (pipelined requests too) cutting it with the piece sizes from
 * cuts; writes a compact trace of results into trace. Returns its length. take: 0, or
 * stream each body still to come after its head to a reader taking that many bytes
 * per offer. */
static size_t run(const struct http_limits *lim, const uint8_t *msg, size_t len, const uint8_t *cuts, size_t ncuts,
                  size_t take, int *trace, size_t trace_cap)
{
    struct http_request_parser p;
    http_request_parser_init(&p, lim);
    struct reader rd = {.take = take};
    size_t off = 0, ci = 0, nt = 0;
    while (off < len && nt + 4 <= trace_cap) {
        size_t piece = http_fuzz_piece(cuts, ncuts, &ci, len - off);
        size_t used = 0;
        rd.paused = false;
        int r = http_request_feed(&p, msg + off, piece, &used);
        if (used > piece)
            abort();
        if (r == HTTP_NEED_MORE && used != piece && !(p.body_fn && rd.paused))
            abort();
        off += used;
        if (r == HTTP_NEED_MORE && take && p.head_done && !p.body_fn) {
            rd.hash = fnv(FNV_INIT, p.req.body.data, p.req.body.len);
            http_request_parser_stream_body(&p, reader_take, &rd);
        }
        if (r == HTTP_NEED_MORE)
            continue;
        if (r == HTTP_ERROR) {
            if (p.error_status != 400 && p.error_status != 413 && p.error_status != 431 && p.error_status != 501 &&
                p.error_status != 505 && p.error_status != 500)
                abort();
            trace[nt++] = -p.error_status;
            break;
        }
        /* A complete request: check it. */
        const struct http_request *rq = &p.req;
        uint64_t total = rq->body.len + p.streamed;
        uint32_t hash = p.body_fn ? rd.hash : fnv(FNV_INIT, rq->body.data, rq->body.len);
        if (!p.body_fn && p.streamed)
            abort();
        if (!rq->method || !rq->path || !rq->query || rq->nheaders > lim->max_headers)
            abort();
        if (total > lim->max_body || p.st.head.len > lim->max_header_bytes)
            abort();
        if (rq->content_length >= 0 && !rq->chunked && (uint64_t)rq->content_length != total)
            abort();
        if (p.st.head.cap > lim->max_header_bytes + 1 || rq->body.cap > lim->max_body + 1)
            abort();
        for (size_t i = 0; i < rq->nheaders; i++)
            if (strlen(rq->headers[i].name) != rq->headers[i].name_len ||
                strlen(rq->headers[i].value) != rq->headers[i].value_len)
                abort();
        char tmp[64];
        http_query_get(rq, "a", tmp, sizeof tmp);
        uint64_t u;
        int qr = http_query_u64(rq, "from", &u);
        if (qr != 0 && qr != -ENOENT && qr != -EINVAL)
            abort();
        size_t nseg = http_path_segment_count(rq);
        for (size_t i = 0; i < nseg && i < 8; i++)
            if (http_path_segment(rq, i, tmp, sizeof tmp) == -ENOENT)
                abort();
        http_request_header(rq, "content-type");
        trace[nt++] = (int)total;
        trace[nt++] = (int)hash;
        trace[nt++] = (int)off;
        http_request_parser_reset(&p);
    }
    http_request_parser_free(&p);
    return nt;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct http_fuzz_case fc;
    if (!http_fuzz_case_init(&fc, data, size))
        return 0;
    struct http_limits *lim = &fc.lim;
    if (fc.mode & 1) {
        lim->max_body = (size_t)fc.arg * 8;
        if (lim->max_body == 0)
            lim->max_body = 1;
    }
    int a[128], b[128], c[128], d[128];
    size_t na = run(lim, fc.msg, fc.len, NULL, 0, 0, a, 128);
    size_t nb = run(lim, fc.msg, fc.len, fc.cuts, fc.ncuts, 0, b, 128);
    size_t nc = run(lim, fc.msg, fc.len, (const uint8_t[]){0}, 1, 0, c, 128);
    /* Streamed: cut (in 4-byte pieces without cuts, so that bodies do stream), and a
     * reader taking 1 to 8 bytes per offer. */
    const uint8_t four[] = {3};
    size_t nd = run(lim, fc.msg, fc.len, fc.ncuts ? fc.cuts : four, fc.ncuts ? fc.ncuts : 1,
                    1 + ((size_t)(fc.mode >> 4) & 7), d, 128);
    if (na > 120 || nb > 120 || nc > 120 || nd > 120) /* long pipelines: the trace was cut short */
        return 0;
    if (na != nb || memcmp(a, b, na * sizeof a[0]) || na != nc || memcmp(a, c, na * sizeof a[0]) || na != nd ||
        memcmp(a, d, na * sizeof a[0]))
        abort();
    return 0;
}
