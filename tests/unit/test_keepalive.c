/* The keep-alive policy (src/control/keepalive.c) on synthetic idle times: no loop,
 * no clock, only the times the tests give it. */
#include <stdio.h>
#include <string.h>

#include "control/internal.h"
#include "unit.h"

#define MIN_MS 60000ull

/* Feeds one idle period of idle_ms ending at *now (then a call, then idleness again
 * right away: the call itself takes no time). */
static void idle_period(struct ka_state *s, uint64_t *now, uint64_t idle_ms)
{
    *now += idle_ms;
    ka_on_call(s, *now);
    ka_on_idle(s, *now);
}

static void start(struct ka_state *s, enum ka_policy p, uint64_t *now)
{
    ka_init(s, p);
    *now = 1000;
    ka_on_call(s, *now); /* the first call: no idle time before it */
    ka_on_idle(s, *now);
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

/* The fixed policies never pre-warm and ignore the history; next use is LRU. */
UNIT_TEST(test_fixed_and_knative)
{
    struct ka_state s;
    uint64_t now;
    start(&s, KA_FIXED_10MIN, &now);
    for (int i = 0; i < 50; i++)
        idle_period(&s, &now, 5 * MIN_MS);
    CHECK(ka_keepalive_ms(&s) == 10 * MIN_MS);
    CHECK(ka_prewarm_ms(&s) == 0);
    CHECK(ka_next_use_ms(&s, now + 7000) == 7000);
    start(&s, KA_KNATIVE, &now);
    CHECK(ka_keepalive_ms(&s) == 60000);
    CHECK(ka_prewarm_ms(&s) == 0);
}

/* 100 idle times: 5 at 2 min, 90 at 10 min, 5 at 30 min. The 5th percentile is in the
 * 2-minute bin (pre-warm at its lower edge less 10 %: 108 s), the 99th in the 30-minute
 * bin (keep to its upper edge plus 10 %: 31 min x 1.1). */
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
    CHECK_EQ_INT(s.samples, 100);
    CHECK(ka_prewarm_ms(&s) == 108000);
    CHECK(ka_keepalive_ms(&s) == 31 * MIN_MS * 110 / 100);
    /* The default policy decides the same from a representative histogram. */
    struct ka_state d;
    uint64_t nd;
    start(&d, KA_DEFAULT, &nd);
    for (int i = 0; i < 100; i++)
        idle_period(&d, &nd, (i < 5 ? 2 : i < 95 ? 10 : 30) * MIN_MS + 5000);
    CHECK(ka_prewarm_ms(&d) == ka_prewarm_ms(&s) && ka_keepalive_ms(&d) == ka_keepalive_ms(&s));
    /* Next use: just idle, the median of what is left is the 10-minute bin's middle. */
    CHECK(ka_next_use_ms(&s, now) == 10 * MIN_MS + MIN_MS / 2);
    /* 20 minutes in, only the 30-minute idle times are left. */
    CHECK(ka_next_use_ms(&s, now + 20 * MIN_MS) == 10 * MIN_MS + MIN_MS / 2);
    /* Busy: in use now. */
    ka_on_call(&s, now + 1);
    CHECK(ka_next_use_ms(&s, now + 2) == 0);
}

/* Idle times within the first minute: pre-warm 0 (never release), keep for 66 s. */
UNIT_TEST(test_hybrid_head_in_first_bin)
{
    struct ka_state s;
    uint64_t now;
    start(&s, KA_HYBRID, &now);
    for (int i = 0; i < 30; i++)
        idle_period(&s, &now, 20000);
    CHECK(ka_prewarm_ms(&s) == 0);
    CHECK(ka_keepalive_ms(&s) == 66000);
}

/* Not representative: too few samples, a flat histogram (CV below 2), or mostly out of
 * bounds. hybrid_histogram falls back to 4 hours; default to short or tail windows. */
UNIT_TEST(test_fallbacks)
{
    struct ka_state h, d;
    uint64_t now, nd; /* each state's own clock */
    /* Few: 19 idle times of 5 minutes. */
    start(&h, KA_HYBRID, &now);
    start(&d, KA_DEFAULT, &nd);
    CHECK(ka_keepalive_ms(&d) == 60000); /* nothing known */
    for (int i = 0; i < 19; i++) {
        idle_period(&h, &now, 5 * MIN_MS);
        idle_period(&d, &nd, 5 * MIN_MS);
    }
    CHECK(ka_prewarm_ms(&h) == 0 && ka_keepalive_ms(&h) == 240 * MIN_MS);
    /* default: the longest idle time (its bin's upper edge, 6 min) + 10 %, within 10 min. */
    CHECK(ka_prewarm_ms(&d) == 0 && ka_keepalive_ms(&d) == 6 * MIN_MS * 110 / 100);
    /* The 20th makes it representative. */
    idle_period(&h, &now, 5 * MIN_MS);
    CHECK(ka_prewarm_ms(&h) == 5 * MIN_MS * 90 / 100 && ka_keepalive_ms(&h) == 6 * MIN_MS * 110 / 100);
    /* default with few idle times longer than 10 minutes: the short window. */
    start(&d, KA_DEFAULT, &nd);
    idle_period(&d, &nd, 30 * MIN_MS);
    CHECK(ka_keepalive_ms(&d) == 60000);

    /* Flat: one idle time in each of the 240 bins (CV 0). */
    start(&h, KA_HYBRID, &now);
    start(&d, KA_DEFAULT, &nd);
    for (uint64_t b = 0; b < KA_NBINS; b++) {
        idle_period(&h, &now, b * MIN_MS + 1000);
        idle_period(&d, &nd, b * MIN_MS + 1000);
    }
    CHECK(ka_prewarm_ms(&h) == 0 && ka_keepalive_ms(&h) == 240 * MIN_MS);
    /* default: no pre-warm; keep to the 99th percentile (bin 237: 238 min) + 10 %. */
    CHECK(ka_prewarm_ms(&d) == 0 && ka_keepalive_ms(&d) == 238 * MIN_MS * 110 / 100);
    CHECK(ka_next_use_ms(&d, nd + 1000) == 1000); /* not predicting: LRU */

    /* Mostly out of bounds: 15 idle times of 5 h, 10 of 5 min. */
    start(&h, KA_HYBRID, &now);
    start(&d, KA_DEFAULT, &nd);
    for (int i = 0; i < 25; i++) {
        uint64_t t = i < 15 ? 300 * MIN_MS : 5 * MIN_MS;
        idle_period(&h, &now, t);
        idle_period(&d, &nd, t);
    }
    CHECK_EQ_INT(h.oob, 15);
    CHECK(ka_prewarm_ms(&h) == 0 && ka_keepalive_ms(&h) == 240 * MIN_MS);
    CHECK(ka_prewarm_ms(&d) == 0 && ka_keepalive_ms(&d) == 60000);
}

/* A call that arrives while another is in flight records no idle time. */
UNIT_TEST(test_overlapping_calls)
{
    struct ka_state s;
    uint64_t now;
    start(&s, KA_DEFAULT, &now);
    ka_on_call(&s, now + 5000);
    ka_on_call(&s, now + 9000);
    CHECK_EQ_INT(s.samples, 1);
    CHECK(s.bins[0] == 1);
}

int main(void)
{
    UNIT_RUN(test_policy_names);
    UNIT_RUN(test_fixed_and_knative);
    UNIT_RUN(test_hybrid_percentiles);
    UNIT_RUN(test_hybrid_head_in_first_bin);
    UNIT_RUN(test_fallbacks);
    UNIT_RUN(test_overlapping_calls);
    UNIT_MAIN_END();
}
