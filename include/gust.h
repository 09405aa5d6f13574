/* libgust: the C client of gustd's HTTP API (docs/API.md).
 *
 * A gust_client holds one keep-alive TCP connection to gustd and reuses it across
 * requests; when a reused connection turns out to be stale (the server closed it
 * while idle) the request is retried once on a fresh connection. Every request has
 * a deadline (gust_client_set_timeout). An "https://" address speaks TLS (1.2+,
 * OpenSSL): gustd's certificate is verified against the system's CAs or a CA file
 * (gust_client_set_ca_file, $GUST_CA_FILE), and its name or IP address against the
 * address's host.
 *
 * A client is not thread safe: use one per thread. Memory the library hands out
 * (outputs, response bodies) is malloc'd and belongs to the caller (free()).
 * Allocation failure is not reported as an error: the library prints a message and
 * aborts the process, as gustd does (docs/ARCHITECTURE.md "Allocation failure").
 *
 * Errors: every function that can fail returns 0 (or a documented non-negative
 * value) on success and a negative errno on failure, and then fills *err (err may be
 * NULL). err->kind says which family the failure belongs to; for failures the
 * server reported, http_status, code, message, field (and for calls call_id and
 * status) are copied from the JSON error body.
 */
#ifndef GUST_H
#define GUST_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GUST_CLIENT_VERSION "0.1.0"
#define GUST_DEFAULT_ADDR "127.0.0.1:8470"
#define GUST_DEFAULT_TIMEOUT 60.0 /* seconds, for control requests */

typedef struct gust_client gust_client;

typedef enum gust_error_kind {
    GUST_ERR_NONE = 0,
    GUST_ERR_ARG,       /* bad argument to a libgust function (nothing was sent) */
    GUST_ERR_CONNECT,   /* could not connect to gustd (refused, unreachable, bad host) */
    GUST_ERR_TRANSPORT, /* the connection broke, or the server sent malformed HTTP/JSON */
    GUST_ERR_TIMEOUT,   /* the client-side deadline passed before the answer came */
    GUST_ERR_API,       /* gustd refused the request: 4xx or 503 (see code, message, field) */
    GUST_ERR_FUNCTION,  /* the call ran and failed: 502 / 504, or 409 "cancelled" */
    GUST_ERR_PENDING,   /* the call is still going after the requested wait; call_id set */
} gust_error_kind;

typedef struct gust_error {
    gust_error_kind kind;
    int sys_errno;      /* errno for CONNECT / TRANSPORT / TIMEOUT, else 0 */
    int http_status;    /* 0 when no HTTP response was received */
    char code[64];      /* API error code ("not_found", "invalid_spec", "exit_status", ...) */
    char message[1024]; /* human message; always set on failure */
    char field[256];    /* the spec/argument field at fault, or "" */
    char call_id[64];   /* for call failures / PENDING: the call's id, or "" */
    char status[32];    /* call status: "failed", "timed_out", "cancelled", "pending", "running" */
} gust_error;

/* The library version (GUST_CLIENT_VERSION). */
const char *gust_version(void);

/* A client for addr "HOST:PORT", "[V6ADDR]:PORT", "HOST" (port 8470), each with an
 * optional "http://" or "https://" prefix (https: TLS, see above).
 * addr NULL or "" means $GUST_ADDR, else 127.0.0.1:8470.
 * Does not connect yet (the first request does). Returns NULL with errno EINVAL
 * for an unparsable address. */
gust_client *gust_client_new(const char *addr);

/* Closes the connection and frees the client. NULL is fine. */
void gust_client_free(gust_client *c);

/* The "HOST:PORT" this client talks to (valid while c lives). */
const char *gust_client_addr(const gust_client *c);

/* Every request from now on carries "Authorization: Bearer <token>"; NULL or ""
 * sends none. The token is copied, and never appears in error messages. Returns 0,
 * or -EINVAL (nothing changed) for a token with characters other than visible
 * ASCII. */
int gust_client_set_token(gust_client *c, const char *token);

/* https addresses: trust exactly the PEM CA certificates in path (instead of the
 * system's), for connections opened from now on; NULL goes back to $GUST_CA_FILE,
 * else the system's CAs. The file is read when a connection is opened: a missing or
 * unreadable one fails that request (kind GUST_ERR_CONNECT). */
void gust_client_set_ca_file(gust_client *c, const char *path);

/* Deadline in seconds for control requests (connect + send + whole answer);
 * <= 0 means none. Default GUST_DEFAULT_TIMEOUT. Calls and result waits extend it by
 * their own wait (see gust_call / gust_result); streams (gust_map,
 * gust_request_stream) apply it to connecting and sending only. */
void gust_client_set_timeout(gust_client *c, double seconds);

/* Closes the keep-alive connection now (the next request reconnects). */
void gust_client_disconnect(gust_client *c);

/* POST /v1/deploy. spec[0..len) is an app spec (docs/SPEC.md); format "json",
 * "toml", or NULL to guess from the content (a leading '{' means JSON). On success
 * *response_json (if non-NULL) receives the server's JSON answer, e.g.
 * {"app": "demo", "functions": [{"name": "echo", "version": 3}]}. Invalid specs
 * fail with kind GUST_ERR_API, code "invalid_spec" and the field at fault. */
