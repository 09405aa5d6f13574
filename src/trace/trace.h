/* The Azure Functions 2019 trace format ("Serverless in the Wild", ATC'20), as read
 * by gust-sim: per-minute invocation counts of functions (*_inv.csv), their duration
 * percentiles (*_run.csv) and their app's allocated memory (*_mem.csv).
 *
 * The files come from outside: every parser bounds what it allocates (functions,
 * minutes, line length, file size; TRACE_MAX_* below) and reports the first bad line
 * with its 1-based line number and column. Base only: no event loop, no control. */
#ifndef GUST_TRACE_TRACE_H
#define GUST_TRACE_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

/* Bounds. The public dataset's biggest day has about 46,000 functions (in one
 * file of ~150 MB), so 200,000 functions and 512 MiB leave room for any one of its
 * files; 20,160 minutes is two weeks, the dataset's whole span. A line of 1,440
 * counts is ~10 KiB; 1 MiB per line admits 20,160 columns of 7-digit counts. The
 * counts table is functions x minutes x 4 bytes, held to 64 Mi cells (256 MiB). A
 * minute's count above 10^8 (over 1.6 million calls a second for one function) is
 * not a trace of this kind: it is refused rather than replayed. */
#define TRACE_MAX_FUNCTIONS 200000u
#define TRACE_MAX_MINUTES 20160u
#define TRACE_MAX_LINE (1u << 20)
#define TRACE_MAX_FILE (512ull << 20)
#define TRACE_MAX_CELLS (64ull << 20)
#define TRACE_MAX_COUNT 100000000u
#define TRACE_HASH_MAX 128 /* a field naming a function, app or owner (SHA-256 hex: 64) */

/* Duration percentiles of *_run.csv, in ms: 0, 1, 25, 50, 75, 99, 100. */
#define TRACE_NPCT 7
extern const double trace_pct_at[TRACE_NPCT];

struct trace_fn {
    char function[TRACE_HASH_MAX + 1];
    char app[TRACE_HASH_MAX + 1];
    bool has_duration;
    double duration_pct[TRACE_NPCT]; /* ms at trace_pct_at[i] */
    uint32_t memory_mib;             /* the app's AverageAllocatedMb; 0: not in *_mem.csv */
    uint64_t total;                  /* invocations over all minutes */
};

struct trace {
    struct trace_fn *fns;
    size_t nfns;
    uint32_t nminutes;
    uint32_t *counts; /* nfns x nminutes, row-major: counts[f * nminutes + m] */
};

/* What to keep: the first max_functions rows (0: all, up to TRACE_MAX_FUNCTIONS) and
 * the first max_minutes minutes (0: all). */
struct trace_limits {
    size_t max_functions;
    uint32_t max_minutes;
};

/* Parses *_inv.csv text (name: for messages) into a fresh t. 0, or -EINVAL/-E2BIG
 * with err naming the line. */
int trace_parse_inv(struct trace *t, const char *name, const char *text, size_t len,
                    const struct trace_limits *lim, struct gerr *err);
/* Fills durations of t's functions from *_run.csv text (rows of other functions are
 * skipped; a function without a row keeps has_duration false). */
int trace_parse_run(struct trace *t, const char *name, const char *text, size_t len, struct gerr *err);
/* Fills memory_mib of t's functions from *_mem.csv text, by app. */
int trace_parse_mem(struct trace *t, const char *name, const char *text, size_t len, struct gerr *err);

/* Reads dir/<prefix>_inv.csv, <prefix>_run.csv and <prefix>_mem.csv, where dir holds
 * exactly one "*_inv.csv" (the shared sample's files are 100_*.csv). */
int trace_load(const char *dir, const struct trace_limits *lim, struct trace *t, struct gerr *err);

/* A bigger trace than the files hold: makes t hold k copies of each of its n functions
 * (k >= 1). Copy c of function i is t->fns[c * n + i] (copy 0 is the original): the
 * same durations, memory and total, hashes suffixed "~c" (shortened to fit
 * TRACE_HASH_MAX), and minutes rotated by one offset per copy drawn from seed: copy c's
 * minute m is the original's minute (m + off_c) mod nminutes, off_c in [1, nminutes)
 * for c >= 1. A rotation keeps each function's own pattern, its count of every minute
 * in the same order (bursts, periods and idle times, what a keep-alive policy learns
 * from), but for the one gap across the end of the trace; a copy as a whole is the same
 * trace started at another minute, so copies do not fire in lockstep while the
 * functions of one copy keep their timing relative to each other. -EINVAL for k = 0;
 * -E2BIG (t unchanged) when n * k functions or their counts would pass
 * TRACE_MAX_FUNCTIONS or TRACE_MAX_CELLS, the bounds of a parsed trace. */
int trace_replicate(struct trace *t, uint32_t k, uint64_t seed, struct gerr *err);
void trace_free(struct trace *t);

#endif
