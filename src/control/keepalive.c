/* The keep-alive policy: per function, how long an idle container is kept, when one
 * is started ahead of the predicted next call, and how soon the function is likely to
 * be called again (the scheduler's eviction ranking). Pure: it sees only the times it
 * is told (the loop's clock, or a simulator's), never a clock of its own, and calls
 * nothing else of control (internal.h, "keepalive.c", has the contract).
 *
 * The adaptive policies follow "Serverless in the Wild" (Shahrad et al., ATC'20): an
 * idle time is the time from the end of a function's last invocation (no work left in
 * flight) to the arrival of its next one; the function's idle times go into a histogram
 * whose head and tail percentiles give the pre-warm and keep-alive windows. */
#include <errno.h>
#include <string.h>

#include "control/internal.h"

/* The histogram's range: KA_NBINS bins of KA_BIN_MS (internal.h) cover 4 hours, as in
 * ATC'20, where most functions' idle times that keep-alive can save fall inside it;
 * longer idle times count as out of bounds. */
#define KA_RANGE_MS ((uint64_t)KA_NBINS * KA_BIN_MS)
/* Head and tail percentiles: ATC'20 pre-warms at the 5th percentile of idle times and
 * keeps alive to the 99th (the tail its reimplementations use), so that about 5 % of
 * calls find the container released early and 1 % find it gone. */
#define KA_HEAD_PCT 5
#define KA_TAIL_PCT 99
/* Margin: ATC'20 pre-warms 10 % before the head and keeps 10 % past the tail, to absorb
 * the 1-minute bins' rounding and small drifts of the pattern. In percent. */
#define KA_MARGIN_PCT 10
/* A histogram is representative when its bin counts vary: coefficient of variation
 * (stddev / mean over all bins) at least 2.0, the threshold of the dslab-faas
 * reimplementation of ATC'20. A flat histogram says idle times are spread over hours:
 * no head or tail worth predicting. */
#define KA_CV_MIN 2.0
/* More than half of the idle times beyond the range (dslab-faas oob_thr 0.5): the
 * histogram describes the minority of idle periods, so it is not used. ATC'20 forecasts
 * these functions with ARIMA; we fall back instead (below). In percent. */
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
/* default, for a function with no idle time recorded yet, or whose idle times are mostly
 * beyond the range: the Knative window. A Gust cold start is a process sandbox (tens of
 * milliseconds to a second), not a VM, so the cost balance that makes ATC'20 fall back to
 * 4 hours tilts towards releasing memory early; ATC'20 also found most functions are
 * called less than once an hour, for which any window under an hour only wastes memory. */
#define KA_DEFAULT_SHORT_MS KA_KNATIVE_MS
/* default, with a few idle times (fewer than KA_MIN_SAMPLES): keep alive past the
 * longest one (+ margin) when that is at most the fixed 10-minute window, the most the
 * commercial platforms find worth keeping an unknown function for; else the short
 * window (the function's gaps are too long for a window to pay off on this evidence). */
#define KA_DEFAULT_FEW_CAP_MS KA_FIXED_MS

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

static uint32_t in_bounds(const struct ka_state *s)
{
    return s->samples - s->oob;
}

/* The first bin at which the cumulative count reaches pct percent of the in-bounds
 * samples (there is at least one). */
static uint32_t percentile_bin(const struct ka_state *s, uint32_t pct)
{
    uint64_t n = in_bounds(s), cum = 0;
    for (uint32_t b = 0; b < KA_NBINS; b++) {
        cum += s->bins[b];
        if (cum * 100 >= pct * n)
            return b;
    }
    return KA_NBINS - 1;
}

static bool representative(const struct ka_state *s)
{
    uint32_t n = in_bounds(s);
    if (s->samples < KA_MIN_SAMPLES || n == 0 || (uint64_t)s->oob * 100 > (uint64_t)KA_OOB_MAX_PCT * s->samples)
        return false;
    /* cv >= KA_CV_MIN  <=>  variance >= (KA_CV_MIN * mean)^2, without a square root. */
    double mean = (double)n / KA_NBINS, var = 0;
    for (uint32_t b = 0; b < KA_NBINS; b++)
        var += ((double)s->bins[b] - mean) * ((double)s->bins[b] - mean);
    var /= KA_NBINS;
    return var >= KA_CV_MIN * KA_CV_MIN * mean * mean;
}

/* The tail percentile's bin's upper edge plus the margin: rounding up keeps every idle
 * time of that bin covered. */