int gust_deploy(gust_client *c, const char *spec, size_t len, const char *format, char **response_json,
                gust_error *err);

/* Calls app.fn synchronously with input in[0..len) (binary safe; in may be NULL if
 * len is 0). timeout_s < 0 waits until the call is done; otherwise the server waits
 * at most timeout_s seconds (the client itself gives up after timeout_s plus the
 * client timeout, or plus 30 s when that is none).
 * On success returns 0 with *out (malloc'd, never NULL, NUL-terminated after
 * *out_len bytes) and call_id (may be NULL) set. If the wait ran out first returns
 * -EINPROGRESS with kind GUST_ERR_PENDING and call_id / err->call_id set: fetch the
 * result later with gust_result. A failed call returns a negative errno with kind
 * GUST_ERR_FUNCTION (code "exit_status", "crashed", "oom", "timeout", ...). */
int gust_call(gust_client *c, const char *app, const char *fn, const void *in, size_t len, double timeout_s,
              void **out, size_t *out_len, char call_id[64], gust_error *err);

/* Queues a call of app.fn with input in[0..len) and returns at once (the call is
 * stored durably first). call_id receives its id ("fc-..."). */
int gust_spawn(gust_client *c, const char *app, const char *fn, const void *in, size_t len, char call_id[64],
               gust_error *err);

/* Fetches a call's result, waiting up to wait_s seconds (0: just look; at most 600).
 * Done and succeeded: returns 0, *done = 1, *out / *out_len as gust_call.
 * Not done yet: returns 0, *done = 0, *out = NULL, err->status (if err) says
 * "pending" or "running". Done and failed: negative errno, *done = 1, kind
 * GUST_ERR_FUNCTION. Other failures (unknown id: GUST_ERR_API "not_found") leave
 * *done = 0. */
int gust_result(gust_client *c, const char *call_id, double wait_s, void **out, size_t *out_len, int *done,
                gust_error *err);

/* Cancels a call (a running input is stopped). Cancelling a finished call is not an
 * error. */
int gust_cancel(gust_client *c, const char *call_id, gust_error *err);

/* Receives one map result: index of the input (0-based), its call id, status
 * ("succeeded" or "failed", "timed_out", "cancelled"), the output bytes (for
 * successes; NULL otherwise) and for failures the error code and message (else
 * NULL). The pointers are valid during the callback only. Return 0 to go on,
 * non-zero to stop. */
typedef int (*gust_map_cb)(void *ud, size_t index, const char *call_id, const char *status, const void *out,
                           size_t out_len, const char *err_code, const char *err_message);

/* Maps app.fn over NDJSON inputs (one input a line: a JSON string is passed as its
 * UTF-8 bytes, {"b64": "..."} as the decoded bytes, other JSON as its text) and
 * streams results to cb as they complete (in input order if ordered). Returns 0
 * once the server's final line arrived (whether or not inputs failed: count them
 * in cb), -ECANCELED if cb stopped it (the calls go on server-side), or another
 * negative errno (a stream that ends without the final line is a
 * GUST_ERR_TRANSPORT failure). No deadline applies once the inputs are sent. */
int gust_map(gust_client *c, const char *app, const char *fn, const char *ndjson_inputs, size_t len, int ordered,
             gust_map_cb cb, void *ud, gust_error *err);

/* Generic request: method and path (with query, already percent-encoded), an
 * optional body (content_type may be NULL for none / "application/json" default
 * when a body is given). Whatever the status, *status, *resp (malloc'd,
 * NUL-terminated, may be NULL to discard) and *resp_len receive the answer.
 * Returns 0 for a status below 400; for 4xx/5xx returns a negative errno with *err
 * parsed from the JSON error body (the body is still handed out). Transport
 * failures return a negative errno with *status = 0. */
int gust_request(gust_client *c, const char *method, const char *path, const char *content_type, const void *body,
                 size_t len, int *status, char **resp, size_t *resp_len, gust_error *err);

/* Receives a run of response body bytes. Return 0 to go on, non-zero to stop. */
typedef int (*gust_data_cb)(void *ud, const char *data, size_t len);

/* Streaming request (e.g. GET .../logs?follow=1): sends the request (body optional,
 * as gust_request) and hands each run of body bytes to on_data as it arrives, until
 * the server ends the response. No deadline applies once the request is sent.
 * Returns 0 when the response ended, -ECANCELED if on_data stopped it (the
 * connection is closed), or a negative errno; an error status (4xx/5xx) calls
 * on_data never and fails as gust_request does. */
int gust_request_stream(gust_client *c, const char *method, const char *path, const char *content_type,
                        const void *body, size_t len, gust_data_cb on_data, void *ud, gust_error *err);

/* A short static name for kind ("connect", "api", "function", ...). */
const char *gust_error_kind_name(gust_error_kind kind);

#ifdef __cplusplus
}
#endif

#endif
