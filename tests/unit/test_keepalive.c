/* The keep-alive policy (src/control/keepalive.c) on synthetic work levels: no loop,
 * no clock, only the times the tests give it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/xalloc.h"
#include "control/internal.h"
#include "unit.h"

#define MIN_MS 60000ull

/* One idle period of level 1 lasting idle_ms, ending at *now + idle_ms (then the call
 * takes no time and the function is idle again). */
static void idle_period(struct ka_state *s, uint64_t *now, uint64_t idle_ms)
{
    *now += idle_ms;
    ka_set_level(s, 1, *now);
    ka_set_level(s, 0, *now);
}

static void start(struct ka_state *s, enum ka_policy p, uint64_t *now)
{
    ka_init(s, p);
    *now = 1000;
    ka_set_level(s, 1, *now); /* the first call: no idle time before it */
    ka_set_level(s, 0, *now);
}

static uint32_t wanted(const struct ka_state *s, uint64_t now, uint64_t *next)
{
    uint64_t n;
    uint32_t w = ka_wanted(s, now, next ? next : &n);
    return w;
}

UNIT_TEST(test_policy_names)
{
    enum ka_policy p;
    CHECK(ka_policy_parse(NULL, &p) == 0 && p == KA_DEFAULT);
    CHECK(ka_policy_parse("default", &p) == 0 && p == KA_DEFAULT);
    CHECK(ka_policy_parse("fixed_10min", &p) == 0 && p == KA_FIXED_10MIN);
    CHECK(ka_policy_parse("knative", &p) == 0 && p == KA_KNATIVE);
    CHECK(ka_policy_parse("hybrid_histogram", &p) == 0 && p == KA_HYBRID);
    CHECK(ka_policy_parse("hybrid", &p) < 0);
    CHECK_STR(ka_policy_name(KA_HYBRID), "hybrid_histogram");
}

/* Levels: a burst of 3 leaves levels 1-3 idle from when each fell; the fixed window
 * keeps each for 10 minutes from its own idle start, and ka_wanted says when the count
 * next changes. */
UNIT_TEST(test_levels_fixed_window)
{
    struct ka_state s;
    ka_init(&s, KA_FIXED_10MIN);
    uint64_t t = 1000, next;
    ka_set_level(&s, 3, t);
    CHECK(wanted(&s, t, &next) == 3 && next == UINT64_MAX); /* all busy */
    ka_set_level(&s, 2, t + 1000); /* level 3 idle from t+1s */
    ka_set_level(&s, 0, t + 5000); /* levels 1, 2 from t+5s */
    CHECK_EQ_INT(s.level, 0);
    CHECK_EQ_INT(s.nlevels, 3);
    CHECK(wanted(&s, t + 6000, &next) == 3);
    CHECK(next == t + 1000 + 10 * MIN_MS); /* level 3 goes first */
    CHECK(wanted(&s, next, &next) == 2 && next == t + 5000 + 10 * MIN_MS);
    CHECK(wanted(&s, next, &next) == 0 && next == UINT64_MAX);
    /* Busy again at level 2: level 3 stays idle since t+1s. */
    ka_set_level(&s, 2, t + 7000);
    CHECK(wanted(&s, t + 8000, &next) == 3 && next == t + 1000 + 10 * MIN_MS);
    CHECK(ka_idle_for_ms(&s, 3, t + 8000) == 7000 && ka_idle_for_ms(&s, 2, t + 8000) == 0);
    ka_free(&s);

    ka_init(&s, KA_KNATIVE);
    ka_set_level(&s, 1, 0);
    ka_set_level(&s, 0, 10);
    CHECK(wanted(&s, 59000, NULL) == 1 && wanted(&s, 60010, NULL) == 0);
    CHECK(ka_keepalive_ms(&s, 1) == 60000 && ka_prewarm_ms(&s, 1) == 0);
    ka_free(&s);
}

/* 100 idle times: 5 at 2 min, 90 at 10 min, 5 at 30 min. ATC'20: the 5th percentile is
 * in the 2-minute bin (pre-warm at its lower edge less 10 %: 108 s), the 99th in the
 * 30-minute bin (keep to its upper edge plus 10 %: 31 min x 1.1). The hybrid policy
 * applies them to every level. */
