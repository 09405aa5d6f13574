/* gust-init: PID 1 of every container. Static, links only src/proto and src/base.
 *
 *   gust-init [--mode per_input|runner] [--concurrency N] -- CMD ARGS...
 *
 * fd 3 (FRAME_CHILD_FD) is the SEQPACKET runner channel to the worker. gust-init
 * sends HELLO, reaps every zombie, handles SIGCHLD/SIGTERM/SIGINT through a signalfd
 * and then runs one of two loops:
 *  - per_input: it speaks the protocol itself: READY, then one child process per INPUT
 *    (stdin = input, stdout = result, stderr = LOG frames), up to N at once.
 *  - runner: one long-lived user process that inherits the channel as fd 3 and speaks
 *    the protocol itself; gust-init only forwards its stdout/stderr as LOG frames and
 *    reports its end with an EXIT frame.
 *  - exec (image build steps): fd 3 is a plain byte stream, not the runner channel.
 *    The command runs with stdin /dev/null and stdout/stderr on fd 3; gust-init
 *    reaps every process, forwards SIGTERM/SIGINT, and exits with the command's
 *    status (128 + N when signal N ended it).
 */
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/util.h"
#include "proto/frame.h"
#include "proto/snap.h"
#include "runtime/confine.h"

#define INIT_CHAN FRAME_CHILD_FD
#define INIT_MAX_OUTPUT ((size_t)64 << 20) /* stdout kept per input */
#define INIT_MAX_INPUT ((size_t)1 << 30)   /* the worker enforces its own, lower limit */
#define INIT_TAIL 4096                     /* stderr bytes kept for error messages */
#define INIT_READ_CHUNK FRAME_MAX_BODY

enum init_mode { MODE_PER_INPUT, MODE_RUNNER, MODE_EXEC, MODE_SNAP_CHILD };

/* One input of per_input mode: queued (pid 0) or running. */
struct child {
    struct child *next;
    uint64_t id;
    pid_t pid;
    int in_fd, out_fd, err_fd;
    uint8_t *input;
    size_t input_len, input_off;
    struct buf out;
    char tail[INIT_TAIL];
    size_t tail_len;
    bool cancelled, too_big;
};

static struct {
    enum init_mode mode;
    bool template;
    unsigned concurrency;
    char **cmd;
    int sigfd;
    bool shutting_down, chan_eof;
    struct child *running, *queued; /* queued is FIFO: appended at the tail */
    unsigned nrunning;
    struct frame_asm asm_;
    uint8_t rx[FRAME_MAX_DATAGRAM];
    uint8_t chunk[INIT_READ_CHUNK];
} g;

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "gust-init: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(2);
}

/* Sends on the channel; a worker that went away ends per_input mode like an EOF. */
static void chan_send(uint8_t type, uint64_t id, const void *body, size_t len)
{
    if (g.chan_eof)
        return;
    int r = frame_send(INIT_CHAN, type, id, body, len);
    if (r == -EPIPE || r == -ECONNRESET)
        g.chan_eof = true;
}

static void chan_send_error(uint64_t id, enum frame_error_kind kind, const char *msg)
{
    if (g.chan_eof)
        return;
    int r = frame_send_error(INIT_CHAN, id, kind, msg, strlen(msg));
    if (r == -EPIPE || r == -ECONNRESET)
        g.chan_eof = true;
}

/* Opens /dev/null on any of fds 0-2 that is closed, so pipes never land there. */
static void fix_std_fds(void)
{
    for (int fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) >= 0)
            continue;
        int n = open("/dev/null", O_RDWR);
        if (n >= 0 && n != fd) {
            dup2(n, fd);
            close(n);
        }
    }
}

