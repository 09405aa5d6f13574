/* per_input mode: gust-init speaks the runner protocol itself. It sends READY, then
 * runs one child process per INPUT (its own process group; stdin = the input, stdout
 * = the result, stderr = LOG frames), up to the concurrency at once, later inputs
 * queued in order. CANCEL kills an input's process group; SHUTDOWN, SIGTERM or SIGINT
 * drop the queue and end the mode once the running inputs are done. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/list.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "init/init.h"
#include "proto/frame.h"

#define INIT_MAX_OUTPUT ((size_t)64 << 20) /* stdout kept per input */
#define INIT_MAX_INPUT ((size_t)1 << 30)   /* the worker enforces its own, lower limit */
#define INIT_TAIL 4096                     /* stderr bytes kept for error messages */

/* One input: queued (pid 0) or running. */
struct child {
    struct list_node link;      /* in per_input.running or per_input.queued */
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
    char **cmd;
    unsigned concurrency;
    bool shutting_down;
    struct list_node running, queued; /* struct child; queued is FIFO */
    unsigned nrunning;
    struct frame_asm asm_;
    uint8_t rx[FRAME_MAX_DATAGRAM];
} per_input;

static const char *sig_name(int sig, char *tmp, size_t n)
{
    const char *abbrev = sigabbrev_np(sig);
    if (abbrev)
        snprintf(tmp, n, "SIG%s", abbrev);
    else
        snprintf(tmp, n, "signal %d", sig);
    return tmp;
}

/* Keeps the last INIT_TAIL bytes of the child's stderr (ud is the struct child). */
static void tail_append(void *ud, const char *data, size_t n)
{
    struct child *c = ud;
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
    init_close_fd(&c->in_fd);
    init_close_fd(&c->out_fd);
    init_close_fd(&c->err_fd);
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
    init_close_fd(&c->in_fd);
    free(c->input);
    c->input = NULL;
}

/* Reads what is available on stdout; closes it at EOF or on error. Output over
 * INIT_MAX_OUTPUT kills the input. */
static void child_read_out(struct child *c)
{
    while (c->out_fd >= 0) {
        if (c->too_big) {
            init_close_fd(&c->out_fd);
            return;
        }
        buf_reserve(&c->out, 65536);
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
        init_close_fd(&c->out_fd);
    }
}

/* Forwards what is available on stderr as LOG frames, keeping the tail. */
static void child_read_err(struct child *c)
{
    init_forward_pipe(&c->err_fd, 2, tail_append, c);
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
        init_chan_send_error(c->id, FRAME_ERR_CANCELLED, "cancelled");
    } else if (c->too_big) {
        snprintf(msg, sizeof msg, "output exceeds the limit of %zu MiB", INIT_MAX_OUTPUT >> 20);
        init_chan_send_error(c->id, FRAME_ERR_USER, msg);
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        init_chan_send(FRAME_OUTPUT, c->id, c->out.data, c->out.len);
    } else if (WIFEXITED(status)) {
        snprintf(msg, sizeof msg, "exit status %d%s%s", WEXITSTATUS(status), sep, tail);
        init_chan_send_error(c->id, FRAME_ERR_EXIT_STATUS, msg);
    } else {
        int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
        snprintf(msg, sizeof msg, "killed by signal %d (%s)%s%s", sig, sig_name(sig, sname, sizeof sname),
                 sep, tail);
        init_chan_send_error(c->id, FRAME_ERR_SIGNAL, msg);
    }
}

/* Forks the command for c. Returns false (after reporting) if it could not start. */
static bool child_start(struct child *c)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, ep[2] = {-1, -1};
    char msg[512];
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 ||
        pipe2(ep, O_CLOEXEC) < 0) {
        snprintf(msg, sizeof msg, "cannot run %s: pipe: %s", per_input.cmd[0], strerror(errno));
        goto fail;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(msg, sizeof msg, "cannot run %s: fork: %s", per_input.cmd[0], strerror(errno));
        goto fail;
    }
    if (pid == 0) {
        setpgid(0, 0);
        if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0)
            init_exec_failed(ep[1], errno);
        init_child_exec(per_input.cmd, ep[1]);
    }
    setpgid(pid, pid);
    init_close_fd(&in[0]);
    init_close_fd(&out[1]);
    init_close_fd(&err[1]);
    int e = init_await_exec(pid, ep);
    if (e) {
        snprintf(msg, sizeof msg, "cannot run %s: %s", per_input.cmd[0], strerror(e));
        goto fail;
    }
    c->pid = pid;
    c->in_fd = in[1];
    c->out_fd = out[0];
    c->err_fd = err[0];
    fd_set_nonblock(c->in_fd, true);
    fd_set_nonblock(c->out_fd, true);
    fd_set_nonblock(c->err_fd, true);
    list_push_front(&per_input.running, &c->link);
    per_input.nrunning++;
    child_write_input(c);
    return true;
fail:
    for (int i = 0; i < 2; i++) {
        init_close_fd(&in[i]);
        init_close_fd(&out[i]);
        init_close_fd(&err[i]);
        init_close_fd(&ep[i]);
    }
    init_chan_send_error(c->id, FRAME_ERR_SPAWN, msg);
    child_free(c);
    return false;
}

