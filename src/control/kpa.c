/* The autoscaler's window arithmetic (`kpa_`), after Knative's Pod Autoscaler
 * (REFERENCE.md, "Autoscaling"): a function's concurrency (its calls queued, running or
 * waiting to retry: Knative's in-flight requests, counted where its activator and
 * queue-proxies count them) is averaged over a stable window and a panic window, and
 * the containers it wants are ceil(average / target inputs per container). Bursts: when
 * the panic window's count reaches twice the ready containers, the function panics: it
 * scales on the panic window and never down until a whole stable window passed below
 * the threshold. Otherwise it follows the stable window.
 *
 * Pure, like keepalive.c: it sees only the times and counts it is told (the loop's
 * clock, or gust-sim's virtual one) and calls nothing else of control.
 *
 * Concurrency is a step function that changes at call events. Its integral is kept per
 * bucket (a ring of KPA_NBUCKETS covering the stable window), each bucket tagged with
 * the number of the time slot it holds (its epoch): a bucket of an older slot counts as
 * empty, so time with no work is never walked, and an event costs O(1) plus one step
 * per bucket that work was held over since the last one (at most the ring). A decision
 * sums the ring (KPA_NBUCKETS steps); the scheduler asks for one only where it can
 * change what happens (sched.c). Averages are exact integrals, not samples.
 *
 * Knative averages over the part of the window since its first observation when the
 * window has not yet been filled; so does this, from when the function last became
 * active (concurrency above zero after a whole window of none). A burst after an idle
 * spell is then seen at its height at once instead of diluted by the idle window. */
#include <string.h>

#include "control/internal.h"

/* The panic window is this fraction of the stable window: Knative's
 * panic-window-percentage default of 10 % (6 s of 60 s). In buckets of the ring. */
#define KPA_PANIC_BUCKETS (KPA_NBUCKETS / 10)
/* Panic when the panic window asks for this many times the ready containers: Knative's
 * panic-threshold-percentage default of 200 %. */
#define KPA_PANIC_FACTOR 2u

/* The stable window a request for window_ms gets: whole buckets of at least 1 ms. */
static uint64_t bucket_of(uint64_t window_ms)
{
    uint64_t b = (window_ms ? window_ms : KPA_STABLE_MS) / KPA_NBUCKETS;
    return b ? b : 1;
}

void kpa_init(struct kpa_state *s, uint64_t window_ms)
{
    memset(s, 0, sizeof *s);
    s->bucket_ms = bucket_of(window_ms);
    s->window_ms = s->bucket_ms * KPA_NBUCKETS;
}

void kpa_set_window(struct kpa_state *s, uint64_t window_ms)
{
    if (bucket_of(window_ms) != s->bucket_ms)
        kpa_init(s, window_ms);
}

/* Integrates the concurrency held since last_ms up to now: value x time into the
 * bucket of each slot it covers (slot numbers start at 1, so that a zeroed ring holds
 * no slot). */
static void advance(struct kpa_state *s, uint64_t now)
{
    if (now <= s->last_ms)
        return;
    uint64_t b = s->bucket_ms, t = s->last_ms;
    s->last_ms = now;
    if (!s->value)
        return; /* nothing to add: the buckets of those slots stay stale, i.e. empty */
    s->busy_until = now;
    if (now - t > s->window_ms + b)
        t = now - s->window_ms - b; /* older slots leave the ring anyway */
    uint64_t slot = t / b + 1, end = slot * b;
    uint32_t i = (uint32_t)(slot % KPA_NBUCKETS);
    for (;;) {
        uint64_t upto = end < now ? end : now;
        if (s->epoch[i] != slot) {
            s->epoch[i] = slot;
            s->acc[i] = 0;
        }
        s->acc[i] += (uint64_t)s->value * (upto - t);
        if (upto == now)
            return;
        t = upto;
        slot++;
        end += b;
        i = i + 1 == KPA_NBUCKETS ? 0 : i + 1;
    }
}

