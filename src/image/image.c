#include "image/image.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/util.h"

extern char **environ;

struct dir_spec {
    const char *path; /* relative to the image root; parents listed first */
    mode_t mode;
};

static const char etc_passwd[] =
    "root:x:0:0:root:/root:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
static const char etc_group[] = "root:x:0:\nnogroup:x:65534:\n";
static const char etc_hostname[] = "gust\n";
static const char etc_hosts[] = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";
static const char etc_nsswitch[] =
    "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\n"
    "protocols: files\nservices: files\n";

static const struct dir_spec busybox_dirs[] = {
    {"bin", 0755},  {"proc", 0555},      {"dev", 0755},      {"sys", 0555},
    {"tmp", 01777}, {"root", 0700},      {"etc", 0755},      {"usr", 0755},
    {"usr/bin", 0755}, {"usr/local", 0755}, {"usr/local/bin", 0755}, {"var", 0755},
    {"var/tmp", 01777},
};

static const struct dir_spec python_dirs[] = {
    {"usr", 0755},  {"proc", 0555}, {"dev", 0755}, {"sys", 0555},     {"tmp", 01777},
    {"root", 0700}, {"etc", 0755},  {"var", 0755}, {"var/tmp", 01777},
};

bool image_rootfs_valid(const char *rootfs, struct gerr *err)
{
    if (!rootfs || rootfs[0] != '/') {
        gerr_set(err, EINVAL, "rootfs \"%s\" must be an absolute path", rootfs ? rootfs : "(null)");
        return false;
    }
    struct stat st;
    if (stat(rootfs, &st) < 0) {
        gerr_sys(err, errno, "rootfs %s", rootfs);
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        gerr_set(err, ENOTDIR, "rootfs %s is not a directory", rootfs);
        return false;
    }
    return true;
}

/* Creates the directories with their exact modes (chmod after mkdir: umask). */
static int make_dirs(int rootfd, const char *root, const struct dir_spec *dirs, size_t n,
                     struct gerr *err)
{
    for (size_t i = 0; i < n; i++) {
        if (mkdirat(rootfd, dirs[i].path, 0700) < 0 && errno != EEXIST)
            return gerr_sys(err, errno, "mkdir %s/%s", root, dirs[i].path);
        if (fchmodat(rootfd, dirs[i].path, dirs[i].mode, 0) < 0)
            return gerr_sys(err, errno, "chmod %s/%s", root, dirs[i].path);
    }
    return 0;
}

static int write_text(int rootfd, const char *root, const char *name, const char *text,
                      struct gerr *err)
{
    AUTO_FD int fd = openat(rootfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return gerr_sys(err, errno, "create %s/%s", root, name);
    int r = write_full(fd, text, strlen(text));
    if (r < 0)
        return gerr_sys(err, -r, "write %s/%s", root, name);
    if (fchmod(fd, 0644) < 0)
        return gerr_sys(err, errno, "chmod %s/%s", root, name);
    return 0;
}

/* Copies a regular file from src into rootfd/name with mode. */
static int copy_file(const char *src, int rootfd, const char *root, const char *name, mode_t mode,
                     struct gerr *err)
{
    AUTO_FD int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return gerr_sys(err, errno, "open %s", src);
    AUTO_FD int out = openat(rootfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0)
        return gerr_sys(err, errno, "create %s/%s", root, name);
    char buf[65536];
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return gerr_sys(err, errno, "read %s", src);
        }
        if (n == 0)
            break;
        int r = write_full(out, buf, (size_t)n);
        if (r < 0)
            return gerr_sys(err, -r, "write %s/%s", root, name);
    }
    if (fchmod(out, mode) < 0)
        return gerr_sys(err, errno, "chmod %s/%s", root, name);
    return 0;
}

/* Fails unless path is a 64-bit ELF executable without a PT_INTERP program header,
 * i.e. statically linked: the busybox image has no dynamic loader or libc. */
