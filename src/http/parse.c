/* Incremental HTTP/1.1 parsers (request and response). The head is copied into one
 * bounded buffer until the blank line, then parsed in place (names and values become
 * NUL-terminated strings inside it). Bodies go through a byte-exact state machine
 * shared by both parsers: Content-Length, chunked (extensions, trailers), or until
 * close (responses only). */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/util.h"
#include "base/xalloc.h"
#include "http/http.h"

enum {
    S_HEAD,
    S_BODY_CL,
    S_BODY_CLOSE,
    S_CHUNK_SIZE,
    S_CHUNK_DATA,
    S_CHUNK_DATA_CR,
    S_CHUNK_DATA_LF,
    S_TRAILER,
    S_DONE,
    S_ERROR,
};

#define HTTP_CHUNK_LINE_MAX 4096
#define HTTP_KEEP_HEAD_CAP (16u * 1024u)
#define HTTP_KEEP_BODY_CAP (1024u * 1024u)

/* Internal failure kinds, mapped to a status by each parser. */
enum { E_BAD = 400, E_TOO_LARGE = 413, E_HEAD_TOO_LARGE = 431, E_NOT_IMPL = 501, E_VERSION = 505 };

void http_limits_default(struct http_limits *l)
{
    l->max_header_bytes = HTTP_DEFAULT_MAX_HEADER_BYTES;
    l->max_headers = HTTP_DEFAULT_MAX_HEADERS;
    l->max_body = HTTP_DEFAULT_MAX_BODY;
}

/* ---------- character classes ---------- */

/* tchar per RFC 9110 5.6.2. */
static const unsigned char tchar_tab[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1, ['-'] = 1,
    ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1,
    ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
    ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1,
    ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
    ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

static bool is_tchar(unsigned char c)
{
    return tchar_tab[c];
}

/* field-value octets: HTAB, SP, VCHAR, obs-text. */
static bool is_vchar(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

bool http_header_has_token(const char *value, const char *token)
{
    size_t tl = strlen(token);
    const char *p = value;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *s = p;
        while (*p && *p != ',')
            p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - s) == tl && !strncasecmp(s, token, tl))
            return true;
    }
    return false;
}

/* ---------- shared state ---------- */

static void state_init(struct http_parse_state_ *st, const struct http_limits *lim)
{
    memset(st, 0, sizeof *st);
    http_limits_default(&st->lim);
    if (lim) {
        if (lim->max_header_bytes)
            st->lim.max_header_bytes = lim->max_header_bytes;
        if (lim->max_headers)
            st->lim.max_headers = lim->max_headers;
        if (lim->max_body)
            st->lim.max_body = lim->max_body;
    }
    if (st->lim.max_header_bytes < 16)
        st->lim.max_header_bytes = 16;
    st->state = S_HEAD;
}

/* Grows b to hold extra more bytes + NUL, never past ceiling bytes of capacity
 * (ceiling must be >= what is asked for: the callers' limit checks guarantee it, and
 * the ceiling is what bounds a client's allocation). */
static void buf_grow_capped(struct buf *b, size_t extra, size_t ceiling)
{
    size_t need = b->len + extra + 1;
    assert(need <= ceiling);
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need && cap <= ceiling / 2)
        cap *= 2;
    if (cap < need)
        cap = need;
    if (cap > ceiling)
        cap = ceiling;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

static void buf_trim(struct buf *b, size_t keep)
{
    if (b->cap > keep)
        buf_free(b);
    else
        buf_reset(b);
}

static void state_reset(struct http_parse_state_ *st, struct buf *body)
{
    buf_trim(&st->head, HTTP_KEEP_HEAD_CAP);
    buf_trim(body, HTTP_KEEP_BODY_CAP);
    st->head_scan = 0;
    st->state = S_HEAD;
    st->remaining = 0;
    st->line_len = 0;
    st->trailer_bytes = 0;
    st->line_cr = st->size_digits = st->size_ws = st->in_ext = st->trailer_line_start = false;
}

