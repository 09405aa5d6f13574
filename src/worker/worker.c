/* The local worker (see worker/worker.h): containers, their runner channels, inputs,
 * logs, exits and OOM attribution. Everything runs on the event-loop thread.
 *
 * Per container: a SEQPACKET socketpair (our end non-blocking on the loop, the other
 * end fd 3 of gust-init), the sandbox's pidfd on the loop, a frame reassembler and a
 * FIFO of frames that did not fit in the socket (flushed on EV_WRITE). The warm path
 * (ctr_send_input -> datagrams, datagram -> on_output) allocates nothing when the
 * socket has room and the payload fits one datagram. */
#include "worker/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/caps.h"
#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "proto/frame.h"
#include "runtime/cgroup.h"
#include "runtime/confine.h"
#include "runtime/sandbox.h"
#include "runtime/sysfilter.h"
#include "runtime/userns.h"
#include "worker/egress.h"
#include "worker/gpu.h"
#include "worker/internal.h"

#define WORKER_SOCK_BUF (1 << 20)
#define WORKER_LINE_MAX (16 * 1024)
#define WORKER_DEFAULT_PAYLOAD ((size_t)64 << 20)
#define WORKER_RECV_BATCH 256
#define WORKER_FREE_WAIT_MS 5000

/* The thread-pool variables a container gets from its CPU allowance
 * (worker_cpu_threads) unless its env sets them: OpenMP (and PyTorch's intra-op pool,
 * which reads OMP_NUM_THREADS, then MKL_NUM_THREADS), OpenBLAS, MKL, Apple's vecLib
 * (numpy's list), numexpr. Each library reads its own variable first and falls back
 * to OMP_NUM_THREADS, so OMP_NUM_THREADS comes first here and a function that sets
 * only it gets none of the others: they would override its choice. */
static const char *const thread_vars[] = {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                          "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"};
#define NTHREAD_VARS (sizeof thread_vars / sizeof *thread_vars)


const char *ctr_fail_code(enum ctr_fail f)
{
    switch (f) {
    case CTR_FAIL_EXIT_STATUS: return "exit_status";
    case CTR_FAIL_CRASHED: return "crashed";
    case CTR_FAIL_OOM: return "oom";
    case CTR_FAIL_USER: return "function_error";
    case CTR_FAIL_SPAWN: return "spawn_failed";
    case CTR_FAIL_CANCELLED: return "cancelled";
    case CTR_FAIL_START: return "spawn_failed";
    }
    return "unknown";
}

/* ------------------------------------------------------------------ sending */

