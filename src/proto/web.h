/* Web requests as calls: the wire format between gustd's web listener (src/api/web.c)
 * and the runner that serves a web endpoint in a container. Defined once here; the
 * Python runner's copy is sdk/python/gust/_container/proto.py (checked by
 * scripts/check-proto-py.py).
 *
 * A request is the input of a generator call of the endpoint's function:
 *
 *   WEB_TAG (WEB_TAG_LEN bytes), then six strings, each a u32 (little endian) length and
 *   its bytes: method, scheme ("http"/"https"), root path (the URL prefix that named
 *   the endpoint, "/ws/app/label", or "" for Host routing), path (what follows the
 *   prefix, still percent-encoded, "/" at least), raw query (without '?'), and the
 *   client's address; then a u32 count of headers (at most WEB_MAX_HEADERS) and as many
 *   (name, value) pairs of strings; then a u64 (little endian): the body's total length
 *   in bytes, or WEB_BODY_LEN_UNKNOWN for a chunked body still arriving; then the
 *   body's first bytes: every byte after the length (at most the length).
 *
 * Streamed bodies: when the envelope holds fewer body bytes than the length says (or
 * the length is WEB_BODY_LEN_UNKNOWN), the rest of the body follows as the call's
 * input stream (FRAME_INPUT_MORE, src/proto/frame.h "Input streams") as the client
 * sends it, ended by an empty one. gustd submits the call at the request's head, so
 * the runner may read a large upload while it arrives, and its reading paces the
 * client (the stream's window). The envelope holds the whole body when it came with
 * the head (the small bodies of most requests: one input, no stream). Whatever the
 * way, gustd's --web-max-body bounds the whole body. The Content-Length and
 * Transfer-Encoding the client sent are not among the headers (gustd's, see
 * web_header_reserved): the length field says the body's size.
 *
 * The answer is the call's items (the FRAME_ITEM / ITEM_ACK path, with its window):
 *
 *   item 0: the head: u32 status (WEB_STATUS_MIN..WEB_STATUS_MAX), u32 count of headers
 *           (at most WEB_MAX_HEADERS), that many (name, value) string pairs as above;
 *           the bytes after it, if any, are the first piece of the body;
 *   item 1..: body bytes, each sent on to the client as it comes (one chunk per item,
 *           so server-sent events arrive as they are yielded).
 *
 * The call ending after item 0 ends the response; a call that fails before item 0 gets
 * an error status from gustd (docs/API.md "Web endpoints"). The head's names must be
 * HTTP tokens and its values free of CR, LF and NUL (no response splitting);
 * Connection, Keep-Alive, Transfer-Encoding and Content-Length are gustd's to set and
 * are dropped.
 *
 * WebSockets (and any upgrade): a GET whose Connection holds "upgrade" and whose
 * Upgrade holds "websocket" keeps both headers in its envelope (with its
 * Sec-WebSocket-* ones). A head of status 101 answers it: gustd sends the 101 with the
 * head's headers, the head's Upgrade included, and "Connection: Upgrade"; from then on
 * the connection is a byte tunnel. Later items are raw bytes to the client (the
 * runner frames them: WebSocket frames), the client's bytes go to the call as its
 * input stream (FRAME_INPUT_MORE, an empty one at the client's EOF), and the call's
 * end closes the connection. */
#ifndef GUST_PROTO_WEB_H
#define GUST_PROTO_WEB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

/* A NUL byte starts no pickle and no JSON_TAG'd input but this one. Version 2: the
 * body length field (streamed bodies); a runner of version 1 fails loudly on it. */
#define WEB_TAG "\0GUSTWEB2\n"
#define WEB_TAG_LEN 10
#define WEB_MAX_HEADERS 100
#define WEB_STATUS_MIN 100
#define WEB_STATUS_MAX 599
/* One header line of a response head: name and value together, as the request side
 * allows (the http parser's 64 KiB head bounds a request's). */
#define WEB_MAX_HEADER_BYTES (16u * 1024u)
/* The body length of a body sent chunked, still arriving: no length is known. */
#define WEB_BODY_LEN_UNKNOWN 0xffffffffffffffffull

struct web_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

struct web_request {
    const char *method, *scheme, *root_path, *path, *query, *client;
    const struct web_header *headers;
    size_t nheaders;
    const void *body;           /* the body bytes the envelope carries */
    size_t body_len;
    /* The whole body's length: more than body_len when the rest streams, or
     * WEB_BODY_LEN_UNKNOWN; 0 means body_len (the body is all here). */
    uint64_t body_total;
};

