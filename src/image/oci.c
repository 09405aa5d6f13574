/* OCI images: an OCI image layout directory, or a tarball of one / a docker-archive
 * ("docker save"), applied layer by layer (whiteouts and opaque directories handled)
 * into a directory that is then stored like any added image (see image/image.h). */
#include "image/image.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <linux/openat2.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "base/cleanup.h"
#include "base/json_cleanup.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "cas/cas.h"
#include "image/tar.h"

#define OCI_JSON_MAX (16u << 20)
/* Room for a directory and a member name below it. */
#define OCI_PATH_MAX (PATH_MAX + TAR_NAME_MAX + 64)

/* ---- layer byte sources: plain, gzip, zstd; with a running SHA-256 of the raw file ---- */

struct src {
    int fd;
    EVP_MD_CTX *md;           /* over the bytes as stored (what the digest names) */
    enum { SRC_PLAIN, SRC_GZIP, SRC_ZSTD } kind;
    z_stream z;
    ZSTD_DStream *zs;
    ZSTD_inBuffer zin;
    uint8_t in[1 << 16];
    size_t in_len, in_off;
    bool in_eof, done;
};

static ssize_t raw_fill(struct src *s)
{
    ssize_t n;
    do
        n = read(s->fd, s->in, sizeof s->in);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    if (n == 0)
        s->in_eof = true;
    if (n > 0)
        EVP_DigestUpdate(s->md, s->in, (size_t)n);
    s->in_len = (size_t)n;
    s->in_off = 0;
    return n;
}

static ssize_t src_read(void *ud, void *buf, size_t n)
{
    struct src *s = ud;
    if (s->kind == SRC_PLAIN) {
        if (s->in_off == s->in_len) {
            ssize_t r = raw_fill(s);
            if (r <= 0)
                return r;
        }
        size_t k = s->in_len - s->in_off < n ? s->in_len - s->in_off : n;
        memcpy(buf, s->in + s->in_off, k);
        s->in_off += k;
        return (ssize_t)k;
    }
    if (s->done)
        return 0;
    if (s->kind == SRC_GZIP) {
        s->z.next_out = buf;
        s->z.avail_out = (uInt)(n > (1u << 30) ? (1u << 30) : n);
        while (s->z.avail_out == (uInt)n || s->z.avail_out == (1u << 30)) {
            if (s->z.avail_in == 0 && !s->in_eof) {
                ssize_t r = raw_fill(s);
                if (r < 0)
                    return r;
                s->z.next_in = s->in;
                s->z.avail_in = (uInt)s->in_len;
            }
            int zr = inflate(&s->z, Z_NO_FLUSH);
            if (zr == Z_STREAM_END) {
                s->done = true;
                break;
            }
            if (zr != Z_OK && !(zr == Z_BUF_ERROR && s->z.avail_in == 0 && !s->in_eof))
                return -EBADMSG;
            if (s->in_eof && s->z.avail_in == 0 && s->z.avail_out == (uInt)n)
                return -EBADMSG; /* truncated */
        }
        return (ssize_t)(n - s->z.avail_out);
    }
    ZSTD_outBuffer out = {buf, n, 0};
    while (out.pos == 0) {
        if (s->zin.pos == s->zin.size) {
            if (s->in_eof)
                return -EBADMSG;
            ssize_t r = raw_fill(s);
            if (r < 0)
                return r;
            s->zin = (ZSTD_inBuffer){s->in, s->in_len, 0};
        }
        size_t zr = ZSTD_decompressStream(s->zs, &out, &s->zin);
        if (ZSTD_isError(zr))
            return -EBADMSG;
        if (zr == 0 && out.pos == 0) {
            s->done = true;
            break;
        }
    }
    return (ssize_t)out.pos;
}

