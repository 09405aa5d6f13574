/* The keep-alive policy: per function, how long an idle container is kept, when one
 * is started ahead of the predicted next call, and how soon the function is likely to
 * be called again (the scheduler's eviction ranking). Pure: it sees only the times it
 * is told (the loop's clock, or a simulator's), never a clock of its own, and calls
 * nothing else of control (internal.h, "keepalive.c", has the contract).
 *
 * The adaptive policies follow "Serverless in the Wild" (Shahrad et al., ATC'20): an
 * idle time is the time from the end of a function's last invocation (no work left in
 * flight) to the arrival of its next one; the idle times go into a histogram from which
 * the pre-warm and keep-alive windows are decided.
 *
 * ATC'20 models one instance per application. A function with bursts needs several
 * containers, and its k-th container is idle exactly when fewer than k containers' worth
 * of work is in flight. So the policies work per level: level k's idle times are the
 * gaps between the function's work falling below k containers and coming back to k.
 * Level 1's are ATC'20's. The fixed policies give every level the same window; the
 * hybrid policy (ATC'20 as published) applies the function's (level 1) histogram to all
 * of them, as a one-instance model would; the default keeps a histogram per level group
 * (internal.h) and decides each group's windows by cost (decide_by_cost), at an exchange
 * rate between cold starts and idle memory that the control plane sets for all its
 * functions at once (ka_solve_value): the one that spends the cold starts a fixed
 * 10-minute keep-alive would have had on the same histories, where they save the most
 * idle memory.
 *
 * While idle, level k's idle start is never earlier than level k+1's (the work fell
 * below k+1 no later than below k, and has not come back to k+1 since). Within a group
 * (one set of windows), the idle levels in each phase of the windows therefore form
 * runs, found by binary search: ka_wanted costs O(groups x log levels), not O(levels). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/xalloc.h"
#include "control/internal.h"

/* The histogram's range: its bins (internal.h) cover 4 hours, as in ATC'20, where most
 * functions' idle times that keep-alive can save fall inside it; longer idle times count
 * as out of bounds. */
#define KA_RANGE_MS ((uint64_t)KA_FINE_BINS * KA_FINE_MS + (uint64_t)(KA_NBINS - KA_FINE_BINS) * KA_BIN_MS)
/* ATC'20's minute view of the same range (the hybrid policy). */
#define KA_MINUTES (KA_RANGE_MS / KA_BIN_MS)
/* Head and tail percentiles: ATC'20 pre-warms at the 5th percentile of idle times and
 * keeps alive to the 99th (the tail its reimplementations use), so that about 5 % of
 * calls find the container released early and 1 % find it gone. */
#define KA_HEAD_PCT 5
#define KA_TAIL_PCT 99
/* Margin (hybrid only): ATC'20 pre-warms 10 % before the head and keeps 10 % past the
 * tail, to absorb the 1-minute bins' rounding and small drifts of the pattern. In
 * percent. The default has none: its windows end at bin edges that already cover every
 * idle time of the bins it keeps, and the drift of a pattern is in its histogram,
 * priced like the rest; a margin is memory the cost model did not approve (10 % of a
 * 30-minute period is 6 minutes of every pre-warmed container: gust-sim's default
 * spent 20 % more idle memory-time with it on the shared sample). */
#define KA_MARGIN_PCT 10
/* A histogram is representative when its bin counts vary: coefficient of variation
 * (stddev / mean over all bins) at least 2.0, the threshold of the dslab-faas
 * reimplementation of ATC'20. A flat histogram says idle times are spread over hours:
 * no head or tail worth predicting. */
#define KA_CV_MIN 2.0
/* More than half of the idle times beyond the range (dslab-faas oob_thr 0.5): the
 * histogram describes the minority of idle periods, so it is not used. ATC'20 forecasts
 * these functions with ARIMA; the hybrid policy falls back to 4 hours instead, as
 * ATC'20 does for an unrepresentative histogram. In percent. */
#define KA_OOB_MAX_PCT 50
/* The fewest idle times before the histogram decides: the 5th percentile of fewer than
 * 20 samples (100 / KA_HEAD_PCT) is simply the smallest one, so one early call would
 * set the pre-warm window. It also stops a single sample (whose one non-empty bin makes
 * the CV maximal) from looking representative. */
#define KA_MIN_SAMPLES 20
/* fixed_10min: the 10-minute fixed keep-alive of commercial platforms that ATC'20
 * compares against (and OpenWhisk's default). */
