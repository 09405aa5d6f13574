/* Cron expressions, TZif zones and next-fire computation (src/spec/cron.h). Zones are
 * checked against the C library's own reading of the same tzdata (localtime_r with TZ
 * set: this test is single-threaded, unlike gustd). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "spec/cron.h"
#include "unit.h"

static int64_t utc(int y, int mo, int d, int h, int mi)
{
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
    return (int64_t)timegm(&tm);
}

static struct cron_tz *load(const char *name)
{
    static struct cron_tz tz;
    struct gerr e;
    int r = cron_tz_load(name, &tz, &e);
    if (r < 0)
        fprintf(stderr, "  %s\n", e.msg);
    CHECK_EQ_INT(r, 0);
    return &tz;
}

static int64_t next(const char *expr, const char *zone, int64_t after)
{
    struct cron_expr e;
    struct gerr err;
    CHECK_EQ_INT(cron_parse(expr, &e, &err), 0);
    int64_t out = 0;
    CHECK_EQ_INT(cron_next(&e, load(zone), after, &out), 0);
    return out;
}

UNIT_TEST(test_cron_parse_fields)
{
    struct cron_expr e;
    struct gerr err;
    CHECK_EQ_INT(cron_parse("*/15 9-17 * * mon-fri", &e, &err), 0);
    CHECK(e.minutes == ((1ULL << 0) | (1ULL << 15) | (1ULL << 30) | (1ULL << 45)));
    CHECK_EQ_INT(e.hours, 0x3fe00);
    CHECK_EQ_INT(e.wdays, 0x3e);
    CHECK(e.mday_star && !e.wday_star);
    CHECK_EQ_INT(cron_parse("5/20 0 1,15 JAN,jul sun", &e, &err), 0);
    CHECK(e.minutes == ((1ULL << 5) | (1ULL << 25) | (1ULL << 45)));
    CHECK_EQ_INT(e.mdays, (1u << 1) | (1u << 15));
    CHECK_EQ_INT(e.months, (1u << 1) | (1u << 7));
    CHECK_EQ_INT(e.wdays, 1);
    CHECK_EQ_INT(cron_parse("0 0 * * 7", &e, &err), 0);
    CHECK_EQ_INT(e.wdays, 1); /* 7 is Sunday */
    CHECK_EQ_INT(cron_parse("1-10/3 * * * *", &e, &err), 0);
    CHECK(e.minutes == ((1ULL << 1) | (1ULL << 4) | (1ULL << 7) | (1ULL << 10)));
    CHECK_EQ_INT(cron_parse("  @Daily ", &e, &err), 0);
    CHECK(e.minutes == 1 && e.hours == 1 && e.mday_star);
}

