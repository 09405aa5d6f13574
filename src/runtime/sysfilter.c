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

/* The default deny list; the reasons are repeated in docs/SECURITY.md. */
struct sysfilter_rule {
    const char *name;
    const char *reason;
};

static const struct sysfilter_rule default_rules[] = {
    {"mount", "mounting filesystems could hide or replace the sandbox's own mounts"},
    {"umount2", "unmounting could uncover masked paths"},
    {"pivot_root", "changing the root could escape the container's root"},
    {"chroot", "a chroot is a classic first step out of a root directory"},
    {"fsopen", "new mount API: same as mount"},
    {"fsconfig", "new mount API: same as mount"},
    {"fsmount", "new mount API: same as mount"},
    {"fspick", "new mount API: reconfigures existing mounts"},
    {"move_mount", "new mount API: moves mounts"},
    {"open_tree", "new mount API: clones mount trees"},
    {"mount_setattr", "new mount API: changes mount flags (could drop read-only)"},
    {"kexec_load", "replaces the running kernel"},
    {"kexec_file_load", "replaces the running kernel"},
    {"reboot", "restarts or halts the host"},
    {"init_module", "loads kernel code"},
    {"finit_module", "loads kernel code"},
    {"delete_module", "unloads kernel code"},
    {"bpf", "eBPF programs and maps are a large kernel attack surface and can read kernel memory"},
    {"perf_event_open", "performance counters leak information about other tenants and the kernel"},
    {"keyctl", "the kernel keyring is not namespaced: keys of other containers or the host"},
    {"add_key", "the kernel keyring is not namespaced"},
    {"request_key", "the kernel keyring is not namespaced"},
    {"userfaultfd", "lets a process stall the kernel at a chosen point, the basis of many exploits"},
    {"open_by_handle_at", "file handles open files outside the container's mounts"},
    {"name_to_handle_at", "companion of open_by_handle_at"},
    {"swapon", "changes the host's swap"},
    {"swapoff", "changes the host's swap"},
    {"settimeofday", "the clock is shared with the host"},
    {"clock_settime", "the clock is shared with the host"},
    {"clock_adjtime", "the clock is shared with the host"},
    {"adjtimex", "the clock is shared with the host"},
    {"unshare", "new namespaces (of any kind) are not part of the profile"},
    {"setns", "entering other namespaces"},
    {"acct", "process accounting is host-wide"},
    {"quotactl", "filesystem quotas are host-wide"},
    {"quotactl_fd", "filesystem quotas are host-wide"},
    {"syslog", "the kernel log belongs to the host"},
    {"lookup_dcookie", "kernel profiling interface"},
    {"iopl", "raw I/O port access"},
    {"ioperm", "raw I/O port access"},
    {"uselib", "obsolete loader interface with a history of bugs"},
    {"vhangup", "hangs up the controlling terminal of others"},
    {"nfsservctl", "kernel NFS server control"},
    {"_sysctl", "obsolete sysctl interface"},
    {"sethostname", "the UTS name is set by the sandbox"},
    {"setdomainname", "the UTS name is set by the sandbox"},
    {"io_uring_setup", "io_uring runs operations seccomp cannot see"},
    {"io_uring_enter", "io_uring runs operations seccomp cannot see"},
    {"io_uring_register", "io_uring runs operations seccomp cannot see"},
    {"fanotify_init", "filesystem-wide event monitoring"},
    {"process_madvise", "acts on another process's memory"},
    {"kcmp", "compares kernel objects of other processes (information leak)"},
    {"pciconfig_read", "raw PCI configuration space"},
    {"pciconfig_write", "raw PCI configuration space"},
};

static void ctx_release(scmp_filter_ctx *ctx)
{
    if (*ctx)
        seccomp_release(*ctx);
}

/* What a snapshot template may do that a container may not: make the namespaces of
 * the containers forked from it and set up their mounts (docs/SECURITY.md). unshare and
 * setns stay limited to some kinds of namespace (add_template_ns_rules). */
static const char *const template_allowed[] = {"mount", "umount2", "pivot_root", "setns", "unshare",
                                               "sethostname", "mount_setattr"};

static bool template_allows(const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(template_allowed); i++)
        if (!strcmp(template_allowed[i], name))
            return true;
    return false;
}

/* int arguments: the kernel reads only the low 32 bits of the register, so the filter
 * masks the rest (a plain or SCMP_CMP32 comparison would let a call with garbage in the
 * upper half through). */
#define INT_BITS 0xffffffffULL

