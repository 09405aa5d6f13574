/* Sandbox creation: parent side (validation, cgroups, clone, sync) and child side
 * (mounts, pivot_root, hostname, loopback, fds, fexecve).
 *
 * The child is cloned fork-style (no CLONE_VM, no separate stack) so it runs on a
 * private copy of our memory; it only makes syscalls and formats messages on its
 * stack before it execs, so it is safe even if other threads held libc locks at
 * clone time. Parent and child talk over a SOCK_SEQPACKET pair:
 *
 *   parent                                  child
 *   clone ------------------------------->  PR_SET_PDEATHSIG, wait for "go"
 *   pidfd_open, write pid to cgroup.procs
 *   send "go" ---------------------------> unshare(CLONE_NEWCGROUP), mounts, ...
 *   read: EOF = exec'd (CLOEXEC closed)  <- fexecve; or one struct child_report
 *         report = setup failed                      with errno + message, _exit
 */
#include "runtime/sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <sys/sysmacros.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "runtime/cgroup.h"
#include "runtime/confine.h"
#include "runtime/netlink.h"

/* How long the parent waits for the child to exec before giving up on it. */
#define SANDBOX_SETUP_TIMEOUT_MS 30000
/* The child parks the fds it must keep at or above this number while it works, so
 * they never collide with 0..5, the numbers they end up on. */
#define CHILD_FD_FLOOR 16

#define CLONE_NS_FLAGS (CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET)

struct child_report {
    int32_t code;
    char msg[GERR_MSG_MAX];
};

/* Sent by the child right before exec (code 0): monotonic timestamps of its steps. */
struct child_timing {
    int32_t code;
    uint64_t start_ns, network_ns, mounts_ns, userns_ns, security_ns;
};

/* What the child needs, all formatted by the parent before clone. */
struct child_args {
    const struct sandbox_config *cfg;
    const char *state_dir;
    const char *hostname;
    char upper[PATH_MAX];
    char work[PATH_MAX];
    char merged[PATH_MAX];
    char lower[PATH_MAX];       /* idmapped clone of the rootfs (with a user namespace) */
    char overlay_opts[3 * PATH_MAX + 64];
    char disk_opts[64];
    char tmp_opts[96];
    char dev_opts[96];
    char shm_opts[96];
    const char *dev_host[SANDBOX_MAX_DEVICES], *dev_ctr[SANDBOX_MAX_DEVICES];
    int sync_fd;
    int userns_fd;              /* parked copy in the child */
};

/* ---- child side --------------------------------------------------------------- */

/* The overlay's lower layer: the rootfs itself, or with a user namespace an
 * idmapped clone of it attached at a->lower (falling back to the rootfs itself when
 * its filesystem cannot be idmapped: files then appear owned by nobody). */
