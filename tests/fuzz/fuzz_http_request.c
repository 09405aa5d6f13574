/* libFuzzer target for the HTTP request parser. The first bytes choose the limits and
 * the piece sizes; the rest is fed in pieces. Invariants: feeding in pieces gives the
 * same result as feeding at once, consumed never exceeds what was given, NEED_MORE
 * takes everything, limits hold, and the helpers never fail on a parsed request. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "http_fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Parses all of msg (pipelined requests too) cutting it with the piece sizes from
 * cuts; writes a compact trace of results into trace. Returns its length. */
static size_t run(const struct http_limits *lim, const uint8_t *msg, size_t len, const uint8_t *cuts, size_t ncuts,
                  int *trace, size_t trace_cap)
{
    struct http_request_parser p;
    http_request_parser_init(&p, lim);
    size_t off = 0, ci = 0, nt = 0;
    while (off < len && nt + 3 <= trace_cap) {
        size_t piece = http_fuzz_piece(cuts, ncuts, &ci, len - off);
        size_t used = 0;
        int r = http_request_feed(&p, msg + off, piece, &used);
        if (used > piece)
            abort();
        if (r == HTTP_NEED_MORE && used != piece)
            abort();
        off += used;
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
        if (!rq->method || !rq->path || !rq->query || rq->nheaders > lim->max_headers)
            abort();
        if (rq->body.len > lim->max_body || p.st.head.len > lim->max_header_bytes)
            abort();
        if (rq->content_length >= 0 && !rq->chunked && (size_t)rq->content_length != rq->body.len)
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
        trace[nt++] = (int)rq->body.len;
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
    int a[128], b[128], c[128];
    size_t na = run(lim, fc.msg, fc.len, NULL, 0, a, 128);
    size_t nb = run(lim, fc.msg, fc.len, fc.cuts, fc.ncuts, b, 128);
    size_t nc = run(lim, fc.msg, fc.len, (const uint8_t[]){0}, 1, c, 128);
    if (na > 120 || nb > 120 || nc > 120) /* long pipelines: the trace was cut short */
        return 0;
    if (na != nb || memcmp(a, b, na * sizeof a[0]) || na != nc || memcmp(a, c, na * sizeof a[0]))
        abort();
    return 0;
}
