/* Content-addressed store: objects (dedup, compression, corruption detection),
 * trees (ingest, materialise, manifests that try to escape), garbage collection. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/util.h"
#include "cas/cas.h"
#include "unit.h"

static char g_dir[64];

static struct cas *open_store(const char *name)
{
    char root[128];
    snprintf(root, sizeof root, "%s/%s", g_dir, name);
    struct cas *c = NULL;
    struct gerr err;
    if (cas_open(root, &c, &err) < 0)
        fprintf(stderr, "  cas_open: %s\n", err.msg);
    return c;
}

static void object_path(const char *store, const struct cas_digest *d, char *out, size_t cap)
{
    char hex[CAS_HEX_LEN + 1];
    cas_digest_hex(d, hex);
    snprintf(out, cap, "%s/%s/objects/%.2s/%s", g_dir, store, hex, hex + 2);
}

UNIT_TEST(test_put_get_dedup_compress)
{
    struct cas *c = open_store("s1");
    CHECK(c);
    struct gerr err;
    size_t n = 1 << 20;
    char *text = malloc(n);
    for (size_t i = 0; i < n; i++)
        text[i] = "gust content addressed "[i % 23];
    struct cas_digest d1, d2;
    CHECK_EQ_INT(cas_put(c, text, n, &d1, &err), 0);
    CHECK_EQ_INT(cas_put(c, text, n, &d2, &err), 0);
    CHECK(!memcmp(d1.b, d2.b, 32));
    CHECK_EQ_INT(cas_stats(c)->objects_written, 1);
    CHECK_EQ_INT(cas_stats(c)->objects_reused, 1);
    CHECK(cas_stats(c)->bytes_stored < n / 10); /* repetitive text compresses */
    uint8_t *back;
    size_t len;
    CHECK_EQ_INT(cas_get(c, &d1, &back, &len, &err), 0);
    CHECK(len == n && !memcmp(back, text, n));
    free(back);
    /* Random bytes do not compress: stored raw. */
    uint64_t before = cas_stats(c)->bytes_stored;
    uint8_t *rnd = malloc(n);
    int fd = open("/dev/urandom", O_RDONLY);
    CHECK(fd >= 0 && read(fd, rnd, n) == (ssize_t)n);
    close(fd);
    CHECK_EQ_INT(cas_put(c, rnd, n, &d2, &err), 0);
    CHECK(cas_stats(c)->bytes_stored - before >= n);
    CHECK_EQ_INT(cas_get(c, &d2, &back, &len, &err), 0);
    CHECK(len == n && !memcmp(back, rnd, n));
    free(back);
    /* Empty object; known digest of "" */
    struct cas_digest e;
    CHECK_EQ_INT(cas_put(c, "", 0, &e, &err), 0);
    char hex[CAS_HEX_LEN + 1];
    cas_digest_hex(&e, hex);
    CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    struct cas_digest p;
    CHECK_EQ_INT(cas_digest_parse("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", &p), 0);
    CHECK(!memcmp(p.b, e.b, 32));
    CHECK(cas_digest_parse("e3b0", &p) < 0 && cas_digest_parse(NULL, &p) < 0);
    /* Missing object. */
    memset(p.b, 0x11, 32);
    CHECK(!cas_has(c, &p));
    CHECK_EQ_INT(cas_get(c, &p, &back, &len, &err), -ENOENT);
    free(text);
    free(rnd);
    cas_close(c);
}

/* Flips one byte of an object's payload on disk. */
static void corrupt(const char *store, const struct cas_digest *d)
{
    char path[256];
    object_path(store, d, path, sizeof path);
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    uint8_t b;
    off_t end = lseek(fd, 0, SEEK_END);
    CHECK(pread(fd, &b, 1, end - 1) == 1);
    b ^= 0x5a;
    CHECK(pwrite(fd, &b, 1, end - 1) == 1);
    close(fd);
}

