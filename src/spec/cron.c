/* Cron expressions, TZif zones and next-fire computation (cron.h). */
#include "spec/cron.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/cleanup.h"

/* ---- civil calendar (proleptic Gregorian, days since 1970-01-01) ---- */

static int64_t cron_floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Howard Hinnant's days_from_civil: exact for every year in int range. */
static int64_t cron_days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = cron_floor_div(y, 400);
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void cron_civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = cron_floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static bool cron_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int cron_mdays(int64_t y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && cron_leap(y) ? 29 : days[m - 1];
}

/* ---- the expression ---- */

struct cron_field {
    const char *what;
    int lo, hi;
    const char *const *names; /* names[i] stands for lo + i; NULL: none */
};

static const char *const cron_month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                               "jul", "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const cron_wday_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

/* Weekday 7 is Sunday too (as in Vixie cron); it is folded into 0 after parsing. */
static const struct cron_field cron_fields[5] = {
    {"minute", 0, 59, NULL},
    {"hour", 0, 23, NULL},
    {"day of month", 1, 31, NULL},
    {"month", 1, 12, cron_month_names},
    {"day of week", 0, 7, cron_wday_names},
};

/* One number or name of field f at *p; advances *p. -1 when there is none. */
static int cron_atom(const struct cron_field *f, const char **p)
{
    const char *s = *p;
    if (*s >= '0' && *s <= '9') {
        int v = 0;
        /* Three digits are more than any field needs; more is an error, not an overflow. */
        for (int n = 0; *s >= '0' && *s <= '9'; n++, s++) {
            if (n == 3)
                return -1;
            v = v * 10 + (*s - '0');
        }
        *p = s;
        return v;
    }
    if (f->names) {
        for (int i = 0; f->names[i]; i++) {
            if (!strncasecmp(s, f->names[i], 3)) {
                *p = s + 3;
                return f->lo + i;
            }
        }
    }
    return -1;
}

static int cron_bad(struct gerr *err, const struct cron_field *f, const char *tok, size_t len)
{
    return gerr_set(err, EINVAL,
                    "%s field \"%.*s\" is invalid: use *, N, N-M, a list N,M or a step */S or "
                    "N-M/S with values %d..%d%s",
                    f->what, (int)(len > 40 ? 40 : len), tok, f->lo, f->hi,
                    f->names == cron_month_names ? " or jan..dec"
                    : f->names == cron_wday_names ? " or sun..sat"
                                                  : "");
}

/* Parses one field (tok, len bytes, no spaces) into the bit set *bits. */
static int cron_parse_field(const struct cron_field *f, const char *tok, size_t len, uint64_t *bits,
                            bool *star, struct gerr *err)
{
    char buf[CRON_EXPR_MAX + 1];
    memcpy(buf, tok, len);
    buf[len] = '\0';
    *bits = 0;
    *star = buf[0] == '*';
    const char *p = buf;
    for (;;) {
        int lo, hi, step = 1;
        bool range = true;
        if (*p == '*') {
            lo = f->lo;
            hi = f->hi;
            p++;
        } else {
            lo = cron_atom(f, &p);
            if (lo < 0)
                return cron_bad(err, f, tok, len);
            hi = lo;
            range = *p == '-';
            if (range) {
                p++;
                hi = cron_atom(f, &p);
                if (hi < 0)
                    return cron_bad(err, f, tok, len);
            }
        }
        if (*p == '/') {
            p++;
            if (*p < '0' || *p > '9')
                return cron_bad(err, f, tok, len);
            step = 0;
            for (int n = 0; *p >= '0' && *p <= '9'; n++, p++) {
                if (n == 3)
                    return cron_bad(err, f, tok, len);
                step = step * 10 + (*p - '0');
            }
            /* "N/S" means N-max/S (Vixie cron). */
            if (!range)
                hi = f->hi;
        }
        if (lo < f->lo || hi > f->hi || lo > hi || step < 1 || step > f->hi - f->lo + 1)
            return cron_bad(err, f, tok, len);
        for (int v = lo; v <= hi; v += step)
            *bits |= 1ULL << v;
        if (*p == '\0')
            break;
        if (*p != ',')
            return cron_bad(err, f, tok, len);
        p++;
    }
    return 0;
}

