/* libFuzzer target: the trace CSV parsers (src/trace) on arbitrary bytes. The first
 * byte picks the limits of trace_parse_inv; the rest is parsed as *_inv.csv and, when
 * that succeeds, the same bytes as *_run.csv and *_mem.csv for its functions, then
 * replicates the table. Checks: success gives a bounded, consistent table; failure says
 * which line. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "trace/trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct trace_limits lim = {.max_functions = data[0] & 0x0f, .max_minutes = data[0] >> 4};
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    struct trace t;
    struct gerr err;
    if (trace_parse_inv(&t, "f_inv.csv", text, len, &lim, &err) < 0) {
        if (!strstr(err.msg, "f_inv.csv") || t.fns || t.counts)
            abort();
        return 0;
    }
    if (!t.nfns || t.nfns > TRACE_MAX_FUNCTIONS || !t.nminutes || t.nminutes > TRACE_MAX_MINUTES ||
        (lim.max_functions && t.nfns > lim.max_functions) || (lim.max_minutes && t.nminutes > lim.max_minutes))
        abort();
    for (size_t i = 0; i < t.nfns; i++) {
        uint64_t sum = 0;
        for (uint32_t m = 0; m < t.nminutes; m++) {
            if (t.counts[i * t.nminutes + m] > TRACE_MAX_COUNT)
                abort();
            sum += t.counts[i * t.nminutes + m];
        }
        if (sum != t.fns[i].total || !t.fns[i].function[0] || !t.fns[i].app[0])
            abort();
    }
    if (trace_parse_run(&t, "f_run.csv", text, len, &err) < 0 && !strstr(err.msg, "f_run.csv"))
        abort();
    for (size_t i = 0; i < t.nfns; i++)
        for (int k = 1; t.fns[i].has_duration && k < TRACE_NPCT; k++)
            if (!(t.fns[i].duration_pct[k] >= t.fns[i].duration_pct[k - 1]))
                abort();
    if (trace_parse_mem(&t, "f_mem.csv", text, len, &err) < 0 && !strstr(err.msg, "f_mem.csv"))
        abort();
    /* Replication (the last byte picks 1 to 4 copies) stays within the bounds, and every
     * copy keeps its original's total. */
    size_t n = t.nfns;
    uint32_t k = 1 + data[size - 1] % 4;
    if (trace_replicate(&t, k, size, &err) == 0) {
        if (t.nfns != n * k || t.nfns > TRACE_MAX_FUNCTIONS || (uint64_t)t.nfns * t.nminutes > TRACE_MAX_CELLS)
            abort();
        for (size_t i = 0; i < t.nfns; i++) {
            uint64_t sum = 0;
            for (uint32_t m = 0; m < t.nminutes; m++)
                sum += t.counts[i * t.nminutes + m];
            if (sum != t.fns[i].total || sum != t.fns[i % n].total)
                abort();
        }
    } else if (t.nfns != n || !strstr(err.msg, "replicate")) {
        abort();
    }
    trace_free(&t);
    return 0;
}