static void parse_args(int argc, char **argv)
{
    g.mode = MODE_PER_INPUT;
    g.concurrency = 1;
    int i = 1;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--")) {
            i++;
            break;
        }
        if (!strcmp(argv[i], "--mode") && i + 1 < argc) {
            const char *m = argv[++i];
            if (!strcmp(m, "per_input"))
                g.mode = MODE_PER_INPUT;
            else if (!strcmp(m, "runner"))
                g.mode = MODE_RUNNER;
            else if (!strcmp(m, "exec"))
                g.mode = MODE_EXEC;
            else if (!strcmp(m, "snap_child"))
                g.mode = MODE_SNAP_CHILD;
            else
                die("unknown mode \"%s\" (use per_input, runner, exec or snap_child)", m);
        } else if (!strcmp(argv[i], "--template")) {
            g.template = true;
        } else if (!strcmp(argv[i], "--concurrency") && i + 1 < argc) {
            int64_t n;
            if (parse_i64(argv[++i], 1, 100000, &n) < 0)
                die("bad --concurrency \"%s\" (use 1..100000)", argv[i]);
            g.concurrency = (unsigned)n;
        } else {
            die("unknown argument \"%s\"; usage: gust-init [--mode per_input|runner|exec] "
                "[--concurrency N] [--template] -- CMD ARGS...", argv[i]);
        }
    }
    if (g.mode == MODE_SNAP_CHILD)
        return;
    if (i >= argc)
        die("%s", "missing command after --");
    g.cmd = argv + i;
}

static void setup_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        die("sigprocmask: %s", strerror(errno));
    g.sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (g.sigfd < 0)
        die("signalfd: %s", strerror(errno));
    signal(SIGPIPE, SIG_IGN);
}

/* In a forked child before exec: default signal state. */
static void child_reset_signals(void)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
}

/* Execs g.cmd in a forked child; on failure reports errno through errfd, exits 127. */
static void child_exec(int errfd)
{
    child_reset_signals();
    execvp(g.cmd[0], g.cmd);
    int e = errno;
    ssize_t w = write(errfd, &e, sizeof e);
    (void)w;
    _exit(127);
}

/* Waits for exec success (EOF) or an errno from the child; returns 0 or that errno. */
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

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static const char *sig_name(int sig, char *tmp, size_t n)
{
    const char *abbrev = sigabbrev_np(sig);
    if (abbrev)
        snprintf(tmp, n, "SIG%s", abbrev);
    else
        snprintf(tmp, n, "signal %d", sig);
    return tmp;
}

/* ---------------------------------------------------------------- per_input mode */

static void tail_append(struct child *c, const char *data, size_t n)
{
    if (n >= INIT_TAIL) {
        memcpy(c->tail, data + n - INIT_TAIL, INIT_TAIL);
        c->tail_len = INIT_TAIL;
        return;
    }
    if (c->tail_len + n > INIT_TAIL) {
        size_t keep = INIT_TAIL - n;
        memmove(c->tail, c->tail + c->tail_len - keep, keep);
        c->tail_len = keep;
    }
    memcpy(c->tail + c->tail_len, data, n);
    c->tail_len += n;
}

static void child_free(struct child *c)
{
    close_fd(&c->in_fd);
    close_fd(&c->out_fd);
    close_fd(&c->err_fd);
    free(c->input);
    buf_free(&c->out);
    free(c);
}

static void kill_group(struct child *c, int sig)
{
    if (c->pid > 0)
        kill(-c->pid, sig);
}