static int setup_lower(const struct child_args *a, const char **lower, struct gerr *err)
{
    *lower = a->cfg->rootfs;
    if (a->userns_fd < 0)
        return 0;
    if (mkdir(a->lower, 0755) < 0)
        return gerr_sys(err, errno, "mkdir %s", a->lower);
    AUTO_FD int target = open(a->lower, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (target < 0)
        return gerr_sys(err, errno, "open %s", a->lower);
    int r = confine_attach_idmapped(a->cfg->rootfs, target, a->userns_fd, MOUNT_ATTR_RDONLY);
    if (r == 0) {
        *lower = a->lower;
        return 0;
    }
    if (r == -EINVAL || r == -ENOSYS)
        return 0;
    return gerr_sys(err, -r, "idmapped mount of %s", a->cfg->rootfs);
}

/* Mounts volume v at target (a path in the current mount namespace; with a user
 * namespace, its lower layer idmapped through scratch, a directory made here). The
 * upper and work directories are made when missing and owned by the container's
 * root (host uid/gid), as the root overlay's are. Only syscalls and formatting on
 * the stack: it runs in cloned and forked children. */
static int volume_mount(const struct sandbox_volume *v, int userns_fd, const struct sandbox_userns *uns,
                        const char *scratch, const char *target, struct gerr *err)
{
    const char *dirs[] = {v->upper, v->work};
    for (size_t i = 0; i < ARRAY_LEN(dirs); i++) {
        if (mkdir(dirs[i], 0755) < 0 && errno != EEXIST)
            return gerr_sys(err, errno, "mkdir %s", dirs[i]);
        if (uns && chown(dirs[i], uns->host_uid, uns->host_gid) < 0)
            return gerr_sys(err, errno, "chown %s to the container's root", dirs[i]);
    }
    const char *lower = v->lower;
    if (userns_fd >= 0) {
        if (mkdir(scratch, 0755) < 0)
            return gerr_sys(err, errno, "mkdir %s", scratch);
        AUTO_FD int t = open(scratch, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (t < 0)
            return gerr_sys(err, errno, "open %s", scratch);
        int r = confine_attach_idmapped(v->lower, t, userns_fd, MOUNT_ATTR_RDONLY);
        if (r == 0)
            lower = scratch;
        else if (r != -EINVAL && r != -ENOSYS)
            return gerr_sys(err, -r, "idmapped mount of %s", v->lower);
    }
    /* volatile: unmounting (each commit and reload) does not sync the whole upper
     * filesystem, which took a second after a large write elsewhere on it. What a
     * commit keeps is read from the upper layer into the object store; a crash loses
     * the uncommitted layers anyway (gustd removes them at start). */
    char opts[4 * PATH_MAX];
    if (snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s,workdir=%s,volatile", lower, v->upper, v->work) >=
        (int)sizeof opts)
        return gerr_set(err, ENAMETOOLONG, "volume overlay options too long");
    if (mount("overlay", target, "overlay", MS_NODEV | MS_NOSUID, opts) < 0)
        return gerr_sys(err, errno, "mount the volume overlay on %s (lower %s)", v->container_path, v->lower);
    return 0;
}

/* The volumes of cfg, at their container paths under rootfd. */
static int setup_volumes(const struct child_args *a, int rootfd, struct gerr *err)
{
    const struct sandbox_config *cfg = a->cfg;
    for (int i = 0; i < cfg->nvolumes; i++) {
        AUTO_FD int t = confine_mountpoint_in_root(rootfd, cfg->volumes[i].container_path, true, err);
        if (t < 0)
            return t;
        char scratch[PATH_MAX], target[64];
        snprintf(scratch, sizeof scratch, "%s/vol%d", a->state_dir, i);
        snprintf(target, sizeof target, "/proc/self/fd/%d", t);
        int r = volume_mount(&cfg->volumes[i], a->userns_fd, cfg->userns, scratch, target, err);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Mount namespace: private propagation, tmpfs scratch, overlay root (idmapped
 * lower), /dev, /tmp, binds, pivot_root, /proc, /sys (read-only), masks. */
static int setup_mounts(const struct child_args *a, struct gerr *err)
{
    const struct sandbox_config *cfg = a->cfg;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return gerr_sys(err, errno, "make / private");
    if (mount("tmpfs", a->state_dir, "tmpfs", MS_NOSUID | MS_NODEV, a->disk_opts) < 0)
        return gerr_sys(err, errno, "mount tmpfs on %s", a->state_dir);
    const char *dirs[] = {a->merged, a->upper, a->work};
    for (size_t i = 0; i < (cfg->upper_dir ? 1 : ARRAY_LEN(dirs)); i++) {
        if (mkdir(dirs[i], 0755) < 0)
            return gerr_sys(err, errno, "mkdir %s", dirs[i]);
    }
    /* The overlay's root takes the upper dir's owner: container root. */
    if (cfg->userns && (chown(a->upper, cfg->userns->host_uid, cfg->userns->host_gid) < 0 ||
                        chown(a->work, cfg->userns->host_uid, cfg->userns->host_gid) < 0))
        return gerr_sys(err, errno, "chown %s to the container's root", a->upper);
    const char *lower;
    int r = setup_lower(a, &lower, err);
    if (r < 0)
        return r;
    char opts[sizeof a->overlay_opts + PATH_MAX];
    if (snprintf(opts, sizeof opts, "lowerdir=%s,%s", lower, a->overlay_opts) >= (int)sizeof opts)
        return gerr_set(err, ENAMETOOLONG, "overlay options too long");
    /* nodev: device nodes that came with the image are inert; /dev is ours.
     * nosuid: set-user-ID files of the image grant nothing. */
    if (mount("overlay", a->merged, "overlay", MS_NODEV | MS_NOSUID, opts) < 0)
        return gerr_sys(err, errno, "mount overlay on %s (lower %s)", a->merged, cfg->rootfs);
    AUTO_FD int rootfd = open(a->merged, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return gerr_sys(err, errno, "open %s", a->merged);
    struct confine_dev dev = {.dev_opts = a->dev_opts, .shm_opts = a->shm_opts, .ndevices = cfg->ndevices,
                              .host_paths = a->dev_host, .ctr_paths = a->dev_ctr};
    r = confine_setup_dev(rootfd, &dev, err);
    if (r < 0)
        return r;
    r = confine_mount_in_root(rootfd, "tmpfs", "/tmp", true, "tmpfs", MS_NOSUID | MS_NODEV, a->tmp_opts,
                      "tmpfs", err);
    for (int i = 0; i < cfg->nbinds && r == 0; i++)
        r = confine_bind_in_root(rootfd, cfg->binds[i].host_path, cfg->binds[i].container_path,
                         cfg->binds[i].read_only, a->userns_fd, err);
    if (r == 0)
        r = setup_volumes(a, rootfd, err);
    if (r < 0)
        return r;
    /* pivot_root(".", "."): the old root ends up stacked on the new one at "/" and
     * is detached right away, so no .oldroot directory is needed. */
    if (fchdir(rootfd) < 0)
        return gerr_sys(err, errno, "chdir %s", a->merged);
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        return gerr_sys(err, errno, "pivot_root to %s", a->merged);
    if (umount2(".", MNT_DETACH) < 0)
        return gerr_sys(err, errno, "detach old root");
    if (chdir("/") < 0)
        return gerr_sys(err, errno, "chdir /");
    if (mkdir("/proc", 0555) < 0 && errno != EEXIST)
        return gerr_sys(err, errno, "mkdir /proc");
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return gerr_sys(err, errno, "mount proc on /proc");
    if (mkdir("/sys", 0555) < 0 && errno != EEXIST)
        return gerr_sys(err, errno, "mkdir /sys");
    if (mount("sysfs", "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return gerr_sys(err, errno, "mount sysfs on /sys");
    r = confine_mask_paths(err);
    if (r == 0 && cfg->snapshot_template)
        r = confine_template_hidden_mounts(err);
    return r;
}

/* Enters the user namespace as its root (uid and gid 0, no supplementary groups). */
static int enter_userns(int fd, struct gerr *err)
{
    if (setns(fd, CLONE_NEWUSER) < 0)
        return gerr_sys(err, errno, "enter the user namespace");
    if (setresgid(0, 0, 0) < 0)
        return gerr_sys(err, errno, "setresgid 0 in the user namespace");
    if (setgroups(0, NULL) < 0)
        return gerr_sys(err, errno, "setgroups in the user namespace");
    if (setresuid(0, 0, 0) < 0)
        return gerr_sys(err, errno, "setresuid 0 in the user namespace");
    return 0;
}

/* Moves fd to a number >= CHILD_FD_FLOOR (CLOEXEC); -1 stays -1. */
static int park_fd(int fd, const char *what, struct gerr *err)
{
    if (fd < 0)
        return -1;
    int n = fcntl(fd, F_DUPFD_CLOEXEC, CHILD_FD_FLOOR);
    if (n < 0)
        return gerr_sys(err, errno, "dup %s fd %d", what, fd);
    return n;
}

/* Everything after "go" up to exec. Returns only on failure, with *sync_fd set to
 * the fd the report must go to. */
static int child_setup(struct child_args *a, int *sync_fd, struct gerr *err)
{
    const struct sandbox_config *cfg = a->cfg;
    if (unshare(CLONE_NEWCGROUP) < 0)
        return gerr_sys(err, errno, "unshare cgroup namespace");
    int init = park_fd(cfg->init_fd, "init", err);
    if (init < 0)
        return init;
    a->userns_fd = cfg->userns ? park_fd(cfg->userns->fd, "user namespace", err) : -1;
    if (cfg->userns && a->userns_fd < 0)
        return a->userns_fd;
    int chan = cfg->channel_fd >= 0 ? park_fd(cfg->channel_fd, "channel", err) : -1;
    if (cfg->channel_fd >= 0 && chan < 0)
        return chan;
    struct child_timing tm = {.code = 0, .start_ns = mono_ns()};
    if (sethostname(a->hostname, strlen(a->hostname)) < 0)
        return gerr_sys(err, errno, "sethostname %s", a->hostname);
    int r = confine_loopback_up(err);
    if (r == 0 && cfg->egress)
        r = netlink_config_eth0(cfg->egress->ctr_addr, cfg->egress->prefix, cfg->egress->host_addr, err);
    if (r < 0)
        return r;
    tm.network_ns = mono_ns();
    r = setup_mounts(a, err);
    if (r < 0)
        return r;
    tm.mounts_ns = mono_ns();
    const char *wd = cfg->workdir ? cfg->workdir : "/";
    if (chdir(wd) < 0)
        return gerr_sys(err, errno, "chdir %s", wd);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0)
        return gerr_sys(err, errno, "open /dev/null");
    int nullp = park_fd(null, "/dev/null", err);
    close(null);
    if (nullp < 0)
        return nullp;
    for (int i = 0; i < 3; i++) {
        if (dup2(nullp, i) < 0)
            return gerr_sys(err, errno, "dup2 /dev/null to %d", i);
    }
    /* Final layout: 0-2 /dev/null, 3 channel (inherited by init), 4 init binary and
     * 5 sync socket (both CLOEXEC, gone after exec), nothing else. */
    if (chan >= 0 && dup2(chan, 3) < 0)
        return gerr_sys(err, errno, "dup2 channel to 3");
    if (chan < 0)
        close(3);
    if (dup3(init, 4, O_CLOEXEC) < 0)
        return gerr_sys(err, errno, "dup init fd to 4");
    if (dup3(*sync_fd, 5, O_CLOEXEC) < 0)
        return gerr_sys(err, errno, "dup sync fd to 5");
    *sync_fd = 5;
    /* Without CAP_SYS_RESOURCE (some hosts withhold it) the hard limit cannot rise:
     * the default is then what we have. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) < 0)
        return gerr_sys(err, errno, "getrlimit");
    rlim_t want = cfg->open_files ? cfg->open_files : 65536;
    if (!cfg->open_files && want > nofile.rlim_max && prctl(PR_CAPBSET_READ, CAP_SYS_RESOURCE, 0, 0, 0) != 1)
        want = nofile.rlim_max;
    nofile.rlim_cur = nofile.rlim_max = want;
    if (setrlimit(RLIMIT_NOFILE, &nofile) < 0)
        return gerr_sys(err, errno, "set the open-files limit to %llu", (unsigned long long)want);
    if (a->userns_fd >= 0) {
        r = enter_userns(a->userns_fd, err);
        if (r < 0)
            return r;
        /* Changing the effective uid cleared the parent-death signal: arm it again, then
         * make sure the parent did not die in between (its end of the sync socket would
         * be closed). */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
            return gerr_sys(err, errno, "set the parent-death signal");
        struct pollfd pp = {.fd = *sync_fd, .events = POLLRDHUP};
        if (poll(&pp, 1, 0) > 0 && (pp.revents & (POLLHUP | POLLRDHUP)))
            _exit(126);
    }
    tm.userns_ns = mono_ns();
    r = confine_drop_privileges(cfg->snapshot_template ? CONFINE_TEMPLATE_CAPS : 0, err);
    if (r < 0)
        return r;
    /* The user namespace fd and everything else above 5 go before the filter. */
    if (close_range(6, ~0U, 0) < 0)
        return gerr_sys(err, errno, "close_range");
    if (cfg->seccomp && syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, cfg->seccomp) < 0)
        return gerr_sys(err, errno, "install the seccomp filter");
    tm.security_ns = mono_ns();
    while (send(*sync_fd, &tm, sizeof tm, MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
    static char *const empty_env[] = {NULL};
    fexecve(4, cfg->init_argv, cfg->init_envp ? cfg->init_envp : empty_env);
    return gerr_sys(err, errno, "exec init %s", cfg->init_argv[0]);
}

static _Noreturn void child_main(struct child_args *a)
{
    struct gerr err;
    gerr_clear(&err);
    int sync = a->sync_fd;
    /* Die with the creating thread. In a new PID namespace getppid() is 0, so the
     * "did the parent already die" check is the "go" read below, which sees EOF
     * if it did. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
        _exit(126);
    confine_reset_signals();
    char go = 0;
    ssize_t n;
    do
        n = read(sync, &go, 1);
    while (n < 0 && errno == EINTR);
    if (n != 1 || go != 'g')
        _exit(126);
    int psync = park_fd(sync, "sync", &err);
    if (psync >= 0) {
        sync = psync;
        child_setup(a, &sync, &err);
    }
    struct child_report rep;
    memset(&rep, 0, sizeof rep);
    rep.code = err.code > 0 ? err.code : EIO;
    memcpy(rep.msg, err.msg, sizeof rep.msg);
    while (send(sync, &rep, sizeof rep, MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
    _exit(127);
}

/* ---- parent side -------------------------------------------------------------- */

static bool id_is_valid(const char *id)
{
    size_t len = id ? strlen(id) : 0;
    if (len == 0 || len >= sizeof(((struct sandbox *)0)->id))
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

static int validate(const struct sandbox_config *cfg, struct gerr *err)
{
    if (!id_is_valid(cfg->id))
        return gerr_set(err, EINVAL, "invalid container id \"%s\" (want 1-63 of [a-z0-9-])",
                        cfg->id ? cfg->id : "(null)");
    if (!cfg->rootfs || cfg->rootfs[0] != '/')
        return gerr_set(err, EINVAL, "rootfs \"%s\" must be an absolute path",
                        cfg->rootfs ? cfg->rootfs : "(null)");
    /* The overlay option string has no escaping for these. */
    if (strpbrk(cfg->rootfs, ",:\\"))
        return gerr_set(err, EINVAL, "rootfs %s: path must not contain ',', ':' or '\\'", cfg->rootfs);
    struct stat st;
    if (stat(cfg->rootfs, &st) < 0)
        return gerr_sys(err, errno, "rootfs %s", cfg->rootfs);
    if (!S_ISDIR(st.st_mode))
        return gerr_set(err, ENOTDIR, "rootfs %s is not a directory", cfg->rootfs);
    if (!cfg->state_root || cfg->state_root[0] != '/' || strpbrk(cfg->state_root, ",:\\"))
        return gerr_set(err, EINVAL, "state root \"%s\" must be an absolute path without ',', ':' or '\\'",
                        cfg->state_root ? cfg->state_root : "(null)");
    for (int i = 0; i < 2; i++) {
        const char *d = i ? cfg->work_dir : cfg->upper_dir;
        if (d && (d[0] != '/' || strpbrk(d, ",:\\")))
            return gerr_set(err, EINVAL, "%s \"%s\" must be an absolute path without ',', ':' or '\\'",
                            i ? "work_dir" : "upper_dir", d);
    }
    if (!cfg->cgroup_parent)
        return gerr_set(err, EINVAL, "cgroup parent is not set");
    if (cfg->init_fd < 0)
        return gerr_set(err, EBADF, "init_fd is not set");
    if (!cfg->init_argv || !cfg->init_argv[0])
        return gerr_set(err, EINVAL, "init_argv is empty");
    if (cfg->nbinds < 0 || cfg->nbinds > SANDBOX_MAX_BINDS)
        return gerr_set(err, EINVAL, "too many binds (%d, max %d)", cfg->nbinds, SANDBOX_MAX_BINDS);
    for (int i = 0; i < cfg->nbinds; i++) {
        const struct sandbox_bind *b = &cfg->binds[i];
        if (!b->host_path || b->host_path[0] != '/' || !b->container_path ||
            b->container_path[0] != '/' || !b->container_path[1])
            return gerr_set(err, EINVAL, "bind %s -> %s: both paths must be absolute (and not /)",
                            b->host_path ? b->host_path : "(null)",
                            b->container_path ? b->container_path : "(null)");
    }
    if (cfg->nvolumes < 0 || cfg->nvolumes > SANDBOX_MAX_VOLUMES)
        return gerr_set(err, EINVAL, "too many volumes (%d, max %d)", cfg->nvolumes, SANDBOX_MAX_VOLUMES);
    for (int i = 0; i < cfg->nvolumes; i++) {
        const struct sandbox_volume *v = &cfg->volumes[i];
        const char *hp[] = {v->lower, v->upper, v->work};
        for (size_t k = 0; k < ARRAY_LEN(hp); k++)
            if (!hp[k] || hp[k][0] != '/' || strpbrk(hp[k], ",:\\"))
                return gerr_set(err, EINVAL, "volume %d: host paths must be absolute without ',', ':' or '\\'", i);
        if (!v->container_path || v->container_path[0] != '/' || !v->container_path[1])
            return gerr_set(err, EINVAL, "volume %d: the container path must be absolute (and not /)", i);
    }
    if (cfg->ndevices < 0 || cfg->ndevices > SANDBOX_MAX_DEVICES)
        return gerr_set(err, EINVAL, "too many devices (%d, max %d)", cfg->ndevices,
                        SANDBOX_MAX_DEVICES);
    for (int i = 0; i < cfg->ndevices; i++) {
        const struct sandbox_device *d = &cfg->devices[i];
        if (!d->host_path || d->host_path[0] != '/' || !d->container_path ||
            strncmp(d->container_path, "/dev/", 5) || strstr(d->container_path, ".."))
            return gerr_set(err, EINVAL, "device %s -> %s: the host path must be absolute and the "
                            "container path under /dev/", d->host_path ? d->host_path : "(null)",
                            d->container_path ? d->container_path : "(null)");
    }
    if (cfg->open_files > (1u << 20))
        return gerr_set(err, EINVAL, "open_files %u is above the kernel's limit of 1048576", cfg->open_files);
    if (cfg->userns && cfg->userns->fd < 0)
        return gerr_set(err, EBADF, "user namespace fd is not set");
    if (cfg->workdir && cfg->workdir[0] != '/')
        return gerr_set(err, EINVAL, "workdir \"%s\" must be absolute", cfg->workdir);
    if (cfg->hostname && (!*cfg->hostname || strlen(cfg->hostname) > 64))
        return gerr_set(err, EINVAL, "hostname \"%s\" must be 1-64 characters", cfg->hostname);
    return 0;
}

static int fmt(char *out, size_t cap, struct gerr *err, const char *f, ...)
    __attribute__((format(printf, 4, 5)));

static int fmt(char *out, size_t cap, struct gerr *err, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(out, cap, f, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap)
        return gerr_set(err, ENAMETOOLONG, "path or option string too long (%s...)", out);
    return 0;
}

static void sandbox_cgroups(const struct sandbox *sb, struct cgroup_set *set)
{
    memset(set, 0, sizeof *set);
    set->v2 = sb->cgroup_v2;
    strcpy(set->dir[CGROUP_MEMORY], sb->cgroup_memory);
    strcpy(set->dir[CGROUP_CPU], sb->cgroup_cpu);
    strcpy(set->dir[CGROUP_CPUACCT], sb->cgroup_cpuacct);
    strcpy(set->dir[CGROUP_PIDS], sb->cgroup_pids);
    strcpy(set->dir[CGROUP_DEVICES], sb->cgroup_devices);
}

/* Rules for the standard nodes and the container's own ptys (devpts newinstance:
 * major 136, and /dev/ptmx 5:2); the host's device numbers are read once. */
static struct cgroup_device std_rules[2 + 8];
static size_t std_nrules;
static pthread_once_t std_rules_once = PTHREAD_ONCE_INIT;

static void std_rules_load(void)
{
    std_rules[std_nrules++] = (struct cgroup_device){'c', 136, -1};
    std_rules[std_nrules++] = (struct cgroup_device){'c', 5, 2};
    for (size_t i = 0; i < confine_std_ndevices && std_nrules < ARRAY_LEN(std_rules); i++) {
        struct stat st;
        if (stat(confine_std_devices[i], &st) == 0 && S_ISCHR(st.st_mode))
            std_rules[std_nrules++] = (struct cgroup_device){'c', (int32_t)major(st.st_rdev), (int32_t)minor(st.st_rdev)};
    }
}

/* The device cgroup allowlist: the standard rules and the configured devices. */
static int device_rules(const struct sandbox_config *cfg, struct cgroup_device *out, size_t *n,
                        struct gerr *err)
{
    pthread_once(&std_rules_once, std_rules_load);
    memcpy(out, std_rules, std_nrules * sizeof *out);
    size_t k = std_nrules;
    for (int i = 0; i < cfg->ndevices; i++) {
        struct stat st;
        if (stat(cfg->devices[i].host_path, &st) < 0)
            return gerr_sys(err, errno, "device %s", cfg->devices[i].host_path);
        if (!S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode))
            return gerr_set(err, EINVAL, "device %s is not a device node", cfg->devices[i].host_path);
        out[k++] = (struct cgroup_device){S_ISCHR(st.st_mode) ? 'c' : 'b', (int32_t)major(st.st_rdev),
                                          (int32_t)minor(st.st_rdev)};
    }
    *n = k;
    return 0;
}

/* The container's cgroups (sandbox_create and sandbox_forked_prepare): paths under
 * cfg->cgroup_parent, limits and device rules from cfg, their dirs into sb. */
static int make_cgroups(const struct sandbox_config *cfg, struct sandbox *sb, struct gerr *err)
{
    struct cgroup_set cgs;
    int r = cgroup_set_paths(&cgs, cfg->cgroup_parent, cfg->id, err);
    if (r < 0)
        return r;
    struct cgroup_device devs[CGROUP_MAX_DEVICES];
    size_t ndevs = 0;
    r = device_rules(cfg, devs, &ndevs, err);
    if (r < 0)
        return r;
    struct cgroup_limits lim = {
        .memory_bytes = cfg->memory_mib << 20,
        .cpu_request_millicores = cfg->cpu_millicores,
        .cpu_limit_millicores = cfg->cpu_limit_millicores,
        .pids_max = cfg->pids_max ? cfg->pids_max : 1024,
        .restrict_devices = true,
        .devices = devs,
        .ndevices = ndevs,
    };
    uint64_t t_cg = mono_ns();
    r = cgroup_set_create(&cgs, &lim, err);
    if (r < 0)
        return r;
    sb->cgroup_v2 = cgs.v2;
    strcpy(sb->cgroup_memory, cgs.dir[CGROUP_MEMORY]);
    strcpy(sb->cgroup_cpu, cgs.dir[CGROUP_CPU]);
    strcpy(sb->cgroup_cpuacct, cgs.dir[CGROUP_CPUACCT]);
    strcpy(sb->cgroup_pids, cgs.dir[CGROUP_PIDS]);
    strcpy(sb->cgroup_devices, cgs.dir[CGROUP_DEVICES]);
    sb->timing.cgroups_ns = mono_ns() - t_cg;
    return 0;
}

/* Waits for the child's verdict: EOF means it exec'd, a report carries its error. */
static int wait_child(struct sandbox *sb, int sync, uint64_t go_ns, uint64_t clone_call_ns, struct gerr *err)
{
    uint64_t deadline = mono_ms() + SANDBOX_SETUP_TIMEOUT_MS;
    for (;;) {
        uint64_t now = mono_ms();
        if (now >= deadline)
            return gerr_set(err, ETIMEDOUT, "container %s: setup did not finish in %d ms", sb->id,
                            SANDBOX_SETUP_TIMEOUT_MS);
        struct pollfd p = {.fd = sync, .events = POLLIN};
        int n = poll(&p, 1, (int)(deadline - now));
        if (n < 0 && errno != EINTR)
            return gerr_sys(err, errno, "poll container sync socket");
        if (n <= 0)
            continue;
        _Static_assert(sizeof(struct child_report) > sizeof(struct child_timing), "report sizes");
        struct child_report rep;
        ssize_t got = recv(sync, &rep, sizeof rep, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return gerr_sys(err, errno, "read container sync socket");
        }
        if (got == 0) {
            sb->ready_ns = mono_ns();
            return 0;
        }
        if ((size_t)got == sizeof(struct child_timing)) {
            const struct child_timing *t = (const struct child_timing *)&rep;
            if (t->code == 0 && t->start_ns >= go_ns && t->network_ns >= t->start_ns &&
                t->mounts_ns >= t->network_ns && t->userns_ns >= t->mounts_ns && t->security_ns >= t->userns_ns) {
                sb->timing.clone_ns = clone_call_ns + (t->start_ns - go_ns);
                sb->timing.network_ns += t->network_ns - t->start_ns;
                sb->timing.mounts_ns = t->mounts_ns - t->network_ns;
                sb->timing.userns_ns = t->userns_ns - t->mounts_ns;
                sb->timing.security_ns = t->security_ns - t->userns_ns;
                sb->timing.exec_ns = mono_ns() - t->security_ns;
            }
            continue;
        }
        if ((size_t)got != sizeof rep || rep.code <= 0)
            return gerr_set(err, EIO, "container %s: malformed setup report", sb->id);
        rep.msg[sizeof rep.msg - 1] = '\0';
        return gerr_set(err, rep.code, "container %s setup: %s", sb->id, rep.msg);
    }
}

int sandbox_create(const struct sandbox_config *cfg, struct sandbox *sb, struct gerr *err)
{
    memset(sb, 0, sizeof *sb);
    sb->pidfd = -1;
    int r = validate(cfg, err);
    if (r < 0)
        return r;
    strcpy(sb->id, cfg->id);
    r = fmt(sb->state_dir, sizeof sb->state_dir, err, "%s/%s", cfg->state_root, cfg->id);
    if (r < 0)
        return r;
    AUTO_FREE struct child_args *a = xcalloc(1, sizeof *a);
    a->cfg = cfg;
    a->state_dir = sb->state_dir;
    for (int i = 0; i < cfg->ndevices && i < SANDBOX_MAX_DEVICES; i++) {
        a->dev_host[i] = cfg->devices[i].host_path;
        a->dev_ctr[i] = cfg->devices[i].container_path;
    }
    a->hostname = cfg->hostname ? cfg->hostname : cfg->id;
    /* disk_mib caps the writable layer and, separately, /tmp. */
    unsigned long long disk = cfg->disk_mib ? cfg->disk_mib : 512;
    if ((cfg->upper_dir && !cfg->work_dir) || (!cfg->upper_dir && cfg->work_dir))
        return gerr_set(err, EINVAL, "container %s: upper_dir and work_dir go together", cfg->id);
    if ((r = fmt(a->upper, sizeof a->upper, err, "%s", cfg->upper_dir ? cfg->upper_dir : "")) < 0 ||
        (r = fmt(a->work, sizeof a->work, err, "%s", cfg->work_dir ? cfg->work_dir : "")) < 0 ||
        (!cfg->upper_dir && ((r = fmt(a->upper, sizeof a->upper, err, "%s/upper", sb->state_dir)) < 0 ||
                             (r = fmt(a->work, sizeof a->work, err, "%s/work", sb->state_dir)) < 0)) ||
        (r = fmt(a->merged, sizeof a->merged, err, "%s/merged", sb->state_dir)) < 0 ||
        (r = fmt(a->lower, sizeof a->lower, err, "%s/lower", sb->state_dir)) < 0 ||
        (r = fmt(a->overlay_opts, sizeof a->overlay_opts, err, "upperdir=%s,workdir=%s", a->upper,
                 a->work)) < 0 ||
        (r = fmt(a->disk_opts, sizeof a->disk_opts, err, "size=%llum,mode=0755", disk)) < 0)
        return r;
    /* tmpfs roots owned by container root, so it can manage /tmp, /dev and /dev/shm. */
    char owner[48] = "";
    if (cfg->userns)
        snprintf(owner, sizeof owner, ",uid=%u,gid=%u", cfg->userns->host_uid, cfg->userns->host_gid);
    if ((r = fmt(a->tmp_opts, sizeof a->tmp_opts, err, "size=%llum,mode=1777%s", disk, owner)) < 0 ||
        (r = fmt(a->dev_opts, sizeof a->dev_opts, err, "mode=755,size=64k,nr_inodes=256%s", owner)) < 0 ||
        (r = fmt(a->shm_opts, sizeof a->shm_opts, err, "mode=1777%s", owner)) < 0)
        return r;
    r = mkdir_p(cfg->state_root, 0700);
    if (r < 0)
        return gerr_sys(err, -r, "mkdir state root %s", cfg->state_root);
    /* An existing (empty, unmounted) state dir is the leftover of a crash: reuse it. */
    if (mkdir(sb->state_dir, 0700) < 0 && errno != EEXIST)
        return gerr_sys(err, errno, "mkdir %s", sb->state_dir);
    r = make_cgroups(cfg, sb, err);
    if (r < 0) {
        rmdir(sb->state_dir);
        return r;
    }
    struct cgroup_set cgs;
    sandbox_cgroups(sb, &cgs);

    AUTO_FD int psync = -1;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        r = gerr_sys(err, errno, "socketpair");
        goto fail;
    }
    psync = sv[0];
    a->sync_fd = sv[1];

    sb->created_ns = mono_ns();
    /* Fork-style clone: the child gets a copy of the address space, so no stack. */
    long pid = syscall(SYS_clone, CLONE_NS_FLAGS | SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid == 0) {
        close(psync);
        child_main(a);
    }
    close(sv[1]);
    if (pid < 0) {
        r = gerr_sys(err, errno, "clone container %s", cfg->id);
        goto fail;
    }
    sb->pid = (pid_t)pid;
    sb->pidfd = (int)syscall(SYS_pidfd_open, sb->pid, 0);
    if (sb->pidfd < 0) {
        r = gerr_sys(err, errno, "pidfd_open %ld", pid);
        goto fail;
    }
    uint64_t t_clone = mono_ns() - sb->created_ns;
    uint64_t t_attach = mono_ns();
    r = cgroup_set_attach(&cgs, sb->pid, err);
    if (r < 0)
        goto fail;
    sb->timing.cgroups_ns += mono_ns() - t_attach;
    if (cfg->egress) {
        uint64_t t_net = mono_ns();
        r = netlink_veth_create(cfg->egress->host_ifname, cfg->egress->host_addr, cfg->egress->prefix,
                                sb->pid, err);
        if (r < 0)
            goto fail;
        snprintf(sb->egress_ifname, sizeof sb->egress_ifname, "%s", cfg->egress->host_ifname);
        sb->timing.network_ns = mono_ns() - t_net;
    }
    uint64_t go_ns = mono_ns();
    if (send(psync, "g", 1, MSG_NOSIGNAL) != 1) {
        r = gerr_sys(err, errno, "start container %s", cfg->id);
        goto fail;
    }
    /* Clone's cost: the syscall, plus the child's wake-up after "go" (the wait for
     * "go" itself is the cgroup and network time). */
    r = wait_child(sb, psync, go_ns, t_clone, err);
    if (r < 0)
        goto fail;
    return 0;

fail:
    sandbox_destroy(sb, NULL);
    return r;
}

int sandbox_forked_prepare(const struct sandbox_config *cfg, struct sandbox *sb, struct gerr *err)
{
    memset(sb, 0, sizeof *sb);
    sb->pidfd = -1;
    sb->forked = true;
    if (!id_is_valid(cfg->id))
        return gerr_set(err, EINVAL, "invalid container id \"%s\"", cfg->id ? cfg->id : "(null)");
    if (!cfg->cgroup_parent)
        return gerr_set(err, EINVAL, "cgroup parent is not set");
    strcpy(sb->id, cfg->id);
    int r = make_cgroups(cfg, sb, err);
    if (r < 0)
        return r;
    sb->created_ns = mono_ns();
    return 0;
}

int sandbox_forked_attach(struct sandbox *sb, pid_t pid, bool leader, struct gerr *err)
{
    struct cgroup_set cgs;
    sandbox_cgroups(sb, &cgs);
    uint64_t t = mono_ns();
    int r = cgroup_set_attach(&cgs, pid, err);
    if (r < 0)
        return r;
    sb->timing.cgroups_ns += mono_ns() - t;
    if (!leader)
        return 0;
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0)
        return gerr_sys(err, errno, "pidfd_open %d", (int)pid);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    sb->pid = pid;
    sb->pidfd = fd;
    return 0;
}

int sandbox_signal(struct sandbox *sb, int sig)
{
    if (sb->pidfd < 0 || sb->reaped)
        return -ESRCH;
    if (syscall(SYS_pidfd_send_signal, sb->pidfd, sig, NULL, 0) < 0)
        return -errno;
    return 0;
}

int sandbox_reap(struct sandbox *sb, struct gerr *err)
{
    if (sb->reaped)
        return 1;
    if (sb->pid <= 0)
        return gerr_set(err, ECHILD, "container %s has no process", sb->id);
    if (sb->forked) {
        struct pollfd p = {.fd = sb->pidfd, .events = POLLIN};
        if (poll(&p, 1, 0) <= 0)
            return 0;
        sb->reaped = true;
        return 1;
    }
    for (;;) {
        int status;
        pid_t r = waitpid(sb->pid, &status, WNOHANG);
        if (r == 0)
            return 0;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return gerr_sys(err, errno, "wait for container %s (pid %d)", sb->id, (int)sb->pid);
        }
        sb->exit_status = status;
        sb->reaped = true;
        return 1;
    }
}

int sandbox_oom_kills(const struct sandbox *sb, uint64_t *out)
{
    if (!sb->cgroup_memory[0])
        return -ENOENT;
    return cgroup_read_oom_kills(sb->cgroup_memory, sb->cgroup_v2, out);
}

int sandbox_usage(const struct sandbox *sb, uint64_t *memory_bytes, uint64_t *cpu_ns)
{
    if (!sb->cgroup_memory[0])
        return -ENOENT;
    int r = cgroup_read_memory(sb->cgroup_memory, sb->cgroup_v2, memory_bytes);
    if (r < 0)
        return r;
    return cgroup_read_cpu(sb->cgroup_cpuacct[0] ? sb->cgroup_cpuacct : sb->cgroup_cpu,
                           sb->cgroup_v2, cpu_ns);
}

int sandbox_memory_peak(const struct sandbox *sb, uint64_t *bytes)
{
    if (!sb->cgroup_memory[0])
        return -ENOENT;
    return cgroup_read_memory_peak(sb->cgroup_memory, sb->cgroup_v2, bytes);
}

int sandbox_destroy(struct sandbox *sb, struct gerr *err)
{
    int first = 0;
    if (sb->pid > 0 && !sb->reaped && sb->forked) {
        /* Not our child: kill it; the cgroup sweep below waits for its processes. */
        if (sb->pidfd >= 0)
            syscall(SYS_pidfd_send_signal, sb->pidfd, SIGKILL, NULL, 0);
        sb->reaped = true;
    }
    if (sb->pid > 0 && !sb->reaped) {
        /* SIGKILL on PID 1 tears down the whole PID namespace; the blocking wait is
         * short because the kernel reaps the namespace before PID 1 is reapable. */
        if (sb->pidfd >= 0)
            syscall(SYS_pidfd_send_signal, sb->pidfd, SIGKILL, NULL, 0);
        else
            kill(sb->pid, SIGKILL);
        int status;
        pid_t w;
        while ((w = waitpid(sb->pid, &status, 0)) < 0 && errno == EINTR) {
        }
        if (w == sb->pid)
            sb->exit_status = status;
        sb->reaped = true;
    }
    if (sb->pidfd >= 0) {
        close(sb->pidfd);
        sb->pidfd = -1;
    }
    if (sb->cgroup_memory[0]) {
        struct cgroup_set set;
        sandbox_cgroups(sb, &set);
        int r = cgroup_set_destroy(&set, err);
        if (r < 0) {
            first = r;
        } else {
            sb->cgroup_memory[0] = sb->cgroup_cpu[0] = sb->cgroup_cpuacct[0] = sb->cgroup_pids[0] = '\0';
            sb->cgroup_devices[0] = '\0';
        }
    }
    if (sb->egress_ifname[0]) {
        /* Normally gone already with the network namespace. */
        int r = netlink_link_delete(sb->egress_ifname, err);
        if (r < 0 && first == 0)
            first = r;
        sb->egress_ifname[0] = '\0';
    }
    if (sb->state_dir[0]) {
        /* The tmpfs and overlay lived in the container's mount namespace; here the
         * state dir is a plain (normally empty) directory. */
        int r = rm_rf(sb->state_dir);
        if (r < 0) {
            if (first == 0)
                first = gerr_sys(err, -r, "remove %s", sb->state_dir);
        } else {
            sb->state_dir[0] = '\0';
        }
    }
    return first;
}

/* Mount points strictly below root, deepest first. */
static int stale_unmount(const char *root, struct gerr *err)
{
    AUTO_FREE char *data = NULL;
    int r = file_read_all("/proc/self/mountinfo", 16u << 20, &data, NULL);
    if (r < 0)
        return gerr_sys(err, -r, "read /proc/self/mountinfo");
    size_t rootlen = strlen(root);
    char **found = NULL;
    size_t n = 0;
    char *save = NULL;
    for (char *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *s2 = NULL, *mp = NULL;
        strtok_r(line, " ", &s2);
        for (int i = 1; i <= 4; i++)
            mp = strtok_r(NULL, " ", &s2);
        if (!mp)
            continue;
        /* Undo mountinfo's octal escapes (\040 = space) in place. */
        char *w = mp;
        for (char *p = mp; *p; p++) {
            if (p[0] == '\\' && p[1] >= '0' && p[1] <= '7' && p[2] >= '0' && p[2] <= '7' &&
                p[3] >= '0' && p[3] <= '7') {
                *w++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
                p += 3;
            } else {
                *w++ = *p;
            }
        }
        *w = '\0';
        if (strncmp(mp, root, rootlen) || mp[rootlen] != '/')
            continue;
        found = xreallocarray(found, n + 1, sizeof *found);
        found[n++] = mp;
    }
    /* Deepest first: a longer path can only be nested in a shorter one. */
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j < n; j++) {
            if (strlen(found[j]) > strlen(found[i])) {
                char *t = found[i];
                found[i] = found[j];
                found[j] = t;
            }
        }
    }
    int first = 0;
    for (size_t i = 0; i < n; i++) {
        if (umount2(found[i], MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT && first == 0)
            first = gerr_sys(err, errno, "unmount %s", found[i]);
    }
    free(found);
    return first;
}

int sandbox_cleanup_stale(const char *cgroup_parent, const char *state_root, struct gerr *err)
{
    int first = 0;
    struct cgroup_set set;
    int r = cgroup_set_paths(&set, cgroup_parent, NULL, err);
    if (r < 0)
        return r;
    for (int c = 0; c < CGROUP_NCTRL; c++) {
        if (!cgroup_set_dir_first(&set, c))
            continue;
        struct gerr e;
        r = cgroup_remove_tree(set.dir[c], set.v2, false, &e);
        if (r < 0 && first == 0) {
            first = r;
            if (err)
                *err = e;
        }
    }
    char root[PATH_MAX];
    if (!realpath(state_root, root)) {
        if (errno == ENOENT)
            return first;
        return first ? first : gerr_sys(err, errno, "resolve state root %s", state_root);
    }
    struct gerr e;
    r = stale_unmount(root, &e);
    if (r < 0 && first == 0) {
        first = r;
        if (err)
            *err = e;
    }
    DIR *d = opendir(root);
    if (!d)
        return first ? first : gerr_sys(err, errno, "open state root %s", root);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", root, de->d_name) >= (int)sizeof path)
            continue;
        r = rm_rf(path);
        if (r < 0 && first == 0)
            first = gerr_sys(err, -r, "remove %s", path);
    }
    closedir(d);
    return first;
}

int sandbox_cgroup_version(void)
{
    return cgroup_version();
}

/* ---- volumes of a running container ---------------------------------------------- */

/* Runs fn(arg) in a forked child and waits for it: 0, or the -errno the child
 * exited with (its message, when it failed, is lost: the caller words one). The
 * child only makes syscalls and formats on its stack. */
static int run_child(int (*fn)(void *), void *arg)
{
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        int r = fn(arg);
        _exit(r < 0 ? -r : 0);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -errno;
    if (WIFEXITED(status))
        return -WEXITSTATUS(status);
    return -ECHILD;
}

/* An O_PATH fd of the directory at absolute container path `path`, resolved in the
 * current root without following any symlink (the container controls its tree). */
static int open_ctr_dir(const char *path)
{
    AUTO_FD int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return -errno;
    struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
    long fd = syscall(SYS_openat2, root, path + 1, &how, sizeof how);
    return fd < 0 ? -errno : (int)fd;
}

struct vol_op {
    int pidfd;                  /* the container's PID 1: its mount namespace */
    const char *path;
    const struct sandbox_volume *v;
    const struct sandbox_userns *uns;
    const char *scratch;        /* a host directory to mount a private tmpfs on */
};

static int detach_child(void *arg)
{
    const struct vol_op *op = arg;
    if (setns(op->pidfd, CLONE_NEWNS) < 0)
        return -errno;
    /* The path must hold no symlink. The container's /proc is of its own PID
     * namespace, where this child has no pid (no /proc/self/fd to unmount through), so
     * the unmount goes by the path: a container racing it could at worst make us
     * unmount another mount of its own namespace, never one of the host's. */
    int t = open_ctr_dir(op->path);
    if (t < 0)
        return t;
    close(t); /* an fd in the mount would itself keep it busy */
    if (umount2(op->path, UMOUNT_NOFOLLOW) < 0)
        return -errno;
    return 0;
}

int sandbox_volume_detach(struct sandbox *sb, const char *path, struct gerr *err)
{
    if (!path || path[0] != '/' || !path[1])
        return gerr_set(err, EINVAL, "volume path \"%s\" must be absolute", path ? path : "(null)");
    struct vol_op op = {.pidfd = sb->pidfd, .path = path};
    int r = run_child(detach_child, &op);
    if (r == -EBUSY)
        return gerr_set(err, EBUSY, "%s is busy: a file in it is open or a process works in it", path);
    return r < 0 ? gerr_sys(err, -r, "unmount the volume at %s in container %s", path, sb->id) : 0;
}

/* Builds the overlay in a private copy of our mount namespace (where host paths
 * resolve), takes a detached copy of it, enters the container's mount namespace and
 * moves it into place. */
static int attach_child(void *arg)
{
    const struct vol_op *op = arg;
    struct gerr err;
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return -errno;
    if (mount("tmpfs", op->scratch, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0700") < 0)
        return -errno;
    char lower[PATH_MAX], merged[PATH_MAX];
    snprintf(lower, sizeof lower, "%s/l", op->scratch);
    snprintf(merged, sizeof merged, "%s/m", op->scratch);
    if (mkdir(merged, 0755) < 0)
        return -errno;
    AUTO_FD int uns = -1;
    if (op->uns && (uns = dup(op->uns->fd)) < 0)
        return -errno;
    int r = volume_mount(op->v, uns, op->uns, lower, merged, &err);
    if (r < 0)
        return r;
    AUTO_FD int tree = (int)syscall(SYS_open_tree, AT_FDCWD, merged, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (tree < 0)
        return -errno;
    if (setns(op->pidfd, CLONE_NEWNS) < 0)
        return -errno;
    AUTO_FD int t = open_ctr_dir(op->v->container_path);
    if (t < 0)
        return t;
    if (syscall(SYS_move_mount, tree, "", t, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        return -errno;
    return 0;
}

int sandbox_volume_attach(struct sandbox *sb, const struct sandbox_userns *userns, const struct sandbox_volume *v,
                          struct gerr *err)
{
    if (!v->container_path || v->container_path[0] != '/' || !v->container_path[1])
        return gerr_set(err, EINVAL, "volume path must be absolute");
    const char *hp[] = {v->lower, v->upper, v->work};
    for (size_t k = 0; k < ARRAY_LEN(hp); k++)
        if (!hp[k] || hp[k][0] != '/' || strpbrk(hp[k], ",:\\"))
            return gerr_set(err, EINVAL, "volume at %s: host paths must be absolute without ',', ':' or '\\'",
                            v->container_path);
    struct vol_op op = {.pidfd = sb->pidfd, .v = v, .uns = userns, .scratch = sb->state_dir};
    int r = run_child(attach_child, &op);
    return r < 0 ? gerr_sys(err, -r, "mount the volume at %s in container %s (lower %s)", v->container_path,
                            sb->id, v->lower)
                 : 0;
}
