/* Parsers of the Azure Functions 2019 trace CSVs (trace.h). The files are plain CSV
 * without quoting (hex hashes and numbers), so a line is split on commas; a quote, an
 * empty line in the middle, or a field that is not what its column needs is an error
 * with the line number. */
#include "trace/trace.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cleanup.h"
#include "base/hmap.h"
#include "base/util.h"
#include "base/xalloc.h"

const double trace_pct_at[TRACE_NPCT] = {0, 1, 25, 50, 75, 99, 100};

/* Columns before the counts in *_inv.csv and the first percentile column of *_run.csv. */
#define INV_KEY_COLS 3
#define RUN_PCT_COL 7
#define MEM_AVG_COL 3

/* A cursor over the text, one line at a time. */
struct lines {
    const char *name;
    const char *p, *end;
    size_t lineno;
    const char *line;
    size_t len;
};

/* Next line without its "\n" or "\r\n"; false at the end. A line longer than
 * TRACE_MAX_LINE is an error (-E2BIG), reported through *r. */
static bool next_line(struct lines *l, int *r, struct gerr *err)
{
    *r = 0;
    if (l->p >= l->end)
        return false;
    const char *nl = memchr(l->p, '\n', (size_t)(l->end - l->p));
    const char *e = nl ? nl : l->end;
    l->lineno++;
    l->line = l->p;
    l->len = (size_t)(e - l->p);
    if (l->len && l->line[l->len - 1] == '\r')
        l->len--;
    l->p = nl ? nl + 1 : l->end;
    if (l->len > TRACE_MAX_LINE) {
        *r = gerr_set(err, E2BIG, "%s line %zu: longer than %u bytes", l->name, l->lineno, TRACE_MAX_LINE);
        return false;
    }
    return true;
}

/* Splits the current line in place into at most max fields (pointers into the text,
 * with lengths). Returns the number of fields, or max + 1 when there are more. */
static size_t split(const struct lines *l, const char **f, size_t *flen, size_t max)
{
    size_t n = 0;
    const char *p = l->line, *end = l->line + l->len;
    for (;;) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        const char *e = c ? c : end;
        if (n == max)
            return max + 1;
        f[n] = p;
        flen[n] = (size_t)(e - p);
        n++;
        if (!c)
            return n;
        p = c + 1;
    }
}

/* Copies field (len bytes) into a NUL-terminated buffer of cap bytes; false if it
 * does not fit. */
static bool field_str(char *out, size_t cap, const char *f, size_t len)
{
    if (len >= cap)
        return false;
    memcpy(out, f, len);
    out[len] = '\0';
    return true;
}

static int bad_field(struct gerr *err, const struct lines *l, size_t col, const char *what, const char *f,
                     size_t len)
{
    return gerr_set(err, EINVAL, "%s line %zu, column %zu: \"%.*s\" is not %s", l->name, l->lineno, col + 1,
                    (int)(len > 40 ? 40 : len), f, what);
}