UNIT_TEST(test_hybrid_percentiles)
{
    struct ka_state s;
    uint64_t now;
    start(&s, KA_HYBRID, &now);
    for (int i = 0; i < 5; i++)
        idle_period(&s, &now, 2 * MIN_MS + 5000);
    for (int i = 0; i < 90; i++)
        idle_period(&s, &now, 10 * MIN_MS + 5000);
    for (int i = 0; i < 5; i++)
        idle_period(&s, &now, 30 * MIN_MS + 5000);
    CHECK_EQ_INT(s.hist[0]->samples, 100);
    CHECK(ka_prewarm_ms(&s, 1) == 108000);
    CHECK(ka_keepalive_ms(&s, 1) == 31 * MIN_MS * 110 / 100);
    CHECK(ka_prewarm_ms(&s, 7) == 108000 && ka_short_ms(&s, 1) == 0);
    /* Idle: released at once, wanted again from the pre-warm point to the end. */
    uint64_t next;
    CHECK(wanted(&s, now + 1, &next) == 0 && next == now + 108000);
    CHECK(wanted(&s, next, &next) == 1 && next == now + 31 * MIN_MS * 110 / 100);
    /* Next use: just idle, the median of what is left is the 10-minute bin's middle. */
    CHECK(ka_next_use_ms(&s, 1, now) == 10 * MIN_MS + MIN_MS / 2);
    /* 20 minutes in, only the 30-minute idle times are left. */
    CHECK(ka_next_use_ms(&s, 1, now + 20 * MIN_MS) == 10 * MIN_MS + MIN_MS / 2);
    /* Busy: in use now. */
    ka_set_level(&s, 1, now + 1);
    CHECK(ka_next_use_ms(&s, 1, now + 2) == 0);
    ka_free(&s);
}

/* Hybrid fallbacks: too few samples, flat, or mostly out of bounds: 4 hours. */
UNIT_TEST(test_hybrid_fallbacks)
{
    struct ka_state h;
    uint64_t now;
    start(&h, KA_HYBRID, &now);
    for (int i = 0; i < 19; i++)
        idle_period(&h, &now, 5 * MIN_MS);
    CHECK(ka_prewarm_ms(&h, 1) == 0 && ka_keepalive_ms(&h, 1) == 240 * MIN_MS);
    idle_period(&h, &now, 5 * MIN_MS); /* the 20th makes it representative */
    CHECK(ka_prewarm_ms(&h, 1) == 5 * MIN_MS * 90 / 100 && ka_keepalive_ms(&h, 1) == 6 * MIN_MS * 110 / 100);
    ka_free(&h);
    start(&h, KA_HYBRID, &now);
    for (uint64_t b = 0; b < KA_NBINS; b++)
        idle_period(&h, &now, b * MIN_MS + 1000);
    CHECK(ka_prewarm_ms(&h, 1) == 0 && ka_keepalive_ms(&h, 1) == 240 * MIN_MS);
    ka_free(&h);
    start(&h, KA_HYBRID, &now);
    for (int i = 0; i < 25; i++)
        idle_period(&h, &now, i < 15 ? 300 * MIN_MS : 5 * MIN_MS);
    CHECK_EQ_INT(h.hist[0]->oob, 15);
    CHECK(ka_prewarm_ms(&h, 1) == 0 && ka_keepalive_ms(&h, 1) == 240 * MIN_MS);
    ka_free(&h);
}

/* The default's cost decision. Calls 20 s apart: keep through their 5-second bin (to
 * its upper edge, no margin) and no further: the next bins hold no return. Not released
 * and pre-warmed at 20 s either: a release shorter than a minute is not worth a start. */
