/* libgust over TLS: the context (trust), the handshake with verification, and
 * blocking-with-deadline reads and writes over the non-blocking socket. */
#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cleanup.h"
#include "base/util.h"
#include "client/internal.h"

#define CA_FILE_MAX (8u * 1024u * 1024u)

/* The reason of OpenSSL's last queued error (then the queue is cleared). */
static const char *ossl_reason(char *out, size_t cap)
{
    unsigned long e, last = 0;
    while ((e = ERR_get_error()))
        last = e;
    if (!last)
        snprintf(out, cap, "unexpected end of the connection");
    else
        ERR_error_string_n(last, out, cap);
    return out;
}

/* Trusts exactly the certificates of a PEM file, read with O_CLOEXEC and parsed from
 * memory. Returns 0 or -1 with err filled. */
static int load_ca_file(SSL_CTX *ctx, const char *path, const char *addr, gust_error *err)
{
    AUTO_FREE char *text = NULL;
    size_t len = 0;
    int r = file_read_all(path, CA_FILE_MAX, &text, &len);
    if (r < 0) {
        gust_fail_(err, GUST_ERR_CONNECT, -r, "cannot connect to gustd at %s: CA file %s: %s", addr, path,
                   strerror(-r));
        return -1;
    }
    BIO *b = BIO_new_mem_buf(text, (int)len);
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    int n = 0;
    X509 *x;
    while (b && (x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
        if (X509_STORE_add_cert(store, x) == 1)
            n++;
        X509_free(x);
    }
    BIO_free(b);
    ERR_clear_error();
    if (!n) {
        gust_fail_(err, GUST_ERR_CONNECT, EINVAL, "cannot connect to gustd at %s: CA file %s holds no PEM certificate",
                   addr, path);
        return -1;
    }
    return 0;
}

static SSL_CTX *ctx_new(gust_client *c, gust_error *err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    char why[256];
    if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        gust_fail_(err, GUST_ERR_CONNECT, EPROTO, "cannot connect to gustd at %s: TLS setup: %s", c->addr,
                   ossl_reason(why, sizeof why));
        SSL_CTX_free(ctx);
        return NULL;
    }
    /* An end without close_notify reads as an end of stream: the HTTP framing
     * (Content-Length, chunks) is what tells a truncated answer. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    const char *ca = c->ca_file ? c->ca_file : getenv("GUST_CA_FILE");
    if (ca && *ca) {
        if (load_ca_file(ctx, ca, c->addr, err) < 0) {
            SSL_CTX_free(ctx);
            return NULL;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        gust_fail_(err, GUST_ERR_CONNECT, EPROTO, "cannot connect to gustd at %s: the system's CA certificates: %s",
                   c->addr, ossl_reason(why, sizeof why));
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* Runs one SSL operation's wait: 1 to try again, else a negative errno. */
static int ssl_wait(gust_client *c, int fd, int rc, uint64_t deadline)
{
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ)
        return gust_wait_fd_(fd, POLLIN, deadline) < 0 ? -ETIMEDOUT : 1;
    if (e == SSL_ERROR_WANT_WRITE)
        return gust_wait_fd_(fd, POLLOUT, deadline) < 0 ? -ETIMEDOUT : 1;
    if (e == SSL_ERROR_ZERO_RETURN)
        return -ECONNRESET;
    if (e == SSL_ERROR_SYSCALL)
        return errno == EPIPE ? -EPIPE : -ECONNRESET;
    return -EPROTO;
}

int gust_tls_open_(gust_client *c, int fd, uint64_t deadline, gust_error *err)
{
    if (!c->ssl_ctx && !(c->ssl_ctx = ctx_new(c, err)))
        return -(err ? err->sys_errno : EPROTO);
    char why[256];
    c->ssl = SSL_new(c->ssl_ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
        gust_tls_close_(c);
        return gust_fail_(err, GUST_ERR_CONNECT, EPROTO, "cannot connect to gustd at %s: TLS setup: %s", c->addr,
                          ossl_reason(why, sizeof why));
    }
    /* An IP literal is checked against the certificate's IP addresses, a name
     * against its DNS names (and sent as SNI). */
    unsigned char ip[16];
    bool is_ip = inet_pton(AF_INET, c->host, ip) == 1 || inet_pton(AF_INET6, c->host, ip) == 1;
    X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
    X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, c->host)
                   : SSL_set1_host(c->ssl, c->host) == 1 && SSL_set_tlsext_host_name(c->ssl, c->host) == 1;
    if (ok != 1) {
        gust_tls_close_(c);
        return gust_fail_(err, GUST_ERR_CONNECT, EINVAL, "cannot connect to gustd at %s: bad TLS host name", c->addr);
    }
    for (;;) {
        ERR_clear_error();
        int rc = SSL_connect(c->ssl);
        if (rc == 1)
            return 0;
        int w = ssl_wait(c, fd, rc, deadline);
        if (w > 0)
            continue;
        long vr = SSL_get_verify_result(c->ssl);
        const char *reason = ossl_reason(why, sizeof why);
        gust_tls_close_(c);
        if (w == -ETIMEDOUT)
            return gust_fail_(err, GUST_ERR_TIMEOUT, ETIMEDOUT, "cannot connect to gustd at %s: TLS handshake timed out",
                              c->addr);
        if (vr != X509_V_OK)
            return gust_fail_(err, GUST_ERR_CONNECT, EPROTO,
                              "cannot connect to gustd at %s: its TLS certificate is not trusted: %s (give the CA "
                              "certificate that signed it with $GUST_CA_FILE or gust --ca-file)",
                              c->addr, X509_verify_cert_error_string(vr));
        return gust_fail_(err, GUST_ERR_CONNECT, EPROTO,
                          "cannot connect to gustd at %s: TLS handshake failed: %s (does it serve HTTPS? an "
                          "http:// address speaks plain HTTP)",
                          c->addr, reason);
    }
}

int gust_tls_send_(gust_client *c, const void *data, size_t len, uint64_t deadline)
{
    /* Without partial writes a write retried after WANT_* passes the same bytes and
     * returns once all of them went out. */
    const char *p = data;
    while (len) {
        int chunk = len > (1u << 30) ? (1 << 30) : (int)len;
        ERR_clear_error();
        int n = SSL_write(c->ssl, p, chunk);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        int w = ssl_wait(c, c->fd, n, deadline);
        if (w < 0) {
            ERR_clear_error();
            return w;
        }
    }
    return 0;
}

ssize_t gust_tls_recv_(gust_client *c, uint64_t deadline)
{
    for (;;) {
        ERR_clear_error();
        int n = SSL_read(c->ssl, c->rbuf, GUST_RBUF_SIZE);
        if (n > 0)
            return n;
        if (SSL_get_error(c->ssl, n) == SSL_ERROR_ZERO_RETURN)
            return 0;
        int w = ssl_wait(c, c->fd, n, deadline);
        if (w < 0) {
            ERR_clear_error();
            return w;
        }
    }
}

void gust_tls_close_(gust_client *c)
{
    if (!c->ssl)
        return;
    ERR_clear_error();
    if (SSL_is_init_finished(c->ssl))
        SSL_shutdown(c->ssl);
    ERR_clear_error();
    SSL_free(c->ssl);
    c->ssl = NULL;
}