static bool parse_count(const char *f, size_t len, uint32_t *out)
{
    if (len == 0 || len > 10)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (f[i] < '0' || f[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(f[i] - '0');
    }
    if (v > TRACE_MAX_COUNT)
        return false;
    *out = (uint32_t)v;
    return true;
}

/* A finite number >= 0 (the run and mem columns are integers or "81067.0"). */
static bool parse_num(const char *f, size_t len, double *out)
{
    char buf[64];
    if (!field_str(buf, sizeof buf, f, len) || !len)
        return false;
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (*end || errno || !isfinite(v) || v < 0)
        return false;
    *out = v;
    return true;
}

static bool hash_ok(const char *f, size_t len)
{
    if (len == 0 || len > TRACE_HASH_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (f[i] == '"' || (unsigned char)f[i] < 0x20)
            return false;
    return true;
}

/* Reads the header line of file name into l: 0, or -errno with err (an empty file
 * has none). */
static int header_line(struct lines *l, const char *name, struct gerr *err)
{
    int r;
    if (!next_line(l, &r, err))
        return r < 0 ? r : gerr_set(err, EINVAL, "%s: empty (a header line is expected)", name);
    return 0;
}

int trace_parse_inv(struct trace *t, const char *name, const char *text, size_t len,
                    const struct trace_limits *lim, struct gerr *err)
{
    memset(t, 0, sizeof *t);
    struct lines l = {.name = name, .p = text, .end = text + len};
    int r = header_line(&l, name, err);
    if (r < 0)
        return r;
    /* Header: HashFunction,HashApp,HashOwner,minute_1..minute_N; only the count of
     * columns matters (the names are the dataset's; other tools reorder nothing). */
    size_t ncols = 1;
    for (size_t i = 0; i < l.len; i++)
        ncols += l.line[i] == ',';
    if (ncols <= INV_KEY_COLS)
        return gerr_set(err, EINVAL, "%s line 1: %zu columns; expected HashFunction,HashApp,HashOwner,minute_1,...",
                        name, ncols);
    if (ncols - INV_KEY_COLS > TRACE_MAX_MINUTES)
        return gerr_set(err, E2BIG, "%s line 1: %zu minutes; at most %u are read", name, ncols - INV_KEY_COLS,
                        TRACE_MAX_MINUTES);
    uint32_t file_minutes = (uint32_t)(ncols - INV_KEY_COLS);
    uint32_t nmin = lim && lim->max_minutes && lim->max_minutes < file_minutes ? lim->max_minutes : file_minutes;
    size_t max_fns = lim && lim->max_functions && lim->max_functions < TRACE_MAX_FUNCTIONS ? lim->max_functions
                                                                                            : TRACE_MAX_FUNCTIONS;
    if ((uint64_t)max_fns * nmin > TRACE_MAX_CELLS)
        max_fns = (size_t)(TRACE_MAX_CELLS / nmin);
    const char **f = xcalloc(ncols, sizeof *f);
    size_t *flen = xcalloc(ncols, sizeof *flen);
    size_t cap = 0;
    t->nminutes = nmin;
    r = 0;
    while (t->nfns < max_fns && next_line(&l, &r, err)) {
        if (l.len == 0) {
            if (l.p >= l.end)
                break; /* a trailing empty line */
            r = gerr_set(err, EINVAL, "%s line %zu: empty line", name, l.lineno);
            break;
        }
        size_t n = split(&l, f, flen, ncols);
        if (n != ncols) {
            r = gerr_set(err, EINVAL, "%s line %zu: %s columns than the header's %zu", name, l.lineno,
                         n > ncols ? "more" : "fewer", ncols);
            break;
        }
        if (!hash_ok(f[0], flen[0]) || !hash_ok(f[1], flen[1])) {
            size_t c = hash_ok(f[0], flen[0]) ? 1 : 0;
            r = bad_field(err, &l, c, "a hash (1 to 128 characters, no quotes)", f[c], flen[c]);
            break;
        }
        if (t->nfns == cap) {
            cap = cap ? cap * 2 : 64;
            t->fns = xreallocarray(t->fns, cap, sizeof *t->fns);
            t->counts = xreallocarray(t->counts, cap, (size_t)nmin * sizeof *t->counts);
        }
        struct trace_fn *fn = &t->fns[t->nfns];
        memset(fn, 0, sizeof *fn);
        field_str(fn->function, sizeof fn->function, f[0], flen[0]);
        field_str(fn->app, sizeof fn->app, f[1], flen[1]);
        uint32_t *row = t->counts + t->nfns * (size_t)nmin;
        for (uint32_t m = 0; m < file_minutes && r == 0; m++) {
            uint32_t v;
            size_t c = INV_KEY_COLS + m;
            if (!parse_count(f[c], flen[c], &v))
                r = bad_field(err, &l, c, "an invocation count (0 to 100000000)", f[c], flen[c]);
            else if (m < nmin) {
                row[m] = v;
                fn->total += v;
            }
        }
        if (r < 0)
            break;
        t->nfns++;
    }
    free(f);
    free(flen);
    if (r == 0 && t->nfns == 0)
        r = gerr_set(err, EINVAL, "%s: no functions after the header", name);
    if (r < 0)
        trace_free(t);
    return r;
}

/* Finds a function by (function, app) hash; a linear index would make a 46,000-row
 * file quadratic, so the rows go through a hash map first. */
struct fn_ref {
    struct hmap_node node;
    size_t idx;
};

struct fn_key {
    const struct trace *t;
    const char *a, *b; /* function and app hash (or app hash and NULL for apps) */
};

static bool fn_eq(const struct hmap_node *n, const void *key)
{
    const struct fn_ref *ref = (const struct fn_ref *)n;
    const struct fn_key *k = key;
    const struct trace_fn *fn = &k->t->fns[ref->idx];
    if (k->b)
        return !strcmp(fn->function, k->a) && !strcmp(fn->app, k->b);
    return !strcmp(fn->app, k->a);
}

static uint64_t key_hash(const char *a, const char *b)
{
    uint64_t h = hmap_hash_str(a);
    return b ? h * 31 + hmap_hash_str(b) : h;
}

/* An index of t's functions, by (function, app) when by_fn, else by app (every
 * function of the app in a chain: lookups walk all equal keys). */
static struct fn_ref *index_build(const struct trace *t, struct hmap *m, bool by_fn)
{
    struct fn_ref *refs = xcalloc(t->nfns ? t->nfns : 1, sizeof *refs);
    hmap_init(m, t->nfns * 2 + 16);
    for (size_t i = 0; i < t->nfns; i++) {
        refs[i].idx = i;
        hmap_insert(m, &refs[i].node, by_fn ? key_hash(t->fns[i].function, t->fns[i].app) : key_hash(t->fns[i].app, NULL));
    }
    return refs;
}

int trace_parse_run(struct trace *t, const char *name, const char *text, size_t len, struct gerr *err)
{
    struct lines l = {.name = name, .p = text, .end = text + len};
    int r = header_line(&l, name, err);
    if (r < 0)
        return r;
    enum { NCOLS = RUN_PCT_COL + TRACE_NPCT };
    struct hmap m;
    struct fn_ref *refs = index_build(t, &m, true);
    const char *f[NCOLS];
    size_t flen[NCOLS];
    r = 0;
    while (next_line(&l, &r, err)) {
        if (l.len == 0 && l.p >= l.end)
            break;
        size_t n = split(&l, f, flen, NCOLS);
        if (n != NCOLS) {
            r = gerr_set(err, EINVAL,
                         "%s line %zu: %zu columns; expected %d (HashFunction,HashApp,HashOwner,Count,Average,"
                         "Minimum,Maximum,percentile_Average_0,_1,_25,_50,_75,_99,_100)",
                         name, l.lineno, n, (int)NCOLS);
            break;
        }
        char fh[TRACE_HASH_MAX + 1], ah[TRACE_HASH_MAX + 1];
        if (!hash_ok(f[0], flen[0]) || !hash_ok(f[1], flen[1])) {
            size_t c = hash_ok(f[0], flen[0]) ? 1 : 0;
            r = bad_field(err, &l, c, "a hash (1 to 128 characters, no quotes)", f[c], flen[c]);
            break;
        }
        field_str(fh, sizeof fh, f[0], flen[0]);
        field_str(ah, sizeof ah, f[1], flen[1]);
        double pct[TRACE_NPCT];
        for (int i = 0; i < TRACE_NPCT && r == 0; i++) {
            size_t c = RUN_PCT_COL + (size_t)i;
            if (!parse_num(f[c], flen[c], &pct[i]))
                r = bad_field(err, &l, c, "a duration in ms (a number >= 0)", f[c], flen[c]);
            else if (i && pct[i] < pct[i - 1])
                r = gerr_set(err, EINVAL, "%s line %zu, column %zu: percentiles must not decrease", name, l.lineno,
                             c + 1);
        }
        if (r < 0)
            break;
        struct fn_key k = {t, fh, ah};
        struct hmap_node *hit = hmap_find(&m, key_hash(fh, ah), fn_eq, &k);
        if (!hit)
            continue;
        struct trace_fn *fn = &t->fns[((struct fn_ref *)hit)->idx];
        memcpy(fn->duration_pct, pct, sizeof pct);
        fn->has_duration = true;
    }
    hmap_free(&m);
    free(refs);
    return r;
}

int trace_parse_mem(struct trace *t, const char *name, const char *text, size_t len, struct gerr *err)
{
    struct lines l = {.name = name, .p = text, .end = text + len};
    int r = header_line(&l, name, err);
    if (r < 0)
        return r;
    /* HashApp,HashOwner,SampleCount,AverageAllocatedMb and its 8 percentiles. */
    enum { NCOLS = 12 };
    struct hmap m;
    struct fn_ref *refs = index_build(t, &m, false);
    const char *f[NCOLS];
    size_t flen[NCOLS];
    r = 0;
    while (next_line(&l, &r, err)) {
        if (l.len == 0 && l.p >= l.end)
            break;
        size_t n = split(&l, f, flen, NCOLS);
        if (n <= MEM_AVG_COL || n > NCOLS) {
            r = gerr_set(err, EINVAL, "%s line %zu: %zu columns; expected HashApp,HashOwner,SampleCount,"
                         "AverageAllocatedMb,...", name, l.lineno, n);
            break;
        }
        char ah[TRACE_HASH_MAX + 1];
        if (!hash_ok(f[0], flen[0])) {
            r = bad_field(err, &l, 0, "a hash (1 to 128 characters, no quotes)", f[0], flen[0]);
            break;
        }
        field_str(ah, sizeof ah, f[0], flen[0]);
        double mb;
        /* A function's memory is capped at 1 TiB (spec's largest memory reservation). */
        if (!parse_num(f[MEM_AVG_COL], flen[MEM_AVG_COL], &mb) || mb > 1048576) {
            r = bad_field(err, &l, MEM_AVG_COL, "a memory size in MB (0 to 1048576)", f[MEM_AVG_COL],
                          flen[MEM_AVG_COL]);
            break;
        }
        struct fn_key k = {t, ah, NULL};
        uint64_t h = key_hash(ah, NULL);
        /* Every function of the app (hmap_find returns one; walk its bucket chain). */
        for (struct hmap_node *hit = hmap_find(&m, h, fn_eq, &k); hit; hit = hit->next)
            if (hit->hash == h && fn_eq(hit, &k))
                t->fns[((struct fn_ref *)hit)->idx].memory_mib = (uint32_t)ceil(mb);
    }
    hmap_free(&m);
    free(refs);
    return r;
}

/* dir's one "*_inv.csv": its prefix (without "_inv.csv") into out. */
static int find_prefix(const char *dir, char *out, size_t cap, struct gerr *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return gerr_sys(err, errno, "trace directory %s", dir);
    int found = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n <= 8 || strcmp(de->d_name + n - 8, "_inv.csv"))
            continue;
        if (found++ == 0)
            snprintf(out, cap, "%.*s", (int)(n - 8), de->d_name);
    }
    closedir(d);
    if (found != 1)
        return gerr_set(err, found ? EEXIST : ENOENT, "trace directory %s: %s *_inv.csv file", dir,
                        found ? "more than one" : "no");
    return 0;
}