static void state_free(struct http_parse_state_ *st, struct buf *body)
{
    buf_free(&st->head);
    buf_free(body);
    free(st->hdrs);
    st->hdrs = NULL;
    st->hdrs_cap = 0;
}

/* Collects head bytes until CRLFCRLF. Returns 1 with the head complete in st->head
 * (NUL-terminated, ending in the blank line), 0 when all of data was taken and more is
 * needed, or -E_HEAD_TOO_LARGE. *used is what was taken from data. The head never
 * holds more than max_header_bytes. */
static int head_collect(struct http_parse_state_ *st, const char *data, size_t len, size_t *used)
{
    /* A head that reached the limit without its blank line failed the parse. */
    assert(st->head.len < st->lim.max_header_bytes);
    size_t skip = 0;
    if (st->head.len == 0) {
        /* RFC 9112 2.2: ignore empty lines before the start line. */
        while (skip < len && (data[skip] == '\r' || data[skip] == '\n'))
            skip++;
        data += skip;
        len -= skip;
    }
    *used = skip;
    if (!len)
        return 0;
    size_t old = st->head.len, take = 0;
    bool found = false;
    /* A terminator straddling the old bytes and the new ones. */
    if (old) {
        char tmp[6];
        size_t tail = old < 3 ? old : 3, lead = len < 3 ? len : 3;
        memcpy(tmp, st->head.data + old - tail, tail);
        memcpy(tmp + tail, data, lead);
        for (size_t i = 0; i + 4 <= tail + lead; i++) {
            if (!memcmp(tmp + i, "\r\n\r\n", 4) && i + 4 > tail) {
                take = i + 4 - tail;
                found = true;
                break;
            }
        }
    }
    if (!found) {
        const char *e = memmem(data, len, "\r\n\r\n", 4);
        if (e) {
            take = (size_t)(e - data) + 4;
            found = true;
        } else {
            take = len;
        }
    }
    size_t max = st->lim.max_header_bytes;
    if (take > max - old) {
        /* Keep nothing more: the head is over the limit. */
        return -E_HEAD_TOO_LARGE;
    }
    buf_grow_capped(&st->head, take, max + 1);
    memcpy(st->head.data + old, data, take);
    st->head.len = old + take;
    st->head.data[st->head.len] = '\0';
    *used = skip + take;
    if (!found && st->head.len == max)
        return -E_HEAD_TOO_LARGE;
    return found ? 1 : 0;
}

/* Splits the next line off [*p, end): returns its start and NUL-terminates it at the
 * CR; *len is its length. NULL if the line does not end in CRLF (bare LF). */
static char *next_line(char **p, char *end, size_t *len)
{
    char *s = *p;
    char *nl = memchr(s, '\n', (size_t)(end - s));
    if (!nl || nl == s || nl[-1] != '\r')
        return NULL;
    nl[-1] = '\0';
    *len = (size_t)(nl - 1 - s);
    *p = nl + 1;
    return s;
}

/* Parses the header lines that follow the start line, from *p up to the blank line
 * that ends st->head. Fills st->hdrs; returns the count or -E_*. */