/* One datagram without blocking: 0, -EAGAIN (no room) or -errno. */
static int send_dgram(int fd, uint8_t type, uint8_t flags, uint64_t id, const uint8_t *body, size_t len)
{
    uint8_t hdr[FRAME_HEADER_SIZE];
    struct frame_header h = {.type = type, .flags = flags, .body_len = (uint32_t)len, .id = id};
    frame_header_encode(&h, hdr);
    struct iovec iov[2] = {{.iov_base = hdr, .iov_len = sizeof hdr},
                           {.iov_base = (void *)body, .iov_len = len}};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
    for (;;) {
        if (sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0)
            return 0;
        if (errno == EINTR)
            continue;
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

/* Sends data[*off..len) as datagrams of (type, id); advances *off. Always sends at
 * least one datagram (an empty payload is one empty frame). */
static int send_chunks(int fd, uint8_t type, uint64_t id, const uint8_t *data, size_t len, size_t *off)
{
    do {
        size_t chunk = len - *off > FRAME_MAX_BODY ? FRAME_MAX_BODY : len - *off;
        uint8_t flags = *off + chunk < len ? FRAME_F_MORE : 0;
        int r = send_dgram(fd, type, flags, id, data ? data + *off : NULL, chunk);
        if (r < 0)
            return r;
        *off += chunk;
    } while (*off < len);
    return 0;
}

static void set_want_write(struct ctr *c, bool on)
{
    if (c->want_write == on || !c->chan_watched)
        return;
    if (ev_io_mod(c->w->loop, c->chan, EV_READ | (on ? EV_WRITE : 0)) == 0)
        c->want_write = on;
}

static void sendq_free_all(struct ctr *c)
{
    list_for_each_safe(q, &c->sendq, struct sendq, link) {
        list_remove(&q->link);
        free(q->data);
        free(q);
    }
}

/* Sends queued frames in order until the socket is full. */
static int flush_queue(struct ctr *c)
{
    list_for_each_safe(q, &c->sendq, struct sendq, link) {
        int r = send_chunks(c->chan, q->type, q->id, q->data, q->len, &q->off);
        if (r == -EAGAIN)
            return 0;
        if (r < 0)
            return r;
        list_remove(&q->link);
        free(q->data);
        free(q);
    }
    set_want_write(c, false);
    return 0;
}

/* Sends a payload in order after anything queued; whatever does not fit now is
 * copied to the queue. Returns 0 or -EPIPE (channel gone). */
int ctr_send_frame(struct ctr *c, uint8_t type, uint64_t id, const void *data, size_t len)
{
    size_t off = 0;
    if (list_empty(&c->sendq)) {
        int r = send_chunks(c->chan, type, id, data, len, &off);
        if (r == 0)
            return 0;
        if (r != -EAGAIN)
            return -EPIPE;
    }
    struct sendq *q = xcalloc(1, sizeof *q);
    if (len > off)
        q->data = xmemdup((const uint8_t *)data + off, len - off);
    q->type = type;
    q->id = id;
    q->len = len - off;
    list_push_back(&c->sendq, &q->link);
    set_want_write(c, true);
    return 0;
}

/* ------------------------------------------------------------------ receiving */

static void emit_line(struct ctr *c, int stream, uint64_t input_id, const char *s, size_t n)
{
    if (n && s[n - 1] == '\r')
        n--;
    if (stream == 2 && n) {
        size_t k = n < sizeof c->last_err - 1 ? n : sizeof c->last_err - 1;
        memcpy(c->last_err, s, k);
        c->last_err[k] = 0;
    }
    if (c->cb->on_log)
        c->cb->on_log(c, c->ud, stream, input_id, s, n);
}

/* Splits a LOG chunk into lines; partial lines wait in c->line, capped at
 * WORKER_LINE_MAX (a longer line is emitted in pieces). */
static void handle_log(struct ctr *c, int stream, const char *p, size_t n)
{
    struct buf *b = &c->line[stream - 1];
    while (n) {
        const char *nl = memchr(p, '\n', n);
        size_t seg = nl ? (size_t)(nl - p) : n;
        if (b->len == 0 && nl && seg <= WORKER_LINE_MAX) {
            emit_line(c, stream, 0, p, seg);
        } else {
            size_t room = WORKER_LINE_MAX - b->len;
            size_t take = seg < room ? seg : room;
            buf_append(b, p, take);
            if (nl && take == seg) {
                emit_line(c, stream, 0, b->data, b->len);
                buf_reset(b);
            } else if (b->len == WORKER_LINE_MAX) {
                emit_line(c, stream, 0, b->data, b->len);
                buf_reset(b);
                p += take;
                n -= take;
                continue;
            } else {
                return;
            }
        }
        if (!nl)
            return;
        p += seg + 1;
        n -= seg + 1;
    }
}

/* Lines of one INPUT_LOG frame: whole lines (the last one ends with the frame), each
 * at most WORKER_LINE_MAX bytes (longer ones are split). */
static void handle_input_log(struct ctr *c, int stream, uint64_t input_id, const char *p, size_t n)
{
    while (n) {
        const char *nl = memchr(p, '\n', n);
        size_t seg = nl ? (size_t)(nl - p) : n;
        size_t take = seg < WORKER_LINE_MAX ? seg : WORKER_LINE_MAX;
        emit_line(c, stream, input_id, p, take);
        bool ends_line = take == seg && nl;
        p += take + (ends_line ? 1 : 0);
        n -= take + (ends_line ? 1 : 0);
    }
}

/* True if the cgroup saw an OOM kill not yet attributed (and attributes it). */
static bool oom_new(struct ctr *c)
{
    uint64_t k;
    if (sandbox_oom_kills(&c->sb, &k) < 0 || k <= c->oom_seen)
        return false;
    c->oom_seen = k;
    return true;
}

static void deliver(struct ctr *c, uint8_t type, uint64_t id, const uint8_t *data, size_t len)
{
    const struct worker_callbacks *cb = &c->w->cb;
    if (type == FRAME_OUTPUT) {
        if (cb->on_output)
            cb->on_output(c, c->ud, id, data, len);
        return;
    }
    if (type == FRAME_ITEM) {
        if (cb->on_item)
            cb->on_item(c, c->ud, id, data, len);
        return;
    }
    if (!cb->on_input_error)
        return;
    if (len == 0) {
        cb->on_input_error(c, c->ud, id, CTR_FAIL_CRASHED, "the container reported an error without a message");
        return;
    }
    const char *msg = (const char *)data + 1;
    enum ctr_fail kind;
    switch (data[0]) {
    case FRAME_ERR_EXIT_STATUS: kind = CTR_FAIL_EXIT_STATUS; break;
    case FRAME_ERR_USER: kind = CTR_FAIL_USER; break;
    case FRAME_ERR_SPAWN: kind = CTR_FAIL_SPAWN; break;
    case FRAME_ERR_CANCELLED: kind = CTR_FAIL_CANCELLED; break;
    case FRAME_ERR_SIGNAL:
    default: kind = CTR_FAIL_CRASHED; break;
    }
    /* A shell whose child the OOM killer took exits with a status (137), not a signal:
     * any failure with a new OOM kill in the cgroup is reported as OOM. */
    if ((data[0] == FRAME_ERR_SIGNAL || data[0] == FRAME_ERR_EXIT_STATUS) && oom_new(c)) {
        char m[160];
        snprintf(m, sizeof m, "out of memory: the function exceeded its memory limit of %u MiB", c->memory_mib);
        cb->on_input_error(c, c->ud, id, CTR_FAIL_OOM, m);
        return;
    }
    cb->on_input_error(c, c->ud, id, kind, msg);
}

static bool asm_pending(const struct frame_asm *a, uint8_t type, uint64_t id)
{
    for (size_t i = 0; i < FRAME_ASM_SLOTS; i++)
        if (a->slots[i].used && a->slots[i].type == type && a->slots[i].id == id)
            return true;
    return false;
}

static void handle_result(struct ctr *c, const struct frame_header *h, uint8_t *body)
{
    size_t max = c->w->cfg.max_payload;
    if (!(h->flags & FRAME_F_MORE) && h->body_len <= max && !asm_pending(&c->asm_, h->type, h->id)) {
        body[h->body_len] = 0;
        deliver(c, h->type, h->id, body, h->body_len);
        return;
    }
    uint8_t *out;
    size_t len;
    int r = frame_asm_feed(&c->asm_, h, body, &out, &len);
    if (r == 1) {
        deliver(c, h->type, h->id, out, len);
        free(out);
        return;
    }
    if (r == 0 || !c->cb->on_input_error)
        return;
    char m[160];
    if (r == -E2BIG)
        snprintf(m, sizeof m, "the %s exceeds the maximum payload size of %zu bytes",
                 h->type == FRAME_ITEM ? "yielded item" : "output", max);
    else
        snprintf(m, sizeof m, "cannot reassemble the output: %s", strerror(-r));
    c->cb->on_input_error(c, c->ud, h->id, r == -E2BIG ? CTR_FAIL_USER : CTR_FAIL_CRASHED, m);
}

/* Before READY counts: every task of the container holds no more than its policy
 * allows (runtime/taskcheck.h). A forked container's runner drops the template's
 * privileges in code the image supplies, so this is where a runner that skipped the
 * drop is caught; for other containers it confirms what the sandbox set up. On a
 * violation, or when the tasks cannot be read, the container is killed and its start
 * fails with the reason (ctr_finish). */
static bool ctr_tasks_confined(struct ctr *c)
{
    struct gerr err;
    uint64_t t0 = mono_ns();
    int r = taskcheck_cgroup(c->sb.cgroup_pids, c->sb.cgroup_v2, &c->check, &err);
    log_debug("worker", "%s: tasks checked in %.3f ms", c->id, (double)(mono_ns() - t0) / 1e6);
    if (r == 0)
        return true;
    if (r != -EPERM)
        gerr_prefix(&err, "cannot check the container's privileges");
    snprintf(c->refused, sizeof c->refused, "%s", err.msg);
    log_warn("worker", "%s: killed before it was ready: %s", c->id, err.msg);
    sandbox_signal(&c->sb, SIGKILL);
    return false;
}

static void handle_frame(struct ctr *c, const struct frame_header *h, uint8_t *body)
{
    switch (h->type) {
    case FRAME_HELLO:
        log_debug("worker", "%s: gust-init up after %.2f ms", c->id, (double)(mono_ns() - c->start_ns) / 1e6);
        break;
    case FRAME_READY:
        if (!c->ready && !c->exited && !c->refused[0] && ctr_tasks_confined(c)) {
            c->ready = true;
            c->ready_ns = mono_ns();
            if (c->cb->on_ready)
                c->cb->on_ready(c, c->ud);
        }
        break;
    case FRAME_OUTPUT:
    case FRAME_ERROR:
    case FRAME_ITEM:
        handle_result(c, h, body);
        break;
    case FRAME_INPUT_MORE_ACK:
        if (h->body_len >= FRAME_INPUT_MORE_ACK_SIZE && c->cb->on_input_more_ack) {
            uint64_t n = 0;
            for (size_t i = 0; i < FRAME_INPUT_MORE_ACK_SIZE; i++)
                n |= (uint64_t)body[i] << (8 * i);
            c->cb->on_input_more_ack(c, c->ud, h->id, n);
        }
        break;
    case FRAME_LOG:
        if (h->id == 1 || h->id == 2)
            handle_log(c, (int)h->id, (const char *)body, h->body_len);
        break;
    case FRAME_INPUT_LOG:
        if (h->body_len >= 1 && (body[0] == 1 || body[0] == 2))
            handle_input_log(c, body[0], h->id, (const char *)body + 1, h->body_len - 1);
        break;
    case FRAME_CHILD_EXIT:
        if (c->template_of)
            snapshot_on_child_exit(c, h->id, body, h->body_len);
        break;
    case FRAME_EXIT:
        if (h->body_len >= sizeof c->exitb) {
            memcpy(&c->exitb, body, sizeof c->exitb);
            c->have_exit = true;
        }
        break;
    default:
        log_warn("worker", "%s: unexpected frame type %u ignored", c->id, h->type);
        break;
    }
}

/* Reads queued datagrams (at most `batch`). Marks the channel dead at EOF. */
static void chan_drain(struct ctr *c, int batch)
{
    for (int i = 0; i < batch && c->chan >= 0; i++) {
        struct frame_header h;
        int n = frame_recv(c->chan, c->rx, &h);
        if (n == -EAGAIN)
            return;
        if (n == -EPROTO) {
            log_warn("worker", "%s: malformed frame ignored", c->id);
            continue;
        }
        if (n < 0) {
            if (c->chan_watched) {
                ev_io_del(c->w->loop, c->chan);
                c->chan_watched = false;
            }
            close(c->chan);
            c->chan = -1;
            sendq_free_all(c);
            return;
        }
        handle_frame(c, &h, c->rx + FRAME_HEADER_SIZE);
    }
}

void ctr_on_chan(struct ev_loop *loop, int fd, uint32_t events, void *data)
{
    struct ctr *c = data;
    if ((events & EV_WRITE) && !list_empty(&c->sendq) && flush_queue(c) < 0)
        sendq_free_all(c);
    if (events & (EV_READ | EV_ERROR))
        chan_drain(c, WORKER_RECV_BATCH);
}

void ctr_on_pidfd(struct ev_loop *loop, int fd, uint32_t events, void *data)
{
    struct ctr *c = data;
    struct gerr err;
    int r = sandbox_reap(&c->sb, &err);
    if (r == 0)
        return;
    if (r < 0)
        log_error("worker", "%s: %s", c->id, err.msg);
    if (c->forked && snapshot_forked_exit_pending(c))
        return;
    ctr_finish(c);
}

/* ------------------------------------------------------------------ exit */

static void describe_status(const struct ctr *c, char *out, size_t n)
{
    char sname[24] = "";
    int kind, code;
    if (c->have_exit) {
        kind = c->exitb.kind;
        code = c->exitb.code;
    } else if (WIFSIGNALED(c->sb.exit_status)) {
        kind = FRAME_EXIT_SIGNALED;
        code = WTERMSIG(c->sb.exit_status);
    } else {
        kind = FRAME_EXIT_EXITED;
        code = WEXITSTATUS(c->sb.exit_status);
    }
    if (kind == FRAME_EXIT_SIGNALED) {
        const char *a = sigabbrev_np(code);
        if (a)
            snprintf(sname, sizeof sname, " (SIG%s)", a);
        snprintf(out, n, "killed by signal %d%s", code, sname);
    } else {
        snprintf(out, n, "exited with status %d", code);
    }
}

static void ctr_unlink(struct ctr *c)
{
    list_remove(&c->link);
}


void ctr_release(struct ctr *c)
{
    if (c->forked)
        snapshot_forked_release(c);
    if (c->userns_slot >= 0)
        c->w->slots[c->userns_slot].used = false;
    if (c->egress_slot >= 0)
        worker_egress_give(c->w, c->egress_slot);
    if (c->kill_timer)
        ev_timer_cancel(c->w->loop, c->kill_timer);
    if (c->chan_watched)
        ev_io_del(c->w->loop, c->chan);
    if (c->pidfd_watched)
        ev_io_del(c->w->loop, c->sb.pidfd);
    if (c->chan >= 0)
        close(c->chan);
    sendq_free_all(c);
    frame_asm_free(&c->asm_);
    buf_free(&c->line[0]);
    buf_free(&c->line[1]);
    free(c->rx);
    free(c);
}

/* Cgroup counters of sb into st (fields stay as they are where a file cannot be read). */
static void read_cgroup_stats(const struct sandbox *sb, struct ctr_stats *st)
{
    uint64_t mem, cpu, peak, ooms;
    if (sandbox_usage(sb, &mem, &cpu) == 0) {
        st->memory_bytes = mem;
        st->cpu_ns = cpu;
    }
    if (sandbox_memory_peak(sb, &peak) == 0)
        st->memory_peak_bytes = peak;
    if (sandbox_oom_kills(sb, &ooms) == 0)
        st->oom_kills = ooms;
}

/* PID 1 is gone: collects the last frames, cleans the sandbox up, reports, frees. */
void ctr_finish(struct ctr *c)
{
    c->exited = true;
    chan_drain(c, 1 << 20);
    for (int s = 0; s < 2; s++)
        if (c->line[s].len) {
            emit_line(c, s + 1, 0, c->line[s].data, c->line[s].len);
            buf_reset(&c->line[s]);
        }
    if (c->kill_timer) {
        ev_timer_cancel(c->w->loop, c->kill_timer);
        c->kill_timer = 0;
    }
    if (c->pidfd_watched) {
        ev_io_del(c->w->loop, c->sb.pidfd);
        c->pidfd_watched = false;
    }
    bool oom = oom_new(c);
    read_cgroup_stats(&c->sb, &c->stats);
    struct gerr err;
    if (sandbox_destroy(&c->sb, &err) < 0)
        log_warn("worker", "%s: cleanup: %s", c->id, err.msg);

    char status[64], msg[512];
    int kind;
    describe_status(c, status, sizeof status);
    const char *tail_sep = c->last_err[0] ? ": " : "";
    if (c->refused[0] && !c->stop_requested && !c->kill_requested) {
        kind = CTR_FAIL_START;
        snprintf(msg, sizeof msg, "%s", c->refused);
    } else if (!c->ready && !c->stop_requested && !c->kill_requested) {
        kind = CTR_FAIL_START;
        if (oom)
            snprintf(msg, sizeof msg, "out of memory while starting: the memory limit is %u MiB", c->memory_mib);
        else
            snprintf(msg, sizeof msg, "the container exited before it was ready: %s%s%s", status, tail_sep,
                     c->last_err);
    } else if (oom) {
        kind = CTR_FAIL_OOM;
        snprintf(msg, sizeof msg, "out of memory: the function exceeded its memory limit of %u MiB", c->memory_mib);
    } else if (c->stop_requested || c->kill_requested) {
        kind = 0;
        snprintf(msg, sizeof msg, "stopped (%s)", status);
    } else {
        kind = CTR_FAIL_CRASHED;
        snprintf(msg, sizeof msg, "%s%s%s", status, tail_sep, c->last_err);
    }
    ctr_unlink(c);
    if (c->cb->on_exit)
        c->cb->on_exit(c, c->ud, kind, msg);
    ctr_release(c);
}

/* ------------------------------------------------------------------ control API */

int ctr_send_input(struct ctr *c, uint64_t input_id, const char *call_id, const void *data, size_t len,
                   struct gerr *err)
{
    if (c->exited || c->chan < 0)
        return gerr_set(err, EPIPE, "container %s is gone", c->id);
    if (len > c->w->cfg.max_payload)
        return gerr_set(err, E2BIG, "input of %zu bytes exceeds the maximum payload size of %zu bytes", len,
                        c->w->cfg.max_payload);
    int r = call_id && call_id[0] ? ctr_send_frame(c, FRAME_INPUT_CALL, input_id, call_id, strlen(call_id)) : 0;
    if (r == 0)
        r = ctr_send_frame(c, FRAME_INPUT, input_id, data, len);
    if (r < 0)
        return gerr_set(err, EPIPE, "container %s: the runner channel is closed", c->id);
    return 0;
}

int ctr_cancel_input(struct ctr *c, uint64_t input_id)
{
    if (c->exited || c->chan < 0)
        return -EPIPE;
    return ctr_send_frame(c, FRAME_CANCEL, input_id, NULL, 0);
}

int ctr_item_ack(struct ctr *c, uint64_t input_id, uint64_t bytes)
{
    if (c->exited || c->chan < 0)
        return -EPIPE;
    uint8_t body[FRAME_ITEM_ACK_SIZE];
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (uint8_t)(bytes >> (8 * i));
    return ctr_send_frame(c, FRAME_ITEM_ACK, input_id, body, sizeof body);
}

int ctr_send_input_more(struct ctr *c, uint64_t input_id, const void *data, size_t len)
{
    if (c->exited || c->chan < 0)
        return -EPIPE;
    return ctr_send_frame(c, FRAME_INPUT_MORE, input_id, data, len);
}

static void on_kill_timer(struct ev_loop *loop, void *data)
{
    struct ctr *c = data;
    c->kill_timer = 0;
    if (!c->sb.reaped)
        sandbox_signal(&c->sb, SIGKILL);
}

void ctr_stop(struct ctr *c, uint32_t grace_ms)
{
    if (c->exited || c->stop_requested || c->kill_requested)
        return;
    c->stop_requested = true;
    if (c->chan >= 0)
        (void)ctr_send_frame(c, FRAME_SHUTDOWN, 0, NULL, 0);
    sandbox_signal(&c->sb, SIGTERM);
    c->kill_timer = ev_timer_add(c->w->loop, grace_ms, on_kill_timer, c);
    if (!c->kill_timer)
        sandbox_signal(&c->sb, SIGKILL);
}

void ctr_kill(struct ctr *c)
{
    if (c->exited)
        return;
    c->kill_requested = true;
    sandbox_signal(&c->sb, SIGKILL);
}

const char *ctr_id(const struct ctr *c)
{
    return c->id;
}

int ctr_pid(const struct ctr *c)
{
    return c->sb.pid;
}

void *ctr_userdata(const struct ctr *c)
{
    return c->ud;
}

int ctr_stats(const struct ctr *c, struct ctr_stats *out)
{
    *out = c->stats;
    if (!c->exited)
        read_cgroup_stats(&c->sb, out);
    out->gpu_util_avg_pct = c->stats.gpu_samples ? c->gpu_util_sum / c->stats.gpu_samples : 0;
    return 0;
}

void worker_sample_gpus(struct worker *w)
{
    list_for_each(c, &w->ctrs, struct ctr, link) {
        if (c->exited || !c->ngpus)
            continue;
        uint64_t util_sum = 0, mem = 0;
        int n = 0;
        for (int i = 0; i < c->ngpus; i++) {
            uint32_t u;
            uint64_t m;
            if (gpu_sample(&w->cfg.gpus[c->gpu_idx[i]], &u, &m) == 0) {
                util_sum += u;
                mem += m;
                n++;
            }
        }
        if (!n)
            continue;
        c->stats.ngpus = n;
        c->stats.gpu_util_pct = (uint32_t)(util_sum / (uint64_t)n);
        c->stats.gpu_mem_bytes = mem;
        if (mem > c->stats.gpu_mem_peak_bytes)
            c->stats.gpu_mem_peak_bytes = mem;
        c->stats.gpu_samples++;
        c->gpu_util_sum += c->stats.gpu_util_pct;
    }
}

const struct sandbox_timing *ctr_timing(const struct ctr *c)
{
    return &c->sb.timing;
}

/* Host uid (and gid) of container root in uid range slot. */
static uint32_t slot_host_id(const struct worker *w, int slot)
{
    return (uint32_t)(w->cfg.userns_base + (uint64_t)slot * w->cfg.userns_size);
}

uint32_t ctr_host_uid(const struct ctr *c)
{
    /* A forked container runs in its template's user namespace. */
    if (c->forked)
        return c->fork_host_uid;
    return c->userns_slot < 0 ? 0 : slot_host_id(c->w, c->userns_slot);
}

int ctr_usage(const struct ctr *c, uint64_t *memory_bytes, uint64_t *cpu_ns)
{
    if (c->exited)
        return -ESRCH;
    return sandbox_usage(&c->sb, memory_bytes, cpu_ns);
}

uint64_t ctr_start_ns(const struct ctr *c)
{
    return c->ready ? c->ready_ns - c->start_ns : 0;
}

/* ------------------------------------------------------------------ start */

/* Whether a resolv.conf names at least one nameserver and none on the loopback
 * (127.0.0.0/8, ::1), which a container's own network namespace could not reach. */
static bool resolv_conf_usable(const char *path)
{
    AUTO_FREE char *text = NULL;
    size_t len;
    if (file_read_all(path, 1 << 16, &text, &len) < 0)
        return false;
    int servers = 0;
    for (char *line = text; line && *line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char addr[64];
        if (sscanf(line, " nameserver %63s", addr) == 1) {
            if (!strncmp(addr, "127.", 4) || !strcmp(addr, "::1"))
                return false;
            servers++;
        }
        line = next;
    }
    return servers > 0;
}

static bool env_has(char *const *env, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; env && env[i]; i++)
        if (!strncmp(env[i], name, n) && env[i][n] == '=')
            return true;
    return false;
}

unsigned worker_cpu_threads(uint32_t cpu_millicores, uint32_t cpu_limit_millicores, unsigned host_cpus)
{
    uint32_t m = cpu_limit_millicores ? cpu_limit_millicores : cpu_millicores;
    unsigned n = m / 1000 + (m % 1000 != 0);
    if (host_cpus && n > host_cpus)
        n = host_cpus;
    return n ? n : 1;
}

/* The CPUs this process may run on (containers are cloned from it and keep its
 * affinity): its affinity mask, else the online CPUs. */
static unsigned host_cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return (unsigned)CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN); /* more CPUs than a cpu_set_t holds */
    return n > 0 ? (unsigned)n : 1;
}