/* Starts queued inputs while there is room. */
static void start_queued(void)
{
    while (!list_empty(&per_input.queued) && per_input.nrunning < per_input.concurrency &&
           !per_input.shutting_down) {
        struct child *c = list_first_entry(&per_input.queued, struct child, link);
        list_remove(&c->link);
        child_start(c);
    }
}

/* Starts input id (taking the malloc'd data), or queues it when the concurrency is
 * used up or others wait before it. */
static void queue_input(uint64_t id, uint8_t *data, size_t len)
{
    struct child *c = xcalloc(1, sizeof *c);
    c->id = id;
    c->input = data;
    c->input_len = len;
    c->in_fd = c->out_fd = c->err_fd = -1;
    list_init(&c->link);
    if (per_input.nrunning < per_input.concurrency && list_empty(&per_input.queued)) {
        child_start(c);
        return;
    }
    list_push_back(&per_input.queued, &c->link);
}

/* CANCEL: a queued input is dropped and reported cancelled; a running one is killed
 * and reported when reaped. */
static void cancel_input(uint64_t id)
{
    frame_asm_drop(&per_input.asm_, FRAME_INPUT, id);
    list_for_each(c, &per_input.queued, struct child, link) {
        if (c->id == id) {
            list_remove(&c->link);
            init_chan_send_error(id, FRAME_ERR_CANCELLED, "cancelled");
            child_free(c);
            return;
        }
    }
    list_for_each(c, &per_input.running, struct child, link) {
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
        list_for_each(c, &per_input.running, struct child, link) {
            if (c->pid != pid)
                continue;
            list_remove(&c->link);
            per_input.nrunning--;
            child_read_out(c);
            child_read_err(c);
            kill_group(c, SIGKILL); /* leftovers of this input's process group */
            child_report(c, status);
            child_free(c);
            break;
        }
    }
}

/* Drops the inputs not started yet (unreported: the worker is ending the container). */
static void stop_queued(void)
{
    list_for_each_safe(c, &per_input.queued, struct child, link) {
        list_remove(&c->link);
        child_free(c);
    }
}

static void handle_signals(void)
{
    for (int sig; (sig = init_next_signal()) > 0;) {
        if (sig == SIGTERM || sig == SIGINT) {
            per_input.shutting_down = true;
            stop_queued();
            list_for_each(c, &per_input.running, struct child, link)
                kill_group(c, SIGTERM);
        }
    }
    reap_all();
}

static void handle_frame(void)
{
    struct frame_header h;
    int n = frame_recv(INIT_CHAN, per_input.rx, &h);
    if (n == -EAGAIN || n == -EINTR)
        return;
    if (n == -EPROTO) {
        fprintf(stderr, "gust-init: malformed frame ignored\n");
        return;
    }
    if (n < 0) {
        init_chan_eof = true;
        return;
    }
    const uint8_t *body = per_input.rx + FRAME_HEADER_SIZE;
    switch (h.type) {
    case FRAME_INPUT: {
        if (per_input.shutting_down)
            return;
        uint8_t *data;
        size_t len;
        int r = frame_asm_feed(&per_input.asm_, &h, body, &data, &len);
        if (r == 1)
            queue_input(h.id, data, len);
        else if (r == -E2BIG)
            init_chan_send_error(h.id, FRAME_ERR_SPAWN, "input too large");
        else if (r < 0)
            init_chan_send_error(h.id, FRAME_ERR_SPAWN, "gust-init: cannot buffer input");
        return;
    }
    case FRAME_CANCEL:
        cancel_input(h.id);
        return;
    case FRAME_SHUTDOWN:
        per_input.shutting_down = true;
        stop_queued();
        return;
    default:
        return;
    }
}

/* The worker is gone: kills every running input and waits for them, unreported. */
static void abandon_all(void)
{
    list_for_each(c, &per_input.running, struct child, link)
        kill_group(c, SIGKILL);
    while (!list_empty(&per_input.running)) {
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0 && errno != EINTR)
            break;
        list_for_each(c, &per_input.running, struct child, link) {
            if (c->pid == pid) {
                list_remove(&c->link);
                child_free(c);
                break;
            }
        }
    }
    stop_queued();
}

int init_run_per_input(char **cmd, unsigned concurrency)
{
    per_input.cmd = cmd;
    per_input.concurrency = concurrency;
    list_init(&per_input.running);
    list_init(&per_input.queued);
    frame_asm_init(&per_input.asm_, INIT_MAX_INPUT);
    init_chan_send(FRAME_READY, 0, NULL, 0);
    struct pollfd *pfds = NULL;
    struct child **owners = NULL;
    size_t cap = 0;
    for (;;) {
        if (init_chan_eof) {
            abandon_all();
            break;
        }
        if (per_input.shutting_down && list_empty(&per_input.running))
            break;
        size_t need = 2 + 3 * (size_t)per_input.nrunning;
        if (need > cap) {
            cap = need * 2;
            pfds = xreallocarray(pfds, cap, sizeof *pfds);
            owners = xreallocarray(owners, cap, sizeof *owners);
        }
        size_t n = 0;
        pfds[n] = (struct pollfd){.fd = init_sigfd, .events = POLLIN};
        owners[n++] = NULL;
        pfds[n] = (struct pollfd){.fd = INIT_CHAN, .events = POLLIN};
        owners[n++] = NULL;
        list_for_each(c, &per_input.running, struct child, link) {
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
            init_die("poll: %s", strerror(errno));
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
    frame_asm_free(&per_input.asm_);
    return 0;
}
