/* Shared input layout of the HTTP parser fuzz targets (fuzz_http_request.c,
 * fuzz_http_response.c). Header-only: each target is built alone by
 * scripts/build-fuzz.sh.
 *
 * An input is 4 header bytes, then up to 7 cut bytes, then the message:
 *   data[0]  mode: bit 0 tightens the header limits from data[1] and data[2];
 *            bits 1-3 give the number of cut bytes; the other bits are the target's
 *   data[3]  the target's (a body limit)
 * Each cut byte c cuts a piece of c + 1 bytes; the cuts repeat until the message ends. */
#ifndef GUST_HTTP_FUZZ_COMMON_H
#define GUST_HTTP_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/http.h"

struct http_fuzz_case {
    uint8_t mode;
    uint8_t arg; /* data[3] */
    struct http_limits lim;
    const uint8_t *cuts;
    size_t ncuts;
    const uint8_t *msg;
    size_t len;
};

/* Splits data into *fc; false when it is too short to hold the header bytes. */
static inline bool http_fuzz_case_init(struct http_fuzz_case *fc, const uint8_t *data, size_t size)
{
    if (size < 4)
        return false;
    http_limits_default(&fc->lim);
    fc->mode = data[0];
    fc->arg = data[3];
    if (fc->mode & 1) {
        fc->lim.max_header_bytes = 64 + (size_t)data[1] * 4;
        fc->lim.max_headers = 1 + (data[2] & 15);
    }
    size_t ncuts = (fc->mode >> 1) & 7;
    data += 4;
    size -= 4;
    if (ncuts > size)
        ncuts = size;
    fc->cuts = data;
    fc->ncuts = ncuts;
    fc->msg = data + ncuts;
    fc->len = size - ncuts;
    return true;
}

/* The size of the next piece to feed, at most left; no cuts: all that is left. */
static inline size_t http_fuzz_piece(const uint8_t *cuts, size_t ncuts, size_t *ci, size_t left)
{
    size_t piece = ncuts ? (size_t)cuts[(*ci)++ % ncuts] + 1 : left;
    return piece > left ? left : piece;
}

#endif
