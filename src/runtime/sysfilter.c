/* Container seccomp profile (see runtime/sysfilter.h). */
#include "runtime/sysfilter.h"

#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/util.h"
#include "base/xalloc.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

/* The allow-list: what a container may call without conditions. It starts from what
 * Docker's default profile allows any container (without added capabilities) and
 * leaves out what Gust refuses on top (docs/SECURITY.md has the table): adjtimex and
 * clock_adjtime (the clock is the host's), io_uring (operations seccomp cannot see),
 * name_to_handle_at (companion of open_by_handle_at). Names are those of x86-64 and
 * aarch64; one the architecture (or this libseccomp) does not know is skipped, so it
 * stays unknown and answers ENOSYS. clone, socket, socketpair and personality are
 * allowed only with some arguments (add_conditional_rules). */
static const char *const allowed[] = {
    /* reading and writing files and descriptors */
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2",
    "open", "openat", "openat2", "creat", "close", "close_range", "lseek", "dup", "dup2", "dup3", "fcntl",
    "flock", "fsync", "fdatasync", "sync", "syncfs", "sync_file_range", "fallocate", "ftruncate", "truncate",
    "fadvise64", "readahead", "sendfile", "splice", "tee", "vmsplice", "copy_file_range", "pipe", "pipe2",
    "ioctl",
    /* file metadata and directories */
    "stat", "lstat", "fstat", "newfstatat", "statx", "statfs", "fstatfs", "access", "faccessat", "faccessat2",
    "readlink", "readlinkat", "getdents", "getdents64", "getcwd", "chdir", "fchdir", "mkdir", "mkdirat",
    "mknod", "mknodat", "rmdir", "unlink", "unlinkat", "rename", "renameat", "renameat2", "link", "linkat",
    "symlink", "symlinkat", "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat",
    "umask", "utime", "utimes", "utimensat", "futimesat", "getxattr", "lgetxattr", "fgetxattr", "setxattr",
    "lsetxattr", "fsetxattr", "listxattr", "llistxattr", "flistxattr", "removexattr", "lremovexattr",
    "fremovexattr", "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch", "fanotify_mark",
    /* memory */
    "brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "mincore", "msync", "mlock", "mlock2", "munlock",
    "mlockall", "munlockall", "memfd_create", "memfd_secret", "membarrier", "remap_file_pages", "pkey_alloc",
    "pkey_free", "pkey_mprotect", "map_shadow_stack", "cachestat",
    /* processes, threads and their own state */
    "fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid", "set_tid_address",
    "set_robust_list", "get_robust_list", "futex", "futex_waitv", "futex_wake", "futex_wait", "futex_requeue",
    "rseq", "arch_prctl", "set_thread_area", "get_thread_area", "modify_ldt", "prctl", "capget", "capset",
    "seccomp", "getpid", "getppid", "gettid", "getpgid", "setpgid", "getpgrp", "getsid", "setsid",
    "pidfd_open", "pidfd_send_signal", "process_mrelease", "kill", "tkill", "tgkill",
    /* inside the container's PID namespace: debuggers (docs/SECURITY.md) */
    "ptrace", "process_vm_readv", "process_vm_writev",
    /* user and group ids (within the container's user namespace) */
    "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups", "setuid", "setgid",
    "setreuid", "setregid", "setresuid", "setresgid", "setfsuid", "setfsgid", "setgroups",
    /* signals */
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigsuspend", "rt_sigpending", "rt_sigtimedwait",
    "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack", "signalfd", "signalfd4", "pause", "restart_syscall",
    "alarm",
    /* clocks and timers (reading; setting the clock is the host's) */
    "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep", "gettimeofday", "time", "times",
    "getitimer", "setitimer", "timer_create", "timer_delete", "timer_gettime", "timer_settime",
    "timer_getoverrun", "timerfd_create", "timerfd_gettime", "timerfd_settime",
    /* scheduling and priorities (within the container's cgroup limits) */
    "sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getattr", "sched_setattr",
    "sched_getparam", "sched_setparam", "sched_getscheduler", "sched_setscheduler", "sched_get_priority_max",
    "sched_get_priority_min", "sched_rr_get_interval", "getpriority", "setpriority", "ioprio_get",
    "ioprio_set", "getcpu",
    /* limits and information */
    "getrlimit", "setrlimit", "prlimit64", "getrusage", "sysinfo", "uname", "getrandom",
    /* waiting for events */
    "poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait",
    "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2",
    /* asynchronous I/O (the old interface: its operations are ordinary system calls) */
    "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents",
    /* sockets (socket and socketpair themselves are conditional) */
    "bind", "connect", "listen", "accept", "accept4", "getsockname", "getpeername", "getsockopt",
    "setsockopt", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "shutdown",
    /* System V and POSIX IPC (namespaced by the container's IPC namespace) */
    "msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop", "semtimedop", "semctl", "shmget", "shmat",
    "shmdt", "shmctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr",
    /* a process restricting itself */
    "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
};