static const struct {
    const char *name, *expr;
} cron_macros[] = {
    {"@yearly", "0 0 1 1 *"},   {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"},   {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

/* Whether some day the expression allows exists: only a day-of-month list alone can
 * name days no month in the month list has ("0 0 31 2,4 *"). */
static bool cron_satisfiable(const struct cron_expr *e)
{
    if (e->mday_star || !e->wday_star)
        return true;
    for (int m = 1; m <= 12; m++) {
        if (!(e->months & (1u << m)))
            continue;
        int maxd = m == 2 ? 29 : cron_mdays(2001, m);
        for (int d = 1; d <= maxd; d++)
            if (e->mdays & (1u << d))
                return true;
    }
    return false;
}

int cron_parse(const char *expr, struct cron_expr *out, struct gerr *err)
{
    memset(out, 0, sizeof *out);
    size_t len = strnlen(expr, CRON_EXPR_MAX + 1);
    if (len > CRON_EXPR_MAX)
        return gerr_set(err, EINVAL, "cron expression is longer than %d characters", CRON_EXPR_MAX);
    while (*expr == ' ' || *expr == '\t')
        expr++;
    if (*expr == '@') {
        size_t n = strcspn(expr, " \t");
        for (size_t i = 0; i < sizeof cron_macros / sizeof cron_macros[0]; i++) {
            if (strlen(cron_macros[i].name) == n && !strncasecmp(expr, cron_macros[i].name, n) &&
                expr[n + strspn(expr + n, " \t")] == '\0')
                return cron_parse(cron_macros[i].expr, out, err);
        }
        return gerr_set(err, EINVAL,
                        "unknown cron macro \"%.*s\": use @yearly, @annually, @monthly, @weekly, "
                        "@daily, @midnight or @hourly",
                        (int)(n > 40 ? 40 : n), expr);
    }
    uint64_t bits[5];
    bool star[5];
    const char *p = expr;
    for (int i = 0; i < 5; i++) {
        p += strspn(p, " \t");
        size_t n = strcspn(p, " \t");
        if (n == 0)
            return gerr_set(err, EINVAL,
                            "cron expression \"%.80s\" has %d fields, expected 5: minute hour "
                            "day-of-month month day-of-week",
                            expr, i);
        int r = cron_parse_field(&cron_fields[i], p, n, &bits[i], &star[i], err);
        if (r < 0)
            return r;
        p += n;
    }
    p += strspn(p, " \t");
    if (*p)
        return gerr_set(err, EINVAL,
                        "cron expression \"%.80s\" has more than 5 fields: minute hour "
                        "day-of-month month day-of-week",
                        expr);
    out->minutes = bits[0];
    out->hours = (uint32_t)bits[1];
    out->mdays = (uint32_t)bits[2];
    out->months = (uint16_t)bits[3];
    out->wdays = (uint8_t)((bits[4] | (bits[4] >> 7)) & 0x7f);
    out->mday_star = star[2];
    out->wday_star = star[4];
    if (!cron_satisfiable(out)) {
        memset(out, 0, sizeof *out);
        return gerr_set(err, EINVAL,
                        "cron expression \"%.80s\" never fires: no month it allows has the "
                        "days of month it names",
                        expr);
    }
    return 0;
}

/* ---- time zones ---- */

bool cron_tz_name_valid(const char *name)
{
    size_t n = strnlen(name, CRON_TZ_NAME_MAX + 1);
    if (n == 0 || n > CRON_TZ_NAME_MAX || name[0] == '/')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '+' || c == '-' || c == '/' || c == '.';
        if (!ok)
            return false;
        /* A component starting with '.' (".", "..", hidden files) never names a zone. */
        if (c == '.' && (i == 0 || name[i - 1] == '/'))
            return false;
        if (c == '/' && (i + 1 == n || name[i + 1] == '/'))
            return false;
    }
    return true;
}

static int64_t cron_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    if (n == 4)
        return (int32_t)(uint32_t)v;
    return (int64_t)v;
}

/* POSIX TZ pieces: "[+-]hh[:mm[:ss]]", hours up to 167 (the RFC 9636 extension). */
static bool cron_posix_time(const char **p, int32_t *out)
{
    const char *s = *p;
    int sign = 1;
    if (*s == '+' || *s == '-')
        sign = *s++ == '-' ? -1 : 1;
    int32_t parts[3] = {0, 0, 0};
    for (int k = 0; k < 3; k++) {
        if (*s < '0' || *s > '9')
            return false;
        int v = 0;
        for (int n = 0; *s >= '0' && *s <= '9'; n++, s++) {
            if (n == 3)
                return false;
            v = v * 10 + (*s - '0');
        }
        parts[k] = v;
        if (*s != ':')
            break;
        s++;
    }
    if (parts[0] > 167 || parts[1] > 59 || parts[2] > 59)
        return false;
    *out = sign * (parts[0] * 3600 + parts[1] * 60 + parts[2]);
    *p = s;
    return true;
}

