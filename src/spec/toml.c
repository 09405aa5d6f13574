/* TOML subset reader producing a jansson tree (contract in spec.h).
 *
 * The reader is a single pass recursive-descent parser over the byte buffer. TOML's
 * rules about which tables may be reopened need per-table state that jansson values
 * cannot carry, so it is kept in a small pointer-keyed hash (struct toml_meta).
 *
 * The whole document is checked to be UTF-8 first, and escapes only produce scalar
 * values other than NUL, so every jansson call below gets valid arguments: it can fail
 * only on allocation, which aborts under gustd's allocator (xmalloc). Their results are
 * therefore not checked. */
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/json_cleanup.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "spec/spec.h"

#define TOML_MAX_DEPTH 64
#define TOML_MAX_KEY_PARTS 32

/* Per-table flags. */
enum {
    TOML_IMPLICIT = 1u << 0, /* created as a prefix of a [header]; may be defined once later */
    TOML_EXPLICIT = 1u << 1, /* defined by [header] or [[header]] */
    TOML_DOTTED = 1u << 2,   /* created by a dotted key; may be extended by dotted keys */
    TOML_INLINE = 1u << 3,   /* inline table: closed */
    TOML_AOT = 1u << 4,      /* array created by [[header]]; other arrays are closed */
};

struct toml_meta_ent {
    const void *key;
    unsigned flags;
};

struct toml_meta {
    struct toml_meta_ent *tab;
    size_t cap; /* power of two or 0 */
    size_t n;
};

struct toml_key {
    char *parts[TOML_MAX_KEY_PARTS];
    size_t n;
};

struct toml_p {
    const char *s;
    size_t len;
    size_t pos;
    struct gerr *err;
    json_t *root;
    json_t *cur;      /* table receiving key/value lines */
    int cur_depth;    /* nesting depth of cur below root */
    struct toml_meta meta;
};

static size_t toml_meta_slot(const struct toml_meta *m, const void *key)
{
    uintptr_t h = (uintptr_t)key;
    h ^= h >> 17;
    h *= (uintptr_t)0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    size_t i = (size_t)h & (m->cap - 1);
    while (m->tab[i].key && m->tab[i].key != key)
        i = (i + 1) & (m->cap - 1);
    return i;
}

static unsigned toml_meta_get(const struct toml_meta *m, const void *key)
{
    if (!m->cap)
        return 0;
    return m->tab[toml_meta_slot(m, key)].flags;
}

/* Sets the flags of key (inserting it). */
static void toml_meta_set(struct toml_meta *m, const void *key, unsigned flags)
{
    if ((m->n + 1) * 2 > m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 64;
        struct toml_meta_ent *nt = xcalloc(ncap, sizeof *nt);
        struct toml_meta old = *m;
        m->tab = nt;
        m->cap = ncap;
        for (size_t i = 0; i < old.cap; i++)
            if (old.tab[i].key)
                m->tab[toml_meta_slot(m, old.tab[i].key)] = old.tab[i];
        free(old.tab);
    }
    size_t i = toml_meta_slot(m, key);
    if (!m->tab[i].key) {
        m->tab[i].key = key;
        m->n++;
    }
    m->tab[i].flags = flags;
    /* At most half full, so the linear probe in toml_meta_slot always ends. */
    assert(m->n * 2 <= m->cap);
}

static void toml_key_clear(struct toml_key *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->parts[i]);
    k->n = 0;
}

static void toml_cleanup_key(struct toml_key *k)
{
    toml_key_clear(k);
}
#define AUTO_TOML_KEY __attribute__((cleanup(toml_cleanup_key)))