/* What a snapshot template may do beyond a container: make the namespaces and mounts
 * of the containers forked from it (docs/SECURITY.md). unshare and setns are
 * conditional (add_template_ns_rules). */
static const char *const template_allowed[] = {"mount", "umount2", "pivot_root", "sethostname", "mount_setattr"};

/* System call numbers below this that libseccomp cannot name answer ENOSYS; at and
 * above it, EPERM. Both x86-64 and aarch64 number their newest calls in the 460s, and
 * the kernel adds a handful a year. */
#define NR_SCAN 512
/* Socket families the rules cover: the kernel has 46 (AF_MAX); the rest of the range
 * leaves room for new ones without a rule for every int. */
#define FAMILIES 64
/* Netlink protocols: the kernel's MAX_LINKS. */
#define NETLINK_PROTOCOLS 32

/* int arguments: the kernel reads only the low 32 bits of the register, so every rule
 * masks the rest (a plain or SCMP_CMP32 comparison would treat a call with garbage in
 * the upper half differently from the kernel). */
#define INT_BITS 0xffffffffULL

static void ctx_release(scmp_filter_ctx *ctx)
{
    if (*ctx)
        seccomp_release(*ctx);
}

/* A profile being built: the libseccomp context, which numbers have rules, and which
 * the function's spec denies (those get no rule: the default action, EPERM). */
struct profile {
    scmp_filter_ctx ctx;
    bool ruled[NR_SCAN];
    bool spec_denied[NR_SCAN];
};

/* One rule for nr, unless the spec denies nr outright. */
static int rule(struct profile *p, uint32_t action, int nr, unsigned ncmp, const struct scmp_arg_cmp *cmp,
                struct gerr *err)
{
    if (nr < 0 || nr >= NR_SCAN)
        return gerr_set(err, ERANGE, "seccomp: system call number %d out of range", nr);
    if (p->spec_denied[nr])
        return 0;
    int r = seccomp_rule_add_array(p->ctx, action, nr, ncmp, cmp);
    if (r < 0)
        return gerr_sys(err, -r, "seccomp: rule for system call %d", nr);
    p->ruled[nr] = true;
    return 0;
}