void worker_set_sock_buf(int fd)
{
    int v = WORKER_SOCK_BUF;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof v) < 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof v) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
}

/* Locks slot's host uid range on this host: 0; -EAGAIN (slot marked foreign) when
 * another open of WORKER_USERNS_LOCK (another daemon, or another worker here) holds any
 * of it; another negative errno on failure.
 *
 * Why OFD byte-range locks on one file rather than a lock file per range: the lock
 * covers exactly the uids [base, base + size), so daemons with different --userns-base
 * or --userns-size that overlap only in part still exclude each other; it is one fd
 * per worker instead of one per slot; and like flock (unlike classic POSIX locks) it
 * belongs to the open file description, so two workers in one process conflict too and
 * nothing else this process opens or closes drops it. The kernel drops it when the
 * daemon exits, SIGKILL included: nothing stale is left. */
static int slot_lock(struct worker *w, uint32_t slot, struct gerr *err)
{
    if (w->userns_lock_fd < 0) {
        w->userns_lock_fd = open(WORKER_USERNS_LOCK, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (w->userns_lock_fd < 0)
            return gerr_sys(err, errno, "open %s (host-wide uid range locks)", WORKER_USERNS_LOCK);
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = (off_t)slot_host_id(w, (int)slot),
                       .l_len = (off_t)w->cfg.userns_size};
    if (fcntl(w->userns_lock_fd, F_OFD_SETLK, &fl) == 0)
        return 0;
    if (errno == EAGAIN || errno == EACCES) {
        w->slots[slot].foreign = true;
        return -EAGAIN;
    }
    return gerr_sys(err, errno, "lock uids %u+%u in %s", slot_host_id(w, (int)slot), w->cfg.userns_size,
                    WORKER_USERNS_LOCK);
}

static void slot_unlock(struct worker *w, uint32_t slot)
{
    struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = (off_t)slot_host_id(w, (int)slot),
                       .l_len = (off_t)w->cfg.userns_size};
    fcntl(w->userns_lock_fd, F_OFD_SETLK, &fl);
}

