/* libgust core: client lifetime, connections, the request engine, error bodies and
 * the generic request functions. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "client/internal.h"

const char *gust_version(void)
{
    return GUST_CLIENT_VERSION;
}

void gust_copy_(char *dst, size_t cap, const char *src)
{
    if (!cap)
        return;
    size_t n = src ? strnlen(src, cap - 1) : 0;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

int gust_fail_(gust_error *err, gust_error_kind kind, int sys_code, const char *fmt, ...)
{
    if (err) {
        memset(err, 0, sizeof *err);
        err->kind = kind;
        if (kind == GUST_ERR_CONNECT || kind == GUST_ERR_TRANSPORT || kind == GUST_ERR_TIMEOUT)
            err->sys_errno = sys_code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return -sys_code;
}

const char *gust_error_kind_name(gust_error_kind kind)
{
    switch (kind) {
    case GUST_ERR_NONE:
        return "none";
    case GUST_ERR_ARG:
        return "argument";
    case GUST_ERR_CONNECT:
        return "connect";
    case GUST_ERR_TRANSPORT:
        return "transport";
    case GUST_ERR_TIMEOUT:
        return "timeout";
    case GUST_ERR_API:
        return "api";
    case GUST_ERR_FUNCTION:
        return "function";
    case GUST_ERR_PENDING:
        return "pending";
    }
    return "unknown";
}

void gust_path_escape_(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char ch = *p;
        bool plain = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                     ch == '-' || ch == '_' || ch == '.' || ch == '~';
        char enc[3] = {'%', hex[ch >> 4], hex[ch & 15]};
        if (plain)
            buf_append(b, p, 1);
        else
            buf_append(b, enc, 3);
    }
}

/* ---------- client lifetime ---------- */

/* Splits addr into host and port; *tls for an https:// scheme. Returns 0 or -EINVAL. */
static int parse_addr(const char *addr, char *host, size_t host_cap, char *port, size_t port_cap, bool *tls)
{
    *tls = false;
    if (!strncasecmp(addr, "http://", 7)) {
        addr += 7;
    } else if (!strncasecmp(addr, "https://", 8)) {
        addr += 8;
        *tls = true;
    } else if (strstr(addr, "://")) {
        return -EINVAL;
    }
    size_t n = strlen(addr);
    while (n && addr[n - 1] == '/')
        n--;
    if (!n)
        return -EINVAL;
    const char *hs, *ps = NULL;
    size_t hl;
    if (addr[0] == '[') {
        const char *close = memchr(addr, ']', n);
        if (!close)
            return -EINVAL;
        hs = addr + 1;
        hl = (size_t)(close - hs);
        size_t rest = n - (size_t)(close + 1 - addr);
        if (rest) {
            if (close[1] != ':')
                return -EINVAL;
            ps = close + 2;
        }
    } else {
        const char *colon = memchr(addr, ':', n);
        if (colon && memchr(colon + 1, ':', n - (size_t)(colon + 1 - addr)))
            return -EINVAL; /* bare IPv6 needs brackets */
        hs = addr;
        hl = colon ? (size_t)(colon - addr) : n;
        if (colon)
            ps = colon + 1;
    }
    if (hl >= host_cap)
        return -EINVAL;
    if (hl == 0) {
        snprintf(host, host_cap, "127.0.0.1");
    } else {
        memcpy(host, hs, hl);
        host[hl] = '\0';
    }
    if (ps) {
        size_t pl = n - (size_t)(ps - addr);
        char tmp[16];
        if (pl == 0 || pl >= sizeof tmp)
            return -EINVAL;
        memcpy(tmp, ps, pl);
        tmp[pl] = '\0';
        int64_t v;
        if (parse_i64(tmp, 1, 65535, &v) < 0)
            return -EINVAL;
        snprintf(port, port_cap, "%d", (int)v);
    } else {
        snprintf(port, port_cap, "8470");
    }
    return 0;
}