/* Whether the stable window ending at now holds any concurrency. */
static bool active_at(const struct kpa_state *s, uint64_t now)
{
    return s->value || (s->busy_until && now - s->busy_until < s->window_ms + s->bucket_ms);
}

void kpa_observe(struct kpa_state *s, uint32_t value, uint64_t now_ms)
{
    advance(s, now_ms);
    if (value && !active_at(s, now_ms))
        s->first_ms = now_ms; /* a new spell of activity: its partial window starts now */
    s->value = value;
    if (value)
        s->busy_until = now_ms;
}

/* The containers an integral asks for: ceil(sum / (span x target)), the average over
 * span at target inputs each; with no time observed yet, the concurrency now. */
static uint32_t ask(const struct kpa_state *s, uint64_t sum, uint64_t span, uint32_t target)
{
    uint64_t n = span ? (sum + span * target - 1) / (span * target) : ((uint64_t)s->value + target - 1) / target;
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

/* The integral over the last nb slots up to now (the current one partly filled), and
 * how long they cover from the first observation at the earliest. */
static uint64_t window_sum(const struct kpa_state *s, uint32_t nb, uint64_t now, uint64_t *span)
{
    uint64_t cur = now / s->bucket_ms + 1, sum = 0;
    for (uint32_t k = 0; k < nb && k < cur; k++) {
        uint32_t i = (uint32_t)((cur - k) % KPA_NBUCKETS);
        if (s->epoch[i] == cur - k)
            sum += s->acc[i];
    }
    uint64_t first_slot = cur > nb ? cur - nb + 1 : 1, from = (first_slot - 1) * s->bucket_ms;
    if (s->first_ms > from)
        from = s->first_ms;
    *span = now > from ? now - from : 0;
    return sum;
}

uint32_t kpa_decide(struct kpa_state *s, uint32_t target, uint32_t ready, uint64_t now_ms, struct kpa_view *out)
{
    if (!target)
        target = 1;
    advance(s, now_ms);
    struct kpa_view v = {0};
    if (active_at(s, now_ms)) {
        uint64_t sspan, pspan;
        uint64_t ssum = window_sum(s, KPA_NBUCKETS, now_ms, &sspan);
        uint64_t psum = window_sum(s, KPA_PANIC_BUCKETS, now_ms, &pspan);
        v.stable = ask(s, ssum, sspan, target);
        v.panic = ask(s, psum, pspan, target);
        /* Average concurrency in thousandths, for the listing. */
        v.stable_milli = sspan ? ssum * 1000 / sspan : (uint64_t)s->value * 1000;
        v.panic_milli = pspan ? psum * 1000 / pspan : (uint64_t)s->value * 1000;
        /* Over the threshold: the panic window's average reaches KPA_PANIC_FACTOR x
         * target inputs on each ready container (at least one, as Knative counts). */
        uint64_t r = ready ? ready : 1;
        bool over = pspan ? psum >= KPA_PANIC_FACTOR * r * target * pspan
                          : s->value >= KPA_PANIC_FACTOR * r * target;
        if (over) {
            if (!s->panicking) {
                s->panicking = true;
                s->panic_max = ready; /* never below what it had when the panic began */
            }
            s->panic_at = now_ms;
        } else if (s->panicking && now_ms - s->panic_at >= s->window_ms) {
            s->panicking = false;
        }
    } else {
        s->panicking = false;
    }
    if (s->panicking) {
        if (v.panic > s->panic_max)
            s->panic_max = v.panic;
        v.desired = s->panic_max;
    } else {
        v.desired = v.stable;
    }
    v.panicking = s->panicking;
    if (out)
        *out = v;
    return v.desired;
}

uint64_t kpa_recheck_ms(const struct kpa_state *s)
{
    return s->window_ms / KPA_RECHECKS;
}