/* Makes slot ours: its range locked and its namespace created. -EAGAIN: foreign. */
static int slot_claim(struct worker *w, uint32_t slot, struct gerr *err)
{
    int r = slot_lock(w, slot, err);
    if (r < 0)
        return r;
    w->slots[slot].foreign = false;
    r = userns_create(slot_host_id(w, (int)slot), w->cfg.userns_size, &w->slots[slot].fd, err);
    if (r < 0)
        slot_unlock(w, slot);
    return r;
}

/* A free user-namespace range, its namespace created; -EAGAIN when all are used.
 * Prefers ranges already ours (no system call), then ones never tried, and only when
 * those run out retries the ranges other daemons held (they may have exited since). */
static int slot_take(struct worker *w, const char *what, struct sandbox_userns *uns, int *slot_out,
                     struct gerr *err)
{
    int slot = -1;
    for (uint32_t i = 0; slot < 0 && i < w->cfg.userns_slots; i++)
        if (!w->slots[i].used && w->slots[i].fd >= 0)
            slot = (int)i;
    uint32_t foreign = 0;
    for (int pass = 0; slot < 0 && pass < 2; pass++) {
        foreign = 0;
        for (uint32_t i = 0; slot < 0 && i < w->cfg.userns_slots; i++) {
            if (w->slots[i].fd >= 0 || (pass == 0 && w->slots[i].foreign))
                continue;
            int r = slot_claim(w, i, err);
            if (r == 0)
                slot = (int)i;
            else if (r == -EAGAIN)
                foreign++;
            else
                return gerr_prefix(err, "%s", what);
        }
    }
    if (slot < 0)
        return gerr_set(err, EAGAIN, "%s: all %u user-namespace ranges are in use (%u of them by other daemons "
                        "on this host; raise --userns-slots or give each daemon its own --userns-base)", what,
                        w->cfg.userns_slots, foreign);
    uint32_t host_id = slot_host_id(w, slot);
    *uns = (struct sandbox_userns){.fd = w->slots[slot].fd, .host_uid = host_id, .host_gid = host_id};
    *slot_out = slot;
    return 0;
}

