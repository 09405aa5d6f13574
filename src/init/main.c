/* gust-init: PID 1 of every container. Static; it links src/init, src/proto, src/base
 * and, of src/runtime, confine.c (snap_child mode confines the container it makes)
 * with netlink.c (which confine.c uses to configure the container's eth0 for
 * egress); the Makefile's INIT_SRCS lists them.
 *
 *   gust-init [--mode per_input|runner|exec|snap_child] [--concurrency N] [--template]
 *             -- CMD ARGS...
 *
 * fd 3 (FRAME_CHILD_FD) is the SEQPACKET runner channel to the worker. gust-init
 * reaps every zombie, handles SIGCHLD/SIGTERM/SIGINT through a signalfd and runs one
 * of four modes, each in its own file:
 *  - per_input (per_input.c): after HELLO it speaks the protocol itself: READY, then
 *    one child process per INPUT (stdin = input, stdout = result, stderr = LOG
 *    frames), up to N at once.
 *  - runner (runner.c): after HELLO, one long-lived user process that inherits the
 *    channel as fd 3 and speaks the protocol itself; gust-init only forwards its
 *    stdout/stderr as LOG frames and reports its end with an EXIT frame. --template
 *    gives the runner a PID namespace of its own (a snapshot template).
 *  - exec (exec.c, image build steps): fd 3 is a plain byte stream, not the runner
 *    channel. The command runs with stdin /dev/null and stdout/stderr on fd 3;
 *    gust-init exits with the command's status (128 + N when signal N ended it).
 *  - snap_child (snap_child.c): PID 1 of a container forked from a snapshot template;
 *    no CMD (the runner is already running).
 * This file parses the arguments, sets up what every mode needs and picks the mode. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "base/util.h"
#include "init/init.h"
#include "proto/frame.h"

enum init_mode { MODE_PER_INPUT, MODE_RUNNER, MODE_EXEC, MODE_SNAP_CHILD };

/* The command line. */
struct init_args {
    enum init_mode mode;
    bool template;
    unsigned concurrency;
    char **cmd; /* NULL in snap_child mode */
};

/* Parses argv into a; dies with the usage on a bad command line. */
static void parse_args(int argc, char **argv, struct init_args *a)
{
    a->mode = MODE_PER_INPUT;
    a->concurrency = 1;
    int i = 1;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--")) {
            i++;
            break;
        }
        if (!strcmp(argv[i], "--mode") && i + 1 < argc) {
            const char *m = argv[++i];
            if (!strcmp(m, "per_input"))
                a->mode = MODE_PER_INPUT;
            else if (!strcmp(m, "runner"))
                a->mode = MODE_RUNNER;
            else if (!strcmp(m, "exec"))
                a->mode = MODE_EXEC;
            else if (!strcmp(m, "snap_child"))
                a->mode = MODE_SNAP_CHILD;
            else
                init_die("unknown mode \"%s\" (use per_input, runner, exec or snap_child)", m);
        } else if (!strcmp(argv[i], "--template")) {
            a->template = true;
        } else if (!strcmp(argv[i], "--concurrency") && i + 1 < argc) {
            int64_t n;
            if (parse_i64(argv[++i], 1, 100000, &n) < 0)
                init_die("bad --concurrency \"%s\" (use 1..100000)", argv[i]);
            a->concurrency = (unsigned)n;
        } else {
            init_die("unknown argument \"%s\"; usage: gust-init [--mode per_input|runner|exec] "
                     "[--concurrency N] [--template] -- CMD ARGS...", argv[i]);
        }
    }
    if (a->mode == MODE_SNAP_CHILD)
        return;
    if (i >= argc)
        init_die("%s", "missing command after --");
    a->cmd = argv + i;
}

int main(int argc, char **argv)
{
    struct init_args a = {0};
    parse_args(argc, argv, &a);
    init_fix_std_fds();
    if (fcntl(INIT_CHAN, F_SETFD, FD_CLOEXEC) < 0)
        init_die("the runner channel (fd 3) is not open: %s", strerror(errno));
    if (getpid() != 1)
        prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    init_setup_signals();
    if (a.mode == MODE_EXEC)
        return init_run_exec(a.cmd);
    if (a.mode == MODE_SNAP_CHILD)
        return init_run_snap_child();
    init_chan_send(FRAME_HELLO, 0, NULL, 0);
    return a.mode == MODE_RUNNER ? init_run_runner(a.cmd, a.template) : init_run_per_input(a.cmd, a.concurrency);
}
