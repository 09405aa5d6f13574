/* Local files to content-addressed trees on gustd (docs/API.md "Mounts"), for image
 * add and import and for the host paths of image definitions (copy sources, wheel
 * directories, OCI images). gustd never opens a host path a client names: this
 * client reads the files itself, with its user's permissions, and sends them.
 *
 * Two phases, so that nothing reaches gustd when a file cannot be read: cli_tree_scan
 * walks and hashes (no request), cli_tree_upload then asks which chunks gustd lacks
 * (POST /v1/blobs/missing), sends those (PUT /v1/blobs/sha256:…) and posts the
 * entries (POST /v1/mounts) for the tree's id. Unchanged files cost no upload. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/json_cleanup.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "cli/cli.h"
#include "gust.h"
#include "spec/spec.h"

/* The store's chunk size and gustd's bounds on one request (src/control). */
#define UP_CHUNK (4u << 20)
#define UP_MAX_ENTRIES 100000
#define UP_MAX_QUERY 100000
#define UP_MAX_DEPTH 256

struct up_chunk {
    unsigned char md[32];
    uint32_t file;     /* index into tree->files */
    uint64_t off;
    uint32_t len;
};

struct cli_tree {
    json_t *entries;           /* manifest entries, parents first ("." implied) */
    char **files;              /* local paths of the files */
    size_t nfiles;
    struct up_chunk *chunks;
    size_t nchunks, cap;
    uint64_t bytes;
};

struct cli_tree *cli_tree_new(void)
{
    struct cli_tree *t = xcalloc(1, sizeof *t);
    t->entries = json_array();
    return t;
}

void cli_tree_free(struct cli_tree *t)
{
    if (!t)
        return;
    json_decref(t->entries);
    for (size_t i = 0; i < t->nfiles; i++)
        free(t->files[i]);
    free(t->files);
    free(t->chunks);
    free(t);
}

static void hex_of(const unsigned char md[32], char out[65])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 15];
    }
    out[64] = '\0';
}

/* Hashes the regular file path into chunks; its entry gets size and chunk digests.
 * On failure prints why (naming label) and returns false. */
static bool scan_file(struct cli_tree *t, const char *path, const char *label, json_t *entry)
{
    AUTO_FD int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        fprintf(stderr, "error: %s: cannot read %s: %s\n", label, path, strerror(errno));
        return false;
    }
    uint32_t idx = (uint32_t)t->nfiles;
    t->files = xreallocarray(t->files, t->nfiles + 1, sizeof *t->files);
    t->files[t->nfiles++] = xstrdup(path);
    AUTO_FREE unsigned char *buf = xmalloc(UP_CHUNK);
    json_t *chunks = json_array();
    uint64_t size = 0;
    for (bool first = true;; first = false) {
        size_t got = 0;
        while (got < UP_CHUNK) {
            ssize_t n = read(fd, buf + got, UP_CHUNK - got);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                fprintf(stderr, "error: %s: cannot read %s: %s\n", label, path, strerror(errno));
                json_decref(chunks);
                return false;
            }
            if (n == 0)
                break;
            got += (size_t)n;
        }
        /* An empty file is one empty chunk, as the store keeps it. */
        if (got == 0 && !first)
            break;
        if (t->nchunks == t->cap) {
            t->cap = t->cap ? t->cap * 2 : 64;
            t->chunks = xreallocarray(t->chunks, t->cap, sizeof *t->chunks);
        }
        struct up_chunk *c = &t->chunks[t->nchunks++];
        unsigned int mdlen = 0;
        EVP_Digest(buf, got, c->md, &mdlen, EVP_sha256(), NULL);
        c->file = idx;
        c->off = size;
        c->len = (uint32_t)got;
        char hex[65];
        hex_of(c->md, hex);
        json_array_append_new(chunks, json_string(hex));
        size += got;
        if (got < UP_CHUNK)
            break;
    }
    t->bytes += size;
    json_object_set_new(entry, "size", json_integer((json_int_t)size));
    json_object_set_new(entry, "chunks", chunks);
    return true;
}

