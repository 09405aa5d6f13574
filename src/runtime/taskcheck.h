/* The privilege check of a container's tasks before it is marked ready
 * (docs/SECURITY.md "The task check").
 *
 * A forked container's runner drops the template's extra privileges itself, in code
 * the function's image supplies: a runner that skipped the drop would keep them. So
 * before the worker marks a container ready it reads every task (every thread of
 * every process) in the container's cgroup from /proc and requires, of each: the
 * effective, permitted, bounding, inheritable and ambient capability sets within the
 * container's allowed set, no_new_privs, and seccomp filter mode with at least as many
 * filters as Gust installs in that container (the count is all the kernel shows: a
 * filter of the task's own choosing counts as well). */
#ifndef GUST_RUNTIME_TASKCHECK_H
#define GUST_RUNTIME_TASKCHECK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/error.h"

struct taskcheck_policy {
    uint64_t caps;          /* capability bits a task may hold in any set */
    unsigned min_filters;   /* seccomp filters every task has at least */
};

/* Checks one task from the text of its /proc/<tid>/status. Returns 0; or -EPERM with
 * err naming the task ("container task TID (NAME)") and everything wrong with it;
 * or -EPROTO when a field is missing. Seccomp_filters is checked only where the kernel
 * shows it (5.9 on). */
int taskcheck_status(const char *status, pid_t tid, const struct taskcheck_policy *pol, struct gerr *err);

/* Checks every task of the cgroup directory dir (cgroup.threads on v2, tasks on v1;
 * host thread ids). The list is read again until a pass finds no task it had not
 * checked, so a task made by one that exited meanwhile is not missed. A task that
 * exits before it is read is skipped. Returns 0, -EPERM as taskcheck_status (the first
 * offending task), or another -errno (err set) when the tasks cannot be read. */
int taskcheck_cgroup(const char *dir, bool v2, const struct taskcheck_policy *pol, struct gerr *err);

#endif