int worker_egress_take(struct worker *w, const char *what, struct sandbox_egress *eg, int *slot, struct gerr *err)
{
    pthread_mutex_lock(&w->egress_mu);
    int r = 0;
    if (!w->egress) {
        r = egress_new(w->cgroup_parent, w->cfg.egress_subnet, w->cfg.egress_allow_private, WORKER_RESOLV_CONF,
                       &w->egress, err);
        if (r < 0)
            gerr_prefix(err, "%s: egress network", what);
    }
    if (r == 0 && (r = egress_acquire(w->egress, eg, slot, err)) < 0)
        gerr_prefix(err, "%s", what);
    pthread_mutex_unlock(&w->egress_mu);
    return r;
}

void worker_egress_give(struct worker *w, int slot)
{
    pthread_mutex_lock(&w->egress_mu);
    egress_release(w->egress, slot);
    pthread_mutex_unlock(&w->egress_mu);
}

int worker_build_lane_egress(struct worker_build_lane *lane)
{
    struct worker *w = lane->worker;
    if (__atomic_load_n(&lane->egress_ok, __ATOMIC_ACQUIRE))
        return 0;
    struct gerr eerr;
    int slot;
    pthread_mutex_lock(&w->egress_mu);
    bool done = lane->egress_ok;
    pthread_mutex_unlock(&w->egress_mu);
    if (done)
        return 0;
    if (worker_egress_take(w, "image build", &lane->egress, &slot, &eerr) < 0) {
        snprintf(lane->egress_err, sizeof lane->egress_err, "%s", eerr.msg);
        return -ENETUNREACH;
    }
    __atomic_store_n(&lane->egress_ok, true, __ATOMIC_RELEASE);
    return 0;
}

int worker_build_lane_reserve(struct worker *w, struct worker_build_lane *lane, struct gerr *err)
{
    memset(lane, 0, sizeof *lane);
    int slot;
    int r = slot_take(w, "image build", &lane->userns, &slot, err);
    if (r < 0)
        return r;
    w->slots[slot].used = true;
    lane->id_count = w->cfg.userns_size;
    lane->worker = w;
    lane->resolv_conf_ok = resolv_conf_usable(WORKER_RESOLV_CONF);
    lane->seccomp = &w->default_filter;
    lane->init_fd = w->init_fd;
    lane->state_root = w->state_root;
    lane->cgroup_parent = w->cgroup_parent;
    return 0;
}

struct ctr *ctr_alloc(struct worker *w, const struct ctr_spec *spec, void *ud)
{
    struct ctr *c = xcalloc(1, sizeof *c);
    uint8_t *rx = xmalloc(FRAME_MAX_DATAGRAM + 1);
    c->w = w;
    list_init(&c->link);
    list_init(&c->sendq);
    list_init(&c->fork_link);
    c->ud = ud;
    c->cb = &w->cb;
    c->userns_slot = -1;
    c->egress_slot = -1;
    c->sync = -1;
    c->ngpus = spec->ngpus;
    memcpy(c->gpu_idx, spec->gpu_indices, sizeof c->gpu_idx);
    c->rx = rx;
    c->chan = -1;
    c->mode = spec->mode;
    c->memory_mib = spec->memory_mib;
    c->check = (struct taskcheck_policy){.caps = CAPS_CONTAINER, .min_filters = 1};
    c->start_ns = mono_ns();
    snprintf(c->id, sizeof c->id, "%s", spec->id);
    frame_asm_init(&c->asm_, w->cfg.max_payload);
    return c;
}

int ctr_watch(struct ctr *c, struct gerr *err)
{
    int r = 0;
    if (!c->chan_watched) {
        r = ev_io_add(c->w->loop, c->chan, EV_READ, ctr_on_chan, c);
        if (r < 0)
            return gerr_sys(err, -r, "container %s: watch on the event loop", c->id);
        c->chan_watched = true;
    }
    if (!c->pidfd_watched && c->sb.pidfd >= 0) {
        r = ev_io_add(c->w->loop, c->sb.pidfd, EV_READ, ctr_on_pidfd, c);
        if (r < 0)
            return gerr_sys(err, -r, "container %s: watch on the event loop", c->id);
        c->pidfd_watched = true;
    }
    return 0;
}