static int load_one(const char *dir, const char *prefix, const char *suffix, char **text, size_t *len,
                    char *name, size_t name_cap, struct gerr *err)
{
    snprintf(name, name_cap, "%s_%s.csv", prefix, suffix);
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return gerr_set(err, ENAMETOOLONG, "trace path too long");
    int r = file_read_all(path, TRACE_MAX_FILE, text, len);
    if (r == -EFBIG)
        return gerr_set(err, EFBIG, "%s: larger than %llu MiB", path, TRACE_MAX_FILE >> 20);
    if (r < 0)
        return gerr_sys(err, -r, "%s", path);
    return 0;
}

int trace_load(const char *dir, const struct trace_limits *lim, struct trace *t, struct gerr *err)
{
    char prefix[256], name[300];
    memset(t, 0, sizeof *t);
    int r = find_prefix(dir, prefix, sizeof prefix, err);
    if (r < 0)
        return r;
    AUTO_FREE char *text = NULL;
    size_t len;
    if ((r = load_one(dir, prefix, "inv", &text, &len, name, sizeof name, err)) < 0)
        return r;
    if ((r = trace_parse_inv(t, name, text, len, lim, err)) < 0)
        return r;
    free(TAKE_PTR(text));
    if ((r = load_one(dir, prefix, "run", &text, &len, name, sizeof name, err)) < 0 ||
        (r = trace_parse_run(t, name, text, len, err)) < 0) {
        trace_free(t);
        return r;
    }
    free(TAKE_PTR(text));
    if ((r = load_one(dir, prefix, "mem", &text, &len, name, sizeof name, err)) < 0 ||
        (r = trace_parse_mem(t, name, text, len, err)) < 0) {
        trace_free(t);
        return r;
    }
    return 0;
}