UNIT_TEST(test_default_short_gaps)
{
    struct ka_state s;
    uint64_t now;
    start(&s, KA_DEFAULT, &now);
    CHECK(ka_keepalive_ms(&s, 1) == 10 * MIN_MS); /* nothing known: the ski-rental window */
    for (int i = 0; i < 30; i++)
        idle_period(&s, &now, 20000);
    CHECK(ka_prewarm_ms(&s, 1) == 0 && ka_short_ms(&s, 1) == 0);
    CHECK(ka_keepalive_ms(&s, 1) == 25000);
    ka_free(&s);
}

/* Bursts every 15 minutes, 10 calls each: 9 idle times of seconds, then one of 15
 * minutes. Kept through the burst (the first 5-second bin), released, pre-warmed at 15
 * min and kept to the bin's upper edge (16 min): the gain of the pre-warmed bin (a
 * start saved for 1 in 10 idle times) beats keeping 15 empty minutes. ATC'20's
 * percentiles would keep it throughout (the head is in the first minute). */
UNIT_TEST(test_default_prewarms_between_bursts)
{
    struct ka_state s, h;
    uint64_t now, nh;
    start(&s, KA_DEFAULT, &now);
    start(&h, KA_HYBRID, &nh);
    for (int burst = 0; burst < 10; burst++) {
        for (int i = 0; i < 9; i++) {
            idle_period(&s, &now, 3000);
            idle_period(&h, &nh, 3000);
        }
        idle_period(&s, &now, 15 * MIN_MS + 20000);
        idle_period(&h, &nh, 15 * MIN_MS + 20000);
    }
    CHECK(ka_short_ms(&s, 1) == 5000);
    CHECK(ka_prewarm_ms(&s, 1) == 15 * MIN_MS);
    CHECK(ka_keepalive_ms(&s, 1) == 16 * MIN_MS);
    CHECK(ka_prewarm_ms(&h, 1) == 0 && ka_keepalive_ms(&h, 1) == 16 * MIN_MS * 110 / 100);
    /* The phases, from the last idle start: wanted, released, wanted, gone. */
    uint64_t next;
    CHECK(wanted(&s, now + 1000, &next) == 1 && next == now + 5000);
    CHECK(wanted(&s, next, &next) == 0 && next == now + 15 * MIN_MS);
    CHECK(wanted(&s, next, &next) == 1 && next == now + 16 * MIN_MS);
    CHECK(wanted(&s, next, &next) == 0 && next == UINT64_MAX);
    ka_free(&s);
    ka_free(&h);
}

/* Idle times all beyond 4 hours: nothing repays keeping, released at once. */
UNIT_TEST(test_default_nothing_worth_keeping)
{
    struct ka_state s;
    uint64_t now;
    start(&s, KA_DEFAULT, &now);
    for (int i = 0; i < 19; i++)
        idle_period(&s, &now, 300 * MIN_MS);
    CHECK(ka_keepalive_ms(&s, 1) == 10 * MIN_MS); /* 19: still too few to decide */
    idle_period(&s, &now, 300 * MIN_MS);
    CHECK(ka_keepalive_ms(&s, 1) == 0 && ka_prewarm_ms(&s, 1) == 0);
    CHECK(wanted(&s, now, NULL) == 0);
    ka_free(&s);
}

/* Levels have their own histories: level 1 comes back in seconds, level 2 (a second
 * container) only every 2 hours. Level 2's window is its own. */
UNIT_TEST(test_default_levels_apart)
{
    struct ka_state s;
    ka_init(&s, KA_DEFAULT);
    uint64_t t = 1000;
    for (int i = 0; i < 40; i++) {
        ka_set_level(&s, 1, t);
        if (i % 2 == 0) {
            ka_set_level(&s, 2, t + 100);
            ka_set_level(&s, 1, t + 200);
        }
        ka_set_level(&s, 0, t + 300);
        t += i % 2 ? 120 * MIN_MS : 10000;
    }
    CHECK(s.hist[0] && s.hist[1]);
    CHECK_EQ_INT(s.hist[1]->samples, 19);
    ka_set_level(&s, 2, t);
    ka_set_level(&s, 0, t + 1);
    CHECK_EQ_INT(s.hist[1]->samples, 20);
    /* Level 1: gaps of 9.7 s and 2 h less 0.3 s: kept 10 s (to the end of the 5-10 s
     * bin), then the 2-hour return pre-warmed in its minute. */
    CHECK(ka_short_ms(&s, 1) == 10000 && ka_prewarm_ms(&s, 1) == 119 * MIN_MS && ka_keepalive_ms(&s, 1) == 120 * MIN_MS);
    /* Level 2: every gap about 2 h 10 s (one bin): released, pre-warmed at its start. */
    CHECK(ka_short_ms(&s, 2) == 0 && ka_prewarm_ms(&s, 2) == 120 * MIN_MS);
    ka_free(&s);
}