/* Opens path and picks the decoder from its first bytes. */
static int src_open(struct src *s, const char *path, struct gerr *err)
{
    memset(s, 0, sizeof *s);
    s->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (s->fd < 0)
        return gerr_sys(err, errno, "open %s", path);
    s->md = EVP_MD_CTX_new();
    if (!s->md || EVP_DigestInit_ex(s->md, EVP_sha256(), NULL) != 1) {
        close(s->fd);
        EVP_MD_CTX_free(s->md);
        return gerr_set(err, ENOMEM, "out of memory");
    }
    ssize_t r = raw_fill(s);
    if (r < 0) {
        close(s->fd);
        EVP_MD_CTX_free(s->md);
        return gerr_sys(err, (int)-r, "read %s", path);
    }
    if (s->in_len >= 2 && s->in[0] == 0x1f && s->in[1] == 0x8b) {
        s->kind = SRC_GZIP;
        if (inflateInit2(&s->z, 16 + MAX_WBITS) != Z_OK) {
            close(s->fd);
            EVP_MD_CTX_free(s->md);
            return gerr_set(err, ENOMEM, "zlib init failed");
        }
        s->z.next_in = s->in;
        s->z.avail_in = (uInt)s->in_len;
    } else if (s->in_len >= 4 && !memcmp(s->in, "\x28\xb5\x2f\xfd", 4)) {
        s->kind = SRC_ZSTD;
        s->zs = ZSTD_createDStream();
        if (!s->zs) {
            close(s->fd);
            EVP_MD_CTX_free(s->md);
            return gerr_set(err, ENOMEM, "out of memory");
        }
        s->zin = (ZSTD_inBuffer){s->in, s->in_len, 0};
    }
    return 0;
}

/* Reads what is left (so the digest covers the whole file), closes, and writes the
 * SHA-256 hex of the raw file into hex. */
static void src_close(struct src *s, char hex[CAS_HEX_LEN + 1])
{
    while (hex && !s->in_eof && raw_fill(s) > 0) {
    }
    unsigned char md[32];
    unsigned int n = 0;
    EVP_DigestFinal_ex(s->md, md, &n);
    if (hex) {
        struct cas_digest d;
        memcpy(d.b, md, 32);
        cas_digest_hex(&d, hex);
    }
    EVP_MD_CTX_free(s->md);
    if (s->kind == SRC_GZIP)
        inflateEnd(&s->z);
    if (s->zs)
        ZSTD_freeDStream(s->zs);
    close(s->fd);
}

/* ---- applying a layer ------------------------------------------------------------ */

/* openat2 below root with symlinks resolved inside it, never out of it. */
static int open_in_root(int rootfd, const char *rel, int flags)
{
    struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC),
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    long fd = syscall(SYS_openat2, rootfd, *rel ? rel : ".", &how, sizeof how);
    return fd < 0 ? -errno : (int)fd;
}

int image_path_clean(const char *in, char *out, size_t cap)
{
    while (in[0] == '.' && in[1] == '/')
        in += 2;
    while (*in == '/')
        in++;
    size_t o = 0;
    for (const char *p = in; *p;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return -EINVAL;
        if (n > 0 && !(n == 1 && p[0] == '.')) {
            if (o + n + 2 > cap)
                return -ENAMETOOLONG;
            if (o)
                out[o++] = '/';
            memcpy(out + o, p, n);
            o += n;
        }
        p += n + (slash ? 1 : 0);
        if (!slash)
            break;
    }
    out[o] = '\0';
    return 0;
}