static int parse_fields(struct http_parse_state_ *st, char *p, size_t *count)
{
    char *end = st->head.data + st->head.len;
    size_t n = 0;
    for (;;) {
        size_t len;
        char *line = next_line(&p, end, &len);
        if (!line)
            return -E_BAD;
        if (len == 0)
            break;
        if (line[0] == ' ' || line[0] == '\t')
            return -E_BAD; /* obs-fold, or whitespace before the first field */
        size_t i = 0;
        while (i < len && is_tchar((unsigned char)line[i]))
            i++;
        if (i == 0 || i == len || line[i] != ':')
            return -E_BAD;
        line[i] = '\0';
        size_t name_len = i++;
        while (i < len && (line[i] == ' ' || line[i] == '\t'))
            i++;
        size_t vs = i, ve = i;
        for (; i < len; i++) {
            unsigned char c = (unsigned char)line[i];
            if (!is_vchar(c))
                return -E_BAD;
            if (c != ' ' && c != '\t')
                ve = i + 1;
        }
        line[ve] = '\0';
        if (n == st->lim.max_headers)
            return -E_HEAD_TOO_LARGE;
        if (n == st->hdrs_cap) {
            size_t cap = st->hdrs_cap ? st->hdrs_cap * 2 : 16;
            if (cap > st->lim.max_headers)
                cap = st->lim.max_headers;
            st->hdrs = xreallocarray(st->hdrs, cap, sizeof *st->hdrs);
            st->hdrs_cap = cap;
        }
        assert(n < st->hdrs_cap && st->hdrs_cap <= st->lim.max_headers);
        st->hdrs[n++] = (struct http_header){line, line + vs, name_len, ve - vs};
    }
    *count = n;
    return 0;
}

/* Parses a Content-Length value: 1*DIGIT. -E_BAD if malformed, -E_TOO_LARGE if it
 * does not fit in int64. */
static int parse_content_length(const char *v, int64_t *out)
{
    if (!*v)
        return -E_BAD;
    uint64_t n = 0;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9')
            return -E_BAD;
        if (n > ((uint64_t)INT64_MAX - 9) / 10) {
            for (p++; *p; p++)
                if (*p < '0' || *p > '9')
                    return -E_BAD;
            return -E_TOO_LARGE;
        }
        n = n * 10 + (uint64_t)(*p - '0');
    }
    *out = (int64_t)n;
    return 0;
}

/* Framing headers common to requests and responses. */
struct framing {
    int64_t content_length;
    bool chunked;
    bool te_other; /* a Transfer-Encoding we do not decode */
    bool conn_close, conn_keep_alive, expect_continue;
};

static int scan_framing(const struct http_header *h, size_t n, struct framing *f)
{
    memset(f, 0, sizeof *f);
    f->content_length = -1;
    bool te_seen = false;
    for (size_t i = 0; i < n; i++) {
        const char *name = h[i].name, *v = h[i].value;
        switch (h[i].name_len) {
        case 6:
            if (!strcasecmp(name, "expect") && !strcasecmp(v, "100-continue"))
                f->expect_continue = true;
            break;
        case 10:
            if (!strcasecmp(name, "connection")) {
                if (http_header_has_token(v, "close"))
                    f->conn_close = true;
                if (http_header_has_token(v, "keep-alive"))
                    f->conn_keep_alive = true;
            }
            break;
        case 14:
            if (!strcasecmp(name, "content-length")) {
                int64_t cl;
                int r = parse_content_length(v, &cl);
                if (r < 0)
                    return r;
                if (f->content_length >= 0 && f->content_length != cl)
                    return -E_BAD;
                f->content_length = cl;
            }
            break;
        case 17:
            if (!strcasecmp(name, "transfer-encoding")) {
                if (!*v)
                    return -E_BAD;
                if (te_seen || strcasecmp(v, "chunked"))
                    f->te_other = true;
                else
                    f->chunked = true;
                te_seen = true;
            }
            break;
        default:
            break;
        }
    }
    if (te_seen && f->te_other)
        f->chunked = false;
    if (te_seen && f->content_length >= 0)
        return -E_BAD;
    return 0;
}

/* ---------- body state machine ---------- */

struct sink {
    struct buf *body;
    size_t max_body;         /* for accumulation, and of a request's streamed body too */
    size_t ceiling;          /* capacity cap for accumulation */
    http_body_cb cb;         /* streaming instead of accumulating (responses) */
    void *ud;
    const struct http_response *resp;
    http_req_body_fn req_fn; /* streaming a request's body: it takes what it can */
    uint64_t *streamed;      /* with req_fn: bytes it took so far */
};

/* Body bytes the request has had so far: accumulated and streamed. */
static uint64_t sink_total(const struct sink *sk)
{
    return sk->body->len + (sk->streamed ? *sk->streamed : 0);
}