UNIT_TEST(test_cron_parse_errors)
{
    struct cron_expr e;
    struct gerr err;
    static const struct {
        const char *expr, *needle;
    } bad[] = {
        {"60 * * * *", "minute field \"60\""},
        {"* 24 * * *", "hour field"},
        {"* * 0 * *", "day of month field"},
        {"* * * 13 *", "month field"},
        {"* * * * 8", "day of week field"},
        {"* * * foo *", "jan..dec"},
        {"*/0 * * * *", "minute"},
        {"5-1 * * * *", "minute"},
        {"1,,2 * * * *", "minute"},
        {"1000 * * * *", "minute"},
        {"* * * *", "has 4 fields, expected 5"},
        {"* * * * * *", "more than 5 fields"},
        {"", "has 0 fields"},
        {"@often", "unknown cron macro"},
        {"0 0 30 2 *", "never fires"},
        {"0 0 31 4,6,9,11 *", "never fires"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ_INT(cron_parse(bad[i].expr, &e, &err), -EINVAL);
        if (!strstr(err.msg, bad[i].needle))
            fprintf(stderr, "  %s -> %s\n", bad[i].expr, err.msg);
        CHECK(strstr(err.msg, bad[i].needle));
    }
    /* Feb 29 exists (in leap years); with a weekday given, any Monday matches too. */
    CHECK_EQ_INT(cron_parse("0 0 29 2 *", &e, &err), 0);
    CHECK_EQ_INT(cron_parse("0 0 30 2 mon", &e, &err), 0);
    char longx[CRON_EXPR_MAX + 8];
    memset(longx, '1', sizeof longx - 1);
    longx[sizeof longx - 1] = '\0';
    CHECK_EQ_INT(cron_parse(longx, &e, &err), -EINVAL);
}

UNIT_TEST(test_cron_tz_names)
{
    struct cron_tz *tz = malloc(sizeof *tz);
    struct gerr err;
    CHECK(tz);
    CHECK_EQ_INT(cron_tz_load("../../etc/passwd", tz, &err), -EINVAL);
    CHECK_EQ_INT(cron_tz_load("/etc/localtime", tz, &err), -EINVAL);
    CHECK_EQ_INT(cron_tz_load("Europe/./Berlin", tz, &err), -EINVAL);
    CHECK_EQ_INT(cron_tz_load("", tz, &err), -EINVAL);
    CHECK_EQ_INT(cron_tz_load("Mars/Olympus_Mons", tz, &err), -ENOENT);
    CHECK(strstr(err.msg, "unknown time zone \"Mars/Olympus_Mons\""));
    CHECK_EQ_INT(cron_tz_load("Europe", tz, &err), -ENOENT); /* a directory */
    CHECK_EQ_INT(cron_tz_load("zone.tab", tz, &err), -EINVAL); /* not TZif */
    CHECK_EQ_INT(cron_tz_load("UTC", tz, &err), 0);
    CHECK_STR(tz->name, "UTC");
    free(tz);
}

/* Our reading of each zone must agree with the C library's at every instant we try,
 * including after the files' last explicit transition (the footer rule). */
UNIT_TEST(test_cron_tz_matches_libc)
{
    static const char *const zones[] = {"Europe/Berlin",    "America/New_York", "Australia/Sydney",
                                        "Asia/Kolkata",     "Pacific/Chatham",  "America/Sao_Paulo",
                                        "Africa/Casablanca", "Pacific/Auckland"};
    char *old = getenv("TZ") ? strdup(getenv("TZ")) : NULL;
    for (size_t z = 0; z < sizeof zones / sizeof zones[0]; z++) {
        struct cron_tz *tz = load(zones[z]);
        setenv("TZ", zones[z], 1);
        tzset();
        /* 1970..2080 in steps co-prime with days and hours. */
        for (int64_t t = 0; t < utc(2080, 1, 1, 0, 0); t += 86400 * 3 + 3600 * 5 + 60 * 7) {
            time_t tt = (time_t)t;
            struct tm tm;
            CHECK(localtime_r(&tt, &tm));
            int64_t nc;
            int32_t off = cron_tz_offset(tz, t, &nc);
            if (off != tm.tm_gmtoff)
                fprintf(stderr, "  %s at %lld: %d vs libc %ld\n", zones[z], (long long)t, off, tm.tm_gmtoff);
            CHECK_EQ_INT(off, tm.tm_gmtoff);
            CHECK(nc > t);
        }
    }
    if (old)
        setenv("TZ", old, 1);
    else
        unsetenv("TZ");
    free(old);
    tzset();
}

UNIT_TEST(test_cron_next_utc)
{
    CHECK_EQ_INT(next("0 * * * *", "UTC", utc(2026, 1, 1, 0, 0)), utc(2026, 1, 1, 1, 0));
    CHECK_EQ_INT(next("0 * * * *", "UTC", utc(2026, 1, 1, 0, 0) - 1), utc(2026, 1, 1, 0, 0));
    CHECK_EQ_INT(next("*/5 * * * *", "UTC", utc(2026, 1, 1, 0, 3) + 30), utc(2026, 1, 1, 0, 5));
    CHECK_EQ_INT(next("0 0 29 2 *", "UTC", utc(2026, 1, 1, 0, 0)), utc(2028, 2, 29, 0, 0));
    CHECK_EQ_INT(next("0 0 29 2 *", "UTC", utc(2097, 1, 1, 0, 0)), utc(2104, 2, 29, 0, 0));
    /* Both day fields restricted: either matches (2026-02-02 is a Monday). */
    CHECK_EQ_INT(next("0 12 13 * mon", "UTC", utc(2026, 2, 1, 0, 0)), utc(2026, 2, 2, 12, 0));
    CHECK_EQ_INT(next("0 12 13 * *", "UTC", utc(2026, 2, 1, 0, 0)), utc(2026, 2, 13, 12, 0));
    CHECK_EQ_INT(next("59 23 31 12 *", "UTC", utc(2026, 12, 31, 23, 59)), utc(2027, 12, 31, 23, 59));
}

UNIT_TEST(test_cron_next_berlin_dst)
{
    /* Europe/Berlin 2026: 02:00 CET -> 03:00 CEST on March 29 (01:00 UTC), 03:00 CEST
     * -> 02:00 CET on October 25 (01:00 UTC). */
    CHECK_EQ_INT(next("0 9 * * *", "Europe/Berlin", utc(2026, 1, 10, 12, 0)), utc(2026, 1, 11, 8, 0));
    CHECK_EQ_INT(next("0 9 * * *", "Europe/Berlin", utc(2026, 7, 10, 12, 0)), utc(2026, 7, 11, 7, 0));
    /* 02:30 does not exist on March 29: the next 02:30 is March 30's (CEST). */
    CHECK_EQ_INT(next("30 2 * * *", "Europe/Berlin", utc(2026, 3, 28, 12, 0)), utc(2026, 3, 30, 0, 30));
    /* Hourly runs every UTC hour across the gap: 01:00 CET is 00:00Z, then 03:00 CEST. */
    CHECK_EQ_INT(next("0 * * * *", "Europe/Berlin", utc(2026, 3, 29, 0, 0)), utc(2026, 3, 29, 1, 0));
    CHECK_EQ_INT(next("0 3 * * *", "Europe/Berlin", utc(2026, 3, 28, 12, 0)), utc(2026, 3, 29, 1, 0));
    /* 02:30 happens twice on October 25 and fires at each. */
    int64_t a = next("30 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 12, 0));
    CHECK_EQ_INT(a, utc(2026, 10, 25, 0, 30));
    int64_t b = next("30 2 * * *", "Europe/Berlin", a);
    CHECK_EQ_INT(b, utc(2026, 10, 25, 1, 30));
    CHECK_EQ_INT(next("30 2 * * *", "Europe/Berlin", b), utc(2026, 10, 26, 1, 30));
    /* The footer rule, past the file's explicit transitions (2037). */
    CHECK_EQ_INT(next("0 9 1 7 *", "Europe/Berlin", utc(2045, 1, 1, 0, 0)), utc(2045, 7, 1, 7, 0));
}

/* cron_next against a minute-by-minute search with libc's localtime_r. */
UNIT_TEST(test_cron_next_matches_brute_force)
{
    static const char *const exprs[] = {"*/7 1-3 * * *", "30 2 * * *", "0 0 * * sun", "15 */5 1,15 * *",
                                        "0 12 13 * fri", "*/20 * * mar,oct *", "45 23 * * 1-5"};
    static const char *const zones[] = {"Europe/Berlin", "Australia/Sydney", "Pacific/Chatham"};
    char *old = getenv("TZ") ? strdup(getenv("TZ")) : NULL;
    for (size_t z = 0; z < sizeof zones / sizeof zones[0]; z++) {
        setenv("TZ", zones[z], 1);
        tzset();
        for (size_t i = 0; i < sizeof exprs / sizeof exprs[0]; i++) {
            struct cron_expr e;
            struct gerr err;
            CHECK_EQ_INT(cron_parse(exprs[i], &e, &err), 0);
            const struct cron_tz *tz = load(zones[z]);
            /* Around both of 2026's changes in each hemisphere. */
            int64_t starts[] = {utc(2026, 3, 27, 0, 0), utc(2026, 4, 3, 0, 0), utc(2026, 9, 25, 0, 0),
                                utc(2026, 10, 23, 0, 0)};
            for (size_t s = 0; s < 4; s++) {
                int64_t t = starts[s];
                for (int k = 0; k < 6; k++) {
                    int64_t got;
                    CHECK_EQ_INT(cron_next(&e, tz, t, &got), 0);
                    int64_t want = (t / 60 + 1) * 60;
                    for (;; want += 60) {
                        time_t tt = (time_t)want;
                        struct tm tm;
                        CHECK(localtime_r(&tt, &tm));
                        bool md = e.mdays & (1u << tm.tm_mday), wd = e.wdays & (1u << tm.tm_wday);
                        bool day = (!e.mday_star && !e.wday_star) ? (md || wd) : (md && wd);
                        if ((e.months & (1u << (tm.tm_mon + 1))) && day && (e.hours & (1u << tm.tm_hour)) &&
                            (e.minutes & (1ULL << tm.tm_min)))
                            break;
                    }
                    if (got != want)
                        fprintf(stderr, "  %s in %s after %lld: %lld, want %lld\n", exprs[i], zones[z],
                                (long long)t, (long long)got, (long long)want);
                    CHECK_EQ_INT(got, want);
                    t = got;
                }
            }
        }
    }
    if (old)
        setenv("TZ", old, 1);
    else
        unsetenv("TZ");
    free(old);
    tzset();
}

int main(void)
{
    UNIT_RUN(test_cron_parse_fields);
    UNIT_RUN(test_cron_parse_errors);
    UNIT_RUN(test_cron_tz_names);
    UNIT_RUN(test_cron_tz_matches_libc);
    UNIT_RUN(test_cron_next_utc);
    UNIT_RUN(test_cron_next_berlin_dst);
    UNIT_RUN(test_cron_next_matches_brute_force);
    UNIT_MAIN_END();
}
