/* Confinement steps shared by the sandbox's child (runtime/sandbox.c) and by the
 * PID 1 of a container forked from a snapshot template (gust-init snap_child mode):
 * mount helpers that resolve inside the new root, /dev, the /proc masks, loopback,
 * and the privilege drop. Everything here runs in a process that is about to become a
 * container; nothing allocates. */
#include "runtime/confine.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/caps.h"
#include "base/cleanup.h"
#include "base/util.h"
#include "runtime/netlink.h"

/* /proc entries that leak host or kernel state: files get /dev/null bound over them,
 * directories an empty read-only tmpfs. Missing ones (kernel config) are skipped. */
static const char *const masked_paths[] = {
    "/proc/kcore",       "/proc/keys",         "/proc/key-users",     "/proc/timer_list",
    "/proc/sched_debug", "/proc/latency_stats", "/proc/kallsyms",     "/proc/kpagecount",
    "/proc/kpageflags",  "/proc/kpagecgroup",  "/proc/vmallocinfo",  "/proc/config.gz",
    "/proc/acpi",        "/proc/scsi",         "/proc/asound",       "/sys/firmware",
    "/sys/devices/virtual/powercap", "/sys/kernel/debug", "/sys/kernel/tracing",
};
/* Kernel knobs: visible, read-only. */
static const char *const readonly_paths[] = {"/proc/sys", "/proc/sysrq-trigger", "/proc/bus",
                                             "/proc/fs", "/proc/irq"};

/* Host device nodes every container gets, bound onto empty files in its /dev. */
const char *const confine_std_devices[] = {"/dev/null", "/dev/zero", "/dev/full",
                                           "/dev/random", "/dev/urandom", "/dev/tty"};

const size_t confine_std_ndevices = ARRAY_LEN(confine_std_devices);

/* openat2 below rootfd with "/" and ".." clamped to it (flags get O_CLOEXEC). */
int confine_open_in_root(int rootfd, const char *rel, int flags)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    long fd = syscall(SYS_openat2, rootfd, rel, &how, sizeof how);
    return fd < 0 ? -errno : (int)fd;
}

/* Makes sure the absolute container path exists under the root (directories for
 * the parents, a directory or an empty file for the last component) and returns an
 * O_PATH fd to it. Every step resolves with RESOLVE_IN_ROOT, so symlinks in the
 * image cannot redirect a mount (made before pivot_root) onto a host path. */
int confine_mountpoint_in_root(int rootfd, const char *path, bool dir, struct gerr *err)
{
    char rel[PATH_MAX];
    while (*path == '/')
        path++;
    if (!*path)
        return gerr_set(err, EINVAL, "mount point \"/\" is not allowed");
    if (strlen(path) >= sizeof rel)
        return gerr_set(err, ENAMETOOLONG, "mount point /%s too long", path);
    strcpy(rel, path);
    int cur = fcntl(rootfd, F_DUPFD_CLOEXEC, 0);
    if (cur < 0)
        return gerr_sys(err, errno, "dup root fd");
    char *comp = rel;
    for (;;) {
        char *slash = strchr(comp, '/');
        while (slash && slash[1] == '/')
            memmove(slash, slash + 1, strlen(slash));
        if (slash && slash[1] == '\0') {
            *slash = '\0';
            slash = NULL;
        }
        bool last = !slash;
        if (slash)
            *slash = '\0';
        if (!strcmp(comp, ".") || !strcmp(comp, "..")) {
            close(cur);
            return gerr_set(err, EINVAL, "mount point /%s: \".\" and \"..\" are not allowed", path);
        }
        int rc = last && !dir ? mknodat(cur, comp, S_IFREG | 0644, 0) : mkdirat(cur, comp, 0755);
        if (rc < 0 && errno != EEXIST) {
            int e = errno;
            close(cur);
            return gerr_sys(err, e, "create mount point /%s", rel);
        }
        int next = confine_open_in_root(rootfd, rel, O_PATH | (last && !dir ? 0 : O_DIRECTORY));
        close(cur);
        if (next < 0)
            return gerr_sys(err, -next, "resolve mount point /%s", rel);
        cur = next;
        if (last)
            return cur;
        *slash = '/';
        comp = slash + 1;
    }
}

/* Mounts onto the object behind an O_PATH fd through its /proc/self/fd magic link
 * (the host's /proc is still visible before pivot_root). */
static int mount_on_fd(const char *src, int fd, const char *fstype, unsigned long flags,
                       const char *data, const char *what, const char *where, struct gerr *err)
{
    char target[64];
    snprintf(target, sizeof target, "/proc/self/fd/%d", fd);
    if (mount(src, target, fstype, flags, data) < 0)
        return gerr_sys(err, errno, "mount %s on %s", what, where);
    return 0;
}