/* Creates every directory of rel (0755) below root and returns an fd on the last. */
static int mkdirs_in_root(int rootfd, const char *rel)
{
    char path[TAR_NAME_MAX];
    snprintf(path, sizeof path, "%s", rel);
    for (char *p = path;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (*path) {
                int fd = open_in_root(rootfd, path, O_PATH | O_DIRECTORY);
                if (fd < 0) {
                    /* Create the last component in its (existing) parent. */
                    char *slash = strrchr(path, '/');
                    char parent[TAR_NAME_MAX] = "";
                    if (slash)
                        snprintf(parent, sizeof parent, "%.*s", (int)(slash - path), path);
                    AUTO_FD int pfd = open_in_root(rootfd, parent, O_PATH | O_DIRECTORY);
                    if (pfd < 0)
                        return pfd;
                    if (mkdirat(pfd, slash ? slash + 1 : path, 0755) < 0 && errno != EEXIST)
                        return -errno;
                } else {
                    close(fd);
                }
            }
            *p = c;
            if (c == '\0')
                break;
        }
    }
    return open_in_root(rootfd, path, O_PATH | O_DIRECTORY);
}

struct apply_stats {
    uint64_t entries, whiteouts, skipped;
};

/* Writes the current entry's data to a new file name in pfd. */
static int write_entry(struct tar_reader *t, int pfd, const char *name, const struct tar_entry *e, uint8_t *buf,
                       size_t cap, struct gerr *err)
{
    AUTO_FD int fd = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return gerr_sys(err, errno, "create %s", e->name);
    for (;;) {
        ssize_t n = tar_read_data(t, buf, cap, err);
        if (n < 0)
            return (int)n;
        if (n == 0)
            break;
        int r = write_full(fd, buf, (size_t)n);
        if (r < 0)
            return gerr_sys(err, -r, "write %s", e->name);
    }
    if (fchown(fd, e->uid, e->gid) < 0 || fchmod(fd, e->mode) < 0)
        return gerr_sys(err, errno, "set owner and mode of %s", e->name);
    return 0;
}

/* Applies one tar stream onto the tree at rootfd, OCI layer rules: ".wh.NAME" deletes
 * NAME, ".wh..wh..opq" empties its directory, later entries replace earlier ones. */
