/* The API server's TLS context (see tls.h). */
#include "api/tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>

#include "base/cleanup.h"
#include "base/util.h"

const char *api_tls_last_error(char *out, size_t cap)
{
    unsigned long e = ERR_get_error();
    unsigned long last = e;
    /* The last queued error is the outermost; the first is the root cause. */
    while (e) {
        last = e;
        e = ERR_get_error();
    }
    if (!last)
        snprintf(out, cap, "unknown");
    else
        ERR_error_string_n(last, out, cap);
    return out;
}

static void ctx_freep(SSL_CTX **c)
{
    SSL_CTX_free(*c);
}

/* The certificate chain from a PEM BIO: the leaf, then the intermediates, sent along
 * so clients can build the path. */
static int load_chain(SSL_CTX *ctx, BIO *b, const char *path, struct gerr *err)
{
    char why[256];
    X509 *leaf = PEM_read_bio_X509_AUX(b, NULL, NULL, NULL);
    if (!leaf)
        return gerr_set(err, EINVAL, "--tls-cert %s: no PEM certificate in it (%s)", path,
                        api_tls_last_error(why, sizeof why));
    int ok = SSL_CTX_use_certificate(ctx, leaf);
    X509_free(leaf);
    if (ok != 1)
        return gerr_set(err, EINVAL, "--tls-cert %s: %s", path, api_tls_last_error(why, sizeof why));
    X509 *ca;
    while ((ca = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
        if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
            X509_free(ca);
            return gerr_set(err, EINVAL, "--tls-cert %s: chain certificate: %s", path,
                            api_tls_last_error(why, sizeof why));
        }
    }
    /* Running out of certificates ends the loop with a "no start line" error. */
    ERR_clear_error();
    return 0;
}

static int load_key(SSL_CTX *ctx, BIO *b, const char *path, struct gerr *err)
{
    char why[256];
    EVP_PKEY *key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    if (!key)
        return gerr_set(err, EINVAL, "--tls-key %s: no PEM private key in it (%s)", path,
                        api_tls_last_error(why, sizeof why));
    int ok = SSL_CTX_use_PrivateKey(ctx, key);
    EVP_PKEY_free(key);
    if (ok != 1 || SSL_CTX_check_private_key(ctx) != 1)
        return gerr_set(err, EINVAL, "--tls-key %s does not match the certificate of --tls-cert (%s)", path,
                        api_tls_last_error(why, sizeof why));
    return 0;
}

/* Reads the PEM file path (bounded, O_CLOEXEC) and hands it to load as a memory BIO;
 * the file's text is wiped afterwards (it may hold the private key). */
static int load_pem(SSL_CTX *ctx, const char *what, const char *path,
                    int (*load)(SSL_CTX *ctx, BIO *b, const char *path, struct gerr *err), struct gerr *err)
{
    AUTO_FREE char *text = NULL;
    size_t len = 0;
    int r = file_read_all(path, API_TLS_MAX_PEM, &text, &len);
    if (r < 0)
        return gerr_set(err, -r, "%s %s: %s", what, path, r == -EFBIG ? "larger than 1 MiB" : strerror(-r));
    BIO *b = BIO_new_mem_buf(text, (int)len);
    if (!b)
        r = gerr_set(err, ENOMEM, "%s %s: cannot buffer it", what, path);
    else
        r = load(ctx, b, path, err);
    BIO_free(b);
    explicit_bzero(text, len);
    return r;
}

SSL_CTX *api_tls_ctx_new(const char *cert_file, const char *key_file, struct gerr *err)
{
    __attribute__((cleanup(ctx_freep))) SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    char why[256];
    if (!ctx) {
        gerr_set(err, ENOMEM, "TLS context: %s", api_tls_last_error(why, sizeof why));
        return NULL;
    }
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        gerr_set(err, EINVAL, "TLS context: %s", api_tls_last_error(why, sizeof why));
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    /* The output buffer is appended to (and may move) between the tries of a write the
     * socket did not take whole; partial writes let the queue drain record by record. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    if (load_pem(ctx, "--tls-cert", cert_file, load_chain, err) < 0 ||
        load_pem(ctx, "--tls-key", key_file, load_key, err) < 0)
        return NULL;
    return TAKE_PTR(ctx);
}
