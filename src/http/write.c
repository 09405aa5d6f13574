/* Response writer helpers: status line and framing headers, chunk encoding. Written
 * with memcpy and hand-rolled number formatting: this runs once per response. */
#include <assert.h>
#include <string.h>

#include "http/http.h"

const char *http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* Appends the decimal digits of v. */
static char *put_u64(char *p, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static char *put_str(char *p, const char *s, size_t len)
{
    memcpy(p, s, len);
    return p + len;
}

#define PUT_LIT(p, lit) put_str(p, lit, sizeof(lit) - 1)

void http_write_head(struct buf *b, int status, const char *content_type, int64_t content_length, bool keep_alive,
                     const char *extra_headers)
{
    if (status < 100 || status > 999)
        status = 500;
    const char *reason = http_reason(status);
    size_t rl = strlen(reason), ctl = content_type ? strlen(content_type) : 0;
    size_t xl = extra_headers ? strlen(extra_headers) : 0;
    /* Fixed text is well under 128 bytes. */
    size_t room = 128 + rl + ctl + xl;
    buf_reserve(b, room);
    char *start = b->data + b->len, *p = start;
    p = PUT_LIT(p, "HTTP/1.1 ");
    p = put_u64(p, (uint64_t)status);
    *p++ = ' ';
    p = put_str(p, reason, rl);
    p = PUT_LIT(p, "\r\n");
    if (content_type) {
        p = PUT_LIT(p, "Content-Type: ");
        p = put_str(p, content_type, ctl);
        p = PUT_LIT(p, "\r\n");
    }
    if (content_length >= 0) {
        p = PUT_LIT(p, "Content-Length: ");
        p = put_u64(p, (uint64_t)content_length);
        p = PUT_LIT(p, "\r\n");
    } else if (content_length == HTTP_LENGTH_CHUNKED) {
        p = PUT_LIT(p, "Transfer-Encoding: chunked\r\n");
    }
    if (keep_alive)
        p = PUT_LIT(p, "Connection: keep-alive\r\n");
    else
        p = PUT_LIT(p, "Connection: close\r\n");
    if (xl)
        p = put_str(p, extra_headers, xl);
    p = PUT_LIT(p, "\r\n");
    assert((size_t)(p - start) <= room);
    b->len += (size_t)(p - start);
    b->data[b->len] = '\0';
}

void http_write_chunk_header(struct buf *b, size_t len)
{
    buf_reserve(b, 2 * sizeof(size_t) + 2);
    static const char hex[] = "0123456789abcdef";
    char tmp[2 * sizeof(size_t)];
    int n = 0;
    do {
        tmp[n++] = hex[len & 15];
        len >>= 4;
    } while (len);
    char *p = b->data + b->len;
    while (n)
        *p++ = tmp[--n];
    *p++ = '\r';
    *p++ = '\n';
    b->len = (size_t)(p - b->data);
    b->data[b->len] = '\0';
}

void http_write_chunk(struct buf *b, const void *data, size_t len)
{
    if (!len)
        return;
    buf_reserve(b, len + 2 * sizeof(size_t) + 4);
    http_write_chunk_header(b, len);
    memcpy(b->data + b->len, data, len);
    b->len += len;
    memcpy(b->data + b->len, "\r\n", 3);
    b->len += 2;
}

void http_write_chunk_end(struct buf *b)
{
    buf_append(b, "0\r\n\r\n", 5);
}
