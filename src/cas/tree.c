/* Trees in the content-addressed store: ingest, manifests, materialise, gc (see
 * cas/cas.h). */
#include "cas/cas.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/json_cleanup.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "cas/internal.h"

/* The marker the image builders leave in a finished rootfs; not part of the image.
 *
 * jansson calls whose arguments are known to be valid (digests, types, values already
 * parsed) can fail only on allocation, which aborts under gustd's allocator (xmalloc):
 * their results are not checked. File names are not known to be UTF-8, so building an
 * entry from one is. */
#define CAS_SKIP_NAME ".gust-image-ok"

/* ---- ingest ----------------------------------------------------------------- */

/* Chunks are hashed, compressed and written by INGEST_THREADS workers while the
 * caller's thread walks the tree and reads files; at most INGEST_QUEUE chunks wait. */
#define INGEST_THREADS 2
#define INGEST_QUEUE 8

struct chunk_job {
    uint8_t *buf;         /* freed once stored */
    size_t len;
    struct cas_digest d;
};

struct pool {
    pthread_mutex_t mu;
    pthread_cond_t can_put, can_take;
    struct chunk_job *q[INGEST_QUEUE];
    size_t head, count;
    bool done;
    int first_err;
    struct gerr err;
    struct cas *c;
    struct cas_writer w[INGEST_THREADS];
    pthread_t th[INGEST_THREADS];
    int started;          /* threads running */
    int nthreads;         /* workers that took a writer index */
};

static void *pool_worker(void *arg)
{
    struct pool *p = arg;
    pthread_mutex_lock(&p->mu);
    int me = p->nthreads++;
    assert(me < INGEST_THREADS); /* one writer per started thread */
    for (;;) {
        while (p->count == 0 && !p->done)
            pthread_cond_wait(&p->can_take, &p->mu);
        if (p->count == 0)
            break;
        struct chunk_job *j = p->q[p->head];
        p->head = (p->head + 1) % INGEST_QUEUE;
        p->count--;
        pthread_cond_signal(&p->can_put);
        bool failed = p->first_err != 0;
        pthread_mutex_unlock(&p->mu);
        struct gerr e;
        int r = failed ? 0 : cas_put_with(p->c, &p->w[me], j->buf, j->len, &j->d, &e);
        free(j->buf);
        j->buf = NULL;
        pthread_mutex_lock(&p->mu);
        if (r < 0 && !p->first_err) {
            p->first_err = r;
            p->err = e;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void pool_push(struct pool *p, struct chunk_job *j)
{
    pthread_mutex_lock(&p->mu);
    while (p->count == INGEST_QUEUE)
        pthread_cond_wait(&p->can_put, &p->mu);
    p->q[(p->head + p->count) % INGEST_QUEUE] = j;
    p->count++;
    pthread_cond_signal(&p->can_take);
    pthread_mutex_unlock(&p->mu);
}

/* Tells the started workers to finish what is queued, joins them and frees the
 * pool; returns the first error of a worker. */
static int pool_stop(struct pool *p, struct gerr *err)
{
    pthread_mutex_lock(&p->mu);
    p->done = true;
    pthread_cond_broadcast(&p->can_take);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->started; i++)
        pthread_join(p->th[i], NULL);
    for (int i = 0; i < INGEST_THREADS; i++)
        cas_writer_free(&p->w[i]);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->can_put);
    pthread_cond_destroy(&p->can_take);
    if (p->first_err && err)
        *err = p->err;
    return p->first_err;
}

static int pool_start(struct pool *p, struct cas *c, struct gerr *err)
{
    memset(p, 0, sizeof *p);
    p->c = c;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->can_put, NULL);
    pthread_cond_init(&p->can_take, NULL);
    bool ok = true;
    for (int i = 0; ok && i < INGEST_THREADS; i++)
        ok = cas_writer_init(&p->w[i]) == 0;
    for (int i = 0; ok && i < INGEST_THREADS; i++) {
        ok = pthread_create(&p->th[i], NULL, pool_worker, p) == 0;
        if (ok)
            p->started++;
    }
    if (!ok) {
        pool_stop(p, NULL);
        return gerr_set(err, EAGAIN, "cannot start the ingest threads");
    }
    return 0;
}