static int apply_tar(tar_read_fn read, void *ud, int rootfd, struct apply_stats *st, struct gerr *err)
{
    struct tar_reader t;
    tar_reader_init(&t, read, ud);
    AUTO_FREE struct tar_entry *e = xmalloc(sizeof *e);
    AUTO_FREE uint8_t *buf = xmalloc(1 << 16);
    for (;;) {
        int r = tar_next(&t, e, err);
        if (r <= 0)
            return r;
        char name[TAR_NAME_MAX];
        if (image_path_clean(e->name, name, sizeof name) < 0)
            return gerr_set(err, EBADMSG, "member \"%s\" leaves the image (\"..\")", e->name);
        if (!*name) {
            if (e->type == TAR_DIR && (fchown(rootfd, e->uid, e->gid) < 0 || fchmod(rootfd, e->mode) < 0))
                return gerr_sys(err, errno, "set owner and mode of /");
            continue;
        }
        st->entries++;
        char *slash = strrchr(name, '/');
        const char *base = slash ? slash + 1 : name;
        char parent[TAR_NAME_MAX] = "";
        if (slash)
            snprintf(parent, sizeof parent, "%.*s", (int)(slash - name), name);
        AUTO_FD int pfd = mkdirs_in_root(rootfd, parent);
        if (pfd < 0)
            return gerr_sys(err, -pfd, "directory %s", parent);
        int dfd = open_in_root(rootfd, parent, O_RDONLY | O_DIRECTORY);
        if (dfd < 0)
            return gerr_sys(err, -dfd, "directory %s", parent);
        AUTO_FD int dirfd_ = dfd;
        if (!strncmp(base, ".wh.", 4)) {
            st->whiteouts++;
            r = !strcmp(base, ".wh..wh..opq") ? rm_contents(dirfd_) : rm_rf_in(dirfd_, base + 4);
            if (r < 0)
                return gerr_sys(err, -r, "whiteout %s", e->name);
            continue;
        }
        struct stat old;
        bool exists = fstatat(dirfd_, base, &old, AT_SYMLINK_NOFOLLOW) == 0;
        if (e->type == TAR_DIR) {
            if (exists && !S_ISDIR(old.st_mode) && (r = rm_rf_in(dirfd_, base)) < 0)
                return gerr_sys(err, -r, "replace %s", e->name);
            if ((!exists || !S_ISDIR(old.st_mode)) && mkdirat(dirfd_, base, 0755) < 0)
                return gerr_sys(err, errno, "mkdir %s", e->name);
            if (fchownat(dirfd_, base, e->uid, e->gid, AT_SYMLINK_NOFOLLOW) < 0 ||
                fchmodat(dirfd_, base, e->mode, 0) < 0)
                return gerr_sys(err, errno, "set owner and mode of %s", e->name);
            continue;
        }
        if (e->type == TAR_OTHER) {
            st->skipped++; /* device nodes and fifos: /dev is the sandbox's own */
            continue;
        }
        if (exists && (r = rm_rf_in(dirfd_, base)) < 0)
            return gerr_sys(err, -r, "replace %s", e->name);
        if (e->type == TAR_FILE) {
            r = write_entry(&t, dirfd_, base, e, buf, 1 << 16, err);
            if (r < 0)
                return r;
        } else if (e->type == TAR_SYMLINK) {
            if (symlinkat(e->link, dirfd_, base) < 0 || fchownat(dirfd_, base, e->uid, e->gid, AT_SYMLINK_NOFOLLOW) < 0)
                return gerr_sys(err, errno, "symlink %s", e->name);
        } else {
            char target[TAR_NAME_MAX];
            if (image_path_clean(e->link, target, sizeof target) < 0 || !*target)
                return gerr_set(err, EBADMSG, "hardlink %s -> \"%s\" leaves the image", e->name, e->link);
            char *ts = strrchr(target, '/');
            char tparent[TAR_NAME_MAX] = "";
            if (ts)
                snprintf(tparent, sizeof tparent, "%.*s", (int)(ts - target), target);
            AUTO_FD int tfd = open_in_root(rootfd, tparent, O_PATH | O_DIRECTORY);
            if (tfd < 0 || linkat(tfd, ts ? ts + 1 : target, dirfd_, base, 0) < 0)
                return gerr_sys(err, tfd < 0 ? -tfd : errno, "hardlink %s -> %s", e->name, e->link);
        }
    }
}

/* ---- OCI layout / docker-archive ------------------------------------------------ */

/* Reads path as JSON; when digest ("sha256:<hex>") is given the file must hash to it.
 * what names the file in errors. */
static json_t *read_json(const char *path, const char *digest, const char *what, struct gerr *err)
{
    AUTO_FREE char *text = NULL;
    size_t len;
    int r = file_read_all(path, OCI_JSON_MAX, &text, &len);
    if (r < 0) {
        gerr_sys(err, -r, "read %s", what);
        return NULL;
    }
    if (digest) {
        struct cas_digest d, want;
        cas_digest_of(text, len, &d);
        if (cas_digest_parse(digest, &want) < 0 || memcmp(d.b, want.b, 32)) {
            gerr_set(err, EBADMSG, "blob %s does not match its digest", digest);
            return NULL;
        }
    }
    json_error_t je;
    json_t *j = json_loadb(text, len, 0, &je);
    if (!j)
        gerr_set(err, EBADMSG, "%s is not JSON: %s (line %d)", what, je.text, je.line);
    return j;
}

static json_t *load_json(const char *path, struct gerr *err)
{
    return read_json(path, NULL, path, err);
}

/* blobs/sha256/<hex> of a "sha256:<hex>" digest. */
static int blob_path(const char *layout, const char *digest, char *out, size_t cap, struct gerr *err)
{
    struct cas_digest d;
    if (!digest || strncmp(digest, "sha256:", 7) || cas_digest_parse(digest, &d) < 0)
        return gerr_set(err, EBADMSG, "unsupported digest \"%s\" (want sha256:<64 hex>)", digest ? digest : "");
    if (snprintf(out, cap, "%s/blobs/sha256/%s", layout, digest + 7) >= (int)cap)
        return gerr_set(err, ENAMETOOLONG, "path too long");
    return 0;
}