#define KA_FIXED_MS (10u * 60 * 1000)
/* knative: the KPA's stable window (60 s; REFERENCE.md): with no requests the averaged
 * concurrency over the window falls to zero 60 s after the last one and the revision
 * scales to zero. Knative's scale-to-zero grace (30 s) is how long it waits for the
 * activator to be put in the request path before the last pod goes; Gust has no such
 * routing step, so the grace does not apply. */
#define KA_KNATIVE_MS 60000u
/* default, until the control plane has histories to set an exchange rate from
 * (ka_solve_value): what a cold start is worth, in ms of an idle container of the same
 * size. A fixed keep-alive of W minutes is the ski-rental break-even for a cold start
 * worth W idle minutes (keep while what was spent waiting is less than a start would
 * have cost: 2-competitive with no knowledge of the next call); the commercial 10-minute
 * window thus values a start at 10 minutes. */
#define KA_COLD_VALUE_MS ((double)KA_FIXED_MS)
/* ka_solve_value's search: the exchange rate in GiB x ms per cold start, between a
 * second of a 1 GiB container (below it nothing of a minute-scale histogram is worth
 * keeping) and 10^15 (past what any histogram can use: a bin's value V x c / N exceeds
 * the 4-hour range's idle cost for every non-empty bin once V > range x samples, and
 * 10^15 covers 10^5 samples of a 1 TiB container), halved in log space 40 times: a
 * factor of 1 + 10^-11 at the end, far below the step one idle time makes. */
/* default: the shortest release between the short window and a pre-warm. A release
 * and pre-warm cycle costs a container start (the sandbox, then the function's init:
 * imports or a model's weights, seconds for many functions, while the container holds
 * its memory without working) and risks the start not being ready when the call comes;
 * a release shorter than a minute saves less idle time than that is likely to cost. A
 * minute is also the finest release ATC'20's policy expresses (its bins): the 5-second
 * bins decide where keeping ends, not releases that ATC'20 would not make. */
#define KA_MIN_RELEASE_MS 60000u
#define KA_LAMBDA_MIN 1e3
#define KA_LAMBDA_MAX 1e15
#define KA_LAMBDA_STEPS 40
/* default, before a level has KA_MIN_SAMPLES idle times: knowing nothing of it, the
 * ski-rental window for that valuation, which is the fixed one. */
#define KA_DEFAULT_UNKNOWN_MS KA_FIXED_MS
/* default: windows are recomputed on every idle time until there are this many, then
 * when the count has grown by 1/KA_REDECIDE_FRACTION since the last time. Each decision
 * walks the 240 bins; a function called thousands of times a minute would otherwise
 * walk them on every call, to move a distribution that one call changes by 1/n. */
#define KA_REDECIDE_ALWAYS 256u
#define KA_REDECIDE_FRACTION 16u

int ka_policy_parse(const char *name, enum ka_policy *out)
{
    static const struct {
        const char *name;
        enum ka_policy p;
    } names[] = {
        {"default", KA_DEFAULT},
        {"fixed_10min", KA_FIXED_10MIN},
        {"knative", KA_KNATIVE},
        {"hybrid_histogram", KA_HYBRID},
    };
    if (!name) {
        *out = KA_DEFAULT;
        return 0;
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(name, names[i].name)) {
            *out = names[i].p;
            return 0;
        }
    return -EINVAL;
}

const char *ka_policy_name(enum ka_policy p)
{
    switch (p) {
    case KA_DEFAULT: return "default";
    case KA_FIXED_10MIN: return "fixed_10min";
    case KA_KNATIVE: return "knative";
    case KA_HYBRID: return "hybrid_histogram";
    }
    return "default";
}

/* The group of level k (internal.h): 1 -> 0, 2 -> 1, 3-4 -> 2, 5-8 -> 3, ... */
static uint32_t group_of(uint32_t k)
{
    if (k <= 1)
        return 0;
    uint32_t g = 32 - (uint32_t)__builtin_clz(k - 1);
    return g < KA_NGROUPS ? g : KA_NGROUPS - 1;
}

/* The highest level of group g (the lowest is the previous group's highest + 1). */
static uint32_t group_hi(uint32_t g)
{
    return g + 1 >= KA_NGROUPS ? KA_MAX_LEVELS : 1u << g;
}

/* Bin b's lower edge and width (internal.h: 5-second bins for the first minute, then
 * minutes), and the bin of an idle time inside the range. */
static uint64_t bin_lo_ms(uint32_t b)
{
    return b < KA_FINE_BINS ? (uint64_t)b * KA_FINE_MS : (uint64_t)(b - KA_FINE_BINS + 1) * KA_BIN_MS;
}

static uint64_t bin_width_ms(uint32_t b)
{
    return b < KA_FINE_BINS ? KA_FINE_MS : KA_BIN_MS;
}

