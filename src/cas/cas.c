/* Content-addressed store (see cas/cas.h). */
#include "cas/cas.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <zstd.h>

#include "base/cleanup.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "cas/internal.h"

#define CAS_MAGIC "GCAS"
#define CAS_HDR 13
#define CAS_FMT_RAW 0
#define CAS_FMT_ZSTD 1
/* Compress only when it saves at least this share, and only objects this large. */
#define CAS_ZSTD_MIN_SAVING 0.10
#define CAS_ZSTD_MIN_SIZE 512
#define CAS_ZSTD_LEVEL 1



/* ---- digests ---------------------------------------------------------------- */

void cas_digest_hex(const struct cas_digest *d, char out[CAS_HEX_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[d->b[i] >> 4];
        out[2 * i + 1] = hex[d->b[i] & 15];
    }
    out[CAS_HEX_LEN] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int cas_digest_parse(const char *s, struct cas_digest *d)
{
    if (!s)
        return -EINVAL;
    if (!strncmp(s, "sha256:", 7))
        s += 7;
    if (strlen(s) != CAS_HEX_LEN)
        return -EINVAL;
    for (int i = 0; i < 32; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        d->b[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

void cas_digest_of(const void *data, size_t len, struct cas_digest *out)
{
    unsigned int n = 0;
    EVP_Digest(data, len, out->b, &n, EVP_sha256(), NULL);
}

/* ---- store ------------------------------------------------------------------ */

int cas_open(const char *root, struct cas **out, struct gerr *err)
{
    if (!root || root[0] != '/')
        return gerr_set(err, EINVAL, "store root \"%s\" must be an absolute path", root ? root : "");
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/objects", root);
    int r = mkdir_p(path, 0700);
    if (r < 0)
        return gerr_sys(err, -r, "create %s", path);
    AUTO_FD int ofd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (ofd < 0)
        return gerr_sys(err, errno, "open %s", path);
    /* All 256 fan-out directories up front: no mkdir on the write path. */
    for (int i = 0; i < 256; i++) {
        char sub[3];
        snprintf(sub, sizeof sub, "%02x", i);
        if (mkdirat(ofd, sub, 0700) < 0 && errno != EEXIST)
            return gerr_sys(err, errno, "create %s/%s", path, sub);
    }
    snprintf(path, sizeof path, "%s/tmp", root);
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return gerr_sys(err, errno, "create %s", path);
    AUTO_FD int tfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (tfd < 0)
        return gerr_sys(err, errno, "open %s", path);
    struct cas *c = xcalloc(1, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
    c->root = xstrdup(root);
    c->dctx = ZSTD_createDCtx();
    if (!c->dctx || cas_writer_init(&c->w) < 0) {
        c->objects_fd = c->tmp_fd = -1;
        cas_close(c);
        return gerr_set(err, ENOMEM, "zstd: cannot create a compression context");
    }
    c->objects_fd = TAKE_FD(ofd);
    c->tmp_fd = TAKE_FD(tfd);
    *out = c;
    return 0;
}

void cas_close(struct cas *c)
{
    if (!c)
        return;
    if (c->objects_fd >= 0)
        close(c->objects_fd);
    if (c->tmp_fd >= 0)
        close(c->tmp_fd);
    cas_writer_free(&c->w);
    ZSTD_freeDCtx(c->dctx);
    pthread_mutex_destroy(&c->lock);
    free(c->root);
    free(c);
}

const struct cas_stats *cas_stats(const struct cas *c)
{
    return &c->stats;
}

/* "ab/cdef..." relative to objects_fd. */
static void object_rel(const struct cas_digest *d, char out[CAS_HEX_LEN + 2])
{
    char hex[CAS_HEX_LEN + 1];
    cas_digest_hex(d, hex);
    memcpy(out, hex, 2);
    out[2] = '/';
    memcpy(out + 3, hex + 2, CAS_HEX_LEN - 2 + 1);
}

bool cas_has(struct cas *c, const struct cas_digest *d)
{
    char rel[CAS_HEX_LEN + 2];
    object_rel(d, rel);
    return faccessat(c->objects_fd, rel, F_OK, AT_EACCESS) == 0;
}

int cas_writer_init(struct cas_writer *w)
{
    w->cctx = ZSTD_createCCtx();
    w->cbuf_cap = ZSTD_compressBound(CAS_CHUNK_SIZE) + CAS_HDR;
    w->cbuf = xmalloc(w->cbuf_cap);
    if (!w->cctx) {
        cas_writer_free(w);
        return -ENOMEM;
    }
    return 0;
}

void cas_writer_free(struct cas_writer *w)
{
    ZSTD_freeCCtx(w->cctx);
    free(w->cbuf);
    w->cctx = NULL;
    w->cbuf = NULL;
}

#define STAT_ADD(field, v) __atomic_add_fetch(&c->stats.field, (v), __ATOMIC_RELAXED)

int cas_put(struct cas *c, const void *data, size_t len, struct cas_digest *out, struct gerr *err)
{
    pthread_mutex_lock(&c->lock);
    int r = cas_put_with(c, &c->w, data, len, out, err);
    pthread_mutex_unlock(&c->lock);
    return r;
}

int cas_put_with(struct cas *c, struct cas_writer *w, const void *data, size_t len, struct cas_digest *out,
                 struct gerr *err)
{
    if (len > CAS_MANIFEST_MAX)
        return gerr_set(err, EFBIG, "object of %zu bytes is larger than the store takes", len);
    cas_digest_of(data, len, out);
    STAT_ADD(bytes_in, len);
    if (cas_has(c, out)) {
        STAT_ADD(objects_reused, 1);
        return 0;
    }
    uint8_t hdr[CAS_HDR];
    memcpy(hdr, CAS_MAGIC, 4);
    hdr[4] = CAS_FMT_RAW;
    for (int i = 0; i < 8; i++)
        hdr[5 + i] = (uint8_t)((uint64_t)len >> (8 * i));
    const void *payload = data;
    size_t plen = len;
    uint8_t *big = NULL;
    if (len >= CAS_ZSTD_MIN_SIZE) {
        size_t bound = ZSTD_compressBound(len);
        uint8_t *dst = w->cbuf;
        if (bound > w->cbuf_cap) {
            big = xmalloc(bound);
            dst = big;
        }
        size_t z = ZSTD_compressCCtx(w->cctx, dst, bound, data, len, CAS_ZSTD_LEVEL);
        if (!ZSTD_isError(z) && (double)z < (double)len * (1.0 - CAS_ZSTD_MIN_SAVING)) {
            payload = dst;
            plen = z;
            hdr[4] = CAS_FMT_ZSTD;
        }
    }
    char tmp[48];
    snprintf(tmp, sizeof tmp, "put-%d-%llu", (int)getpid(), (unsigned long long)__atomic_fetch_add(&c->tmp_seq, 1, __ATOMIC_RELAXED));
    int r;
    {
        AUTO_FD int fd = openat(c->tmp_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0444);
        if (fd < 0) {
            free(big);
            return gerr_sys(err, errno, "create %s/tmp/%s", c->root, tmp);
        }
        r = write_full(fd, hdr, sizeof hdr);
        if (r == 0)
            r = write_full(fd, payload, plen);
    }
    free(big);
    if (r < 0) {
        unlinkat(c->tmp_fd, tmp, 0);
        return gerr_sys(err, -r, "write object");
    }
    char rel[CAS_HEX_LEN + 2];
    object_rel(out, rel);
    if (renameat(c->tmp_fd, tmp, c->objects_fd, rel) < 0) {
        int e = errno;
        unlinkat(c->tmp_fd, tmp, 0);
        return gerr_sys(err, e, "store object %s", rel);
    }
    STAT_ADD(objects_written, 1);
    STAT_ADD(bytes_stored, plen + sizeof hdr);
    return 0;
}

int cas_get(struct cas *c, const struct cas_digest *d, uint8_t **data, size_t *len, struct gerr *err)
{
    *data = NULL;
    *len = 0;
    char rel[CAS_HEX_LEN + 2], hex[CAS_HEX_LEN + 1];
    object_rel(d, rel);
    cas_digest_hex(d, hex);
    AUTO_FD int fd = openat(c->objects_fd, rel, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return gerr_sys(err, errno, "object sha256:%s", hex);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return gerr_sys(err, errno, "stat object sha256:%s", hex);
    size_t fsize = (size_t)st.st_size;
    uint8_t hdr[CAS_HDR];
    if (fsize < CAS_HDR || pread(fd, hdr, CAS_HDR, 0) != CAS_HDR || memcmp(hdr, CAS_MAGIC, 4) ||
        (hdr[4] != CAS_FMT_RAW && hdr[4] != CAS_FMT_ZSTD))
        return gerr_set(err, EBADMSG, "object sha256:%s is corrupt (bad header)", hex);
    uint64_t n = 0;
    for (int i = 0; i < 8; i++)
        n |= (uint64_t)hdr[5 + i] << (8 * i);
    size_t plen = fsize - CAS_HDR;
    if (n > CAS_MANIFEST_MAX || (hdr[4] == CAS_FMT_RAW && plen != n))
        return gerr_set(err, EBADMSG, "object sha256:%s is corrupt (bad length)", hex);
    uint8_t *out = xmalloc(n + 1);
    uint8_t *payload = hdr[4] == CAS_FMT_RAW ? out : xmalloc(plen);
    ssize_t got = plen ? pread(fd, payload, plen, CAS_HDR) : 0;
    int r = 0;
    if (got != (ssize_t)plen) {
        r = gerr_sys(err, got < 0 ? errno : EIO, "read object sha256:%s", hex);
    } else if (hdr[4] == CAS_FMT_ZSTD) {
        pthread_mutex_lock(&c->lock);
        size_t z = ZSTD_decompressDCtx(c->dctx, out, n, payload, plen);
        pthread_mutex_unlock(&c->lock);
        if (ZSTD_isError(z) || z != n)
            r = gerr_set(err, EBADMSG, "object sha256:%s is corrupt (does not decompress)", hex);
    }
    if (payload != out)
        free(payload);
    if (r == 0) {
        struct cas_digest check;
        cas_digest_of(out, n, &check);
        if (memcmp(check.b, d->b, 32))
            r = gerr_set(err, EBADMSG, "object sha256:%s is corrupt (its content hashes differently)", hex);
    }
    if (r < 0) {
        free(out);
        return r;
    }
    out[n] = '\0';
    *data = out;
    *len = n;
    return 0;
}
