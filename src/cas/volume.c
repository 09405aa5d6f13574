/* Changes to trees, for volumes (see cas/cas.h): a change list checked, applied to a
 * manifest, or read from an overlayfs upper directory. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/json_cleanup.h"
#include "base/xalloc.h"
#include "cas/cas.h"
#include "cas/internal.h"

/* The xattr overlayfs (mounted by real root) sets on a directory that hides the
 * lower one's contents. */
#define OVL_OPAQUE_XATTR "trusted.overlay.opaque"
/* Directories below an upper directory deeper than this are refused (a bound on the
 * walk's recursion). */
#define UPPER_MAX_DEPTH 256

/* ---- checking ------------------------------------------------------------------ */

static bool rel_path_ok(const char *p)
{
    if (!p || !*p || *p == '/' || strlen(p) >= PATH_MAX)
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

static int bad_change(struct gerr *err, size_t i, const char *field, const char *what)
{
    return gerr_set(err, EINVAL, "changes[%zu]%s%s: %s", i, field ? "." : "", field ? field : "", what);
}

int cas_changes_check(json_t *changes, struct gerr *err)
{
    if (!json_is_array(changes))
        return gerr_set(err, EINVAL, "changes: must be a list");
    if (json_array_size(changes) > CAS_MAX_CHANGES)
        return gerr_set(err, E2BIG, "changes: %zu, at most %d", json_array_size(changes), CAS_MAX_CHANGES);
    size_t i;
    json_t *ch;
    json_array_foreach(changes, i, ch) {
        if (!json_is_object(ch))
            return bad_change(err, i, NULL, "must be an object");
        const char *path = json_string_value(json_object_get(ch, "path"));
        const char *type = json_string_value(json_object_get(ch, "type"));
        if (!rel_path_ok(path))
            return bad_change(err, i, "path", "must be a relative path without empty, \".\" or \"..\" parts");
        if (!type)
            return bad_change(err, i, "type", "must be file, dir, symlink or delete");
        if (!strcmp(type, "delete"))
            continue;
        json_t *mode = json_object_get(ch, "mode");
        if (!json_is_integer(mode) || json_integer_value(mode) < 0 || json_integer_value(mode) > 07777)
            return bad_change(err, i, "mode", "must be an integer 0..07777");
        if (!strcmp(type, "file")) {
            json_t *size = json_object_get(ch, "size"), *chunks = json_object_get(ch, "chunks");
            if (!json_is_integer(size) || json_integer_value(size) < 0 ||
                (uint64_t)json_integer_value(size) > CAS_MAX_FILE_SIZE)
                return bad_change(err, i, "size", "must be a byte count");
            uint64_t sz = (uint64_t)json_integer_value(size);
            size_t want = sz == 0 ? 1 : (size_t)((sz + CAS_CHUNK_SIZE - 1) / CAS_CHUNK_SIZE);
            if (!json_is_array(chunks) || json_array_size(chunks) != want)
                return bad_change(err, i, "chunks", "must list one digest per 4 MiB of the size");
            size_t k;
            json_t *d;
            json_array_foreach(chunks, k, d) {
                struct cas_digest cd;
                if (cas_digest_parse(json_string_value(d), &cd) < 0)
                    return bad_change(err, i, "chunks", "must be SHA-256 hex digests");
            }
        } else if (!strcmp(type, "symlink")) {
            const char *t = json_string_value(json_object_get(ch, "target"));
            if (!t || !*t || strlen(t) >= PATH_MAX)
                return bad_change(err, i, "target", "a symlink needs a target");
        } else if (!strcmp(type, "dir")) {
            json_t *op = json_object_get(ch, "opaque");
            if (op && !json_is_boolean(op))
                return bad_change(err, i, "opaque", "must be true or false");
        } else {
            return bad_change(err, i, "type", "must be file, dir, symlink or delete");
        }
    }
    return 0;
}

/* ---- applying ------------------------------------------------------------------ */

/* Removes path and everything below it from tree (path -> entry). */
static void remove_under(json_t *tree, const char *path)
{
    json_object_del(tree, path);
    size_t n = strlen(path);
    const char *key;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(tree, tmp, key, v) {
        if (!strncmp(key, path, n) && key[n] == '/')
            json_object_del(tree, key);
    }
}

static bool is_dir(json_t *e)
{
    return e && !strcmp(json_string_value(json_object_get(e, "type")), "dir");
}

/* Makes every parent of path a directory (0755, made when missing; whatever else
 * was there goes). */
static void ensure_parents(json_t *tree, const char *path)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = strchr(p, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        json_t *e = json_object_get(tree, p);
        if (!is_dir(e)) {
            if (e)
                remove_under(tree, p);
            json_object_set_new(tree, p, json_pack("{s:s,s:s,s:i,s:i,s:i}", "path", p, "type", "dir", "mode", 0755,
                                                   "uid", 0, "gid", 0));
        }
        *s = '/';
    }
}