UNIT_TEST(test_corruption_detected)
{
    struct cas *c = open_store("s2");
    CHECK(c);
    struct gerr err;
    struct cas_digest raw, z;
    CHECK_EQ_INT(cas_put(c, "abcdefgh", 8, &raw, &err), 0);
    char *text = calloc(1, 8192);
    CHECK_EQ_INT(cas_put(c, text, 8192, &z, &err), 0);
    corrupt("s2", &raw);
    corrupt("s2", &z);
    uint8_t *back = (uint8_t *)"x";
    size_t len = 1;
    CHECK_EQ_INT(cas_get(c, &raw, &back, &len, &err), -EBADMSG);
    CHECK(strstr(err.msg, "corrupt") && back == NULL && len == 0);
    CHECK_EQ_INT(cas_get(c, &z, &back, &len, &err), -EBADMSG);
    CHECK(strstr(err.msg, "corrupt"));
    free(text);
    cas_close(c);
}

static void write_in(const char *dir, const char *name, const void *data, size_t len, mode_t mode)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    CHECK(file_write_atomic(p, data, len, mode) == 0);
}

/* A tree with a 2-chunk file, an empty file, a symlink, a hardlink, a 0700 subdir
 * and a file owned by 1234:5678. */
static void make_tree(const char *dir)
{
    CHECK(mkdir(dir, 0755) == 0);
    size_t big = CAS_CHUNK_SIZE + 100;
    char *data = malloc(big);
    for (size_t i = 0; i < big; i++)
        data[i] = (char)(i * 7 + i / 4096);
    write_in(dir, "big.bin", data, big, 0644);
    free(data);
    write_in(dir, "empty", "", 0, 0600);
    char p[256], q[256];
    snprintf(p, sizeof p, "%s/sub", dir);
    CHECK(mkdir(p, 0700) == 0);
    snprintf(p, sizeof p, "%s/emptydir", dir);
    CHECK(mkdir(p, 0755) == 0);
    write_in(dir, "sub/owned", "mine", 4, 0640);
    snprintf(p, sizeof p, "%s/sub/owned", dir);
    CHECK(chown(p, 1234, 5678) == 0);
    snprintf(p, sizeof p, "%s/link", dir);
    CHECK(symlink("sub/owned", p) == 0);
    snprintf(p, sizeof p, "%s/big.bin", dir);
    snprintf(q, sizeof q, "%s/sub/big-again", dir);
    CHECK(link(p, q) == 0);
    write_in(dir, ".gust-image-ok", "", 0, 0644);
}

