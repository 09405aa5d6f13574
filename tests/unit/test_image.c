/* Image builder tests: busybox and host-python skeleton rootfs in a mktemp dir.
 * They need the host's static /bin/busybox (Debian busybox-static) and fail
 * without it. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "base/util.h"
#include "image/image.h"
#include "unit.h"

static char g_base[64];

/* a/b into out; an empty string if it does not fit (the test then fails on it). */
static void join(char *out, size_t cap, const char *a, const char *b)
{
    int n = snprintf(out, cap, "%s/%s", a, b);
    if (n < 0 || (size_t)n >= cap)
        out[0] = '\0';
}

static mode_t mode_of(const char *root, const char *rel)
{
    char p[PATH_MAX];
    join(p, sizeof p, root, rel);
    struct stat st;
    if (lstat(p, &st) < 0)
        return 0;
    return st.st_mode;
}

static bool file_has(const char *root, const char *rel, const char *needle)
{
    char p[PATH_MAX];
    join(p, sizeof p, root, rel);
    char *data = NULL;
    if (file_read_all(p, 1 << 20, &data, NULL) < 0)
        return false;
    bool ok = strstr(data, needle) != NULL;
    free(data);
    return ok;
}

static const char *link_of(const char *root, const char *rel)
{
    static char target[PATH_MAX];
    char p[PATH_MAX];
    join(p, sizeof p, root, rel);
    ssize_t n = readlink(p, target, sizeof target - 1);
    if (n < 0)
        return "";
    target[n] = '\0';
    return target;
}

/* Builds an image with build at g_base/name into dest (PATH_MAX); the test fails,
 * printing the error, if the build does. */
static void build_at(char *dest, const char *name, int (*build)(const char *dest, struct gerr *err))
{
    join(dest, PATH_MAX, g_base, name);
    struct gerr err;
    int r = build(dest, &err);
    if (r < 0)
        fprintf(stderr, "  build %s: %s\n", name, err.msg);
    CHECK(r == 0);
}

UNIT_TEST(test_setup)
{
    strcpy(g_base, "/tmp/gust-img-XXXXXX");
    CHECK(mkdtemp(g_base) != NULL);
}

UNIT_TEST(test_busybox_image)
{
    char dest[PATH_MAX];
    build_at(dest, "images/busybox", image_build_busybox);
    struct gerr err;
    mode_t m = mode_of(dest, "bin/busybox");
    CHECK(S_ISREG(m) && (m & 07777) == 0755);
    CHECK_STR(link_of(dest, "bin/sh"), "busybox");
    CHECK_STR(link_of(dest, "bin/ls"), "busybox");
    CHECK(!S_ISLNK(mode_of(dest, "bin/busybox")));
    CHECK_EQ_INT(mode_of(dest, "tmp") & 07777, 01777);
    CHECK_EQ_INT(mode_of(dest, "var/tmp") & 07777, 01777);
    CHECK_EQ_INT(mode_of(dest, ".") & 07777, 0755);
    const char *dirs[] = {"proc", "dev", "sys", "root", "etc", "usr/bin", "usr/local/bin"};
    for (size_t i = 0; i < ARRAY_LEN(dirs); i++)
        CHECK(S_ISDIR(mode_of(dest, dirs[i])));
    CHECK(file_has(dest, "etc/passwd", "root:x:0:0:"));
    CHECK(file_has(dest, "etc/passwd", "nobody:x:65534:"));
    CHECK(file_has(dest, "etc/group", "root:x:0:"));
    CHECK(file_has(dest, "etc/hosts", "127.0.0.1"));
    CHECK(file_has(dest, "etc/hostname", "gust"));
    CHECK(S_ISREG(mode_of(dest, IMAGE_OK_MARKER)));
    CHECK(image_rootfs_valid(dest, &err));

    /* Idempotent: a finished image is left alone. */
    char probe[PATH_MAX];
    join(probe, sizeof probe, dest, "etc/probe");
    CHECK(file_write_atomic(probe, "x", 1, 0644) == 0);
    CHECK(image_build_busybox(dest, &err) == 0);
    CHECK(S_ISREG(mode_of(dest, "etc/probe")));
}