gust_client *gust_client_new(const char *addr)
{
    if (!addr || !*addr)
        addr = getenv("GUST_ADDR");
    if (!addr || !*addr)
        addr = GUST_DEFAULT_ADDR;
    AUTO_FREE gust_client *c = xcalloc(1, sizeof *c);
    if (parse_addr(addr, c->host, sizeof c->host, c->port, sizeof c->port, &c->tls) < 0) {
        errno = EINVAL;
        return NULL;
    }
    if (strchr(c->host, ':'))
        snprintf(c->addr, sizeof c->addr, "[%s]:%s", c->host, c->port);
    else
        snprintf(c->addr, sizeof c->addr, "%s:%s", c->host, c->port);
    c->rbuf = xmalloc(GUST_RBUF_SIZE);
    c->fd = -1;
    c->timeout_s = GUST_DEFAULT_TIMEOUT;
    struct http_limits lim;
    http_limits_default(&lim);
    lim.max_body = GUST_MAX_RESPONSE_BODY;
    http_response_parser_init(&c->rp, &lim);
    return TAKE_PTR(c);
}

void gust_client_disconnect(gust_client *c)
{
    if (c && c->fd >= 0) {
        gust_tls_close_(c);
        close(c->fd);
        c->fd = -1;
    }
}

void gust_client_free(gust_client *c)
{
    if (!c)
        return;
    gust_client_disconnect(c);
    SSL_CTX_free(c->ssl_ctx);
    free(c->ca_file);
    if (c->token) {
        explicit_bzero(c->token, strlen(c->token));
        free(c->token);
    }
    http_response_parser_free(&c->rp);
    free(c->rbuf);
    free(c);
}

const char *gust_client_addr(const gust_client *c)
{
    return c->addr;
}

int gust_client_set_token(gust_client *c, const char *token)
{
    if (token)
        for (const char *p = token; *p; p++)
            if (*p <= 0x20 || *p >= 0x7f)
                return -EINVAL;
    if (c->token) {
        explicit_bzero(c->token, strlen(c->token));
        free(c->token);
    }
    c->token = token && *token ? xstrdup(token) : NULL;
    return 0;
}

void gust_client_set_ca_file(gust_client *c, const char *path)
{
    free(c->ca_file);
    c->ca_file = path && *path ? xstrdup(path) : NULL;
    SSL_CTX_free(c->ssl_ctx);
    c->ssl_ctx = NULL;
}

void gust_client_set_timeout(gust_client *c, double seconds)
{
    c->timeout_s = seconds > 0 && isfinite(seconds) ? seconds : 0;
}

/* ---------- deadlines and socket I/O ---------- */

#define NO_DEADLINE GUST_NO_DEADLINE

static uint64_t deadline_after(double seconds)
{
    if (!(seconds > 0) || seconds > 1e9)
        return NO_DEADLINE;
    return mono_ns() + (uint64_t)(seconds * 1e9);
}