static bool cron_posix_name(const char **p)
{
    const char *s = *p;
    size_t n = 0;
    if (*s == '<') {
        s++;
        while (*s && *s != '>' && n < 16)
            s++, n++;
        if (*s != '>')
            return false;
        s++;
    } else {
        while ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z'))
            s++, n++;
    }
    if (n < 3)
        return false;
    *p = s;
    return true;
}

static bool cron_posix_num(const char **p, int lo, int hi, int *out)
{
    const char *s = *p;
    int v = 0, n = 0;
    for (; *s >= '0' && *s <= '9'; s++, n++) {
        if (n == 3)
            return false;
        v = v * 10 + (*s - '0');
    }
    if (n == 0 || v < lo || v > hi)
        return false;
    *out = v;
    *p = s;
    return true;
}

static bool cron_posix_rule(const char **p, struct cron_tz_rule *r)
{
    const char *s = *p;
    memset(r, 0, sizeof *r);
    r->secs = 7200; /* POSIX: the change is at 02:00 unless the rule says otherwise */
    if (*s == 'M') {
        s++;
        r->kind = 'M';
        if (!cron_posix_num(&s, 1, 12, &r->month) || *s++ != '.' || !cron_posix_num(&s, 1, 5, &r->week) ||
            *s++ != '.' || !cron_posix_num(&s, 0, 6, &r->wday))
            return false;
    } else if (*s == 'J') {
        s++;
        r->kind = 'J';
        if (!cron_posix_num(&s, 1, 365, &r->yday))
            return false;
    } else {
        r->kind = 'D';
        if (!cron_posix_num(&s, 0, 365, &r->yday))
            return false;
    }
    if (*s == '/') {
        s++;
        if (!cron_posix_time(&s, &r->secs))
            return false;
    }
    *p = s;
    return true;
}

/* Parses a TZif footer ("CET-1CEST,M3.5.0,M10.5.0/3"). False when it is one we do not
 * understand; the caller then keeps the last transition's offset. */
static bool cron_posix_tz(const char *s, struct cron_tz *tz)
{
    int32_t std;
    if (!cron_posix_name(&s) || !cron_posix_time(&s, &std))
        return false;
    tz->std_off = -std; /* POSIX offsets are west-positive */
    if (*s == '\0') {
        tz->rule_dst = false;
        return true;
    }
    if (!cron_posix_name(&s))
        return false;
    tz->dst_off = tz->std_off + 3600;
    if (*s != ',' && *s != '\0') {
        int32_t dst;
        if (!cron_posix_time(&s, &dst))
            return false;
        tz->dst_off = -dst;
    }
    if (*s++ != ',' || !cron_posix_rule(&s, &tz->start) || *s++ != ',' || !cron_posix_rule(&s, &tz->end) ||
        *s != '\0')
        return false;
    tz->rule_dst = true;
    return true;
}