/* A blob's JSON, after checking the blob against its digest. */
static json_t *load_blob_json(const char *layout, const char *digest, struct gerr *err)
{
    char path[OCI_PATH_MAX];
    if (blob_path(layout, digest, path, sizeof path, err) < 0)
        return NULL;
    char what[96];
    snprintf(what, sizeof what, "blob %.80s", digest);
    return read_json(path, digest, what, err);
}

/* Applies one layer file; want_hex (if any) must be the SHA-256 of the file. */
static int apply_layer_file(const char *path, const char *want_hex, int rootfd, struct apply_stats *st,
                            struct gerr *err)
{
    struct src s;
    int r = src_open(&s, path, err);
    if (r < 0)
        return r;
    r = apply_tar(src_read, &s, rootfd, st, err);
    char hex[CAS_HEX_LEN + 1];
    src_close(&s, hex);
    if (r < 0)
        return gerr_prefix(err, "layer %s", path);
    if (want_hex && strcmp(hex, want_hex))
        return gerr_set(err, EBADMSG, "layer %s does not match its digest sha256:%s", path, want_hex);
    return 0;
}

/* The image manifest of an OCI layout: index.json's first manifest, or in a nested
 * index the linux/amd64 one (else the first). */
static json_t *oci_manifest(const char *layout, struct gerr *err)
{
    char path[OCI_PATH_MAX];
    snprintf(path, sizeof path, "%s/index.json", layout);
    AUTO_JSON json_t *idx = load_json(path, err);
    for (int depth = 0; idx && depth < 3; depth++) {
        json_t *ms = json_object_get(idx, "manifests");
        if (!json_is_array(ms) || !json_array_size(ms)) {
            gerr_set(err, EBADMSG, "OCI index without manifests");
            return NULL;
        }
        json_t *pick = json_array_get(ms, 0);
        size_t i;
        json_t *m;
        json_array_foreach(ms, i, m) {
            json_t *pl = json_object_get(m, "platform");
            const char *os = json_string_value(json_object_get(pl, "os")),
                       *arch = json_string_value(json_object_get(pl, "architecture"));
            if (os && arch && !strcmp(os, "linux") && !strcmp(arch, "amd64")) {
                pick = m;
                break;
            }
        }
        json_t *next = load_blob_json(layout, json_string_value(json_object_get(pick, "digest")), err);
        if (!next)
            return NULL;
        if (json_is_array(json_object_get(next, "layers")))
            return next;
        json_decref(idx);
        idx = next; /* a nested index */
    }
    if (idx)
        gerr_set(err, EBADMSG, "OCI index nests too deep");
    return NULL;
}

/* The config the manifest of the stored image keeps: env, workdir, cmd, entrypoint, user. */
static json_t *oci_kept_config(json_t *oci_config)
{
    json_t *c = json_object_get(oci_config, "config");
    json_t *out = json_object();
    static const char *const keys[][2] = {{"Env", "env"}, {"WorkingDir", "workdir"}, {"Cmd", "cmd"},
                                          {"Entrypoint", "entrypoint"}, {"User", "user"}};
    for (size_t i = 0; out && c && i < sizeof keys / sizeof keys[0]; i++) {
        json_t *v = json_object_get(c, keys[i][0]);
        if (v && !json_is_null(v))
            json_object_set(out, keys[i][1], v);
    }
    return out;
}

