/* Cron expressions and time zones for schedules (docs/SPEC.md "schedule").
 *
 * cron_parse reads the classic five fields "MIN HOUR DOM MON DOW" (lists, ranges,
 * steps, month and weekday names, "@hourly"-style macros). cron_tz_load reads a zone
 * from the system's tzdata (TZif files under CRON_TZ_DIR) with our own bounded parser
 * rather than switching TZ for localtime_r: TZ is process-wide state and gustd's build
 * threads call libc time functions, so switching it would be a data race; a parsed
 * zone is plain data any thread may read.
 *
 * cron_next's contract: the next fire after an instant is the first whole UTC minute
 * strictly after it whose wall-clock time in the zone matches the expression. So a
 * wall time that a DST change skips does not fire that day, and one it repeats fires
 * at each occurrence (the expression matches both). When day-of-month and day-of-week
 * are both restricted (neither starts with '*'), a day matches if either does (as in
 * Vixie cron); otherwise both must.
 */
#ifndef GUST_SPEC_CRON_H
#define GUST_SPEC_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

/* The longest expression we accept: five fields of long lists fit in far less, and
 * the bound keeps the parser's work per input small. */
#define CRON_EXPR_MAX 256
/* Zone names in tzdata are at most ~30 characters ("America/Argentina/ComodRivadavia"). */
#define CRON_TZ_NAME_MAX 63
#define CRON_TZ_DIR "/usr/share/zoneinfo"
/* TZif bounds: real zone files hold at most a few hundred transitions and a handful of
 * types ("fat" files through 2037 stay under 4 KiB); these leave ample room. */
#define CRON_TZ_FILE_MAX 65536
#define CRON_TZ_MAX_TRANSITIONS 2048
#define CRON_TZ_MAX_TYPES 64
/* How far cron_next searches: the rarest satisfiable expression ("0 0 29 2 *", with
 * 2100 not a leap year) fires at least once every 8 years. */
#define CRON_SEARCH_SECS (9LL * 366 * 86400)

struct cron_expr {
    uint64_t minutes;   /* bit m: minute m (0..59) */
    uint32_t hours;     /* bit h: hour h (0..23) */
    uint32_t mdays;     /* bit d: day of month d (1..31) */
    uint16_t months;    /* bit m: month m (1..12) */
    uint8_t wdays;      /* bit d: weekday d (0 = Sunday .. 6) */
    bool mday_star, wday_star; /* the field started with '*' (for the day rule above) */
};

/* A POSIX TZ rule's transition date and time ("Mm.w.d/time", "Jn/time", "n/time"). */
struct cron_tz_rule {
    char kind;          /* 'M', 'J' or 'D' (zero-based day of year) */
    int month, week, wday, yday;
    int32_t secs;       /* local time of the change, seconds after midnight */
};

struct cron_tz {
    char name[CRON_TZ_NAME_MAX + 1];
    size_t ntrans;
    int64_t trans[CRON_TZ_MAX_TRANSITIONS]; /* UTC instants, increasing */
    uint8_t trans_type[CRON_TZ_MAX_TRANSITIONS];
    size_t ntypes;
    int32_t type_off[CRON_TZ_MAX_TYPES];    /* UTC offset of each local time type */
    /* The footer rule for instants after the last transition (absent: the last
     * transition's type holds forever). */
    bool has_rule, rule_dst;
    int32_t std_off, dst_off;
    struct cron_tz_rule start, end;
};

/* Parses expr into *out. -EINVAL with a message naming the bad field ("minute",
 * "hour", "day of month", "month", "day of week") and what is accepted; an expression
 * that can never fire (e.g. "0 0 30 2 *") is refused too. */
int cron_parse(const char *expr, struct cron_expr *out, struct gerr *err);

/* Whether name is a well-formed zone name: 1..CRON_TZ_NAME_MAX of [A-Za-z0-9_+-/],
 * not starting with '/' and without "." components, so it stays under CRON_TZ_DIR. */
bool cron_tz_name_valid(const char *name);
/* Loads zone `name` from CRON_TZ_DIR into *out. "UTC" works without tzdata.
 * -EINVAL for a malformed name, -ENOENT for an unknown zone, -EINVAL for a file that
 * is not a valid TZif file. */
int cron_tz_load(const char *name, struct cron_tz *out, struct gerr *err);
/* Parses TZif bytes (what cron_tz_load reads) into *out; name is left empty. */
int cron_tz_parse(const uint8_t *data, size_t len, struct cron_tz *out, struct gerr *err);
/* The UTC offset in force at t, and the next instant > t at which it may change
 * (INT64_MAX when none). */
int32_t cron_tz_offset(const struct cron_tz *tz, int64_t t, int64_t *next_change);

/* The next fire after `after` (UTC seconds) per the contract above, into *out.
 * -ENOENT when there is none within CRON_SEARCH_SECS. */
int cron_next(const struct cron_expr *e, const struct cron_tz *tz, int64_t after, int64_t *out);

#endif