/* Appends the envelope of r to b (the input of the call). */
void web_request_encode(struct buf *b, const struct web_request *r);

/* The body part of an envelope: its length field and the bytes after it. */
struct web_body {
    uint64_t total;             /* as sent: a length, or WEB_BODY_LEN_UNKNOWN */
    const unsigned char *data;  /* the body bytes in the envelope (pointing into it) */
    size_t len;
    bool streamed;              /* the rest follows on the call's input stream */
};

/* Decodes the envelope's tail after its last header (the one place a decoder of the
 * envelope reads the body from). Returns 0, or -EBADMSG with a static reason in *why
 * when the length field is cut short or the bytes after it are more than it says. */
int web_request_body_decode(const void *tail, size_t len, struct web_body *out, const char **why);

/* Decodes a request envelope (a web call's input, as a runner's runner_next gives it)
 * in place: data is rewritten so that every string of it is NUL-terminated where it
 * lies (each moves over its own length prefix), and out's strings, headers' names and
 * values (with their lengths) and body point into it; headers is the caller's array
 * that out->headers points at. The body bytes are left as they are: body/body_len are
 * those in the envelope, and body_total is 0 when that is the whole body, else the
 * body's length (or WEB_BODY_LEN_UNKNOWN) with the rest to read from the input's stream
 * (runner_stream_read; web_request_body_decode reads the length). Decode an envelope once: the
 * rewrite consumes its lengths. Bounded by len: returns 0, or -EBADMSG with a static
 * reason in *why when data is not an envelope (no WEB_TAG, truncated, a length past
 * the end, more than WEB_MAX_HEADERS headers, a string holding NUL: gustd's requests
 * never do, so a C string is the whole field). The one decoder of the envelope in C:
 * a change of its layout is made here and in web_request_encode. */
int web_request_decode(void *data, size_t len, struct web_request *out, struct web_header headers[WEB_MAX_HEADERS],
                       const char **why);

/* The first header of r named name (case-insensitively), or NULL. (A query parameter:
 * url_query_param of base/util.h on r->query.) */
const struct web_header *web_request_header(const struct web_request *r, const char *name);

/* Appends item 0 of a response to b: status, the n headers, then the first body bytes.
 * Returns 0, or -EINVAL with a static reason in *why (b unchanged) when gustd would
 * refuse the head (web_head_decode's rules: a status out of range, too many headers, a
 * name that is not a token, a value with CR/LF/NUL). */
int web_head_encode(struct buf *b, int status, const struct web_header *headers, size_t n, const void *body,
                    size_t body_len, const char **why);

/* A decoded response head; names and values point into the item. */
struct web_head {
    int status;
    struct web_header headers[WEB_MAX_HEADERS];
    size_t nheaders;
    const unsigned char *body;  /* the first body bytes carried by the head item */
    size_t body_len;
};

/* Decodes item 0. Returns 0, or -EBADMSG with a static reason in *why for anything
 * outside the format above (truncated, counts or lengths past the item or the limits,
 * a status out of range, a name that is not a token, a value with CR/LF/NUL). */
int web_head_decode(const void *data, size_t len, struct web_head *out, const char **why);

/* Whether gustd sets this response header itself (hop-by-hop or framing), so a
 * head's own copy is dropped. (A 101's Upgrade is the runner's: api/web.c.) */
bool web_header_reserved(const char *name, size_t len);

/* Whether a header value that is a comma-separated list of tokens (Connection,
 * Upgrade) holds token, case-insensitively, whitespace around items ignored; an item
 * with parameters ("websocket/13") matches only whole. Bounded by len. */
bool web_header_has_token(const char *value, size_t len, const char *token);

/* Splits a path-form request target "/<ws>/<app>/<label>[/rest]" (percent-decoding
 * nothing: names have no '%'). Returns 0 with the three names copied (NUL-terminated,
 * each under cap bytes) and *rest pointing at what follows the label in path ("" when
 * nothing does); -EINVAL when the path has fewer than three non-empty segments or one
 * is too long. */
int web_split_path(const char *path, char *ws, char *app, char *label, size_t cap, const char **rest);

/* Splits the first DNS label of a Host value under domain: "<ws>--<app-label>.<domain>"
 * with an optional ":port". Returns 0 with ws and the rest (app and label still
 * joined by '-': which '-' splits them is the caller's lookup) lowercased, -ENOENT when
 * host is not under domain, -EINVAL when its label is malformed. */
int web_split_host(const char *host, const char *domain, char *ws, char *app_label, size_t cap);

#endif