int cron_tz_parse(const uint8_t *data, size_t len, struct cron_tz *out, struct gerr *err)
{
    memset(out, 0, sizeof *out);
    /* The header: magic, version, 15 reserved bytes, six 32-bit counts. */
    enum { HDR = 44 };
    const uint8_t *p = data, *end = data + len;
    int tsize = 4;
    for (int pass = 0; pass < 2; pass++) {
        if ((size_t)(end - p) < HDR || memcmp(p, "TZif", 4))
            return gerr_set(err, EINVAL, "not a TZif time zone file");
        char version = (char)p[4];
        int64_t isut = cron_be(p + 20, 4), isstd = cron_be(p + 24, 4), leap = cron_be(p + 28, 4),
                timecnt = cron_be(p + 32, 4), typecnt = cron_be(p + 36, 4), charcnt = cron_be(p + 40, 4);
        if (timecnt < 0 || timecnt > CRON_TZ_MAX_TRANSITIONS || typecnt < 1 || typecnt > CRON_TZ_MAX_TYPES ||
            charcnt < 0 || charcnt > 1024 || leap < 0 || leap > 1024 || (isut != 0 && isut != typecnt) ||
            (isstd != 0 && isstd != typecnt))
            return gerr_set(err, EINVAL, "TZif file has counts out of bounds");
        if (leap != 0)
            return gerr_set(err, EINVAL, "TZif file counts leap seconds (a \"right/\" zone); use the plain zone");
        p += HDR;
        size_t need = (size_t)(timecnt * (tsize + 1) + typecnt * 6 + charcnt + leap * (tsize + 4) + isstd + isut);
        if ((size_t)(end - p) < need)
            return gerr_set(err, EINVAL, "TZif file is truncated");
        if (pass == 0 && version >= '2') {
            p += need; /* skip the 32-bit data; the 64-bit block follows */
            tsize = 8;
            continue;
        }
        out->ntrans = (size_t)timecnt;
        out->ntypes = (size_t)typecnt;
        for (int64_t i = 0; i < timecnt; i++) {
            out->trans[i] = cron_be(p + i * tsize, tsize);
            if (i > 0 && out->trans[i] <= out->trans[i - 1])
                return gerr_set(err, EINVAL, "TZif file's transitions are not in order");
        }
        p += timecnt * tsize;
        for (int64_t i = 0; i < timecnt; i++) {
            if (p[i] >= typecnt)
                return gerr_set(err, EINVAL, "TZif file names an unknown local time type");
            out->trans_type[i] = p[i];
        }
        p += timecnt;
        for (int64_t i = 0; i < typecnt; i++) {
            int64_t off = cron_be(p + i * 6, 4);
            /* RFC 9636: offsets within -25:59:59..+25:59:59. */
            if (off < -93599 || off > 93599)
                return gerr_set(err, EINVAL, "TZif file has an offset out of range");
            out->type_off[i] = (int32_t)off;
        }
        p += need - (size_t)(timecnt * (tsize + 1));
        if (tsize == 8 && p < end && *p == '\n') {
            const uint8_t *nl = memchr(p + 1, '\n', (size_t)(end - p - 1));
            char foot[128];
            if (nl && (size_t)(nl - p - 1) < sizeof foot && nl > p + 1) {
                memcpy(foot, p + 1, (size_t)(nl - p - 1));
                foot[nl - p - 1] = '\0';
                if (!memchr(foot, '\0', (size_t)(nl - p - 1)))
                    out->has_rule = cron_posix_tz(foot, out);
            }
        }
        return 0;
    }
    return 0;
}

static void cron_close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}

int cron_tz_load(const char *name, struct cron_tz *out, struct gerr *err)
{
    memset(out, 0, sizeof *out);
    if (!cron_tz_name_valid(name))
        return gerr_set(err, EINVAL,
                        "time zone \"%.64s\" is not a zone name: use an IANA name such as "
                        "\"Europe/Berlin\" or \"UTC\"",
                        name);
    if (!strcmp(name, "UTC")) {
        out->ntypes = 1;
        snprintf(out->name, sizeof out->name, "UTC");
        return 0;
    }
    char path[sizeof CRON_TZ_DIR + CRON_TZ_NAME_MAX + 2];
    snprintf(path, sizeof path, "%s/%s", CRON_TZ_DIR, name);
    __attribute__((cleanup(cron_close_fd))) int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR || e == EISDIR)
            return gerr_set(err, ENOENT, "unknown time zone \"%s\" (no %s)", name, path);
        return gerr_sys(err, e, "open %s", path);
    }
    uint8_t *buf = malloc(CRON_TZ_FILE_MAX + 1);
    if (!buf)
        return gerr_set(err, ENOMEM, "out of memory reading %s", path);
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, CRON_TZ_FILE_MAX + 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            free(buf);
            return e == EISDIR ? gerr_set(err, ENOENT, "unknown time zone \"%s\"", name)
                               : gerr_sys(err, e, "read %s", path);
        }
        if (n == 0 || (got += (size_t)n) > CRON_TZ_FILE_MAX)
            break;
    }
    int r = got > CRON_TZ_FILE_MAX ? gerr_set(err, EINVAL, "%s is larger than a time zone file", path)
                                   : cron_tz_parse(buf, got, out, err);
    free(buf);
    if (r < 0)
        return gerr_prefix(err, "time zone \"%s\"", name);
    snprintf(out->name, sizeof out->name, "%s", name);
    return 0;
}

/* The UTC instant at which rule r fires in year y, given the offset in force before it. */
static int64_t cron_rule_instant(const struct cron_tz_rule *r, int64_t y, int32_t off_before)
{
    int64_t day;
    if (r->kind == 'M') {
        int64_t first = cron_days_from_civil(y, r->month, 1);
        int wd = (int)(((first % 7) + 11) % 7); /* 1970-01-01 was a Thursday (4) */
        int d = 1 + (r->wday - wd + 7) % 7 + (r->week - 1) * 7;
        if (d > cron_mdays(y, r->month))
            d -= 7;
        day = first + d - 1;
    } else if (r->kind == 'J') {
        /* Jn: 1..365, February 29 never counted. */
        day = cron_days_from_civil(y, 1, 1) + r->yday - 1 + (cron_leap(y) && r->yday >= 60);
    } else {
        day = cron_days_from_civil(y, 1, 1) + r->yday;
    }
    return day * 86400 + r->secs - off_before;
}

