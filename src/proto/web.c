/* The web request envelope and response head of proto/web.h. */
#include "proto/web.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

static void put_u32(struct buf *b, uint32_t v)
{
    unsigned char le[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                           (unsigned char)(v >> 24)};
    buf_append(b, le, sizeof le);
}

static void put_u64(struct buf *b, uint64_t v)
{
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}

static void put_str(struct buf *b, const char *s, size_t len)
{
    put_u32(b, (uint32_t)len);
    buf_append(b, s, len);
}

static void put_cstr(struct buf *b, const char *s)
{
    s = s ? s : "";
    put_str(b, s, strlen(s));
}

void web_request_encode(struct buf *b, const struct web_request *r)
{
    buf_append(b, WEB_TAG, WEB_TAG_LEN);
    put_cstr(b, r->method);
    put_cstr(b, r->scheme);
    put_cstr(b, r->root_path);
    put_cstr(b, r->path);
    put_cstr(b, r->query);
    put_cstr(b, r->client);
    put_u32(b, (uint32_t)r->nheaders);
    for (size_t i = 0; i < r->nheaders; i++) {
        put_str(b, r->headers[i].name, r->headers[i].name_len);
        put_str(b, r->headers[i].value, r->headers[i].value_len);
    }
    put_u64(b, r->body_total ? r->body_total : r->body_len);
    if (r->body_len)
        buf_append(b, r->body, r->body_len);
}

/* A reader over an item that never goes past its end. */
struct rd {
    const unsigned char *p;
    size_t left;
};

static int get_u32(struct rd *r, uint32_t *v)
{
    if (r->left < 4)
        return -EBADMSG;
    *v = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
    r->p += 4;
    r->left -= 4;
    return 0;
}

static int get_str(struct rd *r, const char **s, size_t *len)
{
    uint32_t n;
    if (get_u32(r, &n) < 0 || n > r->left)
        return -EBADMSG;
    *s = (const char *)r->p;
    *len = n;
    r->p += n;
    r->left -= n;
    return 0;
}

static int get_u64(struct rd *r, uint64_t *v)
{
    uint32_t lo, hi;
    if (get_u32(r, &lo) < 0 || get_u32(r, &hi) < 0)
        return -EBADMSG;
    *v = (uint64_t)hi << 32 | lo;
    return 0;
}

int web_request_body_decode(const void *tail, size_t len, struct web_body *out, const char **why)
{
    struct rd r = {tail, len};
    memset(out, 0, sizeof *out);
    if (get_u64(&r, &out->total) < 0) {
        *why = "the request envelope has no body length";
        return -EBADMSG;
    }
    if (r.left > out->total) {
        *why = "the request envelope holds more body bytes than its body length";
        return -EBADMSG;
    }
    out->data = r.p;
    out->len = r.left;
    out->streamed = r.left < out->total;
    return 0;
}

/* RFC 9110 tchar. */
static bool is_tchar(unsigned char ch)
{
    return isalnum(ch) || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

int web_head_decode(const void *data, size_t len, struct web_head *out, const char **why)
{
    struct rd r = {data, len};
    uint32_t status, n;
    memset(out, 0, sizeof *out);
    if (get_u32(&r, &status) < 0 || get_u32(&r, &n) < 0) {
        *why = "the response head is truncated";
        return -EBADMSG;
    }
    if (status < WEB_STATUS_MIN || status > WEB_STATUS_MAX) {
        *why = "the response status is not between 100 and 599";
        return -EBADMSG;
    }
    if (n > WEB_MAX_HEADERS) {
        *why = "the response has more than 100 headers";
        return -EBADMSG;
    }
    out->status = (int)status;
    for (uint32_t i = 0; i < n; i++) {
        struct web_header *h = &out->headers[i];
        if (get_str(&r, &h->name, &h->name_len) < 0 || get_str(&r, &h->value, &h->value_len) < 0) {
            *why = "a response header runs past the head";
            return -EBADMSG;
        }
        if (h->name_len == 0 || h->name_len + h->value_len > WEB_MAX_HEADER_BYTES) {
            *why = "a response header is empty or longer than 16 KiB";
            return -EBADMSG;
        }
        for (size_t k = 0; k < h->name_len; k++)
            if (!is_tchar((unsigned char)h->name[k])) {
                *why = "a response header name is not an HTTP token";
                return -EBADMSG;
            }
        for (size_t k = 0; k < h->value_len; k++)
            if (h->value[k] == '\r' || h->value[k] == '\n' || h->value[k] == '\0') {
                *why = "a response header value holds CR, LF or NUL";
                return -EBADMSG;
            }
    }
    out->nheaders = n;
    out->body = r.p;
    out->body_len = r.left;
    return 0;
}

/* The next string of the envelope, NUL-terminated in place: its bytes move over its
 * length prefix (base is the envelope, writable, r a reader over it). */
static int take_cstr(struct rd *r, unsigned char *base, const char **s, size_t *len)
{
    const char *at;
    size_t n;
    if (get_str(r, &at, &n) < 0)
        return -EBADMSG;
    if (memchr(at, '\0', n))
        return -EINVAL;
    unsigned char *dst = base + ((const unsigned char *)at - base) - 4;
    memmove(dst, at, n);
    dst[n] = '\0';
    *s = (const char *)dst;
    if (len)
        *len = n;
    return 0;
}

int web_request_decode(void *data, size_t len, struct web_request *out, struct web_header headers[WEB_MAX_HEADERS],
                       const char **why)
{
    unsigned char *base = data;
    memset(out, 0, sizeof *out);
    out->headers = headers;
    if (len < WEB_TAG_LEN || memcmp(base, WEB_TAG, WEB_TAG_LEN)) {
        *why = "not a web request (the input does not start with WEB_TAG)";
        return -EBADMSG;
    }
    struct rd r = {base + WEB_TAG_LEN, len - WEB_TAG_LEN};
    const char **fields[] = {&out->method, &out->scheme, &out->root_path, &out->path, &out->query, &out->client};
    int rc = 0;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0] && rc == 0; i++)
        rc = take_cstr(&r, base, fields[i], NULL);
    uint32_t n = 0;
    if (rc == 0 && get_u32(&r, &n) < 0)
        rc = -EBADMSG;
    if (rc == 0 && n > WEB_MAX_HEADERS) {
        *why = "the request has more than 100 headers";
        return -EBADMSG;
    }
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        struct web_header *h = &headers[i];
        rc = take_cstr(&r, base, &h->name, &h->name_len);
        if (rc == 0)
            rc = take_cstr(&r, base, &h->value, &h->value_len);
    }
    if (rc < 0) {
        *why = rc == -EINVAL ? "a string of the request envelope holds NUL"
                             : "the request envelope is truncated (a length runs past its end)";
        return -EBADMSG;
    }
    out->nheaders = n;
    struct web_body body;
    if (web_request_body_decode(r.p, r.left, &body, why) < 0)
        return -EBADMSG;
    out->body = body.data;
    out->body_len = body.len;
    out->body_total = body.streamed ? body.total : 0;
    return 0;
}