/* One entry rel for the object at path (lstat st); directories recurse. */
static bool scan_entry(struct cli_tree *t, const char *path, const char *rel, const struct stat *st,
                       const char *label, int depth);

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool scan_dir(struct cli_tree *t, const char *path, const char *rel, const char *label, int depth)
{
    if (depth > UP_MAX_DEPTH) {
        fprintf(stderr, "error: %s: %s is nested more than %d directories deep\n", label, path, UP_MAX_DEPTH);
        return false;
    }
    DIR *d = opendir(path);
    if (!d) {
        fprintf(stderr, "error: %s: cannot read %s: %s\n", label, path, strerror(errno));
        return false;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        names = xreallocarray(names, n + 1, sizeof *names);
        names[n++] = xstrdup(de->d_name);
    }
    closedir(d);
    /* The order gustd's own ingest walks in (sorted names, depth first), so the same
     * directory gives the same tree id either way. */
    if (n > 1)
        qsort(names, n, sizeof *names, cmp_names);
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        AUTO_FREE char *p = xasprintf("%s/%s", path, names[i]);
        AUTO_FREE char *r = *rel ? xasprintf("%s/%s", rel, names[i]) : xstrdup(names[i]);
        struct stat st;
        if (ok && lstat(p, &st) < 0) {
            fprintf(stderr, "error: %s: cannot stat %s: %s\n", label, p, strerror(errno));
            ok = false;
        }
        if (ok)
            ok = scan_entry(t, p, r, &st, label, depth + 1);
        free(names[i]);
    }
    free(names);
    return ok;
}

static bool scan_entry(struct cli_tree *t, const char *path, const char *rel, const struct stat *st,
                       const char *label, int depth)
{
    /* Devices, sockets and fifos are not part of a tree (gustd's ingest skips them too). */
    if (!S_ISDIR(st->st_mode) && !S_ISREG(st->st_mode) && !S_ISLNK(st->st_mode))
        return true;
    if (json_array_size(t->entries) >= UP_MAX_ENTRIES) {
        fprintf(stderr, "error: %s: more than %d files and directories; gustd takes at most that many in one tree\n",
                label, UP_MAX_ENTRIES);
        return false;
    }
    /* Owners are gustd's to set (root); permission and sticky bits are kept. */
    json_t *e = json_pack("{s:s,s:s,s:i}", "path", rel, "type",
                          S_ISDIR(st->st_mode) ? "dir" : S_ISREG(st->st_mode) ? "file" : "symlink", "mode",
                          (int)(st->st_mode & 01777));
    if (!e) {
        fprintf(stderr, "error: %s: %s: the name is not valid UTF-8\n", label, path);
        return false;
    }
    json_array_append_new(t->entries, e);
    if (S_ISDIR(st->st_mode))
        return scan_dir(t, path, rel, label, depth);
    if (S_ISREG(st->st_mode))
        return scan_file(t, path, label, e);
    char target[PATH_MAX];
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n < 0) {
        fprintf(stderr, "error: %s: cannot read the link %s: %s\n", label, path, strerror(errno));
        return false;
    }
    target[n] = '\0';
    json_t *tj = json_string(target);
    if (!tj) {
        fprintf(stderr, "error: %s: %s: the link's target is not valid UTF-8\n", label, path);
        return false;
    }
    json_object_set_new(e, "target", tj);
    return true;
}

bool cli_tree_scan(struct cli_tree *t, const char *path, const char *label, bool *is_file)
{
    struct stat st;
    /* The named path itself is followed (a link to a directory is that directory). */
    if (stat(path, &st) < 0) {
        fprintf(stderr, "error: %s: %s: %s\n", label, path, strerror(errno));
        return false;
    }
    if (is_file)
        *is_file = S_ISREG(st.st_mode);
    if (S_ISDIR(st.st_mode))
        return scan_dir(t, path, "", label, 0);
    if (!S_ISREG(st.st_mode)) {
        fprintf(stderr, "error: %s: %s is neither a file nor a directory\n", label, path);
        return false;
    }
    /* A file is a tree holding it alone, under its own name. */
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    return scan_entry(t, path, base, &st, label, 0);
}

static int cmp_chunks(const void *a, const void *b)
{
    return memcmp(((const struct up_chunk *)a)->md, ((const struct up_chunk *)b)->md, 32);
}

/* One request whose answer must be JSON with status want; NULL after reporting. */
static json_t *up_request(gust_client *c, const char *method, const char *path, const char *ctype, const void *body,
                          size_t len, int want, const char *label, int *rc)
{
    int status;
    AUTO_FREE char *answer = NULL;
    size_t alen;
    gust_error e;
    if (gust_request(c, method, path, ctype, body, len, &status, &answer, &alen, &e) < 0) {
        fprintf(stderr, "error: uploading %s:\n", label);
        *rc = cli_report(&e);
        return NULL;
    }
    json_t *j = json_loadb(answer ? answer : "", alen, 0, NULL);
    if (status != want || !j) {
        fprintf(stderr, "error: uploading %s: gustd answered %d: %.300s\n", label, status, answer ? answer : "");
        json_decref(j);
        *rc = EXIT_CONNECT;
        return NULL;
    }
    return j;
}

