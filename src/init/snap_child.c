/* snap_child mode: PID 1 of a container forked from a snapshot template (proto/snap.h).
 * fd 4 is the sync socket to the worker, fds 5 and 6 the runner's stdout and stderr
 * pipes. It makes the container's namespaces and root, confines itself
 * (runtime/confine.h), then does for the forked runner (PID 2) what runner mode does:
 * forwards its output, reaps orphans, passes SIGTERM/SIGINT on, and exits when it is
 * gone. The runner's exit status is reported by the template, its parent. */
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/error.h"
#include "base/util.h"
#include "init/init.h"
#include "proto/snap.h"
#include "runtime/confine.h"

/* Sends the setup verdict on the sync socket. */
static void snap_reply(int sync, uint8_t tag, int code, const char *msg, const uint64_t t[3])
{
    struct snap_reply rep;
    memset(&rep, 0, sizeof rep);
    rep.tag = tag;
    rep.code = code;
    rep.start_ns = t[0];
    rep.network_mounts_ns = t[1];
    rep.security_ns = t[2];
    if (msg)
        snprintf(rep.msg, sizeof rep.msg, "%s", msg);
    while (send(sync, &rep, sizeof rep, MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
}

/* Makes the container (namespaces, root, privileges, seccomp) as the worker's GO
 * message on sync says, and reports DONE with the phases' times. Returns 0, or -errno
 * with err set (the caller reports FAILED). */
static int snap_setup(int sync, struct gerr *err)
{
    uint64_t t[3] = {mono_ns(), 0, 0};
    if (unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS) < 0)
        return gerr_sys(err, errno, "unshare the container's namespaces");
    char tag = SNAP_MSG_ATTACH;
    if (send(sync, &tag, 1, MSG_NOSIGNAL) != 1)
        return gerr_sys(err, errno, "send attach");
    static uint8_t buf[sizeof(struct snap_go) + SNAP_MAX_FILTER * sizeof(struct sock_filter)];
    ssize_t n;
    while ((n = recv(sync, buf, sizeof buf, 0)) < 0 && errno == EINTR) {
    }
    struct snap_go go;
    if (n < (ssize_t)sizeof go)
        return gerr_set(err, EPIPE, "the worker did not send the container's configuration");
    memcpy(&go, buf, sizeof go);
    go.hostname[sizeof go.hostname - 1] = '\0';
    if (go.tag != SNAP_MSG_GO || go.filter_len > SNAP_MAX_FILTER ||
        (size_t)n != sizeof go + go.filter_len * sizeof(struct sock_filter))
        return gerr_set(err, EPROTO, "malformed container configuration");
    if (unshare(CLONE_NEWCGROUP) < 0)
        return gerr_sys(err, errno, "unshare the cgroup namespace");
    struct confine_forked cf = {.hostname = go.hostname, .disk_mib = go.disk_mib, .egress_addr = go.egress_addr,
                                .egress_gw = go.egress_gw, .egress_prefix = go.egress_prefix};
    int r = confine_forked_root(&cf, err);
    if (r < 0)
        return r;
    t[1] = mono_ns();
    r = confine_drop_privileges(0, err);
    if (r < 0)
        return r;
    struct sock_fprog prog = {.len = (unsigned short)go.filter_len,
                              .filter = (struct sock_filter *)(void *)(buf + sizeof go)};
    if (go.filter_len && syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
        return gerr_sys(err, errno, "install the seccomp filter");
    t[2] = mono_ns();
    snap_reply(sync, SNAP_MSG_DONE, 0, NULL, t);
    return 0;
}

int init_run_snap_child(void)
{
    int sync = SNAP_SYNC_FD;
    int out = SNAP_STDOUT_FD, errp = SNAP_STDERR_FD;
    for (int fd = SNAP_SYNC_FD; fd <= SNAP_STDERR_FD; fd++)
        if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
            init_die("fd %s of snap_child mode is not open", fd == SNAP_SYNC_FD ? "4" : fd == out ? "5" : "6");
    struct gerr err;
    gerr_clear(&err);
    if (snap_setup(sync, &err) < 0) {
        uint64_t t[3] = {0, 0, 0};
        snap_reply(sync, SNAP_MSG_FAILED, err.code > 0 ? err.code : EIO, err.msg, t);
        return 126;
    }
    close(sync);
    /* The runner is PID 2: the only other process of this PID namespace, forked by the
     * template right after it spawned us (and copying itself while we set up). */
    int runner = -1;
    for (int i = 0; i < 50000 && runner < 0; i++) {
        runner = (int)syscall(SYS_pidfd_open, 2, 0);
        if (runner < 0 && errno != ESRCH)
            return 126;
        if (runner < 0)
            usleep(200);
    }
    if (runner < 0)
        return 126;
    fd_set_nonblock(out, true);
    fd_set_nonblock(errp, true);
    for (;;) {
        struct pollfd p[4] = {
            {.fd = init_sigfd, .events = POLLIN},
            {.fd = out, .events = POLLIN},
            {.fd = errp, .events = POLLIN},
            {.fd = runner, .events = POLLIN},
        };
        if (poll(p, 4, -1) < 0) {
            if (errno == EINTR)
                continue;
            init_die("poll: %s", strerror(errno));
        }
        if (p[1].revents)
            init_forward_pipe(&out, 1, NULL, NULL);
        if (p[2].revents)
            init_forward_pipe(&errp, 2, NULL, NULL);
        if (p[0].revents) {
            for (int sig; (sig = init_next_signal()) > 0;)
                if (sig == SIGTERM || sig == SIGINT)
                    syscall(SYS_pidfd_send_signal, runner, sig, NULL, 0);
            while (waitpid(-1, NULL, WNOHANG) > 0) {
            }
        }
        if (p[3].revents)
            break;
    }
    init_forward_pipe(&out, 1, NULL, NULL);
    init_forward_pipe(&errp, 2, NULL, NULL);
    return 0;
}
