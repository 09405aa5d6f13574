/* The seccomp-bpf profile of every container (docs/SECURITY.md lists it with reasons).
 *
 * The default action is to allow; the profile denies, with EPERM, the system calls a
 * function has no business making (mounts, kernel modules, kexec, bpf, perf events,
 * keyrings, userfaultfd, file handles, swap, clock setting, namespace creation...),
 * and answers clone3 with ENOSYS because its flags live in memory a filter cannot
 * read (libc then falls back to clone, whose namespace flags are checked). It also
 * denies vsock sockets and netfilter netlink sockets (argument filters on socket).
 * System calls of other ABIs (i386, x32) kill the process. A function spec may add names to
 * deny; nothing can be removed.
 *
 * The program is compiled in the parent (libseccomp allocates) and installed by the
 * container's setup code with a plain seccomp(2) call just before exec. */
#ifndef GUST_RUNTIME_SYSFILTER_H
#define GUST_RUNTIME_SYSFILTER_H

#include <linux/filter.h>
#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"

#define SYSFILTER_MAX_EXTRA 128

/* Compiles the default profile plus extra_deny (system call names, each denied with
 * EPERM). On success prog->filter is malloc'd and owned by the caller
 * (sysfilter_free). Unknown names are an error naming them. */
int sysfilter_build(const char *const *extra_deny, size_t nextra, struct sock_fprog *prog,
                    struct gerr *err);
/* The profile of a snapshot template: the default one less the denials of mount,
 * umount2, pivot_root, setns, unshare, sethostname and mount_setattr, which it needs
 * to make forked containers (unshare and setns only for PID, mount, network, IPC, UTS
 * and cgroup namespaces: never a user or time namespace, no setns with nstype 0); each
 * forked container installs the full profile on top (filters stack: every one must
 * allow a call). */
int sysfilter_build_template(const char *const *extra_deny, size_t nextra, struct sock_fprog *prog,
                             struct gerr *err);
void sysfilter_free(struct sock_fprog *prog);

static inline void sysfilter_freep(struct sock_fprog *prog)
{
    sysfilter_free(prog);
}
/* A compiled program freed at the end of its scope. */
#define AUTO_SYSFILTER __attribute__((cleanup(sysfilter_freep)))

#endif
