/* The autoscaler's windows (src/control/kpa.c) on synthetic concurrency: no loop, no
 * clock, only the times the tests give it (the fake clock of test_keepalive.c). */
#include <stdio.h>
#include <string.h>

#include "control/internal.h"
#include "unit.h"

#define SEC 1000ull

static uint32_t decide(struct kpa_state *s, uint32_t target, uint32_t ready, uint64_t now, struct kpa_view *v)
{
    return kpa_decide(s, target, ready, now, v);
}

/* Knative's defaults: a 60 s stable window in 1 s buckets, a 6 s panic window, and the
 * tick at 2 s. */
UNIT_TEST(test_kpa_defaults)
{
    struct kpa_state s;
    kpa_init(&s, 0);
    CHECK_EQ_INT(s.window_ms, 60 * SEC);
    CHECK_EQ_INT(s.bucket_ms, SEC);
    CHECK_EQ_INT(kpa_recheck_ms(&s), 2 * SEC);
    /* A shorter window (a function's scaledown_window): whole buckets of it. */
    kpa_set_window(&s, 2 * SEC);
    CHECK_EQ_INT(s.bucket_ms, 33);
    CHECK_EQ_INT(s.window_ms, 33 * KPA_NBUCKETS);
    /* Nothing observed: nothing wanted. */
    CHECK_EQ_INT(decide(&s, 10, 0, 5 * SEC, NULL), 0);
}

/* Steady work: ceil(concurrency / target), from the first instant (a partial window is
 * averaged over what was observed, not diluted by the time before). */
UNIT_TEST(test_kpa_steady)
{
    struct kpa_state s;
    kpa_init(&s, 0);
    uint64_t t = 1000 * SEC + 300;
    kpa_observe(&s, 95, t);
    struct kpa_view v;
    CHECK_EQ_INT(decide(&s, 10, 10, t, &v), 10);
    CHECK_EQ_INT(decide(&s, 10, 10, t + 5 * SEC, &v), 10);
    CHECK_EQ_INT(v.stable_milli, 95000);
    CHECK_EQ_INT(v.panic_milli, 95000);
    CHECK_EQ_INT(decide(&s, 10, 10, t + 200 * SEC, &v), 10);
    CHECK_EQ_INT(v.stable, 10);
    CHECK(!v.panicking);
    /* target 50 (concurrent(max_inputs=50)): 200 in flight want 4 containers. */
    kpa_init(&s, 0);
    kpa_observe(&s, 200, t);
    CHECK_EQ_INT(decide(&s, 50, 4, t + 3 * SEC, NULL), 4);
}

/* The stable window is a time-weighted average: 100 for 30 s then 0 averages 50 over
 * the 60 s, and falls to zero a window after the work ended (scale to zero is then
 * keep-alive's). */
UNIT_TEST(test_kpa_stable_average)
{
    struct kpa_state s;
    kpa_init(&s, 0);
    uint64_t t0 = 5000 * SEC;
    kpa_observe(&s, 100, t0);
    struct kpa_view v;
    decide(&s, 10, 10, t0 + 10 * SEC, &v);
    kpa_observe(&s, 0, t0 + 30 * SEC);
    /* On a bucket edge the window is the 59 s before it: 100 x 29 s / 59 s = 49.15. */
    CHECK_EQ_INT(decide(&s, 10, 10, t0 + 60 * SEC, &v), 5);
    CHECK_EQ_INT(v.stable_milli, 49152);
    CHECK_EQ_INT(v.panic, 0);
    /* 45 s after the end: 100 x 14 s / 59 s = 23.7. */
    CHECK_EQ_INT(decide(&s, 10, 10, t0 + 75 * SEC, &v), 3);
    /* A window and a bucket after the end: nothing. */
    CHECK_EQ_INT(decide(&s, 10, 10, t0 + 91 * SEC, &v), 0);
    CHECK_EQ_INT(v.stable_milli, 0);
    /* An hour later a new spell of work is seen at its height at once. */
    kpa_observe(&s, 30, t0 + 3600 * SEC);
    CHECK_EQ_INT(decide(&s, 10, 0, t0 + 3601 * SEC, &v), 3);
    CHECK_EQ_INT(v.stable_milli, 30000);
}

/* Exact integrals across bucket edges: 7 for 1.5 s then 1, at odd times. */
UNIT_TEST(test_kpa_integral)
{
    struct kpa_state s;
    kpa_init(&s, 0);
    uint64_t t0 = 777 * SEC + 250;
    kpa_observe(&s, 7, t0);
    kpa_observe(&s, 1, t0 + 1500);
    struct kpa_view v;
    decide(&s, 1, 8, t0 + 3000, &v);
    /* (7 x 1.5 + 1 x 1.5) / 3 = 4 */
    CHECK_EQ_INT(v.stable_milli, 4000);
    CHECK_EQ_INT(v.stable, 4);
    /* Events at the same instant add nothing. */
    kpa_observe(&s, 1000, t0 + 3000);
    kpa_observe(&s, 1, t0 + 3000);
    decide(&s, 1, 8, t0 + 3000, &v);
    CHECK_EQ_INT(v.stable_milli, 4000);
    /* A long gap with work held: only the last window counts. */
    decide(&s, 1, 8, t0 + 500 * SEC, &v);
    CHECK_EQ_INT(v.stable_milli, 1000);
    CHECK_EQ_INT(v.panic_milli, 1000);
}