UNIT_TEST(test_ingest_materialize_roundtrip)
{
    struct cas *c = open_store("s3");
    CHECK(c);
    struct gerr err;
    char src[128], dst[128];
    snprintf(src, sizeof src, "%s/tree", g_dir);
    snprintf(dst, sizeof dst, "%s/out", g_dir);
    make_tree(src);
    struct cas_digest m1, m2;
    struct cas_stats st;
    json_t *cfg = json_pack("{s:s}", "workdir", "/sub");
    CHECK_EQ_INT(cas_ingest_tree(c, src, cfg, &m1, &st, &err), 0);
    CHECK_EQ_INT(st.files, 3);
    CHECK_EQ_INT(st.hardlinks, 1);
    CHECK_EQ_INT(st.symlinks, 1);
    CHECK_EQ_INT(st.dirs, 2);
    /* The same tree again: the same id, nothing new written. */
    CHECK_EQ_INT(cas_ingest_tree(c, src, cfg, &m2, &st, &err), 0);
    json_decref(cfg);
    CHECK(!memcmp(m1.b, m2.b, 32));
    CHECK_EQ_INT(st.objects_written, 0);
    CHECK(st.objects_reused >= 4);
    json_t *m;
    CHECK_EQ_INT(cas_manifest_load(c, &m1, &m, &err), 0);
    CHECK_STR(json_string_value(json_object_get(json_object_get(m, "config"), "workdir")), "/sub");
    json_decref(m);

    CHECK_EQ_INT(cas_materialize(c, &m1, dst, &err), 0);
    char p[256], q[256];
    struct stat a, b;
    snprintf(p, sizeof p, "%s/big.bin", src);
    snprintf(q, sizeof q, "%s/big.bin", dst);
    char *x = NULL, *y = NULL;
    size_t xl, yl;
    CHECK(file_read_all(p, 1 << 24, &x, &xl) == 0 && file_read_all(q, 1 << 24, &y, &yl) == 0);
    CHECK(xl == yl && xl == CAS_CHUNK_SIZE + 100 && !memcmp(x, y, xl));
    free(x);
    free(y);
    snprintf(p, sizeof p, "%s/sub/big-again", dst);
    CHECK(stat(q, &a) == 0 && stat(p, &b) == 0 && a.st_ino == b.st_ino);
    snprintf(p, sizeof p, "%s/sub/owned", dst);
    CHECK(stat(p, &a) == 0 && a.st_uid == 1234 && a.st_gid == 5678 && (a.st_mode & 07777) == 0640);
    snprintf(p, sizeof p, "%s/sub", dst);
    CHECK(stat(p, &a) == 0 && (a.st_mode & 07777) == 0700);
    snprintf(p, sizeof p, "%s/empty", dst);
    CHECK(stat(p, &a) == 0 && a.st_size == 0 && (a.st_mode & 07777) == 0600);
    snprintf(p, sizeof p, "%s/emptydir", dst);
    CHECK(stat(p, &a) == 0 && S_ISDIR(a.st_mode));
    char t[64] = "";
    snprintf(p, sizeof p, "%s/link", dst);
    CHECK(readlink(p, t, sizeof t - 1) == 9 && !strcmp(t, "sub/owned"));
    snprintf(p, sizeof p, "%s/.gust-image-ok", dst);
    CHECK(access(p, F_OK) < 0);
    /* dest must not exist. */
    CHECK(cas_materialize(c, &m1, dst, &err) < 0);

    /* A corrupt chunk: materialise fails, nothing is left at dest. */
    char dst2[128];
    snprintf(dst2, sizeof dst2, "%s/out2", g_dir);
    CHECK_EQ_INT(cas_manifest_load(c, &m1, &m, &err), 0);
    json_t *e;
    size_t i;
    json_array_foreach(json_object_get(m, "entries"), i, e) {
        if (!strcmp(json_string_value(json_object_get(e, "path")), "sub/owned")) {
            struct cas_digest d;
            CHECK_EQ_INT(cas_digest_parse(json_string_value(json_array_get(json_object_get(e, "chunks"), 0)), &d), 0);
            corrupt("s3", &d);
        }
    }
    json_decref(m);
    CHECK_EQ_INT(cas_materialize(c, &m1, dst2, &err), -EBADMSG);
    CHECK(strstr(err.msg, "corrupt") && strstr(err.msg, "sub/owned"));
    CHECK(access(dst2, F_OK) < 0);
    cas_close(c);
}

static int parse(const char *text)
{
    json_t *m = NULL;
    struct gerr err;
    int r = cas_manifest_parse(text, strlen(text), &m, &err);
    json_decref(m);
    return r;
}

#define ROOT "{\"path\":\".\",\"type\":\"dir\",\"mode\":493,\"uid\":0,\"gid\":0}"
#define HEAD "{\"gust_manifest\":1,\"config\":{},\"entries\":[" ROOT
#define FILE_OF(p) ",{\"path\":\"" p "\",\"type\":\"file\",\"mode\":420,\"uid\":0,\"gid\":0,\"size\":0," \
                   "\"chunks\":[\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"]}"