/* Whether n more body bytes would take the body past max_body (never for a response
 * streamed to its callback: its reader bounds it). */
static bool sink_over(const struct sink *sk, uint64_t n)
{
    return !sk->cb && n > sk->max_body - sink_total(sk);
}

/* Puts n body bytes; *took is how many were taken (fewer than n only when a request's
 * req_fn paused). */
static int sink_put(struct sink *sk, const char *d, size_t n, size_t *took)
{
    *took = n;
    if (!n)
        return 0;
    if (sk->cb)
        return sk->cb(sk->ud, sk->resp, d, n) ? -E_BAD - 1 : 0;
    if (sink_over(sk, n))
        return -E_TOO_LARGE;
    if (sk->req_fn) {
        size_t t = sk->req_fn(sk->ud, d, n);
        *took = t < n ? t : n;
        *sk->streamed += *took;
        return 0;
    }
    buf_grow_capped(sk->body, n, sk->ceiling);
    memcpy(sk->body->data + sk->body->len, d, n);
    sk->body->len += n;
    assert(sk->body->len <= sk->max_body);
    sk->body->data[sk->body->len] = '\0';
    return 0;
}

/* Sink failure code for "callback asked to stop". */
#define E_ABORT (-E_BAD - 1)

/* One byte of a chunk-size line. Returns 0, or -E_* . */
static int chunk_size_byte(struct http_parse_state_ *st, struct sink *sk, unsigned char c)
{
    if (++st->line_len > HTTP_CHUNK_LINE_MAX)
        return -E_BAD;
    if (st->line_cr) {
        if (c != '\n' || !st->size_digits)
            return -E_BAD;
        st->line_cr = false;
        st->line_len = 0;
        st->size_digits = false;
        st->size_ws = false;
        st->in_ext = false;
        if (st->remaining == 0) {
            st->state = S_TRAILER;
            st->trailer_line_start = true;
            return 0;
        }
        if (sink_over(sk, st->remaining))
            return -E_TOO_LARGE;
        st->state = S_CHUNK_DATA;
        return 0;
    }
    if (c == '\r') {
        st->line_cr = true;
        return 0;
    }
    if (st->in_ext) {
        if (!is_vchar(c))
            return -E_BAD;
        return 0;
    }
    int h = hex_digit_value(c);
    if (h >= 0 && !st->size_ws) {
        if (st->remaining >> 59)
            return -E_TOO_LARGE;
        st->remaining = st->remaining * 16 + (uint64_t)h;
        st->size_digits = true;
        return 0;
    }
    if (!st->size_digits)
        return -E_BAD;
    if (c == ';') {
        st->in_ext = true;
        return 0;
    }
    if (c == ' ' || c == '\t') {
        /* BWS before ';' is tolerated; digits must not resume after it. */
        st->size_ws = true;
        return 0;
    }
    return -E_BAD;
}

/* One byte of the trailer section. Returns 0, 1 when the section ended, or -E_*. */
static int trailer_byte(struct http_parse_state_ *st, unsigned char c, size_t max_bytes)
{
    if (++st->trailer_bytes > max_bytes)
        return -E_HEAD_TOO_LARGE;
    if (st->line_cr) {
        if (c != '\n')
            return -E_BAD;
        st->line_cr = false;
        if (st->trailer_line_start)
            return 1;
        if (!st->in_ext) /* a field line without a colon */
            return -E_BAD;
        st->trailer_line_start = true;
        st->in_ext = false;
        st->line_len = 0;
        return 0;
    }
    if (c == '\r') {
        st->line_cr = true;
        return 0;
    }
    if (st->trailer_line_start) {
        if (!is_tchar(c))
            return -E_BAD; /* includes obs-fold */
        st->trailer_line_start = false;
        st->line_len = 1;
        return 0;
    }
    if (!st->in_ext) { /* in the name */
        if (c == ':') {
            st->in_ext = true;
            return 0;
        }
        return is_tchar(c) ? 0 : -E_BAD;
    }
    return is_vchar(c) ? 0 : -E_BAD;
}