/* Fails at byte offset `at` with "TOML syntax error at line L, column C: ...". */
__attribute__((format(printf, 3, 4))) static int toml_fail(struct toml_p *p, size_t at,
                                                            const char *fmt, ...)
{
    size_t line = 1, col = 1;
    if (at > p->len)
        at = p->len;
    for (size_t i = 0; i < at; i++) {
        if (p->s[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    char what[GERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return gerr_set(p->err, EINVAL, "TOML syntax error at line %zu, column %zu: %s", line, col,
                    what);
}

/* Describes the byte at pos for messages: 'x', "end of input", "newline" or a code. */
static void toml_describe_at(const struct toml_p *p, size_t pos, char out[32])
{
    if (pos >= p->len) {
        snprintf(out, 32, "end of input");
        return;
    }
    unsigned char c = (unsigned char)p->s[pos];
    if (c == '\n' || c == '\r')
        snprintf(out, 32, "end of line");
    else if (c >= 0x21 && c < 0x7f)
        snprintf(out, 32, "'%c'", c);
    else if (c == ' ' || c == '\t')
        snprintf(out, 32, "whitespace");
    else
        snprintf(out, 32, "byte 0x%02x", c);
}

/* Fails at p->pos with "expected WHAT, got GOT": WHAT is formatted from fmt and GOT
 * describes the byte there (see toml_describe_at). */
__attribute__((format(printf, 2, 3))) static int toml_fail_expected(struct toml_p *p,
                                                                     const char *fmt, ...)
{
    char what[GERR_MSG_MAX], got[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    toml_describe_at(p, p->pos, got);
    return toml_fail(p, p->pos, "expected %s, got %s", what, got);
}

static bool toml_is_bare(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
}

/* Renders a dotted key (first n parts) for messages: bare parts as is, others in
 * quotes with control characters, quotes and backslashes escaped; each part cut at a
 * character boundary after about 40 bytes. The result stays valid UTF-8. */
static void toml_key_str(const struct toml_key *k, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const unsigned char *s = (const unsigned char *)k->parts[i];
        bool bare = *s != '\0';
        for (const unsigned char *q = s; *q; q++)
            if (!toml_is_bare(*q))
                bare = false;
        char part[200];
        size_t pl = 0;
        if (!bare)
            part[pl++] = '"';
        for (size_t j = 0; s[j]; j++) {
            if (j >= 40 && (s[j] & 0xc0) != 0x80) {
                pl += (size_t)snprintf(part + pl, sizeof part - pl, "...");
                break;
            }
            if (s[j] < 0x20 || s[j] == 0x7f)
                pl += (size_t)snprintf(part + pl, sizeof part - pl, "\\x%02x", s[j]);
            else if (s[j] == '"' || s[j] == '\\')
                pl += (size_t)snprintf(part + pl, sizeof part - pl, "\\%c", s[j]);
            else
                part[pl++] = (char)s[j];
        }
        if (!bare)
            part[pl++] = '"';
        part[pl] = '\0';
        if (o + pl + 2 >= cap)
            break;
        o += (size_t)snprintf(out + o, cap - o, "%s%s", i ? "." : "", part);
    }
}

/* Offset of the first invalid UTF-8 sequence, or len. Rejects overlongs and surrogates. */
static size_t toml_utf8_check(const char *s, size_t len)
{
    size_t i = 0, n;
    uint32_t cp;
    while (i < len && (n = utf8_decode(s + i, len - i, &cp)) > 0)
        i += n;
    return i;
}

static bool toml_at_eof(const struct toml_p *p)
{
    return p->pos >= p->len;
}

static int toml_peek(const struct toml_p *p, size_t ahead)
{
    return p->pos + ahead < p->len ? (unsigned char)p->s[p->pos + ahead] : -1;
}

static void toml_skip_ws(struct toml_p *p)
{
    while (!toml_at_eof(p) && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t'))
        p->pos++;
}

/* True at "\n" or "\r\n". */
static bool toml_at_newline(const struct toml_p *p)
{
    return toml_peek(p, 0) == '\n' || (toml_peek(p, 0) == '\r' && toml_peek(p, 1) == '\n');
}

static void toml_skip_newline(struct toml_p *p)
{
    p->pos += p->s[p->pos] == '\r' ? 2 : 1;
}

/* At '#': consumes the comment up to (not including) the line end. */
static int toml_skip_comment(struct toml_p *p)
{
    p->pos++;
    while (!toml_at_eof(p) && !toml_at_newline(p)) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return toml_fail(p, p->pos, "control character (byte 0x%02x) in comment", c);
        p->pos++;
    }
    return 0;
}

/* Skips whitespace, comments and newlines (inside arrays). */
static int toml_skip_ws_nl(struct toml_p *p)
{
    for (;;) {
        toml_skip_ws(p);
        if (toml_peek(p, 0) == '#') {
            int r = toml_skip_comment(p);
            if (r < 0)
                return r;
        } else if (toml_at_newline(p)) {
            toml_skip_newline(p);
        } else {
            return 0;
        }
    }
}

/* After an expression: whitespace, an optional comment, then a line end or EOF. */
static int toml_expect_eol(struct toml_p *p, const char *after)
{
    toml_skip_ws(p);
    if (toml_peek(p, 0) == '#') {
        int r = toml_skip_comment(p);
        if (r < 0)
            return r;
    }
    if (toml_at_eof(p))
        return 0;
    if (toml_at_newline(p)) {
        toml_skip_newline(p);
        return 0;
    }
    return toml_fail_expected(p, "end of line after %s", after);
}

static int toml_hex(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void toml_append_utf8(struct buf *b, uint32_t cp)
{
    assert(cp <= 0x10ffff);
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (char)(0xf0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    buf_append(b, u, n);
}

/* Parses the escape after a backslash at p->pos (the backslash) in a basic string. */
static int toml_escape(struct toml_p *p, bool multiline, struct buf *out)
{
    size_t start = p->pos;
    int e = toml_peek(p, 1);
    const char *simple = NULL;
    switch (e) {
    case 'b': simple = "\b"; break;
    case 't': simple = "\t"; break;
    case 'n': simple = "\n"; break;
    case 'f': simple = "\f"; break;
    case 'r': simple = "\r"; break;
    case '"': simple = "\""; break;
    case '\\': simple = "\\"; break;
    default: break;
    }
    if (simple) {
        p->pos += 2;
        buf_append(out, simple, 1);
        return 0;
    }
    if (e == 'u' || e == 'U') {
        size_t n = e == 'u' ? 4 : 8;
        uint32_t cp = 0;
        for (size_t i = 0; i < n; i++) {
            int h = toml_hex(toml_peek(p, 2 + i));
            if (h < 0)
                return toml_fail(p, start, "\\%c needs exactly %zu hex digits", e, n);
            cp = (cp << 4) | (uint32_t)h;
        }
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return toml_fail(p, start, "\\%c escape is not a Unicode scalar value", e);
        if (cp == 0)
            return toml_fail(p, start, "NUL characters are not allowed in strings");
        p->pos += 2 + n;
        toml_append_utf8(out, cp);
        return 0;
    }
    if (multiline && (e == ' ' || e == '\t' || e == '\n' || e == '\r')) {
        /* Line-ending backslash: trims whitespace and newlines up to the next content. */
        p->pos++;
        toml_skip_ws(p);
        if (!toml_at_newline(p))
            return toml_fail(p, start, "a line-ending backslash must be the last thing on the line");
        while (!toml_at_eof(p)) {
            if (p->s[p->pos] == ' ' || p->s[p->pos] == '\t')
                p->pos++;
            else if (toml_at_newline(p))
                toml_skip_newline(p);
            else
                break;
        }
        return 0;
    }
    if (e < 0)
        return toml_fail(p, start, "unterminated string");
    char got[32];
    toml_describe_at(p, p->pos + 1, got);
    return toml_fail(p, start, "invalid escape sequence: backslash followed by %s "
                               "(use \\\\ for a backslash)", got);
}

/* Parses a basic ('"') or literal ('\'') string, single or multi-line, at p->pos. */
static int toml_string(struct toml_p *p, bool allow_multiline, struct buf *out)
{
    size_t start = p->pos;
    char q = p->s[p->pos];
    bool ml = toml_peek(p, 1) == q && toml_peek(p, 2) == q;
    if (ml && !allow_multiline)
        return toml_fail(p, start, "multi-line strings cannot be used as keys");
    p->pos += ml ? 3 : 1;
    if (ml && toml_at_newline(p))
        toml_skip_newline(p);
    for (;;) {
        if (toml_at_eof(p))
            return toml_fail(p, start, "unterminated string (missing closing %s)",
                             q == '"' ? (ml ? "\"\"\"" : "\"") : (ml ? "'''" : "'"));
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == (unsigned char)q) {
            if (!ml) {
                p->pos++;
                return 0;
            }
            size_t run = 0;
            while (toml_peek(p, run) == q)
                run++;
            if (run >= 3) {
                if (run > 5)
                    return toml_fail(p, p->pos, "too many quotes at the end of a multi-line string");
                buf_append(out, p->s + p->pos, run - 3);
                p->pos += run;
                return 0;
            }
            buf_append(out, p->s + p->pos, run);
            p->pos += run;
            continue;
        }
        if (c == '\\' && q == '"') {
            int r = toml_escape(p, ml, out);
            if (r < 0)
                return r;
            continue;
        }
        if (toml_at_newline(p)) {
            if (!ml)
                return toml_fail(p, p->pos, "newline in a single-line string (close the string "
                                            "or use a multi-line string)");
            toml_skip_newline(p);
            buf_append(out, "\n", 1);
            continue;
        }
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return toml_fail(p, p->pos, "control character (byte 0x%02x) in a string; "
                                        "use an escape such as \\n or \\u0001", c);
        buf_append(out, &p->s[p->pos], 1);
        p->pos++;
    }
}

/* toml_string that also rejects a result holding NUL ("... not allowed in WHERE"). */
static int toml_string_no_nul(struct toml_p *p, bool allow_multiline, const char *where,
                              struct buf *out)
{
    int r = toml_string(p, allow_multiline, out);
    if (r < 0)
        return r;
    if (out->len != strlen(out->data ? out->data : ""))
        return toml_fail(p, p->pos, "NUL characters are not allowed in %s", where);
    return 0;
}

/* Parses a (possibly dotted) key at p->pos into k. */
static int toml_parse_key(struct toml_p *p, struct toml_key *k)
{
    for (;;) {
        toml_skip_ws(p);
        if (k->n == TOML_MAX_KEY_PARTS)
            return toml_fail(p, p->pos, "key has too many dotted parts (at most %d)",
                             TOML_MAX_KEY_PARTS);
        int c = toml_peek(p, 0);
        if (c == '"' || c == '\'') {
            AUTO_BUF struct buf b = {0};
            int r = toml_string_no_nul(p, false, "keys", &b);
            if (r < 0)
                return r;
            k->parts[k->n++] = b.data ? buf_steal(&b, NULL) : xstrdup("");
        } else if (toml_is_bare(c)) {
            size_t st = p->pos;
            while (toml_is_bare(toml_peek(p, 0)))
                p->pos++;
            k->parts[k->n++] = xstrndup(p->s + st, p->pos - st);
        } else {
            return toml_fail_expected(p, "a key (letters, digits, _ and -, or a quoted string)");
        }
        toml_skip_ws(p);
        if (toml_peek(p, 0) != '.')
            return 0;
        p->pos++;
    }
}

static int toml_parse_value(struct toml_p *p, int depth, json_t **out);

/* Checks that tok[*i..] is a run of digits (per `ok`) with single underscores only
 * between digits; advances *i. Returns the number of digits, or -1 on a bad
 * underscore. */
static int toml_digits(const char *tok, size_t len, size_t *i, int (*ok)(int))
{
    int n = 0;
    bool prev_digit = false;
    while (*i < len) {
        char c = tok[*i];
        if (ok(c)) {
            n++;
            prev_digit = true;
        } else if (c == '_') {
            if (!prev_digit || *i + 1 >= len || !ok(tok[*i + 1]))
                return -1;
            prev_digit = false;
        } else {
            break;
        }
        (*i)++;
    }
    return n;
}

static int toml_is_dec(int c) { return c >= '0' && c <= '9'; }
static int toml_is_hexd(int c) { return toml_hex(c) >= 0; }
static int toml_is_oct(int c) { return c >= '0' && c <= '7'; }
static int toml_is_bin(int c) { return c == '0' || c == '1'; }

/* Parses a number, boolean or (rejected) date token at p->pos. */
static int toml_scalar(struct toml_p *p, json_t **out)
{
    size_t start = p->pos;
    size_t end = start;
    while (end < p->len) {
        char c = p->s[end];
        if (toml_is_bare(c) || c == '+' || c == '.' || c == ':')
            end++;
        else
            break;
    }
    const char *tok = p->s + start;
    size_t len = end - start;
    int shown = (int)(len > 40 ? 40 : len); /* bytes of the token quoted in messages */
    if (len == 0)
        return toml_fail_expected(p, "a value (string, number, true/false, array or inline "
                                     "table)");
    if ((len == 4 && !memcmp(tok, "true", 4)) || (len == 5 && !memcmp(tok, "false", 5))) {
        *out = json_boolean(len == 4);
        p->pos = end;
        return 0;
    }
    size_t i = 0;
    bool neg = false, sign = false;
    if (tok[0] == '+' || tok[0] == '-') {
        neg = tok[0] == '-';
        sign = true;
        i = 1;
    }
    if ((len - i == 3 && (!memcmp(tok + i, "inf", 3) || !memcmp(tok + i, "nan", 3))))
        return toml_fail(p, start, "inf and nan are not supported");
    if (len >= 5 && toml_is_dec(tok[0]) && toml_is_dec(tok[1]) &&
        ((toml_is_dec(tok[2]) && toml_is_dec(tok[3]) && tok[4] == '-') || tok[2] == ':'))
        return toml_fail(p, start, "dates and times are not supported; write them as strings");
    if (i >= len || !toml_is_dec(tok[i]) || len > 512) {
        if (len > 512 || (i < len && tok[i] >= 'A' && tok[i] <= 'z'))
            return toml_fail(p, start, "invalid value '%.*s' (strings must be quoted)", shown, tok);
        return toml_fail(p, start, "invalid number '%.*s'", shown, tok);
    }
    int base = 10;
    int (*ok)(int) = toml_is_dec;
    if (tok[i] == '0' && i + 1 < len && (tok[i + 1] == 'x' || tok[i + 1] == 'o' || tok[i + 1] == 'b')) {
        if (sign)
            return toml_fail(p, start, "hex, octal and binary integers cannot have a sign");
        base = tok[i + 1] == 'x' ? 16 : tok[i + 1] == 'o' ? 8 : 2;
        ok = base == 16 ? toml_is_hexd : base == 8 ? toml_is_oct : toml_is_bin;
        i += 2;
    }
    size_t int_start = i;
    int nd = toml_digits(tok, len, &i, ok);
    if (nd <= 0)
        return toml_fail(p, start, "invalid number '%.*s' (underscores must sit between digits)",
                         shown, tok);
    bool is_float = false;
    if (base == 10 && nd > 1 && tok[int_start] == '0')
        return toml_fail(p, start, "leading zeros are not allowed in '%.*s'", shown, tok);
    if (base == 10 && i < len && tok[i] == '.') {
        i++;
        if (toml_digits(tok, len, &i, toml_is_dec) <= 0)
            return toml_fail(p, start, "invalid float '%.*s' (a digit must follow the '.')",
                             shown, tok);
        is_float = true;
    }
    if (base == 10 && i < len && (tok[i] == 'e' || tok[i] == 'E')) {
        i++;
        if (i < len && (tok[i] == '+' || tok[i] == '-'))
            i++;
        if (toml_digits(tok, len, &i, toml_is_dec) <= 0)
            return toml_fail(p, start, "invalid float '%.*s' (bad exponent)", shown, tok);
        is_float = true;
    }
    if (i != len)
        return toml_fail(p, start, "invalid number '%.*s'", shown, tok);
    if (is_float) {
        char clean[513];
        size_t o = 0;
        for (size_t j = 0; j < len; j++)
            if (tok[j] != '_')
                clean[o++] = tok[j];
        clean[o] = '\0';
        double d = strtod(clean, NULL);
        if (!isfinite(d))
            return toml_fail(p, start, "float '%.*s' is out of range", shown, tok);
        *out = json_real(d);
    } else {
        uint64_t mag = 0;
        uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        for (size_t j = int_start; j < len; j++) {
            if (tok[j] == '_')
                continue;
            uint64_t dv = (uint64_t)toml_hex(tok[j]);
            if (mag > (limit - dv) / (uint64_t)base)
                return toml_fail(p, start, "integer '%.*s' does not fit in 64 bits", shown, tok);
            mag = mag * (uint64_t)base + dv;
        }
        json_int_t v = neg ? (mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(json_int_t)mag)
                           : (json_int_t)mag;
        *out = json_integer(v);
    }
    p->pos = end;
    return 0;
}

static int toml_parse_array(struct toml_p *p, int depth, json_t **out)
{
    size_t start = p->pos;
    AUTO_JSON json_t *arr = json_array();
    p->pos++;
    for (;;) {
        int r = toml_skip_ws_nl(p);
        if (r < 0)
            return r;
        if (toml_peek(p, 0) == ']') {
            p->pos++;
            break;
        }
        if (toml_at_eof(p))
            return toml_fail(p, start, "unterminated array (missing ']')");
        json_t *v = NULL;
        r = toml_parse_value(p, depth + 1, &v);
        if (r < 0)
            return r;
        json_array_append_new(arr, v);
        r = toml_skip_ws_nl(p);
        if (r < 0)
            return r;
        if (toml_peek(p, 0) == ',') {
            p->pos++;
        } else if (toml_peek(p, 0) == ']') {
            p->pos++;
            break;
        } else if (toml_at_eof(p)) {
            return toml_fail(p, start, "unterminated array (missing ']')");
        } else {
            return toml_fail_expected(p, "',' or ']' in array");
        }
    }
    *out = TAKE_PTR(arr);
    return 0;
}

/* Stores child (a new table or array, owned) under key in table t and records its
 * flags. Returns child (borrowed from t). */
static json_t *toml_add_child(struct toml_p *p, json_t *t, const char *key, json_t *child,
                              unsigned flags)
{
    json_object_set_new(t, key, child);
    toml_meta_set(&p->meta, child, flags);
    return child;
}

/* Stores val (owned; consumed on every path) under the dotted key k in table tbl,
 * creating intermediate dotted tables. keypos locates the key for messages. */
static int toml_set_kv(struct toml_p *p, json_t *tbl, const struct toml_key *k, json_t *val,
                       size_t keypos)
{
    AUTO_JSON json_t *v = val;
    json_t *t = tbl;
    char ks[160];
    for (size_t i = 0; i + 1 < k->n; i++) {
        json_t *child = json_object_get(t, k->parts[i]);
        if (!child) {
            child = toml_add_child(p, t, k->parts[i], json_object(), TOML_DOTTED);
        } else if (!json_is_object(child) || !(toml_meta_get(&p->meta, child) & TOML_DOTTED) ||
                   (toml_meta_get(&p->meta, child) & TOML_INLINE)) {
            toml_key_str(k, i + 1, ks, sizeof ks);
            return toml_fail(p, keypos, "cannot add keys to '%s': it is already defined %s", ks,
                             json_is_object(child) ? "as a table elsewhere" : "as a value");
        }
        t = child;
    }
    if (json_object_get(t, k->parts[k->n - 1])) {
        toml_key_str(k, k->n, ks, sizeof ks);
        return toml_fail(p, keypos, "duplicate key '%s'", ks);
    }
    json_object_set_new(t, k->parts[k->n - 1], TAKE_PTR(v));
    return 0;
}

/* Parses "key = value" at p->pos into tbl, a table at nesting depth `depth`. */
static int toml_parse_kv(struct toml_p *p, json_t *tbl, int depth)
{
    size_t keypos = p->pos;
    AUTO_TOML_KEY struct toml_key k = {0};
    int r = toml_parse_key(p, &k);
    if (r < 0)
        return r;
    if (toml_peek(p, 0) != '=')
        return toml_fail_expected(p, "'=' after key");
    p->pos++;
    toml_skip_ws(p);
    json_t *v = NULL;
    r = toml_parse_value(p, depth + (int)k.n, &v);
    if (r < 0)
        return r;
    return toml_set_kv(p, tbl, &k, v, keypos);
}

static int toml_parse_inline_table(struct toml_p *p, int depth, json_t **out)
{
    size_t start = p->pos;
    AUTO_JSON json_t *tbl = json_object();
    toml_meta_set(&p->meta, tbl, TOML_INLINE);
    p->pos++;
    toml_skip_ws(p);
    if (toml_peek(p, 0) == '}') {
        p->pos++;
        *out = TAKE_PTR(tbl);
        return 0;
    }
    for (;;) {
        toml_skip_ws(p);
        if (toml_at_eof(p))
            return toml_fail(p, start, "unterminated inline table (missing '}')");
        if (toml_at_newline(p))
            return toml_fail(p, p->pos, "inline tables must be on one line (use a [table] "
                                        "section for longer tables)");
        if (toml_peek(p, 0) == '}')
            return toml_fail(p, p->pos, "trailing comma is not allowed in an inline table");
        int r = toml_parse_kv(p, tbl, depth);
        if (r < 0)
            return r;
        toml_skip_ws(p);
        if (toml_peek(p, 0) == ',') {
            p->pos++;
        } else if (toml_peek(p, 0) == '}') {
            p->pos++;
            break;
        } else if (toml_at_newline(p)) {
            return toml_fail(p, p->pos, "inline tables must be on one line (use a [table] "
                                        "section for longer tables)");
        } else {
            return toml_fail_expected(p, "',' or '}' in inline table");
        }
    }
    *out = TAKE_PTR(tbl);
    return 0;
}

static int toml_parse_value(struct toml_p *p, int depth, json_t **out)
{
    *out = NULL;
    if (depth > TOML_MAX_DEPTH)
        return toml_fail(p, p->pos, "nesting is too deep (at most %d levels)", TOML_MAX_DEPTH);
    int c = toml_peek(p, 0);
    if (c == '"' || c == '\'') {
        AUTO_BUF struct buf b = {0};
        int r = toml_string_no_nul(p, true, "strings", &b);
        if (r < 0)
            return r;
        *out = json_stringn(b.data ? b.data : "", b.len);
        return 0;
    }
    if (c == '[')
        return toml_parse_array(p, depth, out);
    if (c == '{')
        return toml_parse_inline_table(p, depth, out);
    return toml_scalar(p, out);
}

/* At '[': a [table] or [[array of tables]] header line. */
static int toml_parse_header(struct toml_p *p)
{
    size_t start = p->pos;
    bool aot = toml_peek(p, 1) == '[';
    p->pos += aot ? 2 : 1;
    AUTO_TOML_KEY struct toml_key k = {0};
    int r = toml_parse_key(p, &k);
    if (r < 0)
        return r;
    if (toml_peek(p, 0) != ']' || (aot && toml_peek(p, 1) != ']')) {
        return toml_fail_expected(p, "'%s' to close the table header", aot ? "]]" : "]");
    }
    p->pos += aot ? 2 : 1;
    r = toml_expect_eol(p, "the table header");
    if (r < 0)
        return r;

    char ks[160];
    json_t *t = p->root;
    int depth = 0;
    for (size_t i = 0; i + 1 < k.n; i++) {
        json_t *child = json_object_get(t, k.parts[i]);
        depth++;
        if (!child) {
            child = toml_add_child(p, t, k.parts[i], json_object(), TOML_IMPLICIT);
        } else if (json_is_object(child)) {
            if (toml_meta_get(&p->meta, child) & TOML_INLINE) {
                toml_key_str(&k, i + 1, ks, sizeof ks);
                return toml_fail(p, start, "cannot extend '%s': it is an inline table", ks);
            }
        } else if (json_is_array(child) && (toml_meta_get(&p->meta, child) & TOML_AOT)) {
            child = json_array_get(child, json_array_size(child) - 1);
            depth++;
        } else {
            toml_key_str(&k, i + 1, ks, sizeof ks);
            return toml_fail(p, start, "cannot define a table under '%s': it is already a %s",
                             ks, json_is_array(child) ? "static array" : "value");
        }
        t = child;
    }
    const char *last = k.parts[k.n - 1];
    json_t *child = json_object_get(t, last);
    toml_key_str(&k, k.n, ks, sizeof ks);
    depth++;
    if (!aot) {
        if (!child) {
            child = toml_add_child(p, t, last, json_object(), TOML_EXPLICIT);
        } else if (json_is_object(child)) {
            unsigned fl = toml_meta_get(&p->meta, child);
            if (fl != TOML_IMPLICIT)
                return toml_fail(p, start, "table [%s] is defined more than once%s", ks,
                                 (fl & TOML_INLINE)   ? " (already an inline table)"
                                 : (fl & TOML_DOTTED) ? " (already defined by dotted keys)"
                                                      : "");
            toml_meta_set(&p->meta, child, TOML_EXPLICIT);
        } else {
            return toml_fail(p, start, "cannot define table [%s]: the key is already %s", ks,
                             json_is_array(child) ? "an array (use [[...]] for arrays of tables)"
                                                  : "a value");
        }
    } else {
        if (!child) {
            child = toml_add_child(p, t, last, json_array(), TOML_AOT);
        } else if (!json_is_array(child) || !(toml_meta_get(&p->meta, child) & TOML_AOT)) {
            return toml_fail(p, start, "cannot append to [[%s]]: the key is already %s", ks,
                             json_is_array(child) ? "a static array" : json_is_object(child) ? "a table" : "a value");
        }
        json_t *elem = json_object();
        json_array_append_new(child, elem);
        toml_meta_set(&p->meta, elem, TOML_EXPLICIT);
        child = elem;
        depth++;
    }
    p->cur = child;
    p->cur_depth = depth;
    return 0;
}

static int toml_parse_kv_line(struct toml_p *p)
{
    int r = toml_parse_kv(p, p->cur, p->cur_depth);
    return r < 0 ? r : toml_expect_eol(p, "the value");
}

int toml_parse(const char *text, size_t len, json_t **out, struct gerr *err)
{
    *out = NULL;
    if (len > SPEC_DOC_MAX)
        return gerr_set(err, EINVAL, "TOML document is too large (%zu bytes); the limit is %d "
                                     "bytes", len, SPEC_DOC_MAX);
    struct toml_p p = {.s = text, .len = len, .err = err};
    size_t bad = toml_utf8_check(text, len);
    if (bad < len)
        return toml_fail(&p, bad, "invalid UTF-8");
    AUTO_JSON json_t *root = json_object();
    p.root = root;
    p.cur = root;
    int r = 0;
    while (r == 0 && !toml_at_eof(&p)) {
        toml_skip_ws(&p);
        int c = toml_peek(&p, 0);
        if (c < 0)
            break;
        if (c == '#' || toml_at_newline(&p))
            r = toml_expect_eol(&p, "the comment");
        else if (c == '[')
            r = toml_parse_header(&p);
        else
            r = toml_parse_kv_line(&p);
    }
    free(p.meta.tab);
    if (r < 0)
        return r;
    *out = TAKE_PTR(root);
    return 0;
}