static int allow_names(struct profile *p, const char *const *names, size_t n, struct gerr *err)
{
    for (size_t i = 0; i < n; i++) {
        int nr = seccomp_syscall_resolve_name(names[i]);
        if (nr < 0)
            continue; /* not on this architecture, or newer than this libseccomp */
        int r = rule(p, SCMP_ACT_ALLOW, nr, 0, NULL, err);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Rules with `action` for every value v of argument `arg` (as an int) in [lo, hi),
 * each ANDed with `also` when given: one masked comparison per aligned power-of-two
 * block of the range, so a range costs a few rules, not one per value. */
static int rule_range(struct profile *p, uint32_t action, int nr, unsigned arg, uint32_t lo, uint32_t hi,
                      const struct scmp_arg_cmp *also, struct gerr *err)
{
    while (lo < hi) {
        uint32_t size = lo ? lo & -lo : 1u << 31;
        while (size > hi - lo)
            size >>= 1;
        struct scmp_arg_cmp cmp[2] = {
            {.arg = arg, .op = SCMP_CMP_MASKED_EQ, .datum_a = INT_BITS & ~(uint64_t)(size - 1), .datum_b = lo},
        };
        unsigned n = 1;
        if (also)
            cmp[n++] = *also;
        int r = rule(p, action, nr, n, cmp, err);
        if (r < 0)
            return r;
        lo += size;
    }
    return 0;
}

/* clone: a thread or a process, never a namespace (a namespace flag: EPERM, the
 * default); clone3: ENOSYS, since its flags are in memory a filter cannot read (libc
 * falls back to clone). */
static int add_clone_rules(struct profile *p, struct gerr *err)
{
    uint64_t ns = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET |
                  CLONE_NEWCGROUP | CLONE_NEWTIME;
    struct scmp_arg_cmp none = SCMP_A0(SCMP_CMP_MASKED_EQ, ns, 0);
    int r = rule(p, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1, &none, err);
    if (r == 0)
        r = rule(p, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0, NULL, err);
    return r;
}

/* socket and socketpair: every family but vsock (not network-namespaced: it reaches
 * the hypervisor side of the host), and for netlink every protocol but netfilter
 * (nf_tables, a large attack surface reachable with NET_ADMIN in a network namespace
 * of one's own, which a template can make); those two answer EPERM (docs/SECURITY.md).
 * Families from FAMILIES on, which the kernel does not have, answer EPERM too. */
static int add_socket_rules(struct profile *p, struct gerr *err)
{
    int sock = SCMP_SYS(socket), pair = SCMP_SYS(socketpair);
    struct scmp_arg_cmp netlink = SCMP_A0(SCMP_CMP_MASKED_EQ, INT_BITS, AF_NETLINK);
    int r = rule_range(p, SCMP_ACT_ALLOW, sock, 0, 0, AF_NETLINK, NULL, err);
    if (r == 0)
        r = rule_range(p, SCMP_ACT_ALLOW, sock, 0, AF_NETLINK + 1, AF_VSOCK, NULL, err);
    if (r == 0)
        r = rule_range(p, SCMP_ACT_ALLOW, sock, 0, AF_VSOCK + 1, FAMILIES, NULL, err);
    if (r == 0)
        r = rule_range(p, SCMP_ACT_ALLOW, sock, 2, 0, NETLINK_NETFILTER, &netlink, err);
    if (r == 0)
        r = rule_range(p, SCMP_ACT_ALLOW, sock, 2, NETLINK_NETFILTER + 1, NETLINK_PROTOCOLS, &netlink, err);
    if (r == 0)
        r = rule_range(p, SCMP_ACT_ALLOW, pair, 0, 0, AF_VSOCK, NULL, err);
    if (r == 0)
        r = rule_range(p, SCMP_ACT_ALLOW, pair, 0, AF_VSOCK + 1, FAMILIES, NULL, err);
    return r;
}

/* personality: only the execution domains Docker's profile allows (Linux, 32-bit
 * Linux, the 2.6-era uname, and the query 0xffffffff); flags like ADDR_NO_RANDOMIZE
 * would switch off the container's address-space randomisation. */
static int add_personality_rules(struct profile *p, struct gerr *err)
{
    static const uint64_t ok[] = {0x0, 0x8, 0x20000, 0x20008, 0xffffffff};
    for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
        struct scmp_arg_cmp c = SCMP_A0(SCMP_CMP_MASKED_EQ, INT_BITS, ok[i]);
        int r = rule(p, SCMP_ACT_ALLOW, SCMP_SYS(personality), 1, &c, err);
        if (r < 0)
            return r;
    }
    return 0;
}

/* A template may unshare and setns (it makes its forked containers' namespaces), but
 * only the kinds its fork machinery uses: PID (gust-init --template, the runners' fork
 * loop), mount, network, IPC, UTS and cgroup (gust-init snap_child, the forked runner's
 * setns into PID 1's namespaces). Never a user namespace (clone with CLONE_NEWUSER is
 * denied with every other namespace flag) nor a time namespace, and no setns with
 * nstype 0 ("any kind", which would include a user namespace): those answer EPERM. */
static int add_template_ns_rules(struct profile *p, struct gerr *err)
{
    static const uint64_t kinds[] = {CLONE_NEWPID, CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS,
                                     CLONE_NEWCGROUP};
    uint64_t ok = 0;
    for (size_t i = 0; i < ARRAY_LEN(kinds); i++)
        ok |= kinds[i];
    struct scmp_arg_cmp unshare_ok = SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER | CLONE_NEWTIME, 0);
    int r = rule(p, SCMP_ACT_ALLOW, SCMP_SYS(unshare), 1, &unshare_ok, err);
    /* setns: at least one allowed kind and nothing else, as one rule per kind. */
    for (size_t i = 0; r == 0 && i < ARRAY_LEN(kinds); i++) {
        struct scmp_arg_cmp c = SCMP_A1(SCMP_CMP_MASKED_EQ, (INT_BITS & ~ok) | kinds[i], kinds[i]);
        r = rule(p, SCMP_ACT_ALLOW, SCMP_SYS(setns), 1, &c, err);
    }
    return r;
}

/* Numbers below NR_SCAN without a rule that libseccomp cannot name (system calls
 * newer than it, gaps in the table): ENOSYS, as from a kernel that lacks them. Known
 * calls without a rule keep the default, EPERM. */