static int32_t cron_rule_offset(const struct cron_tz *tz, int64_t t, int64_t *next)
{
    if (!tz->rule_dst) {
        *next = INT64_MAX;
        return tz->std_off;
    }
    int64_t y0, yy;
    int mm, dd;
    cron_civil_from_days(cron_floor_div(t + tz->std_off, 86400), &y0, &mm, &dd);
    /* The changes of the years around t, in time order (a southern zone ends DST
     * before it starts it within a calendar year). */
    int64_t when[6];
    int32_t after[6];
    int n = 0;
    for (yy = y0 - 1; yy <= y0 + 1; yy++) {
        int64_t s = cron_rule_instant(&tz->start, yy, tz->std_off);
        int64_t e = cron_rule_instant(&tz->end, yy, tz->dst_off);
        if (s <= e) {
            when[n] = s, after[n++] = tz->dst_off;
            when[n] = e, after[n++] = tz->std_off;
        } else {
            when[n] = e, after[n++] = tz->std_off;
            when[n] = s, after[n++] = tz->dst_off;
        }
    }
    int32_t off = after[0] == tz->dst_off ? tz->std_off : tz->dst_off;
    *next = INT64_MAX;
    for (int i = 0; i < n; i++) {
        if (when[i] <= t) {
            off = after[i];
        } else {
            *next = when[i];
            break;
        }
    }
    return off;
}

int32_t cron_tz_offset(const struct cron_tz *tz, int64_t t, int64_t *next_change)
{
    if (tz->ntrans == 0 || t < tz->trans[0]) {
        if (tz->ntrans == 0 && tz->has_rule)
            return cron_rule_offset(tz, t, next_change);
        *next_change = tz->ntrans ? tz->trans[0] : INT64_MAX;
        return tz->type_off[0];
    }
    if (t >= tz->trans[tz->ntrans - 1]) {
        if (tz->has_rule) {
            int32_t off = cron_rule_offset(tz, t, next_change);
            return off;
        }
        *next_change = INT64_MAX;
        return tz->type_off[tz->trans_type[tz->ntrans - 1]];
    }
    size_t lo = 0, hi = tz->ntrans - 1; /* trans[lo] <= t < trans[hi] */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (tz->trans[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    *next_change = tz->trans[hi];
    return tz->type_off[tz->trans_type[lo]];
}

/* ---- next fire ---- */

int cron_next(const struct cron_expr *e, const struct cron_tz *tz, int64_t after, int64_t *out)
{
    if (after > INT64_MAX / 2 || after < INT64_MIN / 2)
        return -ERANGE;
    int64_t u = cron_floor_div(after, 60) * 60 + 60;
    int64_t limit = after + CRON_SEARCH_SECS;
    while (u <= limit) {
        int64_t change;
        int32_t off = cron_tz_offset(tz, u, &change);
        int64_t w = u + off;
        int64_t days = cron_floor_div(w, 86400);
        int64_t secs = w - days * 86400;
        int64_t y;
        int m, d;
        cron_civil_from_days(days, &y, &m, &d);
        int wday = (int)(((days % 7) + 11) % 7);
        int hour = (int)(secs / 3600), minute = (int)(secs / 60 % 60);
        bool mday_ok = e->mdays & (1u << d), wday_ok = e->wdays & (1u << wday);
        bool day_ok = (!e->mday_star && !e->wday_star) ? (mday_ok || wday_ok) : (mday_ok && wday_ok);
        /* Within one offset, wall-clock arithmetic is exact: jump to the next wall
         * boundary that could match, but never past an offset change. */
        int64_t jump;
        if (!(e->months & (1u << m)))
            jump = (int64_t)(cron_mdays(y, m) - d + 1) * 86400 - secs;
        else if (!day_ok)
            jump = 86400 - secs;
        else if (!(e->hours & (1u << hour)))
            jump = 3600 - secs % 3600;
        else if (!(e->minutes & (1ULL << minute)))
            jump = 60 - secs % 60;
        else {
            *out = u;
            return 0;
        }
        int64_t target = u + jump;
        if (change > u && change < target)
            target = change;
        u = cron_floor_div(target + 59, 60) * 60;
    }
    return -ENOENT;
}