static uint32_t bin_of(uint64_t ms)
{
    return ms < KA_BIN_MS ? (uint32_t)(ms / KA_FINE_MS) : (uint32_t)(KA_FINE_BINS - 1 + ms / KA_BIN_MS);
}

/* ATC'20's 1-minute bins: minute 0 is the fine bins' sum. */
static uint64_t minute_count(const struct ka_hist *h, uint32_t m)
{
    if (m)
        return h->bins[KA_FINE_BINS - 1 + m];
    uint64_t n = 0;
    for (uint32_t b = 0; b < KA_FINE_BINS; b++)
        n += h->bins[b];
    return n;
}

/* The first minute at which the cumulative count reaches pct percent of the n in-bounds
 * samples (n > 0). */
static uint32_t percentile_minute(const struct ka_hist *h, uint32_t n, uint32_t pct)
{
    uint64_t cum = 0;
    for (uint32_t m = 0; m < KA_MINUTES; m++) {
        cum += minute_count(h, m);
        if (cum * 100 >= (uint64_t)pct * n)
            return m;
    }
    return KA_MINUTES - 1;
}

/* ATC'20's test (n idle times in bounds): enough of them, most in bounds, and minute
 * counts that vary. */
static bool representative(const struct ka_hist *h, uint32_t n)
{
    if (h->samples < KA_MIN_SAMPLES || n == 0 || (uint64_t)h->oob * 100 > (uint64_t)KA_OOB_MAX_PCT * h->samples)
        return false;
    /* cv >= KA_CV_MIN  <=>  variance >= (KA_CV_MIN * mean)^2, without a square root. */
    double mean = (double)n / KA_MINUTES, var = 0;
    for (uint32_t m = 0; m < KA_MINUTES; m++) {
        double d = (double)minute_count(h, m) - mean;
        var += d * d;
    }
    var /= KA_MINUTES;
    return var >= KA_CV_MIN * KA_CV_MIN * mean * mean;
}

/* A minute's upper edge plus the margin: rounding up keeps every idle time of the
 * minute covered. */
static uint64_t upper_edge_ms(uint32_t minute)
{
    uint64_t edge = (uint64_t)(minute + 1) * KA_BIN_MS;
    return edge + edge * KA_MARGIN_PCT / 100;
}

/* A minute's lower edge minus the margin. */
static uint64_t lower_edge_ms(uint32_t minute)
{
    uint64_t edge = (uint64_t)minute * KA_BIN_MS;
    return edge - edge * KA_MARGIN_PCT / 100;
}

/* ATC'20's windows: pre-warm at the head's lower edge, keep to the tail's upper edge
 * (with margins). A head in the first bin pre-warms at 0: kept throughout. */
static void head_and_tail(struct ka_hist *h, uint32_t n)
{
    h->prewarm_ms = lower_edge_ms(percentile_minute(h, n, KA_HEAD_PCT));
    h->keepalive_ms = upper_edge_ms(percentile_minute(h, n, KA_TAIL_PCT));
}

/* Level k's windows: wanted while idle for d with d < keep, except short <= d < pre
 * (released between the short window and the pre-warm). short <= pre < keep; short =
 * pre = 0 without a pre-warm. */
struct windows {
    uint64_t short_ms, pre_ms, keep_ms;
};

/* The default's windows for a cold start worth value_ms of idle container: those that
 * minimise the expected cost of one idle period of the level under its idle-time
 * distribution (the histogram). The container may be kept during the first s bins,
 * released, and kept again (pre-warmed) from bin p to bin e: K = [0, s) + [p, e), at
 * most one release and one pre-warm per idle period, as ATC'20's policy. For an idle
 * time T the cost is the time kept before T, |K n [0, T)|, plus the value of a start
 * when T falls outside K. Summed over bins, keeping bin b (w_b ms wide) gains
 *   g_b = V c_b / N  -  w_b (S_b - c_b / 2N)
 * (V: the start's value; c_b / N: the chance T is in bin b, a start saved; S_b: the
 * chance T reaches bin b, less half of those ending inside it: the expected part of the
 * bin spent idle), and the best K maximises the sum of g over it: a prefix and one
 * interval, found in one pass. Idle times beyond the range count in S but are never
 * covered. ATC'20's percentiles (keep to the 99th) spend hours of memory on a 1 % tail;
 * this spends exactly what the valuation says the tail is worth. *missed: the fraction
 * of the idle times the windows leave to a cold start. */
