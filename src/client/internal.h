/* libgust internals shared by the files of src/client: the client struct and the request
 * engine (one HTTP exchange on the keep-alive connection, with one reconnect). */
#ifndef GUST_CLIENT_INTERNAL_H
#define GUST_CLIENT_INTERNAL_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/buf.h"
#include "gust.h"
#include "http/http.h"

#define GUST_HIDDEN __attribute__((visibility("hidden")))

#define GUST_RBUF_SIZE (64u * 1024u)
#define GUST_MAX_RESPONSE_BODY (1024u * 1024u * 1024u)
#define GUST_MAX_ERROR_BODY (64u * 1024u)

struct gust_client {
    char host[256];
    char port[16];
    char addr[300]; /* "host:port" as shown to users */
    int fd;         /* keep-alive connection, or -1 */
    bool tls;       /* an https:// address */
    SSL_CTX *ssl_ctx; /* made at the first TLS connect, dropped when the CA file changes */
    SSL *ssl;         /* over fd while a TLS connection is open (fd non-blocking then) */
    char *ca_file;    /* gust_client_set_ca_file, or NULL */
    char *token;      /* bearer token, or NULL; never printed */
    double timeout_s;
    char *rbuf; /* GUST_RBUF_SIZE bytes of receive buffer */
    struct http_response_parser rp;
};

/* One request. */
struct gust_req {
    const char *method;
    const char *path; /* percent-encoded, with query */
    const char *content_type; /* NULL: no Content-Type header */
    const void *body;
    size_t len;
    double timeout_s;        /* deadline of the whole exchange; <= 0 none */
    bool deadline_send_only; /* streams: the deadline covers connect + send only */
    gust_data_cb on_data;    /* non-NULL: 2xx bodies are streamed here, not kept */
    void *ud;
};

/* What came back. body holds the whole body (non-streaming, or error bodies of
 * streams, capped at GUST_MAX_ERROR_BODY). */
struct gust_resp {
    int status;
    struct buf body;
    char call_id[64];     /* Gust-Call-Id header, or "" */
    char call_status[32]; /* Gust-Status header, or "" */
};

/* Runs req on c's connection. Returns 0 when a complete response arrived (any
 * status), -ECANCELED if on_data stopped it, or a negative errno with err filled
 * (kind CONNECT, TRANSPORT or TIMEOUT). resp->body must be zeroed or reset on entry;
 * the caller frees it. */
GUST_HIDDEN int gust_exchange_(gust_client *c, const struct gust_req *req, struct gust_resp *resp, gust_error *err);

/* Fills err from an error response (status >= 300; JSON error body if any) and
 * returns the matching negative errno. */
GUST_HIDDEN int gust_error_from_response_(const struct gust_resp *resp, gust_error *err);

/* Fills err with kind, errno-ish code and a printf message; returns -sys_code. */
GUST_HIDDEN int gust_fail_(gust_error *err, gust_error_kind kind, int sys_code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Appends s percent-encoded as one path segment. */
GUST_HIDDEN void gust_path_escape_(struct buf *b, const char *s);

/* Deadlines are mono_ns() values; this one means none. */
#define GUST_NO_DEADLINE UINT64_MAX

/* Waits for events on fd until deadline. Returns 0, -ETIMEDOUT, or -errno. */
GUST_HIDDEN int gust_wait_fd_(int fd, short events, uint64_t deadline);

/* TLS (src/client/tls.c). gust_tls_open_ runs the handshake over the connected
 * non-blocking fd and verifies the server (certificate chain to the CA file or the
 * system's CAs, name or IP against c->host); on success c->ssl is set. Returns 0 or
 * a negative errno with err filled (CONNECT, or TIMEOUT). */
GUST_HIDDEN int gust_tls_open_(gust_client *c, int fd, uint64_t deadline, gust_error *err);
/* Writes all of data. Returns 0, -ETIMEDOUT, -EPIPE (peer gone) or -EPROTO. */
GUST_HIDDEN int gust_tls_send_(gust_client *c, const void *data, size_t len, uint64_t deadline);
/* Reads some decrypted bytes into c->rbuf. Returns the count (0: the server ended
 * the connection), -ETIMEDOUT, -ECONNRESET or -EPROTO. */
GUST_HIDDEN ssize_t gust_tls_recv_(gust_client *c, uint64_t deadline);
/* Frees c->ssl (sending close_notify if the socket takes it); the caller closes fd. */
GUST_HIDDEN void gust_tls_close_(gust_client *c);

/* Copies src into dst[cap] (truncating, always NUL-terminated). */
GUST_HIDDEN void gust_copy_(char *dst, size_t cap, const char *src);

#endif
