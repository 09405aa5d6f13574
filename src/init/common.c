/* What the modes of gust-init share: the runner channel, signals, and forking and
 * exec'ing the command. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "init/init.h"
#include "proto/frame.h"

int init_sigfd = -1;
bool init_chan_eof;

void init_die(const char *fmt, const char *arg)
{
    fprintf(stderr, "gust-init: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(2);
}

/* Notes a send result r: a worker that went away ends the channel like an EOF. */
static void chan_sent(int r)
{
    if (r == -EPIPE || r == -ECONNRESET)
        init_chan_eof = true;
}

void init_chan_send(uint8_t type, uint64_t id, const void *body, size_t len)
{
    if (!init_chan_eof)
        chan_sent(frame_send(INIT_CHAN, type, id, body, len));
}

void init_chan_send_error(uint64_t id, enum frame_error_kind kind, const char *msg)
{
    if (!init_chan_eof)
        chan_sent(frame_send_error(INIT_CHAN, id, kind, msg, strlen(msg)));
}

void init_fix_std_fds(void)
{
    for (int fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) >= 0)
            continue;
        /* Not CLOEXEC: the command inherits fds 0-2. */
        int n = open("/dev/null", O_RDWR);
        if (n >= 0 && n != fd) {
            dup2(n, fd);
            close(n);
        }
    }
}

void init_setup_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        init_die("sigprocmask: %s", strerror(errno));
    init_sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (init_sigfd < 0)
        init_die("signalfd: %s", strerror(errno));
    signal(SIGPIPE, SIG_IGN);
}

int init_next_signal(void)
{
    struct signalfd_siginfo si;
    ssize_t n = read(init_sigfd, &si, sizeof si);
    if (n < 0)
        return errno == EAGAIN ? 0 : -errno;
    return n == (ssize_t)sizeof si ? (int)si.ssi_signo : 0;
}

/* In a forked child before exec: default signal state. */
static void child_reset_signals(void)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
}

void init_exec_failed(int errfd, int e)
{
    ssize_t w = write(errfd, &e, sizeof e);
    (void)w;
    _exit(127);
}

void init_child_exec(char **cmd, int errfd)
{
    child_reset_signals();
    execvp(cmd[0], cmd);
    init_exec_failed(errfd, errno);
}

/* Waits for exec success (EOF on errfd) or an errno from the child; returns 0 or that
 * errno. */
static int wait_exec(int errfd)
{
    int e = 0;
    for (;;) {
        ssize_t n = read(errfd, &e, sizeof e);
        if (n < 0 && errno == EINTR)
            continue;
        return n == (ssize_t)sizeof e ? e : 0;
    }
}

int init_await_exec(pid_t pid, int ep[2])
{
    init_close_fd(&ep[1]);
    int e = wait_exec(ep[0]);
    init_close_fd(&ep[0]);
    if (e) {
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
        }
    }
    return e;
}

void init_close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

void init_forward_pipe(int *fd, uint64_t stream, void (*keep)(void *ud, const char *data, size_t n), void *ud)
{
    static uint8_t chunk[FRAME_MAX_BODY];
    while (*fd >= 0) {
        ssize_t n = read(*fd, chunk, sizeof chunk);
        if (n > 0) {
            init_chan_send(FRAME_LOG, stream, chunk, (size_t)n);
            if (keep)
                keep(ud, (const char *)chunk, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        init_close_fd(fd);
    }
}