/* Writes as much pending input as the pipe takes; closes stdin when done or broken. */
static void child_write_input(struct child *c)
{
    while (c->in_fd >= 0 && c->input_off < c->input_len) {
        ssize_t n = write(c->in_fd, c->input + c->input_off, c->input_len - c->input_off);
        if (n > 0) {
            c->input_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        break; /* EPIPE: the command does not read its stdin */
    }
    close_fd(&c->in_fd);
    free(c->input);
    c->input = NULL;
}

/* Reads what is available on stdout; returns false at EOF/error (fd closed). */
static void child_read_out(struct child *c)
{
    while (c->out_fd >= 0) {
        if (c->too_big) {
            close_fd(&c->out_fd);
            return;
        }
        if (buf_reserve(&c->out, 65536) < 0) {
            c->too_big = true;
            kill_group(c, SIGKILL);
            continue;
        }
        ssize_t n = read(c->out_fd, c->out.data + c->out.len, c->out.cap - c->out.len - 1);
        if (n > 0) {
            c->out.len += (size_t)n;
            c->out.data[c->out.len] = 0;
            if (c->out.len > INIT_MAX_OUTPUT) {
                c->too_big = true;
                kill_group(c, SIGKILL);
            }
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        close_fd(&c->out_fd);
    }
}

/* Forwards what is available on stderr as LOG frames, keeping the tail. */
static void child_read_err(struct child *c)
{
    while (c->err_fd >= 0) {
        ssize_t n = read(c->err_fd, g.chunk, sizeof g.chunk);
        if (n > 0) {
            chan_send(FRAME_LOG, 2, g.chunk, (size_t)n);
            tail_append(c, (const char *)g.chunk, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        close_fd(&c->err_fd);
    }
}

/* The stderr tail, trimmed of surrounding whitespace, as a C string in out. */
static void tail_text(const struct child *c, char *out, size_t cap)
{
    size_t a = 0, b = c->tail_len;
    while (a < b && (c->tail[a] == '\n' || c->tail[a] == '\r' || c->tail[a] == ' '))
        a++;
    while (b > a && (c->tail[b - 1] == '\n' || c->tail[b - 1] == '\r' || c->tail[b - 1] == ' '))
        b--;
    size_t n = b - a < cap - 1 ? b - a : cap - 1;
    memcpy(out, c->tail + a, n);
    out[n] = 0;
}

/* Reports the result of an exited child. */
static void child_report(struct child *c, int status)
{
    char tail[INIT_TAIL + 1], msg[INIT_TAIL + 128], sname[32];
    tail_text(c, tail, sizeof tail);
    const char *sep = tail[0] ? ": " : "";
    if (c->cancelled) {
        chan_send_error(c->id, FRAME_ERR_CANCELLED, "cancelled");
    } else if (c->too_big) {
        snprintf(msg, sizeof msg, "output exceeds the limit of %zu MiB", INIT_MAX_OUTPUT >> 20);
        chan_send_error(c->id, FRAME_ERR_USER, msg);
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        chan_send(FRAME_OUTPUT, c->id, c->out.data, c->out.len);
    } else if (WIFEXITED(status)) {
        snprintf(msg, sizeof msg, "exit status %d%s%s", WEXITSTATUS(status), sep, tail);
        chan_send_error(c->id, FRAME_ERR_EXIT_STATUS, msg);
    } else {
        int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
        snprintf(msg, sizeof msg, "killed by signal %d (%s)%s%s", sig, sig_name(sig, sname, sizeof sname),
                 sep, tail);
        chan_send_error(c->id, FRAME_ERR_SIGNAL, msg);
    }
}

/* Forks the command for c. Returns false (after reporting) if it could not start. */
static bool child_start(struct child *c)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, ep[2] = {-1, -1};
    char msg[512];
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 ||
        pipe2(ep, O_CLOEXEC) < 0) {
        snprintf(msg, sizeof msg, "cannot run %s: pipe: %s", g.cmd[0], strerror(errno));
        goto fail;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(msg, sizeof msg, "cannot run %s: fork: %s", g.cmd[0], strerror(errno));
        goto fail;
    }
    if (pid == 0) {
        setpgid(0, 0);
        if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0) {
            int e = errno;
            ssize_t w = write(ep[1], &e, sizeof e);
            (void)w;
            _exit(127);
        }
        child_exec(ep[1]);
    }
    setpgid(pid, pid);
    close_fd(&in[0]);
    close_fd(&out[1]);
    close_fd(&err[1]);
    close_fd(&ep[1]);
    int e = wait_exec(ep[0]);
    close_fd(&ep[0]);
    if (e) {
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        snprintf(msg, sizeof msg, "cannot run %s: %s", g.cmd[0], strerror(e));
        goto fail;
    }
    c->pid = pid;
    c->in_fd = in[1];
    c->out_fd = out[0];
    c->err_fd = err[0];
    fd_set_nonblock(c->in_fd, true);
    fd_set_nonblock(c->out_fd, true);
    fd_set_nonblock(c->err_fd, true);
    c->next = g.running;
    g.running = c;
    g.nrunning++;
    child_write_input(c);
    return true;
fail:
    for (int i = 0; i < 2; i++) {
        close_fd(&in[i]);
        close_fd(&out[i]);
        close_fd(&err[i]);
        close_fd(&ep[i]);
    }
    chan_send_error(c->id, FRAME_ERR_SPAWN, msg);
    child_free(c);
    return false;
}

/* Starts queued inputs while there is room. */
static void start_queued(void)
{
    while (g.queued && g.nrunning < g.concurrency && !g.shutting_down) {
        struct child *c = g.queued;
        g.queued = c->next;
        c->next = NULL;
        child_start(c);
    }
}

static void queue_input(uint64_t id, uint8_t *data, size_t len)
{
    struct child *c = calloc(1, sizeof *c);
    if (!c) {
        free(data);
        chan_send_error(id, FRAME_ERR_SPAWN, "gust-init: out of memory");
        return;
    }
    c->id = id;
    c->input = data;
    c->input_len = len;
    c->in_fd = c->out_fd = c->err_fd = -1;
    if (g.nrunning < g.concurrency && !g.queued) {
        child_start(c);
        return;
    }
    struct child **pp = &g.queued;
    while (*pp)
        pp = &(*pp)->next;
    *pp = c;
}

static void cancel_input(uint64_t id)
{
    frame_asm_drop(&g.asm_, FRAME_INPUT, id);
    for (struct child **pp = &g.queued; *pp; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            struct child *c = *pp;
            *pp = c->next;
            chan_send_error(id, FRAME_ERR_CANCELLED, "cancelled");
            child_free(c);
            return;
        }
    }
    for (struct child *c = g.running; c; c = c->next) {
        if (c->id == id && !c->cancelled) {
            c->cancelled = true;
            kill_group(c, SIGKILL);
        }
    }
}

