/* Request-target helpers: percent-decoding, path segments, query parameters. */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "http/http.h"

static int hexv(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int http_pct_decode(const char *in, size_t len, bool plus_space, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '%') {
            if (i + 2 >= len)
                return -EINVAL;
            int hi = hexv((unsigned char)in[i + 1]), lo = hexv((unsigned char)in[i + 2]);
            if (hi < 0 || lo < 0)
                return -EINVAL;
            c = (unsigned char)(hi * 16 + lo);
            if (c == 0)
                return -EINVAL;
            i += 2;
        } else if (c == '+' && plus_space) {
            c = ' ';
        } else if (c == 0) {
            return -EINVAL;
        }
        if (o + 1 >= cap)
            return -ENOSPC;
        out[o++] = (char)c;
    }
    if (cap == 0)
        return -ENOSPC;
    out[o] = '\0';
    return (int)o;
}

/* Finds segment idx of path (empty segments skipped); sets *s and *len. */
bool http_media_type_is(const char *content_type, const char *type)
{
    if (!content_type)
        return false;
    const char *s = content_type;
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strcspn(s, "; \t");
    size_t tl = strlen(type);
    if (n != tl || strncasecmp(s, type, tl))
        return false;
    s += n;
    while (*s == ' ' || *s == '\t')
        s++;
    return *s == '\0' || *s == ';';
}

static bool path_segment_at(const char *path, size_t idx, const char **s, size_t *len)
{
    const char *p = path;
    size_t n = 0;
    for (;;) {
        while (*p == '/')
            p++;
        if (!*p)
            return false;
        const char *e = strchr(p, '/');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (n == idx) {
            *s = p;
            *len = l;
            return true;
        }
        n++;
        p += l;
    }
}

size_t http_path_segment_count(const struct http_request *req)
{
    size_t n = 0;
    const char *s;
    size_t l;
    while (req->path && path_segment_at(req->path, n, &s, &l))
        n++;
    return n;
}

int http_path_segment(const struct http_request *req, size_t idx, char *out, size_t cap)
{
    const char *s;
    size_t l;
    if (!req->path || !path_segment_at(req->path, idx, &s, &l))
        return -ENOENT;
    int r = http_pct_decode(s, l, false, out, cap);
    if (r < 0)
        return r;
    if (memchr(out, '/', (size_t)r))
        return -EINVAL;
    return r;
}

int http_query_get(const struct http_request *req, const char *name, char *out, size_t cap)
{
    const char *p = req->query;
    if (!p)
        return -ENOENT;
    size_t nlen = strlen(name);
    char key[256];
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t plen = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        size_t klen = eq ? (size_t)(eq - p) : plen;
        /* Compare decoded keys; keys too long to decode here cannot match a short name. */
        int kl = http_pct_decode(p, klen, true, key, sizeof key);
        if (kl >= 0 && (size_t)kl == nlen && !memcmp(key, name, nlen)) {
            if (!eq) {
                if (cap == 0)
                    return -ENOSPC;
                out[0] = '\0';
                return 0;
            }
            return http_pct_decode(eq + 1, plen - klen - 1, true, out, cap);
        }
        p += plen;
        if (*p == '&')
            p++;
    }
    return -ENOENT;
}

int http_query_u64(const struct http_request *req, const char *name, uint64_t *out)
{
    /* 20 digits hold UINT64_MAX; one more says it is longer than that. */
    char v[22];
    int n = http_query_get(req, name, v, sizeof v);
    if (n == -ENOENT)
        return -ENOENT;
    if (n <= 0)
        return -EINVAL;
    uint64_t x = 0;
    for (int i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -EINVAL;
        uint64_t d = (uint64_t)(v[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return -EINVAL;
        x = x * 10 + d;
    }
    *out = x;
    return 0;
}