/* Socket families and protocols no container may open, whatever its namespaces
 * (docs/SECURITY.md). */
static int add_socket_rules(scmp_filter_ctx ctx, struct gerr *err)
{
    /* vsock is not network-namespaced: it reaches the hypervisor side of the host. */
    int r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socket), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, INT_BITS, AF_VSOCK));
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socketpair), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, INT_BITS, AF_VSOCK));
    /* nf_tables and the other netfilter subsystems: a large attack surface, reachable
     * with NET_ADMIN in a network namespace of one's own (a template can make one). */
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socket), 2,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, INT_BITS, AF_NETLINK),
                             SCMP_A2(SCMP_CMP_MASKED_EQ, INT_BITS, NETLINK_NETFILTER));
    return r < 0 ? gerr_sys(err, -r, "seccomp: socket rules") : 0;
}

/* A template may unshare and setns (it makes its forked containers' namespaces), but
 * only the kinds its fork machinery uses: PID (gust-init --template, the runners' fork
 * loop), mount, network, IPC, UTS and cgroup (gust-init snap_child, the forked runner's
 * setns into PID 1's namespaces). Never a user namespace (clone with CLONE_NEWUSER is
 * already denied with every other namespace flag) nor a time namespace, and no setns
 * with nstype 0 ("any kind", which would include a user namespace). */
static int add_template_ns_rules(scmp_filter_ctx ctx, struct gerr *err)
{
    static const uint32_t denied[] = {CLONE_NEWUSER, CLONE_NEWTIME};
    int r = 0;
    for (size_t i = 0; r == 0 && i < ARRAY_LEN(denied); i++) {
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(unshare), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, denied[i], denied[i]));
        if (r == 0)
            r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(setns), 1,
                                 SCMP_A1(SCMP_CMP_MASKED_EQ, denied[i], denied[i]));
    }
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(setns), 1,
                             SCMP_A1(SCMP_CMP_MASKED_EQ, INT_BITS, 0));
    return r < 0 ? gerr_sys(err, -r, "seccomp: template namespace rules") : 0;
}

static int build(const char *const *extra_deny, size_t nextra, bool template, struct sock_fprog *prog,
                 struct gerr *err)
{
    memset(prog, 0, sizeof *prog);
    if (nextra > SYSFILTER_MAX_EXTRA)
        return gerr_set(err, EINVAL, "at most %d extra system calls to deny", SYSFILTER_MAX_EXTRA);
    __attribute__((cleanup(ctx_release))) scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx)
        return gerr_set(err, ENOMEM, "seccomp_init failed");
    /* Other ABIs (i386 via int 0x80, x32) would bypass rules written for the native
     * one: they kill. */
    int r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    if (r < 0)
        return gerr_sys(err, -r, "seccomp: set bad-arch action");
    /* A binary tree over system call numbers instead of a linear chain: every allowed
     * call would otherwise walk all the deny rules. */
    r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    if (r < 0)
        return gerr_sys(err, -r, "seccomp: binary-tree optimization");
    for (size_t i = 0; i < ARRAY_LEN(default_rules); i++) {
        if (template && template_allows(default_rules[i].name))
            continue;
        int nr = seccomp_syscall_resolve_name(default_rules[i].name);
        if (nr < 0)
            continue; /* not on this architecture */
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
        if (r < 0)
            return gerr_sys(err, -r, "seccomp: deny %s", default_rules[i].name);
    }
    /* clone: a thread or a process, never a namespace. One rule per flag bit, since
     * a rule matches (arg & mask) == value. */
    static const uint64_t ns_flags[] = {CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER,
                                        CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP, CLONE_NEWTIME};
    for (size_t i = 0; i < ARRAY_LEN(ns_flags); i++) {
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]));
        if (r < 0)
            return gerr_sys(err, -r, "seccomp: clone namespace rule");
    }
    r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    if (r < 0)
        return gerr_sys(err, -r, "seccomp: clone3 rule");
    r = add_socket_rules(ctx, err);
    if (r < 0)
        return r;
    if (template && (r = add_template_ns_rules(ctx, err)) < 0)
        return r;
    for (size_t i = 0; i < nextra; i++) {
        const char *name = extra_deny[i];
        int nr = name ? seccomp_syscall_resolve_name(name) : -1;
        if (nr < 0)
            return gerr_set(err, EINVAL, "unknown system call \"%s\"", name ? name : "(null)");
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
        /* -EEXIST: already denied by the default profile. */
        if (r < 0 && r != -EEXIST)
            return gerr_sys(err, -r, "seccomp: deny %s", name);
    }
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