/* Milliseconds left for poll(): -1 for none, 0 if passed. */
static int ms_left(uint64_t deadline)
{
    if (deadline == NO_DEADLINE)
        return -1;
    uint64_t now = mono_ns();
    if (now >= deadline)
        return 0;
    uint64_t ms = (deadline - now + 999999) / 1000000;
    return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

int gust_wait_fd_(int fd, short events, uint64_t deadline)
{
    for (;;) {
        int left = ms_left(deadline);
        if (left == 0)
            return -ETIMEDOUT;
        struct pollfd pfd = {.fd = fd, .events = events};
        int r = poll(&pfd, 1, left);
        if (r > 0)
            return 0;
        if (r == 0)
            continue; /* re-check the deadline */
        if (errno != EINTR)
            return -errno;
    }
}

/* Connects c->fd to c->host:c->port. Returns 0 or a negative errno (err: CONNECT /
 * TIMEOUT). */
static int conn_open(gust_client *c, uint64_t deadline, gust_error *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(c->host, c->port, &hints, &res);
    if (g != 0)
        return gust_fail_(err, GUST_ERR_CONNECT, g == EAI_SYSTEM ? errno : EHOSTUNREACH,
                          "cannot connect to gustd at %s: %s", c->addr, gai_strerror(g));
    int last = ECONNREFUSED;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        AUTO_FD int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            last = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            if (errno != EINPROGRESS) {
                last = errno;
                continue;
            }
            int r = gust_wait_fd_(fd, POLLOUT, deadline);
            if (r < 0) {
                last = -r;
                if (r == -ETIMEDOUT)
                    break;
                continue;
            }
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
                soerr = errno;
            if (soerr) {
                last = soerr;
                continue;
            }
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        freeaddrinfo(res);
        if (c->tls) {
            /* The socket stays non-blocking: the record layer waits through poll. */
            int r = gust_tls_open_(c, fd, deadline, err);
            if (r < 0)
                return r;
        } else if (fd_set_nonblock(fd, false) < 0) {
            int e = errno ? errno : EIO;
            return gust_fail_(err, GUST_ERR_CONNECT, e, "cannot connect to gustd at %s: %s", c->addr, strerror(e));
        }
        c->fd = TAKE_FD(fd);
        return 0;
    }
    freeaddrinfo(res);
    if (last == ETIMEDOUT)
        return gust_fail_(err, GUST_ERR_TIMEOUT, ETIMEDOUT, "cannot connect to gustd at %s: timed out", c->addr);
    return gust_fail_(err, GUST_ERR_CONNECT, last, "cannot connect to gustd at %s: %s", c->addr, strerror(last));
}

/* True if an idle keep-alive connection can no longer be used (peer closed it,
 * sent something unexpected, or errored). */
static bool conn_stale(int fd)
{
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return false;
    return true;
}