/* A rise of several levels at once records each level's idle time; the cap. */
UNIT_TEST(test_level_jumps_and_cap)
{
    struct ka_state s;
    ka_init(&s, KA_DEFAULT);
    ka_set_level(&s, 5, 0);
    ka_set_level(&s, 0, 1000);
    ka_set_level(&s, 5, 31000);
    CHECK(s.hist[0]->samples == 1 && s.hist[1]->samples == 1 && s.hist[2]->samples == 2 && s.hist[3]->samples == 1);
    ka_set_level(&s, 100000, 32000);
    CHECK_EQ_INT(s.level, KA_MAX_LEVELS);
    CHECK_EQ_INT(s.nlevels, KA_MAX_LEVELS);
    ka_set_level(&s, 0, 33000);
    uint64_t next;
    CHECK(wanted(&s, 34000, &next) == KA_MAX_LEVELS && next == 33000 + 10 * MIN_MS);
    CHECK(ka_next_use_ms(&s, KA_MAX_LEVELS, 34000) == 1000); /* too few to predict: LRU */
    ka_free(&s);
}

/* Follows ka_next_use_line through time from from_ms, every step_ms for span_ms,
 * recomputing the line when it ends: it must say what ka_next_use_ms says at every
 * step, for every level from 1 to one past the highest reached. */
static int slopes_seen[3]; /* lines seen of slope -1, 0, +1 */

static void check_lines(const struct ka_state *s, uint64_t from_ms, uint64_t step_ms, uint64_t span_ms)
{
    for (uint32_t k = 1; k <= s->nlevels + 1; k++) {
        struct ka_use_line l;
        ka_next_use_line(s, k, from_ms, &l);
        for (uint64_t t = from_ms; t < from_ms + span_ms; t += step_ms) {
            if (t >= l.until_ms)
                ka_next_use_line(s, k, t, &l);
            CHECK(l.slope >= -1 && l.slope <= 1 && l.until_ms > t);
            slopes_seen[l.slope + 1]++;
            CHECK_EQ_INT(l.base + l.slope * (int64_t)t, (int64_t)ka_next_use_ms(s, k, t));
        }
    }
}

/* The eviction ranking keeps each level's predicted next use as a line until it ends
 * (evict.c): the line is exact over 5 hours of idleness, at a step (7,919 ms, prime)
 * that lands in every part of the 1-minute bins, for histories of every kind: none
 * (LRU), sparse, spread, mostly out of range, and several levels apart. */
UNIT_TEST(test_next_use_lines)
{
    static const enum ka_policy policies[] = {KA_DEFAULT, KA_HYBRID, KA_FIXED_10MIN};
    const uint64_t step = 7919, span = 5 * 60 * MIN_MS;
    for (size_t p = 0; p < sizeof policies / sizeof policies[0]; p++) {
        struct ka_state s;
        uint64_t now;
        start(&s, policies[p], &now);
        check_lines(&s, now, step, span); /* no history */
        for (int i = 0; i < 30; i++)
            idle_period(&s, &now, (i % 3 == 0 ? 3 : i % 3 == 1 ? 17 : 44) * MIN_MS + 12345);
        check_lines(&s, now, step, span); /* three bins */
        for (int i = 0; i < 40; i++)
            idle_period(&s, &now, (uint64_t)(i * 37 % 230) * MIN_MS + 999);
        check_lines(&s, now, step, span); /* spread */
        for (int i = 0; i < 60; i++)
            idle_period(&s, &now, 300 * MIN_MS);
        check_lines(&s, now, step, span); /* mostly beyond the range */
        /* Several levels, idle since different times. */
        ka_set_level(&s, 6, now + 1000);
        ka_set_level(&s, 4, now + 2 * MIN_MS);
        ka_set_level(&s, 1, now + 9 * MIN_MS);
        for (int i = 0; i < 25; i++) {
            ka_set_level(&s, 6, now + (uint64_t)(10 + 2 * i) * MIN_MS);
            ka_set_level(&s, 1, now + (uint64_t)(11 + 2 * i) * MIN_MS);
        }
        now += 60 * MIN_MS;
        check_lines(&s, now, step, span);
        /* A clock behind a level's idle start (ka_idle_for_ms is 0 there). */
        check_lines(&s, now - 30 * MIN_MS, step, MIN_MS);
        ka_free(&s);
    }
    CHECK(slopes_seen[0] && slopes_seen[1] && slopes_seen[2]);
}

