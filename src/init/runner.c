/* runner mode: one long-lived user process that inherits the runner channel as fd 3
 * (GUST_RUNNER_FD=3) and speaks the protocol itself. gust-init forwards its stdout and
 * stderr as LOG frames, passes SIGTERM/SIGINT on, reaps orphans, and reports the
 * runner's end with an EXIT frame. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/util.h"
#include "init/init.h"
#include "proto/frame.h"

/* Sends the EXIT frame of a runner that exited with code (kind 1) or was killed by
 * signal code (kind 2). */
static void send_exit(uint8_t kind, int code)
{
    struct frame_exit_body xb = {.kind = kind, .code = code};
    init_chan_send(FRAME_EXIT, 0, &xb, sizeof xb);
}

int init_run_runner(char **cmd, bool template)
{
    int out[2] = {-1, -1}, err[2] = {-1, -1}, ep[2] = {-1, -1};
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 || pipe2(ep, O_CLOEXEC) < 0)
        init_die("pipe: %s", strerror(errno));
    /* A snapshot template's runner is PID 1 of a PID namespace owned by the
     * template's user namespace: it can then make a new one per forked container and
     * return to its own (setns) between forks. */
    if (template && unshare(CLONE_NEWPID) < 0)
        init_die("unshare the template's PID namespace: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        init_die("fork: %s", strerror(errno));
    if (pid == 0) {
        if (dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0 || fcntl(INIT_CHAN, F_SETFD, 0) < 0 ||
            setenv("GUST_RUNNER_FD", "3", 1) < 0)
            init_exec_failed(ep[1], errno);
        init_child_exec(cmd, ep[1]);
    }
    init_close_fd(&out[1]);
    init_close_fd(&err[1]);
    int e = init_await_exec(pid, ep);
    if (e) {
        char msg[512];
        int len = snprintf(msg, sizeof msg, "gust-init: cannot run %s: %s\n", cmd[0], strerror(e));
        init_chan_send(FRAME_LOG, 2, msg, (size_t)len);
        send_exit(FRAME_EXIT_EXITED, 127);
        return 127;
    }
    fd_set_nonblock(out[0], true);
    fd_set_nonblock(err[0], true);
    bool exited = false;
    int status = 0;
    while (!exited) {
        struct pollfd p[3] = {
            {.fd = init_sigfd, .events = POLLIN},
            {.fd = out[0], .events = POLLIN},
            {.fd = err[0], .events = POLLIN},
        };
        if (poll(p, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            init_die("poll: %s", strerror(errno));
        }
        if (p[1].revents)
            init_forward_pipe(&out[0], 1, NULL, NULL);
        if (p[2].revents)
            init_forward_pipe(&err[0], 2, NULL, NULL);
        if (!p[0].revents)
            continue;
        for (int sig; (sig = init_next_signal()) > 0;)
            if (sig == SIGTERM || sig == SIGINT)
                kill(pid, sig);
        for (;;) {
            int st;
            pid_t r = waitpid(-1, &st, WNOHANG);
            if (r <= 0)
                break;
            if (r == pid) {
                exited = true;
                status = st;
            }
        }
    }
    init_forward_pipe(&out[0], 1, NULL, NULL);
    init_forward_pipe(&err[0], 2, NULL, NULL);
    init_close_fd(&out[0]);
    init_close_fd(&err[0]);
    if (WIFSIGNALED(status)) {
        send_exit(FRAME_EXIT_SIGNALED, WTERMSIG(status));
        return 128 + WTERMSIG(status);
    }
    send_exit(FRAME_EXIT_EXITED, WEXITSTATUS(status));
    return WEXITSTATUS(status);
}