/* Reaps every exited process; finished inputs are reported and freed. */
static void reap_all(void)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            return;
        for (struct child **pp = &g.running; *pp; pp = &(*pp)->next) {
            struct child *c = *pp;
            if (c->pid != pid)
                continue;
            *pp = c->next;
            g.nrunning--;
            child_read_out(c);
            child_read_err(c);
            kill_group(c, SIGKILL); /* leftovers of this input's process group */
            child_report(c, status);
            child_free(c);
            break;
        }
    }
}

static void stop_queued(void)
{
    while (g.queued) {
        struct child *c = g.queued;
        g.queued = c->next;
        child_free(c);
    }
}

static void handle_signals(void)
{
    struct signalfd_siginfo si;
    while (read(g.sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
            g.shutting_down = true;
            stop_queued();
            for (struct child *c = g.running; c; c = c->next)
                kill_group(c, SIGTERM);
        }
    }
    reap_all();
}

static void handle_frame(void)
{
    struct frame_header h;
    int n = frame_recv(INIT_CHAN, g.rx, &h);
    if (n == -EAGAIN || n == -EINTR)
        return;
    if (n == -EPROTO) {
        fprintf(stderr, "gust-init: malformed frame ignored\n");
        return;
    }
    if (n < 0) {
        g.chan_eof = true;
        return;
    }
    const uint8_t *body = g.rx + FRAME_HEADER_SIZE;
    switch (h.type) {
    case FRAME_INPUT: {
        if (g.shutting_down)
            return;
        uint8_t *data;
        size_t len;
        int r = frame_asm_feed(&g.asm_, &h, body, &data, &len);
        if (r == 1)
            queue_input(h.id, data, len);
        else if (r == -E2BIG)
            chan_send_error(h.id, FRAME_ERR_SPAWN, "input too large");
        else if (r < 0)
            chan_send_error(h.id, FRAME_ERR_SPAWN, "gust-init: cannot buffer input");
        return;
    }
    case FRAME_CANCEL:
        cancel_input(h.id);
        return;
    case FRAME_SHUTDOWN:
        g.shutting_down = true;
        stop_queued();
        return;
    default:
        return;
    }
}

