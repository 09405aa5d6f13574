/* The HTTP/1.1 server of gustd over the event loop: accepts connections, parses one
 * request at a time per connection (pipelined bytes wait), hands it to the handler,
 * and writes the response without blocking. Keep-alive, idle timeout, bounded input.
 *
 * Lifetimes: the server owns each connection while its socket is open. A handler that
 * answers after returning takes a reference (api_conn_ref) and sets a close callback;
 * the close callback runs at most once, from the loop (never inside an api_conn_*
 * call), if the client goes away before the response is complete. After it, the
 * connection may only be unreferenced. The request passed to the handler stays valid
 * until its response is complete. All functions run on the loop's thread. */
#ifndef GUST_API_SERVER_H
#define GUST_API_SERVER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "base/error.h"
#include "evloop/evloop.h"
#include "http/http.h"

struct api_server;
struct api_conn;

typedef void (*api_handler_fn)(struct api_conn *c, struct http_request *req, void *ud);

#define API_IDLE_TIMEOUT_MS 60000u
/* Default connection cap (api_server_set_max_conns): far above normal use (operators,
 * SDK clients), and it bounds the server's fds and per-connection buffers (up to
 * ~20 KiB each when idle, plus the sockets' kernel buffers). */
#define API_MAX_CONNS_DEFAULT 4096u
/* While a connection has this much output pending (the client is not reading), the
 * server neither reads nor parses its further pipelined requests; they are parsed, in
 * order, once the output drains below it. One response may be larger (up to the
 * largest body allowed): the bound only stops the next request from being parsed, so
 * per connection the server buffers at most API_OUT_PAUSE plus one response. 1 MiB: a
 * few hundred ordinary responses, enough to keep a pipelining client busy, and with
 * API_MAX_CONNS_DEFAULT connections at most 4 GiB in the pathological case instead
 * of unbounded. */
#define API_OUT_PAUSE (1024u * 1024u)

/* Listens on hostport: "127.0.0.1:8470", "[::1]:8470", "localhost:8470", or ":0" /
 * ":PORT" (127.0.0.1; port 0 picks an ephemeral one, see api_server_port). limits NULL
 * means the http defaults. Returns 0 or -errno with *err filled. */
int api_server_listen(struct ev_loop *loop, const char *hostport, const struct http_limits *limits,
                      api_handler_fn handler, void *ud, struct api_server **out, struct gerr *err);
/* Listens on the unix socket path (a socket left there is replaced; anything else is
 * an error), set to mode after bind. Who may connect is decided by mode and by the
 * directories above path: keep path in a directory other users cannot search (the
 * socket exists with the umask's mode between bind and chmod). Served like a TCP
 * listener (same handler, same limits); api_server_port says 0. The socket file is
 * left in place by api_server_free (a later listen replaces it). */
int api_server_listen_unix(struct ev_loop *loop, const char *path, mode_t mode, const struct http_limits *limits,
                           api_handler_fn handler, void *ud, struct api_server **out, struct gerr *err);
/* Whether hostport (as api_server_listen takes it) can only be reached from this
 * machine: an empty host, "localhost", 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104.
 * Any other name is not, whatever it resolves to today. */
bool api_listen_is_loopback(const char *hostport);
/* The bound TCP port. */
int api_server_port(const struct api_server *s);
/* Serves TLS (1.2 or 1.3, see api/tls.h) on connections accepted from now on, with the
 * PEM certificate chain cert_file and the private key key_file. Each connection then
 * has 10 s (or the idle timeout, if shorter) to finish its handshake; one that opens with plain
 * HTTP instead gets "400" {"error":{"code":"tls_required",...}} in plain HTTP and is
 * closed; connections over the cap are closed without the 503. Returns 0, or -1
 * with *err naming the file at fault (the server is unchanged then). */
int api_server_use_tls(struct api_server *s, const char *cert_file, const char *key_file, struct gerr *err);
bool api_server_tls(const struct api_server *s);
/* Idle keep-alive connections (no request in progress, nothing to send) are closed
 * after ms without traffic (default API_IDLE_TIMEOUT_MS). Applies to timers armed
 * after the call. */