/* Appends "~c" to hash h (a copy's own name), shortening h when both would not fit. */
static void hash_suffix(char h[TRACE_HASH_MAX + 1], uint32_t c)
{
    char suf[16];
    size_t sl = (size_t)snprintf(suf, sizeof suf, "~%u", c);
    size_t keep = strlen(h);
    if (keep + sl > TRACE_HASH_MAX)
        keep = TRACE_HASH_MAX - sl;
    memcpy(h + keep, suf, sl + 1);
}

int trace_replicate(struct trace *t, uint32_t k, uint64_t seed, struct gerr *err)
{
    if (k == 0)
        return gerr_set(err, EINVAL, "replicate: at least 1 copy of each function");
    size_t n = t->nfns;
    uint32_t nm = t->nminutes;
    /* Functions first: bounded by it, the count of cells cannot overflow. */
    if ((uint64_t)n * k > TRACE_MAX_FUNCTIONS || (uint64_t)n * k * nm > TRACE_MAX_CELLS)
        return gerr_set(err, E2BIG, "replicate: %zu functions x %u copies x %u minutes is more than %u functions "
                        "or %llu counts", n, k, nm, TRACE_MAX_FUNCTIONS, TRACE_MAX_CELLS);
    if (k == 1)
        return 0;
    struct trace_fn *fns = xcalloc(n * k, sizeof *fns);
    uint32_t *counts = xcalloc(n * k * nm, sizeof *counts);
    uint64_t rng = seed;
    for (uint32_t c = 0; c < k; c++) {
        /* The modulo's bias, for a 64-bit draw and at most TRACE_MAX_MINUTES, is below
         * 2^-49: no copy's offset is measurably likelier. */
        uint32_t off = c && nm > 1 ? 1 + (uint32_t)(rng_splitmix64(&rng) % (nm - 1)) : 0;
        for (size_t i = 0; i < n; i++) {
            struct trace_fn *f = &fns[c * n + i];
            *f = t->fns[i];
            if (c) {
                hash_suffix(f->function, c);
                hash_suffix(f->app, c);
            }
            const uint32_t *src = t->counts + i * nm;
            uint32_t *dst = counts + (c * n + i) * nm;
            memcpy(dst, src + off, (nm - off) * sizeof *dst);
            memcpy(dst + (nm - off), src, off * sizeof *dst);
        }
    }
    free(t->fns);
    free(t->counts);
    t->fns = fns;
    t->counts = counts;
    t->nfns = n * k;
    return 0;
}

void trace_free(struct trace *t)
{
    free(t->fns);
    free(t->counts);
    memset(t, 0, sizeof *t);
}