const struct web_header *web_request_header(const struct web_request *r, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < r->nheaders; i++)
        if (r->headers[i].name_len == n && !strncasecmp(r->headers[i].name, name, n))
            return &r->headers[i];
    return NULL;
}

int web_head_encode(struct buf *b, int status, const struct web_header *headers, size_t n, const void *body,
                    size_t body_len, const char **why)
{
    if (n > WEB_MAX_HEADERS || status < WEB_STATUS_MIN || status > WEB_STATUS_MAX) {
        *why = n > WEB_MAX_HEADERS ? "the response has more than 100 headers"
                                   : "the response status is not between 100 and 599";
        return -EINVAL;
    }
    size_t start = b->len;
    put_u32(b, (uint32_t)status);
    put_u32(b, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        put_str(b, headers[i].name, headers[i].name_len);
        put_str(b, headers[i].value, headers[i].value_len);
    }
    /* What gustd accepts is web_head_decode's to say: the head is checked by it. */
    struct web_head h;
    if (web_head_decode(b->data + start, b->len - start, &h, why) < 0) {
        b->len = start;
        b->data[start] = '\0';
        return -EINVAL;
    }
    if (body_len)
        buf_append(b, body, body_len);
    return 0;
}

bool web_header_reserved(const char *name, size_t len)
{
    static const char *const reserved[] = {"connection", "keep-alive", "transfer-encoding", "content-length",
                                           "upgrade", "trailer", "te", "proxy-connection"};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strlen(reserved[i]) == len && !strncasecmp(name, reserved[i], len))
            return true;
    return false;
}

bool web_header_has_token(const char *value, size_t len, const char *token)
{
    size_t tl = strlen(token);
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        while (i < len && value[i] != ',')
            i++;
        size_t end = i;
        while (start < end && (value[start] == ' ' || value[start] == '\t'))
            start++;
        while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t'))
            end--;
        if (end - start == tl && !strncasecmp(value + start, token, tl))
            return true;
        i++; /* past the comma */
    }
    return false;
}

/* Copies the segment [s, s+n) into out (cap bytes) when it is a name: non-empty, no '%'. */
static int copy_seg(const char *s, size_t n, char *out, size_t cap)
{
    if (n == 0 || n >= cap || memchr(s, '%', n))
        return -EINVAL;
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

int web_split_path(const char *path, char *ws, char *app, char *label, size_t cap, const char **rest)
{
    char *outs[3] = {ws, app, label};
    const char *p = path;
    for (int i = 0; i < 3; i++) {
        if (*p != '/')
            return -EINVAL;
        p++;
        size_t n = strcspn(p, "/");
        if (copy_seg(p, n, outs[i], cap) < 0)
            return -EINVAL;
        p += n;
    }
    *rest = p;
    return 0;
}

int web_split_host(const char *host, const char *domain, char *ws, char *app_label, size_t cap)
{
    size_t hlen = strcspn(host, ":");
    size_t dlen = strlen(domain);
    if (host[0] == '[' || dlen == 0 || hlen <= dlen + 1 || host[hlen - dlen - 1] != '.' ||
        strncasecmp(host + hlen - dlen, domain, dlen))
        return -ENOENT;
    size_t llen = hlen - dlen - 1;  /* the first labels, before ".<domain>" */
    if (memchr(host, '.', llen))
        return -EINVAL;
    const char *sep = NULL;
    for (size_t i = 0; i + 1 < llen; i++)
        if (host[i] == '-' && host[i + 1] == '-') {
            sep = host + i;
            break;
        }
    if (!sep)
        return -EINVAL;
    size_t wlen = (size_t)(sep - host), alen = llen - wlen - 2;
    if (copy_seg(host, wlen, ws, cap) < 0 || copy_seg(sep + 2, alen, app_label, cap) < 0)
        return -EINVAL;
    for (char *q = ws; *q; q++)
        *q = (char)tolower((unsigned char)*q);
    for (char *q = app_label; *q; q++)
        *q = (char)tolower((unsigned char)*q);
    return 0;
}