/* Runs the body states over data. Returns HTTP_DONE / HTTP_NEED_MORE, or -E_*
 * (negative values below HTTP_ERROR) on failure. */
static int body_feed(struct http_parse_state_ *st, struct sink *sk, const char *data, size_t len, size_t *used)
{
    /* Only the body states advance i; any other state here would never end the loop. */
    assert(st->state > S_HEAD && st->state < S_DONE);
    size_t i = 0;
    int r;
    while (i < len) {
        switch (st->state) {
        case S_BODY_CL:
        case S_CHUNK_DATA: {
            size_t n = len - i;
            if ((uint64_t)n > st->remaining)
                n = (size_t)st->remaining;
            size_t took;
            if ((r = sink_put(sk, data + i, n, &took)) < 0)
                return r;
            i += took;
            st->remaining -= took;
            if (st->remaining == 0)
                st->state = st->state == S_BODY_CL ? S_DONE : S_CHUNK_DATA_CR;
            if (took < n) {
                /* The body's reader paused: the rest waits for the next feed. */
                *used = i;
                return HTTP_NEED_MORE;
            }
            break;
        }
        case S_BODY_CLOSE: {
            size_t took;
            if ((r = sink_put(sk, data + i, len - i, &took)) < 0)
                return r;
            i = len;
            break;
        }
        case S_CHUNK_DATA_CR:
            if (data[i++] != '\r')
                return -E_BAD;
            st->state = S_CHUNK_DATA_LF;
            break;
        case S_CHUNK_DATA_LF:
            if (data[i++] != '\n')
                return -E_BAD;
            st->state = S_CHUNK_SIZE;
            st->remaining = 0;
            st->line_len = 0;
            break;
        case S_CHUNK_SIZE:
            if ((r = chunk_size_byte(st, sk, (unsigned char)data[i++])) < 0)
                return r;
            break;
        case S_TRAILER:
            r = trailer_byte(st, (unsigned char)data[i++], st->lim.max_header_bytes);
            if (r < 0)
                return r;
            if (r == 1)
                st->state = S_DONE;
            break;
        default:
            break;
        }
        if (st->state == S_DONE)
            break;
    }
    *used = i;
    return st->state == S_DONE ? HTTP_DONE : HTTP_NEED_MORE;
}

static size_t sink_ceiling(const struct http_parse_state_ *st, int64_t content_length)
{
    if (content_length >= 0 && (uint64_t)content_length < st->lim.max_body)
        return (size_t)content_length + 1;
    return st->lim.max_body + 1;
}

/* ---------- requests ---------- */

void http_request_parser_init(struct http_request_parser *p, const struct http_limits *limits)
{
    memset(p, 0, sizeof *p);
    state_init(&p->st, limits);
    p->req.content_length = -1;
}

void http_request_parser_reset(struct http_request_parser *p)
{
    state_reset(&p->st, &p->req.body);
    struct buf body = p->req.body;
    p->req = (struct http_request){.content_length = -1, .body = body};
    p->head_done = false;
    p->error_status = 0;
    p->error_msg = NULL;
    p->body_fn = NULL;
    p->body_ud = NULL;
    p->streamed = 0;
}

void http_request_parser_stream_body(struct http_request_parser *p, http_req_body_fn fn, void *ud)
{
    p->body_fn = fn;
    p->body_ud = fn ? ud : NULL;
}

void http_request_parser_free(struct http_request_parser *p)
{
    state_free(&p->st, &p->req.body);
}

static int req_fail(struct http_request_parser *p, int code, const char *msg)
{
    p->st.state = S_ERROR;
    p->error_status = code;
    p->error_msg = msg;
    return HTTP_ERROR;
}

static const char *fail_msg(int code)
{
    switch (code) {
    case E_TOO_LARGE:
        return "request body too large";
    case E_HEAD_TOO_LARGE:
        return "request headers too large or too many";
    default:
        return "malformed request";
    }
}

