/* HTTP/1.1 for Gust: incremental, bounded request parser (server side), response
 * writer helpers, and incremental response parser (client side, with a streaming
 * body mode). Depends only on src/base.
 *
 * Parsers never allocate more than their limits allow: header bytes are copied into
 * one buffer of at most max_header_bytes, the header table holds at most max_headers
 * entries, and a body is accumulated up to max_body bytes. Buffers are kept across
 * http_*_reset() so a keep-alive connection parses without allocating. */
#ifndef GUST_HTTP_HTTP_H
#define GUST_HTTP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

#define HTTP_DEFAULT_MAX_HEADER_BYTES (64u * 1024u)
#define HTTP_DEFAULT_MAX_HEADERS 100u
#define HTTP_DEFAULT_MAX_BODY (64u * 1024u * 1024u)

struct http_limits {
    size_t max_header_bytes; /* request/status line + header lines + final CRLF; also caps chunk trailers */
    size_t max_headers;      /* header fields */
    size_t max_body;         /* decoded body bytes (accumulating mode) */
};

/* Fills *l with the defaults above. A zero field in limits given to a parser also
 * means "default". */
void http_limits_default(struct http_limits *l);

/* Results of the feed functions. */
enum {
    HTTP_ERROR = -1,    /* see the parser's error_status / error_msg; reset before reuse */
    HTTP_NEED_MORE = 0, /* all input consumed; feed more */
    HTTP_DONE = 1,      /* a complete message; *consumed tells how much input it used */
};

/* One header field; name and value are NUL-terminated, value has OWS trimmed. */
struct http_header {
    const char *name;
    const char *value;
    size_t name_len;
    size_t value_len;
};

/* Private state shared by both parsers. */
struct http_parse_state_ {
    struct http_limits lim;
    struct buf head;            /* raw head bytes, parsed in place */
    size_t head_scan;           /* where the search for the blank line resumes */
    struct http_header *hdrs;   /* table, up to lim.max_headers */
    size_t hdrs_cap;
    int state;
    uint64_t remaining;         /* body bytes left (CL) or in the current chunk */
    size_t line_len;            /* bytes of the current chunk-size or trailer line */
    size_t trailer_bytes;
    bool line_cr;               /* previous byte was CR */
    bool size_digits;           /* chunk-size line had a hex digit */
    bool size_ws;               /* whitespace followed the chunk size */
    bool in_ext;                /* inside chunk extensions */
    bool trailer_line_start;
};

/* ---------- requests (server side) ---------- */

struct http_request {
    const char *method; /* token, e.g. "GET" */
    const char *path;   /* raw (still percent-encoded) path; origin-form starts with '/' */
    const char *query;  /* raw query without '?', "" if none */
    int version_minor;  /* HTTP/1.<version_minor>: 0 or 1 */
    struct http_header *headers;
    size_t nheaders;
    int64_t content_length; /* -1 if not given */
    bool chunked;           /* Transfer-Encoding: chunked */
    bool keep_alive;        /* connection may serve another request after this one */
    bool expect_continue;   /* Expect: 100-continue */
    struct buf body;        /* decoded body, binary safe */
};

/* Streaming request body sink (http_request_parser_stream_body): offered decoded body
 * bytes as they arrive, returns how many of the len it took (at most len). */
typedef size_t (*http_req_body_fn)(void *ud, const void *data, size_t len);

struct http_request_parser {
    struct http_request req; /* valid after HTTP_DONE, until reset */
    bool head_done;          /* request line and headers parsed (body may be pending) */
    int error_status;        /* after HTTP_ERROR: 400, 413, 431, 501 or 505 */
    const char *error_msg;   /* after HTTP_ERROR: static text */
    http_req_body_fn body_fn; /* streaming body sink, or NULL (accumulate) */
    void *body_ud;
    uint64_t streamed;       /* body bytes body_fn took */
    struct http_parse_state_ st;
};

/* limits may be NULL for the defaults. */
void http_request_parser_init(struct http_request_parser *p, const struct http_limits *limits);
/* Forgets the current request (keeps buffers, trimming oversized ones) for the next. */
void http_request_parser_reset(struct http_request_parser *p);
void http_request_parser_free(struct http_request_parser *p);
/* Parses up to len bytes. *consumed is how many were used; on HTTP_DONE the rest
 * belongs to the next (pipelined) request. Feeding after HTTP_DONE or HTTP_ERROR
 * without a reset returns the same result and consumes nothing. */
int http_request_feed(struct http_request_parser *p, const void *data, size_t len, size_t *consumed);

/* From now on (typically once head_done), decoded body bytes go to fn instead of
 * req.body, which keeps what it accumulated so far. A feed offers fn each run of body
 * bytes; when fn takes fewer than offered the feed stops there: HTTP_NEED_MORE, with
 * *consumed just past the bytes taken, so the caller feeds the rest again later (the
 * reader's backpressure). limits.max_body still bounds the whole body, req.body's
 * bytes and the streamed ones together: a chunked body fails with 413 as soon as a
 * chunk size would take it past (a Content-Length one at the head, as always). fn
 * NULL: accumulate again. Cleared by reset. */
void http_request_parser_stream_body(struct http_request_parser *p, http_req_body_fn fn, void *ud);