static int unknown_enosys(struct profile *p, struct gerr *err)
{
    for (int nr = 0; nr < NR_SCAN; nr++) {
        if (p->ruled[nr] || p->spec_denied[nr])
            continue;
        char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
        if (name) {
            free(name);
            continue;
        }
        int r = rule(p, SCMP_ACT_ERRNO(ENOSYS), nr, 0, NULL, err);
        if (r < 0)
            return r;
    }
    return 0;
}

static int build(const char *const *extra_deny, size_t nextra, bool template, struct sock_fprog *prog,
                 struct gerr *err)
{
    memset(prog, 0, sizeof *prog);
    if (nextra > SYSFILTER_MAX_EXTRA)
        return gerr_set(err, EINVAL, "at most %d extra system calls to deny", SYSFILTER_MAX_EXTRA);
    AUTO_FREE struct profile *p = xcalloc(1, sizeof *p);
    /* Off the list, or refused by an argument rule: EPERM, refused by policy as
     * Docker's profile answers. Numbers libseccomp cannot name get ENOSYS rules
     * (unknown_enosys): programs and libc fall back to an older call on ENOSYS, as on
     * an older kernel, where EPERM would make them fail. */
    __attribute__((cleanup(ctx_release))) scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
    if (!ctx)
        return gerr_set(err, ENOMEM, "seccomp_init failed");
    p->ctx = ctx;
    /* Other ABIs (i386 via int 0x80, x32) would bypass rules written for the native
     * one: they kill. */
    int r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    if (r < 0)
        return gerr_sys(err, -r, "seccomp: set bad-arch action");
    /* A binary tree over system call numbers instead of a linear chain of a few
     * hundred rules. */
    r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    if (r < 0)
        return gerr_sys(err, -r, "seccomp: binary-tree optimization");
    for (size_t i = 0; i < nextra; i++) {
        const char *name = extra_deny[i];
        int nr = name ? seccomp_syscall_resolve_name(name) : -1;
        if (nr < 0)
            return gerr_set(err, EINVAL, "unknown system call \"%s\"", name ? name : "(null)");
        if (nr >= NR_SCAN)
            return gerr_set(err, ERANGE, "seccomp: system call \"%s\" has number %d", name, nr);
        p->spec_denied[nr] = true;
    }
    r = allow_names(p, allowed, ARRAY_LEN(allowed), err);
    if (r == 0 && template)
        r = allow_names(p, template_allowed, ARRAY_LEN(template_allowed), err);
    if (r == 0)
        r = add_clone_rules(p, err);
    if (r == 0)
        r = add_socket_rules(p, err);
    if (r == 0)
        r = add_personality_rules(p, err);
    if (r == 0 && template)
        r = add_template_ns_rules(p, err);
    if (r == 0)
        r = unknown_enosys(p, err);
    if (r < 0)
        return r;
    AUTO_FD int mfd = memfd_create("gust-seccomp", MFD_CLOEXEC);
    if (mfd < 0)
        return gerr_sys(err, errno, "memfd_create");
    r = seccomp_export_bpf(ctx, mfd);
    if (r < 0)
        return gerr_sys(err, -r, "seccomp: export the filter");
    struct stat st;
    if (fstat(mfd, &st) < 0)
        return gerr_sys(err, errno, "fstat seccomp memfd");
    size_t len = (size_t)st.st_size;
    if (len == 0 || len % sizeof(struct sock_filter) || len / sizeof(struct sock_filter) > 0xffff)
        return gerr_set(err, EIO, "seccomp: exported filter has a bad size (%zu bytes)", len);
    struct sock_filter *insns = xmalloc(len);
    if (pread(mfd, insns, len, 0) != (ssize_t)len) {
        free(insns);
        return gerr_sys(err, errno, "read back the seccomp filter");
    }
    prog->filter = insns;
    prog->len = (unsigned short)(len / sizeof(struct sock_filter));
    return 0;
}

void sysfilter_free(struct sock_fprog *prog)
{
    free(prog->filter);
    prog->filter = NULL;
    prog->len = 0;
}

int sysfilter_build(const char *const *extra_deny, size_t nextra, struct sock_fprog *prog,
                    struct gerr *err)
{
    return build(extra_deny, nextra, false, prog, err);
}

int sysfilter_build_template(const char *const *extra_deny, size_t nextra, struct sock_fprog *prog,
                             struct gerr *err)
{
    return build(extra_deny, nextra, true, prog, err);
}