/* Parses the request line in place. */
static int parse_request_line(struct http_request_parser *p, char *line, size_t len)
{
    struct http_request *rq = &p->req;
    size_t i = 0;
    while (i < len && is_tchar((unsigned char)line[i]))
        i++;
    if (i == 0 || i == len || line[i] != ' ')
        return req_fail(p, E_BAD, "malformed request line (method)");
    line[i++] = '\0';
    rq->method = line;
    char *target = line + i;
    while (i < len && line[i] != ' ') {
        unsigned char c = (unsigned char)line[i];
        if (c <= 0x20 || c >= 0x7f || c == '#')
            return req_fail(p, E_BAD, "malformed request target");
        i++;
    }
    if (i == len || target == line + i)
        return req_fail(p, E_BAD, "malformed request line (target)");
    line[i++] = '\0';
    const char *ver = line + i;
    size_t vlen = len - i;
    if (vlen != 8 || memcmp(ver, "HTTP/", 5) || ver[5] < '0' || ver[5] > '9' || ver[6] != '.' || ver[7] < '0' ||
        ver[7] > '9')
        return req_fail(p, E_BAD, "malformed request line (version)");
    if (ver[5] != '1' || ver[7] > '1')
        return req_fail(p, E_VERSION, "HTTP version not supported (use HTTP/1.1)");
    rq->version_minor = ver[7] - '0';

    char *path = target;
    if (!strncasecmp(target, "http://", 7) || !strncasecmp(target, "https://", 8)) {
        char *auth = strstr(target, "://") + 3;
        path = strchr(auth, '/');
        if (!path) {
            char *q = strchr(auth, '?');
            if (q) {
                /* "http://host?x": the path is "/"; shift the query into place. */
                rq->path = "/";
                rq->query = q + 1;
                return 0;
            }
            rq->path = "/";
            rq->query = "";
            return 0;
        }
    } else if (target[0] != '/' && strcmp(target, "*")) {
        return req_fail(p, E_BAD, "malformed request target");
    }
    char *q = strchr(path, '?');
    if (q) {
        *q = '\0';
        rq->query = q + 1;
    } else {
        rq->query = "";
    }
    rq->path = path;
    return 0;
}

/* Parses the complete head in p->st.head and sets up the body. */
static int request_head(struct http_request_parser *p)
{
    struct http_parse_state_ *st = &p->st;
    char *cur = st->head.data, *end = st->head.data + st->head.len;
    size_t len;
    char *line = next_line(&cur, end, &len);
    if (!line)
        return req_fail(p, E_BAD, "malformed request line");
    if (parse_request_line(p, line, len) < 0)
        return HTTP_ERROR;
    size_t n = 0;
    int r = parse_fields(st, cur, &n);
    if (r < 0)
        return req_fail(p, -r, r == -E_HEAD_TOO_LARGE ? "too many header fields" : "malformed header field");
    struct http_request *rq = &p->req;
    rq->headers = st->hdrs;
    rq->nheaders = n;
    struct framing f;
    if ((r = scan_framing(st->hdrs, n, &f)) < 0)
        return req_fail(p, -r,
                        r == -E_TOO_LARGE ? "request body too large" : "invalid Content-Length / Transfer-Encoding");
    if (f.te_other)
        return req_fail(p, E_NOT_IMPL, "unsupported Transfer-Encoding (only chunked)");
    rq->content_length = f.content_length;
    rq->chunked = f.chunked;
    rq->expect_continue = f.expect_continue;
    rq->keep_alive = rq->version_minor >= 1 ? !f.conn_close : (f.conn_keep_alive && !f.conn_close);
    p->head_done = true;
    if (f.chunked) {
        st->state = S_CHUNK_SIZE;
        st->remaining = 0;
        st->line_len = 0;
    } else if (f.content_length > 0) {
        if ((uint64_t)f.content_length > st->lim.max_body)
            return req_fail(p, E_TOO_LARGE, "request body too large");
        st->state = S_BODY_CL;
        st->remaining = (uint64_t)f.content_length;
    } else {
        st->state = S_DONE;
    }
    return HTTP_NEED_MORE;
}