static struct windows cost_windows(const struct ka_hist *h, double value_ms, double *missed)
{
    /* P[b]: the sum of g over [0, b); C[b]: the idle times it covers (a fraction). */
    double P[KA_NBINS + 1], C[KA_NBINS + 1], n = h->samples, surv = 1.0; /* S_b */
    P[0] = C[0] = 0;
    for (uint32_t b = 0; b < KA_NBINS; b++) {
        double frac = h->bins[b] / n;
        P[b + 1] = P[b] + value_ms * frac - (double)bin_width_ms(b) * (surv - frac / 2);
        C[b + 1] = C[b] + frac;
        surv -= frac;
    }
    /* Keeping [0, e) is worth P(e); keeping [0, s) and [p, e), released for at least
     * KA_MIN_RELEASE_MS in between, P(s) - P(p) + P(e). One pass over e: lag is the best
     * P(s) among the bins at least the shortest release before e, gap the best
     * P(s) - P(p) with p <= e. */
    double best = 0, lag = -HUGE_VAL, gap = -HUGE_VAL;
    uint32_t lag_s = 0, gap_s = 0, gap_p = 0, next_s = 0, s_best = 0, p_best = 0, e_best = 0;
    bool released = false;
    for (uint32_t e = 0; e <= KA_NBINS; e++) {
        for (; next_s <= e && bin_lo_ms(next_s) + KA_MIN_RELEASE_MS <= bin_lo_ms(e); next_s++)
            if (P[next_s] > lag) {
                lag = P[next_s];
                lag_s = next_s;
            }
        if (lag > -HUGE_VAL && lag - P[e] > gap) {
            gap = lag - P[e];
            gap_s = lag_s;
            gap_p = e;
        }
        if (P[e] > best) {
            best = P[e];
            e_best = e;
            released = false;
        }
        if (gap > -HUGE_VAL && P[e] + gap > best) {
            best = P[e] + gap;
            s_best = gap_s;
            p_best = gap_p;
            e_best = e;
            released = true;
        }
    }
    if (best <= 0) {
        /* Nothing worth keeping: the idle times are too long or too spread out for
         * any window to repay itself. */
        *missed = 1.0;
        return (struct windows){0, 0, 0};
    }
    if (!released) {
        *missed = 1.0 - C[e_best];
        return (struct windows){0, 0, bin_lo_ms(e_best)};
    }
    *missed = 1.0 - (C[s_best] + C[e_best] - C[p_best]);
    return (struct windows){bin_lo_ms(s_best), bin_lo_ms(p_best), bin_lo_ms(e_best)};
}

/* Recomputes a histogram's windows after a new idle time or a new valuation (hybrid or
 * default). */
static void decide(struct ka_hist *h, enum ka_policy policy, double value_ms)
{
    h->short_ms = h->prewarm_ms = 0;
    uint32_t n = h->samples - h->oob;
    if (policy == KA_HYBRID) {
        /* ATC'20 as published: the head and tail of all idle times, else 4 hours. */
        h->predicts = representative(h, n);
        if (h->predicts)
            head_and_tail(h, n);
        else
            h->keepalive_ms = KA_RANGE_MS;
        return;
    }
    h->predicts = h->samples >= KA_MIN_SAMPLES;
    if (!h->predicts) {
        h->keepalive_ms = KA_DEFAULT_UNKNOWN_MS;
        return;
    }
    double missed;
    struct windows w = cost_windows(h, value_ms, &missed);
    h->short_ms = w.short_ms;
    h->prewarm_ms = w.pre_ms;
    h->keepalive_ms = w.keep_ms;
}

/* The valuation the default decides s's windows at. */
static double value_of(const struct ka_state *s)
{
    return s->value_ms > 0 ? s->value_ms : KA_COLD_VALUE_MS;
}

/* The histogram that decides level k's windows: its group's, but the function's own
 * (level 1) for the hybrid policy. NULL: none yet (or the policy keeps none). */
static const struct ka_hist *hist_for(const struct ka_state *s, uint32_t k)
{
    switch (s->policy) {
    case KA_FIXED_10MIN:
    case KA_KNATIVE:
        return NULL;
    case KA_HYBRID:
        return s->hist[0];
    case KA_DEFAULT:
        break;
    }
    return s->hist[group_of(k)];
}

static struct windows windows(const struct ka_state *s, uint32_t k)
{
    const struct ka_hist *h = hist_for(s, k);
    if (h)
        return (struct windows){h->short_ms, h->prewarm_ms, h->keepalive_ms};
    switch (s->policy) {
    case KA_FIXED_10MIN: return (struct windows){0, 0, KA_FIXED_MS};
    case KA_KNATIVE: return (struct windows){0, 0, KA_KNATIVE_MS};
    case KA_HYBRID: return (struct windows){0, 0, KA_RANGE_MS}; /* no idle time yet: not representative */
    case KA_DEFAULT: break;
    }
    return (struct windows){0, 0, KA_DEFAULT_UNKNOWN_MS};
}