static int cmp_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int cas_manifest_apply(json_t *base, json_t *changes, size_t max_entries, json_t **out, struct gerr *err)
{
    *out = NULL;
    int r = cas_changes_check(changes, err);
    if (r < 0)
        return r;
    AUTO_JSON json_t *tree = json_object();
    json_t *root = NULL;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(base, "entries"), i, e) {
        const char *path = json_string_value(json_object_get(e, "path"));
        if (i == 0) {
            root = e;
            continue;
        }
        json_t *copy = json_copy(e);
        if (!strcmp(json_string_value(json_object_get(e, "type")), "hardlink")) {
            /* A hard link becomes a file of its own: each path is changed alone. */
            json_t *t = json_object_get(tree, json_string_value(json_object_get(e, "target")));
            json_object_set_new(copy, "type", json_string("file"));
            json_object_del(copy, "target");
            json_object_set(copy, "size", json_object_get(t, "size"));
            json_object_set(copy, "chunks", json_object_get(t, "chunks"));
        }
        json_object_set_new(tree, path, copy);
    }
    json_array_foreach(changes, i, e) {
        const char *path = json_string_value(json_object_get(e, "path"));
        const char *type = json_string_value(json_object_get(e, "type"));
        json_t *old = json_object_get(tree, path);
        if (!strcmp(type, "delete")) {
            if (old)
                remove_under(tree, path);
            continue;
        }
        ensure_parents(tree, path);
        bool dir = !strcmp(type, "dir");
        if (old && (!dir || !is_dir(old) || json_is_true(json_object_get(e, "opaque"))))
            remove_under(tree, path);
        json_t *n = json_pack("{s:s,s:s,s:I,s:i,s:i}", "path", path, "type", type, "mode",
                              json_integer_value(json_object_get(e, "mode")) & 01777, "uid", 0, "gid", 0);
        if (!strcmp(type, "file")) {
            json_object_set(n, "size", json_object_get(e, "size"));
            json_object_set(n, "chunks", json_object_get(e, "chunks"));
        } else if (!strcmp(type, "symlink")) {
            json_object_set(n, "target", json_object_get(e, "target"));
        }
        json_object_set_new(tree, path, n);
        if (json_object_size(tree) >= max_entries)
            return gerr_set(err, E2BIG, "the tree would hold more than %zu entries", max_entries);
    }
    /* Sorted by path: a parent is a prefix of its children, so it comes first. */
    size_t n = json_object_size(tree);
    AUTO_FREE const char **keys = xcalloc(n ? n : 1, sizeof *keys);
    size_t k = 0;
    const char *key;
    json_object_foreach(tree, key, e)
        keys[k++] = key;
    qsort(keys, n, sizeof *keys, cmp_keys);
    json_t *entries = json_array();
    json_array_append_new(entries, root ? json_copy(root)
                                        : json_pack("{s:s,s:s,s:i,s:i,s:i}", "path", ".", "type", "dir", "mode",
                                                    0755, "uid", 0, "gid", 0));
    for (k = 0; k < n; k++)
        json_array_append(entries, json_object_get(tree, keys[k]));
    *out = json_pack("{s:i,s:{},s:o}", "gust_manifest", 1, "config", "entries", entries);
    return 0;
}

/* ---- scanning an upper directory ------------------------------------------------ */

struct scan {
    struct cas *c;
    json_t *changes;
    size_t max;
    uint8_t *buf;               /* CAS_CHUNK_SIZE */
    struct gerr *err;
};

static int scan_add(struct scan *s, json_t *ch, const char *path)
{
    if (!ch)
        return gerr_set(s->err, EILSEQ, "%s: a file name is not valid UTF-8 (volumes hold UTF-8 paths)", path);
    json_array_append_new(s->changes, ch);
    if (json_array_size(s->changes) > s->max)
        return gerr_set(s->err, E2BIG, "more than %zu changed files", s->max);
    return 0;
}