/* Panic: steady 20 on 2 containers (target 10), then a burst to 100. Decisions fall on
 * bucket edges, where the windows cover their whole buckets before the edge: 5 s and
 * 59 s. The panic window reaches 2 x ready x target (40) by 3 s in and the count
 * follows it, far above the stable window's; it never goes down while panicking, and
 * a whole stable window after the last decision over the threshold the panic ends. */
UNIT_TEST(test_kpa_panic)
{
    struct kpa_state s;
    kpa_init(&s, 0);
    uint64_t t0 = 9000 * SEC;
    kpa_observe(&s, 20, t0);
    struct kpa_view v;
    CHECK_EQ_INT(decide(&s, 10, 2, t0 + 60 * SEC, &v), 2);
    CHECK(!v.panicking);
    uint64_t b = t0 + 100 * SEC;
    kpa_observe(&s, 100, b);
    /* 1 s in: panic (20 x 4 + 100 x 1) / 5 = 36 < 40; stable (20 x 58 + 100) / 59 = 21.4 */
    CHECK_EQ_INT(decide(&s, 10, 2, b + 1 * SEC, &v), 3);
    CHECK(!v.panicking);
    CHECK_EQ_INT(v.panic, 4);
    CHECK_EQ_INT(v.panic_milli, 36000);
    /* 3 s in: panic (20 x 2 + 100 x 3) / 5 = 68 >= 40: ceil(6.8) = 7; stable 24.1 */
    CHECK_EQ_INT(decide(&s, 10, 2, b + 3 * SEC, &v), 7);
    CHECK(v.panicking);
    CHECK_EQ_INT(v.stable, 3);
    /* The burst ends; 7 containers are ready. The panic window falls, the count does
     * not. */
    kpa_observe(&s, 20, b + 4 * SEC);
    CHECK_EQ_INT(decide(&s, 10, 7, b + 20 * SEC, &v), 7);
    CHECK(v.panicking);
    CHECK_EQ_INT(v.panic, 2);
    CHECK_EQ_INT(decide(&s, 10, 7, b + 62 * SEC, &v), 7);
    CHECK(v.panicking);
    /* 60 s after b + 3 s: the stable window again, which by now holds only the 20. */
    CHECK_EQ_INT(decide(&s, 10, 7, b + 63 * SEC, &v), 2);
    CHECK(!v.panicking);
    CHECK_EQ_INT(v.stable, 2);
}

/* From zero: no container is ready, so any work past 2 x target panics, and the panic
 * window sizes the start (Knative's activator case). */
UNIT_TEST(test_kpa_from_zero)
{
    struct kpa_state s;
    kpa_init(&s, 0);
    uint64_t t = 123 * SEC;
    kpa_observe(&s, 200, t);
    struct kpa_view v;
    CHECK_EQ_INT(decide(&s, 50, 0, t, &v), 4);
    CHECK(v.panicking);
    CHECK_EQ_INT(decide(&s, 50, 4, t + 2 * SEC, &v), 4);
    /* One call is not a burst. */
    kpa_init(&s, 0);
    kpa_observe(&s, 1, t);
    CHECK_EQ_INT(decide(&s, 50, 0, t, &v), 1);
    CHECK(!v.panicking);
}

/* A short window (scaledown_window 2 s): the count reaches zero about 2 s after the
 * work ends. */
UNIT_TEST(test_kpa_short_window)
{
    struct kpa_state s;
    kpa_init(&s, 2 * SEC);
    uint64_t t = 50 * SEC;
    kpa_observe(&s, 12, t);
    CHECK_EQ_INT(decide(&s, 4, 3, t + 1 * SEC, NULL), 3);
    kpa_observe(&s, 0, t + 5 * SEC);
    CHECK(decide(&s, 4, 3, t + 6 * SEC, NULL) > 0);
    CHECK_EQ_INT(decide(&s, 4, 3, t + 5 * SEC + s.window_ms + s.bucket_ms, NULL), 0);
}

int main(void)
{
    UNIT_RUN(test_kpa_defaults);
    UNIT_RUN(test_kpa_steady);
    UNIT_RUN(test_kpa_stable_average);
    UNIT_RUN(test_kpa_integral);
    UNIT_RUN(test_kpa_panic);
    UNIT_RUN(test_kpa_from_zero);
    UNIT_RUN(test_kpa_short_window);
    UNIT_MAIN_END();
}