UNIT_TEST(test_manifest_validation)
{
    CHECK_EQ_INT(parse(HEAD FILE_OF("a") "]}"), 0);
    CHECK_EQ_INT(parse(HEAD FILE_OF("../etc/passwd") "]}"), -EBADMSG);
    CHECK_EQ_INT(parse(HEAD FILE_OF("/etc/passwd") "]}"), -EBADMSG);
    CHECK_EQ_INT(parse(HEAD FILE_OF("a//b") "]}"), -EBADMSG);
    CHECK_EQ_INT(parse(HEAD FILE_OF("a") FILE_OF("a") "]}"), -EBADMSG);
    /* A symlink as the parent of a later entry: the classic way out of a tree. */
    CHECK_EQ_INT(parse(HEAD ",{\"path\":\"a\",\"type\":\"symlink\",\"mode\":511,\"uid\":0,\"gid\":0,\"target\":\"/etc\"}"
                       FILE_OF("a/passwd") "]}"),
                 -EBADMSG);
    CHECK_EQ_INT(parse(HEAD ",{\"path\":\"h\",\"type\":\"hardlink\",\"mode\":420,\"uid\":0,\"gid\":0,\"target\":\"x\"}]}"),
                 -EBADMSG);
    CHECK_EQ_INT(parse("{\"gust_manifest\":2,\"config\":{},\"entries\":[" ROOT "]}"), -EBADMSG);
    CHECK_EQ_INT(parse("[1,2]"), -EBADMSG);
    CHECK_EQ_INT(parse("{\"gust_manifest\":1,\"config\":{},\"entries\":[" FILE_OF("a") "]}"), -EBADMSG);
    /* Size and chunk count must agree. */
    CHECK_EQ_INT(parse(HEAD ",{\"path\":\"a\",\"type\":\"file\",\"mode\":420,\"uid\":0,\"gid\":0,\"size\":5000000,"
                            "\"chunks\":[\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"]}]}"),
                 -EBADMSG);
}

UNIT_TEST(test_gc_keeps_what_roots_use)
{
    struct cas *c = open_store("s4");
    CHECK(c);
    struct gerr err;
    char t1[128], t2[128];
    snprintf(t1, sizeof t1, "%s/gc1", g_dir);
    snprintf(t2, sizeof t2, "%s/gc2", g_dir);
    CHECK(mkdir(t1, 0755) == 0 && mkdir(t2, 0755) == 0);
    write_in(t1, "shared", "same in both", 12, 0644);
    write_in(t2, "shared", "same in both", 12, 0644);
    write_in(t2, "only2", "only in the second", 18, 0644);
    struct cas_digest m1, m2;
    CHECK_EQ_INT(cas_ingest_tree(c, t1, NULL, &m1, NULL, &err), 0);
    CHECK_EQ_INT(cas_ingest_tree(c, t2, NULL, &m2, NULL, &err), 0);
    uint64_t removed, bytes;
    CHECK_EQ_INT(cas_gc(c, &m1, 1, &removed, &bytes, &err), 0);
    CHECK_EQ_INT(removed, 2); /* m2's manifest and "only2" */
    CHECK(bytes > 0);
    CHECK(!cas_has(c, &m2) && cas_has(c, &m1));
    char out[128];
    snprintf(out, sizeof out, "%s/gc-out", g_dir);
    CHECK_EQ_INT(cas_materialize(c, &m1, out, &err), 0);
    /* Nothing to collect the second time. */
    CHECK_EQ_INT(cas_gc(c, &m1, 1, &removed, &bytes, &err), 0);
    CHECK_EQ_INT(removed, 0);
    /* A root that cannot be read stops gc before it deletes anything. */
    CHECK(cas_gc(c, &m2, 1, &removed, &bytes, &err) < 0);
    CHECK(cas_has(c, &m1));
    cas_close(c);
}


/* Volumes: an upper directory's changes (a new file, a changed one, a whiteout, an
 * opaque directory, a symlink that must not be followed) applied to a base tree, and
 * the new version materialised with its unchanged files hard-linked. */