void ka_init(struct ka_state *s, enum ka_policy policy)
{
    memset(s, 0, sizeof *s);
    s->policy = policy;
}

void ka_free(struct ka_state *s)
{
    free(s->idle_since);
    for (uint32_t g = 0; g < KA_NGROUPS; g++)
        free(s->hist[g]);
    ka_init(s, s->policy);
}

/* Level k's idle time of idle_ms ended. The fixed policies keep no history; the hybrid
 * policy keeps the function's (level 1) only. */
static void record(struct ka_state *s, uint32_t k, uint64_t idle_ms)
{
    if (s->policy == KA_FIXED_10MIN || s->policy == KA_KNATIVE || (s->policy == KA_HYBRID && k != 1))
        return;
    uint32_t g = group_of(k);
    if (!s->hist[g])
        s->hist[g] = xcalloc(1, sizeof *s->hist[g]);
    struct ka_hist *h = s->hist[g];
    if (idle_ms >= KA_RANGE_MS)
        h->oob++;
    else
        h->bins[bin_of(idle_ms)]++;
    h->samples++;
    s->changes++;
    if (h->samples <= KA_REDECIDE_ALWAYS || h->samples - h->decided_at >= h->decided_at / KA_REDECIDE_FRACTION) {
        decide(h, s->policy, value_of(s));
        h->decided_at = h->samples;
    }
}

void ka_set_level(struct ka_state *s, uint32_t n, uint64_t now_ms)
{
    if (n > KA_MAX_LEVELS)
        n = KA_MAX_LEVELS;
    if (n > s->level) {
        uint32_t top = n < s->nlevels ? n : s->nlevels;
        for (uint32_t k = s->level + 1; k <= top; k++)
            record(s, k, now_ms > s->idle_since[k - 1] ? now_ms - s->idle_since[k - 1] : 0);
        if (n > s->cap) {
            uint32_t cap = s->cap ? s->cap : 4;
            while (cap < n)
                cap *= 2;
            if (cap > KA_MAX_LEVELS)
                cap = KA_MAX_LEVELS;
            s->idle_since = xreallocarray(s->idle_since, cap, sizeof *s->idle_since);
            s->cap = cap;
        }
        if (n > s->nlevels)
            s->nlevels = n;
    } else {
        for (uint32_t k = n + 1; k <= s->level; k++)
            s->idle_since[k - 1] = now_ms;
    }
    s->level = n;
}

/* The first level in [lo, hi] idle for at least ms at now (hi + 1 if none): idle
 * times grow with the level (the file's comment), so a binary search. */
static uint32_t first_idle_for(const struct ka_state *s, uint32_t lo, uint32_t hi, uint64_t now, uint64_t ms)
{
    uint32_t a = lo, b = hi + 1;
    while (a < b) {
        uint32_t m = a + (b - a) / 2;
        if (now - s->idle_since[m - 1] >= ms)
            b = m;
        else
            a = m + 1;
    }
    return a;
}

/* The idle levels of group g, [*lo, *hi]; false when it has none, nor has any later
 * group (levels above nlevels were never reached). */
static bool idle_levels_of(const struct ka_state *s, uint32_t g, uint32_t *lo, uint32_t *hi)
{
    if (g >= KA_NGROUPS)
        return false;
    *lo = g ? group_hi(g - 1) + 1 : 1;
    *hi = group_hi(g);
    if (*lo <= s->level)
        *lo = s->level + 1;
    if (*hi > s->nlevels)
        *hi = s->nlevels;
    return *lo <= *hi;
}

uint32_t ka_wanted(const struct ka_state *s, uint64_t now_ms, uint64_t *next_ms)
{
    uint32_t wanted = s->level;
    uint64_t next = UINT64_MAX;
    uint32_t lo, hi;
    for (uint32_t g = group_of(s->level + 1); idle_levels_of(s, g, &lo, &hi); g++) {
        struct windows w = windows(s, lo);
        /* [lo, a): idle less than the short window (wanted); [a, b): released until
         * the pre-warm; [b, e): wanted; [e, hi]: past the keep-alive. The highest level
         * of each run is the first to move on to the next. */
        uint32_t a = w.short_ms ? first_idle_for(s, lo, hi, now_ms, w.short_ms) : lo;
        uint32_t b = w.pre_ms ? first_idle_for(s, a, hi, now_ms, w.pre_ms) : a;
        uint32_t e = first_idle_for(s, b, hi, now_ms, w.keep_ms);
        wanted += (a - lo) + (e - b);
        uint64_t due[3] = {UINT64_MAX, UINT64_MAX, UINT64_MAX};
        if (a > lo)
            due[0] = s->idle_since[a - 2] + w.short_ms;
        if (b > a)
            due[1] = s->idle_since[b - 2] + w.pre_ms;
        if (e > b)
            due[2] = s->idle_since[e - 2] + w.keep_ms;
        for (int i = 0; i < 3; i++)
            if (due[i] < next)
                next = due[i];
    }
    *next_ms = next;
    return wanted;
}