int http_request_feed(struct http_request_parser *p, const void *data, size_t len, size_t *consumed)
{
    struct http_parse_state_ *st = &p->st;
    const char *d = data;
    size_t pos = 0;
    *consumed = 0;
    if (st->state == S_ERROR)
        return HTTP_ERROR;
    if (st->state == S_DONE && p->head_done)
        return HTTP_DONE;
    if (st->state == S_HEAD) {
        size_t used;
        int r = head_collect(st, d, len, &used);
        pos = used;
        *consumed = pos;
        if (r < 0)
            return req_fail(p, -r, fail_msg(-r));
        if (r == 0)
            return HTTP_NEED_MORE;
        if (request_head(p) == HTTP_ERROR)
            return HTTP_ERROR;
    }
    if (st->state != S_DONE) {
        struct sink sk = {&p->req.body, st->lim.max_body, sink_ceiling(st, p->req.content_length), NULL,
                          p->body_ud, NULL, p->body_fn, &p->streamed};
        size_t used = 0;
        int r = body_feed(st, &sk, d + pos, len - pos, &used);
        pos += used;
        *consumed = pos;
        if (r < 0)
            return req_fail(p, -r, r == -E_HEAD_TOO_LARGE ? "chunked trailers too large" : fail_msg(-r));
        if (r == HTTP_NEED_MORE)
            return HTTP_NEED_MORE;
    }
    *consumed = pos;
    return HTTP_DONE;
}

static const char *find_header(const struct http_header *h, size_t n, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < n; i++)
        if (h[i].name_len == len && !strcasecmp(h[i].name, name))
            return h[i].value;
    return NULL;
}

const char *http_request_header(const struct http_request *req, const char *name)
{
    return find_header(req->headers, req->nheaders, name);
}

/* ---------- responses ---------- */

void http_response_parser_init(struct http_response_parser *p, const struct http_limits *limits)
{
    memset(p, 0, sizeof *p);
    state_init(&p->st, limits);
    p->resp.content_length = -1;
}

void http_response_parser_set_body_cb(struct http_response_parser *p, http_body_cb cb, void *ud)
{
    p->body_cb = cb;
    p->body_ud = ud;
}

void http_response_parser_set_head(struct http_response_parser *p, bool head)
{
    p->head_request = head;
}

void http_response_parser_reset(struct http_response_parser *p)
{
    state_reset(&p->st, &p->resp.body);
    struct buf body = p->resp.body;
    p->resp = (struct http_response){.content_length = -1, .body = body};
    p->head_done = false;
    p->head_request = false;
    p->error_status = 0;
    p->error_msg = NULL;
}

void http_response_parser_free(struct http_response_parser *p)
{
    state_free(&p->st, &p->resp.body);
}

static int resp_fail(struct http_response_parser *p, const char *msg)
{
    p->st.state = S_ERROR;
    p->error_msg = msg;
    return HTTP_ERROR;
}