/* Creates the mount point at container path `where` and mounts there. */
int confine_mount_in_root(int rootfd, const char *src, const char *where, bool dir, const char *fstype,
                         unsigned long flags, const char *data, const char *what, struct gerr *err)
{
    int fd = confine_mountpoint_in_root(rootfd, where, dir, err);
    if (fd < 0)
        return fd;
    int r = mount_on_fd(src, fd, fstype, flags, data, what, where, err);
    close(fd);
    return r;
}

/* Sets attributes on the mount now at container path `where`, recursively. */
static int setattr_in_root(int rootfd, const char *where, uint64_t attrs, struct gerr *err)
{
    while (*where == '/')
        where++;
    AUTO_FD int fd = confine_open_in_root(rootfd, where, O_PATH);
    if (fd < 0)
        return gerr_sys(err, -fd, "resolve bind /%s", where);
    struct mount_attr attr = {.attr_set = attrs};
    if (mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0)
        return gerr_sys(err, errno, "set flags of /%s", where);
    return 0;
}

/* Attaches a clone of the host tree at host_path on the O_PATH fd target, idmapped
 * through userns_fd (so host root-owned files appear root-owned inside). Returns
 * -EINVAL when the filesystem cannot be idmapped; the caller then binds plainly. */
int confine_attach_idmapped(const char *host_path, int target, int userns_fd, uint64_t attrs)
{
    AUTO_FD int tree = open_tree(AT_FDCWD, host_path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (tree < 0)
        return -errno;
    struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP | attrs, .userns_fd = (uint64_t)userns_fd};
    if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0)
        return -errno;
    if (move_mount(tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        return -errno;
    return 0;
}

/* Binds host onto container path where: nosuid and nodev always, read-only when
 * asked. Read-only directories are idmapped into the user namespace when there is one
 * (host root's files appear root-owned); writable ones are not, since through an
 * idmapped mount container root would write as host root. */
int confine_bind_in_root(int rootfd, const char *host, const char *where, bool read_only, int userns_fd,
                        struct gerr *err)
{
    struct stat st;
    if (stat(host, &st) < 0)
        return gerr_sys(err, errno, "bind %s", host);
    uint64_t attrs = MOUNT_ATTR_NOSUID | (S_ISCHR(st.st_mode) ? 0 : MOUNT_ATTR_NODEV) |
                     (read_only ? MOUNT_ATTR_RDONLY : 0);
    if (userns_fd >= 0 && read_only && S_ISDIR(st.st_mode)) {
        AUTO_FD int target = confine_mountpoint_in_root(rootfd, where, true, err);
        if (target < 0)
            return target;
        int r = confine_attach_idmapped(host, target, userns_fd, attrs);
        if (r == 0)
            return 0;
        if (r != -EINVAL && r != -EPERM && r != -ENOSYS)
            return gerr_sys(err, -r, "idmapped bind %s on %s", host, where);
    }
    char what[PATH_MAX + 8];
    snprintf(what, sizeof what, "bind %s", host);
    int r = confine_mount_in_root(rootfd, host, where, S_ISDIR(st.st_mode), NULL, MS_BIND | MS_REC, NULL,
                          what, err);
    if (r < 0)
        return r;
    return setattr_in_root(rootfd, where, attrs, err);
}

int confine_setup_dev(int rootfd, const struct confine_dev *d, struct gerr *err)
{
    int r = confine_mount_in_root(rootfd, "tmpfs", "/dev", true, "tmpfs", MS_NOSUID | MS_NOEXEC, d->dev_opts,
                          "tmpfs", err);
    if (r < 0)
        return r;
    for (size_t i = 0; i < confine_std_ndevices && r == 0; i++) {
        /* A minimal host may lack one of these (often /dev/tty); extra devices from
         * the config, in contrast, are required. */
        if (access(confine_std_devices[i], F_OK) == 0)
            r = confine_bind_in_root(rootfd, confine_std_devices[i], confine_std_devices[i], false, -1, err);
    }
    for (int i = 0; i < d->ndevices && r == 0; i++)
        r = confine_bind_in_root(rootfd, d->host_paths[i], d->ctr_paths[i], false, -1, err);
    if (r < 0)
        return r;
    r = confine_mount_in_root(rootfd, "devpts", "/dev/pts", true, "devpts", MS_NOSUID | MS_NOEXEC,
                      "newinstance,ptmxmode=0666,mode=0620", "devpts", err);
    if (r < 0)
        return r;
    r = confine_mount_in_root(rootfd, "tmpfs", "/dev/shm", true, "tmpfs", MS_NOSUID | MS_NODEV,
                      d->shm_opts, "tmpfs", err);
    if (r < 0)
        return r;
    AUTO_FD int devfd = confine_open_in_root(rootfd, "dev", O_PATH | O_DIRECTORY);
    if (devfd < 0)
        return gerr_sys(err, -devfd, "open /dev");
    static const char *const links[][2] = {
        {"pts/ptmx", "ptmx"},          {"/proc/self/fd", "fd"},
        {"/proc/self/fd/0", "stdin"},  {"/proc/self/fd/1", "stdout"},
        {"/proc/self/fd/2", "stderr"},
    };
    for (size_t i = 0; i < ARRAY_LEN(links); i++) {
        if (symlinkat(links[i][0], devfd, links[i][1]) < 0 && errno != EEXIST)
            return gerr_sys(err, errno, "symlink /dev/%s", links[i][1]);
    }
    return 0;
}

int confine_loopback_up(struct gerr *err)
{
    AUTO_FD int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return gerr_sys(err, errno, "socket for loopback setup");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        return gerr_sys(err, errno, "get flags of lo");
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        return gerr_sys(err, errno, "bring lo up");
    return 0;
}

/* After pivot_root: /dev/null over leaky /proc files, empty read-only tmpfs over
 * leaky directories, read-only binds over kernel knobs. */
int confine_mask_paths(struct gerr *err)
{
    for (size_t i = 0; i < ARRAY_LEN(masked_paths); i++) {
        struct stat st;
        if (lstat(masked_paths[i], &st) < 0)
            continue;
        int rc = S_ISDIR(st.st_mode)
                     ? mount("tmpfs", masked_paths[i], "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0")
                     : mount("/dev/null", masked_paths[i], NULL, MS_BIND, NULL);
        if (rc < 0)
            return gerr_sys(err, errno, "mask %s", masked_paths[i]);
    }
    for (size_t i = 0; i < ARRAY_LEN(readonly_paths); i++) {
        const char *p = readonly_paths[i];
        if (access(p, F_OK) < 0)
            continue;
        if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0)
            return gerr_sys(err, errno, "bind %s", p);
        if (mount(NULL, p, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
            return gerr_sys(err, errno, "make %s read-only", p);
    }
    return 0;
}

int confine_drop_privileges(uint64_t extra_caps, struct gerr *err)
{
    return caps_limit(CAPS_CONTAINER | extra_caps, err);
}

void confine_reset_signals(void)
{
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++)
        sigaction(s, &sa, NULL);
}

int confine_template_hidden_mounts(struct gerr *err)
{
    if (mkdir(CONFINE_HIDDEN_DIR, 0700) < 0 && errno != EEXIST)
        return gerr_sys(err, errno, "mkdir %s", CONFINE_HIDDEN_DIR);
    if (mount("tmpfs", CONFINE_HIDDEN_DIR, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "size=16k,nr_inodes=8,mode=0700,uid=0,gid=0") < 0)
        return gerr_sys(err, errno, "mount tmpfs on %s", CONFINE_HIDDEN_DIR);
    if (mkdir(CONFINE_HIDDEN_DIR "/proc", 0555) < 0 || mkdir(CONFINE_HIDDEN_DIR "/sys", 0555) < 0)
        return gerr_sys(err, errno, "mkdir under %s", CONFINE_HIDDEN_DIR);
    if (mount("proc", CONFINE_HIDDEN_DIR "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return gerr_sys(err, errno, "mount proc on %s/proc", CONFINE_HIDDEN_DIR);
    if (mount("sysfs", CONFINE_HIDDEN_DIR "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return gerr_sys(err, errno, "mount sysfs on %s/sys", CONFINE_HIDDEN_DIR);
    if (mkdir(CONFINE_ROOT_BIND, 0755) < 0 && errno != EEXIST)
        return gerr_sys(err, errno, "mkdir %s", CONFINE_ROOT_BIND);
    if (mount("/", CONFINE_ROOT_BIND, NULL, MS_BIND, NULL) < 0)
        return gerr_sys(err, errno, "bind / on %s", CONFINE_ROOT_BIND);
    return 0;
}

/* ---- forked containers ---------------------------------------------------------- */

#define FORKED_MAX_CARRIED 48

struct carried_mount {
    char path[PATH_MAX];
    bool read_only;
};

/* Decodes mountinfo's octal escapes (\040 and the like) in place. */
static void unescape_mountinfo(char *s)
{
    char *o = s;
    for (char *p = s; *p;) {
        if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' && p[3] >= '0' && p[3] <= '7') {
            *o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
            p += 4;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
}

static bool path_under(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return !strncmp(path, dir, n) && (path[n] == '\0' || path[n] == '/');
}

/* The template's mounts a forked container gets again: everything but the root and
 * what it makes fresh (/proc, /sys, /dev, /tmp, the hidden dir), outermost first. */
static int carried_mounts(struct carried_mount *out, int *n, struct gerr *err)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return gerr_sys(err, errno, "open /proc/self/mountinfo");
    static const char *const fresh[] = {"/proc", "/sys", "/dev", "/tmp", CONFINE_HIDDEN_DIR, CONFINE_ROOT_BIND};
    char line[3 * PATH_MAX];
    *n = 0;
    int r = 0;
    while (fgets(line, sizeof line, f)) {
        /* id parent major:minor root mount-point options ... */
        char *save = NULL, *field = strtok_r(line, " ", &save);
        for (int i = 0; i < 4 && field; i++)
            field = strtok_r(NULL, " ", &save);
        char *opts = field ? strtok_r(NULL, " ", &save) : NULL;
        if (!field || !opts)
            continue;
        unescape_mountinfo(field);
        if (field[0] != '/' || !field[1])
            continue;
        bool skip = false;
        for (size_t i = 0; i < ARRAY_LEN(fresh) && !skip; i++)
            skip = path_under(field, fresh[i]);
        for (int i = 0; i < *n && !skip; i++)
            skip = path_under(field, out[i].path);
        if (skip)
            continue;
        if (*n >= FORKED_MAX_CARRIED) {
            r = gerr_set(err, E2BIG, "the template has more than %d mounts", FORKED_MAX_CARRIED);
            break;
        }
        if (strlen(field) >= sizeof out[*n].path)
            continue;
        strcpy(out[*n].path, field);
        out[*n].read_only = !strncmp(opts, "ro", 2) && (opts[2] == ',' || opts[2] == '\0');
        (*n)++;
    }
    fclose(f);
    return r;
}

int confine_forked_root(const struct confine_forked *f, struct gerr *err)
{
    if (sethostname(f->hostname, strlen(f->hostname)) < 0)
        return gerr_sys(err, errno, "sethostname %s", f->hostname);
    int r = confine_loopback_up(err);
    if (r == 0 && f->egress_addr)
        r = netlink_config_eth0(f->egress_addr, f->egress_prefix, f->egress_gw, err);
    if (r < 0)
        return r;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return gerr_sys(err, errno, "make / private");
    static struct carried_mount carried[FORKED_MAX_CARRIED];
    int ncarried = 0;
    r = carried_mounts(carried, &ncarried, err);
    if (r < 0)
        return r;
    char opts[128];
    unsigned long long disk = f->disk_mib ? (unsigned long long)f->disk_mib : 512;
    snprintf(opts, sizeof opts, "size=%llum,mode=0755", disk);
    /* Scratch for the writable layer, over the template's /tmp in this namespace only. */
    if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
        return gerr_sys(err, errno, "mount the writable layer's tmpfs");
    if (mkdir("/tmp/upper", 0755) < 0 || mkdir("/tmp/work", 0755) < 0 || mkdir("/tmp/merged", 0755) < 0)
        return gerr_sys(err, errno, "mkdir in the writable layer");
    /* userxattr: overlayfs mounted in a user namespace keeps its metadata in user.*
     * xattrs (trusted.* needs host root). */
    if (mount("overlay", "/tmp/merged", "overlay", MS_NOSUID | MS_NODEV,
              "lowerdir=" CONFINE_ROOT_BIND ",upperdir=/tmp/upper,workdir=/tmp/work,userxattr") < 0)
        return gerr_sys(err, errno, "mount the overlay on the template's root");
    AUTO_FD int rootfd = open("/tmp/merged", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return gerr_sys(err, errno, "open the new root");
    struct confine_dev dev = {.dev_opts = "mode=755,size=64k,nr_inodes=256", .shm_opts = "mode=1777"};
    r = confine_setup_dev(rootfd, &dev, err);
    if (r < 0)
        return r;
    snprintf(opts, sizeof opts, "size=%llum,mode=1777", disk);
    r = confine_mount_in_root(rootfd, "tmpfs", "/tmp", true, "tmpfs", MS_NOSUID | MS_NODEV, opts, "tmpfs", err);
    for (int i = 0; i < ncarried && r == 0; i++)
        r = confine_bind_in_root(rootfd, carried[i].path, carried[i].path, carried[i].read_only, -1, err);
    if (r < 0)
        return r;
    /* proc and sysfs before the old root goes: the kernel allows them only while the
     * template's uncovered instances are still in this mount namespace. */
    r = confine_mount_in_root(rootfd, "proc", "/proc", true, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL,
                              "proc", err);
    if (r == 0)
        r = confine_mount_in_root(rootfd, "sysfs", "/sys", true, "sysfs",
                                  MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, "sysfs", err);
    if (r < 0)
        return r;
    if (fchdir(rootfd) < 0)
        return gerr_sys(err, errno, "chdir to the new root");
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        return gerr_sys(err, errno, "pivot_root");
    if (umount2(".", MNT_DETACH) < 0)
        return gerr_sys(err, errno, "detach the template's root");
    if (chdir("/") < 0)
        return gerr_sys(err, errno, "chdir /");
    return confine_mask_paths(err);
}