void ctr_link(struct ctr *c)
{
    list_push_front(&c->w->ctrs, &c->link);
}

struct gpu_mounts *ctr_gpu_mounts(struct worker *w, const struct ctr_spec *spec, struct gerr *err)
{
    struct gpu_mounts *gm = xmalloc(sizeof *gm);
    if (gpu_passthrough(&w->cfg, spec->gpu_indices, spec->ngpus, gm, err) < 0) {
        free(gm);
        gerr_prefix(err, "container %s", spec->id);
        return NULL;
    }
    return gm;
}

int ctr_seccomp(struct worker *w, const struct ctr_spec *spec, bool template, struct sock_fprog *own,
                const struct sock_fprog **prog, struct gerr *err)
{
    if (!spec->ndeny_syscalls) {
        *prog = template ? &w->template_filter : &w->default_filter;
        return 0;
    }
    int r = (template ? sysfilter_build_template : sysfilter_build)((const char *const *)spec->deny_syscalls,
                                                                  spec->ndeny_syscalls, own, err);
    if (r < 0)
        return gerr_prefix(err, "container %s: seccomp profile", spec->id);
    *prog = own;
    return 0;
}

int worker_start(struct worker *w, const struct ctr_spec *spec, void *ud, struct ctr **out, struct gerr *err)
{
    return ctr_start(w, spec, ud, false, out, err);
}

int ctr_start(struct worker *w, const struct ctr_spec *spec, void *ud, bool template, struct ctr **out,
              struct gerr *err)
{
    if (!spec->id || !*spec->id || strlen(spec->id) >= sizeof((struct ctr *)0)->id)
        return gerr_set(err, EINVAL, "container id must be 1..63 characters");
    if (!spec->rootfs || !*spec->rootfs)
        return gerr_set(err, EINVAL, "container %s: no rootfs", spec->id);
    if (!spec->command || !spec->command[0])
        return gerr_set(err, EINVAL, "container %s: empty command", spec->id);
    if (spec->ngpus < 0 || spec->ngpus > CTR_MAX_GPUS)
        return gerr_set(err, EINVAL, "container %s: %d GPUs requested, at most %d", spec->id, spec->ngpus,
                        CTR_MAX_GPUS);
    uint64_t t0 = mono_ns();

    struct sandbox_config sc = {
        .id = spec->id,
        .rootfs = spec->rootfs,
        .state_root = w->state_root,
        .cgroup_parent = w->cgroup_parent,
        .disk_mib = spec->disk_mib,
        .memory_mib = spec->memory_mib,
        .cpu_millicores = spec->cpu_millicores,
        .cpu_limit_millicores = spec->cpu_limit_millicores,
        .pids_max = spec->pids_max,
        .open_files = spec->open_files,
        .init_fd = w->init_fd,
        .workdir = spec->workdir,
    };
    if (spec->host_usr)
        sc.binds[sc.nbinds++] = (struct sandbox_bind){"/usr", "/usr", true};
    if (spec->nmounts > 16)
        return gerr_set(err, E2BIG, "container %s: %zu mounts, at most 16", spec->id, spec->nmounts);
    for (size_t i = 0; i < spec->nmounts; i++)
        sc.binds[sc.nbinds++] = (struct sandbox_bind){spec->mount_dirs[i], spec->mount_paths[i], true};
    if (spec->nvolumes > SANDBOX_MAX_VOLUMES)
        return gerr_set(err, E2BIG, "container %s: %zu volumes, at most %d", spec->id, spec->nvolumes,
                        SANDBOX_MAX_VOLUMES);
    if (spec->nvolumes && template)
        return gerr_set(err, ENOTSUP, "container %s: a snapshot template cannot have volumes", spec->id);
    /* Volume directories are under gustd's data dir: 512 bytes is plenty. */
    char vol_upper[SANDBOX_MAX_VOLUMES][512], vol_work[SANDBOX_MAX_VOLUMES][512];
    for (size_t i = 0; i < spec->nvolumes; i++) {
        if (snprintf(vol_upper[i], sizeof vol_upper[i], "%s/upper", spec->volume_dirs[i]) >=
                (int)sizeof vol_upper[i] ||
            snprintf(vol_work[i], sizeof vol_work[i], "%s/work", spec->volume_dirs[i]) >= (int)sizeof vol_work[i])
            return gerr_set(err, ENAMETOOLONG, "container %s: volume directory too long", spec->id);
        sc.volumes[sc.nvolumes++] = (struct sandbox_volume){spec->volume_lowers[i], vol_upper[i], vol_work[i],
                                                            spec->volume_paths[i]};
    }
    /* Egress containers resolve names with the host's resolvers, when those are
     * reachable from a container (not on the host's loopback). */
    if (spec->network == CTR_NET_EGRESS && resolv_conf_usable(WORKER_RESOLV_CONF))
        sc.binds[sc.nbinds++] = (struct sandbox_bind){WORKER_RESOLV_CONF, "/etc/resolv.conf", true};
    AUTO_FREE struct gpu_mounts *gm = ctr_gpu_mounts(w, spec, err);
    if (!gm)
        return -err->code;
    int r;
    for (int i = 0; i < gm->ndevices; i++)
        sc.devices[sc.ndevices++] = (struct sandbox_device){gm->dev_host[i], gm->dev_ctr[i]};
    for (int i = 0; i < gm->nlibs; i++) {
        if (sc.nbinds >= SANDBOX_MAX_BINDS)
            return gerr_set(err, E2BIG, "container %s: too many GPU driver files to bind", spec->id);
        sc.binds[sc.nbinds++] = (struct sandbox_bind){gm->lib_host[i], gm->lib_ctr[i], true};
    }

    /* Seccomp: the default profile, or one compiled for this function's additions. */
    AUTO_SYSFILTER struct sock_fprog own_filter = {0};
    r = ctr_seccomp(w, spec, template, &own_filter, &sc.seccomp, err);
    if (r < 0)
        return r;
    sc.snapshot_template = template;