static int import_layout(const char *layout, int rootfd, json_t **config, struct apply_stats *st, struct gerr *err)
{
    AUTO_JSON json_t *m = oci_manifest(layout, err);
    if (!m)
        return -EBADMSG;
    const char *cfgd = json_string_value(json_object_get(json_object_get(m, "config"), "digest"));
    AUTO_JSON json_t *cfg = cfgd ? load_blob_json(layout, cfgd, err) : NULL;
    if (cfgd && !cfg)
        return -EBADMSG;
    size_t i;
    json_t *l;
    json_array_foreach(json_object_get(m, "layers"), i, l) {
        const char *digest = json_string_value(json_object_get(l, "digest"));
        char path[OCI_PATH_MAX];
        int r = blob_path(layout, digest, path, sizeof path, err);
        if (r < 0)
            return r;
        if ((r = apply_layer_file(path, digest + 7, rootfd, st, err)) < 0)
            return r;
    }
    *config = oci_kept_config(cfg);
    return 0;
}

/* docker save's manifest.json: [{"Config": "x.json", "Layers": ["a/layer.tar", ...]}]. */
static int import_docker(const char *dir, int rootfd, json_t **config, struct apply_stats *st, struct gerr *err)
{
    char path[OCI_PATH_MAX];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    AUTO_JSON json_t *mj = load_json(path, err);
    json_t *m = json_array_get(mj, 0);
    json_t *layers = json_object_get(m, "Layers");
    if (!json_is_array(layers))
        return gerr_set(err, EBADMSG, "%s: want [{\"Config\": ..., \"Layers\": [...]}]", path);
    size_t i;
    json_t *l;
    json_array_foreach(layers, i, l) {
        char rel[TAR_NAME_MAX];
        if (!json_is_string(l) || image_path_clean(json_string_value(l), rel, sizeof rel) < 0 || !*rel)
            return gerr_set(err, EBADMSG, "%s: bad layer path", path);
        snprintf(path, sizeof path, "%s/%s", dir, rel);
        int r = apply_layer_file(path, NULL, rootfd, st, err);
        if (r < 0)
            return r;
    }
    char rel[TAR_NAME_MAX];
    const char *cfgp = json_string_value(json_object_get(m, "Config"));
    json_t *cfg = NULL;
    if (cfgp && image_path_clean(cfgp, rel, sizeof rel) == 0 && *rel) {
        snprintf(path, sizeof path, "%s/%s", dir, rel);
        cfg = load_json(path, err);
    }
    *config = oci_kept_config(cfg);
    json_decref(cfg);
    return 0;
}