static uint64_t tail_ms(const struct ka_state *s)
{
    uint64_t edge = (uint64_t)(percentile_bin(s, KA_TAIL_PCT) + 1) * KA_BIN_MS;
    return edge + edge * KA_MARGIN_PCT / 100;
}

/* Recomputes the cached windows after a new idle time. */
static void decide(struct ka_state *s)
{
    s->prewarm_ms = 0;
    s->predicts = false;
    switch (s->policy) {
    case KA_FIXED_10MIN:
        s->keepalive_ms = KA_FIXED_MS;
        return;
    case KA_KNATIVE:
        s->keepalive_ms = KA_KNATIVE_MS;
        return;
    case KA_HYBRID:
    case KA_DEFAULT:
        break;
    }
    if (representative(s)) {
        /* The head's bin's lower edge, minus the margin: 0 when the head is in the first
         * bin (calls come back within a minute: keep the container, do not release it). */
        uint64_t head = (uint64_t)percentile_bin(s, KA_HEAD_PCT) * KA_BIN_MS;
        s->prewarm_ms = head - head * KA_MARGIN_PCT / 100;
        s->keepalive_ms = tail_ms(s);
        s->predicts = true;
        return;
    }
    if (s->policy == KA_HYBRID) {
        s->keepalive_ms = KA_RANGE_MS; /* ATC'20's standard keep-alive fallback */
        return;
    }
    uint64_t t = in_bounds(s) ? tail_ms(s) : 0;
    if (s->samples >= KA_MIN_SAMPLES && (uint64_t)s->oob * 100 <= (uint64_t)KA_OOB_MAX_PCT * s->samples)
        /* Enough idle times, but flat: no head worth pre-warming at, yet the tail still
         * says how long covers 99 % of them. */
        s->keepalive_ms = t > KA_DEFAULT_SHORT_MS ? t : KA_DEFAULT_SHORT_MS;
    else if (s->samples < KA_MIN_SAMPLES && t && t <= KA_DEFAULT_FEW_CAP_MS && !s->oob)
        s->keepalive_ms = t > KA_DEFAULT_SHORT_MS ? t : KA_DEFAULT_SHORT_MS;
    else
        s->keepalive_ms = KA_DEFAULT_SHORT_MS;
}

void ka_init(struct ka_state *s, enum ka_policy policy)
{
    memset(s, 0, sizeof *s);
    s->policy = policy;
    decide(s);
}

void ka_on_call(struct ka_state *s, uint64_t now_ms)
{
    if (!s->busy && s->was_idle) {
        uint64_t idle = now_ms > s->idle_since_ms ? now_ms - s->idle_since_ms : 0;
        if (idle >= KA_RANGE_MS)
            s->oob++;
        else
            s->bins[idle / KA_BIN_MS]++;
        s->samples++;
        decide(s);
    }
    s->busy = true;
}

void ka_on_idle(struct ka_state *s, uint64_t now_ms)
{
    s->busy = false;
    s->was_idle = true;
    s->idle_since_ms = now_ms;
}

uint64_t ka_keepalive_ms(const struct ka_state *s)
{
    return s->keepalive_ms;
}

uint64_t ka_prewarm_ms(const struct ka_state *s)
{
    return s->prewarm_ms;
}

uint64_t ka_next_use_ms(const struct ka_state *s, uint64_t now_ms)
{
    if (s->busy || !s->was_idle)
        return 0;
    uint64_t t = now_ms > s->idle_since_ms ? now_ms - s->idle_since_ms : 0;
    if (!s->predicts)
        /* Nothing to predict from: the longer a function has been idle, the later it is
         * taken to be called again (LRU). */
        return t;
    /* The median of the idle times still possible after t, from the bins that end after
     * it; past the range when most of those are out of bounds. */
    uint64_t left = s->oob;
    uint32_t first = t >= KA_RANGE_MS ? KA_NBINS : (uint32_t)(t / KA_BIN_MS);
    for (uint32_t b = first; b < KA_NBINS; b++)
        left += s->bins[b];
    if (left == 0)
        return KA_RANGE_MS; /* overdue: every idle time seen was shorter; the pattern broke */
    uint64_t cum = 0;
    for (uint32_t b = first; b < KA_NBINS; b++) {
        cum += s->bins[b];
        if (cum * 2 >= left) {
            uint64_t mid = (uint64_t)b * KA_BIN_MS + KA_BIN_MS / 2;
            return mid > t ? mid - t : 0;
        }
    }
    return KA_RANGE_MS; /* the median is beyond the range: as far as the histogram sees */
}