    /* argv: gust-init --mode M --concurrency N -- command... */
    size_t ncmd = 0;
    while (spec->command[ncmd])
        ncmd++;
    AUTO_FREE char **argv = xcalloc(ncmd + 8, sizeof *argv);
    size_t nenv = 0;
    while (spec->env && spec->env[nenv])
        nenv++;
    AUTO_FREE char **envp = xcalloc(nenv + 10 + GPU_ENV_MAX + NTHREAD_VARS, sizeof *envp);
    char conc[16], idvar[96], ldpath[1200], threads[NTHREAD_VARS][48];
    /* The API inside (ctr_spec.api_token): ours replace what the function's env says.
     * A snapshot template gets the socket without a token: the containers forked from
     * it keep its mounts and get their own tokens when resumed (snapshot.c). */
    bool api = w->cfg.api_socket && spec->api_token && !template;
    bool api_bind = w->cfg.api_socket && (spec->api_token || template);
    AUTO_FREE char *tokvar = NULL;
    snprintf(conc, sizeof conc, "%u", spec->max_inputs ? spec->max_inputs : 1);
    size_t a = 0;
    argv[a++] = "gust-init";
    argv[a++] = "--mode";
    argv[a++] = spec->mode == CTR_MODE_RUNNER ? "runner" : "per_input";
    argv[a++] = "--concurrency";
    argv[a++] = conc;
    if (template)
        argv[a++] = "--template";
    argv[a++] = "--";
    for (size_t i = 0; i < ncmd; i++)
        argv[a++] = spec->command[i];
    size_t e = 0;
    snprintf(idvar, sizeof idvar, "GUST_CONTAINER_ID=%s", spec->id);
    envp[e++] = idvar;
    for (size_t i = 0; i < nenv; i++)
        if (strncmp(spec->env[i], "GUST_CONTAINER_ID=", 18) && strncmp(spec->env[i], "LD_LIBRARY_PATH=", 16) &&
            (!api || (strncmp(spec->env[i], "GUST_ADDR=", 10) && strncmp(spec->env[i], "GUST_TOKEN=", 11))))
            envp[e++] = spec->env[i];
    if (api_bind) {
        if (sc.nbinds >= SANDBOX_MAX_BINDS)
            return gerr_set(err, E2BIG, "container %s: too many binds for the API socket", spec->id);
        sc.binds[sc.nbinds++] = (struct sandbox_bind){w->cfg.api_socket, WORKER_CTR_API_SOCKET, false};
    }
    if (api) {
        envp[e++] = "GUST_ADDR=unix:" WORKER_CTR_API_SOCKET;
        size_t tl = strlen(spec->api_token) + sizeof "GUST_TOKEN=";
        tokvar = xmalloc(tl);
        snprintf(tokvar, tl, "GUST_TOKEN=%s", spec->api_token);
        envp[e++] = tokvar;
    }
    if (!env_has(spec->env, "PATH"))
        envp[e++] = gm->nlibs ? "PATH=" WORKER_DEFAULT_PATH ":" GPU_CTR_BIN_DIR : "PATH=" WORKER_DEFAULT_PATH;
    if (!env_has(spec->env, "HOME"))
        envp[e++] = "HOME=/root";
    /* Libraries size thread pools by the CPUs they see, the host's (a container's
     * os.cpu_count() is the machine's): tell them the container's allowance. */
    if (!env_has(spec->env, thread_vars[0])) {
        unsigned n = worker_cpu_threads(spec->cpu_millicores, spec->cpu_limit_millicores, w->host_cpus);
        for (size_t i = 0; i < NTHREAD_VARS; i++)
            if (!env_has(spec->env, thread_vars[i])) {
                snprintf(threads[i], sizeof threads[i], "%s=%u", thread_vars[i], n);
                envp[e++] = threads[i];
            }
    }
    /* A template initialises without GPUs (docs/ARCHITECTURE.md "Snapshots"). */
    if (template) {
        envp[e++] = "GUST_SNAPSHOT=template";
        envp[e++] = "CUDA_VISIBLE_DEVICES=";
    }
    for (int i = 0; i < gm->nenv; i++)
        envp[e++] = gm->env[i];
    /* The driver libraries come after what the function set itself. */
    const char *user_ld = NULL;
    for (size_t i = 0; i < nenv; i++)
        if (!strncmp(spec->env[i], "LD_LIBRARY_PATH=", 16))
            user_ld = spec->env[i] + 16;
    if (user_ld || gm->nlibs) {
        snprintf(ldpath, sizeof ldpath, "LD_LIBRARY_PATH=%s%s%s", user_ld ? user_ld : "",
                 user_ld && gm->nlibs ? ":" : "", gm->nlibs ? GPU_CTR_LIB_DIR : "");
        envp[e++] = ldpath;
    }
    sc.init_argv = argv;
    sc.init_envp = envp;

    /* A host uid range of its own. */
    int slot;
    struct sandbox_userns uns;
    char what[96];
    snprintf(what, sizeof what, "container %s", spec->id);
    r = slot_take(w, what, &uns, &slot, err);
    if (r < 0)
        return r;
    sc.userns = &uns;

    struct sandbox_egress eg;
    int egress_slot = -1;
    if (spec->network == CTR_NET_EGRESS) {
        r = worker_egress_take(w, what, &eg, &egress_slot, err);
        if (r < 0)
            return r;
        sc.egress = &eg;
    }

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return gerr_sys(err, errno, "container %s: socketpair", spec->id);
    AUTO_FD int mine = sv[0];
    AUTO_FD int theirs = sv[1];
    worker_set_sock_buf(mine);
    worker_set_sock_buf(theirs);
    r = fd_set_nonblock(mine, true);
    if (r < 0) {
        worker_egress_give(w, egress_slot);
        return gerr_sys(err, -r, "container %s: channel", spec->id);
    }
    sc.channel_fd = theirs;

    struct ctr *c = ctr_alloc(w, spec, ud);
    /* From here on ctr_release gives the uid range and the egress address back. */
    w->slots[slot].used = true;
    c->userns_slot = slot;
    c->egress_slot = egress_slot;
    c->start_ns = t0;
    if (template)
        c->check.caps |= CONFINE_TEMPLATE_CAPS;

    r = sandbox_create(&sc, &c->sb, err);
    if (r < 0) {
        gerr_prefix(err, "container %s", spec->id);
        ctr_release(c);
        return r;
    }
    c->chan = TAKE_FD(mine);
    log_debug("worker", "%s: sandbox created in %.2f ms (clone to exec %.2f ms)", spec->id,
              (double)(mono_ns() - t0) / 1e6, (double)(c->sb.ready_ns - c->sb.created_ns) / 1e6);
    (void)sandbox_oom_kills(&c->sb, &c->oom_seen);

    r = ctr_watch(c, err);
    if (r < 0) {
        sandbox_signal(&c->sb, SIGKILL);
        struct pollfd p = {.fd = c->sb.pidfd, .events = POLLIN};
        poll(&p, 1, WORKER_FREE_WAIT_MS);
        sandbox_reap(&c->sb, NULL);
        sandbox_destroy(&c->sb, NULL);
        ctr_release(c);
        return r;
    }
    ctr_link(c);
    *out = c;
    return 0;
}

int ctr_volume_detach(struct ctr *c, const char *path, struct gerr *err)
{
    if (c->exited || c->forked)
        return gerr_set(err, ESRCH, "container %s is gone", c->id);
    return sandbox_volume_detach(&c->sb, path, err);
}

int ctr_volume_attach(struct ctr *c, const char *path, const char *lower, const char *dir, struct gerr *err)
{
    if (c->exited || c->forked)
        return gerr_set(err, ESRCH, "container %s is gone", c->id);
    char upper[512], work[512];
    if (snprintf(upper, sizeof upper, "%s/upper", dir) >= (int)sizeof upper ||
        snprintf(work, sizeof work, "%s/work", dir) >= (int)sizeof work)
        return gerr_set(err, ENAMETOOLONG, "container %s: volume directory too long", c->id);
    struct sandbox_userns uns = {.fd = -1};
    if (c->userns_slot >= 0) {
        uns.fd = c->w->slots[c->userns_slot].fd;
        uns.host_uid = ctr_host_uid(c);
        uns.host_gid = uns.host_uid;
    }
    struct sandbox_volume v = {lower, upper, work, path};
    return sandbox_volume_attach(&c->sb, c->userns_slot >= 0 ? &uns : NULL, &v, err);
}

/* ------------------------------------------------------------------ worker */

