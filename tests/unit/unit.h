/* Minimal unit-test harness. Each test binary defines tests with UNIT_TEST and
 * lists them in main via UNIT_RUN; UNIT_MAIN_END prints "N passed, N failed" and
 * exits non-zero on any failure. A CHECK failure aborts only the current test. */
#ifndef GUST_TESTS_UNIT_H
#define GUST_TESTS_UNIT_H

#include <setjmp.h>
#include <stdio.h>
#include <string.h>

static int unit_passed, unit_failed;
static jmp_buf unit_jmp;
static const char *unit_current;

#define UNIT_TEST(name) static void name(void)

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "  FAIL %s: %s:%d: CHECK(%s)\n", unit_current, __FILE__, __LINE__, \
                    #cond);                                                                  \
            longjmp(unit_jmp, 1);                                                            \
        }                                                                                    \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                   \
    do {                                                                                     \
        long long unit_a_ = (long long)(a), unit_b_ = (long long)(b);                        \
        if (unit_a_ != unit_b_) {                                                            \
            fprintf(stderr, "  FAIL %s: %s:%d: %s == %lld, expected %s == %lld\n", unit_current, \
                    __FILE__, __LINE__, #a, unit_a_, #b, unit_b_);                           \
            longjmp(unit_jmp, 1);                                                            \
        }                                                                                    \
    } while (0)

#define CHECK_STR(a, b)                                                                      \
    do {                                                                                     \
        const char *unit_sa_ = (a), *unit_sb_ = (b);                                         \
        if (!unit_sa_ || !unit_sb_ || strcmp(unit_sa_, unit_sb_)) {                          \
            fprintf(stderr, "  FAIL %s: %s:%d: \"%s\" != \"%s\"\n", unit_current, __FILE__,    \
                    __LINE__, unit_sa_ ? unit_sa_ : "(null)", unit_sb_ ? unit_sb_ : "(null)"); \
            longjmp(unit_jmp, 1);                                                            \
        }                                                                                    \
    } while (0)

#define UNIT_RUN(name)                                      \
    do {                                                    \
        unit_current = #name;                               \
        if (setjmp(unit_jmp) == 0) {                        \
            name();                                         \
            unit_passed++;                                  \
            fprintf(stderr, "  ok   %s\n", #name);          \
        } else {                                            \
            unit_failed++;                                  \
        }                                                   \
    } while (0)

#define UNIT_MAIN_END()                                             \
    do {                                                            \
        printf("%d passed, %d failed\n", unit_passed, unit_failed); \
        return unit_failed ? 1 : 0;                                 \
    } while (0)

#endif