static int run_per_input(void)
{
    frame_asm_init(&g.asm_, INIT_MAX_INPUT);
    chan_send(FRAME_READY, 0, NULL, 0);
    struct pollfd *pfds = NULL;
    struct child **owners = NULL;
    size_t cap = 0;
    for (;;) {
        if (g.chan_eof) {
            for (struct child *c = g.running; c; c = c->next)
                kill_group(c, SIGKILL);
            while (g.running) {
                int status;
                pid_t pid = waitpid(-1, &status, 0);
                if (pid < 0 && errno != EINTR)
                    break;
                for (struct child **pp = &g.running; *pp; pp = &(*pp)->next) {
                    if ((*pp)->pid == pid) {
                        struct child *c = *pp;
                        *pp = c->next;
                        child_free(c);
                        break;
                    }
                }
            }
            stop_queued();
            break;
        }
        if (g.shutting_down && !g.running)
            break;
        size_t need = 2 + 3 * (size_t)g.nrunning;
        if (need > cap) {
            cap = need * 2;
            struct pollfd *np = realloc(pfds, cap * sizeof *pfds);
            if (np)
                pfds = np;
            struct child **no = realloc(owners, cap * sizeof *owners);
            if (no)
                owners = no;
            if (!np || !no)
                die("%s", "out of memory");
        }
        size_t n = 0;
        pfds[n] = (struct pollfd){.fd = g.sigfd, .events = POLLIN};
        owners[n++] = NULL;
        pfds[n] = (struct pollfd){.fd = INIT_CHAN, .events = POLLIN};
        owners[n++] = NULL;
        for (struct child *c = g.running; c; c = c->next) {
            if (c->in_fd >= 0) {
                pfds[n] = (struct pollfd){.fd = c->in_fd, .events = POLLOUT};
                owners[n++] = c;
            }
            if (c->out_fd >= 0) {
                pfds[n] = (struct pollfd){.fd = c->out_fd, .events = POLLIN};
                owners[n++] = c;
            }
            if (c->err_fd >= 0) {
                pfds[n] = (struct pollfd){.fd = c->err_fd, .events = POLLIN};
                owners[n++] = c;
            }
        }
        if (poll(pfds, n, -1) < 0) {
            if (errno == EINTR)
                continue;
            die("poll: %s", strerror(errno));
        }
        /* Pipes first (children still listed), then signals (may free children). */
        for (size_t i = 2; i < n; i++) {
            if (!pfds[i].revents)
                continue;
            struct child *c = owners[i];
            if (pfds[i].fd == c->in_fd)
                child_write_input(c);
            else if (pfds[i].fd == c->out_fd)
                child_read_out(c);
            else if (pfds[i].fd == c->err_fd)
                child_read_err(c);
        }
        if (pfds[0].revents)
            handle_signals();
        if (pfds[1].revents & (POLLIN | POLLHUP | POLLERR))
            handle_frame();
        start_queued();
    }
    free(pfds);
    free(owners);
    frame_asm_free(&g.asm_);
    return 0;
}

/* ---------------------------------------------------------------- runner mode */