uint32_t ka_prewarms_due(const struct ka_state *s, uint64_t from_ms, uint64_t now_ms)
{
    uint32_t due = 0;
    if (now_ms <= from_ms)
        return 0;
    uint32_t lo, hi;
    for (uint32_t g = group_of(s->level + 1); idle_levels_of(s, g, &lo, &hi); g++) {
        struct windows w = windows(s, lo);
        if (!w.pre_ms)
            continue;
        /* Idle for d with pre <= d < pre + (now - from), and still short of the end. */
        uint64_t until = w.pre_ms + (now_ms - from_ms);
        if (until > w.keep_ms)
            until = w.keep_ms;
        uint32_t a = first_idle_for(s, lo, hi, now_ms, w.pre_ms);
        due += first_idle_for(s, a, hi, now_ms, until) - a;
    }
    return due;
}

uint64_t ka_keepalive_ms(const struct ka_state *s, uint32_t k)
{
    return windows(s, k ? k : 1).keep_ms;
}

uint64_t ka_prewarm_ms(const struct ka_state *s, uint32_t k)
{
    return windows(s, k ? k : 1).pre_ms;
}

uint64_t ka_short_ms(const struct ka_state *s, uint32_t k)
{
    return windows(s, k ? k : 1).short_ms;
}

uint64_t ka_idle_for_ms(const struct ka_state *s, uint32_t k, uint64_t now_ms)
{
    if (k <= s->level || k > s->nlevels)
        return 0;
    return now_ms > s->idle_since[k - 1] ? now_ms - s->idle_since[k - 1] : 0;
}

uint64_t ka_next_use_ms(const struct ka_state *s, uint32_t k, uint64_t now_ms)
{
    if (k <= s->level)
        return 0;
    if (k > s->nlevels)
        return KA_RANGE_MS; /* never needed yet: as far as any histogram sees */
    uint64_t t = ka_idle_for_ms(s, k, now_ms);
    const struct ka_hist *h = hist_for(s, k);
    if (!h || !h->predicts)
        /* Nothing to predict from: the longer a level has been idle, the later it is
         * taken to be needed again (LRU). */
        return t;
    /* The median of the idle times still possible after t, from the bins that end after
     * it; past the range when most of those are out of bounds. */
    uint64_t left = h->oob;
    uint32_t first = t >= KA_RANGE_MS ? KA_NBINS : bin_of(t);
    for (uint32_t b = first; b < KA_NBINS; b++)
        left += h->bins[b];
    if (left == 0)
        return KA_RANGE_MS; /* overdue: every idle time seen was shorter; the pattern broke */
    uint64_t cum = 0;
    for (uint32_t b = first; b < KA_NBINS; b++) {
        cum += h->bins[b];
        if (cum * 2 >= left) {
            uint64_t mid = bin_lo_ms(b) + bin_width_ms(b) / 2;
            return mid > t ? mid - t : 0;
        }
    }
    return KA_RANGE_MS; /* the median is beyond the range: as far as the histogram sees */
}

/* ka_next_use_ms's cases, as lines in now:
 *   busy, never reached, overdue, median beyond the range, idle past the range: a
 *     constant for as long as the state stays (left only shrinks as t grows, so an
 *     empty or out-of-range remainder stays so);
 *   no prediction: t = now - since, slope +1, for as long as the state stays;
 *   a median bin m: mid - t, slope -1, then 0 once t reaches mid. The sums that find m
 *     only change when t leaves a bin with idle times in it: the line holds until t
 *     leaves g, the first such bin at or after t's (m >= g, as m's bin is not empty). */
