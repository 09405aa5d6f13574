/* Fuzzes what gustd reads from containers: runner-protocol datagrams, decoded and
 * reassembled exactly as the worker does (OUTPUT, ERROR and a generator's ITEM frames,
 * each chunked with FRAME_F_MORE). The input is a sequence of datagrams, each
 * prefixed by a 2-byte little-endian length. Checks: a completed payload never exceeds
 * the configured limit, and the reassembler never leaks or overruns. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct frame_asm a;
    const size_t max_payload = 3 * FRAME_MAX_BODY + 17;
    frame_asm_init(&a, max_payload);
    size_t off = 0;
    while (off + 2 <= size) {
        size_t len = (size_t)data[off] | ((size_t)data[off + 1] << 8);
        off += 2;
        if (len > size - off)
            len = size - off;
        const uint8_t *dg = data + off;
        off += len;
        struct frame_header h;
        /* The same acceptance rule as frame_recv: a valid header and an exact length. */
        if (frame_header_decode(dg, len, &h) < 0 || len != FRAME_HEADER_SIZE + (size_t)h.body_len)
            continue;
        uint8_t *out = NULL;
        size_t out_len = 0;
        int r = frame_asm_feed(&a, &h, dg + FRAME_HEADER_SIZE, &out, &out_len);
        if (r == 1) {
            if (out_len > max_payload || out[out_len] != '\0')
                __builtin_trap();
            free(out);
        }
        if (h.type == FRAME_CANCEL)
            frame_asm_drop(&a, FRAME_INPUT, h.id);
    }
    frame_asm_free(&a);
    return 0;
}