/* Sends the chunk c (read again from its file). */
static bool put_chunk(gust_client *gc, const struct cli_tree *t, const struct up_chunk *c, const char *label, int *rc)
{
    const char *path = t->files[c->file];
    AUTO_FD int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    AUTO_FREE char *buf = xmalloc(c->len ? c->len : 1);
    if (fd < 0 || pread(fd, buf, c->len, (off_t)c->off) != (ssize_t)c->len) {
        fprintf(stderr, "error: %s: cannot read %s again: %s\n", label, path, fd < 0 ? strerror(errno) : "it changed");
        *rc = EXIT_USAGE;
        return false;
    }
    char hex[65], url[96];
    hex_of(c->md, hex);
    snprintf(url, sizeof url, "/v1/blobs/sha256:%s", hex);
    json_t *j = up_request(gc, "PUT", url, "application/octet-stream", buf, c->len, 201, label, rc);
    json_decref(j);
    return j != NULL;
}

bool cli_tree_send_chunks(gust_client *c, struct cli_tree *t, const char *label, struct cli_upload_stats *st,
                          int *rc)
{
    /* Distinct chunks, sorted so that gustd's answer can be looked up. */
    size_t n = 0;
    if (t->nchunks > 1)
        qsort(t->chunks, t->nchunks, sizeof *t->chunks, cmp_chunks);
    for (size_t i = 0; i < t->nchunks; i++)
        if (n == 0 || memcmp(t->chunks[n - 1].md, t->chunks[i].md, 32))
            t->chunks[n++] = t->chunks[i];
    t->nchunks = n;
    st->chunks += n;
    st->bytes += t->bytes;
    for (size_t at = 0; at < n; at += UP_MAX_QUERY) {
        size_t end = at + UP_MAX_QUERY < n ? at + UP_MAX_QUERY : n;
        json_t *digests = json_array();
        for (size_t i = at; i < end; i++) {
            char hex[65];
            hex_of(t->chunks[i].md, hex);
            json_array_append_new(digests, json_sprintf("sha256:%s", hex));
        }
        json_t *q AUTO_JSON = json_pack("{s:o}", "digests", digests);
        AUTO_FREE char *body = json_dumps(q, JSON_COMPACT);
        json_t *ans AUTO_JSON = up_request(c, "POST", "/v1/blobs/missing", "application/json", body, strlen(body),
                                           200, label, rc);
        if (!ans)
            return false;
        size_t i;
        json_t *m;
        json_array_foreach(json_object_get(ans, "missing"), i, m) {
            struct up_chunk key;
            const char *s = json_string_value(m);
            if (!s || strlen(s) != 71 || strncmp(s, "sha256:", 7)) {
                fprintf(stderr, "error: uploading %s: gustd listed a malformed digest\n", label);
                *rc = EXIT_CONNECT;
                return false;
            }
            for (int k = 0; k < 32; k++) {
                unsigned v;
                if (sscanf(s + 7 + 2 * k, "%2x", &v) != 1)
                    v = 0;
                key.md[k] = (unsigned char)v;
            }
            const struct up_chunk *ch = bsearch(&key, t->chunks + at, end - at, sizeof key, cmp_chunks);
            if (!ch) {
                fprintf(stderr, "error: uploading %s: gustd asked for a chunk it was not offered\n", label);
                *rc = EXIT_CONNECT;
                return false;
            }
            if (!put_chunk(c, t, ch, label, rc))
                return false;
            st->chunks_sent++;
            st->bytes_sent += ch->len;
        }
    }
    return true;
}

json_t *cli_tree_entries(const struct cli_tree *t)
{
    return t->entries;
}

bool cli_tree_upload(gust_client *c, struct cli_tree *t, const char *label, char id[80], struct cli_upload_stats *st,
                     int *rc)
{
    if (!cli_tree_send_chunks(c, t, label, st, rc))
        return false;
    json_t *req AUTO_JSON = json_pack("{s:O}", "entries", t->entries);
    AUTO_FREE char *body = json_dumps(req, JSON_COMPACT);
    json_t *ans AUTO_JSON = up_request(c, "POST", "/v1/mounts", "application/json", body, strlen(body), 200, label, rc);
    const char *tid = ans ? json_string_value(json_object_get(ans, "id")) : NULL;
    if (!tid || !spec_image_id_valid(tid)) {
        if (ans) {
            fprintf(stderr, "error: uploading %s: gustd sent no tree id\n", label);
            *rc = EXIT_CONNECT;
        }
        return false;
    }
    snprintf(id, 80, "%s", tid);
    return true;
}

/* ---------- the host paths of image definitions ---------- */