UNIT_TEST(test_volume_changes)
{
    struct cas *c = open_store("s5");
    CHECK(c);
    struct gerr err;
    char base[128], upper[128], v1[128], v2[128], p[256];
    snprintf(base, sizeof base, "%s/vbase", g_dir);
    snprintf(upper, sizeof upper, "%s/vupper", g_dir);
    snprintf(v1, sizeof v1, "%s/v1", g_dir);
    snprintf(v2, sizeof v2, "%s/v2", g_dir);
    CHECK(mkdir(base, 0755) == 0);
    write_in(base, "keep", "unchanged", 9, 0644);
    write_in(base, "change", "old", 3, 0644);
    write_in(base, "gone", "bye", 3, 0644);
    snprintf(p, sizeof p, "%s/d", base);
    CHECK(mkdir(p, 0755) == 0);
    write_in(base, "d/old", "x", 1, 0644);
    struct cas_digest m1, m2;
    CHECK_EQ_INT(cas_ingest_tree(c, base, NULL, &m1, NULL, &err), 0);
    CHECK_EQ_INT(cas_materialize(c, &m1, v1, &err), 0);

    CHECK(mkdir(upper, 0755) == 0);
    write_in(upper, "change", "new!", 4, 0600);
    write_in(upper, "added", "hello", 5, 0644);
    snprintf(p, sizeof p, "%s/gone", upper);
    CHECK(mknod(p, S_IFCHR | 0000, 0) == 0);
    snprintf(p, sizeof p, "%s/d", upper);
    CHECK(mkdir(p, 0755) == 0);
    CHECK(setxattr(p, "trusted.overlay.opaque", "y", 1, 0) == 0);
    write_in(upper, "d/new", "y", 1, 0644);
    snprintf(p, sizeof p, "%s/escape", upper);
    CHECK(symlink("/etc/passwd", p) == 0);

    json_t *changes = NULL;
    CHECK_EQ_INT(cas_upper_scan(c, upper, 100, &changes, &err), 0);
    CHECK_EQ_INT(json_array_size(changes), 6);
    CHECK_EQ_INT(cas_changes_check(changes, &err), 0);
    json_t *bm = NULL, *nm = NULL;
    CHECK_EQ_INT(cas_manifest_load(c, &m1, &bm, &err), 0);
    CHECK_EQ_INT(cas_manifest_apply(bm, changes, 100, &nm, &err), 0);
    /* A bound on entries is kept. */
    json_t *none = NULL;
    CHECK_EQ_INT(cas_manifest_apply(bm, changes, 3, &none, &err), -E2BIG);
    CHECK(none == NULL);
    CHECK_EQ_INT(cas_manifest_store(c, nm, &m2, &err), 0);
    CHECK_EQ_INT(cas_materialize_reuse(c, &m2, v2, v1, &m1, &err), 0);
    char *buf = NULL;
    size_t blen = 0;
    snprintf(p, sizeof p, "%s/change", v2);
    CHECK(file_read_all(p, 64, &buf, &blen) == 0 && blen == 4 && !memcmp(buf, "new!", 4));
    free(buf);
    snprintf(p, sizeof p, "%s/gone", v2);
    CHECK(access(p, F_OK) < 0);
    snprintf(p, sizeof p, "%s/d/old", v2);
    CHECK(access(p, F_OK) < 0); /* the opaque directory hid it */
    snprintf(p, sizeof p, "%s/d/new", v2);
    CHECK(access(p, F_OK) == 0);
    struct stat a, b;
    snprintf(p, sizeof p, "%s/keep", v1);
    CHECK(stat(p, &a) == 0);
    snprintf(p, sizeof p, "%s/keep", v2);
    CHECK(stat(p, &b) == 0);
    CHECK(a.st_ino == b.st_ino); /* linked, not copied */
    snprintf(p, sizeof p, "%s/escape", v2);
    CHECK(lstat(p, &b) == 0 && S_ISLNK(b.st_mode)); /* stored as a link, never followed */

    /* Bad change lists name the element. */
    json_t *bad = json_loads("[{\"path\": \"../x\", \"type\": \"delete\"}]", 0, NULL);
    CHECK(cas_changes_check(bad, &err) < 0 && strstr(err.msg, "changes[0].path"));
    json_decref(bad);
    json_decref(changes);
    json_decref(bm);
    json_decref(nm);
    cas_close(c);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/gust-test-cas-XXXXXX");
    if (!mkdtemp(g_dir))
        return 1;
    UNIT_RUN(test_put_get_dedup_compress);
    UNIT_RUN(test_corruption_detected);
    UNIT_RUN(test_ingest_materialize_roundtrip);
    UNIT_RUN(test_manifest_validation);
    UNIT_RUN(test_gc_keeps_what_roots_use);
    UNIT_RUN(test_volume_changes);
    rm_rf(g_dir);
    UNIT_MAIN_END();
}