struct ingest {
    struct cas *c;
    json_t *entries;
    json_t *inodes;       /* "dev:ino" -> path of the first link */
    struct cas_stats st;
    uint8_t *buf;         /* CAS_CHUNK_SIZE */
    struct gerr *err;
    struct pool *pool;
    struct chunk_job **jobs;  /* every chunk, in order; a file's "chunks" hold indices here */
    size_t njobs, jobs_cap;
    uint32_t id_base, id_count; /* owners in [base, base + count) are stored minus base */
};

/* Queues a copy of data as the next chunk; returns its index. */
static size_t queue_chunk(struct ingest *in, const uint8_t *data, size_t len)
{
    if (in->njobs == in->jobs_cap) {
        size_t cap = in->jobs_cap ? in->jobs_cap * 2 : 1024;
        in->jobs = xreallocarray(in->jobs, cap, sizeof *in->jobs);
        in->jobs_cap = cap;
    }
    struct chunk_job *j = xcalloc(1, sizeof *j);
    j->buf = xmemdup(data, len);
    j->len = len;
    in->jobs[in->njobs] = j;
    pool_push(in->pool, j);
    return in->njobs++;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static uint32_t unshift(const struct ingest *in, uint32_t id)
{
    return in->id_count && id >= in->id_base && id - in->id_base < in->id_count ? id - in->id_base : id;
}

static json_t *entry_base(const struct ingest *in, const char *path, const char *type, const struct stat *st)
{
    return json_pack("{s:s,s:s,s:i,s:I,s:I}", "path", path, "type", type, "mode", (int)(st->st_mode & 07777),
                     "uid", (json_int_t)unshift(in, st->st_uid), "gid", (json_int_t)unshift(in, st->st_gid));
}

/* Appends e, an entry_base result: NULL when the path was not UTF-8. */
static int add_entry(struct ingest *in, json_t *e)
{
    if (!e)
        return gerr_set(in->err, EILSEQ, "a file name is not valid UTF-8 (manifests hold UTF-8 paths)");
    json_array_append_new(in->entries, e);
    if (json_array_size(in->entries) > CAS_MAX_ENTRIES)
        return gerr_set(in->err, E2BIG, "more than %d files", CAS_MAX_ENTRIES);
    return 0;
}

int cas_read_chunk(int fd, uint8_t *buf, size_t *have)
{
    *have = 0;
    while (*have < CAS_CHUNK_SIZE) {
        ssize_t n = read(fd, buf + *have, CAS_CHUNK_SIZE - *have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        *have += (size_t)n;
    }
    return 0;
}

static int ingest_file(struct ingest *in, int fd, const char *path, const struct stat *st)
{
    json_t *e = entry_base(in, path, "file", st);
    if (!e)
        return add_entry(in, e);
    json_t *chunks = json_array();
    uint64_t total = 0;
    for (;;) {
        size_t have;
        int r = cas_read_chunk(fd, in->buf, &have);
        if (r < 0) {
            json_decref(chunks);
            json_decref(e);
            return gerr_sys(in->err, -r, "read %s", path);
        }
        if (have == 0 && total > 0)
            break;
        size_t idx = queue_chunk(in, in->buf, have);
        json_array_append_new(chunks, json_integer((json_int_t)idx));
        total += have;
        if (have < CAS_CHUNK_SIZE)
            break;
    }
    json_object_set_new(e, "size", json_integer((json_int_t)total));
    json_object_set_new(e, "chunks", chunks);
    in->st.files++;
    in->st.bytes_in += total;
    return add_entry(in, e);
}

/* dirfd is open on the directory whose relative path is rel ("" for the root). */
static int ingest_dir(struct ingest *in, int dirfd, const char *rel, int depth)
{
    if (depth > 256)
        return gerr_set(in->err, ELOOP, "%s: directories nested too deep", rel);
    int dfd2 = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    DIR *d = dfd2 >= 0 ? fdopendir(dfd2) : NULL;
    if (!d) {
        if (dfd2 >= 0)
            close(dfd2);
        return gerr_sys(in->err, errno, "open directory %s", *rel ? rel : "/");
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    int r = 0;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
            (!*rel && !strcmp(de->d_name, CAS_SKIP_NAME)))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            names = xreallocarray(names, cap, sizeof *names);
        }
        names[n++] = xstrdup(de->d_name);
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 0; i < n && r == 0; i++) {
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s%s%s", rel, *rel ? "/" : "", names[i]) >= (int)sizeof path) {
            r = gerr_set(in->err, ENAMETOOLONG, "path too long under %s", rel);
            break;
        }
        struct stat st;
        if (fstatat(dirfd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
            r = gerr_sys(in->err, errno, "stat %s", path);
            break;
        }
        if (S_ISDIR(st.st_mode)) {
            r = add_entry(in, entry_base(in, path, "dir", &st));
            in->st.dirs++;
            AUTO_FD int sub = r == 0 ? openat(dirfd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
            if (r == 0 && sub < 0)
                r = gerr_sys(in->err, errno, "open %s", path);
            if (r == 0)
                r = ingest_dir(in, sub, path, depth + 1);
        } else if (S_ISLNK(st.st_mode)) {
            char target[PATH_MAX];
            ssize_t tl = readlinkat(dirfd, names[i], target, sizeof target - 1);
            if (tl < 0) {
                r = gerr_sys(in->err, errno, "readlink %s", path);
                break;
            }
            target[tl] = '\0';
            json_t *e = entry_base(in, path, "symlink", &st), *t = json_string(target);
            if (e && t) {
                json_object_set_new(e, "target", t);
                r = add_entry(in, e);
            } else {
                json_decref(e);
                json_decref(t);
                r = add_entry(in, NULL);
            }
            in->st.symlinks++;
        } else if (S_ISREG(st.st_mode)) {
            char key[64];
            snprintf(key, sizeof key, "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
            json_t *first = st.st_nlink > 1 ? json_object_get(in->inodes, key) : NULL;
            if (first) {
                json_t *e = entry_base(in, path, "hardlink", &st);
                if (e)
                    json_object_set(e, "target", first);
                r = add_entry(in, e);
                in->st.hardlinks++;
                continue;
            }
            if (st.st_nlink > 1)
                json_object_set_new(in->inodes, key, json_string(path));
            AUTO_FD int fd = openat(dirfd, names[i], O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0) {
                r = gerr_sys(in->err, errno, "open %s", path);
                break;
            }
            r = ingest_file(in, fd, path, &st);
        } else {
            in->st.skipped++; /* device nodes, sockets, fifos: /dev is the sandbox's own */
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return r;
}

/* The canonical text of a manifest (compact, keys sorted) stored as an object. */
static int manifest_store(struct cas *c, json_t *m, struct cas_digest *out, struct gerr *err)
{
    AUTO_FREE char *text = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);
    return cas_put(c, text, strlen(text), out, err);
}

int cas_manifest_store(struct cas *c, json_t *m, struct cas_digest *out, struct gerr *err)
{
    /* NULL when m is not a JSON value jansson can write (not an object, say); the
     * parse below then rejects it. */
    AUTO_FREE char *text = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text)
        return gerr_set(err, EINVAL, "new manifest: not a JSON object");
    json_t *check = NULL;
    int r = cas_manifest_parse(text, strlen(text), &check, err);
    json_decref(check);
    if (r < 0)
        return gerr_prefix(err, "new manifest");
    return cas_put(c, text, strlen(text), out, err);
}

int cas_ingest_tree(struct cas *c, const char *dir, json_t *config, struct cas_digest *manifest,
                    struct cas_stats *st, struct gerr *err)
{
    return cas_ingest_tree_shifted(c, dir, config, 0, 0, manifest, st, err);
}

int cas_ingest_tree_shifted(struct cas *c, const char *dir, json_t *config, uint32_t id_base, uint32_t id_count,
                            struct cas_digest *manifest, struct cas_stats *st, struct gerr *err)
{
    AUTO_FD int root = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return gerr_sys(err, errno, "open %s", dir);
    struct stat rst;
    if (fstat(root, &rst) < 0)
        return gerr_sys(err, errno, "stat %s", dir);
    struct ingest in = {.c = c, .err = err, .id_base = id_base, .id_count = id_count};
    AUTO_JSON json_t *entries = json_array();
    AUTO_JSON json_t *inodes = json_object();
    AUTO_FREE uint8_t *buf = xmalloc(CAS_CHUNK_SIZE);
    in.entries = entries;
    in.inodes = inodes;
    in.buf = buf;
    uint64_t written0 = cas_stats(c)->objects_written, reused0 = cas_stats(c)->objects_reused,
             stored0 = cas_stats(c)->bytes_stored;
    struct pool pool;
    int r = pool_start(&pool, c, err);
    if (r < 0)
        return r;
    in.pool = &pool;
    r = add_entry(&in, entry_base(&in, ".", "dir", &rst));
    if (r == 0)
        r = ingest_dir(&in, root, "", 0);
    struct gerr perr;
    int pr = pool_stop(&pool, &perr);
    if (r == 0 && pr < 0) {
        r = pr;
        *err = perr;
    }
    /* Chunk indices to digests. */
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e) {
        json_t *chunks = json_object_get(e, "chunks");
        for (size_t k = 0; r == 0 && k < json_array_size(chunks); k++) {
            char hex[CAS_HEX_LEN + 1];
            cas_digest_hex(&in.jobs[json_integer_value(json_array_get(chunks, k))]->d, hex);
            json_array_set_new(chunks, k, json_string(hex));
        }
    }
    for (size_t k = 0; k < in.njobs; k++)
        free(in.jobs[k]);
    free(in.jobs);
    if (r < 0)
        return gerr_prefix(err, "ingest %s", dir);
    json_t *cfg = config ? json_incref(config) : json_object();
    AUTO_JSON json_t *m = json_pack("{s:i,s:o,s:O}", "gust_manifest", 1, "config", cfg, "entries", entries);
    r = manifest_store(c, m, manifest, err);
    if (r < 0)
        return gerr_prefix(err, "store the manifest of %s", dir);
    if (st) {
        *st = in.st;
        st->objects_written = cas_stats(c)->objects_written - written0;
        st->objects_reused = cas_stats(c)->objects_reused - reused0;
        st->bytes_stored = cas_stats(c)->bytes_stored - stored0;
    }
    return 0;
}

/* ---- manifests ---------------------------------------------------------------- */

static bool path_ok(const char *p)
{
    if (!strcmp(p, "."))
        return true;
    if (!*p || *p == '/' || strlen(p) >= PATH_MAX)
        return false;
    for (const char *s = p;;) {
        const char *slash = strchr(s, '/');
        size_t n = slash ? (size_t)(slash - s) : strlen(s);
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            return false;
        if (!slash)
            return true;
        s = slash + 1;
    }
}

/* The parent of p ("." for a top-level name) into out. */
static void parent_of(const char *p, char *out, size_t cap)
{
    const char *slash = strrchr(p, '/');
    if (!slash) {
        snprintf(out, cap, ".");
        return;
    }
    snprintf(out, cap, "%.*s", (int)(slash - p), p);
}

static int bad(struct gerr *err, size_t i, const char *what)
{
    return gerr_set(err, EBADMSG, "manifest entries[%zu]: %s", i, what);
}

int cas_manifest_parse(const char *text, size_t len, json_t **out, struct gerr *err)
{
    *out = NULL;
    if (len > CAS_MANIFEST_MAX)
        return gerr_set(err, E2BIG, "manifest of %zu bytes is too large", len);
    json_error_t je;
    AUTO_JSON json_t *m = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!m)
        return gerr_set(err, EBADMSG, "manifest is not JSON: %s", je.text);
    json_t *ver = json_object_get(m, "gust_manifest"), *cfg = json_object_get(m, "config"),
           *ents = json_object_get(m, "entries");
    if (!json_is_object(m) || !json_is_integer(ver) || json_integer_value(ver) != 1 || !json_is_object(cfg) ||
        !json_is_array(ents))
        return gerr_set(err, EBADMSG, "manifest: want {\"gust_manifest\": 1, \"config\": {...}, \"entries\": [...]}");
    size_t n = json_array_size(ents);
    if (n == 0 || n > CAS_MAX_ENTRIES)
        return gerr_set(err, EBADMSG, "manifest: %zu entries (1..%d)", n, CAS_MAX_ENTRIES);
    AUTO_JSON json_t *seen = json_object(); /* path -> type */
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(ents, i);
        const char *path = json_string_value(json_object_get(e, "path"));
        const char *type = json_string_value(json_object_get(e, "type"));
        json_t *mode = json_object_get(e, "mode"), *uid = json_object_get(e, "uid"), *gid = json_object_get(e, "gid");
        if (!json_is_object(e) || !path || !type || !path_ok(path))
            return bad(err, i, "needs a relative \"path\" without empty, \".\" or \"..\" parts and a \"type\"");
        if (!json_is_integer(mode) || json_integer_value(mode) < 0 || json_integer_value(mode) > 07777 ||
            !json_is_integer(uid) || json_integer_value(uid) < 0 || json_integer_value(uid) > 0xfffffffe ||
            !json_is_integer(gid) || json_integer_value(gid) < 0 || json_integer_value(gid) > 0xfffffffe)
            return bad(err, i, "\"mode\" (0..07777), \"uid\" and \"gid\" must be integers in range");
        if ((i == 0) != !strcmp(path, ".") || (i == 0 && strcmp(type, "dir")))
            return bad(err, i, "the first entry, and only it, must be the root directory \".\"");
        if (json_object_get(seen, path))
            return bad(err, i, "duplicate path");
        if (i > 0) {
            char parent[PATH_MAX];
            parent_of(path, parent, sizeof parent);
            const char *pt = json_string_value(json_object_get(seen, parent));
            if (!pt || strcmp(pt, "dir"))
                return bad(err, i, "its parent directory must come before it");
        }
        if (!strcmp(type, "file")) {
            json_t *size = json_object_get(e, "size"), *chunks = json_object_get(e, "chunks");
            if (!json_is_integer(size) || json_integer_value(size) < 0 ||
                (uint64_t)json_integer_value(size) > CAS_MAX_FILE_SIZE || !json_is_array(chunks))
                return bad(err, i, "a file needs \"size\" and \"chunks\"");
            uint64_t sz = (uint64_t)json_integer_value(size);
            size_t want = sz == 0 ? 1 : (size_t)((sz + CAS_CHUNK_SIZE - 1) / CAS_CHUNK_SIZE);
            if (json_array_size(chunks) != want)
                return bad(err, i, "the number of chunks does not match the size");
            size_t k;
            json_t *ch;
            json_array_foreach(chunks, k, ch) {
                struct cas_digest d;
                if (cas_digest_parse(json_string_value(ch), &d) < 0)
                    return bad(err, i, "chunks must be SHA-256 hex digests");
            }
        } else if (!strcmp(type, "symlink")) {
            const char *t = json_string_value(json_object_get(e, "target"));
            if (!t || !*t || strlen(t) >= PATH_MAX)
                return bad(err, i, "a symlink needs a \"target\"");
        } else if (!strcmp(type, "hardlink")) {
            const char *t = json_string_value(json_object_get(e, "target"));
            const char *tt = t ? json_string_value(json_object_get(seen, t)) : NULL;
            if (!tt || strcmp(tt, "file"))
                return bad(err, i, "a hardlink's \"target\" must be a file listed before it");
        } else if (strcmp(type, "dir")) {
            return bad(err, i, "\"type\" must be dir, file, symlink or hardlink");
        }
        json_object_set_new(seen, path, json_string(type));
    }
    *out = TAKE_PTR(m);
    return 0;
}