/* A host path of a definition, scanned and waiting for its upload. */
struct up_item {
    json_t *holder;            /* the object whose key gets the tree */
    const char *key;
    char src[PATH_MAX];        /* copy: the relative source as written */
    bool copy, is_file;
    char label[SPEC_FIELD_MAX + 32];
    struct cli_tree *tree;
};

struct up_plan {
    struct up_item *items;
    size_t n;
};

static void plan_free(struct up_plan *p)
{
    for (size_t i = 0; i < p->n; i++)
        cli_tree_free(p->items[i].tree);
    free(p->items);
}

/* path joined to dir unless absolute. */
static char *join(const char *dir, const char *path)
{
    return path[0] == '/' ? xstrdup(path) : xasprintf("%s/%s", dir, path);
}

/* Scans the host path at holder[key] (a string; a tree id is left as it is). */
static bool plan_add(struct up_plan *p, json_t *holder, const char *key, const char *dir, const char *where,
                     bool copy, int *rc)
{
    const char *v = json_string_value(json_object_get(holder, key));
    if (!v || spec_image_id_valid(v))
        return true;
    p->items = xreallocarray(p->items, p->n + 1, sizeof *p->items);
    struct up_item *it = &p->items[p->n++];
    memset(it, 0, sizeof *it);
    it->holder = holder;
    it->key = key;
    it->copy = copy;
    snprintf(it->label, sizeof it->label, "%s%s", where, copy ? ".src" : "");
    const char *why;
    /* The same check, and words, as gustd's (spec_copy_src_check). */
    if (copy && spec_copy_src_check(v, &why) < 0) {
        fprintf(stderr, "error: %s: \"%.80s\" %s\n", it->label, v, why);
        *rc = EXIT_API;
        return false;
    }
    snprintf(it->src, sizeof it->src, "%s", v);
    AUTO_FREE char *abs = join(dir, v);
    it->tree = cli_tree_new();
    if (!cli_tree_scan(it->tree, abs, it->label, &it->is_file)) {
        *rc = EXIT_USAGE;
        return false;
    }
    if (!copy && !strcmp(key, "find_links") && it->is_file) {
        fprintf(stderr, "error: %s: %s must be a directory of wheels\n", it->label, abs);
        *rc = EXIT_USAGE;
        return false;
    }
    return true;
}

/* The host paths of definition def (at where) into p. */
static bool plan_def(struct up_plan *p, json_t *def, const char *dir, const char *where, int *rc)
{
    if (!json_is_object(def))
        return true;
    char w[SPEC_FIELD_MAX + 64];
    snprintf(w, sizeof w, "%s.from_oci", where);
    if (!plan_add(p, def, "from_oci", dir, w, false, rc))
        return false;
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(def, "steps"), i, s) {
        if (!json_is_object(s))
            continue;
        snprintf(w, sizeof w, "%s.steps[%zu].copy", where, i);
        if (!plan_add(p, s, "copy", dir, w, true, rc))
            return false;
        snprintf(w, sizeof w, "%s.steps[%zu].find_links", where, i);
        if (!plan_add(p, s, "find_links", dir, w, false, rc))
            return false;
    }
    return true;
}

bool cli_spec_upload(gust_client *c, json_t *doc, const char *dir, bool deploy, int *rc)
{
    struct up_plan p = {0};
    bool ok = true;
    /* Everything is read first: a file that cannot be read stops the command before
     * anything is sent. */
    if (deploy) {
        size_t i;
        json_t *f;
        json_array_foreach(json_object_get(doc, "functions"), i, f) {
            char where[64];
            snprintf(where, sizeof where, "functions[%zu].image", i);
            if (ok && json_is_object(f))
                ok = plan_def(&p, json_object_get(f, "image"), dir, where, rc);
        }
    } else {
        json_t *def = json_is_object(json_object_get(doc, "image")) ? json_object_get(doc, "image") : doc;
        ok = plan_def(&p, def, dir, "image", rc);
    }
    struct cli_upload_stats st = {0};
    for (size_t i = 0; ok && i < p.n; i++) {
        struct up_item *it = &p.items[i];
        char id[80];
        if (!(ok = cli_tree_upload(c, it->tree, it->label, id, &st, rc)))
            break;
        if (it->copy)
            json_object_set_new(it->holder, it->key,
                                json_pack("{s:s,s:s,s:b}", "src", it->src, "tree", id, "file", it->is_file));
        else
            json_object_set_new(it->holder, it->key, json_string(id));
    }
    if (ok && p.n && !cli_opts.json)
        fprintf(stderr, "uploaded %zu of %zu chunks (%.1f MB of %.1f MB) for %zu local paths\n", st.chunks_sent,
                st.chunks, (double)st.bytes_sent / 1e6, (double)st.bytes / 1e6, p.n);
    plan_free(&p);
    return ok;
}
