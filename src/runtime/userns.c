/* User namespace creation (see runtime/userns.h). */
#include "runtime/userns.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/cleanup.h"

int userns_check_range(uint64_t host_base, uint64_t count, struct gerr *err)
{
    if (count < 65536)
        return gerr_set(err, EINVAL, "user namespace size %llu is too small (at least 65536, so that "
                        "uid 65534 exists inside)", (unsigned long long)count);
    if (host_base < 65536)
        return gerr_set(err, EINVAL, "user namespace base uid %llu overlaps host accounts "
                        "(use 65536 or more, e.g. 1000000)", (unsigned long long)host_base);
    if (host_base + count >= 0xffffffffull)
        return gerr_set(err, EINVAL, "user namespace range %llu+%llu does not fit in 32-bit uids",
                        (unsigned long long)host_base, (unsigned long long)count);
    return 0;
}

static int write_map(pid_t pid, const char *file, uint32_t base, uint32_t count, struct gerr *err)
{
    char path[64], line[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
    int n = snprintf(line, sizeof line, "0 %u %u\n", base, count);
    AUTO_FD int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return gerr_sys(err, errno, "open %s", path);
    if (write(fd, line, (size_t)n) != n)
        return gerr_sys(err, errno, "write %s (\"0 %u %u\")", path, base, count);
    return 0;
}

int userns_create(uint32_t host_base, uint32_t count, int *fd_out, struct gerr *err)
{
    *fd_out = -1;
    int r = userns_check_range(host_base, count, err);
    if (r < 0)
        return r;
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return gerr_sys(err, errno, "pipe");
    /* The helper only sits in the new namespace until we have opened it. It makes no
     * library calls that could need a lock held by another thread at fork time. */
    long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid == 0) {
        close(pipefd[1]);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        char c;
        while (read(pipefd[0], &c, 1) < 0 && errno == EINTR) {
        }
        _exit(0);
    }
    close(pipefd[0]);
    AUTO_FD int wake = pipefd[1];
    if (pid < 0)
        return gerr_sys(err, errno, "clone a user namespace");
    r = write_map((pid_t)pid, "uid_map", host_base, count, err);
    if (r == 0)
        r = write_map((pid_t)pid, "gid_map", host_base, count, err);
    int fd = -1;
    if (r == 0) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%ld/ns/user", pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            r = gerr_sys(err, errno, "open %s", path);
    }
    close(TAKE_FD(wake));
    int status;
    while (waitpid((pid_t)pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (r < 0) {
        if (fd >= 0)
            close(fd);
        return r;
    }
    *fd_out = fd;
    return 0;
}