/* Histories round-trip through their encoding; anything malformed is refused and
 * leaves the state as it was. */
UNIT_TEST(test_encode_decode)
{
    struct ka_state s, d;
    uint64_t now;
    start(&s, KA_DEFAULT, &now);
    for (int burst = 0; burst < 10; burst++) {
        for (int i = 0; i < 9; i++)
            idle_period(&s, &now, 3000);
        idle_period(&s, &now, 15 * MIN_MS + 20000);
    }
    ka_set_level(&s, 3, now + 1);
    ka_set_level(&s, 0, now + 2);
    ka_set_level(&s, 3, now + 5 * MIN_MS);
    ka_set_level(&s, 0, now + 5 * MIN_MS);
    idle_period(&s, &now, 300 * MIN_MS); /* out of bounds */
    struct buf b = {0};
    ka_encode(&s, &b);
    ka_init(&d, KA_DEFAULT);
    CHECK(ka_decode(&d, b.data, b.len) == 0);
    for (uint32_t g = 0; g < KA_NGROUPS; g++) {
        CHECK(!s.hist[g] == !d.hist[g]);
        if (s.hist[g]) {
            CHECK(!memcmp(s.hist[g]->bins, d.hist[g]->bins, sizeof s.hist[g]->bins));
            CHECK(s.hist[g]->oob == d.hist[g]->oob && s.hist[g]->samples == d.hist[g]->samples);
        }
    }
    CHECK(ka_prewarm_ms(&d, 1) == ka_prewarm_ms(&s, 1) && ka_keepalive_ms(&d, 1) == ka_keepalive_ms(&s, 1));
    CHECK(ka_keepalive_ms(&d, 3) == ka_keepalive_ms(&s, 3));
    /* Every truncation, and a few corruptions, are refused without a change. */
    uint64_t before = d.changes;
    for (size_t n = 0; n < b.len; n++)
        CHECK(ka_decode(&d, b.data, n) == -EINVAL);
    unsigned char *bad = xmalloc(b.len);
    size_t bad_at[] = {0, 1, 2, 10, 11, 12};
    for (size_t i = 0; i < sizeof bad_at / sizeof bad_at[0]; i++) {
        memcpy(bad, b.data, b.len);
        bad[bad_at[i]] ^= 0x5a;
        CHECK(ka_decode(&d, bad, b.len) == -EINVAL);
    }
    free(bad);
    CHECK(d.changes == before);
    CHECK(ka_prewarm_ms(&d, 1) == ka_prewarm_ms(&s, 1));
    buf_free(&b);
    ka_free(&s);
    ka_free(&d);
}

/* A version-1 history (240 one-minute bins) loads: minute 0 into the first minute's
 * last 5-second bin, minute m into its own minute bin, so the windows it decides cover
 * what version 1's did. */