static int check_static_elf(const char *path, struct gerr *err)
{
    AUTO_FD int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return gerr_sys(err, errno, "open %s", path);
    Elf64_Ehdr eh;
    if (pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh || memcmp(eh.e_ident, ELFMAG, SELFMAG) ||
        eh.e_ident[EI_CLASS] != ELFCLASS64)
        return gerr_set(err, ENOEXEC, "%s is not a 64-bit ELF executable", path);
    if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0)
        return gerr_set(err, ENOEXEC, "%s has no usable program headers", path);
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        off_t off = (off_t)eh.e_phoff + (off_t)i * (off_t)sizeof ph;
        if (pread(fd, &ph, sizeof ph, off) != (ssize_t)sizeof ph)
            return gerr_set(err, ENOEXEC, "%s: truncated program headers", path);
        if (ph.p_type == PT_INTERP)
            return gerr_set(err, ENOEXEC,
                            "%s is dynamically linked; a static busybox is needed "
                            "(Debian: apt-get install busybox-static)",
                            path);
    }
    return 0;
}

/* Runs `busybox --list` and collects its stdout (one applet name a line). */
static int busybox_list(const char *busybox, struct buf *out, struct gerr *err)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return gerr_sys(err, errno, "pipe");
    AUTO_FD int rd = p[0];
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO);
    char *const argv[] = {(char *)"busybox", (char *)"--list", NULL};
    pid_t pid;
    int sr = posix_spawn(&pid, busybox, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (sr != 0)
        return gerr_sys(err, sr, "run %s --list", busybox);
    int r = 0;
    char chunk[4096];
    for (;;) {
        ssize_t n = read(rd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n < 0)
                r = gerr_sys(err, errno, "read output of %s --list", busybox);
            break;
        }
        if (r == 0)
            buf_append(out, chunk, (size_t)n);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return r ? r : gerr_sys(err, errno, "wait for %s --list", busybox);
    }
    if (r == 0 && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
        r = gerr_set(err, EIO, "%s --list failed (status %d)", busybox, status);
    return r;
}

static int fill_busybox(int rootfd, const char *root, struct gerr *err)
{
    int r = check_static_elf(IMAGE_BUSYBOX_SRC, err);
    if (r < 0)
        return r;
    r = make_dirs(rootfd, root, busybox_dirs, ARRAY_LEN(busybox_dirs), err);
    if (r < 0)
        return r;
    r = copy_file(IMAGE_BUSYBOX_SRC, rootfd, root, "bin/busybox", 0755, err);
    if (r < 0)
        return r;
    AUTO_BUF struct buf list = {0};
    r = busybox_list(IMAGE_BUSYBOX_SRC, &list, err);
    if (r < 0)
        return r;
    AUTO_FD int bin = openat(rootfd, "bin", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (bin < 0)
        return gerr_sys(err, errno, "open %s/bin", root);
    int count = 0;
    char *save = NULL;
    for (char *name = strtok_r(list.data, "\n", &save); name; name = strtok_r(NULL, "\n", &save)) {
        if (!*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, "..") ||
            !strcmp(name, "busybox"))
            continue;
        if (symlinkat("busybox", bin, name) < 0 && errno != EEXIST)
            return gerr_sys(err, errno, "symlink %s/bin/%s", root, name);
        count++;
    }
    if (count == 0)
        return gerr_set(err, EIO, "%s --list printed no applets", IMAGE_BUSYBOX_SRC);
    if ((r = write_text(rootfd, root, "etc/passwd", etc_passwd, err)) < 0 ||
        (r = write_text(rootfd, root, "etc/group", etc_group, err)) < 0 ||
        (r = write_text(rootfd, root, "etc/hostname", etc_hostname, err)) < 0 ||
        (r = write_text(rootfd, root, "etc/hosts", etc_hosts, err)) < 0)
        return r;
    return 0;
}