/* First header called name (case-insensitive), or NULL. */
const char *http_request_header(const struct http_request *req, const char *name);

/* Query parameter name (compared after decoding; '+' is a space) into out (NUL-
 * terminated). Returns the value length, -ENOENT if absent, -ENOSPC if it does not
 * fit in cap, -EINVAL if badly encoded or it decodes to a NUL. A bare "name" has
 * the value "". */
int http_query_get(const struct http_request *req, const char *name, char *out, size_t cap);
/* Query parameter name as a whole number: decimal digits only (no sign, no blanks), at
 * most UINT64_MAX. Returns 0 with *out set, -ENOENT if absent, -EINVAL otherwise. */
int http_query_u64(const struct http_request *req, const char *name, uint64_t *out);

/* Whether the media type of a Content-Type value is type ("application/json"):
 * compared without case, parameters (";charset=utf-8") and surrounding blanks
 * ignored. NULL content_type: false. */
bool http_media_type_is(const char *content_type, const char *type);

/* Number of non-empty '/'-separated segments of req->path. */
size_t http_path_segment_count(const struct http_request *req);
/* Segment idx (0-based, empty segments skipped) percent-decoded into out. Returns its
 * length, -ENOENT if there is no such segment, -ENOSPC, or -EINVAL (bad escape, NUL
 * or '/' after decoding). */
int http_path_segment(const struct http_request *req, size_t idx, char *out, size_t cap);


/* ---------- writing responses ---------- */

/* The writers append to a struct buf, whose growth aborts on allocation failure
 * (base/xalloc.h), so they cannot fail. */

/* Standard reason phrase ("OK", "Not Found", ...; "Unknown" otherwise). */
const char *http_reason(int status);

#define HTTP_LENGTH_CHUNKED (-1) /* content_length: Transfer-Encoding: chunked */
#define HTTP_LENGTH_NONE (-2)    /* content_length: no framing header (body ends at close) */

/* Appends "HTTP/1.1 <status> <reason>\r\n", Content-Type (if content_type), then
 * "Content-Length: <content_length>" when >= 0, "Transfer-Encoding: chunked" for
 * HTTP_LENGTH_CHUNKED, nothing for HTTP_LENGTH_NONE; "Connection: keep-alive" or
 * "close", extra_headers verbatim (each line ending in CRLF, or NULL), and the blank
 * line. */
void http_write_head(struct buf *b, int status, const char *content_type, int64_t content_length, bool keep_alive,
                     const char *extra_headers);
/* Appends one chunk (size line, data, CRLF). len 0 appends nothing: the terminating
 * chunk is http_write_chunk_end's. */
void http_write_chunk(struct buf *b, const void *data, size_t len);
/* Appends just the chunk-size line for len bytes (for writev users). */
void http_write_chunk_header(struct buf *b, size_t len);
/* Appends the last chunk "0\r\n\r\n". */
void http_write_chunk_end(struct buf *b);

/* ---------- responses (client side) ---------- */

struct http_response {
    int status;
    const char *reason;
    int version_minor;
    struct http_header *headers;
    size_t nheaders;
    int64_t content_length; /* -1 if not given */
    bool chunked;
    bool until_close;       /* body delimited by the server closing the connection */
    bool keep_alive;        /* connection reusable after this response */
    struct buf body;        /* accumulated body (empty in streaming mode) */
};

/* Streaming body sink: called with each run of decoded body bytes as they arrive.
 * Return 0 to go on, non-zero to stop the parse with HTTP_ERROR. */
typedef int (*http_body_cb)(void *ud, const struct http_response *resp, const void *data, size_t len);

struct http_response_parser {
    struct http_response resp; /* headers valid once head_done; all of it after HTTP_DONE */
    bool head_done;
    int error_status;          /* always 0 for responses; kept for symmetry */
    const char *error_msg;
    bool head_request;         /* the request was HEAD: no body whatever the headers say */
    http_body_cb body_cb;
    void *body_ud;
    struct http_parse_state_ st;
};

/* limits may be NULL for the defaults; max_body bounds only accumulated bodies. */
void http_response_parser_init(struct http_response_parser *p, const struct http_limits *limits);
/* Streaming mode: body bytes go to cb instead of resp.body (NULL: accumulate).
 * Survives reset. */
void http_response_parser_set_body_cb(struct http_response_parser *p, http_body_cb cb, void *ud);
/* The next response answers a HEAD request. Cleared by reset. */
void http_response_parser_set_head(struct http_response_parser *p, bool head);
void http_response_parser_reset(struct http_response_parser *p);
void http_response_parser_free(struct http_response_parser *p);
/* As http_request_feed. An interim 1xx response completes as its own message with no
 * body: reset and feed the rest to get the final one. */
int http_response_feed(struct http_response_parser *p, const void *data, size_t len, size_t *consumed);
/* The peer closed the connection: HTTP_DONE if that ends an until-close body, else
 * HTTP_ERROR (truncated message). */
int http_response_eof(struct http_response_parser *p);

const char *http_response_header(const struct http_response *resp, const char *name);

/* Case-insensitive check whether a comma-separated header value lists token. */
bool http_header_has_token(const char *value, const char *token);

#endif