UNIT_TEST(test_decode_version_1)
{
    /* version 1, one group: group 0, samples 30, oob 0, 2 non-empty bins: minute 0 x 20,
     * minute 5 x 10. */
    static const unsigned char v1[] = {1, 1, 0, 30, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 20, 0, 0, 0, 5, 10, 0, 0, 0};
    struct ka_state d;
    ka_init(&d, KA_DEFAULT);
    CHECK(ka_decode(&d, v1, sizeof v1) == 0);
    CHECK(d.hist[0] && d.hist[0]->samples == 30);
    CHECK_EQ_INT(d.hist[0]->bins[KA_FINE_BINS - 1], 20);
    CHECK_EQ_INT(d.hist[0]->bins[KA_FINE_BINS - 1 + 5], 10);
    /* Kept through the first minute (every minute-0 idle time covered), then the 5-minute
     * returns pre-warmed at their minute's start. */
    CHECK(ka_short_ms(&d, 1) == MIN_MS && ka_prewarm_ms(&d, 1) == 5 * MIN_MS && ka_keepalive_ms(&d, 1) == 6 * MIN_MS);
    /* A version-1 minute past the range is refused. */
    unsigned char bad[sizeof v1];
    memcpy(bad, v1, sizeof v1);
    bad[18] = 240;
    CHECK(ka_decode(&d, bad, sizeof bad) == -EINVAL);
    ka_free(&d);
}

/* The exchange rate: two 1 GiB functions, one returning every 5 minutes (the fixed
 * window misses none of its idle times), one every 30 minutes (it misses all 40): the
 * budget is 40 starts. Both are worth pre-warming once a start is worth more than half
 * of the minute bin its return falls in (30 s of 1 GiB), so the rate is just above
 * that, and neither misses. With the second at 4 GiB, its pre-warm costs 4 times more:
 * the budget's 40 misses go to it, and the rate stays where the first is covered. */
UNIT_TEST(test_solve_value)
{
    struct ka_state a, b;
    uint64_t ta, tb;
    start(&a, KA_DEFAULT, &ta);
    start(&b, KA_DEFAULT, &tb);
    for (int i = 0; i < 40; i++) {
        idle_period(&a, &ta, 5 * MIN_MS + 20000);
        idle_period(&b, &tb, 30 * MIN_MS + 20000);
    }
    const struct ka_state *states[] = {&a, &b};
    double gib[] = {1, 1};
    double lambda = ka_solve_value(states, gib, 2, 0);
    CHECK(lambda > 30000 && lambda < 30000 * 1.001);
    ka_set_value(&a, lambda / gib[0]);
    ka_set_value(&b, lambda / gib[1]);
    CHECK(ka_prewarm_ms(&a, 1) == 5 * MIN_MS && ka_prewarm_ms(&b, 1) == 30 * MIN_MS);
    gib[1] = 4;
    lambda = ka_solve_value(states, gib, 2, 0);
    CHECK(lambda > 30000 && lambda < 30000 * 1.001);
    ka_set_value(&b, lambda / gib[1]);
    CHECK(ka_keepalive_ms(&b, 1) == 0); /* its starts are the ones spent */
    /* Histories too young to decide: nothing to solve from, the previous rate stays. */
    struct ka_state y;
    uint64_t ty;
    start(&y, KA_DEFAULT, &ty);
    idle_period(&y, &ty, MIN_MS);
    const struct ka_state *young[] = {&y};
    CHECK(ka_solve_value(young, gib, 1, 1234.0) == 1234.0);
    ka_free(&a);
    ka_free(&b);
    ka_free(&y);
}

int main(void)
{
    UNIT_RUN(test_policy_names);
    UNIT_RUN(test_levels_fixed_window);
    UNIT_RUN(test_hybrid_percentiles);
    UNIT_RUN(test_hybrid_fallbacks);
    UNIT_RUN(test_default_short_gaps);
    UNIT_RUN(test_default_prewarms_between_bursts);
    UNIT_RUN(test_default_nothing_worth_keeping);
    UNIT_RUN(test_default_levels_apart);
    UNIT_RUN(test_level_jumps_and_cap);
    UNIT_RUN(test_encode_decode);
    UNIT_RUN(test_next_use_lines);
    UNIT_RUN(test_decode_version_1);
    UNIT_RUN(test_solve_value);
    UNIT_MAIN_END();
}