static int scan_file(struct scan *s, int fd, const char *path, const struct stat *st)
{
    json_t *chunks = json_array();
    uint64_t total = 0;
    for (;;) {
        size_t have;
        int r = cas_read_chunk(fd, s->buf, &have);
        if (r < 0) {
            json_decref(chunks);
            return gerr_sys(s->err, -r, "read %s", path);
        }
        if (have == 0 && total > 0)
            break;
        struct cas_digest d;
        r = cas_put(s->c, s->buf, have, &d, s->err);
        if (r < 0) {
            json_decref(chunks);
            return gerr_prefix(s->err, "%s", path);
        }
        char hex[CAS_HEX_LEN + 1];
        cas_digest_hex(&d, hex);
        json_array_append_new(chunks, json_string(hex));
        total += have;
        if (have < CAS_CHUNK_SIZE)
            break;
    }
    json_t *ch = json_pack("{s:s,s:s,s:i,s:I,s:o}", "path", path, "type", "file", "mode", (int)(st->st_mode & 0777),
                           "size", (json_int_t)total, "chunks", chunks);
    return scan_add(s, ch, path);
}

static int scan_dir(struct scan *s, int dirfd, const char *rel, int depth)
{
    if (depth > UPPER_MAX_DEPTH)
        return gerr_set(s->err, ELOOP, "%s: directories nested deeper than %d", rel, UPPER_MAX_DEPTH);
    int dfd2 = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    DIR *d = dfd2 >= 0 ? fdopendir(dfd2) : NULL;
    if (!d) {
        if (dfd2 >= 0)
            close(dfd2);
        return gerr_sys(s->err, errno, "open directory %s", *rel ? rel : "/");
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            names = xreallocarray(names, cap, sizeof *names);
        }
        names[n++] = xstrdup(de->d_name);
        if (n > s->max)
            break;
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof *names, cmp_keys);
    int r = n > s->max ? gerr_set(s->err, E2BIG, "more than %zu changed files", s->max) : 0;
    for (size_t i = 0; i < n && r == 0; i++) {
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s%s%s", rel, *rel ? "/" : "", names[i]) >= (int)sizeof path) {
            r = gerr_set(s->err, ENAMETOOLONG, "path too long under %s", rel);
            break;
        }
        struct stat st;
        if (fstatat(dirfd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
            r = gerr_sys(s->err, errno, "stat %s", path);
            break;
        }
        if (S_ISCHR(st.st_mode) && major(st.st_rdev) == 0 && minor(st.st_rdev) == 0) {
            r = scan_add(s, json_pack("{s:s,s:s}", "path", path, "type", "delete"), path);
        } else if (S_ISDIR(st.st_mode)) {
            AUTO_FD int sub = openat(dirfd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                r = gerr_sys(s->err, errno, "open %s", path);
                break;
            }
            char v[4] = "";
            ssize_t vl = fgetxattr(sub, OVL_OPAQUE_XATTR, v, sizeof v - 1);
            bool opaque = vl == 1 && v[0] == 'y';
            r = scan_add(s, json_pack("{s:s,s:s,s:i,s:b}", "path", path, "type", "dir", "mode",
                                      (int)(st.st_mode & 01777), "opaque", opaque), path);
            if (r == 0)
                r = scan_dir(s, sub, path, depth + 1);
        } else if (S_ISLNK(st.st_mode)) {
            char target[PATH_MAX];
            ssize_t tl = readlinkat(dirfd, names[i], target, sizeof target - 1);
            if (tl < 0) {
                r = gerr_sys(s->err, errno, "readlink %s", path);
                break;
            }
            target[tl] = '\0';
            r = scan_add(s, json_pack("{s:s,s:s,s:i,s:s}", "path", path, "type", "symlink", "mode", 0777, "target",
                                      target), path);
        } else if (S_ISREG(st.st_mode)) {
            AUTO_FD int fd = openat(dirfd, names[i], O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
            if (fd < 0) {
                r = gerr_sys(s->err, errno, "open %s", path);
                break;
            }
            r = scan_file(s, fd, path, &st);
        }
        /* Sockets, fifos and device nodes: not volume content. */
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return r;
}

int cas_upper_scan(struct cas *c, const char *dir, size_t max_entries, json_t **changes, struct gerr *err)
{
    *changes = NULL;
    AUTO_FD int root = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (root < 0)
        return gerr_sys(err, errno, "open %s", dir);
    AUTO_FREE uint8_t *buf = xmalloc(CAS_CHUNK_SIZE);
    AUTO_JSON json_t *list = json_array();
    struct scan s = {.c = c, .changes = list, .max = max_entries, .buf = buf, .err = err};
    int r = scan_dir(&s, root, "", 0);
    if (r < 0)
        return gerr_prefix(err, "scan %s", dir);
    *changes = TAKE_PTR(list);
    return 0;
}
