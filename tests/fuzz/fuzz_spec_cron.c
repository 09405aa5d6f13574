/* libFuzzer target: cron expressions and TZif zone files (src/spec/cron.h).
 * Byte 0 picks the mode. Even: the rest is a cron expression, parsed and, when valid,
 * stepped with cron_next in UTC and in a fuzzed fixed zone; every fire must be after
 * the last one and match the expression's minute and hour in that zone. Odd: the rest
 * is a TZif file; when it parses, offsets and next changes are queried at instants
 * across the range and a fixed expression is stepped through it. Nothing may crash,
 * read out of bounds or loop without end (cron_next's search is bounded). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spec/cron.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_cron_step(const struct cron_expr *e, const struct cron_tz *tz, int64_t t, bool check)
{
    for (int k = 0; k < 4; k++) {
        int64_t got;
        int r = cron_next(e, tz, t, &got);
        if (r == -ENOENT)
            return;
        if (r < 0 || got <= t || got % 60 != 0 || got > t + CRON_SEARCH_SECS + 60)
            __builtin_trap();
        if (check) {
            int64_t nc;
            int64_t w = got + cron_tz_offset(tz, got, &nc);
            int64_t secs = ((w % 86400) + 86400) % 86400;
            if (!(e->hours & (1u << (secs / 3600))) || !(e->minutes & (1ULL << (secs / 60 % 60))))
                __builtin_trap();
        }
        t = got;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static struct cron_tz tz;
    struct gerr err;
    if (data[0] % 2 == 0) {
        char expr[CRON_EXPR_MAX + 2];
        size_t n = size - 1 > CRON_EXPR_MAX + 1 ? CRON_EXPR_MAX + 1 : size - 1;
        memcpy(expr, data + 1, n);
        expr[n] = '\0';
        struct cron_expr e;
        if (cron_parse(expr, &e, &err) < 0) {
            if (err.code != EINVAL || !err.msg[0])
                __builtin_trap();
            return 0;
        }
        if (!e.minutes || !e.hours || !e.mdays || !e.months || !e.wdays)
            __builtin_trap();
        memset(&tz, 0, sizeof tz);
        tz.ntypes = 1;
        fuzz_cron_step(&e, &tz, 1780000000, true);
        /* A fixed offset from the input's first byte, whole quarter hours up to +-14 h. */
        tz.type_off[0] = ((int32_t)(data[0] / 2) - 64) * 900 % 50400;
        fuzz_cron_step(&e, &tz, -86400 * 365, true);
        return 0;
    }
    if (cron_tz_parse(data + 1, size - 1, &tz, &err) < 0) {
        if (err.code != EINVAL || !err.msg[0])
            __builtin_trap();
        return 0;
    }
    /* cron_next takes instants within +-2^62 (-ERANGE beyond); stay well inside, and
     * clamp the file's transitions (any int64) before moving off them. */
    const int64_t span = 1LL << 40;
    int64_t first = tz.ntrans ? tz.trans[0] : 0, last = tz.ntrans ? tz.trans[tz.ntrans - 1] : 0;
    first = first < -span ? -span : first > span ? span : first;
    last = last < -span ? -span : last > span ? span : last;
    int64_t lo = tz.ntrans ? first - 86400 : 0, hi = tz.ntrans ? last + 86400 * 800 : 86400;
    if (hi < lo)
        hi = lo;
    for (int i = 0; i <= 64; i++) {
        int64_t t = lo + (int64_t)((double)(hi - lo) * i / 64);
        int64_t nc;
        cron_tz_offset(&tz, t, &nc);
        if (nc <= t)
            __builtin_trap();
    }
    struct cron_expr e;
    if (cron_parse("*/13 1-4 * * *", &e, &err) < 0)
        __builtin_trap();
    fuzz_cron_step(&e, &tz, lo, false);
    return 0;
}