static int response_head(struct http_response_parser *p)
{
    struct http_parse_state_ *st = &p->st;
    struct http_response *rs = &p->resp;
    char *cur = st->head.data, *end = st->head.data + st->head.len;
    size_t len;
    char *line = next_line(&cur, end, &len);
    if (!line || len < 12 || memcmp(line, "HTTP/1.", 7) || (line[7] != '0' && line[7] != '1') || line[8] != ' ')
        return resp_fail(p, "malformed status line");
    rs->version_minor = line[7] - '0';
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (line[i] < '0' || line[i] > '9')
            return resp_fail(p, "malformed status code");
        status = status * 10 + (line[i] - '0');
    }
    if (status < 100 || status > 599 || (len > 12 && line[12] != ' '))
        return resp_fail(p, "malformed status code");
    for (size_t i = 13; i < len; i++)
        if (!is_vchar((unsigned char)line[i]))
            return resp_fail(p, "malformed reason phrase");
    rs->status = status;
    rs->reason = len > 12 ? line + 13 : "";
    size_t n = 0;
    int r = parse_fields(st, cur, &n);
    if (r < 0)
        return resp_fail(p, r == -E_HEAD_TOO_LARGE ? "too many header fields" : "malformed header field");
    rs->headers = st->hdrs;
    rs->nheaders = n;
    struct framing f;
    if (scan_framing(st->hdrs, n, &f) < 0)
        return resp_fail(p, "invalid Content-Length / Transfer-Encoding");
    rs->keep_alive = rs->version_minor >= 1 ? !f.conn_close : (f.conn_keep_alive && !f.conn_close);
    p->head_done = true;
    if (p->head_request || status < 200 || status == 204 || status == 304) {
        rs->content_length = f.content_length;
        st->state = S_DONE;
        return HTTP_NEED_MORE;
    }
    if (f.chunked) {
        rs->chunked = true;
        st->state = S_CHUNK_SIZE;
        st->remaining = 0;
        st->line_len = 0;
    } else if (f.te_other || f.content_length < 0) {
        rs->until_close = true;
        rs->keep_alive = false;
        st->state = S_BODY_CLOSE;
    } else {
        rs->content_length = f.content_length;
        if (!p->body_cb && (uint64_t)f.content_length > st->lim.max_body)
            return resp_fail(p, "response body too large");
        st->remaining = (uint64_t)f.content_length;
        st->state = f.content_length ? S_BODY_CL : S_DONE;
    }
    return HTTP_NEED_MORE;
}

static const char *resp_body_msg(int r)
{
    switch (r) {
    case -E_TOO_LARGE:
        return "response body too large";
    case -E_HEAD_TOO_LARGE:
        return "chunked trailers too large";
    case E_ABORT:
        return "stopped by the body callback";
    default:
        return "malformed response body";
    }
}

int http_response_feed(struct http_response_parser *p, const void *data, size_t len, size_t *consumed)
{
    struct http_parse_state_ *st = &p->st;
    const char *d = data;
    size_t pos = 0;
    *consumed = 0;
    if (st->state == S_ERROR)
        return HTTP_ERROR;
    if (st->state == S_DONE && p->head_done)
        return HTTP_DONE;
    if (st->state == S_HEAD) {
        size_t used;
        int r = head_collect(st, d, len, &used);
        pos = used;
        *consumed = pos;
        if (r < 0)
            return resp_fail(p, "response headers too large");
        if (r == 0)
            return HTTP_NEED_MORE;
        if (response_head(p) == HTTP_ERROR)
            return HTTP_ERROR;
    }
    if (st->state != S_DONE) {
        struct sink sk = {&p->resp.body, st->lim.max_body, sink_ceiling(st, p->resp.content_length), p->body_cb,
                          p->body_ud, &p->resp, NULL, NULL};
        size_t used = 0;
        int r = body_feed(st, &sk, d + pos, len - pos, &used);
        pos += used;
        *consumed = pos;
        if (r < 0)
            return resp_fail(p, resp_body_msg(r));
        if (r == HTTP_NEED_MORE)
            return HTTP_NEED_MORE;
    }
    *consumed = pos;
    return HTTP_DONE;
}

int http_response_eof(struct http_response_parser *p)
{
    if (p->st.state == S_DONE && p->head_done)
        return HTTP_DONE;
    if (p->st.state == S_BODY_CLOSE) {
        p->st.state = S_DONE;
        return HTTP_DONE;
    }
    if (p->st.state == S_ERROR)
        return HTTP_ERROR;
    return resp_fail(p, "connection closed before the response was complete");
}

const char *http_response_header(const struct http_response *resp, const char *name)
{
    return find_header(resp->headers, resp->nheaders, name);
}