static int fill_host_python(int rootfd, const char *root, struct gerr *err)
{
    int r = make_dirs(rootfd, root, python_dirs, ARRAY_LEN(python_dirs), err);
    if (r < 0)
        return r;
    /* Merged-usr hosts have /bin -> usr/bin etc.; with /usr bound in, the same links
     * make /bin/sh, /lib64/ld-linux-*.so and friends resolve inside the container. */
    static const char *const links[] = {"bin", "sbin", "lib", "lib64"};
    for (size_t i = 0; i < ARRAY_LEN(links); i++) {
        char host[32], target[PATH_MAX];
        snprintf(host, sizeof host, "/%s", links[i]);
        ssize_t n = readlink(host, target, sizeof target - 1);
        if (n < 0)
            continue;
        target[n] = '\0';
        if (strncmp(target, "usr/", 4) && strncmp(target, "/usr/", 5))
            continue;
        if (symlinkat(target, rootfd, links[i]) < 0 && errno != EEXIST)
            return gerr_sys(err, errno, "symlink %s/%s", root, links[i]);
    }
    if ((r = write_text(rootfd, root, "etc/passwd", etc_passwd, err)) < 0 ||
        (r = write_text(rootfd, root, "etc/group", etc_group, err)) < 0 ||
        (r = write_text(rootfd, root, "etc/hostname", etc_hostname, err)) < 0 ||
        (r = write_text(rootfd, root, "etc/hosts", etc_hosts, err)) < 0 ||
        (r = write_text(rootfd, root, "etc/nsswitch.conf", etc_nsswitch, err)) < 0)
        return r;
    if (access("/etc/ld.so.cache", F_OK) == 0)
        return copy_file("/etc/ld.so.cache", rootfd, root, "etc/ld.so.cache", 0644, err);
    return 0;
}

static bool marker_exists(const char *dest)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/" IMAGE_OK_MARKER, dest) >= (int)sizeof path)
        return false;
    return access(path, F_OK) == 0;
}

typedef int (*fill_fn)(int rootfd, const char *root, struct gerr *err);

/* Builds into a fresh temp dir next to dest, marks it complete and renames it into
 * place. If another builder finished first, its result is kept and ours dropped;
 * an unmarked (half-built) dest is replaced. */
static int build_atomic(const char *dest, const char *what, fill_fn fill, struct gerr *err)
{
    if (!dest || dest[0] != '/')
        return gerr_set(err, EINVAL, "image destination \"%s\" must be an absolute path",
                        dest ? dest : "(null)");
    if (marker_exists(dest))
        return 0;
    char parent[PATH_MAX], tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", dest) >= (int)sizeof tmp)
        return gerr_set(err, ENAMETOOLONG, "image path %s too long", dest);
    strcpy(parent, dest);
    char *slash = strrchr(parent, '/');
    if (slash != parent) {
        *slash = '\0';
        int r = mkdir_p(parent, 0755);
        if (r < 0)
            return gerr_sys(err, -r, "mkdir %s", parent);
    }
    if (!mkdtemp(tmp))
        return gerr_sys(err, errno, "create temp dir %s", tmp);
    int r = 0;
    {
        AUTO_FD int rootfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0)
            r = gerr_sys(err, errno, "open %s", tmp);
        else if (fchmod(rootfd, 0755) < 0)
            r = gerr_sys(err, errno, "chmod %s", tmp);
        else if ((r = fill(rootfd, tmp, err)) == 0)
            r = write_text(rootfd, tmp, IMAGE_OK_MARKER, "", err);
    }
    for (int attempt = 0; r == 0; attempt++) {
        if (rename(tmp, dest) == 0)
            return 0;
        if ((errno != ENOTEMPTY && errno != EEXIST) || attempt > 0) {
            r = gerr_sys(err, errno, "rename %s to %s", tmp, dest);
            break;
        }
        if (marker_exists(dest))
            break;
        int rr = rm_rf(dest);
        if (rr < 0)
            r = gerr_sys(err, -rr, "remove incomplete image %s", dest);
    }
    rm_rf(tmp);
    if (r < 0)
        return gerr_prefix(err, "build %s image at %s", what, dest);
    return 0;
}

int image_build_busybox(const char *dest, struct gerr *err)
{
    return build_atomic(dest, "busybox", fill_busybox, err);
}

int image_build_host_python(const char *dest, struct gerr *err)
{
    return build_atomic(dest, "host-python", fill_host_python, err);
}
