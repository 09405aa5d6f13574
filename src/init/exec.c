/* exec mode (image build steps): fd 3 is a plain byte stream, not the runner channel.
 * The command runs with stdin /dev/null and stdout/stderr on fd 3; gust-init reaps
 * every process, forwards SIGTERM/SIGINT, and exits with the command's status (128 + N
 * when signal N ended it). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "init/init.h"

int init_run_exec(char **cmd)
{
    int ep[2];
    if (pipe2(ep, O_CLOEXEC) < 0)
        init_die("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        init_die("fork: %s", strerror(errno));
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null < 0 || dup2(null, 0) < 0 || dup2(INIT_CHAN, 1) < 0 || dup2(INIT_CHAN, 2) < 0)
            init_exec_failed(ep[1], errno);
        init_child_exec(cmd, ep[1]);
    }
    int e = init_await_exec(pid, ep);
    if (e) {
        dprintf(INIT_CHAN, "gust-init: cannot run %s: %s\n", cmd[0], strerror(e));
        return 127;
    }
    close(INIT_CHAN);
    for (;;) {
        int sig = init_next_signal();
        if (sig < 0 && sig != -EINTR)
            init_die("signalfd: %s", strerror(-sig));
        if (sig > 0 && sig != SIGCHLD)
            kill(pid, sig);
        int status;
        pid_t got;
        while ((got = waitpid(-1, &status, WNOHANG)) > 0) {
            if (got == pid)
                return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        struct pollfd p = {.fd = init_sigfd, .events = POLLIN};
        poll(&p, 1, -1);
    }
}