void api_server_set_idle_timeout(struct api_server *s, uint64_t ms);
/* Graceful shutdown step 1: closes the listening socket and the idle keep-alive
 * connections; requests in progress finish, and their responses carry
 * "Connection: close". */
void api_server_stop_accepting(struct api_server *s);
/* Open connections. */
size_t api_server_conn_count(const struct api_server *s);
/* At most n connections open at once (0: API_MAX_CONNS_DEFAULT). A connection accepted
 * beyond gets "503" with {"error":{"code":"too_many_connections","message":...,
 * "limit":n}} and "Connection: close", and is closed (without the 503 if the socket
 * would not take it at once). */
void api_server_set_max_conns(struct api_server *s, size_t n);
size_t api_server_max_conns(const struct api_server *s);
/* The most output bytes ever pending on one connection (for tests and stats). */
size_t api_server_out_high(const struct api_server *s);
/* Told of each response's status as its head goes out (once per response; 101 for a
 * tunnel), with the tag the handler gave the request (api_conn_set_tag), -1 when it
 * gave none or no handler saw the request (a parse error's 400/413/431). For counters:
 * it runs inside the api_conn_* call that answers. NULL: none. */
typedef void (*api_status_fn)(void *ud, int tag, int status);
void api_server_on_status(struct api_server *s, api_status_fn fn, void *ud);
/* Tags the request being handled on c (a small number the status observer gets). */
void api_conn_set_tag(struct api_conn *c, int tag);
/* Closes every connection (close callbacks run) and frees the server. NULL is fine. */
void api_server_free(struct api_server *s);

/* Sends a complete response with Content-Length (the body is not sent for HEAD).
 * extra_headers: "Name: v\r\n..." or NULL. A second response for the same request,
 * or one on a closed connection, is ignored. */
void api_conn_respond(struct api_conn *c, int status, const char *content_type, const void *body, size_t len,
                      const char *extra_headers);
/* As api_conn_respond with the compact JSON of obj (reference stolen, NULL gives a
 * 500) as application/json. */
void api_conn_respond_json(struct api_conn *c, int status, json_t *obj, const char *extra_headers);
/* Error response: {"error":{"code":code,"message":message,"field":field}} (field
 * left out when NULL). */
void api_conn_error(struct api_conn *c, int status, const char *code, const char *message, const char *field);

/* Starts a chunked response (HTTP/1.0 clients: an unframed body ended by close).
 * Returns 0, -EPIPE if the connection is gone, or -EINVAL if a response started. */
int api_conn_stream_begin(struct api_conn *c, int status, const char *content_type, const char *extra_headers);
/* Queues one chunk. Returns 0, -EPIPE if the connection is gone, -EINVAL outside a
 * stream, or -ENOBUFS when over API_OUT_MAX bytes are pending (the connection is then
 * closed). Use api_conn_pending_output for backpressure. */
int api_conn_stream_write(struct api_conn *c, const void *data, size_t len);
/* Ends the connection without completing the response under way (a chunked stream
 * stops short of its last chunk, which a client sees as an error) and without
 * running the close callback, which it clears. */
void api_conn_abort(struct api_conn *c);
/* Until the end of this loop pass, what is written to c is queued, then sent at once:
 * a streamed response whose head, first chunk and end come in one pass costs one
 * write, one segment and one wakeup of the client, not three. */
void api_conn_cork(struct api_conn *c);
/* Ends the stream; the response is complete. */
void api_conn_stream_end(struct api_conn *c);

#define API_OUT_MAX (256u * 1024u * 1024u)

/* Tunnels: after a 101 (a WebSocket), a connection carries raw bytes both ways until
 * its handler ends it. on_read gets the client's bytes as they come and returns how
 * many it took; taking fewer than offered pauses reading the client (its bytes wait
 * in the kernel's buffers, so the client slows down) until api_conn_tunnel_resume.
 * The client's EOF (a FIN, or TLS close_notify) comes as one call with len 0 after
 * its last bytes; the connection stays open for writing. A client that goes away
 * (reset, write failure) runs the close callback, as for any response. on_read runs
 * from the loop, never inside an api_conn_* call. */
