/* Fuzzes the snapshot protocol's parsers (proto/snap.h): what the worker reads from a
 * forked container's sync socket and from a template's FRAME_CHILD_EXIT (both written
 * by code in containers), and the FRAME_RESUME body a runner reads. The first input
 * byte picks the parser. Checks: texts stay NUL-terminated within their buffers, the
 * seccomp program and env entries lie inside the body, env ends with a NUL. */
#include <stdint.h>
#include <string.h>

#include "proto/frame.h"
#include "proto/snap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *body = data + 1;
    size_t len = size - 1;
    switch (data[0] % 3) {
    case 0: {
        struct snap_reply rep;
        enum snap_sync_kind k = snap_parse_sync(body, len, &rep);
        if ((k == SNAP_SYNC_DONE || k == SNAP_SYNC_FAILED) && strnlen(rep.msg, sizeof rep.msg) == sizeof rep.msg)
            __builtin_trap();
        break;
    }
    case 1: {
        struct frame_exit_body xb;
        char text[64];
        if (snap_parse_child_exit(body, len, &xb, text, sizeof text) == 0 && strnlen(text, sizeof text) == sizeof text)
            __builtin_trap();
        break;
    }
    default: {
        const uint8_t *filter;
        uint32_t n;
        const char *env;
        size_t env_len;
        if (snap_parse_resume(body, len, &filter, &n, &env, &env_len) == 0) {
            if (filter < body || filter + (size_t)n * 8 > body + len || (const uint8_t *)env + env_len != body + len)
                __builtin_trap();
            if (env_len && env[env_len - 1] != '\0')
                __builtin_trap();
        }
        break;
    }
    }
    return 0;
}