UNIT_TEST(test_incomplete_image_is_rebuilt)
{
    char dest[PATH_MAX];
    join(dest, sizeof dest, g_base, "half");
    CHECK(mkdir(dest, 0755) == 0);
    char junk[PATH_MAX];
    join(junk, sizeof junk, dest, "junk");
    CHECK(file_write_atomic(junk, "x", 1, 0644) == 0);
    struct gerr err;
    CHECK(image_build_busybox(dest, &err) == 0);
    CHECK(mode_of(dest, "junk") == 0);
    CHECK(S_ISREG(mode_of(dest, "bin/busybox")));
    /* No temp dirs are left next to it. */
    char tmpl[PATH_MAX];
    join(tmpl, sizeof tmpl, g_base, "half.tmp-");
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "ls -d %s* >/dev/null 2>&1", tmpl);
    CHECK(system(cmd) != 0);
}

UNIT_TEST(test_host_python_skeleton)
{
    char dest[PATH_MAX];
    build_at(dest, "py", image_build_host_python);
    CHECK(S_ISDIR(mode_of(dest, "usr")));
    const char *links[] = {"bin", "sbin", "lib", "lib64"};
    for (size_t i = 0; i < ARRAY_LEN(links); i++) {
        char host[32], target[PATH_MAX];
        snprintf(host, sizeof host, "/%s", links[i]);
        ssize_t n = readlink(host, target, sizeof target - 1);
        if (n >= 0 && (target[n] = '\0', !strncmp(target, "usr/", 4)))
            CHECK_STR(link_of(dest, links[i]), target);
        else
            CHECK(mode_of(dest, links[i]) == 0);
    }
    const char *files[] = {"etc/passwd", "etc/group", "etc/hosts", "etc/hostname", "etc/nsswitch.conf"};
    for (size_t i = 0; i < ARRAY_LEN(files); i++)
        CHECK(S_ISREG(mode_of(dest, files[i])));
    CHECK(file_has(dest, "etc/nsswitch.conf", "hosts:"));
    if (access("/etc/ld.so.cache", F_OK) == 0)
        CHECK(S_ISREG(mode_of(dest, "etc/ld.so.cache")));
    CHECK_EQ_INT(mode_of(dest, "tmp") & 07777, 01777);
    const char *dirs[] = {"proc", "dev", "sys", "root", "var/tmp"};
    for (size_t i = 0; i < ARRAY_LEN(dirs); i++)
        CHECK(S_ISDIR(mode_of(dest, dirs[i])));
}

UNIT_TEST(test_rootfs_valid)
{
    struct gerr err;
    CHECK(!image_rootfs_valid("relative/dir", &err));
    CHECK(strstr(err.msg, "absolute") != NULL);
    CHECK(!image_rootfs_valid("/nonexistent/gust-rootfs", &err));
    CHECK(strstr(err.msg, "/nonexistent/gust-rootfs") != NULL);
    CHECK_EQ_INT(err.code, ENOENT);
    CHECK(!image_rootfs_valid("/etc/hostname", &err));
    CHECK_EQ_INT(err.code, ENOTDIR);
    CHECK(image_rootfs_valid(g_base, &err));
    CHECK(image_build_busybox("relative", &err) == -EINVAL);
}

UNIT_TEST(test_teardown)
{
    CHECK(rm_rf(g_base) == 0);
}

int main(void)
{
    UNIT_RUN(test_setup);
    UNIT_RUN(test_busybox_image);
    UNIT_RUN(test_incomplete_image_is_rebuilt);
    UNIT_RUN(test_host_python_skeleton);
    UNIT_RUN(test_rootfs_valid);
    UNIT_RUN(test_teardown);
    UNIT_MAIN_END();
}
