/* Fuzzes web endpoints' parsers of outside input (proto/web.h): the response head a
 * container's runner sends (item 0), the request envelope a C runner decodes (and a
 * query parameter of it), the splitting of a client's path and Host, the token lists of
 * Connection/Upgrade, and the body part of a request envelope (its length and inline
 * bytes). The first input byte picks the parser. Checks: every header, string and the
 * body lie inside the input (a decoded request's strings NUL-terminated there), values
 * hold no CR/LF/NUL, names are non-empty, split names fit and are NUL-terminated, an
 * envelope's inline body is never more than its length and is streamed exactly when it
 * is less, and what is encoded decodes to the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/util.h"
#include "proto/web.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int inside(const void *p, size_t n, const uint8_t *data, size_t size)
{
    const uint8_t *q = p;
    return q >= data && q + n <= data + size;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *body = data + 1;
    size_t len = size - 1;
    if (data[0] % 2 == 0) {
        struct web_head h;
        const char *why;
        if (web_head_decode(body, len, &h, &why) == 0) {
            if (h.status < WEB_STATUS_MIN || h.status > WEB_STATUS_MAX || h.nheaders > WEB_MAX_HEADERS ||
                !inside(h.body, h.body_len, body, len))
                __builtin_trap();
            for (size_t i = 0; i < h.nheaders; i++) {
                const struct web_header *x = &h.headers[i];
                if (!x->name_len || !inside(x->name, x->name_len, body, len) ||
                    !inside(x->value, x->value_len, body, len) || memchr(x->value, '\n', x->value_len) ||
                    memchr(x->value, '\r', x->value_len) || memchr(x->value, '\0', x->value_len))
                    __builtin_trap();
            }
        }
        return 0;
    }
    if (data[0] % 4 == 1) {
        /* A token list, not NUL-terminated: a match is a token found in it. */
        if (web_header_has_token((const char *)body, len, "upgrade")) {
            int found = 0;
            for (size_t i = 0; i + 7 <= len && !found; i++)
                found = !strncasecmp((const char *)body + i, "upgrade", 7);
            if (!found)
                __builtin_trap();
        }
        return 0;
    }
    if (data[0] % 16 == 15) {
        /* A request envelope as a C runner decodes it (in place: a copy), then a query
         * parameter of it. */
        uint8_t *copy = malloc(len + 1);
        memcpy(copy, body, len);
        struct web_header hs[WEB_MAX_HEADERS];
        struct web_request req;
        const char *why;
        if (web_request_decode(copy, len, &req, hs, &why) == 0) {
            const char *fields[] = {req.method, req.scheme, req.root_path, req.path, req.query, req.client};
            for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
                if (!inside(fields[i], strlen(fields[i]) + 1, copy, len))
                    __builtin_trap();
            if (req.nheaders > WEB_MAX_HEADERS || !inside(req.body, req.body_len, copy, len))
                __builtin_trap();
            for (size_t i = 0; i < req.nheaders; i++)
                if (!inside(hs[i].name, hs[i].name_len + 1, copy, len) || hs[i].name[hs[i].name_len] ||
                    !inside(hs[i].value, hs[i].value_len + 1, copy, len) || hs[i].value[hs[i].value_len] ||
                    strlen(hs[i].value) != hs[i].value_len)
                    __builtin_trap();
            char v[16];
            int n = url_query_param(req.query, "a", v, sizeof v);
            if (n >= (int)sizeof v || (n >= 0 && strlen(v) != (size_t)n))
                __builtin_trap();
        } else if (!why) {
            __builtin_trap();
        }
        free(copy);
        return 0;
    }
    if (data[0] % 16 == 7) {
        struct web_body b;
        const char *why;
        if (web_request_body_decode(body, len, &b, &why) == 0) {
            if (len < 8 || !inside(b.data, b.len, body, len) || b.len > b.total || b.streamed != (b.len < b.total))
                __builtin_trap();
            /* The same body encoded again: the envelope's tail is the same bytes. */
            struct web_request wr = {.body = b.data, .body_len = b.len, .body_total = b.total};
            struct buf enc = {0};
            web_request_encode(&enc, &wr);
            size_t head = enc.len - len; /* the tag, six empty strings, a zero count */
            if (head != WEB_TAG_LEN + 7 * 4 || memcmp(enc.data + head, body, len))
                __builtin_trap();
            buf_free(&enc);
        } else if (len >= 8) {
            /* Refused with a length field present: only for more bytes than it says. */
            uint64_t total = 0;
            for (int i = 7; i >= 0; i--)
                total = total << 8 | body[i];
            if (len - 8 <= total)
                __builtin_trap();
        }
        return 0;
    }
    /* "path\0host": both as a client sends them (NUL-free text). */
    char *text = malloc(len + 1);
    memcpy(text, body, len);
    text[len] = '\0';
    const char *host = text + strlen(text) + (strlen(text) < len ? 1 : 0);
    char ws[64], app[64], label[64], al[64];
    const char *rest;
    if (web_split_path(text, ws, app, label, sizeof ws, &rest) == 0 &&
        (!ws[0] || !app[0] || !label[0] || rest < text || rest > text + strlen(text)))
        __builtin_trap();
    if (web_split_host(host, "gust.test", ws, al, sizeof ws) == 0 && (!ws[0] || !al[0] || strlen(al) >= sizeof al))
        __builtin_trap();
    free(text);
    return 0;
}