void ka_next_use_line(const struct ka_state *s, uint32_t k, uint64_t now_ms, struct ka_use_line *out)
{
    *out = (struct ka_use_line){0, 0, UINT64_MAX};
    if (k <= s->level)
        return;
    out->base = KA_RANGE_MS;
    if (k > s->nlevels)
        return;
    uint64_t since = s->idle_since[k - 1];
    if (now_ms < since) {
        /* ka_idle_for_ms is 0 until since (a clock that went back): 0 or the range,
         * decided again at since. */
        out->base = (int64_t)ka_next_use_ms(s, k, now_ms);
        out->until_ms = since;
        return;
    }
    uint64_t t = now_ms - since;
    const struct ka_hist *h = hist_for(s, k);
    if (!h || !h->predicts) {
        out->slope = 1;
        out->base = -(int64_t)since;
        return;
    }
    if (t >= KA_RANGE_MS)
        return;
    uint32_t first = bin_of(t), g = KA_NBINS;
    uint64_t left = h->oob;
    for (uint32_t b = first; b < KA_NBINS; b++) {
        left += h->bins[b];
        if (h->bins[b] && g == KA_NBINS)
            g = b;
    }
    uint64_t cum = 0;
    for (uint32_t b = first; left && b < KA_NBINS; b++) {
        cum += h->bins[b];
        if (cum * 2 < left)
            continue;
        uint64_t mid = bin_lo_ms(b) + bin_width_ms(b) / 2, end = since + bin_lo_ms(g) + bin_width_ms(g);
        if (mid > t) {
            out->slope = -1;
            out->base = (int64_t)(since + mid);
            out->until_ms = since + mid < end ? since + mid : end;
        } else {
            out->base = 0;
            out->until_ms = end;
        }
        return;
    }
}

void ka_set_value(struct ka_state *s, double value_ms)
{
    if (value_ms == s->value_ms)
        return;
    s->value_ms = value_ms;
    if (s->policy != KA_DEFAULT)
        return;
    for (uint32_t g = 0; g < KA_NGROUPS; g++)
        if (s->hist[g])
            decide(s->hist[g], s->policy, value_of(s));
}

/* The exchange rate (ka_solve_value's contract in internal.h). Why: a valuation fixed
 * in advance (the ski-rental 10 minutes) says what a start is worth against one
 * function's own memory, but what a platform is judged by is its cold starts against
 * all the idle memory it reserves, and the same value spends memory very differently
 * on a 128 MiB function called every few minutes and on a 4 GiB one with bursts. The
 * best windows for "fewest idle GiB-s for a given number of cold starts" across all
 * functions are those that minimise idle GiB-s + lambda x cold starts for one lambda
 * (a Lagrange multiplier): each function's windows are its cost-optimal ones at a
 * value of lambda / its GiB. Which lambda is a choice of how many cold starts to
 * spend; the default spends as many as the fixed 10-minute keep-alive would on the
 * same idle times (those of 10 minutes or more, and past the range), the commercial
 * baseline, so that it is never colder than that baseline by its own prediction and
 * saves all the memory that budget allows. Idle times of histograms too young to
 * decide (KA_MIN_SAMPLES) are left out on both sides: those levels keep the fixed
 * window. Misses fall as lambda grows (every bin is worth more to keep), so a
 * bisection in log space finds the smallest lambda in budget. */
double ka_solve_value(const struct ka_state *const *s, const double *gib, size_t n, double prev)
{
    double budget = 0;
    bool any = false;
    for (size_t i = 0; i < n; i++)
        for (uint32_t g = 0; g < KA_NGROUPS; g++) {
            const struct ka_hist *h = s[i]->hist[g];
            if (!h || h->samples < KA_MIN_SAMPLES)
                continue;
            any = true;
            budget += h->oob;
            for (uint32_t b = bin_of(KA_FIXED_MS); b < KA_NBINS; b++)
                budget += h->bins[b];
        }
    if (!any)
        return prev;
    double lo = log(KA_LAMBDA_MIN), hi = log(KA_LAMBDA_MAX);
    for (int step = 0; step < KA_LAMBDA_STEPS; step++) {
        double mid = (lo + hi) / 2, lambda = exp(mid), misses = 0;
        for (size_t i = 0; i < n && misses <= budget; i++)
            for (uint32_t g = 0; g < KA_NGROUPS; g++) {
                const struct ka_hist *h = s[i]->hist[g];
                if (!h || h->samples < KA_MIN_SAMPLES)
                    continue;
                double missed;
                cost_windows(h, lambda / gib[i], &missed);
                misses += missed * h->samples;
            }
        if (misses <= budget)
            hi = mid;
        else
            lo = mid;
    }
    return exp(hi);
}

/* ---------- persistence ----------
 * A history is: one version byte (2), the number of groups that follow (u8, so that a
 * truncated history is told from a shorter one), then per group: the group (u8),
 * samples and oob (u32 each), the number of non-empty bins (u16), and each non-empty
 * bin as its index (u8) and count (u32), in increasing order. Little-endian.
 * Version 1 had 240 one-minute bins; its minute 0 loads into the first minute's last
 * fine bin (55-60 s), which keeps those idle times covered as long as version 1 did,
 * and its minute m into the minute bin of the same range. */