/* Forwards what is available on a pipe as LOG frames of stream id; closes it at EOF. */
static void forward_pipe(int *fd, uint64_t stream)
{
    while (*fd >= 0) {
        ssize_t n = read(*fd, g.chunk, sizeof g.chunk);
        if (n > 0) {
            chan_send(FRAME_LOG, stream, g.chunk, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        close_fd(fd);
    }
}

static int run_runner(void)
{
    int out[2] = {-1, -1}, err[2] = {-1, -1}, ep[2] = {-1, -1};
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 || pipe2(ep, O_CLOEXEC) < 0)
        die("pipe: %s", strerror(errno));
    /* A snapshot template's runner is PID 1 of a PID namespace owned by the
     * template's user namespace: it can then make a new one per forked container and
     * return to its own (setns) between forks. */
    if (g.template && unshare(CLONE_NEWPID) < 0)
        die("unshare the template's PID namespace: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        if (dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0 || fcntl(INIT_CHAN, F_SETFD, 0) < 0 ||
            setenv("GUST_RUNNER_FD", "3", 1) < 0) {
            int e = errno;
            ssize_t w = write(ep[1], &e, sizeof e);
            (void)w;
            _exit(127);
        }
        child_exec(ep[1]);
    }
    close_fd(&out[1]);
    close_fd(&err[1]);
    close_fd(&ep[1]);
    int e = wait_exec(ep[0]);
    close_fd(&ep[0]);
    if (e) {
        char msg[512];
        int len = snprintf(msg, sizeof msg, "gust-init: cannot run %s: %s\n", g.cmd[0], strerror(e));
        chan_send(FRAME_LOG, 2, msg, (size_t)len);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        struct frame_exit_body xb = {.kind = 1, .code = 127};
        chan_send(FRAME_EXIT, 0, &xb, sizeof xb);
        return 127;
    }
    fd_set_nonblock(out[0], true);
    fd_set_nonblock(err[0], true);
    bool exited = false;
    int status = 0;
    while (!exited) {
        struct pollfd p[3] = {
            {.fd = g.sigfd, .events = POLLIN},
            {.fd = out[0], .events = POLLIN},
            {.fd = err[0], .events = POLLIN},
        };
        if (poll(p, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            die("poll: %s", strerror(errno));
        }
        if (p[1].revents)
            forward_pipe(&out[0], 1);
        if (p[2].revents)
            forward_pipe(&err[0], 2);
        if (!p[0].revents)
            continue;
        struct signalfd_siginfo si;
        while (read(g.sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
            if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
                kill(pid, (int)si.ssi_signo);
        }
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
    forward_pipe(&out[0], 1);
    forward_pipe(&err[0], 2);
    close_fd(&out[0]);
    close_fd(&err[0]);
    struct frame_exit_body xb = {0};
    int code;
    if (WIFSIGNALED(status)) {
        xb.kind = 2;
        xb.code = WTERMSIG(status);
        code = 128 + WTERMSIG(status);
    } else {
        xb.kind = 1;
        xb.code = WEXITSTATUS(status);
        code = WEXITSTATUS(status);
    }
    chan_send(FRAME_EXIT, 0, &xb, sizeof xb);
    return code;
}

/* exec mode (see the header comment). */
static int run_exec(void)
{
    int ep[2];
    if (pipe2(ep, O_CLOEXEC) < 0)
        die("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null < 0 || dup2(null, 0) < 0 || dup2(INIT_CHAN, 1) < 0 || dup2(INIT_CHAN, 2) < 0) {
            int e = errno;
            ssize_t w = write(ep[1], &e, sizeof e);
            (void)w;
            _exit(127);
        }
        child_exec(ep[1]);
    }
    close_fd(&ep[1]);
    int e = wait_exec(ep[0]);
    close_fd(&ep[0]);
    if (e) {
        dprintf(INIT_CHAN, "gust-init: cannot run %s: %s\n", g.cmd[0], strerror(e));
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        return 127;
    }
    close(INIT_CHAN);
    for (;;) {
        struct signalfd_siginfo si;
        ssize_t n = read(g.sigfd, &si, sizeof si);
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            die("signalfd: %s", strerror(errno));
        if (n == (ssize_t)sizeof si && si.ssi_signo != SIGCHLD)
            kill(pid, (int)si.ssi_signo);
        int status;
        pid_t got;
        while ((got = waitpid(-1, &status, WNOHANG)) > 0) {
            if (got == pid)
                return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        struct pollfd p = {.fd = g.sigfd, .events = POLLIN};
        poll(&p, 1, -1);
    }
}

/* ---------------------------------------------------------------- snap_child mode */

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

/* PID 1 of a container forked from a snapshot template (proto/snap.h): makes the
 * container's namespaces and root, confines itself, then does what runner mode's
 * gust-init does for the forked runner (PID 2): forwards its output, reaps orphans,
 * passes SIGTERM on, and exits when it is gone. Its exit status is reported by the
 * template, the runner's parent. */
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

static int run_snap_child(void)
{
    int sync = SNAP_SYNC_FD;
    int out = SNAP_STDOUT_FD, errp = SNAP_STDERR_FD;
    for (int fd = SNAP_SYNC_FD; fd <= SNAP_STDERR_FD; fd++)
        if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
            die("fd %s of snap_child mode is not open", fd == SNAP_SYNC_FD ? "4" : fd == out ? "5" : "6");
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
            {.fd = g.sigfd, .events = POLLIN},
            {.fd = out, .events = POLLIN},
            {.fd = errp, .events = POLLIN},
            {.fd = runner, .events = POLLIN},
        };
        if (poll(p, 4, -1) < 0) {
            if (errno == EINTR)
                continue;
            die("poll: %s", strerror(errno));
        }
        if (p[1].revents)
            forward_pipe(&out, 1);
        if (p[2].revents)
            forward_pipe(&errp, 2);
        if (p[0].revents) {
            struct signalfd_siginfo si;
            while (read(g.sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
                if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
                    syscall(SYS_pidfd_send_signal, runner, (int)si.ssi_signo, NULL, 0);
            }
            while (waitpid(-1, NULL, WNOHANG) > 0) {
            }
        }
        if (p[3].revents)
            break;
    }
    forward_pipe(&out, 1);
    forward_pipe(&errp, 2);
    return 0;
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    fix_std_fds();
    if (fcntl(INIT_CHAN, F_SETFD, FD_CLOEXEC) < 0)
        die("the runner channel (fd 3) is not open: %s", strerror(errno));
    if (getpid() != 1)
        prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    setup_signals();
    if (g.mode == MODE_EXEC)
        return run_exec();
    if (g.mode == MODE_SNAP_CHILD)
        return run_snap_child();
    chan_send(FRAME_HELLO, 0, NULL, 0);
    return g.mode == MODE_RUNNER ? run_runner() : run_per_input();
}
