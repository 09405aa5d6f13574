/* The seccomp-bpf profile of every container (docs/SECURITY.md lists it with reasons).
 *
 * An allow-list: the system calls Docker's default profile allows a container, less
 * those Gust refuses (clock adjustment, io_uring, name_to_handle_at). Argument rules:
 * clone only without namespace flags (EPERM with one), clone3 ENOSYS (its flags live
 * in memory a filter cannot read; libc falls back to clone), socket and socketpair
 * for every family but vsock and, for netlink, every protocol but netfilter (EPERM),
 * personality only for the execution domains Docker allows. Every other system call
 * libseccomp can name answers EPERM; a number it cannot name (a system call newer
 * than it) answers ENOSYS, so programs fall back as on an older kernel. System calls
 * of other ABIs (i386, x32) kill the process. A function spec may add names to deny;
 * nothing can be added to the list.
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
/* The profile of a snapshot template: the container's list plus mount, umount2,
 * pivot_root, setns, unshare, sethostname and mount_setattr, which it needs to make
 * forked containers (unshare and setns only for PID, mount, network, IPC, UTS
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