static uint64_t mem_total_mib(void)
{
    AUTO_FREE char *text = NULL;
    size_t len;
    if (file_read_all("/proc/meminfo", 1 << 16, &text, &len) < 0)
        return 0;
    const char *p = strstr(text, "MemTotal:");
    if (!p)
        return 0;
    return strtoull(p + 9, NULL, 10) / 1024;
}

int worker_new(struct ev_loop *loop, const struct worker_config *cfg, const struct worker_callbacks *cb,
               struct worker **out, struct gerr *err)
{
    if (!cfg->state_root || cfg->state_root[0] != '/')
        return gerr_set(err, EINVAL, "worker state root must be an absolute path");
    if (!cfg->init_path || !*cfg->init_path)
        return gerr_set(err, EINVAL, "worker: no gust-init path");
    if (!cfg->cgroup_parent || !*cfg->cgroup_parent)
        return gerr_set(err, EINVAL, "worker: no cgroup parent");
    if (cfg->ngpus < 0 || cfg->ngpus > WORKER_MAX_GPUS)
        return gerr_set(err, EINVAL, "worker: at most %d GPUs", WORKER_MAX_GPUS);
    AUTO_FD int fd = open(cfg->init_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return gerr_sys(err, errno, "cannot open gust-init at %s", cfg->init_path);
    int r = mkdir_p(cfg->state_root, 0700);
    if (r < 0)
        return gerr_sys(err, -r, "cannot create %s", cfg->state_root);
    struct worker *w = xcalloc(1, sizeof *w);
    list_init(&w->ctrs);
    list_init(&w->snaps);
    w->tuning.lock_fd = -1;
    w->state_root = xstrdup(cfg->state_root);
    w->init_path = xstrdup(cfg->init_path);
    w->cgroup_parent = xstrdup(cfg->cgroup_parent);
    w->loop = loop;
    pthread_mutex_init(&w->egress_mu, NULL);
    w->cfg = *cfg;
    w->cfg.state_root = w->state_root;
    w->cfg.init_path = w->init_path;
    w->cfg.cgroup_parent = w->cgroup_parent;
    if (!w->cfg.cpu_millicores) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        w->cfg.cpu_millicores = (uint32_t)(n > 0 ? n : 1) * 1000;
    }
    if (!w->cfg.memory_mib)
        w->cfg.memory_mib = mem_total_mib();
    w->host_cpus = host_cpu_count();
    if (!w->cfg.max_payload)
        w->cfg.max_payload = WORKER_DEFAULT_PAYLOAD;
    if (!w->cfg.userns_base)
        w->cfg.userns_base = 1000000;
    if (!w->cfg.userns_size)
        w->cfg.userns_size = 65536;
    if (!w->cfg.userns_slots)
        w->cfg.userns_slots = 512;
    r = userns_check_range(w->cfg.userns_base, (uint64_t)w->cfg.userns_size * w->cfg.userns_slots, err);
    if (r == 0)
        r = userns_check_range(w->cfg.userns_base, w->cfg.userns_size, err);
    const char *gpu_dirs[] = {w->cfg.gpu_dev_dir, w->cfg.gpu_driver_dir};
    for (size_t i = 0; r == 0 && i < ARRAY_LEN(gpu_dirs); i++)
        if (gpu_dirs[i] && gpu_dirs[i][0] != '/')
            r = gerr_set(err, EINVAL, "GPU directory %s must be an absolute path", gpu_dirs[i]);
    w->slots = r == 0 ? xcalloc(w->cfg.userns_slots, sizeof *w->slots) : NULL;
    for (uint32_t i = 0; w->slots && i < w->cfg.userns_slots; i++)
        w->slots[i].fd = -1;
    w->userns_lock_fd = -1;
    if (r == 0)
        r = sysfilter_build(NULL, 0, &w->default_filter, err);
    if (r == 0)
        r = sysfilter_build_template(NULL, 0, &w->template_filter, err);
    w->snap_impl = &snapshot_fork_impl;
    if (r == 0 && !w->cfg.no_nvml && w->cfg.ngpus == 0) {
        struct gerr gerr;
        int n = gpu_detect_nvml(&w->cfg, &gerr);
        if (n < 0)
            log_warn("worker", "GPU detection: %s", gerr.msg);
        else if (n > 0)
            log_info("worker", "NVML: %d GPU(s), first %s (%s)", n, w->cfg.gpus[0].type, w->cfg.gpus[0].product);
    }
    if (r < 0) {
        free(w->slots);
        sysfilter_free(&w->default_filter);
        sysfilter_free(&w->template_filter);
        free(w->state_root);
        free(w->init_path);
        free(w->cgroup_parent);
        free(w);
        return r;
    }
    if (cb)
        w->cb = *cb;
    w->init_fd = TAKE_FD(fd);
    if (!cfg->no_cgroup_tuning) {
        struct gerr terr;
        if (cgroup_favor_dynmods(&w->tuning, &terr) < 0)
            log_warn("worker", "cgroup tuning off, container starts may be slower: %s", terr.msg);
        else if (w->tuning.changed)
            log_info("worker", "enabled favordynmods on %s for fast cgroup moves (restored at exit)", w->tuning.path);
    }
    *out = w;
    return 0;
}

void worker_free(struct worker *w)
{
    if (!w)
        return;
    snapshot_free_all(w);
    list_for_each(c, &w->ctrs, struct ctr, link)
        if (!c->sb.reaped)
            sandbox_signal(&c->sb, SIGKILL);
    list_for_each_safe(c, &w->ctrs, struct ctr, link) {
        ctr_unlink(c);
        if (!c->sb.reaped) {
            uint64_t deadline = mono_ms() + WORKER_FREE_WAIT_MS;
            while (sandbox_reap(&c->sb, NULL) == 0 && mono_ms() < deadline) {
                struct pollfd p = {.fd = c->sb.pidfd, .events = POLLIN};
                poll(&p, 1, 100);
            }
        }
        if (c->pidfd_watched) {
            ev_io_del(w->loop, c->sb.pidfd);
            c->pidfd_watched = false;
        }
        struct gerr err;
        if (sandbox_destroy(&c->sb, &err) < 0)
            log_warn("worker", "%s: cleanup: %s", c->id, err.msg);
        ctr_release(c);
    }
    if (w->init_fd >= 0)
        close(w->init_fd);
    for (uint32_t i = 0; i < w->cfg.userns_slots; i++)
        if (w->slots[i].fd >= 0)
            close(w->slots[i].fd);
    if (w->userns_lock_fd >= 0)
        close(w->userns_lock_fd); /* drops every range lock of this worker */
    free(w->slots);
    sysfilter_free(&w->default_filter);
    sysfilter_free(&w->template_filter);
    egress_free(w->egress);
    pthread_mutex_destroy(&w->egress_mu);
    struct gerr terr;
    if (cgroup_tuning_restore(&w->tuning, &terr) < 0)
        log_warn("worker", "%s", terr.msg);
    free(w->state_root);
    free(w->init_path);
    free(w->cgroup_parent);
    free(w);
}

const struct worker_config *worker_capacity(const struct worker *w)
{
    return &w->cfg;
}

int worker_cleanup_stale(const char *cgroup_parent, const char *state_root, struct gerr *err)
{
    egress_cleanup_stale(cgroup_parent);
    return sandbox_cleanup_stale(cgroup_parent, state_root, err);
}