#define KA_ENCODING_VERSION 2
_Static_assert(KA_NBINS <= 256, "a bin's index is one byte");

static void put_u32(struct buf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    buf_append(b, x, sizeof x);
}

void ka_encode(const struct ka_state *s, struct buf *out)
{
    unsigned char head[2] = {KA_ENCODING_VERSION, 0};
    for (uint32_t g = 0; g < KA_NGROUPS; g++)
        head[1] += s->hist[g] != NULL;
    buf_append(out, head, sizeof head);
    for (uint32_t g = 0; g < KA_NGROUPS; g++) {
        const struct ka_hist *h = s->hist[g];
        if (!h)
            continue;
        uint16_t nz = 0;
        for (uint32_t b = 0; b < KA_NBINS; b++)
            nz += h->bins[b] != 0;
        unsigned char rec[3] = {(unsigned char)g, (unsigned char)nz, (unsigned char)(nz >> 8)};
        buf_append(out, rec, 1);
        put_u32(out, h->samples);
        put_u32(out, h->oob);
        buf_append(out, rec + 1, 2);
        for (uint32_t b = 0; b < KA_NBINS; b++)
            if (h->bins[b]) {
                unsigned char bin = (unsigned char)b;
                buf_append(out, &bin, 1);
                put_u32(out, h->bins[b]);
            }
    }
}

struct reader {
    const unsigned char *p;
    size_t left;
};

static bool get_bytes(struct reader *r, void *out, size_t n)
{
    if (r->left < n)
        return false;
    memcpy(out, r->p, n);
    r->p += n;
    r->left -= n;
    return true;
}

static bool get_u32(struct reader *r, uint32_t *v)
{
    unsigned char x[4];
    if (!get_bytes(r, x, sizeof x))
        return false;
    *v = (uint32_t)x[0] | (uint32_t)x[1] << 8 | (uint32_t)x[2] << 16 | (uint32_t)x[3] << 24;
    return true;
}

/* One group's record into h (zeroed); false when it is malformed. */
static bool decode_group(struct reader *r, struct ka_hist *h, unsigned version)
{
    unsigned char nzb[2];
    if (!get_u32(r, &h->samples) || !get_u32(r, &h->oob) || !get_bytes(r, nzb, 2))
        return false;
    uint32_t nz = (uint32_t)nzb[0] | (uint32_t)nzb[1] << 8, last = 0;
    uint64_t total = h->oob;
    if (nz > KA_NBINS)
        return false;
    for (uint32_t i = 0; i < nz; i++) {
        unsigned char bin;
        uint32_t count;
        if (!get_bytes(r, &bin, 1) || !get_u32(r, &count) || count == 0 || (i && bin <= last))
            return false;
        last = bin;
        uint32_t at = version == 1 ? KA_FINE_BINS - 1 + bin : bin;
        if (version == 1 ? bin >= KA_MINUTES : at >= KA_NBINS)
            return false;
        h->bins[at] = count;
        total += count;
    }
    return total == h->samples && h->samples > 0;
}

int ka_decode(struct ka_state *s, const void *data, size_t len)
{
    struct reader r = {data, len};
    unsigned char head[2];
    if (!get_bytes(&r, head, sizeof head) || (head[0] != KA_ENCODING_VERSION && head[0] != 1) ||
        head[1] > KA_NGROUPS)
        return -EINVAL;
    struct ka_hist *hist[KA_NGROUPS] = {0};
    int rc = 0;
    for (uint32_t i = 0; i < head[1]; i++) {
        unsigned char g;
        if (!get_bytes(&r, &g, 1) || g >= KA_NGROUPS || hist[g]) {
            rc = -EINVAL;
            break;
        }
        hist[g] = xcalloc(1, sizeof *hist[g]);
        if (!decode_group(&r, hist[g], head[0])) {
            rc = -EINVAL;
            break;
        }
    }
    if (r.left)
        rc = -EINVAL; /* more than the groups it announced */
    for (uint32_t g = 0; g < KA_NGROUPS; g++) {
        if (rc < 0) {
            free(hist[g]);
            continue;
        }
        free(s->hist[g]);
        s->hist[g] = hist[g];
        if (hist[g]) {
            decide(hist[g], s->policy, value_of(s));
            hist[g]->decided_at = hist[g]->samples;
        }
    }
    if (rc == 0)
        s->changes++;
    return rc;
}