/* Sends all iovecs. Returns 0, -ETIMEDOUT or -errno. */
static int send_all(gust_client *c, struct iovec *iov, int iovcnt, uint64_t deadline)
{
    int fd = c->fd;
    if (c->ssl) {
        /* Head and a small body in one record (one segment), as sendmsg does. */
        if (iovcnt == 2 && iov[1].iov_len <= 16384) {
            AUTO_BUF struct buf one = {0};
            buf_append(&one, iov[0].iov_base, iov[0].iov_len);
            buf_append(&one, iov[1].iov_base, iov[1].iov_len);
            return gust_tls_send_(c, one.data, one.len, deadline);
        }
        for (int i = 0; i < iovcnt; i++) {
            int r = gust_tls_send_(c, iov[i].iov_base, iov[i].iov_len, deadline);
            if (r < 0)
                return r;
        }
        return 0;
    }
    while (iovcnt > 0) {
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
        ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -errno;
            int r = gust_wait_fd_(fd, POLLOUT, deadline);
            if (r < 0)
                return r;
            continue;
        }
        size_t left = (size_t)n;
        while (iovcnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

/* Receives into c->rbuf. Returns bytes (0 = EOF), -ETIMEDOUT or -errno. */
static ssize_t recv_some(gust_client *c, uint64_t deadline)
{
    if (c->ssl)
        return gust_tls_recv_(c, deadline);
    for (;;) {
        ssize_t n = recv(c->fd, c->rbuf, GUST_RBUF_SIZE, MSG_DONTWAIT);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int r = gust_wait_fd_(c->fd, POLLIN, deadline);
        if (r < 0)
            return r;
    }
}

/* ---------- the exchange ---------- */

struct stream_ctx {
    const struct gust_req *req;
    struct gust_resp *resp;
    bool stopped; /* on_data asked to stop */
};

/* Parser body sink in streaming mode: 2xx bodies go to on_data, others are kept
 * (bounded) for the error message. */
static int stream_body(void *ud, const struct http_response *hr, const void *data, size_t len)
{
    struct stream_ctx *sc = ud;
    if (hr->status >= 200 && hr->status < 300) {
        if (sc->req->on_data(sc->req->ud, data, len)) {
            sc->stopped = true;
            return 1;
        }
        return 0;
    }
    struct buf *b = &sc->resp->body;
    if (b->len < GUST_MAX_ERROR_BODY) {
        size_t n = len < GUST_MAX_ERROR_BODY - b->len ? len : GUST_MAX_ERROR_BODY - b->len;
        buf_append(b, data, n);
    }
    return 0;
}

/* Returns 0, or -EINVAL when the head cannot be formatted (buf_printf). */
static int build_head(struct buf *h, const gust_client *c, const struct gust_req *req)
{
    int r = buf_printf(h, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: libgust/%s\r\nAccept: */*\r\n", req->method,
                       req->path, c->addr, GUST_CLIENT_VERSION);
    if (r >= 0 && req->content_type)
        r = buf_printf(h, "Content-Type: %s\r\n", req->content_type);
    if (r >= 0 && c->token)
        r = buf_printf(h, "Authorization: Bearer %s\r\n", c->token);
    bool needs_length = req->len > 0 || !strcmp(req->method, "POST") || !strcmp(req->method, "PUT") ||
                        !strcmp(req->method, "PATCH");
    if (r >= 0 && needs_length)
        r = buf_printf(h, "Content-Length: %zu\r\n", req->len);
    if (r >= 0)
        buf_append_str(h, "\r\n");
    return r;
}

/* Outcome of one attempt. */
enum attempt_result {
    ATTEMPT_OK,
    ATTEMPT_FAILED, /* err filled */
    ATTEMPT_RETRY,  /* stale reused connection: nothing of the answer was seen */
};

static enum attempt_result attempt(gust_client *c, const struct gust_req *req, const struct buf *head,
                                   struct gust_resp *resp, bool reused, int *rc, gust_error *err)
{
    uint64_t deadline = deadline_after(req->timeout_s);
    struct iovec iov[2] = {{.iov_base = head->data, .iov_len = head->len},
                           {.iov_base = (void *)req->body, .iov_len = req->len}};
    int r = send_all(c, iov, req->len ? 2 : 1, deadline);
    if (r < 0) {
        gust_client_disconnect(c);
        if (reused && (r == -EPIPE || r == -ECONNRESET))
            return ATTEMPT_RETRY;
        *rc = r == -ETIMEDOUT ? gust_fail_(err, GUST_ERR_TIMEOUT, ETIMEDOUT, "request to gustd at %s timed out", c->addr)
                              : gust_fail_(err, GUST_ERR_TRANSPORT, -r, "sending to gustd at %s: %s", c->addr,
                                           strerror(-r));
        return ATTEMPT_FAILED;
    }
    if (req->deadline_send_only)
        deadline = NO_DEADLINE;

    struct http_response_parser *p = &c->rp;
    http_response_parser_reset(p);
    struct stream_ctx sc = {.req = req, .resp = resp};
    http_response_parser_set_body_cb(p, req->on_data ? stream_body : NULL, &sc);
    if (!strcmp(req->method, "HEAD"))
        http_response_parser_set_head(p, true);
    bool got_any = false, leftover = false;
    int pr = HTTP_NEED_MORE;
    while (pr != HTTP_DONE) {
        ssize_t n = recv_some(c, deadline);
        if (n == -ETIMEDOUT) {
            gust_client_disconnect(c);
            *rc = gust_fail_(err, GUST_ERR_TIMEOUT, ETIMEDOUT, "no answer from gustd at %s within %g s", c->addr,
                             req->timeout_s);
            return ATTEMPT_FAILED;
        }
        if (n < 0 || (n == 0 && !got_any)) {
            gust_client_disconnect(c);
            int e = n < 0 ? (int)-n : ECONNRESET;
            if (reused && !got_any && (e == ECONNRESET || e == EPIPE))
                return ATTEMPT_RETRY;
            *rc = gust_fail_(err, GUST_ERR_TRANSPORT, e, "reading from gustd at %s: %s", c->addr,
                             n == 0 ? "connection closed before any answer" : strerror(e));
            return ATTEMPT_FAILED;
        }
        if (n == 0) {
            pr = http_response_eof(p);
            if (pr != HTTP_DONE) {
                gust_client_disconnect(c);
                *rc = gust_fail_(err, GUST_ERR_TRANSPORT, EPROTO, "reading from gustd at %s: %s", c->addr,
                                 p->error_msg ? p->error_msg : "truncated response");
                return ATTEMPT_FAILED;
            }
            break;
        }
        got_any = true;
        size_t off = 0;
        while (off < (size_t)n) {
            size_t used = 0;
            pr = http_response_feed(p, c->rbuf + off, (size_t)n - off, &used);
            off += used;
            if (pr == HTTP_ERROR) {
                gust_client_disconnect(c);
                if (sc.stopped) {
                    *rc = gust_fail_(err, GUST_ERR_NONE, ECANCELED, "stopped by the callback");
                    return ATTEMPT_FAILED;
                }
                *rc = gust_fail_(err, GUST_ERR_TRANSPORT, EPROTO, "bad answer from gustd at %s: %s", c->addr,
                                 p->error_msg ? p->error_msg : "malformed HTTP");
                return ATTEMPT_FAILED;
            }
            if (pr == HTTP_DONE && p->resp.status < 200) {
                http_response_parser_reset(p); /* interim 1xx: the final answer follows */
                pr = HTTP_NEED_MORE;
                continue;
            }
            if (pr != HTTP_DONE)
                break;
            if (off < (size_t)n)
                leftover = true;
            break;
        }
    }
    const struct http_response *hr = &p->resp;
    resp->status = hr->status;
    gust_copy_(resp->call_id, sizeof resp->call_id, http_response_header(hr, "Gust-Call-Id"));
    gust_copy_(resp->call_status, sizeof resp->call_status, http_response_header(hr, "Gust-Status"));
    if (!req->on_data) {
        size_t len = 0;
        char *data = buf_steal(&p->resp.body, &len);
        buf_free(&resp->body);
        resp->body = (struct buf){.data = data, .len = len, .cap = data ? len + 1 : 0};
    }
    if (!hr->keep_alive || leftover)
        gust_client_disconnect(c);
    *rc = 0;
    return ATTEMPT_OK;
}

int gust_exchange_(gust_client *c, const struct gust_req *req, struct gust_resp *resp, gust_error *err)
{
    AUTO_BUF struct buf head = {0};
    if (build_head(&head, c, req) < 0)
        return gust_fail_(err, GUST_ERR_ARG, EINVAL, "cannot format the request head for %.200s", req->path);
    for (int tries = 0; tries < 2; tries++) {
        bool reused = c->fd >= 0;
        if (reused && conn_stale(c->fd)) {
            gust_client_disconnect(c);
            reused = false;
        }
        if (c->fd < 0) {
            int r = conn_open(c, deadline_after(req->timeout_s), err);
            if (r < 0)
                return r;
        }
        buf_reset(&resp->body);
        int rc = 0;
        enum attempt_result ar = attempt(c, req, &head, resp, reused && tries == 0, &rc, err);
        if (ar == ATTEMPT_OK)
            return 0;
        if (ar == ATTEMPT_FAILED)
            return rc;
    }
    return gust_fail_(err, GUST_ERR_TRANSPORT, ECONNRESET, "gustd at %s closed the connection", c->addr);
}

/* ---------- error bodies ---------- */

static int errno_for(int status, const char *code)
{
    switch (status) {
    case 400:
        return EINVAL;
    case 404:
        return ENOENT;
    case 405:
        return EOPNOTSUPP;
    case 409:
        return !strcmp(code, "cancelled") ? ECANCELED : EBUSY;
    case 413:
    case 431:
        return E2BIG;
    case 422:
        return ENOSPC;
    case 503:
        return EAGAIN;
    case 504:
        return ETIME;
    case 502:
        return EREMOTEIO;
    default:
        return status >= 500 ? EREMOTEIO : EPROTO;
    }
}

static void copy_json_str(char *dst, size_t cap, json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (json_is_string(v))
        gust_copy_(dst, cap, json_string_value(v));
}

int gust_error_from_response_(const struct gust_resp *resp, gust_error *err)
{
    gust_error tmp;
    gust_error *e = err ? err : &tmp;
    memset(e, 0, sizeof *e);
    e->http_status = resp->status;
    gust_copy_(e->call_id, sizeof e->call_id, resp->call_id);
    gust_copy_(e->status, sizeof e->status, resp->call_status);
    json_t *root = resp->body.len ? json_loadb(resp->body.data, resp->body.len, 0, NULL) : NULL;
    json_t *eo = json_object_get(root, "error");
    if (json_is_object(eo)) {
        copy_json_str(e->code, sizeof e->code, eo, "code");
        copy_json_str(e->message, sizeof e->message, eo, "message");
        copy_json_str(e->field, sizeof e->field, eo, "field");
    }
    copy_json_str(e->call_id, sizeof e->call_id, root, "call_id");
    copy_json_str(e->status, sizeof e->status, root, "status");
    json_decref(root);
    if (!e->code[0])
        snprintf(e->code, sizeof e->code, "http_%d", resp->status);
    if (!e->message[0]) {
        size_t n = resp->body.len;
        while (n && (resp->body.data[n - 1] == '\n' || resp->body.data[n - 1] == '\r'))
            n--;
        if (n && utf8_valid(resp->body.data, n))
            snprintf(e->message, sizeof e->message, "HTTP %d: %.*s", resp->status, (int)(n > 900 ? 900 : n),
                     resp->body.data);
        else
            snprintf(e->message, sizeof e->message, "HTTP %d %s", resp->status, http_reason(resp->status));
    }
    bool failed_call = resp->status == 502 || resp->status == 504 ||
                       (resp->status == 409 && !strcmp(e->code, "cancelled"));
    e->kind = failed_call ? GUST_ERR_FUNCTION : GUST_ERR_API;
    return -errno_for(resp->status, e->code);
}

/* ---------- generic requests ---------- */

int gust_request(gust_client *c, const char *method, const char *path, const char *content_type, const void *body,
                 size_t len, int *status, char **resp_out, size_t *resp_len, gust_error *err)
{
    if (status)
        *status = 0;
    if (resp_out)
        *resp_out = NULL;
    if (resp_len)
        *resp_len = 0;
    if (!c || !method || !path || path[0] != '/' || (len && !body))
        return gust_fail_(err, GUST_ERR_ARG, EINVAL, "gust_request: bad arguments");
    struct gust_req req = {.method = method,
                           .path = path,
                           .content_type = content_type ? content_type : (len ? "application/json" : NULL),
                           .body = body,
                           .len = len,
                           .timeout_s = c->timeout_s};
    struct gust_resp resp = {0};
    int r = gust_exchange_(c, &req, &resp, err);
    if (r < 0) {
        buf_free(&resp.body);
        return r;
    }
    if (status)
        *status = resp.status;
    if (resp.status >= 400)
        r = gust_error_from_response_(&resp, err);
    size_t n = 0;
    char *data = buf_steal(&resp.body, &n);
    if (resp_out) {
        if (!data)
            data = xcalloc(1, 1);
        *resp_out = data;
        if (resp_len)
            *resp_len = n;
    } else {
        free(data);
    }
    return r;
}

int gust_request_stream(gust_client *c, const char *method, const char *path, const char *content_type,
                        const void *body, size_t len, gust_data_cb on_data, void *ud, gust_error *err)
{
    if (!c || !method || !path || path[0] != '/' || !on_data || (len && !body))
        return gust_fail_(err, GUST_ERR_ARG, EINVAL, "gust_request_stream: bad arguments");
    struct gust_req req = {.method = method,
                           .path = path,
                           .content_type = content_type ? content_type : (len ? "application/json" : NULL),
                           .body = body,
                           .len = len,
                           .timeout_s = c->timeout_s,
                           .deadline_send_only = true,
                           .on_data = on_data,
                           .ud = ud};
    struct gust_resp resp = {0};
    int r = gust_exchange_(c, &req, &resp, err);
    if (r >= 0 && resp.status >= 400)
        r = gust_error_from_response_(&resp, err);
    buf_free(&resp.body);
    return r;
}
