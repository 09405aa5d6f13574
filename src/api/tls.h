/* TLS for the API server: the OpenSSL context gustd serves with (--tls-cert,
 * --tls-key). The per-connection record layer lives in server.c, under the HTTP
 * connection; this file only builds and checks the context. */
#ifndef GUST_API_TLS_H
#define GUST_API_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "base/error.h"

/* Largest certificate chain or key file read (PEM). */
#define API_TLS_MAX_PEM (1024u * 1024u)

/* A server context from a PEM certificate chain (leaf first, then intermediates) and
 * a PEM private key matching the leaf. TLS 1.2 and 1.3 only, OpenSSL's default cipher
 * lists of those versions (forward secret, AEAD first), no renegotiation, no
 * compression, no session tickets (clients of gustd rarely resume, and a ticket key
 * would be one more secret). Both files are read with O_CLOEXEC and parsed from
 * memory. Returns the context, or NULL with *err naming the file at fault. */
SSL_CTX *api_tls_ctx_new(const char *cert_file, const char *key_file, struct gerr *err);

/* The reason of OpenSSL's most recent error of this thread (then clears its queue)
 * into out[cap]; "unknown" when the queue is empty. Returns out. */
const char *api_tls_last_error(char *out, size_t cap);

#endif