int cas_manifest_load(struct cas *c, const struct cas_digest *d, json_t **out, struct gerr *err)
{
    uint8_t *text;
    size_t len;
    int r = cas_get(c, d, &text, &len, err);
    if (r < 0)
        return r;
    r = cas_manifest_parse((const char *)text, len, out, err);
    free(text);
    return r;
}

/* ---- materialise -------------------------------------------------------------- */

/* Opens the directory rel below rootfd, following no symlink at any step. */
static int open_beneath(int rootfd, const char *rel)
{
    struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
    long fd = syscall(SYS_openat2, rootfd, rel, &how, sizeof how);
    return fd < 0 ? -errno : (int)fd;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static int write_file(struct cas *c, int pfd, const char *name, json_t *e, struct gerr *err)
{
    AUTO_FD int fd = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return gerr_sys(err, errno, "create %s", json_string_value(json_object_get(e, "path")));
    size_t k;
    json_t *ch;
    uint64_t total = 0;
    json_array_foreach(json_object_get(e, "chunks"), k, ch) {
        struct cas_digest d;
        cas_digest_parse(json_string_value(ch), &d);
        uint8_t *data;
        size_t len;
        int r = cas_get(c, &d, &data, &len, err);
        if (r < 0)
            return gerr_prefix(err, "%s", json_string_value(json_object_get(e, "path")));
        r = write_full(fd, data, len);
        free(data);
        if (r < 0)
            return gerr_sys(err, -r, "write %s", json_string_value(json_object_get(e, "path")));
        total += len;
    }
    if (total != (uint64_t)json_integer_value(json_object_get(e, "size")))
        return gerr_set(err, EBADMSG, "%s: chunks add up to %llu bytes, the manifest says %lld",
                        json_string_value(json_object_get(e, "path")), (unsigned long long)total,
                        (long long)json_integer_value(json_object_get(e, "size")));
    return 0;
}

/* Mode and owner of the object name in pfd (symlinks: owner only). */
static int set_meta(int pfd, const char *name, json_t *e, bool symlink, struct gerr *err)
{
    uid_t uid = (uid_t)json_integer_value(json_object_get(e, "uid"));
    gid_t gid = (gid_t)json_integer_value(json_object_get(e, "gid"));
    const char *path = json_string_value(json_object_get(e, "path"));
    if (fchownat(pfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
        return gerr_sys(err, errno, "chown %s", path);
    if (!symlink && fchmodat(pfd, name, (mode_t)json_integer_value(json_object_get(e, "mode")), 0) < 0)
        return gerr_sys(err, errno, "chmod %s", path);
    return 0;
}

/* Files of an earlier materialised tree that a new one may hard-link instead of
 * writing: its root, and its files by content key (content_key). */
struct reuse {
    int rootfd;                 /* -1: none */
    json_t *by_content;         /* key -> path in the earlier tree */
};

/* What makes two file entries interchangeable on disk: a hard link shares mode and
 * owner as well as bytes. */
static void content_key(json_t *e, struct buf *b)
{
    buf_printf(b, "%lld:%lld:%lld:%lld", (long long)json_integer_value(json_object_get(e, "mode")),
               (long long)json_integer_value(json_object_get(e, "uid")),
               (long long)json_integer_value(json_object_get(e, "gid")),
               (long long)json_integer_value(json_object_get(e, "size")));
    size_t k;
    json_t *ch;
    json_array_foreach(json_object_get(e, "chunks"), k, ch)
        buf_printf(b, ",%s", json_string_value(ch));
}

/* Links the file an earlier tree holds with e's content at pfd/name: 1 when linked,
 * 0 when there is none to link (or linking failed: the caller writes it). */
static int reuse_link(const struct reuse *ru, json_t *e, int pfd, const char *name)
{
    if (!ru || ru->rootfd < 0)
        return 0;
    struct buf key = {0};
    content_key(e, &key);
    const char *from = json_string_value(json_object_get(ru->by_content, key.data));
    buf_free(&key);
    if (!from)
        return 0;
    char parent[PATH_MAX];
    parent_of(from, parent, sizeof parent);
    AUTO_FD int ffd = open_beneath(ru->rootfd, parent);
    /* EMLINK (a file linked into very many versions) and the like: write a copy. */
    return ffd >= 0 && linkat(ffd, base_name(from), pfd, name, 0) == 0;
}

static int materialize_into(struct cas *c, json_t *m, int rootfd, const struct reuse *ru, struct gerr *err)
{
    json_t *ents = json_object_get(m, "entries");
    size_t n = json_array_size(ents);
    char cur_parent[PATH_MAX] = "";
    int pfd = -1, r = 0;
    for (size_t i = 1; i < n && r == 0; i++) {
        json_t *e = json_array_get(ents, i);
        const char *path = json_string_value(json_object_get(e, "path"));
        const char *type = json_string_value(json_object_get(e, "type"));
        char parent[PATH_MAX];
        parent_of(path, parent, sizeof parent);
        if (pfd < 0 || strcmp(parent, cur_parent)) {
            if (pfd >= 0)
                close(pfd);
            pfd = open_beneath(rootfd, parent);
            if (pfd < 0) {
                r = gerr_sys(err, -pfd, "open directory %s", parent);
                break;
            }
            snprintf(cur_parent, sizeof cur_parent, "%s", parent);
        }
        const char *name = base_name(path);
        if (!strcmp(type, "dir")) {
            if (mkdirat(pfd, name, 0700) < 0)
                r = gerr_sys(err, errno, "mkdir %s", path);
            /* Modes of directories come last, so read-only ones can still be filled. */
        } else if (!strcmp(type, "file")) {
            if (reuse_link(ru, e, pfd, name))
                continue;
            r = write_file(c, pfd, name, e, err);
            if (r == 0)
                r = set_meta(pfd, name, e, false, err);
        } else if (!strcmp(type, "symlink")) {
            if (symlinkat(json_string_value(json_object_get(e, "target")), pfd, name) < 0)
                r = gerr_sys(err, errno, "symlink %s", path);
            else
                r = set_meta(pfd, name, e, true, err);
        } else {
            const char *target = json_string_value(json_object_get(e, "target"));
            char tparent[PATH_MAX];
            parent_of(target, tparent, sizeof tparent);
            AUTO_FD int tfd = open_beneath(rootfd, tparent);
            if (tfd < 0 || linkat(tfd, base_name(target), pfd, name, 0) < 0)
                r = gerr_sys(err, tfd < 0 ? -tfd : errno, "hardlink %s -> %s", path, target);
        }
    }
    if (pfd >= 0)
        close(pfd);
    /* Directory modes and owners, deepest first. */
    for (size_t i = n; i-- > 0 && r == 0;) {
        json_t *e = json_array_get(ents, i);
        if (strcmp(json_string_value(json_object_get(e, "type")), "dir"))
            continue;
        const char *path = json_string_value(json_object_get(e, "path"));
        if (i == 0) {
            r = set_meta(rootfd, ".", e, false, err);
            continue;
        }
        char parent[PATH_MAX];
        parent_of(path, parent, sizeof parent);
        AUTO_FD int dfd = open_beneath(rootfd, parent);
        r = dfd < 0 ? gerr_sys(err, -dfd, "open directory %s", parent) : set_meta(dfd, base_name(path), e, false, err);
    }
    return r;
}

int cas_materialize(struct cas *c, const struct cas_digest *d, const char *dest, struct gerr *err)
{
    return cas_materialize_reuse(c, d, dest, NULL, NULL, err);
}

int cas_materialize_reuse(struct cas *c, const struct cas_digest *d, const char *dest, const char *prev_dir,
                          const struct cas_digest *prev, struct gerr *err)
{
    AUTO_JSON json_t *m = NULL;
    int r = cas_manifest_load(c, d, &m, err);
    if (r < 0)
        return r;
    AUTO_JSON json_t *by_content = json_object();
    AUTO_FD int prevfd = -1;
    if (prev_dir && prev) {
        AUTO_JSON json_t *pm = NULL;
        struct gerr perr;
        /* An earlier tree that cannot be read only costs the copies. */
        if (cas_manifest_load(c, prev, &pm, &perr) == 0 &&
            (prevfd = open(prev_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
            size_t i;
            json_t *e;
            json_array_foreach(json_object_get(pm, "entries"), i, e) {
                if (strcmp(json_string_value(json_object_get(e, "type")), "file"))
                    continue;
                struct buf key = {0};
                content_key(e, &key);
                json_object_set(by_content, key.data, json_object_get(e, "path"));
                buf_free(&key);
            }
        }
    }
    struct reuse ru = {.rootfd = prevfd, .by_content = by_content};
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", dest) >= (int)sizeof tmp)
        return gerr_set(err, ENAMETOOLONG, "path %s too long", dest);
    if (!mkdtemp(tmp))
        return gerr_sys(err, errno, "create %s", tmp);
    AUTO_FD int rootfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) {
        r = gerr_sys(err, errno, "open %s", tmp);
    } else {
        r = materialize_into(c, m, rootfd, &ru, err);
    }
    if (r == 0 && rename(tmp, dest) < 0)
        r = gerr_sys(err, errno, "rename %s to %s", tmp, dest);
    if (r < 0)
        rm_rf(tmp);
    return r;
}

/* ---- gc ------------------------------------------------------------------------ */

/* The live set is checked although its inserts fail only on allocation: an entry
 * silently missing from it would delete a live object. */
static int mark(struct cas *c, json_t *live, const struct cas_digest *root, struct gerr *err)
{
    char hex[CAS_HEX_LEN + 1];
    cas_digest_hex(root, hex);
    if (json_object_set_new(live, hex, json_true()) < 0)
        return gerr_set(err, ENOMEM, "out of memory");
    AUTO_JSON json_t *m = NULL;
    int r = cas_manifest_load(c, root, &m, err);
    if (r < 0)
        return gerr_prefix(err, "gc: manifest sha256:%s", hex);
    size_t i, k;
    json_t *e, *ch;
    json_array_foreach(json_object_get(m, "entries"), i, e) {
        json_array_foreach(json_object_get(e, "chunks"), k, ch) {
            if (json_object_set_new(live, json_string_value(ch), json_true()) < 0)
                return gerr_set(err, ENOMEM, "out of memory");
        }
    }
    return 0;
}

int cas_gc(struct cas *c, const struct cas_digest *roots, size_t n, uint64_t *removed, uint64_t *bytes,
           struct gerr *err)
{
    *removed = *bytes = 0;
    AUTO_JSON json_t *live = json_object();
    if (!live)
        return gerr_set(err, ENOMEM, "out of memory");
    /* A root that cannot be read stops the collection: deleting on a partial mark
     * could remove what a live image needs. */
    for (size_t i = 0; i < n; i++) {
        int r = mark(c, live, &roots[i], err);
        if (r < 0)
            return r;
    }
    for (int b = 0; b < 256; b++) {
        char sub[3];
        snprintf(sub, sizeof sub, "%02x", b);
        int dfd = openat(c->objects_fd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
        if (!d) {
            if (dfd >= 0)
                close(dfd);
            continue;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.')
                continue;
            char hex[CAS_HEX_LEN + 1];
            if (snprintf(hex, sizeof hex, "%s%s", sub, de->d_name) != CAS_HEX_LEN || json_object_get(live, hex))
                continue;
            struct stat st;
            if (fstatat(dirfd(d), de->d_name, &st, 0) == 0 && unlinkat(dirfd(d), de->d_name, 0) == 0) {
                (*removed)++;
                *bytes += (uint64_t)st.st_size;
            }
        }
        closedir(d);
    }
    return 0;
}