typedef size_t (*api_tunnel_fn)(struct api_conn *c, const void *data, size_t len, void *ud);
/* Answers the request with "HTTP/1.1 101 Switching Protocols" and extra_headers
 * ("Name: v\r\n...", which carry Upgrade and Connection), and makes c a tunnel.
 * Returns 0, -EPIPE if the connection is gone, or -EINVAL if a response started. */
int api_conn_tunnel_begin(struct api_conn *c, const char *extra_headers, api_tunnel_fn on_read, void *ud);
/* Queues raw bytes to the client. 0, -EPIPE, -EINVAL (no tunnel, or it is ending), or
 * -ENOBUFS past API_OUT_MAX pending (closed then); api_conn_pending_output tells when
 * to wait. */
int api_conn_tunnel_write(struct api_conn *c, const void *data, size_t len);
/* After on_read took less than offered: offer the rest (from the loop) and read on. */
void api_conn_tunnel_resume(struct api_conn *c);
/* Ends the tunnel: what is queued is written, then the connection closes (lingering
 * for the client's last bytes, as after any last response). */
void api_conn_tunnel_end(struct api_conn *c);

/* Streamed request bodies: a server that streams bodies calls its handler as soon as
 * a request's head is parsed when its body (Content-Length or chunked) is not all in
 * yet; req->body then holds only the body's first bytes (those that came with the
 * head, perhaps none) and api_conn_body_streaming is true. A request whose body came
 * whole with its head is handled as on any server. limits.max_body bounds the whole
 * body all the same: a Content-Length over it gets 413 before the handler runs, a
 * chunked body 413 as soon as a chunk takes it past (then the connection ends, and the
 * handler's close callback runs as for a client gone). The API's listener buffers. */
void api_server_stream_bodies(struct api_server *s, bool on);
/* The rest of a streamed body: on_data gets the decoded body bytes as they come and
 * returns how many it took; fewer than offered pauses reading the client (its bytes
 * wait in the kernel's buffers) until api_conn_body_resume, as for a tunnel. on_end
 * (may be NULL) runs once after the last byte; neither runs after the response is
 * complete, the connection closed or aborted. A client told "Expect: 100-continue"
 * gets its 100 now. Both run from the loop, never inside an api_conn_* call. A
 * response may start (or end) before the body ended: the rest of the body is then
 * read and dropped before the connection's next request, or the connection closes
 * when the client still waits for a 100. Returns 0, -EPIPE if the connection is gone,
 * or -EINVAL (no body streaming, or a reader already). */
typedef size_t (*api_body_fn)(struct api_conn *c, const void *data, size_t len, void *ud);
typedef void (*api_body_end_fn)(struct api_conn *c, void *ud);
bool api_conn_body_streaming(const struct api_conn *c);
int api_conn_body_read(struct api_conn *c, api_body_fn on_data, api_body_end_fn on_end, void *ud);
/* After on_data took less than offered: offer the rest (from the loop) and read on. */
void api_conn_body_resume(struct api_conn *c);

void api_conn_ref(struct api_conn *c);
void api_conn_unref(struct api_conn *c);
/* cb(c, data) runs once if the client goes away before the current response is
 * complete; cb NULL clears it. Cleared when the response completes. */
void api_conn_set_close_cb(struct api_conn *c, void (*cb)(struct api_conn *c, void *data), void *data);
/* False once the client went away (or the connection failed). */
bool api_conn_is_open(const struct api_conn *c);
/* Bytes accepted but not yet written to the socket. */
size_t api_conn_pending_output(const struct api_conn *c);
/* The client's address as text, without the port ("192.0.2.1", "2001:db8::1"; an
 * IPv4-mapped IPv6 address as IPv4), or "" when it cannot be read (the connection is
 * closed, not IP). cap: INET6_ADDRSTRLEN suffices. */
void api_conn_peer(const struct api_conn *c, char *out, size_t cap);

#endif
