/* Request-target helpers: path segments, query parameters (their decoding is base/util.c's). */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "http/http.h"

#include "base/util.h"

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
    int r = url_pct_decode(s, l, false, out, cap);
    if (r < 0)
        return r;
    if (memchr(out, '/', (size_t)r))
        return -EINVAL;
    return r;
}

int http_query_get(const struct http_request *req, const char *name, char *out, size_t cap)
{
    return req->query ? url_query_param(req->query, name, out, cap) : -ENOENT;
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