int image_import_oci(struct cas *cas, const char *images_dir, const char *path, char id_out[IMAGE_ID_MAX],
                     char *rootfs_out, size_t rootfs_cap, struct cas_stats *st, struct gerr *err)
{
    struct stat sb;
    if (stat(path, &sb) < 0)
        return gerr_sys(err, errno, "%s", path);
    char work[PATH_MAX];
    if (snprintf(work, sizeof work, "%s/import-XXXXXX", images_dir) >= (int)sizeof work || !mkdtemp(work))
        return gerr_sys(err, errno, "create a scratch directory under %s", images_dir);
    char tree[PATH_MAX + 8], unpacked[PATH_MAX + 16];
    snprintf(tree, sizeof tree, "%s/tree", work);
    snprintf(unpacked, sizeof unpacked, "%s/archive", work);
    int r = 0;
    const char *layout = path;
    json_t *config = NULL;
    struct apply_stats as = {0};
    if (mkdir(tree, 0755) < 0) {
        r = gerr_sys(err, errno, "mkdir %s", tree);
        goto out;
    }
    if (S_ISREG(sb.st_mode)) {
        /* A tarball: unpack it first (plain members; docker-archive or OCI layout). */
        if (mkdir(unpacked, 0700) < 0) {
            r = gerr_sys(err, errno, "mkdir %s", unpacked);
            goto out;
        }
        AUTO_FD int ufd = open(unpacked, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct apply_stats ignored = {0};
        r = ufd < 0 ? gerr_sys(err, errno, "open %s", unpacked) : apply_layer_file(path, NULL, ufd, &ignored, err);
        if (r < 0)
            goto out;
        layout = unpacked;
    } else if (!S_ISDIR(sb.st_mode)) {
        r = gerr_set(err, EINVAL, "%s is neither an OCI layout directory nor an image tarball", path);
        goto out;
    }
    {
        AUTO_FD int rootfd = open(tree, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        char probe[OCI_PATH_MAX];
        snprintf(probe, sizeof probe, "%s/oci-layout", layout);
        if (rootfd < 0)
            r = gerr_sys(err, errno, "open %s", tree);
        else if (access(probe, F_OK) == 0)
            r = import_layout(layout, rootfd, &config, &as, err);
        else if (snprintf(probe, sizeof probe, "%s/manifest.json", layout), access(probe, F_OK) == 0)
            r = import_docker(layout, rootfd, &config, &as, err);
        else
            r = gerr_set(err, EINVAL, "%s has neither oci-layout nor manifest.json: not an OCI or docker image", path);
    }
    if (r == 0)
        r = image_import_config(cas, images_dir, tree, config, id_out, rootfs_out, rootfs_cap, st, err);
out:
    json_decref(config);
    rm_rf(work);
    return r;
}

/* The uploaded tree d, materialised at dir (which must not exist): an OCI layout
 * directory, or a tree of one regular file (an image tarball). *path gets what
 * image_import_oci reads. */
static int oci_tree_source(struct cas *cas, const struct cas_digest *d, const char *dir, char *path, size_t cap,
                           struct gerr *err)
{
    json_t *m = NULL;
    int r = cas_manifest_load(cas, d, &m, err);
    if (r < 0)
        return r;
    json_t *one = NULL;
    size_t i, n = 0;
    json_t *en;
    json_array_foreach(json_object_get(m, "entries"), i, en) {
        if (strcmp(json_string_value(json_object_get(en, "path")), ".")) {
            n++;
            one = en;
        }
    }
    if (n == 1 && !strcmp(json_string_value(json_object_get(one, "type")), "file"))
        snprintf(path, cap, "%s/%s", dir, json_string_value(json_object_get(one, "path")));
    else
        snprintf(path, cap, "%s", dir);
    json_decref(m);
    return cas_materialize(cas, d, dir, err);
}

/* Rewrites err's message so that paths under dir (gustd's scratch copy of an uploaded
 * tree) read as paths inside the tree: a client's error names its own files, not
 * gustd's data directory. */
static void err_paths_in_tree(struct gerr *err, const char *dir)
{
    size_t n = strlen(dir);
    char *p;
    while ((p = strstr(err->msg, dir)) != NULL) {
        size_t skip = n + (p[n] == '/');
        memmove(p, p + skip, strlen(p + skip) + 1);
    }
}

int image_import_oci_tree(struct cas *cas, const char *images_dir, const char *tree, char id_out[IMAGE_ID_MAX],
                          char *rootfs_out, size_t rootfs_cap, struct cas_stats *st, struct gerr *err)
{
    struct cas_digest d;
    if (cas_digest_parse(tree, &d) < 0 || !cas_has(cas, &d))
        return gerr_set(err, ENOENT, "tree %s is not stored; upload it first (POST /v1/mounts)", tree);
    char work[PATH_MAX], dir[PATH_MAX + 8], path[PATH_MAX * 2];
    if (snprintf(work, sizeof work, "%s/upload-XXXXXX", images_dir) >= (int)sizeof work || !mkdtemp(work))
        return gerr_sys(err, errno, "create a scratch directory under %s", images_dir);
    snprintf(dir, sizeof dir, "%s/tree", work);
    int r = oci_tree_source(cas, &d, dir, path, sizeof path, err);
    if (r == 0)
        r = image_import_oci(cas, images_dir, path, id_out, rootfs_out, rootfs_cap, st, err);
    if (r < 0)
        err_paths_in_tree(err, dir);
    rm_rf(work);
    return r;
}
